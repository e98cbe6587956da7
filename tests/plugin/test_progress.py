"""The live progress line and the per-phase summary lines of the ``load`` fixture (pytest_clover.plugin.progress)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_clover.plugin import progress
from pytest_clover.plugin.progress import PhaseDisplay, Progress, format_live_line, format_phase_summary

from .conftest import Project

TWO_PHASES = """
def test_two_phases(load):
    run = load.start(rate=50)
    run.phase("baseline", seconds=4)
    run.phase("fault", seconds=4)
    run.stop()
"""


# --------------------------------------------------------------------------- through pytest (no TTY)


def test_with_v_each_phase_leaves_one_summary_line_with_its_numbers(project: Project) -> None:
    # "dead" sends nothing: a schedule missed on purpose, so its run does not judge the schedule.
    project.profile({"fault": {"errors": 25, "p99_ms": 512.4}, "dead": {"requests": 0, "p99_ms": None}})
    project.pytester.makepyfile(TWO_PHASES + '    run2 = load.start(rate=50, schedule_tolerance=None)\n    run2.phase("dead", seconds=2)\n')
    result = project.run("-v")
    result.assert_outcomes(passed=1)
    # 50 req/s for 4 s × the 0.5 time scale; the fake's p99 is 30 ms unless the profile says otherwise.
    result.stdout.fnmatch_lines(
        [
            "*::test_two_phases ",
            "clover ▸ phase baseline: 2.0 s, 100 req, 0.00 % errors, p99 30 ms",
            "clover ▸ phase fault: 2.0 s, 100 req, 25.00 % errors, p99 512 ms",
            "clover ▸ phase dead: 1.0 s, 0 req, — % errors, p99 — ms",
            "*::test_two_phases PASSED*",
        ],
        consecutive=True,
    )
    # Not a terminal: nothing is rewritten.
    assert "\r" not in result.stdout.str() and "\x1b[" not in result.stdout.str()


def test_without_v_there_is_no_progress_output(project: Project) -> None:
    project.pytester.makepyfile(TWO_PHASES)
    quiet = project.run()
    quiet.assert_outcomes(passed=1)
    assert "clover ▸" not in quiet.stdout.str()
    assert "\r" not in quiet.stdout.str() and "\x1b[" not in quiet.stdout.str()


def test_a_phase_that_raises_leaves_no_summary_and_its_error_reaches_the_test_unchanged(project: Project) -> None:
    project.profile({"crash": "fault"})
    project.pytester.makepyfile(
        """
        import pytest
        from pytest_clover.load.run import LoadGeneratorError

        def test_crash(load):
            run = load.start(rate=50)
            run.phase("baseline", seconds=2)
            with pytest.raises(LoadGeneratorError, match="died during phase 'fault'") as info:
                run.phase("fault", seconds=2)
            assert info.value.exit_code == -9
        """
    )
    result = project.run("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["clover ▸ phase baseline: 1.0 s, 50 req, 0.00 % errors, p99 30 ms"])
    assert "phase fault:" not in result.stdout.str()


# --------------------------------------------------------------------------- the formatting


def test_the_live_line() -> None:
    line = format_live_line("test_canary", "fault", 2.3, 99.6, 0.0123, math.nan)
    assert line == "clover ▸ test_canary │ phase fault │ 3 s left │ 100 req/s │ 1.23 % errors │ p99 — ms"
    # Under 10: one decimal. Time left is rounded up, and never below 0.
    assert format_live_line("t", "p", 0.0, 7.5, 0.0, 8.25) == (
        "clover ▸ t │ phase p │ 0 s left │ 7.5 req/s │ 0.00 % errors │ p99 8.2 ms"
    )
    assert " 1 s left " in format_live_line("t", "p", 0.01, 1, 0, 1)
    assert " 0 s left " in format_live_line("t", "p", -3.0, 1, 0, 1)
    # No window yet: every measure unknown.
    assert format_live_line("t", "p", 5, None, None, None).endswith("5 s left │ — req/s │ — % errors │ p99 — ms")
    # Too wide for the terminal: the test name gives way first, the measures stay.
    name = "test_" + "very_long_name_" * 6
    line = format_live_line(name, "fault", 12, 100.0, 0.0, 512.0, width=90)
    assert len(line) <= 90 and "…" in line and line.endswith("│ p99 512 ms")
    assert len(format_live_line(name, "fault", 12, 100.0, 0.0, 512.0, width=30)) == 30


def test_the_phase_summary_line() -> None:
    assert format_phase_summary("fault", 20.0, 2000, 0.0, 512.4) == (
        "clover ▸ phase fault: 20.0 s, 2000 req, 0.00 % errors, p99 512 ms"
    )
    assert (
        format_phase_summary("x", 3.25, 0, math.nan, math.nan) == "clover ▸ phase x: 3.2 s, 0 req, — % errors, p99 — ms"
    )


# --------------------------------------------------------------------------- the live line on a terminal


class Capture:
    """pytest's capture manager, as far as the display uses it."""

    def __init__(self) -> None:
        self.suspended = False

    @contextlib.contextmanager
    def global_and_fixture_disabled(self) -> Iterator[None]:
        self.suspended = True
        try:
            yield
        finally:
            self.suspended = False


