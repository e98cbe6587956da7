"""The Kubernetes backend: the protocol's operations done the cluster way, each one verified.

- *deploy* mode (default): a namespace ``clover-<run id>`` labelled for Istio injection and with our labels, the
  topology applied with server-side apply (field manager ``pytest-clover``), deleted at teardown. *existing* mode
  (``--clover-namespace NS``): the app is someone else's; we only inject, observe and revert, and only in a
  namespace that opted in.
- Readiness follows ``kubectl rollout status``; kills delete pods with a UID precondition; scaling goes through
  the scale subresource.
- Istio objects change through JSON patches guarded by ``test`` operations (:mod:`.jsondiff`): a change someone
  else made meanwhile is kept, or — if it touches the same fields — the write is refused, never overwritten. A
  write returns once the *caller's sidecar* shows it (its ``config_dump``, through a port-forward): istiod pushes
  after the API answers, and the measured delay is kept (:attr:`KubernetesBackend.propagation`).
- Every change a fault makes is first written, with the object as it was, to the dead-man switch's ledger
  (:mod:`.deadman`): a reaper pod puts it back if this process stops renewing its Lease.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import math
import os
import random
import re
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ...errors import (
    BackendError,
    ConfigError,
    IstioNotInstalled,
    MeshNotRunning,
    ObjectConflict,
    Problem,
    ReadinessTimeout,
)
from ..protocol import BackendOptions, LoadPodSpec, MeshRecord, PodInfo
from .rest import ISTIO_KINDS, KINDS, Kind, Rest, status_code
from .settings import (
    DEFAULT_IMAGE,
    MANAGED_BY_LABEL,
    RUN_ID_LABEL,
    ClusterRef,
    K8sSettings,
    SettingError,
)

__all__ = ["KubernetesBackend"]

REAPER_COMPONENT = "dead-man-switch"
"""The ``app.kubernetes.io/component`` of the dead-man switch's reaper: not part of the app under test."""
PROXY_STATS_ANNOTATION = "proxy.istio.io/config"
"""Per-pod ProxyConfig: we add a ``proxyStatsMatcher`` so that the fault, retry, outlier and circuit-breaker
counters Istio drops by default are recorded in the pods we deploy."""
PROXY_STATS_MATCHER = {
    "inclusionRegexps": [".*fault.*", ".*outlier_detection.*", ".*circuit_breakers.*", ".*upstream_rq_retry.*",
                         ".*upstream_rq_timeout.*", ".*upstream_rq_pending_overflow.*"],
}  # fmt: skip
ACCESS_LOG_TELEMETRY = "clover-access-log"
"""The Telemetry object that turns on the sidecars' access log in the run namespace (Istio's ``envoy`` provider:
its format is the mesh's ``accessLogEncoding``; set it to JSON, see docs/kubernetes.md)."""
LOCATION_SEPARATOR = "/"


