"""A soak test's report: soak.json read back, the numbers its page shows, the night's plot, and the built report."""

from __future__ import annotations

import html
import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from pytest_clover.errors import ReportDataError
from pytest_clover.report import plots
from pytest_clover.report.build import build_report
from pytest_clover.report.layout import folder_for_test
from pytest_clover.report.sample import SampleSoak, write_sample_run
from pytest_clover.report.soak import (
    SoakData,
    SoakEvent,
    clock,
    downsample,
    errors_by_kind,
    guardrail_line,
    quantile,
    read_soak,
    slo_during,
    soak_summary,
    table_order,
    ttr_by_kind,
    verdict_counts,
)

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "pytest_clover" / "report" / "summary.schema.json").read_text()
)
RUN_ID = "20261121-120000-1"
STARTED = 1_796_000_000.0


def _write(folder: Path, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return folder


def _event(
    event_id: str,
    kind: str = "kill",
    verdict: str = "passed",
    recovery_s: float | None = 1.0,
    *,
    at: float = 0.0,
    checks: tuple[dict[str, Any], ...] = (),
    requests: int = 100,
    errors: int = 0,
    reason: str = "",
) -> SoakEvent:
    started = None if verdict == "not-run" else STARTED + at
    return SoakEvent(
        id=event_id,
        kind=kind,
        target="clover-server",
        description=f"{kind} on clover-server",
        planned_at_s=at,
        duration_s=0.0,
        start=started,
        end=started,
        verified=True,
        verdict=verdict,
        checks=checks,
        recovery_s=recovery_s,
        requests=requests,
        errors=errors,
        reason=reason,
    )


def _check(metric: str, threshold: float, observed: float, ok: bool) -> dict[str, Any]:
    return {"phase": "f01", "metric": metric, "threshold": threshold, "observed": observed, "ok": ok}


# --------------------------------------------------------------------------- read_soak


def test_a_folder_without_soak_json_is_not_a_soak(tmp_path: Path) -> None:
    assert read_soak(tmp_path) is None


def test_missing_keys_read_as_not_known(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        {"v": 1, "started": STARTED, "events": [{"id": "f01", "start": STARTED + 5}, {"kind": "delay"}]},
    )

    data = read_soak(folder)

    assert data is not None
    assert (data.state, data.plan, data.seed, data.trip, data.burn_down, data.schedule) == (
        "running",
        "",
        None,
        None,
        (),
        (),
    )
    first, second = data.events
    assert (first.id, first.kind, first.verdict, first.at_s(data.started), first.checks) == (
        "f01",
        "fault",
        "pending",
        5.0,
        (),
    )
    # No start and no planned time: last, named by its place in the file, still being judged in a running soak.
    assert (second.id, second.kind, second.verdict, second.at_s(data.started)) == ("#2", "delay", "pending", None)


def test_an_event_that_never_started_in_an_ended_soak_did_not_run(tmp_path: Path) -> None:
    folder = _write(tmp_path, {"v": 1, "state": "stopped", "events": [{"id": "f09", "planned_at_s": 900}]})
    data = read_soak(folder)
    assert data is not None and data.events[0].verdict == "not-run"


def test_values_of_the_wrong_type_are_not_known_and_the_trip_comes_from_the_state_if_need_be(tmp_path: Path) -> None:
    trip = {"guardrail": "p99_ms", "at": STARTED + 60, "reason": "p99 over 1 s for 30 windows\nmore", "numbers": {}}
    folder = _write(
        tmp_path,
        {
            "v": 1,
            "seed": True,
            "rate": "500",
            "started": STARTED,
            "events": [{"id": "f01", "requests": "many", "errors": -3, "recovery_s": "1 s", "verified": "yes"}],
            "guardrails": {"state": {"tripped": trip}, "burn_down": [[STARTED, 1.0], ["x", 0.5], [STARTED + 2, 0.9]]},
        },
    )

    data = read_soak(folder)

    assert data is not None
    assert (data.seed, data.rate) == (None, None)
    event = data.events[0]
    assert (event.requests, event.errors, event.recovery_s, event.verified) == (0, 0, None, None)
    assert data.trip is not None and data.trip.guardrail == "p99_ms"
    assert data.trip.reason == "p99 over 1 s for 30 windows"  # one line
    assert data.burn_down == ((STARTED, 1.0), (STARTED + 2, 0.9))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"v": 1, "events": [', r"not readable JSON.*restore it"),
        ("[1, 2]", r"expected a JSON object, found a list"),
        ({"v": 2}, r"v is 2, but this pytest-clover reads soak.json version 1; build the report with"),
        ({"v": 1, "events": {"f01": {}}}, r"events must be a list, found an object"),
        ({"v": 1, "events": [{}, "f02"]}, r"events\[1\] must be an object, found a string"),
        ({"v": 1, "events": [{"checks": [3]}]}, r"events\[0\]\.checks\[0\] must be an object"),
        ({"v": 1, "guardrails": {"state": []}}, r"guardrails\.state must be an object, found a list"),
        ({"v": 1, "guardrails": {"burn_down": {}}}, r"guardrails\.burn_down must be a list"),
    ],
)
def test_a_soak_json_that_cannot_be_read_names_the_file_the_field_and_what_to_do(
    tmp_path: Path, content: Any, expected: str
) -> None:
    folder = _write(tmp_path, content)
    with pytest.raises(ReportDataError, match=expected) as caught:
        read_soak(folder)
    assert str(caught.value).startswith(str(folder / "soak.json"))


