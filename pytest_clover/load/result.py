"""What a load run measured: per-phase statistics and 1-second windows, built from the generator's window messages.

The generator (a child process, see ``worker.py``) builds its windows with :class:`SendWindows` and sends one
JSON message per window: the window's start and end (unix seconds), its phase, the count of outcomes per status
code, the count of late requests, a few percentiles and the window's HdrHistogram of latencies in µs
(``encode()``, base64). :meth:`LoadResult.ingest` is the one place such a message is read — in the parent during a
run, and in the unit tests.

Memory stays bounded whatever the duration: per window the result keeps one row of scalars; per phase it keeps
one merged histogram; and the :data:`RECENT_WINDOWS` most recent windows keep their histogram *encoded* (as the
message carried it, ~1 kB), so :meth:`LoadResult.recent` gives exact percentiles over the last seconds of a run.
Nothing per request is ever stored, and decoded window histograms are merged, then dropped.

Definitions used throughout:

* every request has a *send time*: its intended send time in the open loop (the schedule's ``t0 + i/rate``,
  whether or not the generator managed to send it then), its actual send time in the closed loop. Windows and
  phases are spans of send time, and a request is counted in the window and the phase in which it was *sent*,
  however long its answer took and whatever the test did meanwhile. So a phase's numbers are those of exactly
  the requests sent while the test was in that phase: a 503 answered after a fault was reverted to a request
  sent while it was in force is the fault's, and a request queued behind a fault is charged to the fault;
* phases start and end at the instants the test changed phase (the times of its ``phase-start`` and
  ``phase-end`` events); windows are 1 s of send time from a phase's start (a last piece shorter than
  :data:`HOLD_S` joins the window before it). The traffic before the first phase, between phases (while a test
  injects, verifies or reverts a fault, for instance) and after the last one has phase None: it is in the window
  rows, in no phase. A gap between phases is a window of its own, however short; an empty one shorter than
  :data:`HOLD_S` is left out;
* a request's *outcome* is its response, or status 0 (connection error, timeout, broken body); an *error* is
  status 0 or any status outside 200–399 — 4xx count as errors (a resilience test wants to see a fault's
  403/404 as well as its 503);
* a window is sent once every request sent in it has an outcome (:data:`STAGE_S` plus the slowest request after
  its end; the request timeout bounds it). One still waiting :data:`PROVISIONAL_AFTER_S` after its end is also
  sent *provisionally* (the outcomes so far, and how many are ``pending``), for live readers; the final
  message replaces it, and only final windows count in the phases. ``stop()`` waits until every request sent
  has its outcome, so none is left out of its phase;
* latency is measured from the intended send time in the open loop (coordinated omission corrected) and from
  the actual send time in the closed loop;
* *late* counts open-loop requests that were sent more than 10 ms after their intended time (they are still
  sent, and their latency still counts from the intended time), in the window of their intended time;
* *throughput* is outcomes per second of send time: in the open loop, the offered rate unless requests were
  lost (a target that cannot keep up shows as latency, and as late sends, not as lower throughput); in the
  closed loop, the rate the users achieved.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped,unused-ignore]
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped,unused-ignore]

MESSAGE_VERSION = 2
"""Bumped when the window message changes incompatibly; :meth:`LoadResult.ingest` checks it. Version 2: windows
are spans of send time, and a window may come provisionally (``final`` false, ``pending`` requests) first."""
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
"""One hour: a latency counted from the intended send time can exceed the request timeout when the generator
itself fell behind, so the range is wider than any timeout. Larger values are clamped to it."""
HIST_SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 95.0, 99.0)
_PCT_KEYS = ("p50_us", "p95_us", "p99_us", "max_us")
RECENT_WINDOWS = 600
"""How many of the most recent windows :meth:`LoadResult.recent` can merge: ten minutes of 1-second windows. Their
histograms stay encoded (compressed base64, as the window message carried them), a few hundred bytes to a few kB
each, instead of the ~190 kB of counts a decoded one holds."""
_EDGE_SLACK_S = 0.05
"""A window overlapping a time range by less than this is outside it."""
WINDOW_S = 1.0
"""Windows are this long (in send time) from the start of their phase or gap."""
HOLD_S = 0.05
"""A phase's last piece shorter than this joins the window before it (no window of a few ms at a phase's end);
an empty gap between phases shorter than this is left out."""
STAGE_S = 0.25
"""A phase change names the instant the test made it; the generator reads it a moment later (ms; more on a busy
machine), so requests sent in the last :data:`STAGE_S` are placed in a window only once that long has passed.
A phase change read later than this is applied :data:`STAGE_S` back (the generator logs it)."""
PROVISIONAL_AFTER_S = 1.0
"""A window whose requests are still not all answered this long after its end is sent provisionally (and again
each time this long passes while it changed), so a live reader sees a stall as it happens."""

ROW_COLUMNS: tuple[str, ...] = (
    "start",
    "end",
    "phase",
    "requests",
    "errors",
    "late",
    "error_rate",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "missing_workers",
)


def _hdr_class() -> type[HdrHistogram]:
    # hdrh is imported lazily so that importing this module costs nothing until a run produces data.
    from hdrh.histogram import HdrHistogram

    cls: type[HdrHistogram] = HdrHistogram
    return cls


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in µs, with the range and precision every window and phase uses."""
    return _hdr_class()(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_SIGNIFICANT_DIGITS)


