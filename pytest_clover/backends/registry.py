"""Backends by name: the ``pytest_clover.backends`` entry-point group.

A backend is a class registered by its distribution's metadata, e.g. in ``setup.py``::

    entry_points={"pytest_clover.backends": ["local = pytest_clover.backends.local.client:LocalBackend"]}

or in a ``pyproject.toml``::

    [project.entry-points."pytest_clover.backends"]
    k8s = "my_package.backend:KubernetesBackend"

A third-party backend plugs in by installing a distribution with such an entry point: nothing in
pytest-clover names it. The class satisfies :class:`~pytest_clover.backends.protocol.BackendClass`.
Loading a backend imports only its own module (the Kubernetes client, say, is imported when that backend is
asked for, not before).
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import cast

from ..errors import BackendError, BackendNotFound
from .protocol import Backend, BackendClass, MeshRecord

__all__ = ["GROUP", "backend_class", "connect", "names"]

GROUP = "pytest_clover.backends"
"""The entry-point group backends register under."""


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUP):
        # The same name from two distributions (an editable install beside a wheel): the first wins, as
        # importlib.metadata orders them by sys.path.
        found.setdefault(ep.name, ep)
    return found


def names() -> list[str]:
    """Every registered backend's name, sorted."""
    return sorted(_entry_points())


def backend_class(name: str) -> BackendClass:
    """The class registered as ``name``; BackendNotFound names the ones that are, and what to install."""
    eps = _entry_points()
    ep = eps.get(name)
    if ep is None:
        known = sorted(eps)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise BackendNotFound(
            f"no backend named {name!r} is installed; {hint}installed: {', '.join(known) or 'none'} "
            f"(a backend registers itself in the {GROUP!r} entry-point group of its distribution)"
        )
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken third-party package must not look like a bug of ours
        raise BackendError(f"the backend {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from exc
    for attribute in ("from_options", "connect", "default_location"):
        if not callable(getattr(loaded, attribute, None)):
            raise BackendError(
                f"the backend {name!r} ({ep.value}) has no {attribute}(); see pytest_clover.backends.BackendClass"
            )
    return cast(BackendClass, loaded)


def connect(record: MeshRecord) -> Backend | None:
    """The running mesh a record names, or None when it is gone; BackendNotFound when its backend is not
    installed here."""
    if not record.backend:
        raise BackendNotFound("the mesh record names no backend; it was not written by pytest-clover")
    return backend_class(record.backend).connect(record)
