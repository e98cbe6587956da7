"""``clover inject`` on the fake backend (a deployed mesh in a state file): no cluster, no Envoy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_clover.cli.main import main
from pytest_clover.testing import FakeBackend

SDC = Path(__file__).resolve().parents[2] / "fixtures" / "sdc"


@pytest.fixture
def fake(tmp_path: Path) -> FakeBackend:
    backend = FakeBackend(SDC, state_file=tmp_path / "mesh.json")
    backend.deploy()
    return backend


def test_a_fault_on_a_service_the_mesh_does_not_have_is_refused_with_a_suggestion(
    fake: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = ["--backend", "fake", "--location", str(fake.state_file)]
    assert main([*mesh, "inject", "delay", "http-lbb", "--delay", "100ms"]) == 1
    err = capsys.readouterr().err
    assert "clover inject: no service 'http-lbb' in the mesh; did you mean http-lb? services: " in err
    assert fake.reload().history == ["deploy"]  # nothing was applied


def test_a_fault_on_a_known_service_is_merged_into_its_virtual_service(
    fake: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = ["--backend", "fake", "--location", str(fake.state_file)]
    assert main([*mesh, "inject", "abort", "http-lb", "--status", "503"]) == 0
    assert "injected abort 503 on 100% of requests to http-lb (VirtualService/http-lb)" in capsys.readouterr().out
    assert fake.reload().history == ["deploy", "apply VirtualService/http-lb"]
