"""Integration tests for the load generator (pytest_clover.load) against a controllable local HTTP server.

No mesh: a tiny aiohttp app runs on 127.0.0.1 in a thread of the test process, with a delay, a seeded 503
rate and a one-off stall that the tests set. The generator itself is a real child process running locust.
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from pytest_clover.errors import LoadGeneratorError
from pytest_clover.load.result import LoadResult, PhaseStats
from pytest_clover.load.run import LoadGenerator, LoadRun
from pytest_clover.timeline import Timeline

pytestmark = pytest.mark.integration


class ControlledServer:
    """An HTTP server on 127.0.0.1 whose latency, errors and stalls the test controls (thread-safe enough:
    the test only assigns plain attributes, the server's event loop reads them)."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.error_rate = 0.0
        self.rng = random.Random(1234)
        self.stall_until = 0.0
        self.paths: Counter[str] = Counter()
        self.headers: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="controlled-server", daemon=True)
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        stall = self.stall_until - time.monotonic()
        if stall > 0:
            await asyncio.sleep(stall)  # a freeze: everything arriving now completes when it ends
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.paths[request.path] += 1
        self.headers[request.headers.get("end-user", "")] += 1
        if self.error_rate and self.rng.random() < self.error_rate:
            self.statuses[503] += 1
            return web.Response(status=503, text="unavailable")
        self.statuses[200] += 1
        return web.Response(text="ok")

    def stall(self, seconds: float) -> None:
        self.stall_until = time.monotonic() + seconds

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def __enter__(self) -> ControlledServer:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    with ControlledServer() as srv:
        yield srv


@pytest.fixture
def gen(server: ControlledServer, tmp_path: Path) -> LoadGenerator:
    return LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0)


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def binomial_interval(n: int, p: float, confidence: float = 0.99) -> tuple[int, int]:
    """Smallest and largest k with P(X < k) and P(X > k) each at most (1 - confidence) / 2."""
    tail = (1 - confidence) / 2
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= tail:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf[hi] <= tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def kept_schedule(stats: PhaseStats, rate: float) -> bool:
    """The generator kept its open-loop schedule: a send is late 10 ms after its time. A shared machine holds
    a process back for a few tens of ms now and then, and every send scheduled in such a gap is late at once
    (CI saw 1 of 601 at 200/s and 3 of 195 at 100/s), so up to 50 ms worth of sends plus 1 % are allowed. A
    generator that cannot keep up is late on a large share of its sends."""
    return stats.late <= 0.05 * rate + 0.01 * stats.requests


def test_open_loop_rate_is_accurate_and_keeps_its_schedule(gen: LoadGenerator) -> None:
    with gen.start(rate=200.0) as run:
        run.phase("steady", seconds=3)
    stats = run.result.phases["steady"]
    assert stats.requests == pytest.approx(600, rel=0.03)
    assert stats.throughput_rps == pytest.approx(200.0, rel=0.03)
    assert kept_schedule(stats, 200.0), stats
    assert stats.errors == 0 and stats.status_counts == {200: stats.requests}
    assert run.result.mode == "open" and run.result.rate == 200.0 and run.result.users is None


def test_fixed_server_delay_shows_in_the_median(gen: LoadGenerator, server: ControlledServer) -> None:
    with gen.start(rate=100.0) as run:
        run.phase("baseline", seconds=2)
        server.delay_s = 0.050
        run.phase("delayed", seconds=2)
    base, delayed = run.result.phases["baseline"], run.result.phases["delayed"]
    expected = base.p50_ms + 50.0
    assert abs(delayed.p50_ms - expected) <= 0.02 * expected + 2.0, (base, delayed)
    assert kept_schedule(delayed, 100.0), delayed


