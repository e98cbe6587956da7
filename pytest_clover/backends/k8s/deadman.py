"""The dead-man switch, the test process's side: a reaper in the namespace, a Lease we renew, a ledger of faults.

Gremlin's model, for Istio. Before the first fault, :meth:`DeadManSwitch.start` creates in the namespace the
faults go to:

- the Lease ``clover-deadman`` (``coordination.k8s.io/v1``), renewed from then on by a daemon thread every third
  of its duration;
- the ledger, the ConfigMap ``clover-ledger``: :meth:`~DeadManSwitch.remember` writes an entry *before* the
  change it guards is made (:func:`object_entry`, :func:`replicas_entry`; the schema is in
  :mod:`pytest_clover.vnf.reaper`), :meth:`~DeadManSwitch.forget` removes it once the change is cleanly undone;
- the reaper (:meth:`~DeadManSwitch.manifests`): a ServiceAccount, a Role with the verbs the reaper needs and no
  more, its RoleBinding, and a one-replica Deployment of the VNF image running ``python -m
  pytest_clover.vnf.reaper`` without a sidecar (it must work when the mesh is broken).

If this process stops renewing — SIGKILL, a closed laptop, a lost network — the reaper sees the Lease unchanged
for its duration and reverts every entry of the ledger, recording an Event for each: with the default 15 s lease,
every fault is gone within about 17 s with nobody running ``clover``. If the process was only suspended, its next
renewal finds the lease expired: :attr:`~DeadManSwitch.tripped` says the reaper may have reverted its faults.

Every call goes through the ``kubernetes.client.ApiClient`` the backend gives (imported here only when a switch
is used). Failures are pytest-clover errors naming the object (:class:`~pytest_clover.errors.AccessDenied`,
:class:`~pytest_clover.errors.ClusterUnreachable`, ...), through a small local translation that mirrors
:func:`pytest_clover.backends.k8s.errors.api_call`.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import (
    BackendError,
    CloverError,
    ObjectConflict,
    ReadinessTimeout,
)
from ...vnf.reaper import (
    DEFAULT_PORT,
    LEASE_NAME,
    LEDGER_NAME,
    SCHEMA_VERSION,
    entry_key,
    parse_entry,
)
from .settings import FIELD_MANAGER, MANAGED_BY_LABEL, RUN_ID_LABEL, ClusterRef

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "LEASE_NAME",
    "LEDGER_NAME",
    "REAPER_NAME",
    "DeadManSwitch",
    "entry_key",
    "object_entry",
    "replicas_entry",
]

REAPER_NAME = "clover-reaper"
"""The name of the reaper's ServiceAccount, Role, RoleBinding and Deployment."""
LOCAL_COMMAND = "{python} -m pytest_clover.vnf.reaper --host {host} --port {port}"
"""How the embedded mesh runs the reaper as a local process (its ``clover.opnfv.org/local-command``)."""
CONFLICT_RETRIES = 5
"""Ledger writes retried after a 409 before giving up."""
RBAC_DIR = "pytest_clover/backends/k8s/rbac/"

log = logging.getLogger("pytest_clover.k8s.deadman")

_T = TypeVar("_T")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


# ------------------------------------------------------------------------------------------- entries


def object_entry(
    doc_before: Mapping[str, Any] | None, api_version: str, kind: str, namespace: str, name: str, plural: str
) -> dict[str, Any]:
    """The ledger entry for an object the run is about to change: ``doc_before`` is the object as it is now
    (before the run's first change), or None when the run is about to create it (the revert then deletes it).

    Only what a revert needs is kept of ``doc_before``: its content (``spec``…), name, labels and annotations;
    ``status`` and the server's metadata (``resourceVersion``, ``managedFields``…) are dropped, which keeps the
    ledger far below a ConfigMap's 1 MiB."""
    original: dict[str, Any] | None = None
    if doc_before is not None:
        metadata = doc_before.get("metadata") or {}
        original = {k: copy.deepcopy(v) for k, v in doc_before.items() if k not in ("metadata", "status")}
        original.setdefault("apiVersion", api_version)
        original.setdefault("kind", kind)
        original["metadata"] = {"name": name, "namespace": namespace}
        for key in ("labels", "annotations"):
            if metadata.get(key):
                original["metadata"][key] = dict(metadata[key])
    entry = {
        "schema": SCHEMA_VERSION,
        "type": "object",
        "apiVersion": api_version,
        "kind": kind,
        "plural": plural,
        "namespace": namespace,
        "name": name,
        "original": original,
    }
    parse_entry(entry)  # a malformed entry is a bug here, not something to find in the reaper's log later
    return entry


