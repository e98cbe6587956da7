"""Streaming pod subresources (log, port-forward, proxy) driven by the real kubectl and the official client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import websocket
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from pytest_clover.backends.local.kube import streams
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.spdy import (
    DICTIONARY,
    ProtocolError,
    SpdySession,
    decode_header_block,
    encode_header_block,
)
from pytest_clover.backends.local.kube.streams import (
    ExecIO,
    _serve_spdy,
    exec_status,
    format_timestamp,
    serve_exec,
    serve_log,
    serve_portforward,
    serve_proxy,
)
from pytest_clover.backends.local.kube.tls import (
    Credentials,
    check_token,
    make_credentials,
    server_ssl_context,
    write_kubeconfig,
)

KUBECTL = shutil.which("kubectl")
KUBECTL_DIR = Path(os.path.realpath(KUBECTL)).parent if KUBECTL else None
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:27:33Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "resourceVersion": "1"},
    "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "name": "http"}]}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [
            {"name": "app", "ready": True, "restartCount": 0, "image": "app:1", "imageID": "", "state": {"running": {}}}
        ],
    },
}
# Pod ports as the test maps them: 80 echoes, 8080 answers HTTP, 15000 is HTTP on a Unix socket (as the
# Envoy admin is), 81 refuses connections.
ECHO_PORT, HTTP_PORT, ADMIN_PORT, CLOSED_PORT = 80, 8080, 15000, 81


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Mesh:
    """An HTTPS API server (in its own thread and loop) mounting the stream handlers, plus the pod's ports."""

    credentials: Credentials
    directory: Path
    log_path: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    running: bool = True
    upgrades: list[str] = field(default_factory=list)
    proxied: list[dict[str, Any]] = field(default_factory=list)
    refuse_websocket: bool = False
    logs_served: int = 0
    port: int = 0
    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _echo_port: int = 0
    _http_port: int = 0
    _closed_port: int = 0
    _clients: list[http.client.HTTPSConnection] = field(default_factory=list)
    _echo_writers: set[asyncio.StreamWriter] = field(default_factory=set)

    # -- the pod's side -------------------------------------------------------------------------------------

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._echo_writers.add(writer)
        try:
            while data := await reader.read(65536):
                if data.startswith(b"CLOSE"):
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._echo_writers.discard(writer)

    async def _hello(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.proxied.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "body": body,
                "headers": dict(request.headers),
            }
        )
        if request.path == "/chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            for index in range(3):
                await response.write(json.dumps({"part": index}).encode() + b"\n")
            await response.write_eof()
            return response
        if request.path == "/missing":
            return web.Response(status=404, text="nothing here", content_type="text/html")
        return web.json_response(
            {"method": request.method, "path": request.path, "body": body.decode(), "host": request.host}
        )

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == ECHO_PORT:
            return await asyncio.open_connection("127.0.0.1", self._echo_port)
        if port == HTTP_PORT:
            return await asyncio.open_connection("127.0.0.1", self._http_port)
        if port == ADMIN_PORT:
            return await asyncio.open_unix_connection(str(self.directory / "admin.sock"))
        return await asyncio.open_connection("127.0.0.1", self._closed_port)

    # -- the API server ---------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not check_token(request.headers.get("Authorization"), self.credentials.token):
            return web.json_response(
                {"kind": "Status", "code": 401, "status": "Failure", "reason": "Unauthorized"}, status=401
            )
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as error:
            return web.json_response(error.status(), status=error.code)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(VERSION)

    async def _api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }
        )

    async def _api_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def _api_v1(self, request: web.Request) -> web.Response:
        def resource(name: str, kind: str, verbs: list[str], short: list[str] | None = None) -> dict[str, Any]:
            entry: dict[str, Any] = {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}
            if short:
                entry["shortNames"] = short
            return entry

        resources = [
            resource("pods", "Pod", ["get", "list"], ["po"]),
            resource("pods/log", "Pod", ["get"]),
            resource("pods/exec", "PodExecOptions", ["create", "get"]),
            resource("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
            resource("pods/proxy", "PodProxyOptions", ["create", "delete", "get", "patch", "put"]),
        ]
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    async def _pod(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != "web":
            raise ApiError.not_found("pods", request.match_info["name"])
        return web.json_response(POD)

    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "")
        self.upgrades.append(
            f"{request.method} {upgrade} {request.headers.get('Sec-WebSocket-Protocol', request.headers.get('X-Stream-Protocol-Version', ''))}"
        )
        if self.refuse_websocket and upgrade.lower() == "websocket":
            raise ApiError(400, "websockets are refused by this test server")
        return await serve_portforward(request, connect=self.connect, pod="web", uid="uid-web")

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "")
        protocols = request.headers.get(
            "Sec-WebSocket-Protocol", ", ".join(request.headers.getall("X-Stream-Protocol-Version", []))
        )
        self.upgrades.append(f"{request.method} {upgrade} {protocols}")
        if request.query.get("container") == "via-endpoint":
            # The server may hand over the pod's endpoint instead of the runner.
            return await serve_exec(request, endpoint=SimpleNamespace(exec=self._run), pod=POD)
        return await serve_exec(request, run=self._run)

    async def _run(self, io: ExecIO) -> int:
        """Run the command as a local process, as the local backend runs a pod's commands."""
        if io.command == ["report-size"]:
            # Stands for a terminal program: answers the first size the client reports.
            width, height = await io.resizes.get()
            await io.stdout(f"{width}x{height}\n".encode())
            return 0
        process = await asyncio.create_subprocess_exec(
            *io.command,
            stdin=asyncio.subprocess.PIPE if io.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def feed() -> None:
            assert io.stdin is not None and process.stdin is not None
            while chunk := await io.stdin.read(65536):
                process.stdin.write(chunk)
                await process.stdin.drain()
            process.stdin.close()

        async def pump(stream: asyncio.StreamReader | None, write: Callable[[bytes], Awaitable[None]]) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                await write(chunk)

        # The command ends when the process does, whether or not the client closed its stdin.
        feeding = asyncio.create_task(feed()) if io.stdin is not None else None
        try:
            await asyncio.gather(pump(process.stdout, io.stdout), pump(process.stderr, io.stderr))
            return await process.wait()
        finally:
            if feeding is not None:
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def _log(self, request: web.Request) -> web.StreamResponse:
        query = request.query

        def number(name: str) -> int | None:
            return int(query[name]) if name in query else None

        try:
            return await serve_log(
                request,
                self.log_path,
                follow=query.get("follow") == "true",
                tail_lines=number("tailLines"),
                since_seconds=number("sinceSeconds"),
                timestamps=query.get("timestamps") == "true",
                limit_bytes=number("limitBytes"),
                running=lambda: self.running,
            )
        finally:
            self.logs_served += 1

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        _, _, port = request.match_info["name"].partition(":")
        return await serve_proxy(request, connect=self.connect, port=int(port or 80), path=request.match_info["path"])

    async def _start(self) -> None:
        echo = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        self._servers.append(echo)
        self._echo_port = echo.sockets[0].getsockname()[1]
        # A port nobody listens on: bind, note, close.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self._closed_port = probe.getsockname()[1]

        pod_app = web.Application()
        pod_app.router.add_route("*", "/{tail:.*}", self._hello)
        pod_runner = web.AppRunner(pod_app)
        await pod_runner.setup()
        self._runners.append(pod_runner)
        site = web.TCPSite(pod_runner, "127.0.0.1", 0)
        await site.start()
        assert isinstance(site._server, asyncio.Server)
        self._http_port = site._server.sockets[0].getsockname()[1]
        await web.UnixSite(pod_runner, str(self.directory / "admin.sock")).start()

        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/version", self._version)
        # Just enough discovery for kubectl to map "pod/web" and "pods" to /api/v1 pods.
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_get("/api/v1", self._api_v1)
        app.router.add_get("/api/v1/namespaces/default/pods/{name}", self._pod)
        app.router.add_route("*", "/api/v1/namespaces/default/pods/{name}/portforward", self._portforward)
        app.router.add_get("/api/v1/namespaces/default/pods/{name}/log", self._log)
        app.router.add_route("*", "/api/v1/namespaces/default/pods/{name}/exec", self._exec)
        app.router.add_route("*", "/api/v1/namespaces/default/pods/{name}/proxy/{path:.*}", self._proxy)
        runner = web.AppRunner(app)
        await runner.setup()
        self._runners.append(runner)
        api_site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(self.credentials))
        await api_site.start()
        assert isinstance(api_site._server, asyncio.Server)
        self.port = api_site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        # Python 3.11's wait_closed does not wait for the connections the server handed out: close them here.
        for writer in list(self._echo_writers):
            writer.close()
        for runner in reversed(self._runners):
            assert runner.server is not None
            transports = [handler.transport for handler in runner.server.connections]
            await runner.cleanup()
            for transport in transports:
                # One already closed has dropped its TLS protocol: aborting it again raises.
                if transport is not None:
                    with contextlib.suppress(AttributeError):
                        transport.abort()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start())

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def stop(self) -> None:
        for connection in self._clients:
            connection.close()
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, *, timeout: float = 20) -> http.client.HTTPResponse:
        """A GET from the test thread, with the token, trusting the mesh's CA."""
        context = ssl.create_default_context(cadata=self.credentials.ca_pem.decode())
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=timeout)
        self._clients.append(connection)  # closed by stop()
        connection.request("GET", path, headers={"Authorization": f"Bearer {self.credentials.token}"})
        return connection.getresponse()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    credentials = make_credentials(tmp_path / "credentials", server_ip="127.0.0.1", mesh_id="streams")
    running = Mesh(credentials, tmp_path, tmp_path / "app.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, mesh: Mesh) -> Path:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, server_url=mesh.url, credentials=mesh.credentials, context="clover-streams")
    return path


def kubectl_command(kubeconfig: Path, *args: str, minor: int | None = 33) -> list[str]:
    assert KUBECTL is not None and KUBECTL_DIR is not None
    binary = KUBECTL if minor is None else str(KUBECTL_DIR / f"kubectl.1.{minor}")
    if not Path(binary).exists():
        pytest.skip(f"{binary} is not installed")
    return [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "kube-cache"), *args]


