"""Envoy's view of the mesh, read through a backend's admin access: what the data plane holds, not what was asked.

Every reader takes a :class:`~pytest_clover.backends.Backend` and goes through its
:meth:`~pytest_clover.backends.Backend.envoy_admin`, so the same check works on local processes and on a
cluster. Istio applies a VirtualService's routes and faults in the *caller's* sidecar, so the views of a
service are read in a sidecar that calls it (:func:`caller`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..backends.protocol import Backend, PodInfo
from ..errors import BackendError
from .stats import fault_count, parse_stats_json

__all__ = [
    "FAULT_FILTER",
    "admin_json",
    "caller",
    "caller_routes",
    "counter_by_pod",
    "endpoint_count",
    "fault_counts_by_pod",
    "fault_matches",
    "fraction_percent",
    "host_is",
    "pod_stats",
    "route_faults",
    "route_weights",
    "service_stats",
]

FAULT_FILTER = "envoy.filters.http.fault"
"""The HTTP filter Istio's faults become; a faulted route carries its settings in ``typed_per_filter_config``."""
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def admin_json(backend: Backend, pod: str, path: str) -> Any:
    """One admin endpoint of a pod's Envoy, parsed as JSON."""
    body = backend.envoy_admin(pod, path)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BackendError(f"the Envoy admin API of {pod} answered {path} with something not JSON: {exc}") from exc


def pod_stats(backend: Backend, pod: str) -> dict[str, Any]:
    """One pod's Envoy stats: counters and gauges as ints, text readouts as strings."""
    text = backend.envoy_admin(pod, "/stats?format=json")
    try:
        return parse_stats_json(text)
    except (ValueError, AttributeError) as exc:
        raise BackendError(f"the Envoy stats of {pod} are not the JSON /stats?format=json gives: {exc}") from exc


def service_stats(backend: Backend, service: str) -> dict[str, int]:
    """Counters and gauges summed over the pods of ``service`` that answer."""
    pods = [p for p in backend.pods(service) if p.phase != "Terminating"]
    if not pods:
        raise BackendError(f"no pods of service {service!r}")
    total: dict[str, int] = {}
    for pod in pods:
        for name, value in pod_stats(backend, pod.name).items():
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value
    return total


def counter_by_pod(backend: Backend, count: Callable[[Mapping[str, Any]], int]) -> dict[str, int]:
    """``count(stats)`` for every pod that answers (pods that just died are skipped)."""
    out: dict[str, int] = {}
    for pod in backend.pods():
        if pod.phase == "Terminating":
            continue
        with contextlib.suppress(BackendError):
            out[pod.name] = count(pod_stats(backend, pod.name))
    return out


def fault_counts_by_pod(backend: Backend, kind: str) -> dict[str, int]:
    """How many requests fault ``kind`` (``delay``/``abort``) acted on, per pod, so far."""
    return counter_by_pod(backend, lambda stats: fault_count(stats, kind))


def host_is(host: str, service: str) -> bool:
    """Whether a host (``http-lb``, ``http-lb.default.svc.cluster.local``) names ``service``."""
    return host == service or host.startswith(f"{service}.")


def caller(backend: Backend, service: str) -> PodInfo:
    """A sidecar that calls ``service``: a serving pod of another service (every sidecar routes to all)."""
    sidecars = sorted((p for p in backend.pods() if p.serving and p.deployment is not None), key=lambda p: p.name)
    for pod in sidecars:
        if pod.service != service:
            return pod
    if sidecars:
        return sidecars[0]
    raise BackendError("no running sidecar to read Envoy's view of the mesh from")


def endpoint_count(backend: Backend, service: str) -> tuple[int | None, str]:
    """Hosts of ``outbound|<port>||<service fqdn>`` in a caller's Envoy (``/clusters?format=json``), and
    that caller's name; None when the caller has no such cluster."""
    pod = caller(backend, service)
    data = admin_json(backend, pod.name, "/clusters?format=json")
    for cluster in data.get("cluster_statuses", []):
        parts = str(cluster.get("name", "")).split("|")
        if len(parts) == 4 and parts[0] == "outbound" and parts[2] == "" and host_is(parts[3], service):
            return len(cluster.get("host_statuses", [])), pod.name
    return None, pod.name


def caller_routes(backend: Backend, service: str) -> tuple[list[dict[str, Any]], str]:
    """The Envoy routes a caller of ``service`` holds for it (``/config_dump``), and that caller's name."""
    pod = caller(backend, service)
    dump = admin_json(backend, pod.name, "/config_dump")
    routes: list[dict[str, Any]] = []
    for config in dump.get("configs", []):
        for dynamic in config.get("dynamic_route_configs", []):
            for vhost in (dynamic.get("route_config") or {}).get("virtual_hosts", []):
                if host_is(str(vhost.get("name", "")).split(":")[0], service):
                    routes.extend(vhost.get("routes", []))
    return routes, pod.name


def _subset_of(cluster: str) -> str:
    parts = cluster.split("|")
    return parts[2] if len(parts) == 4 else cluster


def route_weights(backend: Backend, service: str) -> tuple[list[dict[str, int]], str]:
    """Every route's subset → weight split for ``service`` in a caller's Envoy, and that caller's name."""
    routes, pod = caller_routes(backend, service)
    found: list[dict[str, int]] = []
    for route in routes:
        action = route.get("route") or {}
        if "weighted_clusters" in action:
            split = {
                _subset_of(str(c["name"])): int(c.get("weight", 0))
                for c in action["weighted_clusters"].get("clusters", [])
            }
        elif "cluster" in action:
            split = {_subset_of(str(action["cluster"])): 100}
        else:
            continue
        found.append(split)
    return found, pod


def route_faults(backend: Backend, service: str) -> tuple[list[dict[str, Any]], str]:
    """The fault filter settings on each route a caller's Envoy holds for ``service``, and that caller's name."""
    routes, pod = caller_routes(backend, service)
    found = [fault for route in routes if (fault := (route.get("typed_per_filter_config") or {}).get(FAULT_FILTER))]
    return found, pod


def fraction_percent(fraction: Any) -> float:
    """An Envoy ``FractionalPercent`` (numerator over HUNDRED, TEN_THOUSAND or MILLION) in percent."""
    fraction = fraction or {}
    denominator = _DENOMINATORS.get(str(fraction.get("denominator", "HUNDRED")), 100)
    return float(fraction.get("numerator", 0)) * 100.0 / denominator


def _duration_ms(value: Any) -> float | None:
    from ..istio.model import parse_duration

    return parse_duration(value)


def fault_matches(
    fault: Mapping[str, Any], kind: str, *, delay: str | None = None, status: int | None = None, percent: float
) -> bool:
    """Whether one route's fault filter settings hold this delay (or abort status) at this percentage."""
    if kind == "delay":
        got = fault.get("delay") or {}
        want_ms = _duration_ms(delay)
        got_ms = _duration_ms(got.get("fixed_delay"))
        same_value = want_ms is not None and got_ms is not None and abs(want_ms - got_ms) < 0.5
    else:
        got = fault.get("abort") or {}
        same_value = got.get("http_status") == status
    # Istio truncates to a MILLIONth (0.57 % → 5699 per million): compare to a hundredth of a percent.
    return bool(got) and same_value and abs(fraction_percent(got.get("percentage")) - percent) < 0.01
