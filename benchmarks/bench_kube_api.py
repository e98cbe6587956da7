"""The embedded mesh's Kubernetes API: request latency, watch delivery, faults through kubectl, start-up cost.

How (one SDC mesh on 2 cores, all ratios from this one run):

- **GET pod, LIST pods (p50, target ≤ 2 ms)**: 300 of each over one keep-alive HTTPS connection with the mesh's
  token (``requests``), as a client library sends them; the p50 and p99 of the wall time per request.
- **watch delivery (p50, target ≤ 20 ms)**: a watch on ConfigMaps is open; 60 times, a ConfigMap is created and
  the time from just before the POST to the arrival of its ADDED event on the watch is taken.
- **fault through `kubectl apply` → in effect, vs through the backend (target ≤ 1.5×)**: 10 times each, in turn,
  a VirtualService with an abort fault for a host of its own is written, and requests for that host are sent
  until one shows the fault; the figure is from the start of the write to that request's answer. Through the
  backend: ``LocalBackend.apply`` (the control socket). Through the API: the `kubectl apply` process (its start,
  discovery and OpenAPI from its warm cache, the write), and also the official client's ``create`` for the API
  alone. Two ratios, both printed: **end to end** (the kubectl process included: the target's figure) and
  **server side**: 10 more `kubectl apply -v=8` runs, whose log gives each HTTP request's round trip (those
  kubectl's cache answers are counted too: ~0.5 ms each); these round trips plus the wait from kubectl's exit
  to the fault's answer are the API's share; the rest of the end-to-end time is kubectl's own (process start,
  reading its caches and the OpenAPI document, computing the patch). ``kubectl version --client`` shows the
  process start alone.
- **start-up with the API on vs off (target ≤ +0.2 s)**: 7 deploys of each, alternating; the difference of the
  medians of ``deploy()``'s wall time (2 shared cores: fewer deploys are too noisy to compare).
"""

from __future__ import annotations

import functools
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
import yaml

from benchmarks._common import SDC, isolated_runtime, percentile, report, sdc_mesh, teardown_checked
from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import median

REQUESTS = 300
WATCH_EVENTS = 60
FAULT_ROUNDS = 10
STARTUPS = 7
# kubectl -v=8 logs each request and its response (and their headers), with microsecond timestamps.
KLOG_LINE = re.compile(r"^I\d{4} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ round_trippers\.go:\d+\] \"(Request|Response)\"")

FAULT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: NAME}
spec:
  hosts: [HOST]
  gateways: [sdc-gateway]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: proxy-access-control, port: {number: 9180}}}]