def test_seeded_error_rate_is_inside_the_binomial_interval(gen: LoadGenerator, server: ControlledServer) -> None:
    server.error_rate = 0.30
    with gen.start(rate=200.0) as run:
        run.phase("errors", seconds=3)
    stats = run.result.phases["errors"]
    lo, hi = binomial_interval(stats.requests, 0.30)
    assert lo <= stats.errors <= hi, (stats.errors, stats.requests, lo, hi)
    assert set(stats.status_counts) == {200, 503}
    assert stats.error_rate == pytest.approx(stats.errors / stats.requests)


def test_stall_is_charged_to_every_request_scheduled_during_it(gen: LoadGenerator, server: ControlledServer) -> None:
    rate = 200.0
    with gen.start(rate=rate) as run:
        run.phase("before", seconds=1)
        server.stall(1.0)
        run.phase("stall", seconds=3)
    result = run.result
    stats = result.phases["stall"]
    # Every request scheduled during the 3 s is counted, the stalled ones included.
    assert stats.requests == pytest.approx(3 * rate, rel=0.03)
    # The first requests of the stall waited ~1 s from their intended send time...
    assert stats.max_ms >= 900.0
    assert stats.p99_ms >= 900.0
    # ...and latency is measured from the intended time even for requests the generator could only send when
    # a user came free: every request scheduled in the first 0.6 s of the stall waited ≥ 0.4 s (ground truth
    # 0.6 × rate = 120). A closed loop would show only as many slow requests as it had users.
    # A few more are slow too, by as many as the rate times the time the generator takes to take in the ~200
    # responses the stall releases at once (CI saw 140 on a busy machine); but never more than the stall's
    # own 1 s of requests, or the generator would be charging waits that did not happen.
    hist = result.histogram("stall")
    slow = sum(i.count_added_in_this_iter_step for i in hist.get_recorded_iterator() if i.value_iterated_to >= 400_000)
    assert 0.6 * rate * 0.95 <= slow <= 1.0 * rate, slow
    assert result.phases["before"].p99_ms < 100.0


def test_a_request_counts_in_the_phase_it_was_sent_in(gen: LoadGenerator, server: ControlledServer) -> None:
    # Requests sent in "slow" take 300 ms, so a third of them are answered during "fast": they are slow's.
    with gen.start(rate=100.0) as run:
        server.delay_s = 0.300
        run.phase("slow", seconds=1)
        server.delay_s = 0.0
        run.phase("fast", seconds=1)
    slow, fast = run.result.phases["slow"], run.result.phases["fast"]
    assert slow.requests == pytest.approx(100, abs=2) and fast.requests == pytest.approx(100, abs=2)
    assert slow.p50_ms >= 300.0, slow
    assert fast.max_ms < 300.0, f"a request of the slow phase was counted in the fast one: {fast}"
    assert kept_schedule(fast, 100.0), fast


def test_a_short_gap_between_phases_is_in_no_phase(gen: LoadGenerator, server: ControlledServer) -> None:
    # The circuit-breaker suite's failure: its revert (49 ms) between two phases answered 503s that were given to
    # the next phase. Here the server answers 503 for ~30 ms between two clean phases, a gap under 50 ms.
    rate = 200.0
    with gen.start(rate=rate) as run:
        run.phase("before", seconds=1)
        time.sleep(0.005)  # the requests of "before" are answered before the errors start
        server.error_rate = 1.0
        time.sleep(0.030)
        server.error_rate = 0.0
        time.sleep(0.005)
        run.phase("after", seconds=1)
    result = run.result
    assert server.statuses[503] >= 1, "no 503 was answered in the gap: the test did not exercise it"
    before, after = result.phases["before"], result.phases["after"]
    assert after.errors == 0, f"errors of the gap were counted in the phase after it: {after}"
    # A request of "before" meets the errors only if the generator sent it late (its intended time is in
    # "before", so it is before's, as coordinated-omission correction wants).
    assert before.errors <= before.late, before
    gap = [r for r in result.window_rows() if r["phase"] is None and before.end <= r["start"] < after.start]
    assert len(gap) == 1 and (gap[0]["start"], gap[0]["end"]) == (before.end, after.start), gap
    # Every 503 the server answered is counted, once: in the gap, or (sent late) in "before".
    assert gap[0]["errors"] + before.errors == server.statuses[503]
    assert sum(r["requests"] for r in result.window_rows()) == sum(server.statuses.values())


