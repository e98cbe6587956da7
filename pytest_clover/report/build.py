"""Build a run's report from its saved data: plots, ``summary.json``, ``windows.csv``, ``events.ndjson``,
``index.html``. The plugin calls :func:`build_report` at session end; ``clover report <run-dir>`` calls it
again at any later time, without rerunning anything.

Plots are rendered per test, in worker processes when there are several tests and cores: matplotlib
holds the GIL while it rasterises, so threads would not help, and a test's three figures are independent
of every other test's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import history
from .summary import RunData, SavedTest, build_summary, load_run

PLOT_FILES = {
    "timeseries": "timeseries.png",
    "latency": "latency.png",
    "hops": "hops.png",
}
"""Per test: plot name → file in the test's folder (where the plot's data is)."""
TREND_FILE = "trend.png"


@dataclass
class BuiltReport:
    folder: Path
    summary: dict[str, Any]
    index: Path
    problems: list[str] = field(default_factory=list)
    """Plots or files that could not be produced (the rest of the report is still written)."""
    seconds: float = 0.0


def _windows_frame(result: Mapping[str, Any]) -> Any:
    import pandas  # type: ignore[import-untyped,unused-ignore]

    from ..load.result import _ROW_COLUMNS

    frame = pandas.DataFrame(result.get("windows") or [], columns=list(_ROW_COLUMNS))
    for column in _ROW_COLUMNS:
        if column != "phase":
            frame[column] = pandas.to_numeric(frame[column], errors="coerce")
    return frame


def _histograms(result: Mapping[str, Any]) -> dict[str, Any]:
    from ..load.result import _hdr_class

    decode = _hdr_class().decode
    return {name: decode(encoded) for name, encoded in (result.get("histograms") or {}).items()}


def _plot_makers(test: SavedTest, result_folder: Path, title: str) -> dict[str, Callable[[], Any]]:
    """Per plot the test's data has: plot name → a function that draws its figure from the saved data."""
    from . import plots

    result = test.result
    if result is None:
        return {}
    makers: dict[str, Callable[[], Any]] = {
        "timeseries": lambda: plots.timeseries(_windows_frame(result), test.events, title),
    }
    if result.get("histograms"):
        makers["latency"] = lambda: plots.latency_by_phase(_histograms(result), title)
    hops_csv = result_folder / "hops.csv"
    if hops_csv.is_file():
        from .hops import assign_phases, load_hops

        makers["hops"] = lambda: plots.hops(assign_phases(load_hops(hops_csv), test.events), title)
    return makers


def _saved_for_plots(folder: Path, result_dir: str) -> tuple[SavedTest, Path]:
    """The test saved in ``folder`` and the folder of the load run its plots show (``result_dir``, else its last)."""
    from .summary import load_saved_test

    test = load_saved_test(folder)
    result_folder = folder / result_dir if result_dir else (test.result_folder or folder)
    return test, result_folder


def draw_test_figures(folder: Path, title: str, *, result_dir: str = "") -> dict[str, Any]:
    """The figures :func:`render_test_plots` saves for the test in ``folder``, drawn the same way but not saved
    (plot name → :class:`~pytest_clover.report.plots.PlotFigure`): what a check of the plots' contents
    (``fig.clover_spans``, the artists' data) looks at. A plot that cannot be drawn raises."""
    test, result_folder = _saved_for_plots(Path(folder), result_dir)
    return {name: make() for name, make in _plot_makers(test, result_folder, title).items()}


def render_test_plots(folder: Path, title: str, *, result_dir: str = "") -> tuple[dict[str, str], list[str]]:
    """Render one test's plots into its folder; returns ({plot: file name relative to the folder}, problems).

    Reads only the folder (so it runs in a worker process): ``result.json``, ``timeline.json``, ``hops.csv``.
    """
    from . import plots

    files: dict[str, str] = {}
    problems: list[str] = []
    test, result_folder = _saved_for_plots(folder, result_dir)
    if test.result is None:
        return files, problems
    prefix = "" if result_folder == folder else result_folder.relative_to(folder).as_posix() + "/"

    def attempt(name: str, make: Callable[[], Any]) -> None:
        path = result_folder / PLOT_FILES[name]
        try:
            fig = make()
            plots.save(fig, path)
            files[name] = prefix + PLOT_FILES[name]
        except Exception as exc:  # one broken plot must not cost the whole report
            problems.append(f"{folder.name}: {name} plot failed: {type(exc).__name__}: {exc}")

    for name, make in _plot_makers(test, result_folder, title).items():
        attempt(name, make)
    return files, problems


def _render_all(tests: Sequence[SavedTest], jobs: int) -> tuple[dict[str, dict[str, str]], list[str]]:
    todo = [(t.folder, t.nodeid, str(t.record.get("result_dir") or "")) for t in tests if t.result is not None]
    out: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    if jobs > 1 and len(todo) > 1:
        import multiprocessing

        # forkserver, not fork: the caller may be a pytest process with threads (a fork could copy held locks).
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
            futures = {
                str(folder): pool.submit(render_test_plots, folder, title, result_dir=rdir)
                for folder, title, rdir in todo
            }
            for key, future in futures.items():
                try:
                    files, failed = future.result()
                except Exception as exc:
                    files, failed = {}, [f"{Path(key).name}: plots failed: {type(exc).__name__}: {exc}"]
                out[key] = files
                problems += failed
        return out, problems
    for folder, title, rdir in todo:
        files, failed = render_test_plots(folder, title, result_dir=rdir)
        out[str(folder)] = files
        problems += failed
    return out, problems