def clamp_us(latency_us: float) -> int:
    """A latency in µs as the histogram can hold it (at least 1 µs, at most :data:`HIST_HIGHEST_US`)."""
    return min(max(int(latency_us), HIST_LOWEST_US), HIST_HIGHEST_US)


def release_histogram(hist: HdrHistogram) -> None:
    """Free a histogram that is no longer needed now, not at the next cyclic garbage collection.

    An hdrh histogram and its encoder point at each other, so its counts array (~190 kB at this range) waits
    for the cycle collector; one decode per window would pile up tens of MB of garbage between collections.
    """
    encoder = getattr(hist, "encoder", None)
    if encoder is not None and getattr(encoder, "histogram", None) is hist:
        encoder.histogram = None


def is_error(status: int) -> bool:
    """Status 0 (no response) and anything outside 200–399 is an error."""
    return not 200 <= status < 400


def _percentiles_us(hist: HdrHistogram) -> dict[str, float]:
    if hist.get_total_count() == 0:
        return {"p50_us": math.nan, "p95_us": math.nan, "p99_us": math.nan, "max_us": math.nan}
    # One pass over the counts for all three (get_value_at_percentile walks the array once per call).
    values = hist.get_percentile_to_value_dict(list(PERCENTILES))
    return {
        "p50_us": float(values[50.0]),
        "p95_us": float(values[95.0]),
        "p99_us": float(values[99.0]),
        "max_us": float(hist.get_max_value()),
    }


def window_message(
    *,
    start: float,
    end: float,
    phase: str | None,
    histogram: HdrHistogram,
    status_counts: Mapping[int, int],
    late: int = 0,
    final: bool = True,
    pending: int = 0,
) -> dict[str, Any]:
    """The JSON-ready message for one window; the generator sends exactly this (tests build it the same way).

    Every outcome in ``status_counts`` must have one latency in ``histogram``. ``final`` false: a provisional
    window, ``pending`` of its requests still without an outcome (a later message for the same start replaces it).
    """
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    return {
        "type": "window",
        "v": MESSAGE_VERSION,
        "start": start,
        "end": end,
        "phase": phase,
        "final": bool(final),
        "pending": int(pending),
        "status": {str(code): int(n) for code, n in status_counts.items() if n},
        "late": int(late),
        # NaN (an empty window) is not JSON; null stands for it on the wire.
        **{k: _nan_to_none(v) for k, v in _percentiles_us(histogram).items()},
        "hist": histogram.encode().decode("ascii"),
    }


class Ticket:
    """One request of the generator, from the moment its send time is known until it has an outcome."""

    __slots__ = ("late", "sent", "state")

    CLAIMED, SENT, DONE, SKIPPED, ABANDONED = range(5)

    def __init__(self, sent: float) -> None:
        self.sent = sent
        """Send time on the caller's clock: intended (open loop) or actual (closed loop)."""
        self.late = False
        self.state = Ticket.CLAIMED

    @property
    def outstanding(self) -> bool:
        return self.state in (Ticket.CLAIMED, Ticket.SENT)


class _OpenWindow:
    __slots__ = ("changed", "end", "hist", "late", "phase", "provisional_at", "split", "start", "status")

    def __init__(self, start: float, phase: str | None, *, split: bool) -> None:
        self.start = start
        self.end: float | None = None
        self.phase = phase
        self.split = split
        """Its start is a 1-s cut inside a phase or gap (the window before it is of the same span)."""
        self.hist = new_histogram()
        self.status: Counter[int] = Counter()
        self.late = 0
        self.provisional_at: float | None = None
        self.changed = False

    def absorb(self, other: _OpenWindow) -> None:
        self.hist.add(other.hist)
        release_histogram(other.hist)
        self.status.update(other.status)
        self.late += other.late
        self.changed = True


