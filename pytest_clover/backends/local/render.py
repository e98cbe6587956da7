"""Render the Envoy configuration a topology would run, without starting anything (``clover render``)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...istio.model import Topology
from .state import MAX_SOCKET_PATH
from .supervisor import GATEWAY_LABELS
from .translate import Endpoint, InboundPort, ProxySpec, render_bootstrap, render_resources


@dataclass(frozen=True)
class RenderedProxy:
    spec: ProxySpec
    bootstrap: dict[str, Any]
    files: dict[str, dict[str, Any]]

    def static_bootstrap(self) -> dict[str, Any]:
        """The same configuration as one static bootstrap, so ``envoy --mode validate`` checks all of it."""
        return static_bootstrap(self.bootstrap, self.files)


def static_bootstrap(bootstrap: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    routes: dict[str, Any] = {}
    endpoints: dict[str, Any] = {}
    for name, doc in files.items():
        for res in doc["resources"]:
            body = {k: v for k, v in res.items() if k != "@type"}
            if name.startswith("rds_"):
                routes[body["name"]] = body
            elif name.startswith("eds_"):
                endpoints[body["cluster_name"]] = body
    listeners = []
    for res in files["lds.json"]["resources"]:
        listener = copy.deepcopy({k: v for k, v in res.items() if k != "@type"})
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                cfg = f["typed_config"]
                if "rds" in cfg:
                    cfg["route_config"] = routes[cfg.pop("rds")["route_config_name"]]
        listeners.append(listener)
    clusters = []
    for res in files["cds.json"]["resources"]:
        cluster = copy.deepcopy({k: v for k, v in res.items() if k != "@type"})
        if cluster.get("type") == "EDS":
            cluster["type"] = "STATIC"
            cluster.pop("eds_cluster_config")
            cluster["load_assignment"] = endpoints[cluster["name"]]
        clusters.append(cluster)
    # Everything but the ADS wiring stays: runtime layers change what Envoy accepts.
    static = {k: v for k, v in bootstrap.items() if k not in ("dynamic_resources", "static_resources")}
    static["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return static


def _admin_socket(pod_dir: Path) -> Path:
    """Where the admin socket would be, as the mesh places it: in the pod's folder, unless that path is too long
    for a Unix socket (``envoy --mode validate`` rejects it), then a short one in the per-user socket folder."""
    own = pod_dir / "admin.sock"
    if len(os.fsencode(str(own))) <= MAX_SOCKET_PATH:
        return own
    digest = hashlib.sha1(os.fsencode(str(pod_dir))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"clover-sockets-{os.getuid()}" / f"render-{digest}.sock"


def plan(topo: Topology, out_dir: Path) -> list[RenderedProxy]:
    """One proxy per pod the topology would start (all ready), with stand-in addresses 127.0.0.N."""
    pods: list[tuple[str, dict[str, str], list[int], str]] = []
    n = 0
    if topo.gateways:
        n += 1
        pods.append(("istio-ingressgateway", dict(GATEWAY_LABELS), [], f"127.0.0.{n + 2}"))
    for dep in sorted(topo.deployments.values(), key=lambda d: d.name):
        for i in range(dep.replicas):
            n += 1
            ports = [p.port for c in dep.containers[:1] for p in c.ports]
            pods.append((f"{dep.name}-{i}", dict(dep.pod_labels), ports, f"127.0.{n // 250}.{n % 250 + 2}"))
    endpoints: dict[tuple[str, int], list[Endpoint]] = {}
    for svc in topo.services.values():
        for sp in svc.ports:
            eps = endpoints.setdefault((svc.name, sp.port), [])
            for name, labels, _ports, ip in pods:
                if svc.selector and all(labels.get(k) == v for k, v in svc.selector.items()):
                    dep = next(d for d in topo.deployments.values() if name.startswith(d.name + "-"))
                    number = dep.containers[0].port_number(sp.target_port)
                    if number is not None:
                        eps.append(Endpoint(name, ip, number, labels))
    # A pod that opts out of injection (sidecar.istio.io/inject: "false") is an endpoint, but has no proxy to render.
    bare = {f"{d.name}-{i}" for d in topo.deployments.values() if not d.sidecar_injected for i in range(d.replicas)}
    rendered = []
    for name, labels, ports, ip in pods:
        if name in bare:
            continue
        pod_dir = out_dir / name
        gateway = name == "istio-ingressgateway"
        spec = ProxySpec(
            name=name,
            namespace=topo.namespace,
            kind="gateway" if gateway else "sidecar",
            ip=ip,
            admin_socket=str(_admin_socket(pod_dir)),
            labels=labels,
            access_log=str(pod_dir / "access.log"),
            outbound_port=0 if gateway else 15001,
            inbound=tuple(InboundPort(p, p, 20000 + i) for i, p in enumerate(ports)),
            gateway_ports={
                s.port: 8000 + s.port if s.port < 1024 else s.port for g in topo.gateways.values() for s in g.servers
            }
            if gateway
            else {},
        )
        rendered.append(RenderedProxy(spec, render_bootstrap(spec), render_resources(topo, endpoints, spec)))
    return rendered


def write(rendered: list[RenderedProxy], out_dir: Path) -> list[Path]:
    """Write each proxy's bootstrap, xDS files and static equivalent; returns the static bootstraps' paths."""
    statics = []
    for proxy in rendered:
        pod_dir = out_dir / proxy.spec.name
        (pod_dir / "xds").mkdir(parents=True, exist_ok=True)
        (pod_dir / "bootstrap.json").write_text(json.dumps(proxy.bootstrap, indent=1), encoding="utf-8")
        for name, doc in proxy.files.items():
            (pod_dir / "xds" / name).write_text(json.dumps({"version_info": "1", **doc}, indent=1), encoding="utf-8")
        static = pod_dir / "static-bootstrap.json"
        static.write_text(json.dumps(proxy.static_bootstrap(), indent=1), encoding="utf-8")
        Path(proxy.spec.access_log).touch()
        statics.append(static)
    return statics
