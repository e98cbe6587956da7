"""Build a run's report from its saved data: plots, ``summary.json``, ``windows.csv``, ``events.ndjson``,
``index.html``. The plugin calls :func:`build_report` at session end; ``clover report <run-dir>`` calls it
again at any later time, without rerunning anything.

Plots are rendered per test, in worker processes when there are several tests and cores: matplotlib
holds the GIL while it rasterises, so threads would not help, and a test's three figures are independent
of every other test's. The tests are handled as they are read: a test's plots start and its windows are
written to ``windows.csv`` before the next test is read, and its windows are then released, so a run of
many long tests is built holding one test's windows at a time (``benchmarks/bench_report.py``: 10 tests of
8 h of 1-s windows).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import pickle
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..load.result import ROW_COLUMNS
from . import history
from .summary import RunData, SavedTest, build_summary, dropped_events_problem, load_run

PLOT_FILES = {
    "timeseries": "timeseries.png",
    "latency": "latency.png",
    "hops": "hops.png",
}
"""Per test: plot name → file in the test's folder (where the plot's data is)."""
SOAK_PLOT_FILE = "soak.png"
"""A soak test's night (:func:`~pytest_clover.report.plots.soak_overview`), in the test's folder next to its
``soak.json`` (not in :data:`PLOT_FILES`: only soak tests have it)."""
SOAK_TIMESERIES_FAULTS = 30
"""A soak test with more events than this draws its ``timeseries.png`` without the fault windows (its phases still
show them as ``fault`` bands): 200 hatched, labelled spans are a red wall that takes ~5 s to draw, and every event
is in ``soak.png`` and the events table already."""
TREND_FILE = "trend.png"


@dataclass
class BuiltReport:
    folder: Path
    summary: dict[str, Any]
    index: Path
    problems: list[str] = field(default_factory=list)
    """Plots or files that could not be produced (the rest of the report is still written)."""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``read`` (reading the tests, which also starts their plots and writes their windows),
    ``windows.csv`` (part of ``read``), ``plots`` (from the first test read to the last plot done: it overlaps
    ``read``), ``summary.json``, ``index.html``."""


def _windows_frame(result: Mapping[str, Any]) -> Any:
    import pandas  # type: ignore[import-untyped,unused-ignore]

    from ..load.result import ROW_COLUMNS

    frame = pandas.DataFrame(result.get("windows") or [], columns=list(ROW_COLUMNS))
    for column in ROW_COLUMNS:
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
    makers: dict[str, Callable[[], Any]] = {}
    soak = test.soak
    if soak is not None:
        # Drawn from soak.json even before the load result exists (a checkpoint taken early in the night).
        makers["soak"] = lambda: plots.soak_overview(soak, (result or {}).get("windows") or [], title)
    if result is None:
        return makers
    events = test.events
    if soak is not None and len(soak.events) > SOAK_TIMESERIES_FAULTS:
        events = [e for e in events if not str(e.get("kind", "")).startswith("fault-")]
    makers["timeseries"] = lambda: plots.timeseries(_windows_frame(result), events, title)
    if result.get("histograms"):
        makers["latency"] = lambda: plots.latency_by_phase(_histograms(result), title)
    hops_csv = result_folder / "hops.csv"
    if hops_csv.is_file():
        from .hops import assign_phases, load_hops

        makers["hops"] = lambda: plots.hops(assign_phases(load_hops(hops_csv), test.events), title)
    return makers


def _saved_for_plots(folder: Path, result_dir: str, saved: SavedTest | None = None) -> tuple[SavedTest, Path]:
    """The test saved in ``folder`` (``saved`` if already read) and the folder of the load run its plots show
    (``result_dir``, else its last)."""
    from .summary import load_saved_test

    test = saved if saved is not None else load_saved_test(folder)
    result_folder = folder / result_dir if result_dir else (test.result_folder or folder)
    return test, result_folder


