"""build_report: the same report whether plots render in workers or in-process; windows.csv; released windows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pytest_clover.errors import ReportDataError
from pytest_clover.report.build import WINDOW_CSV_COLUMNS, build_report
from pytest_clover.report.sample import write_sample_run
from pytest_clover.report.summary import build_summary, load_run

RUN_ID = "20261121-120000-1"
SHORT = (20.0, 10.0, 20.0)


def _files(run: Path, leave_out: frozenset[str] = frozenset()) -> dict[str, bytes]:
    files = {p.relative_to(run).as_posix(): p for p in sorted(run.rglob("*")) if p.is_file()}
    return {name: path.read_bytes() for name, path in files.items() if name not in leave_out}


def test_plots_in_worker_processes_give_the_same_report_as_plots_in_process(tmp_path: Path) -> None:
    in_process = write_sample_run(tmp_path / "a" / RUN_ID, tests=2, seconds=SHORT)
    in_workers = write_sample_run(tmp_path / "b" / RUN_ID, tests=2, seconds=SHORT)
    inputs = frozenset(_files(in_process))  # result.json holds its own folder's path: compare what the build writes

    one = build_report(in_process, jobs=1)
    two = build_report(in_workers, jobs=2)

    assert one.problems == two.problems == []
    assert one.summary == two.summary
    files = _files(in_process, inputs)
    assert files == _files(in_workers, inputs)  # every PNG, windows.csv, summary.json, index.html: byte for byte
    assert sum(name.endswith(".png") for name in files) == 2 * 3
    assert {"windows.csv", "summary.json", "index.html", "events.ndjson"} <= set(files)
    assert set(two.stages) == {"read", "windows.csv", "plots", "summary.json", "index.html"}


def test_windows_csv_has_every_window_times_to_the_microsecond_and_quotes_as_the_csv_module(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=2, seconds=(3.0, 2.0, 3.0))
    folder = sorted(p for p in run.iterdir() if p.is_dir())[0]
    record = json.loads((folder / "test.json").read_text())
    record["nodeid"] = 'suites/test_x.py::test_x[a,b-"q"]'
    (folder / "test.json").write_text(json.dumps(record))
    result = json.loads((folder / "result.json").read_text())
    result["windows"][0].update(start=1795270500.123456, phase=None, p99_ms=None, requests=0, error_rate=None)
    (folder / "result.json").write_text(json.dumps(result))

    built = build_report(run, jobs=1)

    assert built.problems == []
    with (run / "windows.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == WINDOW_CSV_COLUMNS
    assert [t["load"]["windows"] for t in sorted(built.summary["tests"], key=lambda t: t["folder"])] == [8, 8]
    assert len(rows) == 16
    first = rows[0]
    assert first["test"] == record["nodeid"]
    assert (first["start"], first["phase"], first["p99_ms"], first["requests"], first["error_rate"]) == (
        "1795270500.123456",
        "",
        "",
        "0",
        "",
    )
    window = result["windows"][1]
    assert float(rows[1]["start"]) == window["start"] and rows[1]["phase"] == window["phase"]
    assert rows[1]["p50_ms"] == f"{window['p50_ms']:.6g}"
    starts = [float(r["start"]) for r in rows if r["test"] == record["nodeid"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_released_windows_leave_the_summary_unchanged(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=2, seconds=SHORT)
    expected = build_summary(load_run(run))

    data = load_run(run, on_test=lambda test: test.release_windows())

    assert all(t.result is not None and "windows" not in t.result for t in data.tests)
    assert [t.window_count for t in data.tests] == [50, 50]
    assert build_summary(data) == expected


def test_events_that_cannot_be_read_are_a_problem_of_the_report(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / RUN_ID, tests=1, seconds=(2.0, 1.0, 2.0))
    (run / "events.ndjson").write_bytes(b"\x00\xff garbage\n{torn")
    built = build_report(run, jobs=1)
    message = "events.ndjson: 2 lines not readable as events were left out (phases and faults may be missing)"
    assert message in built.problems
    assert built.summary["run"]["partial"] is True and built.summary["run"]["partial_reason"] == message
    assert "Partial report." in (run / "index.html").read_text()


def test_a_run_folder_that_is_a_file_is_a_report_data_error(tmp_path: Path) -> None:
    # Was: NotADirectoryError from the cleanup of windows.csv's temporary file, hiding the real error.
    path = tmp_path / "not-a-folder"
    path.write_text("")
    with pytest.raises(ReportDataError, match="not-a-folder: not a folder; give a run folder"):
        build_report(path, jobs=1)
