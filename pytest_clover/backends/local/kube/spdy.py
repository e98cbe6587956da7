"""The server side of SPDY/3.1 as kubectl speaks it for ``port-forward``: frames, header blocks and streams.

kubectl multiplexes a port-forward connection with SPDY/3.1 (through moby/spdystream): each forwarded TCP
connection is a pair of client-initiated streams, and the server accepts streams, answers them, moves data
and closes them. kubectl 1.31+ tunnels the SPDY byte stream inside WebSocket binary messages
(``SPDY/3.1+portforward.k8s.io``); older ones, and newer ones when the WebSocket upgrade fails, upgrade the
HTTP connection itself to ``SPDY/3.1``. Either way :class:`SpdySession` only sees bytes: the caller feeds it
what arrives (:meth:`SpdySession.feed`) and gives it a coroutine that sends bytes.

What is implemented is what spdystream uses: SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, PING (echoed),
GOAWAY; SETTINGS, WINDOW_UPDATE and HEADERS are read and ignored, as spdystream does (it implements no flow
control, so neither side sends WINDOW_UPDATE). Header blocks are zlib streams primed with the SPDY/3
dictionary, one compression context per direction for the whole connection.
"""

from __future__ import annotations

import asyncio
import enum
import struct
import zlib
from collections.abc import Awaitable, Callable

__all__ = [
    "DICTIONARY",
    "FrameType",
    "ProtocolError",
    "RstStatus",
    "SpdySession",
    "SpdyStream",
    "decode_header_block",
    "encode_header_block",
]

VERSION = 3
CONTROL_BIT = 0x8000
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
# 24 bits of length in every frame header.
MAX_FRAME_LENGTH = (1 << 24) - 1
# Data written to a stream goes out in frames of at most this size, so that one busy stream cannot hold
# the connection for long (the frames of all streams share one byte stream).
DATA_CHUNK = 32 * 1024
# How many DATA frames a stream buffers before the reader of the connection waits for its consumer: the
# backpressure spdystream also applies, since it implements no SPDY flow control.
STREAM_BUFFER_FRAMES = 16

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed
# header names and values, then a run of common value fragments.
_DICTIONARY_WORDS = (
    (
        "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
        "allow authorization cache-control connection content-base content-encoding content-language content-length "
        "content-location content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
        "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status|200 OK|version HTTP/1.1 url public set-cookie "
        "keep-alive origin"
    )
    .replace(" ", "|")
    .replace("200|OK", "200 OK")
    .split("|")
)
_DICTIONARY_TAIL = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    b"403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    b"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    b"chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    b"text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(word)) + word.encode() for word in _DICTIONARY_WORDS) + _DICTIONARY_TAIL


class FrameType(enum.IntEnum):
    """SPDY/3 control frame types."""

    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    """RST_STREAM status codes."""

    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


class ProtocolError(Exception):
    """The peer broke SPDY/3.1 framing: the connection cannot go on."""


