"""Bounded logs on the real embedded mesh: with a tiny bound, load keeps the log files within it, Envoy goes on
writing its access log after each copy-and-truncate, and the readers (``access_log``, the per-hop breakdown) still
get their entries.

Each test deploys its own SDC mesh: the bound is read by the supervisor when it starts (here from the
environment, as ``CLOVER_LOG_MAX_BYTES`` and the like give it).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.logrotate import (
    ACCESS_LOG_PERCENT_ENV,
    CHECK_SECONDS_ENV,
    GENERATIONS_ENV,
    MAX_BYTES_ENV,
    appended_since,
    generations,
    mark,
    rotation_lock,
)
from pytest_clover.report.hops import SETTLE_SECONDS, AccessLogCursor, join, load_hops, parse_time, record_hops
from tests.helpers import Client, binomial_interval, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
MAX_BYTES = 64 * 1024
GENERATIONS = 2
CHECK_SECONDS = 0.2
SDC_SEGMENTS = 6  # ingress → pac, pac, pac → lb, lb, lb → server, server


def deploy(env: dict[str, str], state: Path) -> Iterator[LocalBackend]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)  # the supervisor inherits the environment it is started with
        backend = LocalBackend(SDC, state, seed=7)
        backend.deploy(timeout=90)
    try:
        yield backend
    finally:
        backend.teardown()


@pytest.fixture
def bounded(runtime_dir: Path, tmp_path: Path) -> Iterator[LocalBackend]:
    env = {MAX_BYTES_ENV: str(MAX_BYTES), GENERATIONS_ENV: str(GENERATIONS), CHECK_SECONDS_ENV: str(CHECK_SECONDS)}
    yield from deploy(env, tmp_path / "state")


@pytest.fixture
def sampled(runtime_dir: Path, tmp_path: Path) -> Iterator[LocalBackend]:
    yield from deploy({ACCESS_LOG_PERCENT_ENV: "50"}, tmp_path / "state")


class DiskWatch:
    """Samples every pod's access logs on disk (all generations) every 50 ms while the load runs."""

    def __init__(self, mesh: LocalBackend) -> None:
        self.paths = {pod.name: mesh.log_path(pod.name, "access") for pod in mesh.pods()}
        self.most: dict[str, int] = dict.fromkeys(self.paths, 0)
        self.most_files: dict[str, int] = dict.fromkeys(self.paths, 0)
        self.current: dict[str, list[tuple[int, int]]] = {name: [] for name in self.paths}
        """Each pod's (inode, size) of the file at ``access.log`` at each sample."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, path in self.paths.items():
                files = generations(path)
                sizes = []
                for file in files:
                    try:
                        status = file.stat()
                    except FileNotFoundError:
                        continue
                    sizes.append(status.st_size)
                    if file == path:
                        self.current[name].append((status.st_ino, status.st_size))
                self.most[name] = max(self.most[name], sum(sizes))
                self.most_files[name] = max(self.most_files[name], len(files))

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def entries_of(pieces: list[tuple[Path, int]]) -> list[dict[str, Any]]:
    out = []
    for path, offset in pieces:
        with path.open("rb") as handle:
            handle.seek(offset)
            for line in handle.read().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def test_a_tiny_bound_holds_under_load_and_the_readers_still_work(bounded: LocalBackend, tmp_path: Path) -> None:
    gateway = next(p.name for p in bounded.pods() if p.deployment is None)
    cursor = AccessLogCursor(bounded)
    marks = {pod.name: mark(bounded.log_path(pod.name, "access")) for pod in bounded.pods()}
    with Client(bounded.ingress_url()) as ingress, DiskWatch(bounded) as watch:
        first = ingress.get("/first")
        load_began = time.monotonic()
        replies = ingress.many(4000, "/bounded", workers=2)
        seconds = time.monotonic() - load_began
        last = ingress.get("/last")
    assert all(r.status == 200 for r in [first, *replies, last])

    # Entries are about 600 bytes; a pod on the path logs 2 per request (inbound and outbound). Between two
    # checks a log may outgrow the limit by what arrives meanwhile (the check's period and its lateness).
    line_bytes = max(len(json.dumps(e)) for e in bounded.access_log(gateway)) + 50
    per_check = 2 * line_bytes * (len(replies) / seconds) * (CHECK_SECONDS + 0.2)
    bound = (1 + GENERATIONS) * (MAX_BYTES + per_check)
    written = 2 * 500 * len(replies)  # at least, by either pod on the path
    assert written > 2 * bound, f"the load wrote too little to test the bound ({written} B against {bound:.0f})"
    for pod, most in watch.most.items():
        assert most <= bound, f"{pod}'s access logs took {most} B on disk, over {bound:.0f}"
        assert watch.most_files[pod] <= 1 + GENERATIONS, pod

    # Copied and truncated in place (no reopen): the file at access.log stays Envoy's own (one inode), it shrank
    # at each rotation, and Envoy (O_APPEND) went on writing at its new end after the truncations.
    samples = watch.current[gateway]
    assert len({inode for inode, _ in samples}) == 1, "the access log was replaced instead of truncated in place"
    sizes = [size for _, size in samples]
    drops = [i for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1]]
    assert len(drops) >= 2, f"the gateway's access log was truncated {len(drops)} times"
    assert any(sizes[j] > sizes[drops[0]] for j in range(drops[0] + 1, len(sizes))), "Envoy stopped writing it"

    # The first request was rotated out; the last one is there, read by access_log() across the copies.
    wait_for(
        lambda: last.request_id in {e.get("request_id") for e in bounded.access_log(gateway)},
        timeout=5,
        what="the last request in the gateway's access log",
    )
    everything = bounded.access_log(gateway)
    current = bounded.log_path(gateway, "access").read_bytes().splitlines()
    assert first.request_id not in {e.get("request_id") for e in everything}
    assert len(everything) > len(current), "access_log() reads the rotated copies too"
    # Oldest copy first: lines are written as requests end, so start times are in order but for a few ms.
    starts = [parse_time(e["start_time"]) or 0.0 for e in everything]
    assert all(
        later > earliest - 1.0 for earliest, later in zip(itertools.accumulate(starts, max), starts[1:], strict=False)
    )

    # The per-hop breakdown, from every log read from its mark across the rotations (appended_since). Rotations
    # are mesh-wide, so a request loses a hop only when its oldest entries were in the copy deleted last: the
    # oldest requests left, which started before every whole request or during the first of them.
    # Each Envoy flushes its access log on its own 100-ms timer: the last request's inner hops may land after the
    # gateway's, so the reading is repeated until they are all there.
    pod_service = {p.name: p.service for p in bounded.pods()}
    started: dict[str, float] = {}
    segments: dict[str, int] = {}

    def read_every_hop() -> set[str]:
        entries = []
        for at in marks.values():
            with rotation_lock(at.path, exclusive=False):  # as every reader does: no rotation mid-reading
                entries += entries_of(appended_since(at))
        started.clear()
        segments.clear()
        for row in join(entries, pod_service):
            started[row["request_id"]] = row["time"]
            segments[row["request_id"]] = segments.get(row["request_id"], 0) + 1
        return {rid for rid, n in segments.items() if n == SDC_SEGMENTS}

    wait_for(lambda: last.request_id in read_every_hop(), timeout=5, what="every hop of the last request")
    whole = read_every_hop()
    # The busiest sidecar logs 2 lines per request, and its copies kept hold at least GENERATIONS × MAX_BYTES.
    assert len(whole) > GENERATIONS * MAX_BYTES / (2 * line_bytes) / 2, f"{len(whole)} whole requests"
    partial = [started[rid] for rid in segments if rid not in whole]
    assert max(partial, default=0.0) <= min(started[rid] for rid in whole) + 1.0, "a recent request lost a hop"

    # The report's cursor (made before the load) still reads only the file at access.log: it records requests of
    # the newest stretch only (right after a rotation, perhaps none) until it reads as appended_since does.
    time.sleep(SETTLE_SECONDS)  # record_hops takes requests that ended at least this long before it reads
    recorded = record_hops(cursor, bounded, tmp_path)
    assert recorded <= len(segments)
    assert set(load_hops(tmp_path)["request_id"]) <= set(segments)


def test_sampled_access_logs_keep_whole_requests(sampled: LocalBackend) -> None:
    pods = {p.name: p.service for p in sampled.pods()}
    with Client(sampled.ingress_url()) as ingress:
        replies = ingress.many(400, "/sampled", workers=4)
    sent = {r.request_id for r in replies}
    assert all(r.status == 200 for r in replies)
    time.sleep(SETTLE_SECONDS)

    def logged(service: str, direction: str) -> set[str]:
        return {
            str(e["request_id"])
            for pod, svc in pods.items()
            if svc == service
            for e in sampled.access_log(pod)
            if e.get("direction") == direction and e.get("request_id") in sent
        }

    at_gateway = wait_for(lambda: logged("istio-ingressgateway", "gateway"), timeout=5, what="gateway entries")
    low, high = binomial_interval(len(sent), 0.5)
    assert low <= len(at_gateway) <= high, f"{len(at_gateway)} of {len(sent)} requests logged at 50 %"
    # Every hop keeps the same requests (the x-request-id decides): the join still sees whole paths.
    for service, direction in (
        ("proxy-access-control", "inbound"),
        ("proxy-access-control", "outbound"),
        ("http-lb", "inbound"),
        ("clover-server", "inbound"),
    ):
        assert logged(service, direction) == at_gateway, (service, direction)
