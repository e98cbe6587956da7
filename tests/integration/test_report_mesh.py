"""The report of a REAL run on the embedded mesh: its files, its schema, and that the plots show what they claim.

One inner pytest run (a subprocess, shared by the module) drives the real ``mesh``, ``load`` and ``faults``
fixtures: a 300 ms delay on http-lb between a baseline and a recovery, then a 30 % abort on clover-server, both
at 40 requests/s. The tests read what it left in ``<report-dir>/<run-id>/`` and redraw the plots from the saved
data exactly as the report does (``build.draw_test_figures``), so the fault windows, phase bands, error rates and
per-hop bars can be compared with ``summary.json``, ``events.ndjson`` and ``hops.csv`` without reading pixels.

A second inner run is SIGKILLed while its second test runs: the completed test survives on disk, ``clover report``
builds a partial report of it, no process of the killed mesh survives, and the next session sweeps its fault.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import psutil
import pytest

from pytest_clover.backends.local.state import MeshState, registry_dir, sweep
from pytest_clover.report import build
from pytest_clover.report.hops import assign_phases, load_hops
from tests.helpers import binomial_interval, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
SCHEMA = json.loads((ROOT / "pytest_clover" / "report" / "summary.schema.json").read_text())
QUIET = ("-p", "no:cacheprovider", "-p", "no:locust", "-p", "no:html", "-p", "no:hypothesispytest")
TIME_SCALE = 0.5
"""Phases below are in nominal seconds; the inner runs play them at half length (each run ~20 s with the mesh)."""
RATE = 40
ABORT_PERCENT = 30
DELAYED = "proxy-access-control → http-lb"
SEGMENTS = {
    "ingress → proxy-access-control",
    "proxy-access-control",
    DELAYED,
    "http-lb",
    "http-lb → clover-server",
    "clover-server",
}
PHASES = ["baseline", "fault", "recovery"]
WINDOW_COLUMNS = "test,start,end,phase,requests,errors,late,error_rate,throughput_rps,p50_ms,p95_ms,p99_ms,max_ms,missing_workers"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHASE_SLACK_S = 0.001
"""How far a phase band may sit from its phase in summary.json: both are the instant the test marked the change
(the windows are cut there), up to float rounding."""
DELAY_NODE = "test_mesh_report.py::test_delay"
ABORT_NODE = "test_mesh_report.py::test_abort"

# The objectives separate "delayed" from "not delayed" and "aborting" from "not", with room for a busy 2-core
# machine (another suite running beside this one has put a baseline p99 at 250 ms). Requests count in the phase
# they were SENT in, so none sent while a fault was in force or being reverted is in the recovery; the recovery's
# objectives are still loose (p50, 5 %) as they were when windows held what completed in them.
INNER_TESTS = f"""
import pytest

RATE = {RATE}


@pytest.mark.slo(phase="baseline", p50_ms=150, max_error_rate=0.01)
@pytest.mark.slo(phase="fault", p99_ms=1500, max_error_rate=0.01)
@pytest.mark.slo(phase="recovery", p50_ms=150, max_error_rate=0.01)
def test_delay(load, faults):
    run = load.start(rate=RATE)
    run.phase("baseline", seconds=4)
    with faults.delay("http-lb", "300ms", percent=100):
        run.phase("fault", seconds=6)
    run.phase("recovery", seconds=4)
    result = run.stop()
    result.recovery_seconds("fault", p50_ms=150, window_seconds=1)


@pytest.mark.slo(phase="baseline", max_error_rate=0.01)
@pytest.mark.slo(phase="fault", max_error_rate=0.6)
@pytest.mark.slo(phase="recovery", max_error_rate=0.05)
def test_abort(load, faults):
    run = load.start(rate=RATE)
    run.phase("baseline", seconds=3)
    with faults.abort("clover-server", 503, percent={ABORT_PERCENT}):
        run.phase("fault", seconds=8)
    run.phase("recovery", seconds=4)
    run.stop()
