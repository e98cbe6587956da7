"""Distributed load: 2 local workers vs 1 generator, at rates one generator cannot hold, and CPU per request.

What: ``LoadGenerator(workers=2)`` (a locust master and two worker processes, the open-loop schedule split
exactly, windows merged exactly) against the single generator (``workers=1``), on the same target in one run.

How: no mesh. The target is bench_load_ceiling.py's (an aiohttp low-level server answering ``200 ok`` in its own
process on 127.0.0.1, uvloop when importable; it reports its requests and CPU time).
1. CPU per request at rates both hold (:data:`EFFICIENCY_RATES`, :data:`EFFICIENCY_SECONDS` s per run,
   :data:`ROUNDS` alternating rounds, local then distributed): the CPU time (user + system, psutil) of every
   generator process — the single child; or the master and both workers — over the phase, divided by the
   phase's requests. The ratio distributed / local (median of rounds) is printed per rate; the figure is the
   worst of them; the target is ≤ 1.1. Printed beside it, to say where a difference comes from: the master's
   own share, and one generator at half the rate (what each worker sends): on the VMs this was measured on, any
   process's CPU per request falls as its own rate rises, so two half-loaded workers cost more per request than
   one process at the full rate even if splitting cost nothing. The control that separates the two: two
   independent generators at half the rate each, side by side (no master, no split, no messages): pair / local
   is what two half-loaded processes cost, distributed / pair what the distribution itself costs. And the
   target server's own CPU per request at half the rate against the full rate: the same machine effect, on a
   process the distribution does not touch.
2. Rising open-loop rates (:data:`RATES`, :data:`STEP_SECONDS` s each), one and two workers alternating at
   each rate, until both fail twice in a row. A rate is held when ≥ 99 % of its schedule is delivered
   (responses in the phase / (rate × phase seconds)), < 1 % of the scheduled requests are late (sent > 10 ms
   after their intended time) and nothing failed. Printed per run: achieved rate, delivered share, late share,
   CPU per request, and the server's CPU use; then the highest rate each held, and the two side by side at the
   lowest rate one generator could not hold.

The machine has 2 cores, shared by the server and the generators, so two workers cannot double the ceiling
here: the comparison says how far the split goes on this box and that nothing is lost in the merge.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks._common import report
from benchmarks.bench_load_ceiling import Server, leftovers, server
from pytest_clover.errors import LoadGeneratorError
from pytest_clover.load.run import LoadGenerator

EFFICIENCY_RATES = (4000.0, 10000.0)
"""Rates both hold: CPU per request is compared at each. A process's CPU per request falls as its own rate rises:
one generator spent 116, 92 and 71 µs per request at 2 000, 5 000 and 10 000/s, and the target server (aiohttp,
code the distribution does not touch) 98 µs at 5 000/s against 62 at 10 000/s. It is not the sleeps alone: a
generator that read its answers at its next send's wake-up (kernel receive timestamps, tried and measured) slept
half as often per request (1.00 against 1.95 context switches at 2 000/s) for 0–10 % less CPU. So two workers at
half the rate each cost more per request than one process at the full rate, whatever the split costs; the
same-rate ratio, the independent pair and the server's own figures separate the two."""
EFFICIENCY_SECONDS = 8.0
ROUNDS = 3
RATES = (6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000, 22000, 24000)
STEP_SECONDS = 5.0
FAILS_TO_STOP = 2
DELIVERED_MIN = 0.99
LATE_MAX = 0.01
TARGET_CPU_RATIO = 1.1