def draw_test_figures(folder: Path, title: str, *, result_dir: str = "") -> dict[str, Any]:
    """The figures :func:`render_test_plots` saves for the test in ``folder``, drawn the same way but not saved
    (plot name → :class:`~pytest_clover.report.plots.PlotFigure`): what a check of the plots' contents
    (``fig.clover_spans``, the artists' data) looks at. A plot that cannot be drawn raises."""
    from . import plots

    test, result_folder = _saved_for_plots(Path(folder), result_dir)
    with plots.missing_glyphs_allowed():
        return {name: make() for name, make in _plot_makers(test, result_folder, title).items()}


def render_test_plots(
    folder: Path, title: str, *, result_dir: str = "", saved: SavedTest | None = None
) -> tuple[dict[str, str], list[str]]:
    """Render one test's plots into its folder; returns ({plot: file name relative to the folder}, problems).

    Reads only the folder (so it runs in a worker process): ``result.json``, ``timeline.json``, ``hops.csv``,
    ``soak.json``;
    ``saved``: the test as already read from it (its windows not released), so ``result.json`` is not read again.
    """
    from . import plots

    files: dict[str, str] = {}
    problems: list[str] = []
    test, result_folder = _saved_for_plots(folder, result_dir, saved)
    if test.result is None and test.soak is None:
        return files, problems
    prefix = "" if result_folder == folder else result_folder.relative_to(folder).as_posix() + "/"

    def attempt(name: str, make: Callable[[], Any]) -> None:
        # The soak plot belongs to the whole soak (soak.json is the test's), the others to one load run.
        relative = SOAK_PLOT_FILE if name == "soak" else prefix + PLOT_FILES[name]
        path = folder / relative
        try:
            with plots.missing_glyphs_allowed():
                fig = make()
                plots.save(fig, path)
            files[name] = relative
        except Exception as exc:  # one broken plot must not cost the whole report
            problems.append(f"{folder.name}: {name} plot failed: {type(exc).__name__}: {exc}")

    for name, make in _plot_makers(test, result_folder, title).items():
        attempt(name, make)
    return files, problems


_WORKER_IMPORTS = ("pandas", "hdrh.histogram")
"""What the plot workers import besides this package's modules (the forkserver preloads them for all)."""


def _render_pickled(folder: Path, title: str, result_dir: str, saved: bytes) -> tuple[dict[str, str], list[str]]:
    """:func:`render_test_plots` in a worker process, for a test pickled by the main process (see :class:`_Plots`)."""
    test: SavedTest = pickle.loads(saved)
    return render_test_plots(folder, title, result_dir=result_dir, saved=test)


