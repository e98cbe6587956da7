"""Open-loop send timing: how much latency the generator's own timer adds, with and without the send alarm.

What: the open loop counts latency from each request's intended send time, so a send that leaves late adds its
lateness to the latency recorded. gevent's loop (libev, epoll) sleeps in whole milliseconds, rounded up;
:class:`pytest_clover.load.worker.SendAlarm` (a timerfd) wakes it on time. This measures both, in one run.

How: no mesh. The target is bench_load_ceiling.py's (an aiohttp low-level server answering ``200 ok`` in its own
process on 127.0.0.1). The floor is what the target and the client cost without any wait: one closed-loop user,
sending each request as soon as the last is answered (its p50). Then, at each of :data:`RATES`, one generator
in the open loop, :data:`ROUNDS` alternating rounds of the alarm off (``CLOVER_LOAD_SEND_ALARM=0``) and on, each
:data:`SECONDS` s: its p50 and p99 (from the intended time) and its CPU per request (user + system, psutil).

Printed per rate: p50 and p99 off and on (median of rounds), what each adds to the floor's p50, and the CPU per
request off and on. The figure: at :data:`FIGURE_RATE`, the p50 the alarm's generator adds over the floor, as a
share of what the old one added (lower is better; the target is ≤ 0.5: at least half the artifact gone).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks._common import report
from benchmarks.bench_load_ceiling import Server, leftovers, server
from benchmarks.bench_load_workers import cpu_seconds
from pytest_clover.load.run import LoadGenerator
from pytest_clover.load.worker import ALARM_ENV

RATES = (200.0, 1000.0, 4000.0, 10000.0)
FIGURE_RATE = 200.0
"""The figure's rate: a mesh test's (the suites run at 100–500 requests/s), where the loop sleeps between sends."""
SECONDS = 6.0
ROUNDS = 3
TARGET = 0.5


@dataclass
class Run:
    rate: float | None
    alarm: bool
    requests: int
    p50_ms: float
    p99_ms: float
    cpu_s: float
    late: int

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")


def measure(srv: Server, reports: Path, *, rate: float | None, alarm: bool) -> Run:
    os.environ[ALARM_ENV] = "1" if alarm else "0"  # the generator's child inherits it
    gen = LoadGenerator(srv.url, reports, seed=0)
    run = gen.start(rate=rate) if rate is not None else gen.start(users=1)
    try:
        pids = [run.pid, *run.worker_pids]
        run.phase("warm-up", 1.0)
        cpu0 = cpu_seconds(pids)
        run.phase("load", SECONDS)
        cpu1 = cpu_seconds(pids)
    finally:
        run.stop()
    stats = run.result.phases["load"]
    return Run(rate, alarm, stats.requests, stats.p50_ms, stats.p99_ms, cpu1 - cpu0, stats.late)


def main() -> None:
    runs: dict[float, dict[bool, list[Run]]] = {rate: {False: [], True: []} for rate in RATES}
    floors: list[Run] = []
    saved = os.environ.get(ALARM_ENV)
    try:
        with tempfile.TemporaryDirectory(prefix="clover-bench-timing-") as tmp, server() as srv:
            work = Path(tmp)
            print(f"  target: {srv.describe()}", flush=True)
            for i in range(ROUNDS):
                floor = measure(srv, work / f"floor-{i}", rate=None, alarm=False)
                floors.append(floor)
                print(
                    f"    floor (1 closed-loop user): p50 {floor.p50_ms:.3f} ms, p99 {floor.p99_ms:.3f} ms", flush=True
                )
                for rate in RATES:
                    for alarm in (False, True):
                        m = measure(srv, work / f"r{rate:.0f}-{int(alarm)}-{i}", rate=rate, alarm=alarm)
                        runs[rate][alarm].append(m)
                        print(
                            f"    {rate:6.0f}/s alarm {'on ' if alarm else 'off'}: p50 {m.p50_ms:.3f} ms, p99 "
                            f"{m.p99_ms:.3f} ms, late {m.late}, {m.cpu_us:.1f} µs CPU per request",
                            flush=True,
                        )
    finally:
        if saved is None:
            os.environ.pop(ALARM_ENV, None)
        else:
            os.environ[ALARM_ENV] = saved
        leftovers()

    floor_ms = statistics.median(f.p50_ms for f in floors)
    print(f"  floor: p50 {floor_ms:.3f} ms (one closed-loop user: the target and the client, no wait)")
    summary: dict[str, dict[str, float]] = {}
    for rate, by_alarm in runs.items():
        off, on = (
            {k: statistics.median(getattr(m, k) for m in by_alarm[a]) for k in ("p50_ms", "p99_ms", "cpu_us")}
            for a in (False, True)
        )
        summary[f"{rate:.0f}"] = {
            **{f"off_{k}": v for k, v in off.items()},
            **{f"on_{k}": v for k, v in on.items()},
        }
        print(
            f"  {rate:6.0f}/s: p50 off {off['p50_ms']:.3f} ms (+{off['p50_ms'] - floor_ms:.3f} over the floor), on "
            f"{on['p50_ms']:.3f} ms (+{on['p50_ms'] - floor_ms:.3f}); p99 off {off['p99_ms']:.3f}, on "
            f"{on['p99_ms']:.3f} ms; CPU per request off {off['cpu_us']:.1f} µs, on {on['cpu_us']:.1f} µs "
            f"({on['cpu_us'] / off['cpu_us']:.2f}×)"
        )
    at = summary[f"{FIGURE_RATE:.0f}"]
    added_off, added_on = at["off_p50_ms"] - floor_ms, at["on_p50_ms"] - floor_ms
    figure = max(added_on, 0.0) / added_off if added_off > 0 else float("nan")
    report(
        "send_timing",
        f"p50 added by the generator's timer at {FIGURE_RATE:.0f}/s: {added_off:.3f} ms without the send alarm, "
        f"{added_on:.3f} ms with it -> {figure:.2f} of it left (target ≤ {TARGET})",
        figure=figure,
        unit="(p50 added over the floor, alarm on / off)",
        target=TARGET,
        floor_p50_ms=floor_ms,
        rates=summary,
    )


if __name__ == "__main__":
    main()