"""

# The killed run: a first test that completes, a second one killed in its fault phase (which never ends).
KILLED_TESTS = """
def test_first(load):
    run = load.start(rate=20)
    run.phase("baseline", seconds=2)
    run.stop()


def test_second(load, faults):
    run = load.start(rate=20)
    run.phase("baseline", seconds=1)
    with faults.delay("http-lb", "100ms"):
        run.phase("fault", seconds=600)
    run.stop()
"""


def _ini() -> str:
    return f"[pytest]\nclover_topology = {SDC}\n"


def _env(runtime: Path) -> dict[str, str]:
    """The inner runs' environment: their own mesh registry, and this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["CLOVER_RUNTIME_DIR"] = str(runtime)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    jsonschema.validate(summary, SCHEMA)
    return summary


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.ndjson").read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- the shared real run


@dataclass
class MeshRun:
    result: pytest.RunResult
    report_dir: Path
    runtime: Path
    run_dir: Path = field(init=False)
    summary: dict[str, Any] = field(init=False)
    tests: dict[str, dict[str, Any]] = field(init=False)
    _figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        runs = [p for p in self.report_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0].isdigit()]
        assert len(runs) == 1, (runs, self.output())
        self.run_dir = runs[0]
        self.summary = _summary(self.run_dir)
        self.tests = {t["nodeid"]: t for t in self.summary["tests"]}

    def output(self) -> str:
        return "\n".join(self.result.outlines[-80:] + self.result.errlines[-40:])

    def folder(self, nodeid: str) -> Path:
        return self.run_dir / str(self.tests[nodeid]["folder"])

    def figures(self, nodeid: str) -> dict[str, Any]:
        """The test's figures, drawn from its saved data the way the report draws them (once per module)."""
        if nodeid not in self._figures:
            self._figures[nodeid] = build.draw_test_figures(self.folder(nodeid), nodeid)
        return self._figures[nodeid]

    def result_json(self, nodeid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder(nodeid) / "result.json").read_text())
        return data

    def timeline(self, nodeid: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads((self.folder(nodeid) / "timeline.json").read_text())
        return data


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory: pytest.TempPathFactory) -> MeshRun:
    """The inner run, as ``pytester.runpytest_subprocess`` would make it (pytester is per test; this run is shared
    by the module): the real plugin, the real embedded mesh, the real load generator."""
    project = tmp_path_factory.mktemp("report-mesh")
    (project / "pytest.ini").write_text(_ini())
    (project / "test_mesh_report.py").write_text(INNER_TESTS)
    runtime = project / "runtime"
    runtime.mkdir()
    report_dir = project / "reports"
    args = [
        sys.executable,
        "-m",
        "pytest",
        f"--basetemp={project / 'basetemp'}",
        *QUIET,
        f"--clover-report-dir={report_dir}",
        f"--clover-time-scale={TIME_SCALE}",
        "--clover-seed=11",
    ]
    started = time.monotonic()
    # On a timeout the inner pytest is killed, and its mesh dies with it (PDEATHSIG).
    done = subprocess.run(
        args, cwd=project, env=_env(runtime), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240
    )
    result = pytest.RunResult(
        done.returncode, done.stdout.splitlines(), done.stderr.splitlines(), time.monotonic() - started
    )
    if result.ret != 0 or not report_dir.is_dir():
        # Nothing below means anything then: every test of the module errors with the inner run's output.
        output = "\n".join(result.outlines[-150:] + result.errlines[-40:])
        pytest.fail(f"the inner run on the mesh did not pass (exit code {result.ret}):\n{output}", pytrace=False)
    return MeshRun(result, report_dir, runtime)


# --------------------------------------------------------------------------- files and summary


