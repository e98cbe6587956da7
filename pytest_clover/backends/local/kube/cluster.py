"""The mesh behind the Kubernetes API: the supervisor's loops as Kubernetes' controllers and kubelet.

The store (:mod:`.store`) holds what users wrote and what the mesh reports. This module connects it to the
supervisor, in both directions:

- **admission** (:meth:`Cluster.admit`): Deployments, Services and Istio objects go through the same parser and
  cross-object checks as ``clover validate``; an object the mesh could not run is refused with a 422 ``Invalid``
  whose causes name the fields, as Istio's validating webhook answers;
- **effects** (:meth:`Cluster.committed`): a write to an Istio object or a Service of the mesh's namespace
  rebuilds the topology from the store and returns once every Envoy has ACKed the new configuration (stronger
  than a cluster, where istiod pushes later); a Deployment's new replica count is handed to the ReplicaSet
  controller and the write returns at once, its status following, as on a cluster;
- **kubelet** (:meth:`Cluster.sync`): every pod of the supervisor is a ``v1`` Pod with phase, conditions, podIP
  and the statuses of its ``app`` and ``istio-proxy`` containers (restartCount included), owned by its
  ReplicaSet, owned by its Deployment; its template's annotations, and Istio's ``sidecar.istio.io/status`` when
  injected. A pod whose template opts out of injection (``sidecar.istio.io/inject: "false"``) has the ``app``
  container alone, as the injector leaves it: its logs and exec are the app's, a log request for
  ``istio-proxy`` gets the 400 a cluster answers, and it has no Envoy admin port. Deployment and ReplicaSet
  status (replicas, ready, updated, available, observedGeneration), Endpoints and EndpointSlices follow the
  pods; kills, starts, restarts and scaling are Events;
- **Istio's installation**: each namespace's ingress gateway pod (labels ``istio: ingressgateway``, ``app:
  istio-ingressgateway``) has the Service ``istio-ingressgateway`` in front of it, type LoadBalancer, its
  ``http2`` port the one the gateway listens on and the pod's loopback IP as the load balancer's ingress, so
  that Istio's recipe for the ingress URL finds the same URL as the pod's ``clover.opnfv.org/ingress-url``.
  It is marked :data:`SYSTEM_LABEL`: the mesh's, not the app's (left out of the namespace's topology);
- **deletion**: a Pod deleted through the API (with its grace period) is stopped, and replaced by its
  ReplicaSet under a new name.

**Namespaces.** Every namespace is an app of the mesh: Deployments, Services and Istio objects written into
another namespace than the mesh's own (the topology's) start that namespace's pods, endpoints and gateway
beside the first, isolated from it (a short host is read in its object's namespace; see the supervisor's and
translate's docstrings for routing and ingress). :meth:`Cluster.run` follows the store, not only the API's
writes: a Deployment, Service or Istio object removed by any means (garbage collection, the namespace
controller) leaves the mesh, and a namespace marked for deletion has its app stopped at once (its pods'
processes gone, its configuration out of every Envoy), after which the namespace controller finds it empty.
The mesh's own namespace, emptied the same way, stays the backend's.

**Rollouts.** A Deployment's model is its current pod template (with its spec: strategy, paused); each pod runs
the model of its ReplicaSet. A new template (``kubectl set env / set image / rollout restart / rollout undo``)
becomes the model and the supervisor replaces the pods by ``spec.strategy`` (:meth:`Supervisor.roll_out`); here,
as the deployment controller: one ReplicaSet per template (``pod-template-hash``, owned by the Deployment),
``deployment.kubernetes.io/revision`` on both (a template made again reuses its ReplicaSet with the next
revision), ``desired-replicas`` / ``max-replicas``, old empty ReplicaSets pruned past ``revisionHistoryLimit``,
and the Deployment's status (replicas, updated, ready, available, unavailable, observedGeneration, conditions
Available and Progressing) as ``kubectl rollout status`` reads it. A paused Deployment keeps running its
template until resumed. Left out: proportional scaling of a paused or unfinished rollout (a scale then applies
to the new ReplicaSet once it is the only one), ``minReadySeconds`` and ``progressDeadlineSeconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....errors import CloverError, ConfigError, Problem
from ....istio.checks import build_topology
from ....istio.model import Source, Topology
from ....istio.parse import Document, parse_documents
from .errors import ApiError, Cause

if TYPE_CHECKING:
    from ....istio.model import Deployment
    from ..supervisor import Pod, Supervisor
    from .resources import Resource
    from .store import Store
    from .tls import Credentials

log = logging.getLogger("pytest_clover.supervisor.cluster")

__all__ = ["MESH_KINDS", "ApiStart", "Cluster", "start_api"]

MESH_KINDS = {
    "apps/deployments": "Deployment",
    "/services": "Service",
    "networking.istio.io/virtualservices": "VirtualService",
    "networking.istio.io/destinationrules": "DestinationRule",
    "networking.istio.io/gateways": "Gateway",
}
"""What the mesh runs, by store key: the kinds the topology is built from."""
TRAFFIC_KINDS = {"/services", "networking.istio.io/virtualservices", "networking.istio.io/destinationrules",
                 "networking.istio.io/gateways"}  # fmt: skip
"""Writes to these change Envoy configuration: they return once every Envoy has ACKed it."""
MANAGER = "clover-supervisor"
"""The field manager of what the mesh itself writes (status, pods, endpoints)."""
INGRESS_ANNOTATION = "clover.opnfv.org/ingress-url"
"""On a namespace's ingress gateway Pod: where its Gateways are served (``http://IP:port``)."""
SIDECAR_STATUS = "sidecar.istio.io/status"
"""The annotation Istio's injector puts on each pod it injected (what ``istioctl`` and the CNI plugin look for)."""
GATEWAY_SERVICE = "istio-ingressgateway"
"""The Service in front of a namespace's ingress gateway pod, named as Istio's charts name it."""
SYSTEM_LABEL = "clover.opnfv.org/system"
"""On the objects the mesh provides as a cluster's Istio installation would (the gateway's Service): they are
not part of the namespace's app, so its topology leaves them out."""
ADMIN_PORTS = (15000, 15090)
REVISION = "deployment.kubernetes.io/revision"
NOT_COPIED_ANNOTATIONS = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)
"""A Deployment's annotations its ReplicaSets do not take (Kubernetes' skip list)."""
"""Ports of a pod that reach its sidecar's admin API (15090 serves ``/stats/prometheus`` on Istio)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _causes(problems: Iterable[Problem]) -> list[Cause]:
    return [
        Cause(field=p.field, message=p.message, reason="FieldValueInvalid") for p in problems if p.severity == "error"
    ]


class Cluster:
    """The :class:`~.hooks.ClusterHooks` of the embedded mesh: the store on one side, the supervisor on the other."""

    def __init__(self, supervisor: Supervisor, store: Store) -> None:
        self.sup = supervisor
        self.store = store
        self.namespace = supervisor.home
        """The mesh's own namespace (what the backend protocol acts on)."""
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._killing: set[str] = set()
        self._events_seen = 0
        self._observed: dict[tuple[str, str], int] = {}
        """The generation of each (namespace, Deployment) the mesh runs: its status' observedGeneration."""
        self._apply_lock = asyncio.Lock()
        """One change of the mesh's apps at a time: a removal seen both as an API write and in the store's
        watch is applied once."""

    # ------------------------------------------------------------------ seeding

    def seed(self, documents: Iterable[Any]) -> None:
        """Store the namespaces and the topology's own documents (as ``kubectl apply`` would have created them)."""
        from .resources import by_kind

        for ns in ("default", "kube-system", "kube-public", "kube-node-lease", self.namespace):
            self._ensure("/namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for doc in documents:
            if not isinstance(doc, dict):
                continue
            resource = by_kind(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
            if resource is None:
                continue
            body = dict(doc)
            if resource.key == "apps/deployments":
                body = copy.deepcopy(body)
                _default_deployment(body)  # stored as kube-apiserver stores what `kubectl apply` sends
            meta = dict(body.get("metadata") or {})
            if resource.namespaced:
                meta.setdefault("namespace", self.namespace)
            body["metadata"] = meta
            namespace = meta.get("namespace") if resource.namespaced else None
            if namespace and namespace != self.namespace:
                self._ensure(
                    "/namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
            self._ensure(resource.key, namespace, body)
        self.sync()

    def _ensure(self, key: str, namespace: str | None, body: dict[str, Any]) -> None:
        status = None
        if key == "/namespaces":
            from .gc import new_namespace

            body = new_namespace(str(body["metadata"]["name"]))  # as kube-apiserver makes one: Active
            status = body.pop("status", None)
        with contextlib.suppress(ApiError):  # already there: the server made the standard namespaces
            self.store.create(key, body, status=status)

    # ------------------------------------------------------------------ what the mesh changed by itself

    def record_applied(self, documents: Iterable[dict[str, Any]]) -> None:
        """Istio objects applied through the mesh's own control socket (the backend protocol, faults, `clover
        apply`): stored as written, so the API shows what is in force."""
        from .resources import by_kind

        for doc in documents:
            resource = by_kind(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
            if resource is None:
                continue
            body = {k: v for k, v in doc.items() if k != "status"}
            meta = dict(body.get("metadata") or {})
            meta["namespace"] = self.namespace
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
                meta.pop(key, None)
            body["metadata"] = meta
            old = self._stored(resource.key, str(meta.get("name", "")))
            try:
                if old is None:
                    self.store.create(resource.key, body)
                else:
                    kept = {k: old["metadata"][k] for k in ("uid", "creationTimestamp") if k in old["metadata"]}
                    body["metadata"] = {**meta, **kept}
                    self.store.update(resource.key, body)
            except ApiError as exc:
                log.warning("%s/%s not mirrored in the API: %s", resource.kind, meta.get("name"), exc)

    def record_removed(self, kind: str, name: str) -> None:
        key = next((k for k, v in MESH_KINDS.items() if v == kind), None)
        if key is not None:
            with self._logged():
                self.store.delete(key, self.namespace, name, grace_period_seconds=0)

    # ------------------------------------------------------------------ admission and effects

    async def admit(
        self,
        resource: Resource,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        dry_run: bool,
    ) -> list[str]:
        kind = MESH_KINDS.get(resource.key)
        if kind is None or obj is None or operation == "DELETE" or _is_system(obj):
            return []
        name = str((obj.get("metadata") or {}).get("name", ""))
        if resource.key == "apps/deployments":
            _default_deployment(obj)
            _check_strategy(obj, name)
        problems: list[Problem] = []
        objects = parse_documents([Document(Source(f"{kind}/{name}", 0), obj)], problems)
        errors = _causes(problems)
        if errors:
            raise ApiError.invalid(kind, name, errors, group=resource.group)
        namespace = str((obj.get("metadata") or {}).get("namespace") or self.namespace)
        if resource.key == "apps/deployments":
            self._admit_replicas(obj, old, namespace)
        warnings = [f"{p.field}: {p.message}" if p.field else p.message for p in problems if p.severity == "warning"]
        if not objects:
            return warnings
        # The object among the others of its namespace: references that cannot resolve are refused as the mesh
        # would fail them (a VirtualService routing to no Service), the rest stay warnings.
        _, ref_problems = self._topology_with(resource.key, obj, namespace=namespace)
        ref_errors = [p for p in ref_problems if p.severity == "error" and p.obj.endswith(f"/{name}")]
        if ref_errors:
            raise ApiError.invalid(kind, name, _causes(ref_errors), group=resource.group)
        return warnings

    def _admit_replicas(self, obj: dict[str, Any], old: dict[str, Any] | None, namespace: str) -> None:
        from ..plan import too_many_pods

        spec = obj.get("spec") or {}
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int):
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        before = self.sup.desired_in.get(namespace, {}).get(name, 0)
        # The limit is the mesh's, every namespace's pods counted (a new namespace's gateway is not foreseen).
        total = self.sup.pod_total(namespace, name, replicas)
        if namespace not in self.sup.topologies:
            total += replicas
        if replicas > before and total > self.sup.max_pods:
            message = too_many_pods(f"scaling {name} to {replicas}", total, self.sup.max_pods)
            raise ApiError.invalid("Deployment", name, [Cause("spec.replicas", message)], group="apps")

    def _topology_with(
        self,
        key: str,
        obj: dict[str, Any] | None,
        removed: tuple[str, str] | None = None,
        *,
        namespace: str | None = None,
    ) -> Any:
        """The topology of ``namespace`` (the mesh's own by default) as the store holds it, with ``obj`` written
        (or ``removed``); its references to other namespaces are checked against what the mesh runs there."""
        ns = self.namespace if namespace is None else namespace
        problems: list[Problem] = []
        docs: list[Document] = []
        name = str(((obj or {}).get("metadata") or {}).get("name", ""))
        for store_key, kind in MESH_KINDS.items():
            for item in self.store.list(store_key, ns).items:
                item_name = str(item["metadata"]["name"])
                if (store_key == key and item_name == name) or removed == (store_key, item_name):
                    continue
                if _is_system(item):
                    continue
                docs.append(Document(Source(f"{kind}/{item_name}", 0), item))
        if obj is not None:
            docs.append(Document(Source(f"{MESH_KINDS[key]}/{name}", 0), obj))
        objects = parse_documents(docs, problems)
        # References to other namespaces are checked against what the mesh runs there.
        others = {other: t for other, t in self.sup.topologies.items() if other != ns}
        topology = build_topology(objects, problems, others)
        topology.namespace = ns
        # Each Deployment with its spec as stored: its pod template (hashed: one ReplicaSet per template) and
        # rollout settings.
        for doc in docs:
            dep_name = doc.source.file.partition("/")[2] if doc.source.file.startswith("Deployment/") else None
            spec = doc.body.get("spec") if isinstance(doc.body, dict) else None
            if dep_name in topology.deployments and isinstance(spec, dict):
                topology.deployments[dep_name] = dataclasses.replace(topology.deployments[dep_name], spec=spec)
        return topology, problems

    async def committed(self, resource: Resource, operation: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        if resource.key == "/pods":
            await self._pod_changed(operation, obj)
            return
        if resource.key == "/namespaces":
            if operation == "DELETE" or meta.get("deletionTimestamp"):
                await self._drop_namespace(str(meta.get("name")))
            return
        if resource.key not in MESH_KINDS or not namespace or _is_system(obj):
            return
        removed = operation == "DELETE"
        await self._apply(resource.key, str(namespace), None if removed else obj, str(meta.get("name")))

    async def _apply(
        self, key: str, namespace: str, obj: dict[str, Any] | None, name: str, *, seen_in_watch: bool = False
    ) -> None:
        """Run the store's ``namespace`` in the mesh after ``obj`` was written there (None: ``name`` is gone).
        Returns once every Envoy ACKed a change of Services or Istio objects; a removal the mesh already
        applied is not applied again (``seen_in_watch``: nor one whose object was made again since)."""
        async with self._apply_lock:
            if self._namespace_gone(namespace):
                return  # the namespace's app is stopped as a whole (_drop_namespace)
            if seen_in_watch and self.store.exists(key, namespace, name):
                return  # made again since (a replace): the write that made it is what runs
            running = self.sup.topologies.get(namespace)
            removed = (key, name) if obj is None else None
            if removed is not None and not _runs(running, MESH_KINDS[key], name):
                return
            topology, problems = self._topology_with(key, obj, removed, namespace=namespace)
            if any(p.severity == "error" for p in problems):
                # Admission let it through, another object broke since: keep the mesh as it runs, say why.
                log.error("not applied to the mesh: %s", "; ".join(str(p) for p in problems if p.severity == "error"))
                return
            if key == "apps/deployments":
                await self._deployment_changed(namespace, name, obj, topology)
                return
            # The running Deployments stay as they are: pods are matched to their model objects by identity.
            topology.deployments = dict(running.deployments) if running is not None else {}
            try:
                await self.sup.swap_topology(topology)
            except CloverError as exc:
                raise ApiError(500, f"the mesh could not apply the change: {exc}") from exc
            self.sup.note("applied", objects=[f"{MESH_KINDS[key]}/{name}"], via="api", namespace=namespace)

    async def _deployment_changed(
        self, namespace: str, name: str, obj: dict[str, Any] | None, topology: Topology
    ) -> None:
        replicas = int((obj.get("spec") or {}).get("replicas", 1)) if obj is not None else 0
        if namespace not in self.sup.topologies:
            # A namespace's first object: its app joins the mesh (its Services and Istio objects with it).
            joined = topology.copy()
            joined.deployments = {}
            await self.sup.swap_topology(joined)
        running = self.sup.topologies[namespace]
        new = topology.deployments.get(name)
        if new is not None:
            # The Deployment's model is its current template: pods of another template (the old ReplicaSets')
            # are replaced by the rollout the supervisor runs. A paused Deployment keeps its running template
            # (a new one is stored and rolled out once resumed), taking the rest of its spec.
            from ..supervisor import template_hash

            old = running.deployments.get(name)
            if old is not None and new.spec.get("paused") and template_hash(old) != template_hash(new):
                new = dataclasses.replace(old, spec={**new.spec, "template": old.spec.get("template")})
            running.deployments[name] = new
            if obj is not None:
                self._observed[(namespace, name)] = int((obj.get("metadata") or {}).get("generation") or 1)
            self.mark_dirty()  # its status observes the new generation even when no pod changes
        if name in topology.deployments or obj is None:
            self._spawn(self.sup.set_replicas(name, replicas, forget=obj is None, namespace=namespace))

    def _namespace_gone(self, namespace: str) -> bool:
        """Whether ``namespace`` is being deleted (or is gone): the mesh runs nothing more there."""
        try:
            ns = self.store.get("/namespaces", None, namespace)
        except ApiError:
            return True
        meta = ns.get("metadata") or {}
        return bool(meta.get("deletionTimestamp")) or (ns.get("status") or {}).get("phase") == "Terminating"

    async def _drop_namespace(self, namespace: str) -> None:
        """A namespace marked for deletion: stop its app now (pods, configuration), before the namespace
        controller deletes its objects one by one (which would otherwise have pods replaced meanwhile)."""
        async with self._apply_lock:
            if namespace in self.sup.topologies and self._namespace_gone(namespace):
                await self.sup.drop_namespace(namespace)
                self.mark_dirty()

    async def _pod_changed(self, operation: str, obj: dict[str, Any]) -> None:
        """A pod deleted through the API (graceful: it carries a deletionTimestamp; forced: it is gone)."""
        name = str(obj["metadata"]["name"])
        pod = self.sup.pods.get(name)
        if pod is None or pod.terminating or name in self._killing:
            return
        if pod.namespace != (obj.get("metadata") or {}).get("namespace"):
            return
        if self._namespace_gone(pod.namespace):
            # The namespace controller deleting its content: the whole app stops, no pod is replaced.
            await self._drop_namespace(pod.namespace)
            return
        meta = obj.get("metadata") or {}
        if operation == "DELETE" or meta.get("deletionTimestamp"):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0) if operation != "DELETE" else 0.0
            self._killing.add(name)
            self._spawn(self._kill(pod, grace))

    async def _kill(self, pod: Pod, grace: float) -> None:
        try:
            await self.sup.kill_pods([pod], grace, reason="deleted through the API")
        finally:
            self._killing.discard(pod.name)
            self.mark_dirty()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ endpoints for streams

    def pod_endpoint(self, namespace: str, name: str) -> Any:
        from .hooks import PodEndpoint

        pod = self.sup.pods.get(name)
        if pod is None or namespace != pod.namespace:
            return None

        async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if port in ADMIN_PORTS and pod.has_proxy:
                return await asyncio.open_unix_connection(pod.spec.admin_socket)
            for ib in pod.spec.inbound:
                if ib.container_port == port:
                    return await asyncio.open_connection(pod.ip, ib.app_port)
            if port in pod.spec.gateway_ports.values() or port in pod.spec.gateway_ports:
                return await asyncio.open_connection(pod.ip, pod.spec.gateway_ports.get(port, port))
            envoy = ", and 15000 (Envoy)" if pod.has_proxy else " (no sidecar: no Envoy admin port)"
            raise ApiError(400, f"pod {name} has no container port {port}: ports {sorted(self._ports(pod))}{envoy}")

        def log_path(container: str) -> Path | None:
            if container in ("", "app"):
                return pod.directory / "app.log" if pod.deployment is not None else pod.directory / "envoy.log"
            if container == "istio-proxy" and pod.has_proxy:
                return Path(pod.spec.access_log)
            return None

        async def run(io: Any) -> int:
            return await exec_in_pod(pod, io, api_env=self.sup.api_env(pod) if pod.deployment else None)

        return PodEndpoint(connect=connect, log_path=log_path, running=lambda: name in self.sup.pods, exec=run)

    def _ports(self, pod: Pod) -> list[int]:
        return [ib.container_port for ib in pod.spec.inbound] + list(pod.spec.gateway_ports)

    def service_endpoint(self, namespace: str, name: str, port: str) -> Any:
        topology = self.sup.topologies.get(namespace)
        svc = topology.services.get(name) if topology is not None else None
        if svc is None and name == GATEWAY_SERVICE:
            return self._gateway_endpoint(namespace, port)
        if svc is None:
            return None
        wanted = next((p for p in svc.ports if port in ("", str(p.port), p.name or "")), None)
        if wanted is None:
            return None
        endpoints = self.sup.endpoints(namespace).get((svc.name, wanted.port), [])

        async def connect(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if not endpoints:
                raise ApiError(503, f'no endpoints available for service "{name}"')
            ep = endpoints[0]
            return await asyncio.open_connection(ep.ip, ep.port)

        return connect

    def _gateway_of(self, namespace: str) -> Pod | None:
        """The ingress gateway pod of ``namespace`` (its one pod without a Deployment), if it runs."""
        return next(
            (
                p
                for p in self.sup.pods.values()
                if p.deployment is None and not p.terminating and p.namespace == namespace
            ),
            None,
        )

    def _gateway_endpoint(self, namespace: str, port: str) -> Any:
        gateway = self._gateway_of(namespace)
        if gateway is None or not _is_system(self._stored("/services", GATEWAY_SERVICE, namespace)):
            return None
        listened = sorted(gateway.spec.gateway_ports.values())
        if not listened:
            return None
        number = int(port) if port.isdigit() and int(port) in listened else listened[0]

        async def connect(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(gateway.ip, number)

        return connect

    # ------------------------------------------------------------------ kubelet and status

    @contextlib.contextmanager
    def _logged(self) -> Iterator[None]:
        """A write of the mesh's own status that the store refuses is a bug to see in the log, not a crash."""
        try:
            yield
        except ApiError as exc:
            log.warning("status not written: %s", exc, stack_info=True)

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        """Keep the store's pods, statuses, endpoints and events in step with the supervisor (coalesced), and
        the mesh in step with the store: what leaves the store by any means leaves the mesh."""
        self._spawn(self._follow("/pods", self._on_pod_event))
        self._spawn(self._follow("/namespaces", self._on_namespace_event))
        for key in MESH_KINDS:
            self._spawn(self._follow(key, functools.partial(self._on_mesh_object_event, key)))
        self._dirty.set()  # what changed between the seed and now
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.sync()
            except Exception:  # a bug in status reporting must not stop the mesh
                log.exception("status sync failed")
            await asyncio.sleep(0.005)  # coalesce a burst of changes (a scale starts several pods at once)

    async def _follow(self, key: str, handle: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        """Hand every change of ``key`` in any namespace to ``handle`` (from now on; a watch that ends, e.g.
        fallen behind, is started again from the current state)."""
        watcher = self.store.watch(key, None, send_initial_events=False)
        while True:
            event = await watcher.next(3600.0)
            if event is None:
                if watcher.ended:
                    watcher = self.store.watch(key, None, send_initial_events=False)
                continue
            if event.get("type") == "ERROR":
                watcher = self.store.watch(key, None, send_initial_events=False)
                continue
            try:
                await handle(str(event.get("type")), event["object"])
            except Exception:  # one change the mesh could not follow must not stop it following the next
                log.exception("following %s failed", key)

    async def _on_pod_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED" or (kind == "MODIFIED" and (obj.get("metadata") or {}).get("deletionTimestamp")):
            await self._pod_changed("DELETE" if kind == "DELETED" else "UPDATE", obj)

    async def _on_namespace_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if kind == "DELETED" or (kind == "MODIFIED" and meta.get("deletionTimestamp")):
            await self._drop_namespace(str(meta.get("name")))

    async def _on_mesh_object_event(self, key: str, kind: str, obj: dict[str, Any]) -> None:
        # Writes through the API are applied by `committed` before they return; a removal by any other way
        # (garbage collection, the namespace controller) is seen here. `_apply` skips what already left.
        if kind != "DELETED":
            return
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
        if namespace:
            await self._apply(key, namespace, None, name, seen_in_watch=True)

    def sync(self) -> None:
        self._sync_events()
        # Nothing new is written into a namespace being deleted (its deletion waits for it to be empty).
        running = [ns for ns in self.sup.topologies if ns == self.namespace or not self._namespace_gone(ns)]
        for namespace in running:
            self._sync_deployments(namespace)  # before the pods: a new pod is created owned by its ReplicaSet
        self._sync_pods()
        for namespace in running:
            self._sync_endpoints(namespace)
            self._sync_gateway_service(namespace)

    def _sync_pods(self) -> None:
        live = {(p.namespace, p.name): p for p in self.sup.pods.values()}
        stored = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in self.store.list("/pods", None).items}
        gone = {ns for ns in {p.namespace for p in live.values()} if self._namespace_gone(ns)}
        for (_, name), pod in live.items():
            old = stored.get((pod.namespace, name))
            if pod.terminating or name in self._killing:
                # Leaving: shown as terminating while its processes stop, never created again once deleted.
                if old is not None and not old["metadata"].get("deletionTimestamp"):
                    with self._logged():
                        self.store.delete("/pods", pod.namespace, name, grace_period_seconds=30)
                continue
            if pod.namespace in gone:
                continue  # nothing new in a namespace being deleted
            body = self._pod_object(pod)
            if old is None:
                # Created with the kubelet's first status, as a pod is seen once it runs.
                old = self._create("/pods", body, status=body["status"])
                if old is None:
                    continue
            annotations = body["metadata"]["annotations"]
            if any((old["metadata"].get("annotations") or {}).get(k) != v for k, v in annotations.items()):
                # The gateway's ingress address, once its ports are open.
                updated = dict(old)
                updated["metadata"] = {
                    **old["metadata"],
                    "annotations": {**(old["metadata"].get("annotations") or {}), **annotations},
                }
                with self._logged():
                    old = self.store.update("/pods", updated)
            if old.get("status") != body["status"] or old["metadata"].get("labels") != body["metadata"]["labels"]:
                updated = dict(old)
                updated["status"] = body["status"]
                with self._logged():
                    self.store.update("/pods", updated, subresource="status")
        # The mesh is the kubelet of its namespaces' pods, and of those of namespaces being deleted (whose
        # deletion waits for their pods to be gone).
        ours = {p.namespace for p in live.values()} | set(self.sup.topologies) | {self.namespace}
        for namespace, name in stored:
            if (namespace, name) in live or name in self._killing:
                continue
            if namespace not in ours and not self._namespace_gone(namespace):
                continue
            with self._logged():
                self.store.delete("/pods", namespace, name, grace_period_seconds=0)

    def _replicaset_name(self, deployment: str, namespace: str | None = None) -> str | None:
        """The name of the ReplicaSet of ``deployment``'s current template."""
        from ..supervisor import template_hash

        topology = self.sup.topologies.get(self.namespace if namespace is None else namespace)
        dep = topology.deployments.get(deployment) if topology is not None else None
        return f"{deployment}-{template_hash(dep)}" if dep is not None else None

    def _pod_object(self, pod: Pod) -> dict[str, Any]:
        info = pod.info()
        labels = dict(pod.labels)
        owners: list[dict[str, Any]] = []
        if pod.deployment is not None:
            from ..supervisor import template_hash

            labels["pod-template-hash"] = template_hash(pod.deployment)
            rs = self._stored("apps/replicasets", f"{pod.deployment.name}-{labels['pod-template-hash']}", pod.namespace)
            if rs is not None:
                owners.append(_owner(rs, "apps/v1", "ReplicaSet"))
        started = _iso(pod.created)
        ready = info.ready
        containers = []
        for cname in pod.containers:
            proc = pod.envoy if cname == "istio-proxy" else pod.app
            running = proc is not None and proc.poll() is None
            state: dict[str, Any] = (
                {"running": {"startedAt": started}}
                if running
                else {"waiting": {"reason": "ContainerCreating" if not pod.terminating else "Terminating"}}
            )
            live = pod.envoy_live if cname == "istio-proxy" else ready
            containers.append(
                {
                    "name": cname,
                    "ready": bool(live and running and not pod.terminating),
                    "started": running,
                    "restartCount": pod.restarts,
                    "image": self._image(pod, cname),
                    "imageID": "",
                    "containerID": f"clover://{proc.pid}" if running and proc is not None else "",
                    "state": state,
                }
            )
        phase = "Running" if any(c["started"] for c in containers) else "Pending"
        conditions = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": started},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": started},
        ]
        spec_containers = [
            {"name": c["name"], "image": c["image"], "ports": [{"containerPort": p} for p in self._ports(pod)]}
            if c["name"] != "istio-proxy"
            else {
                "name": "istio-proxy",
                "image": c["image"],
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
            }
            for c in containers
        ]
        # The template's annotations, as a pod has them, and the one Istio's injector adds to a pod it injected.
        annotations = dict(pod.deployment.pod_annotations) if pod.deployment is not None else {}
        if pod.has_proxy:
            annotations[SIDECAR_STATUS] = '{"containers":["istio-proxy"]}'
        ingress = self.sup.ingress_url(pod.namespace) if pod.deployment is None else None
        if ingress is not None:
            annotations[INGRESS_ANNOTATION] = ingress
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": owners,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"clover-pod:{pod.name}:{pod.created}")),
            },
            "spec": {
                "containers": spec_containers,
                "nodeName": "localhost",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": _grace_of(pod),
            },
            "status": {
                "phase": phase,
                "conditions": conditions,
                "hostIP": "127.0.0.1",
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
                "startTime": started,
                "containerStatuses": containers,
                "qosClass": "BestEffort",
            },
        }

    def _image(self, pod: Pod, container: str) -> str:
        if container == "istio-proxy":
            return "docker.io/istio/proxyv2:clover-embedded"
        dep = pod.deployment
        return (dep.containers[0].image if dep and dep.containers else "") or "clover-local"

    def _create(self, key: str, body: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any] | None:
        try:
            return self.store.create(key, body, status=status)
        except ApiError as exc:
            log.warning("status not written: %s", exc, stack_info=True)
            return None

    def _stored(self, key: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.store.get(key, self.namespace if namespace is None else namespace, name)
        except ApiError:
            return None

    def _sync_deployments(self, namespace: str) -> None:
        """The deployment controller's objects and status: one ReplicaSet per pod template a Deployment ran,
        its revision, the old ones pruned past ``revisionHistoryLimit``; the Deployment's status as Kubernetes
        computes it from them."""
        from ..supervisor import hash_template, rolling_limits, strategy_type, template_hash

        topology = self.sup.topologies.get(namespace)
        if topology is None:
            return
        replicasets = self.store.list("apps/replicasets", namespace).items
        for dep in self.store.list("apps/deployments", namespace).items:
            name = str(dep["metadata"]["name"])
            model = topology.deployments.get(name)
            if model is None:
                continue
            desired = self.sup.desired_in.get(namespace, {}).get(name, model.replicas)
            spec = dep.get("spec") or {}
            if spec.get("replicas", 1) != desired:
                # Scaled by the mesh itself (the backend protocol, `clover scale`): the spec says so.
                changed = dict(dep)
                changed["spec"] = {**spec, "replicas": desired}
                with self._logged():
                    dep = self.store.update("apps/deployments", changed)
            uid = dep["metadata"].get("uid")
            owned = [
                rs
                for rs in replicasets
                if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
            ]
            pods: dict[str, list[Pod]] = {}
            for pod in self.sup.pods_of(namespace, name, terminating=True):
                assert pod.deployment is not None
                pods.setdefault(template_hash(pod.deployment), []).append(pod)
            current = template_hash(model)
            paused = bool(model.spec.get("paused"))
            rolling = any(h != current for h in pods)
            surge = rolling_limits(model, desired)[0] if strategy_type(model) == "RollingUpdate" else 0
            revision = self._revision(dep, owned, current)
            totals = {"replicas": 0, "ready": 0, "spec": 0}
            updated = 0
            for rs_hash in {current} | set(pods) | {_hash_of(rs) for rs in owned}:
                live = [p for p in pods.get(rs_hash, []) if not p.terminating]
                ready = [p for p in live if p.ready]
                replicas = desired if rs_hash == current and not rolling else len(live)
                rs = next((r for r in owned if _hash_of(r) == rs_hash), None)
                if rs is None and rs_hash != current:
                    continue  # pods of a ReplicaSet deleted meanwhile: they leave with the rollout
                annotations = {
                    "deployment.kubernetes.io/desired-replicas": str(desired),
                    "deployment.kubernetes.io/max-replicas": str(desired + surge),
                }
                if rs_hash == current:
                    # The Deployment's own annotations go with its current ReplicaSet, as the controller copies
                    # them (`kubernetes.io/change-cause` is what `kubectl rollout history` lists).
                    for key, value in (dep["metadata"].get("annotations") or {}).items():
                        if key not in NOT_COPIED_ANNOTATIONS:
                            annotations[key] = value
                    annotations[REVISION] = str(revision)
                    updated = len(live)
                self._sync_replicaset(
                    dep,
                    rs,
                    model if rs_hash == current else None,
                    rs_hash,
                    replicas,
                    live,
                    ready,
                    annotations,
                    announce=rolling,
                )
                totals["replicas"] += len(live)
                totals["ready"] += len(ready)
                totals["spec"] += replicas
            self._prune_history(dep, namespace, name)
            # What the controller has seen: a template written but not yet taken by the mesh is not observed.
            stored_hash = hash_template(dict(spec.get("template") or {}))
            generation = int(dep["metadata"].get("generation") or 1)
            if stored_hash == current or paused:
                self._observed[(namespace, name)] = generation
            observed = self._observed.get((namespace, name), generation - 1)
            available = totals["ready"]
            unavailable_allowed = rolling_limits(model, desired)[1] if strategy_type(model) == "RollingUpdate" else 0
            minimum = available >= desired - unavailable_allowed
            complete = updated == desired and totals["replicas"] == updated and available >= updated
            rs_name = f"{name}-{current}"
            old_conditions = {c.get("type"): c for c in (dep.get("status") or {}).get("conditions") or []}
            if paused:
                progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
            elif complete:
                progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
            else:
                progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
            conditions = [
                _condition(
                    old_conditions.get("Available"),
                    "Available",
                    ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                    if minimum
                    else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
                ),
                _condition(old_conditions.get("Progressing"), "Progressing", progressing),
            ]
            status = {
                "observedGeneration": observed,
                "replicas": totals["replicas"],
                "updatedReplicas": updated,
                "readyReplicas": totals["ready"],
                "availableReplicas": available,
                "unavailableReplicas": max(0, totals["spec"] - available),
                "conditions": conditions,
            }
            status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
            self._set_status("apps/deployments", dep, status)

    def _revision(self, dep: dict[str, Any], owned: list[dict[str, Any]], current: str) -> int:
        """The revision of ``dep``'s current template: its ReplicaSet's, made the newest when it is an older one
        (a rollback), as the Deployment's ``deployment.kubernetes.io/revision`` annotation says."""
        revisions = {_hash_of(rs): _revision_of(rs) for rs in owned}
        newest = max(revisions.values(), default=0)
        revision = revisions.get(current, 0)
        if revision == 0 or revision < newest:
            revision = newest + 1
        annotations = dict(dep["metadata"].get("annotations") or {})
        if annotations.get(REVISION) != str(revision):
            changed = dict(dep)
            changed["metadata"] = {**dep["metadata"], "annotations": {**annotations, REVISION: str(revision)}}
            with self._logged():
                dep.update(self.store.update("apps/deployments", changed))
        return revision

    def _prune_history(self, dep: dict[str, Any], namespace: str, name: str) -> None:
        """Delete the oldest empty old ReplicaSets past ``revisionHistoryLimit`` (10 by default)."""
        limit = (dep.get("spec") or {}).get("revisionHistoryLimit", 10)
        if not isinstance(limit, int) or limit < 0:
            return
        uid = dep["metadata"].get("uid")
        current = _revision_of(dep)
        # Read-only (not copied): this runs for every Deployment on every status sync.
        old = [
            rs
            for rs in self.store.list("apps/replicasets", namespace, copy=False).items
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
            and _revision_of(rs) != current
        ]
        if len(old) <= limit:
            return
        busy = self._hashes(namespace, name)  # a ReplicaSet with pods (terminating ones too) stays
        empty = [rs for rs in old if _hash_of(rs) not in busy and (rs.get("spec") or {}).get("replicas", 0) == 0]
        for rs in sorted(empty, key=_revision_of)[: max(0, len(old) - limit)]:
            with self._logged():
                self.store.delete("apps/replicasets", namespace, str(rs["metadata"]["name"]))

    def _hashes(self, namespace: str, name: str) -> set[str]:
        from ..supervisor import template_hash

        return {
            template_hash(p.deployment) for p in self.sup.pods_of(namespace, name, terminating=True) if p.deployment
        }

    def _sync_replicaset(
        self,
        dep: dict[str, Any],
        rs: dict[str, Any] | None,
        model: Deployment | None,
        pod_hash: str,
        desired: int,
        live: list[Pod],
        ready: list[Pod],
        annotations: dict[str, str],
        *,
        announce: bool = False,
    ) -> None:
        """One ReplicaSet of ``dep``: made for its current template (``model``) when missing; replicas,
        annotations and status kept."""
        namespace = str(dep["metadata"]["namespace"])
        if rs is None:
            if model is None:
                return
            from ..supervisor import pod_template

            template = pod_template(model)
            labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": pod_hash}
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{dep['metadata']['name']}-{pod_hash}",
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [_owner(dep, "apps/v1", "Deployment")],
                },
                "spec": {
                    "replicas": desired,
                    "selector": {
                        "matchLabels": {
                            **dict(((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}),
                            "pod-template-hash": pod_hash,
                        }
                    },
                    "template": {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}},
                },
            }
            rs = self._create("apps/replicasets", body)
            if rs is None:
                return
            if announce and desired:
                self._scaling_event(dep, rs, 0, desired)
        else:
            old_annotations = dict(rs["metadata"].get("annotations") or {})
            wanted = {**old_annotations, **annotations}
            before = int((rs.get("spec") or {}).get("replicas") or 0)
            if announce and before != desired:
                self._scaling_event(dep, rs, before, desired)
            if (rs.get("spec") or {}).get("replicas") != desired or wanted != old_annotations:
                changed = dict(rs)
                changed["metadata"] = {**rs["metadata"], "annotations": wanted}
                changed["spec"] = {**(rs.get("spec") or {}), "replicas": desired}
                with self._logged():
                    rs = self.store.update("apps/replicasets", changed)
        status = {
            "replicas": len(live),
            "fullyLabeledReplicas": len(live),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v != 0 or k in ("replicas", "observedGeneration")}
        self._set_status("apps/replicasets", rs, status)

    def _scaling_event(self, dep: dict[str, Any], rs: dict[str, Any], before: int, after: int) -> None:
        """The deployment controller's Event of a rollout step (what ``kubectl describe deploy`` lists)."""
        direction = "up" if after > before else "down"
        message = f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to {after}"
        namespace, name = str(dep["metadata"]["namespace"]), str(dep["metadata"]["name"])
        with self._logged():
            event = _event(namespace, "Deployment", name, "Normal", "ScalingReplicaSet", message, _now())
            event["involvedObject"]["uid"] = dep["metadata"].get("uid", "")
            self.store.create("/events", event)

    def _set_status(self, key: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") == status:
            return
        changed = dict(obj)
        changed["status"] = status
        with self._logged():
            self.store.update(key, changed, subresource="status")

    def _sync_endpoints(self, namespace: str) -> None:
        view = self.sup.endpoints(namespace)
        topology = self.sup.topologies.get(namespace)
        for svc in topology.services.values() if topology is not None else ():
            ready = []
            for sp in svc.ports:
                for ep in view.get((svc.name, sp.port), []):
                    ready.append((sp, ep))
            stored_svc = self._stored("/services", svc.name, namespace)
            if stored_svc is None:
                continue
            svc_labels = dict((stored_svc.get("metadata") or {}).get("labels") or {})
            addresses: dict[str, dict[str, Any]] = {}
            for _, ep in ready:
                addresses[ep.pod] = {
                    "ip": ep.ip,
                    "nodeName": "localhost",
                    "targetRef": {"kind": "Pod", "namespace": namespace, "name": ep.pod},
                }
            ports = [{"name": sp.name or "", "port": _target_number(svc, sp), "protocol": "TCP"} for sp in svc.ports]
            ports = [{k: v for k, v in p.items() if v != ""} for p in ports]
            subsets = (
                [{"addresses": sorted(addresses.values(), key=lambda a: a["ip"]), "ports": ports}] if addresses else []
            )
            endpoints = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": svc.name, "namespace": namespace, "labels": svc_labels},
                "subsets": subsets,
            }
            self._upsert("/endpoints", endpoints, ("subsets",))
            slice_body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc.name}-clover",
                    "namespace": namespace,
                    "labels": {
                        **svc_labels,
                        "kubernetes.io/service-name": svc.name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                    "ownerReferences": [_owner(stored_svc, "v1", "Service")],
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [a["ip"]],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "nodeName": "localhost",
                        "targetRef": a["targetRef"],
                    }
                    for a in sorted(addresses.values(), key=lambda a: a["ip"])
                ],
                "ports": ports,
            }
            self._upsert("discovery.k8s.io/endpointslices", slice_body, ("endpoints", "ports"))

    def _sync_gateway_service(self, namespace: str) -> None:
        """The Service ``istio-ingressgateway`` of ``namespace``'s ingress gateway, as a cluster's Istio has it:
        type LoadBalancer, selecting the gateway pod's labels, a port per Gateway port whose ``port`` is where
        the gateway listens (the lowest named ``http2``, as Istio's recipe for the ingress URL reads it), and
        the gateway pod's loopback IP as the load balancer's ingress. Left alone when someone else made a
        Service of that name; removed when the namespace has no Gateway any more."""
        from ..supervisor import GATEWAY_LABELS

        old = self._stored("/services", GATEWAY_SERVICE, namespace)
        if old is not None and not _is_system(old):
            return
        topology = self.sup.topologies.get(namespace)
        gateway = self._gateway_of(namespace)
        if topology is not None and not topology.gateways and gateway is None:
            if old is not None:
                with self._logged():
                    self.store.delete("/services", namespace, GATEWAY_SERVICE)
            return
        if gateway is None or not gateway.spec.gateway_ports:
            return  # restarting: the Service stays as it was
        listened = gateway.spec.gateway_ports
        ports = []
        for index, server_port in enumerate(sorted(listened)):
            name = "http2" if index == 0 else f"http2-{server_port}"
            ports.append(
                {"name": name, "port": listened[server_port], "protocol": "TCP", "targetPort": listened[server_port]}
            )
        labels = {**GATEWAY_LABELS, SYSTEM_LABEL: "ingressgateway"}
        spec = {
            "type": "LoadBalancer",
            "selector": dict(GATEWAY_LABELS),
            "ports": ports,
            # No node ports: the load balancer's address is the gateway pod's own loopback IP.
            "allocateLoadBalancerNodePorts": False,
            "externalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
        }
        status = {"loadBalancer": {"ingress": [{"ip": gateway.ip, "ipMode": "VIP"}]}}
        if old is None:
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": GATEWAY_SERVICE, "namespace": namespace, "labels": labels},
                "spec": spec,
            }
            old = self._create("/services", body, status=status)
        elif old.get("spec") != spec or (old["metadata"].get("labels") or {}) != labels:
            changed = {**old, "spec": spec, "metadata": {**old["metadata"], "labels": labels}}
            with self._logged():
                old = self.store.update("/services", changed)
        if old is not None and old.get("status") != status:
            with self._logged():
                self.store.update("/services", {**old, "status": status}, subresource="status")
        endpoint_ports = [{"name": p["name"], "port": p["port"], "protocol": "TCP"} for p in ports]
        address = {
            "ip": gateway.ip,
            "nodeName": "localhost",
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": gateway.name},
        }
        subsets = [{"addresses": [address], "ports": endpoint_ports}] if gateway.ready else []
        self._upsert(
            "/endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": GATEWAY_SERVICE, "namespace": namespace, "labels": labels},
                "subsets": subsets,
            },
            ("subsets",),
        )

    def _upsert(self, key: str, body: dict[str, Any], fields: tuple[str, ...]) -> None:
        old = self._stored(key, str(body["metadata"]["name"]), str(body["metadata"]["namespace"]))
        if old is None:
            with self._logged():
                self.store.create(key, body)
            return
        if all(old.get(f) == body.get(f) for f in fields):
            return
        changed = dict(old)
        for f in fields:
            changed[f] = body.get(f)
        with self._logged():
            self.store.update(key, changed)

    def _sync_events(self) -> None:
        """The supervisor's notes since the last sync, as Events (kills, starts, restarts, scaling)."""
        notes = self.sup.events
        total = self.sup.events_total
        fresh = notes[-min(len(notes), total - self._events_seen) :] if total > self._events_seen else []
        self._events_seen = total
        for note in fresh:
            namespace = str(note.get("namespace") or self.namespace)
            if namespace != self.namespace and self._namespace_gone(namespace):
                continue  # nothing new in a namespace being deleted
            for event in _events_of(note, self):
                with self._logged():
                    self.store.create("/events", event)


