"""--clover-load-workers: validated at configure, handed to the load generator only when above 1 (issue 15)."""

from __future__ import annotations

import os

import pytest

from .conftest import Project

CAPTURE = """
import pytest

from pytest_clover.testing import FakeLoadGenerator

SEEN = []


@pytest.fixture(scope="session")
def clover_load_generator():
    def factory(**kwargs):
        SEEN.append(kwargs.pop("workers", None))
        return FakeLoadGenerator(**kwargs)

    return factory


def test_load(load):
    load.start(rate=10).stop()
    print("WORKERS", SEEN[-1])
"""


@pytest.mark.parametrize(
    ("args", "seen"), [((), "None"), (("--clover-load-workers=1",), "None"), (("--clover-load-workers=3",), "3")]
)
def test_the_worker_count_reaches_the_generator_only_above_one(
    project: Project, args: tuple[str, ...], seen: str
) -> None:
    project.pytester.makepyfile(CAPTURE)
    result = project.run("-s", *args)
    result.assert_outcomes(passed=1)
    assert f"WORKERS {seen}" in result.stdout.str()


@pytest.mark.parametrize("value", ["0", "two", "65", "-1"])
def test_a_bad_worker_count_is_a_usage_error(project: Project, value: str) -> None:
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run(f"--clover-load-workers={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--clover-load-workers" in result.stderr.str() and "Traceback" not in result.stderr.str()


CROWD = "pytest has {cpus} CPU(s) here, shared by the {workers} load workers"


def test_as_many_local_workers_as_cpus_is_warned_of(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run("--clover-load-workers=4")
    result.assert_outcomes(passed=1, warnings=1)
    output = result.stdout.str()
    assert "CloverWarning" in output and CROWD.format(cpus=4, workers=4) in output
    assert "Use at most 3 here" in output


@pytest.mark.parametrize(
    "args",
    [
        ("--clover-load-workers=3",),
        ("--clover-load-workers=1",),
        (),
        ("--clover-backend=fake", "--clover-load-in-cluster", "--clover-load-workers=8"),  # pods: not this machine's
    ],
)
def test_local_workers_with_cores_to_spare_are_not_warned_of(
    project: Project, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run(*args)
    result.assert_outcomes(passed=1, warnings=0)
    assert "CloverWarning" not in result.stdout.str()
