"""Exact merging of the windows of N load workers into the windows of one generator, and lost-worker detection.

Pure bookkeeping (no locust, no gevent, no clock of its own): the distributed load master
(:mod:`pytest_clover.load.master`) feeds it every window message its workers send and forwards what it returns
to the parent; the unit tests feed it made-up messages.

Why the merge is exact. Every worker cuts its windows at the same boundaries: all start at the same ``t0``, all
turn unix times into their monotonic clock through the master's offset (one machine, one CLOCK_MONOTONIC, so
the boundaries are the very same floats), and the master forwards each phase change, with the instant the test
made it, to every worker, so each window is a span of send time that all workers share (see the definitions in
:mod:`pytest_clover.load.result`). Worker
``i`` of ``N`` sends the requests ``i, i + N, i + 2N…`` of the schedule, so a window of the whole run holds
exactly the requests of the workers' windows of the same span. Merging one window adds the status counts, the
late counts and the HdrHistograms (``decode`` + ``add``: the same buckets, so the sum is the histogram one
process would have recorded), and recomputes the percentiles from the sum: they equal those of one histogram of
all the requests, not an average of percentiles.

When a merged window goes out. Each worker sends its *final* windows in time order, so the end of the newest
one is how far that worker is complete (its *coverage*). A merged window is sent, final, once every live
worker's coverage reaches its end. A provisional window (some requests still without an outcome) is merged the
same way — the final windows and the latest provisional one of every worker, ``pending`` summed — and sent
provisionally once every live worker has sent something for it; the final message replaces it in
:class:`~pytest_clover.load.result.LoadResult` (same ``start``), as for one generator.

A lost worker (its process exited, the master's heartbeats say it is missing, it sent a bad message, or it
stayed silent for :data:`SILENT_AFTER_S` while the others finished a window it had not) is no longer waited
for: the windows it had not finished go out with ``missing_workers: [ids]`` (its requests are not in them, so
their rate is short by its share), and :attr:`WindowMerger.lost` says which worker, when, why, and how many
windows miss it. A window is never silently passed on at a lower rate.

Windows that do not line up (a worker that read a phase change more than ``STAGE_S`` late moved it, so its
boundaries differ) cannot be merged exactly: such a window is added to the merged window that holds its
middle, and the merged window says so (``misaligned_workers``); the counts stay exact, the boundaries do not.

Cost: O(windows × workers) decodes and adds, nothing per request; memory is one histogram per window not yet
sent (the request timeout's worth at most).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .result import MESSAGE_VERSION, new_histogram, release_histogram, window_message

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped,unused-ignore]

SILENT_AFTER_S = 5.0
"""A live worker that sent no window message for this long, while the others finished a window it has not
finished, is lost. A running worker sends at least one message a second (a final or a first provisional one
for each window that ended), whatever its requests are waiting for."""
ALIGN_TOLERANCE_S = 1e-6
"""Windows of different workers (of the same phase) whose starts differ by at most this are the same window.
The workers share the master's clock offset, so their boundaries are the very same floats; this only absorbs
rounding. It must stay far below the shortest window (a phase change can leave one of a few ms)."""
MISSING_KEY = "missing_workers"
"""The window message field listing the workers whose requests a merged window lacks (absent when none)."""
MISALIGNED_KEY = "misaligned_workers"
"""The window message field listing the workers whose window boundaries differed from the merged window's."""


def _decode(encoded: str | bytes) -> HdrHistogram:
    # hdrh is imported here, as in result.py: importing this module costs nothing until a window comes.
    from hdrh.histogram import HdrHistogram

    return HdrHistogram.decode(encoded)


class MergeError(ValueError):
    """A window message that cannot be merged (malformed, from an unknown worker, or inconsistent)."""


@dataclass
class WorkerLoss:
    """One worker the merger stopped waiting for."""

    worker: int
    """The worker's index, 0 … N−1 (its share of the schedule is requests ``worker + k·N``)."""
    reason: str
    """Why it was declared lost (exit code, missing heartbeats, silence, a bad message)."""
    at: float
    """Unix seconds: when it was declared lost."""
    covered_until: float | None
    """Unix seconds: the end of its last final window (None: it finished none); every window after this misses
    its requests."""
    windows: int = 0
    """Merged final windows sent without its requests (grows until the run ends)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the master's ``done`` message carries a list of these)."""
        return {
            "worker": self.worker,
            "reason": self.reason,
            "at": self.at,
            "covered_until": self.covered_until,
            "windows": self.windows,
        }