def deploy_namespace(run_id: str) -> str:
    """``clover-<run id>``, lower-cased and cut to a namespace name's 63 characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", f"clover-{run_id or 'run'}".lower()).strip("-")
    return cleaned[:63].rstrip("-")


class KubernetesBackend:
    """A mesh on a Kubernetes cluster with Istio, driven through the Kubernetes API."""

    name = "k8s"

    def __init__(
        self,
        settings: K8sSettings,
        *,
        topology: Path | None = None,
        seed: int = 0,
        keep: bool = False,
        dry_run: bool = False,
    ) -> None:
        from .safety import check_context, resolve_kubeconfig

        self.settings = settings
        self.kubeconfig = resolve_kubeconfig(settings)
        # Refused here, before any client exists: a context not on the allow-list is never talked to.
        self.cluster: ClusterRef = check_context(settings, self.kubeconfig)
        self.topology = topology
        self.seed = seed
        self.keep = keep
        self.dry_run = dry_run
        """Change nothing: every mutation is resolved (targets, patches) and recorded in :attr:`plan` instead."""
        self.plan: list[str] = []
        """What a dry run would have done, one line per change."""
        self.namespace = settings.namespace or deploy_namespace(settings.run_id)
        self.mode = settings.mode
        self._api: Any = None
        self._client_configuration: Any = None
        self._rest: Rest | None = None
        self._lock = threading.RLock()
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}
        """Each Istio object as we last read or wrote it: the base our next patch of it is computed from."""
        self._originals: dict[tuple[str, str], dict[str, Any] | None] = {}
        """Each object a fault changed, as it was before the first change (None: a fault created it)."""
        self._replicas: dict[str, int] = {}
        """Each Deployment a fault scaled, with its replica count before."""
        self._kills = 0
        self._istio_version: str | None = None
        self._deadman: Any = None
        self._deadman_api: Any = None
        self._deployed = False
        self._forwarder: Any = None
        self._pod_forwarders: dict[tuple[str, int], Any] = {}
        """Port-forwards kept for :meth:`pod_url`, by (pod, port)."""
        self.ingress_how = ""
        """How the ingress address was found (LoadBalancer, NodePort, port-forward); empty until asked."""
        self.propagation: list[dict[str, Any]] = []
        """Each Istio change: how long the caller's sidecar took to show it (ms), and which sidecar."""

    # ------------------------------------------------------------------ made by the registry

    @classmethod
    def from_options(cls, options: BackendOptions) -> KubernetesBackend:
        settings = K8sSettings.from_mapping(options.settings)
        dry_run = str(options.settings.get("dry_run", "")).lower() in ("1", "true", "yes")
        if dry_run and settings.mode == "deploy":
            raise SettingError(
                "--clover-dry-run on the k8s backend needs --clover-namespace NS (existing mode): deploying would "
                "create a namespace, and a dry run changes nothing"
            )
        return cls(settings, topology=options.topology, seed=options.seed, keep=options.keep, dry_run=dry_run)

    @classmethod
    def validate_settings(cls, values: Mapping[str, str]) -> None:
        """Check the settings at configure time (no client is built): SettingError or SafetyRefusal."""
        from .safety import check_context, resolve_kubeconfig

        settings = K8sSettings.from_mapping(values)
        check_context(settings, resolve_kubeconfig(settings))

    @classmethod
    def default_location(cls) -> str:
        settings = K8sSettings.from_mapping({})
        return f"{settings.context or ''}{LOCATION_SEPARATOR}"

    @classmethod
    def connect(cls, record: MeshRecord) -> KubernetesBackend | None:
        """The run namespace a record names (``context/namespace?kubeconfig=…``), or None when it is gone."""
        parts = urlsplit(record.location)
        context, _, namespace = parts.path.partition(LOCATION_SEPARATOR)
        query = parse_qs(parts.query)
        values = {"context": context, "namespace": namespace, "kubeconfig": (query.get("kubeconfig") or [""])[0],
                  "run_id": (query.get("run") or [""])[0]}  # fmt: skip
        if not namespace:
            return None
        backend = cls(K8sSettings.from_mapping(values))
        backend.mode = (query.get("mode") or ["existing"])[0]
        ns = backend.rest.get(KINDS["Namespace"], None, namespace, missing_ok=True)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp"):
            backend.close()
            return None
        return backend

    @classmethod
    def sweep(cls, force: bool = False, settings: Mapping[str, str] | None = None) -> list[str]:
        """What dead runs left on the cluster ``settings`` names (``clover cleanup --context C``); nothing without a
        context: a cluster is never swept because it happens to be the current context."""
        values = dict(settings or {})
        if not values.get("context"):
            return []
        from .sweep import sweep_cluster

        backend = cls(K8sSettings.from_mapping(values))
        try:
            return sweep_cluster(backend.rest, force=force)
        finally:
            backend.close()

    # ------------------------------------------------------------------ the client

    def _make_client(self) -> Any:
        """A client of its own (for a stream, the reaper's renewals) over the one configuration read for the run:
        the kubeconfig is read once, not at every port-forward."""
        from kubernetes import client as kclient

        with self._lock:
            if self._client_configuration is None:
                self._client_configuration = self._load_configuration()
            return kclient.ApiClient(self._client_configuration)

    def _load_configuration(self) -> Any:
        from .errors import translate
        from .kubefiles import load_configuration

        context = self.cluster.context
        try:
            return load_configuration(self.kubeconfig, context, in_cluster=context == "in-cluster")
        except Exception as exc:
            raise translate(exc, verb="connect", resource="the cluster", cluster=self.cluster) from exc

    @property
    def rest(self) -> Rest:
        with self._lock:
            if self._rest is None:
                self._api = self._make_client()
                self._rest = Rest(self._api, self.cluster)
            return self._rest

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                with contextlib.suppress(Exception):
                    self._api.close()
            self._api = None
            self._rest = None

    def _kind(self, kind: str) -> Kind:
        known = KINDS.get(kind)
        if known is None:
            raise BackendError(f"the k8s backend does not handle {kind} objects")
        if kind in ISTIO_KINDS:
            return Kind(known.group, self.istio_version(), known.plural)
        return known

    def istio_version(self) -> str:
        """The ``networking.istio.io`` version the cluster serves (v1 where it can; Istio < 1.22 has v1beta1)."""
        if self._istio_version is None:
            try:
                group = self.rest.request(
                    "GET", "/apis/networking.istio.io", verb="get", resource="networking.istio.io"
                )
            except BackendError as exc:
                if status_code(exc) == 404:
                    raise IstioNotInstalled(
                        f"Istio is not installed in the cluster of {self.cluster}: it serves no networking.istio.io "
                        "resources (VirtualService, DestinationRule, Gateway). Install Istio (istioctl install), or "
                        "point --clover-context at a cluster that has it"
                    ) from exc
                raise
            versions = [v.get("version") for v in (group or {}).get("versions") or []]
            self._istio_version = next((v for v in ("v1", "v1beta1", "v1alpha3") if v in versions), "v1")
        return self._istio_version

    # ------------------------------------------------------------------ lifecycle

    def deploy(self, timeout: float = 60.0) -> list[Problem]:
        from .safety import check_namespace

        warnings: list[Problem] = []
        rest = self.rest
        self.istio_version()  # IstioNotInstalled before anything is created
        if self.mode == "deploy":
            docs, warnings = self._topology_documents()
            self._create_namespace()
            for doc in docs:
                kind = self._kind(str(doc["kind"]))
                rest.apply(kind, self.namespace, doc)
            rest.apply(self._kind("Telemetry"), self.namespace, self._telemetry())
        else:
            ns = rest.get(KINDS["Namespace"], None, self.namespace, missing_ok=True)
            if ns is None and (self.namespace.startswith("kube-") or self.namespace == self.settings.istio_namespace):
                check_namespace({"metadata": {"name": self.namespace}}, run_id=self.settings.run_id)
            if ns is None:
                raise BackendError(
                    f"namespace {self.namespace!r} does not exist in the cluster of {self.cluster}; "
                    "--clover-namespace names the namespace where the app under test already runs"
                )
            check_namespace(ns, run_id=self.settings.run_id)
        self._deployed = True
        self.wait_ready(timeout)
        if self.settings.reaper and not self.dry_run:
            self._start_deadman(timeout)
        return warnings

    def _create_namespace(self) -> None:
        labels = {"istio-injection": "enabled", MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: self.settings.run_id}
        doc = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                "labels": labels,
                "annotations": {"clover.opnfv.org/owner": f"{os.uname().nodename}:{os.getpid()}",
                                "clover.opnfv.org/created-at": dt.datetime.now(dt.UTC).isoformat()},
            },
        }  # fmt: skip
        self.rest.request("POST", KINDS["Namespace"].path(), body=doc, verb="create", resource="namespaces",
                          name=self.namespace)  # fmt: skip

    def _topology_documents(self) -> tuple[list[dict[str, Any]], list[Problem]]:
        """The topology's documents as we apply them: in the run namespace, labelled as ours, with the image and
        the stats the fault checks need."""
        import yaml

        from ...istio import iter_yaml_files, load_topology

        if self.topology is None:
            raise BackendError("the k8s backend was given no topology to deploy (--clover-topology)")
        load_topology(self.topology)  # every problem of the YAML, named by file and field, before any change
        docs: list[dict[str, Any]] = []
        warnings: list[Problem] = []
        for path in iter_yaml_files([self.topology]):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if not isinstance(doc, dict) or not doc.get("kind"):
                    continue
                kind = str(doc["kind"])
                if kind not in KINDS or kind in ("Namespace", "Pod", "Event", "Node"):
                    warnings.append(Problem(str(path), f"{kind}/{(doc.get('metadata') or {}).get('name')}", "kind",
                                            f"the k8s backend does not deploy {kind} objects; skipped", "warning",
                                            "k8s"))  # fmt: skip
                    continue
                docs.append(self._prepared(doc))
        order = {"ServiceAccount": 0, "ConfigMap": 1, "Service": 2, "Deployment": 3}
        docs.sort(key=lambda d: order.get(str(d["kind"]), 4))
        return docs, warnings

    def _prepared(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        kind = str(doc["kind"])
        known = self._kind(kind)
        doc["apiVersion"] = known.api_version
        meta = doc.setdefault("metadata", {})
        meta["namespace"] = self.namespace
        labels = meta.setdefault("labels", {}) or {}
        labels.update({MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: self.settings.run_id})
        meta["labels"] = labels
        if kind == "Deployment":
            template = doc.setdefault("spec", {}).setdefault("template", {})
            tmeta = template.setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(
                {MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: self.settings.run_id}
            )
            annotations = tmeta.setdefault("annotations", {}) or {}
            annotations[PROXY_STATS_ANNOTATION] = _with_stats_matcher(annotations.get(PROXY_STATS_ANNOTATION))
            tmeta["annotations"] = annotations
            if self.settings.image != DEFAULT_IMAGE:
                for container in (template.get("spec") or {}).get("containers") or []:
                    if container.get("image") == DEFAULT_IMAGE:
                        container["image"] = self.settings.image
        return doc

    def _telemetry(self) -> dict[str, Any]:
        return {
            "apiVersion": KINDS["Telemetry"].api_version,
            "kind": "Telemetry",
            "metadata": {"name": ACCESS_LOG_TELEMETRY, "namespace": self.namespace,
                         "labels": {MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: self.settings.run_id}},
            "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]},
        }  # fmt: skip

    def _start_deadman(self, timeout: float) -> None:
        from .deadman import DeadManSwitch

        self._deadman_api = self._make_client()
        self._deadman = DeadManSwitch(
            self._deadman_api,
            self.namespace,
            run_id=self.settings.run_id,
            image=self.settings.image,
            lease_seconds=self.settings.lease_seconds,
        )
        self._deadman.start(timeout=timeout)

    def teardown(self) -> None:
        deadman, self._deadman = self._deadman, None
        try:
            if deadman is not None:
                # In existing mode we delete exactly what we created (in deploy mode the namespace goes too). With
                # faults still in the ledger the switch deletes nothing and releases the Lease instead: the reaper
                # reverts them at its next poll.
                try:
                    if deadman.stop(delete=True) and self.mode == "deploy":
                        self._wait_ledger_empty(deadman)
                finally:
                    self._deadman_api.close()
            if self.mode == "deploy" and self._deployed and not self.keep and not self.dry_run:
                self._delete_namespace()
        finally:
            self._deployed = False
            for forwarder in [self._forwarder, *self._pod_forwarders.values()]:
                if forwarder is not None:
                    forwarder.close()
            self._forwarder = None
            self._pod_forwarders.clear()
            self.close()

    def _wait_ledger_empty(self, deadman: Any, timeout: float = 30.0) -> None:
        """Faults left at teardown: the reaper reverts them; the namespace goes only after that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(BackendError):
                if not deadman.entries():
                    return
            time.sleep(0.2)

    def _delete_namespace(self, timeout: float = 60.0) -> None:
        rest = self.rest
        rest.delete(KINDS["Namespace"], None, self.namespace, body={"propagationPolicy": "Background"})
        deadline = time.monotonic() + timeout
        ns: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            ns = rest.get(KINDS["Namespace"], None, self.namespace, missing_ok=True)
            if ns is None:
                return
            time.sleep(0.2)
        assert ns is not None
        stuck = [
            c.get("message", "") for c in (ns.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
        ]
        raise BackendError(
            f"namespace {self.namespace} is still terminating after {timeout:.0f} s"
            + (f": {'; '.join(stuck)}" if stuck else "")
            + "; its finalizers are not removed for you (kubectl get namespace -o yaml shows them)"
        )

    # ------------------------------------------------------------------ facts

    def record(self) -> MeshRecord:
        query = f"run={quote(self.settings.run_id)}&mode={self.mode}"
        if self.kubeconfig:
            query += f"&kubeconfig={quote(self.kubeconfig)}"
        return MeshRecord(self.name, f"{self.cluster.context}{LOCATION_SEPARATOR}{self.namespace}?{query}")

    def info(self) -> dict[str, Any]:
        delays = [p["ms"] for p in self.propagation]
        return {
            "context": self.cluster.context,
            "server": self.cluster.server,
            "namespace": self.namespace,
            "mode": self.mode,
            "run_id": self.settings.run_id,
            "istio": f"networking.istio.io/{self._istio_version}" if self._istio_version else "not checked",
            "reaper": "running" if self._deadman is not None else "off",
            "propagation_ms": {"count": len(delays), "median": statistics.median(delays), "max": max(delays)}
            if delays
            else {"count": 0},
            **({"dry_run_plan": list(self.plan)} if self.dry_run else {}),
        }

    def check_running(self) -> None:
        """Raise MeshNotRunning once this run has been cut off from the cluster for longer than the dead-man
        switch's lease (its renewals failed): the reaper may have reverted the run's faults, so what the load measures
        from then on says nothing about them. Costs no request: the renewal thread keeps the answer."""
        deadman = self._deadman
        if deadman is not None and deadman.tripped:
            raise MeshNotRunning(
                f"the cluster of {self.cluster} has not taken this run's Lease renewals for longer than the "
                f"dead-man switch's {self.settings.lease_seconds:g} s (last error: {deadman.last_error or 'none'}); "
                f"its reaper may have reverted the faults in namespace {self.namespace}"
            )

    def ingress_url(self) -> str:
        if self.settings.ingress_url:
            return self.settings.ingress_url.rstrip("/")
        from .ingress import PortForwarder, find_ingress

        with self._lock:
            if self._forwarder is not None:
                return str(self._forwarder.url)
            target = find_ingress(
                self.rest, self._kind("Gateway"), self.namespace, self.settings.istio_namespace, cluster=self.cluster
            )
            self.ingress_how = target.how
            if target.url is not None:
                return target.url
            # Nothing outside the cluster reaches the gateway: forward to it for the rest of the run.
            self._forwarder = PortForwarder(self._make_client, target.namespace, target.pod, target.port)
            return str(self._forwarder.url)

    # ------------------------------------------------------------------ load pods (``--clover-load-in-cluster``)

    def start_load_pods(self, pods: list[LoadPodSpec], *, wait_for: list[str], timeout: float) -> dict[str, PodInfo]:
        from .loadpods import load_deployment, wait_for_load_pods

        image = self.settings.load_image
        for spec in pods:
            doc = load_deployment(spec, namespace=self.namespace, image=image, run_id=self.settings.run_id)
            self.rest.apply(KINDS["Deployment"], self.namespace, doc)
        if not wait_for:
            return {}
        return wait_for_load_pods(self.rest, self.namespace, wait_for, timeout=timeout, pod_info=_pod_info)

    def open_load_channel(self, pod: str, port: int, timeout: float) -> Any:
        from .loadpods import LOAD_NAME, LOAD_POD_LABEL, LoadChannel

        selector = f"app.kubernetes.io/name={LOAD_NAME},{LOAD_POD_LABEL}={pod}"
        pods = self.rest.list(KINDS["Pod"], self.namespace, labels=selector)
        running = [p for p in pods.get("items") or [] if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if not running:
            raise BackendError(f"load pod {pod} has no running pod in namespace {self.namespace}")
        name = str(running[0]["metadata"]["name"])
        return LoadChannel(self._make_client, self.namespace, name, port, cluster=self.cluster, timeout=timeout)

    def delete_load_pods(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(BackendError):
                self.rest.delete(KINDS["Deployment"], self.namespace, name, body={"propagationPolicy": "Background"})

    def load_target_url(self) -> str:
        # The ingress as this machine reaches it is also where a pod reaches it, unless it is a port-forward (an
        # address only here): then the gateway Service's in-cluster name.
        url = self.ingress_url()
        if self.ingress_how != "port-forward" or self.settings.ingress_url:
            return url
        from .ingress import find_service_url

        return find_service_url(self.rest, self._kind("Gateway"), self.namespace, self.settings.istio_namespace)

    def _pod_objects(self, labels: str | None = None) -> list[dict[str, Any]]:
        items = self.rest.list(KINDS["Pod"], self.namespace, labels=labels).get("items") or []
        return [p for p in items if not _is_reaper(p)]

    def pods(self, service: str | None = None) -> list[PodInfo]:
        return [_pod_info(p) for p in self._pod_objects(f"app={service}" if service else None)]

    def wait_ready(self, timeout: float = 60.0) -> None:
        result = self.rest.wait_until(
            KINDS["Deployment"], self.namespace, lambda items: _all_rolled_out(_app_only(items)), timeout=timeout
        )
        if not result.done:
            raise ReadinessTimeout(
                f"the Deployments of namespace {self.namespace} did not roll out in {timeout:.0f} s: {result.detail} "
                f"(kubectl -n {self.namespace} get pods; kubectl -n {self.namespace} describe deploy)"
            )
        self._check_sidecars()

    def _check_sidecars(self) -> None:
        """Ready pods without an istio-proxy container take no fault: injection is off, and every fault would
        'succeed' with no effect — the complaint this backend exists to avoid."""
        from ...istio.model import sidecar_injected

        bare = []
        for pod in self._pod_objects():
            meta = pod.get("metadata") or {}
            wants = sidecar_injected(meta.get("labels") or {}, meta.get("annotations") or {})
            if wants and not _has_sidecar(pod) and not meta.get("deletionTimestamp"):
                bare.append(meta.get("name"))
        if bare:
            raise BackendError(
                f"pods {', '.join(sorted(map(str, bare)))} in namespace {self.namespace} have no istio-proxy sidecar: "
                f"sidecar injection is not working there (kubectl label namespace {self.namespace} "
                "istio-injection=enabled, then restart them; `clover k8s check` says what is missing)"
            )

    def desired_replicas(self) -> dict[str, int]:
        items = self.rest.list(KINDS["Deployment"], self.namespace).get("items") or []
        return {
            i["metadata"]["name"]: int((i.get("spec") or {}).get("replicas", 1)) for i in items if not _is_reaper(i)
        }

    # ------------------------------------------------------------------ pods

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        from .safety import pick_kill_targets

        pods = {(p["metadata"]["name"]): p for p in self._pod_objects(f"app={service}")}
        ready = sorted(name for name, p in pods.items() if _pod_info(p).serving)
        rng = random.Random(f"{self.seed}:kill:{self._kills}")
        self._kills += 1
        targets = pick_kill_targets(
            ready, count=count, percent=percent, max_percent=self.settings.max_kill_percent, rng=rng
        )
        if self.dry_run:
            self.plan.append(f"kill pods {', '.join(targets)} of service {service} (grace {grace:g} s)")
            return targets
        seconds = max(0, math.ceil(grace))
        for name in targets:
            uid = pods[name]["metadata"].get("uid")
            body: dict[str, Any] = {"gracePeriodSeconds": seconds}
            if uid:
                # Never the same-named replacement of a pod someone else deleted meanwhile.
                body["preconditions"] = {"uid": uid}
            try:
                self.rest.delete(KINDS["Pod"], self.namespace, name, body=body, missing_ok=False)
            except BackendError as exc:
                if status_code(exc) not in (404, 409):
                    raise
        return targets

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        kind = KINDS["Deployment"]
        current = self.rest.get(kind, self.namespace, deployment, missing_ok=True)
        if current is None:
            raise BackendError(f"no Deployment {deployment!r} in namespace {self.namespace}")
        before = int((current.get("spec") or {}).get("replicas", 1))
        if self.dry_run:
            self.plan.append(f"scale deployment {deployment} from {before} to {replicas} replicas")
            return
        if deployment not in self._replicas:
            self._replicas[deployment] = before
            self._remember(f"scale-{deployment}", "replicas", deployment=deployment, replicas=before)
        self.rest.request(
            "PATCH", kind.path(self.namespace, deployment, "scale"), body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json", verb="patch", resource="deployments.apps/scale",
            namespace=self.namespace, name=deployment,
        )  # fmt: skip
        if replicas == self._replicas.get(deployment):
            self._forget(f"scale-{deployment}")
            del self._replicas[deployment]

        def scaled(items: dict[str, dict[str, Any]]) -> tuple[bool, str]:
            dep = items.get(deployment)
            if dep is None:
                return False, f"Deployment {deployment} is gone"
            ok, detail = _rolled_out(dep)
            ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
            if ok and ready == replicas:
                return True, "scaled"
            return False, detail if not ok else f"{ready} of {replicas} replicas ready"

        result = self.rest.wait_until(kind, self.namespace, scaled, timeout=timeout)
        if not result.done:
            raise ReadinessTimeout(
                f"Deployment {deployment} did not reach {replicas} ready replicas in {timeout:.0f} s: {result.detail}"
            )

    # ------------------------------------------------------------------ Istio objects

    def istio_objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind_name in ("Gateway", "VirtualService", "DestinationRule", "ServiceEntry"):
            try:
                items = self.rest.list(self._kind(kind_name), self.namespace).get("items") or []
            except BackendError as exc:
                if status_code(exc) == 404 and kind_name == "ServiceEntry":
                    continue
                raise
            for item in items:
                with self._lock:
                    self._seen[(kind_name, item["metadata"]["name"])] = copy.deepcopy(item)
                out.append(item)
        return out

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        from ...istio.parse import parse_documents, parse_text

        problems: list[Problem] = []
        # The same validation as the local backend's (file, object and field named) before anything is sent: a
        # cluster's webhook would refuse it too, but later and with less to go on.
        from .jsondiff import strip_server_fields

        parsed = parse_text(yaml_text, source, problems)
        docs = _checked_documents([d.body for d in parsed], source, problems)
        # The server's own fields (status, managedFields…) are no part of what the validator judges.
        parse_documents([replace(d, body=strip_server_fields(d.body)) for d in parsed], problems)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigError(errors)
        changed: list[dict[str, Any]] = []
        for doc in docs:
            kind_name = str(doc.get("kind"))
            if kind_name not in ISTIO_KINDS and kind_name != "Telemetry":
                raise ConfigError.single(source, f"{kind_name}/{(doc.get('metadata') or {}).get('name')}", "kind",
                                         "apply takes Istio objects (VirtualService, DestinationRule, Gateway, "
                                         "ServiceEntry, Sidecar, Telemetry)")  # fmt: skip
            changed.append(self._write(kind_name, doc, source))
        if not self.dry_run:
            self._await_propagation(changed)
        return [p for p in problems if p.severity != "error"]

    def _write(self, kind_name: str, doc: Mapping[str, Any], source: str) -> dict[str, Any]:
        from .jsondiff import changed_paths, guarded_patch, strip_server_fields

        kind = self._kind(kind_name)
        name = str(doc["metadata"]["name"])
        key = (kind_name, name)
        desired = strip_server_fields(doc)
        desired["apiVersion"] = kind.api_version
        desired["metadata"]["namespace"] = self.namespace
        current = self.rest.get(kind, self.namespace, name, missing_ok=True)
        if current is None:
            if self.dry_run:
                self.plan.append(f"create {kind_name}/{name} in {self.namespace}")
                return desired
            self._remember_object(key, kind, None)
            created: dict[str, Any] = self.rest.request(
                "POST", kind.path(self.namespace), body=desired, verb="create", resource=kind.resource,
                namespace=self.namespace, name=name,
            )  # fmt: skip
            self._after_write(key, created)
            return created
        base_obj = self._seen.get(key, current)
        base = strip_server_fields(base_obj)
        base["apiVersion"] = kind.api_version
        base["metadata"]["namespace"] = self.namespace
        ops = guarded_patch(base, desired)
        if not ops:
            self._after_write(key, current)
            return current
        if self.dry_run:
            self.plan.append(f"patch {kind_name}/{name} in {self.namespace}: {_ops_text(ops)}")
            return desired
        self._remember_object(key, kind, current)
        rv = str((base_obj.get("metadata") or {}).get("resourceVersion") or "")
        for _attempt in range(5):
            body = ([{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}] if rv else []) + ops
            try:
                written: dict[str, Any] = self.rest.request(
                    "PATCH", kind.path(self.namespace, name), body=body, content_type="application/json-patch+json",
                    verb="patch", resource=kind.resource, namespace=self.namespace, name=name,
                )  # fmt: skip
            except BackendError as exc:
                if status_code(exc) not in (409, 422):
                    raise
                fresh = self.rest.get(kind, self.namespace, name, missing_ok=True)
                if fresh is None:
                    raise ObjectConflict(
                        f"{kind_name}/{name} in {self.namespace} was deleted by someone else while {source} was "
                        "changing it; not recreated"
                    ) from exc
                clash = changed_paths(ops, base, strip_server_fields(fresh))
                if clash:
                    raise ObjectConflict(
                        f"someone else changed {', '.join(p.lstrip('/').replace('/', '.') for p in clash)} of "
                        f"{kind_name}/{name} in {self.namespace} since we read it; their change is kept and "
                        f"{source} is not applied (retry once they are done)"
                    ) from exc
                # Their change is elsewhere in the object: ours still applies on top of the new version.
                rv = str(fresh["metadata"].get("resourceVersion") or "")
                continue
            self._after_write(key, written)
            return written
        raise ObjectConflict(f"{kind_name}/{name} in {self.namespace} kept changing under us; {source} not applied")

    def _after_write(self, key: tuple[str, str], obj: dict[str, Any] | None) -> None:
        from .jsondiff import strip_server_fields

        with self._lock:
            if obj is None:
                self._seen.pop(key, None)
            else:
                self._seen[key] = copy.deepcopy(obj)
            if key not in self._originals:
                return
            original = self._originals[key]
            now = None if obj is None else _comparable(strip_server_fields(obj))
            then = None if original is None else _comparable(strip_server_fields(original))
            if now == then:
                # Back as it was: nothing left for the reaper to revert.
                del self._originals[key]
                self._forget(_ledger_key(*key))

    def _remember_object(self, key: tuple[str, str], kind: Kind, before: dict[str, Any] | None) -> None:
        with self._lock:
            if key in self._originals:
                return
            self._originals[key] = copy.deepcopy(before)
        self._remember(
            _ledger_key(*key), "object", api_version=kind.api_version, kind=key[0], name=key[1], plural=kind.plural,
            original=before,
        )  # fmt: skip

    def _remember(self, key: str, what: str, **entry: Any) -> None:
        if self._deadman is None:
            return
        from .deadman import object_entry, replicas_entry

        if what == "replicas":
            built = replicas_entry(self.namespace, entry["deployment"], entry["replicas"])
        else:
            built = object_entry(
                entry["original"], entry["api_version"], entry["kind"], self.namespace, entry["name"], entry["plural"]
            )
        self._deadman.remember(key, built)

    def _forget(self, key: str) -> None:
        if self._deadman is not None:
            self._deadman.forget(key)

    def remove(self, kind: str, name: str) -> None:
        kind_obj = self._kind(kind)
        key = (kind, name)
        current = self.rest.get(kind_obj, self.namespace, name, missing_ok=True)
        if current is None:
            return
        if self.dry_run:
            self.plan.append(f"delete {kind}/{name} in {self.namespace}")
            return
        self._remember_object(key, kind_obj, current)
        self.rest.delete(kind_obj, self.namespace, name)
        self._after_write(key, None)
        self._await_propagation([{"apiVersion": kind_obj.api_version, "kind": kind, "metadata": {"name": name},
                                  "spec": {}, "deleted": current}])  # fmt: skip

    # ------------------------------------------------------------------ verification in the caller's sidecar

    def _await_propagation(self, written: list[dict[str, Any]]) -> None:
        """Return once a caller's sidecar shows each written VirtualService's faults (or their absence); record how
        long it took. Objects whose effect is not a sidecar route (gateway-only routes, DestinationRules) are
        verified by the fault checks' counters instead."""
        from .verify import expected_faults, observed_faults, pick_caller, source_labels

        for doc in written:
            if doc.get("kind") != "VirtualService":
                continue
            spec = doc.get("spec") if "deleted" not in doc else {}
            source = doc.get("deleted") or doc
            gateways = (source.get("spec") or {}).get("gateways") or ["mesh"]
            if "mesh" not in gateways:
                continue
            hosts = [h for h in (source.get("spec") or {}).get("hosts") or [] if "*" not in h]
            for host in hosts:
                service = host.split(".")[0]
                started = time.monotonic()
                deadline = started + self.settings.propagation_timeout
                seen: list[dict[str, Any]] | None = None
                pod = ""
                want: list[dict[str, Any]] = []
                while True:
                    try:
                        # A fault scoped by sourceLabels is only in the sidecars of pods with those labels.
                        chosen = pick_caller(
                            self, service, source_labels(spec or {}) or source_labels(source.get("spec") or {})
                        )
                        want = expected_faults(spec or {}, host, chosen.labels)
                        seen, pod = observed_faults(self, service, chosen.name)
                    except BackendError:
                        seen = None
                    if seen is not None and sorted(map(repr, seen)) == sorted(map(repr, want)):
                        break
                    if time.monotonic() >= deadline:
                        raise BackendError(
                            f"the change to VirtualService {doc['metadata']['name']} did not reach the sidecar of "
                            f"{pod or 'any caller'} within {self.settings.propagation_timeout:g} s: it shows faults "
                            f"{seen} for {host}, expected {want}. Is istiod running and pushing? (istioctl "
                            "proxy-status)"
                        )
                    time.sleep(0.05)
                self.propagation.append(
                    {"object": f"VirtualService/{doc['metadata']['name']}", "host": host, "pod": pod,
                     "ms": round((time.monotonic() - started) * 1000.0, 1)}
                )  # fmt: skip

    # ------------------------------------------------------------------ Envoy and logs

    def pod_url(self, pod: str, port: int) -> str:
        """A URL this process reaches ``pod``'s container ``port`` at: the pod's own address when it answers from
        here (a flat pod network, pytest in the cluster, the embedded mesh), else a port-forward kept for the run."""
        from .ingress import PortForwarder

        key = (pod, port)
        with self._lock:
            forwarder = self._pod_forwarders.get(key)
            if forwarder is not None:
                return str(forwarder.url)
        obj = self.rest.get(KINDS["Pod"], self.namespace, pod, missing_ok=True)
        if obj is None:
            raise BackendError(f"no pod {pod} in namespace {self.namespace}")
        ip = str((obj.get("status") or {}).get("podIP") or "")
        if ip and self.settings.pod_access != "port-forward" and _answers(ip, port):
            return f"http://{ip}:{port}"
        if self.settings.pod_access == "direct":
            raise BackendError(
                f"pod {pod} does not answer at {ip}:{port} from here, and pod_access=direct forbids a port-forward"
            )
        with self._lock:
            forwarder = self._pod_forwarders.get(key)
            if forwarder is None:
                forwarder = PortForwarder(self._make_client, self.namespace, pod, port)
                self._pod_forwarders[key] = forwarder
            return str(forwarder.url)

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        from .admin import admin_get

        return admin_get(self._make_client, self.namespace, pod, path, cluster=self.cluster, timeout=timeout)

    def logs(self, pod: str, container: str = "app") -> str:
        name = container
        if container == "app":
            obj = self.rest.get(KINDS["Pod"], self.namespace, pod, missing_ok=True)
            if obj is None:
                raise BackendError(f"no pod {pod} in namespace {self.namespace}")
            names = [c.get("name") for c in (obj.get("spec") or {}).get("containers") or []]
            name = next((n for n in names if n != "istio-proxy"), "app")
        text: str = self.rest.request(
            "GET", KINDS["Pod"].path(self.namespace, pod, "log"), query={"container": name}, verb="get",
            resource="pods/log", namespace=self.namespace, name=pod, raw=True,
        )  # fmt: skip
        return text

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        import json

        entries: list[dict[str, Any]] = []
        for line in self.logs(pod, "istio-proxy").splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue  # the proxy's own log lines are mixed in with the access log
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and "start_time" in entry:
                    entry.setdefault("pod", pod)
                    if "direction" not in entry:
                        cluster = str(entry.get("upstream_cluster") or "")
                        entry["direction"] = "inbound" if cluster.startswith("inbound|") else "outbound"
                    entries.append(entry)
        return entries


# --------------------------------------------------------------------------- helpers


def _answers(ip: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``ip:port`` opens from here (a routable pod network)."""
    import socket

    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_reaper(obj: Mapping[str, Any]) -> bool:
    """The run's own tools (the dead-man switch's reaper, the load pods; their Deployment or pod): not part of the
    app under test, so never killed, scaled or waited for as the app is."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component") in (REAPER_COMPONENT, "load-master", "load-worker")


