"""The backend contract, run over every backend this project ships: the fake (in memory), the local mesh, and the
Kubernetes backend against the local mesh's Kubernetes API (its topology deployed into a namespace of its own).

A third-party backend runs the same classes (see ``tests/plugin/test_third_party_backend.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_clover.backends import Backend, BackendOptions, backend_class
from pytest_clover.testing.contract import BackendContract

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"


@pytest.fixture(
    scope="module",
    params=[
        "fake",
        pytest.param("local", marks=pytest.mark.integration),
        pytest.param("k8s", marks=pytest.mark.integration),
    ],
)
def contract_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    name = str(request.param)
    runtime = pytest.MonkeyPatch()
    # An isolated registry of local meshes, so the contract never sees (or sweeps) a developer's own.
    runtime.setenv("CLOVER_RUNTIME_DIR", str(tmp_path_factory.mktemp("clover-runtime")))
    host: Backend | None = None
    settings: dict[str, str] = {}
    if name == "k8s":
        pytest.importorskip("kubernetes", reason="the k8s backend needs the official client: pip install kubernetes")
        # The cluster: an embedded mesh, reached only through its Kubernetes API.
        host = backend_class("local").from_options(
            BackendOptions(topology=SDC, workdir=tmp_path_factory.mktemp("cluster") / "mesh", seed=5)
        )
        host.deploy(timeout=120)
        settings = {"kubeconfig": str(host.info()["kubeconfig"]), "run_id": "contract"}
    options = BackendOptions(topology=SDC, workdir=tmp_path_factory.mktemp(name) / "mesh", seed=3, settings=settings)
    try:
        backend = backend_class(name).from_options(options)
        backend.deploy(timeout=120)
        try:
            yield backend
        finally:
            backend.teardown()
    finally:
        if host is not None:
            host.teardown()
        runtime.undo()


class TestEveryBackend(BackendContract):
    """Every test of the contract, on each backend in turn (the module-scoped ``contract_backend``)."""
