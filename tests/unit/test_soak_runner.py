"""The soak runner's pieces without a mesh: the recovery rule, the failure message, and that an interrupt mid-event
reverts the fault and leaves a final soak.json (issue 14). The engine end to end is tests/integration/test_soak.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.errors import SLOViolation
from pytest_clover.load.result import LoadResult
from pytest_clover.soak.guardrails import Trip
from pytest_clover.soak.runner import SOAK_FILE, EventRecord, Soak, SoakOutcome, SoakSettings, _recovered_at
from pytest_clover.soak.schedule import ScheduledFault, parse_plan
from pytest_clover.timeline import Timeline


def _row(start: float, *, p99: float = 5.0, errors: int = 0, requests: int = 50) -> dict[str, Any]:
    return {
        "start": start,
        "end": start + 1.0,
        "phase": "quiet",
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else math.nan,
        "p99_ms": p99 if requests else math.nan,
    }


OBJECTIVES = {"p99_ms": 100.0, "max_error_rate": 0.01}


def test_recovery_starts_at_the_first_run_of_good_windows() -> None:
    rows = [_row(10.0, p99=900), _row(11.0, p99=900), _row(12.0), _row(13.0, errors=5), _row(14.0), _row(15.0)]
    # After the fault ended at 10: 12 is good but 13 is not, so the run that covers 2 s starts at 14.
    assert _recovered_at(rows, 10.0, OBJECTIVES, 2) == 14.0
    assert _recovered_at(rows, 10.0, OBJECTIVES, 3) is None
    # Good from the very first window after the end: recovered at the end itself (0 s to recover).
    assert _recovered_at([_row(20.0), _row(21.0)], 20.0, OBJECTIVES, 2) == 20.0
    # A window without requests never counts as recovered.
    assert _recovered_at([_row(30.0, requests=0), _row(31.0), _row(32.0)], 30.0, OBJECTIVES, 2) == 31.0
    # Windows before the end are not looked at.
    assert _recovered_at([_row(8.0), _row(9.0)], 10.0, OBJECTIVES, 1) is None


def _event(event_id: str, verdict: str, reason: str = "") -> EventRecord:
    scheduled = ScheduledFault(event_id, 10.0, 5.0, "delay", "http-lb", {"delay": "100ms"})
    return EventRecord(scheduled, verdict=verdict, reason=reason)


PLAN = """
load: {rate: 20}
slo: {p99_ms: 100, max_error_rate: 0.01}
recovery: {within_s: 5s, windows: 2}
schedule:
  mode: fixed
  timeline:
    - {at: 0.2s, kind: delay, target: http-lb, duration: 30s, params: {delay: 100ms}}
"""


def test_the_failure_lists_the_guardrail_and_each_failed_event() -> None:
    plan = parse_plan(PLAN)
    trip = Trip("burn_rate", 1000.0, "burn rate over 14.4× for both 1h and 5m windows", {})
    events = [_event("f01", "passed"), _event("f02", "failed", "did not recover within 5 s"), _event("f03", "failed")]
    outcome = SoakOutcome(plan, events, [], trip, "guardrail", 100.0)
    with pytest.raises(SLOViolation) as info:
        outcome.check()
    text = str(info.value)
    assert "3 problems" in text
    assert "guardrail burn_rate tripped: burn rate over 14.4×" in text
    assert "f02 delay on http-lb: did not recover within 5 s" in text and "f03" in text and "f01" not in text
    SoakOutcome(plan, [_event("f01", "passed"), _event("f02", "inconclusive")], [], None, "", 1.0).check()


class _Handle:
    description = "delay 100ms on http-lb"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def verify(self) -> None:
        self.log.append("verify")
        raise KeyboardInterrupt  # Ctrl-C while the fault is in force

    def revert(self) -> None:
        self.log.append("revert")


class _Faults:
    def __init__(self) -> None:
        self.log: list[str] = []

    def delay(self, target: str, **params: Any) -> _Handle:
        self.log.append(f"delay {target} {params}")
        return _Handle(self.log)

    def revert_all(self) -> None:
        self.log.append("revert_all")


class _Run:
    def __init__(self, tmp_path: Path) -> None:
        self.live_result = LoadResult(mode="open", rate=20.0, users=None, seed=0, report_dir=tmp_path)
        self.phases: list[str] = []
        self.alive = True
        self.stopped = False

    def begin_phase(self, name: str) -> None:
        self.phases.append(name)

    def end_phase(self) -> None:
        self.phases.append("-")

    def stop(self) -> LoadResult:
        self.stopped, self.alive = True, False
        return self.live_result


class _Load:
    def __init__(self, run: _Run) -> None:
        self.run = run

    def start(self, *, rate: float) -> _Run:
        assert rate == 20.0
        return self.run


def test_an_interrupt_mid_event_reverts_the_fault_and_writes_a_final_soak_file(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    run, faults = _Run(tmp_path), _Faults()
    soak = Soak(
        SoakSettings(duration_s=60.0, plan=plan, seed=1, checkpoint_s=600.0),
        load=_Load(run),
        faults=faults,
        slo_checks=[],
        timeline=Timeline(),
        report_dir=tmp_path / "test",
        save_result=lambda result: None,
        save_timeline=lambda: None,
        recoveries={},
    )
    with pytest.raises(KeyboardInterrupt):
        soak.run()
    assert faults.log == ["delay http-lb {'delay': '100ms'}", "verify", "revert", "revert_all"]
    assert run.stopped and run.phases == ["quiet", "fault", "-"]
    data = json.loads((tmp_path / "test" / SOAK_FILE).read_text(encoding="utf-8"))
    assert data["state"] == "stopped" and data["stopped_by"] == "interrupted" and data["checkpoint"]["final"]
    [event] = data["events"]
    assert event["start"] is not None and event["end"] is not None and event["verdict"] == "inconclusive"


AUTOGROUPS = Path("/proc/sys/kernel/sched_autogroup_enabled")
PRIORITY_PROBE = (
    "import os; from pytest_clover.soak.checkpoint import lower_priority; print(lower_priority()); "
    "print(os.sched_getscheduler(0) == os.SCHED_IDLE); "
    "print(open('/proc/self/autogroup').read().split()[-1:] if os.path.exists('/proc/self/autogroup') else '-')"
)


def _group_niceness() -> str:
    # Empty for a session in the kernel's default group (PID 1's session, where a CI runner may start us): the
    # root task group, which is no autogroup, and whose weight nobody can change.
    return str(Path("/proc/self/autogroup").read_text().split()[-1:])


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_the_checkpoint_report_builds_at_idle_priority_so_the_mesh_and_the_load_keep_the_cores() -> None:
    # As the soak starts it: in a session of its own, whose scheduling group (Linux autogroups) weighs as much as
    # pytest's and the mesh's session unless its niceness is lowered too.
    done = subprocess.run(
        [sys.executable, "-c", PRIORITY_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        start_new_session=True,
    )
    got, idle, group_nice = done.stdout.split("\n")[:3]
    assert idle == "True" and "idle scheduling class" in got
    if AUTOGROUPS.exists() and AUTOGROUPS.read_text().strip() == "1":
        assert group_nice == "['19']" and "session group niceness 19" in got


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="Linux autogroups")
def test_lowering_the_priority_never_touches_a_session_group_shared_with_others() -> None:
    # Run in this session (pytest's, the mesh's): only the process itself goes idle, never the group.
    before = _group_niceness()
    done = subprocess.run(
        [sys.executable, "-c", PRIORITY_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    got, _idle, group_nice = done.stdout.split("\n")[:3]
    assert "session group" not in got and group_nice == before
    assert _group_niceness() == before
