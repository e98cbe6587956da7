"""One HTTP/1.1 answer of Envoy's admin API, read whole (``Connection: close``): its status and its body.

The admin API is reached over a raw connection — a Unix socket on the embedded mesh, a port-forward on a cluster —
not through an HTTP library, so the answer is taken apart here, chunked bodies included, once for every backend.
"""

from __future__ import annotations

__all__ = ["parse_response"]


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """``(status, body)`` of a complete HTTP/1.1 response; status 0 when ``raw`` is no HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, body
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)
