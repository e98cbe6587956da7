"""Fixtures the suites share: making VNF pods misbehave, and always putting them back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_clover import Mesh
from pytest_clover.vnf.control import configure

VNFControl = Callable[..., None]
"""The ``vnf`` fixture: ``vnf(service, only=None, **settings)`` sets the control API of a service's pods."""

SERVER_DEFAULTS = {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "max_concurrency": 0, "payload_bytes": 128}
LB_DEFAULTS = {"extra_latency_ms": 0}


@pytest.fixture
def vnf(mesh: Mesh) -> Iterator[VNFControl]:
    """``vnf("clover-server", latency_ms=50)`` sets the control API of every pod of a service (or of the
    pods ``only`` names); every server and lb pod is reset at teardown, replacements included."""

    def set_control(service: str, only: list[str] | None = None, **settings: Any) -> None:
        for pod in mesh.pods(service):
            if pod.ready and (only is None or pod.name in only):
                configure(mesh.pod_url(pod, 9180), **settings)

    yield set_control
    for service, defaults in (("clover-server", SERVER_DEFAULTS), ("http-lb", LB_DEFAULTS)):
        for pod in mesh.pods(service):
            if pod.ready:
                configure(mesh.pod_url(pod, 9180), **defaults)