def test_the_run_passes_and_leaves_every_report_file(mesh_run: MeshRun) -> None:
    assert mesh_run.result.ret == 0, mesh_run.output()
    mesh_run.result.assert_outcomes(passed=2)
    run_dir = mesh_run.run_dir
    for name in ("index.html", "summary.json", "windows.csv", "events.ndjson", "run.json"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert (mesh_run.report_dir / "latest").is_symlink()
    assert (mesh_run.report_dir / "latest").resolve() == run_dir.resolve()
    for nodeid in (DELAY_NODE, ABORT_NODE):
        folder = mesh_run.folder(nodeid)
        for name in ("test.json", "result.json", "timeline.json", "windows.csv", "hops.csv", "locust_stats.csv"):
            assert (folder / name).is_file(), f"{folder.name}/{name}"
        for name in build.PLOT_FILES.values():
            assert (folder / name).is_file(), f"{folder.name}/{name}"
        # Every file the summary links to is there.
        files = mesh_run.tests[nodeid]["files"]
        assert set(files) >= {"timeseries", "latency", "hops", "result", "timeline", "hops_csv", "windows"}, files
        for rel in files.values():
            assert (run_dir / rel).is_file(), rel
    history = [json.loads(line) for line in (mesh_run.report_dir / "history.jsonl").read_text().splitlines()]
    assert sorted(r["nodeid"] for r in history) == [ABORT_NODE, DELAY_NODE]
    assert {r["run_id"] for r in history} == {run_dir.name}
    assert {r["outcome"] for r in history} == {"passed"}
    # The mesh went away with its session: it unregistered itself, no dead mesh is left to sweep.
    assert list((mesh_run.runtime / "registry").glob("*.json")) == []
    mesh_run.result.stdout.fnmatch_lines(["resilience score: 100.0 / 100", f"report: {run_dir / 'index.html'}"])


def test_summary_validates_and_describes_both_tests(mesh_run: MeshRun) -> None:
    summary = mesh_run.summary  # validated against the schema when read
    run = summary["run"]
    assert run["partial"] is False and run["partial_reason"] == ""
    assert run["exitstatus"] == 0 and run["finished"] is not None and run["duration_s"] > 0
    assert run["backend"] == "local" and Path(run["topology"]) == SDC
    assert run["seed"] == 11 and run["time_scale"] == TIME_SCALE and run["run_id"] == mesh_run.run_dir.name
    assert run["replay"].endswith(f"--clover-seed=11 --clover-time-scale={TIME_SCALE:g}")
    assert summary["totals"]["tests"] == 2 and summary["totals"]["passed"] == 2
    assert summary["score"]["value"] == 100.0 and summary["score"]["tests_scored"] == 2
    assert set(mesh_run.tests) == {DELAY_NODE, ABORT_NODE}

    for nodeid, fault_kind, target in ((DELAY_NODE, "delay", "http-lb"), (ABORT_NODE, "abort", "clover-server")):
        test = mesh_run.tests[nodeid]
        assert test["outcome"] == "passed" and test["message"] == "" and test["score_fraction"] == 1.0
        assert test["load"]["mode"] == "open" and test["load"]["rate_rps"] == RATE and test["load"]["windows"] > 5
        assert list(test["phases"]) == PHASES
        for name, phase in test["phases"].items():
            assert phase["requests"] > 0, (nodeid, name)
            assert phase["start_s"] is not None and phase["end_s"] > phase["start_s"], (nodeid, name)
        starts = [test["phases"][p]["start_s"] for p in PHASES]
        assert starts == sorted(starts)
        (fault,) = test["faults"]
        assert fault["kind"] == fault_kind and fault["target"] == target and fault["verified"] is True, fault
        assert fault["detail"] and fault["end_s"] > fault["start_s"]
        assert {(c["phase"], c["metric"]) for c in test["slo"]} >= {
            ("baseline", "max_error_rate"),
            ("fault", "max_error_rate"),
            ("recovery", "max_error_rate"),
        }
        for check in test["slo"]:
            assert check["ok"] and check["window"] == "", check
            # Judged on the very numbers the summary gives for the phase.
            phase = test["phases"][check["phase"]]
            metric = "error_rate" if check["metric"] == "max_error_rate" else check["metric"]
            assert check["observed"] == pytest.approx(phase[metric]), (check, phase)

    delay = mesh_run.tests[DELAY_NODE]
    assert {(c["phase"], c["metric"]) for c in delay["slo"]} >= {("fault", "p99_ms"), ("baseline", "p50_ms")}
    # Every request of the fault phase waited the 300 ms; the baseline's did not.
    assert 300.0 <= delay["phases"]["fault"]["p50_ms"] < 450.0, delay["phases"]["fault"]
    assert delay["phases"]["fault"]["max_ms"] >= 300.0
    assert delay["phases"]["baseline"]["p50_ms"] < 150.0
    assert delay["phases"]["fault"]["errors"] == 0
    # The median is back under 150 ms in the first recovery window, or the second at the latest.
    assert delay["recovery_s"]["fault"] is not None and delay["recovery_s"]["fault"] < 2.5, delay["recovery_s"]
    abort = mesh_run.tests[ABORT_NODE]
    assert set(abort["phases"]["fault"]["status_counts"]) == {"200", "503"}


# --------------------------------------------------------------------------- the time series plot


@pytest.mark.parametrize("nodeid", [DELAY_NODE, ABORT_NODE])
def test_the_time_series_fault_window_and_phases_are_the_ones_the_summary_and_events_give(
    mesh_run: MeshRun, nodeid: str
) -> None:
    test = mesh_run.tests[nodeid]
    fig = mesh_run.figures(nodeid)["timeseries"]
    windows = mesh_run.result_json(nodeid)["windows"]
    assert fig.clover_x_unit == "s" and fig.clover_x_scale == 1.0
    assert fig.clover_t0 == pytest.approx(float(windows[0]["start"]), abs=1e-9), "x = 0 is the first window's start"

    faults = [s for s in fig.clover_spans if s["kind"] == "fault"]
    phases = [s for s in fig.clover_spans if s["kind"] == "phase"]
    (summary_fault,) = test["faults"]
    (span,) = faults
    assert span["name"] == summary_fault["description"] and span["id"] == summary_fault["id"]
    assert span["verified"] is True
    assert abs(span["start_s"] - summary_fault["start_s"]) <= 1e-3, (span, summary_fault)
    assert abs(span["end_s"] - summary_fault["end_s"]) <= 1e-3, (span, summary_fault)

    # The same instants as the events streamed while the run went (events.ndjson, an independent record).
    streamed = {
        e["kind"]: float(e["time"]) - fig.clover_t0
        for e in _events(mesh_run.run_dir)
        if e["test"] == nodeid and e.get("id") == span["id"] and e["kind"] in ("fault-start", "fault-end")
    }
    assert streamed["fault-start"] == pytest.approx(span["start_s"], abs=1e-6)
    assert streamed["fault-end"] == pytest.approx(span["end_s"], abs=1e-6)

    # What is drawn: on each of the three panels, a hatched span with the fault's id over exactly that interval.
    drawn = [
        patch
        for ax in fig.axes
        for patch in ax.patches
        if patch.get_gid() == f"fault:{span['id']}" and hasattr(patch, "get_width")
    ]
    assert len(drawn) == 3, [ax.get_ylabel() for ax in fig.axes]
    for patch in drawn:
        assert patch.get_x() == pytest.approx(span["start_s"], abs=1e-9)
        assert patch.get_x() + patch.get_width() == pytest.approx(span["end_s"], abs=1e-9)

    # Phase bands: in order, where the load generator's windows put each phase, and drawn on every panel. The band
    # is drawn from the timeline's phase events, the summary's phase from the windows the generator cut when the
    # command reached it: a few ms later on an idle machine, 60 ms and more seen on a busy one (2 cores, another
    # suite running). A quarter of a window still tells a phase drawn one window off.
    assert [p["name"] for p in phases] == PHASES
    for band in phases:
        summary_phase = test["phases"][band["name"]]
        assert abs(band["start_s"] - summary_phase["start_s"]) <= PHASE_SLACK_S, (band, summary_phase)
        assert abs(band["end_s"] - summary_phase["end_s"]) <= PHASE_SLACK_S, (band, summary_phase)
        gids = [c.get_gid() for ax in fig.axes[1:] for c in ax.collections if c.get_gid() == f"phase:{band['name']}"]
        assert len(gids) == 3, band
    # The fault was in force for the whole fault phase, and for none of the others.
    by_name = {p["name"]: p for p in phases}
    assert span["start_s"] <= by_name["fault"]["start_s"] and span["end_s"] >= by_name["fault"]["end_s"]
    assert span["start_s"] >= by_name["baseline"]["end_s"] and span["end_s"] <= by_name["recovery"]["start_s"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, data[:8]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.parametrize("nodeid", [DELAY_NODE, ABORT_NODE])
def test_the_pngs_are_valid_images_of_those_figures(mesh_run: MeshRun, nodeid: str) -> None:
    from PIL import Image

    figures = mesh_run.figures(nodeid)
    assert set(figures) == set(build.PLOT_FILES)
    for name, file in build.PLOT_FILES.items():
        path = mesh_run.folder(nodeid) / file
        data = path.read_bytes()
        assert len(data) > 20_000, f"{file}: only {len(data)} bytes"
        size = _png_size(data)
        fig = figures[name]
        expected = tuple(round(v) for v in fig.get_size_inches() * fig.dpi)
        assert size == expected, f"{file}: {size} px, the figure is {expected} px"
        with Image.open(path) as image:
            image.load()  # decodes every row: a truncated or corrupt file raises
            assert image.size == size
            extrema: Any = image.convert("L").getextrema()  # (low, high): one band
            assert extrema[1] - extrema[0] > 100, f"{file} is blank"
    assert figures["timeseries"].get_size_inches()[0] == pytest.approx(11.0)


# --------------------------------------------------------------------------- error rate and per-hop breakdown


def test_the_abort_plot_shows_the_injected_error_rate_in_the_fault_phase_only(mesh_run: MeshRun) -> None:
    windows = mesh_run.result_json(ABORT_NODE)["windows"]
    fig = mesh_run.figures(ABORT_NODE)["timeseries"]
    t0 = fig.clover_t0
    (line,) = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "error rate"]
    xs, ys = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)

    totals: dict[str | None, list[int]] = {}
    for w in windows:
        requests, errors = int(w["requests"]), int(w["errors"])
        acc = totals.setdefault(w["phase"], [0, 0])
        acc[0] += requests
        acc[1] += errors
        # The plotted step of this window is its error rate, in %.
        (at,) = np.flatnonzero(np.isclose(xs, float(w["start"]) - t0, rtol=0, atol=1e-9))
        if requests:
            assert ys[at] == pytest.approx(100.0 * errors / requests), w
        else:
            assert math.isnan(ys[at]), w

    requests, errors = totals["fault"]
    low, high = binomial_interval(requests, ABORT_PERCENT / 100)
    assert requests >= 100 and low <= errors <= high, (
        f"{errors} of {requests} aborted; the 99.9 % interval for {ABORT_PERCENT} % is {low:.0f}..{high:.0f}"
    )
    summary_fault = mesh_run.tests[ABORT_NODE]["phases"]["fault"]
    assert (summary_fault["requests"], summary_fault["errors"]) == (requests, errors)
    assert summary_fault["status_counts"]["503"] == errors
    # No abort was in force before the fault phase: no error at all.
    requests, errors = totals["baseline"]
    assert requests >= 40 and errors == 0, totals["baseline"]
    # Nor after it: requests count where they were sent, and the revert (between the phases, in no phase) was in
    # force in every Envoy before the recovery started.
    requests, errors = totals["recovery"]
    assert requests >= 60 and errors == 0, totals["recovery"]
    assert set(mesh_run.tests[ABORT_NODE]["phases"]["recovery"]["status_counts"]) <= {"200", "503"}


