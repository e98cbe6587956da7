"""Suite 3 — server abort: 10 % of requests to clover-server get 503, and Istio's retry semantics show.

- An injected abort fails requests at the rate injected (inside the binomial 99.9 % interval).
- A route retry policy on 5xx does NOT mask injected aborts: the fault filter answers before the router
  ever sees the request (istio#13705).
- The same policy DOES mask application 503s (each retry goes to another pod), while Istio's default
  policy (≥ 1.24: no retriable status codes) lets them through.
"""

from __future__ import annotations

from pytest_clover import Faults, Load, Mesh, PhaseStats
from suites.conftest import VNFControl
from suites.thresholds import ISTIO, NOMINAL_RATE, binomial_999

RATE = 0.10
PHASE = 15


def _inside(phase: PhaseStats, p: float) -> None:
    low, high = binomial_999(phase.requests, p)
    assert low <= phase.errors <= high, (
        f"{phase.name}: {phase.errors} errors in {phase.requests} requests; 99.9 % interval for {p:.0%} is {low:.0f}..{high:.0f}"
    )


def test_aborts_fail_as_injected_and_are_not_retried(mesh: Mesh, load: Load, faults: Faults, vnf: VNFControl) -> None:
    run = load.start(rate=NOMINAL_RATE)
    with faults.abort("clover-server", status=503, percent=RATE * 100) as abort:
        run.phase("abort", seconds=PHASE)
        abort.verify()
    with faults.apply(ISTIO / "clover-server-retry-5xx.yaml"):
        with faults.abort("clover-server", status=503, percent=RATE * 100):
            run.phase("abort, retries on 5xx", seconds=PHASE)
        vnf("clover-server", error_rate=RATE)
        run.phase("app errors, retries on 5xx", seconds=PHASE)
    run.phase("app errors, Istio default", seconds=PHASE)
    result = run.stop()

    _inside(result.phases["abort"], RATE)
    _inside(result.phases["abort, retries on 5xx"], RATE)  # aborts are never retried
    _inside(result.phases["app errors, Istio default"], RATE)  # the default policy does not retry a 503
    masked = result.phases["app errors, retries on 5xx"]
    # Three retries on other pods: a request fails only if 4 pods fail it in a row (10 %⁴ = 0.01 %).
    assert masked.error_rate <= 0.01, f"retries should mask app errors: {masked.errors} of {masked.requests} failed"
