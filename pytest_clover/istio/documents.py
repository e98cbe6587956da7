"""Faults and traffic shifts as Istio documents: merged into a service's existing VirtualService, reverted exactly.

A fault is never a side channel: it becomes the VirtualService a user would write, so it behaves on every
backend as Istio makes it behave (on the caller's outbound route). The original spec is kept in an annotation
on the object, which makes clearing a fault stateless and exact: the VirtualService goes back to what it was,
or away if we created it. Pure functions on documents: applying them is the fault engine's job
(:mod:`pytest_clover.faults`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidFault, Problem
from .model import ISTIO_NETWORKING, parse_duration

__all__ = [
    "CREATED_MARK",
    "ISTIO_KINDS",
    "ORIGINAL_ANNOTATION",
    "fault_document",
    "faulted_virtual_services",
    "find_virtual_service",
    "host_matches",
    "read_istio_file",
    "restored_document",
    "shift_document",
]

ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway")
"""The Istio kinds a fault may apply (``faults.apply``) and a backend keeps as live objects."""
ORIGINAL_ANNOTATION = "clover.opnfv.org/original-spec"
CREATED_MARK = "created-by-clover"


def host_matches(host: str, service: str) -> bool:
    """Whether an Istio host (``reviews``, ``reviews.ns.svc.cluster.local``) names ``service``."""
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
        if any(host_matches(str(h), service) for h in spec.get("hosts") or []):
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
        raise InvalidFault("give either a delay or an abort status")
    if delay is not None and parse_duration(delay) is None:
        raise InvalidFault(f"{delay!r} is not a duration; write e.g. 200ms or 1.5s")
    if not 0 <= percent <= 100:
        raise InvalidFault(f"percent must be from 0 to 100, got {percent}")
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
        raise InvalidFault(f"no route of the {service} VirtualService sends traffic to subset {subset!r}")
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


def shift_document(objects: Sequence[Mapping[str, Any]], service: str, weights: Mapping[str, int]) -> dict[str, Any]:
    """``service``'s VirtualService with its default routes split across subsets by ``weights``.

    Routes with a ``match`` (header canaries, paths…) and routes to other hosts stay as they are; every
    catch-all route to the service gets the new split (one is appended when there is none). Weights are
    whole percentages summing to 100, as Istio requires.
    """
    if not weights:
        raise InvalidFault("give at least one subset weight, e.g. {'v1': 80, 'v2': 20}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
    if bad:
        raise InvalidFault(f"weights must be whole percentages from 0 to 100, got {bad}")
    if sum(weights.values()) != 100:
        raise InvalidFault(f"weights must add up to 100 (Istio's rule), got {sum(weights.values())}: {dict(weights)}")
    found = find_virtual_service(objects, service)
    if found is None:
        doc: dict[str, Any] = {
            "apiVersion": f"{ISTIO_NETWORKING}/v1",
            "kind": "VirtualService",
            "metadata": {"name": service, "annotations": {ORIGINAL_ANNOTATION: CREATED_MARK}},
            "spec": {"hosts": [service], "http": []},
        }
    else:
        doc = found
        annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
        annotations.setdefault(ORIGINAL_ANNOTATION, json.dumps(doc.get("spec", {}), sort_keys=True))
    http: list[dict[str, Any]] = doc["spec"].setdefault("http", [])
    rewritten = False
    for route in http:
        dests = route.get("route") or []
        if route.get("match") or not dests:
            continue
        if not all(host_matches(str((d.get("destination") or {}).get("host", "")), service) for d in dests):
            continue
        port = (dests[0].get("destination") or {}).get("port")
        route["route"] = _split(service, weights, port)
        rewritten = True
    if not rewritten:
        http.append({"route": _split(service, weights, None)})
    return doc


def _split(service: str, weights: Mapping[str, int], port: Any) -> list[dict[str, Any]]:
    out = []
    for subset, weight in weights.items():
        dest: dict[str, Any] = {"host": service, "subset": subset}
        if port is not None:
            dest["port"] = copy.deepcopy(port)
        out.append({"destination": dest, "weight": weight})
    return out


def read_istio_file(path: Path) -> list[dict[str, Any]]:
    """The named Istio objects of a YAML file, as documents; ConfigError naming the file and the object otherwise."""
    from .parse import parse_text, read_yaml_file

    # The topology's reader: a file not UTF-8, larger than MAX_YAML_BYTES or not YAML is a problem, not a traceback.
    text, problem = read_yaml_file(path)
    if problem is not None:
        raise ConfigError([problem])
    problems: list[Problem] = []
    docs = [d.body for d in parse_text(text or "", str(path), problems)]
    if problems:
        raise ConfigError(problems)
    for i, doc in enumerate(docs):
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in ISTIO_KINDS or not name:
            raise ConfigError.single(
                str(path),
                f"{kind or 'document'}/{name or i}",
                "kind",
                f"only named Istio objects ({', '.join(ISTIO_KINDS)}) can be applied as a fault",
            )
    if not docs:
        raise ConfigError.single(str(path), "file", "", "holds no Istio objects")
    return docs
