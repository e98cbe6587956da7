"""The per-hop breakdown (pytest_clover.report.hops): the join, the sampling, the cursor, the phases."""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.protocol import PodInfo
from pytest_clover.errors import MeshNotRunning
from pytest_clover.report.hops import (
    COLUMNS,
    AccessLogCursor,
    assign_phases,
    join,
    keeps,
    load_hops,
    record_hops,
    target_service,
)
from pytest_clover.report.sample import SEGMENTS as SAMPLE_SEGMENTS

GATEWAY = "istio-ingressgateway-5flm5wmzdz-ngq2c"
PROXY = "proxy-access-control-62mwl8hxzv-d9wfp"
LB = "http-lb-v1-78qkjgxlls-xcvjc"
LB2 = "http-lb-v2-wfmgzjjr9j-drrdk"
SERVER = "clover-server-vl2krrjbg9-xcxxq"
SERVER2 = "clover-server-vl2krrjbg9-xfk22"
IDS = "snort-ids-znxqs7dzc5-mrgwf"
PODS = {
    GATEWAY: "istio-ingressgateway",
    PROXY: "proxy-access-control",
    LB: "http-lb",
    LB2: "http-lb",
    SERVER: "clover-server",
    SERVER2: "clover-server",
    IDS: "snort-ids",
}
CLUSTER = {
    "proxy-access-control": "outbound|9180||proxy-access-control.default.svc.cluster.local",
    "http-lb": "outbound|9180|v1|http-lb.default.svc.cluster.local",
    "clover-server": "outbound|9180||clover-server.default.svc.cluster.local",
}
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
SDC_SEGMENTS = list(SAMPLE_SEGMENTS)


def stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def entry(
    pod: str,
    direction: str,
    us: int,
    *,
    with_us: bool = True,
    rid: str = "req-1",
    to: str | None = None,
    start: float = T0,
    flags: str = "-",
    code: int = 200,
    attempts: int = 1,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "pod": pod,
        "direction": direction,
        "start_time": stamp(start),
        "duration": us // 1000,  # Envoy truncates to whole ms
        "request_id": rid,
        "upstream_cluster": CLUSTER[to] if to else "inbound|9180||",
        "upstream_host": "127.0.0.9:9180",
        "response_code": code,
        "response_flags": flags,
        "upstream_request_attempt_count": attempts,
        "authority": "sdc.example:80",
    }
    if with_us:
        e["duration_us"] = us
    return e


def sdc_request(rid: str = "req-1", start: float = T0, *, us: bool = True, lb: str = LB) -> list[dict[str, Any]]:
    """One request through the SDC sample: gateway → proxy → lb → server, mirrored to the IDS."""
    return [
        entry(IDS, "inbound", 600, rid=rid, start=start, with_us=us),
        entry(SERVER, "inbound", 2500, rid=rid, start=start, with_us=us),
        entry(lb, "outbound", 4000, rid=rid, to="clover-server", start=start, with_us=us),
        entry(lb, "inbound", 6000, rid=rid, start=start, with_us=us),
        entry(PROXY, "outbound", 7500, rid=rid, to="http-lb", start=start, with_us=us),
        entry(PROXY, "inbound", 9000, rid=rid, start=start, with_us=us),
        entry(GATEWAY, "gateway", 10000, rid=rid, to="proxy-access-control", start=start, with_us=us),
    ]


def segments(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["segment"]: r["ms"] for r in rows}


# =========================================================================== join


def test_one_sdc_request_gives_exact_segments_that_add_up_to_the_gateway_duration() -> None:
    rows = join(sdc_request(), PODS)
    assert [r["segment"] for r in rows] == SDC_SEGMENTS
    assert [r["order"] for r in rows] == list(range(6))
    assert segments(rows) == {
        "ingress → proxy-access-control": 1.0,
        "proxy-access-control": 1.5,
        "proxy-access-control → http-lb": 1.5,
        "http-lb": 2.0,
        "http-lb → clover-server": 1.5,
        "clover-server": 2.5,
    }
    assert sum(r["ms"] for r in rows) == pytest.approx(10.0)
    assert {r["request_id"] for r in rows} == {"req-1"}
    assert {r["status"] for r in rows} == {200}
    assert [r["time"] for r in rows] == [pytest.approx(T0, abs=1e-3)] * 6
    assert set(rows[0]) == set(COLUMNS)


