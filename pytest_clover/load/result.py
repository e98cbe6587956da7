"""What a load run measured: per-phase statistics and 1-second windows, built from the generator's window messages.

The generator (a child process, see ``worker.py``) sends one JSON message per window: the window's start and
end (unix seconds), its phase, the count of responses per status code, the count of late requests, a few
percentiles and the window's HdrHistogram of latencies in µs (``encode()``, base64). :meth:`LoadResult.ingest`
is the one place such a message is read — in the parent during a run, and in the unit tests.

Memory stays bounded whatever the duration: per window the result keeps one row of scalars; per phase it keeps
one merged histogram; and the :data:`RECENT_WINDOWS` most recent windows keep their histogram *encoded* (as the
message carried it, ~1 kB), so :meth:`LoadResult.recent` gives exact percentiles over the last seconds of a run.
Nothing per request is ever stored, and decoded window histograms are merged, then dropped.

Definitions used throughout:

* a *request* is a response (or a connection error, reported as status 0) that completed in the window;
  it is attributed to the window and phase in which it *completed*;
* an *error* is status 0 (connection error, timeout) or any status outside 200–399 — 4xx count as errors
  (a resilience test wants to see a fault's 403/404 as well as its 503);
* *late* counts open-loop requests that were sent more than 10 ms after their intended time (they are still
  sent, and their latency still counts from the intended time), in the window in which they were sent;
* traffic before the first phase and between phases has phase None: it is in the window rows, in no phase.
* latency is measured from the intended send time in the open loop (coordinated omission corrected) and from
  the actual send time in the closed loop.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped,unused-ignore]
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped,unused-ignore]

MESSAGE_VERSION = 1
"""Bumped when the window message changes incompatibly; :meth:`LoadResult.ingest` checks it."""
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
"""A window overlapping a time range by less than this is outside it (window cuts are a timer tick late)."""

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
) -> dict[str, Any]:
    """The JSON-ready message for one window; the generator sends exactly this (tests build it the same way).

    Every response in ``status_counts`` must have one latency in ``histogram``.
    """
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    return {
        "type": "window",
        "v": MESSAGE_VERSION,
        "start": start,
        "end": end,
        "phase": phase,
        "status": {str(code): int(n) for code, n in status_counts.items() if n},
        "late": int(late),
        # NaN (an empty window) is not JSON; null stands for it on the wire.
        **{k: _nan_to_none(v) for k, v in _percentiles_us(histogram).items()},
        "hist": histogram.encode().decode("ascii"),
    }


@dataclass(frozen=True)
class PhaseStats:
    """Everything measured during one phase (all its windows merged; a repeated phase name merges too)."""

    name: str
    start: float
    """Unix seconds: start of the phase's first window."""
    end: float
    """Unix seconds: end of the phase's last window."""
    requests: int
    """Responses completed during the phase, connection errors (status 0) included."""
    errors: int
    """Status 0 or outside 200–399 (see :func:`is_error`)."""
    late: int
    """Open loop: requests sent more than 10 ms after their intended time (still sent and measured)."""
    status_counts: dict[int, int]
    error_rate: float
    """errors / requests; NaN if no requests."""
    throughput_rps: float
    """Responses per second of the phase's windows (the time the generator counted for the phase)."""
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
    traffic before the first phase and between phases: they are in :meth:`window_rows` but in no phase.
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
        self._phases: dict[str, _PhaseAccumulator] = {}
        self._phase_cache: dict[str, PhaseStats] | None = None

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
        )
        encoded = message["hist"]
        with self._lock:
            self._rows.append(row)
            self._recent.append(
                _RecentWindow(
                    start, end, requests, errors, encoded if isinstance(encoded, str) else bytes(encoded).decode()
                )
            )
            self._phase_cache = None
            if phase is not None:
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
        release_histogram(hist)

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
        throughput_rps, p50_ms, p95_ms, p99_ms, max_ms (NaN where a window had no requests)."""
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
        answer says how much). Returns ``requests``, ``errors``, ``error_rate`` (NaN without requests),
        ``throughput_rps`` (responses per second of the windows taken), ``p50_ms``, ``p95_ms``, ``p99_ms``,
        ``max_ms`` (exact to the histograms' 3 significant digits; NaN without requests), ``windows`` (how many),
        ``seconds`` (their total length), ``start`` and ``end`` (unix seconds; None without windows).
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
