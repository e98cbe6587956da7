"""Deployment rollouts in the embedded mesh, driven by the real `kubectl`: a new pod template is a new ReplicaSet
whose pods replace the old ones by the Deployment's strategy, as Kubernetes' deployment controller does.

The session's SDC mesh runs them; each test puts the Deployment's template back (the ``sdc`` fixture restores
replicas and Istio objects, not templates) and waits for that rollout to finish.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import Client, wait_for
from tests.integration.test_kube_api import KUBECTL, KubeCtl

pytestmark = pytest.mark.integration
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl on the PATH: install kubectl ≥ 1.27")

DEPLOYMENT = "clover-server"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
def kube(sdc: LocalBackend, tmp_path: Path) -> Iterator[KubeCtl]:
    """kubectl on the mesh; the Deployment's template, strategy and pause put back after the test."""
    info = sdc.info()
    assert info.get("kubeconfig"), f"the mesh serves no Kubernetes API: {info}"
    kubectl = KubeCtl(Path(str(info["kubeconfig"])), tmp_path)
    original = kubectl.json("get", "deploy", DEPLOYMENT)["spec"]
    yield kubectl
    patch = [
        {"op": "add", "path": "/spec/paused", "value": False},
        {"op": "add", "path": "/spec/revisionHistoryLimit", "value": original.get("revisionHistoryLimit", 10)},
        {"op": "add", "path": "/spec/strategy", "value": original.get("strategy") or {"type": "RollingUpdate"}},
        {"op": "replace", "path": "/spec/template", "value": original["template"]},
    ]
    kubectl.run("patch", "deploy", DEPLOYMENT, "--type=json", "-p", json.dumps(patch))
    kubectl.run("annotate", "deploy", DEPLOYMENT, "kubernetes.io/change-cause-", check=False)
    kubectl.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)


def _pods(kube: KubeCtl) -> list[dict[str, Any]]:
    """The Deployment's pods that are not terminating."""
    items = kube.json("get", "pods", "-l", "app=clover-server,version=v1")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _replicasets(kube: KubeCtl) -> dict[str, dict[str, Any]]:
    """The Deployment's ReplicaSets by revision."""
    uid = kube.json("get", "deploy", DEPLOYMENT)["metadata"]["uid"]
    items = kube.json("get", "rs")["items"]
    return {
        rs["metadata"]["annotations"][REVISION]: rs
        for rs in items
        if any(o["uid"] == uid for o in rs["metadata"].get("ownerReferences", []))
    }


def _current(kube: KubeCtl) -> dict[str, Any]:
    dep = kube.json("get", "deploy", DEPLOYMENT)
    return _replicasets(kube)[dep["metadata"]["annotations"][REVISION]]


class Load:
    """Requests through the ingress in a thread for as long as it runs; every status kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.hops: set[str] = set()
        """The pods (``pod/version``) the requests went through."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with Client(self.url) as client:
            while not self._stop.is_set():
                try:
                    reply = client.get("/")
                    self.statuses.append(reply.status)
                    self.hops.update(reply.hops)
                except Exception as exc:  # a connection the mesh dropped is a failure to count, not a crash
                    self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@needs_kubectl
def test_set_env_rolls_out_a_new_replicaset_without_dropping_requests(kube: KubeCtl, sdc: LocalBackend) -> None:
    before = {p["metadata"]["name"] for p in _pods(kube)}
    first = _current(kube)
    with Load(sdc.ingress_url()) as load:
        wait_for(lambda: len(load.statuses) >= 5, timeout=10, what="requests through the ingress")
        kube.run("set", "env", f"deploy/{DEPLOYMENT}", "CLOVER_X=1")
        out = kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100).stdout
        count = len(load.statuses)
        wait_for(lambda: len(load.statuses) >= count + 5, timeout=10, what="requests after the rollout")
    assert "successfully rolled out" in out
    assert load.errors == [] and set(load.statuses) == {200}, (load.errors[:3], sorted(set(load.statuses)))
    served = {hop.split("/")[0] for hop in load.hops}
    assert served & before and served & {p["metadata"]["name"] for p in _pods(kube)}, "old, then new pods served"

    pods = _pods(kube)
    assert len(pods) == 3
    assert not before & {p["metadata"]["name"] for p in pods}, "every pod is new"
    new = _current(kube)
    assert new["metadata"]["name"] != first["metadata"]["name"]
    assert new["metadata"]["annotations"][REVISION] == str(int(first["metadata"]["annotations"][REVISION]) + 1)
    for pod in pods:
        assert pod["metadata"]["ownerReferences"][0]["name"] == new["metadata"]["name"]
        assert pod["metadata"]["labels"]["pod-template-hash"] == new["metadata"]["labels"]["pod-template-hash"]
        echoed = kube.run("exec", pod["metadata"]["name"], "--", "sh", "-c", "echo $CLOVER_X").stdout
        assert echoed.strip() == "1", pod["metadata"]["name"]
    old = kube.json("get", "rs", first["metadata"]["name"])
    assert old["spec"]["replicas"] == 0 and old["status"].get("replicas", 0) == 0
    dep = kube.json("get", "deploy", DEPLOYMENT)
    status = dep["status"]
    assert status["observedGeneration"] == dep["metadata"]["generation"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"], status["availableReplicas"]) == (
        3,
        3,
        3,
        3,
    )
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    messages = [e["message"] for e in kube.json("get", "events")["items"] if e["reason"] == "ScalingReplicaSet"]
    assert f"Scaled up replica set {new['metadata']['name']} from 0 to 1" in messages
    assert f"Scaled down replica set {first['metadata']['name']} from 1 to 0" in messages
    history = kube.run("rollout", "history", f"deploy/{DEPLOYMENT}").stdout
    assert first["metadata"]["annotations"][REVISION] in history and new["metadata"]["annotations"][REVISION] in history