def _with_stats_matcher(existing: str | None) -> str:
    import yaml

    config: dict[str, Any] = {}
    if existing:
        with contextlib.suppress(yaml.YAMLError):
            loaded = yaml.safe_load(existing)
            if isinstance(loaded, dict):
                config = loaded
    matcher = config.setdefault("proxyStatsMatcher", {})
    regexps = list(matcher.get("inclusionRegexps") or [])
    for regexp in PROXY_STATS_MATCHER["inclusionRegexps"]:
        if regexp not in regexps:
            regexps.append(regexp)
    matcher["inclusionRegexps"] = regexps
    return yaml.safe_dump(config, sort_keys=False)


def _checked_documents(bodies: list[Any], source: str, problems: list[Problem]) -> list[dict[str, Any]]:
    """The documents, once each is an object with a name (what the patch path needs); YAML that did not parse is
    already a problem, reported with the others."""
    if not bodies:
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigError(errors)
    for index, doc in enumerate(bodies):
        if not isinstance(doc, dict) or not (doc.get("metadata") or {}).get("name"):
            raise ConfigError.single(source, f"document {index + 1}", "metadata.name",
                                     "every document needs a kind and metadata.name")  # fmt: skip
    return bodies


def _ledger_key(kind: str, name: str) -> str:
    from .deadman import entry_key

    return entry_key(kind, name)


