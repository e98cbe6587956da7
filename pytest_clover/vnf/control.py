"""A client for the sample VNF's control API, for tests and suites that make one pod misbehave.

Through :mod:`pytest_clover.httpclient` (keep-alive, never through a proxy from the environment), so it can be
used from any process without pulling in aiohttp.
"""

from __future__ import annotations

from typing import Any

from .. import httpclient
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
    try:
        response = httpclient.request(method, url.rstrip("/") + path, timeout=timeout, json=payload)
    except httpclient.RequestException as exc:
        raise CloverError(f"the VNF control API at {url} did not answer: {exc}") from exc
    if response.status_code >= 400:
        raise CloverError(
            f"the VNF control API at {url}{path} refused {payload}: {response.status_code} {response.text}"
        )
    try:
        result: dict[str, Any] = response.json()
    except ValueError as exc:
        raise CloverError(f"the VNF control API at {url}{path} answered something not JSON: {exc}") from exc
    return result
