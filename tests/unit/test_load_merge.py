"""Unit tests for pytest_clover.load.merge: N workers' windows merged into one generator's, exactly.

The ground truth is always one histogram (one generator) of the very same recorded latencies: the requests of a
seeded open-loop schedule ``t0 + j/rate`` are split over the workers by the rule the workers use (worker
``j mod N`` sends request ``j``), each worker's windows are built like a worker builds them, and every merged
window must equal the single-process window — counts, late, and every percentile, exactly. No processes.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.load.merge import MISALIGNED_KEY, MISSING_KEY, MergeError, WindowMerger
from pytest_clover.load.result import LoadResult, SendWindows, clamp_us, new_histogram, window_message

T0 = 1_800_000_000.25
"""Unix seconds of the schedule's start (a realistic magnitude: float rounding at this size matters)."""
PERCENTILES = (0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)


@dataclass(frozen=True)
class Request:
    index: int
    """Its place in the single-process schedule; worker ``index mod N`` sends it."""
    intended: float
    """Unix seconds."""
    latency_us: int
    status: int
    late: bool


def recorded_requests(seed: int, rate: float, seconds: float) -> list[Request]:
    """A seeded open-loop run: heavy-tailed latencies, some 503s and connection errors, a few late sends."""
    rng = random.Random(seed)
    requests = []
    for j in range(round(rate * seconds)):
        latency_us = clamp_us(rng.lognormvariate(8.0, 1.4))  # median ~3 ms, a tail into seconds
        roll = rng.random()
        status = 503 if roll < 0.03 else 0 if roll < 0.04 else 200
        requests.append(Request(j, T0 + j / rate, latency_us, status, late=rng.random() < 0.02))
    return requests


def message_of(start: float, end: float, phase: str | None, requests: Iterable[Request]) -> dict[str, Any]:
    hist = new_histogram()
    status: dict[int, int] = {}
    late = 0
    for r in requests:
        hist.record_value(r.latency_us)
        status[r.status] = status.get(r.status, 0) + 1
        late += r.late
    # The JSON round trip the master's messages take to the parent (and msgpack's, roughly, to the master).
    decoded: dict[str, Any] = json.loads(
        json.dumps(window_message(start=start, end=end, phase=phase, histogram=hist, status_counts=status, late=late))
    )
    return decoded