def write_windows_csv(data: RunData, path: Path) -> None:
    """Every window of every test: test, phase, start, end, requests, errors, late, error_rate, p50/p95/p99/max."""
    import pandas

    frames = []
    for test in data.tests:
        if test.result is None or not test.result.get("windows"):
            continue
        frame = _windows_frame(test.result)
        frame.insert(0, "test", test.nodeid)
        frames.append(frame)
    columns = ["test", "start", "end", "phase", "requests", "errors", "late", "error_rate", "throughput_rps"]
    columns += ["p50_ms", "p95_ms", "p99_ms", "max_ms"]
    frame = pandas.concat(frames, ignore_index=True) if frames else pandas.DataFrame(columns=columns)
    frame = frame[columns].copy()
    # Measurements keep 6 significant digits; times are unix seconds, which "%.6g" would cut to ~3 hours
    # (1.79528e+09): they are written to the µs.
    for column in ("start", "end"):
        frame[column] = [f"{v:.6f}" if isinstance(v, float) and math.isfinite(v) else "" for v in frame[column]]
    _atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))


def write_events(data: RunData, path: Path) -> None:
    """``events.ndjson`` from the tests' timelines, when the run did not stream it (an older run, a copy)."""
    events = [{"test": t.nodeid, **e} for t in data.tests for e in t.events]
    events.sort(key=lambda e: float(e["time"]))
    _atomic_write_text(path, "".join(json.dumps(e, default=str) + "\n" for e in events))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_trend(report_dir: Path, out: Path, *, last: int = 30) -> Path | None:
    """``trend.png`` from ``history.jsonl`` (None when fewer than two runs are recorded)."""
    records, _ = history.read(report_dir)
    if len(history.run_ids(records)) < 2:
        return None
    from . import plots

    plots.save(plots.trend(records, title="pytest-clover trend", last=last), out)
    return out


def build_report(
    run_dir: Path,
    *,
    jobs: int | None = None,
    report_dir: Path | None = None,
    extra_runs: Mapping[str, Any] | None = None,
) -> BuiltReport:
    """Render plots, write ``summary.json``, ``windows.csv``, ``index.html`` (and ``events.ndjson`` if absent).

    ``report_dir`` (default: the run folder's parent) is where ``history.jsonl`` is read for the trend
    section. ``extra_runs`` is merged into ``run.json``'s data before summarising (the plugin passes what it
    knows at the end: finished, exit status, partial).
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    if extra_runs:
        data.run.update(extra_runs)
    report_dir = Path(report_dir) if report_dir is not None else run_dir.parent
    if jobs is None:
        jobs = min(4, os.cpu_count() or 1)
    plot_files, problems = _render_all(data.tests, jobs)
    for test in data.tests:
        files = {name: f"{test.folder.name}/{rel}" for name, rel in plot_files.get(str(test.folder), {}).items()}
        test.record["files"] = {**_data_files(test), **files}
    summary = build_summary(data)
    _atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    try:
        write_windows_csv(data, run_dir / "windows.csv")
    except Exception as exc:
        problems.append(f"windows.csv: {type(exc).__name__}: {exc}")
    if not (run_dir / "events.ndjson").is_file():
        write_events(data, run_dir / "events.ndjson")
    built = BuiltReport(run_dir, summary, run_dir / "index.html", problems)
    write_index(built, report_dir)
    built.seconds = time.monotonic() - started
    return built


def write_index(built: BuiltReport, report_dir: Path) -> None:
    """(Re)write ``index.html``, with the trend section when the history holds two runs or more."""
    from .html import render_index

    trend = None
    try:
        trend = render_trend(report_dir, built.folder / TREND_FILE)
    except Exception as exc:  # the trend is one section; the rest of the page still matters
        built.problems.append(f"trend: {type(exc).__name__}: {exc}")
    _atomic_write_text(built.index, render_index(built.summary, built.folder, trend=trend, problems=built.problems))


def _data_files(test: SavedTest) -> dict[str, str]:
    """Links to the raw files of a test, relative to the run folder."""
    files: dict[str, str] = {}
    base = test.folder
    result_folder = test.result_folder or base
    candidates = {
        "result": result_folder / "result.json",
        "windows": result_folder / "windows.csv",
        "timeline": base / "timeline.json",
        "hops_csv": result_folder / "hops.csv",
        "locust_stats": result_folder / "locust_stats.csv",
        "locust_history": result_folder / "locust_stats_history.csv",
        "locust_failures": result_folder / "locust_failures.csv",
        "journal": base / "journal.json",
    }
    for name, path in candidates.items():
        if path.is_file():
            files[name] = path.relative_to(base.parent).as_posix()
    return files


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def point_latest(report_dir: Path, run_dir: Path) -> None:
    """``<report_dir>/latest`` → the run folder (a relative symlink; replaced atomically)."""
    link = Path(report_dir) / "latest"
    tmp = link.with_name(f".latest.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(Path(run_dir).name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