class _Plots:
    """Renders each test's plots as :func:`load_run` reads the tests: in up to ``jobs`` worker processes when
    there are several tests (the first test waits for a second one before the pool starts), else here.

    A test goes to a worker pickled at once, so the caller may release its windows right after :meth:`add`; at
    most ``2 × jobs`` tests wait for a worker at a time (:meth:`add` blocks), so memory stays bounded however
    many tests the run has. Use as a context manager: leaving it stops the workers.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.seconds = 0.0
        """Wall time from the first test added to the last plot done (it overlaps with reading the tests)."""
        self._started: float | None = None
        self._order: list[str] = []
        self._results: dict[str, tuple[dict[str, str], list[str]]] = {}
        self._held: tuple[str, tuple[Path, str, str, bytes]] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[str, Future[tuple[dict[str, str], list[str]]]] = {}

    def __enter__(self) -> _Plots:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def add(self, test: SavedTest) -> None:
        if test.result is None and test.soak is None:
            return
        if self._started is None:
            self._started = time.monotonic()
        key, rdir = str(test.folder), str(test.record.get("result_dir") or "")
        self._order.append(key)
        if self.jobs <= 1:
            self._results[key] = render_test_plots(test.folder, test.nodeid, result_dir=rdir, saved=test)
            return
        job = (test.folder, test.nodeid, rdir, pickle.dumps(test, protocol=pickle.HIGHEST_PROTOCOL))
        if self._pool is None and self._held is None:
            self._held = (key, job)  # a single test is rendered here: not worth starting workers for
            return
        if self._pool is None:
            import multiprocessing

            # forkserver, not fork: the caller may be a pytest process with threads (a fork could copy held locks).
            # The forkserver imports matplotlib and pandas once (~1.3 s of CPU) and every worker forked from it
            # inherits them, instead of each worker importing its own (no effect if the forkserver already runs).
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__, f"{__package__}.plots", f"{__package__}.hops", *_WORKER_IMPORTS])
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context)
            assert self._held is not None
            self._submit(*self._held)
            self._held = None
        busy = [f for f in self._futures.values() if not f.done()]
        if len(busy) >= 2 * self.jobs:
            wait(busy, return_when=FIRST_COMPLETED)
        self._submit(key, job)

    def _submit(self, key: str, job: tuple[Path, str, str, bytes]) -> None:
        assert self._pool is not None
        try:
            self._futures[key] = self._pool.submit(_render_pickled, *job)
        except Exception as exc:  # the pool broke (a worker was killed): this test's plots fail, the report goes on
            self._results[key] = {}, [f"{Path(key).name}: plots failed: {type(exc).__name__}: {exc}"]

    def finish(self) -> tuple[dict[str, dict[str, str]], list[str]]:
        """Wait for every test's plots: ({test folder: {plot: file relative to it}}, problems), in test order."""
        if self._held is not None:
            key, (folder, title, rdir, saved) = self._held
            self._results[key] = _render_pickled(folder, title, rdir, saved)
            self._held = None
        for key, future in self._futures.items():
            try:
                self._results[key] = future.result()
            except Exception as exc:
                self._results[key] = {}, [f"{Path(key).name}: plots failed: {type(exc).__name__}: {exc}"]
        self.__exit__()
        if self._started is not None:
            self.seconds = time.monotonic() - self._started
        out: dict[str, dict[str, str]] = {}
        problems: list[str] = []
        for key in self._order:
            files, failed = self._results[key]
            out[key] = files
            problems += failed
        return out, problems


WINDOW_CSV_COLUMNS = ("test", *ROW_COLUMNS)
"""Columns of the run's ``windows.csv``: the test's node id, then a window of its load result."""


def _csv_number(value: Any) -> str:
    """A measurement for ``windows.csv``: an integer as is, a float to 6 significant digits, a numeric string as
    its number; empty for anything else (None, NaN, not a number)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return ""
    if isinstance(value, int):  # bool included: True is 1
        return str(int(value))
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return ""


def _csv_text(value: Any) -> str:
    """A text field for ``windows.csv``, quoted as the csv module quotes (minimal); empty for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_time(value: Any) -> str:
    """A unix time for ``windows.csv``, to the µs ("%.6g" would cut it to ~3 hours: 1.79528e+09); empty if not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{number:.6f}" if math.isfinite(number) else ""


def _windows_csv_rows(test: SavedTest) -> str:
    """The test's lines of ``windows.csv`` (empty if it has no windows)."""
    windows = (test.result or {}).get("windows") or []
    if not windows:
        return ""
    # Column by column, joined by hand (only the test and the phase can need quoting): ~10× faster than a
    # DataFrame's to_csv and ~5× faster than csv.writer, ~0.3 s for an 8-h test; one test's cells at a time.
    cells: list[list[str]] = [[_csv_text(test.nodeid)] * len(windows)]
    for column in WINDOW_CSV_COLUMNS[1:]:
        values = [w.get(column) for w in windows]
        if column == "phase":
            cells.append([_csv_text(v) for v in values])
        elif column in ("start", "end"):
            cells.append([_csv_time(v) for v in values])
        else:  # the common case (a finite float) inline: this runs for every cell
            cells.append([f"{v:.6g}" if type(v) is float and v == v else _csv_number(v) for v in values])
    return "\n".join(map(",".join, zip(*cells, strict=True))) + "\n"


