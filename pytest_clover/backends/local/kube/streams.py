"""The pod subresources that stream: ``pods/log``, ``pods/portforward``, ``pods/exec``, and HTTP proxying for
``pods/proxy`` and ``services/proxy``.

These are aiohttp handlers the API server calls once it has authenticated the request and found the pod; they
take plain data (a log file, a function that opens a connection to a pod's port, one that runs a command),
never supervisor objects, and refuse with :class:`~.errors.ApiError` (raised before anything is sent, so the
server turns it into a ``Status``).

Port-forwarding speaks what the clients on this machine really send:

- the official Python client: a WebSocket with subprotocol ``v4.channel.k8s.io`` (``channel.k8s.io``, and
  the ``base64`` variants too), the ports in the ``ports`` query parameter, and for the i-th port a data
  channel 2i and an error channel 2i+1, each opened by a frame carrying the port (2 bytes, little-endian);
- kubectl 1.31+: a WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io`` whose binary messages carry a
  SPDY/3.1 byte stream (:mod:`.spdy`); kubectl before 1.31, and later ones when that upgrade fails (or with
  ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``), upgrade the HTTP connection itself to ``SPDY/3.1``. Each
  forwarded connection is then an ``error`` and a ``data`` stream sharing a ``requestID``, and the server
  answers them as the kubelet does: it copies bytes until the pod closes, writes any failure into the error
  stream, and closes both.

Exec speaks ``v5.channel.k8s.io`` / ``v4.channel.k8s.io`` over a WebSocket (kubectl 1.30+, the Python
client) and ``v5``/``v4`` over a SPDY/3.1 upgrade (older kubectl, and the fallback): stdin, stdout, stderr,
a ``Status`` on the error channel (kubectl exits with the command's code), terminal resizes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import re
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import WSMsgType, web

from .errors import ApiError
from .spdy import ProtocolError, SpdySession, SpdyStream

__all__ = [
    "Connect",
    "ExecIO",
    "ExecRun",
    "exec_status",
    "format_timestamp",
    "serve_exec",
    "serve_log",
    "serve_portforward",
    "serve_proxy",
]

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens a connection to a port of the pod (the caller maps ports: TCP, or a Unix socket for Envoy's admin)."""

# -- pods/log -------------------------------------------------------------------------------------------

# How often a followed log is checked for new lines, rotation, and whether the container still runs.
FOLLOW_POLL_SECONDS = 0.1
READ_CHUNK = 64 * 1024
# A line that starts with an RFC 3339 timestamp and a space (the CRI log format does) carries its own time.
_TIMESTAMPED = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) ")


def format_timestamp(seconds: float) -> str:
    """RFC 3339 with nanoseconds, always nine digits, in UTC: the prefix kubelet writes for ``timestamps``."""
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def _parse_timestamp(text: bytes) -> float | None:
    raw = text.decode("ascii")
    fraction = 0.0
    match = re.match(r"^(.*?:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", raw)
    if match is None:
        return None
    if match.group(2):
        fraction = float("0" + match.group(2))
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        moment = datetime.datetime.fromisoformat(match.group(1) + zone)
    except ValueError:
        return None
    return moment.timestamp() + fraction


def _split_time(line: bytes, default: float) -> tuple[float, bytes]:
    """The line's own timestamp (removed from the line) or ``default``."""
    match = _TIMESTAMPED.match(line)
    if match is not None:
        moment = _parse_timestamp(match.group(1))
        if moment is not None:
            return moment, line[match.end() :]
    return default, line


def _tail_offset(file: BinaryIO, size: int, lines: int) -> int:
    """Where the last ``lines`` lines of the file begin (a last line without a newline counts)."""
    if lines <= 0:
        return size
    position = size
    newlines = 0
    # A final newline ends the last line; it does not start a new, empty one.
    if size > 0:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            position -= 1
    while position > 0:
        start = max(0, position - READ_CHUNK)
        file.seek(start)
        block = file.read(position - start)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            newlines += 1
            if newlines == lines:
                return start + index + 1
        position = start
    return 0