def _default_deployment(obj: dict[str, Any]) -> None:
    """Kubernetes' defaults of a Deployment's rollout settings, set in place (as kube-apiserver stores them):
    RollingUpdate at 25 % / 25 %, 10 old ReplicaSets kept, a 600 s progress deadline."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")


def _check_strategy(obj: dict[str, Any], name: str) -> None:
    """The rollout settings Kubernetes' validation refuses."""
    strategy = (obj.get("spec") or {}).get("strategy") or {}
    kind = strategy.get("type")
    causes: list[Cause] = []
    if kind not in ("RollingUpdate", "Recreate"):
        causes.append(
            Cause(
                "spec.strategy.type",
                f'Unsupported value: "{kind}": supported values: "Recreate", "RollingUpdate"',
                "FieldValueNotSupported",
            )
        )
    elif kind == "Recreate" and strategy.get("rollingUpdate") is not None:
        causes.append(
            Cause(
                "spec.strategy.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                "FieldValueForbidden",
            )
        )
    else:
        rolling = strategy.get("rollingUpdate") or {}
        from ..supervisor import rolling_limits_of

        surge, unavailable = rolling_limits_of(rolling, 100, default=False)
        if kind == "RollingUpdate" and surge == 0 and unavailable == 0:
            causes.append(
                Cause(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                )
            )
    if causes:
        raise ApiError.invalid("Deployment", name, causes, group="apps")


