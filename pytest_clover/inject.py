"""Istio faults as Istio objects: merged into a service's existing VirtualService, reverted exactly.

A fault is never a side channel: it becomes the VirtualService a user would write, so it behaves on the
local mesh exactly as it would on a cluster (on the caller's outbound route). The original spec is kept
in an annotation on the object, which makes clearing a fault stateless and exact: the VirtualService
goes back to what it was, or away if we created it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .backend import Backend
from .errors import BackendError
from .topology import ISTIO_NETWORKING, parse_duration

ORIGINAL_ANNOTATION = "clover.opnfv.org/original-spec"
CREATED_MARK = "created-by-clover"


def _host_matches(host: str, service: str) -> bool:
    return host == service or host.startswith(f"{service}.")


def find_virtual_service(objects: Sequence[Mapping[str, Any]], service: str) -> dict[str, Any] | None:
    """The mesh-bound VirtualService that routes ``service``, as a document, if there is one."""
    for obj in objects:
        if obj.get("kind") != "VirtualService":
            continue
        spec = obj.get("spec") or {}
        gateways = spec.get("gateways") or []
        if gateways and "mesh" not in gateways:
            continue
        if any(_host_matches(str(h), service) for h in spec.get("hosts") or []):
            return copy.deepcopy(dict(obj))
    return None


def _base_document(objects: Sequence[Mapping[str, Any]], service: str) -> dict[str, Any]:
    found = find_virtual_service(objects, service)
    if found is not None:
        annotations = found.setdefault("metadata", {}).setdefault("annotations", {})
        annotations.setdefault(ORIGINAL_ANNOTATION, json.dumps(found.get("spec", {}), sort_keys=True))
        return found
    return {
        "apiVersion": f"{ISTIO_NETWORKING}/v1",
        "kind": "VirtualService",
        "metadata": {"name": service, "annotations": {ORIGINAL_ANNOTATION: CREATED_MARK}},
        "spec": {"hosts": [service], "http": [{"route": [{"destination": {"host": service}}]}]},
    }


def fault_document(
    objects: Sequence[Mapping[str, Any]],
    service: str,
    *,
    delay: str | None = None,
    abort_status: int | None = None,
    percent: float = 100.0,
    headers: Mapping[str, str] | None = None,
    subset: str | None = None,
    source_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The VirtualService for ``service`` with a delay or an abort added, keeping every existing route.

    Delay and abort are independent: adding one keeps the other. ``headers`` scopes the fault to
    requests carrying those exact header values (e.g. ``{"end-user": "jason"}``); ``source_labels`` to
    requests from pods with those labels (e.g. ``{"app": "http-lb", "version": "v2"}``: a bad v2 caller);
    ``subset`` to the routes that send traffic to that subset (a whole weighted route, as in Istio).
    """
    if (delay is None) == (abort_status is None):
        raise BackendError("give either a delay or an abort status")
    if delay is not None and parse_duration(delay) is None:
        raise BackendError(f"{delay!r} is not a duration; write e.g. 200ms or 1.5s")
    if not 0 <= percent <= 100:
        raise BackendError(f"percent must be from 0 to 100, got {percent}")
    doc = _base_document(objects, service)
    http: list[dict[str, Any]] = doc["spec"].setdefault("http", [])
    fault: dict[str, Any]
    if delay is not None:
        key, fault = "delay", {"fixedDelay": delay, "percentage": {"value": float(percent)}}
    else:
        key, fault = "abort", {"httpStatus": int(abort_status or 503), "percentage": {"value": float(percent)}}
    scoped: list[dict[str, Any]] = []
    for route in http:
        if subset is not None and not any(
            (d.get("destination") or {}).get("subset") == subset for d in route.get("route") or []
        ):
            continue
        if headers or source_labels:
            # A copy of the route, limited to the matching requests, placed first: first match wins.
            extra = copy.deepcopy(route)
            extra.pop("name", None)
            conditions = {k.lower(): {"exact": v} for k, v in (headers or {}).items()}
            matches = []
            for m in extra.get("match") or [{}]:
                scoped_match = dict(m)
                if conditions:
                    scoped_match["headers"] = {**(m.get("headers") or {}), **conditions}
                if source_labels:
                    scoped_match["sourceLabels"] = {**(m.get("sourceLabels") or {}), **dict(source_labels)}
                matches.append(scoped_match)
            extra["match"] = matches
            extra.setdefault("fault", {})[key] = fault
            scoped.append(extra)
        else:
            route.setdefault("fault", {})[key] = fault
    if headers or source_labels:
        doc["spec"]["http"] = scoped + http
    elif subset is not None and not any(
        (d.get("destination") or {}).get("subset") == subset for r in http for d in r.get("route") or []
    ):
        raise BackendError(f"no route of the {service} VirtualService sends traffic to subset {subset!r}")
    return doc


def faulted_virtual_services(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        copy.deepcopy(dict(o))
        for o in objects
        if o.get("kind") == "VirtualService"
        and ORIGINAL_ANNOTATION in ((o.get("metadata") or {}).get("annotations") or {})
    ]


def restored_document(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The VirtualService as it was before any fault; None when clover created it (delete it)."""
    original = doc["metadata"]["annotations"][ORIGINAL_ANNOTATION]
    if original == CREATED_MARK:
        return None
    out = copy.deepcopy(dict(doc))
    out["spec"] = json.loads(original)
    annotations = out["metadata"]["annotations"]
    del annotations[ORIGINAL_ANNOTATION]
    if not annotations:
        del out["metadata"]["annotations"]
    return out


def inject_fault(backend: Backend, service: str, **fault: Any) -> dict[str, Any]:
    """Merge a fault into ``service``'s VirtualService on a running mesh; returns the document applied.

    Keyword arguments are those of :func:`fault_document`. Takes effect before it returns.
    """
    import yaml

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
