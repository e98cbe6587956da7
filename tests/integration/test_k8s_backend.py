# mypy: disable-error-code="no-untyped-call"
"""The Kubernetes backend against the embedded mesh's Kubernetes API (issue 12): what the contract does not cover.

The "cluster" is an embedded mesh (the session's SDC, in ``default``); the k8s backend deploys a second SDC into a
namespace of its own and works on it only through the API, as it would on a real cluster.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_clover.backends import BackendOptions, backend_class
from pytest_clover.backends.k8s.backend import KubernetesBackend
from pytest_clover.backends.k8s.rest import KINDS
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.errors import ObjectConflict, SafetyRefusal
from pytest_clover.faults import Faults
from pytest_clover.istio.documents import fault_document, find_virtual_service

pytestmark = pytest.mark.integration
pytest.importorskip("kubernetes", reason="the k8s backend needs the official client: pip install kubernetes")

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"


def _k8s(mesh: LocalBackend, tmp_path: Path, **settings: str) -> KubernetesBackend:
    values = {"kubeconfig": str(mesh.info()["kubeconfig"]), "run_id": f"it-{time.monotonic_ns() % 10**8}"}
    values.update(settings)
    options = BackendOptions(topology=SDC, workdir=tmp_path / "k8s", seed=11, settings=values)
    backend = backend_class("k8s").from_options(options)
    assert isinstance(backend, KubernetesBackend)
    return backend


@pytest.fixture(scope="module")
def deployed(mesh: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubernetesBackend]:
    backend = _k8s(mesh, tmp_path_factory.mktemp("k8s-backend"))
    backend.deploy(timeout=120)
    try:
        yield backend
    finally:
        backend.teardown()


def _objects(backend: KubernetesBackend) -> dict[str, Any]:
    """Every object of the run namespace a fault could touch, without what the server changes on its own."""
    out: dict[str, Any] = {}
    for kind in ("VirtualService", "DestinationRule", "Gateway", "Deployment", "Service", "ConfigMap"):
        for item in backend.rest.list(backend._kind(kind), backend.namespace).get("items") or []:
            meta = item["metadata"]
            spec = item.get("spec") if kind != "ConfigMap" else item.get("data")
            out[f"{kind}/{meta['name']}"] = {"rv": meta.get("resourceVersion"), "spec": spec}
    for pod in backend.pods():
        out[f"Pod/{pod.name}"] = pod.phase
    return out


def test_deploy_mode_makes_a_labelled_namespace_and_applies_with_our_field_manager(
    deployed: KubernetesBackend,
) -> None:
    ns = deployed.rest.get(KINDS["Namespace"], None, deployed.namespace)
    assert ns is not None
    labels = ns["metadata"]["labels"]
    assert labels["istio-injection"] == "enabled"
    assert labels["app.kubernetes.io/managed-by"] == "pytest-clover"
    assert labels["clover.opnfv.org/run-id"] == deployed.settings.run_id
    vs = deployed.rest.get(deployed._kind("VirtualService"), deployed.namespace, "http-lb")
    assert vs is not None
    assert any(
        m.get("manager") == "pytest-clover" and m.get("operation") == "Apply" for m in vs["metadata"]["managedFields"]
    )
    assert {p.service for p in deployed.pods()} >= {"clover-server", "http-lb", "proxy-access-control"}
    assert deployed.ingress_url().startswith("http://127.")


def test_a_fault_is_seen_in_the_callers_sidecar_and_reverted_exactly(deployed: KubernetesBackend) -> None:
    before = deployed.rest.get(deployed._kind("VirtualService"), deployed.namespace, "http-lb")
    assert before is not None
    faults = Faults(deployed, verify_timeout=5)
    handle = faults.abort("http-lb", status=503, percent=100, headers={"x-clover-test": "k8s"})
    assert deployed.propagation, "the backend measured no propagation delay"
    assert deployed.propagation[-1]["ms"] >= 0
    during = deployed.rest.get(deployed._kind("VirtualService"), deployed.namespace, "http-lb")
    assert during is not None
    assert any("fault" in r for r in during["spec"]["http"])
    handle.revert()
    after = deployed.rest.get(deployed._kind("VirtualService"), deployed.namespace, "http-lb")
    assert after is not None
    assert after["spec"] == before["spec"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")


def test_someone_elses_change_elsewhere_survives_and_the_same_field_is_never_clobbered(
    deployed: KubernetesBackend,
) -> None:
    kind = deployed._kind("VirtualService")
    objects = deployed.istio_objects()
    original = copy.deepcopy(find_virtual_service(objects, "http-lb"))
    doc = fault_document(objects, "http-lb", delay="1s", headers={"x-clover-test": "conflict"})
    # Someone else adds a timeout to every route of the same object after we read it.
    theirs = copy.deepcopy(original)
    assert theirs is not None
    for route in theirs["spec"]["http"]:
        route["timeout"] = "7s"
    deployed.rest.request("PUT", kind.path(deployed.namespace, "http-lb"), body=theirs)
    try:
        deployed.apply(yaml.safe_dump(doc), source="test fault")
        now = deployed.rest.get(kind, deployed.namespace, "http-lb")
        assert now is not None
        theirs_now = [r for r in now["spec"]["http"] if "fault" not in r]
        assert theirs_now and all(r.get("timeout") == "7s" for r in theirs_now), "their change was lost"
        assert any("fault" in r for r in now["spec"]["http"]), "our fault was not applied on top"
        # Now they change the very field our revert would take away: the revert must refuse, not overwrite.
        deployed.istio_objects()  # we read the object as it is now...
        mine = copy.deepcopy(now)
        for route in now["spec"]["http"]:
            if "fault" in route:
                route["fault"] = {"delay": {"fixedDelay": "3s", "percentage": {"value": 50.0}}}
        deployed.rest.request("PUT", kind.path(deployed.namespace, "http-lb"), body=now)  # ...they change it
        restored = copy.deepcopy(mine)
        for route in restored["spec"]["http"]:
            route.pop("fault", None)
        with pytest.raises(ObjectConflict, match="fault"):
            deployed.apply(yaml.safe_dump(restored), source="test revert")
    finally:
        fresh = deployed.rest.get(kind, deployed.namespace, "http-lb")
        assert fresh is not None and original is not None
        fresh["spec"] = original["spec"]
        deployed.rest.request("PUT", kind.path(deployed.namespace, "http-lb"), body=fresh)
        deployed.istio_objects()


def test_a_kill_over_the_blast_radius_is_refused_and_kills_nothing(deployed: KubernetesBackend) -> None:
    before = {p.name for p in deployed.pods("clover-server")}
    with pytest.raises(SafetyRefusal, match="max-kill-percent"):
        deployed.kill("clover-server", percent=100)
    assert {p.name for p in deployed.pods("clover-server")} == before


def test_a_dry_run_lists_targets_and_patches_and_changes_nothing(
    deployed: KubernetesBackend, mesh: LocalBackend, tmp_path: Path
) -> None:
    dry = _k8s(mesh, tmp_path, namespace=deployed.namespace, dry_run="true", run_id=deployed.settings.run_id)
    try:
        before = _objects(deployed)
        faults = Faults(dry, dry_run=True)
        faults.kill("clover-server")
        faults.delay("http-lb", "2s", percent=50)
        faults.scale("clover-server", 1)
        faults.revert_all()
        after = _objects(deployed)
        assert after == before, json.dumps({k: (before.get(k), after.get(k)) for k in set(before) ^ set(after)})
        plan = "\n".join(dry.plan)
        assert "kill pods clover-server-" in plan
        assert "patch VirtualService/http-lb" in plan and "fault" in plan
        assert "scale deployment clover-server from 3 to 1" in plan
    finally:
        dry.close()


def test_existing_mode_refuses_a_namespace_that_did_not_opt_in(mesh: LocalBackend, tmp_path: Path) -> None:
    # default: exists, is not ours and carries no opt-in annotation; kube-system: protected whatever it carries.
    for namespace in ("default", "kube-system"):
        backend = _k8s(mesh, tmp_path, namespace=namespace)
        try:
            with pytest.raises(SafetyRefusal, match=r"clover\.opnfv\.org/chaos"):
                backend.deploy(timeout=30)
        finally:
            backend.teardown()


def test_a_pods_port_is_reached_directly_or_through_a_kept_port_forward(
    deployed: KubernetesBackend, mesh: LocalBackend, tmp_path: Path
) -> None:
    from tests.helpers import Client

    pod = next(p for p in deployed.pods("clover-server") if p.serving)
    # The embedded mesh's pod network is reachable from here: auto goes direct.
    assert deployed.pod_url(pod.name, 9180) == f"http://{pod.ip}:9180"
    # A cluster whose pod network is not: through a port-forward the backend keeps (and closes at teardown).
    forwarded = _k8s(mesh, tmp_path, namespace=deployed.namespace, pod_access="port-forward",
                     run_id=deployed.settings.run_id)  # fmt: skip
    try:
        url = forwarded.pod_url(pod.name, 9180)
        assert url.startswith("http://127.0.0.1:") and url == forwarded.pod_url(pod.name, 9180)
        for _ in range(3):  # one forward, several connections
            with Client(url) as client:
                reply = client.get("/clover/control")
                assert reply.status == 200, reply.body
                assert "latency_ms" in json.loads(reply.body)
    finally:
        forwarded.teardown()
