"""SIGTERM (how CI cancels a job) ends a run like Ctrl-C: faults reverted, a partial report written.

These run pytest in a subprocess: the signal must reach a real main thread, and this process's own
pytest-clover already holds SIGTERM, which an in-process run leaves alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from pytest_clover.testing import FakeBackend
from tests.helpers import wait_for

from .conftest import PROJECT_CONFTEST, QUIET, Project, by_key, pristine_istio

UNDER_FAULT = """
import os
import pathlib
import time

import pytest

@pytest.mark.parametrize("n", range({tests}))
def test_under_fault(mesh, load, faults, n):
    run = load.start(rate=10)
    run.phase("baseline", seconds=1)
    faults.delay("http-lb", "500ms")
    faults.scale("clover-server", 1)
    pathlib.Path(f"in-fault-{{os.getpid()}}").write_text("")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise AssertionError("no SIGTERM came")
"""


def terminate_under_fault(project: Project, *args: str, in_fault: int = 1) -> str:
    """Run pytest in a subprocess, SIGTERM it once ``in_fault`` tests hold their faults; its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUIET, "-p", "no:randomly", *args],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a test that fails here leaves no xdist worker behind
    )
    try:
        wait_for(
            lambda: len(list(project.path.glob("in-fault-*"))) >= in_fault or proc.poll() is not None,
            timeout=60,
            what="the faults",
        )
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Terminated: SIGTERM" in out
    return out


def interrupted_tests(project: Project) -> list[dict[str, Any]]:
    [run_dir] = project.run_dirs()
    summary = json.loads((run_dir / "summary.json").read_text())
    run = summary["run"]
    assert run["partial"] is True and "SIGTERM" in run["partial_reason"], run["partial_reason"]
    tests: list[dict[str, Any]] = summary["tests"]
    for test in tests:
        assert test["outcome"] == "interrupted" and list(test["phases"]) == ["baseline"], test
        assert [(f["kind"], f["end"] is not None) for f in test["faults"]] == [("delay", True), ("scale", True)]
    return tests


def test_sigterm_mid_test_reverts_the_faults_and_writes_a_partial_report(project: Project) -> None:
    project.pytester.makepyfile(UNDER_FAULT.format(tests=2))
    out = terminate_under_fault(project)
    mesh = project.mesh()
    assert by_key(mesh.istio_objects()) == by_key(pristine_istio())
    assert mesh.desired["clover-server"] == 3
    assert mesh.history[-1] == "teardown"
    assert project.open_ledger_entries() == []
    assert len(interrupted_tests(project)) == 1  # the second never ran
    assert "PARTIAL: the run was stopped by SIGTERM" in out


def test_sigterm_under_xdist_waits_for_the_workers_before_the_report(project: Project) -> None:
    # A fake mesh per worker: they would share one state file otherwise.
    project.pytester.makeconftest(
        PROJECT_CONFTEST.replace(
            'HERE / "mesh-state.json"', "HERE / f\"mesh-{os.environ['PYTEST_XDIST_WORKER']}.json\""
        ).replace("import json\n", "import json\nimport os\n", 1)
    )
    project.pytester.makepyfile(UNDER_FAULT.format(tests=2))
    out = terminate_under_fault(project, "-n", "2", in_fault=2)
    states = sorted(project.path.glob("mesh-gw*.json"))
    assert [p.name for p in states] == ["mesh-gw0.json", "mesh-gw1.json"]
    for state in states:
        mesh = FakeBackend(state_file=state)
        assert by_key(mesh.istio_objects()) == by_key(pristine_istio()), state.name
        assert mesh.desired["clover-server"] == 3 and mesh.history[-1] == "teardown", state.name
    assert project.open_ledger_entries() == []
    assert len(interrupted_tests(project)) == 2
    assert "PARTIAL: the run was stopped by SIGTERM" in out


def test_the_handler_is_given_back_after_the_run(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import signal

        def test_handler():
            assert signal.getsignal(signal.SIGTERM).__name__ == "terminate"
        """
    )
    project.pytester.makeconftest(
        """
        import signal

        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            print("given back:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
    )
    result = project.pytester.runpytest_subprocess(*QUIET, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["given back: True"])


def test_a_second_sigterm_is_not_caught(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import signal

        import pytest

        def test_handler():
            ours = signal.getsignal(signal.SIGTERM)
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                ours(signal.SIGTERM, None)
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        """
    )
    project.pytester.runpytest_subprocess(*QUIET).assert_outcomes(passed=1)


def test_a_handler_someone_else_installed_is_left_alone(project: Project) -> None:
    project.pytester.makeconftest(
        """
        import signal

        def mine(signum, frame):
            pass

        signal.signal(signal.SIGTERM, mine)
        """
    )
    project.pytester.makepyfile(
        """
        import signal

        def test_handler():
            assert signal.getsignal(signal.SIGTERM).__name__ == "mine"
        """
    )
    project.pytester.runpytest_subprocess(*QUIET).assert_outcomes(passed=1)