def test_a_broken_soak_json_stops_the_report_with_its_name(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=1, seconds=(3.0, 2.0, 3.0))
    folder = next(p for p in run.iterdir() if p.is_dir())
    _write(folder, "{")
    with pytest.raises(ReportDataError, match=re.escape(str(folder / "soak.json"))):
        build_report(run, jobs=1)


# --------------------------------------------------------------------------- computations


def test_times_to_recover_per_kind_count_only_judged_events() -> None:
    events = [
        _event("f01", "kill", "passed", 10.0),
        _event("f02", "kill", "failed", None),  # judged, never recovered
        _event("f03", "kill", "passed", 1.0),
        _event("f04", "kill", "inconclusive", 3.0),
        _event("f05", "kill", "failed", 2.0),
        _event("f06", "kill", "pending", None),  # not judged yet: not a "never"
        _event("f07", "delay", "passed", 0.5),
        _event("f08", "delay", "not-run", None),
        _event("f09", "abort", "pending", None),
    ]

    ttr = ttr_by_kind(events)

    assert list(ttr) == ["kill", "delay"]
    kill = ttr["kill"]
    assert (kill.values, kill.n, kill.never) == ((1.0, 2.0, 3.0, 10.0), 4, 1)
    # Linear interpolation between ranks: median of 1, 2, 3, 10 = 2.5; p90 at rank 2.7 = 3 + 0.7 × 7 = 7.9.
    assert kill.as_dict() == {"n": 4, "never": 1, "median": 2.5, "p90": 7.9, "max": 10.0}
    assert ttr["delay"].as_dict() == {"n": 1, "never": 0, "median": 0.5, "p90": 0.5, "max": 0.5}


def test_quantiles_interpolate_between_ranks_and_refuse_nonsense() -> None:
    assert quantile([5.0], 0.9) == 5.0
    assert quantile([0.0, 10.0], 0.25) == 2.5
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_a_kind_none_of_whose_events_recovered_has_no_figures() -> None:
    stats = ttr_by_kind([_event("f01", "scale", "failed", None)])["scale"]
    assert stats.as_dict() == {"n": 0, "never": 1, "median": None, "p90": None, "max": None}


def test_counts_by_verdict_add_up_to_the_total() -> None:
    events = [
        _event("a"),
        _event("b", verdict="failed"),
        _event("c", verdict="skipped"),
        _event("d", verdict="not-run"),
    ]
    assert verdict_counts(events) == {
        "total": 4,
        "passed": 1,
        "failed": 1,
        "inconclusive": 0,
        "not-run": 1,
        "pending": 0,
        "other": 1,
    }


