"""Suite 7 — circuit breaker: a connection-pool limit turns overload into fast 503s, not a latency pile-up.

clover-server pods serve one request at a time in 50 ms (a worker-pool server: ~80 requests/s for the 4
pods), and the load is 2× that. With the breaker (2 connections + 2 pending per client sidecar) the excess
gets an immediate 503 (UO) and the rest stays fast; without it every request queues, the queue grows by
~80 requests a second, and latency grows for as long as the overload lasts.
"""

from __future__ import annotations

from pytest_clover import Faults, Load, Mesh
from suites.conftest import VNFControl
from suites.thresholds import ISTIO

OVERLOAD_RATE = 160.0


def test_breaker_sheds_load_fast_instead_of_queueing(mesh: Mesh, load: Load, faults: Faults, vnf: VNFControl) -> None:
    vnf("clover-server", latency_ms=50, max_concurrency=1)
    run = load.start(rate=OVERLOAD_RATE)
    with faults.apply(ISTIO / "clover-server-circuit-breaker.yaml") as breaker:
        run.phase("breaker", seconds=10)
        breaker.verify()
    run.phase("no breaker", seconds=10)
    result = run.stop()

    shed, queued = result.phases["breaker"], result.phases["no breaker"]
    assert shed.errors > 0, "the breaker never opened: the overload did not exceed the pool"
    assert queued.error_rate <= 0.01, f"without a breaker requests queue rather than fail ({queued.errors} errors)"
    assert queued.p99_ms >= 3 * shed.p99_ms, (
        f"p99 without breaker {queued.p99_ms:.0f} ms vs with {shed.p99_ms:.0f} ms: no pile-up was prevented"
    )
    overflow = sum(v for k, v in mesh.stats("http-lb").items() if k.endswith("upstream_rq_pending_overflow"))
    assert overflow >= 1, "Envoy counted no pending overflow"
