"""The load runs of this process, one per mesh, shared by the actions, the probes and the control.

Chaos Toolkit calls activities as plain functions in one process, so a load started by one activity (or by
the :mod:`pytest_clover.chaos.control` control) is found by the next through this registry, keyed by the mesh.
The load generator itself runs in a child process (:class:`pytest_clover.load.run.LoadGenerator`); locust is
never imported here. An ``atexit`` hook stops every load still running, and warns about faults still in force
on the meshes this process touched: a fault is never reverted behind the experiment's back, so put
``clear_faults`` in the rollbacks (and run with ``--rollback-strategy always``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.protocol import Backend, MeshRecord
from ..errors import CloverError
from ..load.run import LoadGenerator, LoadRun
from ..timeline import Timeline
from .mesh import KEY_REPORT_DIR, ActivityFailed, mesh_key, mesh_text

log = logging.getLogger("chaostoolkit")

START_HINT = "start load first (start_load action or the pytest_clover.chaos.control control)"
SUMMARY_KEYS = ("requests", "errors", "error_rate", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become None, recursively (Chaos Toolkit journals must stay valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def clean_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`clean` for a mapping, typed as one."""
    return {str(k): clean(v) for k, v in value.items()}


def stats(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The load numbers an activity returns, rounded for reading (ms to 0.1, rates to 4 decimals)."""
    out: dict[str, Any] = {}
    for key in (*SUMMARY_KEYS, "windows", "seconds"):
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, 4 if key == "error_rate" else 1 if key != "seconds" else 2)
        out[key] = value
    return clean_dict(out)


@dataclass
class LoadSession:
    """One running load on one mesh."""

    key: str
    mesh: str
    run: LoadRun
    report_dir: Path
    started: float
    request: dict[str, Any]
    """What was asked: rate or users, path, duration."""
    timeline: Timeline
    owner: str
    """``action`` (start_load) or ``control``."""
    stages: list[dict[str, Any]] = field(default_factory=list)
    """Experiment stages the control saw: ``{"name", "start", "end"}`` (unix seconds)."""
    summary: dict[str, Any] | None = None
    """Set once the load stopped (by stop_load, the duration timer or atexit)."""
    error: str | None = None
    """Why the load stopped badly, if it did."""
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.summary is None and self.run.alive

    def stage(self, name: str, *, end: bool) -> None:
        """Start or end an experiment stage; each stage is a load phase, so reports show it like any phase."""
        now = time.time()
        with self.lock:
            if not end:
                self.stages.append({"name": name, "start": now, "end": None})
            else:
                for stage in reversed(self.stages):
                    if stage["name"] == name and stage["end"] is None:
                        stage["end"] = now
                        break
            if self.summary is None and self.run.alive:
                with contextlib.suppress(CloverError, ValueError):
                    if end:
                        self.run.end_phase()
                    else:
                        self.run.begin_phase(name)

    def stop(self) -> dict[str, Any]:
        """Stop the generator (idempotent) and return the summary; raises ActivityFailed if it failed."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            if self.summary is None:
                stopped_error: CloverError | None = None
                try:
                    result = self.run.stop()
                except CloverError as exc:  # LoadGeneratorError, with the partial result attached
                    stopped_error = exc
                    result = self.run.result
                self.summary = self._summarise(result, time.time())
                if stopped_error is not None:
                    self.error = str(stopped_error)
                    self.summary["error"] = self.error
                with contextlib.suppress(OSError, ValueError):
                    path = self.report_dir / "result.json"
                    path.write_text(json.dumps(clean(result.to_dict()), indent=1), encoding="utf-8")
                    self.summary["files"] = {"result": str(path), "folder": str(self.report_dir)}
        if self.error is not None:
            raise ActivityFailed(f"the load on {self.mesh} failed: {self.error}")
        return self.summary

    def _summarise(self, result: Any, stopped: float) -> dict[str, Any]:
        rows = result.window_rows()
        overall = dict(result.recent(max(1.0, stopped - self.started + 60.0)))
        if overall["windows"] < len(rows):
            # The ring holds the most recent windows only: counts from every window, percentiles from those.
            requests = sum(int(r["requests"]) for r in rows)
            errors = sum(int(r["errors"]) for r in rows)
            seconds = sum(float(r["end"]) - float(r["start"]) for r in rows)
            overall["percentiles_over_seconds"] = round(overall["seconds"], 1)
            overall.update(
                requests=requests,
                errors=errors,
                error_rate=errors / requests if requests else math.nan,
                throughput_rps=requests / seconds if seconds > 0 else math.nan,
                windows=len(rows),
                seconds=seconds,
            )
        covered = overall.pop("percentiles_over_seconds", None)
        summary: dict[str, Any] = {
            "mesh": self.mesh,
            **self.request,
            "started": self.started,
            "stopped": stopped,
            "duration_s": round(stopped - self.started, 2),
            "overall": stats(overall),
        }
        if covered is not None:
            summary["overall"]["percentiles_over_seconds"] = covered
        stages = {}
        for stage in self.stages:
            end = stage["end"] if stage["end"] is not None else stopped
            name = stage["name"]
            while name in stages:
                name += "'"
            stages[name] = {**stats(result.between(stage["start"], end)), "start": stage["start"], "end": end}
        if stages:
            summary["stages"] = stages
        phases = result.to_dict()["phases"] if result.phases else {}
        if phases:
            summary["phases"] = phases
        if result.generator:
            summary["generator"] = dict(result.generator)
        return clean_dict(summary)


_sessions: dict[str, LoadSession] = {}
_touched: dict[str, MeshRecord] = {}
"""Mesh key → how to reach that mesh again."""
_lock = threading.Lock()


def touched(backend: Backend) -> None:
    """Remember a mesh this process changed, to warn at exit about faults left in force on it."""
    with _lock:
        _touched.setdefault(mesh_key(backend), backend.record())


def _report_dir(configuration: Mapping[str, Any]) -> Path:
    given = configuration.get(KEY_REPORT_DIR)
    if given:
        base = Path(str(given)).expanduser()
        if not (base / "load-worker.log").exists():
            return base
        n = 2
        while (base / f"load-{n}" / "load-worker.log").exists():
            n += 1
        return base / f"load-{n}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("reports") / f"chaos-{stamp}"
    n = 2
    while base.exists():
        base = Path("reports") / f"chaos-{stamp}-{n}"
        n += 1
    return base


def start(
    backend: Backend,
    configuration: Mapping[str, Any],
    *,
    rate: float | None,
    users: int | None,
    path: str,
    duration: float | None,
    seed: int,
    timeout_s: float,
    headers: Mapping[str, str] | None,
    owner: str,
) -> LoadSession:
    key = mesh_key(backend)
    with _lock:
        current = _sessions.get(key)
        if current is not None and current.running:
            raise ActivityFailed(
                f"a load is already running on {current.mesh} (pid {current.run.pid}, started by the {current.owner}); "
                "stop it first (stop_load)"
            )
        report_dir = _report_dir(configuration)
        timeline = Timeline()
        generator = LoadGenerator(backend.ingress_url(), report_dir=report_dir, seed=seed, timeline=timeline)
        try:
            run = generator.start(rate=rate, users=users, path=path, headers=headers, timeout_s=timeout_s)
        except ValueError as exc:
            raise ActivityFailed(f"cannot start the load: {exc}") from exc
        request: dict[str, Any] = {
            "mode": run.mode,
            "rate": rate,
            "users": users,
            "path": path,
            "duration": duration,
            "report_dir": str(report_dir),
            "pid": run.pid,
        }
        session = LoadSession(key, mesh_text(backend), run, report_dir, time.time(), request, timeline, owner)
        _sessions[key] = session
    if duration is not None:
        session.timer = threading.Timer(duration, _stop_quietly, args=(session,))
        session.timer.daemon = True
        session.timer.start()
    return session


def _stop_quietly(session: LoadSession) -> None:
    try:
        session.stop()
    except ActivityFailed as exc:
        log.warning("%s", exc)


def find(backend: Backend) -> LoadSession | None:
    return find_key(mesh_key(backend))


def find_key(key: str) -> LoadSession | None:
    with _lock:
        return _sessions.get(key)


def current(backend: Backend) -> LoadSession:
    """The load running on this mesh; ActivityFailed when there is none (or it stopped or died)."""
    session = find(backend)
    if session is None:
        raise ActivityFailed(f"no load is running on {mesh_text(backend)}: {START_HINT}")
    if session.summary is not None:
        why = f" ({session.error})" if session.error else ""
        raise ActivityFailed(f"the load on {session.mesh} has stopped{why}: {START_HINT}")
    if not session.run.alive:
        try:
            session.stop()
        except ActivityFailed as exc:
            raise ActivityFailed(f"the load generator died: {exc}") from exc
        raise ActivityFailed(f"the load generator on {session.mesh} exited: {START_HINT}")
    return session


def stop(mesh: Backend | MeshRecord) -> dict[str, Any]:
    """Stop this mesh's load and return its summary (also when a duration timer already stopped it)."""
    return stop_key(mesh_key(mesh), mesh_text(mesh))


def stop_key(key: str, mesh: str = "this mesh") -> dict[str, Any]:
    with _lock:
        session = _sessions.pop(key, None)
    if session is None:
        raise ActivityFailed(f"no load is running on {mesh}: nothing to stop")
    return session.stop()


def mark(backend: Backend, kind: str, name: str, **data: Any) -> None:
    """Add an event to the running load's timeline, if a load runs on this mesh."""
    session = find(backend)
    if session is not None and session.summary is None:
        session.timeline.add(kind, name, **data)


def stop_all() -> list[str]:
    """Stop every load of this process (atexit); one line per load stopped."""
    with _lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    lines = []
    for session in sessions:
        if session.summary is not None:
            continue
        try:
            session.stop()
            lines.append(f"stopped the load on {session.mesh} (its files: {session.report_dir})")
        except ActivityFailed as exc:
            lines.append(str(exc))
    return lines


def faults_left() -> list[str]:
    """Faults still in force on the meshes this process touched, one line per mesh."""
    from ..backends.registry import connect
    from ..istio.documents import faulted_virtual_services

    with _lock:
        records = list(_touched.values())
    lines = []
    for record in records:
        try:
            backend = connect(record)
            if backend is None:
                continue  # the mesh is gone, and its faults with it
            names = [d["metadata"]["name"] for d in faulted_virtual_services(backend.istio_objects())]
        except CloverError:
            continue
        if names:
            vs = ", ".join(f"VirtualService/{n}" for n in names)
            lines.append(
                f"faults are still in force on {mesh_text(backend)} ({vs}): put pytest_clover.chaos.actions "
                "clear_faults in the experiment's rollbacks (and run with --rollback-strategy always), or run "
                "`clover clear`"
            )
    return lines


@atexit.register
def _at_exit() -> None:
    for line in stop_all():
        log.warning("%s", line)
    for line in faults_left():
        log.warning("%s", line)
