"""Faults on a running mesh as Istio objects: merge a fault into a service's VirtualService, put objects back.

The documents come from :mod:`pytest_clover.istio.documents`; these functions apply them through a
:class:`~pytest_clover.backends.Backend`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..backends.protocol import Backend
from ..errors import InvalidFault
from ..istio.documents import fault_document, faulted_virtual_services, restored_document

__all__ = ["clear_faults", "inject_fault", "known_services", "require_service", "restore_object"]


def known_services(backend: Backend) -> set[str]:
    """The services of the mesh: its pods' services and the hosts its VirtualServices and DestinationRules name."""
    known = {p.service for p in backend.pods()}
    for obj in backend.istio_objects():
        spec = obj.get("spec") or {}
        if obj.get("kind") == "VirtualService":
            hosts = list(spec.get("hosts") or [])
        elif obj.get("kind") == "DestinationRule":
            hosts = [spec.get("host")]
        else:
            continue
        known.update(str(h).split(".")[0] for h in hosts if h and "*" not in str(h))
    return known


def require_service(backend: Backend, service: str) -> None:
    """InvalidFault at once for a service the mesh does not have: a typo would otherwise wait out a verification
    and end as an inconclusive "was load reaching it?"."""
    known = known_services(backend)
    if service not in known:
        close = difflib.get_close_matches(service, sorted(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise InvalidFault(f"no service {service!r} in the mesh; {hint}services: {', '.join(sorted(known))}")


def restore_object(backend: Backend, kind: str, name: str, doc: Mapping[str, Any] | None) -> None:
    """Put one Istio object back as ``doc`` (None: it did not exist, so delete it)."""
    if doc is None:
        present = any(
            o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name for o in backend.istio_objects()
        )
        if present:
            backend.remove(kind, name)
        return
    import yaml

    backend.apply(yaml.safe_dump(dict(doc), sort_keys=False), source=f"revert {kind}/{name}")


def inject_fault(backend: Backend, service: str, **fault: Any) -> dict[str, Any]:
    """Merge a fault into ``service``'s VirtualService on a running mesh; returns the document applied.

    Keyword arguments are those of :func:`fault_document`. Takes effect before it returns.
    """
    import yaml

    require_service(backend, service)
    doc = fault_document(backend.istio_objects(), service, **fault)
    backend.apply(yaml.safe_dump(doc), source=f"fault on {service}")
    return doc


def clear_faults(backend: Backend) -> list[str]:
    """Put every VirtualService a fault touched back exactly as it was (or delete it if we created it)."""
    import yaml

    removed: list[str] = []
    restored: list[dict[str, Any]] = []
    for doc in faulted_virtual_services(backend.istio_objects()):
        original = restored_document(doc)
        if original is None:
            removed.append(doc["metadata"]["name"])
        else:
            restored.append(original)
    # Objects that exist only for a fault go first, then every other one is put back in a single apply (one
    # push): restoring a canary split while another service's fault is still in force would let that fault
    # act on traffic it never saw during the experiment.
    for name in removed:
        backend.remove("VirtualService", name)
    if restored:
        names = ", ".join(d["metadata"]["name"] for d in restored)
        backend.apply(yaml.safe_dump_all(restored), source=f"clear faults on {names}")
    return removed + [d["metadata"]["name"] for d in restored]
