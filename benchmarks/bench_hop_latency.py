"""Sidecar latency per hop against a direct connection (target ≤ 0.5 ms added at p50).

How: one SDC mesh; one clover-server pod. 2000 sequential GETs on one keep-alive connection per path,
after a 200-request warm-up per path, interleaved in blocks of 200 so that noise from the (shared)
machine falls on every path alike:

(a) direct: to the application's own port on the pod's loopback IP (read from the pod's ``app.log`` line
    "listening on IP:PORT"), no Envoy at all;
(b) one sidecar hop: to the pod's sidecar inbound listener (``pod.url(9180)``) → the same application;
(c) two sidecar hops: to an http-lb pod's sidecar outbound listener (``virtualOutbound``, what the http-lb
    app itself sends through) with ``Host: clover-server:9180`` → a clover-server sidecar → its app;
(d) gateway hop: to the ingress gateway with ``Host: bench-hop.local``, routed to clover-server by a
    VirtualService this benchmark adds → a clover-server sidecar → its app.

(c) and (d) are load-balanced over the four clover-server pods (all identical); (a) and (b) hit one pod.

The figure is the sidecar hop: p50(b) − p50(a) (and the same at p99). Also printed: the client-sidecar
hop p50(c) − p50(b) and the gateway hop p50(d) − p50(b). The reference, measured in the same run, is the
direct round trip p50(a).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmarks._common import isolated_runtime, percentile, report, sdc_mesh
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.protocol import PodInfo
from tests.helpers import Client, wait_for

TARGET_MS = 0.5
WARMUP = 200
BLOCK = 200
ROUNDS = 10  # ROUNDS × BLOCK = 2000 measured requests per path
SERVER = "clover-server"
GATEWAY_HOST = "bench-hop.local"
LISTENING = re.compile(r"listening on (\d+\.\d+\.\d+\.\d+):(\d+)")


def app_address(backend: LocalBackend, pod: PodInfo) -> str:
    """``http://ip:port`` of the pod's application itself, from its start-up log line."""

    def find() -> str | None:
        try:
            text = backend.log_path(pod.name, "app").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        found = LISTENING.findall(text)
        return f"http://{found[-1][0]}:{found[-1][1]}" if found else None

    url = wait_for(find, timeout=10, what=f"the 'listening on' line in {pod.name}'s app.log")
    assert url is not None
    if f"//{pod.ip}:" not in url:
        raise RuntimeError(f"{pod.name}'s app listens on {url}, not on the pod IP {pod.ip}")
    return url


def outbound_address(mesh: LocalBackend, pod: PodInfo) -> str:
    """``http://ip:port`` of the pod sidecar's outbound listener, from its Envoy admin API."""
    body = mesh.envoy_admin(pod.name, "/listeners?format=json")
    for listener in json.loads(body)["listener_statuses"]:
        if listener["name"] == "virtualOutbound":
            sock = listener["local_address"]["socket_address"]
            return f"http://{sock['address']}:{sock['port_value']}"
    raise RuntimeError(f"{pod.name}'s Envoy has no virtualOutbound listener")


GATEWAY_ROUTE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "bench-hop"},
    "spec": {
        "hosts": [GATEWAY_HOST],
        "gateways": ["sdc-gateway"],
        "http": [{"route": [{"destination": {"host": SERVER, "port": {"number": 9180}}}]}],
    },
}


def main() -> None:
    with isolated_runtime("hop") as runtime, sdc_mesh(runtime) as backend:
        pod = sorted((p for p in backend.pods(SERVER) if p.deployment == SERVER), key=lambda p: p.name)[0]
        lb = sorted(backend.pods("http-lb"), key=lambda p: p.name)[0]
        backend.apply(yaml.safe_dump(GATEWAY_ROUTE))
        paths: dict[str, tuple[Client, dict[str, str]]] = {
            "direct": (Client(app_address(backend, pod)), {}),
            "sidecar": (Client(pod.url(9180)), {}),
            "two sidecars": (Client(outbound_address(backend, lb)), {"host": f"{SERVER}:9180"}),
            "gateway": (Client(backend.ingress_url()), {"host": GATEWAY_HOST}),
        }
        samples: dict[str, list[float]] = {name: [] for name in paths}
        try:
            for name, (client, headers) in paths.items():
                for _ in range(WARMUP):
                    reply = client.get("/", headers)
                    if reply.status != 200 or not reply.hops or not reply.hops[-1].startswith(f"{SERVER}-"):
                        raise RuntimeError(f"{name}: GET / answered {reply.status}, hops {reply.hops}")
            for _ in range(ROUNDS):
                for name, (client, headers) in paths.items():
                    for _ in range(BLOCK):
                        reply = client.get("/", headers)
                        if reply.status != 200:
                            raise RuntimeError(f"{name}: GET / answered {reply.status}")
                        samples[name].append(reply.seconds * 1000)
        finally:
            for client, _ in paths.values():
                client.close()

    p50 = {name: percentile(v, 50) for name, v in samples.items()}
    p99 = {name: percentile(v, 99) for name, v in samples.items()}
    for name in paths:
        print(f"  {name:>12}: p50 {p50[name]:.3f} ms, p99 {p99[name]:.3f} ms ({len(samples[name])} requests)")
    hop = p50["sidecar"] - p50["direct"]
    hop99 = p99["sidecar"] - p99["direct"]
    client_hop = p50["two sidecars"] - p50["sidecar"]
    gateway_hop = p50["gateway"] - p50["sidecar"]
    print(f"  client-sidecar hop: +{client_hop:.3f} ms at p50; gateway hop: +{gateway_hop:.3f} ms at p50")
    report(
        "hop_latency",
        f"sidecar hop: +{hop:.3f} ms at p50 (+{hop99:.3f} ms p99) over direct {p50['direct']:.3f} ms — "
        f"target {TARGET_MS} ms → ratio {hop / TARGET_MS:.2f}",
        figure=hop,
        unit="ms",
        target=TARGET_MS,
        p99_added=hop99,
        direct_p50=p50["direct"],
        client_sidecar_hop=client_hop,
        gateway_hop=gateway_hop,
    )


if __name__ == "__main__":
    main()
