"""Report build: 8 hours of 1-second windows for 10 tests, built in ≤ 30 s (on 2 cores); and an 8-hour soak
with ~200 fault events, built in ≤ 10 s (issue 14).

How: a synthetic run folder in the exact on-disk layout the plugin writes
(:func:`pytest_clover.report.sample.write_sample_run`, untimed): 10 tests, each a 2 h baseline, 4 h delay fault
and 2 h recovery: 28 800 1-s windows, three phase HdrHistograms and 3 000 sampled requests' hops per test.
Then, timed, ``build_report(run_dir)`` in a fresh interpreter (cold: the interpreter, pandas and matplotlib
imports in the build and its plot workers are part of what a user pays), and the same through the CLI,
``clover report <run_dir>``, in another fresh process.

The figure is the wall time of that first process, from start to exit. Also printed: the build's own stages
(``BuiltReport.stages``: the plots render in worker processes while the main process reads the tests and
writes ``windows.csv``, so they overlap), the CPU time of the process tree (the build, the forkserver and the
plot workers), its peak memory (PSS summed over the tree: pages shared between processes counted once), the
size of ``index.html`` and ``windows.csv``, and the load average: other work on the machine shares its 2 cores,
so the wall time depends on it; CPU time / cores is the least the build could take with nothing else running.

The soak case: one soak test (:class:`pytest_clover.report.sample.SampleSoak`: 8 h at 500 requests/s, 200
events — kills, delays, aborts, each judged — its ``soak.json`` with the burn-down, and 28 800 windows in the
phases quiet, fault and recovery), built the same way, in a fresh process; the figure is its wall time, against
the issue's 10 s for a report of 8 h of data. It runs first and prints its own result line; ``run_all.py``
tabulates the last one a benchmark prints (the 10-test case).

Run: ``python benchmarks/bench_report.py`` (or ``python benchmarks/run_all.py report``); ``… soak`` or ``… tests``
for one case.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks._common import ROOT, report
from pytest_clover.report.sample import SampleSoak, write_sample_run

TARGET_S = 30.0
SOAK_TARGET_S = 10.0
SOAK = SampleSoak(seconds=8 * 3600.0, events=200, rate=500.0)
TESTS = 10
SECONDS = (7200.0, 14400.0, 7200.0)  # baseline 2 h, fault 4 h, recovery 2 h: 8 h of 1-s windows
HOPS = 3000  # sampled requests per test in hops.csv: what a real load run keeps at most
WINDOWS = int(sum(SECONDS))
MB = 1024.0 * 1024.0

# Run as `python -c`: no __main__ file for the forkserver's workers to re-import.
BUILD = """
import json, resource, sys
from pathlib import Path
from pytest_clover.report.build import build_report
built = build_report(Path(sys.argv[1]))
print(json.dumps({
    "build_s": built.seconds,
    "stages": getattr(built, "stages", {}),
    "problems": built.problems,
    "windows": [t["load"]["windows"] for t in built.summary["tests"]],
    "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class TreeMonitor:
    """A process and all its descendants, sampled on a thread until :meth:`stop`: CPU time (every 50 ms: each
    process's last sample, so up to 50 ms of each process's end is missed) and peak memory (every 250 ms, as
    reading it costs ~2 ms per process: summed over the processes alive at a sample; RSS, and PSS, which counts
    pages shared between them once, e.g. the modules the forkserver imported for its workers)."""

    def __init__(self, pid: int, interval: float = 0.05, memory_every: int = 5) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.memory_every = memory_every
        self.peak_rss = self.peak_pss = self.peak_single_rss = 0.0
        self.peak_processes = 0
        self._cpu: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def cpu(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                procs = [self.root, *self.root.children(recursive=True)]
                rss = pss = single = 0.0
                for proc in procs:
                    with contextlib.suppress(psutil.Error), proc.oneshot():
                        times = proc.cpu_times()
                        self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
                        if tick % self.memory_every == 0:
                            info = proc.memory_full_info()
                            rss += info.rss
                            pss += getattr(info, "pss", info.rss)
                            single = max(single, info.rss)
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_pss = max(self.peak_pss, pss)
                self.peak_single_rss = max(self.peak_single_rss, single)
                self.peak_processes = max(self.peak_processes, len(procs))
            tick += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, TreeMonitor, str]:
    """Run ``argv`` in a new session; (wall s, its process tree's CPU time and memory peaks, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True
    )
    monitor = TreeMonitor(proc.pid)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        monitor.stop()
        if proc.poll() is None:  # interrupted: take the build's workers down with it (its own session)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} … exited with {proc.returncode}; output:\n{out}")
    return wall, monitor, out


def clover_command() -> list[str]:
    script = Path(sys.executable).with_name("clover")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pytest_clover.cli"]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def soak_case() -> None:
    """The 8-h soak with 200 events: its report built in a fresh process, against :data:`SOAK_TARGET_S`."""
    tmp = Path(tempfile.mkdtemp(prefix="clover-bench-report-soak-"))
    try:
        run_dir = tmp / "20261121-020000-1"
        start = time.perf_counter()
        write_sample_run(run_dir, tests=0, soak=SOAK)
        size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        windows = int(SOAK.seconds)
        print(
            f"  soak: generated 1 test of {windows} windows ({SOAK.seconds / 3600:.0f} h at 1 s) and {SOAK.events} "
            f"events in {time.perf_counter() - start:.1f} s (untimed): {size / MB:.0f} MB; load average {load()}",
            flush=True,
        )
        wall, tree, out = timed_process([sys.executable, "-c", BUILD, str(run_dir)])
        load_after = load()
        child: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if child["problems"]:
            raise RuntimeError(f"the soak report has problems: {child['problems']}")
        if child["windows"] != [windows]:
            raise RuntimeError(f"summary.json counts windows {child['windows']}, expected [{windows}]")
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        (test,) = summary["tests"]
        events = test["soak"]["events"]["total"]
        if events != SOAK.events or not (run_dir / test["files"]["soak"]).is_file():
            raise RuntimeError(f"the soak report has {events} events (expected {SOAK.events}) or no soak.png")
        index = run_dir / "index.html"
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in child["stages"].items())
        print(
            f"  soak: build_report (fresh process): {wall:.2f} s wall, {child['build_s']:.2f} s in build_report; "
            f"stages: {stages}; CPU {tree.cpu:.1f} s; peak {tree.peak_pss / MB:.0f} MB PSS; index.html "
            f"{index.stat().st_size / 1024:.0f} kB, soak.png {(run_dir / test['files']['soak']).stat().st_size / 1024:.0f} kB, "
            f"summary.json {(run_dir / 'summary.json').stat().st_size / 1024:.0f} kB; load average after {load_after}",
            flush=True,
        )
        report(
            "report-soak",
            f"report: an 8-h soak with {SOAK.events} events built in {wall:.1f} s — target {SOAK_TARGET_S:.0f} s → "
            f"ratio {wall / SOAK_TARGET_S:.2f}; CPU {tree.cpu:.1f} s; load average {load_after}",
            figure=wall,
            unit="s",
            target=SOAK_TARGET_S,
            cpu=tree.cpu,
            stages=child["stages"],
            peak_pss_mb=tree.peak_pss / MB,
            index_kb=index.stat().st_size / 1024,
            loadavg=load_after,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tests_case() -> None:
    """10 tests of 8 h each: their report built in a fresh process, then by ``clover report``."""
    tmp = Path(tempfile.mkdtemp(prefix="clover-bench-report-"))
    try:
        run_dir = tmp / "20261121-120000-1"
        start = time.perf_counter()
        write_sample_run(run_dir, tests=TESTS, seconds=SECONDS, hops=HOPS)
        size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        print(
            f"  generated {TESTS} tests × {WINDOWS} windows ({WINDOWS / 3600:.0f} h at 1 s) in "
            f"{time.perf_counter() - start:.1f} s (untimed): {size / MB:.0f} MB",
            flush=True,
        )

        print(f"  load average before the build: {load()}", flush=True)
        wall, tree, out = timed_process([sys.executable, "-c", BUILD, str(run_dir)])
        load_after = load()
        child: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if child["problems"]:
            raise RuntimeError(f"the report has problems: {child['problems']}")
        if child["windows"] != [WINDOWS] * TESTS:
            raise RuntimeError(f"summary.json counts windows {child['windows']}, expected {TESTS} × {WINDOWS}")
        index_mb = (run_dir / "index.html").stat().st_size / MB
        csv_mb = (run_dir / "windows.csv").stat().st_size / MB
        with (run_dir / "windows.csv").open(encoding="utf-8") as fh:
            csv_rows = sum(1 for _ in fh) - 1
        if csv_rows != TESTS * WINDOWS:
            raise RuntimeError(f"windows.csv has {csv_rows} rows, expected {TESTS * WINDOWS}")
        cores = os.cpu_count() or 1
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in child["stages"].items()) or "(not reported)"
        print(
            f"  build_report (fresh process): {wall:.2f} s wall, of which {child['build_s']:.2f} s in build_report "
            f"(the rest: interpreter start, import, exit); load average after {load_after}",
            flush=True,
        )
        print(f"  stages: {stages}", flush=True)
        print(
            f"  CPU: {tree.cpu:.1f} s over the process tree → {tree.cpu / cores:.1f} s on {cores} cores: the least "
            f"wall time this build can take on this machine with nothing else running",
            flush=True,
        )
        print(
            f"  memory: peak {tree.peak_pss / MB:.0f} MB PSS ({tree.peak_rss / MB:.0f} MB RSS summed) over "
            f"{tree.peak_processes} processes; largest process {tree.peak_single_rss / MB:.0f} MB RSS; the build "
            f"process {child['main_rss_mb']:.0f} MB",
            flush=True,
        )
        print(f"  index.html {index_mb:.1f} MB, windows.csv {csv_mb:.1f} MB ({csv_rows} rows)", flush=True)

        cli_wall, cli_tree, cli_out = timed_process([*clover_command(), "report", str(run_dir)])
        print(
            f"  clover report (fresh process, rebuilds the same folder): {cli_wall:.2f} s wall, "
            f"{cli_tree.cpu:.1f} s CPU, peak {cli_tree.peak_pss / MB:.0f} MB PSS; load average after {load()}",
            flush=True,
        )
        for line in cli_out.strip().splitlines():
            print(f"    | {line}", flush=True)
        report(
            "report",
            f"report: {TESTS} tests × 8 h of 1-s windows built in {wall:.1f} s (clover report {cli_wall:.1f} s) — "
            f"target {TARGET_S:.0f} s → ratio {wall / TARGET_S:.2f}; CPU {tree.cpu:.1f} s; peak "
            f"{tree.peak_pss / MB:.0f} MB PSS; load average {load_after}",
            figure=wall,
            unit="s",
            target=TARGET_S,
            cli=cli_wall,
            cpu=tree.cpu,
            stages=child["stages"],
            peak_pss_mb=tree.peak_pss / MB,
            peak_rss_mb=tree.peak_rss / MB,
            peak_single_rss_mb=tree.peak_single_rss / MB,
            main_rss_mb=child["main_rss_mb"],
            index_mb=index_mb,
            loadavg=load_after,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cases = sys.argv[1:] or ["soak", "tests"]
    print(f"  load average (1/5/15 min) before: {load()}; {os.cpu_count()} cores", flush=True)
    if "soak" in cases:
        soak_case()
    if "tests" in cases:
        tests_case()


if __name__ == "__main__":
    main()
