"""``--clover-compare=last:N`` in a pytest run on the fake backend: each test against the median of its last N
complete runs, and ``last:N`` checked at configure."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project

NIGHTLY = """
def test_night(load):
    run = load.start(rate=20)
    run.phase("baseline", seconds=2)
    run.stop()
"""


def _night(project: Project, p99_ms: float, *args: str) -> pytest.RunResult:
    """One run whose baseline p99 is ``p99_ms``, in a clock second of its own (run ids are yyyymmdd-hhmmss-pid,
    and the fake load takes no time: two in-process runs could otherwise share one id)."""
    before = {p.name for p in project.run_dirs()}
    if before:
        latest = max(name.rsplit("-", 1)[0] for name in before)
        deadline = time.monotonic() + 3.0
        while time.strftime("%Y%m%d-%H%M%S") <= latest:
            assert time.monotonic() < deadline, "the clock did not move past the last run's second"
            time.sleep(0.02)
    (project.path / "profile.json").write_text(json.dumps({"baseline": {"p99_ms": p99_ms}}))
    result = project.run(*args)
    assert {p.name for p in project.run_dirs()} > before, "the run left no report folder"
    return result


def _regressions(run_dir: Path) -> list[dict[str, Any]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    (test,) = summary["tests"]
    regressions: list[dict[str, Any]] = test["regressions"]
    return regressions


def test_last_n_compares_with_the_median_not_with_the_last_run(project: Project) -> None:
    project.pytester.makepyfile(test_nightly=NIGHTLY)
    _night(project, 20.0).assert_outcomes(passed=1)
    _night(project, 20.0).assert_outcomes(passed=1)
    first, second = (p.name for p in project.run_dirs())

    # Two earlier runs of the three asked for: their median (20 ms), and the message says so.
    third = _night(project, 60.0, "--clover-compare=last:3")
    third.assert_outcomes(failed=1)
    third.stdout.fnmatch_lines(
        [
            f"*regressed against the median of the 2 earlier complete runs of this test ({first}, {second}; 3 asked "
            "for) (1 metric; --clover-compare):*",
            "*p99     baseline  20.0 ms*60.0 ms   25.0 ms*",
        ]
    )

    # The last run alone (60 ms) would pass 60 ms; the median of the last three (20, 20, 60 ms) is 20 ms.
    fourth = _night(project, 60.0, "--clover-compare=last:3")
    fourth.assert_outcomes(failed=1)
    runs = [p.name for p in project.run_dirs()]
    label = f"the median of the last 3 runs ({', '.join(runs[:3])})"
    fourth.stdout.fnmatch_lines(
        [f"*regressed against {label} (1 metric; --clover-compare):*", "*median of 3 runs  this run*"]
    )
    checks = {c["metric"]: c for c in _regressions(project.run_dirs()[-1])}
    assert sorted(checks) == ["error_rate", "p99_ms"]
    p99 = checks["p99_ms"]
    assert (p99["reference"], p99["observed"], p99["ok"], p99["run_id"]) == (20.0, 60.0, False, label)
    assert checks["error_rate"]["ok"] and checks["error_rate"]["run_id"] == label

    # And the same night against `last` alone: no regression (the fourth run, 60 ms, is now the last).
    _night(project, 60.0, "--clover-compare=last").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("last:1", "last:1 is the previous run alone: write `last`"),
        ("last:0", "last:0 names no run; give last:N with N ≥ 2"),
        ("last:x", "'x' is not a number of runs; give last:N with N ≥ 2"),
    ],
)
def test_a_bad_last_n_is_a_usage_error_at_configure(project: Project, value: str, says: str) -> None:
    project.pytester.makepyfile(test_nightly=NIGHTLY)
    result = project.run(f"--clover-compare={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--clover-compare={value!r}: {says}*"])
    assert project.run_dirs() == []  # stopped before any test ran


def test_the_first_night_of_last_n_runs_and_compares_nothing(project: Project) -> None:
    # A nightly job's first night has no history: it must run (and record), saying that nothing was compared.
    project.pytester.makepyfile(test_nightly=NIGHTLY)
    result = _night(project, 20.0, "--clover-compare=last:7")
    result.assert_outcomes(passed=1)
    where = project.report_dir / "history.jsonl"
    result.stderr.fnmatch_lines(
        [
            "clover: --clover-compare=last:7: the history holds no earlier complete run: no test is compared "
            f"this time (history: {where})*"
        ]
    )
    assert _regressions(project.run_dirs()[0]) == []
    assert len(where.read_text().splitlines()) == 1
