"""SLO verdicts: the table a violation prints, the slo marker, and how load errors and verdicts are reported."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_clover.errors import SLOViolation
from pytest_clover.slo import SLO, check, evaluate, marker_objectives
from pytest_clover.testing import FakeLoadResult, FakePhaseStats

from .conftest import Project, by_key, pristine_istio


def row(phase: str | None, start: float, **values: Any) -> dict[str, Any]:
    window = {
        "start": start, "end": start + 1.0, "phase": phase, "requests": 100, "errors": 0, "late": 0,
        "error_rate": 0.0, "throughput_rps": 100.0, "p50_ms": 8.0, "p95_ms": 12.0, "p99_ms": 20.0, "max_ms": 30.0,
    }  # fmt: skip
    window.update(values)
    return window


def a_result() -> FakeLoadResult:
    """A 10-s baseline, then a 10-s fault whose 4th second is its worst and whose 1st has the errors."""
    baseline = FakePhaseStats(
        "baseline", 100.0, 110.0, requests=1000, errors=0, error_rate=0.0, throughput_rps=100.0,
        p50_ms=8.0, p95_ms=12.0, p99_ms=20.0, max_ms=31.0,
    )  # fmt: skip
    fault = FakePhaseStats(
        "fault", 110.0, 120.0, requests=1000, errors=32, error_rate=0.032, throughput_rps=100.0,
        p50_ms=250.0, p95_ms=600.0, p99_ms=912.4, max_ms=1500.0,
    )  # fmt: skip
    windows = [row("baseline", 100.0 + i) for i in range(10)]
    windows += [row(None, 109.5, requests=3)]  # between phases: belongs to none
    windows += [
        row("fault", 110.0, error_rate=0.05, throughput_rps=101.0),
        row("fault", 111.0, p99_ms=300.0, requests=0, throughput_rps=0.0),
        row("fault", 112.0, p99_ms=650.0, throughput_rps=60.0),
        row("fault", 113.0, p99_ms=1204.1),
    ]
    windows += [row("fault", 114.0 + i, p99_ms=800.0) for i in range(6)]
    empty = FakePhaseStats("idle", 120.0, 125.0, requests=0, p50_ms=None, p99_ms=None)
    return FakeLoadResult({"baseline": baseline, "fault": fault, "idle": empty}, windows)


def test_objectives_that_hold_pass_and_are_returned() -> None:
    checks = check(a_result(), "baseline", p99_ms=150, max_error_rate=0.001, min_throughput_rps=90)
    assert [(c.metric, c.observed, c.ok) for c in checks] == [
        ("p99_ms", 20.0, True),
        ("max_error_rate", 0.0, True),
        ("min_throughput_rps", 100.0, True),
    ]


def test_a_violation_is_a_table_with_threshold_observed_and_the_window_where_it_first_broke() -> None:
    with pytest.raises(SLOViolation) as info:
        check(a_result(), "fault", p99_ms=700, max_error_rate=0.01, p50_ms=300)
    assert isinstance(info.value, AssertionError)
    assert str(info.value) == (
        "SLO violated: 2 of 3 objectives not met\n"
        "phase  metric          threshold   observed  verdict  first broke (seconds into the phase)\n"
        "fault  p99_ms          ≤ 700.0 ms  912.4 ms  FAIL     +3–4 s (1204.1 ms)\n"
        "fault  max_error_rate  ≤ 1.00 %    3.20 %    FAIL     +0–1 s (5.00 %)\n"
        "fault  p50_ms          ≤ 300.0 ms  250.0 ms  ok"
    )
    assert [c.ok for c in info.value.checks] == [False, False, True]


def test_throughput_breaks_in_the_first_window_below_it_even_an_empty_one() -> None:
    [c] = evaluate(a_result(), "fault", min_throughput_rps=99.0)
    assert c.ok  # the phase as a whole made it…
    with pytest.raises(SLOViolation, match=r"min_throughput_rps  ≥ 100.5 rps  100.0 rps  FAIL     \+1–2 s \(0.0 rps\)"):
        check(a_result(), "fault", min_throughput_rps=100.5)


def test_latency_ignores_windows_without_requests() -> None:
    [c] = evaluate(a_result(), "fault", p99_ms=280)
    assert c.window == "+2–3 s (650.0 ms)"  # not the empty window at +1 s, whose p99 is meaningless


@pytest.mark.parametrize(
    ("phase", "message"),
    [
        ("idle", "phase 'idle' has no requests: nothing was measured, so nothing was met"),
        ("recovery", "the run has no phase 'recovery' (phases: baseline, fault, idle)"),
    ],
)
def test_an_objective_on_a_phase_without_requests_fails_clearly(phase: str, message: str) -> None:
    with pytest.raises(SLOViolation) as info:
        SLO().check(a_result(), phase=phase, p99_ms=150)
    assert message in str(info.value)
    assert f"{phase:<5}  p99_ms  ≤ 150.0 ms  —         FAIL" in str(info.value)


def test_objectives_must_be_known_and_given() -> None:
    with pytest.raises(TypeError, match="unknown SLO metric p98_ms"):
        evaluate(a_result(), "fault", p98_ms=1.0)
    with pytest.raises(TypeError, match="give at least one objective"):
        evaluate(a_result(), "fault")


@pytest.mark.parametrize(
    ("kwargs", "args", "message"),
    [
        ({"p99_ms": 150}, (), "needs phase="),
        ({"phase": "baseline"}, (), "gives no objective"),
        ({"phase": "baseline", "p99": 1}, (), "unknown objective p99"),
        ({"phase": "baseline", "p99_ms": "fast"}, (), "must be numbers"),
        ({"phase": "baseline", "p99_ms": 150}, ("baseline",), "keyword arguments only"),
    ],
)
def test_a_malformed_marker_says_what_is_wrong(kwargs: dict[str, Any], args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        marker_objectives(kwargs, args)
    assert marker_objectives({"phase": "b", "p99_ms": 150, "max_error_rate": 0}, ()) == (
        "b",
        {"p99_ms": 150.0, "max_error_rate": 0.0},
    )


# --------------------------------------------------------------------------- in pytest runs

# The fault phase's windows: two good seconds, then the worst one, then the phase's own values.
FAULTY = {
    "fault": {
        "p99_ms": 912.4,
        "errors": 3,
        "windows": [{"p99_ms": 100.0, "error_rate": 0.0}, {"p99_ms": 200.0, "error_rate": 0.0}, {"p99_ms": 1300.0}],
    }
}


def test_slo_check_in_a_test_fails_it_with_the_numbers(project: Project) -> None:
    project.profile(FAULTY)
    project.pytester.makepyfile(
        """
        def test_delay_absorbed(load, slo):
            run = load.start(rate=100)
            run.phase("baseline", seconds=10)
            run.phase("fault", seconds=10)
            result = run.stop()
            slo.check(result, phase="baseline", p99_ms=150)
            slo.check(result, phase="fault", p99_ms=700, max_error_rate=0.01)
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *SLOViolation: SLO violated: 1 of 2 objectives not met",
            "E * phase  metric          threshold   observed  verdict  first broke (seconds into the phase)",
            "E * fault  p99_ms          ≤ 700.0 ms  912.4 ms  FAIL     +2–3 s (1300.0 ms)",
            "E * fault  max_error_rate  ≤ 1.00 %    0.60 %    ok",
        ]
    )
    result.stdout.fnmatch_lines(["*test_delay_absorbed  failed   baseline 30  fault 912  0.30 %  —"])