class SendWindows:
    """The generator's windows: spans of send time, cut at phase changes and every second, sent once settled.

    Pure bookkeeping on the caller's monotonic clock (``offset`` turns it into unix seconds in the messages):
    the generator's timer calls :meth:`tick` and sends what it returns; unit tests drive it with made-up times.
    Each request is :meth:`register`-ed when its send time is known (the open loop claims intended times in
    order, the closed loop registers as it sends, so tickets come in send-time order), marked :meth:`sent`,
    and :meth:`complete`-d with its outcome, which goes into the window of its send time.

    A window is final once no request sent before its end can still get an outcome: its end is older than the
    oldest outstanding ticket and the next send. Outcomes of requests sent in the last :data:`STAGE_S` wait
    (a few hundred tuples at most) so that a phase change read a moment after the test made it still splits them
    at the right instant. Memory: the windows not final yet (at most the request timeout's worth) and the
    outstanding tickets.
    """

    def __init__(self, start: float, *, offset: float = 0.0, phase: str | None = None) -> None:
        self.offset = offset
        self._windows: deque[_OpenWindow] = deque([_OpenWindow(start, phase, split=False)])
        self._tickets: deque[Ticket] = deque()
        self._staged: list[tuple[float, int, int, bool]] = []
        self._outstanding = 0
        self._last_sent = start
        self._cut_until = -math.inf
        """The 1-s cuts are made up to here: an outcome sent before it can go straight to its window."""
        self._stop_at: float | None = None
        self._closed = False
        self.abandoned = 0
        """Requests without an outcome when :meth:`close` was called (the generator gave up waiting)."""

    def restart(self, start: float) -> None:
        """Start over at ``start`` (when the users are ready), nothing recorded before."""
        release_histogram(self._windows[-1].hist)
        self._windows = deque([_OpenWindow(start, self._windows[-1].phase, split=False)])
        self._last_sent = start
        self._cut_until = -math.inf

    @property
    def phase(self) -> str | None:
        return self._windows[-1].phase

    @property
    def outstanding(self) -> int:
        """Requests registered (and not skipped) that have no outcome yet."""
        return self._outstanding

    # -- requests ---------------------------------------------------------------------------------------

    def register(self, sent: float) -> Ticket:
        ticket = Ticket(sent)
        if self._closed:
            ticket.state = Ticket.SKIPPED
            return ticket
        self._tickets.append(ticket)
        self._outstanding += 1
        return ticket

    def sent(self, ticket: Ticket, *, late: bool = False) -> None:
        """The request is on its way (``late``: more than 10 ms after its intended time)."""
        if ticket.state == Ticket.CLAIMED:
            ticket.state = Ticket.SENT
            ticket.late = late
            self._last_sent = max(self._last_sent, ticket.sent)

    def complete(self, ticket: Ticket, latency_s: float, status: int, now: float) -> None:
        """The request's outcome: its latency in seconds and its status (0: no response)."""
        if not ticket.outstanding:
            return  # skipped or abandoned meanwhile: the generator stopped waiting for it
        ticket.state = Ticket.DONE
        self._outstanding -= 1
        item = (ticket.sent, clamp_us(latency_s * 1e6), status, ticket.late)
        # Placed now only if its window is cut already (else it would land in the window before).
        if ticket.sent < min(now - STAGE_S, self._cut_until):
            self._place(*item)
        else:
            self._staged.append(item)

    def stop(self, at: float) -> int:
        """The run stops at ``at``: requests claimed for then or later and not sent yet are never sent (returns
        how many), and the last window ends there (or at the last request actually sent, if later)."""
        self._stop_at = at if self._stop_at is None else min(self._stop_at, at)
        skipped = 0
        for ticket in reversed(self._tickets):
            if ticket.sent < at:
                break
            if ticket.state == Ticket.CLAIMED:
                ticket.state = Ticket.SKIPPED
                self._outstanding -= 1
                skipped += 1
        return skipped

    # -- phases -----------------------------------------------------------------------------------------

    def set_phase(self, phase: str | None, at: float, now: float) -> float:
        """Tag what is sent from ``at`` on as ``phase``; returns how far ``at`` had to be moved (read too late).

        ``at`` is when the test changed phase; it is kept as it is when read within :data:`STAGE_S` of it.
        """
        if self._closed:
            return 0.0
        cur = self._windows[-1]
        earliest = max(cur.start, now - STAGE_S)
        moved = max(0.0, earliest - at)
        at = min(max(at, earliest), max(now, earliest))
        if phase != cur.phase:
            self._end_current(at)
            self._windows.append(_OpenWindow(at, phase, split=False))
        return moved

    def _cut_seconds(self, until: float) -> None:
        """The 1-s cuts of the current span up to ``until``."""
        cur = self._windows[-1]
        while cur.start + WINDOW_S <= until:
            cur.end = cur.start + WINDOW_S
            cur = _OpenWindow(cur.end, cur.phase, split=True)
            self._windows.append(cur)

    def _end_current(self, at: float) -> None:
        self._cut_seconds(at)
        cur = self._windows[-1]
        cur.end = at
        if cur.split and at - cur.start < HOLD_S and len(self._windows) > 1:
            self._windows.pop()
            previous = self._windows[-1]
            previous.absorb(cur)
            previous.end = at

    # -- windows ----------------------------------------------------------------------------------------

    def _place(self, sent: float, latency_us: int, status: int, late: bool) -> None:
        # Newest first: nearly every outcome is for one of the last two windows.
        for w in reversed(self._windows):
            if w.start <= sent or w is self._windows[0]:
                w.hist.record_value(latency_us)
                w.status[status] += 1
                w.late += int(late)
                w.changed = True
                return

    def _fold(self, before: float) -> None:
        if not self._staged:
            return
        keep = []
        for item in self._staged:
            if item[0] < before:
                self._place(*item)
            else:
                keep.append(item)
        self._staged = keep

    def _horizon(self, next_send: float) -> float:
        tickets = self._tickets
        while tickets and not tickets[0].outstanding:
            tickets.popleft()
        return min(tickets[0].sent, next_send) if tickets else next_send

    def _pending_in(self, w: _OpenWindow) -> int:
        end = w.end if w.end is not None else math.inf
        return sum(1 for t in self._tickets if t.outstanding and w.start <= t.sent < end)

    def _message(self, w: _OpenWindow, *, final: bool, pending: int = 0) -> dict[str, Any]:
        assert w.end is not None
        message = window_message(
            start=w.start + self.offset,
            end=w.end + self.offset,
            phase=w.phase,
            histogram=w.hist,
            status_counts=w.status,
            late=w.late,
            final=final,
            pending=pending,
        )
        w.changed = False
        if final:
            release_histogram(w.hist)
        return message

    def _final(self, w: _OpenWindow) -> dict[str, Any] | None:
        assert w.end is not None
        if w.phase is None and w.end - w.start < HOLD_S and not w.status and not w.late and w.provisional_at is None:
            release_histogram(w.hist)  # an empty moment between two phases: nothing to show
            return None
        return self._message(w, final=True)

    def tick(self, now: float, next_send: float) -> list[dict[str, Any]]:
        """Cut the current window every second, and return the messages due: windows that became final, and
        provisional versions of those waiting too long. ``next_send``: no request not registered yet will have
        an earlier send time (open loop: the schedule's next intended time; closed loop: now)."""
        if self._closed:
            return []
        # Not past a stop: nothing is sent after it, so the windows end there (close() ends the last one).
        until = now - STAGE_S if self._stop_at is None else min(now - STAGE_S, self._stop_at)
        self._cut_seconds(until)
        self._cut_until = max(self._cut_until, until)
        self._fold(now - STAGE_S)  # after the cuts: an outcome goes to the window of its send time
        horizon = self._horizon(next_send)
        messages = []
        while len(self._windows) > 1:
            w = self._windows[0]
            assert w.end is not None
            # HOLD_S more: a phase end read now could still merge a last sliver into this window.
            if w.end > now - STAGE_S - HOLD_S or w.end > horizon:
                break
            self._windows.popleft()
            message = self._final(w)
            if message is not None:
                messages.append(message)
        for w in list(self._windows)[:-1]:
            assert w.end is not None
            due = w.end + PROVISIONAL_AFTER_S if w.provisional_at is None else w.provisional_at + PROVISIONAL_AFTER_S
            if now >= due and (w.provisional_at is None or w.changed):
                messages.append(self._message(w, final=False, pending=self._pending_in(w)))
                w.provisional_at = now
        return messages

    def close(self, end: float) -> list[dict[str, Any]]:
        """End the last window at ``end`` (extended to the last request actually sent) and return every window
        still open, final. Requests still without an outcome — in flight, or due before the end and never sent
        — are abandoned: missing from their window, counted in :attr:`abandoned`."""
        if self._closed:
            return []
        if self._stop_at is not None:
            end = min(end, self._stop_at)
        for ticket in self._tickets:
            if ticket.state == Ticket.SENT or (ticket.state == Ticket.CLAIMED and ticket.sent < end):
                ticket.state = Ticket.ABANDONED
                self.abandoned += 1
            elif ticket.state == Ticket.CLAIMED:
                ticket.state = Ticket.SKIPPED
        self._tickets.clear()
        self._outstanding = 0
        self._end_current(max(end, self._last_sent, self._windows[-1].start))
        self._fold(math.inf)
        messages = [m for m in (self._final(w) for w in self._windows) if m is not None]
        self._windows.clear()
        self._closed = True
        return messages