def replicas_entry(namespace: str, deployment: str, replicas: int) -> dict[str, Any]:
    """The ledger entry for a Deployment the run is about to scale: ``replicas`` is its count before."""
    entry = {"schema": SCHEMA_VERSION, "type": "replicas", "namespace": namespace, "name": deployment,
             "replicas": replicas}  # fmt: skip
    parse_entry(entry)
    return entry


# ---------------------------------------------------------------------------------------------- errors


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a client exception (0: no answer), None for anything else."""
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # pragma: no cover - the module is only used with the client installed
        return None
    if isinstance(exc, ApiException):
        return int(exc.status or 0)
    return None


def _translate(
    exc: BaseException, verb: str, resource: str, namespace: str, name: str | None, cluster: ClusterRef | None
) -> CloverError | None:
    """The pytest-clover error for what the client raised doing ``verb`` on ``resource``; None when ``exc`` is no
    cluster trouble (a programming error: let it through)."""
    from .errors import translatable, translate

    if not isinstance(exc, translatable()):
        return None
    return translate(exc, verb=verb, resource=resource, namespace=namespace, name=name, cluster=cluster)


# ----------------------------------------------------------------------------------------------- clocks


def _boot_clock() -> float:
    """Seconds on a clock that keeps counting while the machine sleeps: a closed laptop's lease expired too."""
    # CLOCK_MONOTONIC stops during suspend on Linux; CLOCK_BOOTTIME does not.
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


