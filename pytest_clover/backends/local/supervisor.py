"""The mesh supervisor: one process per local mesh that owns its pods, as kubelet and the controllers do.

It starts every pod (the application process and its real Envoy sidecar), keeps Deployments at their
replica count (a killed pod is replaced under a new name), restarts crashed containers in place, tracks
readiness, and pushes endpoints and Istio changes to every Envoy through file-based xDS, confirming each
write. A Deployment's model (``topologies[ns].deployments``) is its current pod template; each pod keeps the
model it was started from (its ReplicaSet's, by ``pod-template-hash``), and pods of an older template are
replaced by the Deployment's strategy (RollingUpdate within maxSurge / maxUnavailable, waiting for the new pods'
readiness; Recreate), old pods leaving the endpoints before they are stopped. Clients (``clover``, the pytest
plugin) talk to it over a Unix socket, one JSON line each way.

Every child gets PR_SET_PDEATHSIG, so no application or Envoy outlives a supervisor that is killed.

It holds the mesh's lock (``mesh.lock``) for its whole life, runs in the state folder with umask 077 (every
file of the mesh is its user's alone), and each Envoy serves its admin API on a Unix socket in its pod's
folder, out of other local users' reach (see docs/architecture.md, "who can reach what").

Namespaces: the topology's namespace is the mesh's own (its "home": what the backend protocol, `clover`
commands and faults act on, and the only one whose pods the backend's ``pods()`` lists). Objects written
through the Kubernetes API into another namespace form another app beside it (:meth:`Supervisor.swap_topology`),
with its own pods, endpoints and Istio objects; every proxy sees every namespace's Services, as Istio exports
them mesh-wide. The pod limit counts every namespace's pods.

Sidecar injection: as Istio's injector in a namespace with injection on (the embedded mesh injects every
namespace; namespace labels are not consulted), every pod gets an Envoy sidecar unless its pod template opts out
with the label ``sidecar.istio.io/inject: "false"`` (or, when that label is absent, the annotation of the same
name; see :func:`pytest_clover.istio.model.sidecar_injected`). A pod that opts out runs its app alone, outside
the mesh: no Envoy, bootstrap or xDS; its app listens on the port other pods reach (the Service endpoints the
Envoys route to are the app itself), has no ``HTTP_PROXY`` (its calls go straight where it dials: pod and
gateway addresses, as from outside the mesh; Service names do not resolve without a sidecar, the mesh has no
cluster DNS), is ready by its readinessProbe alone, and has no access log. The ingress gateway is never affected.

Ingress: each namespace that has Gateways gets its own ingress gateway pod (``istio-ingressgateway-…`` in that
namespace, on its own loopback address), serving that namespace's Gateways only, as Istio does with a gateway
deployed per namespace and ``PILOT_SCOPE_GATEWAY_TO_NAMESPACE``. So a second app's ``sdc-gateway`` (hosts
``*``, port 80) is reached at its own address without touching the first's; the home namespace's gateway is
the backend's ``ingress_url()``. Each namespace's address is in the status (``namespaces.<ns>.ingress_url``)
and on its gateway's Pod object (annotation ``clover.opnfv.org/ingress-url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import BackendError, CloverError, ConfigError, Problem
from ...istio import (
    Deployment,
    DestinationRule,
    Gateway,
    Topology,
    VirtualService,
    check_references,
    load_topology,
    parse_istio_text,
)
from ...limits import raise_open_files_limit
from ..protocol import PodInfo
from .envoy import envoy_command, http_get, http_get_unix, http_request_unix
from .logrotate import MESH_LOGS, LogRotator, log_limits
from .plan import BLOCK_PODS, DEFAULT_MAX_PODS, local_command, max_pods_setting, placeholders, too_many_pods
from .state import MeshState, ProcessRecord, die_with_parent, pick_port, remove_state, unregister_mesh
from .translate import NO_PROXY, Endpoint, EndpointsView, InboundPort, ProxySpec, render_bootstrap, render_resources
from .xds import AdsServer, group_by_type
from .zygote import ZygoteClient, ZygoteProcess

log = logging.getLogger("pytest_clover.supervisor")

GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
POD_TEMPLATE_HASH = "pod-template-hash"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated names
SHUTDOWN_GRACE_S = 0.5
DEFAULT_FAILURE_THRESHOLD = 3
RESYNC_S = 5.0
"""Seconds between two checks that every Envoy acknowledged what it should have (see ``_resync_proxies``)."""
"""Kubernetes' readinessProbe.failureThreshold default; also used for pods whose Deployment gives no probe."""
"""SIGTERM → SIGKILL at mesh shutdown. Measured, all 18 at once on 2 busy cores: apps exit within 0.14 s,
Envoys within 0.19 s."""


def template_hash(dep: Deployment) -> str:
    """The ``pod-template-hash`` of a Deployment's pods (and the name suffix of its ReplicaSet): a hash of its
    whole pod template, as Kubernetes' deployment controller makes it, so each template is one ReplicaSet."""
    return hash_template(pod_template(dep))


def hash_template(template: dict[str, Any]) -> str:
    """The ``pod-template-hash`` of a pod template (its ``pod-template-hash`` label left out)."""
    meta = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    template = {**template, "metadata": {**meta, "labels": labels}}
    return _template_hash_of(json.dumps(_pruned(template), sort_keys=True, default=str))


def _pruned(value: Any) -> Any:
    """``value`` without its null and empty fields: the same template whether a client wrote them or not (Go
    clients such as ``kubectl rollout undo`` send ``creationTimestamp: null`` and ``resources: {}``)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def pod_template(dep: Deployment) -> dict[str, Any]:
    """``dep``'s pod template as written (``spec.template``, without ``pod-template-hash``); for a Deployment
    built by hand, the parts the mesh runs (labels, annotations, containers)."""
    template = dep.spec.get("template") if isinstance(dep.spec, dict) else None
    if isinstance(template, dict):
        meta = dict(template.get("metadata") or {})
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
        return {**template, "metadata": {**meta, "labels": labels}}
    return {
        "metadata": {"labels": dict(dep.pod_labels), "annotations": dict(dep.pod_annotations)},
        "spec": {"containers": [dataclasses.asdict(c) for c in dep.containers]},
    }


def rolling_limits(dep: Deployment, replicas: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` of a RollingUpdate of ``dep`` to ``replicas`` pods, resolved as Kubernetes
    does: percentages of ``replicas``, surge rounded up and unavailable down (25 % each by default); both 0
    would never progress, so unavailable is then 1."""
    rolling = ((dep.spec.get("strategy") or {}).get("rollingUpdate") or {}) if dep.spec else {}
    return rolling_limits_of(rolling, replicas)