def _comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("apiVersion",)}
    meta = dict(out.get("metadata") or {})
    meta.pop("namespace", None)
    labels = dict(meta.get("labels") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}  # fmt: skip
    meta["labels"], meta["annotations"] = labels, annotations
    out["metadata"] = meta
    return out


def _ops_text(ops: list[dict[str, Any]]) -> str:
    import json

    return "; ".join(
        f"{op['op']} {op['path']}" + (f" = {json.dumps(op['value'], sort_keys=True)[:160]}" if "value" in op else "")
        for op in ops
        if op["op"] != "test"
    )


def _has_sidecar(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    # Native sidecars (Istio 1.27's default): an init container that keeps running (restartPolicy Always).
    names += [c.get("name") for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return "istio-proxy" in names


def _parse_time(text: Any) -> float:
    if not text:
        return 0.0
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _pod_info(obj: Mapping[str, Any]) -> PodInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = dict(meta.get("labels") or {})
    phase = "Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "Pending")
    # A terminating pod is no endpoint any more (the endpoints controller drops it), whatever its Ready condition.
    ready = not meta.get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    deployment = None
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet":
            rs = str(owner.get("name") or "")
            suffix = labels.get("pod-template-hash")
            deployment = rs[: -len(suffix) - 1] if suffix and rs.endswith(f"-{suffix}") else rs.rsplit("-", 1)[0]
    statuses = list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])
    ports: dict[int, int] = {}
    for container in spec.get("containers") or []:
        if container.get("name") == "istio-proxy":
            continue
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if isinstance(number, int):
                ports[number] = number
    return PodInfo(
        name=str(meta.get("name")),
        service=labels.get("app") or labels.get("app.kubernetes.io/name") or str(meta.get("name")),
        deployment=deployment,
        version=labels.get("version", ""),
        ready=ready,
        phase=phase,
        ip=str(status.get("podIP") or ""),
        restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
        labels=labels,
        ports=ports,
        created=_parse_time(meta.get("creationTimestamp")),
    )