def _micro_time(now: datetime.datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------ the switch


class DeadManSwitch:
    """The reaper, the Lease and the ledger of one run in one namespace.

    ``api`` is the backend's ``kubernetes.client.ApiClient`` (not closed here); ``image`` the VNF image the
    reaper runs; ``lease_seconds`` how long the Lease lives without renewal (the reaper reverts within about
    this plus two seconds); ``holder`` who renews it (``host:pid``); ``cluster`` only names the cluster in
    messages. ``clock`` is for tests."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        *,
        run_id: str,
        image: str,
        lease_seconds: float = 15.0,
        holder: str | None = None,
        cluster: ClusterRef | None = None,
        clock: Callable[[], float] = _boot_clock,
        request_timeout: float = 30.0,
    ) -> None:
        if not _LABEL_VALUE.match(run_id) or len(run_id) > 63:
            raise BackendError(
                f"the run id {run_id!r} cannot be a label value (at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit): the dead-man switch labels its objects with it"
            )
        if not math.isfinite(lease_seconds) or lease_seconds < 1:
            raise BackendError(f"lease_seconds={lease_seconds!r}: the Lease must live at least 1 s")
        self.api = api
        self.namespace = namespace
        self.run_id = run_id
        self.image = image
        self.lease_seconds = float(lease_seconds)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.cluster = cluster
        self._clock = clock
        self._timeout = request_timeout
        # The Lease carries whole seconds; round up so the reaper never waits less than we were told.
        self._duration = max(1, math.ceil(self.lease_seconds))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewing = False
        self._last_renewed: float | None = None
        self._tripped = False
        self._created: list[tuple[str, str]] = []  # (kind, name) in creation order
        self.renewals = 0
        """Renewals that succeeded (the first write of the Lease not counted)."""
        self.renewal_failures = 0
        """Renewals that failed (each was retried)."""
        self.last_error = ""
        """Why the last renewal failed, if one did."""

    # ------------------------------------------------------------------ the client

    def _apis(self) -> tuple[Any, Any, Any, Any]:
        from kubernetes import client as kclient

        return (
            kclient.CoreV1Api(self.api),
            kclient.CoordinationV1Api(self.api),
            kclient.AppsV1Api(self.api),
            kclient.RbacAuthorizationV1Api(self.api),
        )

    @contextmanager
    def _translated(self, verb: str, resource: str, name: str | None = None) -> Iterator[None]:
        try:
            yield
        except CloverError:
            raise
        except Exception as exc:
            error = _translate(exc, verb, resource, self.namespace, name, self.cluster)
            if error is None:
                raise
            raise error from exc

    def _call(
        self, verb: str, resource: str, name: str | None, call: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T:
        """``call(*args, **kwargs)``, its failures translated."""
        kwargs.setdefault("_request_timeout", self._timeout)
        with self._translated(verb, resource, name):
            return call(*args, **kwargs)

    def _call_or_status(
        self, status: int, verb: str, resource: str, name: str | None, call: Callable[..., _T], *args: Any,
        **kwargs: Any,
    ) -> _T | None:  # fmt: skip
        """Like :meth:`_call`, but an answer with HTTP ``status`` returns None instead of raising."""
        kwargs.setdefault("_request_timeout", self._timeout)
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if _status(exc) == status:
                return None
            error = _translate(exc, verb, resource, self.namespace, name, self.cluster)
            if error is None:
                raise
            raise error from exc

    def _labels(self) -> dict[str, str]:
        return {
            MANAGED_BY_LABEL: "pytest-clover",
            RUN_ID_LABEL: self.run_id,
            "app.kubernetes.io/name": REAPER_NAME,
            "app.kubernetes.io/component": "dead-man-switch",
        }

    # ------------------------------------------------------------------ manifests

    def manifests(self) -> list[dict[str, Any]]:
        """The reaper's ServiceAccount, Role, RoleBinding and Deployment, as applied by :meth:`start`."""
        labels = self._labels()
        meta = {"name": REAPER_NAME, "namespace": self.namespace, "labels": labels}
        istio_verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
        rules = [
            # create: an object the run deleted is created again from the ledger's original.
            {"apiGroups": ["networking.istio.io"],
             "resources": ["virtualservices", "destinationrules", "gateways", "serviceentries"],
             "verbs": istio_verbs},
            {"apiGroups": ["telemetry.istio.io"], "resources": ["telemetries"], "verbs": istio_verbs},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [LEASE_NAME],
             "verbs": ["get", "watch", "update"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [LEDGER_NAME],
             "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ]  # fmt: skip
        selector = {"app.kubernetes.io/name": REAPER_NAME}
        container = {
            "name": "reaper",
            "image": self.image,
            "command": ["python", "-m", "pytest_clover.vnf.reaper", "--host", "0.0.0.0", "--port", str(DEFAULT_PORT)],
            "ports": [{"name": "http-health", "containerPort": DEFAULT_PORT, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": DEFAULT_PORT}, "periodSeconds": 2,
                               "failureThreshold": 3},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }  # fmt: skip
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        # The reaper must reach the API server when the mesh is what is broken: no sidecar.
                        "labels": {**labels, "sidecar.istio.io/inject": "false"},
                        "annotations": {"clover.opnfv.org/local-command": LOCAL_COMMAND},
                    },
                    "spec": {
                        "serviceAccountName": REAPER_NAME,
                        "automountServiceAccountToken": True,
                        "terminationGracePeriodSeconds": 5,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                    },
                },
            },
        }  # fmt: skip
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": copy.deepcopy(meta)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": copy.deepcopy(meta),
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": copy.deepcopy(meta),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": REAPER_NAME},
             "subjects": [{"kind": "ServiceAccount", "name": REAPER_NAME, "namespace": self.namespace}]},
            deployment,
        ]  # fmt: skip

    # ------------------------------------------------------------------ start

    def start(self, timeout: float = 60.0) -> None:
        """Create the Lease (and start renewing it), an empty ledger, the reaper; return once the reaper's
        Deployment has a ready replica. On failure what was created is deleted again and the error raised."""
        if self._thread is not None:
            raise BackendError(f"the dead-man switch in namespace {self.namespace} is already started")
        deadline = time.monotonic() + timeout
        try:
            self._create_lease()
            self._start_renewing()
            self._create_ledger()
            self._apply_manifests()
            self._wait_ready(deadline, timeout)
        except BaseException:
            try:
                self.stop(delete=True)
            except CloverError as cleanup:
                log.warning("cleaning up after a failed start of the dead-man switch: %s", cleanup)
            raise
        log.info(
            "dead-man switch armed in %s: Lease %s (%d s) held by %s, reaper ready",
            self.namespace, LEASE_NAME, self._duration, self.holder,
        )  # fmt: skip

    def _lease_body(self, resource_version: str | None = None) -> dict[str, Any]:
        now = _micro_time()
        metadata: dict[str, Any] = {"name": LEASE_NAME, "namespace": self.namespace, "labels": self._labels()}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": self._duration, "acquireTime": now,
                     "renewTime": now},
        }  # fmt: skip

    def _create_lease(self) -> None:
        _, coordination, _, _ = self._apis()
        started = self._clock()
        created = self._call_or_status(
            409, "create", "leases.coordination.k8s.io", LEASE_NAME,
            coordination.create_namespaced_lease, self.namespace, self._lease_body(),
        )  # fmt: skip
        if created is None:
            self._take_over_lease()
        with self._lock:
            self._last_renewed = started
        self._created.append(("Lease", LEASE_NAME))

    def _take_over_lease(self) -> None:
        """The Lease exists: take it over if it is ours or stale, else refuse (another run is live here)."""
        _, coordination, _, _ = self._apis()
        existing = self._call("get", "leases.coordination.k8s.io", LEASE_NAME,
                              coordination.read_namespaced_lease, LEASE_NAME, self.namespace)  # fmt: skip
        spec = existing.spec
        holder = (spec.holder_identity if spec else None) or ""
        renewed = spec.renew_time if spec else None
        duration = (spec.lease_duration_seconds if spec else None) or self._duration
        now = datetime.datetime.now(datetime.UTC)
        # Wall clocks of two machines are compared only here, with a wide margin, to tell a leftover from a live
        # run; expiry itself is judged by the reaper's own clock.
        if isinstance(renewed, datetime.datetime) and renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=datetime.UTC)  # MicroTime is UTC; a client may drop the zone
        age = (now - renewed).total_seconds() if isinstance(renewed, datetime.datetime) else math.inf
        if holder and holder != self.holder and age < 2 * duration + 10:
            raise ObjectConflict(
                f"the Lease {self.namespace}/{LEASE_NAME} is held by {holder} (renewed {age:.0f} s ago): another "
                f"pytest-clover run is live in namespace {self.namespace}. Wait for it to end; if it is dead, its "
                f"reaper reverts its faults within {duration} s, then delete the lease "
                f"(kubectl -n {self.namespace} delete lease {LEASE_NAME}) or run clover cleanup"
            )
        log.info("taking over the Lease %s/%s of %s (renewed %.0f s ago)", self.namespace, LEASE_NAME, holder, age)
        rv = existing.metadata.resource_version if existing.metadata else None
        self._call("replace", "leases.coordination.k8s.io", LEASE_NAME, coordination.replace_namespaced_lease,
                   LEASE_NAME, self.namespace, self._lease_body(rv))  # fmt: skip

    def _create_ledger(self) -> None:
        core, _, _, _ = self._apis()
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": LEDGER_NAME, "namespace": self.namespace, "labels": self._labels()},
            "data": {},
        }
        created = self._call_or_status(409, "create", "configmaps", LEDGER_NAME,
                                       core.create_namespaced_config_map, self.namespace, body)  # fmt: skip
        if created is None:
            # A dead run's ledger: its entries are faults that may still be in force, so they are kept for our
            # reaper (or the backend) to revert, never wiped.
            left = self.entries()
            if left:
                log.warning(
                    "the ledger %s/%s already holds %d entries of an earlier run (%s): kept; the reaper reverts "
                    "them if this run dies", self.namespace, LEDGER_NAME, len(left), ", ".join(sorted(left)),
                )  # fmt: skip
        self._created.append(("ConfigMap", LEDGER_NAME))

    def _apply_manifests(self) -> None:
        core, _, apps, rbac = self._apis()
        appliers = {
            "ServiceAccount": ("serviceaccounts", core.patch_namespaced_service_account),
            "Role": ("roles.rbac.authorization.k8s.io", rbac.patch_namespaced_role),
            "RoleBinding": ("rolebindings.rbac.authorization.k8s.io", rbac.patch_namespaced_role_binding),
            "Deployment": ("deployments.apps", apps.patch_namespaced_deployment),
        }
        for doc in self.manifests():
            kind = doc["kind"]
            resource, apply = appliers[kind]
            applied = self._call_or_status(
                404, "apply", resource, REAPER_NAME, apply, REAPER_NAME, self.namespace, doc,
                field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
            )  # fmt: skip
            # An apply creates what is missing, so a 404 means the API itself is not served: a cluster without
            # RBAC authorizes everything, and the reaper works without its Role.
            if applied is None and kind in ("Role", "RoleBinding"):
                log.info("the cluster serves no RBAC API: the reaper runs without its %s", kind)
                continue
            if applied is None:
                raise BackendError(
                    f"the Kubernetes API{' at ' + str(self.cluster) if self.cluster else ''} does not serve "
                    f"{resource}: the dead-man switch cannot create its {kind} {self.namespace}/{REAPER_NAME}"
                )
            self._created.append((kind, REAPER_NAME))

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        _, _, apps, _ = self._apis()
        while True:
            deployment = self._call("get", "deployments.apps", REAPER_NAME, apps.read_namespaced_deployment,
                                    REAPER_NAME, self.namespace)  # fmt: skip
            status = deployment.status
            generation = (deployment.metadata.generation if deployment.metadata else None) or 0
            observed = (status.observed_generation if status else None) or 0
            ready = (status.ready_replicas if status else None) or 0
            if ready >= 1 and observed >= generation:
                return
            if time.monotonic() >= deadline:
                raise ReadinessTimeout(
                    f"the dead-man switch's reaper (Deployment {self.namespace}/{REAPER_NAME}, image {self.image}) "
                    f"has no ready replica after {timeout:g} s{self._pod_states()}. Look at "
                    f"kubectl -n {self.namespace} describe deploy/{REAPER_NAME} and "
                    f"kubectl -n {self.namespace} logs deploy/{REAPER_NAME}; the cluster must be able to pull the "
                    "image (--clover-image, see docs/kubernetes.md)"
                )
            # The reaper answers its probe within a second or two of starting; a quarter second keeps start()
            # close to that without loading the API server.
            time.sleep(0.25)

    def _pod_states(self) -> str:
        """``: pod clover-reaper-x Pending (ImagePullBackOff: ...)``, best effort, for the timeout's message."""
        core, _, _, _ = self._apis()
        try:
            pods = core.list_namespaced_pod(self.namespace, label_selector=f"app.kubernetes.io/name={REAPER_NAME}",
                                            _request_timeout=5.0)  # fmt: skip
        except Exception:  # the message is complete without them
            return ""
        states = []
        for pod in pods.items or []:
            detail = ""
            for container in (pod.status.container_statuses if pod.status else None) or []:
                waiting = container.state.waiting if container.state else None
                if waiting is not None and waiting.reason:
                    detail = f" ({waiting.reason}: {waiting.message or ''})".replace(": )", ")")
            phase = pod.status.phase if pod.status else "?"
            states.append(f"pod {pod.metadata.name} {phase}{detail}")
            try:
                tail = core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container="reaper",
                                                    tail_lines=3, _request_timeout=5.0)  # fmt: skip
            except Exception:  # a pod that never started has no log
                tail = ""
            if isinstance(tail, str) and tail.strip():
                states[-1] += ", its log ends: " + " | ".join(tail.strip().splitlines())
        return (": " + "; ".join(states)) if states else ": no pod was created"

    # ------------------------------------------------------------------ renewing

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._renewing = True
        self._thread = threading.Thread(target=self._renew_loop, name=f"clover-deadman-{self.namespace}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _renew_loop(self) -> None:
        interval = self.lease_seconds / 3
        # A failed renewal is retried soon: the reaper's patience is only the rest of the lease.
        retry = min(1.0, interval)
        timeout = max(0.5, min(5.0, interval))
        delay = interval
        while not self._stop.wait(delay):
            started = self._clock()
            try:
                self._renew(timeout)
            except Exception as exc:  # a renewal must never end the thread: the next one may work
                self.renewal_failures += 1
                self.last_error = str(exc)
                log.warning("renewing the Lease %s/%s failed (retrying): %s", self.namespace, LEASE_NAME, exc)
                delay = retry
            else:
                with self._lock:
                    self._last_renewed = started
                self.renewals += 1
                delay = max(0.0, interval - (self._clock() - started))
            self._check_tripped()

    def _renew(self, timeout: float) -> None:
        _, coordination, _, _ = self._apis()
        patch = {"spec": {"holderIdentity": self.holder, "leaseDurationSeconds": self._duration,
                          "renewTime": _micro_time()}}  # fmt: skip
        renewed = self._call_or_status(
            404, "renew", "leases.coordination.k8s.io", LEASE_NAME, coordination.patch_namespaced_lease,
            LEASE_NAME, self.namespace, patch, _content_type="application/merge-patch+json",
            _request_timeout=timeout,
        )  # fmt: skip
        if renewed is None:
            # Someone deleted it: our faults are unguarded until it exists again.
            log.warning("the Lease %s/%s was deleted: creating it again", self.namespace, LEASE_NAME)
            self._call("create", "leases.coordination.k8s.io", LEASE_NAME, coordination.create_namespaced_lease,
                       self.namespace, self._lease_body(), _request_timeout=timeout)  # fmt: skip

    def _check_tripped(self) -> bool:
        with self._lock:
            if self._tripped:
                return True
            last = self._last_renewed
            if not self._renewing or last is None or self._clock() - last < self._duration:
                return False
            self._tripped = True
        log.warning(
            "the Lease %s/%s was not renewed for its %d s: the reaper may have reverted this run's faults",
            self.namespace, LEASE_NAME, self._duration,
        )  # fmt: skip
        return True

    @property
    def tripped(self) -> bool:
        """Whether the Lease went unrenewed for its whole duration while we held it: the reaper may have reverted
        this run's faults (the process was suspended, or the API server unreachable). Stays True once set."""
        return self._check_tripped()

    def _halt(self) -> None:
        """Stop renewing (the Lease is left as it is)."""
        self._check_tripped()
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self._timeout + 5)
        with self._lock:
            self._renewing = False

    def abandon(self) -> None:
        """Stop renewing and touch nothing, as a SIGKILLed pytest would: the reaper reverts the ledger once the
        Lease expires. For tests of the switch, and for a process that must leave at once."""
        self._halt()

    # ------------------------------------------------------------------ the ledger

    def _read_ledger(self) -> Any:
        core, _, _, _ = self._apis()
        ledger = self._call_or_status(404, "get", "configmaps", LEDGER_NAME, core.read_namespaced_config_map,
                                      LEDGER_NAME, self.namespace)  # fmt: skip
        if ledger is None:
            raise BackendError(
                f"the dead-man switch's ledger (ConfigMap {self.namespace}/{LEDGER_NAME}) does not exist: start() "
                "was not called, or someone deleted it; faults cannot be guarded without it"
            )
        return ledger

    def remember(self, key: str, entry: Mapping[str, Any]) -> None:
        """Write ``entry`` (:func:`object_entry`, :func:`replicas_entry`) under ``key`` (:func:`entry_key`)
        *before* the change it guards is made. If ``key`` already holds an entry, that one is kept: it holds the
        state before the first change, which is what a revert must restore."""
        if not _CONFIGMAP_KEY.match(key):
            raise ValueError(f"{key!r} cannot be a ConfigMap key: use entry_key(kind, name)")
        parse_entry(entry)
        stamped = {"runId": self.run_id, "holder": self.holder, "recordedAt": _micro_time(), **entry}
        value = json.dumps(stamped, sort_keys=True, separators=(",", ":"))
        core, _, _, _ = self._apis()
        for _ in range(CONFLICT_RETRIES):
            ledger = self._read_ledger()
            data = dict(ledger.data or {})
            if key in data:
                return
            data[key] = value
            ledger.data = data
            # The server keeps its own record of who wrote what; sending it back would only risk a clash.
            ledger.metadata.managed_fields = None
            written = self._call_or_status(409, "update", "configmaps", LEDGER_NAME,
                                           core.replace_namespaced_config_map, LEDGER_NAME, self.namespace,
                                           ledger)  # fmt: skip
            if written is not None:
                return
        raise ObjectConflict(
            f"the ledger {self.namespace}/{LEDGER_NAME} kept changing under {CONFLICT_RETRIES} attempts to record "
            f"{key}: the change it guards was not made"
        )

    def forget(self, key: str) -> None:
        """Remove ``key`` from the ledger, once the change it guards is cleanly undone (a missing key is fine)."""
        core, _, _, _ = self._apis()
        patched = self._call_or_status(404, "patch", "configmaps", LEDGER_NAME, core.patch_namespaced_config_map,
                                       LEDGER_NAME, self.namespace, {"data": {key: None}},
                                       _content_type="application/merge-patch+json")  # fmt: skip
        if patched is None:
            log.info("forget(%s): the ledger %s/%s is gone already", key, self.namespace, LEDGER_NAME)

    def entries(self) -> dict[str, dict[str, Any]]:
        """The ledger: each key's entry (a value that is not a JSON object is left out, with a warning)."""
        out: dict[str, dict[str, Any]] = {}
        for key, raw in (self._read_ledger().data or {}).items():
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                log.warning("the ledger entry %s in %s/%s is not a JSON object: %r", key, self.namespace,
                            LEDGER_NAME, str(raw)[:200])  # fmt: skip
                continue
            out[key] = value
        return out

    # ------------------------------------------------------------------ stop

    def stop(self, delete: bool = True) -> list[str]:
        """Stop renewing; with ``delete``, delete what :meth:`start` created (the reaper's objects, the Lease,
        the ledger), and only that. Returns the ledger keys still in force: when there are any, nothing is
        deleted and the Lease is released instead, so that the reaper reverts them at its next poll."""
        self._halt()
        if not delete or not self._created:
            return []
        left = sorted(self.entries()) if ("ConfigMap", LEDGER_NAME) in self._created else []
        if left:
            self._release_lease()
            log.warning(
                "%d faults are still in the ledger %s/%s (%s): the Lease is released and the reaper reverts them "
                "now; its objects stay until it has (clover cleanup removes them)",
                len(left), self.namespace, LEDGER_NAME, ", ".join(left),
            )  # fmt: skip
            return left
        core, coordination, apps, rbac = self._apis()
        deleters: dict[str, tuple[str, Callable[..., Any]]] = {
            "Deployment": ("deployments.apps", apps.delete_namespaced_deployment),
            "RoleBinding": ("rolebindings.rbac.authorization.k8s.io", rbac.delete_namespaced_role_binding),
            "Role": ("roles.rbac.authorization.k8s.io", rbac.delete_namespaced_role),
            "ServiceAccount": ("serviceaccounts", core.delete_namespaced_service_account),
            "Lease": ("leases.coordination.k8s.io", coordination.delete_namespaced_lease),
            "ConfigMap": ("configmaps", core.delete_namespaced_config_map),
        }
        first_error: CloverError | None = None
        # The reaper first, so that it never sees its Lease or ledger vanish.
        for kind in deleters:
            for created_kind, name in list(self._created):
                if created_kind != kind:
                    continue
                resource, delete_call = deleters[kind]
                try:
                    self._call_or_status(404, "delete", resource, name, delete_call, name, self.namespace)
                except CloverError as exc:
                    first_error = first_error or exc
                    continue
                self._created.remove((created_kind, name))
        if first_error is not None:
            raise first_error
        return []

    def _release_lease(self) -> None:
        _, coordination, _, _ = self._apis()
        self._call_or_status(404, "release", "leases.coordination.k8s.io", LEASE_NAME,
                             coordination.patch_namespaced_lease, LEASE_NAME, self.namespace,
                             {"spec": {"holderIdentity": None}},
                             _content_type="application/merge-patch+json")  # fmt: skip