def rolling_limits_of(rolling: Mapping[str, Any], replicas: int, *, default: bool = True) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` of a ``rollingUpdate`` for ``replicas`` pods (``default``: one unavailable
    pod allowed where both come out 0, as the controller does; validation refuses such values written)."""
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if default and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    text = str(value).strip()
    if text.endswith("%"):
        with contextlib.suppress(ValueError):
            fraction = float(text[:-1]) * total / 100.0
            return max(0, math.ceil(fraction) if round_up else math.floor(fraction))
        return 0
    with contextlib.suppress(ValueError):
        return max(0, int(text))
    return 0


def strategy_type(dep: Deployment) -> str:
    """``RollingUpdate`` (the default) or ``Recreate``."""
    return str(((dep.spec.get("strategy") or {}) if dep.spec else {}).get("type") or "RollingUpdate")


_template_hash = template_hash


def _template_hash_of(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:10])


@dataclasses.dataclass
class Pod:
    name: str
    deployment: Deployment | None
    labels: dict[str, str]
    ip: str
    spec: ProxySpec
    directory: Path
    created: float = dataclasses.field(default_factory=time.time)
    app: subprocess.Popen[bytes] | ZygoteProcess | None = None
    envoy: subprocess.Popen[bytes] | None = None
    ready: bool = False
    envoy_live: bool = False
    terminating: bool = False
    restarts: int = 0
    probes: int = 0
    probe_failures: int = 0
    """Failed readiness probes in a row (a ready pod turns not ready at its probe's failureThreshold)."""
    task: asyncio.Task[None] | None = None

    @property
    def service(self) -> str:
        return self.labels.get("app", self.name)

    @property
    def has_proxy(self) -> bool:
        """Whether the pod runs an Envoy: the ingress gateway, or a pod with its sidecar injected (False for a pod
        whose template opts out with ``sidecar.istio.io/inject: "false"``)."""
        return self.spec.kind != NO_PROXY

    @property
    def containers(self) -> tuple[str, ...]:
        """Its containers as the Kubernetes API names them: ``app`` and ``istio-proxy``, ``app`` alone without a
        sidecar, ``istio-proxy`` alone for the ingress gateway."""
        if self.deployment is None:
            return ("istio-proxy",)
        return ("app", "istio-proxy") if self.has_proxy else ("app",)

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    def info(self) -> PodInfo:
        phase = "Terminating" if self.terminating else ("Running" if self.ready else "Pending")
        return PodInfo(
            name=self.name,
            service=self.service,
            deployment=self.deployment.name if self.deployment else None,
            version=self.labels.get("version", ""),
            ready=self.ready and not self.terminating,
            phase=phase,
            ip=self.ip,
            restarts=self.restarts,
            labels=dict(self.labels),
            ports={ib.container_port: ib.listen_port for ib in self.spec.inbound}
            or {k: v for k, v in self.spec.gateway_ports.items()},
            created=self.created,
        )


class Supervisor:
    def __init__(self, state: MeshState) -> None:
        self.state = state
        self.mesh = state.read_mesh()
        self.topology_documents = _documents(state.topology_dir)
        """The topology folder's YAML documents, as read at start (the Kubernetes API is seeded with them)."""
        home = _with_specs(load_topology(state.topology_dir), self.topology_documents)
        self.home: str = home.namespace
        """The mesh's own namespace (the topology's): what the backend protocol acts on."""
        self.topologies: dict[str, Topology] = {self.home: home}
        """Each namespace's app: its Deployments, Services and Istio objects."""
        self.desired_in: dict[str, dict[str, int]] = {
            self.home: {d.name: d.replicas for d in home.deployments.values()}
        }
        """Each namespace's Deployments' replica counts."""
        self.block: str = self.mesh["block"]
        self.rng = random.Random(int(self.mesh.get("seed", 0)))
        self.pods: dict[str, Pod] = {}
        self.used_ips: set[int] = set()
        self.push_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.changed = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.events: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ads = AdsServer()
        self.zygote: ZygoteClient | None = None
        self.xds_address = (f"{self.block}.1", 0)
        self.max_pods = int(self.mesh.get("max_pods") or DEFAULT_MAX_PODS)
        """How many pods the mesh may have (set at deploy; a scale request may give its own)."""
        self.events_total = 0
        """Notes ever taken (``events`` keeps the last 500): how the Kubernetes API finds the new ones."""
        self.cluster: Any = None
        """The Kubernetes API's side of the mesh (:class:`.kube.cluster.Cluster`), once it serves."""
        self.api_runner: Any = None
        self.api_task: asyncio.Future[None] | None = None
        self.api_address: tuple[str, int] | None = None
        """Where the Kubernetes API listens (chosen before the first pod starts, which is told it), if it is on."""
        self.api_token = ""
        self.api_ca: bytes | None = None
        """The API's CA certificate, once made: what a pod needs, beside the token, to reach the API."""
        self.rollouts: dict[tuple[str, str], asyncio.Task[None]] = {}
        """The running rollout of each (namespace, Deployment) whose pods run more than one template."""
        self._rollout_wakers: set[asyncio.Event] = set()
        self.log_rotator = LogRotator(
            log_limits(self.mesh), state.root / "pods", [state.root / name for name in MESH_LOGS]
        )
        """Keeps every log file of the mesh within its limits (:mod:`.logrotate`), checked by :meth:`_bound_logs`."""

    @property
    def topology(self) -> Topology:
        """The home namespace's topology."""
        return self.topologies[self.home]

    @topology.setter
    def topology(self, new: Topology) -> None:
        self.topologies[self.home] = new

    @property
    def desired(self) -> dict[str, int]:
        """The home namespace's replica counts."""
        return self.desired_in[self.home]

    def _background(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``work`` concurrently, keeping a reference so the task is not garbage-collected mid-way."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        self.state.socket_path.unlink(missing_ok=True)
        # The Kubernetes API comes up while the first pods start (~0.2 s of CPU, most of it in a thread): begun
        # first, its credentials made at once, so that every app started is told where the API is and how to
        # reach it; `wait_ready` waits for both.
        self.api_task = self._start_api() if self.mesh.get("kube_api", True) else None
        # Apps that other namespaces bring later are started without the zygote unless the home one has it.
        if any(ZygoteClient.handles(self._argv_of(d)) for d in self.topology.deployments.values()):
            self.zygote = ZygoteClient()
            self.zygote.on_change = self._write_pids
            self.zygote.start(str(self.state.root / "zygote.log"), die_with_parent, cwd=str(self.state.root))
            self._background(self.zygote.run())
        host = self.xds_address[0]
        self.xds_address = (host, await self.ads.start(host, pick_port(host, 15010)))
        self.server = await asyncio.start_unix_server(
            self._client, path=str(self.state.make_socket_dir(self.state.socket_path)), limit=2**24
        )
        self._write_mesh(status="starting")
        self._background(self._bound_logs())
        self._background(self._resync_proxies())
        try:
            await self._reconcile()
            if self.api_task is not None:
                await self.api_task
            self._write_mesh(status="running")
            await self.stopping.wait()
        finally:
            self._write_mesh(status="stopping")
            self.server.close()
            if self.api_runner is not None:
                from .kube.server import stop as stop_api

                with contextlib.suppress(Exception):
                    await stop_api(self.api_runner)
            started = time.monotonic()
            count = len(self.pods)
            await self._stop_all()
            await self.ads.stop()
            log.info("stopped %d pods, the zygote and the xDS server in %.3f s", count, time.monotonic() - started)
            self.state.socket_path.unlink(missing_ok=True)

    def _start_api(self) -> asyncio.Future[None]:
        """Begin serving the mesh's Kubernetes API over HTTPS on its loopback address (its kubeconfig written
        once it serves): its address and credentials are made now, for the pods' apps to be told; the server
        is prepared in the background (see :func:`.kube.cluster.start_api`). The returned future is done once
        the API serves or has failed."""
        from .kube.cluster import start_api

        host = f"{self.block}.1"
        try:
            address = (host, pick_port(host, 6443))
            starting = start_api(self, *address)
        except Exception as exc:
            return asyncio.ensure_future(self._api_failed(exc))
        self.api_address = address
        self.api_token, self.api_ca = starting.credentials.token, starting.credentials.ca_pem
        return asyncio.ensure_future(self._serve_api(starting.served))

    async def _serve_api(self, served: Awaitable[tuple[Any, Any, str]]) -> None:
        try:
            cluster, self.api_runner, url = await served
        except Exception as exc:  # the mesh runs without its API rather than not at all; the status says why
            await self._api_failed(exc)
            return
        self.cluster = cluster
        self.mesh["kube_api_url"] = url
        self.mesh["kubeconfig"] = str(self.state.root / "kubeconfig")
        self._background(cluster.run())
        log.info("Kubernetes API at %s", url)

    async def _api_failed(self, exc: Exception) -> None:
        self.api_address = None  # pods started from now on are not told of an API that does not serve
        log.error("the Kubernetes API could not start", exc_info=exc)
        self.mesh["kube_api_error"] = f"the Kubernetes API could not start: {exc!r}; see {self.state.log_file}"

    def _write_mesh(self, status: str) -> None:
        me = ProcessRecord.of(os.getpid(), "supervisor")
        self.mesh.update(
            status=status, supervisor=me.__dict__, ingress_url=self.ingress_url(), ingress_urls=self.ingress_urls()
        )
        self.state.write_json(self.state.mesh_file, self.mesh)

    def _write_pids(self) -> None:
        records = []
        for pod in self.pods.values():  # a pod without a sidecar has its app only (pod.envoy stays None)
            for role, proc in (("app", pod.app), ("envoy", pod.envoy)):
                if proc is not None and proc.poll() is None and proc.pid is not None:
                    records.append(ProcessRecord.of(proc.pid, role, pod.name))
        if self.zygote is not None and self.zygote.process is not None:
            records.append(ProcessRecord.of(self.zygote.process.pid, "zygote"))
        self.state.write_pids(records)

    def ingress_url(self, namespace: str | None = None) -> str | None:
        """Where the ingress gateway of ``namespace`` (the home one by default) serves its lowest Gateway port."""
        gw = self._gateway_pod(namespace)
        if gw is None or not gw.spec.gateway_ports:
            return None
        port = gw.spec.gateway_ports[min(gw.spec.gateway_ports)]
        return f"http://{gw.ip}:{port}"

    def ingress_urls(self) -> dict[str, str]:
        """Each namespace's ingress URL, for the namespaces whose gateway serves."""
        urls = {ns: self.ingress_url(ns) for ns in self.topologies}
        return {ns: url for ns, url in urls.items() if url is not None}

    def _gateway_pod(self, namespace: str | None = None) -> Pod | None:
        ns = self.home if namespace is None else namespace
        return next(
            (p for p in self.pods.values() if p.deployment is None and not p.terminating and p.namespace == ns), None
        )

    def _render(self, spec: ProxySpec, views: dict[str, EndpointsView] | None = None) -> dict[str, dict[str, Any]]:
        """One proxy's xDS documents: its namespace's app, and every other namespace's as it sees them."""
        views = views if views is not None else {ns: self._endpoints(ns) for ns in self.topologies}
        own = self.topologies.get(spec.namespace) or Topology(namespace=spec.namespace)
        others = [(t, views.get(ns, {})) for ns, t in self.topologies.items() if ns != spec.namespace]
        return render_resources(own, views.get(spec.namespace, {}), spec, others)

    def _note(self, kind: str, **fields: Any) -> None:
        # Also in supervisor.log (a few lines a minute at most; rotated): what a post-mortem of a long run needs,
        # when the in-memory list has moved on.
        log.info("event %s %s", kind, " ".join(f"{k}={v}" for k, v in fields.items()))
        self.events.append({"time": time.time(), "event": kind, **fields})
        del self.events[:-500]
        self.events_total += 1
        self.changed.set()
        if self.cluster is not None:
            self.cluster.mark_dirty()

    note = _note

    def endpoints(self, namespace: str | None = None) -> EndpointsView:
        """The ready endpoints of every Service port of ``namespace`` (the home one by default), as the Envoys
        get them."""
        return self._endpoints(namespace)

    async def swap_topology(self, new: Topology) -> None:
        """Run ``new`` (Istio objects, Services) as the app of its namespace (``new.namespace``; a namespace the
        mesh does not run yet joins) once every Envoy ACKed it; the old one stays on failure."""
        await self._swap_topology(new, new.namespace)

    async def set_replicas(
        self, deployment: str, replicas: int, forget: bool = False, namespace: str | None = None
    ) -> None:
        """The ReplicaSet controller's part of a Deployment write through the Kubernetes API: start or stop pods
        to ``replicas`` (``forget``: the Deployment is gone). Failures are logged and noted; the status says
        the rest, as on a cluster."""
        ns = self.home if namespace is None else namespace
        desired = self.desired_in.setdefault(ns, {})
        try:
            if forget:
                desired[deployment] = 0
                await self._reconcile()
                desired.pop(deployment, None)
                topology = self.topologies.get(ns)
                if topology is not None:
                    topology.deployments.pop(deployment, None)
                return
            if desired.get(deployment) != replicas:
                await self.op_scale(deployment, replicas, namespace=ns)
            else:
                await self._reconcile()
            self.roll_out(ns, deployment)
        except CloverError as exc:
            log.error("scaling %s/%s to %d through the API failed: %s", ns, deployment, replicas, exc)
            self._note("scale-failed", deployment=deployment, replicas=replicas, error=str(exc), namespace=ns)

    async def drop_namespace(self, namespace: str) -> None:
        """Stop a namespace's app (its namespace is being deleted): every pod stopped, its objects out of every
        Envoy's configuration. The home namespace is emptied the same way but stays the mesh's own."""
        topology = self.topologies.get(namespace)
        if topology is None:
            return
        leaving = [p for p in self.pods.values() if p.namespace == namespace and not p.terminating]
        for pod in leaving:
            pod.terminating = True
            pod.ready = False
        if namespace == self.home:
            self.topologies[namespace] = Topology(namespace=namespace)
            self.desired_in[namespace] = {}
        else:
            self.topologies.pop(namespace, None)
            self.desired_in.pop(namespace, None)
        stops = [self._background(self._stop_pod(p, SHUTDOWN_GRACE_S, drain=False)) for p in leaving]
        await self._push_quietly()
        await asyncio.gather(*stops, return_exceptions=True)
        self._note("namespace-dropped", namespace=namespace, pods=[p.name for p in leaving])

    async def kill_pods(self, pods: list[Pod], grace: float, reason: str) -> None:
        """Stop these pods (each within ``grace`` seconds) and let their Deployments replace them."""
        for pod in pods:
            pod.terminating = True
            pod.ready = False
        stops = [self._background(self._stop_pod(p, grace)) for p in pods]
        await self._reconcile()
        await self._push_quietly()
        namespace = pods[0].namespace if pods else self.home
        self._note(
            "killed",
            pods=[p.name for p in pods],
            grace=grace,
            reason=reason,
            namespace=namespace,
            containers=_containers_of(pods),
        )
        await asyncio.gather(*stops, return_exceptions=True)

    # ------------------------------------------------------------------ pods

    def _allocate_ip(self) -> tuple[int, str]:
        for n in range(2, 2 + BLOCK_PODS):
            if n not in self.used_ips:
                self.used_ips.add(n)
                return n, f"{self.block}.{n}"
        raise BackendError(f"the mesh's loopback block {self.block}.0/24 is full ({BLOCK_PODS} pods)")

    def _new_name(self, prefix: str) -> str:
        while True:
            name = f"{prefix}-" + "".join(self.rng.choice(_NAME_ALPHABET) for _ in range(5))
            if name not in self.pods:
                return name

    def _inbound_ports(self, dep: Deployment, namespace: str) -> list[int]:
        ports = [p.port for p in dep.containers[0].ports]
        topology = self.topologies.get(namespace) or Topology(namespace=namespace)
        for svc in topology.services.values():
            if svc.selector and all(dep.pod_labels.get(k) == v for k, v in svc.selector.items()):
                for sp in svc.ports:
                    if isinstance(sp.target_port, int) and sp.target_port not in ports:
                        ports.append(sp.target_port)
        return ports

    def _create_pod(self, dep: Deployment | None, namespace: str | None = None) -> Pod:
        """Start a pod of ``dep`` (None: the ingress gateway) in ``namespace`` (the home one by default)."""
        ns = self.home if namespace is None else namespace
        n, ip = self._allocate_ip()
        try:
            if dep is None:
                name = self._new_name("istio-ingressgateway-" + _template_hash_of("istio-ingressgateway"))
                labels = dict(GATEWAY_LABELS)
            else:
                name = self._new_name(f"{dep.name}-{_template_hash(dep)}")
                labels = dict(dep.pod_labels)
            directory = self.state.pod_dir(name)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            ports = self._inbound_ports(dep, ns) if dep else []
            if dep is not None and not dep.sidecar_injected:
                # Outside the mesh: no inbound listener in front, the app itself listens where other pods reach it.
                inbound = tuple(InboundPort(cp, port, port) for cp in ports for port in (pick_port(ip, cp),))
                spec = ProxySpec(
                    name=name, namespace=ns, kind=NO_PROXY, ip=ip, labels=labels, access_log="", inbound=inbound
                )
            else:
                spec = ProxySpec(
                    name=name,
                    namespace=ns,
                    kind="gateway" if dep is None else "sidecar",
                    ip=ip,
                    admin_socket=str(self.state.make_socket_dir(self.state.admin_socket(name))),
                    labels=labels,
                    access_log=str(directory / "access.log"),
                    access_log_percent=self.log_rotator.limits.access_log_percent,
                    outbound_port=pick_port(ip, 15001) if dep is not None else 0,
                    inbound=tuple(InboundPort(cp, pick_port(ip, cp), pick_port(ip)) for cp in ports),
                )
            pod = Pod(name, dep, labels, ip, spec, directory)
            if dep is None:
                self._open_gateway_ports(pod)
        except BaseException:
            self.used_ips.discard(n)
            raise
        self.pods[name] = pod
        if pod.has_proxy:
            bootstrap = render_bootstrap(spec, xds=self.xds_address)
            (directory / "bootstrap.json").write_text(json.dumps(bootstrap, indent=1), encoding="utf-8")
            # The Envoy fetches this over ADS as soon as it connects.
            self.ads.proxy(name).desired = group_by_type(self._render(spec))
            self._start_envoy(pod)
        if dep is not None:
            self._start_app(pod)
        pod.task = asyncio.create_task(self._watch(pod))
        self._write_pids()
        self._note(
            "pod-created", pod=name, deployment=dep.name if dep else None, namespace=ns, containers=list(pod.containers)
        )
        return pod

    def _open_gateway_ports(self, pod: Pod) -> None:
        ports = dict(pod.spec.gateway_ports)
        topology = self.topologies.get(pod.namespace) or Topology(namespace=pod.namespace)
        for gw in topology.gateways.values():
            if all(pod.labels.get(k) == v for k, v in gw.selector.items()):
                for server in gw.servers:
                    if server.port not in ports:
                        preferred = server.port if server.port >= 1024 else 8000 + server.port
                        ports[server.port] = pick_port(pod.ip, preferred)
        if ports != pod.spec.gateway_ports:
            pod.spec = dataclasses.replace(pod.spec, gateway_ports=ports)

    def _spawn(
        self, argv: list[str], log_name: str, pod: Pod, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        # Appending (O_APPEND) is what lets the log rotation truncate it under the child's feet.
        with open(pod.directory / log_name, "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(pod.directory),
                preexec_fn=die_with_parent,
                close_fds=True,
            )

    def _start_envoy(self, pod: Pod) -> None:
        argv = envoy_command(pod.directory / "bootstrap.json", pod.directory / "envoy.log")
        # The admin socket a killed predecessor left at this path: Envoy 1.40 replaces it when it binds, but a
        # restart in place must not depend on that.
        Path(pod.spec.admin_socket).unlink(missing_ok=True)
        pod.envoy = self._spawn(argv, "envoy.stdout.log", pod)
        pod.envoy_live = False

    async def _bound_logs(self) -> None:
        """Keep the mesh's log files within their limits until it stops: every few seconds a check of their sizes
        (one ``os.stat`` each, in a thread, over the pods as they were when it started), a rotation of those that
        outgrew their limit, and each Envoy whose own log was renamed told to reopen it."""
        interval = self.log_rotator.limits.interval
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)
            if self.stopping.is_set():
                return
            try:
                # In a thread: copying a full access log (32 MiB) would otherwise hold this loop — and with it xDS,
                # the readiness probes and the API — for tens of milliseconds.
                live = {p.name: p.directory for p in self.pods.values()}
                done = await asyncio.to_thread(self.log_rotator.check, live)
                if done.rotated or done.pruned:
                    log.info(
                        "logs: rotated %d files (%s); removed the logs of %d dead pods",
                        len(done.rotated),
                        ", ".join(sorted({p.name for p in done.rotated})),
                        len(done.pruned),
                    )
                pods = [self.pods[name] for name in sorted(done.reopen) if name in self.pods]
                await asyncio.gather(*(self._reopen_logs(pod) for pod in pods))
            except Exception:  # a full disk or a vanished folder must not stop the next check
                log.exception("bounding the mesh's logs failed; trying again in %g s", interval)

    async def _resync_proxies(self) -> None:
        """Every :data:`RESYNC_S`, send each Envoy what it should have and has not acknowledged (see
        :meth:`AdsServer.resync`): a push that timed out on a starved Envoy must not leave it stale for good."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), RESYNC_S)
            if self.stopping.is_set() or self.push_lock.locked():
                continue  # a push under way sends the same, and waits for the ACKs
            try:
                async with self.push_lock:
                    for name in [p.name for p in self.pods.values() if p.has_proxy and not p.terminating]:
                        sent = await self.ads.resync(name)
                        if sent:
                            log.warning("xDS: %s had not acknowledged %s; sent again", name, ", ".join(
                                t.rsplit(".", 1)[-1] for t in sent))
                            self._note("xds-resync", pod=name, types=[t.rsplit(".", 1)[-1] for t in sent])
            except Exception:  # the next round tries again; the mesh must not lose this loop
                log.exception("xDS resync failed; trying again in %g s", RESYNC_S)

    async def _reopen_logs(self, pod: Pod) -> None:
        """Have the Envoy of ``pod`` reopen its log files (the admin API's ``POST /reopen_logs``: SIGUSR1 does the
        same but kills an Envoy that has not installed its handler yet). One that does not answer is asked again
        at the next check; meanwhile it writes to the renamed file."""
        status, body = await http_request_unix(pod.spec.admin_socket, "POST", "/reopen_logs", timeout=2.0)
        if status == 200:
            self.log_rotator.reopened(pod.name)
        else:
            log.warning("the Envoy of %s did not reopen its logs (%s %s); asking again", pod.name, status, body[:200])

    def _argv_of(
        self, dep: Deployment, ip: str = "127.0.0.1", pod: str = "pod", ports: dict[int, int] | None = None
    ) -> list[str]:
        app_ports = ports if ports is not None else {p.port: p.port for p in dep.containers[0].ports}
        return shlex.split(local_command(dep).format_map(placeholders(ip, pod, app_ports, dep)))

    def _start_app(self, pod: Pod) -> None:
        dep = pod.deployment
        assert dep is not None
        app_ports = {ib.container_port: ib.app_port for ib in pod.spec.inbound}
        argv = self._argv_of(dep, pod.ip, pod.name, app_ports)
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
        }
        env.update(self.api_env(pod))
        env.update(container_env(pod))
        if pod.has_proxy:
            proxy = f"http://{pod.ip}:{pod.spec.outbound_port}"
            # The app reaches other services through its sidecar, as iptables interception would route it.
            env.update(HTTP_PROXY=proxy, http_proxy=proxy)
        env.update(CLOVER_SEED=str(self.mesh.get("seed", 0)))
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.zygote is not None and ZygoteClient.handles(argv):
            pod.app = self.zygote.spawn(argv[3:], env, str(pod.directory), str(pod.directory / "app.log"))
        else:
            pod.app = self._spawn(argv, "app.log", pod, env)

    def api_env(self, pod: Pod) -> dict[str, str]:
        """How the app of ``pod`` reaches the Kubernetes API, as a pod on a cluster does: the
        ``KUBERNETES_SERVICE_HOST``/``_PORT`` the kubelet sets, and in ``CLOVER_SERVICEACCOUNT_DIR`` the
        files a pod finds under ``/var/run/secrets/kubernetes.io/serviceaccount/`` (``token``, ``ca.crt``,
        ``namespace``), which cannot be mounted there for a local process. Empty when the API is off."""
        if self.api_address is None or self.api_ca is None:
            return {}
        folder = write_service_account(
            pod.directory / SERVICE_ACCOUNT_DIR, token=self.api_token, ca=self.api_ca, namespace=pod.namespace
        )
        host, port = self.api_address
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            SERVICE_ACCOUNT_ENV: str(folder),
        }

    def _failure_threshold(self, pod: Pod) -> int:
        """Consecutive failed probes that make a ready pod not ready: its readinessProbe's, else Kubernetes' 3."""
        dep = pod.deployment
        probe = dep.containers[0].readiness if dep is not None else None
        return probe.failure_threshold if probe is not None else DEFAULT_FAILURE_THRESHOLD

    async def _probe(self, pod: Pod) -> bool:
        """Whether ``pod`` is ready: its Envoy live (as the sidecar's own readiness gates a pod on Istio), then its
        app by its readinessProbe, else by a TCP connect to its first port, else (no port) by its process running;
        the app alone without a sidecar."""
        if pod.has_proxy:
            status, body = await http_get_unix(pod.spec.admin_socket, "/ready", timeout=1.0)
            if status != 200 or "LIVE" not in body:
                return False
            pod.envoy_live = True
        dep = pod.deployment
        if dep is None:
            return True
        container = dep.containers[0]
        probe = container.readiness
        app_ports = {ib.container_port: ib.app_port for ib in pod.spec.inbound}
        if probe is None:
            port = next(iter(app_ports.values()), None)
            if port is None:
                # Nothing to connect to (a load worker dials out only): ready once running, as Kubernetes has any
                # container without a readinessProbe. With a port, its TCP check stands in for that moment: a local
                # process runs a while before it listens.
                return pod.app is not None and pod.app.poll() is None
            return await _tcp_open(pod.ip, port)
        number = container.port_number(probe.port)
        port = app_ports.get(number or -1, number or 0)
        if probe.kind == "tcp":
            return await _tcp_open(pod.ip, port)
        status, _ = await http_get(pod.ip, port, probe.path, timeout=probe.timeout_s)
        return 200 <= status < 400

    async def _watch(self, pod: Pod) -> None:
        """The pod's kubelet: restarts crashed containers, probes readiness. It must outlive any error of its own
        (a pod whose watcher died would keep its last readiness for good): one is logged and the loop goes on."""
        while not pod.terminating and not self.stopping.is_set():
            try:
                await self._watch_once(pod)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching pod %s failed; watching it again in 1 s", pod.name)
                self._note("watch-failed", pod=pod.name)
                await asyncio.sleep(1.0)

    async def _watch_once(self, pod: Pod) -> None:
        backoff = 0.5
        last_probe = 0.0
        while not pod.terminating and not self.stopping.is_set():
            loop_time = asyncio.get_running_loop().time()
            crashed = [
                (role, proc)
                for role, proc in (("app", pod.app), ("envoy", pod.envoy))
                if proc and proc.poll() is not None
            ]
            if crashed:
                if pod.ready:
                    pod.ready = False
                    await self._push_quietly()
                role, proc = crashed[0]
                self._note(
                    "container-exited", pod=pod.name, container=role, code=proc.returncode, namespace=pod.namespace
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                if pod.terminating or self.stopping.is_set():
                    return
                # kubelet restarts the container in place: same pod, restarts + 1.
                pod.restarts += 1
                pod.probes = 0
                for role, _ in crashed:
                    self._start_envoy(pod) if role == "envoy" else self._start_app(pod)
                self._write_pids()
                continue
            # Probe fast while a pod starts (backing off, so start-up CPU goes to the pods), then every second.
            interval = 1.0 if pod.ready else min(0.01 * 1.5**pod.probes, 0.1)
            if loop_time - last_probe >= interval:
                last_probe = loop_time
                pod.probes += 1
                ready = await self._probe(pod)
                # As kubelet: a ready pod turns not ready only after failureThreshold failures in a row (one answer
                # slowed by a busy moment — an Envoy reopening its logs under load — is not an outage).
                pod.probe_failures = 0 if ready else pod.probe_failures + 1
                if not ready and pod.ready and pod.probe_failures < self._failure_threshold(pod):
                    ready = True
                if ready != pod.ready and not pod.terminating:
                    pod.ready = ready
                    if ready:
                        backoff = 0.5
                    self._note("pod-ready" if ready else "pod-unready", pod=pod.name)
                    await self._push_quietly()
            await asyncio.sleep(0.01 if not pod.ready else 0.1)

    async def _stop_pod(self, pod: Pod, grace: float, drain: bool = True) -> None:
        """Stop the app, then its Envoy (``drain``: the app finishes its requests through it); or both at once."""
        pod.terminating = True
        pod.ready = False
        procs = [p for p in (pod.app, pod.envoy) if p is not None]
        if not drain:
            live = [p for p in procs if p.poll() is None]
            for proc in live:
                proc.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
            await asyncio.gather(*(_wait_exit(p, grace) for p in live))
        else:
            if pod.app is not None and pod.app.poll() is None:
                pod.app.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
                await _wait_exit(pod.app, grace)
            if pod.envoy is not None and pod.envoy.poll() is None:
                pod.envoy.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
                await _wait_exit(pod.envoy, min(grace, 2.0))
        for proc in procs:
            if isinstance(proc, subprocess.Popen):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        if pod.task is not None and pod.task is not asyncio.current_task():
            pod.task.cancel()
        self.pods.pop(pod.name, None)
        self.ads.forget(pod.name)
        if pod.spec.admin_socket:
            # Envoy leaves its socket behind; one outside the state folder (a short path) would outlive the mesh.
            Path(pod.spec.admin_socket).unlink(missing_ok=True)
        self.used_ips.discard(int(pod.ip.rsplit(".", 1)[1]))
        self._write_pids()
        self._note("pod-deleted", pod=pod.name, namespace=pod.namespace)
        self._wake_rollouts()  # a Recreate waits for the old pods to be gone

    async def _stop_all(self) -> None:
        # The whole mesh goes, so no request is in flight that a sidecar must carry to its end: every app and
        # Envoy gets SIGTERM at once (each app before its Envoy, as a scale-down does, took 0.1 s more), and
        # SIGKILL if still there after a short grace, which only a hung process waits out.
        await asyncio.gather(
            *(self._stop_pod(p, SHUTDOWN_GRACE_S, drain=False) for p in list(self.pods.values())),
            return_exceptions=True,
        )
        if self.zygote is not None:
            await self.zygote.stop()

    # ------------------------------------------------------------------ controllers

    async def _reconcile(self, scale_down_grace: float = 30.0) -> list[str]:
        """Bring pods to the desired state; returns the names of pods created."""
        created: list[str] = []
        leaving: list[Pod] = []
        for ns, topology in list(self.topologies.items()):
            gw = self._gateway_pod(ns)
            if topology.gateways and gw is None:
                created.append(self._create_pod(None, ns).name)
            elif gw is not None and not topology.gateways and ns != self.home:
                leaving.append(gw)  # another namespace's gateway goes with its last Gateway
            gw = self._gateway_pod(ns)
            if gw is not None:
                self._open_gateway_ports(gw)
            desired = self.desired_in.setdefault(ns, {})
            for dep in list(topology.deployments.values()):
                self._reconcile_deployment(dep, ns, desired.get(dep.name, dep.replicas), created, leaving)
        for pod in leaving:
            pod.terminating = True
            pod.ready = False
        if leaving:
            # Endpoints first, then the signal: no request is sent to a pod that is shutting down.
            await self._push_quietly()
            for pod in leaving:
                self._background(self._stop_pod(pod, scale_down_grace))
        return created

    def pods_of(self, namespace: str, deployment: str, *, terminating: bool = False) -> list[Pod]:
        """The pods of Deployment ``deployment`` of ``namespace``, whatever their template (``terminating``:
        those leaving too)."""
        return [
            p
            for p in self.pods.values()
            if p.deployment is not None
            and p.deployment.name == deployment
            and p.namespace == namespace
            and (terminating or not p.terminating)
        ]

    def _reconcile_deployment(
        self, dep: Deployment, ns: str, want: int, created: list[str], leaving: list[Pod]
    ) -> None:
        """The deployment controller and the ReplicaSet controller for one Deployment: ``dep`` is its current
        template; its pods of other templates (old ReplicaSets) are replaced by ``spec.strategy``."""
        current = template_hash(dep)
        everyone = self.pods_of(ns, dep.name, terminating=True)
        outdated = [p for p in everyone if p.deployment is not None and template_hash(p.deployment) != current]
        new = [p for p in everyone if not p.terminating and p not in outdated]
        old = [p for p in outdated if not p.terminating]
        # ReplicaSet order of removal: not-ready pods first, then the newest.
        new.sort(key=lambda p: (p.ready, -p.created))
        old.sort(key=lambda p: (p.ready, -p.created))
        if len(new) > want:
            leaving.extend(new[: len(new) - want])
            new = new[len(new) - want :]
        if not old or want == 0:
            leaving.extend(old)
            if strategy_type(dep) == "Recreate" and outdated:
                return  # Recreate: the new pods start once every old one is gone
            for _ in range(want - len(new)):
                created.append(self._create_pod(dep, ns).name)
            return
        if dep.spec.get("paused"):
            return  # a paused rollout holds both ReplicaSets as they are
        if strategy_type(dep) == "Recreate":
            leaving.extend(old)
            return
        surge, unavailable = rolling_limits(dep, want)
        # Scale the new ReplicaSet up within the surge: at most want + maxSurge pods in all.
        for _ in range(min(want, want + surge - len(old)) - len(new)):
            new.append(self._create_pod(dep, ns))
            created.append(new[-1].name)
        # Scale old ones down while want - maxUnavailable pods stay available: first the old pods that are
        # not ready (as much as the new pods' own unavailability leaves room for), then ready ones.
        min_available = want - unavailable
        new_unavailable = sum(1 for p in new if not p.ready)
        max_cleanup = len(old) + len(new) - min_available - new_unavailable
        unhealthy = [p for p in old if not p.ready][: max(0, max_cleanup)]
        available = sum(1 for p in old + new if p.ready)
        healthy = [p for p in old if p.ready][: max(0, available - min_available)]
        leaving.extend(unhealthy + healthy)

    def rolling(self, namespace: str, deployment: str) -> bool:
        """Whether Deployment ``deployment`` of ``namespace`` still has pods of another template than its
        current one (an unpaused rollout under way)."""
        dep = (self.topologies.get(namespace) or Topology(namespace=namespace)).deployments.get(deployment)
        if dep is None or dep.spec.get("paused"):
            return False
        current = template_hash(dep)
        return any(
            p.deployment is not None and template_hash(p.deployment) != current
            for p in self.pods_of(namespace, deployment, terminating=strategy_type(dep) == "Recreate")
        )

    def roll_out(self, namespace: str, deployment: str) -> None:
        """Move the pods of ``deployment`` to its current template by its strategy, in the background (one
        rollout per Deployment: a new template during a rollout is taken up by the running one)."""
        key = (namespace, deployment)
        running = self.rollouts.get(key)
        if running is not None and not running.done():
            self._wake_rollouts()
            return
        if self.rolling(namespace, deployment):
            self.rollouts[key] = self._background(self._drive_rollout(namespace, deployment))

    async def _drive_rollout(self, namespace: str, deployment: str) -> None:
        wake = asyncio.Event()
        self._rollout_wakers.add(wake)
        try:
            while not self.stopping.is_set():
                wake.clear()
                await self._reconcile()
                if not self.rolling(namespace, deployment):
                    return
                # A pod ready or gone is what lets a rollout go on; the timeout is a safety net only.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
        except CloverError as exc:
            log.error("rollout of %s/%s failed: %s", namespace, deployment, exc)
        finally:
            self._rollout_wakers.discard(wake)
            self.rollouts.pop((namespace, deployment), None)
            if self.cluster is not None:
                self.cluster.mark_dirty()

    def _wake_rollouts(self) -> None:
        for wake in self._rollout_wakers:
            wake.set()

    def _endpoints(self, namespace: str | None = None) -> EndpointsView:
        ns = self.home if namespace is None else namespace
        view: dict[tuple[str, int], list[Endpoint]] = {}
        ready = sorted(
            (p for p in self.pods.values() if p.ready and not p.terminating and p.deployment and p.namespace == ns),
            key=lambda p: p.ip,
        )
        topology = self.topologies.get(ns) or Topology(namespace=ns)
        for svc in topology.services.values():
            for sp in svc.ports:
                eps = view.setdefault((svc.name, sp.port), [])
                if not svc.selector:
                    continue
                for pod in ready:
                    if all(pod.labels.get(k) == v for k, v in svc.selector.items()):
                        assert pod.deployment is not None
                        number = pod.deployment.containers[0].port_number(sp.target_port)
                        listen = next((ib.listen_port for ib in pod.spec.inbound if ib.container_port == number), None)
                        if listen is not None:
                            eps.append(Endpoint(pod.name, pod.ip, listen, pod.labels))
        return view

    async def push(self) -> None:
        """Render every proxy's config from the current topology and endpoints; wait for each Envoy's ACK."""
        async with self.push_lock:
            views = {ns: self._endpoints(ns) for ns in self.topologies}
            pods = [p for p in self.pods.values() if not p.terminating and p.has_proxy]
            results = await asyncio.gather(
                *(self.ads.push(p.name, self._render(p.spec, views)) for p in pods),
                return_exceptions=True,
            )
            failures = [
                r for p, r in zip(pods, results, strict=True) if isinstance(r, BaseException) and not p.terminating
            ]
            self.changed.set()
            self._wake_rollouts()
            if self.cluster is not None:
                self.cluster.mark_dirty()  # Endpoints and EndpointSlices follow what the Envoys got
            if failures:
                raise failures[0] if isinstance(failures[0], CloverError) else BackendError(str(failures[0]))

    async def _push_quietly(self) -> None:
        try:
            await self.push()
        except CloverError as exc:
            log.error("endpoint update failed: %s", exc)
            self._note("push-failed", error=str(exc))

    # ------------------------------------------------------------------ control API

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            op = str(request.pop("op", ""))
            handler: Callable[..., Awaitable[Any]] | None = getattr(self, f"op_{op.replace('-', '_')}", None)
            if handler is None:
                response: dict[str, Any] = {
                    "ok": False,
                    "error": {"type": "BackendError", "message": f"unknown operation {op!r}"},
                }
            else:
                try:
                    response = {"ok": True, "result": await handler(**request)}
                except ConfigError as exc:
                    response = {
                        "ok": False,
                        "error": {
                            "type": "ConfigError",
                            "message": str(exc),
                            "problems": [p.__dict__ for p in exc.problems],
                        },
                    }
                except CloverError as exc:
                    response = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}
                except TypeError as exc:
                    response = {
                        "ok": False,
                        "error": {"type": "BackendError", "message": f"bad request for {op}: {exc}"},
                    }
                except Exception as exc:
                    # Answered, not dropped: a connection closed without a reply reads as a dead mesh.
                    log.exception("operation %s failed", op)
                    response = {
                        "ok": False,
                        "error": {
                            "type": "BackendError",
                            "message": f"{op} failed in the mesh supervisor: {exc!r}; see {self.state.log_file}",
                        },
                    }
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError) as exc:
            log.warning("control client error: %s", exc)
        finally:
            writer.close()

    async def op_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "status": self.mesh.get("status")}

    async def op_status(self) -> dict[str, Any]:
        return {
            "mesh_id": self.mesh["mesh_id"],
            "state_dir": str(self.state.root),
            "status": self.mesh.get("status"),
            "seed": self.mesh.get("seed", 0),
            "ingress_url": self.ingress_url(),
            "kube_api_url": self.mesh.get("kube_api_url"),
            "kubeconfig": self.mesh.get("kubeconfig"),
            "kube_api_error": self.mesh.get("kube_api_error"),
            "pods": self._pod_list(self.home),
            "desired": self.desired,
            # Every namespace the mesh runs an app in (the home one included): its ingress, pods and replicas.
            "namespaces": {
                ns: {
                    "ingress_url": self.ingress_url(ns),
                    "pods": self._pod_list(ns),
                    "desired": self.desired_in.get(ns, {}),
                }
                for ns in sorted(self.topologies)
            },
            "istio": [dict(v.raw) for v in self.topology.virtual_services.values()]
            + [dict(d.raw) for d in self.topology.destination_rules.values()]
            + [_gateway_doc(g) for g in self.topology.gateways.values()],
            "events": self.events[-50:],
        }

    def _pod_list(self, namespace: str) -> list[dict[str, Any]]:
        # Beside the protocol's fields: the sidecar's admin socket and outbound port (where the app's calls go), and
        # whether it has an Envoy at all (``envoy``: False for a pod that opted out of injection, whose socket is "").
        return [
            {
                **p.info().as_dict(),
                "admin_socket": p.spec.admin_socket,
                "outbound_port": p.spec.outbound_port,
                "envoy": p.has_proxy,
            }
            for p in sorted(self.pods.values(), key=lambda p: p.name)
            if p.namespace == namespace
        ]

    async def op_wait_ready(self, timeout: float = 60.0, namespace: str | None = None) -> dict[str, Any]:
        """Wait until every Deployment of ``namespace`` (the home one by default) has its ready pods."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            missing = self._not_ready(namespace)
            if not missing:
                async with self.push_lock:  # the last endpoints push has been confirmed
                    pass
                if self.api_task is not None and not self.api_task.done():
                    # The Kubernetes API is part of a ready mesh: `kubectl` works once `clover up` returns.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self.api_task), max(0.1, deadline - loop.time()))
                    if not self.api_task.done():
                        raise BackendError(f"the Kubernetes API of the mesh was not serving after {timeout:.0f} s")
                return {"ready": True}
            if loop.time() > deadline:
                raise BackendError(self._readiness_report(missing, timeout))
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.05)

    def _not_ready(self, namespace: str | None = None) -> list[str]:
        ns = self.home if namespace is None else namespace
        topology = self.topologies.get(ns) or Topology(namespace=ns)
        desired = self.desired_in.get(ns, {})
        missing = []
        for dep in topology.deployments.values():
            pods = self.pods_of(ns, dep.name, terminating=True)
            ready = [p for p in pods if p.ready and not p.terminating]
            if len(ready) != desired.get(dep.name, dep.replicas) or len(pods) != len(ready):
                missing.append(dep.name)
        gw = self._gateway_pod(ns)
        if topology.gateways and (gw is None or not gw.ready):
            missing.append("istio-ingressgateway")
        return missing

    def _readiness_report(self, missing: list[str], timeout: float) -> str:
        lines = [f"not ready after {timeout:.0f} s: {', '.join(missing)}"]
        for pod in self.pods.values():
            if not pod.ready:
                app_log = pod.directory / "app.log"
                tail = ""
                with contextlib.suppress(OSError):
                    tail = " | ".join(app_log.read_text(errors="replace").strip().splitlines()[-3:])
                envoy = ("live" if pod.envoy_live else "not live") if pod.has_proxy else "none (not injected)"
                lines.append(f"  {pod.name}: envoy {envoy}; app log {app_log}: {tail}")
        return "\n".join(lines)

    async def op_apply(self, text: str, source: str = "<string>") -> dict[str, Any]:
        objects, problems = parse_istio_text(text, source)
        if any(p.severity == "error" for p in problems):
            raise ConfigError(problems)
        # The backend protocol acts on the mesh's own namespace: a short host in these objects is read there.
        objects = [dataclasses.replace(o, namespace=self.home) for o in objects]
        new = self.topology.copy()
        for obj in objects:
            new.add(obj)
        refs: list[Problem] = []
        check_references(new, refs)
        problems += [p for p in refs if p.severity == "error" or any(p.obj.endswith(f"/{o.name}") for o in objects)]
        if any(p.severity == "error" for p in problems):
            raise ConfigError(problems)
        await self._swap_topology(new)
        self._note("applied", objects=[f"{type(o).__name__}/{o.name}" for o in objects])
        if self.cluster is not None:
            self.cluster.record_applied(
                dict(o.raw) if isinstance(o, VirtualService | DestinationRule) else _gateway_doc(o) for o in objects
            )
        return {"warnings": [p.__dict__ for p in problems if p.severity == "warning"]}

    async def op_remove(self, kind: str, name: str) -> dict[str, Any]:
        new = self.topology.copy()
        if not new.remove(kind, name):
            raise BackendError(f"no {kind} named {name!r} in the mesh")
        await self._swap_topology(new)
        self._note("removed", object=f"{kind}/{name}")
        if self.cluster is not None:
            self.cluster.record_removed(kind, name)
        return {}

    async def _swap_topology(self, new: Topology, namespace: str | None = None) -> None:
        ns = self.home if namespace is None else namespace
        old = self.topologies.get(ns)
        self.topologies[ns] = new
        self.desired_in.setdefault(ns, {})
        try:
            gw = self._gateway_pod(ns)
            if gw is not None:
                self._open_gateway_ports(gw)
            elif new.gateways and ns != self.home:
                # A namespace's first Gateway brings its gateway pod (the home one is started with the mesh).
                await self._reconcile()
            await self.push()
        except CloverError:
            if old is None:
                self.topologies.pop(ns, None)
            else:
                self.topologies[ns] = old
            await self._push_quietly()
            raise

    async def op_kill(
        self, service: str, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> dict[str, Any]:
        svc = self.topology.services.get(service)
        selector = dict(svc.selector) if svc else {"app": service}
        candidates = sorted(
            (
                p
                for p in self.pods.values()
                if p.deployment
                and not p.terminating
                and p.namespace == self.home
                and all(p.labels.get(k) == v for k, v in selector.items())
            ),
            key=lambda p: p.name,
        )
        if not candidates:
            raise BackendError(f"no running pod of {service!r}; services: {', '.join(sorted(self.topology.services))}")
        if percent is not None:
            n = max(1, math.ceil(len(candidates) * percent / 100.0)) if percent > 0 else 0
        else:
            n = 1 if count is None else count
        if not 0 <= n <= len(candidates):
            raise BackendError(f"cannot kill {n} pods of {service!r}: it has {len(candidates)}")
        victims = self.rng.sample(candidates, n)
        for pod in victims:
            pod.terminating = True
            pod.ready = False
        stops = [self._background(self._stop_pod(p, grace)) for p in victims]
        created = await self._reconcile()
        await self._push_quietly()
        if grace <= 0:
            await asyncio.gather(*stops)
        self._note("killed", pods=[p.name for p in victims], grace=grace, containers=_containers_of(victims))
        return {"killed": [p.name for p in victims], "replacements": created}

    def pod_total(self, namespace: str | None = None, deployment: str = "", replicas: int = 0) -> int:
        """The pods the mesh would have (every namespace's replicas and gateways), with ``deployment`` of
        ``namespace`` at ``replicas`` when given."""
        total = 0
        for ns, topology in self.topologies.items():
            desired = dict(self.desired_in.get(ns, {}))
            if deployment and ns == (self.home if namespace is None else namespace):
                desired[deployment] = replicas
            total += sum(desired.values()) + (1 if topology.gateways else 0)
        return total

    async def op_scale(
        self, deployment: str, replicas: int, max_pods: int | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """Set a Deployment's replicas: refused before anything starts if the pods would not fit (the limit,
        ``max_pods`` when the caller gives one, else the mesh's, counts every namespace's pods; the loopback
        block's free addresses); if a pod cannot be started, the Deployment is put back to its previous count
        and the pods made for it stopped. ``namespace``: the home one by default."""
        ns = self.home if namespace is None else namespace
        topology = self.topologies.get(ns) or Topology(namespace=ns)
        desired = self.desired_in.setdefault(ns, {})
        dep = topology.deployments.get(deployment)
        if dep is None:
            raise BackendError(f"no Deployment {deployment!r}; deployments: {', '.join(sorted(topology.deployments))}")
        if replicas < 0:
            raise BackendError(f"replicas must be 0 or more, got {replicas}")
        limit = max_pods_setting(max_pods, "max_pods") if max_pods is not None else self.max_pods
        previous = desired.get(deployment, dep.replicas)
        total = self.pod_total(ns, deployment, replicas)
        if replicas > previous and total > limit:
            raise BackendError(too_many_pods(f"scaling {deployment} to {replicas}", total, limit))
        live = len(self.pods_of(ns, deployment))
        # Terminating pods keep their address until they exit (up to their grace period).
        free = BLOCK_PODS - len(self.used_ips)
        if replicas - live > free:
            raise BackendError(
                f"scaling {deployment} to {replicas} needs {replicas - live} new pods, and the mesh's loopback block "
                f"{self.block}.0/24 has {free} free addresses now: nothing was started; retry once terminating pods "
                "are gone, or scale less"
            )
        before = set(self.pods)
        desired[deployment] = replicas
        try:
            created = await self._reconcile()
        except Exception as exc:
            desired[deployment] = previous
            extra = [p for name, p in self.pods.items() if name not in before and p in self.pods_of(ns, deployment)]
            for pod in extra:
                pod.terminating = True
                pod.ready = False
            await asyncio.gather(*(self._stop_pod(p, 0.0, drain=False) for p in extra), return_exceptions=True)
            await self._push_quietly()
            self._note("scale-failed", deployment=deployment, replicas=replicas, error=str(exc), namespace=ns)
            raise BackendError(
                f"scaling {deployment} to {replicas} failed: {exc}; it is back at {previous} replicas "
                f"({len(extra)} pods it had started are stopped)"
            ) from exc
        self._note("scaled", deployment=deployment, replicas=replicas, namespace=ns)
        return {"created": created, "previous": previous}

    async def op_shutdown(self) -> dict[str, Any]:
        # Next loop turn: the reply is written first (by then in the socket's buffer, which outlives this process).
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return {}


SERVICE_ACCOUNT_ENV = "CLOVER_SERVICEACCOUNT_DIR"
"""The variable that names a pod's service-account folder (a cluster mounts it at
``/var/run/secrets/kubernetes.io/serviceaccount``)."""
SERVICE_ACCOUNT_DIR = "serviceaccount"


def write_service_account(folder: Path, *, token: str, ca: bytes, namespace: str) -> Path:
    """Write a pod's service-account files into ``folder`` (0700): ``token``, ``ca.crt``, ``namespace``, as the
    kubelet projects them, all 0600 (everything in a mesh's state folder is this user's alone). Returns ``folder``."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, data, mode in (
        ("token", token.encode("ascii"), 0o600),
        ("ca.crt", ca, 0o600),
        ("namespace", namespace.encode("utf-8"), 0o600),
    ):
        descriptor = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        os.chmod(folder / name, mode)
    return folder


def container_env(pod: Pod) -> dict[str, str]:
    """The environment its pod template gives the app container of ``pod`` (values and field references)."""
    dep = pod.deployment
    if dep is None or not dep.containers:
        return {}
    return {
        v.name: v.value if v.value is not None else _field_ref(pod, v.field_ref or "") for v in dep.containers[0].env
    }


def _field_ref(pod: Pod, path: str) -> str:
    if path == "metadata.name":
        return pod.name
    if path == "metadata.namespace":
        return pod.namespace
    if path in ("status.podIP", "status.podIPs"):
        return pod.ip
    if path in ("status.hostIP", "spec.nodeName"):
        return "127.0.0.1" if path == "status.hostIP" else "localhost"
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return pod.labels.get(path[len("metadata.labels['") : -2], "")
    if path.startswith("metadata.annotations['") and path.endswith("']"):
        dep = pod.deployment
        return dep.pod_annotations.get(path[len("metadata.annotations['") : -2], "") if dep else ""
    return ""


def _containers_of(pods: list[Pod]) -> dict[str, list[str]]:
    """Each pod's container names, for a note the Kubernetes API turns into Events after the pods are gone."""
    return {p.name: list(p.containers) for p in pods}


def _documents(folder: Path) -> list[Any]:
    """The bodies of the YAML documents in ``folder``."""
    from ...istio.parse import load_documents

    return [doc.body for doc in load_documents([folder], [])]


def _with_specs(topology: Topology, documents: list[Any]) -> Topology:
    """``topology`` with each Deployment's ``spec`` as its ``documents`` write it (what its pod template hash
    is made of, as the Kubernetes API makes it from the same documents)."""
    specs: dict[str, dict[str, Any]] = {}
    for body in documents:
        if isinstance(body, dict) and body.get("kind") == "Deployment" and isinstance(body.get("spec"), dict):
            specs[str((body.get("metadata") or {}).get("name", ""))] = body["spec"]
    for name, dep in list(topology.deployments.items()):
        if name in specs:
            topology.deployments[name] = dataclasses.replace(dep, spec=specs[name])
    return topology


def _gateway_doc(g: Gateway) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": g.name, "namespace": g.namespace},
        "spec": {
            "selector": dict(g.selector),
            "servers": [
                {"port": {"number": s.port, "name": s.port_name, "protocol": s.protocol}, "hosts": list(s.hosts)}
                for s in g.servers
            ],
        },
    }


async def _tcp_open(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _wait_exit(proc: subprocess.Popen[bytes] | ZygoteProcess, grace: float) -> None:
    deadline = time.monotonic() + max(grace, 0.0)
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
        # A forked pod's exit is reported by the zygote: give the report a moment to arrive.
        for _ in range(100):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--lock-fd"):
        print("usage: python -m pytest_clover.backends.local.supervisor STATE_DIR [--lock-fd FD]", file=sys.stderr)
        return 2
    state = MeshState(args[0])
    # Everything the mesh writes (logs, configs, records, sockets), its Envoys' and pods' files included, is
    # for this user alone: the admin sockets and pids.json must not be reachable or writable by anyone else.
    os.umask(0o077)
    # The mesh's processes run in its folder: how `clover cleanup` tells them from a PID a file merely names.
    os.chdir(state.root)
    # The mesh's lock, held for its whole life (never closed: released when this process ends). The deploying
    # client took it and passed it on; a supervisor started by hand takes it itself.
    lock_fd = int(args[2]) if len(args) == 3 else state.try_lock()
    try:
        if lock_fd is None:
            raise BlockingIOError
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"cannot start the mesh: a mesh is already starting or running at {state.root}", file=sys.stderr)
        return 1
    logging.basicConfig(
        filename=str(state.log_file), level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Before any pod starts: every Envoy, the zygote and the apps inherit it.
    log.info("open files limit %d", raise_open_files_limit())
    try:
        supervisor = Supervisor(state)
    except CloverError as exc:
        log.error("cannot start: %s", exc)
        print(f"cannot start the mesh: {exc}", file=sys.stderr)
        return 1
    crashed = False
    try:
        asyncio.run(supervisor.run())
    except Exception:
        crashed = True
        log.exception("supervisor crashed")
        raise
    finally:
        # After a crash the state dir stays: its supervisor.out and log say why, and the owner (or
        # `clover cleanup`) removes it once read.
        if not supervisor.mesh.get("keep_state") and not crashed:
            # Still holding the lock: a deploy waiting on this folder starts only once it is gone.
            with contextlib.suppress(CloverError, OSError):
                remove_state(state, supervisor.mesh["mesh_id"], holding_lock=True)
            unregister_mesh(supervisor.mesh["mesh_id"])
    return 0


if __name__ == "__main__":
    # Run as `python -m`, this module is `__main__`: the Kubernetes API's controllers, which import it by its
    # name, get this very module rather than a second copy compiled and run again (~0.1 s during start-up).
    sys.modules.setdefault("pytest_clover.backends.local.supervisor", sys.modules[__name__])
    code = main()
    # Skip interpreter finalization, which `clover down` waits out (measured 0.13-0.17 s on 2 cores, against
    # 0.01 s for this): every child is reaped and the state removed by now; only buffers remain to flush.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