def _rolled_out(dep: Mapping[str, Any]) -> tuple[bool, str]:
    """kubectl rollout status's rules for one Deployment: (done, what it waits for)."""
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    name = meta.get("name")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise ReadinessTimeout(f"Deployment {name} exceeded its progress deadline: {condition.get('message')}")
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False, f"Deployment {name}: waiting for the rollout to be observed"
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    if updated < want:
        return False, f"Deployment {name}: {updated} of {want} new replicas updated"
    total = int(status.get("replicas") or 0)
    if total > updated:
        return False, f"Deployment {name}: {total - updated} old replicas pending termination"
    available = int(status.get("availableReplicas") or 0)
    if available < updated:
        return False, f"Deployment {name}: {available} of {updated} updated replicas available"
    return True, f"Deployment {name} rolled out"


def _app_only(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The app's Deployments only (the load pods come and go with load runs: never the app's readiness)."""
    return {name: obj for name, obj in items.items() if not _is_load(obj)}


def _is_load(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component") in ("load-master", "load-worker")


def _all_rolled_out(items: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    waiting = []
    for dep in items.values():
        done, detail = _rolled_out(dep)
        if not done:
            waiting.append(detail)
    if not items:
        return False, "no Deployment yet"
    return (not waiting), "; ".join(waiting) or "every Deployment rolled out"
