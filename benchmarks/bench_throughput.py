"""Throughput: the SDC VNF is not the bottleneck at a few hundred requests/s on 2 cores.

How: one SDC mesh; each request crosses the ingress gateway, proxy-access-control, http-lb and
clover-server, and is mirrored to snort-ids: 5 Envoys and 4 VNF processes.
1. Saturation: 32 requests in flight for 5 s (closed loop). The CPU time every pod process used is read
   before and after (psutil), giving the CPU cost per request of the VNF processes and of the Envoys.
2. Open loop at 300 requests/s for 10 s: latency from each request's *intended* send time (coordinated
   omission corrected); requests that could not be sent on time are counted.

The figure is the VNF's CPU per request; its reference, measured in the same run, is the CPU per request
of the Envoys it runs behind: ratio ≤ 1 means the VNF costs less than the mesh's own data plane, so it is
not what limits throughput. The client shares the 2 cores, so throughputs are lower bounds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import psutil

from benchmarks._common import isolated_runtime, percentile, report, sdc_mesh
from pytest_clover.backends.local.state import MeshState

RATE = 300.0
SECONDS = 10.0


def cpu_by_role(state: MeshState) -> dict[str, float]:
    """CPU seconds used so far by the mesh's app and Envoy processes."""
    totals = {"app": 0.0, "envoy": 0.0}
    for record in state.read_pids():
        if record.role in totals:
            try:
                times = psutil.Process(record.pid).cpu_times()
            except psutil.Error:
                continue
            totals[record.role] += times.user + times.system
    return totals


async def open_loop(url: str) -> tuple[list[float], int, int, float]:
    latencies: list[float] = []
    errors = 0
    late = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter() + 0.2
        total = int(RATE * SECONDS)

        async def one(i: int) -> None:
            nonlocal errors, late
            intended = start + i / RATE
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > 0.010:
                late += 1
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - intended) * 1000)

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - start
    return latencies, errors, late, total / elapsed


async def saturation(url: str, workers: int = 32, seconds: float = 5.0) -> tuple[float, int]:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(url) as resp:
                    await resp.read()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return done / (time.perf_counter() - started), done


def main() -> None:
    with isolated_runtime("throughput") as runtime, sdc_mesh(runtime) as mesh:
        url = mesh.ingress_url() + "/throughput"
        asyncio.run(saturation(url, seconds=1.0))  # warm every connection pool
        before = cpu_by_role(mesh.state)
        ceiling, count = asyncio.run(saturation(url))
        after = cpu_by_role(mesh.state)
        latencies, errors, late, achieved = asyncio.run(open_loop(url))
    app_ms = (after["app"] - before["app"]) / count * 1000
    envoy_ms = (after["envoy"] - before["envoy"]) / count * 1000
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"  saturation (32 in flight, 5 s): {ceiling:.0f} req/s; CPU per request: VNF {app_ms:.2f} ms, Envoys {envoy_ms:.2f} ms"
    )
    print(
        f"  open loop {RATE:.0f}/s for {SECONDS:.0f} s: {len(latencies)} requests, {errors} errors, {late} sent late, achieved {achieved:.0f}/s"
    )
    print(f"  latency from intended send time: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
    report(
        "throughput",
        f"VNF CPU per request: {app_ms:.2f} ms vs its Envoys' {envoy_ms:.2f} ms → ratio {app_ms / envoy_ms:.2f}; "
        f"saturation {ceiling:.0f} req/s; {RATE:.0f} req/s: p99 {p99:.1f} ms, {errors} errors",
        figure=app_ms,
        unit="ms CPU/request",
        target=envoy_ms,
        saturation_rps=ceiling,
        p50_at_rate=p50,
        p99_at_rate=p99,
        errors=errors,
        late=late,
    )


if __name__ == "__main__":
    main()
