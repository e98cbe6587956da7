"""Synchronous HTTP for pytest-clover's own calls: Envoy admin APIs, the sample VNF's control API, ``clover request``.

One place decides what every such call does:

- keep-alive: one :class:`requests.Session` per thread (a session is not safe to share between threads);
- no proxy from the environment (``trust_env`` off): the mesh is on loopback, and an ``HTTP_PROXY`` set for
  the outside world must never see its traffic;
- retries only where nothing can have happened yet: a refused or failed connection is tried twice more
  (a sidecar restarting, a listener being replaced); a request that reached the server is never repeated;
- a timeout on every call;
- Unix sockets too: ``http+unix://<percent-quoted socket path>/path`` (see :func:`unix_url`), how the embedded
  mesh's Envoys serve their admin API (a socket in a private folder, which no other local user can reach).

Errors are ``requests`` exceptions; each caller translates them into a
:class:`~pytest_clover.errors.CloverError` that says which pod or API did not answer (``raise … from exc``).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3._collections import RecentlyUsedContainer
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util.retry import Retry

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "UNIX_SCHEME",
    "ConnectionFailed",
    "RequestException",
    "request",
    "session",
    "unix_url",
]

DEFAULT_TIMEOUT_S = 5.0
"""Seconds a call may take unless the caller says otherwise: Envoy's admin API answers in milliseconds, and a
loaded CI machine can still stall a process for a second or two."""
CONNECT_RETRIES = 2
"""Extra attempts after a failed connection (never after the request was sent)."""
RETRY_BACKOFF_S = 0.05
"""First pause between connection attempts (doubling: 0.05 s, then 0.1 s)."""
POOL_SIZE = 32
"""Connections kept per host: every pod of a mesh is its own host, and the checks poll many of them."""

UNIX_SCHEME = "http+unix"

RequestException = requests.RequestException
ConnectionFailed = requests.ConnectionError
"""No connection could be made (refused, no such socket, timed out connecting): nothing was sent."""

_local = threading.local()


def session() -> requests.Session:
    """This thread's session (made on first use)."""
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        current.trust_env = False
        retry = Retry(
            total=CONNECT_RETRIES,
            connect=CONNECT_RETRIES,
            read=0,
            status=0,
            other=0,
            redirect=0,
            backoff_factor=RETRY_BACKOFF_S,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        current.mount("http://", adapter)
        current.mount(f"{UNIX_SCHEME}://", _UnixAdapter(retry))
        _local.session = current
    return current


def unix_url(socket_path: str | os.PathLike[str], path: str = "/") -> str:
    """The URL of ``path`` (``/stats?format=json``) on the HTTP server listening on a Unix socket."""
    return f"{UNIX_SCHEME}://{quote(os.fspath(socket_path), safe='')}{path}"


class _UnixConnection(HTTPConnection):
    """urllib3's HTTP/1.1 connection over a Unix stream socket instead of TCP."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)  # a float or None by now: the pool resolves it before connecting
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            # What urllib3 raises for a failed TCP connect: the retry policy counts it as one (never re-sent).
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        return sock


class _UnixPool(HTTPConnectionPool):
    ConnectionCls = _UnixConnection


class _UnixAdapter(HTTPAdapter):
    """Serves ``http+unix://`` URLs: one keep-alive pool per socket, the most recently used kept."""

    def __init__(self, retry: Retry) -> None:
        super().__init__(max_retries=retry)
        self._pools: RecentlyUsedContainer[str, _UnixPool] = RecentlyUsedContainer(
            POOL_SIZE, dispose_func=lambda pool: pool.close()
        )

    def _pool(self, url: str | None) -> _UnixPool:
        socket_path = unquote(urlsplit(url or "").netloc)
        try:
            return self._pools[socket_path]
        except KeyError:
            pool = _UnixPool("localhost", maxsize=POOL_SIZE, socket_path=socket_path)
            self._pools[socket_path] = pool
            return pool

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> HTTPConnectionPool:
        return self._pool(request.url)

    def get_connection(self, url: str | bytes, proxies: Any = None) -> HTTPConnectionPool:
        return self._pool(url.decode() if isinstance(url, bytes) else url)

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        return request.path_url

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        # The URL's host is the quoted socket path: no server needs to see it.
        request.headers["Host"] = "localhost"

    def close(self) -> None:
        self._pools.clear()
        super().close()


def request(
    method: str,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """One call with this thread's session; the whole body is read before it returns."""
    return session().request(method, url, timeout=timeout, json=json, headers=headers)
