"""The per-hop breakdown on real Envoy sidecars: an injected delay shows on the hop that absorbed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.faults import clear_faults, inject_fault
from pytest_clover.report.hops import SETTLE_SECONDS, AccessLogCursor, load_hops, record_hops
from tests.helpers import Client, Reply, wait_for

pytestmark = pytest.mark.integration

DELAYED = "proxy-access-control → http-lb"
SDC_SEGMENTS = {
    "ingress → proxy-access-control",
    "proxy-access-control",
    DELAYED,
    "http-lb",
    "http-lb → clover-server",
    "clover-server",
}


def _record(sdc: LocalBackend, cursor: AccessLogCursor, replies: list[Reply], path: Path) -> dict[str, float]:
    """hops.csv of the replies' requests; the median ms of each segment."""
    assert all(r.status == 200 for r in replies), [r.status for r in replies]
    # record_hops takes whole requests only (ended SETTLE_SECONDS before it reads; Envoys flush their logs every
    # 100 ms): it gets all of them once their entries are flushed, and never more. CI on a busy 2-core machine
    # once took more than 5 s for the last of them: the wait is generous, the count below stays exact.
    joined = [0]

    def all_joined() -> int | None:
        joined[0] = record_hops(cursor, sdc, path)
        return joined[0] if joined[0] >= len(replies) else None

    try:
        recorded = wait_for(all_joined, timeout=SETTLE_SECONDS + 20.0, what=f"the {len(replies)} requests in hops.csv")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {joined[0]} joined; {_where_logged(cursor, replies)}") from None
    assert recorded == len(replies)
    hops = load_hops(path)
    assert set(hops["request_id"]) == {r.request_id for r in replies}
    assert set(hops["segment"]) == SDC_SEGMENTS, "the walk left the critical path (or the IDS mirror got on it)"
    assert (hops.groupby("request_id").size() == len(SDC_SEGMENTS)).all()
    # µs durations are live: whole-ms differences would all be integers.
    assert (hops["ms"] % 1 != 0).any()
    return {str(k): float(v) for k, v in hops.groupby("segment")["ms"].median().items()}


def _where_logged(cursor: AccessLogCursor, replies: list[Reply]) -> str:
    """For a failure message: which pods logged each request that did not join (none: not logged at all)."""
    by_request: dict[str, list[str]] = {}
    for entry in cursor.read():
        by_request.setdefault(str(entry.get("request_id")), []).append(
            f"{entry.get('pod', '?')}:{entry.get('direction', '?')}:{entry.get('response_flags', '')}:"
            f"{entry.get('start_time', '?')}:{entry.get('upstream_request_attempt_count', '?')}"
        )
    gateway = cursor.count_gateway()
    lines = [f"{r.request_id}: {sorted(by_request.get(r.request_id, []))}" for r in replies]
    return f"{gateway} gateway lines since the cursor (since {cursor.since:.3f}); per request: " + "; ".join(lines)


def test_live_sidecars_log_the_microsecond_duration(sdc: LocalBackend, ingress: Client) -> None:
    cursor = AccessLogCursor(sdc)
    replies = ingress.many(30, "/us", workers=4)
    wanted = {r.request_id for r in replies}
    expected = 7 * len(replies)  # gateway, 3 × inbound, 2 × outbound, and the IDS copy

    def logged() -> list[dict[str, Any]] | None:
        found = [e for e in cursor.read() if e.get("request_id") in wanted]
        return found if len(found) >= expected else None

    # Each Envoy flushes its access log every 100 ms, the IDS copy travels on its own: wait until all are there.
    entries = wait_for(logged, timeout=5.0, what=f"{expected} access-log entries")
    assert {e["direction"] for e in entries} == {"gateway", "inbound", "outbound"}
    assert len(entries) == expected
    for e in entries:
        us = e.get("duration_us")
        assert isinstance(us, int), f"{e['pod']} {e['direction']} logged duration_us={us!r}"
        # About the span of %DURATION% (whole ms, truncated), which ends at stream completion rather than at
        # the last byte sent: measured, 0.3 % of entries end up to 0.6 ms before their truncated DURATION.
        assert e["duration"] - 1 < us / 1000 < e["duration"] + 1, e
    inside = sum(e["duration"] <= e["duration_us"] / 1000 < e["duration"] + 1 for e in entries)
    assert inside >= 0.9 * len(entries)


def test_a_delay_on_http_lb_shows_on_the_proxy_to_lb_hop_only(
    sdc: LocalBackend, ingress: Client, tmp_path: Path
) -> None:
    ingress.many(20, "/warm", workers=4)  # keep-alive connections on every hop
    cursor = AccessLogCursor(sdc)
    inject_fault(sdc, "http-lb", delay="300ms", percent=100)
    try:
        delayed = ingress.many(40, "/hops", workers=4)
    finally:
        clear_faults(sdc)
    medians = _record(sdc, cursor, delayed, tmp_path / "delayed.csv")
    assert 290 <= medians[DELAYED] <= 400, medians
    assert all(ms < 50 for segment, ms in medians.items() if segment != DELAYED), medians
    flags = set(load_hops(tmp_path / "delayed.csv")["flags"][lambda f: f != ""])
    assert flags == {"DI"}, "only the caller's outbound leg injected the delay"

    cursor = AccessLogCursor(sdc)
    clean = ingress.many(40, "/hops", workers=4)
    medians = _record(sdc, cursor, clean, tmp_path / "clean.csv")
    assert all(ms < 50 for ms in medians.values()), medians