def kubectl_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **extra}


def run_kubectl(
    kubeconfig: Path, *args: str, minor: int | None = 33, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kubectl_command(kubeconfig, *args, minor=minor),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kubectl_env(kubeconfig.parent),
        check=False,
    )


needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


# -- SPDY framing -----------------------------------------------------------------------------------------------

header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
header_values = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30), min_size=1, max_size=3
)


@given(st.dictionaries(header_names, header_values, max_size=8))
def test_header_blocks_round_trip(headers: dict[str, list[str]]) -> None:
    assert decode_header_block(encode_header_block(headers)) == headers


@given(st.binary(max_size=64))
def test_garbage_header_blocks_are_protocol_errors_or_parse(block: bytes) -> None:
    try:
        decode_header_block(block)
    except ProtocolError:
        pass
    except Exception as error:  # anything else would crash the session
        raise AssertionError(f"unexpected {error!r}") from error


def test_dictionary_is_spdy3s() -> None:
    assert len(DICTIONARY) == 1423
    assert hashlib.sha256(DICTIONARY).hexdigest() == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_uppercase_or_duplicate_header_names_are_refused() -> None:
    with pytest.raises(ProtocolError):
        decode_header_block(encode_header_block({"x": ["1"]}).replace(b"x", b"X"))
    duplicated = struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + struct.pack(">I", 1) + b"1") * 2
    with pytest.raises(ProtocolError):
        decode_header_block(duplicated)


