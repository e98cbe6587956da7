"""Is an Istio change in force? Asked of the sidecar that applies it: a caller of the service.

Istio turns a VirtualService's ``fault`` into the ``envoy.filters.http.fault`` settings of the routes in the
*caller's* sidecar. On a cluster istiod pushes them some time after the API accepted the object (it debounces
for 100 ms to 10 s), so the backend compares what the caller holds — its ``config_dump`` — with what was written,
until they agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...backends.protocol import PodInfo
from ...envoy.views import FAULT_FILTER, caller, fraction_percent
from ...errors import BackendError

if TYPE_CHECKING:
    from .backend import KubernetesBackend

__all__ = ["expected_faults", "normalized_envoy_fault", "observed_faults", "pick_caller", "source_labels"]


def _ms(value: Any) -> float | None:
    from ...istio.model import parse_duration

    return parse_duration(value)


def _fault(kind: str, value: Any, percent: float) -> dict[str, Any]:
    # Rounded as Istio rounds: percentages to a millionth, durations to the millisecond.
    return {"kind": kind, "value": value, "percent": round(percent, 2)}


def _applies(route: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether Istio puts this http route into the sidecar of a pod with ``labels`` (its ``sourceLabels``)."""
    matches = route.get("match") or []
    return not matches or any(
        all(labels.get(k) == v for k, v in ((m or {}).get("sourceLabels") or {}).items()) for m in matches
    )


def source_labels(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ``sourceLabels`` of the faulted routes: a caller that shows the faults must carry one of them."""
    out = []
    for route in spec.get("http") or []:
        if route.get("fault"):
            for match in route.get("match") or []:
                if (match or {}).get("sourceLabels"):
                    out.append(dict(match["sourceLabels"]))
    return out


def expected_faults(
    spec: Mapping[str, Any], host: str, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The faults a VirtualService's spec puts on the routes of ``host`` in the sidecar of a pod with ``labels``
    (one per http route that has one and applies to that pod)."""
    found = []
    for route in spec.get("http") or []:
        if labels is not None and not _applies(route, labels):
            continue
        fault = route.get("fault") or {}
        if "delay" in fault:
            delay = fault["delay"] or {}
            percent = (delay.get("percentage") or {}).get("value", delay.get("percent", 100))
            ms = _ms(delay.get("fixedDelay"))
            found.append(_fault("delay", round(ms) if ms is not None else None, float(percent)))
        if "abort" in fault:
            abort = fault["abort"] or {}
            percent = (abort.get("percentage") or {}).get("value", abort.get("percent", 100))
            found.append(_fault("abort", abort.get("httpStatus"), float(percent)))
    return found


def normalized_envoy_fault(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One route's fault filter settings, in the shape of :func:`expected_faults`."""
    out = []
    if "delay" in config:
        delay = config["delay"] or {}
        ms = _ms(delay.get("fixed_delay"))
        out.append(_fault("delay", round(ms) if ms is not None else None, fraction_percent(delay.get("percentage"))))
    if "abort" in config:
        abort = config["abort"] or {}
        out.append(_fault("abort", abort.get("http_status"), fraction_percent(abort.get("percentage"))))
    return out


def pick_caller(backend: KubernetesBackend, service: str, wanted: list[dict[str, str]]) -> PodInfo:
    """A serving sidecar that calls ``service``, carrying one of the ``wanted`` label sets if any is given (a fault
    scoped by ``sourceLabels`` exists only in those callers)."""
    if wanted:
        for pod in sorted(backend.pods(), key=lambda p: p.name):
            if pod.serving and pod.deployment is not None and pod.service != service:
                if any(all(pod.labels.get(k) == v for k, v in labels.items()) for labels in wanted):
                    return pod
    return caller(backend, service)


def observed_faults(
    backend: KubernetesBackend, service: str, pod: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """The faults a caller's sidecar (``pod``, else one :func:`caller` picks) holds on its routes to ``service`` of
    the backend's namespace, and its name."""
    pod = pod or caller(backend, service).name
    body = backend.envoy_admin(pod, "/config_dump?resource=dynamic_route_configs")
    try:
        dump = json.loads(body)
    except ValueError as exc:
        raise BackendError(f"the config_dump of {pod} is not JSON: {exc}") from exc
    fqdn = f"{service}.{backend.namespace}.svc.cluster.local"
    by_vhost: list[list[dict[str, Any]]] = []
    for config in dump.get("configs", []):
        # With ?resource= each entry is one route configuration; without, a list of them.
        entries = config.get("dynamic_route_configs") or [config]
        for dynamic in entries:
            for vhost in (dynamic.get("route_config") or {}).get("virtual_hosts", []):
                if str(vhost.get("name", "")).rsplit(":", 1)[0] != fqdn:
                    continue
                found: list[dict[str, Any]] = []
                for route in vhost.get("routes", []):
                    fault = (route.get("typed_per_filter_config") or {}).get(FAULT_FILTER)
                    if fault:
                        found.extend(normalized_envoy_fault(fault))
                by_vhost.append(found)
    if not by_vhost:
        raise BackendError(f"the sidecar of {pod} has no route to {fqdn} yet")
    # One virtual host per port of the Service, each with the VirtualService's routes: they must all agree.
    first = by_vhost[0]
    if any(sorted(map(repr, other)) != sorted(map(repr, first)) for other in by_vhost[1:]):
        return [*first, {"kind": "ports disagree"}], pod
    return first, pod
