"""The local backend implements the one Backend protocol the Kubernetes backend will implement too."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.protocol import Backend, PodInfo
from pytest_clover.errors import ConfigError, MeshNotRunning


def test_local_backend_is_a_backend(tmp_path: Path) -> None:
    assert isinstance(LocalBackend("fixtures/sdc", tmp_path / "state"), Backend)


def test_pod_info_round_trips_through_json() -> None:
    pod = PodInfo(
        "p-1",
        "svc",
        "dep",
        "v2",
        True,
        "Running",
        "127.1.2.3",
        2,
        {"app": "svc"},
        {9180: 9180},
        1.5,
    )
    assert PodInfo.from_dict(pod.as_dict()) == pod
    assert pod.url(9180) == "http://127.1.2.3:9180"


def test_operations_on_a_mesh_that_is_not_running_say_how_to_start_one(tmp_path: Path) -> None:
    backend = LocalBackend(state_dir=tmp_path / "nothing")
    with pytest.raises(MeshNotRunning, match="clover up"):
        backend.pods()


def test_deploy_refuses_a_topology_without_a_local_command_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n"
        "  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n"
    )
    backend = LocalBackend(tmp_path, tmp_path / "state")
    with pytest.raises(ConfigError, match=r"clover\.opnfv\.org/local-command") as info:
        backend.deploy(timeout=5)
    assert info.value.problems[0].obj == "Deployment/web"
    assert not (tmp_path / "state").exists()
