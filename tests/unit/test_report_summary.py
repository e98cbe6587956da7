"""summary.json from a run folder, the resilience score, history records and --clover-compare checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_clover.errors import NoReferenceRun, ReportDataError
from pytest_clover.report import history
from pytest_clover.report.sample import write_sample_run
from pytest_clover.report.summary import (
    build_summary,
    load_run,
    resilience_score,
    score_fraction,
)

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "pytest_clover" / "report" / "summary.schema.json").read_text()
)


def _run(tmp_path: Path, **kwargs: Any) -> Path:
    return write_sample_run(tmp_path / "20261121-120000-1", **kwargs)


def _rewrite(folder: Path, **changes: Any) -> None:
    record = json.loads((folder / "test.json").read_text())
    record.update(changes)
    (folder / "test.json").write_text(json.dumps(record))


def test_summary_follows_the_published_schema_and_lists_the_worst_tests_first(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=3, verdicts=["passed", "failed", "error"])
    summary = build_summary(load_run(run))
    jsonschema.validate(summary, SCHEMA)
    assert [t["outcome"] for t in summary["tests"]] == ["failed", "error", "passed"]
    assert summary["totals"] == {
        "tests": 3,
        "failed": 1,
        "error": 1,
        "inconclusive": 0,
        "interrupted": 0,
        "passed": 1,
        "skipped": 0,
    }
    assert summary["run"]["partial"] is False
    assert summary["run"]["replay"].endswith("--clover-seed=0 --clover-time-scale=1")


def test_phases_and_faults_are_measured_from_the_load_start(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=1, seconds=(20.0, 10.0, 20.0))
    test = build_summary(load_run(run))["tests"][0]
    assert list(test["phases"]) == ["baseline", "fault", "recovery"]
    assert test["phases"]["fault"]["start_s"] == pytest.approx(20.0)
    assert test["phases"]["fault"]["end_s"] == pytest.approx(30.0)
    (fault,) = test["faults"]
    assert fault["kind"] == "delay" and fault["target"] == "http-lb" and fault["verified"] is True
    # The fault interval is the fault's own start and end events, not the phase it sits in.
    assert fault["start_s"] == pytest.approx(20.05) and fault["end_s"] == pytest.approx(30.0)
    assert test["phases"]["fault"]["p99_ms"] > 500  # half the requests got the 500 ms delay
    assert test["phases"]["baseline"]["p99_ms"] < 50


def test_score_is_the_weighted_share_of_checks_met(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=3, verdicts=["passed", "passed", "error"])
    folders = sorted(p for p in run.iterdir() if p.is_dir())
    slo = json.loads((folders[1] / "test.json").read_text())["slo"]
    slo[0]["ok"] = False  # 1 of 2 objectives met
    _rewrite(folders[1], slo=slo, verdict="failed")
    _rewrite(folders[2], weight=2.0)
    data = load_run(run)
    fractions = {t.folder.name: score_fraction(t) for t in data.tests}
    assert fractions[folders[0].name] == 1.0
    assert fractions[folders[1].name] == 0.5
    assert fractions[folders[2].name] == 0.0  # an error counts nothing
    score, counted = resilience_score(data.tests)
    assert counted == 3
    assert score == pytest.approx(100 * (1.0 + 0.5 + 2 * 0.0) / 4, abs=0.05)


def test_a_test_that_failed_on_its_own_assertion_loses_a_check(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=1, verdicts=["failed"])
    (test,) = load_run(run).tests
    assert all(c["ok"] for c in test.record["slo"])
    assert score_fraction(test) == pytest.approx(2 / 3)


def test_skipped_and_interrupted_tests_are_left_out_of_the_score(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=2, verdicts=["skipped", "interrupted"])
    data = load_run(run)
    assert resilience_score(data.tests) == (None, 0)
    summary = build_summary(data)
    assert summary["score"]["value"] is None
    assert summary["run"]["partial"] is True and "interrupted" in summary["run"]["partial_reason"]


def test_a_run_that_never_finished_is_partial_and_keeps_what_completed(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=2, finished=False)
    summary = build_summary(load_run(run))
    jsonschema.validate(summary, SCHEMA)
    assert summary["run"]["partial"] is True
    assert "did not finish" in summary["run"]["partial_reason"]
    assert summary["totals"]["passed"] == 2


def test_a_test_folder_without_test_json_counts_as_interrupted(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=2)
    folder = sorted(p for p in run.iterdir() if p.is_dir())[0]
    (folder / "test.json").unlink()
    summary = build_summary(load_run(run))
    outcomes = sorted(t["outcome"] for t in summary["tests"])
    assert outcomes == ["interrupted", "passed"]


def test_bad_run_folders_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportDataError, match="no such run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportDataError, match=r"run\.json: missing"):
        load_run(tmp_path / "empty")
    run = _run(tmp_path, tests=1)
    folder = next(p for p in run.iterdir() if p.is_dir())
    (folder / "result.json").write_text("{not json")
    with pytest.raises(ReportDataError, match=rf"{folder.name}/result\.json: not readable JSON"):
        load_run(run)


# --------------------------------------------------------------------------- history and comparison


def test_history_records_one_line_per_scored_test_and_reads_back(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=3, verdicts=["passed", "failed", "skipped"])
    summary = build_summary(load_run(run))
    records = history.records_for(summary)
    assert len(records) == 2  # the skipped test has nothing to compare
    history.append(tmp_path, records)
    history.append(tmp_path, records)
    back, warnings = history.read(tmp_path)
    assert warnings == []
    assert len(back) == 4
    assert back[0]["p99_ms"]["fault"] == summary["tests"][0]["phases"]["fault"]["p99_ms"]


def test_a_broken_history_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text('{"v": 1, "run_id": "a", "nodeid": "t", "p99_ms": {}}\n{broken\n')
    records, warnings = history.read(tmp_path)
    assert len(records) == 1
    assert len(warnings) == 1 and "history.jsonl:2: not JSON" in warnings[0]


def test_a_binary_history_is_skipped_line_by_line_with_warnings_naming_the_file(tmp_path: Path) -> None:
    # Was: UnicodeDecodeError for the whole file (`clover report trend`), an INTERNALERROR for --clover-compare.
    good = {"v": 1, "run_id": "a", "nodeid": "t", "p99_ms": {"fault": 1.0}}
    lines = [
        json.dumps(good).encode(),
        b"\x00\xff\xfe binary",
        b'{"v": 1, "nodeid": "no run id"}',
        b'{"v": 1, "run_id": "b", "nodeid": "t", "p99_ms": [1, 2]}',
        b'{"v": 1, "run_id": 7, "nodeid": "t"}',
        b"[" * 100_000,
        json.dumps({**good, "nodeid": "caf\u00e9 \u2028"}, ensure_ascii=False).encode(),
    ]
    (tmp_path / "history.jsonl").write_bytes(b"\r\n".join(lines) + b"\n")
    records, warnings = history.read(tmp_path)
    assert [r["nodeid"] for r in records] == ["t", "caf\u00e9 \u2028"]
    path = tmp_path / "history.jsonl"
    assert warnings == [
        f"{path}:2: not UTF-8 text, skipped",
        f"{path}:3: not a version-1 record, skipped",
        f"{path}:4: not a version-1 record, skipped",
        f"{path}:5: not a version-1 record, skipped",
        f"{path}:6: not JSON, skipped",
    ]


def test_a_history_that_cannot_be_read_at_all_is_a_report_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").mkdir()
    with pytest.raises(ReportDataError, match=r"history\.jsonl: cannot read the run history: Is a directory"):
        history.read(tmp_path)


def test_the_reference_run_is_the_last_other_run_or_the_one_named() -> None:
    records = [{"run_id": r, "nodeid": "t"} for r in ("r1", "r2", "r3")]
    assert history.reference_run(records, "last", current_run_id="r3") == "r2"
    assert history.reference_run(records, "r1", current_run_id="r3") == "r1"
    with pytest.raises(NoReferenceRun, match="no such run in the history"):
        history.reference_run(records, "r9", current_run_id="r3")
    with pytest.raises(NoReferenceRun, match="no earlier run"):
        history.reference_run(records[:1], "last", current_run_id="r1")


REFERENCE = {
    "run_id": "r1",
    "p99_ms": {"baseline": 10.0, "fault": 500.0},
    "error_rate": {"baseline": 0.0, "fault": 0.02},
    "recovery_s": {"fault": 2.0},
}


@pytest.mark.parametrize(
    ("current", "regressed"),
    [
        ({"p99_ms": {"baseline": 14.9, "fault": 620.0}}, []),  # +4.9 ms is under the 5 ms floor; +24 %
        ({"p99_ms": {"baseline": 10.0, "fault": 630.0}}, [("p99_ms", "fault")]),  # +26 %
        ({"error_rate": {"baseline": 0.011, "fault": 0.02}}, [("error_rate", "baseline")]),  # +1.1 points
        ({"error_rate": {"baseline": 0.009, "fault": 0.029}}, []),
        ({"recovery_s": {"fault": 3.0}}, []),  # +1 s: 50 % of 2 s
        ({"recovery_s": {"fault": 3.2}}, [("recovery_s", "fault")]),
        ({"recovery_s": {"fault": None}}, [("recovery_s", "fault")]),  # never recovers now
    ],
)
def test_compare_flags_only_rises_past_the_thresholds(
    current: dict[str, Any], regressed: list[tuple[str, str]]
) -> None:
    checks = history.compare(current, REFERENCE, history.Thresholds())
    assert [(c["metric"], c["phase"]) for c in checks if not c["ok"]] == regressed
    assert all(c["run_id"] == "r1" for c in checks)


def test_the_regression_message_has_both_numbers_and_the_limit() -> None:
    checks = history.compare({"p99_ms": {"fault": 803.0}}, REFERENCE, history.Thresholds())
    message = history.regression_message(checks, "r1")
    assert "regressed against run r1 (1 metric; --clover-compare)" in message
    assert "500.0 ms" in message and "803.0 ms" in message and "625.0 ms" in message


def test_a_clear_ends_the_open_faults_and_a_new_shift_replaces_the_last(tmp_path: Path) -> None:
    """Chaos Toolkit's clear_faults and successive shifts, as the extension records them (no ids)."""
    import pandas

    from pytest_clover.report import plots
    from pytest_clover.report.summary import SavedTest, fault_events

    t0 = 1_795_270_500.0
    events = [
        {
            "time": t0 + 1,
            "kind": "fault-start",
            "name": "shift http-lb to v1 90/v2 10",
            "fault": "shift",
            "target": "http-lb",
        },
        {
            "time": t0 + 2,
            "kind": "fault-start",
            "name": "abort 503 on clover-server",
            "fault": "abort",
            "target": "clover-server",
        },
        {
            "time": t0 + 5,
            "kind": "fault-start",
            "name": "shift http-lb to v1 100/v2 0",
            "fault": "shift",
            "target": "http-lb",
        },
        {
            "time": t0 + 8,
            "kind": "fault-end",
            "name": "faults cleared from VirtualService/http-lb",
            "fault": "clear",
            "target": "http-lb",
        },
        {"time": t0 + 9, "kind": "fault-end", "name": "faults cleared", "fault": "clear"},
    ]
    test = SavedTest(folder=tmp_path, record={}, events=events)
    spans = {f["description"]: (f["start"] - t0, f["end"] - t0) for f in fault_events(test)}
    assert spans == {
        "shift http-lb to v1 90/v2 10": (1, 5),
        "abort 503 on clover-server": (2, 9),
        "shift http-lb to v1 100/v2 0": (5, 8),
    }
    windows = pandas.DataFrame(
        [
            {
                "start": t0 + i,
                "end": t0 + i + 1,
                "phase": "method",
                "requests": 10,
                "errors": 0,
                "late": 0,
                "error_rate": 0.0,
                "throughput_rps": 10.0,
                "p50_ms": 5.0,
                "p95_ms": 6.0,
                "p99_ms": 7.0,
                "max_ms": 8.0,
            }
            for i in range(10)
        ]
    )
    fig = plots.timeseries(windows, events, "t")
    drawn = {s["name"]: (s["start_s"], s["end_s"]) for s in fig.clover_spans if s["kind"] == "fault"}
    assert drawn == spans  # the plot shows the same intervals, and no "cleared" pseudo-fault


