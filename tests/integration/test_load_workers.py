"""Integration tests for the distributed load generator: ``LoadGenerator(workers=N)`` — a locust master and N
local worker processes — against a small HTTP server on 127.0.0.1 in this process (see test_load.py).

Real processes throughout: the rate split over the workers, the merged windows, a worker killed or frozen
mid-run (the run is INCONCLUSIVE, the windows say which worker they miss), the master killed (its workers end),
and no process left behind, checked by PID.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pytest_clover.errors import Inconclusive, LoadGeneratorError, WorkerLost
from pytest_clover.load.run import LoadGenerator, LoadRun
from tests.integration.test_load import ControlledServer

pytestmark = pytest.mark.integration

RATE = 200.0
"""A modest rate: two shared cores also run the server, and other tests."""


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    with ControlledServer() as srv:
        yield srv


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def result_windows(error: WorkerLost) -> int:
    """How many windows the (one) lost worker's loss left short, as the generator's done message says."""
    (loss,) = error.result.generator["lost_workers"]
    return int(loss["windows"])


def processes_of(run: LoadRun) -> list[int]:
    return [run.pid, *run.worker_pids]


def assert_none_left(pids: list[int]) -> None:
    wait_until(lambda: all(gone(pid) for pid in pids), 10.0, f"processes {pids} ended")


@pytest.mark.slow
def test_two_workers_hold_the_open_loop_rate_and_split_it_evenly(server: ControlledServer, tmp_path: Path) -> None:
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    with gen.start(rate=RATE) as run:
        pids = processes_of(run)
        assert run.workers == 2 and len(run.worker_pids) == 2 and run.pid not in run.worker_pids
        run.phase("steady", 10)
    result = run.result
    steady = result.phases["steady"]
    # ±1 % is fair: the schedule is deterministic (request j is due at t0 + j/rate, whichever worker sends it),
    # and a phase counts the requests *due* in it, so only its two boundaries can add or drop one request.
    assert steady.throughput_rps == pytest.approx(RATE, rel=0.01)
    assert abs(steady.requests - RATE * (steady.end - steady.start)) <= 2
    assert steady.errors == 0
    # Each merged window holds exactly the requests due in it, all workers together.
    rows = [r for r in result.window_rows() if r["phase"] == "steady"]
    assert len(rows) == 10
    for row in rows:
        assert abs(row["requests"] - RATE * (row["end"] - row["start"])) <= 1, row
    # Every request the server answered is in exactly one window; the two workers sent one half each.
    assert sum(r["requests"] for r in result.window_rows()) == sum(server.statuses.values())
    shares = [w["requests"] for w in result.generator["per_worker"]]
    assert len(shares) == 2 and abs(shares[0] - shares[1]) <= 1 and sum(shares) == sum(server.statuses.values())
    assert result.generator["lost_workers"] == [] and result.generator["windows_missing_workers"] == 0
    assert run.windows_missing_workers == 0
    for i in range(2):
        assert (tmp_path / "load" / f"load-worker-{i}.log").exists()
    assert (tmp_path / "load" / "locust_stats.csv").exists()  # locust's own files, from the master
    assert_none_left(pids)


def test_closed_loop_users_are_split_as_evenly_as_possible(server: ControlledServer, tmp_path: Path) -> None:
    server.delay_s = 0.01
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    with gen.start(users=3) as run:
        pids = processes_of(run)
        run.phase("steady", 3)
    users = sorted(w["users"] for w in run.result.generator["per_worker"])
    assert users == [1, 2] and run.users == 3
    steady = run.result.phases["steady"]
    # Three users, each ~10 ms per request: about 300 requests/s in all (loose: a loaded machine is slower).
    assert 100 < steady.throughput_rps < 320
    assert_none_left(pids)
    with pytest.raises(ValueError, match="users=1 cannot be split over 2 workers"):
        gen.start(users=1)


def test_a_worker_killed_mid_run_makes_the_run_inconclusive(server: ControlledServer, tmp_path: Path) -> None:
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    with pytest.raises(WorkerLost) as info, gen.start(rate=RATE) as run:
        pids = processes_of(run)
        victim = run.worker_pids[1]
        run.phase("before", 3)
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        run.phase("after", 20)  # ends early: a lost worker ends the phase under way
    error = info.value
    assert isinstance(error, Inconclusive) and isinstance(error, LoadGeneratorError)
    assert time.time() - killed_at < 10, "the loss ended the phase long before its 20 s"
    text = str(error)
    assert f"worker 1 (pid {victim}) lost" in text and "SIGKILL" in text and "INCONCLUSIVE" in text
    assert f"{result_windows(error)} windows from" in text
    result = error.result
    assert result is not None and result is run.result
    (loss,) = result.generator["lost_workers"]
    assert loss["worker"] == 1 and loss["pid"] == victim and loss["windows"] >= 1
    assert "its process ended: exit code -9 (killed by SIGKILL)" in loss["reason"]
    assert [lw["worker"] for lw in error.lost_workers] == [1]
    # The windows the killed worker had finished are whole; every later one is marked, and holds exactly the
    # other worker's half of the schedule (never a lower rate passed off as the whole).
    assert result.generator["windows_missing_workers"] == loss["windows"] == run.windows_missing_workers
    rows = result.window_rows()
    whole = [r for r in rows if r["end"] <= loss["covered_until"] + 1e-6]
    short = [r for r in rows if r["end"] > loss["covered_until"] + 1e-6]
    assert len(short) == loss["windows"] and any(r["phase"] == "before" for r in whole)
    for row in whole[1:]:  # the first is the sliver before the first phase
        assert abs(row["requests"] - RATE * (row["end"] - row["start"])) <= 1, row
    for row in short:
        assert abs(row["requests"] - RATE / 2 * (row["end"] - row["start"])) <= 1, row
    assert_none_left(pids)


def test_a_frozen_worker_is_lost_and_killed(server: ControlledServer, tmp_path: Path) -> None:
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    with pytest.raises(WorkerLost) as info, gen.start(rate=RATE) as run:
        pids = processes_of(run)
        frozen = run.worker_pids[0]
        run.phase("before", 2)
        os.kill(frozen, signal.SIGSTOP)  # alive, but says nothing: no heartbeats, no windows
        run.phase("after", 20)
    (loss,) = info.value.result.generator["lost_workers"]
    assert loss["worker"] == 0
    # locust's heartbeats (~3 s) or our silence rule (5 s), whichever sees it first.
    assert "heartbeat" in loss["reason"] or "sent no window" in loss["reason"]
    assert_none_left(pids)  # the master killed it (SIGKILL ends a stopped process too)


def test_workers_end_by_themselves_when_the_master_is_killed(server: ControlledServer, tmp_path: Path) -> None:
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    run = gen.start(rate=RATE)
    try:
        workers = run.worker_pids
        wait_until(lambda: sum(server.statuses.values()) > 50, 10.0, "the workers send")
        os.kill(run.pid, signal.SIGKILL)
        # Each worker's stdin is a pipe from the master: end of file, and it stops at once.
        assert_none_left(workers)
        answered = sum(server.statuses.values())
        time.sleep(0.5)  # no request may follow: the schedule is 100 requests/s per worker
        assert sum(server.statuses.values()) == answered
    finally:
        with pytest.raises(LoadGeneratorError, match="died"):
            run.stop()
    assert_none_left([run.pid])


def test_the_workers_option_is_checked(tmp_path: Path) -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            LoadGenerator(base_url="http://127.0.0.1:9", report_dir=tmp_path, workers=bad)  # type: ignore[arg-type]
    assert LoadGenerator(base_url="http://127.0.0.1:9", report_dir=tmp_path, workers=3).workers == 3


def test_the_workers_send_the_one_generator_path_sequence(server: ControlledServer, tmp_path: Path) -> None:
    """The seeded path mix is split like the schedule: request j's path is the j-th choice of the one seeded
    sequence, whichever worker sends it, so the first n requests carry exactly the first n choices."""
    paths = {"/a": 3.0, "/b": 1.0, "/c": 0.5}
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=42, workers=2)
    with gen.start(rate=RATE, paths=paths, headers={"end-user": "jason"}) as run:
        pids = processes_of(run)
        run.phase("mix", 3)
    sent = sum(server.paths.values())
    rng = random.Random(42)
    expected = Counter(rng.choices(list(paths), list(paths.values()))[0] for _ in range(sent))
    assert sent >= 3 * RATE and server.paths == expected
    assert server.headers == Counter({"jason": sent})
    assert_none_left(pids)


def test_a_stall_shows_provisionally_then_every_request_counts_once(server: ControlledServer, tmp_path: Path) -> None:
    gen = LoadGenerator(base_url=server.url, report_dir=tmp_path / "load", seed=0, workers=2)
    with gen.start(rate=100.0) as run:
        pids = processes_of(run)
        run.begin_phase("stall")
        server.stall(3.0)
        # Windows still waiting for outcomes come merged and provisional (pending summed over the workers).
        wait_until(lambda: run.result.recent(10.0)["pending"] > 0, 5.0, "a provisional window with pending requests")
        wait_until(lambda: time.monotonic() > server.stall_until + 0.5, 5.0, "the stall ended")
        run.end_phase()
    stall = run.result.phases["stall"]
    assert stall.requests == sum(server.statuses.values()) - sum(
        r["requests"] for r in run.result.window_rows() if r["phase"] != "stall"
    )
    assert abs(stall.requests - 100.0 * (stall.end - stall.start)) <= 2
    assert stall.max_ms >= 2500  # the first request of the stall waited it out, from its intended time
    assert run.result.recent(60.0)["pending"] == 0  # every provisional window was replaced by its final one
    assert_none_left(pids)