def _segment_means(mesh_run: MeshRun, nodeid: str) -> tuple[Any, dict[str, dict[str, float]]]:
    hops = assign_phases(load_hops(mesh_run.folder(nodeid) / "hops.csv"), mesh_run.timeline(nodeid))
    means: dict[str, dict[str, float]] = {}
    for (phase, segment), value in hops.groupby(["phase", "segment"])["ms"].mean().items():
        means.setdefault(str(phase), {})[str(segment)] = float(value)
    return hops, means


def test_the_per_hop_breakdown_puts_the_delay_on_the_proxy_to_lb_hop(mesh_run: MeshRun) -> None:
    hops, means = _segment_means(mesh_run, DELAY_NODE)
    phases = mesh_run.tests[DELAY_NODE]["phases"]
    for phase in PHASES:
        assert set(means[phase]) == SEGMENTS, (phase, sorted(means[phase]))
        # Every request entering in the phase is there (all are sampled below 3 000 per run).
        sampled = hops[hops["phase"] == phase]["request_id"].nunique()
        expected = RATE * (phases[phase]["end_s"] - phases[phase]["start_s"])
        assert sampled >= 0.8 * expected, (phase, sampled, expected)
    fault = means["fault"]
    assert 280.0 <= fault[DELAYED] <= 450.0, fault
    assert all(ms < 60.0 for segment, ms in fault.items() if segment != DELAYED), fault
    assert all(ms < 60.0 for ms in means["baseline"].values()), means["baseline"]
    # Requests are assigned to the phase they entered in, and the delay was reverted before recovery started.
    assert all(ms < 60.0 for ms in means["recovery"].values()), means["recovery"]
    delayed = hops[(hops["phase"] == "fault") & (hops["segment"] == DELAYED)]
    assert (delayed["flags"] == "DI").mean() >= 0.95, delayed["flags"].value_counts()

    # hops.png draws those means: the bar of each segment in each phase is as long as its mean.
    fig = mesh_run.figures(DELAY_NODE)["hops"]
    bars = {p.get_gid(): p for p in fig.axes[0].patches if str(p.get_gid() or "").startswith("hop:")}
    for phase in PHASES:
        for segment, ms in means[phase].items():
            assert bars[f"hop:{phase}:{segment}"].get_width() == pytest.approx(ms, rel=1e-9), (phase, segment)
    widest = max(bars.values(), key=lambda p: p.get_width())
    assert widest.get_gid() == f"hop:fault:{DELAYED}"


