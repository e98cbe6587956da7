"""`clover down`: wall time of the command that stops a running SDC mesh (target ≤ 1 s on 2 cores).

How: N=7 cycles of ``clover up`` (fixtures/sdc: 9 pods, 18 processes plus the zygote and the supervisor) then
``clover down``, each in a fresh state dir under an isolated ``CLOVER_RUNTIME_DIR``. The figure is the wall
time of the ``clover down`` process, from spawn to exit (median and max over the cycles). A cycle only counts
if ``down`` left nothing: every process the mesh recorded (apps, Envoys, zygote, supervisor) is gone (a
zombie counts as gone: it runs nothing and holds no port), and so are the state folder and the registry entry;
otherwise the benchmark fails.

Breakdown, from a thread that polls while ``down`` runs: when the supervisor is gone (it has stopped every
pod by then), and the rest (the client's own checks and the interpreter's exit).

Reference, measured in the same run (once per cycle): the floor set by the command itself, the wall time of
``clover down`` when no mesh runs (interpreter start, imports, the backend lookup).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SDC, isolated_runtime, report
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import MeshState, ProcessRecord
from tests.helpers import median

CYCLES = 7
TARGET_S = 1.0


def clover_argv() -> list[str]:
    """The installed ``clover`` script beside this interpreter, as a user runs it; else ``python -m``."""
    script = Path(sys.executable).with_name("clover")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pytest_clover.cli"]


def run_clover(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*clover_argv(), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"clover {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc


def gone_at(record: ProcessRecord, start: float, stop: threading.Event, out: list[float]) -> None:
    """Append the time (from ``start``) at which ``record`` stopped running, unless ``stop`` comes first."""
    while True:
        if not record.alive():
            out.append(time.perf_counter() - start)
            return
        if stop.is_set():
            return
        time.sleep(0.005)


def one_cycle(runtime: Path, index: int) -> dict[str, float]:
    state_dir = runtime / f"state-{index}"
    env = dict(os.environ, CLOVER_STATE_DIR=str(state_dir))
    floor, _ = run_clover(["down"], env)  # nothing runs here yet
    run_clover(["up", "--topology", str(SDC), "--seed", "7"], env)
    state = MeshState(state_dir)
    owner = state.owner()
    recorded = state.read_pids()
    mesh_id = state.read_mesh()["mesh_id"]
    if owner is None or not owner.alive() or len(recorded) < 10:
        raise RuntimeError(f"`clover up` left no running mesh at {state_dir}: owner {owner}, {len(recorded)} processes")
    stop = threading.Event()
    supervisor_gone: list[float] = []
    start = time.perf_counter()
    watcher = threading.Thread(target=gone_at, args=(owner, start, stop, supervisor_gone), daemon=True)
    watcher.start()
    try:
        elapsed, proc = run_clover(["down"], env)
    finally:
        stop.set()
        watcher.join()
        if owner.alive():  # `down` failed: stop the mesh anyway, so the next cycle starts clean
            LocalBackend(state_dir=state_dir).teardown()
    if "stopped and removed" not in proc.stdout:
        raise RuntimeError(f"`clover down` did not stop the mesh: {proc.stdout}")
    left = [r for r in [owner, *recorded] if r.alive()]
    registry = runtime / "registry" / f"{mesh_id}.json"
    if left or state_dir.exists() or registry.exists():
        raise RuntimeError(
            f"`clover down` left {[(r.role, r.pid) for r in left]} running, state dir there: {state_dir.exists()}, "
            f"registry entry there: {registry.exists()}"
        )
    return {
        "down": elapsed,
        "supervisor_gone": supervisor_gone[0] if supervisor_gone else float("nan"),
        "floor": floor,
        "processes": float(len(recorded) + 1),
    }


def main() -> None:
    cycles: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    with isolated_runtime("down") as runtime:
        for i in range(CYCLES):
            cycles.append(one_cycle(runtime, i))
            c = cycles[-1]
            print(
                f"  cycle {i + 1}: clover down {c['down']:.3f} s ({int(c['processes'])} processes): supervisor gone "
                f"+{c['supervisor_gone']:.3f} s, then {c['down'] - c['supervisor_gone']:.3f} s to exit; "
                f"floor (no mesh) {c['floor']:.3f} s",
                flush=True,
            )
    load_after = os.getloadavg()[0]
    downs = [c["down"] for c in cycles]
    x, worst, z = median(downs), max(downs), median(c["floor"] for c in cycles)
    gone = median(c["supervisor_gone"] for c in cycles)
    print(
        f"  breakdown (median of {CYCLES}): supervisor gone +{gone:.3f} s after the command started; "
        f"1-minute load average {load_before:.2f} before, {load_after:.2f} after (2 cores is 2.0)"
    )
    report(
        "down",
        f"clover down: median {x:.3f} s (max {worst:.3f} s) — target {TARGET_S:.1f} s → ratio {x / TARGET_S:.2f}; "
        f"floor (clover down, no mesh) {z:.3f} s → ratio {x / z:.2f}",
        figure=x,
        unit="s",
        target=TARGET_S,
        max=worst,
        floor=z,
        floor_ratio=x / z,
        supervisor_gone=gone,
        load_before=load_before,
        load_after=load_after,
    )


if __name__ == "__main__":
    main()
