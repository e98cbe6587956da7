"""A live progress line while a load phase runs, and a one-line summary of each phase (issue 3).

On a terminal (the terminal reporter writes to a TTY, output is captured) a line under the test's progress
line is rewritten about once a second while ``run.phase(name, seconds)`` blocks::

    clover ▸ test_baseline │ phase steady │ 12 s left │ 100 req/s │ 0.00 % errors │ p99 8.4 ms

from the latest 1-second window of the phase the live result has received; when the phase ends the line is
erased and the cursor put back where pytest left it. With ``-v`` (TTY or not: CI logs) each phase then
leaves one line, the phase's statistics as ``result.phases`` reports them (a repeated phase name merges)::

    clover ▸ phase fault: 20.0 s, 2000 req, 0.00 % errors, p99 512 ms

Nothing per second is written where the output is not a terminal, with ``--capture=no`` (the test's own
output would interleave with the line), without the terminal reporter (``-p no:terminal``) or on an xdist
worker. The live line is written from a thread of its own while the phase blocks the test's thread (the
load generator's ``phase`` is called unchanged, so whatever it raises reaches the test as it was raised),
with pytest's capture suspended for the few microseconds of each write; a problem of the display's own
never fails or changes a test.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import pytest

PREFIX = "clover ▸ "
SEP = " │ "
DASH = "—"
TICK_S = 1.0
"""The live line is redrawn this often."""
TICK_LAG_S = 0.2
"""…this long after each whole second of the phase, by when that second's window has arrived."""
SETTLE_TIMEOUT_S = 1.0
"""At most this long is waited after a phase for its last window, before its summary line is written."""
SETTLE_POLL_S = 0.005
SETTLE_SLACK_S = 0.1
"""The phase's windows count as all there once they cover the time the phase blocked, less this."""


# --------------------------------------------------------------------------- formatting


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _amount(value: Any) -> str:
    """A rate or a latency: one decimal below 10, none from 10 on; ``—`` when unknown (None, NaN)."""
    number = _finite(value)
    if number is None:
        return DASH
    return f"{number:.1f}" if abs(number) < 10 else f"{number:.0f}"


def _percent(rate: Any) -> str:
    number = _finite(rate)
    return DASH if number is None else f"{number * 100:.2f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def format_live_line(
    test: str,
    phase: str,
    seconds_left: float,
    rps: Any,
    error_rate: Any,
    p99_ms: Any,
    width: int | None = None,
) -> str:
    """``clover ▸ <test> │ phase <name> │ <n> s left │ <rps> req/s │ <err> % errors │ p99 <ms> ms``.

    ``seconds_left`` is rounded up (a phase with 0.3 s to go shows ``1 s left``); an unknown rate or
    percentile (None, NaN: no window yet, or a window without responses) shows ``—``. With ``width`` the
    test name is shortened first, then the whole line, so that it fits (a wrapped line cannot be rewritten).
    """
    left = _finite(seconds_left)
    left_text = DASH if left is None else str(max(0, math.ceil(left - 1e-9)))
    rest = SEP + SEP.join(
        (
            f"phase {phase}",
            f"{left_text} s left",
            f"{_amount(rps)} req/s",
            f"{_percent(error_rate)} % errors",
            f"p99 {_amount(p99_ms)} ms",
        )
    )
    if width is not None and len(PREFIX) + len(test) + len(rest) > width:
        test = _clip(test, max(12, width - len(PREFIX) - len(rest)))
    line = PREFIX + test + rest
    return line if width is None else _clip(line, width)


def format_phase_summary(phase: str, seconds: Any, requests: Any, error_rate: Any, p99_ms: Any) -> str:
    """``clover ▸ phase fault: 20.0 s, 2000 req, 0.00 % errors, p99 512 ms``."""
    secs = _finite(seconds)
    count = _finite(requests)
    return (
        f"{PREFIX}phase {phase}: {DASH if secs is None else f'{secs:.1f}'} s, "
        f"{DASH if count is None else f'{count:.0f}'} req, {_percent(error_rate)} % errors, p99 {_amount(p99_ms)} ms"
    )


# --------------------------------------------------------------------------- reading the live result


def window_rows(run: Any) -> list[Mapping[str, Any]]:
    """The run's live result's 1-second windows (``result.window_rows()``), or none if it has no live result."""
    rows = getattr(getattr(run, "result", None), "window_rows", None)
    if not callable(rows):
        return []
    got = rows()
    return list(got) if isinstance(got, Sequence) else []