def test_errors_per_kind_sum_the_events_that_started() -> None:
    events = [
        _event("a", "abort", requests=1000, errors=50),
        _event("b", "abort", requests=3000, errors=30),
        _event("c", "kill", requests=0, errors=0),
        _event("d", "kill", "not-run", requests=500, errors=500),
    ]
    assert errors_by_kind(events) == {
        "abort": {"events": 2, "requests": 4000, "errors": 80, "error_rate": 0.02},
        "kill": {"events": 1, "requests": 0, "errors": 0, "error_rate": None},
    }
    assert events[0].error_rate == 0.05 and events[2].error_rate is None


def test_the_table_shows_the_first_failed_check_else_the_p99_one() -> None:
    p99 = _check("p99_ms", 750.0, 612.0, True)
    errors_ok = _check("max_error_rate", 0.01, 0.0, True)
    errors_bad = _check("max_error_rate", 0.01, 0.2, False)
    assert slo_during(_event("a", checks=(errors_ok, p99))) is p99
    assert slo_during(_event("b", checks=(p99, errors_bad))) is errors_bad
    assert slo_during(_event("c", checks=(errors_ok,))) is errors_ok
    assert slo_during(_event("d")) is None


def test_many_events_list_the_ones_that_did_not_pass_first_and_fold_the_passed() -> None:
    verdicts = ["passed"] * 55 + ["failed", "inconclusive", "pending", "passed", "failed", "not-run"]
    events = [_event(f"f{i:02d}", verdict=v, at=float(i)) for i, v in enumerate(verdicts)]

    few, none_folded = table_order(events[:60], fold_over=60)
    shown, folded = table_order(events, fold_over=60)

    assert few == events[:60] and none_folded == []
    assert [(e.id, e.verdict) for e in shown] == [
        ("f55", "failed"),
        ("f59", "failed"),
        ("f56", "inconclusive"),
        ("f57", "pending"),
        ("f60", "not-run"),
    ]
    assert [e.id for e in folded] == [f"f{i:02d}" for i in [*range(55), 58]]


def test_clock_and_the_guardrail_line_count_from_the_soak_start(tmp_path: Path) -> None:
    assert [clock(0.0), clock(3725.4), clock(-3.0), clock(None), clock(math.nan)] == [
        "0:00:00",
        "1:02:05",
        "-0:00:03",
        "—",
        "—",
    ]
    trip = {"guardrail": "burn_rate", "at": STARTED + 3000.0, "reason": "burn 20× > 14.4× over 1h and 5m"}
    data = read_soak(_write(tmp_path, {"v": 1, "started": STARTED, "guardrails": {"trip": trip}}))
    assert data is not None
    assert guardrail_line(data) == "burn_rate tripped at 0:50:00 into the soak: burn 20× > 14.4× over 1h and 5m"
    assert guardrail_line(SoakData(path=tmp_path)) is None


def test_the_summary_lists_at_most_50_failures_failed_first() -> None:
    events = [_event(f"i{i}", verdict="inconclusive", at=i, reason="not seen") for i in range(10)]
    events += [_event(f"f{i}", verdict="failed", at=100 + i, reason=f"why {i}") for i in range(60)]
    data = SoakData(path=Path("soak.json"), started=STARTED, events=tuple(events), state="finished")

    block = soak_summary(data)

    assert len(block["failures"]) == 50 and block["failures_omitted"] == 20
    assert [f["id"] for f in block["failures"]] == [f"f{i}" for i in range(50)]
    assert block["failures"][0] == {
        "id": "f0",
        "verdict": "failed",
        "kind": "kill",
        "target": "clover-server",
        "at_s": 100.0,
        "reason": "why 0",
    }
    assert block["events"]["failed"] == 60 and block["guardrail"] is None


# --------------------------------------------------------------------------- downsampling and the plot


