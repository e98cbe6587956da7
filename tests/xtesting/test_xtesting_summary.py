"""The Xtesting driver's pure parts: the child's command line, the pass ratio and the failure line (issue 13).

They need no Xtesting, so they run in every environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_clover.errors import ConfigError
from pytest_clover.xtesting import summary


def _test(nodeid: str, outcome: str, slo: list[dict[str, Any]] | None = None, message: str = "") -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": outcome, "message": message, "slo": slo or [], "faults": [], "recovery_s": {}}


def _summary(*tests: dict[str, Any]) -> dict[str, Any]:
    totals = {k: 0 for k in ("passed", "failed", "error", "inconclusive", "skipped", "interrupted")}
    for t in tests:
        totals[t["outcome"]] += 1
    return {
        "run": {"replay": "pytest x --clover-seed=1"},
        "score": {"value": 50.0},
        "totals": {**totals, "tests": len(tests)},
        "tests": list(tests),
    }


def test_command_maps_run_args_to_pytest_options(tmp_path: Path) -> None:
    args = {
        "paths": "faults",
        "backend": "k8s",
        "context": "kind-a",
        "namespace": "cnf",
        "time_scale": 0.2,
        "seed": 7,
        "markers": "not soak",
        "keyword": "delay",
        "extra": ["-x"],
    }
    command = summary.pytest_command("py", args, tmp_path)
    assert command[:4] == ["py", "-m", "pytest", "faults"]
    for expected in (
        "--clover-backend=k8s",
        "--clover-context=kind-a",
        "--clover-namespace=cnf",
        "--clover-time-scale=0.2",
        "--clover-seed=7",
        f"--clover-report-dir={tmp_path}",
    ):
        assert expected in command
    assert command[-5:] == ["-m", "not soak", "-k", "delay", "-x"]


def test_command_refuses_unknown_args(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timescale"):
        summary.pytest_command("py", {"timescale": 1}, tmp_path)


def test_pass_ratio_counts_errors_as_failed_and_ignores_skips() -> None:
    s = _summary(_test("a", "passed"), _test("b", "error"), _test("c", "skipped"), _test("d", "passed"))
    assert summary.pass_ratio(s) == pytest.approx(66.67)
    assert summary.pass_ratio(_summary(_test("c", "skipped"))) == 0.0


def test_reason_names_the_first_violated_slo_else_the_message() -> None:
    rows = [
        {"phase": "fault", "metric": "max_error_rate", "threshold": 0.01, "observed": 0.0, "ok": True},
        {"phase": "fault", "metric": "p99_ms", "threshold": 600.0, "observed": 812.5, "ok": False},
    ]
    s = _summary(
        _test("t::a", "failed", rows),
        _test("t::b", "error", message="BackendError: no mesh\nmore"),
        _test("t::c", "passed"),
    )
    reason = summary.failure_reason(s)
    assert reason.startswith("2 of 3 tests did not pass")
    assert "t::a FAILED (SLO p99_ms in phase fault: observed 812.5, threshold 600.0)" in reason
    assert "t::b ERROR (BackendError: no mesh)" in reason and "t::c" not in reason
    assert summary.failure_reason(_summary(_test("t::c", "passed"))) == ""
