"""SIGTERM (how CI cancels a job) ends a run like Ctrl-C: faults reverted, a partial report written.

These run pytest in a subprocess: the signal must reach a real main thread, and this process's own
pytest-clover already holds SIGTERM, which an in-process run leaves alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from .conftest import QUIET, Project, by_key, pristine_istio


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_sigterm_mid_test_reverts_the_faults_and_writes_a_partial_report(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import pathlib
        import time

        def test_under_fault(mesh, load, faults):
            run = load.start(rate=10)
            run.phase("baseline", seconds=1)
            faults.delay("http-lb", "500ms")
            faults.scale("clover-server", 1)
            pathlib.Path("in-fault").write_text("")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.05)
            raise AssertionError("no SIGTERM came")

        def test_never_runs(load):
            pass
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUIET, "-p", "no:randomly"],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (project.path / "in-fault").exists() or proc.poll() is not None, 60, "the fault")
        assert proc.poll() is None, proc.communicate()[0]
        assert project.mesh().desired["clover-server"] == 1  # the fault really is in force
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Terminated: SIGTERM" in out
    mesh = project.mesh()
    assert by_key(mesh.istio_objects()) == by_key(pristine_istio())
    assert mesh.desired["clover-server"] == 3
    assert mesh.history[-1] == "teardown"
    assert project.open_ledger_entries() == []
    [run_dir] = project.run_dirs()
    summary = json.loads((run_dir / "summary.json").read_text())
    run = summary["run"]
    assert run["partial"] is True and "SIGTERM" in run["partial_reason"], run["partial_reason"]
    [test] = summary["tests"]
    assert test["outcome"] == "interrupted" and list(test["phases"]) == ["baseline"]
    assert [(f["kind"], f["end"] is not None) for f in test["faults"]] == [("delay", True), ("scale", True)]
    assert "resilience score: " in out and "PARTIAL: the run was stopped by SIGTERM" in out


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