class Writer:
    """pytest's terminal writer: its line so far, and the terminal's width (known only while fd 1 is the
    terminal, i.e. with capture suspended)."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.width_of_current_line = 10

    @property
    def fullwidth(self) -> int:
        self.terminal.uncaptured &= self.terminal.capture.suspended
        return 100


class Terminal:
    """A terminal reporter on a TTY that records what is written, and whether capture was off meanwhile."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.raw: list[str] = []
        self.lines: list[str] = []
        self.uncaptured = True
        self._tw = Writer(self)

    def isatty(self) -> bool:
        return True

    def write_raw(self, text: str, *, flush: bool = False) -> None:
        self.uncaptured &= self.capture.suspended
        self.raw.append(text)

    def write(self, text: str, *, flush: bool = False, **markup: bool) -> None:
        self.uncaptured &= self.capture.suspended
        self.lines.append(text)

    def ensure_newline(self) -> None:
        pass


class Result:
    """A live LoadResult: windows arrive while the phase runs (and its last one just after)."""

    def __init__(self) -> None:
        # An earlier run of the same phase name.
        earlier = {"start": 0.0, "end": 1.0, "phase": "fault", "requests": 9, "errors": 0}
        earlier.update(throughput_rps=9.0, error_rate=0.0, p99_ms=900.0)
        self.rows: list[dict[str, Any]] = [earlier]
        self.lock = threading.Lock()

    def add(self, start: float, end: float, requests: int, p99_ms: float) -> None:
        row = {"start": start, "end": end, "phase": "fault", "requests": requests, "errors": 1}
        row.update(throughput_rps=requests / (end - start), error_rate=1 / requests, p99_ms=p99_ms)
        with self.lock:
            self.rows.append(row)

    def window_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.rows]

    @property
    def phases(self) -> dict[str, Any]:
        rows = self.window_rows()[1:]  # the first run of "fault", before this one, is left out here
        requests = sum(r["requests"] for r in rows)
        stats = {"requests": requests, "errors": len(rows), "error_rate": len(rows) / requests, "p99_ms": 70.0}
        return {"fault": type("PhaseStats", (), stats)()}


