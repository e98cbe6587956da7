"""Load generator accuracy: open-loop rate, and coordinated omission against a stalling target.

How: no mesh. A trivial aiohttp server runs in its own process on 127.0.0.1 (this script with ``--serve``).
1. Rate accuracy: open loop at 1 000 requests/s for 5 s against the plain server: achieved/intended
   responses, requests sent more than 10 ms late, the generator's own CPU.
2. Coordinated omission: the server freezes for 0.5 s every 2 s (25 % of the time; a request arriving in a
   freeze waits for its end). 10 s of closed loop (10 users) and 10 s of open loop (200 requests/s) against
   it, side by side with the ground truth: the latencies the freeze schedule imposes on requests arriving
   on a constant schedule (wait until the freeze ends; service time, ~1 ms, not included). A closed loop's
   users wait out each freeze once and then race on, so its p99 hides the freezes; an open loop measured
   from intended send times should match the ground truth. Also printed: the server's own view of the
   open run (time each request spent in it), which adds what the schedule leaves out — the ~100 requests
   a freeze releases at once are answered one after another.

The figure is the open loop's p99 error against the ground truth's p99 (|open/truth − 1|, in %), target
≤ 10 %; the closed loop's p99 and the rate accuracy are printed next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks._common import helper_server, percentile, report
from pytest_clover.load.run import LoadGenerator

RATE_HIGH = 1000.0
RATE_SECONDS = 5.0
STALL_EVERY_S = 2.0
STALL_S = 0.5
STALL_RATE = 200.0
STALL_USERS = 10
STALL_SECONDS = 10.0
TARGET_PCT = 10.0


def serve(stalling: bool) -> None:
    """The server process: prints ``PORT <port> ORIGIN <unix time of the freeze cycle's origin>``."""
    from aiohttp import web

    origin = time.time()
    seen_ms: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/__stats":  # the server's own view: time each request spent in it, then reset
            body = json.dumps(seen_ms)
            seen_ms.clear()
            return web.Response(text=body)
        arrived = time.perf_counter()
        if stalling:
            into = (time.time() - origin) % STALL_EVERY_S
            if into >= STALL_EVERY_S - STALL_S:
                await asyncio.sleep(STALL_EVERY_S - into)
        seen_ms.append((time.perf_counter() - arrived) * 1000)
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"PORT {runner.addresses[0][1]} ORIGIN {origin!r}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def server(stalling: bool) -> Iterator[tuple[str, float]]:
    with helper_server(__file__, "stall" if stalling else "plain") as (_, words):
        yield f"http://127.0.0.1:{words[1]}", float(words[3])


def server_side(url: str) -> list[float]:
    """ms each request spent in the server since the last call (freeze wait and the queue behind it)."""
    with urllib.request.urlopen(url + "/__stats", timeout=10) as resp:
        values: list[float] = json.loads(resp.read())
    return values