def _hash_of(rs: dict[str, Any]) -> str:
    """A ReplicaSet's ``pod-template-hash``."""
    return str(
        (rs["metadata"].get("labels") or {}).get("pod-template-hash") or rs["metadata"]["name"].rsplit("-", 1)[-1]
    )


def _revision_of(obj: dict[str, Any]) -> int:
    """An object's ``deployment.kubernetes.io/revision`` (0: none)."""
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, 0))
    except (TypeError, ValueError):
        return 0


def _condition(old: dict[str, Any] | None, kind: str, state: tuple[str, str, str]) -> dict[str, Any]:
    """A Deployment condition; its times kept while its status stays (``lastUpdateTime`` moves with the reason)."""
    status, reason, message = state
    now = _now()
    same_status = old is not None and old.get("status") == status
    same = same_status and old is not None and old.get("reason") == reason and old.get("message") == message
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": old.get("lastUpdateTime", now) if same and old is not None else now,
        "lastTransitionTime": old.get("lastTransitionTime", now) if same_status and old is not None else now,
        "reason": reason,
        "message": message,
    }


def _runs(topology: Topology | None, kind: str, name: str) -> bool:
    """Whether ``topology`` (a namespace's app as the mesh runs it) holds the ``kind`` object ``name``."""
    if topology is None:
        return False
    tables: dict[str, dict[str, Any]] = {
        "Deployment": topology.deployments,
        "Service": topology.services,
        "VirtualService": topology.virtual_services,
        "DestinationRule": topology.destination_rules,
        "Gateway": topology.gateways,
    }
    return name in tables[kind]