def test_stop_waits_for_the_outcome_of_every_request_sent(gen: LoadGenerator, server: ControlledServer) -> None:
    server.delay_s = 0.500
    with gen.start(rate=100.0) as run:
        run.phase("slow", seconds=1)
    stats = run.result.phases["slow"]
    # The last half second of requests was still waiting at the stop: each is counted with its answer.
    assert stats.requests == pytest.approx(100, abs=2) and stats.errors == 0, stats
    assert stats.p50_ms >= 500.0
    assert run.result.generator["abandoned"] == 0
    assert sum(r["requests"] for r in run.result.window_rows()) == sum(server.statuses.values())


def test_closed_loop_users_paths_and_headers(gen: LoadGenerator, server: ControlledServer) -> None:
    with gen.start(users=4, paths={"/a": 3, "/b": 1}, headers={"end-user": "jason"}) as run:
        assert run.mode == "closed" and run.users == 4
        run.phase("closed", seconds=2)
    result = run.result
    stats = result.phases["closed"]
    assert stats.requests > 100 and stats.errors == 0 and stats.late == 0  # a closed loop has no schedule
    assert result.mode == "closed" and result.users == 4 and result.rate is None
    assert result.generator["users"] == 4
    total = server.paths["/a"] + server.paths["/b"]
    assert server.paths["/a"] / total == pytest.approx(0.75, abs=0.05)
    assert server.headers["jason"] == total


def test_phases_are_tagged_and_on_the_timeline(server: ControlledServer, tmp_path: Path) -> None:
    timeline = Timeline()
    gen = LoadGenerator(server.url, tmp_path / "load", seed=3, time_scale=0.5, timeline=timeline)
    with gen.start(rate=100.0) as run:
        started = time.monotonic()
        run.phase("fast", seconds=2)  # 1 s with time_scale 0.5
        server.delay_s = 0.030
        run.mark("fault-start", "delay 30ms", delay_ms=30)
        run.phase("slow", seconds=2)
        # 2 s of phases at time scale 0.5; unscaled they would take 4 s (the generator's start is not counted:
        # importing locust takes seconds on a busy machine).
        assert time.monotonic() - started < 3.5
    result = run.result
    assert list(result.phases) == ["fast", "slow"]
    fast, slow = result.phases["fast"], result.phases["slow"]
    assert fast.end <= slow.start + 1e-6
    # Phases start and end at the instants the test changed phase, the timeline's events.
    times = {(e["kind"], e["name"]): float(e["time"]) for e in result.events}
    for name, stats in (("fast", fast), ("slow", slow)):
        assert stats.start == pytest.approx(times[("phase-start", name)], abs=1e-6)
        assert stats.end == pytest.approx(times[("phase-end", name)], abs=1e-6)
    assert fast.p50_ms < 10.0 and slow.p50_ms >= 30.0
    assert fast.requests == pytest.approx(100, rel=0.05) and slow.requests == pytest.approx(100, rel=0.05)
    rows = result.window_rows()
    assert {r["phase"] for r in rows} <= {"fast", "slow", None}
    for row in rows:
        if row["phase"] == "fast":
            assert row["p50_ms"] < 10.0
        elif row["phase"] == "slow":
            assert row["p50_ms"] >= 30.0
    # No window spans a phase change: the windows of a phase add up to its duration.
    for name in ("fast", "slow"):
        covered = sum(r["end"] - r["start"] for r in rows if r["phase"] == name)
        assert covered == pytest.approx(1.0, abs=0.08)
    kinds = [(e["kind"], e["name"]) for e in result.events]
    assert kinds == [
        ("phase-start", "fast"),
        ("phase-end", "fast"),
        ("fault-start", "delay 30ms"),
        ("phase-start", "slow"),
        ("phase-end", "slow"),
    ]
    assert result.events[2]["delay_ms"] == 30
    assert [e.kind for e in timeline.events()] == [k for k, _ in kinds]