def _duration(row: Mapping[str, Any]) -> float:
    start, end = _finite(row.get("start")), _finite(row.get("end"))
    return 0.0 if start is None or end is None else max(0.0, end - start)


def phase_summary(run: Any, name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary line of phase ``name`` from the run's live result (``rows``: its windows, as just read)."""
    seconds = sum(_duration(r) for r in rows if r.get("phase") == name)
    phases = getattr(getattr(run, "result", None), "phases", None)
    stats = phases.get(name) if isinstance(phases, Mapping) else None
    if stats is None:  # no window of the phase arrived: what the windows say (nothing, most likely)
        mine = [r for r in rows if r.get("phase") == name]
        total = sum(int(r.get("requests") or 0) for r in mine)
        failed = sum(int(r.get("errors") or 0) for r in mine)
        return format_phase_summary(name, seconds, total, failed / total if total else None, None)
    count = _finite(getattr(stats, "requests", None))
    errors = _finite(getattr(stats, "errors", None))
    error_rate = _finite(getattr(stats, "error_rate", None))
    if error_rate is None and errors is not None and count:
        error_rate = errors / count
    if count == 0:
        error_rate = None  # no request, no error rate (whatever a result says for it)
    return format_phase_summary(name, seconds, count, error_rate, getattr(stats, "p99_ms", None))


# --------------------------------------------------------------------------- the terminal


class Progress:
    """The ``load`` fixture's display of its phases, for one test (see the module's docstring)."""

    def __init__(
        self,
        reporter: Any,
        capture: Any,
        *,
        test: str,
        time_scale: float,
        live: bool,
        summary: bool,
    ) -> None:
        self.reporter = reporter
        self.capture = capture
        self.test = test
        self.time_scale = time_scale
        self.live = live
        """Rewrite a line on the terminal while a phase runs."""
        self.summary = summary
        """Write a line about each phase at its end (``-v``)."""
        self._busy = threading.Lock()
        """Held by the phase being shown live (phases run from several threads: the first one is shown)."""

    @classmethod
    def for_test(cls, config: pytest.Config, test: str, time_scale: float) -> Progress | None:
        """The display for a test, or None when there is nothing to show (see the module's docstring)."""
        if hasattr(config, "workerinput"):
            return None  # an xdist worker: its terminal is not the user's
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return None
        capture = config.pluginmanager.getplugin("capturemanager")
        isatty = getattr(reporter, "isatty", False)
        tty = bool(isatty() if callable(isatty) else isatty) and os.environ.get("TERM") != "dumb"
        capturing = capture is not None and config.getoption("capture", "fd") != "no"
        live = tty and capturing
        summary = int(config.getoption("verbose", 0) or 0) >= 1
        if not (live or summary):
            return None
        return cls(reporter, capture, test=test, time_scale=time_scale, live=live, summary=summary)

    def phase(self, run: Any, name: str, seconds: float) -> PhaseDisplay:
        """A context manager around ``run.phase(name, seconds)``."""
        return PhaseDisplay(self, run, name, seconds)

    # -- writing -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def uncaptured(self) -> Iterator[None]:
        """pytest's capture suspended (fd 1 is the terminal again: its width can be asked too)."""
        if self.capture is None:
            yield
            return
        with self.capture.global_and_fixture_disabled():
            yield

    def _tw(self) -> Any:
        return getattr(self.reporter, "_tw", None)

    def column(self) -> int | None:
        """Where pytest left the cursor on its current line, if its terminal writer says."""
        width = getattr(self._tw(), "width_of_current_line", None)
        return width if isinstance(width, int) and width >= 0 else None

    def width(self) -> int:
        """The longest line that does not wrap (ask with capture suspended: else fd 1 is a file, 80 columns)."""
        width = getattr(self._tw(), "fullwidth", None)
        return max(20, width - 1) if isinstance(width, int) else 79

    def write_raw(self, text: str) -> None:
        """Cursor movements and the live line, unseen by pytest's tracking of its current line (call it
        within :meth:`uncaptured`)."""
        write = getattr(self.reporter, "write_raw", None) or self.reporter.write
        write(text, flush=True)

    def write_summary(self, line: str) -> None:
        """A line of its own after pytest's. Left open, as ``write_line`` leaves its line: pytest ends it, and
        then writes the test's name again before its outcome (``-v``), as it does after any such line."""
        with self.uncaptured():
            self.reporter.ensure_newline()
            lead = "" if self.column() == 0 else "\n"
            self.reporter.write(lead + line, flush=True)


class PhaseDisplay:
    """The display of one phase: the live line from a thread while the phase runs, the summary after it."""

    def __init__(self, progress: Progress, run: Any, name: str, seconds: float) -> None:
        self.progress = progress
        self.run = run
        self.name = name
        self.seconds = seconds
        self.started = 0.0
        self.first_row = 0
        self.shown = False
        self.column: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = False

    def __enter__(self) -> PhaseDisplay:
        self.started = time.monotonic()
        try:
            self.first_row = len(window_rows(self.run))
            if self.progress.live and self.progress._busy.acquire(blocking=False):
                self._live = True
                self._thread = threading.Thread(target=self._loop, name="clover-progress", daemon=True)
                self._thread.start()
        except Exception:  # the display must never stop the phase
            self._release()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Returns None: whatever the phase raised propagates unchanged.
        elapsed = time.monotonic() - self.started
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join()
            self._erase()
        except Exception:
            pass
        finally:
            self._release()
        if exc_type is None and self.progress.summary:
            with contextlib.suppress(Exception):
                self.progress.write_summary(phase_summary(self.run, self.name, self._settle(elapsed)))

    def _release(self) -> None:
        if self._live:
            self._live = False
            self.progress._busy.release()

    # -- the live line -------------------------------------------------------------------------------------

    def _duration(self) -> float | None:
        seconds = _finite(self.seconds)
        return None if seconds is None else seconds * self.progress.time_scale

    def _loop(self) -> None:
        tick = 0
        while True:
            with contextlib.suppress(Exception):
                self._draw()
            tick += 1
            due = self.started + tick * TICK_S + TICK_LAG_S
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return

    def line(self, rows: Sequence[Mapping[str, Any]], now: float, width: int | None = None) -> str:
        """The live line at monotonic time ``now`` from the run's windows ``rows``."""
        mine = [r for r in rows[self.first_row :] if r.get("phase") == self.name]
        latest: Mapping[str, Any] = mine[-1] if mine else {}
        duration = self._duration()
        left = None if duration is None else max(0.0, self.started + duration - now)
        return format_live_line(
            self.progress.test,
            self.name,
            left if left is not None else math.nan,
            latest.get("throughput_rps"),
            latest.get("error_rate"),
            latest.get("p99_ms"),
            width=width,
        )

    def _draw(self) -> None:
        rows, now = window_rows(self.run), time.monotonic()
        with self.progress.uncaptured():
            if self._stop.is_set():
                return
            text = self.line(rows, now, self.progress.width())
            if not self.shown:
                # A line of its own, under pytest's; the cursor goes back to pytest's line at the end.
                self.column = self.progress.column()
                self.progress.write_raw("\n" + text + "\x1b[K")
                self.shown = True
            else:
                self.progress.write_raw("\r" + text + "\x1b[K")

    def _erase(self) -> None:
        if not self.shown:
            return
        self.shown = False
        with self.progress.uncaptured():
            column = (self.column or 0) % (self.progress.width() + 1)
            back = f"\x1b[{column + 1}G" if column else "\r"
            self.progress.write_raw("\r\x1b[K\x1b[1A" + back)

    # -- the summary ---------------------------------------------------------------------------------------

    def _settle(self, elapsed: float) -> list[Mapping[str, Any]]:
        """The run's windows once those of the phase just ended cover the ``elapsed`` seconds it blocked.

        The generator sends a phase's last window once the requests sent in it are answered (~0.3 s after
        ``phase`` returned, more when they are slow); waiting for it makes the summary's numbers the ones the
        result will hold. Bounded by :data:`SETTLE_TIMEOUT_S` (a phase whose last requests are still queued then is
        summarised from the windows that arrived), and over at once if the run stopped or sends no windows.
        """
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            rows = window_rows(self.run)
            covered = sum(_duration(r) for r in rows[self.first_row :] if r.get("phase") == self.name)
            if covered >= elapsed - SETTLE_SLACK_S or time.monotonic() >= deadline:
                return rows
            if not getattr(self.run, "alive", False) or getattr(self.run, "result", None) is None:
                return rows
            time.sleep(SETTLE_POLL_S)
