"""--clover-load-in-cluster and its companions: checked together at configure, before any mesh starts (issue 15)."""

from __future__ import annotations

import pytest

from .conftest import Project


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--clover-load-in-cluster",), "the local backend cannot run load pods"),
        (("--clover-load-in-cluster", "--clover-load-master=moon"), "give cluster or local"),
        (("--clover-load-in-cluster", "--clover-load-master=local"), "needs --clover-load-master-address"),
        (("--clover-load-target=ftp://gateway",), "is not a URL"),
    ],
)
def test_a_load_placement_that_cannot_work_is_a_usage_error(
    project: Project, args: tuple[str, ...], expected: str
) -> None:
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str() and "Traceback" not in result.stderr.str()


def test_in_cluster_options_have_ini_mirrors(project: Project) -> None:
    project.pytester.makeini("[pytest]\nclover_load_in_cluster = true\n")
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot run load pods" in result.stderr.str()


CAPTURE = """
import pytest

from pytest_clover.testing import FakeLoadGenerator

SEEN = []


@pytest.fixture(scope="session")
def clover_load_generator():
    def factory(**kwargs):
        SEEN.append((kwargs.pop("workers", None), kwargs.pop("in_cluster", None)))
        return FakeLoadGenerator(**kwargs)

    return factory


def test_load(load):
    load.start(rate=10).stop()
    workers, in_cluster = SEEN[-1]
    print("PLACEMENT", workers, in_cluster.master, in_cluster.master_address, in_cluster.target_url)
"""


def test_the_placement_reaches_the_generator_with_the_worker_count(project: Project) -> None:
    project.pytester.makepyfile(CAPTURE)
    result = project.run(
        "-s", "--clover-backend=fake", "--clover-load-in-cluster", "--clover-load-master=local",
        "--clover-load-master-address=127.0.0.9", "--clover-load-target=http://gw.example:80",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    assert "PLACEMENT 1 local 127.0.0.9 http://gw.example:80" in result.stdout.str()
