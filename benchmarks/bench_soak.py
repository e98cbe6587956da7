"""A real soak, measured: plugin memory growth per hour, disk used per hour, and the report build (issue 14).

``python benchmarks/bench_soak.py [--duration 1h] [--plan faults/schedules/nightly.yaml] [--seed 1]`` runs the
suite ``suites/test_09_soak.py`` in a child pytest on the embedded mesh — by default the nightly plan (500
requests/s, a kill and a 500 ms delay about every 5 minutes each) for one hour — and samples, every
``--sample`` seconds, the pytest process's RSS (the plugin: the load generator and the mesh are other processes)
and the disk the run uses (its report folder, and the mesh's state folder with every pod's logs).

Printed: RSS growth per hour (a least-squares slope over the samples after the first ten minutes, when the
load result's row list and the guardrails' lookback are still filling; target ≤ 10 MB/h), disk used per hour
(reported), the events and their verdicts, and the time ``clover report`` takes to rebuild this run's report.
The report build for 8 hours of data is measured by ``bench_report.py`` (a synthetic night).

It takes as long as ``--duration``: ``run_all.py`` runs it only when named (``python benchmarks/run_all.py
bench_soak``), never in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _common import ROOT, isolated_runtime, report  # type: ignore[import-not-found]

WARMUP_S = 600.0
"""Samples before this (seconds into the run) are left out of the growth slope: memory that fills up to a bound."""


def _duration(text: str) -> float:
    from pytest_clover.soak.schedule import parse_duration

    return parse_duration(text, file="<command line>", obj="option", field="--duration")


def _disk(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _keep_mesh_logs(runtime: Path, keep: Path) -> None:
    """Copy the mesh supervisor's log (and its rotated copy) under ``keep/mesh``: the mesh's state folder goes with
    the session, and a soak that went wrong at minute 30 is explained by what its kubelet and xDS server logged."""
    target = keep / "mesh"
    target.mkdir(parents=True, exist_ok=True)
    for path in runtime.rglob("supervisor.log*"):
        with contextlib.suppress(OSError):
            shutil.copy(path, target / path.name)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (y per unit of x); 0 with fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="1h", help="wall time of the soak (default 1h)")
    parser.add_argument("--plan", default=str(ROOT / "faults" / "schedules" / "nightly.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", default="1")
    parser.add_argument("--checkpoint", default="5m")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument(
        "--no-guardrails",
        action="store_true",
        help="run the plan without its guardrails, so an overloaded machine cannot cut the measurement short",
    )
    parser.add_argument("--keep", help="copy the run's report folder and pytest's log here at the end")
    args = parser.parse_args()
    duration_s = _duration(args.duration)
    plan = Path(args.plan).resolve()
    warmup = min(WARMUP_S, duration_s / 3)
    with isolated_runtime("soak") as runtime:
        if args.no_guardrails:
            import yaml

            data = yaml.safe_load(plan.read_text(encoding="utf-8"))
            data.pop("guardrails", None)
            plan = runtime / plan.name
            plan.write_text(yaml.safe_dump(data), encoding="utf-8")
        reports = runtime / "reports"
        basetemp = runtime / "basetemp"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "suites" / "test_09_soak.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            f"--basetemp={basetemp}",
            f"--clover-soak={args.duration}",
            f"--clover-soak-plan={plan}",
            f"--clover-seed={args.seed}",
            f"--clover-time-scale={args.time_scale}",
            f"--clover-checkpoint={args.checkpoint}",
            f"--clover-report-dir={reports}",
        ]
        print("running:", " ".join(command), flush=True)
        log_path = runtime / "pytest.log"
        samples: list[tuple[float, float, int]] = []  # seconds into the run, RSS MB, disk bytes
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            started = time.monotonic()
            started_unix = time.time()
            try:
                watched = psutil.Process(proc.pid)
                while proc.poll() is None:
                    try:
                        rss = watched.memory_info().rss / 1e6
                    except psutil.Error:
                        break
                    at = time.monotonic() - started
                    disk = _disk(runtime)
                    samples.append((at, rss, disk))
                    print(f"{at:7.0f} s  pytest RSS {rss:7.1f} MB  disk {disk / 1e6:8.1f} MB", flush=True)
                    if args.keep:
                        _keep_mesh_logs(runtime, Path(args.keep))
                    try:
                        proc.wait(timeout=args.sample)
                    except subprocess.TimeoutExpired:
                        pass
            finally:
                if proc.poll() is None:
                    proc.terminate()  # SIGTERM: pytest-clover reverts, stops the load, writes the report
                    try:
                        proc.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        elapsed = time.monotonic() - started
        text = log_path.read_text(encoding="utf-8")
        print("\n".join(line for line in text.splitlines() if line.startswith("E ")), flush=True)
        print(text[-3000:], flush=True)
        runs = [p for p in reports.glob("[0-9]*-*") if p.is_dir() and not p.is_symlink()]
        events: list[dict[str, object]] = []
        build_s = float("nan")
        soak_end = elapsed  # seconds into the benchmark when the soak's own loop ended (its report build after it)
        if runs:
            soak_files = list(runs[0].glob("*/soak.json"))
            if soak_files:
                soak = json.loads(soak_files[0].read_text(encoding="utf-8"))
                events = soak["events"]
                if soak.get("started") and soak.get("elapsed_s"):
                    soak_end = float(soak["started"]) + float(soak["elapsed_s"]) - started_unix
            t0 = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "pytest_clover.cli", "report", str(runs[0])], cwd=ROOT, check=False
            )
            build_s = time.monotonic() - t0
        # The samples while the soak ran, after the warm-up: not the end of the session (the final report build
        # imports matplotlib into pytest's process, a one-off step of ~25 MB that is no growth per hour).
        steady = [(at / 3600.0, rss) for at, rss, _ in samples if warmup <= at <= soak_end]
        growth = _slope(steady)
        disk_points = [(at / 3600.0, disk / 1e6) for at, _, disk in samples if warmup <= at <= soak_end]
        disk_rate = _slope(disk_points)
        verdicts: dict[str, int] = {}
        for event in events:
            verdicts[str(event["verdict"])] = verdicts.get(str(event["verdict"]), 0) + 1
        peak = max((rss for _, rss, _ in samples), default=float("nan"))
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(log_path, keep / "pytest.log")
            for run in runs:
                shutil.copytree(run, keep / run.name, dirs_exist_ok=True)
        print(
            f"soak of {elapsed / 60:.1f} min, exit {proc.returncode}: {len(events)} events {verdicts}; "
            f"pytest RSS peak {peak:.1f} MB, growth {growth:+.1f} MB/h after the first {warmup / 60:.0f} min; "
            f"disk {disk_rate:.1f} MB/h (report + mesh logs), {samples[-1][2] / 1e6 if samples else 0:.1f} MB at "
            f"the end; clover report rebuilt the run in {build_s:.1f} s",
            flush=True,
        )
        report(
            "bench_soak",
            f"plugin RSS growth {growth:+.2f} MB/h (target ≤ 10 MB/h)",
            figure=max(growth, 0.0),
            unit="MB/h",
            target=10.0,
            disk_mb_per_h=round(disk_rate, 1),
            report_build_s=round(build_s, 2),
            events=len(events),
            verdicts=verdicts,
            exit_code=proc.returncode,
            minutes=round(elapsed / 60, 1),
        )
    # 0: the soak passed, 1: it failed (events, guardrail: still measured); anything else: it did not run.
    return 0 if proc.returncode in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
