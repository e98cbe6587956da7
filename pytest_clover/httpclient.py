"""Synchronous HTTP for pytest-clover's own calls: Envoy admin APIs, the sample VNF's control API, ``clover request``.

One place decides what every such call does:

- keep-alive: one :class:`requests.Session` per thread (a session is not safe to share between threads);
- no proxy from the environment (``trust_env`` off): the mesh is on loopback, and an ``HTTP_PROXY`` set for
  the outside world must never see its traffic;
- retries only where nothing can have happened yet: a refused or failed connection is tried twice more
  (a sidecar restarting, a listener being replaced); a request that reached the server is never repeated;
- a timeout on every call.

Errors are ``requests`` exceptions; each caller translates them into a
:class:`~pytest_clover.errors.CloverError` that says which pod or API did not answer (``raise … from exc``).
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = ["DEFAULT_TIMEOUT_S", "RequestException", "request", "session"]

DEFAULT_TIMEOUT_S = 5.0
"""Seconds a call may take unless the caller says otherwise: Envoy's admin API answers in milliseconds, and a
loaded CI machine can still stall a process for a second or two."""
CONNECT_RETRIES = 2
"""Extra attempts after a failed connection (never after the request was sent)."""
RETRY_BACKOFF_S = 0.05
"""First pause between connection attempts (doubling: 0.05 s, then 0.1 s)."""
POOL_SIZE = 32
"""Connections kept per host: every pod of a mesh is its own host, and the checks poll many of them."""

RequestException = requests.RequestException

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
        _local.session = current
    return current


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