def test_killed_generator_raises_with_its_exit_code(gen: LoadGenerator) -> None:
    run = gen.start(rate=50.0)
    pid = run.pid
    assert pid in children()
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(LoadGeneratorError, match=r"exit code -9 \(killed by SIGKILL\)") as info:
            run.phase("doomed", seconds=10)
    finally:
        killer.cancel()
    assert time.monotonic() - started < 3.0  # raised when it died, not when the phase would have ended
    assert info.value.exit_code == -9 and info.value.pid == pid
    assert isinstance(info.value.result, LoadResult)
    assert not run.alive
    with pytest.raises(LoadGeneratorError, match="died before it was stopped"):
        run.stop()
    with pytest.raises(LoadGeneratorError):
        run.phase("again", seconds=1)
    assert pid not in children()


def test_generator_that_cannot_start_raises_with_its_log(gen: LoadGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_clover.load.run.WORKER_MODULE", "pytest_clover.load.no_such_module")
    before = children()
    with pytest.raises(LoadGeneratorError, match="exited before it was ready") as info:
        gen.start(rate=10.0)
    assert info.value.exit_code == 1
    assert "No module named pytest_clover.load.no_such_module" in info.value.stderr_tail
    assert "No module named" in str(info.value)
    assert children() <= before


def test_connection_errors_count_as_status_0(tmp_path: Path) -> None:
    gen = LoadGenerator("http://127.0.0.1:1", tmp_path / "load")
    before = children()
    with gen.start(rate=10.0) as run:
        run.phase("refused", seconds=1)
    stats = run.result.phases["refused"]
    # Nothing listens on port 1: every request is a connection error, counted as status 0.
    assert stats.requests == pytest.approx(10, abs=2) and stats.status_counts == {0: stats.requests}
    assert stats.error_rate == 1.0
    assert children() <= before


def test_stop_leaves_no_process_and_keeps_locust_csv(gen: LoadGenerator, tmp_path: Path) -> None:
    before = children()
    run = gen.start(rate=100.0)
    assert run.pid in children()
    run.phase("p", seconds=2)
    result = run.stop()
    assert result is run.stop() is run.result  # idempotent
    assert not run.alive and run.pid not in children() and children() <= before
    report = tmp_path / "load"
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust_exceptions.csv"):
        assert (report / name).is_file(), name
    with (report / "locust_stats.csv").open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert int(rows["Aggregated"]["Request Count"]) >= 200
    with (report / "locust_stats_history.csv").open() as fh:
        history = list(csv.DictReader(fh))
    assert len(history) >= 2 and {"Aggregated", "/"} <= {row["Name"] for row in history}
    assert (report / "load-worker.log").is_file()
    with pytest.raises(LoadGeneratorError, match="stopped"):
        run.phase("late", seconds=1)


def test_context_manager_stops_the_generator_on_an_exception(gen: LoadGenerator) -> None:
    holder: list[LoadRun] = []
    with pytest.raises(RuntimeError, match="test failed"), gen.start(users=2) as run:
        holder.append(run)
        raise RuntimeError("test failed")
    assert not holder[0].alive and holder[0].pid not in children()


def test_pytest_process_never_imports_locust_or_gevent(gen: LoadGenerator) -> None:
    with gen.start(rate=20.0) as run:
        run.phase("p", seconds=0.5)
    assert run.result.phases["p"].requests > 0
    assert "locust" not in sys.modules and "gevent" not in sys.modules
    # And importing the parent-side modules alone pulls in none of locust, gevent, pandas or hdrh.
    probe = (
        "import sys, pytest_clover.load.run, pytest_clover.load.result; "
        "print(sorted(m for m in ('locust', 'gevent', 'pandas', 'hdrh') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