def test_a_test_killed_midway_is_reported_from_the_streamed_events(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=1, finished=False)
    nodeid = "suites/test_zz.py::test_killed"
    (run / "suites_test_zz.py__test_killed").mkdir()  # what the load fixture had created when the kill came
    lines = [
        {"test": nodeid, "time": 1_795_270_900.0, "kind": "phase-start", "name": "baseline"},
        {"test": nodeid, "time": 1_795_270_905.0, "kind": "fault-start", "name": "delay 1s on http-lb", "id": 3},
    ]
    (run / "events.ndjson").write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"test": "torn')
    summary = build_summary(load_run(run))
    jsonschema.validate(summary, SCHEMA)
    killed = next(t for t in summary["tests"] if t["nodeid"] == nodeid)
    assert killed["outcome"] == "interrupted"
    assert [(f["description"], f["end"]) for f in killed["faults"]] == [("delay 1s on http-lb", None)]


def test_events_that_cannot_be_read_are_counted_and_make_the_report_partial(tmp_path: Path) -> None:
    # Was: dropped silently, and the report of a finished run claimed to be complete.
    run = _run(tmp_path, tests=1, finished=True)
    nodeid = "suites/test_zz.py::test_streamed"
    good = {"test": nodeid, "time": 1_795_270_905.0, "kind": "phase-start", "name": "baseline"}
    lines = [
        json.dumps(good).encode(),
        b"\x00\xff garbage",
        b"{not json",
        b'{"test": "t", "time": "never"}',
        b"[1, 2]",
        b"",
    ]
    (run / "events.ndjson").write_bytes(b"\n".join(lines))
    data = load_run(run)
    assert data.dropped_events == 4
    summary = build_summary(data)
    jsonschema.validate(summary, SCHEMA)
    assert summary["run"]["partial"] is True
    assert summary["run"]["partial_reason"] == (
        "events.ndjson: 4 lines not readable as events were left out (phases and faults may be missing)"
    )