@needs_kubectl
def test_rollout_undo_brings_the_previous_template_back(kube: KubeCtl) -> None:
    first = _current(kube)
    kube.run("set", "env", f"deploy/{DEPLOYMENT}", "CLOVER_UNDO=yes")
    kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)
    kube.run("rollout", "undo", f"deploy/{DEPLOYMENT}")
    kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)
    back = _current(kube)
    # The first template's ReplicaSet again, made the newest revision.
    assert back["metadata"]["name"] == first["metadata"]["name"]
    assert int(back["metadata"]["annotations"][REVISION]) > int(first["metadata"]["annotations"][REVISION])
    env = kube.json("get", "deploy", DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "CLOVER_UNDO" not in {e["name"] for e in env}
    for pod in _pods(kube):
        assert pod["metadata"]["ownerReferences"][0]["name"] == first["metadata"]["name"]
        echoed = kube.run("exec", pod["metadata"]["name"], "--", "sh", "-c", "echo x$CLOVER_UNDO").stdout
        assert echoed.strip() == "x"


@needs_kubectl
def test_rollout_restart_replaces_every_pod(kube: KubeCtl) -> None:
    before = {p["metadata"]["name"] for p in _pods(kube)}
    kube.run("annotate", "deploy", DEPLOYMENT, "kubernetes.io/change-cause=restarted by the test")
    kube.run("rollout", "restart", f"deploy/{DEPLOYMENT}")
    kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)
    after = {p["metadata"]["name"] for p in _pods(kube)}
    assert len(after) == 3 and not before & after
    template = kube.json("get", "deploy", DEPLOYMENT)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    history = kube.run("rollout", "history", f"deploy/{DEPLOYMENT}").stdout
    assert "restarted by the test" in history


