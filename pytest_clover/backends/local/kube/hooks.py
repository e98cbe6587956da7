"""What the API server asks of the mesh it fronts: admission, "in force" notification, and where pods listen.

The server (:mod:`.server`) stores objects; the mesh supervisor implements :class:`ClusterHooks` to validate
and default them (admission), to wait until a write is in force (e.g. every affected Envoy ACKed the new
configuration), and to reach a pod's ports and logs for the streaming subresources. :class:`NoHooks` admits
everything and has no endpoints: the server alone, for tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .resources import Resource

__all__ = ["ClusterHooks", "Connect", "NoHooks", "PodEndpoint"]

#: Opens a stream to a port of a pod (or of a service's backend): the port number in, a connected stream out.
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class PodEndpoint:
    """How to reach one running pod: its ports, its containers' log files, whether it still runs."""

    connect: Connect
    log_path: Callable[[str], Path | None]  # container name ("app", "istio-proxy") -> its log file
    running: Callable[[], bool]
    exec: Callable[[Any], Awaitable[int]] | None = None
    """Runs a ``pods/exec`` command (:data:`.streams.ExecRun`: an ``ExecIO`` in, the exit code out); None: the
    pod cannot exec (400)."""


class ClusterHooks(Protocol):
    """The mesh side of the API server (implemented by the supervisor; :class:`NoHooks` for tests)."""

    async def admit(
        self,
        resource: Resource,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        dry_run: bool,
    ) -> list[str]:
        """Validate (and default, in place) before storing; returns warnings; raises ApiError(422) to refuse.
        operation: CREATE | UPDATE | DELETE (obj None for DELETE)."""
        ...

    async def committed(self, resource: Resource, operation: str, obj: dict[str, Any]) -> None:
        """After the store took a write: returns once it is in force (e.g. every affected Envoy ACKed)."""
        ...

    def pod_endpoint(self, namespace: str, name: str) -> PodEndpoint | None:
        """The running pod ``namespace/name``, or None when it has no process (404/400 for streams)."""
        ...

    def service_endpoint(self, namespace: str, name: str, port: str) -> Connect | None:
        """How to connect to service ``namespace/name`` on ``port`` (a port name or number), or None."""
        ...


class NoHooks:
    """Admits everything, waits for nothing, reaches no pod: the API server on its own (tests)."""

    async def admit(
        self,
        resource: Resource,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        dry_run: bool,
    ) -> list[str]:
        """Admit everything, with no warning."""
        return []

    async def committed(self, resource: Resource, operation: str, obj: dict[str, Any]) -> None:
        """Nothing to wait for."""

    def pod_endpoint(self, namespace: str, name: str) -> PodEndpoint | None:
        """No pod runs."""
        return None

    def service_endpoint(self, namespace: str, name: str, port: str) -> Connect | None:
        """No service has a backend."""
        return None