class _Parts:
    """The parts of a window, decoded and checked once (status counts keyed by int, histogram decoded)."""

    __slots__ = ("end", "final", "hist", "late", "pending", "phase", "requests", "start", "status")

    def __init__(self, worker: int, message: Mapping[str, Any]) -> None:
        if not isinstance(message, Mapping):
            raise MergeError(f"worker {worker}: a window message must be a mapping, not {type(message).__name__}")
        if message.get("type") != "window":
            raise MergeError(f"worker {worker}: not a window message (type={message.get('type')!r})")
        if message.get("v") != MESSAGE_VERSION:
            raise MergeError(
                f"worker {worker}: window message version {message.get('v')!r}; this merger reads {MESSAGE_VERSION}"
            )
        try:
            self.start = float(message["start"])
            self.end = float(message["end"])
            phase = message.get("phase")
            self.final = bool(message.get("final", True))
            self.pending = int(message.get("pending", 0))
            self.late = int(message.get("late", 0))
            self.status = {int(code): int(n) for code, n in dict(message.get("status", {})).items()}
            encoded = message["hist"]
        except (KeyError, TypeError, ValueError) as exc:
            raise MergeError(f"worker {worker}: malformed window message ({exc!r})") from exc
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise MergeError(f"worker {worker}: window [{self.start}, {self.end}) is not a span of time")
        if phase is not None and not isinstance(phase, str):
            raise MergeError(f"worker {worker}: window phase must be a string or null, not {phase!r}")
        self.phase: str | None = phase
        if any(n < 0 for n in self.status.values()) or self.late < 0 or self.pending < 0:
            raise MergeError(f"worker {worker}: negative counts in the window at {self.start:.3f}")
        self.requests = sum(self.status.values())
        try:
            hist = _decode(encoded if isinstance(encoded, str | bytes) else str(encoded))
        except Exception as exc:  # hdrh raises bare ValueError/TypeError/zlib errors on garbage
            raise MergeError(f"worker {worker}: window at {self.start:.3f}: undecodable histogram ({exc!r})") from exc
        if hist.get_total_count() != self.requests:
            release_histogram(hist)
            raise MergeError(
                f"worker {worker}: window at {self.start:.3f}: histogram holds {hist.get_total_count()} latencies "
                f"but the status counts sum to {self.requests}"
            )
        self.hist: HdrHistogram | None = hist

    def drop_histogram(self) -> None:
        if self.hist is not None:
            release_histogram(self.hist)
            self.hist = None


class _Window:
    """One merged window being collected: the final parts added as they come, the provisional ones kept."""

    __slots__ = (
        "end",
        "final_from",
        "hist",
        "late",
        "misaligned",
        "phase",
        "provisional",
        "provisional_dirty",
        "start",
        "status",
    )

    def __init__(self, start: float, end: float, phase: str | None) -> None:
        self.start = start
        """The first part's start: the merged messages (provisional and final) all carry this very value."""
        self.end = end
        self.phase = phase
        self.final_from: set[int] = set()
        self.provisional: dict[int, _Parts] = {}
        """Worker → its latest provisional part (its histogram kept decoded; replaced by a newer one)."""
        self.provisional_dirty = False
        self.hist: HdrHistogram | None = None
        self.status: dict[int, int] = {}
        self.late = 0
        self.misaligned: set[int] = set()

    def contains(self, t: float) -> bool:
        return self.start - ALIGN_TOLERANCE_S <= t < self.end + ALIGN_TOLERANCE_S

    def add_final(self, worker: int, parts: _Parts) -> None:
        old = self.provisional.pop(worker, None)
        if old is not None:
            old.drop_histogram()
        assert parts.hist is not None
        if self.hist is None:
            self.hist = new_histogram()
        self.hist.add(parts.hist)
        parts.drop_histogram()
        for code, n in parts.status.items():
            self.status[code] = self.status.get(code, 0) + n
        self.late += parts.late
        self.final_from.add(worker)
        self.end = max(self.end, parts.end)

    def add_provisional(self, worker: int, parts: _Parts) -> None:
        old = self.provisional.get(worker)
        if old is not None:
            old.drop_histogram()
        self.provisional[worker] = parts
        self.end = max(self.end, parts.end)
        self.provisional_dirty = True

    def message(self, *, final: bool, missing: Iterable[int] = ()) -> dict[str, Any]:
        hist = new_histogram()
        if self.hist is not None:
            hist.add(self.hist)
        status = dict(self.status)
        late, pending = self.late, 0
        if not final:
            for parts in self.provisional.values():
                assert parts.hist is not None
                hist.add(parts.hist)
                for code, n in parts.status.items():
                    status[code] = status.get(code, 0) + n
                late += parts.late
                pending += parts.pending
        message = window_message(
            start=self.start,
            end=self.end,
            phase=self.phase,
            histogram=hist,
            status_counts=status,
            late=late,
            final=final,
            pending=pending,
        )
        release_histogram(hist)
        missing = sorted(missing)
        if missing:
            message[MISSING_KEY] = missing
        if self.misaligned:
            message[MISALIGNED_KEY] = sorted(self.misaligned)
        return message

    def release(self) -> None:
        if self.hist is not None:
            release_histogram(self.hist)
            self.hist = None
        for parts in self.provisional.values():
            parts.drop_histogram()
        self.provisional.clear()


