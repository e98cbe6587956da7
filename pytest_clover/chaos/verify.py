"""Checks the actions make before they return, where pytest_clover.faults has none: Envoy's route config.

A delay or an abort injected while no load runs cannot move Envoy's fault counters (the check
:class:`pytest_clover.faults.HttpFault` makes), so it is verified in a caller's Envoy instead: the route
configuration it holds for the service (``/config_dump``) carries the fault filter's settings, with the delay
or the status and the percentage asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..backend import Backend
from ..errors import BackendError
from ..faults import POLL_SECONDS, FaultInconclusive, caller_routes
from ..topology import parse_duration
from ..translate import FAULT_FILTER

_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def envoy_route_faults(backend: Backend, service: str) -> tuple[list[dict[str, Any]], str]:
    """The fault filter settings on each route a caller's Envoy holds for ``service`` (``/config_dump``)."""
    routes, caller = caller_routes(backend, service)
    found = [fault for route in routes if (fault := (route.get("typed_per_filter_config") or {}).get(FAULT_FILTER))]
    return found, caller


def _percent(fraction: Any) -> float:
    fraction = fraction or {}
    denominator = _DENOMINATORS.get(str(fraction.get("denominator", "HUNDRED")), 100)
    return float(fraction.get("numerator", 0)) * 100.0 / denominator


def fault_matches(
    fault: dict[str, Any], kind: str, *, delay: str | None = None, status: int | None = None, percent: float
) -> bool:
    """True if one route's fault filter settings hold this delay (or abort status) at this percentage."""
    if kind == "delay":
        got = fault.get("delay") or {}
        want_ms = parse_duration(delay)
        got_ms = parse_duration(got.get("fixed_delay"))
        same_value = want_ms is not None and got_ms is not None and abs(want_ms - got_ms) < 0.5
    else:
        got = fault.get("abort") or {}
        same_value = got.get("http_status") == status
    # Istio truncates to a MILLIONth (0.57 % → 5699 per million): compare to a hundredth of a percent.
    return bool(got) and same_value and abs(_percent(got.get("percentage")) - percent) < 0.01


def check_envoy_fault(
    backend: Backend, service: str, kind: str, *, delay: str | None = None, status: int | None = None, percent: float
) -> tuple[bool, str]:
    faults, caller = envoy_route_faults(backend, service)
    what = f"delay {delay}" if kind == "delay" else f"abort {status}"
    if any(fault_matches(f, kind, delay=delay, status=status, percent=percent) for f in faults):
        return True, f"{caller}'s Envoy routes to {service} carry the fault filter's {what} at {percent:g}%"
    seen = f"{len(faults)} routes with other fault settings" if faults else "no route with a fault"
    return False, f"{caller}'s Envoy has {seen} for {service}, not {what} at {percent:g}%"


def check_envoy_clean(backend: Backend, service: str) -> tuple[bool, str]:
    faults, caller = envoy_route_faults(backend, service)
    if faults:
        return False, f"{caller}'s Envoy still has {len(faults)} routes with a fault for {service}"
    return True, f"{caller}'s Envoy routes to {service} carry no fault"


def poll(check: Callable[[], tuple[bool, str]], timeout: float, what: str) -> str:
    """Call ``check`` until it reports success or ``timeout`` s pass; FaultInconclusive with the last look then."""
    started = time.monotonic()
    while True:
        try:
            ok, detail = check()
        except BackendError as exc:
            ok, detail = False, f"the check failed: {exc}"
        waited = time.monotonic() - started
        if ok:
            return detail
        if waited >= timeout:
            raise FaultInconclusive(f"{what}: its effect was not seen ({detail} after {waited:.1f} s)")
        time.sleep(POLL_SECONDS)