# --------------------------------------------------------------------------- run-level windows and events


def test_run_windows_csv_holds_every_window_of_both_tests(mesh_run: MeshRun) -> None:
    import pandas

    text = (mesh_run.run_dir / "windows.csv").read_text()
    assert text.splitlines()[0] == WINDOW_COLUMNS
    frame = pandas.read_csv(mesh_run.run_dir / "windows.csv")
    assert set(frame["test"]) == {DELAY_NODE, ABORT_NODE}
    for nodeid, test in mesh_run.tests.items():
        rows = frame[frame["test"] == nodeid]
        assert len(rows) == test["load"]["windows"] == len(mesh_run.result_json(nodeid)["windows"])
        assert (rows["end"] > rows["start"]).all() and rows["start"].is_monotonic_increasing
        # Unix times to the µs, the same as the windows the test saved.
        saved = mesh_run.result_json(nodeid)["windows"]
        assert rows["start"].to_numpy() == pytest.approx([w["start"] for w in saved], abs=1e-6)
        assert rows["end"].to_numpy() == pytest.approx([w["end"] for w in saved], abs=1e-6)
        assert set(PHASES) <= set(rows["phase"].dropna())
        for phase in PHASES:
            assert int(rows[rows["phase"] == phase]["requests"].sum()) == test["phases"][phase]["requests"], phase
            assert int(rows[rows["phase"] == phase]["errors"].sum()) == test["phases"][phase]["errors"], phase