class WindowMerger:
    """Merges the window messages of ``workers`` load workers (indices 0 … workers−1) into one stream.

    Feed it with :meth:`add` (one worker's window message), :meth:`finish` (the worker sent its last window),
    :meth:`lose` (the caller saw the worker die) and, about once a second, :meth:`check` (silence). Each returns
    the merged window messages now due, in time order: send them on as they are. :meth:`close` returns what is
    left when the run ends. ``now`` arguments are any monotonic clock in seconds (the silence timer); ``at``
    arguments are unix seconds (for the reports).
    """

    def __init__(self, workers: int, *, silent_after_s: float = SILENT_AFTER_S) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if not silent_after_s > 0:
            raise ValueError(f"silent_after_s must be positive, not {silent_after_s}")
        self.workers = workers
        self.silent_after_s = silent_after_s
        self._live: set[int] = set(range(workers))
        self._covered: dict[int, float] = dict.fromkeys(range(workers), -math.inf)
        self._heard: dict[int, float] = {}
        self._pending: list[_Window] = []
        """Windows not sent final yet, in start order."""
        self._sent_until = -math.inf
        """End of the newest window sent final: a part ending before it comes too late."""
        self._stopping = False
        self._closed = False
        self.lost: dict[int, WorkerLoss] = {}
        """Worker → why and when it was lost, and how many windows miss it."""
        self.requests_by_worker: list[int] = [0] * workers
        """Requests (with an outcome) in each worker's final windows: how the load was split."""
        self.windows_sent = 0
        """Final merged windows sent."""
        self.windows_missing_workers = 0
        """Final merged windows sent without some worker's requests."""
        self.windows_misaligned = 0
        """Final merged windows whose parts had different boundaries (see the module's docstring)."""
        self.ignored = 0
        """Messages from lost workers, or for windows already sent, that were dropped."""

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def live(self) -> list[int]:
        """Workers still waited for, in index order."""
        return sorted(self._live)

    def _check_worker(self, worker: int) -> None:
        if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self.workers:
            raise MergeError(f"unknown worker {worker!r}: this run has workers 0 … {self.workers - 1}")

    def start(self, now: float) -> None:
        """The run starts now: every worker's silence is counted from here until its first window."""
        for worker in range(self.workers):
            self._heard.setdefault(worker, now)

    def stopping(self) -> None:
        """The run is stopping: workers wait for their last outcomes without sending anything, so silence no
        longer means lost (a worker that dies is still reported by :meth:`lose`)."""
        self._stopping = True

    # -- input ------------------------------------------------------------------------------------------------

    def add(self, worker: int, message: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        """One window message from ``worker``; returns the merged messages now due.

        Raises :class:`MergeError` for a message that cannot be merged (the caller should then :meth:`lose`
        the worker: its data is not trustworthy). Messages from a lost worker are counted in :attr:`ignored`.
        """
        self._check_worker(worker)
        parts = _Parts(worker, message)
        if worker not in self._live or self._closed:
            parts.drop_histogram()
            self.ignored += 1
            return []
        self._heard[worker] = now
        if parts.final and parts.start < self._covered[worker] - ALIGN_TOLERANCE_S:
            parts.drop_histogram()
            raise MergeError(
                f"worker {worker}: final window at {parts.start:.3f} arrived after its window ending "
                f"{self._covered[worker]:.3f} (final windows must come in time order)"
            )
        if parts.end <= self._sent_until - ALIGN_TOLERANCE_S:
            parts.drop_histogram()
            if parts.final:
                raise MergeError(
                    f"worker {worker}: final window [{parts.start:.3f}, {parts.end:.3f}) came after the merged "
                    f"window for that time was sent"
                )
            self.ignored += 1  # a provisional window overtaken by the final one: nothing lost
            return []
        window = self._window_for(worker, parts)
        if parts.final:
            self.requests_by_worker[worker] += parts.requests
            window.add_final(worker, parts)
            self._covered[worker] = max(self._covered[worker], parts.end)
        else:
            window.add_provisional(worker, parts)
        return self._due()

    def finish(self, worker: int) -> list[dict[str, Any]]:
        """``worker`` sent all its windows (its ``done``): nothing more is waited for from it."""
        self._check_worker(worker)
        if worker in self._live:
            self._covered[worker] = math.inf
        return self._due()

    def lose(self, worker: int, reason: str, at: float) -> list[dict[str, Any]]:
        """Stop waiting for ``worker`` (no-op if already lost or finished); returns the merged messages now due."""
        self._check_worker(worker)
        if worker not in self._live or self._covered[worker] == math.inf:
            return []
        self._live.discard(worker)
        covered = self._covered[worker]
        self.lost[worker] = WorkerLoss(worker, reason, at, covered if math.isfinite(covered) else None)
        for window in self._pending:
            stale = window.provisional.pop(worker, None)
            if stale is not None:  # its provisional numbers will never be completed: not counted
                stale.drop_histogram()
                window.provisional_dirty = True
        return self._due()

    def check(self, now: float, at: float) -> list[dict[str, Any]]:
        """Lose the live workers that stayed silent for :attr:`silent_after_s` while another live worker
        finished the oldest window they have not; returns the merged messages now due."""
        if self._stopping or self._closed or not self._pending or len(self._live) < 2:
            return []
        oldest = self._pending[0]
        done = {w for w in self._live if self._covered[w] >= oldest.end - ALIGN_TOLERANCE_S}
        if not done:
            return []
        messages: list[dict[str, Any]] = []
        for worker in sorted(self._live - done):
            silent = now - self._heard.get(worker, now)
            if silent >= self.silent_after_s:
                others = ", ".join(str(w) for w in sorted(done))
                reason = (
                    f"sent no window for {silent:.1f} s while worker(s) {others} finished the window "
                    f"{oldest.start:.3f}–{oldest.end:.3f}"
                )
                messages += self.lose(worker, reason, at)
        return messages

    def close(self) -> list[dict[str, Any]]:
        """The run ended: every window still collected goes out final; workers that did not finish a window
        are listed in it as missing. Later input is ignored."""
        if self._closed:
            return []
        messages = [self._send_final(window) for window in self._pending]
        self._pending.clear()
        self._closed = True
        return messages

    # -- merging ----------------------------------------------------------------------------------------------

    def _window_for(self, worker: int, parts: _Parts) -> _Window:
        # Nearly always the newest windows: search from the end.
        for window in reversed(self._pending):
            if abs(window.start - parts.start) <= ALIGN_TOLERANCE_S and window.phase == parts.phase:
                return window
        middle = (parts.start + parts.end) / 2
        for window in reversed(self._pending):
            if window.contains(middle) and window.phase == parts.phase:
                window.misaligned.add(worker)
                return window
        window = _Window(parts.start, parts.end, parts.phase)
        index = len(self._pending)
        while index > 0 and self._pending[index - 1].start > window.start:
            index -= 1
        self._pending.insert(index, window)
        return window

    def _covers(self, window: _Window) -> bool:
        return all(self._covered[w] >= window.end - ALIGN_TOLERANCE_S for w in self._live)

    def _missing(self, window: _Window) -> list[int]:
        return [
            w
            for w in range(self.workers)
            if w not in window.final_from and self._covered[w] < window.end - ALIGN_TOLERANCE_S
        ]

    def _send_final(self, window: _Window) -> dict[str, Any]:
        missing = self._missing(window)
        message = window.message(final=True, missing=missing)
        window.release()
        self.windows_sent += 1
        if missing:
            self.windows_missing_workers += 1
            for w in missing:
                if w in self.lost:
                    self.lost[w].windows += 1
        if window.misaligned:
            self.windows_misaligned += 1
        self._sent_until = max(self._sent_until, window.end)
        return message

    def _due(self) -> list[dict[str, Any]]:
        messages = []
        while self._pending and self._covers(self._pending[0]):
            messages.append(self._send_final(self._pending.pop(0)))
        for window in self._pending:
            if not window.provisional_dirty:
                continue
            heard = window.final_from | set(window.provisional)
            waiting = [w for w in self._live if w not in heard and self._covered[w] < window.end - ALIGN_TOLERANCE_S]
            if not waiting:
                window.provisional_dirty = False
                gone = [w for w in self.lost if w in self._missing(window)]
                messages.append(window.message(final=False, missing=gone))
        return messages