def test_the_mirrored_ids_copy_is_not_on_the_path() -> None:
    with_ids = join(sdc_request(), PODS)
    without = join([e for e in sdc_request() if e["pod"] != IDS], PODS)
    assert with_ids == without
    assert not any("snort-ids" in r["segment"] for r in with_ids)


def test_whole_millisecond_durations_are_the_fallback_and_negatives_clamp_to_zero() -> None:
    rows = join(sdc_request(us=False), PODS)
    # 10 − 9, 9 − 7, 7 − 6, 6 − 4, 4 − 2, 2 (Envoy truncated 7.5 → 7 and 2.5 → 2).
    assert [r["ms"] for r in rows] == [1.0, 2.0, 1.0, 2.0, 2.0, 2.0]
    entries = sdc_request(us=False)
    entries[1]["duration"] = 5  # server inbound 5 ms inside a 4 ms lb outbound: truncation
    assert segments(join(entries, PODS))["http-lb → clover-server"] == 0.0


def test_retries_sum_every_attempt_at_the_next_service() -> None:
    entries = [e for e in sdc_request() if e["pod"] not in (SERVER, LB)]
    entries += [
        entry(LB, "inbound", 25000),
        entry(LB, "outbound", 20000, to="clover-server", attempts=2, flags="URX"),
        entry(SERVER, "inbound", 3000, start=T0 + 0.001, code=503),
        entry(SERVER2, "inbound", 4000, start=T0 + 0.010),
    ]
    for e in entries:
        if e["pod"] == PROXY:
            e["duration_us"] = {"inbound": 29000, "outbound": 27000}[e["direction"]]
        if e["pod"] == GATEWAY:
            e["duration_us"] = 30000
    seg = segments(join(entries, PODS))
    assert seg["http-lb → clover-server"] == 13.0  # 20 − (3 + 4): the network, the sidecars and the first try
    assert seg["clover-server"] == 7.0
    assert seg["http-lb"] == 5.0
    assert next(r for r in join(entries, PODS) if r["segment"] == "http-lb → clover-server")["flags"] == "URX"


def test_delay_shows_on_the_callers_hop_with_its_flag() -> None:
    entries = sdc_request()
    for e in entries:
        if e["pod"] in (PROXY, GATEWAY):
            e["duration_us"] += 300_000
        if e["pod"] == PROXY and e["direction"] == "outbound":
            e["response_flags"] = "DI"
    rows = join(entries, PODS)
    hop = next(r for r in rows if r["segment"] == "proxy-access-control → http-lb")
    assert hop["ms"] == 301.5 and hop["flags"] == "DI"
    assert all(r["ms"] < 5 for r in rows if r is not hop)


def test_an_abort_ends_the_path_at_the_callers_hop() -> None:
    entries = [
        entry(PROXY, "inbound", 2000, code=503),
        entry(PROXY, "outbound", 300, to="http-lb", flags="FI", code=503),
        entry(GATEWAY, "gateway", 3000, to="proxy-access-control", code=503),
    ]
    rows = join(entries, PODS)
    assert [(r["segment"], r["ms"], r["flags"]) for r in rows] == [
        ("ingress → proxy-access-control", 1.0, ""),
        ("proxy-access-control", 1.7, ""),
        ("proxy-access-control → http-lb", 0.3, "FI"),
    ]
    assert {r["status"] for r in rows} == {503}


def test_a_killed_pod_is_mapped_by_its_deployment_prefix() -> None:
    killed = "clover-server-vl2krrjbg9-zzzzz"
    entries = sdc_request()
    for e in entries:
        if e["pod"] == SERVER:
            e["pod"] = killed
    assert segments(join(entries, PODS)) == segments(join(sdc_request(), PODS))
    # A pod of a Deployment nobody lists any more is ignored: the path ends at the caller's hop.
    for e in entries:
        if e["pod"] == killed:
            e["pod"] = "gone-away-abcdefghij-zzzzz"
    rows = join(entries, PODS)
    assert rows[-1]["segment"] == "http-lb → clover-server" and rows[-1]["ms"] == 4.0


def test_requests_without_one_gateway_entry_are_left_out() -> None:
    direct = [e for e in sdc_request("direct") if e["direction"] != "gateway"]
    reused = sdc_request("same") + sdc_request("same", start=T0 + 1)
    assert join(direct + reused, PODS) == []


