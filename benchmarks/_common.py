"""Shared plumbing for the benchmarks: an isolated runtime dir, one SDC mesh, statistics, result lines.

Every benchmark runs its mesh under a fresh ``CLOVER_RUNTIME_DIR`` (so it never sees or sweeps a user's
meshes), tears it down in ``finally``, and then checks that no process started from that directory is
still alive. Each benchmark prints one human-readable line and one machine-readable ``BENCH-RESULT``
line (JSON) that ``run_all.py`` collects into its summary table.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
SDC = ROOT / "fixtures" / "sdc"
RESULT_PREFIX = "BENCH-RESULT "

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_clover.backends.local.client import LocalBackend  # noqa: E402


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sample")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ours(proc: psutil.Process, marker: str) -> bool:
    try:
        if any(marker in part for part in proc.cmdline()):
            return True
        return marker in proc.cwd()
    except psutil.Error:
        return False


def leftover_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line or working directory lies under ``marker`` (our runtime dir)."""
    me = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != me and _ours(p, marker)]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def isolated_runtime(prefix: str) -> Iterator[Path]:
    """A temp dir as ``CLOVER_RUNTIME_DIR``; afterwards: no process from it may remain, and it is removed."""
    # SIGTERM (e.g. run_all's time limit) unwinds like Ctrl-C, so the `finally` blocks tear the mesh down.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    path = Path(tempfile.mkdtemp(prefix=f"clover-bench-{prefix}-"))
    previous = {k: os.environ.get(k) for k in ("CLOVER_RUNTIME_DIR", "CLOVER_STATE_DIR")}
    os.environ["CLOVER_RUNTIME_DIR"] = str(path)
    os.environ.pop("CLOVER_STATE_DIR", None)
    try:
        yield path
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # Teardown is synchronous, but give SIGKILLed children a moment to be reaped before looking.
        deadline = time.monotonic() + 5.0
        left = leftover_processes(str(path))
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = leftover_processes(str(path))
        for proc in left:
            with contextlib.suppress(psutil.Error):
                print(
                    f"WARNING: process left behind after teardown, killing it: {proc.pid} {proc.cmdline()}",
                    file=sys.stderr,
                )
                proc.kill()
        shutil.rmtree(path, ignore_errors=True)


def teardown_checked(backend: LocalBackend) -> None:
    """``backend.teardown()``, then make sure the supervisor and every process below it are gone."""
    procs: list[psutil.Process] = []
    owner = backend.state.owner()
    if owner is not None and owner.alive():
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(owner.pid)
            procs = [root, *root.children(recursive=True)]
    try:
        backend.teardown()
    finally:
        _, alive = psutil.wait_procs(procs, timeout=5.0)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                print(
                    f"WARNING: process left behind after teardown, killing it: {proc.pid} {proc.cmdline()}",
                    file=sys.stderr,
                )
                proc.kill()


@contextlib.contextmanager
def sdc_mesh(runtime: Path, name: str = "state", seed: int = 7, timeout: float = 90.0) -> Iterator[LocalBackend]:
    """The SDC sample deployed on the embedded mesh under ``runtime``; torn down however the block ends."""
    backend = LocalBackend(SDC, runtime / name, seed=seed)
    backend.deploy(timeout=timeout)  # tears down by itself if it fails
    try:
        yield backend
    finally:
        teardown_checked(backend)


def report(name: str, line: str, *, figure: float, unit: str, target: float, **extra: Any) -> None:
    """Print the human line and the machine-readable line ``run_all.py`` reads."""
    print(line, flush=True)
    payload = {"name": name, "figure": figure, "unit": unit, "target": target, "ratio": figure / target, **extra}
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


@contextlib.contextmanager
def helper_server(script: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run ``script --serve ARGS`` as the target server; yield it with the words of its "PORT n ..." line.

    The server runs in its own process so it never shares a GIL with the generator being measured; it is
    stopped (SIGTERM, then SIGKILL) however the block ends.
    """
    proc = subprocess.Popen(
        [sys.executable, script, "--serve", *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().split()
        if len(words) != 4:
            raise RuntimeError(f"the benchmark server did not start (exit code {proc.wait(5)})")
        yield proc, words
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
