"""The ``clover`` command line, without a mesh: where options may go, and what validate reads together."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_clover.cli.main import build_parser, main

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "istio-samples"


@pytest.mark.parametrize(
    "argv",
    [
        ["--state-dir", "/x/mesh", "down"],
        ["down", "--state-dir", "/x/mesh"],
        ["--backend", "local", "down", "--location", "/x/mesh"],
        ["up", "--topology", "t", "--state-dir", "/x/mesh"],
        ["inject", "delay", "http-lb", "--delay", "1s", "--state-dir", "/x/mesh"],
    ],
)
def test_the_mesh_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.location == "/x/mesh" and args.backend == "local"


def test_an_option_after_the_command_wins_and_one_not_given_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOVER_BACKEND", "fake")
    assert build_parser().parse_args(["--state-dir", "/a", "down", "--state-dir", "/b"]).location == "/b"
    args = build_parser().parse_args(["down"])
    assert args.backend == "fake" and args.location is None


def test_validate_reads_files_one_by_one_so_alternatives_of_one_object_are_fine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Istio's own samples: two VirtualServices named reviews, as alternatives in separate files.
    files = [str(SAMPLES / "virtual-service-all-v1.yaml"), str(SAMPLES / "virtual-service-reviews-50-v3.yaml")]
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.strip().endswith("0 error(s), 0 warning(s)")


def test_validate_reads_a_folder_as_one_topology_where_names_must_be_unique(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("virtual-service-all-v1.yaml", "virtual-service-reviews-50-v3.yaml"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "VirtualService/reviews: metadata.name: error: is defined twice" in out and "1 error(s)" in out


def test_an_unknown_backend_is_a_clear_error_naming_the_installed_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "k9s", "status"]) == 1
    err = capsys.readouterr().err
    assert "clover status: no backend named 'k9s' is installed; did you mean k8s? installed: fake, k8s, local" in err
