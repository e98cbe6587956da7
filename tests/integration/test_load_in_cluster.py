# mypy: disable-error-code="no-untyped-call"
"""In-cluster load (``--clover-load-in-cluster``, issue 15) on the embedded mesh's Kubernetes API.

The "cluster" is the session's embedded mesh; the k8s backend deploys the SDC into a namespace of its own, then
runs the load generator's master and workers as Deployments there, through the API only, as on a real cluster.
The embedded kubelet runs each pod as a local process (without a sidecar: the pods opt out of injection), so
what is checked is the whole path: the Deployments the backend writes, their pods' readiness, the port-forward
to the master's control port, the ZeroMQ channel between pods, the load entering at the ingress gateway, the
windows merged exactly, and every load pod deleted afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends import BackendOptions, backend_class
from pytest_clover.backends.k8s.backend import KubernetesBackend
from pytest_clover.backends.k8s.loadpods import LOAD_NAME
from pytest_clover.backends.k8s.rest import KINDS
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.errors import WorkerLost
from pytest_clover.load.incluster import InCluster
from pytest_clover.load.run import LoadGenerator

pytestmark = pytest.mark.integration
pytest.importorskip("kubernetes", reason="the k8s backend needs the official client: pip install kubernetes")

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
RATE = 60.0
"""Requests/s: the embedded cluster shares two cores with the mesh it runs and with this test."""


@pytest.fixture(scope="module")
def cluster(mesh: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubernetesBackend]:
    values = {"kubeconfig": str(mesh.info()["kubeconfig"]), "run_id": f"load-{time.monotonic_ns() % 10**8}"}
    options = BackendOptions(topology=SDC, workdir=tmp_path_factory.mktemp("k8s-load"), seed=5, settings=values)
    backend = backend_class("k8s").from_options(options)
    assert isinstance(backend, KubernetesBackend)
    backend.deploy(timeout=120)
    try:
        yield backend
    finally:
        backend.teardown()


def load_pods(backend: KubernetesBackend) -> list[dict[str, Any]]:
    items = backend.rest.list(KINDS["Pod"], backend.namespace, labels=f"app.kubernetes.io/name={LOAD_NAME}")
    return [p for p in items.get("items") or [] if not p["metadata"].get("deletionTimestamp")]


def load_deployments(backend: KubernetesBackend) -> list[str]:
    items = backend.rest.list(KINDS["Deployment"], backend.namespace, labels=f"app.kubernetes.io/name={LOAD_NAME}")
    return [d["metadata"]["name"] for d in items.get("items") or []]


def role(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"]["app.kubernetes.io/component"])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def gateway_requests(backend: KubernetesBackend, path: str) -> list[dict[str, Any]]:
    """The ingress gateway's access-log entries for ``path``."""
    gateway = next(p.name for p in backend.pods() if p.labels.get("istio") == "ingressgateway")
    return [e for e in backend.access_log(gateway) if e.get("path") == path]


@pytest.mark.parametrize("master", ["cluster", "local"])
def test_worker_pods_without_sidecars_hold_the_rate_and_the_pods_go_afterwards(
    cluster: KubernetesBackend, tmp_path: Path, master: str
) -> None:
    in_cluster = InCluster(cluster, master=master, master_address="127.0.0.1" if master == "local" else None)
    gen = LoadGenerator(cluster.ingress_url(), tmp_path / "load", seed=3, workers=2, in_cluster=in_cluster)
    path = f"/in-cluster-{master}"
    with gen.start(rate=RATE, path=path) as run:
        pods = load_pods(cluster)
        run.phase("steady", 6)
    steady = run.result.phases["steady"]
    # The open-loop schedule split over two pods: together they send the one-generator schedule (±1 request at
    # each of the phase's two boundaries), and nothing failed.
    assert abs(steady.requests - RATE * (steady.end - steady.start)) <= 2, steady
    assert steady.errors == 0
    assert run.result.generator["workers"] == 2 and not run.result.generator["lost_workers"]
    assert [w["requests"] > 0 for w in run.result.generator["per_worker"]] == [True, True]

    # The sidecar decision, as the cluster shows it: every load pod opted out and has one container.
    roles = sorted(role(p) for p in pods)
    assert roles == (["load-master"] if master == "cluster" else []) + ["load-worker", "load-worker"]
    for pod in pods:
        assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
        containers = [c["name"] for c in pod["spec"]["containers"]]
        assert len(containers) == 1 and "istio-proxy" not in containers, f"a load pod got a sidecar: {containers}"
    # The load entered the mesh at the ingress gateway: every request the workers sent is in its access log.
    sent = sum(int(w["requests"]) for w in run.result.generator["per_worker"])
    wait_until(lambda: len(gateway_requests(cluster, path)) >= sent, 5, f"the gateway logged all {sent} requests")

    # The app under test never counted them, and they are deleted once the run stopped.
    assert all(p.labels.get("app.kubernetes.io/name") != LOAD_NAME for p in cluster.pods())
    wait_until(lambda: not load_deployments(cluster), 30, "the load Deployments deleted")
    wait_until(lambda: not load_pods(cluster), 30, "the load pods gone")


def test_a_deleted_worker_pod_makes_the_run_inconclusive(cluster: KubernetesBackend, tmp_path: Path) -> None:
    gen = LoadGenerator(
        cluster.ingress_url(), tmp_path / "load", seed=4, workers=2, in_cluster=InCluster(cluster, master="cluster")
    )
    run = gen.start(rate=RATE)
    try:
        run.phase("before", 2)
        victim = next(p for p in load_pods(cluster) if role(p) == "load-worker")
        cluster.rest.delete(KINDS["Pod"], cluster.namespace, victim["metadata"]["name"], body={"gracePeriodSeconds": 0})
        with pytest.raises(WorkerLost) as lost:
            run.phase("after", 15)  # ends early: a loss wakes a phase under way
        assert "INCONCLUSIVE" in str(lost.value)
    finally:
        with pytest.raises(WorkerLost) as stopped:
            run.stop()
    (loss,) = stopped.value.result.generator["lost_workers"]
    assert "heartbeat" in loss["reason"] or "silent" in loss["reason"], loss
    # The windows after the loss say they lack one worker's requests; none before it does.
    marked = [row["missing_workers"] for row in stopped.value.result.window_rows()]
    assert 1 in marked and marked[0] == 0, marked
    wait_until(lambda: not load_deployments(cluster), 30, "the load Deployments deleted")
