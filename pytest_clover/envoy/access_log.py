"""The access log every Envoy of a mesh writes: one JSON object per request it proxied.

The per-hop report (:mod:`pytest_clover.report.hops`) joins the entries of every sidecar and gateway on
``request_id`` and walks the path along ``upstream_cluster``: it needs the fields in :data:`REQUIRED_FIELDS`
from every entry. ``pod`` and ``direction`` are not Envoy command operators: a backend adds them as constants
per listener (the local backend does) or derives them (a cluster's sidecar: ``direction`` from the
``inbound|``/``outbound|`` prefix of ``upstream_cluster``, ``pod`` from the pod's name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DIRECTIONS", "FORMAT", "REQUIRED_FIELDS", "json_format", "missing_fields"]

FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "duration": "%DURATION%",
    # First downstream byte in → last byte out, in µs (%DURATION% truncates to ms and ends at stream
    # completion, a little later): per-hop breakdowns subtract nested durations, and whole milliseconds
    # would round away most of a fast hop. Envoy 1.40 validates the operator and precision, not the
    # time-point names (an unknown one is a custom time point, logged null): see tests/integration/test_hops.py.
    "duration_us": "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "traceparent": "%REQ(TRACEPARENT)%",
    "b3_trace_id": "%REQ(X-B3-TRACEID)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "route_name": "%ROUTE_NAME%",
    "upstream_request_attempt_count": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "user_agent": "%REQ(USER-AGENT)%",
}
"""Envoy's ``json_format``: field → command operator (Istio's JSON encoding uses the same names)."""

DIRECTIONS = ("gateway", "inbound", "outbound")
"""``gateway``: the ingress gateway's entry, where a request enters the mesh; ``inbound``: a sidecar passing a
request to its own application; ``outbound``: a sidecar passing its application's call to another service."""

REQUIRED_FIELDS = (
    "start_time",
    "request_id",
    "pod",
    "direction",
    "upstream_cluster",
    "authority",
    "response_code",
    "response_flags",
    "duration",
)
"""What the per-hop report reads from every entry (``duration_us`` too, when present: finer than ``duration``)."""


def json_format(pod: str, direction: str) -> dict[str, str]:
    """The ``json_format`` for one listener of one pod: :data:`FORMAT` plus the constant ``pod`` and ``direction``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    return {"pod": pod, "direction": direction, **FORMAT}


def missing_fields(entry: Mapping[str, Any]) -> list[str]:
    """The required fields an entry lacks (an empty list for a usable entry)."""
    return [name for name in REQUIRED_FIELDS if name not in entry]