def test_a_dropped_event_adds_to_the_reason_a_run_is_partial(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=1, finished=False)
    (run / "events.ndjson").write_text('{"test": "torn')
    reason = build_summary(load_run(run))["run"]["partial_reason"]
    assert reason.startswith("the run did not finish")
    assert reason.endswith(
        "; events.ndjson: 1 line not readable as events were left out (phases and faults may be missing)"
    )


def test_events_after_the_saved_timeline_complete_it(tmp_path: Path) -> None:
    # An interrupted teardown saved the timeline before a fault's revert, which came at the session's end.
    run = _run(tmp_path, tests=1, finished=True)
    nodeid = "suites/test_zz.py::test_interrupted"
    folder = run / "suites_test_zz.py__test_interrupted"
    folder.mkdir()
    start = {
        "test": nodeid,
        "time": 1_795_270_905.123456,
        "kind": "fault-start",
        "name": "delay 1s on http-lb",
        "id": 3,
    }
    end = {**start, "time": 1_795_270_911.5, "kind": "fault-end"}
    (folder / "test.json").write_text(json.dumps({"nodeid": nodeid, "folder": folder.name, "verdict": "interrupted"}))
    (folder / "timeline.json").write_text(json.dumps([start]))
    (run / "events.ndjson").write_text(json.dumps(start) + "\n" + json.dumps(end) + "\n")
    summary = build_summary(load_run(run))
    jsonschema.validate(summary, SCHEMA)
    test = next(t for t in summary["tests"] if t["nodeid"] == nodeid)
    assert [(f["description"], f["start"], f["end"]) for f in test["faults"]] == [
        ("delay 1s on http-lb", start["time"], end["time"])  # once, not twice: the start is in both files
    ]


def test_a_weight_of_zero_stays_zero_in_the_summary_and_the_history(tmp_path: Path) -> None:
    run = _run(tmp_path, tests=2, verdicts=["passed", "error"])
    folders = sorted(p for p in run.iterdir() if p.is_dir())
    _rewrite(folders[1], weight=0.0)  # @pytest.mark.resilience(weight=0): reported, not scored
    summary = build_summary(load_run(run))
    assert sorted(t["weight"] for t in summary["tests"]) == [0.0, 1.0]
    assert summary["score"]["value"] == 100.0
    # The trend scores the run from its history records the same way the report did.
    assert history.run_score(history.records_for(summary)) == summary["score"]["value"]