"""


def session_for(kubeconfig: Path) -> tuple[requests.Session, str, str]:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    import base64

    fd, name = tempfile.mkstemp(prefix="clover-bench-ca-")
    os.close(fd)
    ca = Path(name)
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    session = requests.Session()
    session.trust_env = False  # else $REQUESTS_CA_BUNDLE replaces the mesh's CA given below
    session.headers["Authorization"] = f"Bearer {token}"
    session.verify = str(ca)
    return session, str(cluster["server"]), str(ca)


def timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def read_latency(session: requests.Session, server: str, pod: str) -> dict[str, float]:
    def get() -> None:
        session.get(f"{server}/api/v1/namespaces/default/pods/{pod}").raise_for_status()

    def lst() -> None:
        session.get(f"{server}/api/v1/namespaces/default/pods").raise_for_status()

    timed(get, 20)  # warm: the connection, TLS session
    gets = timed(get, REQUESTS)
    lists = timed(lst, REQUESTS)
    return {
        "get_p50": percentile(gets, 50),
        "get_p99": percentile(gets, 99),
        "list_p50": percentile(lists, 50),
        "list_p99": percentile(lists, 99),
    }


def watch_latency(session: requests.Session, server: str, ca: str, token: str) -> list[float]:
    rv = session.get(f"{server}/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
    arrivals: dict[str, float] = {}
    seen = threading.Condition()
    watcher = requests.Session()
    watcher.trust_env = False
    watch = watcher.get(
        f"{server}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
        headers={"Authorization": f"Bearer {token}"},
        verify=ca,
        stream=True,
        timeout=(5, 120),
    )

    def reader() -> None:
        try:
            for line in watch.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                with seen:
                    arrivals[event["object"]["metadata"]["name"]] = time.perf_counter()
                    seen.notify_all()
        except (requests.RequestException, ValueError, AttributeError):
            return  # closed under it at the end

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    latencies = []
    names = []
    try:
        for _ in range(WATCH_EVENTS):
            name = f"bench-{uuid.uuid4().hex[:10]}"
            names.append(name)
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}
            start = time.perf_counter()
            session.post(f"{server}/api/v1/namespaces/default/configmaps", json=body).raise_for_status()
            with seen:
                if not seen.wait_for(functools.partial(operator.contains, arrivals, name), timeout=10):
                    raise RuntimeError(f"the watch did not deliver ConfigMap {name} within 10 s")
                latencies.append((arrivals[name] - start) * 1000)
    finally:
        watch.close()
        watcher.close()
        for name in names:
            session.delete(f"{server}/api/v1/namespaces/default/configmaps/{name}")
    return latencies


def until_fault(ingress: str, host: str, deadline_s: float = 10.0) -> float:
    """Send requests for ``host`` until one is aborted with 418; the time of that answer."""
    deadline = time.perf_counter() + deadline_s
    with requests.Session() as s:
        while time.perf_counter() < deadline:
            if s.get(ingress + "/", headers={"host": host}, timeout=5).status_code == 418:
                return time.perf_counter()
    raise RuntimeError(f"the fault for {host} was not in effect within {deadline_s} s")


def request_times(log: str) -> tuple[float, int, int]:
    """From a ``kubectl -v=8`` log: the summed round trips (ms) of its HTTP requests, how many there were, and
    how many kubectl's HTTP cache answered (``X-From-Cache``: from its disk alone, or once the server answered
    its revalidation with 304 Not Modified)."""
    total, count, cached, started = 0.0, 0, 0, 0.0
    lines = log.splitlines()
    for index, line in enumerate(lines):
        match = KLOG_LINE.match(line)
        if match is None:
            continue
        hours, minutes, seconds, kind = match.groups()
        moment = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if kind == "Request":
            started = moment
            continue
        total += (moment - started) * 1000
        count += 1
        for following in lines[index + 1 :]:
            if not following.startswith("\t"):
                break
            if following.strip().startswith("X-From-Cache:"):
                cached += 1
    return total, count, cached


def fault_rounds(mesh: LocalBackend, kubectl: str, kubeconfig: Path, cache: Path) -> dict[str, list[float]]:
    ingress = mesh.ingress_url()
    env = {"KUBECONFIG": str(kubeconfig), "HOME": str(cache), "PATH": "/usr/bin:/bin"}
    # Warm kubectl's caches as any user's are: discovery, and the OpenAPI document of the kind (an apply).
    subprocess.run([kubectl, f"--cache-dir={cache}", "api-resources"], env=env, capture_output=True, check=True)
    warm = FAULT.replace("NAME", "bench-warm").replace("HOST", "bench-warm.example")
    subprocess.run(
        [kubectl, f"--cache-dir={cache}", "apply", "-f", "-"],
        input=warm,
        env=env,
        text=True,
        capture_output=True,
        check=True,
    )
    mesh.remove("VirtualService", "bench-warm")
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    client = kconfig.new_client_from_config(str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    api = kclient.CustomObjectsApi(client)
    out: dict[str, list[float]] = {
        "backend": [],
        "kubectl": [],
        "client": [],
        "kubectl_floor": [],
        "split_requests": [],
        "split_after": [],
        "split_count": [],
        "split_cached": [],
    }
    for _ in range(FAULT_ROUNDS):
        # What any kubectl command costs before it talks to a server: the dispatcher, the binary, its start.
        start = time.perf_counter()
        subprocess.run([kubectl, "version", "--client"], env=env, capture_output=True, check=True)
        out["kubectl_floor"].append((time.perf_counter() - start) * 1000)
    for i in range(FAULT_ROUNDS):
        for way in ("backend", "kubectl", "client"):
            name = f"bench-fault-{way}-{i}"
            host = f"{name}.example"
            text = FAULT.replace("NAME", name).replace("HOST", host)
            start = time.perf_counter()
            if way == "backend":
                mesh.apply(text)
            elif way == "kubectl":
                subprocess.run(
                    [kubectl, f"--cache-dir={cache}", "apply", "-f", "-"],
                    input=text,
                    env=env,
                    text=True,
                    capture_output=True,
                    check=True,
                )
            else:
                api.create_namespaced_custom_object(
                    "networking.istio.io", "v1", "default", "virtualservices", yaml.safe_load(text)
                )
            out[way].append((until_fault(ingress, host) - start) * 1000)
            mesh.remove("VirtualService", name)
    for i in range(FAULT_ROUNDS):
        # The same apply, logged: which requests it makes and how long each took.
        name = f"bench-fault-split-{i}"
        text = FAULT.replace("NAME", name).replace("HOST", f"{name}.example")
        done = subprocess.run(
            [kubectl, f"--cache-dir={cache}", "apply", "-v=8", "-f", "-"],
            input=text,
            env=env,
            text=True,
            capture_output=True,
            check=True,
        )
        exited = time.perf_counter()
        answered = until_fault(ingress, f"{name}.example")
        requests_ms, count, cached = request_times(done.stderr)
        out["split_requests"].append(requests_ms)
        out["split_after"].append((answered - exited) * 1000)
        out["split_count"].append(count)
        out["split_cached"].append(cached)
        mesh.remove("VirtualService", name)
    client.close()
    return out


def startups(runtime: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(STARTUPS):
        for way in ("off", "on"):
            backend = LocalBackend(SDC, runtime / f"startup-{way}-{i}", seed=7, kube_api=way == "on")
            start = time.perf_counter()
            backend.deploy(timeout=90)
            times[way].append(time.perf_counter() - start)
            teardown_checked(backend)
    return times


def main() -> int:
    kubectl = shutil.which("kubectl")
    with isolated_runtime("kube-api") as runtime:
        with sdc_mesh(runtime) as mesh:
            kubeconfig = Path(str(mesh.info()["kubeconfig"]))
            session, server, ca = session_for(kubeconfig)
            token = str(session.headers["Authorization"]).split()[1]
            try:
                pod = mesh.pods("clover-server")[0].name
                reads = read_latency(session, server, pod)
                watch = watch_latency(session, server, ca, token)
                cache = runtime / "kubectl-home"
                faults = fault_rounds(mesh, kubectl, kubeconfig, cache) if kubectl else {}
            finally:
                session.close()
                Path(ca).unlink(missing_ok=True)
        starts = startups(runtime)
    worst_read = max(reads["get_p50"], reads["list_p50"])
    report(
        "kube_api_read",
        f"Kubernetes API: GET pod p50 {reads['get_p50']:.2f} ms (p99 {reads['get_p99']:.2f}), LIST pods p50 "
        f"{reads['list_p50']:.2f} ms (p99 {reads['list_p99']:.2f}) — target 2 ms → ratio {worst_read / 2:.2f}",
        figure=worst_read,
        unit="ms",
        target=2.0,
        **reads,
    )
    w50 = median(watch)
    report(
        "kube_api_watch",
        f"watch event after the write: p50 {w50:.2f} ms, p99 {percentile(watch, 99):.2f} ms over {len(watch)} "
        f"(from before the POST) — target 20 ms → ratio {w50 / 20:.2f}",
        figure=w50,
        unit="ms",
        target=20.0,
        p99=percentile(watch, 99),
    )
    if faults:
        b, k, c = median(faults["backend"]), median(faults["kubectl"]), median(faults["client"])
        floor = median(faults["kubectl_floor"])
        requests_ms, after = median(faults["split_requests"]), median(faults["split_after"])
        count, cached = median(faults["split_count"]), median(faults["split_cached"])
        server_side = requests_ms + after
        own = k - server_side
        report(
            "kube_api_fault",
            f"fault in effect: through the backend {b:.1f} ms; `kubectl apply` {k:.1f} ms end to end, ratio "
            f"{k / b:.2f}. Split (from {FAULT_ROUNDS} `kubectl apply -v=8` runs): {count:.0f} HTTP requests "
            f"({cached:.0f} answered by kubectl's cache) {requests_ms:.1f} ms of round trips, then {after:.1f} ms "
            f"from kubectl's exit to the fault's answer: server side {server_side:.1f} ms, ratio "
            f"{server_side / b:.2f}; kubectl's own work {own:.1f} ms (its start alone, `kubectl version --client`: "
            f"{floor:.1f} ms). The official client: {c:.1f} ms, ratio {c / b:.2f}. Target ratio 1.5 (end to end, "
            "kubectl)",
            figure=k / b,
            unit="x",
            target=1.5,
            backend_ms=b,
            kubectl_ms=k,
            kubectl_floor_ms=floor,
            kubectl_requests_ms=requests_ms,
            kubectl_requests=count,
            kubectl_cached_requests=cached,
            kubectl_own_ms=own,
            server_side_ms=server_side,
            server_side_ratio=server_side / b,
            client_ms=c,
            client_ratio=c / b,
        )
    on, off = median(starts["on"]), median(starts["off"])
    report(
        "kube_api_startup",
        f"start-up (SDC, deploy to ready): API on {on:.2f} s, off {off:.2f} s → +{on - off:.2f} s — "
        f"target +0.2 s → ratio {(on - off) / 0.2:.2f}",
        figure=on - off,
        unit="s",
        target=0.2,
        on=on,
        off=off,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