def _windows(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        requests = rng.randint(0, 600)
        rows.append(
            {
                "start": STARTED + i,
                "end": STARTED + i + 1,
                "requests": requests,
                "errors": rng.randint(0, requests // 10) if requests else 0,
                "p99_ms": (rng.lognormvariate(2.5, 1.0) if rng.random() > 0.001 else 9000.0) if requests else None,
            }
        )
    return rows


def test_downsampling_keeps_each_buckets_worst_p99_and_its_error_rate() -> None:
    rows = _windows(10_007)
    shuffled = rows[::-1]  # out of order on purpose: buckets follow time

    buckets = downsample(shuffled, max_buckets=100)

    k = math.ceil(len(rows) / 100)
    assert buckets.per_bucket == k and len(buckets.start) == math.ceil(len(rows) / k) <= 100
    for b in range(len(buckets.start)):
        mine = rows[b * k : (b + 1) * k]
        p99 = [w["p99_ms"] for w in mine if w["p99_ms"] is not None]
        assert buckets.p99_ms[b] == max(p99)
        requests = sum(w["requests"] for w in mine)
        assert buckets.requests[b] == requests
        assert buckets.error_rate[b] == pytest.approx(sum(w["errors"] for w in mine) / requests)
        assert (buckets.start[b], buckets.end[b]) == (mine[0]["start"], mine[-1]["end"])
    assert float(np.nanmax(buckets.p99_ms)) == max(w["p99_ms"] for w in rows if w["p99_ms"] is not None)


def test_downsampling_few_windows_keeps_them_and_an_empty_bucket_has_no_rate() -> None:
    rows = [{"start": STARTED, "end": STARTED + 1, "requests": 0, "errors": 0, "p99_ms": None}, *_windows(3)[1:]]
    buckets = downsample(rows, max_buckets=1500)
    assert buckets.per_bucket == 1 and len(buckets.start) == 3
    assert math.isnan(buckets.p99_ms[0]) and math.isnan(buckets.error_rate[0])
    assert len(downsample([], 10).start) == 0
    with pytest.raises(ValueError):
        downsample(rows, max_buckets=0)


def _night(events: int, seconds: int, *, state: str = "finished") -> SoakData:
    verdicts = ("passed", "passed", "passed", "failed", "inconclusive")
    spacing = seconds / events
    kinds = ("kill", "delay", "abort")
    evs = tuple(
        _event(f"f{i + 1:03d}", kinds[i % 3], verdicts[i % 5], None if i % 7 == 0 else 1.0 + i % 4, at=i * spacing)
        for i in range(events)
    )
    trip = {"guardrail": "error_budget", "at": STARTED + seconds * 0.9, "reason": "budget spent", "numbers": {}}
    return SoakData(
        path=Path("soak.json"),
        title="nightly",
        started=STARTED,
        duration_s=float(seconds),
        elapsed_s=float(seconds),
        state=state,
        slo={"p99_ms": 250.0, "max_error_rate": 0.01},
        recovery_within_s=30.0,
        events=evs,
        quiet_windows=((14400.0, 15300.0),),
        trip=read_trip(trip),
        burn_down=tuple((STARTED + t, 1.0 - t / seconds * 1.2) for t in range(0, seconds, max(1, seconds // 1999))),
    )


def read_trip(raw: dict[str, Any]) -> Any:
    from pytest_clover.report.soak import GuardrailTrip

    return GuardrailTrip(raw["guardrail"], raw["at"], raw["reason"], raw["numbers"])


def test_the_night_plot_of_8_hours_and_200_events_is_bounded_and_shows_every_event() -> None:
    night = _night(200, 28_800)
    windows = _windows(28_800)

    started = time.monotonic()
    fig = plots.soak_overview(night, windows, "suites/test_soak.py::test_nightly")
    png = plots.to_png_bytes(fig)
    took = time.monotonic() - started

    assert took < 6.0, f"the night's plot took {took:.1f} s"  # ~0.7 s alone on this machine
    assert png.startswith(b"\x89PNG") and len(png) < 600_000
    assert fig.clover_x_unit == "h"
    (p99,) = [line for ax in fig.axes for line in ax.lines if line.get_gid() == "soak:p99"]
    assert len(np.asarray(p99.get_xdata())) <= 2 * 1500 + 2  # the buckets' steps, not 28 800 windows
    assert float(np.nanmax(p99.get_ydata())) == max(w["p99_ms"] for w in windows if w["p99_ms"] is not None)
    events = [s for s in fig.clover_spans if s["kind"] == "event"]
    assert [s["id"] for s in events] == [e.id for e in night.events]
    markers = [line for ax in fig.axes for line in ax.lines if str(line.get_gid()).startswith("soak:markers:")]
    assert sum(len(np.asarray(m.get_xdata())) for m in markers) == 200
    # One collection per verdict per panel, however many events: the cost does not grow with them.
    spans = [c for ax in fig.axes for c in ax.collections if str(c.get_gid()).startswith("soak:events:")]
    assert len(spans) == 3 * 3
    trips = [line for ax in fig.axes for line in ax.lines if line.get_gid() == "soak:trip"]
    assert len(trips) == 3 and all(
        np.asarray(line.get_xdata())[0] == pytest.approx(28_800 * 0.9 / 3600) for line in trips
    )
    assert any(line.get_gid() == "soak:allowance" for ax in fig.axes for line in ax.lines)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "f001" not in texts  # 200 ids would overlap: not labelled
    assert any("guardrail error_budget" in t for t in texts)


def test_a_few_events_are_labelled_by_id_and_a_night_without_windows_still_draws() -> None:
    night = _night(6, 3600, state="running")
    fig = plots.soak_overview(night, [], "t")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {e.id for e in night.events} <= set(texts)
    assert "no load windows recorded yet" in texts and "checkpoint" in " ".join(texts)
    plots.to_png_bytes(fig)


# --------------------------------------------------------------------------- the built report


def _soak_folder(run: Path) -> Path:
    return run / folder_for_test(SampleSoak().nodeid)


def test_a_stopped_soak_of_200_events_builds_with_every_failure_and_the_guardrail(tmp_path: Path) -> None:
    spec = SampleSoak(seconds=3600.0, events=200, rate=50.0, state="stopped", trip_at_s=3300.0, seed=3)
    run = write_sample_run(tmp_path / RUN_ID, tests=0, soak=spec)

    built = build_report(run, jobs=1)

    assert built.problems == []
    jsonschema.validate(built.summary, SCHEMA)
    (test,) = built.summary["tests"]
    assert test["files"]["soak"] == f"{_soak_folder(run).name}/soak.png" and (run / test["files"]["soak"]).is_file()
    soak = json.loads((_soak_folder(run) / "soak.json").read_text())
    failed = [e for e in soak["events"] if e["verdict"] == "failed"]
    assert failed and len(soak["events"]) == 200
    block = test["soak"]
    assert block["events"]["failed"] == len(failed) and block["events"]["total"] == 200
    assert block["guardrail"]["guardrail"] == "burn_rate" and block["guardrail"]["at_s"] == pytest.approx(3300.0)
    page = (run / "index.html").read_text(encoding="utf-8")
    for event in failed:
        assert f"<code>{event['id']}</code>" in page
        assert html.escape(event["reason"]) in page
    assert html.escape(soak["guardrails"]["trip"]["reason"]) in page
    assert "stopped the soak 0:55:00 into it" in page
    assert "<details><summary>" in page  # over 60 events: the passed ones folded
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert len(text) < 150_000, f"the page without its plots is {len(text)} bytes"
    assert len(page) < 1_500_000


def test_a_checkpoint_of_a_running_soak_builds_partial_with_its_pending_event(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=0, soak=SampleSoak(seconds=1800.0, events=12, state="running"))

    built = build_report(run, jobs=1)

    assert built.problems == []
    jsonschema.validate(built.summary, SCHEMA)
    assert built.summary["run"]["partial"] is True
    (test,) = built.summary["tests"]
    soak = json.loads((_soak_folder(run) / "soak.json").read_text())
    pending = [e["id"] for e in soak["events"] if e["verdict"] == "pending"]
    assert len(pending) == 1
    assert test["soak"]["state"] == "running" and test["soak"]["events"]["pending"] == 1
    assert test["soak"]["scheduled"] == 12 > test["soak"]["events"]["total"]
    page = (run / "index.html").read_text(encoding="utf-8")
    row = re.search(rf"<tr><td><code>{pending[0]}</code></td>.*?</tr>", page)
    assert row is not None and "PENDING" in row.group(0)
    assert "Partial report." in page and (run / test["files"]["soak"]).is_file()


def test_other_tests_have_no_soak_block(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=1, seconds=(3.0, 2.0, 3.0))
    built = build_report(run, jobs=1)
    assert "soak" not in built.summary["tests"][0] and "soak" not in built.summary["tests"][0]["files"]
    assert '<div class="soak">' not in (run / "index.html").read_text(encoding="utf-8")
