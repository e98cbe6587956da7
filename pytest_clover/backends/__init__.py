"""Backends: what runs the mesh, behind one protocol.

- :mod:`.protocol` — :class:`Backend` (the operations on one mesh), :class:`BackendClass` (how a backend is made
  and reconnected), :class:`MeshRecord`, :class:`PodInfo`, and the small optional protocols;
- :mod:`.registry` — backends found by name in the ``pytest_clover.backends`` entry-point group;
- :mod:`.local` — the embedded mesh: every pod a local process behind a real Envoy sidecar;
- :mod:`.k8s` — a Kubernetes cluster with Istio, through its API only (the ``k8s`` extra).

The fake backend for tests is :class:`pytest_clover.testing.FakeBackend`, registered as ``fake``.
"""

from __future__ import annotations

from .protocol import (
    CONTAINERS,
    Backend,
    BackendClass,
    BackendOptions,
    LogFiles,
    MeshRecord,
    PodInfo,
    PodPorts,
    Sweepable,
    Watchable,
)
from .registry import GROUP, backend_class, connect, names

__all__ = [
    "CONTAINERS",
    "GROUP",
    "Backend",
    "BackendClass",
    "BackendOptions",
    "LogFiles",
    "MeshRecord",
    "PodInfo",
    "PodPorts",
    "Sweepable",
    "Watchable",
    "backend_class",
    "connect",
    "names",
]
