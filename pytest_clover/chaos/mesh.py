"""Which mesh an experiment acts on, read from its ``configuration``; and CloverError → ActivityFailed.

Configuration keys (all optional)::

    configuration:
      clover_backend: local              # "local" (the default); "k8s" is not supported yet
      clover_state_dir: /tmp/my-mesh     # the local mesh's state dir, as `clover up` prints it
      clover_report_dir: reports/chaos   # where start_load writes the load's files

``clover_state_dir`` defaults to what the ``clover`` command uses: ``$CLOVER_STATE_DIR``, else a per-user
folder in the temp dir. ``clover_backend: fake`` with ``clover_state_file`` reaches a
:class:`pytest_clover.testing.FakeBackend` persisted in that file (for tests). Keys for the cluster backend
(``clover_k8s_context``, ``clover_k8s_namespace``) are reserved.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed, InterruptExecution  # type: ignore[import-untyped,unused-ignore]

from ..backend import Backend
from ..errors import CloverError

__all__ = ["KEYS", "ActivityFailed", "InterruptExecution", "backend_from_configuration", "failures", "mesh_key"]

log = logging.getLogger("chaostoolkit")

KEY_BACKEND = "clover_backend"
KEY_STATE_DIR = "clover_state_dir"
KEY_STATE_FILE = "clover_state_file"
KEY_REPORT_DIR = "clover_report_dir"
KEYS = (KEY_BACKEND, KEY_STATE_DIR, KEY_STATE_FILE, KEY_REPORT_DIR, "clover_k8s_context", "clover_k8s_namespace")
"""Every configuration key the extension reads or reserves."""
BACKENDS = ("local", "k8s", "fake")


def _text(configuration: Mapping[str, Any], key: str) -> str | None:
    value = configuration.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | os.PathLike):
        raise ActivityFailed(f"configuration {key} must be a string, got {type(value).__name__} {value!r}")
    return os.fspath(value)


def check_configuration(configuration: Mapping[str, Any] | None) -> dict[str, Any]:
    """The configuration as a dict; warns about ``clover_*`` keys this extension does not know (typos)."""
    if configuration is None:
        return {}
    if not isinstance(configuration, Mapping):
        raise ActivityFailed(f"configuration must be a mapping, got {type(configuration).__name__}")
    for key in configuration:
        if isinstance(key, str) and key.startswith("clover_") and key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KEYS)}"
            log.warning("configuration key %s is not used by pytest_clover.chaos%s", key, hint)
    return dict(configuration)


def backend_from_configuration(configuration: Mapping[str, Any] | None, *, require_running: bool = True) -> Backend:
    """The running mesh the experiment names (see the module docstring for the keys).

    Raises ActivityFailed when the backend is unknown or not supported yet, or when no mesh runs where the
    configuration points (the message names the state dir and says to run ``clover up``).
    ``require_running=False`` skips that last check (to name a mesh that may be gone, e.g. to stop its load).
    """
    config = check_configuration(configuration)
    kind = (_text(config, KEY_BACKEND) or "local").lower()
    if kind == "local":
        from ..local.backend import LocalBackend
        from ..local.state import STATE_ENV, default_state_dir

        given = _text(config, KEY_STATE_DIR)
        state_dir = Path(given).expanduser() if given else default_state_dir()
        backend = LocalBackend(state_dir=state_dir)
        if require_running and not backend.state.running():
            source = f"configuration {KEY_STATE_DIR}" if given else f"the default (${STATE_ENV} or the per-user one)"
            raise ActivityFailed(
                f"no clover mesh is running at {backend.state.root} ({source}): start one with "
                f"`clover up --state-dir {backend.state.root}`, or point {KEY_STATE_DIR} at the state dir "
                "`clover up` printed"
            )
        return backend
    if kind == "k8s":
        raise ActivityFailed(
            f"{KEY_BACKEND}: k8s is not supported by pytest_clover.chaos yet; use the local mesh "
            f"({KEY_BACKEND}: local, started with `clover up`)"
        )
    if kind == "fake":
        from ..testing import FakeBackend

        state_file = _text(config, KEY_STATE_FILE)
        if state_file is None:
            raise ActivityFailed(f"{KEY_BACKEND}: fake needs {KEY_STATE_FILE}, the FakeBackend's state file")
        if not require_running:
            return FakeBackend(state_file=state_file)
        fake = FakeBackend.connect({"state_file": state_file})
        if fake is None:
            raise ActivityFailed(f"no fake mesh is deployed in {state_file}")
        return fake
    raise ActivityFailed(f"{KEY_BACKEND}: unknown backend {kind!r}; use one of {', '.join(BACKENDS)}")


def mesh_key(backend: Backend) -> str:
    """A stable name for the mesh (its backend and state dir), to key per-mesh state in this process."""
    from ..faults import mesh_record

    return json.dumps(mesh_record(backend), sort_keys=True)


def mesh_text(backend: Backend) -> str:
    state = getattr(backend, "state", None)
    root = getattr(state, "root", None) or getattr(backend, "state_file", None)
    return f"the {backend.name} mesh" + (f" at {root}" if root else "")


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Turn pytest-clover's errors into ActivityFailed (``raise … from``), prefixed with ``what`` failed."""
    try:
        yield
    except CloverError as exc:
        raise ActivityFailed(f"{what}: {exc}") from exc
