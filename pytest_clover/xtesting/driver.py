"""The Xtesting ``TestCase`` subclass :class:`Resilience` (imports Xtesting; see the package docstring)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from xtesting.core import testcase  # type: ignore[import-untyped,import-not-found,unused-ignore]

from pytest_clover.errors import CloverError
from pytest_clover.xtesting import summary as summaries

__all__ = ["Resilience"]

# A child of Xtesting's "xtesting.core" logger: its logging.ini sends that one to the console and xtesting.log.
LOGGER = logging.getLogger("xtesting.core.pytest_clover")

INTERRUPT_GRACE_S = 120.0
"""After a forwarded signal, how long the child gets to revert its faults and write its partial report."""

_NO_REPORT = {
    2: "pytest was interrupted or refused its options (exit 2)",
    3: "pytest hit an internal error (exit 3)",
    4: "pytest refused its command line (exit 4): check run.args",
    5: "no tests were collected (pytest exit 5): check run.args paths, markers and keyword",
}
"""What a pytest exit code without any report means, for the case's ``reason``."""

_PYTEST_RAN = (0, 1)
"""pytest exit codes of a run that completed (1: some tests failed); 2-5 mean it could not run as asked."""


class Resilience(testcase.TestCase):  # type: ignore[misc]
    """Runs pytest-clover suites, experiments or a user's tests and reports them to Xtesting."""

    interrupted_by: str = ""
    """Set (on the class: one ``run_tests`` process runs every case of a tier) once a case was interrupted by
    SIGINT/SIGTERM: the cases after it are skipped, so a Ctrl-C stops the tier instead of only the case that was
    running (``run_tests`` catches ``Exception``, not the interrupt, and would go on to the next case)."""

    def check_requirements(self) -> None:
        """Skip every case after an interrupted one (see :attr:`interrupted_by`)."""
        super().check_requirements()
        if Resilience.interrupted_by:
            LOGGER.warning("%s: skipped, the run was interrupted by %s", self.case_name, Resilience.interrupted_by)
            self.is_skipped = True

    def run(self, **kwargs: Any) -> int:
        """Run pytest-clover in a child process with ``testcases.yaml``'s ``run.args``; ``EX_OK`` when the run
        completed (failed tests included: Xtesting judges ``result`` against ``criteria``), else ``EX_RUN_ERROR``."""
        self.start_time = time.time()
        self.result: float = 0
        try:
            return self._run(kwargs)
        except (CloverError, OSError) as exc:
            self.details: dict[str, Any] = {"reason": f"pytest-clover could not run: {exc}"}
            LOGGER.error("%s: %s", self.case_name, self.details["reason"])
            return int(self.EX_RUN_ERROR)
        finally:
            self.stop_time = time.time()

    def _run(self, args: dict[str, Any]) -> int:
        report_dir = Path(self.res_dir).resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        args = summaries.expand_environment(args, case=f"{self.case_name}: run.args")
        python = str(args.get("python") or os.environ.get("CLOVER_PYTHON") or sys.executable)
        workdir = Path(str(args.get("dir") or os.environ.get("CLOVER_DIR") or os.getcwd()))
        command = summaries.pytest_command(python, args, report_dir)
        max_duration = float(args["max_duration"]) if args.get("max_duration") else None
        before = summaries.run_folders(report_dir)
        LOGGER.info("%s: running %s (in %s)", self.case_name, " ".join(command), workdir)
        log_path = report_dir / "pytest.log"
        with log_path.open("w", encoding="utf-8") as log:
            exit_code, interrupted_by = _run_child(command, workdir, log, max_duration)
        if interrupted_by.startswith("SIG"):  # not max_duration: that one stops its own case only
            Resilience.interrupted_by = interrupted_by
        new = sorted(summaries.run_folders(report_dir) - before, key=lambda p: p.stat().st_mtime)
        if not new:
            why = _NO_REPORT.get(exit_code, f"pytest exited {exit_code} without a pytest-clover report")
            self.details = {"reason": f"{why}; see {log_path}", "exit_code": exit_code}  # pytest's own output
            LOGGER.error("%s: %s", self.case_name, self.details["reason"])
            return int(self.EX_RUN_ERROR)
        summary = summaries.load_summary(new[-1])
        self.result = summaries.pass_ratio(summary)
        self.details = summaries.details(summary, new[-1])
        self.details["exit_code"] = exit_code
        self.details["log"] = str(log_path)
        if interrupted_by:
            self.details["reason"] = "; ".join(
                filter(None, [f"interrupted by {interrupted_by}", self.details["reason"]])
            )
        if self.details["reason"]:
            LOGGER.error("%s: %s", self.case_name, self.details["reason"])
        LOGGER.info("%s: report %s, score %s", self.case_name, self.details["report_html"], self.details["score"])
        if exit_code not in _PYTEST_RAN:
            # run_tests judges by is_successful() (result vs criteria), not by this return code: a run that did
            # not complete must not pass on the tests that happened to finish before it stopped.
            self.result = 0
            if exit_code == 5:
                self.details["reason"] = "no tests were collected (pytest exit 5): check run.args paths/markers"
            return int(self.EX_RUN_ERROR)
        return int(self.EX_OK)


def _run_child(command: list[str], workdir: Path, log: Any, max_duration: float | None) -> tuple[int, str]:
    """Run the child to its end, passing SIGINT/SIGTERM on; return its exit code and the signal's name, if any."""
    received: list[str] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        # Only the first: pytest takes a second SIGINT as "abort now", which would skip its fault revert.
        if len(received) == 1 and child and child[0].poll() is None:
            child[0].send_signal(signum)

    # Our handlers go in before the child starts: a signal Xtesting's process ignores (a background job of a
    # non-interactive shell ignores SIGINT) would stay ignored in the child, which could then not be interrupted;
    # a handled one is reset to its default when the child execs.
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A session of its own: a terminal's Ctrl-C reaches only us, and the child gets exactly one SIGINT from us
        # (a second one would make pytest abort without reverting faults).
        proc = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    child.append(proc)
    if received:  # the signal came while the child was starting
        proc.send_signal(signal.SIGINT)
    try:
        try:
            code = proc.wait(timeout=max_duration)
        except subprocess.TimeoutExpired:
            received.append(f"max_duration ({max_duration:g} s)")
            proc.send_signal(signal.SIGINT)
            code = None
        if received and code is None:
            try:
                code = proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        elif code is None:
            code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, received[0] if received else ""
