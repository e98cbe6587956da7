"""A third-party backend for pytest-clover, in memory: a folder of its own and one entry point, nothing else.

Its distribution metadata (``clover_memory-0.1.dist-info/entry_points.txt``) registers it::

    [pytest_clover.backends]
    memory = clover_memory:MemoryBackend

It keeps pods and Istio objects in a dict and has no data plane (no Envoy): it passes the backend contract's
smoke subset, :class:`pytest_clover.testing.contract.BackendSmokeContract`.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, ClassVar

import yaml

from pytest_clover.backends import BackendOptions, MeshRecord, PodInfo
from pytest_clover.errors import BackendError, Problem
from pytest_clover.istio import load_topology


class MemoryBackend:
    name = "memory"
    live: ClassVar[dict[str, MemoryBackend]] = {}

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        self.location = str(options.workdir)
        self.topology = load_topology(options.topology)
        self.desired = {d.name: d.replicas for d in self.topology.deployments.values()}
        self.istio: dict[tuple[str, str], dict[str, Any]] = {}
        for vs in self.topology.virtual_services.values():
            self.istio[("VirtualService", vs.name)] = copy.deepcopy(dict(vs.raw))
        for dr in self.topology.destination_rules.values():
            self.istio[("DestinationRule", dr.name)] = copy.deepcopy(dict(dr.raw))
        self.pods_: list[PodInfo] = []
        self.serial = itertools.count(1)

    # -- made by the registry

    @classmethod
    def from_options(cls, options: BackendOptions) -> MemoryBackend:
        return cls(options)

    @classmethod
    def default_location(cls) -> str:
        raise BackendError("the memory backend has no default mesh")

    @classmethod
    def connect(cls, record: MeshRecord) -> MemoryBackend | None:
        return cls.live.get(record.location)

    # -- the protocol

    def _pod(self, deployment: str) -> PodInfo:
        dep = self.topology.deployments[deployment]
        labels = dict(dep.pod_labels)
        n = next(self.serial)
        return PodInfo(
            f"{deployment}-memory-{n}", labels.get("app", deployment), deployment, labels.get("version", ""), True,
            "Running", f"127.77.0.{n % 250 + 1}", 0, labels, {80: 80},
        )  # fmt: skip

    def _reconcile(self) -> None:
        for deployment, replicas in self.desired.items():
            mine = [p for p in self.pods_ if p.deployment == deployment]
            for _ in range(replicas - len(mine)):
                self.pods_.append(self._pod(deployment))
            for pod in mine[replicas:]:
                self.pods_.remove(pod)

    def deploy(self, timeout: float = 60.0) -> list[Problem]:
        self.pods_ = [PodInfo("gateway-memory", "istio-ingressgateway", None, "", True, "Running", "127.77.0.1", 0)]
        self._reconcile()
        MemoryBackend.live[self.location] = self
        return []

    def teardown(self) -> None:
        MemoryBackend.live.pop(self.location, None)
        self.pods_ = []

    def record(self) -> MeshRecord:
        return MeshRecord(self.name, self.location)

    def info(self) -> dict[str, Any]:
        return {"pods": len(self.pods_)}

    def ingress_url(self) -> str:
        return "http://127.77.0.1:8080"

    def pods(self, service: str | None = None) -> list[PodInfo]:
        return [p for p in self.pods_ if service is None or p.service == service]

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._reconcile()

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        for doc in yaml.safe_load_all(yaml_text):
            self.istio[(doc["kind"], doc["metadata"]["name"])] = doc
        return []

    def remove(self, kind: str, name: str) -> None:
        if self.istio.pop((kind, name), None) is None:
            raise BackendError(f"no {kind}/{name}")

    def istio_objects(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.istio.values()))

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        mine = [p for p in self.pods_ if p.service == service and p.deployment]
        n = max(1, math.ceil(len(mine) * percent / 100)) if percent is not None else (count or 1)
        victims = mine[:n]
        for pod in victims:
            self.pods_.remove(pod)
        self._reconcile()
        return [p.name for p in victims]

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        self.desired[deployment] = replicas
        self._reconcile()

    def desired_replicas(self) -> dict[str, int]:
        return dict(self.desired)

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        raise BackendError("the memory backend runs no Envoy")

    def logs(self, pod: str, container: str = "app") -> str:
        return ""

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        return []


__all__ = ["MemoryBackend"]
