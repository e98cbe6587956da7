"""Suite 1 — baseline: the SDC VNF meets its SLOs under nominal load, with nothing broken."""

from __future__ import annotations

import pytest

from pytest_clover import Load, Mesh
from suites.thresholds import BASELINE_MAX_ERROR_RATE, BASELINE_P99_MS, NOMINAL_RATE


@pytest.mark.slo(phase="steady", p99_ms=BASELINE_P99_MS, max_error_rate=BASELINE_MAX_ERROR_RATE)
def test_baseline_slos_hold_under_nominal_load(mesh: Mesh, load: Load) -> None:
    run = load.start(rate=NOMINAL_RATE)
    run.phase("steady", seconds=20)
    result = run.stop()
    steady = result.phases["steady"]
    # Open loop: the generator kept its schedule, so the mesh, not the client, set the numbers.
    assert steady.late <= 0.01 * steady.requests, f"{steady.late} of {steady.requests} requests were sent late"
    # Every request scheduled in the phase got its answer (requests count where they were sent, and the stop
    # waits for the last ones): none was lost between the generator and the mesh.
    scheduled = NOMINAL_RATE * (steady.end - steady.start)
    assert abs(steady.requests - scheduled) <= 1, f"{steady.requests} answered of {scheduled:.0f} scheduled"