def one_second_windows(
    requests: Sequence[Request], seconds: int, workers: int, phase_of: dict[int, str | None]
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The single-process windows (ground truth) and each worker's windows, for 1-s windows from T0."""
    truth, per_worker = [], [[] for _ in range(workers)]  # type: list[dict[str, Any]], list[list[dict[str, Any]]]
    for k in range(seconds):
        start, end = T0 + k, T0 + k + 1
        inside = [r for r in requests if start <= r.intended < end]
        truth.append(message_of(start, end, phase_of.get(k), inside))
        for w in range(workers):
            per_worker[w].append(message_of(start, end, phase_of.get(k), [r for r in inside if r.index % workers == w]))
    return truth, per_worker


def decoded(message: dict[str, Any]) -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram.decode(message["hist"])


def assert_same_window(merged: dict[str, Any], truth: dict[str, Any]) -> None:
    """Equal as windows: same span and phase, same counts, the same histogram, every percentile exactly."""
    assert merged["start"] == pytest.approx(truth["start"], abs=1e-5)
    assert merged["end"] == pytest.approx(truth["end"], abs=1e-5)
    for key in ("phase", "final", "pending", "status", "late", "p50_us", "p95_us", "p99_us", "max_us"):
        assert merged[key] == truth[key], key
    ours, theirs = decoded(merged), decoded(truth)
    assert ours.get_total_count() == theirs.get_total_count()
    assert list(ours.counts) == list(theirs.counts)
    for pct in PERCENTILES:
        assert ours.get_value_at_percentile(pct) == theirs.get_value_at_percentile(pct), pct
    assert (ours.get_min_value(), ours.get_max_value()) == (theirs.get_min_value(), theirs.get_max_value())


def result_of(messages: Iterable[dict[str, Any]]) -> LoadResult:
    result = LoadResult(mode="open", rate=500.0, users=None, seed=0, report_dir=Path("/nonexistent"))
    for message in messages:
        result.ingest(json.loads(json.dumps(message)))
    return result


# -- exactness ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_merged_windows_equal_one_histogram_of_all_the_same_latencies(workers: int) -> None:
    requests = recorded_requests(seed=workers, rate=997.0, seconds=4)  # a prime rate: shares differ by one
    truth, per_worker = one_second_windows(requests, 4, workers, {1: "baseline", 2: "fault", 3: "fault"})
    merger = WindowMerger(workers)
    merged: list[dict[str, Any]] = []
    for k in range(4):
        for w in range(workers):
            out = merger.add(w, per_worker[w][k], now=float(k))
            # Nothing goes out before the last worker's part of the window came.
            assert out == [] or w == workers - 1
            merged += out
    assert len(merged) == len(truth) == 4
    for ours, theirs in zip(merged, truth, strict=True):
        assert_same_window(ours, theirs)
        assert MISSING_KEY not in ours and MISALIGNED_KEY not in ours
    shares = merger.requests_by_worker
    assert sum(shares) == len(requests) and max(shares) - min(shares) <= 1
    # And the phases a test judges are those of one generator.
    ours_result, truth_result = result_of(merged), result_of(truth)
    assert ours_result.phases == truth_result.phases
    assert list(ours_result.histogram("fault").counts) == list(truth_result.histogram("fault").counts)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_workers_windowing_like_one_generator_merge_into_its_windows(workers: int) -> None:
    """The real bookkeeping (SendWindows) on each worker, each with its own clock offset, phase changes read a
    moment late, requests completing out of order: the merge equals one SendWindows fed every request."""
    rate, seconds = 400.0, 5.0
    requests = recorded_requests(seed=10 + workers, rate=rate, seconds=seconds)
    phases = [(T0 + 1.3, "baseline"), (T0 + 2.55, None), (T0 + 2.9, "fault")]
    # Each process turns unix times into its own monotonic clock through its own offset (a few µs apart).
    offsets = [T0 - 5000.0 + 3.7e-6 * w for w in range(workers + 1)]

    def run(book_index: int, mine: list[Request]) -> list[dict[str, Any]]:
        offset = offsets[book_index]
        book = SendWindows(T0 - offset, offset=offset)
        out: list[dict[str, Any]] = []
        tickets: list[tuple[Request, Any]] = []
        step, now, next_phase = 0.05, T0, 0
        while now < T0 + seconds + 0.5:
            now += step
            while next_phase < len(phases) and phases[next_phase][0] <= now - 0.02:  # read 20 ms late
                at, name = phases[next_phase]
                assert book.set_phase(name, at - offset, now - offset) == 0.0
                next_phase += 1
            for r in mine[len(tickets) :]:
                if r.intended > now:
                    break
                ticket = book.register(r.intended - offset)
                book.sent(ticket, late=r.late)
                tickets.append((r, ticket))
            for r, ticket in tickets:
                if ticket.outstanding and r.intended + r.latency_us / 1e6 <= now:
                    book.complete(ticket, r.latency_us / 1e6, r.status, now - offset)
            upcoming = mine[len(tickets)].intended if len(tickets) < len(mine) else math.inf
            out += book.tick(now - offset, upcoming - offset)
        book.stop(T0 + seconds - offset)
        out += book.close(T0 + seconds - offset)
        return [json.loads(json.dumps(m)) for m in out]

    truth = run(workers, requests)
    streams = [run(w, [r for r in requests if r.index % workers == w]) for w in range(workers)]
    merger = WindowMerger(workers)
    merged: list[dict[str, Any]] = []
    # Interleave the streams as the master would receive them: round robin, each in its own order.
    for i in range(max(len(s) for s in streams)):
        for w, stream in enumerate(streams):
            if i < len(stream):
                merged += merger.add(w, stream[i], now=float(i))
    for w in range(workers):
        merged += merger.finish(w)
    merged += merger.close()
    finals = [m for m in merged if m["final"]]
    truth_finals = [m for m in truth if m["final"]]
    assert [m["phase"] for m in finals] == [m["phase"] for m in truth_finals]
    assert len(finals) == len(truth_finals) >= 6
    for ours, theirs in zip(finals, truth_finals, strict=True):
        assert_same_window(ours, theirs)
    assert result_of(merged).phases == result_of(truth).phases
    assert merger.windows_misaligned == merger.windows_missing_workers == 0


# -- order ----------------------------------------------------------------------------------------------------


def test_messages_out_of_order_and_a_late_worker_give_the_same_windows_in_time_order() -> None:
    requests = recorded_requests(seed=5, rate=300.0, seconds=5)
    truth, per_worker = one_second_windows(requests, 5, 3, {})
    merger = WindowMerger(3)
    merged: list[dict[str, Any]] = []
    # Worker 2 is late: everything of the others first, shuffled between them (each in its own order).
    rng = random.Random(3)
    queues = [list(per_worker[0]), list(per_worker[1])]
    while any(queues):
        w = rng.choice([i for i, q in enumerate(queues) if q])
        assert merger.add(w, queues[w].pop(0), now=0.0) == []  # worker 2 sent nothing: nothing can go
    for k, message in enumerate(per_worker[2]):
        out = merger.add(2, message, now=1.0)
        assert len(out) == 1  # each of its windows completes exactly one merged window
        merged += out
        assert_same_window(out[0], truth[k])
    assert [m["start"] for m in merged] == sorted(m["start"] for m in merged)


def test_a_final_window_from_the_past_is_an_error() -> None:
    requests = recorded_requests(seed=6, rate=100.0, seconds=3)
    _, per_worker = one_second_windows(requests, 3, 2, {})
    merger = WindowMerger(2)
    merger.add(0, per_worker[0][1], now=0.0)
    with pytest.raises(MergeError, match=r"worker 0: final window at .* arrived after"):
        merger.add(0, per_worker[0][0], now=0.0)


# -- provisional windows --------------------------------------------------------------------------------------


def test_provisional_windows_are_merged_then_replaced_by_the_final_one() -> None:
    requests = recorded_requests(seed=7, rate=200.0, seconds=1)
    mine = [[r for r in requests if r.index % 2 == w] for w in range(2)]
    answered0 = mine[0][: len(mine[0]) - 5]  # worker 0 still waits for 5 outcomes
    start, end = T0, T0 + 1
    provisional0 = dict(message_of(start, end, "fault", answered0), final=False, pending=5)
    merger = WindowMerger(2)
    assert merger.add(0, provisional0, now=0.0) == []  # worker 1 said nothing about this window yet
    out = merger.add(1, message_of(start, end, "fault", mine[1]), now=0.0)
    assert len(out) == 1 and out[0]["final"] is False
    expected = message_of(start, end, "fault", answered0 + mine[1])
    assert out[0]["pending"] == 5
    assert out[0]["status"] == expected["status"] and out[0]["p99_us"] == expected["p99_us"]
    # A newer provisional of worker 0 replaces its older one (not added to it).
    again = merger.add(0, dict(message_of(start, end, "fault", mine[0][:-2]), final=False, pending=2), now=0.5)
    assert [m["pending"] for m in again] == [2]
    assert sum(again[0]["status"].values()) == len(requests) - 2
    final = merger.add(0, message_of(start, end, "fault", mine[0]), now=1.0)
    assert len(final) == 1 and final[0]["final"] is True
    assert_same_window(final[0], message_of(start, end, "fault", requests))
    # The parent sees one window, final, counted once in its phase.
    result = result_of(out + again + final)
    assert len(result.window_rows()) == 1
    assert result.phases["fault"].requests == len(requests)


# -- lost workers ---------------------------------------------------------------------------------------------


def test_a_lost_worker_marks_every_window_it_did_not_finish() -> None:
    requests = recorded_requests(seed=8, rate=300.0, seconds=5)
    truth, per_worker = one_second_windows(requests, 5, 3, {k: "steady" for k in range(5)})
    merger = WindowMerger(3)
    merged: list[dict[str, Any]] = []
    for w in range(3):
        merged += merger.add(w, per_worker[w][0], now=0.0)
    assert len(merged) == 1 and MISSING_KEY not in merged[0]
    for k in (1, 2):  # worker 1 never sends its second window: the others wait
        for w in (0, 2):
            assert merger.add(w, per_worker[w][k], now=float(k)) == []
    out = merger.lose(1, "exit code -9 (killed by SIGKILL)", at=T0 + 2.5)
    assert [m["start"] for m in out] == [truth[1]["start"], truth[2]["start"]]
    for k in (3, 4):
        for w in (0, 2):
            out += merger.add(w, per_worker[w][k], now=float(k))
    assert len(out) == 4
    for k, message in enumerate(out, start=1):
        assert message[MISSING_KEY] == [1]
        assert message["final"] is True
        without = message_of(T0 + k, T0 + k + 1, "steady", [r for r in requests if T0 + k <= r.intended < T0 + k + 1])
        assert sum(message["status"].values()) < sum(without["status"].values())  # short by worker 1's share
    assert merger.add(1, per_worker[1][1], now=9.0) == [] and merger.ignored == 1  # too late: not counted
    loss = merger.lost[1]
    assert (loss.worker, loss.reason, loss.at, loss.windows) == (1, "exit code -9 (killed by SIGKILL)", T0 + 2.5, 4)
    assert loss.covered_until == pytest.approx(T0 + 1)
    assert merger.windows_missing_workers == 4 and merger.live == [0, 2]
    # The rows of a run with a lost worker show the lower rate; the master's done message says why.
    assert result_of(merged + out).phases["steady"].requests == sum(merger.requests_by_worker)


def test_a_silent_worker_is_lost_only_once_the_others_finished_a_window_it_did_not() -> None:
    requests = recorded_requests(seed=9, rate=100.0, seconds=3)
    _, per_worker = one_second_windows(requests, 3, 2, {})
    merger = WindowMerger(2, silent_after_s=5.0)
    merger.start(now=100.0)
    assert merger.check(now=200.0, at=T0) == []  # nobody finished anything: nothing to compare
    merger.add(0, per_worker[0][0], now=101.0)
    assert merger.check(now=104.9, at=T0) == [] and merger.live == [0, 1]  # silent 4.9 s: not yet
    out = merger.check(now=105.0, at=T0 + 5)
    assert [m[MISSING_KEY] for m in out] == [[1]] and merger.live == [0]
    assert "sent no window for 5.0 s while worker(s) 0 finished the window" in merger.lost[1].reason


def test_a_slow_but_talking_worker_and_a_stopping_run_are_not_lost() -> None:
    requests = recorded_requests(seed=10, rate=100.0, seconds=3)
    _, per_worker = one_second_windows(requests, 3, 2, {})
    merger = WindowMerger(2, silent_after_s=5.0)
    merger.start(now=0.0)
    merger.add(0, per_worker[0][0], now=1.0)
    # Worker 1 waits for a slow outcome in its first window but keeps sending (provisional) messages.
    for t in range(1, 20):
        merger.add(1, dict(per_worker[1][0], final=False, pending=1), now=float(t))
        assert merger.check(now=float(t) + 0.5, at=T0) == []
    assert merger.live == [0, 1]
    merger.stopping()
    assert merger.check(now=1000.0, at=T0) == [] and merger.live == [0, 1]


def test_close_sends_what_is_left_with_the_workers_that_never_finished_it() -> None:
    requests = recorded_requests(seed=11, rate=100.0, seconds=2)
    truth, per_worker = one_second_windows(requests, 2, 2, {})
    merger = WindowMerger(2)
    merger.add(0, per_worker[0][0], now=0.0)
    merger.add(0, per_worker[0][1], now=0.0)
    merger.add(1, per_worker[1][0], now=0.0)
    merger.finish(0)
    out = merger.close()
    assert len(out) == 1 and out[0][MISSING_KEY] == [1]
    assert out[0]["start"] == truth[1]["start"] and merger.close() == []


def test_all_workers_lost_sends_everything_collected() -> None:
    requests = recorded_requests(seed=12, rate=100.0, seconds=1)
    _, per_worker = one_second_windows(requests, 1, 2, {})
    merger = WindowMerger(2)
    merger.add(0, per_worker[0][0], now=0.0)
    assert merger.lose(0, "gone", at=T0) == []  # worker 0 had finished it; worker 1 is still waited for
    out = merger.lose(1, "gone", at=T0)
    assert len(out) == 1 and out[0][MISSING_KEY] == [1] and merger.live == []
    assert merger.lose(1, "again", at=T0) == [] and merger.lost[1].reason == "gone"


# -- misaligned windows ---------------------------------------------------------------------------------------


def test_misaligned_windows_keep_exact_counts_and_say_so() -> None:
    requests = recorded_requests(seed=13, rate=200.0, seconds=3)
    a = [r for r in requests if r.index % 2 == 0]
    b = [r for r in requests if r.index % 2 == 1]
    merger = WindowMerger(2)
    out: list[dict[str, Any]] = []
    # Worker 1 read the phase change 0.3 s late: its windows start 0.3 s after worker 0's.
    out += merger.add(0, message_of(T0, T0 + 1, "p", [r for r in a if r.intended < T0 + 1]), now=0)
    out += merger.add(1, message_of(T0, T0 + 1.3, "p", [r for r in b if r.intended < T0 + 1.3]), now=0)
    out += merger.add(0, message_of(T0 + 1, T0 + 3, "p", [r for r in a if r.intended >= T0 + 1]), now=0)
    out += merger.add(1, message_of(T0 + 1.3, T0 + 3, "p", [r for r in b if r.intended >= T0 + 1.3]), now=0)
    assert sum(sum(m["status"].values()) for m in out) == len(requests)
    assert any(m.get(MISALIGNED_KEY) == [1] for m in out)
    assert merger.windows_misaligned >= 1


# -- bad input ------------------------------------------------------------------------------------------------


def good() -> dict[str, Any]:
    return message_of(T0, T0 + 1, None, recorded_requests(seed=14, rate=10.0, seconds=1))


@pytest.mark.parametrize(
    ("worker", "change", "match"),
    [
        (2, {}, r"unknown worker 2: this run has workers 0 … 1"),
        (0, {"type": "ready"}, r"worker 0: not a window message \(type='ready'\)"),
        (1, {"v": 1}, r"worker 1: window message version 1; this merger reads 2"),
        (0, {"start": "soon"}, r"worker 0: malformed window message"),
        (0, {"end": T0 - 1}, r"worker 0: window \[.*\) is not a span of time"),
        (0, {"phase": 3}, r"worker 0: window phase must be a string or null, not 3"),
        (0, {"status": {"200": 1}}, r"worker 0: window at .*: histogram holds 10 latencies but the status counts"),
        (0, {"hist": "not-a-histogram"}, r"worker 0: window at .*: undecodable histogram"),
        (1, {"late": -1}, r"worker 1: negative counts"),
    ],
)
def test_bad_messages_are_refused_naming_the_worker_and_what_is_wrong(
    worker: int, change: dict[str, Any], match: str
) -> None:
    merger = WindowMerger(2)
    with pytest.raises(MergeError, match=match):
        merger.add(worker, {**good(), **change}, now=0.0)
    assert merger.windows_sent == 0 and merger.live == [0, 1]


def test_the_merger_checks_its_arguments() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            WindowMerger(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="silent_after_s must be positive"):
        WindowMerger(2, silent_after_s=0)
    with pytest.raises(MergeError, match="a window message must be a mapping"):
        WindowMerger(2).add(0, ["window"], now=0.0)  # type: ignore[arg-type]


# -- the windows each worker cuts -----------------------------------------------------------------------------


@pytest.mark.parametrize("answered_at", [1.30, 1.26])
def test_a_request_lands_in_the_second_of_its_send_time_whenever_the_cut_comes(answered_at: float) -> None:
    """Exact windows need exact per-worker windows: an outcome placed (or folded) before the tick that cuts its
    window must still go to the window of its send time, not to the one before."""
    book = SendWindows(0.0)
    assert book.tick(1.0, next_send=1.02) == []  # cut up to 0.75: the window [0, 1) is not cut yet
    ticket = book.register(1.02)
    book.sent(ticket)
    book.complete(ticket, 0.005, 200, now=answered_at)  # 1.02 < now − 0.25: placed at once, or staged
    messages = book.tick(1.31, next_send=3.0) + book.tick(2.5, next_send=3.0)
    assert [(m["start"], sum(m["status"].values())) for m in messages] == [(0.0, 0), (1.0, 1)]
