"""Fault latency: an Istio fault applied → in effect on live traffic (target ≤ 50 ms).

How: one SDC mesh. A keep-alive client on the ingress gateway (the path gateway → proxy-access-control →
http-lb → clover-server). Repeated 20 times: build the clover-server VirtualService with a 100 % abort
(503) with ``pytest_clover.istio.documents.fault_document``, take t0 right before ``backend.apply()``, then send
requests one after another on the already-open connection until one returns 503 (t1). The figure is
t1 − t0 (median, p90, max); ``apply()`` alone is timed too (it returns once every Envoy ACKed the new
config). Then the fault is cleared the way the plugin does it (``faulted_virtual_services`` +
``restored_document``: the VirtualService is put back, or removed if the fault created it) and removal →
first 200 is measured the same way.

Reference, measured in the same run: the round trip of one request through the mesh (median of 50,
after a warm-up), i.e. the part of t1 − t0 that is the final request itself.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks._common import isolated_runtime, percentile, report, sdc_mesh
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.istio.documents import fault_document, faulted_virtual_services, restored_document
from tests.helpers import Client, median

REPEATS = 20
TARGET_MS = 50.0
SERVICE = "clover-server"
GIVE_UP_S = 10.0


def clear_action(backend: LocalBackend) -> Callable[[], object]:
    """The call that clears every injected fault, prepared up front so only the call itself is timed."""
    calls: list[Callable[[], object]] = []
    for doc in faulted_virtual_services(backend.istio_objects()):
        restored = restored_document(doc)
        if restored is None:
            calls.append(functools.partial(backend.remove, "VirtualService", str(doc["metadata"]["name"])))
        else:
            calls.append(functools.partial(backend.apply, yaml.safe_dump(restored)))
    if not calls:
        raise RuntimeError("no faulted VirtualService to clear")

    def run() -> None:
        for call in calls:
            call()

    return run


def until_status(client: Client, status: int, start: float) -> tuple[float, int]:
    """Send requests until one returns ``status``; (seconds since ``start``, replies before it)."""
    before = 0
    while True:
        reply = client.get("/")
        now = time.perf_counter()
        if reply.status == status:
            return now - start, before
        before += 1
        if now - start > GIVE_UP_S:
            raise RuntimeError(f"no {status} within {GIVE_UP_S} s (last reply {reply.status})")


def summary(values_s: list[float]) -> tuple[float, float, float]:
    ms = [v * 1000 for v in values_s]
    return median(ms), percentile(ms, 90), max(ms)


def main() -> None:
    on: list[float] = []
    on_apply: list[float] = []
    off: list[float] = []
    off_call: list[float] = []
    stale_on = stale_off = 0
    with isolated_runtime("fault") as runtime, sdc_mesh(runtime) as backend, Client(backend.ingress_url()) as client:
        for _ in range(20):
            if client.get("/").status != 200:
                raise RuntimeError("the mesh does not answer 200 before any fault")
        rtt = median(client.get("/").seconds for _ in range(50)) * 1000
        for _ in range(REPEATS):
            text = yaml.safe_dump(fault_document(backend.istio_objects(), SERVICE, abort_status=503, percent=100))
            t0 = time.perf_counter()
            backend.apply(text)
            on_apply.append(time.perf_counter() - t0)
            elapsed, before = until_status(client, 503, t0)
            on.append(elapsed)
            stale_on += before

            clear = clear_action(backend)
            t0 = time.perf_counter()
            clear()
            off_call.append(time.perf_counter() - t0)
            elapsed, before = until_status(client, 200, t0)
            off.append(elapsed)
            stale_off += before
            time.sleep(0.05)

    x, p90, worst = summary(on)
    a50, a90, amax = summary(on_apply)
    r50, r90, rmax = summary(off)
    c50, _, _ = summary(off_call)
    print(
        f"  apply() alone: median {a50:.1f} ms (p90 {a90:.1f}, max {amax:.1f}); "
        f"non-503 replies after apply() returned: {stale_on} in {REPEATS} runs"
    )
    print(
        f"  fault removed → first 200: median {r50:.1f} ms (p90 {r90:.1f}, max {rmax:.1f}); "
        f"remove/restore call alone median {c50:.1f} ms; non-200 replies after it returned: {stale_off} in {REPEATS} runs"
    )
    report(
        "fault_latency",
        f"fault in effect: median {x:.1f} ms (p90 {p90:.1f}, max {worst:.1f}) — target {TARGET_MS:.0f} ms → "
        f"ratio {x / TARGET_MS:.2f}; one request round trip {rtt:.1f} ms",
        figure=x,
        unit="ms",
        target=TARGET_MS,
        p90=p90,
        max=worst,
        apply_median=a50,
        removal_median=r50,
        removal_p90=r90,
        removal_max=rmax,
        round_trip=rtt,
        stale_after_apply=stale_on,
        stale_after_removal=stale_off,
    )


if __name__ == "__main__":
    main()