def test_events_ndjson_has_both_tests_phases_and_faults_in_time_order(mesh_run: MeshRun) -> None:
    events = _events(mesh_run.run_dir)
    times = [float(e["time"]) for e in events]
    assert times == sorted(times)
    interesting = ("phase-start", "phase-end", "fault-start", "fault-end")
    for nodeid, test in mesh_run.tests.items():
        mine = [e for e in events if e["test"] == nodeid]
        (fault,) = test["faults"]
        sequence = [(e["kind"], e["name"]) for e in mine if e["kind"] in interesting]
        assert sequence == [
            ("phase-start", "baseline"),
            ("phase-end", "baseline"),
            ("fault-start", fault["description"]),
            ("phase-start", "fault"),
            ("phase-end", "fault"),
            ("fault-end", fault["description"]),
            ("phase-start", "recovery"),
            ("phase-end", "recovery"),
        ]
        assert [e["kind"] for e in mine].count("fault-verified") == 1
        by_kind = {e["kind"]: float(e["time"]) for e in mine if e["kind"] in ("fault-start", "fault-end")}
        assert by_kind["fault-start"] == pytest.approx(fault["start"], abs=1e-6)
        assert by_kind["fault-end"] == pytest.approx(fault["end"], abs=1e-6)
    # The tests ran one after the other.
    last_delay = max(float(e["time"]) for e in events if e["test"] == DELAY_NODE)
    first_abort = min(float(e["time"]) for e in events if e["test"] == ABORT_NODE)
    assert last_delay < first_abort