class SpdyClient:
    """The client half of SPDY/3, enough to drive :class:`SpdySession` without kubectl."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.received = bytearray()

    def syn_stream(self, stream_id: int, headers: dict[str, list[str]], flags: int = 0) -> bytes:
        block = self.deflate.compress(encode_header_block(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
        return struct.pack(">HHI", 0x8003, 1, (flags << 24) | len(payload)) + payload

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, ((1 if fin else 0) << 24) | len(data)) + data

    @staticmethod
    def control(frame_type: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8003, frame_type, len(payload)) + payload

    def frames(self) -> list[tuple[str, int, int, bytes]]:
        """Parse what the server sent: (kind, stream id or type, flags, payload)."""
        out: list[tuple[str, int, int, bytes]] = []
        while len(self.received) >= 8:
            first, second = struct.unpack_from(">II", self.received)
            length = second & 0xFFFFFF
            if len(self.received) < 8 + length:
                break
            payload = bytes(self.received[8 : 8 + length])
            del self.received[: 8 + length]
            if first & 0x80000000:
                frame_type = first & 0xFFFF
                if frame_type == 2:
                    decode_header_block(self.inflate.decompress(payload[4:]))
                out.append(("control", frame_type, second >> 24, payload))
            else:
                out.append(("data", first, second >> 24, payload))
        return out


def test_spdy_session_pairs_streams_and_forwards() -> None:
    async def scenario() -> list[tuple[str, int, int, bytes]]:
        client = SpdyClient()
        finished = asyncio.Event()
        frames: list[tuple[str, int, int, bytes]] = []

        async def send(frame: bytes) -> None:
            client.received += frame
            frames.extend(client.frames())
            if any(kind == "data" and sid == 1 and flags & 1 for kind, sid, flags, _ in frames):
                finished.set()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def connect(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", port)

        session = SpdySession(send)
        serving = asyncio.create_task(_serve_spdy(session, connect, "web", "uid-web"))
        headers = {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}
        await session.feed(client.syn_stream(1, headers))
        await session.feed(client.data(1, b"", fin=True))
        await session.feed(client.syn_stream(3, {**headers, "streamtype": ["data"]}))
        # A ping from the client (odd id) is answered; the frame is split across two feeds to test reassembly.
        ping = client.control(6, struct.pack(">I", 7))
        await session.feed(ping[:5])
        await session.feed(ping[5:] + client.data(3, b"hello"))
        await asyncio.wait_for(finished.wait(), 10)
        session.close()
        await serving
        server.close()
        await server.wait_closed()
        return frames

    frames = asyncio.run(scenario())
    replies = [frame for frame in frames if frame[0] == "control" and frame[1] == 2]
    assert [struct.unpack(">I", payload[:4])[0] for *_, payload in replies] == [1, 3]
    assert ("control", 6, 0, struct.pack(">I", 7)) in frames
    data_3 = b"".join(payload for kind, sid, _, payload in frames if kind == "data" and sid == 3)
    assert data_3 == b"hello"
    # Both streams end with FIN, the data stream first; nothing was written into the error stream.
    assert frames.index(("data", 3, 1, b"")) < frames.index(("data", 1, 1, b""))
    assert all(payload == b"" for kind, sid, _, payload in frames if kind == "data" and sid == 1)


def test_spdy_pair_left_incomplete_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "STREAM_CREATION_TIMEOUT", 0.2)

    async def scenario() -> list[tuple[str, int, int, bytes]]:
        client = SpdyClient()
        finished = asyncio.Event()
        frames: list[tuple[str, int, int, bytes]] = []

        async def send(frame: bytes) -> None:
            client.received += frame
            frames.extend(client.frames())
            if any(kind == "data" and flags & 1 for kind, _, flags, _ in frames):
                finished.set()

        async def connect(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            raise AssertionError("an incomplete pair must not be forwarded")

        session = SpdySession(send)
        serving = asyncio.create_task(_serve_spdy(session, connect, "web", "uid-web"))
        await session.feed(client.syn_stream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["7"]}))
        await asyncio.wait_for(finished.wait(), 10)
        session.close()
        await serving
        return frames

    frames = asyncio.run(scenario())
    assert frames[1:] == [("data", 1, 0, b"(request=7) timed out waiting for streams"), ("data", 1, 1, b"")]


def test_spdy_refuses_even_stream_ids_and_bad_versions() -> None:
    async def scenario() -> list[tuple[str, int, int, bytes]]:
        client = SpdyClient()

        async def send(frame: bytes) -> None:
            client.received += frame

        session = SpdySession(send)
        await session.feed(client.syn_stream(2, {"streamtype": ["data"]}))
        with pytest.raises(ProtocolError):
            await session.feed(struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1")
        return client.frames()

    frames = asyncio.run(scenario())
    assert frames == [("control", 3, 0, struct.pack(">II", 2, 1))]


# -- pods/log ----------------------------------------------------------------------------------------------------


@given(st.lists(st.sampled_from([b"a", b"bc", b"", b"\n", b"xyz\n", b"\n\n"]), max_size=40), st.integers(0, 12))
def test_tail_offset_finds_the_last_lines(pieces: list[bytes], lines: int) -> None:
    content = b"".join(pieces)
    # What tailLines means: the last `lines` lines, a final line without a newline counting as one.
    all_lines = content.splitlines(keepends=True)
    expected = b"".join(all_lines[max(0, len(all_lines) - lines) :]) if lines else b""
    for chunk in (3, 64 * 1024):  # a tiny read size exercises lines that straddle reads
        streams.READ_CHUNK, saved = chunk, streams.READ_CHUNK
        try:
            offset = streams._tail_offset(io.BytesIO(content), len(content), lines)
        finally:
            streams.READ_CHUNK = saved
        assert content[offset:] == expected


def test_format_timestamp() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000000Z"
    assert format_timestamp(1.5) == "1970-01-01T00:00:01.500000000Z"


def test_log_whole_tail_limit(mesh: Mesh) -> None:
    mesh.log_path.write_bytes(b"one\ntwo\nthree\nfour")
    base = "/api/v1/namespaces/default/pods/web/log"
    response = mesh.get(base)
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/plain")
    assert response.read() == b"one\ntwo\nthree\nfour"
    assert mesh.get(base + "?tailLines=2").read() == b"three\nfour"
    assert mesh.get(base + "?tailLines=0").read() == b""
    assert mesh.get(base + "?tailLines=10").read() == b"one\ntwo\nthree\nfour"
    assert mesh.get(base + "?limitBytes=6").read() == b"one\ntw"
    assert mesh.get(base + "?sinceSeconds=3600").read() == b"one\ntwo\nthree\nfour"
    assert mesh.get(base + "?limitBytes=0").status == 422


def test_log_since_uses_timestamps_in_the_file(mesh: Mesh) -> None:
    old, new = format_timestamp(time.time() - 7200), format_timestamp(time.time() - 5)
    mesh.log_path.write_text(f"{old} old line\n{new} new line\n")
    base = "/api/v1/namespaces/default/pods/web/log"
    assert mesh.get(base).read() == b"old line\nnew line\n"
    assert mesh.get(base + "?sinceSeconds=60").read() == b"new line\n"
    assert mesh.get(base + "?sinceSeconds=60&timestamps=true").read() == f"{new} new line\n".encode()


def test_log_timestamps_without_timestamps_in_the_file(mesh: Mesh) -> None:
    mesh.log_path.write_text("a\nb\n")
    os.utime(mesh.log_path, (1_700_000_000.25, 1_700_000_000.25))
    text = mesh.get("/api/v1/namespaces/default/pods/web/log?timestamps=true").read().decode()
    assert text == "2023-11-14T22:13:20.250000000Z a\n2023-11-14T22:13:20.250000000Z b\n"


def test_log_follow_streams_until_the_container_stops_and_survives_rotation(mesh: Mesh) -> None:
    mesh.log_path.write_text("first\n")
    response = mesh.get("/api/v1/namespaces/default/pods/web/log?follow=true&timestamps=true")
    assert response.readline().endswith(b" first\n")
    with mesh.log_path.open("a") as log:
        log.write("second\n")
    line = response.readline().decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z second\n", line), line
    stamp = line.split(" ")[0]
    # Arrival time: within a few seconds of now.
    assert abs(time.time() - time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + time.timezone) < 30
    # Rotation: the file is renamed away and a new one takes its place.
    mesh.log_path.rename(mesh.log_path.with_suffix(".1"))
    mesh.log_path.write_text("third\n")
    assert response.readline().endswith(b" third\n")
    # Truncation in place (copytruncate).
    with mesh.log_path.open("r+") as log:
        log.truncate(0)
    wait_for(lambda: mesh.log_path.stat().st_size == 0)
    with mesh.log_path.open("a") as log:
        log.write("4th\n")
    assert response.readline().endswith(b" 4th\n")
    mesh.log_path.with_suffix(".1").unlink()
    # The container stops: its last words come through, then the stream ends.
    with mesh.log_path.open("a") as log:
        log.write("last\n")
    mesh.running = False
    rest = response.read()
    assert rest.endswith(b" last\n") and rest.count(b"\n") == 1


def test_log_follow_ends_when_the_client_goes(mesh: Mesh) -> None:
    mesh.log_path.write_text("first\n")
    response = mesh.get("/api/v1/namespaces/default/pods/web/log?follow=true")
    assert response.readline() == b"first\n"
    assert mesh.logs_served == 0
    mesh._clients.pop().close()
    wait_for(lambda: mesh.logs_served == 1, what="the log handler to notice the client is gone")
    assert mesh.running  # the container still runs: the client going is what ended the stream


def test_log_of_a_file_not_there_yet(mesh: Mesh) -> None:
    assert mesh.get("/api/v1/namespaces/default/pods/web/log").read() == b""
    response = mesh.get("/api/v1/namespaces/default/pods/web/log?follow=true&tailLines=1")
    mesh.log_path.write_text("born\n")
    assert response.readline() == b"born\n"
    mesh.running = False
    assert response.read() == b""


@needs_kubectl
def test_kubectl_logs(mesh: Mesh, kubeconfig: Path) -> None:
    mesh.log_path.write_text("alpha\nbeta\ngamma\n")
    result = run_kubectl(kubeconfig, "logs", "web")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alpha\nbeta\ngamma\n"
    result = run_kubectl(kubeconfig, "logs", "web", "--tail=1", "--timestamps")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\S+Z gamma\n", result.stdout), result.stdout


@needs_kubectl
def test_kubectl_logs_follow(mesh: Mesh, kubeconfig: Path) -> None:
    mesh.log_path.write_text("alpha\n")
    process = subprocess.Popen(
        kubectl_command(kubeconfig, "logs", "-f", "web"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl_env(kubeconfig.parent),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "alpha\n"
        with mesh.log_path.open("a") as log:
            log.write("beta\n")
        assert process.stdout.readline() == "beta\n"
        mesh.running = False
        assert process.wait(timeout=20) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


# -- pods/proxy --------------------------------------------------------------------------------------------------


@needs_kubectl
def test_kubectl_get_raw_through_the_proxy(mesh: Mesh, kubeconfig: Path) -> None:
    result = run_kubectl(
        kubeconfig, "get", "--raw", f"/api/v1/namespaces/default/pods/web:{HTTP_PORT}/proxy/hello/there?x=1&y=2"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "method": "GET",
        "path": "/hello/there",
        "body": "",
        "host": f"localhost:{HTTP_PORT}",
    }
    seen = mesh.proxied[-1]
    assert seen["query"] == "x=1&y=2"
    assert "Authorization" not in seen["headers"]  # the mesh's token stays with the API server
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"


def test_proxy_keeps_status_content_type_body_and_streams_chunks(mesh: Mesh) -> None:
    context = ssl.create_default_context(cadata=mesh.credentials.ca_pem.decode())
    connection = http.client.HTTPSConnection("127.0.0.1", mesh.port, context=context, timeout=20)
    auth = {"Authorization": f"Bearer {mesh.credentials.token}"}
    connection.request(
        "POST",
        f"/api/v1/namespaces/default/pods/web:{HTTP_PORT}/proxy/submit",
        body=b"payload",
        headers={**auth, "Content-Type": "text/plain", "X-Custom": "kept"},
    )
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "application/json; charset=utf-8"
    assert json.loads(response.read())["body"] == "payload"
    assert mesh.proxied[-1]["headers"]["X-Custom"] == "kept"
    connection.request("GET", f"/api/v1/namespaces/default/pods/web:{HTTP_PORT}/proxy/missing", headers=auth)
    response = connection.getresponse()
    assert (response.status, response.getheader("Content-Type"), response.read()) == (
        404,
        "text/html; charset=utf-8",
        b"nothing here",
    )
    connection.request("GET", f"/api/v1/namespaces/default/pods/web:{HTTP_PORT}/proxy/chunked", headers=auth)
    response = connection.getresponse()
    assert response.getheader("Content-Type") == "application/x-ndjson"
    assert [json.loads(line) for line in response.read().splitlines()] == [{"part": 0}, {"part": 1}, {"part": 2}]
    # A Unix socket behind the port (as the Envoy admin is).
    connection.request("GET", f"/api/v1/namespaces/default/pods/web:{ADMIN_PORT}/proxy/stats", headers=auth)
    assert json.loads(connection.getresponse().read())["path"] == "/stats"
    connection.request("GET", f"/api/v1/namespaces/default/pods/web:{CLOSED_PORT}/proxy/", headers=auth)
    response = connection.getresponse()
    status = json.loads(response.read())
    assert response.status == 503 and status["reason"] == "ServiceUnavailable"
    assert "connection refused" in status["message"]
    connection.close()


# -- pods/portforward --------------------------------------------------------------------------------------------


def test_official_client_port_forward(mesh: Mesh, kubeconfig: Path) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    try:
        api = client.CoreV1Api(api_client)
        forward = portforward(
            api.connect_get_namespaced_pod_portforward, "web", "default", ports=f"{ECHO_PORT},{CLOSED_PORT}"
        )
        sock = forward.socket(ECHO_PORT)
        sock.settimeout(10)
        sock.sendall(b"ping over websocket")
        received = b""
        while len(received) < len(b"ping over websocket"):
            received += sock.recv(100)
        assert received == b"ping over websocket"
        wait_for(lambda: forward.error(CLOSED_PORT) is not None, what="the error channel of the closed port")
        assert "error forwarding port 81 to pod web, uid uid-web" in forward.error(CLOSED_PORT)
        assert "connection refused" in forward.error(CLOSED_PORT)
        # The pod closes the connection: the client's socket sees the end.
        sock.sendall(b"CLOSE")
        assert sock.recv(100) == b""
        assert forward.error(ECHO_PORT) is None
        # Every port's connection has ended: the server closes the WebSocket, as the kubelet does.
        wait_for(lambda: not forward.connected, what="the server to close the WebSocket")
        sock.close()
        forward.close()
        forward.websocket.shutdown()  # close() does nothing once the server has closed the WebSocket
    finally:
        api_client.close()
    assert mesh.upgrades and mesh.upgrades[0].startswith("GET websocket v5.channel.k8s.io,v4.channel.k8s.io")


def test_official_client_port_forward_to_a_unix_socket_port(mesh: Mesh, kubeconfig: Path) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    try:
        api = client.CoreV1Api(api_client)
        forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports=str(ADMIN_PORT))
        sock = forward.socket(ADMIN_PORT)
        sock.settimeout(10)
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b'"path": "/stats"' in answer
        wait_for(lambda: not forward.connected, what="the server to close the WebSocket")
        sock.close()
        forward.close()
        forward.websocket.shutdown()
    finally:
        api_client.close()


def test_port_forward_over_base64_channels(mesh: Mesh) -> None:
    context = {"ca_certs": str(mesh.directory / "credentials" / "ca.crt"), "cert_reqs": ssl.CERT_REQUIRED}
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{mesh.port}/api/v1/namespaces/default/pods/web/portforward?ports={ECHO_PORT}",
        header=[f"Authorization: Bearer {mesh.credentials.token}"],
        subprotocols=["v4.base64.channel.k8s.io"],
        sslopt=context,
        timeout=10,
    )
    try:
        assert ws.subprotocol == "v4.base64.channel.k8s.io"
        port = base64.b64encode(struct.pack("<H", ECHO_PORT)).decode()
        assert {ws.recv(), ws.recv()} == {"0" + port, "1" + port}
        ws.send("0" + base64.b64encode(b"text mode").decode())
        assert ws.recv() == "0" + base64.b64encode(b"text mode").decode()
    finally:
        ws.close()


def test_port_forward_refusals(mesh: Mesh) -> None:
    plain = mesh.get("/api/v1/namespaces/default/pods/web/portforward?ports=80")
    assert plain.status == 400 and json.loads(plain.read())["message"] == "Upgrade request required"
    for query, message in [
        ("", 'query parameter "port" is required'),
        ("?ports=0", "ports must be between 1 and 65535"),
    ]:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                f"wss://127.0.0.1:{mesh.port}/api/v1/namespaces/default/pods/web/portforward{query}",
                header=[f"Authorization: Bearer {mesh.credentials.token}"],
                subprotocols=["v4.channel.k8s.io"],
                sslopt={"ca_certs": str(mesh.directory / "credentials" / "ca.crt")},
                timeout=10,
            )
        assert refused.value.status_code == 400
        assert message in json.loads(refused.value.resp_body or b"{}")["message"]


class PortForward:
    """A running ``kubectl port-forward`` and the local port it listens on."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.stderr = ""
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if match is None:
            self.close()
            raise AssertionError(f"kubectl port-forward did not start: {line!r} {self.stderr}")
        self.local_port = int(match.group(1))

    def exchange(self, payload: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.local_port), timeout=10) as sock:
            sock.sendall(payload)
            received = b""
            while len(received) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            return received

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stderr is not None and self.process.stdout is not None
        self.stderr = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()