def test_the_slo_marker_is_checked_after_the_body_and_a_miss_fails_the_test(project: Project) -> None:
    project.profile(FAULTY)
    project.pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.slo(phase="baseline", p99_ms=150, max_error_rate=0.001)

        @pytest.mark.slo(phase="fault", p99_ms=700)
        def test_fault(load):
            run = load.start(rate=100)
            run.phase("baseline", seconds=10)
            run.phase("fault", seconds=10)
            run.stop()

        @pytest.mark.slo(phase="fault", p99_ms=1000)
        def test_fault_within_budget(load):
            run = load.start(rate=100)
            run.phase("baseline", seconds=10)
            run.phase("fault", seconds=10)
            # left running: the plugin stops it to judge it
        """
    )
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_fault FAILED*",
            "*::test_fault_within_budget PASSED*",
            "*_ test_fault _*",
            "SLOViolation: @pytest.mark.slo violated: 1 of 3 objectives not met",
            "phase     metric          threshold   observed  verdict  first broke (seconds into the phase)",
            "baseline  p99_ms          ≤ 150.0 ms  30.0 ms   ok",
            "baseline  max_error_rate  ≤ 0.10 %    0.00 %    ok",
            "fault     p99_ms          ≤ 700.0 ms  912.4 ms  FAIL     +2–3 s (1300.0 ms)",
        ]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("pass", "*does not use the load fixture*"),
        ("assert load.last_result is None", "*no load run was stopped*"),
        ("load.start(rate=10).phase('warmup', 1)", "*the run has no phase 'baseline' (phases: warmup)*"),
    ],
)
def test_the_slo_marker_without_a_measured_phase_fails(project: Project, body: str, message: str) -> None:
    fixture = "" if body == "pass" else "load"
    project.pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.slo(phase="baseline", p99_ms=150)
        def test_it({fixture}):
            {body}
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message])


def test_a_malformed_slo_marker_errors_at_setup(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slo(p99_ms=150)
        def test_it(load):
            pass
        """
    )
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.slo needs phase='<name of a load phase>'*"])