class _WindowsCsv:
    """The run's ``windows.csv``, written a test at a time (so each test's windows can be released once written)
    into a temporary file that :meth:`commit` moves into place.

    Never raises: the first error is kept in :attr:`problem`, and the file is then left as it was.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None
        self.seconds = 0.0
        """Time spent formatting and writing rows."""
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._file: TextIO | None = None

    def add(self, test: SavedTest) -> None:
        """Append the test's windows (none if it has no load result)."""
        started = time.monotonic()
        self._attempt(lambda out: out.write(_windows_csv_rows(test)))
        self.seconds += time.monotonic() - started

    def commit(self) -> None:
        def close(out: TextIO) -> None:
            out.close()
            os.replace(self._tmp, self.path)

        self._attempt(close)

    def discard(self) -> None:
        # Cleanup, also on the way out of an error (a run folder that is not a folder): it must not replace it.
        with contextlib.suppress(OSError):
            if self._file is not None:
                self._file.close()
            self._tmp.unlink(missing_ok=True)

    def _attempt(self, step: Callable[[TextIO], Any]) -> None:
        if self.problem is not None:
            return
        try:
            if self._file is None:
                self._file = self._tmp.open("w", newline="", encoding="utf-8")
                self._file.write(",".join(WINDOW_CSV_COLUMNS) + "\n")
            step(self._file)
        except Exception as exc:
            self.problem = f"windows.csv: {type(exc).__name__}: {exc}"
            self.discard()


def write_windows_csv(data: RunData, path: Path) -> None:
    """Every window of every test: test, start, end (unix s, to the µs), phase, requests, errors, late, error_rate,
    throughput_rps, p50/p95/p99/max (ms). The tests' windows must not have been released."""
    out = _WindowsCsv(path)
    for test in data.tests:
        out.add(test)
    out.commit()
    if out.problem is not None:
        raise OSError(out.problem)


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

    with plots.missing_glyphs_allowed():
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
    report_dir = Path(report_dir) if report_dir is not None else run_dir.parent
    if jobs is None:
        jobs = min(4, os.cpu_count() or 1)
    # Each test, as soon as it is read: its plots start (in a worker), its windows go to windows.csv, then they
    # are released, so however long and many the tests, one test's windows are in memory here at a time.
    windows_csv = _WindowsCsv(run_dir / "windows.csv")
    with _Plots(jobs) as plots:

        def take(test: SavedTest) -> None:
            plots.add(test)
            windows_csv.add(test)
            test.release_windows()

        try:
            data = load_run(run_dir, on_test=take)
        except BaseException:
            windows_csv.discard()
            raise
        windows_csv.commit()
        stages = {"read": time.monotonic() - started, "windows.csv": windows_csv.seconds}
        if extra_runs:
            data.run.update(extra_runs)
        if not (run_dir / "events.ndjson").is_file():
            write_events(data, run_dir / "events.ndjson")
        plot_files, problems = plots.finish()
    if data.dropped_events:
        problems.append(dropped_events_problem(data.dropped_events))
    stages["plots"] = plots.seconds
    lap = time.monotonic()
    if windows_csv.problem is not None:
        problems.append(windows_csv.problem)
    for test in data.tests:
        files = {name: f"{test.folder.name}/{rel}" for name, rel in plot_files.get(str(test.folder), {}).items()}
        test.record["files"] = {**_data_files(test), **files}
    summary = build_summary(data)
    _atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    stages["summary.json"] = time.monotonic() - lap
    lap = time.monotonic()
    built = BuiltReport(run_dir, summary, run_dir / "index.html", problems)
    write_index(built, report_dir)
    stages["index.html"] = time.monotonic() - lap
    built.stages = stages
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
        "soak_json": base / "soak.json",
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