@needs_kubectl
@pytest.mark.parametrize(
    ("minor", "env", "expected_upgrade"),
    [
        (33, {}, "GET websocket SPDY/3.1+portforward.k8s.io"),
        (33, {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}, "POST SPDY/3.1 portforward.k8s.io"),
        (27, {}, "POST SPDY/3.1 portforward.k8s.io"),
    ],
    ids=["1.33-websocket", "1.33-spdy", "1.27-spdy"],
)
def test_kubectl_port_forward(
    mesh: Mesh, kubeconfig: Path, minor: int, env: dict[str, str], expected_upgrade: str
) -> None:
    forward = PortForward(
        kubectl_command(kubeconfig, "port-forward", "pod/web", f":{ECHO_PORT}", minor=minor),
        kubectl_env(kubeconfig.parent, **env),
    )
    try:
        assert forward.exchange(b"hello through kubectl") == b"hello through kubectl"
        big = os.urandom(300_000)
        assert forward.exchange(big) == big
        # Several connections at once share the one upgraded connection.
        results: list[bytes] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(forward.exchange(f"conn {i}".encode() * 100)))
            for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == sorted(f"conn {i}".encode() * 100 for i in range(4))
    finally:
        forward.close()
    assert mesh.upgrades == [expected_upgrade], mesh.upgrades


