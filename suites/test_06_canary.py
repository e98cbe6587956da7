"""Suite 6 — canary: shift http-lb from v1 to v2 step by step; commit if v2 holds the SLO, else roll back.

OPNFV Clover's A-B test, done properly: each step is measured (its own load run), judged against the
baseline SLO, and a failing step rolls all traffic back to v1 at once.
"""

from __future__ import annotations

from pytest_clover import Faults, Load, Mesh
from suites.conftest import VNFControl
from suites.thresholds import BASELINE_MAX_ERROR_RATE, BASELINE_P99_MS, NOMINAL_RATE

STEPS = (10, 25, 50, 100)
STEP_SECONDS = 5


def progressive_canary(load: Load, faults: Faults) -> tuple[str, list[tuple[int, float, float]]]:
    """Shift v2 through STEPS; returns the verdict and (weight, p99, error rate) per step measured."""
    measured = []
    for weight in STEPS:
        faults.shift("http-lb", {"v1": 100 - weight, "v2": weight}).verify()
        run = load.start(rate=NOMINAL_RATE)
        run.phase(f"v2 at {weight}%", seconds=STEP_SECONDS)
        phase = run.stop().phases[f"v2 at {weight}%"]
        measured.append((weight, phase.p99_ms, phase.error_rate))
        if phase.p99_ms > BASELINE_P99_MS or phase.error_rate > BASELINE_MAX_ERROR_RATE:
            faults.shift("http-lb", {"v1": 100, "v2": 0}).verify()
            return "rollback", measured
    return "commit", measured


def test_canary_commits_a_healthy_v2(mesh: Mesh, load: Load, faults: Faults) -> None:
    verdict, measured = progressive_canary(load, faults)
    assert verdict == "commit", f"a healthy v2 was rolled back: {measured}"
    assert [w for w, _, _ in measured] == list(STEPS)


def test_canary_rolls_back_a_slow_v2(mesh: Mesh, load: Load, faults: Faults, vnf: VNFControl) -> None:
    vnf("http-lb", only=[p.name for p in mesh.pods("http-lb") if p.version == "v2"], extra_latency_ms=300)
    verdict, measured = progressive_canary(load, faults)
    assert verdict == "rollback", f"a v2 adding 300 ms was committed: {measured}"
    # 10 % of requests on v2 already put p99 past the SLO: the very first step rolls back.
    assert len(measured) == 1 and measured[0][1] >= 300, measured
