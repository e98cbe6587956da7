"""A client for the VNF's control API, for tests and suites that make one pod misbehave.

Standard library only (http.client: never routed through a proxy from the environment), so it can be
used from any process without pulling in aiohttp.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from ..errors import CloverError


def configure(url: str, timeout: float = 10.0, **settings: Any) -> dict[str, Any]:
    """PUT ``settings`` to ``<url>/clover/control`` (e.g. ``latency_ms=200, error_rate=0.5``).

    Returns the pod's new configuration; a refused setting raises CloverError with the VNF's reason.
    """
    return _call("PUT", url, "/clover/control", settings, timeout)


def read(url: str, path: str = "/clover/control", timeout: float = 10.0) -> dict[str, Any]:
    """GET a control endpoint (``/clover/control``, ``/clover/stats``, ``/clover/alerts``…)."""
    return _call("GET", url, path, None, timeout)


def _call(method: str, url: str, path: str, payload: Any, timeout: float) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        conn.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
        resp = conn.getresponse()
        data = resp.read()
    except OSError as exc:
        raise CloverError(f"the VNF control API at {url} did not answer: {exc}") from exc
    finally:
        conn.close()
    if resp.status >= 400:
        raise CloverError(
            f"the VNF control API at {url}{path} refused {payload}: {resp.status} {data.decode(errors='replace')}"
        )
    result: dict[str, Any] = json.loads(data)
    return result
