"""The one protocol every backend implements: the local embedded mesh now, Kubernetes later.

The plugin, the CLI and the Chaos Toolkit extension talk only to this seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import Problem


@dataclass(frozen=True)
class PodInfo:
    """A pod as ``kubectl get pods -o wide`` would show it, plus where its sidecar's admin API is."""

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
    admin_url: str | None = None
    """Base URL of the pod's Envoy admin API (local backend; port-forwarded on a cluster)."""
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
            "admin_url": self.admin_url,
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
            admin_url=d.get("admin_url"),
            ports={int(k): int(v) for k, v in d.get("ports", {}).items()},
            created=float(d.get("created", 0.0)),
        )


@runtime_checkable
class Backend(Protocol):
    """Operations on one deployed mesh. Every method raises a CloverError subclass on failure."""

    name: str

    def deploy(self, timeout: float = 60.0) -> None:
        """Start the topology and return when every pod is ready."""

    def teardown(self) -> None:
        """Stop everything deploy started; safe to call twice and after a failed deploy."""

    def ingress_url(self) -> str:
        """Base URL of the ingress gateway, e.g. ``http://127.61.4.1:8080``."""

    def pods(self, service: str | None = None) -> list[PodInfo]:
        """Pods, optionally only those of one Service (``app`` label), including terminating ones."""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every Deployment has its desired number of ready pods."""

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        """Create or replace Istio objects live; returns warnings. Takes effect before it returns."""

    def remove(self, kind: str, name: str) -> None:
        """Delete an Istio object live (``kubectl delete``)."""

    def istio_objects(self) -> list[dict[str, Any]]:
        """The Istio objects now in force, as documents (so a fault can be merged into them)."""

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        """Kill pods of a Service; their Deployment replaces them. Returns the killed pods' names."""

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        """Set a Deployment's replicas and wait until the pods and endpoints match."""

    def stats(self, pod: str) -> dict[str, Any]:
        """One pod's Envoy stats: counters and gauges as ints, text readouts as strings."""

    def service_stats(self, service: str) -> dict[str, int]:
        """Counters and gauges summed over the pods of a Service."""

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        """One pod's sidecar access log entries (JSON), oldest first."""
