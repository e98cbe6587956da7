"""A Chaos Toolkit control that runs load on the mesh for the whole experiment.

Declared once, at the experiment level; the load starts before the steady-state hypothesis is first checked
and stops after the rollbacks, and its summary (overall and per stage: steady-state-before, method,
steady-state-after, rollbacks) goes into the journal under ``load``::

    controls:
      - name: clover-load
        provider:
          type: python
          module: pytest_clover.chaos.control
          arguments: {rate: 50, path: /}

Arguments: those of :func:`pytest_clover.chaos.actions.start_load` (``rate`` or ``users``, ``path``,
``seed``, ``request_timeout``, ``headers``; not ``duration``). If the load cannot start, the control interrupts
the experiment (its rollbacks still run with ``--rollback-strategy always``). Chaos Toolkit logs a control's
errors at debug level only, so this control logs its own at warning level.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from . import load_sessions
from .mesh import KEY_DRY_RUN, ActivityFailed, InterruptExecution, mesh_key, record_from_configuration

log = logging.getLogger("chaostoolkit")

LOAD_ARGUMENTS = ("rate", "users", "path", "seed", "request_timeout", "headers")
_started: dict[str, str] = {}
"""The loads this control started: a key of the experiment's configuration → the mesh key of the load."""
_lock = threading.Lock()


def validate_control(control: dict[str, Any]) -> None:
    """Refuse, before the run, arguments start_load would refuse."""
    from chaoslib.exceptions import InvalidActivity  # type: ignore[import-untyped,unused-ignore]

    arguments = (control.get("provider") or {}).get("arguments") or {}
    unknown = sorted(set(arguments) - set(LOAD_ARGUMENTS))
    if unknown:
        raise InvalidActivity(
            f"control {control.get('name')!r}: unknown argument {', '.join(unknown)}; "
            f"pytest_clover.chaos.control takes {', '.join(LOAD_ARGUMENTS)}"
        )
    if (arguments.get("rate") is None) == (arguments.get("users") is None):
        raise InvalidActivity(
            f"control {control.get('name')!r}: give exactly one of rate (requests per second) and users"
        )


def before_experiment_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Start the load; interrupt the experiment if it cannot start."""
    from .actions import start_load

    if (configuration or {}).get(KEY_DRY_RUN):
        log.info("pytest_clover.chaos.control: dry run, no load started")
        return
    load = {k: v for k, v in arguments.items() if k in LOAD_ARGUMENTS}
    try:
        started = start_load(configuration=configuration, **load)
    except ActivityFailed as exc:
        log.error("pytest_clover.chaos.control: the load did not start: %s", exc)
        raise InterruptExecution(f"pytest_clover.chaos.control: the load did not start: {exc}") from exc
    key = mesh_key(record_from_configuration(configuration))
    with _lock:
        _started[_key(configuration)] = key
    log.info("load started on %s (%s); files in %s", started["mesh"], _what(started), started["report_dir"])


def after_experiment_control(
    context: Any, state: Any = None, configuration: dict[str, Any] | None = None, **arguments: Any
) -> None:
    """Stop the load (the rollbacks have run) and put its summary into the journal under ``load``."""
    with _lock:
        key = _started.pop(_key(configuration), None)
    if key is None:
        return
    summary = _stop(key)
    if isinstance(state, dict) and summary is not None:
        state["load"] = summary


def before_hypothesis_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    session = _session(configuration)
    if session is None:
        return
    names = [s["name"] for s in session.stages]
    if "method" not in names:
        session.stage("steady-state-before", end=False)
    elif next(s for s in session.stages if s["name"] == "method")["end"] is not None:
        session.stage("steady-state-after", end=False)


def after_hypothesis_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    session = _session(configuration)
    if session is not None:
        for stage in reversed(session.stages):
            if stage["name"].startswith("steady-state") and stage["end"] is None:
                session.stage(stage["name"], end=True)
                break


def before_method_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    _stage(configuration, "method", end=False)


def after_method_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    _stage(configuration, "method", end=True)


def before_rollback_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    _stage(configuration, "rollbacks", end=False)


def after_rollback_control(context: Any, configuration: dict[str, Any] | None = None, **arguments: Any) -> None:
    _stage(configuration, "rollbacks", end=True)


def cleanup_control() -> None:
    """Stop a load the control started that after_experiment_control did not (the run was cut short)."""
    with _lock:
        left = list(_started.values())
        _started.clear()
    for key in left:
        _stop(key)


# --------------------------------------------------------------------------- helpers


def _key(configuration: dict[str, Any] | None) -> str:
    from .mesh import KEY_BACKEND, KEY_LOCATION, KEY_STATE_DIR

    config = configuration or {}
    return repr([config.get(k) for k in (KEY_BACKEND, KEY_LOCATION, KEY_STATE_DIR)])


def _what(started: dict[str, Any]) -> str:
    return f"{started['rate']:g} requests/s" if started.get("rate") is not None else f"{started['users']} users"


def _session(configuration: dict[str, Any] | None) -> load_sessions.LoadSession | None:
    with _lock:
        key = _started.get(_key(configuration))
    session = load_sessions.find_key(key) if key is not None else None
    return session if session is not None and session.summary is None else None


def _stage(configuration: dict[str, Any] | None, name: str, *, end: bool) -> None:
    session = _session(configuration)
    if session is not None:
        session.stage(name, end=end)


def _stop(key: str) -> dict[str, Any] | None:
    try:
        summary = load_sessions.stop_key(key)
    except ActivityFailed as exc:
        log.warning("pytest_clover.chaos.control: %s", exc)
        return None
    overall = summary.get("overall") or {}
    log.info(
        "load stopped: %s requests, error rate %s, p99 %s ms; files in %s",
        overall.get("requests"),
        overall.get("error_rate"),
        overall.get("p99_ms"),
        summary.get("report_dir"),
    )
    return summary
