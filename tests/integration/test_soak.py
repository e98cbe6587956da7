"""Soaks on the real embedded mesh, compressed into seconds (issue 14).

Each test runs an inner pytest (a subprocess of its own, with its own mesh registry) whose test calls the ``soak``
fixture with a plan written here:

* a seeded random schedule: the same seed draws the same schedule as the plan module does on its own, every
  event is in ``soak.json`` and the report with a verdict of its own, the per-kind recovery reaches the history;
* a guardrail: a 100 % abort burns the error budget, the soak stops within seconds, and the inner test checks the
  mesh itself — no fault is left in any VirtualService — before the outer one reads why and when it stopped;
* a SIGKILL mid-soak: the checkpointed report is there, marked partial, and ``clover report`` finishes it from the
  saved data, with every event that had started by the last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_clover.backends.local.state import sweep
from pytest_clover.soak.schedule import draw_schedule, load_plan, schedule_to_json
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
QUIET = ("-p", "no:cacheprovider", "-p", "no:locust", "-p", "no:html", "-p", "no:hypothesispytest", "-p", "no:randomly")
TIME_SCALE = 0.05
"""A minute of plan lasts 3 s."""

# Objectives loose enough for a loaded 2-core machine: these tests are about the machinery (schedule, verdicts,
# guardrails, checkpoints), not about the sample's latency, which the suites judge.
RANDOM_PLAN = """
title: compressed soak
load: {rate: 40}
slo: {p99_ms: 1500, max_error_rate: 0.05}
recovery: {within_s: 8s, windows: 2}
schedule:
  mode: random
  start_after: 1m
  min_gap: 20s
  max_overlap: 1
  faults:
    - {kind: kill, target: clover-server, mtbf: 2m, params: {count: 1}, slo: {max_error_rate: 0.25}}
    - kind: delay
      target: http-lb
      mtbf: 2m
      duration: 1m
      params: {delay: 200ms, percent: 50}
      slo: {p99_ms: 2500, max_error_rate: 0.05}
"""

GUARDED_PLAN = """
title: a soak that burns its budget
load: {rate: 40}
slo: {p99_ms: 1500, max_error_rate: 0.05}
recovery: {within_s: 5s, windows: 2}
schedule:
  mode: fixed
  timeline:
    - {at: 4s, kind: abort, target: clover-server, duration: 60s, params: {status: 503, percent: 100}}
guardrails:
  error_budget: {slo_target: 0.99, stop_at: 1.0}
  min_requests: 40
  scope: run             # the whole session stops: the test after this one is not started
"""

SOAK_TEST = """
import pytest


def test_soak(soak):
    soak.run()
"""

GUARDED_TEST = """
def test_guarded_soak(soak, mesh):
    outcome = soak.run(check=False)
    assert outcome.stopped_by == "guardrail", outcome.stopped_by
    # The mesh itself, not our records: no VirtualService route carries a fault any more.
    faulted = [
        obj["metadata"]["name"]
        for obj in mesh.backend.istio_objects()
        if obj.get("kind") == "VirtualService" and any("fault" in r for r in obj["spec"].get("http") or [])
    ]
    assert faulted == [], faulted
    print("NO-FAULT-LEFT")
    outcome.check()