def encode_header_block(headers: dict[str, list[str]]) -> bytes:
    """The uncompressed SPDY/3 name/value block: 32-bit counts and lengths, lower-case names, several values
    of one name joined by NUL."""
    parts = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        encoded_name = name.lower().encode("utf-8")
        value = "\x00".join(values).encode("utf-8")
        parts += [struct.pack(">I", len(encoded_name)), encoded_name, struct.pack(">I", len(value)), value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> dict[str, list[str]]:
    """Parse an uncompressed name/value block. Raises :class:`ProtocolError` when it is malformed."""
    view = memoryview(block)
    offset = 0

    def take(length: int) -> bytes:
        nonlocal offset
        if offset + length > len(view):
            raise ProtocolError("truncated header block")
        chunk = bytes(view[offset : offset + length])
        offset += length
        return chunk

    (count,) = struct.unpack(">I", take(4))
    headers: dict[str, list[str]] = {}
    for _ in range(count):
        (name_length,) = struct.unpack(">I", take(4))
        name = take(name_length).decode("utf-8", "replace")
        (value_length,) = struct.unpack(">I", take(4))
        value = take(value_length).decode("utf-8", "replace")
        if not name or name != name.lower():
            raise ProtocolError(f"invalid header name {name!r}")
        if name in headers:
            raise ProtocolError(f"duplicate header {name!r}")
        headers[name] = value.split("\x00")
    return headers


def _control_frame(frame_type: FrameType, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", CONTROL_BIT | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def _data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class SpdyStream:
    """One stream the client opened. :meth:`read` returns ``b""`` once the client finished (or reset) it."""

    def __init__(self, session: SpdySession, stream_id: int, headers: dict[str, list[str]], fin: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue(STREAM_BUFFER_FRAMES)
        self.remote_closed = fin
        self.local_closed = False
        self.reset_by_peer = False
        self.replied = False
        if fin:
            self._incoming.put_nowait(b"")

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    async def read(self) -> bytes:
        """The next bytes the client sent, ``b""`` at the end of the stream."""
        if self.remote_closed and self._incoming.empty():
            return b""
        data = await self._incoming.get()
        if not data:
            # Leave the end marker for any later reader.
            self.remote_closed = True
        return data

    async def reply(self) -> None:
        """Accept the stream (SYN_REPLY with no headers): spdystream's CreateStream waits for it."""
        if not self.replied:
            self.replied = True
            await self.session.send_syn_reply(self.id)

    async def write(self, data: bytes) -> None:
        """Send ``data`` on the stream; dropped silently once the stream is closed or reset."""
        for start in range(0, len(data), DATA_CHUNK):
            if self.local_closed or self.reset_by_peer:
                return
            await self.session.send_raw(_data_frame(self.id, 0, data[start : start + DATA_CHUNK]))

    async def close(self) -> None:
        """Finish the server's half of the stream (an empty DATA frame with FIN)."""
        if self.local_closed or self.reset_by_peer:
            return
        self.local_closed = True
        await self.session.send_raw(_data_frame(self.id, FLAG_FIN, b""))
        self.session.forget_if_done(self)

    async def reset(self, status: RstStatus = RstStatus.CANCEL) -> None:
        """Abort the stream in both directions."""
        if self.reset_by_peer:
            return
        self.local_closed = True
        await self.session.send_raw(_control_frame(FrameType.RST_STREAM, 0, struct.pack(">II", self.id, status)))
        self._abort()

    async def _finish_remote(self) -> None:
        """The client sent FIN: readers get what is buffered, then the end."""
        if not self.remote_closed:
            self.remote_closed = True
            await self._incoming.put(b"")
        self.session.forget_if_done(self)

    def _abort(self) -> None:
        """The stream was reset (or the connection went): buffered data is moot, readers see the end now."""
        self.reset_by_peer = True
        self.remote_closed = True
        while not self._incoming.empty():
            self._incoming.get_nowait()
        self._incoming.put_nowait(b"")
        self.session.forget_if_done(self)


class SpdySession:
    """A server-side SPDY/3.1 connection over any byte transport.

    Feed it the bytes that arrive with :meth:`feed` (it waits while a stream's buffer is full), call
    :meth:`close` at the end of input; take the streams the client opens with :meth:`accept`, which returns
    None once the connection is over. ``send`` writes bytes to the peer (calls are serialized)."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._send_lock = asyncio.Lock()
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(level=zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)
        self._streams: dict[int, SpdyStream] = {}
        self._last_stream_id = 0
        self._new_streams: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self.closed = False

    # -- input -------------------------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Process bytes from the peer. Raises :class:`ProtocolError` on framing the session cannot follow."""
        if self.closed:
            return
        self._buffer += data
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                return
            flags = second >> 24
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise ProtocolError(f"SPDY version {version} is not supported (only 3)")
                await self._control(first & 0xFFFF, flags, payload)
            else:
                await self._data(first & 0x7FFFFFFF, flags, payload)

    def close(self) -> None:
        """The input ended (or the transport failed): end every stream and :meth:`accept`."""
        if self.closed:
            return
        self.closed = True
        for stream in list(self._streams.values()):
            stream._abort()
        self._streams.clear()
        self._new_streams.put_nowait(None)

    async def accept(self) -> SpdyStream | None:
        """The next stream the client opened, None once the connection is over."""
        stream = await self._new_streams.get()
        if stream is None:
            self._new_streams.put_nowait(None)
        return stream

    async def _control(self, frame_type: int, flags: int, payload: bytes) -> None:
        if frame_type == FrameType.SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("short SYN_STREAM")
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._headers(payload[10:])
            # Client streams are odd and increase (SPDY/3 §2.3.2); anything else is refused, not fatal.
            if stream_id % 2 == 0 or stream_id <= self._last_stream_id:
                await self.send_raw(
                    _control_frame(FrameType.RST_STREAM, 0, struct.pack(">II", stream_id, RstStatus.PROTOCOL_ERROR))
                )
                return
            self._last_stream_id = stream_id
            stream = SpdyStream(self, stream_id, headers, fin=bool(flags & FLAG_FIN))
            if flags & FLAG_UNIDIRECTIONAL:
                stream.local_closed = True
            self._streams[stream_id] = stream
            self._new_streams.put_nowait(stream)
        elif frame_type in (FrameType.SYN_REPLY, FrameType.HEADERS):
            # Nothing to act on, but the block must go through the decompressor to keep it in step.
            if len(payload) < 4:
                raise ProtocolError("short header frame")
            self._headers(payload[4:])
        elif frame_type == FrameType.RST_STREAM:
            if len(payload) < 8:
                raise ProtocolError("short RST_STREAM")
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            found = self._streams.get(stream_id)
            if found is not None:
                found._abort()
        elif frame_type == FrameType.PING:
            if len(payload) != 4:
                raise ProtocolError("PING of the wrong size")
            # Odd ids are the client's pings: answer with the same frame. Even ones would answer our own.
            if struct.unpack(">I", payload)[0] % 2 == 1:
                await self.send_raw(_control_frame(FrameType.PING, 0, payload))
        elif frame_type == FrameType.GOAWAY:
            self.close()
        # SETTINGS, WINDOW_UPDATE and unknown control frames: ignored, as spdystream does.

    async def _data(self, stream_id: int, flags: int, data: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        if data:
            await stream._incoming.put(data)
        if flags & FLAG_FIN:
            await stream._finish_remote()

    def _headers(self, compressed: bytes) -> dict[str, list[str]]:
        try:
            block = self._inflate.decompress(compressed)
        except zlib.error as error:
            raise ProtocolError(f"bad header compression: {error}") from error
        return decode_header_block(block)

    # -- output ------------------------------------------------------------------------------------------

    async def send_raw(self, frame: bytes) -> None:
        """Send one encoded frame (frames never interleave)."""
        async with self._send_lock:
            await self._send(frame)

    async def send_syn_reply(self, stream_id: int, headers: dict[str, list[str]] | None = None) -> None:
        """Answer a client stream. Compression and sending happen under one lock: the peer's decompressor
        must see the blocks in the order they were compressed."""
        async with self._send_lock:
            block = self._deflate.compress(encode_header_block(headers or {})) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            await self._send(_control_frame(FrameType.SYN_REPLY, 0, struct.pack(">I", stream_id) + block))

    async def goaway(self) -> None:
        """Tell the client the server opens no more streams and accepts none after the last it saw."""
        await self.send_raw(_control_frame(FrameType.GOAWAY, 0, struct.pack(">II", self._last_stream_id, 0)))

    def forget_if_done(self, stream: SpdyStream) -> None:
        """Drop a stream both sides have finished."""
        if stream.remote_closed and (stream.local_closed or stream.reset_by_peer):
            self._streams.pop(stream.id, None)