# --------------------------------------------------------------------------- a run killed midway


def _gone(proc: psutil.Process) -> bool:
    """The process we saw is no more: exited (a zombie nobody reaped counts as exited) or its PID reused."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE or not proc.is_running()
    except psutil.NoSuchProcess:
        return True


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:150]}"
    except psutil.Error:
        return f"{proc.pid} ?"


def _listening_on(block: str) -> list[str]:
    return [
        f"{c.laddr.ip}:{c.laddr.port} (pid {c.pid})"
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and str(c.laddr.ip).startswith(block + ".")
    ]


@pytest.fixture
def killed_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A project for the killed run, with its own mesh registry; whatever the test leaves is swept after it."""
    pytester.makeini(_ini())
    pytester.makepyfile(test_killed=KILLED_TESTS)
    runtime = pytester.path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("CLOVER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    yield pytester
    sweep(force=True)  # a mesh the test could not see die: stopped by PID, its state removed


def test_a_killed_run_leaves_its_completed_test_for_a_partial_report_and_no_process(
    killed_project: pytest.Pytester,
) -> None:
    pytester = killed_project
    path = pytester.path
    report_dir = path / "reports"
    basetemp = path / "basetemp"
    log = (path / "inner.log").open("w", encoding="utf-8")
    proc = pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--basetemp={basetemp}",
            *QUIET,
            f"--clover-report-dir={report_dir}",
            f"--clover-time-scale={TIME_SCALE}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def inner_log() -> str:
            return (path / "inner.log").read_text(errors="replace")[-4000:]

        def run_dir() -> Path | None:
            found = [p for p in report_dir.glob("[0-9]*-*") if p.is_dir()] if report_dir.is_dir() else []
            return found[0] if found else None

        def second_test_in_its_fault() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the inner run ended (code {proc.returncode}) before it was killed:\n{inner_log()}"
                )
            folder = run_dir()
            if folder is None or not (folder / "events.ndjson").is_file():
                return False
            return any(e["test"].endswith("::test_second") and e["kind"] == "fault-start" for e in _events(folder))

        wait_for(second_test_in_its_fault, timeout=90, interval=0.1, what="the second test's fault to start")
        folder = run_dir()
        assert folder is not None
        state = MeshState(basetemp / "clover-mesh-main")
        mesh = state.read_mesh()
        owner = state.owner()
        recorded = state.read_pids()
        assert owner is not None and owner.alive() and mesh["status"] == "running"
        assert {r.role for r in recorded} >= {"envoy"} and all(r.alive() for r in recorded), recorded
        # Everything the inner pytest started: the supervisor and its pods' processes, the load generator.
        descendants = {p: _describe(p) for p in psutil.Process(proc.pid).children(recursive=True)}
        assert {owner.pid} | {r.pid for r in recorded} <= {p.pid for p in descendants}
        assert any("pytest_clover.load.worker" in text for text in descendants.values()), descendants
        assert _listening_on(mesh["block"]), "the mesh listens on its loopback block while it runs"

        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()

    # Nothing of the killed run survives it: the supervisor and every app and Envoy die with their parent
    # (PR_SET_PDEATHSIG); the load generator stops when its stdin closes.
    def survivors() -> list[str]:
        return [text for p, text in descendants.items() if not _gone(p)]

    wait_for(lambda: not survivors(), timeout=20, interval=0.1, what="every process of the killed run to exit")
    assert not owner.alive() and not any(r.alive() for r in recorded)
    assert _listening_on(mesh["block"]) == []
    # Its state is left for `clover cleanup`, which finds nothing alive to kill.
    swept = sweep()
    assert [(s.state_dir, s.killed, s.status) for s in swept] == [(str(state.root), 0, "swept")]
    assert not state.root.exists() and list(registry_dir().glob("*.json")) == []

    # The completed test is on disk; the killed one only as interrupted.
    first = json.loads((folder / "test_killed.py__test_first" / "test.json").read_text())
    assert first["verdict"] == "passed"
    assert (folder / "test_killed.py__test_first" / "result.json").is_file()
    assert not (folder / "summary.json").exists() and not (report_dir / "latest").exists()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", "report", str(folder)],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PARTIAL: the run did not finish" in done.stdout, done.stdout
    summary = _summary(folder)
    assert summary["run"]["partial"] is True and "did not finish" in summary["run"]["partial_reason"]
    assert summary["run"]["finished"] is None
    outcomes = {t["nodeid"]: t for t in summary["tests"]}
    assert set(outcomes) == {"test_killed.py::test_first", "test_killed.py::test_second"}
    completed = outcomes["test_killed.py::test_first"]
    assert completed["outcome"] == "passed" and list(completed["phases"]) == ["baseline"]
    assert completed["phases"]["baseline"]["requests"] > 0
    assert (folder / completed["files"]["timeseries"]).read_bytes()[:8] == PNG_SIGNATURE
    assert outcomes["test_killed.py::test_second"]["outcome"] == "interrupted"
    assert summary["totals"]["passed"] == 1 and summary["totals"]["interrupted"] == 1
    page = (folder / "index.html").read_text()
    assert "Partial report." in page and "test_killed.py::test_first" in page

    # The delay the killed test had in force is still open in its ledger; the next session sweeps it (its mesh
    # died with the run, so there is nothing left to revert).
    ledgers = list((report_dir / ".clover").glob("*.jsonl"))
    assert len(ledgers) == 1 and '"op": "open"' in ledgers[0].read_text()
    (path / "test_killed.py").unlink()
    pytester.makepyfile(test_next="def test_nothing():\n    pass\n")
    nxt = pytester.runpytest_subprocess(*QUIET, f"--clover-report-dir={report_dir}", timeout=120)
    nxt.assert_outcomes(passed=1)
    nxt.stdout.fnmatch_lines(
        [
            "clover: swept 1 fault left open by a killed run:",
            "  delay 100ms 100% on http-lb: its local mesh at * no longer runs; nothing left to revert",
        ]
    )
    assert list((report_dir / ".clover").glob("*.jsonl*")) == []