@needs_kubectl
def test_kubectl_port_forward_falls_back_to_spdy(mesh: Mesh, kubeconfig: Path) -> None:
    mesh.refuse_websocket = True
    forward = PortForward(
        kubectl_command(kubeconfig, "port-forward", "pod/web", f":{ECHO_PORT}"), kubectl_env(kubeconfig.parent)
    )
    try:
        assert forward.exchange(b"fallback") == b"fallback"
    finally:
        forward.close()
    assert mesh.upgrades == ["GET websocket SPDY/3.1+portforward.k8s.io", "POST SPDY/3.1 portforward.k8s.io"]


@needs_kubectl
def test_kubectl_port_forward_reports_the_pods_refusal(mesh: Mesh, kubeconfig: Path) -> None:
    forward = PortForward(
        kubectl_command(kubeconfig, "port-forward", "pod/web", f":{CLOSED_PORT}"), kubectl_env(kubeconfig.parent)
    )
    try:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=10) as sock:
            assert sock.recv(100) == b""
        # kubectl 1.33 gives up on the whole connection after an error, as with a real kubelet.
        forward.process.wait(timeout=20)
    finally:
        forward.close()
    assert "error forwarding port 81 to pod web, uid uid-web" in forward.stderr
    assert "connection refused" in forward.stderr