@dataclass(frozen=True)
class PhaseStats:
    """Everything measured during one phase (all its windows merged; a repeated phase name merges too)."""

    name: str
    start: float
    """Unix seconds: start of the phase's first window (when the test started the phase)."""
    end: float
    """Unix seconds: end of the phase's last window (when the test ended it)."""
    requests: int
    """Requests sent during the phase, each with its outcome (connection errors and timeouts, status 0, included)."""
    errors: int
    """Status 0 or outside 200–399 (see :func:`is_error`)."""
    late: int
    """Open loop: requests sent more than 10 ms after their intended time (still sent and measured)."""
    status_counts: dict[int, int]
    error_rate: float
    """errors / requests; NaN if no requests."""
    throughput_rps: float
    """Outcomes per second of the phase's duration (see *throughput* in the module's definitions)."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    """Percentiles from the phase's merged HdrHistogram (3 significant digits); NaN if no requests."""


class _Row(NamedTuple):
    # A tuple of scalars per window (not a dict): ~0.2 kB, so a day-long soak keeps ~20 MB of rows.
    start: float
    end: float
    phase: str | None
    requests: int
    errors: int
    late: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    missing_workers: int = 0
    """Workers of a distributed generator whose requests this window lacks (lost before its end): its rate is
    short by their share (0: none, or one process)."""

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.duration if self.duration > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROW_COLUMNS}


