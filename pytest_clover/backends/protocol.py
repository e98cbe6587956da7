"""The seam: what every backend does, whatever runs the mesh (local processes, a cluster, a fake in memory).

The plugin, the fault engine, the reports, the Chaos Toolkit extension and the ``clover`` command talk to a
mesh only through :class:`Backend`; they never learn which kind it is. A backend class is found by name in
the registry (:mod:`pytest_clover.backends.registry`) and satisfies :class:`BackendClass`: it builds a mesh
to deploy from :class:`BackendOptions`, and reconnects to a running one from a :class:`MeshRecord` — in
another process (a Chaos Toolkit experiment, the next run sweeping a fault ledger, the ``clover`` command).

Everything here is pure data and typing: importing it costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import Problem

__all__ = [
    "CONTAINERS",
    "AccessLogSource",
    "Backend",
    "BackendClass",
    "BackendOptions",
    "LoadPodSpec",
    "LoadPods",
    "LogFiles",
    "MeshRecord",
    "PodInfo",
    "PodPorts",
    "Sweepable",
    "Watchable",
]

CONTAINERS = ("app", "istio-proxy")
"""The containers of a pod that :meth:`Backend.logs` reads: the application and its Envoy sidecar."""


@dataclass(frozen=True)
class PodInfo:
    """A pod as ``kubectl get pods -o wide`` would show it."""

    name: str
    service: str
    """The ``app`` label: which Service's endpoints the pod belongs to."""
    deployment: str | None
    """The owning Deployment; None for the ingress gateway."""
    version: str
    ready: bool
    phase: str
    """``Pending``, ``Running`` or ``Terminating``."""
    ip: str
    restarts: int
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[int, int] = field(default_factory=dict)
    """Container port → the port the pod answers on at ``ip`` (the same number on a cluster)."""
    created: float = 0.0
    """Unix time the pod was created."""

    def url(self, container_port: int | None = None) -> str:
        """Base URL that reaches this pod directly (through its sidecar's inbound listener)."""
        port = self.ports.get(container_port) if container_port else next(iter(self.ports.values()), None)
        if port is None:
            raise KeyError(f"pod {self.name} has no port {container_port}")
        return f"http://{self.ip}:{port}"

    @property
    def serving(self) -> bool:
        """Running and ready: an endpoint of its Service."""
        return self.ready and self.phase == "Running"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "deployment": self.deployment,
            "version": self.version,
            "ready": self.ready,
            "phase": self.phase,
            "ip": self.ip,
            "restarts": self.restarts,
            "labels": dict(self.labels),
            "ports": {str(k): v for k, v in self.ports.items()},
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PodInfo:
        return cls(
            name=d["name"],
            service=d["service"],
            deployment=d.get("deployment"),
            version=d.get("version", ""),
            ready=bool(d["ready"]),
            phase=d["phase"],
            ip=d["ip"],
            restarts=int(d.get("restarts", 0)),
            labels=dict(d.get("labels", {})),
            ports={int(k): int(v) for k, v in d.get("ports", {}).items()},
            created=float(d.get("created", 0.0)),
        )


@dataclass(frozen=True)
class MeshRecord:
    """How another process finds a running mesh again: which backend, and where that backend keeps it.

    Written into fault ledgers (so the next run can revert what a killed one left), into a Chaos Toolkit
    experiment's configuration and into ``run.json``; read back by :func:`pytest_clover.backends.connect`.
    """

    backend: str
    """The name the backend is registered under (``local``, ``fake``, or a third party's)."""
    location: str
    """Where the backend keeps the mesh, in its own terms: the local mesh's state folder, the fake's state
    file, a cluster's ``context/namespace``. Opaque to everything but that backend."""

    def as_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "location": self.location}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeshRecord:
        """The record in ``data``; ledgers written before 0.1 said ``state_dir`` or ``state_file``."""
        location = data.get("location") or data.get("state_dir") or data.get("state_file") or ""
        return cls(str(data.get("backend") or ""), str(location))

    def __str__(self) -> str:
        return f"the {self.backend} mesh" + (f" at {self.location}" if self.location else "")