def _target_number(svc: Any, sp: Any) -> int:
    return sp.target_port if isinstance(sp.target_port, int) else sp.port


def _grace_of(pod: Pod) -> int:
    """The pod's ``terminationGracePeriodSeconds``: its template's, else Kubernetes' default of 30 (what a deletion
    without a grace of its own waits before SIGKILL)."""
    spec = pod.deployment.spec if pod.deployment is not None else None
    template = spec.get("template") if isinstance(spec, dict) else None
    pod_spec = template.get("spec") if isinstance(template, dict) else None
    value = pod_spec.get("terminationGracePeriodSeconds") if isinstance(pod_spec, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 30


def _is_system(obj: dict[str, Any] | None) -> bool:
    """Whether ``obj`` is one the mesh provides as a cluster's Istio installation would (not the app's)."""
    labels = ((obj or {}).get("metadata") or {}).get("labels")
    return isinstance(labels, dict) and SYSTEM_LABEL in labels


def _owner(obj: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"].get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _events_of(note: dict[str, Any], cluster: Cluster) -> list[dict[str, Any]]:
    kind = note.get("event")
    namespace = str(note.get("namespace") or cluster.namespace)
    when = _iso(float(note.get("time", time.time())))
    out: list[tuple[str, str, str, str, str]] = []  # (object kind, name, type, reason, message)
    if kind == "pod-created":
        out.append(
            (
                "Pod",
                note["pod"],
                "Normal",
                "Scheduled",
                f"Successfully assigned {namespace}/{note['pod']} to localhost",
            )
        )
        started = " and ".join(note.get("containers") or ("app", "istio-proxy"))
        out.append(("Pod", note["pod"], "Normal", "Started", f"Started containers {started}"))
        if note.get("deployment"):
            rs = str(note["pod"]).rsplit("-", 1)[0]  # a pod is named after its ReplicaSet
            if rs:
                out.append(("ReplicaSet", rs, "Normal", "SuccessfulCreate", f"Created pod: {note['pod']}"))
    elif kind == "killed":
        for pod in note.get("pods", []):
            stopped = " and ".join((note.get("containers") or {}).get(pod) or ("app", "istio-proxy"))
            out.append(
                ("Pod", pod, "Normal", "Killing", f"Stopping containers {stopped} (grace {note.get('grace', 0)} s)")
            )
    elif kind == "container-exited":
        out.append(
            (
                "Pod",
                note["pod"],
                "Warning",
                "BackOff",
                f"Back-off restarting exited container {note.get('container')} (exit code {note.get('code')})",
            )
        )
    elif kind == "scaled":
        scaled = cluster._replicaset_name(str(note.get("deployment")), namespace)
        out.append(
            (
                "Deployment",
                str(note.get("deployment")),
                "Normal",
                "ScalingReplicaSet",
                f"Scaled replica set {scaled} to {note.get('replicas')}",
            )
        )
    return [_event(namespace, *entry, when) for entry in out]


def _event(
    namespace: str, obj_kind: str, name: str, etype: str, reason: str, message: str, when: str
) -> dict[str, Any]:
    """An Event of the mesh's controllers about ``obj_kind``/``name``."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "kind": obj_kind,
            "name": name,
            "namespace": namespace,
            "apiVersion": "v1" if obj_kind == "Pod" else "apps/v1",
        },
        "reason": reason,
        "message": message,
        "type": etype,
        "source": {"component": "clover-supervisor", "host": "localhost"},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
        "reportingComponent": "clover-supervisor",
        "reportingInstance": "localhost",
    }


def reraise_config_error(exc: ConfigError) -> ApiError:
    """A ConfigError of the mesh as a 422 Status."""
    return ApiError(422, str(exc), causes=_causes(exc.problems))


Clock = Callable[[], float]


def _warm_openapi() -> None:
    def build() -> None:
        from . import openapi

        try:
            openapi.openapi_v3_index()
        except Exception:  # a failure shows at the first request, which builds them again
            log.exception("building the OpenAPI documents failed")

    threading.Thread(target=build, name="clover-openapi-warm", daemon=True).start()


@dataclasses.dataclass
class ApiStart:
    """A Kubernetes API on its way up (:func:`start_api`): its ``credentials`` (CA and token: what a pod needs
    to reach the API) are made, and ``served`` resolves once the API answers, with the cluster (its
    :meth:`Cluster.run` is the caller's to start), the server's runner (for :func:`.server.stop`) and the URL."""

    credentials: Credentials
    served: asyncio.Future[tuple[Cluster, Any, str]]


@dataclasses.dataclass
class _Prepared:
    cluster: Cluster
    app: Any
    documents: list[Any]
    ssl_context: Any


def start_api(supervisor: Supervisor, host: str, port: int) -> ApiStart:
    """Begin serving ``supervisor``'s mesh as a Kubernetes API on ``https://host:port`` (and write its
    kubeconfig once it serves). Call it on the event loop, before the first pod starts.

    The credentials are made at once (~0.03 s: the pods' apps are told where the API is and how to reach it).
    The rest (the imports, the store, the application: ~0.2 s of CPU) is prepared in a thread while the pods
    start; the event loop then only seeds the store (from the topology's documents as the supervisor read
    them, and its pods) and binds the port."""
    from .tls import make_credentials

    loop = asyncio.get_running_loop()
    mesh_id = str(supervisor.mesh["mesh_id"])
    documents = supervisor.topology_documents
    credentials = make_credentials(supervisor.state.root / "api", server_ip=host, mesh_id=mesh_id)

    def prepare() -> _Prepared:
        from .server import create_app
        from .store import Store
        from .tls import server_ssl_context

        store = Store()
        cluster = Cluster(supervisor, store)
        app = create_app(store=store, hooks=cluster, token=credentials.token)
        # The supervisor's own copy of the documents stays its own.
        return _Prepared(cluster, app, copy.deepcopy(documents), server_ssl_context(credentials))

    prepared = loop.run_in_executor(None, prepare)
    served = asyncio.ensure_future(_serve(supervisor, prepared, credentials, host, port, mesh_id))
    return ApiStart(credentials, served)


async def _serve(
    supervisor: Supervisor,
    prepared: Awaitable[_Prepared],
    credentials: Credentials,
    host: str,
    port: int,
    mesh_id: str,
) -> tuple[Cluster, Any, str]:
    from .server import start
    from .tls import write_kubeconfig

    ready = await prepared
    cluster = ready.cluster
    # On the event loop: the pods the store starts with are the supervisor's, which only the loop may read.
    cluster.seed(ready.documents)
    runner, actual = await start(ready.app, host, port, ready.ssl_context)
    url = f"https://{host}:{actual}"
    # The OpenAPI documents (~0.3 s of CPU to build) that every `kubectl apply` fetches: built in a thread once
    # the mesh is up, so the first apply does not wait for them.
    asyncio.get_running_loop().call_later(0.5, _warm_openapi)
    write_kubeconfig(
        supervisor.state.root / "kubeconfig",
        server_url=url,
        credentials=credentials,
        context=f"clover-{mesh_id}",
        namespace=cluster.namespace,
    )
    return cluster, runner, url


PILOT_AGENT_REQUEST = ("pilot-agent", "request")
"""``pilot-agent request METHOD PATH``: how Istio's tools (istioctl, the Kubernetes backend) read a sidecar's
Envoy admin API through ``pods/exec`` in the ``istio-proxy`` container."""


async def exec_in_pod(pod: Pod, io: Any, *, api_env: Mapping[str, str] | None = None) -> int:
    """``pods/exec``: ``pilot-agent request METHOD PATH`` asks the sidecar's admin API (Istio's own way); any
    other command runs in the pod's folder with the pod's address and proxy in its environment (the app
    container's view, ``api_env`` included: how it reaches the Kubernetes API), its output streamed back. The
    command ends with the exec: it is killed if the client goes."""
    command = list(io.command)
    # Without a sidecar there is no pilot-agent: the command runs in the app container, as on a cluster.
    if tuple(command[:2]) == PILOT_AGENT_REQUEST and pod.has_proxy:
        if len(command) < 4:
            await io.stderr(b"usage: pilot-agent request METHOD PATH\n")
            return 2
        method, path = command[2].upper(), command[3] if command[3].startswith("/") else "/" + command[3]
        from ..envoy import http_request_unix

        status, text = await http_request_unix(pod.spec.admin_socket, method, path, timeout=30.0)
        if status == 0:  # the sidecar did not answer: say why, as pilot-agent would
            await io.stderr(f"{text}\n".encode())
            return 1
        body = text.encode()
        await io.stdout(body)
        return 0 if 200 <= status < 300 else 1
    # The app container's view (as the app is started): no proxy of the supervisor's own environment, only the
    # sidecar's, and none for a pod without a sidecar, whose calls go straight where they dial.
    env = {
        k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    }
    proxy = f"http://{pod.ip}:{pod.spec.outbound_port}" if pod.has_proxy and pod.spec.outbound_port else ""
    env.update(POD_NAME=pod.name, POD_NAMESPACE=pod.namespace, POD_IP=pod.ip)
    env.update(api_env or {})
    if pod.deployment is not None and pod.deployment.containers:
        # As in a container: its own environment (what `kubectl exec POD -- env` shows), its template's.
        from ..supervisor import container_env

        env.update(container_env(pod))
    if proxy:
        env.update(HTTP_PROXY=proxy, http_proxy=proxy)
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE if io.stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(pod.directory),
        env=env,
    )

    async def pump(source: asyncio.StreamReader | None, sink: Any) -> None:
        while source is not None:
            chunk = await source.read(65536)
            if not chunk:
                return
            await sink(chunk)

    async def feed() -> None:
        assert proc.stdin is not None
        while io.stdin is not None:
            chunk = await io.stdin.read(65536)
            if not chunk:
                break
            proc.stdin.write(chunk)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
        proc.stdin.close()

    feeder = asyncio.ensure_future(feed()) if io.stdin is not None else None
    try:
        await asyncio.gather(pump(proc.stdout, io.stdout), pump(proc.stderr, io.stderr))
        return await proc.wait()
    finally:
        if feeder is not None:
            feeder.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