class _RecentWindow(NamedTuple):
    start: float
    end: float
    requests: int
    errors: int
    hist: str
    """The window's histogram, still encoded (see :data:`RECENT_WINDOWS`)."""
    pending: int = 0
    """Provisional window: its requests without an outcome yet."""


@dataclass(frozen=True)
class Schedule:
    """How well an open-loop run kept its schedule during its phases (the time a test judges)."""

    rate: float
    """Requests per second asked for."""
    seconds: float
    """Time spent in phases (s)."""
    answered: int
    """Requests sent during the phases that got an outcome (a response or an error)."""
    late: int
    """Of those, sent more than 10 ms after their intended time."""

    @property
    def intended(self) -> int:
        return round(self.rate * self.seconds)

    def missed(self, tolerance: float) -> str | None:
        """Why the schedule was missed by more than ``tolerance`` (a share: 0.1 is 10 %), or None if it was kept.

        Missed means fewer requests answered than scheduled, or more sent late, by more than the tolerance (and
        by more than two requests: a boundary is worth one either side).
        """
        shortfall = self.intended - self.answered
        short = shortfall > max(2.0, tolerance * self.intended)
        behind = self.late > max(2.0, tolerance * max(self.answered, 1))
        if not (short or behind):
            return None
        achieved = self.answered / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.answered} of {self.intended} scheduled requests answered in {self.seconds:.1f} s of phases "
            f"({achieved:.1f} of {self.rate:g} requests/s), {self.late} sent more than 10 ms late"
        )


class _PhaseAccumulator:
    def __init__(self, name: str, start: float) -> None:
        self.name = name
        self.start = start
        self.end = start
        self.seconds = 0.0
        self.requests = 0
        self.errors = 0
        self.late = 0
        self.status: Counter[int] = Counter()
        self.hist = new_histogram()


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _merge_windows(windows: list[_RecentWindow]) -> dict[str, Any]:
    hist = new_histogram()
    for w in windows:
        one = _hdr_class().decode(w.hist)
        hist.add(one)
        release_histogram(one)
    pcts = _percentiles_us(hist)
    release_histogram(hist)
    requests = sum(w.requests for w in windows)
    errors = sum(w.errors for w in windows)
    seconds = sum(w.end - w.start for w in windows)
    return {
        "pending": sum(w.pending for w in windows),
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else math.nan,
        "throughput_rps": requests / seconds if seconds > 0 else math.nan,
        "p50_ms": pcts["p50_us"] / 1000.0,
        "p95_ms": pcts["p95_us"] / 1000.0,
        "p99_ms": pcts["p99_us"] / 1000.0,
        "max_ms": pcts["max_us"] / 1000.0,
        "windows": len(windows),
        "seconds": seconds,
        "start": min((w.start for w in windows), default=None),
        "end": max((w.end for w in windows), default=None),
    }


