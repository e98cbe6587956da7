"""Startup: mesh start to all-ready for fixtures/sdc (target ≤ 3 s on 2 cores).

How: N=3 deploy/teardown cycles of the SDC sample (9 pods: the ingress gateway plus 8 application pods,
each with a real Envoy sidecar), each in a fresh state dir under an isolated ``CLOVER_RUNTIME_DIR``. The
figure is the wall time of ``LocalBackend.deploy()`` from call to return (it returns once every pod is
ready and the last endpoints push has been ACKed): median and min over the cycles. The supervisor's
status events give the breakdown, relative to the ``deploy()`` call: last ``pod-created``, first and last
``pod-ready``.

Reference, measured in the same run (once before each cycle): the floor set by the interpreter and the
aiohttp import on this machine: the wall time for 8 ``python -c "import aiohttp.web"`` processes started
in parallel (one per application process of the topology).

This is the one benchmark that deploys more than once: deploying is what it measures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SDC, isolated_runtime, report, teardown_checked
from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import median

CYCLES = 3
TARGET_S = 3.0
APP_PROCESSES = 8


def parallel_imports(n: int = APP_PROCESSES) -> float:
    """Wall time for ``n`` interpreters importing aiohttp.web, all started at once."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", "import aiohttp.web"], stdin=subprocess.DEVNULL) for _ in range(n)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"`python -c 'import aiohttp.web'` failed: exit codes {codes}")
    return elapsed


def one_cycle(runtime: Path, index: int) -> dict[str, float]:
    backend = LocalBackend(SDC, runtime / f"state-{index}", seed=7)
    wall0 = time.time()
    start = time.perf_counter()
    backend.deploy(timeout=90)
    elapsed = time.perf_counter() - start
    try:
        events = backend.status()["events"]
    finally:
        teardown_checked(backend)
    created = [e["time"] - wall0 for e in events if e["event"] == "pod-created"]
    ready = [e["time"] - wall0 for e in events if e["event"] == "pod-ready"]
    if not created or not ready:
        raise RuntimeError(f"no pod-created / pod-ready events after deploy: {events}")
    return {
        "deploy": elapsed,
        "first_created": min(created),
        "last_created": max(created),
        "first_ready": min(ready),
        "last_ready": max(ready),
        "pods": float(len(created)),
    }


def main() -> None:
    cycles: list[dict[str, float]] = []
    floors: list[float] = []
    with isolated_runtime("startup") as runtime:
        for i in range(CYCLES):
            floors.append(parallel_imports())
            cycles.append(one_cycle(runtime, i))
            c = cycles[-1]
            print(
                f"  cycle {i + 1}: deploy {c['deploy']:.2f} s ({int(c['pods'])} pods): first pod-created "
                f"+{c['first_created']:.2f} s, last pod-created +{c['last_created']:.2f} s, first pod-ready "
                f"+{c['first_ready']:.2f} s, last pod-ready +{c['last_ready']:.2f} s; floor {floors[-1]:.2f} s",
                flush=True,
            )
    deploys = [c["deploy"] for c in cycles]
    x, y, z = median(deploys), min(deploys), median(floors)

    def med(key: str) -> float:
        return median(c[key] for c in cycles)

    print(
        f"  breakdown (median of {CYCLES}, from the deploy() call): last pod-created +{med('last_created'):.2f} s, "
        f"first pod-ready +{med('first_ready'):.2f} s, last pod-ready +{med('last_ready'):.2f} s"
    )
    report(
        "startup",
        f"startup: median {x:.2f} s (min {y:.2f} s) — target {TARGET_S:.1f} s → ratio {x / TARGET_S:.2f}; "
        f"floor ({APP_PROCESSES} parallel aiohttp imports) {z:.2f} s → ratio {x / z:.2f}",
        figure=x,
        unit="s",
        target=TARGET_S,
        min=y,
        floor=z,
        floor_ratio=x / z,
        last_created=med("last_created"),
        first_ready=med("first_ready"),
        last_ready=med("last_ready"),
    )


if __name__ == "__main__":
    main()
