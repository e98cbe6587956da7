"""Envoy stat names pytest-clover reads, matched the way they appear in any Envoy of a mesh.

Envoy names an HTTP filter's stats after its connection manager's ``stat_prefix``: ``http.<prefix>.fault.…``.
The local backend's sidecars use the prefix ``outbound``; Istio's use one per listener
(``outbound_0.0.0.0_9080``), and record the fault filter's stats only when the pod's stats inclusion asks for
them (``proxy.istio.io/config: {proxyStatsMatcher: {inclusionRegexps: [".*fault.*"]}}``). So a counter is found
by its suffix under any HTTP prefix, never by one backend's prefix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["FAULT_KINDS", "fault_count", "fault_stat", "parse_stats_json", "sum_suffix"]

FAULT_KINDS = {"delay": "delays_injected", "abort": "aborts_injected"}
"""Fault kind → the fault filter's counter that moves each time the fault acts on a request (on the caller's
sidecar, where Istio applies a VirtualService fault)."""


def parse_stats_json(text: str) -> dict[str, Any]:
    """``/stats?format=json`` → {name: int | str}; histograms are left out."""
    out: dict[str, Any] = {}
    for entry in json.loads(text).get("stats", []):
        if "name" in entry and "value" in entry:
            out[entry["name"]] = entry["value"]
    return out


def fault_stat(name: str, kind: str) -> bool:
    """Whether stat ``name`` is the counter of fault ``kind`` (``delay``/``abort``) under any HTTP prefix."""
    suffix = FAULT_KINDS[kind]
    return name.startswith("http.") and name.endswith(f".fault.{suffix}")


def fault_count(stats: Mapping[str, Any], kind: str) -> int:
    """How many requests fault ``kind`` acted on, summed over every HTTP connection manager of one Envoy."""
    return sum(int(value) for name, value in stats.items() if isinstance(value, int) and fault_stat(name, kind))


def sum_suffix(stats: Mapping[str, Any], suffix: str) -> int:
    """The sum of every counter or gauge whose name ends with ``suffix`` (e.g. ``upstream_rq_pending_overflow``)."""
    return sum(int(value) for name, value in stats.items() if isinstance(value, int) and name.endswith(suffix))