def test_a_slo_marker_with_a_bad_value_says_so_once(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slo(phase="steady", p99_ms="fast")
        def test_it(load):
            pass
        """
    )
    result = project.run()
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "During handling of the above exception" not in output
    # Once in the error's report; the short summary (-ra) may repeat it on its one line, width permitting.
    report = output.split("short test summary info")[0]
    assert report.count("objectives must be numbers, got {'p99_ms': 'fast'}") == 1, output


def test_a_load_generator_that_dies_errors_the_test_and_its_faults_are_reverted(project: Project) -> None:
    project.profile({"crash": "fault"})
    project.pytester.makepyfile(
        """
        def test_it(load, faults):
            run = load.start(rate=100)
            run.phase("baseline", seconds=5)
            with faults.delay("http-lb", "500ms", percent=50):
                run.phase("fault", seconds=5)
        """
    )
    result = project.run("-v")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_it ERROR*",
            "*LoadGeneratorError: the load generator died during phase 'fault' (exit code -9)",
            "*last lines of the load generator's log:",
            "*MemoryError",
        ]
    )
    assert by_key(project.mesh().istio_objects()) == by_key(pristine_istio())


def test_the_summary_shows_verdicts_p99_per_phase_errors_and_recovery(project: Project) -> None:
    project.profile({"fault": {"p99_ms": 540.0, "errors": 25}, "recovery_seconds": {"fault": 1.5}})
    project.pytester.makepyfile(
        """
        def test_recovers(load):
            run = load.start(rate=100)
            run.phase("baseline", seconds=10)
            run.phase("fault", seconds=10)
            run.phase("recovery", seconds=10)
            result = run.stop()
            assert result.recovery_seconds(after="fault", p99_ms=150) < 5

        def test_plain():
            pass
        """
    )
    result = project.run()
    result.assert_outcomes(passed=2)
    [run_dir] = project.run_dirs()
    result.stdout.fnmatch_lines(
        [
            "*= pytest-clover =*",
            "test * verdict  p99 ms by phase * errors  recovery",
            "*::test_recovers  passed   baseline 30  fault 540  recovery 30  1.67 %  after fault 1.5 s",
            "resilience score: 100.0 / 100",
            f"report: {run_dir / 'index.html'}",
        ]
    )
    assert "test_plain" not in result.stdout.str().split("pytest-clover ===")[1]