@needs_kubectl
def test_recreate_stops_every_old_pod_before_a_new_one_starts(kube: KubeCtl, sdc: LocalBackend) -> None:
    # Stored with Kubernetes' defaults (RollingUpdate 25 % / 25 %): Recreate alone is refused, as a cluster does.
    assert kube.json("get", "deploy", DEPLOYMENT)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    refused = kube.run("patch", "deploy", DEPLOYMENT, "-p", '{"spec":{"strategy":{"type":"Recreate"}}}', check=False)
    assert refused.returncode != 0 and "may not be specified when strategy `type` is 'Recreate'" in refused.stderr
    patch = {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}}
    kube.run("patch", "deploy", DEPLOYMENT, "--type=merge", "-p", json.dumps(patch))
    before = {p["metadata"]["name"] for p in _pods(kube)}
    kube.run("set", "env", f"deploy/{DEPLOYMENT}", "CLOVER_RECREATE=1")
    # Watched from the mesh's side: never an old and a new pod at once.
    mixed: list[tuple[str, ...]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        names = {p.name for p in sdc.pods() if p.deployment == DEPLOYMENT}
        if names & before and names - before:
            mixed.append(tuple(sorted(names)))
        if len(names) == 3 and not names & before and all(p.ready for p in sdc.pods() if p.deployment == DEPLOYMENT):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the Recreate rollout did not finish in 90 s")
    assert mixed == []
    kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=30s", timeout=40)


@needs_kubectl
def test_a_rollout_whose_pods_never_get_ready_keeps_the_old_pods_serving(kube: KubeCtl, sdc: LocalBackend) -> None:
    before = {p["metadata"]["name"] for p in _pods(kube)}
    bad = {"spec": {"template": {"metadata": {"annotations": {"clover.opnfv.org/local-command": "sh -c 'exit 3'"}}}}}
    kube.run("patch", "deploy", DEPLOYMENT, "-p", json.dumps(bad))
    # 3 replicas, 25 % each way: one surge pod (rounded up), no unavailable one (rounded down).
    wait_for(lambda: len(_pods(kube)) == 4, timeout=20, what="the surge pod")
    with Load(sdc.ingress_url()) as load:
        wait_for(lambda: len(load.statuses) >= 20, timeout=10, what="requests through the ingress")
    assert load.errors == [] and set(load.statuses) == {200}
    names = {p["metadata"]["name"] for p in _pods(kube)}
    assert before <= names, "every old pod still runs"
    status = kube.json("get", "deploy", DEPLOYMENT)["status"]
    assert status["updatedReplicas"] == 1 and status["availableReplicas"] == 3
    assert status.get("unavailableReplicas") == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Progressing"]["reason"] == "ReplicaSetUpdated"
    assert conditions["Available"]["status"] == "True"
    proc = kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=2s", check=False, timeout=20)
    assert proc.returncode != 0 and "1 out of 3 new replicas have been updated" in proc.stdout


@needs_kubectl
def test_a_paused_deployment_holds_its_template_until_resumed(kube: KubeCtl) -> None:
    before = {p["metadata"]["name"] for p in _pods(kube)}
    kube.run("rollout", "pause", f"deploy/{DEPLOYMENT}")
    kube.run("set", "env", f"deploy/{DEPLOYMENT}", "CLOVER_PAUSED=1")
    dep = kube.json("get", "deploy", DEPLOYMENT)
    wait_for(
        lambda: kube.json("get", "deploy", DEPLOYMENT)["status"]["observedGeneration"] == dep["metadata"]["generation"],
        timeout=10,
        what="the paused change observed",
    )
    status = kube.json("get", "deploy", DEPLOYMENT)["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Progressing"] == "DeploymentPaused"
    assert {p["metadata"]["name"] for p in _pods(kube)} == before
    kube.run("rollout", "resume", f"deploy/{DEPLOYMENT}")
    kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)
    assert not before & {p["metadata"]["name"] for p in _pods(kube)}


@needs_kubectl
def test_revision_history_limit_prunes_old_empty_replicasets(kube: KubeCtl) -> None:
    kube.run("patch", "deploy", DEPLOYMENT, "--type=merge", "-p", json.dumps({"spec": {"revisionHistoryLimit": 1}}))
    for value in ("1", "2", "3"):
        kube.run("set", "env", f"deploy/{DEPLOYMENT}", f"CLOVER_HISTORY={value}")
        kube.run("rollout", "status", f"deploy/{DEPLOYMENT}", "--timeout=90s", timeout=100)
    # The current ReplicaSet and one old one; the oldest went (the garbage collector takes nothing else).
    # Old pods may take their grace period to stop; their ReplicaSet stays until they are gone.
    revisions = wait_for(lambda: _pruned_to(kube, 2), timeout=40, what="old ReplicaSets pruned to the limit")
    newest = max(int(r) for r in revisions)
    assert sorted(int(r) for r in revisions) == [newest - 1, newest]


def _pruned_to(kube: KubeCtl, count: int) -> dict[str, dict[str, Any]] | None:
    replicasets = _replicasets(kube)
    return replicasets if len(replicasets) == count else None


def test_rolling_limits_round_as_kubernetes() -> None:
    """maxSurge rounds up, maxUnavailable down; both 0 would never progress, so one may be unavailable."""
    import dataclasses

    from pytest_clover.backends.local.supervisor import rolling_limits
    from pytest_clover.istio import load_topology

    from .conftest import SDC

    model = load_topology(SDC).deployments[DEPLOYMENT]

    def limits(rolling: dict[str, Any] | None, replicas: int) -> tuple[int, int]:
        spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": rolling}} if rolling is not None else {}
        return rolling_limits(dataclasses.replace(model, spec=spec), replicas)

    assert limits(None, 3) == (1, 0)
    assert limits(None, 10) == (3, 2)
    assert limits(None, 1) == (1, 0)
    assert limits({"maxSurge": 0, "maxUnavailable": "10%"}, 5) == (0, 1)  # 0.5 down to 0, then the floor of 1
    assert limits({"maxSurge": "50%", "maxUnavailable": 2}, 3) == (2, 2)
    assert limits({"maxSurge": "0%", "maxUnavailable": "0%"}, 4) == (0, 1)