def ground_truth(start: float, seconds: float, rate: float, origin: float) -> list[float]:
    """ms each request of a constant schedule waits under the freeze schedule."""
    waits = []
    for i in range(int(seconds * rate)):
        into = (start + i / rate - origin) % STALL_EVERY_S
        waits.append(max(0.0, STALL_EVERY_S - into) * 1000 if into >= STALL_EVERY_S - STALL_S else 0.0)
    return waits


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clover-bench-load-") as tmp:
        reports = Path(tmp)

        # 1. Rate accuracy at 1 000 requests/s.
        with server(stalling=False) as (url, _):
            gen = LoadGenerator(url, reports / "rate", seed=0)
            with gen.start(rate=RATE_HIGH) as run:
                proc = psutil.Process(run.pid)
                cpu_before = sum(proc.cpu_times()[:2])
                run.phase("rate", RATE_SECONDS)
                cpu = sum(proc.cpu_times()[:2]) - cpu_before
        rate_stats = run.result.phases["rate"]
        # Responses per second of the time the phase's windows cover, over the intended rate.
        achieved = rate_stats.throughput_rps / RATE_HIGH
        print(
            f"  open loop {RATE_HIGH:.0f}/s for {RATE_SECONDS:.0f} s: {rate_stats.requests} responses "
            f"in {RATE_SECONDS:.0f} s, throughput {rate_stats.throughput_rps:.1f}/s "
            f"(achieved/intended {achieved:.4f}), "
            f"{rate_stats.late} late, {rate_stats.errors} errors; p50 {rate_stats.p50_ms:.2f} ms, "
            f"p99 {rate_stats.p99_ms:.2f} ms; generator CPU {cpu / RATE_SECONDS * 100:.0f} % of a core, "
            f"{run.result.generator.get('users')} users"
        )

        # 2. Closed vs open loop against a server that freezes 0.5 s every 2 s.
        with server(stalling=True) as (url, origin):
            gen = LoadGenerator(url, reports / "stall", seed=0)
            with gen.start(users=STALL_USERS) as closed:
                closed.phase("closed", STALL_SECONDS)
            server_side(url)
            with gen.start(rate=STALL_RATE) as opened:
                opened.phase("open", STALL_SECONDS)
            seen = server_side(url)
        c = closed.result.phases["closed"]
        o = opened.result.phases["open"]
        truth = ground_truth(o.start, STALL_SECONDS, STALL_RATE, origin)
        t50, t90, t99 = (percentile(truth, p) for p in (50, 90, 99))
        print(
            f"  freeze {STALL_S:g} s every {STALL_EVERY_S:g} s; latency ms     p50      p90      p99      max  requests"
        )
        o90 = opened.result.histogram("open").get_value_at_percentile(90) / 1000
        c90 = closed.result.histogram("closed").get_value_at_percentile(90) / 1000
        print(
            f"    closed loop, {STALL_USERS} users     {c.p50_ms:8.1f} {c90:8.1f} {c.p99_ms:8.1f} {c.max_ms:8.1f}  {c.requests}"
        )
        print(
            f"    open loop, {STALL_RATE:.0f}/s         {o.p50_ms:8.1f} {o90:8.1f} {o.p99_ms:8.1f} {o.max_ms:8.1f}  {o.requests} ({o.late} late)"
        )
        print(f"    ground truth (schedule)  {t50:8.1f} {t90:8.1f} {t99:8.1f} {max(truth):8.1f}  {len(truth)}")
        s50, s90, s99 = (percentile(seen, p) for p in (50, 90, 99))
        print(f"    server-side, open run    {s50:8.1f} {s90:8.1f} {s99:8.1f} {max(seen):8.1f}  {len(seen)}")
        print(
            f"  p99 vs ground truth: open loop {o.p99_ms / t99:.3f}, closed loop {c.p99_ms / t99:.3f}; "
            f"p90: open {o90 / t90:.3f}, closed {c90 / t90:.3f}; open p99 vs server-side p99 {o.p99_ms / s99:.3f}"
        )

    error_pct = abs(o.p99_ms / t99 - 1) * 100
    report(
        "load",
        f"open-loop p99 {o.p99_ms:.0f} ms vs ground truth {t99:.0f} ms (error {error_pct:.1f} %), closed loop "
        f"{c.p99_ms:.1f} ms; {RATE_HIGH:.0f}/s: achieved/intended {achieved:.4f}, {rate_stats.late} late",
        figure=error_pct,
        unit="% p99 error",
        target=TARGET_PCT,
        achieved_ratio=achieved,
        late_at_1000=rate_stats.late,
        generator_cpu_pct=cpu / RATE_SECONDS * 100,
        open_p99_ms=o.p99_ms,
        closed_p99_ms=c.p99_ms,
        truth_p99_ms=t99,
        open_p90_ms=o90,
        closed_p90_ms=c90,
        truth_p90_ms=t90,
        server_p99_ms=s99,
        open_late=o.late,
        closed_requests=c.requests,
        open_requests=o.requests,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["plain", "stall"])
    args = parser.parse_args()
    if args.serve:
        serve(args.serve == "stall")
    else:
        main()
