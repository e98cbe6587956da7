"""The k8s backend's own rules, without a cluster: rollout status, pods as the protocol sees them, the dead-run
check, the run namespace's name."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_clover.backends.k8s.backend import KubernetesBackend, _pod_info, _rolled_out, deploy_namespace
from pytest_clover.errors import MeshNotRunning, ReadinessTimeout


def _deployment(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 3}, "status": status}


@pytest.mark.parametrize(
    ("status", "done", "says"),
    [
        ({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}, False, "observed"),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3, "availableReplicas": 3}, False, "2 of 3 new"),
        ({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3}, False, "1 old"),
        ({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}, False, "2 of 3"),
        ({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}, True, "rolled out"),
    ],
)
def test_rollout_status_follows_kubectls_rules(status: dict[str, Any], done: bool, says: str) -> None:
    ok, detail = _rolled_out(_deployment(**status))
    assert ok is done and says in detail


def test_a_progress_deadline_stops_the_wait() -> None:
    stuck = _deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "late"}])
    with pytest.raises(ReadinessTimeout, match="progress deadline"):
        _rolled_out(stuck)


def _pod(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-7d9c5-abcde", "labels": {"app": "web", "version": "v2", "pod-template-hash": "7d9c5"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9c5"}],
                     "creationTimestamp": "2026-12-05T04:00:00Z", **meta},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9180}]},
                                {"name": "istio-proxy", "ports": [{"containerPort": 15090}]}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "restartCount": 1}, {"name": "istio-proxy", "restartCount": 2}]},
    }  # fmt: skip


def test_a_pod_as_the_protocol_sees_it() -> None:
    info = _pod_info(_pod())
    assert (info.service, info.deployment, info.version, info.ip) == ("web", "web", "v2", "10.1.2.3")
    assert info.serving and info.restarts == 3 and info.ports == {9180: 9180}
    assert info.url(9180) == "http://10.1.2.3:9180"
    assert info.created > 0


def test_a_terminating_pod_is_no_endpoint_whatever_its_ready_condition() -> None:
    info = _pod_info(_pod(deletionTimestamp="2026-12-05T04:01:00Z"))
    assert info.phase == "Terminating" and not info.ready and not info.serving


def test_the_run_namespace_is_a_valid_name() -> None:
    assert deploy_namespace("20261205-041500-1234-gw0") == "clover-20261205-041500-1234-gw0"
    long = deploy_namespace("X" * 80 + "_y")
    assert len(long) <= 63 and long.startswith("clover-x") and not long.endswith("-")


def test_a_run_cut_off_longer_than_its_lease_is_a_dead_mesh() -> None:
    backend = object.__new__(KubernetesBackend)  # no cluster: only the check's own state
    backend._deadman = None
    backend.check_running()  # no switch: nothing to tell
    backend._deadman = SimpleNamespace(tripped=False, last_error="")
    backend.check_running()
    backend._deadman = SimpleNamespace(tripped=True, last_error="connection refused")
    backend.settings = SimpleNamespace(lease_seconds=15.0)  # type: ignore[assignment]
    backend.cluster = SimpleNamespace(context="lab", server="https://192.0.2.1")  # type: ignore[assignment]
    backend.namespace = "clover-run"
    with pytest.raises(MeshNotRunning, match="connection refused"):
        backend.check_running()
