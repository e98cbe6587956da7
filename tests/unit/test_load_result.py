"""Unit tests for pytest_clover.load.result: LoadResult built from synthetic window messages.

The messages are made by ``window_message`` (what the generator sends) and go through a JSON round trip
and ``LoadResult.ingest``, the same path the parent takes during a run. No processes, no network.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.load.result import (
    STAGE_S,
    LoadResult,
    PhaseStats,
    SendWindows,
    Ticket,
    is_error,
    new_histogram,
    window_message,
)


def make_window(
    start: float,
    phase: str | None,
    latencies_ms: Sequence[float] = (),
    statuses: Sequence[int] | None = None,
    *,
    late: int = 0,
    duration: float = 1.0,
) -> dict[str, Any]:
    """One window message as the generator would send it (after the JSON round trip)."""
    hist = new_histogram()
    for ms in latencies_ms:
        hist.record_value(round(ms * 1000))
    codes = list(statuses) if statuses is not None else [200] * len(latencies_ms)
    assert len(codes) == len(latencies_ms)
    counts: dict[int, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    message = window_message(
        start=start, end=start + duration, phase=phase, histogram=hist, status_counts=counts, late=late
    )
    round_trip: dict[str, Any] = json.loads(json.dumps(message, allow_nan=False))
    return round_trip


def result_of(messages: Iterable[dict[str, Any]], **kwargs: Any) -> LoadResult:
    result = LoadResult(mode="open", rate=100.0, users=None, seed=0, report_dir=Path("/nonexistent"), **kwargs)
    for message in messages:
        result.ingest(message)
    return result


def test_phase_aggregation_counts_and_order() -> None:
    result = result_of(
        [
            make_window(0.0, None, [1.0] * 5),  # before the first phase: a window row, no phase
            make_window(1.0, "baseline", [1.0] * 100),
            make_window(2.0, "baseline", [2.0] * 100, late=3),
            make_window(3.0, "fault", [5.0] * 50 + [9.0] * 50, [200] * 50 + [503] * 40 + [0] * 10, late=7),
            make_window(4.0, "fault", [5.0] * 80, duration=0.5),
        ]
    )
    assert list(result.phases) == ["baseline", "fault"]
    base, fault = result.phases["baseline"], result.phases["fault"]
    assert isinstance(base, PhaseStats)
    assert (base.start, base.end) == (1.0, 3.0)
    assert (base.requests, base.errors, base.late) == (200, 0, 3)
    assert base.status_counts == {200: 200}
    assert base.error_rate == 0.0
    assert base.throughput_rps == pytest.approx(100.0)
    assert (fault.start, fault.end) == (3.0, 4.5)
    assert (fault.requests, fault.errors, fault.late) == (180, 50, 7)
    assert fault.status_counts == {0: 10, 200: 130, 503: 40}
    assert fault.error_rate == pytest.approx(50 / 180)
    # throughput counts the time the windows cover (1.5 s), not the number of windows
    assert fault.throughput_rps == pytest.approx(180 / 1.5)
    rows = result.window_rows()
    assert [r["phase"] for r in rows] == [None, "baseline", "baseline", "fault", "fault"]
    assert rows[0]["requests"] == 5
    assert rows[4]["throughput_rps"] == pytest.approx(160.0)


def test_repeated_phase_name_merges() -> None:
    result = result_of(
        [
            make_window(0.0, "a", [1.0] * 10),
            make_window(1.0, "b", [1.0] * 20),
            make_window(2.0, "a", [3.0] * 30),
        ]
    )
    assert list(result.phases) == ["a", "b"]
    a = result.phases["a"]
    assert (a.requests, a.start, a.end) == (40, 0.0, 3.0)
    assert a.throughput_rps == pytest.approx(20.0)  # 40 responses over the 2 s its windows cover
    assert a.p50_ms == pytest.approx(3.0, rel=1e-3)


def test_percentiles_come_from_the_merged_histogram_not_from_window_percentiles() -> None:
    # 900 fast requests in one window, 100 slow ones in the next: the phase's p95 is the slow value, while
    # averaging the windows' own p95 (1 ms and 100 ms) would say ~50 ms.
    result = result_of([make_window(0.0, "p", [1.0] * 900), make_window(1.0, "p", [100.0] * 100)])
    stats = result.phases["p"]
    assert stats.p50_ms == pytest.approx(1.0, rel=1e-3)
    assert stats.p95_ms == pytest.approx(100.0, rel=1e-3)
    assert stats.p99_ms == pytest.approx(100.0, rel=1e-3)
    assert stats.max_ms == pytest.approx(100.0, rel=1e-3)
    rows = result.window_rows()
    assert rows[0]["p95_ms"] == pytest.approx(1.0, rel=1e-3)
    assert rows[1]["p95_ms"] == pytest.approx(100.0, rel=1e-3)


def test_percentiles_of_a_known_distribution() -> None:
    # 1..1000 ms, one each, spread over four windows in a scrambled order.
    values = [float(v) for v in range(1, 1001)]
    chunks = [values[3::4], values[0::4], values[2::4], values[1::4]]
    result = result_of(make_window(float(i), "p", chunk) for i, chunk in enumerate(chunks))
    stats = result.phases["p"]
    assert stats.requests == 1000
    # HdrHistogram with 3 significant digits: within 0.1 %
    assert stats.p50_ms == pytest.approx(500.0, rel=1e-3)
    assert stats.p95_ms == pytest.approx(950.0, rel=1e-3)
    assert stats.p99_ms == pytest.approx(990.0, rel=1e-3)
    assert stats.max_ms == pytest.approx(1000.0, rel=1e-3)
    hist = result.histogram("p")
    assert hist.get_total_count() == 1000
    assert hist.get_value_at_percentile(50) == pytest.approx(500_000, rel=1e-3)
    hist.record_value(1)  # a copy: the result is not changed by the caller
    assert result.histogram("p").get_total_count() == 1000


@pytest.mark.parametrize(
    ("status", "error"),
    [(0, True), (100, True), (200, False), (204, False), (302, False), (399, False), (404, True), (503, True)],
)
def test_error_definition(status: int, error: bool) -> None:
    assert is_error(status) is error


def test_errors_counted_from_status_codes() -> None:
    result = result_of([make_window(0.0, "p", [1.0] * 6, [200, 201, 302, 404, 503, 0])])
    stats = result.phases["p"]
    assert (stats.requests, stats.errors) == (6, 3)
    assert stats.error_rate == pytest.approx(0.5)
    assert result.window_rows()[0]["errors"] == 3


def test_empty_phase_has_nan_statistics() -> None:
    result = result_of([make_window(0.0, "silent", [])])
    stats = result.phases["silent"]
    assert stats.requests == 0
    assert math.isnan(stats.p50_ms) and math.isnan(stats.max_ms) and math.isnan(stats.error_rate)
    assert stats.throughput_rps == 0.0
    row = result.window_rows()[0]
    assert math.isnan(row["p99_ms"]) and math.isnan(row["error_rate"])


def _recovery_fixture(after_fault: Sequence[tuple[float, int]]) -> LoadResult:
    """Baseline 0–5 s, fault 5–8 s, then one window per (latency ms, errors out of 100) from 8 s on."""
    messages = [make_window(float(t), "baseline", [2.0] * 100) for t in range(5)]
    messages += [make_window(float(t), "fault", [500.0] * 100, [503] * 100) for t in range(5, 8)]
    for i, (ms, errors) in enumerate(after_fault):
        messages.append(make_window(8.0 + i, "recovery", [ms] * 100, [503] * errors + [200] * (100 - errors)))
    return result_of(messages)


def test_recovery_met_immediately_is_zero() -> None:
    result = _recovery_fixture([(2.0, 0)] * 5)
    assert result.recovery_seconds("fault", p99_ms=10.0) == 0.0
    assert result.recovery_seconds("fault", p99_ms=10.0, max_error_rate=0.01, window_seconds=5) == 0.0


def test_recovery_never_met_is_none() -> None:
    result = _recovery_fixture([(2.0, 0), (2.0, 0), (50.0, 0), (2.0, 0), (2.0, 0)])
    assert result.recovery_seconds("fault", p99_ms=10.0, window_seconds=3) is None
    # ...but the first two windows are good: a 2-s window is met at once
    assert result.recovery_seconds("fault", p99_ms=10.0, window_seconds=2) == pytest.approx(0.0)
    assert result.recovery_seconds("fault", p50_ms=1.0) is None


def test_recovery_after_n_windows() -> None:
    result = _recovery_fixture([(500.0, 100), (40.0, 20), (2.0, 5), (2.0, 0), (2.0, 0), (2.0, 0), (2.0, 0)])
    assert result.recovery_seconds("fault", p99_ms=10.0) == pytest.approx(2.0)
    assert result.recovery_seconds("fault", max_error_rate=0.01) == pytest.approx(3.0)
    assert result.recovery_seconds("fault", p99_ms=50.0, max_error_rate=0.25) == pytest.approx(1.0)
    assert result.recovery_seconds("fault", p99_ms=10.0, window_seconds=5) == pytest.approx(2.0)
    assert result.recovery_seconds("fault", p99_ms=10.0, window_seconds=6) is None
    assert result.recovery_seconds("fault", min_throughput_rps=99.0) == 0.0
    assert result.recovery_seconds("fault", min_throughput_rps=101.0) is None


def test_recovery_does_not_count_windows_of_the_phase_itself_and_empty_windows_fail() -> None:
    messages = [make_window(float(t), "fault", [1.0] * 100) for t in range(3)]  # good, but part of the fault
    messages += [make_window(3.0, None, [], duration=1.0)]  # nothing answered: not recovered
    messages += [make_window(float(t), "after", [1.0] * 100) for t in range(4, 7)]
    result = result_of(messages)
    assert result.recovery_seconds("fault", max_error_rate=0.0) == pytest.approx(1.0)


def test_recovery_arguments_are_checked() -> None:
    result = _recovery_fixture([(2.0, 0)] * 3)
    with pytest.raises(KeyError, match="no phase 'nope'"):
        result.recovery_seconds("nope", p99_ms=1.0)
    with pytest.raises(ValueError, match="at least one SLO"):
        result.recovery_seconds("fault")
    with pytest.raises(ValueError, match="window_seconds"):
        result.recovery_seconds("fault", p99_ms=1.0, window_seconds=0)


def test_windows_dataframe() -> None:
    result = result_of([make_window(float(t), "p", [1.0, 2.0, 3.0]) for t in range(4)])
    frame = result.windows
    assert list(frame.columns) == [
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
    ]
    assert len(frame) == 4
    assert frame["requests"].sum() == 12
    assert frame["missing_workers"].sum() == 0
    assert frame["p50_ms"].iloc[0] == pytest.approx(2.0, rel=1e-3)
    empty = result_of([]).windows
    assert len(empty) == 0 and "p99_ms" in empty.columns


def test_to_dict_is_json_serialisable() -> None:
    events = [
        {"time": 2.0, "kind": "phase-end", "name": "p"},
        {"time": 0.0, "kind": "phase-start", "name": "p", "seconds": 2.0},
    ]
    result = result_of([make_window(0.0, "p", [1.0] * 3), make_window(1.0, "p", [])], events=events)
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["mode"] == "open" and back["rate"] == 100.0 and back["seed"] == 0
    assert back["phases"]["p"]["requests"] == 3
    assert back["phases"]["p"]["status_counts"] == {"200": 3}
    assert back["windows"][1]["p50_ms"] is None  # NaN → null
    assert [e["kind"] for e in back["events"]] == ["phase-start", "phase-end"]  # sorted by time


def test_bad_messages_are_rejected() -> None:
    good = make_window(0.0, "p", [1.0, 2.0])
    result = result_of([])
    with pytest.raises(ValueError, match="histogram holds 2 latencies but the status counts sum to 3"):
        result.ingest({**good, "status": {"200": 3}})
    with pytest.raises(ValueError, match="version"):
        result.ingest({**good, "v": 99})
    with pytest.raises(ValueError, match="not a window message"):
        result.ingest({"type": "ready"})
    assert result.window_rows() == []


def test_message_without_percentiles_is_computed_from_its_histogram() -> None:
    message = make_window(0.0, "p", [1.0, 2.0, 30.0])
    for key in ("p50_us", "p95_us", "p99_us", "max_us"):
        del message[key]
    row = result_of([message]).window_rows()[0]
    assert row["p50_ms"] == pytest.approx(2.0, rel=1e-3)
    assert row["max_ms"] == pytest.approx(30.0, rel=1e-3)


def test_memory_is_bounded_per_window_not_per_request() -> None:
    # 10 000 windows × 1 000 requests = 10 M requests. The result keeps one row of scalars per window and
    # one histogram per phase: memory grows by a few hundred bytes per window. Anything per request would be
    # ≥ 8 kB per window, and a retained decoded window histogram ~190 kB.
    templates = [make_window(0.0, None, [0.5 + ((j * 37 + i) % 997) * 0.713 for j in range(1000)]) for i in range(5)]
    result = result_of([])
    windows = 10_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(windows):
            message = dict(templates[i % len(templates)])
            message.update(start=float(i), end=float(i + 1), phase=("a", "b", None)[i % 3])
            result.ingest(message)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / windows < 600, f"{grown / windows:.0f} bytes per window"
    assert len(result.window_rows()) == windows
    phases = result.phases
    assert list(phases) == ["a", "b"]
    assert phases["a"].requests + phases["b"].requests == (windows - windows // 3) * 1000
    assert result.histogram("a").get_total_count() == phases["a"].requests


# -- recent(): the last N seconds, whatever the phases ----------------------------------------------------------


def test_recent_merges_the_histograms_of_the_last_windows_only() -> None:
    result = result_of(
        [
            make_window(0.0, None, [1000.0] * 100),  # older than the last 3 s: left out
            make_window(1.0, "a", [1.0] * 100),
            make_window(2.0, "b", [2.0] * 98 + [50.0] * 2, [200] * 95 + [503] * 5),
            make_window(3.0, None, [3.0] * 100),
        ]
    )
    last = result.recent(3)
    assert last["windows"] == 3 and last["seconds"] == pytest.approx(3.0)
    assert (last["start"], last["end"]) == (1.0, 4.0)
    assert last["requests"] == 300 and last["errors"] == 5
    assert last["error_rate"] == pytest.approx(5 / 300)
    assert last["throughput_rps"] == pytest.approx(100.0)
    # Exact from the merged histogram (3 significant digits), not from the windows' own percentiles.
    assert last["p50_ms"] == pytest.approx(2.0, rel=1e-3)
    assert last["p99_ms"] == pytest.approx(3.0, rel=1e-3)
    assert last["max_ms"] == pytest.approx(50.0, rel=1e-3)
    assert result.recent(1)["p50_ms"] == pytest.approx(3.0, rel=1e-3)
    assert result.recent(100)["requests"] == 400
    # The phases are untouched by the ring.
    assert result.phases["a"].requests == 100


def test_recent_relative_to_a_given_now_and_empty() -> None:
    result = result_of([make_window(float(i), None, [float(i + 1)] * 10) for i in range(5)])
    two = result.recent(2, now=3.0)  # windows 1–2 (2 ms) and 2–3 (3 ms)
    assert two["requests"] == 20 and (two["start"], two["end"]) == (1.0, 3.0)
    assert two["p50_ms"] == pytest.approx(2.0, rel=1e-3) and two["max_ms"] == pytest.approx(3.0, rel=1e-3)
    stale = result.recent(2, now=100.0)
    assert stale["requests"] == 0 and stale["windows"] == 0 and math.isnan(stale["p99_ms"])
    empty = result_of([]).recent(10)
    assert empty["requests"] == 0 and empty["start"] is None and math.isnan(empty["error_rate"])
    # A window with no response has no latency: NaN, not 0.
    idle = result_of([make_window(0.0, None, [])]).recent(5)
    assert idle["windows"] == 1 and idle["requests"] == 0 and math.isnan(idle["p50_ms"])
    assert idle["throughput_rps"] == 0.0
    with pytest.raises(ValueError, match="positive"):
        result.recent(0)


def test_recent_keeps_a_bounded_ring_of_encoded_windows() -> None:
    from pytest_clover.load import result as result_module

    template = make_window(0.0, None, [5.0] * 10)
    result = result_of([])
    for i in range(result_module.RECENT_WINDOWS + 50):
        result.ingest({**template, "start": float(i), "end": float(i + 1)})
    everything = result.recent(10_000.0)
    assert everything["windows"] == result_module.RECENT_WINDOWS
    assert everything["start"] == 50.0
    assert len(result.window_rows()) == result_module.RECENT_WINDOWS + 50  # the rows are all kept
    # Encoded, not decoded: each kept window holds the message's string.
    assert all(isinstance(w.hist, str) for w in result._recent)


def test_between_takes_windows_by_their_middle() -> None:
    result = result_of([make_window(float(i), None, [float(i + 1)] * 10) for i in range(6)])
    span = result.between(1.2, 3.6)  # middles 1.5, 2.5, 3.5
    assert span["windows"] == 3 and span["requests"] == 30
    assert span["max_ms"] == pytest.approx(4.0, rel=1e-3)
    assert result.between(10.0, 20.0)["windows"] == 0
    with pytest.raises(ValueError, match="before it starts"):
        result.between(2.0, 1.0)


# -- send-time attribution: SendWindows, the generator's bookkeeping, driven with made-up times --------------------


class Book:
    """A SendWindows on a made-up clock whose messages go (JSON round trip) into a LoadResult, as in a run."""

    def __init__(self, start: float = 0.0) -> None:
        self.windows = SendWindows(start)
        self.result = result_of([])
        self.now = start
        self.messages: list[dict[str, Any]] = []

    def _take(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            message = json.loads(json.dumps(message, allow_nan=False))
            self.messages.append(message)
            self.result.ingest(message)

    def phase(self, name: str | None, at: float, read: float | None = None) -> float:
        """The test changes phase at ``at``; the generator reads it at ``read`` (default: at once)."""
        self.now = max(self.now, at if read is None else read)
        return self.windows.set_phase(name, at, self.now)

    def send(self, sent: float, *, late: bool = False) -> Ticket:
        ticket = self.windows.register(sent)
        self.windows.sent(ticket, late=late)
        return ticket

    def answer(self, ticket: Ticket, at: float, status: int = 200) -> None:
        self.now = max(self.now, at)
        self.windows.complete(ticket, at - ticket.sent, status, self.now)

    def tick(self, now: float, next_send: float | None = None) -> None:
        self.now = max(self.now, now)
        self._take(self.windows.tick(self.now, self.now if next_send is None else next_send))

    def close(self, end: float) -> None:
        self.now = max(self.now, end)
        self._take(self.windows.close(end))

    def rows(self) -> list[tuple[float, float, str | None, int, int]]:
        return [
            (round(r["start"], 6), round(r["end"], 6), r["phase"], r["requests"], r["errors"])
            for r in self.result.window_rows()
        ]


def test_a_request_counts_in_the_phase_it_was_sent_in_not_in_the_one_it_completed_in() -> None:
    book = Book()
    book.phase("fault", 0.0)
    slow = book.send(0.9)  # sent while the fault was in force...
    book.phase("recovery", 1.2)
    book.answer(slow, 1.6, 503)  # ...answered 0.4 s into the recovery
    fast = book.send(1.3)
    book.answer(fast, 1.31)
    book.tick(5.0)
    fault, recovery = book.result.phases["fault"], book.result.phases["recovery"]
    assert (fault.requests, fault.errors) == (1, 1)
    assert fault.max_ms == pytest.approx(700.0, rel=1e-3)
    assert (recovery.requests, recovery.errors) == (1, 0)
    assert recovery.max_ms == pytest.approx(10.0, rel=1e-3)


def test_the_gap_between_two_phases_is_in_no_phase_however_short() -> None:
    # suites/test_07: the breaker's revert took 49 ms between the two phases; its overflow 503s were given to
    # the phase after it. A gap is the test's own time (injecting, verifying, reverting): in no phase.
    book = Book()
    book.phase("breaker", 0.0)
    book.phase(None, 2.0)
    during = book.send(2.01)
    book.answer(during, 2.015, 503)
    book.phase("no breaker", 2.03)
    after = book.send(2.04)
    book.answer(after, 2.05)
    book.tick(5.0)
    assert book.result.phases["no breaker"].errors == 0
    assert book.result.phases["no breaker"].requests == 1
    assert book.result.phases["breaker"].requests == 0
    assert (2.0, 2.03, None, 1, 1) in book.rows()


def test_an_empty_moment_between_two_phases_leaves_no_window_and_phases_start_when_the_test_said() -> None:
    book = Book()
    book.phase("a", 0.5)
    book.phase(None, 1.5)
    book.phase("b", 1.5002)  # back to back: nothing was sent in the 0.2 ms between them
    book.phase(None, 2.5002)
    book.tick(5.0)
    assert [(r[0], r[1], r[2]) for r in book.rows()][:3] == [(0.0, 0.5, None), (0.5, 1.5, "a"), (1.5002, 2.5002, "b")]
    assert (book.result.phases["b"].start, book.result.phases["b"].end) == (1.5002, 2.5002)


def test_a_phase_change_read_late_still_splits_at_the_instant_the_test_made_it() -> None:
    book = Book()
    book.phase("a", 0.0)
    before = book.send(0.99)
    after = book.send(1.001)
    book.answer(before, 1.0)
    book.answer(after, 1.002)  # answered before the generator read the phase change below
    assert book.phase("b", 0.995, read=1.1) == 0.0  # read 105 ms late: within STAGE_S, kept
    book.tick(5.0)
    assert book.result.phases["a"].requests == 1
    assert book.result.phases["b"].requests == 1


def test_a_phase_change_read_later_than_the_stage_is_moved_and_says_by_how_much() -> None:
    book = Book()
    book.phase("a", 0.0)
    moved = book.phase("b", 1.0, read=1.0 + STAGE_S + 0.1)
    assert moved == pytest.approx(0.1)
    book.tick(5.0)
    assert book.result.phases["b"].start == pytest.approx(1.1)


def test_windows_are_whole_seconds_of_send_time_and_a_last_sliver_joins_the_one_before() -> None:
    book = Book()
    book.phase("p", 0.3)
    for i in range(300):  # 100/s from 0.3 s to 3.3 s, 5 ms each
        ticket = book.send(0.3 + i / 100)
        book.answer(ticket, 0.3 + i / 100 + 0.005)
    book.phase(None, 3.32)
    book.tick(6.0)
    rows = [r for r in book.rows() if r[2] == "p"]
    assert [(r[0], r[1]) for r in rows] == [(0.3, 1.3), (1.3, 2.3), (2.3, 3.32)]
    assert [r[3] for r in rows] == [100, 100, 100]
    stats = book.result.phases["p"]
    assert (stats.start, stats.end, stats.requests) == (0.3, 3.32, 300)
    assert stats.throughput_rps == pytest.approx(300 / 3.02)


def test_a_window_is_sent_once_its_slowest_request_is_answered_and_provisionally_while_it_waits() -> None:
    book = Book()
    book.phase("queue", 0.0)
    quick, stuck = book.send(0.1), book.send(0.2)
    book.answer(quick, 0.15)
    book.tick(1.5)
    assert book.messages == []  # [0, 1) waits for its slow request
    book.tick(2.1)
    (provisional,) = book.messages
    assert (provisional["start"], provisional["final"], provisional["pending"]) == (0.0, False, 1)
    # Live readers see it (the stall shows), the phase does not count it yet.
    assert book.rows() == [(0.0, 1.0, "queue", 1, 0)]
    assert book.result.recent(5)["pending"] == 1
    assert "queue" not in book.result.phases
    book.tick(2.5)
    assert len(book.messages) == 1  # nothing changed: not sent again
    book.answer(stuck, 2.7, 0)  # a timeout, say
    book.tick(3.5)
    final = [m for m in book.messages if m["start"] == 0.0 and m["final"]]
    assert len(final) == 1
    assert book.rows()[0] == (0.0, 1.0, "queue", 2, 1)
    assert book.result.recent(10)["pending"] == 0
    stats = book.result.phases["queue"]
    assert (stats.requests, stats.errors) == (2, 1)  # counted once
    assert stats.max_ms == pytest.approx(2500.0, rel=1e-3)


def test_the_open_loop_schedule_holds_windows_back_until_its_claimed_requests_are_sent() -> None:
    book = Book()
    book.phase("p", 0.0)
    claimed = book.windows.register(0.95)  # a user claimed 0.95 and was held up: not sent yet
    book.tick(1.5, next_send=1.0)
    assert book.messages == []
    book.windows.sent(claimed, late=True)
    book.answer(claimed, 1.6)
    book.tick(2.0, next_send=2.0)
    stats = book.result.phases["p"]
    assert (stats.requests, stats.late) == (1, 1)  # late, in the window of its intended time
    assert stats.max_ms == pytest.approx(650.0, rel=1e-3)  # from the intended time


def test_a_stop_skips_what_was_not_sent_and_close_abandons_what_never_got_an_outcome() -> None:
    book = Book()
    book.phase("p", 0.0)
    answered = book.send(0.2)
    hung = book.send(0.3)
    book.windows.register(0.4)  # claimed, due before the stop, and its user never got to send it
    not_yet = book.windows.register(0.7)  # claimed, due after the stop
    book.answer(answered, 0.25)
    assert book.windows.stop(0.5) == 1
    assert not_yet.state == Ticket.SKIPPED and book.windows.outstanding == 2
    book.close(0.5)
    assert book.windows.abandoned == 2  # missing from the phase: the generator says how many
    assert book.result.phases["p"].requests == 1
    assert (book.result.phases["p"].start, book.result.phases["p"].end) == (0.0, 0.5)
    book.answer(hung, 9.0)  # too late: not counted anywhere
    assert book.windows.tick(10.0, 10.0) == []


def test_rows_and_phases_agree_and_the_generator_keeps_only_the_windows_still_open() -> None:
    book = Book()
    phases = ["a", None, "b", None]
    for second in range(120):  # 200/s, 2 ms each, a phase change every 10 s
        if second % 10 == 0:
            book.phase(phases[(second // 10) % 4], float(second))
        for i in range(200):
            sent = second + i / 200
            book.answer(book.send(sent), sent + 0.002)
        book.tick(second + 1.0)
        assert len(book.windows._windows) <= 3 and len(book.windows._staged) <= 200 * (STAGE_S + 0.1)
    book.close(120.0)
    rows = book.result.window_rows()
    for name in ("a", "b"):
        mine = [r for r in rows if r["phase"] == name]
        assert sum(r["requests"] for r in mine) == book.result.phases[name].requests == 30 * 200
        assert all(r["end"] - r["start"] == pytest.approx(1.0) for r in mine)
    assert sum(r["requests"] for r in rows) == 120 * 200


def test_a_window_that_lacks_lost_workers_requests_says_how_many() -> None:
    short = dict(make_window(1.0, "p", [1.0]), missing_workers=[1, 3])
    result = result_of([make_window(0.0, "p", [1.0, 2.0]), short])
    assert [row["missing_workers"] for row in result.window_rows()] == [0, 2]
