"""The soak mode's options: soak tests are deselected without --clover-soak; a bad duration or plan stops the run at
configure time, naming the option or the plan's file and field (issue 14)."""

from __future__ import annotations

import pytest

from .conftest import ROOT, Project

SOAK_TESTS = """
import pytest


def test_plain():
    pass


@pytest.mark.soak
def test_marked():
    pass


def test_uses_the_fixture(soak):
    pass
"""


def test_soak_tests_are_deselected_without_clover_soak(project: Project) -> None:
    project.pytester.makepyfile(SOAK_TESTS)
    result = project.run("-v")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*test_plain PASSED*"])
    assert "test_marked" not in result.stdout.str() and "test_uses_the_fixture" not in result.stdout.str()


def test_the_shipped_nightly_plan_is_the_default_and_is_checked(project: Project) -> None:
    project.pytester.makepyfile(
        f"""
        def test_settings(clover_settings):
            assert clover_settings.soak_s == 5400.0
            assert str(clover_settings.soak_plan) == {str(ROOT / "faults/schedules/nightly.yaml")!r}
            assert clover_settings.checkpoint_s == 30.0
        """
    )
    plan = ROOT / "faults" / "schedules" / "nightly.yaml"
    result = project.run("--clover-soak=1h30m", f"--clover-soak-plan={plan}", "--clover-checkpoint=30s", "-k", "set")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--clover-soak=eight hours"], "--clover-soak"),
        (["--clover-soak=-5m"], "--clover-soak"),
        (["--clover-soak=1h", "--clover-checkpoint=0"], "--clover-checkpoint"),
        (["--clover-soak=1h", "--clover-soak-plan=missing.yaml"], "missing.yaml"),
    ],
)
def test_a_bad_soak_option_stops_the_run_before_any_test(project: Project, args: list[str], expected: str) -> None:
    project.pytester.makepyfile(SOAK_TESTS)
    result = project.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str(), result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_a_broken_plan_names_its_file_and_field(project: Project) -> None:
    project.pytester.makepyfile(SOAK_TESTS)
    plan = project.path / "plan.yaml"
    plan.write_text(
        "load: {rate: 10}\nslo: {p99_ms: 100}\nschedule:\n  mode: random\n  faults:\n"
        "    - {kind: delay, target: http-lb, mtbf: 5m, duration: 10s, params: {delay: 100ms, percnt: 50}}\n",
        encoding="utf-8",
    )
    result = project.run("--clover-soak=10m", f"--clover-soak-plan={plan}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "plan.yaml" in err and "schedule.faults[0].params.percnt" in err and "percent" in err, err


def test_a_soak_is_not_cut_short_by_pytest_timeout(project: Project) -> None:
    pytest.importorskip("pytest_timeout")
    project.pytester.makepyfile(
        """
        import pytest


        @pytest.mark.soak
        def test_soak_limit(request):
            print("LIMIT", request.node.get_closest_marker("timeout").args[0])


        @pytest.mark.soak
        @pytest.mark.timeout(5)
        def test_own_limit(request):
            print("LIMIT", request.node.get_closest_marker("timeout").args[0])
        """
    )
    project.pytester.makeini(f"[pytest]\nclover_topology = {ROOT / 'fixtures/sdc'}\ntimeout = 300\n")
    plan = ROOT / "faults" / "schedules" / "ci.yaml"
    result = project.run("--clover-soak=2h", f"--clover-soak-plan={plan}", "-s")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("LIMIT 8100.0") == 1 and "LIMIT 5\n" in out, out  # 2 h + 15 min; its own limit kept