@dataclass
class Run:
    workers: int
    rate: float
    requests: int
    seconds: float
    cpu_s: float
    """CPU (user + system) of every generator process over the phase."""
    master_cpu_s: float
    """Of which the master's (0 for one generator: it has none)."""
    late: int
    errors: int
    server_cpu_s: float
    server_requests: int
    lost: int = 0
    lost_reasons: str = ""
    """Why each lost worker was lost, as the master said."""
    stop_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def delivered(self) -> float:
        return self.rps / self.rate

    @property
    def late_share(self) -> float:
        return self.late / (self.rate * self.seconds)

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else math.nan

    @property
    def master_cpu_per_request_us(self) -> float:
        return self.master_cpu_s / self.requests * 1e6 if self.requests else math.nan

    @property
    def server_cpu_per_request_us(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else math.nan

    @property
    def server_busy(self) -> float:
        return self.server_cpu_s / self.seconds if self.seconds > 0 else math.nan

    @property
    def held(self) -> bool:
        return (
            self.delivered >= DELIVERED_MIN
            and self.late_share < LATE_MAX
            and self.errors == 0
            and not self.lost
            and not self.stop_error.startswith("during the phase")
        )

    def line(self) -> str:
        label = "1 generator" if self.workers == 1 else f"{self.workers} workers"
        text = (
            f"{label:<11} at {self.rate:6.0f}/s: {self.rps:7.0f} req/s achieved, delivered {self.delivered:.4f}, "
            f"late {self.late_share * 100:5.2f} %, errors {self.errors}; {self.cpu_per_request_us:6.1f} µs CPU per "
            f"request ({self.cpu_s / self.seconds * 100:3.0f} % of a core); server {self.server_busy * 100:3.0f} % "
            f"of a core -> {'held' if self.held else 'NOT held'}"
        )
        if self.lost:
            text += f"; {self.lost} worker(s) lost ({self.lost_reasons})"
        if self.stop_error:
            text += f"\n      stop() failed: {self.stop_error}"
        return text


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def measure(srv: Server, reports: Path, workers: int, rate: float, seconds: float) -> Run:
    gen = LoadGenerator(srv.url, reports, seed=0, workers=workers)
    run = gen.start(rate=rate)
    stop_error = ""
    try:
        pids = [run.pid, *run.worker_pids]
        served0, server_cpu0 = srv.stats()
        cpu0 = cpu_seconds(pids)
        master0 = cpu_seconds([run.pid]) if run.worker_pids else 0.0
        try:
            run.phase("load", seconds)
        except LoadGeneratorError as exc:  # e.g. a worker starved of CPU long enough to be lost
            stop_error = "during the phase: " + str(exc).splitlines()[0]
        cpu1 = cpu_seconds(pids)
        master1 = cpu_seconds([run.pid]) if run.worker_pids else 0.0
        served1, server_cpu1 = srv.stats()
    finally:
        try:
            run.stop()
        except LoadGeneratorError as exc:  # the phase's numbers stand; the failed stop is printed
            stop_error = stop_error or str(exc).splitlines()[0]
    stats = run.result.phases["load"]
    return Run(
        workers=workers,
        rate=rate,
        requests=stats.requests,
        seconds=stats.end - stats.start,
        cpu_s=cpu1 - cpu0,
        master_cpu_s=master1 - master0,
        late=stats.late,
        errors=stats.errors,
        server_cpu_s=server_cpu1 - server_cpu0,
        server_requests=served1 - served0 if min(served0, served1) >= 0 else 0,
        lost=len(run.result.generator.get("lost_workers") or []),
        lost_reasons="; ".join(str(w.get("reason")) for w in run.result.generator.get("lost_workers") or []),
        stop_error=stop_error,
    )


def measure_pair(srv: Server, reports: Path, rate: float, seconds: float) -> float:
    """Two independent generators (no master) at ``rate / 2`` each, side by side: CPU per request (µs)."""
    runs = []
    try:
        for i in range(2):  # started one by one inside the try: a failed second start still stops the first
            runs.append(LoadGenerator(srv.url, reports / f"g{i}", seed=i, workers=1).start(rate=rate / 2))
        pids = [run.pid for run in runs]
        cpu0 = cpu_seconds(pids)
        phases = [threading.Thread(target=run.phase, args=("load", seconds)) for run in runs]
        for phase in phases:
            phase.start()
        for phase in phases:
            phase.join()
        cpu1 = cpu_seconds(pids)
    finally:
        for run in runs:
            with contextlib.suppress(LoadGeneratorError):
                run.stop()
    requests = sum(run.result.phases["load"].requests for run in runs)
    return (cpu1 - cpu0) / requests * 1e6 if requests else math.nan


def main() -> None:
    efficiency: dict[float, dict[int, list[Run]]] = {rate: {1: [], 2: []} for rate in EFFICIENCY_RATES}
    half: dict[float, list[Run]] = {rate: [] for rate in EFFICIENCY_RATES}
    """One generator at half of each rate: what each of the two workers sends."""
    pair: dict[float, list[float]] = {rate: [] for rate in EFFICIENCY_RATES}
    """CPU per request (µs) of two independent generators at half of each rate, side by side."""
    steps: dict[int, list[Run]] = {1: [], 2: []}
    try:
        with tempfile.TemporaryDirectory(prefix="clover-bench-workers-") as tmp, server() as srv:
            work = Path(tmp)
            print(f"  target: {srv.describe()}", flush=True)
            for rate in EFFICIENCY_RATES:
                print(f"  CPU per request at {rate:.0f}/s, {EFFICIENCY_SECONDS:.0f} s per run:", flush=True)
                for i in range(ROUNDS):
                    for workers in (1, 2):
                        m = measure(srv, work / f"eff-{rate:.0f}-{workers}-{i}", workers, rate, EFFICIENCY_SECONDS)
                        efficiency[rate][workers].append(m)
                        print("    " + m.line(), flush=True)
                    m = measure(srv, work / f"half-{rate:.0f}-{i}", 1, rate / 2, EFFICIENCY_SECONDS)
                    half[rate].append(m)
                    print("    " + m.line() + "  (half the rate: what each worker sends)", flush=True)
                    pair[rate].append(measure_pair(srv, work / f"pair-{rate:.0f}-{i}", rate, EFFICIENCY_SECONDS))
                    print(
                        f"    2 independent generators at {rate / 2:.0f}/s each, side by side: "
                        f"{pair[rate][-1]:.1f} µs CPU per request",
                        flush=True,
                    )
            print(f"  rising rates, {STEP_SECONDS:.0f} s each:", flush=True)
            fails = {1: 0, 2: 0}
            for rate in RATES:
                for workers in (1, 2):
                    if fails[workers] >= FAILS_TO_STOP:
                        continue
                    m = measure(srv, work / f"rate-{workers}-{rate}", workers, float(rate), STEP_SECONDS)
                    steps[workers].append(m)
                    fails[workers] = 0 if m.held else fails[workers] + 1
                    print("    " + m.line(), flush=True)
                if all(f >= FAILS_TO_STOP for f in fails.values()):
                    break
    finally:
        leftovers()

    cpu: dict[float, dict[str, Any]] = {}
    for rate, runs in efficiency.items():
        local_us = statistics.median(m.cpu_per_request_us for m in runs[1])
        dist_us = statistics.median(m.cpu_per_request_us for m in runs[2])
        rounds = [d.cpu_per_request_us / s.cpu_per_request_us for s, d in zip(runs[1], runs[2], strict=True)]
        master_us = statistics.median(m.master_cpu_per_request_us for m in runs[2])
        half_us = statistics.median(m.cpu_per_request_us for m in half[rate])
        pair_us = statistics.median(pair[rate])
        server_us = statistics.median(m.server_cpu_per_request_us for m in runs[1])
        server_half_us = statistics.median(m.server_cpu_per_request_us for m in half[rate])
        cpu[rate] = {
            "local_us": local_us,
            "distributed_us": dist_us,
            "ratio": dist_us / local_us,
            "rounds": rounds,
            "master_us": master_us,
            "local_half_rate_us": half_us,
            "ratio_same_process_rate": dist_us / half_us,
            "pair_us": pair_us,
            "ratio_pair_to_local": pair_us / local_us,
            "ratio_distributed_to_pair": dist_us / pair_us,
            "server_us": server_us,
            "server_half_rate_us": server_half_us,
            "server_ratio_half_to_full_rate": server_half_us / server_us,
        }
        print(
            f"  CPU per request at {rate:.0f}/s: 1 generator {local_us:.1f} µs, 2 workers (master + workers) "
            f"{dist_us:.1f} µs -> distributed / local {dist_us / local_us:.3f} (median of rounds; per round "
            + ", ".join(f"{r:.3f}" for r in rounds)
            + f"); target ≤ {TARGET_CPU_RATIO}. Of the 2 workers' {dist_us:.1f} µs the master is {master_us:.1f} µs; "
            f"1 generator at {rate / 2:.0f}/s (each worker's rate) costs {half_us:.1f} µs per request -> "
            f"distributed / local at the same rate per process {dist_us / half_us:.3f}. Two independent "
            f"generators at {rate / 2:.0f}/s each, side by side: {pair_us:.1f} µs -> pair / local "
            f"{pair_us / local_us:.3f} (two half-loaded processes), distributed / pair {dist_us / pair_us:.3f} (the "
            f"distribution itself). The target server, which the distribution does not touch: {server_half_us:.1f} µs "
            f"per request at {rate / 2:.0f}/s against {server_us:.1f} at {rate:.0f}/s -> "
            f"{server_half_us / server_us:.3f}× (the machine's own cost of a half-loaded process)"
        )
    cpu_ratio = max(c["ratio"] for c in cpu.values())
    ceilings = {w: max((m.rate for m in steps[w] if m.held), default=0.0) for w in (1, 2)}
    first_miss = next((m for m in steps[1] if not m.held and m.rate > ceilings[1]), None)
    beside = next((m for m in steps[2] if first_miss is not None and m.rate == first_miss.rate), None)
    print(f"  highest rate held: 1 generator {ceilings[1]:.0f}/s, 2 workers {ceilings[2]:.0f}/s")
    if first_miss is not None and beside is not None:
        print(
            f"  at {first_miss.rate:.0f}/s (the lowest rate 1 generator did not hold): 1 generator "
            f"{first_miss.rps:.0f} req/s, late {first_miss.late_share * 100:.2f} %; 2 workers {beside.rps:.0f} "
            f"req/s, late {beside.late_share * 100:.2f} % -> 2 workers / 1 = {beside.rps / first_miss.rps:.3f}× "
            f"achieved rate, {beside.late_share / first_miss.late_share if first_miss.late_share else math.nan:.3f}× "
            "late share"
        )
    all_runs = [m for by_rate in efficiency.values() for runs in by_rate.values() for m in runs]
    all_runs += [m for runs in half.values() for m in runs]
    busiest = max(m.server_busy for m in [*all_runs, *steps[1], *steps[2]])
    print(
        f"  the server used at most {busiest * 100:.0f} % of a core (2 cores shared by server and generators); "
        f"load average at the end {os.getloadavg()[0]:.2f} (anything above ~2 means other work shared the cores)"
    )
    report(
        "load_workers",
        "CPU per request, 2 workers / 1 generator: "
        + ", ".join(f"{c['ratio']:.3f} at {rate:.0f}/s" for rate, c in cpu.items())
        + f" (target ≤ {TARGET_CPU_RATIO}); highest rate "
        f"held: 1 generator {ceilings[1]:.0f}/s, 2 workers {ceilings[2]:.0f}/s"
        + (
            f"; at {first_miss.rate:.0f}/s 2 workers achieve {beside.rps / first_miss.rps:.2f}× the rate of 1"
            if first_miss is not None and beside is not None
            else ""
        ),
        figure=cpu_ratio,
        unit="× (CPU per request, distributed / local)",
        target=TARGET_CPU_RATIO,
        cpu_per_request={f"{rate:.0f}": c for rate, c in cpu.items()},
        ceiling_1=ceilings[1],
        ceiling_2=ceilings[2],
        rate_1_cannot_hold=first_miss.rate if first_miss is not None else None,
        at_that_rate_rps_1=first_miss.rps if first_miss is not None else None,
        at_that_rate_rps_2=beside.rps if beside is not None else None,
        at_that_rate_late_1=first_miss.late_share if first_miss is not None else None,
        at_that_rate_late_2=beside.late_share if beside is not None else None,
        steps={
            f"{w}x{m.rate:.0f}": {
                "rps": m.rps,
                "late_share": m.late_share,
                "held": m.held,
                "cpu_us": m.cpu_per_request_us,
            }
            for w in (1, 2)
            for m in steps[w]
        },
        server_max_busy=busiest,
    )


if __name__ == "__main__":
    main()