def test_after_the_guarded_soak():
    print("THE-NEXT-TEST-RAN")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A project with its own mesh registry; whatever an inner run leaves is swept after the test."""
    pytester.makeini(f"[pytest]\nclover_topology = {SDC}\n")
    runtime = pytester.path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("CLOVER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    yield pytester
    sweep(force=True)


def _soak_args(plan: Path, duration: str, seed: int, *extra: str) -> list[str]:
    return [
        *QUIET,
        f"--clover-soak={duration}",
        f"--clover-soak-plan={plan}",
        f"--clover-time-scale={TIME_SCALE}",
        f"--clover-seed={seed}",
        "--clover-report-dir=reports",
        *extra,
    ]


def _run_dir(root: Path) -> Path:
    [folder] = [p for p in (root / "reports").glob("[0-9]*-*") if p.is_dir() and not p.is_symlink()]
    return folder


def _soak_json(run_dir: Path) -> dict[str, Any]:
    [path] = run_dir.glob("*/soak.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_a_seeded_soak_runs_its_schedule_and_judges_every_event(project: pytest.Pytester) -> None:
    plan = project.path / "plan.yaml"
    plan.write_text(RANDOM_PLAN, encoding="utf-8")
    project.makepyfile(test_soak=SOAK_TEST)
    duration, seed = 40.0, 11
    expected = draw_schedule(load_plan(plan), duration_s=duration, seed=seed, time_scale=TIME_SCALE)
    assert len(expected) >= 2 and {e.kind for e in expected} == {"kill", "delay"}, expected
    other = draw_schedule(load_plan(plan), duration_s=duration, seed=seed + 1, time_scale=TIME_SCALE)
    assert schedule_to_json(other) != schedule_to_json(expected)

    result = project.runpytest_subprocess(*_soak_args(plan, "40s", seed, "--clover-checkpoint=8s"), timeout=240)
    output = result.stdout.str()
    assert result.ret == 0, output[-4000:]
    run_dir = _run_dir(project.path)
    soak = _soak_json(run_dir)
    # The same seed drew the same schedule in the run as here.
    assert soak["schedule"] == schedule_to_json(expected)
    assert soak["state"] == "finished" and soak["stopped_by"] == "" and soak["checkpoint"]["count"] >= 3
    assert [e["id"] for e in soak["events"]] == [e.id for e in expected]
    for event in soak["events"]:
        assert event["verdict"] == "passed", event
        assert event["verified"] is True and event["start"] is not None and event["end"] is not None
        assert event["recovery_s"] is not None and 0 <= event["recovery_s"] <= 8
        assert event["requests"] > 0 and event["checks"] and all(c["ok"] for c in event["checks"])
        planned = soak["started"] + event["planned_at_s"]
        assert abs(event["start"] - planned) < 1.5, (event["start"] - planned, event)
    delays = [e for e in soak["events"] if e["kind"] == "delay"]
    for event in delays:  # judged on its own span: half of its requests paid 200 ms
        [p99] = [c["observed"] for c in event["checks"] if c["metric"] == "p99_ms"]
        assert p99 >= 200, event
    # The quiet time is its own phase, judged on the plan's SLO; the per-kind recovery is the test's recovery.
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    [test] = summary["tests"]
    assert set(test["phases"]) >= {"quiet", "fault"}
    assert {(r["phase"], r["metric"]) for r in test["slo"]} == {("quiet", "p99_ms"), ("quiet", "max_error_rate")}
    assert set(test["recovery_s"]) == {f"soak {kind}" for kind in ("kill", "delay")}
    history = [json.loads(line) for line in (project.path / "reports" / "history.jsonl").read_text().splitlines()]
    assert set(history[-1]["recovery_s"]) == {"soak kill", "soak delay"}
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert all(e["id"] in page for e in soak["events"])


def test_a_guardrail_stops_the_soak_and_every_fault_is_reverted(project: pytest.Pytester) -> None:
    plan = project.path / "plan.yaml"
    plan.write_text(GUARDED_PLAN, encoding="utf-8")
    project.makepyfile(test_guarded=GUARDED_TEST)
    result = project.runpytest_subprocess(*_soak_args(plan, "60s", 1, "-s"), timeout=240)
    output = result.stdout.str()
    assert result.ret == 1, output[-4000:]
    result.assert_outcomes(failed=1)  # and the next test was not started (scope: run)
    assert "THE-NEXT-TEST-RAN" not in output and "guardrail error_budget (scope: run) tripped" in output
    assert "NO-FAULT-LEFT" in output, output[-4000:]
    assert "guardrail error_budget tripped" in output, output[-4000:]
    soak = _soak_json(_run_dir(project.path))
    assert soak["state"] == "stopped" and soak["stopped_by"] == "guardrail"
    trip = soak["guardrails"]["trip"]
    assert trip["guardrail"] == "error_budget" and "budget" in trip["reason"]
    # Stopped within seconds of the abort (4 s of plan time × 0.05, then a few 1-s windows), not after 60 s.
    assert trip["at"] - soak["started"] < 15 and soak["elapsed_s"] < 25, soak
    [event] = soak["events"]
    assert event["start"] is not None and event["end"] is not None and event["end"] <= trip["at"] + 10
    assert event["errors"] > 0


def test_a_sigkilled_soak_leaves_its_checkpointed_report(project: pytest.Pytester) -> None:
    plan = project.path / "plan.yaml"
    plan.write_text(RANDOM_PLAN, encoding="utf-8")
    project.makepyfile(test_soak=SOAK_TEST)
    log = (project.path / "inner.log").open("w", encoding="utf-8")
    proc = project.popen(
        [sys.executable, "-m", "pytest", *_soak_args(plan, "300s", 11, "--clover-checkpoint=3s")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    descendants: list[psutil.Process] = []
    try:

        def checkpointed() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError((project.path / "inner.log").read_text()[-4000:])
            try:
                run_dir = _run_dir(project.path)
                soak = _soak_json(run_dir)
            except (ValueError, OSError):
                return None
            started = [e for e in soak["events"] if e["start"] is not None]
            built = (run_dir / "index.html").is_file()
            return soak if built and started and soak["checkpoint"]["count"] >= 3 else None

        at_kill = wait_for(checkpointed, timeout=180, interval=0.2, what="a checkpoint with an event and a report")
        assert at_kill is not None
        descendants = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    wait_for(
        lambda: not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
        timeout=60,
        interval=0.2,
        what="every process of the killed soak (mesh, load generator, checkpoint report) to end",
    )
    run_dir = _run_dir(project.path)
    # What the checkpoint left: a report of the soak so far, marked partial.
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "did not finish" in page
    soak = _soak_json(run_dir)
    assert soak["state"] == "running" and soak["checkpoint"]["final"] is False
    started = [e["id"] for e in soak["events"] if e["start"] is not None]
    # The last checkpoint holds at least what the one we waited for held.
    assert set(started) >= {e["id"] for e in at_kill["events"] if e["start"] is not None}
    assert soak["checkpoint"]["count"] >= at_kill["checkpoint"]["count"]

    done = subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", "report", str(run_dir)],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PARTIAL: the run did not finish" in done.stdout, done.stdout
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    [test] = summary["tests"]
    assert test["outcome"] == "interrupted" and test["phases"], test
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert all(event_id in page for event_id in started), started