# -- pods/exec ---------------------------------------------------------------------------------------------------


def test_exec_status_words() -> None:
    assert exec_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    failure = exec_status(["sh", "-c", "exit 3"], 3)
    assert failure["reason"] == "NonZeroExitCode" and failure["details"]["causes"] == [
        {"reason": "ExitCode", "message": "3"}
    ]
    assert (
        failure["message"]
        == "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
    )
    internal = exec_status(["nope"], FileNotFoundError(2, "No such file or directory"))
    assert internal["reason"] == "InternalError" and internal["code"] == 500
    assert internal["message"].startswith("Internal error occurred: error executing command in container: ")


def test_exec_refusals() -> None:
    from aiohttp.test_utils import make_mocked_request

    async def refusal(path: str, **kwargs: Any) -> ApiError:
        with pytest.raises(ApiError) as refused:
            await serve_exec(make_mocked_request("GET", path), **kwargs)
        return refused.value

    async def scenario() -> list[tuple[int, str]]:
        async def run(_: ExecIO) -> int:
            return 0

        cases = [
            await refusal("/exec?command=ls&stdout=true", endpoint=object()),  # a pod that cannot exec
            await refusal("/exec?stdout=true", run=run),
            await refusal("/exec?command=ls", run=run),
            await refusal("/exec?command=ls&stdout=true", run=run),  # no upgrade asked for
        ]
        return [(error.code, error.message) for error in cases]

    assert asyncio.run(scenario()) == [
        (400, "exec is not supported for this pod"),
        (400, "you must specify at least 1 command"),
        (400, "you must specify at least 1 of stdin, stdout, stderr"),
        (400, "Upgrade request required"),
    ]


