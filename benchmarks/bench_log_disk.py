"""Log disk: what the embedded mesh's logs cost per second at a given rate, and what 8 hours take with and without
the bound of :mod:`pytest_clover.backends.local.logrotate`.

How: two SDC meshes, one after the other, each under the same open-loop load (``RATE`` requests/s for
``SECONDS`` s through the ingress gateway: 5 Envoys and 4 VNF processes per request).

1. Unbounded (a limit no file reaches): the bytes each log file gained, per file kind (``access.log``,
   ``envoy.log``, ``envoy.stdout.log``, ``app.log``, the supervisor's and the zygote's) and per pod, give bytes
   per request and bytes per second. Projected to 8 h at ``RATE``: each file's rate × 8 h without the bound;
   with the default bound, each file's ``min(that, (1 + generations) × (its limit + one check's writes))``.
2. Bounded for real: a small limit (``PROOF_MAX_BYTES``, the default generations and check period) that the
   busiest access log reaches every few seconds. The access logs on disk (every copy) are summed every 0.25 s;
   the most seen is compared with what the bound allows each of them: ``(1 + generations) × (limit + one
   check's writes)``, those writes from the file's rate in phase 1 (the same seed gives the same pods).

The figure is the most access-log disk seen in phase 2; its target, what the bound allows (ratio ≤ 1: the
bound holds). Also printed: the supervisor's CPU in each phase (the checks, and the rotations), and the
8-hour projections with their ratio, all from numbers measured in this one run.

Run: ``python benchmarks/bench_log_disk.py [RATE] [SECONDS]`` (defaults 500 and 30).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import psutil

from benchmarks._common import SDC, isolated_runtime, report, teardown_checked
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.logrotate import (
    ACCESS_LOG,
    GENERATIONS_ENV,
    MAX_BYTES_ENV,
    LogLimits,
)

RATE = 500.0
"""Requests per second by default: the nightly soak's rate (issue 14)."""
SECONDS = 30.0
NIGHT_S = 8 * 3600.0
PROOF_MAX_BYTES = 2 * 1024 * 1024
MB = 1024.0 * 1024.0


def log_kind(path: Path) -> str | None:
    """``access.log.2`` → ``access.log``; None for a file that is not a log."""
    name = path.name
    if ".log" not in name or name.startswith("."):
        return None
    if name.endswith(".out"):
        return name
    return name.split(".log", 1)[0] + ".log"


def log_files(root: Path) -> Iterator[tuple[str, str, Path]]:
    """(owner: a pod's name or ``mesh``, kind, path) of every log file and rotated copy under a state folder."""
    for path in root.rglob("*"):
        kind = log_kind(path) if path.name != "supervisor.out" else "supervisor.out"
        if kind is None or not path.is_file():
            continue
        owner = path.parent.name if path.parent.parent.name == "pods" else "mesh"
        yield owner, kind, path


def sizes(root: Path) -> dict[tuple[str, str], int]:
    """Bytes on disk per (owner, kind), all generations together."""
    out: dict[tuple[str, str], int] = {}
    for owner, kind, path in log_files(root):
        with contextlib.suppress(FileNotFoundError):
            out[(owner, kind)] = out.get((owner, kind), 0) + path.stat().st_size
    return out


async def open_loop(url: str, rate: float, seconds: float) -> tuple[int, int, float]:
    """Send ``rate`` requests/s for ``seconds`` s on schedule; (sent, errors, elapsed s)."""
    errors = 0
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        start = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    errors += resp.status != 200
            except aiohttp.ClientError:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(total)))
        return total, errors, time.perf_counter() - start


def supervisor_cpu(mesh: LocalBackend) -> float:
    owner = mesh.state.owner()
    if owner is None:
        return 0.0
    times = psutil.Process(owner.pid).cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def mesh_with(runtime: Path, name: str, env: dict[str, str]) -> Iterator[LocalBackend]:
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the supervisor reads its limits from the environment it starts with
    try:
        backend = LocalBackend(SDC, runtime / name, seed=7)
        backend.deploy(timeout=90)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield backend
    finally:
        teardown_checked(backend)


