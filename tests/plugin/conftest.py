"""Plugin tests: pytester sessions on the in-memory FakeBackend and FakeLoadGenerator (no mesh, no locust)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# Imported here, once: pytester's in-process runs drop the modules a run imported, and numpy and
# matplotlib's C extensions cannot be loaded a second time in one process (the report builds them).
import pytest_clover.report.build
import pytest_clover.report.plots  # noqa: F401
from pytest_clover.runtime import RUNTIME_ENV
from pytest_clover.testing import FakeBackend

# pytester is enabled for the whole test run in pyproject.toml (addopts -p pytester).

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"

# The conftest of every pytester project: the fake mesh persists to mesh-state.json (so the outer test can
# look at it afterwards), and its behaviour and the load profile come from files the outer test writes.
PROJECT_CONFTEST = """
import json
import pathlib

import pytest

from pytest_clover.testing import FakeBackend, FakeLoadGenerator

HERE = pathlib.Path(__file__).parent


def _read(name):
    path = HERE / name
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="session")
def clover_backend(clover_settings):
    return FakeBackend(
        clover_settings.topology,
        state_file=HERE / "mesh-state.json",
        seed=clover_settings.seed,
        effects=_read("fake.json").get("effects", True),
    )


@pytest.fixture(scope="session")
def clover_load_generator():
    profile = _read("profile.json")

    def factory(**kwargs):
        return FakeLoadGenerator(profile=profile, **kwargs)

    return factory
"""


class Project:
    """A pytester project wired to the fake backend, plus ways to look at what a run left behind."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        pytester.makeini(f"[pytest]\nclover_topology = {SDC}\nclover_time_scale = 0.5\n")
        pytester.makeconftest(PROJECT_CONFTEST)

    @property
    def state_file(self) -> Path:
        return self.path / "mesh-state.json"

    @property
    def report_dir(self) -> Path:
        return self.path / "reports"

    def run_dirs(self) -> list[Path]:
        """The run folders under reports/ (not ``latest``, the ledgers or the history)."""
        if not self.report_dir.is_dir():
            return []
        return sorted(
            p for p in self.report_dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        )

    @property
    def ledger_dir(self) -> Path:
        return self.report_dir / ".clover"

    def mesh(self) -> FakeBackend:
        """The fake mesh as the last run left it."""
        assert self.state_file.exists(), "the run did not deploy the fake mesh"
        return FakeBackend(state_file=self.state_file)

    def effects(self, on: bool) -> None:
        (self.path / "fake.json").write_text(json.dumps({"effects": on}))

    def profile(self, profile: dict[str, Any]) -> None:
        (self.path / "profile.json").write_text(json.dumps(profile))

    def open_ledger_entries(self) -> list[dict[str, Any]]:
        from pytest_clover.faults import read_ledger

        entries: list[dict[str, Any]] = []
        for file in sorted(self.ledger_dir.glob("*.jsonl*")) if self.ledger_dir.exists() else []:
            entries += read_ledger(file)[1]
        return entries

    def run(self, *args: str) -> pytest.RunResult:
        return run(self.pytester, *args)


# Hypothesis' pytest plugin imports hypothesis at the end of every run (~1.5 s, again for each in-process run).
# pytest-html cannot be imported twice in one process: in-process runs go without it (its own tests run a
# subprocess).
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:locust", "-p", "no:html")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A Ctrl-C inside the inner run is what some tests are about: it must not stop this one.
    return pytester.runpytest(*QUIET, *args, no_reraise_ctrlc=True)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    # A runtime folder per test: the fault ledgers one test's killed run leaves are not swept by another's.
    monkeypatch.setenv(RUNTIME_ENV, str(pytester.path.parent / f"{pytester.path.name}-runtime"))
    return Project(pytester)


def pristine_istio() -> list[dict[str, Any]]:
    """The SDC Istio objects as deployed, before any fault."""
    return FakeBackend(SDC).istio_objects()


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}