EXEC_CASES = [
    pytest.param(33, {}, "GET websocket v5.channel.k8s.io", id="1.33-websocket"),
    pytest.param(33, {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}, "POST SPDY/3.1 v5.channel.k8s.io", id="1.33-spdy"),
    pytest.param(27, {}, "POST SPDY/3.1 v4.channel.k8s.io", id="1.27-spdy"),
]


@needs_kubectl
@pytest.mark.parametrize(("minor", "env", "expected_upgrade"), EXEC_CASES)
def test_kubectl_exec(mesh: Mesh, kubeconfig: Path, minor: int, env: dict[str, str], expected_upgrade: str) -> None:
    command = kubectl_command(
        kubeconfig, "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3", minor=minor
    )
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=kubectl_env(kubeconfig.parent, **env), check=False
    )
    assert (result.returncode, result.stdout) == (3, "out\n"), result.stderr
    assert result.stderr.startswith("err\n"), result.stderr
    assert mesh.upgrades[0].startswith(expected_upgrade), mesh.upgrades


@needs_kubectl
@pytest.mark.parametrize(("minor", "env", "expected_upgrade"), EXEC_CASES)
def test_kubectl_exec_with_stdin(
    mesh: Mesh, kubeconfig: Path, minor: int, env: dict[str, str], expected_upgrade: str
) -> None:
    command = kubectl_command(kubeconfig, "exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z; echo done", minor=minor)
    payload = "hello stdin\n" * 2000
    result = subprocess.run(
        command,
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
        env=kubectl_env(kubeconfig.parent, **env),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload.upper() + "done\n"
    assert mesh.upgrades[0].startswith(expected_upgrade), mesh.upgrades


@needs_kubectl
def test_kubectl_exec_of_a_missing_command(mesh: Mesh, kubeconfig: Path) -> None:
    result = run_kubectl(kubeconfig, "exec", "web", "--", "/no/such/command")
    assert result.returncode != 0
    assert "error executing command in container" in result.stderr


def test_official_client_exec(mesh: Mesh, kubeconfig: Path) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    try:
        api = client.CoreV1Api(api_client)
        response = stream(
            api.connect_get_namespaced_pod_exec,
            "web",
            "default",
            command=["sh", "-c", "read line; echo got $line; echo oops >&2; exit 5"],
            container="via-endpoint",
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        response.write_stdin("value\n")
        response.run_forever(timeout=20)
        assert response.read_stdout() == "got value\n"
        assert response.read_stderr() == "oops\n"
        assert response.returncode == 5
        response.close()
        response.sock.shutdown()  # close() leaves the socket open once the server has closed the WebSocket
    finally:
        api_client.close()
    assert mesh.upgrades == ["GET websocket v5.channel.k8s.io,v4.channel.k8s.io"]


def test_official_client_exec_with_a_terminal(mesh: Mesh, kubeconfig: Path) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    try:
        api = client.CoreV1Api(api_client)
        response = stream(
            api.connect_get_namespaced_pod_exec,
            "web",
            "default",
            command=["report-size"],
            stdin=True,
            stdout=True,
            stderr=True,
            tty=True,
            _preload_content=False,
        )
        # Two resize messages in one frame, as a terminal resized twice quickly may send them.
        response.write_channel(4, json.dumps({"Width": 132, "Height": 43}) + json.dumps({"Width": 80, "Height": 24}))
        response.run_forever(timeout=20)
        assert response.read_stdout() == "132x43\n"
        assert response.returncode == 0
        response.close()
        response.sock.shutdown()
    finally:
        api_client.close()
