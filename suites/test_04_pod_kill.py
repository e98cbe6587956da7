"""Suite 4 — pod kill: one clover-server pod is killed (SIGKILL) under load.

Budget: the requests in flight on the killed pod fail (at 50 requests/s and ~10 ms, about one); new
connections to it are refused and Istio's default retry (connect-failure) sends them to another pod. The
Deployment replaces the pod under a new name, and the baseline SLO holds again within seconds.
"""

from __future__ import annotations

from pytest_clover import SLO, Faults, Load, Mesh
from suites.thresholds import (
    BASELINE_P99_MS,
    NOMINAL_RATE,
    RECOVERY_SECONDS,
    RECOVERY_WINDOWS,
    long_enough_to_judge_recovery,
)

ERROR_BUDGET = 0.01


def test_pod_kill_stays_in_its_error_budget_and_recovers(mesh: Mesh, load: Load, faults: Faults, slo: SLO) -> None:
    run = load.start(rate=NOMINAL_RATE)
    run.phase("baseline", seconds=10)
    kill = faults.kill("clover-server", count=1)
    kill.verify()  # the pod is gone and a replacement is ready
    run.phase("kill", seconds=10)
    run.phase("recovery", seconds=long_enough_to_judge_recovery(15, load.time_scale, already=10))
    result = run.stop()

    slo.check(result, phase="baseline", p99_ms=BASELINE_P99_MS, max_error_rate=0.0)
    slo.check(result, phase="kill", max_error_rate=ERROR_BUDGET)
    slo.check(result, phase="recovery", p99_ms=BASELINE_P99_MS, max_error_rate=0.0)
    recovered = result.recovery_seconds(
        after="baseline", p99_ms=BASELINE_P99_MS, max_error_rate=0.0, window_seconds=RECOVERY_WINDOWS
    )
    assert recovered is not None and recovered <= RECOVERY_SECONDS, f"recovery took {recovered} s"
