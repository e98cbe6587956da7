"""Suite 2 — LB delay: 50 % of requests to http-lb wait 500 ms; latency degrades exactly that way.

The fault sits on the caller's route (proxy-access-control → http-lb), as in Istio. Half the requests
pay 500 ms: the 25th percentile stays at baseline, the 75th moves past 500 ms, nothing fails, and when
the fault is removed the baseline SLO is met again within seconds.
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

DELAY_MS = 500


def test_lb_delay_degrades_latency_as_predicted(mesh: Mesh, load: Load, faults: Faults, slo: SLO) -> None:
    run = load.start(rate=NOMINAL_RATE)
    run.phase("baseline", seconds=10)
    with faults.delay("http-lb", f"{DELAY_MS}ms", percent=50) as fault:
        run.phase("fault", seconds=20)
        fault.verify()
    run.phase("recovery", seconds=long_enough_to_judge_recovery(15, load.time_scale))
    result = run.stop()

    slo.check(result, phase="baseline", p99_ms=BASELINE_P99_MS, max_error_rate=0.0)
    # A delay never fails a request: the route has no timeout.
    slo.check(result, phase="fault", p99_ms=DELAY_MS + BASELINE_P99_MS, max_error_rate=0.0)
    histogram = result.histogram("fault")
    p25_ms = histogram.get_value_at_percentile(25) / 1000
    p75_ms = histogram.get_value_at_percentile(75) / 1000
    assert p25_ms < BASELINE_P99_MS, f"p25 {p25_ms:.1f} ms: more than half the requests were delayed"
    assert DELAY_MS <= p75_ms <= DELAY_MS + BASELINE_P99_MS, f"p75 {p75_ms:.1f} ms: fewer than half were delayed"
    recovered = result.recovery_seconds(after="fault", p99_ms=BASELINE_P99_MS, window_seconds=RECOVERY_WINDOWS)
    assert recovered is not None and recovered <= RECOVERY_SECONDS, f"recovery took {recovered} s"