class DiskSampler:
    """The access logs' total on disk (every pod's, every copy) every 0.25 s, in a thread; the most seen."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.most = max(self.most, sum(n for (_, kind), n in sizes(self.root).items() if kind == ACCESS_LOG))
            self.samples += 1

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    rate = float(args[0]) if args else RATE
    seconds = float(args[1]) if len(args) > 1 else SECONDS
    defaults = LogLimits()
    with isolated_runtime("log-disk") as runtime:
        # 1. Unbounded: what each file gains.
        with mesh_with(runtime, "unbounded", {MAX_BYTES_ENV: "1000GiB"}) as mesh:
            pods = len(mesh.pods())
            before, cpu_before = sizes(mesh.state.root), supervisor_cpu(mesh)
            sent, errors, elapsed = asyncio.run(open_loop(mesh.ingress_url() + "/logs", rate, seconds))
            time.sleep(0.3)  # Envoys flush their access logs every 100 ms
            after, cpu_after = sizes(mesh.state.root), supervisor_cpu(mesh)
        unbounded_cpu = (cpu_after - cpu_before) / elapsed
        # Bytes per request of each file (owner, kind), and of each kind over the mesh.
        per_file = {key: (after.get(key, 0) - before.get(key, 0)) / sent for key in after}
        per_request: dict[str, float] = {}
        for (_owner, kind), grown in per_file.items():
            per_request[kind] = per_request.get(kind, 0.0) + grown

        def kept_at_most(limits: LogLimits, kind: str, bytes_per_request: float, horizon: float) -> float:
            """What one file keeps on disk after ``horizon`` seconds at ``rate``: all it wrote, or at most its
            copies and itself at their limit plus one check's writes (the check's period, and a quarter of it
            for its lateness on busy cores)."""
            grows = bytes_per_request * rate * horizon
            limit = limits.max_bytes if kind == ACCESS_LOG else limits.other_max_bytes
            one_check = bytes_per_request * rate * limits.interval * 1.25
            return min(grows, (1 + limits.generations) * (limit + one_check))

        night_free: dict[str, float] = {}
        night_bounded: dict[str, float] = {}
        for (_owner, kind), bytes_per_request in per_file.items():
            night_free[kind] = night_free.get(kind, 0.0) + bytes_per_request * rate * NIGHT_S
            night_bounded[kind] = night_bounded.get(kind, 0.0) + kept_at_most(
                defaults, kind, bytes_per_request, NIGHT_S
            )
        # The bound as the module documents it, a file's writes between two checks being the busiest file's.
        slack = int(max(per_file.values()) * rate * defaults.interval * 1.25)
        documented = defaults.disk_bound(pods, slack=slack)

        # 2. Bounded for real, at a limit the busiest access log crosses every few seconds.
        proof = LogLimits(max_bytes=PROOF_MAX_BYTES, generations=defaults.generations)
        env = {MAX_BYTES_ENV: str(PROOF_MAX_BYTES), GENERATIONS_ENV: str(proof.generations)}
        with mesh_with(runtime, "bounded", env) as mesh, DiskSampler(mesh.state.root) as disk:
            cpu_before = supervisor_cpu(mesh)
            sent2, errors2, elapsed2 = asyncio.run(open_loop(mesh.ingress_url() + "/logs", rate, seconds))
            time.sleep(2 * proof.interval)
            bounded_cpu = (supervisor_cpu(mesh) - cpu_before) / elapsed2
            rotations = sum(
                1 for line in mesh.state.log_file.read_text(errors="replace").splitlines() if "logs: rotated" in line
            )
        written2 = sum(per_request.values()) * sent2
        # Its bound, file by file from the rates of phase 1 (the same pods by name: the same seed).
        proof_bound = sum(
            kept_at_most(proof, kind, bytes_per_request, elapsed2)
            for (_owner, kind), bytes_per_request in per_file.items()
            if kind == ACCESS_LOG
        )

    width = max(len(k) for k in per_request)
    print(
        f"  SDC, {pods} pods; open loop {rate:.0f}/s for {seconds:.0f} s: {sent} sent, {errors} errors in {elapsed:.1f} s"
    )
    print(f"  {'file kind'.ljust(width)}  bytes/request  kB/s at {rate:.0f}/s  8 h unbounded  8 h bounded (defaults)")
    for kind in sorted(per_request, key=lambda k: -per_request[k]):
        print(
            f"  {kind.ljust(width)}  {per_request[kind]:13.1f}  {per_request[kind] * rate / 1024:12.1f}"
            f"  {night_free[kind] / MB:10.0f} MB  {night_bounded[kind] / MB:10.1f} MB"
        )
    free, kept = sum(night_free.values()), sum(night_bounded.values())
    print(
        f"  8 h at {rate:.0f}/s: {free / MB:.0f} MB unbounded, {kept / MB:.0f} MB with the default bound "
        f"(ratio {kept / free:.4f}); the documented worst case for {pods} pods and {defaults.dead_pods_kept} dead "
        f"ones kept, every file full: {documented / MB:.0f} MB"
    )
    print(
        f"  bounded run (max {PROOF_MAX_BYTES / MB:.0f} MiB × {1 + proof.generations}): {sent2} sent, {errors2} "
        f"errors, {rotations} rotations, ~{written2 / MB:.0f} MB written; access logs at most {disk.most / MB:.1f} MB on disk "
        f"({disk.samples} samples) against {proof_bound / MB:.1f} MB allowed"
    )
    print(
        f"  supervisor CPU: {unbounded_cpu * 100:.1f} % unbounded, {bounded_cpu * 100:.1f} % while rotating "
        f"(checks every {defaults.interval:g} s)"
    )
    report(
        "log_disk",
        f"access logs on disk under load at most {disk.most / MB:.1f} MB against {proof_bound / MB:.1f} MB allowed "
        f"(ratio {disk.most / proof_bound:.2f}); 8 h at {rate:.0f}/s: {free / MB:.0f} MB → {kept / MB:.0f} MB",
        figure=disk.most / MB,
        unit="MB",
        target=proof_bound / MB,
        bytes_per_request=per_request,
        night_unbounded_mb=free / MB,
        night_bounded_mb=kept / MB,
        documented_bound_mb=documented / MB,
        rotations=rotations,
        supervisor_cpu_unbounded=unbounded_cpu,
        supervisor_cpu_bounded=bounded_cpu,
        achieved_rps=sent / elapsed,
        errors=errors + errors2,
    )


if __name__ == "__main__":
    main()