@dataclass(frozen=True)
class BackendOptions:
    """What a backend is told when it is made to deploy a mesh (``--clover-*`` options, ``clover up`` flags)."""

    topology: Path
    """Folder (or file) of Kubernetes + Istio YAML to deploy."""
    workdir: Path
    """A folder that belongs to this mesh alone, for the backend's state, logs and configuration. The local
    backend keeps its whole mesh there; a cluster backend may keep only a record of what it created."""
    seed: int = 0
    """Seeds everything random the backend does (pod names, which pods a kill picks), so a run replays."""
    keep: bool = False
    """Leave the mesh running after :meth:`Backend.teardown` and after this process ends (``clover up``,
    ``--clover-keep-mesh``). False: the mesh goes away with its owner, even when the owner is killed."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """Backend-specific settings (kubeconfig, context…), by name; a backend ignores the ones it does not know."""


@runtime_checkable
class Backend(Protocol):
    """Operations on one mesh. Every method raises a :class:`~pytest_clover.errors.CloverError` on failure
    (:class:`~pytest_clover.errors.BackendError` for the mesh's own trouble), never a library's exception.

    Changes (``apply``, ``remove``, ``kill``, ``scale``) return once the control plane has them; whether the
    data plane shows them is for the caller to verify through :meth:`envoy_admin`, as the fault engine does.
    """

    name: str
    """The name this backend is registered under."""

    def deploy(self, timeout: float = 60.0) -> list[Problem]:
        """Start the topology and return when every pod is ready; returns warnings about what in the
        topology this backend will not honour (each names file, object and field)."""
        ...

    def teardown(self) -> None:
        """Stop everything deploy started (unless the options said keep); safe to call twice and after a
        failed deploy."""
        ...

    def record(self) -> MeshRecord:
        """How another process reaches this mesh (see :func:`pytest_clover.backends.connect`)."""
        ...

    def info(self) -> dict[str, Any]:
        """A few facts a person wants to see about the mesh besides its pods (its id, seed, where its state
        is), as JSON-ready values: ``clover status`` prints them."""
        ...

    def ingress_url(self) -> str:
        """Base URL of the ingress gateway, e.g. ``http://127.61.4.1:8080``."""
        ...

    def pods(self, service: str | None = None) -> list[PodInfo]:
        """Pods, optionally only those of one Service (``app`` label), terminating ones included."""
        ...

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every Deployment has its desired number of ready pods."""
        ...

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        """Create or replace Istio objects (``kubectl apply``); returns warnings."""
        ...

    def remove(self, kind: str, name: str) -> None:
        """Delete an Istio object (``kubectl delete``)."""
        ...

    def istio_objects(self) -> list[dict[str, Any]]:
        """The Istio objects now in force, as documents (so that a fault can be merged into them)."""
        ...

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        """Kill pods of a Service (one by default; at least one for a percentage), picked with the seed;
        their Deployment replaces them. ``grace``: seconds between SIGTERM and SIGKILL (0: SIGKILL).
        Returns the killed pods' names."""
        ...

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        """Set a Deployment's replicas and wait until that many pods are ready."""
        ...

    def desired_replicas(self) -> dict[str, int]:
        """Every Deployment's desired replica count (``spec.replicas``)."""
        ...

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        """GET ``path`` (e.g. ``/stats?format=json``, ``/config_dump``) on the admin API of a pod's Envoy and
        return the body; a status other than 200 is a BackendError. How the admin API is reached (a local
        address, a port-forward, an exec of ``pilot-agent request``) is the backend's business."""
        ...

    def logs(self, pod: str, container: str = "app") -> str:
        """The log of one container of a pod (see :data:`CONTAINERS`), as text."""
        ...

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        """The pod's sidecar access log as entries, oldest first, in the format of
        :mod:`pytest_clover.envoy.access_log` (one JSON object per request Envoy proxied)."""
        ...


class AccessLogSource(Protocol):
    """The part of a backend the per-hop report reads (a :class:`Backend` is one)."""

    def pods(self, service: str | None = None) -> list[PodInfo]: ...

    def access_log(self, pod: str) -> list[dict[str, Any]]: ...


@runtime_checkable
class LogFiles(Protocol):
    """A backend whose logs are files on this machine: readers may take them incrementally by offset, which
    keeps a long run's per-hop breakdown cheap."""

    def log_path(self, pod: str, container: str = "app") -> Path:
        """The file holding that log (``access`` for the sidecar's access log); it may not exist yet."""
        ...


@runtime_checkable
class PodPorts(Protocol):
    """A backend whose pods this process may not reach at their own addresses (a cluster's pod network): it hands
    out a URL that does reach a pod's port, e.g. through a port-forward it keeps. Without it, :meth:`PodInfo.url`
    is used."""

    def pod_url(self, pod: str, port: int) -> str:
        """Base URL (``http://host:port``) at which this process reaches container port ``port`` of ``pod``."""
        ...


@runtime_checkable
class Watchable(Protocol):
    """A backend that can tell cheaply, without a request to the mesh, that its mesh has stopped. The load is
    watched with it: a mesh that dies mid-phase ends the phase at once with that error, as a dead load generator
    does, instead of letting the phase run on against nothing and the test fail on its error rate."""

    def check_running(self) -> None:
        """Raise :class:`~pytest_clover.errors.MeshNotRunning`, saying what happened, if the mesh is gone.
        Called about twice a second while load runs: it must cost well under a millisecond."""
        ...


@dataclass(frozen=True)
class LoadPodSpec:
    """One load generator process to run as a pod of the cluster (``--clover-load-in-cluster``): a locust master
    or worker of :mod:`pytest_clover.load`. The backend turns it into a one-replica Deployment in the run's
    namespace, labelled as the run's and opted out of sidecar injection (see :class:`LoadPods`)."""

    name: str
    """The Deployment's name, e.g. ``clover-load-worker-0`` (a DNS label: what ``kubectl get pods`` shows)."""
    role: str
    """``master`` or ``worker``: a label, so a sweep and a person can tell them apart."""
    module: str
    """The Python module the container runs (``python -m MODULE``): ``pytest_clover.load.master`` or ``…worker``."""
    config: str
    """The process's JSON config, passed in the environment variable ``CLOVER_LOAD_CONFIG``."""
    ports: Mapping[str, int] = field(default_factory=dict)
    """Named container ports (``tcp-zmq``: 5557, ``tcp-control``: 5558), ``tcp-`` names so Istio never sniffs them."""
    ready_port: int | None = None
    """A port whose TCP answer means ready (the master's control port); None: no readiness probe (ready when
    started, as Kubernetes has it)."""


@runtime_checkable
class LoadPods(Protocol):
    """A backend that runs load generator processes as pods of its cluster, near the mesh under test.

    Load pods are **not injected** with a sidecar (``sidecar.istio.io/inject: "false"``): locust's ZeroMQ channel
    breaks through Istio sidecars (locust #3214), and load must enter the mesh where local load does — at the
    ingress gateway — so that a VirtualService fault applies at the same hops whichever generator runs."""

    def start_load_pods(self, pods: list[LoadPodSpec], *, wait_for: list[str], timeout: float) -> dict[str, PodInfo]:
        """Create the pods' Deployments; return once those named in ``wait_for`` have a ready pod (their
        :class:`PodInfo`, with its IP, by Deployment name). Raises BackendError naming the pod and why."""
        ...

    def open_load_channel(self, pod: str, port: int, timeout: float) -> Any:
        """A connected socket to ``port`` of load pod ``pod`` (its Deployment's name), however this machine reaches
        it (a port-forward on a cluster). Closing it closes whatever carries it."""
        ...

    def delete_load_pods(self, names: list[str]) -> None:
        """Delete these load Deployments (their pods get SIGTERM); never raises for one already gone."""
        ...

    def load_target_url(self) -> str:
        """The mesh's ingress as a load pod reaches it (the gateway's in-cluster address)."""
        ...


class BackendClass(Protocol):
    """What the registry hands out: a backend's class, which makes meshes and reconnects to them."""

    name: str

    def from_options(self, options: BackendOptions) -> Backend:
        """A backend for a new mesh, not deployed yet (a classmethod)."""
        ...

    def default_location(self) -> str:
        """Where this backend's mesh is when nobody names one (a classmethod): what ``clover`` and a Chaos
        Toolkit experiment act on by default."""
        ...

    def connect(self, record: MeshRecord) -> Backend | None:
        """The running mesh ``record`` names, or None when it is gone (a classmethod). Raises
        :class:`~pytest_clover.errors.BackendError` when it cannot tell."""
        ...


@runtime_checkable
class Sweepable(Protocol):
    """A backend class that can find and remove meshes whose owner died (``clover cleanup``)."""

    def sweep(self, force: bool = False) -> list[str]:
        """Remove every mesh of this backend whose owner is gone (all of them with ``force``), one line of
        text per mesh found (a classmethod). ``clover cleanup --context C`` also passes ``settings={"context": …,
        "kubeconfig": …}`` to a backend whose ``sweep`` takes them: a cluster is swept only when it is named."""
        ...
