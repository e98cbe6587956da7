"""The real embedded mesh for integration tests: the SDC topology on real Envoy sidecars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import Client, wait_for

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An isolated registry, so tests never see (or sweep) a developer's own meshes."""
    path = tmp_path_factory.mktemp("clover-runtime")
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOVER_RUNTIME_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def mesh(runtime_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    backend = LocalBackend(SDC, tmp_path_factory.mktemp("sdc") / "state", seed=7)
    backend.deploy(timeout=90)
    try:
        yield backend
    finally:
        backend.teardown()


@pytest.fixture(scope="session")
def pristine(mesh: LocalBackend) -> dict[str, object]:
    """What the mesh looked like right after deploy, to restore after each test."""
    return {
        "istio": mesh.istio_objects(),
        "replicas": {"clover-server": 3, "clover-server-v2": 1, "http-lb-v1": 1, "http-lb-v2": 1},
    }


@pytest.fixture
def sdc(mesh: LocalBackend, pristine: dict[str, object]) -> Iterator[LocalBackend]:
    """The shared mesh, put back the way it was after the test (Istio objects, replicas, VNF controls)."""
    yield mesh
    original = {(o["kind"], o["metadata"]["name"]): o for o in pristine["istio"]}  # type: ignore[attr-defined]
    for obj in mesh.istio_objects():
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in original:
            mesh.remove(*key)
        elif json.dumps(obj, sort_keys=True) != json.dumps(original[key], sort_keys=True):
            mesh.apply(yaml.safe_dump(original[key]))
    for dep, n in pristine["replicas"].items():  # type: ignore[attr-defined]
        if len([p for p in mesh.pods() if p.deployment == dep and p.phase != "Terminating"]) != n:
            mesh.scale(dep, n)
    mesh.wait_ready(60)
    for pod in mesh.pods("clover-server"):
        with Client(pod.url(9180)) as client:
            client.put_json("/clover/control", {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "payload_bytes": 128})


@pytest.fixture
def ingress(sdc: LocalBackend) -> Iterator[Client]:
    with Client(sdc.ingress_url()) as client:
        yield client


@pytest.fixture
def pod_client() -> Iterator[object]:
    """Open clients to pods directly (through their sidecar's inbound listener); all closed after the test."""
    opened: list[Client] = []

    def open_client(pod: object) -> Client:
        client = Client(pod.url(9180))  # type: ignore[attr-defined]
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def lb_clusters(mesh: LocalBackend, pod: str) -> dict[str, list[dict[str, object]]]:
    """Envoy's view of each outbound cluster's hosts in one pod's sidecar (/clusters?format=json)."""
    body = mesh.envoy_admin(pod, "/clusters?format=json")
    return {c["name"]: c.get("host_statuses", []) for c in json.loads(body)["cluster_statuses"]}


def endpoint_ips(mesh: LocalBackend, pod: str, cluster: str) -> set[str]:
    hosts = lb_clusters(mesh, pod).get(cluster, [])
    return {h["address"]["socket_address"]["address"] for h in hosts}  # type: ignore[index]


def access_log_ids(mesh: LocalBackend, pod: str) -> set[str]:
    return {str(e["request_id"]) for e in mesh.access_log(pod) if e.get("request_id")}


__all__ = ["access_log_ids", "endpoint_ips", "lb_clusters", "wait_for"]
