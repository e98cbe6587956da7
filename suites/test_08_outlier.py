"""Suite 8 — outlier detection: a clover-server pod that starts failing is ejected; errors stop.

Each client sidecar (the two http-lb pods) ejects the pod after 3 consecutive 5xx, so the client sees a
handful of errors, then none. maxEjectionPercent is 100 in the rule: Istio's default of 10 % never
ejects anything in a cluster of fewer than 10 pods.
"""

from __future__ import annotations

from pytest_clover import Faults, Load, Mesh
from suites.conftest import VNFControl
from suites.thresholds import (
    ISTIO,
    NOMINAL_RATE,
    RECOVERY_SECONDS,
    RECOVERY_WINDOWS,
    long_enough_to_judge_recovery,
)


def test_failing_pod_is_ejected_and_errors_stop(mesh: Mesh, load: Load, faults: Faults, vnf: VNFControl) -> None:
    with faults.apply(ISTIO / "clover-server-outlier-detection.yaml"):
        run = load.start(rate=NOMINAL_RATE)
        run.phase("healthy", seconds=5)
        bad = sorted(p.name for p in mesh.pods("clover-server"))[0]
        vnf("clover-server", only=[bad], error_rate=1.0)
        run.phase("failing pod", seconds=long_enough_to_judge_recovery(15, load.time_scale))
        result = run.stop()
        ejected = sum(v for k, v in mesh.stats("http-lb").items() if k.endswith("outlier_detection.ejections_active"))

    failing = result.phases["failing pod"]
    assert failing.errors >= 1, "the failing pod never answered: outlier detection was not exercised"
    assert failing.errors <= 2 * 3 * 2, f"{failing.errors} errors: ejection should stop them after ~3 per caller"
    assert ejected >= 1, "no Envoy reports an active ejection"
    recovered = result.recovery_seconds(after="healthy", max_error_rate=0.0, window_seconds=RECOVERY_WINDOWS)
    assert recovered is not None and recovered <= RECOVERY_SECONDS, f"errors lasted {recovered} s"
