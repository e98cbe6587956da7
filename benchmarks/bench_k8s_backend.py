"""The Kubernetes backend over the embedded mesh's Kubernetes API, against the local backend (issue 12).

Two figures, measured in one run on one embedded mesh (the "cluster": the SDC in ``default``):

1. **Fault in effect through the cluster path** (target ≤ 100 ms): the k8s backend deploys a second SDC into its own
   namespace; a keep-alive client on that namespace's ingress. Repeated 10 times: t0, then the backend's ``apply()``
   of a 100 % abort on ``clover-server`` (a guarded JSON patch through the API, then polling the caller's sidecar
   ``config_dump`` through a port-forward until the fault shows), then requests until one answers 503 (t1). The
   figure is the median of t1 − t0; the backend's own measured propagation delay is printed beside it. Reference in
   the same run: the same fault through the local backend on the ``default`` SDC.
2. **Suites wall time** (target ≤ 1.3×): ``pytest suites --clover-time-scale=0.2`` with ``--clover-backend=k8s``
   (a fresh namespace, deployed through the API) over the same with the local backend (its own embedded mesh).
   Both in child processes, one after the other, same seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks._common import ROOT, SDC, isolated_runtime, report, sdc_mesh
from pytest_clover.backends import Backend, BackendOptions, backend_class
from pytest_clover.istio.documents import fault_document, restored_document
from tests.helpers import Client, median

REPEATS = 10
TARGET_FAULT_MS = 100.0
TARGET_SUITES_RATIO = 1.3
SERVICE = "clover-server"


def fault_in_effect(backend: Backend) -> list[float]:
    """t0 → first 503 (ms) of a 100 % abort through ``backend.apply``, REPEATS times (each reverted after)."""
    times: list[float] = []
    with Client(backend.ingress_url()) as client:
        assert client.get("/").status == 200
        for _ in range(REPEATS):
            doc = fault_document(backend.istio_objects(), SERVICE, abort_status=503, percent=100)
            start = time.perf_counter()
            backend.apply(yaml.safe_dump(doc), source="bench")
            while client.get("/").status != 503:
                if time.perf_counter() - start > 10:
                    raise RuntimeError("the fault never took effect")
            times.append((time.perf_counter() - start) * 1000.0)
            restored = restored_document(doc)
            if restored is None:
                backend.remove("VirtualService", doc["metadata"]["name"])
            else:
                backend.apply(yaml.safe_dump(restored), source="bench revert")
            deadline = time.monotonic() + 10
            while client.get("/").status != 200 and time.monotonic() < deadline:
                pass
    return times


def suites(backend_args: list[str], env: dict[str, str], report_dir: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--clover-time-scale=0.2", "--clover-seed=4", f"--clover-report-dir={report_dir}", *backend_args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    took = time.monotonic() - started
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"  pytest suites {' '.join(backend_args) or '(local)'}: exit {proc.returncode}, {took:.1f} s: {tail}")
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        raise RuntimeError(f"the suites failed on {backend_args or 'local'}")
    return took


def main() -> None:
    with isolated_runtime("k8s") as runtime, sdc_mesh(runtime) as host:
        kubeconfig = str(host.kubeconfig)
        k8s = backend_class("k8s").from_options(
            BackendOptions(topology=SDC, workdir=runtime / "k8s", seed=3,
                           settings={"kubeconfig": kubeconfig, "run_id": "bench", "reaper": "false"})
        )  # fmt: skip
        k8s.deploy(timeout=120)
        try:
            cluster_path = fault_in_effect(k8s)
            propagation = [p["ms"] for p in getattr(k8s, "propagation", [])]
        finally:
            k8s.teardown()
        local_path = fault_in_effect(host)
        env = dict(os.environ)
        local_s = suites([], env, runtime / "reports-local")
        k8s_s = suites(["--clover-backend=k8s", f"--clover-kubeconfig={kubeconfig}"], env, runtime / "reports-k8s")
    fault_ms = median(cluster_path)
    print(
        f"fault in effect through the cluster path: median {fault_ms:.1f} ms (max {max(cluster_path):.1f}); "
        f"sidecar propagation seen by the backend: median {median(propagation) if propagation else 0:.1f} ms; "
        f"the same through the local backend: median {median(local_path):.1f} ms"
    )
    ratio = k8s_s / local_s
    print(f"suites wall time: k8s backend {k8s_s:.1f} s, local backend {local_s:.1f} s: {ratio:.2f}x")
    report(
        "k8s fault in effect (ms)",
        f"k8s backend: fault in effect {fault_ms:.1f} ms (target ≤ {TARGET_FAULT_MS:g}); suites {ratio:.2f}x local "
        f"(target ≤ {TARGET_SUITES_RATIO:g}x)",
        figure=fault_ms,
        unit="ms",
        target=TARGET_FAULT_MS,
        suites_ratio=round(ratio, 3),
        suites_target=TARGET_SUITES_RATIO,
        local_fault_ms=round(median(local_path), 1),
    )


if __name__ == "__main__":
    main()
