"""Suite 9 — the nightly soak: steady open-loop load for hours under a seeded chaos schedule (issue 14).

Runs only with ``--clover-soak=DURATION`` (deselected otherwise). The plan — load, SLOs, recovery allowance,
which faults arrive how often, quiet windows, guardrails — is ``--clover-soak-plan`` (default
``faults/schedules/nightly.yaml``). Every fault event is judged on its own (its SLO while in force, its time to
recover, the errors it caused); a guardrail stops the night early, reverting every fault; the report is
checkpointed every ``--clover-checkpoint`` (default 5 min), so a crash at hour 7 keeps hours 0–7.

    pytest suites/test_09_soak.py --clover-soak=8h                       # the night
    pytest suites/test_09_soak.py --clover-soak=90s --clover-time-scale=0.05 \\
        --clover-soak-plan=faults/schedules/ci.yaml                      # the same machinery in 90 s
"""

from __future__ import annotations

import pytest

from pytest_clover import Soak


@pytest.mark.soak
def test_nightly_soak_meets_its_slos_event_by_event(soak: Soak) -> None:
    soak.run()
