"""An open loop that falls far behind its schedule makes the test INCONCLUSIVE, never a silent pass."""

from __future__ import annotations

import pytest

from pytest_clover.load.result import Schedule

from .conftest import Project

STEADY = """
def test_steady(load):
    run = load.start(rate=50{extra})
    run.phase("steady", seconds=4)
    run.stop()
"""


@pytest.mark.parametrize(
    ("profile", "why"),
    [
        ({"steady": {"late": 80}}, "100 of 100 scheduled requests answered*, 80 sent more than 10 ms late*"),
        (
            {"steady": {"requests": 12}},
            "12 of 100 scheduled requests answered in 2.0 s of phases (6.0 of 50 requests/s)*",
        ),
    ],
)
def test_a_missed_schedule_is_inconclusive_with_the_numbers(
    project: Project, profile: dict[str, object], why: str
) -> None:
    project.profile(profile)
    project.pytester.makepyfile(STEADY.format(extra=""))
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*ScheduleMissed: the load missed its schedule: {why}schedule_tolerance=None) to judge the run anyway", "*"]
    )
    result.stdout.fnmatch_lines(["INCONCLUSIVE *::test_steady*"])


def test_a_schedule_kept_within_the_tolerance_passes(project: Project) -> None:
    project.profile({"steady": {"late": 5, "requests": 95}})
    project.pytester.makepyfile(STEADY.format(extra=""))
    project.run().assert_outcomes(passed=1)


def test_a_test_may_opt_out_explicitly(project: Project) -> None:
    project.profile({"steady": {"requests": 12, "late": 12}})
    project.pytester.makepyfile(STEADY.format(extra=", schedule_tolerance=None"))
    project.run().assert_outcomes(passed=1)


def test_a_tolerance_outside_zero_to_one_is_refused(project: Project) -> None:
    project.pytester.makepyfile(STEADY.format(extra=", schedule_tolerance=10"))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: schedule_tolerance must be a share from 0 to 1*"])


@pytest.mark.parametrize(
    ("answered", "late", "missed"),
    [(500, 0, False), (450, 0, False), (449, 0, True), (500, 50, False), (500, 51, True), (0, 0, True)],
)
def test_the_schedule_is_missed_past_the_tolerance_and_two_requests(answered: int, late: int, missed: bool) -> None:
    schedule = Schedule(rate=50.0, seconds=10.0, answered=answered, late=late)
    assert schedule.intended == 500
    assert (schedule.missed(0.1) is not None) == missed


def test_a_tiny_schedule_tolerates_a_boundary_request_either_side() -> None:
    assert Schedule(rate=1.0, seconds=3.0, answered=1, late=2).missed(0.0) is None
    assert Schedule(rate=1.0, seconds=3.0, answered=0, late=0).missed(0.0) is not None