class _LogWriter:
    """Writes log lines to the response, applying ``timestamps``, ``sinceSeconds`` and ``limitBytes``."""

    def __init__(
        self, response: web.StreamResponse, *, timestamps: bool, since: float | None, limit_bytes: int | None
    ) -> None:
        self.response = response
        self.timestamps = timestamps
        self.since = since
        self.remaining = limit_bytes
        self.pending: list[bytes] = []

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def add(self, line: bytes, arrival: float) -> None:
        moment, text = _split_time(line, arrival)
        if self.since is not None and moment < self.since:
            return
        if self.timestamps:
            text = format_timestamp(moment).encode("ascii") + b" " + text
        if self.remaining is not None:
            # limitBytes cuts mid-line, as kubelet does.
            text = text[: max(self.remaining, 0)]
            self.remaining -= len(text)
        if text:
            self.pending.append(text)

    async def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            await self.response.write(data)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def serve_log(
    request: web.Request,
    path: Path,
    *,
    follow: bool,
    tail_lines: int | None,
    since_seconds: int | None,
    timestamps: bool,
    limit_bytes: int | None,
    running: Callable[[], bool],
) -> web.StreamResponse:
    """Serve a container's log file as kubelet serves ``pods/log``: ``text/plain``, the last ``tail_lines``
    lines, only lines newer than ``since_seconds``, each prefixed with its RFC 3339 time if ``timestamps``
    (the line's own leading timestamp if the file has one, else its arrival time, and the file's modification
    time for what was already there), at most ``limit_bytes`` bytes. With ``follow``, new lines stream until
    ``running()`` turns False (what remains is sent first) or the client goes; a rotated (replaced) or
    truncated file is followed from its start."""
    if tail_lines is not None and tail_lines < 0:
        tail_lines = None  # kubelet: a negative tailLines means all lines
    if limit_bytes is not None and limit_bytes <= 0:
        raise ApiError(422, f"limitBytes: Invalid value: {limit_bytes}: must be greater than 0")
    if since_seconds is not None and since_seconds <= 0:
        raise ApiError(422, f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
    since = time.time() - since_seconds if since_seconds is not None else None

    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    writer = _LogWriter(response, timestamps=timestamps, since=since, limit_bytes=limit_bytes)

    file: BinaryIO | None = None
    identity: tuple[int, int] | None = None
    partial = b""  # the start of a line whose newline has not been written yet
    first_open = True
    existing = True

    def take(data: bytes, arrival: float) -> None:
        nonlocal partial
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        for line in lines:
            writer.add(line + b"\n", arrival)

    # Log files are local and read in small chunks: plain file reads do not hold the loop up noticeably.
    try:
        while True:
            if file is None:
                with contextlib.suppress(FileNotFoundError):
                    file = path.open("rb")
                if file is not None:
                    status = os.fstat(file.fileno())
                    identity = (status.st_dev, status.st_ino)
                    if first_open and tail_lines is not None:
                        file.seek(_tail_offset(file, status.st_size, tail_lines))
                    first_open = False
            if file is not None:
                # What was in the file before we looked has no arrival time: its modification time is the
                # closest we know. Lines that arrive while we follow are stamped as they come.
                arrival = os.fstat(file.fileno()).st_mtime if existing else time.time()
                existing = False
                while not writer.exhausted and (chunk := file.read(READ_CHUNK)):
                    take(chunk, arrival)
                    await writer.flush()
            if writer.exhausted or not follow or _client_gone(request):
                break
            if file is not None:
                try:
                    status = os.stat(path)
                    rotated = (status.st_dev, status.st_ino) != identity or status.st_size < file.tell()
                except FileNotFoundError:
                    rotated = False  # keep the old file until the new one appears
                if rotated:
                    # Finish the old file (it may have had a last write), its last line too, then start over.
                    take(file.read(), time.time())
                    if partial:
                        writer.add(partial, time.time())
                        partial = b""
                    await writer.flush()
                    file.close()
                    file = None
                    continue
            if not running():
                # One last read so that what the container wrote just before it stopped is not lost.
                if file is not None:
                    take(file.read(), time.time())
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        if partial and not writer.exhausted:
            writer.add(partial, time.time())
        await writer.flush()
    except ConnectionError:
        pass  # the client went
    finally:
        if file is not None:
            file.close()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


# -- pods/portforward -----------------------------------------------------------------------------------

SPDY_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
# WebSocket channel subprotocols the kubelet accepts for port-forward, and whether each is base64 text.
CHANNEL_PROTOCOLS = {
    "v4.channel.k8s.io": False,
    "channel.k8s.io": False,
    "v4.base64.channel.k8s.io": True,
    "base64.channel.k8s.io": True,
}
# kubectl writes SPDY DATA frames of at most 32 KiB, but a SPDY frame may hold up to 16 MiB.
MAX_MESSAGE = (1 << 24) + 1024
COPY_CHUNK = 32 * 1024
# How long the kubelet waits for a SPDY client to open every stream a request needs.
STREAM_CREATION_TIMEOUT = 30.0


def _forward_error(port: int, pod: str, uid: str, error: BaseException | str) -> str:
    return f"error forwarding port {port} to pod {pod}, uid {uid}: {error}"


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return error.message
    if isinstance(error, OSError) and error.errno:
        # Worded as Go words it ("connect: connection refused"): asyncio's own text names no cause.
        return f"connect: {os.strerror(error.errno).lower()}"
    return str(error) or type(error).__name__


def _ports(request: web.Request) -> list[int]:
    """The ``ports`` query parameter (repeated, or comma-separated as the Python client sends it)."""
    raw = [*request.query.getall("ports", []), *request.query.getall("port", [])]
    ports: list[int] = []
    for value in raw:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise ApiError(400, f"invalid port {item!r}: ports must be between 1 and 65535")
            ports.append(int(item))
    return ports


async def serve_portforward(
    request: web.Request, *, connect: Connect, pod: str = "", uid: str = ""
) -> web.StreamResponse:
    """Port-forward to the pod over whichever protocol the client asks for (see the module docstring).
    ``pod`` and ``uid`` only word error messages as the kubelet does."""
    upgrade = request.headers.get("Upgrade", "").strip().lower()
    if upgrade == "websocket":
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if SPDY_TUNNEL_PROTOCOL in offered:
            return await _spdy_over_websocket(request, connect, pod, uid)
        chosen = next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
        if offered and chosen is None:
            raise ApiError(
                400,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports "
                f"{[SPDY_TUNNEL_PROTOCOL, *CHANNEL_PROTOCOLS]}",
            )
        return await _channel_websocket(request, connect, pod, uid, chosen)
    if upgrade.startswith("spdy/3.1"):

        async def serve(session: SpdySession, _: str) -> None:
            await _serve_spdy(session, connect, pod, uid)

        return await _spdy_upgrade(request, [PORTFORWARD_PROTOCOL], serve)
    raise ApiError(400, "Upgrade request required")


async def _channel_websocket(
    request: web.Request, connect: Connect, pod: str, uid: str, protocol: str | None
) -> web.StreamResponse:
    ports = _ports(request)
    if not ports:
        raise ApiError(400, 'query parameter "port" is required')
    text = CHANNEL_PROTOCOLS.get(protocol or "", False)
    ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)

    send_lock = asyncio.Lock()  # one message at a time from the port tasks

    async def send(channel: int, data: bytes) -> None:
        async with send_lock:
            if text:
                await ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode("ascii"))
            else:
                await ws.send_bytes(bytes((channel,)) + data)

    loop = asyncio.get_running_loop()
    # Each port's connection to the pod, once made (None if it failed or has ended). The client may send
    # before the connection is up: what it sends waits for it rather than being lost.
    connections: list[asyncio.Future[asyncio.StreamWriter | None]] = [loop.create_future() for _ in ports]
    ended: set[int] = set()

    async def forward(index: int, port: int) -> None:
        # Every channel opens with the port it belongs to: the Python client checks it.
        await send(2 * index, struct.pack("<H", port))
        await send(2 * index + 1, struct.pack("<H", port))
        try:
            reader, writer = await connect(port)
        except (OSError, ApiError) as error:
            connections[index].set_result(None)
            await send(2 * index + 1, _forward_error(port, pod, uid, _describe(error)).encode())
            return
        connections[index].set_result(writer)
        try:
            while chunk := await reader.read(COPY_CHUNK):
                await send(2 * index, chunk)
        except (OSError, ConnectionError) as error:
            with contextlib.suppress(ConnectionError):
                await send(2 * index + 1, _forward_error(port, pod, uid, _describe(error)).encode())
        finally:
            ended.add(index)
            writer.close()

    forwards = [asyncio.create_task(forward(index, port)) for index, port in enumerate(ports)]
    all_done = asyncio.ensure_future(asyncio.gather(*forwards, return_exceptions=True))

    async def receive() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                payload: bytes = message.data
            elif message.type == WSMsgType.TEXT and text:
                data: str = message.data
                if not data:
                    continue
                payload = bytes((ord(data[0]) - ord("0"),)) + base64.b64decode(data[1:])
            elif message.type == WSMsgType.TEXT:
                payload = message.data.encode("utf-8")
            else:
                continue
            if len(payload) < 2:
                continue
            channel, chunk = payload[0], payload[1:]
            index = channel // 2
            # Only data channels carry bytes for the pod; the error channels are the server's to write.
            if channel % 2 or index >= len(ports) or index in ended:
                continue
            writer = await connections[index]
            if writer is not None and not writer.is_closing():
                writer.write(chunk)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    receiving = asyncio.create_task(receive())
    try:
        # The kubelet closes the WebSocket once every port's connection has ended; the client may go first.
        waiting: set[asyncio.Future[Any]] = {receiving, all_done}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*forwards, receiving):
            task.cancel()
        await asyncio.gather(*forwards, receiving, all_done, return_exceptions=True)
        await ws.close()
    return ws