def test_rows_come_by_gateway_time_and_bad_entries_are_skipped() -> None:
    entries = sdc_request("later", start=T0 + 2) + sdc_request("sooner", start=T0 + 1)
    entries += [{"pod": PROXY}, {"request_id": 7}, {"request_id": "x", "direction": "gateway", "start_time": "soon"}]
    rows = join(entries, PODS)
    assert [r["request_id"] for r in rows] == ["sooner"] * 6 + ["later"] * 6


@pytest.mark.parametrize(
    ("e", "service"),
    [
        ({"upstream_cluster": "outbound|9180|v1|http-lb.default.svc.cluster.local"}, "http-lb"),
        ({"upstream_cluster": "outbound|9180||clover-server.default.svc.cluster.local"}, "clover-server"),
        ({"upstream_cluster": None, "authority": "clover-server:9180"}, "clover-server"),
        ({"upstream_cluster": "inbound|9180||", "authority": "-"}, None),
        ({}, None),
    ],
)
def test_target_service(e: dict[str, Any], service: str | None) -> None:
    assert target_service(e) == service


# =========================================================================== cursor and sampling


class FakeBackend:
    """Pods and their access-log files in a temporary folder (what LocalBackend.log_path gives)."""

    name = "fake"

    def __init__(self, root: Path, pods: dict[str, str], files: bool = True) -> None:
        self.root = root
        self.listed = dict(pods)
        self.down = False
        if files:
            self.log_path = lambda pod, container="app": self.root / pod / f"{container}.log"

    def pods(self, service: str | None = None) -> list[PodInfo]:
        if self.down:
            raise MeshNotRunning("gone")
        return [
            PodInfo(
                name,
                svc,
                None if svc == "istio-ingressgateway" else name.rsplit("-", 2)[0],
                "v1",
                True,
                "Running",
                "127.0.0.1",
                0,
            )
            for name, svc in self.listed.items()
        ]

    def path(self, pod: str) -> Path:
        return self.root / pod / "access.log"

    def write(self, entries: list[dict[str, Any]], raw: str = "") -> None:
        by_pod: dict[str, list[str]] = {}
        for e in entries:  # as Envoy writes them: compact JSON, keys sorted
            by_pod.setdefault(e["pod"], []).append(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n")
        for pod, lines in by_pod.items():
            self.path(pod).parent.mkdir(parents=True, exist_ok=True)
            with self.path(pod).open("a", encoding="utf-8") as f:
                f.write("".join(lines))
        if raw:
            with self.path(GATEWAY).open("a", encoding="utf-8") as f:
                f.write(raw)

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        try:
            lines = self.path(pod).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


@pytest.fixture
def backend(tmp_path: Path) -> FakeBackend:
    return FakeBackend(tmp_path / "pods", PODS)


def ids(entries: list[dict[str, Any]]) -> set[str]:
    return {e["request_id"] for e in entries}


def test_cursor_reads_only_lines_appended_after_it(backend: FakeBackend) -> None:
    backend.write(sdc_request("before"))
    cursor = AccessLogCursor(backend)
    assert cursor.read() == [] and cursor.count_gateway() == 0
    backend.write(sdc_request("after-1") + sdc_request("after-2"))
    entries = cursor.read()
    assert ids(entries) == {"after-1", "after-2"} and len(entries) == 14
    assert cursor.count_gateway() == 2
    assert ids(cursor.read()) == {"after-1", "after-2"}  # reading again moves nothing


def test_cursor_follows_new_pods_from_their_start_and_killed_pods_to_their_end(backend: FakeBackend) -> None:
    backend.listed.pop(LB2)
    cursor = AccessLogCursor(backend)
    backend.listed[LB2] = "http-lb"  # a replacement, born after the cursor
    del backend.listed[SERVER]  # killed, no longer listed
    backend.write(sdc_request("r", lb=LB2))
    assert {e["pod"] for e in cursor.read()} == {GATEWAY, PROXY, LB2, SERVER, IDS}
    backend.down = True  # a mesh gone by report time: the files the cursor knows are still read
    assert len(cursor.read()) == 7


def test_a_partial_trailing_line_is_ignored_until_it_is_complete(backend: FakeBackend) -> None:
    cursor = AccessLogCursor(backend)
    backend.write(sdc_request("whole"))
    tail = json.dumps(entry(GATEWAY, "gateway", 1000, rid="torn", to="proxy-access-control"), separators=(",", ":"))
    backend.write([], raw='not json but has "request_id":"junk"\n' + tail[:40])
    assert ids(cursor.read()) == {"whole"}
    assert cursor.count_gateway() == 2  # the complete junk line counts; the torn one does not
    backend.write([], raw=tail[40:] + "\n")
    assert ids(cursor.read()) == {"whole", "torn"}


def test_a_truncated_log_is_read_from_its_start(backend: FakeBackend) -> None:
    backend.write(sdc_request("old") * 20)
    cursor = AccessLogCursor(backend)
    backend.path(GATEWAY).write_text("")
    backend.write([entry(GATEWAY, "gateway", 1000, rid="new", to="proxy-access-control")])
    assert ids(cursor.read()) == {"new"}


def test_sampling_keeps_whole_requests_in_every_file(backend: FakeBackend) -> None:
    cursor = AccessLogCursor(backend)
    all_ids = [f"{i:08x}-4b1e-4c3a-9f1d-{i * 7919:012x}" for i in range(800)]
    backend.write([e for i, rid in enumerate(all_ids) for e in sdc_request(rid, start=T0 + i / 100)])
    entries = cursor.read(sample_every=4)
    kept = {rid for rid in all_ids if zlib.crc32(rid.encode()) % 4 == 0}
    assert ids(entries) == kept and 150 < len(kept) < 250
    assert len(entries) == 7 * len(kept)  # every pod's entry of each kept request, none of the others
    assert all(keeps(rid, 4) for rid in kept)
    assert len(join(entries, PODS)) == 6 * len(kept)
    assert cursor.read(sample_every=4) == entries  # deterministic


def test_the_fallback_without_files_filters_by_start_time(tmp_path: Path) -> None:
    backend = FakeBackend(tmp_path / "pods", PODS, files=False)
    backend.write(sdc_request("old", start=time.time() - 60))
    cursor = AccessLogCursor(backend)
    backend.write(sdc_request("new", start=time.time() + 0.01))
    assert ids(cursor.read()) == {"new"}
    assert cursor.count_gateway() == 1


def test_misuse_is_a_clear_error(backend: FakeBackend, tmp_path: Path) -> None:
    cursor = AccessLogCursor(backend)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sample_every"):
            cursor.read(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_requests"):
        record_hops(cursor, backend, tmp_path, max_requests=0)
    with pytest.raises(TypeError, match="AccessLogCursor"):
        record_hops(object(), backend, tmp_path)  # type: ignore[arg-type]


# =========================================================================== record_hops / load_hops


def cursor_at(backend: FakeBackend, since: float = T0 - 1) -> AccessLogCursor:
    """A cursor as if made at ``since``: before the synthetic requests."""
    cursor = AccessLogCursor(backend)
    cursor.since = since
    return cursor


def test_record_hops_writes_hops_csv_and_load_hops_types_it(backend: FakeBackend, tmp_path: Path) -> None:
    cursor = cursor_at(backend)
    backend.write([e for i in range(30) for e in sdc_request(f"r{i:02d}", start=T0 + i)])
    backend.write([], raw="{garbage\n")
    out = tmp_path / "report"
    out.mkdir()
    assert record_hops(cursor, backend, out) == 30
    df = load_hops(out)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 180
    assert df["ms"].dtype == float and df["order"].dtype == int and df["status"].dtype == int
    medians = df.groupby("segment")["ms"].median().to_dict()
    assert medians == {
        "ingress → proxy-access-control": 1.0,
        "proxy-access-control": 1.5,
        "proxy-access-control → http-lb": 1.5,
        "http-lb": 2.0,
        "http-lb → clover-server": 1.5,
        "clover-server": 2.5,
    }
    assert df["time"].min() == pytest.approx(T0, abs=1e-3)
    assert (df["flags"] == "").all()


def test_record_hops_maps_pods_of_a_deployment_gone_since_the_cursor(backend: FakeBackend, tmp_path: Path) -> None:
    cursor = cursor_at(backend)
    del backend.listed[LB2]  # http-lb-v2 scaled to zero: no living pod shares the prefix any more
    backend.write(sdc_request("via-v2", lb=LB2))
    assert record_hops(cursor, backend, tmp_path / "h.csv") == 1
    assert list(load_hops(tmp_path / "h.csv")["segment"]) == SDC_SEGMENTS


def test_record_hops_bounds_the_requests_joined(backend: FakeBackend, tmp_path: Path) -> None:
    cursor = cursor_at(backend)
    backend.write([e for i in range(1000) for e in sdc_request(f"req-{i}", start=T0 + i / 100)])
    n = record_hops(cursor, backend, tmp_path / "hops.csv", max_requests=120)
    df = load_hops(tmp_path / "hops.csv")
    assert 60 <= n <= 120 and df["request_id"].nunique() == n
    assert all(keeps(rid, 9) for rid in df["request_id"].unique())  # ceil(1000 / 120) = 9


def test_record_hops_leaves_out_requests_that_just_ended(backend: FakeBackend, tmp_path: Path) -> None:
    cursor = cursor_at(backend, time.time() - 10)
    backend.write(sdc_request("settled", start=time.time() - 5) + sdc_request("just-now", start=time.time() - 0.05))
    assert record_hops(cursor, backend, tmp_path / "h.csv") == 1
    assert set(load_hops(tmp_path / "h.csv")["request_id"]) == {"settled"}
    assert record_hops(cursor, backend, tmp_path / "h.csv", settle=0) == 2


def test_record_hops_leaves_out_requests_that_entered_before_the_cursor(backend: FakeBackend, tmp_path: Path) -> None:
    # Envoy buffers its log for up to 100 ms: a request in flight when the cursor was made can have its inner
    # hops before the offsets and its gateway line after them. Joined, it would put everything on the ingress.
    cursor = cursor_at(backend, T0 + 1)
    early = [e for e in sdc_request("in-flight") if e["direction"] == "gateway"]
    backend.write(early + sdc_request("after", start=T0 + 2))
    assert ids(cursor.read()) == {"in-flight", "after"}
    assert record_hops(cursor, backend, tmp_path / "h.csv") == 1
    assert set(load_hops(tmp_path / "h.csv")["request_id"]) == {"after"}


def test_a_request_sent_the_moment_the_cursor_exists_is_counted(backend: FakeBackend, tmp_path: Path) -> None:
    # Envoy's start times are whole milliseconds: a request entering in the millisecond the cursor was made must
    # not fall "before" it (1 batch in 15 lost a request that way).
    cursor = AccessLogCursor(backend)
    sent = time.time()
    assert cursor.since <= sent and round(cursor.since * 1000) / 1000 == cursor.since
    backend.write(sdc_request("at-once", start=sent))  # logged with its start truncated to the millisecond
    assert record_hops(cursor, backend, tmp_path / "h.csv", settle=-1.0) == 1


def test_no_traffic_writes_a_header_only_csv(backend: FakeBackend, tmp_path: Path) -> None:
    assert record_hops(AccessLogCursor(backend), backend, tmp_path / "h.csv") == 0
    assert (tmp_path / "h.csv").read_text() == ",".join(COLUMNS) + "\n"
    assert load_hops(tmp_path / "h.csv").empty


# =========================================================================== phases


def test_assign_phases_by_gateway_time() -> None:
    import pandas

    df = pandas.DataFrame({"time": [99.0, 100.0, 105.0, 110.0, 115.0, 130.0, 200.0], "ms": range(7)})
    events = [
        {"time": 100.0, "kind": "phase-start", "name": "baseline"},
        {"time": 101.0, "kind": "fault-start", "name": "delay 300ms on http-lb"},
        {"time": 110.0, "kind": "phase-end", "name": "baseline"},
        {"time": 110.0, "kind": "phase-start", "name": "fault"},
        {"time": 120.0, "kind": "phase-end", "name": "fault"},
        {"time": 125.0, "kind": "phase-start", "name": "recovery"},  # never ended
    ]
    out = assign_phases(df, events)
    assert list(out["phase"]) == [None, "baseline", "baseline", "fault", "fault", "recovery", "recovery"]
    assert "phase" not in df.columns  # a copy
    assert list(assign_phases(df, [])["phase"]) == [None] * 7
    with pytest.raises(ValueError, match="time"):
        assign_phases(df, [{"kind": "phase-start", "name": "x"}])
    with pytest.raises(ValueError, match="'time' column"):
        assign_phases(pandas.DataFrame({"t": [1.0]}), events)