class LoadResult:
    """The outcome of one load run: per-phase statistics, 1-second windows, the timeline's events.

    Built incrementally from window messages (:meth:`ingest`, thread-safe) while the run goes on;
    :meth:`pytest_clover.load.run.LoadRun.stop` returns it complete. Windows with ``phase=None`` are the
    traffic before the first phase, between phases and after the last: they are in :meth:`window_rows` but in
    no phase. A provisional window (see the module's definitions) is in the rows until its final message
    replaces it, and in no phase.
    """

    def __init__(
        self,
        *,
        mode: str,
        rate: float | None,
        users: int | None,
        seed: int,
        report_dir: Path,
        events: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"mode must be 'open' or 'closed', not {mode!r}")
        self.mode = mode
        self.rate = rate
        self.users = users
        self.seed = seed
        self.report_dir = Path(report_dir)
        self.events: list[dict[str, Any]] = sorted((dict(e) for e in events), key=lambda e: float(e["time"]))
        self.generator: dict[str, Any] = {}
        """What the generator reported when it stopped (e.g. ``users``: concurrent users at the end,
        ``abandoned``: requests still in flight when it was stopped, not counted anywhere)."""
        self._lock = threading.Lock()
        self._rows: list[_Row] = []
        self._recent: deque[_RecentWindow] = deque(maxlen=RECENT_WINDOWS)
        self._provisional: dict[float, int] = {}
        """Start of each provisional window → its index in the rows."""
        self._phases: dict[str, _PhaseAccumulator] = {}
        self._phase_cache: dict[str, PhaseStats] | None = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def add_window_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(row)`` with each *final* window as it arrives (the row as :meth:`window_rows` gives it),
        in the thread that ingests it: keep it cheap (append to a queue). For readers that follow a long run
        window by window (a soak's guardrails) without copying every row on every look."""
        self._listeners.append(listener)

    # -- building ---------------------------------------------------------------------------------------

    def ingest(self, message: Mapping[str, Any]) -> None:
        """Add one window message (as produced by :func:`window_message`, possibly after a JSON round trip)."""
        if message.get("type") != "window":
            raise ValueError(f"not a window message: type={message.get('type')!r}")
        if message.get("v") != MESSAGE_VERSION:
            raise ValueError(f"window message version {message.get('v')!r}; this pytest-clover reads {MESSAGE_VERSION}")
        start, end = float(message["start"]), float(message["end"])
        phase = message.get("phase")
        if phase is not None and not isinstance(phase, str):
            raise ValueError(f"window phase must be a string or null, not {phase!r}")
        final = bool(message.get("final", True))
        pending = int(message.get("pending", 0))
        status = {int(code): int(n) for code, n in message.get("status", {}).items()}
        requests = sum(status.values())
        errors = sum(n for code, n in status.items() if is_error(code))
        late = int(message.get("late", 0))
        hist = _hdr_class().decode(message["hist"])
        if hist.get_total_count() != requests:
            raise ValueError(
                f"window message at {start:.3f}: histogram holds {hist.get_total_count()} latencies "
                f"but the status counts sum to {requests}"
            )
        if "p50_us" in message:
            pcts = {k: float(message[k]) if message[k] is not None else math.nan for k in _PCT_KEYS}
        else:
            pcts = _percentiles_us(hist)
        row = _Row(
            start,
            end,
            phase,
            requests,
            errors,
            late,
            pcts["p50_us"] / 1000.0,
            pcts["p95_us"] / 1000.0,
            pcts["p99_us"] / 1000.0,
            pcts["max_us"] / 1000.0,
            len(message.get("missing_workers") or ()),
        )
        encoded = message["hist"]
        recent = _RecentWindow(
            start,
            end,
            requests,
            errors,
            encoded if isinstance(encoded, str) else bytes(encoded).decode(),
            0 if final else pending,
        )
        with self._lock:
            index = self._provisional.pop(start, None)
            if index is None:
                self._rows.append(row)
                self._recent.append(recent)
                index = len(self._rows) - 1
            else:
                # The same window again (provisional before; final, or a newer provisional, now): replace it.
                self._rows[index] = row
                for i in range(len(self._recent) - 1, -1, -1):
                    if self._recent[i].start == start:
                        self._recent[i] = recent
                        break
            if not final:
                self._provisional[start] = index
            else:
                self._merge_into_phase(phase, start, end, requests, errors, late, status, hist)
        release_histogram(hist)
        if final:
            for listener in self._listeners:
                listener(row.as_dict())

    def _merge_into_phase(
        self,
        phase: str | None,
        start: float,
        end: float,
        requests: int,
        errors: int,
        late: int,
        status: Mapping[int, int],
        hist: HdrHistogram,
    ) -> None:
        # Called with the lock held, for final windows only: a provisional one would be counted twice.
        self._phase_cache = None
        if phase is None:
            return
        acc = self._phases.get(phase)
        if acc is None:
            acc = self._phases[phase] = _PhaseAccumulator(phase, start)
        acc.start = min(acc.start, start)
        acc.end = max(acc.end, end)
        acc.seconds += end - start
        acc.requests += requests
        acc.errors += errors
        acc.late += late
        acc.status.update(status)
        # The window histogram is merged and dropped here: no per-window (let alone per-request) storage.
        acc.hist.add(hist)

    def ingest_line(self, line: str) -> None:
        """:meth:`ingest` for one JSON line as the generator writes it."""
        import json

        self.ingest(json.loads(line))

    def set_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        self.events = sorted((dict(e) for e in events), key=lambda e: float(e["time"]))

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def phases(self) -> dict[str, PhaseStats]:
        """Statistics per phase, in the order the phases first ran."""
        with self._lock:
            if self._phase_cache is None:
                self._phase_cache = {name: self._phase_stats(acc) for name, acc in self._phases.items()}
            return dict(self._phase_cache)

    @staticmethod
    def _phase_stats(acc: _PhaseAccumulator) -> PhaseStats:
        pcts = _percentiles_us(acc.hist)
        return PhaseStats(
            name=acc.name,
            start=acc.start,
            end=acc.end,
            requests=acc.requests,
            errors=acc.errors,
            late=acc.late,
            status_counts=dict(sorted(acc.status.items())),
            error_rate=acc.errors / acc.requests if acc.requests else math.nan,
            throughput_rps=acc.requests / acc.seconds if acc.seconds > 0 else math.nan,
            p50_ms=pcts["p50_us"] / 1000.0,
            p95_ms=pcts["p95_us"] / 1000.0,
            p99_ms=pcts["p99_us"] / 1000.0,
            max_ms=pcts["max_us"] / 1000.0,
        )

    def schedule(self) -> Schedule | None:
        """How the open loop kept its schedule during the phases; None for a closed loop (it has none)."""
        if self.mode != "open" or not self.rate:
            return None
        with self._lock:
            accs = list(self._phases.values())
        return Schedule(
            rate=float(self.rate),
            seconds=sum(a.seconds for a in accs),
            answered=sum(a.requests for a in accs),
            late=sum(a.late for a in accs),
        )

    def histogram(self, phase: str) -> HdrHistogram:
        """A copy of the phase's merged latency histogram (values in µs)."""
        with self._lock:
            acc = self._phases.get(phase)
            if acc is None:
                raise KeyError(f"no phase {phase!r}; phases: {', '.join(self._phases) or 'none'}")
            copy = new_histogram()
            copy.add(acc.hist)
            return copy

    def window_rows(self) -> list[dict[str, Any]]:
        """One dict per window, in time order: start, end (unix s), phase, requests, errors, late, error_rate,
        throughput_rps, p50_ms, p95_ms, p99_ms, max_ms (NaN where a window had no requests), missing_workers (how
        many lost workers' requests it lacks)."""
        with self._lock:
            rows = sorted(self._rows, key=lambda r: r.start)
        return [r.as_dict() for r in rows]

    @property
    def windows(self) -> pandas.DataFrame:
        """:meth:`window_rows` as a pandas DataFrame (pandas is imported only here)."""
        import pandas

        return pandas.DataFrame(self.window_rows(), columns=list(ROW_COLUMNS))

    def recovery_seconds(
        self,
        after: str,
        *,
        p50_ms: float | None = None,
        p95_ms: float | None = None,
        p99_ms: float | None = None,
        max_error_rate: float | None = None,
        min_throughput_rps: float | None = None,
        window_seconds: int = 3,
    ) -> float | None:
        """Seconds from the end of phase ``after`` until the SLOs hold again, or None if they never do.

        Looks at the windows that start at or after that phase's end (whatever their phase) for the first run
        of consecutive windows covering ``window_seconds`` seconds in which every window meets every given
        SLO; returns that run's start minus the phase's end (0.0 if the very first window starts the run).
        A window without any response meets no SLO: a service that answers nothing has not recovered.
        """
        slos = {
            "p50_ms": p50_ms,
            "p95_ms": p95_ms,
            "p99_ms": p99_ms,
            "max_error_rate": max_error_rate,
            "min_throughput_rps": min_throughput_rps,
        }
        if all(v is None for v in slos.values()):
            raise ValueError("recovery_seconds needs at least one SLO (p50_ms, p95_ms, p99_ms, max_error_rate…)")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, not {window_seconds}")
        with self._lock:
            acc = self._phases.get(after)
            if acc is None:
                raise KeyError(f"no phase {after!r}; phases: {', '.join(self._phases) or 'none'}")
            phase_end = acc.end
            # 1 ms slack: window boundaries are the same float on both sides of a phase change.
            later = sorted((r for r in self._rows if r.start >= phase_end - 1e-3), key=lambda r: r.start)

        def meets(row: _Row) -> bool:
            # NaN (no responses) compares False, so an empty window fails every SLO.
            checks = [
                p50_ms is None or row.p50_ms <= p50_ms,
                p95_ms is None or row.p95_ms <= p95_ms,
                p99_ms is None or row.p99_ms <= p99_ms,
                max_error_rate is None or row.error_rate <= max_error_rate,
                min_throughput_rps is None or row.throughput_rps >= min_throughput_rps,
            ]
            return row.requests > 0 and all(checks)

        # Window lengths are 1 s give or take a timer tick (and shorter at phase changes), so "N consecutive
        # 1-s windows" is read as "consecutive passing windows covering N seconds, less 50 ms of slack".
        needed = window_seconds - 0.05
        run_start: int | None = None
        covered = 0.0
        for i, row in enumerate(later):
            if not meets(row):
                run_start, covered = None, 0.0
                continue
            if run_start is None:
                run_start = i
            covered += row.duration
            if covered >= needed:
                if run_start == 0:
                    return 0.0
                return max(0.0, later[run_start].start - phase_end)
        return None

    def recent(self, seconds: float, *, now: float | None = None) -> dict[str, Any]:
        """Statistics of the last ``seconds`` seconds of the run, whatever the phases, from the merged histograms.

        The windows taken are those overlapping ``(now - seconds, now]``; ``now`` defaults to the end of the newest
        window (unix seconds), so "the last 10 s" means the last ten 1-second windows received. Only the
        :data:`RECENT_WINDOWS` most recent windows are kept: a longer span covers what is there (``seconds`` in the
        answer says how much). Windows are spans of send time, sent once their requests are answered, so the newest
        lags the present by a few hundred ms (more while requests are slow; see the module's definitions).
        Returns ``requests``, ``errors``, ``error_rate`` (NaN without requests), ``throughput_rps`` (outcomes per
        second of the windows taken), ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` (exact to the histograms' 3
        significant digits; NaN without requests), ``pending`` (requests of provisional windows without an outcome
        yet: not in the other numbers), ``windows`` (how many), ``seconds`` (their total length), ``start`` and
        ``end`` (unix seconds; None without windows).
        """
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a positive number, not {seconds}")
        with self._lock:
            windows = list(self._recent)
        if not windows:
            return _merge_windows([])
        ref = now if now is not None else max(w.end for w in windows)
        lo = ref - seconds
        return _merge_windows([w for w in windows if w.end > lo + _EDGE_SLACK_S and w.start < ref - _EDGE_SLACK_S])

    def between(self, start: float, end: float) -> dict[str, Any]:
        """:meth:`recent`'s statistics for the windows whose middle lies in ``[start, end)`` (unix seconds).

        For a span of the run that no phase tagged (e.g. one stage of a Chaos Toolkit experiment); only the
        :data:`RECENT_WINDOWS` most recent windows can be taken.
        """
        if end < start:
            raise ValueError(f"the span ends ({end}) before it starts ({start})")
        with self._lock:
            windows = list(self._recent)
        return _merge_windows([w for w in windows if start <= (w.start + w.end) / 2 < end])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (NaN becomes None; status codes become string keys)."""
        phases = {}
        for name, stats in self.phases.items():
            entry = {k: _nan_to_none(getattr(stats, k)) for k in PhaseStats.__dataclass_fields__}
            entry["status_counts"] = {str(code): n for code, n in stats.status_counts.items()}
            phases[name] = entry
        return {
            "mode": self.mode,
            "rate": self.rate,
            "users": self.users,
            "seed": self.seed,
            "report_dir": str(self.report_dir),
            "phases": phases,
            "windows": [{k: _nan_to_none(v) for k, v in row.items()} for row in self.window_rows()],
            "events": [{k: _nan_to_none(v) for k, v in e.items()} for e in self.events],
            "generator": dict(self.generator),
            # Each phase's merged HdrHistogram (µs, hdrh's compressed base64): the report's percentile curves
            # and any later analysis read the full distribution, not just the three percentiles above.
            "histograms": self._encoded_histograms(),
        }

    def _encoded_histograms(self) -> dict[str, str]:
        with self._lock:
            return {name: acc.hist.encode().decode("ascii") for name, acc in self._phases.items()}

    def __repr__(self) -> str:
        load = f"rate={self.rate:g}/s" if self.rate is not None else f"users={self.users}"
        return f"<LoadResult {self.mode} {load} phases={list(self._phases)} windows={len(self._rows)}>"