async def _spdy_over_websocket(request: web.Request, connect: Connect, pod: str, uid: str) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=[SPDY_TUNNEL_PROTOCOL], max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    session = SpdySession(ws.send_bytes)
    serving = asyncio.create_task(_serve_spdy(session, connect, pod, uid))
    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                break  # the tunnel carries bytes only (client-go refuses anything else too)
            await session.feed(message.data)
            if session.closed:
                break
    except ProtocolError:
        pass
    finally:
        session.close()
        with contextlib.suppress(ConnectionError):
            await serving  # it may have met the closed connection first
        await ws.close()
    return ws


class _UpgradedReader:
    """Stands in for aiohttp's payload parser once the connection is no longer HTTP: hands raw bytes on."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


async def _spdy_upgrade(
    request: web.Request, supported: Sequence[str], serve: Callable[[SpdySession, str], Coroutine[Any, Any, None]]
) -> web.StreamResponse:
    """Upgrade the HTTP connection itself to SPDY/3.1 with the first protocol of the client's
    ``X-Stream-Protocol-Version`` list the server supports, and run ``serve`` on the session. The connection
    ends when ``serve`` returns or the client goes."""
    offered = [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", []) for p in value.split(",")]
    protocol = next((p for p in offered if p in supported), None)
    if protocol is None:
        raise ApiError(
            403,
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports "
            f"{list(supported)}",
        )
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went before the upgrade")
    reader = asyncio.StreamReader(limit=4 * COPY_CHUNK)
    # The StreamReader pauses the socket when its buffer fills: backpressure on a client that sends fast.
    reader.set_transport(transport)
    # Take the bytes that follow the request before aiohttp parses them as another HTTP request. The client
    # sends nothing before it reads the 101, so nothing is lost between here and the response.
    request.protocol.set_parser(_UpgradedReader(reader))  # type: ignore[arg-type]
    response = web.StreamResponse(
        status=101,
        headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol},
    )
    response.force_close()
    await response.prepare(request)
    request.protocol.keep_alive(False)

    session = SpdySession(response.write)

    async def receive() -> None:
        try:
            while not session.closed:
                data = await reader.read(COPY_CHUNK)
                if not data:
                    break
                await session.feed(data)
        except (ProtocolError, ConnectionError):
            pass
        finally:
            session.close()

    serving = asyncio.create_task(serve(session, protocol))
    receiving = asyncio.create_task(receive())
    try:
        waiting: set[asyncio.Future[None]] = {serving, receiving}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        receiving.cancel()
        session.close()
        await asyncio.gather(receiving, return_exceptions=True)
        with contextlib.suppress(ConnectionError):
            await serving  # it may have met the closed connection first
    return response


class _StreamPair:
    def __init__(self) -> None:
        self.data: SpdyStream | None = None
        self.error: SpdyStream | None = None


async def _serve_spdy(session: SpdySession, connect: Connect, pod: str, uid: str) -> None:
    """Accept the client's streams, pair them by ``requestID`` and forward each complete pair. A pair still
    incomplete after :data:`STREAM_CREATION_TIMEOUT` is given up with an error, as the kubelet does."""
    pairs: dict[str, _StreamPair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def start(coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def expire(request_id: str, pair: _StreamPair) -> None:
        await asyncio.sleep(STREAM_CREATION_TIMEOUT)
        if pairs.get(request_id) is not pair:
            return
        del pairs[request_id]
        with contextlib.suppress(ConnectionError):
            if pair.error is not None:
                await pair.error.write(f"(request={request_id}) timed out waiting for streams".encode())
                await pair.error.close()
            if pair.data is not None:
                await pair.data.reset()

    try:
        while (stream := await session.accept()) is not None:
            stream_type = stream.header("streamtype")
            port_text = stream.header("port") or ""
            # kubectl before 1.6 sent no requestID: its data stream followed its error stream (id + 2).
            request_id = stream.header("requestid")
            if request_id is None:
                request_id = str(stream.id if stream_type == "error" else stream.id - 2)
            if stream_type not in ("error", "data") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                # The kubelet refuses such a stream outright (its stream handler fails: the stream is reset).
                await stream.reset()
                continue
            await stream.reply()
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _StreamPair()
                start(expire(request_id, pair))
            if getattr(pair, stream_type) is not None:
                if pair.error is not None:
                    message = f"error processing stream for request {request_id}: {stream_type} stream already assigned"
                    await pair.error.write(message.encode())
                await stream.reset()
                continue
            setattr(pair, stream_type, stream)
            if pair.data is not None and pair.error is not None:
                del pairs[request_id]
                port = int(pair.data.header("port") or port_text)  # the data stream's port is the one forwarded
                start(_forward_pair(pair.data, pair.error, port, connect, pod, uid))
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _forward_pair(data: SpdyStream, error: SpdyStream, port: int, connect: Connect, pod: str, uid: str) -> None:
    """One forwarded connection: copy bytes both ways until the pod closes its side (or the client resets the
    data stream), then close the data stream and the error stream, with the failure in it if any."""
    failure: str | None = None
    try:
        try:
            reader, writer = await connect(port)
        except (OSError, ApiError) as exc:
            failure = _forward_error(port, pod, uid, _describe(exc))
            return

        async def to_pod() -> None:
            try:
                while chunk := await data.read():
                    writer.write(chunk)
                    await writer.drain()
                if data.reset_by_peer:
                    # The client gave up on this connection: nothing will read what the pod sends.
                    writer.close()
                elif writer.can_write_eof():
                    # The client finished sending: pass the half-close on, keep reading the answer.
                    writer.write_eof()
            except (OSError, ConnectionError):
                writer.close()

        sending = asyncio.create_task(to_pod())
        try:
            while chunk := await reader.read(COPY_CHUNK):
                if data.reset_by_peer:
                    break
                await data.write(chunk)
        except (OSError, ConnectionError) as exc:
            if not data.reset_by_peer:
                failure = _forward_error(port, pod, uid, _describe(exc))
        finally:
            # Close first: a second cancellation may interrupt the wait below.
            writer.close()
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await data.close()
            if failure is not None:
                await error.write(failure.encode())
            await error.close()


# -- pods/proxy, services/proxy -------------------------------------------------------------------------

# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business, never forwarded. Authorization carries
# the mesh's token: kube-apiserver drops it once the request is authenticated.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "authorization",
        "host",
        "content-length",
    }
)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]]]:
    status_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"malformed response status line {status_line!r}")
    headers: list[tuple[str, str]] = []
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def serve_proxy(
    request: web.Request, *, connect: Connect, port: int, path: str, host: str | None = None
) -> web.StreamResponse:
    """Proxy the request to ``port`` of the pod: method, ``/path``, query string, body and end-to-end headers
    go out; the answer streams back with its status and headers (``Content-Type`` kept). ``host`` is the
    ``Host`` the pod sees (default ``localhost:<port>``). A pod that cannot be reached is a 503, as
    kube-apiserver answers."""
    try:
        reader, writer = await connect(port)
    except (OSError, ApiError) as exc:
        raise ApiError(503, f"error trying to reach service: {_describe(exc)}") from exc
    try:
        body = await request.read()
        target = "/" + path.lstrip("/")
        if request.query_string:
            target += "?" + request.query_string
        lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host or f'localhost:{port}'}"]
        for name, value in request.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                lines.append(f"{name}: {value}")
        forwarded = request.remote or ""
        if forwarded:
            previous = request.headers.get("X-Forwarded-For")
            lines.append(f"X-Forwarded-For: {previous + ', ' if previous else ''}{forwarded}")
        # One request per connection: the answer ends where the connection or its length says.
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        try:
            status, reason, headers = await _read_head(reader)
        except (ValueError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ApiError(502, f"error trying to reach service: {exc}") from exc

        response = web.StreamResponse(status=status, reason=reason or None)
        length: int | None = None
        chunked = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length" and value.isdigit():
                length = int(value)
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            if lowered not in _HOP_BY_HOP:
                response.headers.add(name, value)
        no_body = request.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if length is not None and not chunked:
            response.content_length = length
        await response.prepare(request)
        if not no_body:
            if chunked:
                await _copy_chunked(reader, response)
            else:
                await _copy_body(reader, response, length)
        await response.write_eof()
        return response
    finally:
        writer.close()


async def _copy_body(reader: asyncio.StreamReader, response: web.StreamResponse, length: int | None) -> None:
    remaining = length
    while remaining is None or remaining > 0:
        chunk = await reader.read(COPY_CHUNK if remaining is None else min(COPY_CHUNK, remaining))
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        await response.write(chunk)


async def _copy_chunked(reader: asyncio.StreamReader, response: web.StreamResponse) -> None:
    while True:
        size_line = (await reader.readline()).split(b";")[0].strip()
        if not size_line:
            return
        size = int(size_line, 16)
        if size == 0:
            # Trailers, then the final empty line.
            while (await reader.readline()).strip():
                pass
            return
        await response.write(await reader.readexactly(size))
        await reader.readexactly(2)


# -- pods/exec --------------------------------------------------------------------------------------------------

EXEC_WEBSOCKET_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
# Over SPDY, v5 is v4: its only addition, the close signal, is a WebSocket matter (SPDY streams close alone).
EXEC_SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
# v5.channel.k8s.io: a message [255, channel] says the client will send no more on ``channel``.
CLOSE_SIGNAL = 255


@dataclass
class ExecIO:
    """What an exec'd command gets: its argv, its stdin (None unless the client sends one; at EOF once the
    client closes it), writers for stdout and stderr (with ``tty`` the terminal's output goes to stdout),
    and the terminal sizes (width, height) the client reports while ``tty``."""

    command: list[str]
    tty: bool
    stdin: asyncio.StreamReader | None
    stdout: Callable[[bytes], Awaitable[None]]
    stderr: Callable[[bytes], Awaitable[None]]
    resizes: asyncio.Queue[tuple[int, int]] = field(default_factory=asyncio.Queue)


ExecRun = Callable[[ExecIO], Awaitable[int]]
"""Runs the command and returns its exit code; raising :class:`ApiError` or ``OSError`` reports a failure."""


def exec_status(command: Sequence[str], outcome: int | BaseException) -> dict[str, Any]:
    """The ``Status`` written to the error channel when the command is over, as kubelet words it: ``Success``,
    ``NonZeroExitCode`` with an ``ExitCode`` cause (kubectl exits with that code), or the failure."""
    if isinstance(outcome, BaseException):
        cause = outcome.message if isinstance(outcome, ApiError) else str(outcome) or type(outcome).__name__
        cause = f"error executing command in container: {cause}"
        return {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {cause}",
            "reason": "InternalError",
            "details": {"causes": [{"message": cause}]},
            "code": 500,
        }
    if outcome == 0:
        return {"metadata": {}, "status": "Success"}
    argv = " ".join(command)
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command [{argv}], exit code {outcome}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(outcome)}]},
    }


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _resizes(buffer: bytearray, queue: asyncio.Queue[tuple[int, int]]) -> None:
    """Take the complete ``{"Width": w, "Height": h}`` objects out of ``buffer`` (they arrive back to back)."""
    decoder = json.JSONDecoder()
    text = buffer.decode("utf-8", "replace")
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            size, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            break
        position = end
        if isinstance(size, dict):
            queue.put_nowait((int(size.get("Width", 0)), int(size.get("Height", 0))))
    del buffer[: len(text[:position].encode("utf-8"))]


async def serve_exec(
    request: web.Request, *, run: ExecRun | None = None, endpoint: object = None, pod: object = None
) -> web.StreamResponse:
    """Run a command in the pod for ``pods/exec`` (query: ``command`` repeated, ``stdin``, ``stdout``,
    ``stderr``, ``tty``) over a WebSocket (``v5.channel.k8s.io``, ``v4.channel.k8s.io``: what kubectl 1.30+
    and the Python client speak) or a SPDY/3.1 upgrade (``v5``/``v4.channel.k8s.io``: older kubectl, and the
    fallback). When ``run`` returns, the Status goes to the error channel and the connection closes.

    ``run`` runs the command. The server may instead pass the pod's ``endpoint``: its ``exec`` attribute,
    if it has one, is the ``run`` (a pod without it cannot exec: 400). ``pod`` is accepted and unused."""
    del pod
    if run is None:
        run = getattr(endpoint, "exec", None)
    if run is None:
        raise ApiError(400, "exec is not supported for this pod")
    command = request.query.getall("command", [])
    if not command:
        raise ApiError(400, "you must specify at least 1 command")
    stdin, stdout, stderr, tty = (_flag(request, name) for name in ("stdin", "stdout", "stderr", "tty"))
    if not (stdin or stdout or stderr):
        raise ApiError(400, "you must specify at least 1 of stdin, stdout, stderr")
    upgrade = request.headers.get("Upgrade", "").strip().lower()
    if upgrade == "websocket":
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in EXEC_WEBSOCKET_PROTOCOLS), None)
        if chosen is None:
            raise ApiError(
                400,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports "
                f"{list(EXEC_WEBSOCKET_PROTOCOLS)}",
            )
        return await _exec_websocket(request, run, command, chosen, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    if upgrade.startswith("spdy/3.1"):

        async def serve(session: SpdySession, _: str) -> None:
            await _exec_spdy(session, run, command, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

        return await _spdy_upgrade(request, EXEC_SPDY_PROTOCOLS, serve)
    raise ApiError(400, "Upgrade request required")


async def _run_command(run: ExecRun, io: ExecIO) -> int | BaseException:
    try:
        return await run(io)
    except (ApiError, OSError) as error:
        return error


async def _exec_websocket(
    request: web.Request,
    run: ExecRun,
    command: list[str],
    protocol: str,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=[protocol], max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    input_reader = asyncio.StreamReader() if stdin else None
    send_lock = asyncio.Lock()

    def writer(channel: int, wanted: bool) -> Callable[[bytes], Awaitable[None]]:
        async def write(data: bytes) -> None:
            if wanted and data and not ws.closed:
                async with send_lock:
                    await ws.send_bytes(bytes((channel,)) + data)

        return write

    io = ExecIO(command, tty, input_reader, writer(STDOUT, stdout), writer(STDERR, stderr and not tty))
    resize_buffer = bytearray()

    async def receive() -> None:
        try:
            async for message in ws:
                # Text messages count as binary ones, as the kubelet reads them: the Python client sends stdin
                # as text, its channel number a control character.
                if message.type == WSMsgType.BINARY:
                    payload: bytes = message.data
                elif message.type == WSMsgType.TEXT:
                    payload = message.data.encode("utf-8")
                else:
                    continue
                if not payload:
                    continue
                channel, chunk = payload[0], payload[1:]
                if channel == STDIN and input_reader is not None and not input_reader.at_eof():
                    input_reader.feed_data(chunk)
                elif channel == RESIZE and tty:
                    resize_buffer.extend(chunk)
                    _resizes(resize_buffer, io.resizes)
                elif channel == CLOSE_SIGNAL and protocol == "v5.channel.k8s.io" and chunk[:1] == bytes((STDIN,)):
                    if input_reader is not None:
                        input_reader.feed_eof()
        finally:
            if input_reader is not None and not input_reader.at_eof():
                input_reader.feed_eof()

    receiving = asyncio.create_task(receive())
    running = asyncio.create_task(_run_command(run, io))
    try:
        waiting: set[asyncio.Future[Any]] = {receiving, running}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if running.done() and not ws.closed:
            status = exec_status(command, running.result())
            async with send_lock:
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(bytes((ERROR,)) + json.dumps(status).encode())
    finally:
        # A client that goes before the command ends takes the command with it, as a dropped kubectl exec does.
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await ws.close()
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
    return ws


async def _exec_spdy(
    session: SpdySession, run: ExecRun, command: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool
) -> None:
    expected = {"error"}
    expected |= {"stdin"} if stdin else set()
    expected |= {"stdout"} if stdout else set()
    expected |= {"stderr"} if stderr and not tty else set()
    expected |= {"resize"} if tty else set()
    streams: dict[str, SpdyStream] = {}

    async def gather_streams() -> bool:
        while set(streams) != expected:
            stream = await session.accept()
            if stream is None:
                return False
            kind = stream.header("streamtype") or ""
            if kind not in expected or kind in streams:
                await stream.reset()
                continue
            await stream.reply()
            streams[kind] = stream
        return True

    try:
        complete = await asyncio.wait_for(gather_streams(), STREAM_CREATION_TIMEOUT)
    except TimeoutError:
        complete = False
        if "error" in streams:
            await streams["error"].write(b"timed out waiting for client to create streams")
            await streams["error"].close()
    if not complete:
        return

    input_reader = asyncio.StreamReader() if stdin else None

    def writer(kind: str) -> Callable[[bytes], Awaitable[None]]:
        async def write(data: bytes) -> None:
            stream = streams.get(kind)
            if stream is not None and data:
                await stream.write(data)

        return write

    io = ExecIO(command, tty, input_reader, writer("stdout"), writer("stderr"))

    async def pump_stdin() -> None:
        assert input_reader is not None
        try:
            while chunk := await streams["stdin"].read():
                input_reader.feed_data(chunk)
        finally:
            input_reader.feed_eof()

    async def pump_resize() -> None:
        buffer = bytearray()
        while chunk := await streams["resize"].read():
            buffer.extend(chunk)
            _resizes(buffer, io.resizes)

    helpers = []
    if stdin:
        helpers.append(asyncio.create_task(pump_stdin()))
    if tty:
        helpers.append(asyncio.create_task(pump_resize()))
    try:
        outcome = await _run_command(run, io)
        for kind in ("stdout", "stderr", "stdin", "resize"):
            if kind in streams:
                await streams[kind].close()
        error = streams["error"]
        await error.write(json.dumps(exec_status(command, outcome)).encode())
        await error.close()
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
