"""A load run whose mesh logged no access-log entry says so, instead of leaving an empty per-hop breakdown."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_clover.backends.protocol import PodInfo
from pytest_clover.plugin.fixtures import Load
from pytest_clover.report.hops import AccessLogCursor


class SilentMesh:
    """A mesh whose sidecars log nothing: a cluster where access logging is off."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def pods(self, service: str | None = None) -> list[PodInfo]:
        return [PodInfo("gw", "istio-ingressgateway", None, "", True, "Running", "127.0.0.2", 0)]

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        return list(self.entries)


def _result(folder: Path, requests: int) -> Any:
    return SimpleNamespace(report_dir=folder, phases=lambda: {"steady": SimpleNamespace(requests=requests)})


def _load(tmp_path: Path) -> Load:
    return Load(lambda **_: None, base_url=lambda: "http://127.0.0.2", report_dir=tmp_path, seed=1,
                time_scale=1.0, timeline=None)  # fmt: skip


def test_requests_without_any_access_log_entry_are_reported(tmp_path: Path) -> None:
    load = _load(tmp_path)
    cursor = AccessLogCursor(SilentMesh([]))
    load._remember(_result(tmp_path / "run", 40), cursor)
    assert any("per-hop breakdown empty" in p and "40 requests" in p for p in load.problems), load.problems


def test_no_requests_no_complaint(tmp_path: Path) -> None:
    load = _load(tmp_path)
    load._remember(_result(tmp_path / "run", 0), AccessLogCursor(SilentMesh([])))
    assert not [p for p in load.problems if "empty" in p]
