"""Which mesh an experiment acts on, read from its ``configuration``; and CloverError → ActivityFailed.

Configuration keys (all optional)::

    configuration:
      clover_backend: local              # a registered backend's name (default: local)
      clover_location: /tmp/my-mesh      # where that backend keeps the mesh, as `clover status` shows it
      clover_report_dir: reports/chaos   # where start_load writes the load's files

``clover_state_dir`` is the local backend's name for ``clover_location`` (the state folder ``clover up``
prints). Without a location, the backend's default mesh is used: for the local backend ``$CLOVER_STATE_DIR``,
else a per-user folder in the temp dir — the same one the ``clover`` command uses.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from chaoslib.exceptions import ActivityFailed, InterruptExecution  # type: ignore[import-untyped,unused-ignore]

from ..backends.protocol import Backend, MeshRecord
from ..backends.registry import backend_class
from ..errors import CloverError

__all__ = [
    "KEYS",
    "ActivityFailed",
    "InterruptExecution",
    "backend_from_configuration",
    "failures",
    "mesh_key",
    "record_from_configuration",
]

log = logging.getLogger("chaostoolkit")

DEFAULT_BACKEND = "local"
KEY_BACKEND = "clover_backend"
KEY_LOCATION = "clover_location"
KEY_STATE_DIR = "clover_state_dir"
KEY_REPORT_DIR = "clover_report_dir"
KEY_DRY_RUN = "clover_dry_run"
KEYS = (KEY_BACKEND, KEY_LOCATION, KEY_STATE_DIR, KEY_REPORT_DIR, KEY_DRY_RUN)
"""Every configuration key the extension reads."""


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


def _record_and_source(configuration: Mapping[str, Any] | None) -> tuple[MeshRecord, str]:
    config = check_configuration(configuration)
    name = (_text(config, KEY_BACKEND) or DEFAULT_BACKEND).lower()
    try:
        cls = backend_class(name)
    except CloverError as exc:
        raise ActivityFailed(f"{KEY_BACKEND}: {exc}") from exc
    for key in (KEY_LOCATION, KEY_STATE_DIR):
        location = _text(config, key)
        if location is not None:
            return MeshRecord(name, location), f"configuration {key}"
    try:
        return MeshRecord(name, cls.default_location()), f"the {name} backend's default"
    except CloverError as exc:
        raise ActivityFailed(f"{KEY_BACKEND}: {name}: {exc}; set {KEY_LOCATION}") from exc


def record_from_configuration(configuration: Mapping[str, Any] | None) -> MeshRecord:
    """The mesh the configuration names (not connected: it may be gone)."""
    return _record_and_source(configuration)[0]


def backend_from_configuration(configuration: Mapping[str, Any] | None) -> Backend:
    """The running mesh the experiment names (see the module docstring for the keys).

    Raises ActivityFailed when the backend is not installed, or when no mesh runs where the configuration points
    (the message names the place, where that came from, and how to start a mesh there).
    """
    record, source = _record_and_source(configuration)
    try:
        backend = backend_class(record.backend).connect(record)
    except CloverError as exc:
        raise ActivityFailed(f"cannot reach {record}: {exc}") from exc
    if backend is None:
        raise ActivityFailed(
            f"no clover mesh is running at {record.location} ({source}): start one with "
            f"`clover --backend {record.backend} up --location {record.location}`, or point {KEY_LOCATION} "
            f"(for the local backend: {KEY_STATE_DIR}) at the mesh `clover up` printed"
        )
    return backend


def mesh_key(mesh: Backend | MeshRecord) -> str:
    """A stable name for a mesh (its backend and location), to key per-mesh state in this process."""
    record = mesh if isinstance(mesh, MeshRecord) else mesh.record()
    return json.dumps(record.as_dict(), sort_keys=True)


def mesh_text(mesh: Backend | MeshRecord) -> str:
    return str(mesh if isinstance(mesh, MeshRecord) else mesh.record())


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Turn pytest-clover's errors into ActivityFailed (``raise … from``), prefixed with ``what`` failed."""
    try:
        yield
    except CloverError as exc:
        raise ActivityFailed(f"{what}: {exc}") from exc