class Run:
    """A load run whose phase blocks ``seconds`` and whose generator sends windows meanwhile."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.result = Result()
        self.alive = True
        self.error = error

    def phase(self, name: str, seconds: float) -> None:
        half = seconds / 2
        time.sleep(half)
        self.result.add(100.0, 100.0 + half, 20, 40.0)
        time.sleep(half)
        if self.error is not None:
            raise self.error
        # The generator sends the phase's last window a moment after the phase returned.
        threading.Timer(0.05, self.result.add, (100.0 + half, 100.0 + seconds, 30, 60.0)).start()


@pytest.fixture
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "TICK_S", 0.05)
    monkeypatch.setattr(progress, "TICK_LAG_S", 0.0)


def display(*, live: bool = True, summary: bool = True) -> tuple[Progress, Terminal]:
    capture = Capture()
    terminal = Terminal(capture)
    shown = Progress(terminal, capture, test="test_it", time_scale=1.0, live=live, summary=summary)
    return shown, terminal


def test_on_a_terminal_the_line_is_rewritten_while_the_phase_runs_then_erased(fast_ticks: None) -> None:
    shown, terminal = display(summary=False)
    run = Run()
    with shown.phase(run, "fault", 0.4):
        run.phase("fault", 0.4)
    first, *updates, erase = terminal.raw
    # Drawn on a line of its own under pytest's, from the phase's own windows only (not the earlier 9-request one).
    assert first.startswith("\nclover ▸ test_it │ phase fault │ ") and first.endswith("\x1b[K")
    assert updates and all(u.startswith("\rclover ▸ test_it │ phase fault │ ") for u in updates)
    assert "│ 1 s left │ — req/s │ — % errors │ p99 — ms" in first  # no window of this phase yet
    assert "│ 100 req/s │ 5.00 % errors │ p99 40 ms" in updates[-1]  # the latest window
    # Erased, and the cursor back at column 11 of pytest's line (where its writer said it was).
    assert erase == "\r\x1b[K\x1b[1A\x1b[11G"
    assert terminal.uncaptured and not terminal.lines


def test_the_summary_waits_for_the_phases_last_window(fast_ticks: None) -> None:
    shown, terminal = display(live=False)
    run = Run()
    with shown.phase(run, "fault", 0.4):
        run.phase("fault", 0.4)
    assert not terminal.raw
    # 20 + 30 requests: the window sent after the phase returned is counted. 1.4 s: the windows of the
    # phase, the earlier run of it included (as result.phases merges them).
    assert terminal.lines == ["\nclover ▸ phase fault: 1.4 s, 50 req, 4.00 % errors, p99 70 ms"]
    assert terminal.uncaptured


def test_what_the_phase_raises_propagates_unchanged_and_the_line_is_erased(fast_ticks: None) -> None:
    shown, terminal = display()
    error = KeyError("boom")
    run = Run(error)
    with pytest.raises(KeyError) as info, shown.phase(run, "fault", 0.2):
        run.phase("fault", 0.2)
    assert info.value is error
    assert terminal.raw[-1].startswith("\r\x1b[K\x1b[1A")
    assert not terminal.lines  # no summary of a phase that failed


def test_a_display_that_fails_does_not_fail_the_phase(fast_ticks: None) -> None:
    shown, terminal = display()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("terminal gone")

    terminal.write_raw = broken  # type: ignore[method-assign]
    terminal.write = broken  # type: ignore[method-assign]
    run = Run()
    with shown.phase(run, "fault", 0.2) as phase:
        run.phase("fault", 0.2)
    assert isinstance(phase, PhaseDisplay)


@pytest.mark.parametrize(
    ("args", "tty", "live", "summary"),
    [
        ((), False, None, None),
        (("-v",), False, False, True),
        ((), True, True, False),
        (("-q",), True, True, False),
        (("-s", "-v"), True, False, True),
        (("-s",), True, None, None),
        (("-p", "no:terminal"), True, None, None),
    ],
)
def test_when_there_is_something_to_show(
    pytester: pytest.Pytester, args: tuple[str, ...], tty: bool, live: bool | None, summary: bool | None
) -> None:
    config = pytester.parseconfigure(*args)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.isatty = lambda: tty
    shown = Progress.for_test(config, "test_x", 1.0)
    assert (shown and shown.live, shown and shown.summary) == (live, summary)
