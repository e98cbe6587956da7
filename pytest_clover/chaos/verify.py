"""Checks the actions make before they return, beside the fault handles' own: Envoy's route configuration.

A delay or an abort injected while no load runs cannot move Envoy's fault counters (the check
:class:`pytest_clover.faults.HttpFault` makes), so it is verified in a caller's Envoy instead: the route
configuration it holds for the service (``/config_dump``) carries the fault filter's settings, with the delay
or the status and the percentage asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..backends.protocol import Backend
from ..envoy.views import fault_matches, route_faults
from ..errors import BackendError, FaultInconclusive, MeshNotRunning
from ..faults.handles import POLL_SECONDS


def check_envoy_fault(
    backend: Backend, service: str, kind: str, *, delay: str | None = None, status: int | None = None, percent: float
) -> tuple[bool, str]:
    faults, caller = route_faults(backend, service)
    what = f"delay {delay}" if kind == "delay" else f"abort {status}"
    if any(fault_matches(f, kind, delay=delay, status=status, percent=percent) for f in faults):
        return True, f"{caller}'s Envoy routes to {service} carry the fault filter's {what} at {percent:g}%"
    seen = f"{len(faults)} routes with other fault settings" if faults else "no route with a fault"
    return False, f"{caller}'s Envoy has {seen} for {service}, not {what} at {percent:g}%"


def check_envoy_clean(backend: Backend, service: str) -> tuple[bool, str]:
    faults, caller = route_faults(backend, service)
    if faults:
        return False, f"{caller}'s Envoy still has {len(faults)} routes with a fault for {service}"
    return True, f"{caller}'s Envoy routes to {service} carry no fault"


def poll(check: Callable[[], tuple[bool, str]], timeout: float, what: str) -> str:
    """Call ``check`` until it reports success or ``timeout`` s pass; FaultInconclusive with the last look then."""
    started = time.monotonic()
    while True:
        try:
            ok, detail = check()
        except MeshNotRunning:
            raise
        except BackendError as exc:
            ok, detail = False, f"the check failed: {exc}"
        waited = time.monotonic() - started
        if ok:
            return detail
        if waited >= timeout:
            raise FaultInconclusive(f"{what}: its effect was not seen ({detail} after {waited:.1f} s)")
        time.sleep(POLL_SECONDS)
