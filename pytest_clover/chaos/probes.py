"""Chaos Toolkit probes on a clover mesh: SLOs over the running load, pods, Envoy counters.

``slo_met`` and ``load_stats`` read the load started by ``pytest_clover.chaos.actions.start_load`` or the
``pytest_clover.chaos.control`` control, over its last N seconds (exact percentiles from the merged
histograms of those 1-second windows). If the load has run for less than N seconds they wait until it has.

``slo_met`` returns a dict, so that the journal shows what was observed next to each threshold. Its
verdict is checked with a regex tolerance on ``verdict`` (a plain ``tolerance: true`` would never match a
dict)::

    steady-state-hypothesis:
      title: the service meets its SLO
      probes:
        - type: probe
          name: slo-met
          tolerance: {type: regex, target: verdict, pattern: "^met$"}
          provider:
            type: python
            module: pytest_clover.chaos.probes
            func: slo_met
            arguments: {last_seconds: 10, p99_ms: 150, max_error_rate: 0.01}

``load_stats`` returns the numbers themselves, for a ``range`` tolerance on one of them::

          tolerance: {type: range, target: p99_ms, range: [0, 150]}
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from .. import slo
from ..backends.protocol import Backend
from ..envoy.views import service_stats
from . import load_sessions
from .mesh import ActivityFailed, backend_from_configuration, failures

__all__ = ["envoy_counter", "load_stats", "pods_ready", "slo_met"]

Configuration = dict[str, Any] | None
COVERAGE_SLACK_S = 0.1
"""Windows last a timer tick more or less than a second: N seconds are covered at N − this."""
WAIT_EXTRA_S = 5.0
"""How much longer than ``last_seconds`` (since the load started) a probe waits for its windows."""


def _seconds(value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value)
    except (TypeError, ValueError):
        raise ActivityFailed(f"last_seconds must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ActivityFailed(f"last_seconds must be positive, got {value!r}")
    return seconds


def _recent(backend: Backend, seconds: float, wait: bool) -> tuple[load_sessions.LoadSession, dict[str, Any]]:
    """The running load's statistics over its last ``seconds`` s, once it has run that long (if ``wait``)."""
    session = load_sessions.current(backend)
    deadline = session.started + seconds + WAIT_EXTRA_S
    while True:
        raw = session.run.result.recent(seconds)
        if not wait or raw["seconds"] >= seconds - COVERAGE_SLACK_S or time.time() >= deadline:
            return session, raw
        time.sleep(0.1)
        session = load_sessions.current(backend)  # raises if the generator died meanwhile


def _rows_of(session: load_sessions.LoadSession, raw: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    if raw["start"] is None:
        return []
    lo, hi = float(raw["start"]) - 1e-6, float(raw["end"]) + 1e-6
    rows = session.run.result.window_rows()
    return [{**r, "phase": name} for r in rows if float(r["start"]) >= lo and float(r["end"]) <= hi]


class _Span:
    """The last seconds of the run, shaped as slo.evaluate reads a load result (one phase)."""

    def __init__(self, name: str, raw: Mapping[str, Any], rows: list[dict[str, Any]]) -> None:
        self.phases = {name: SimpleNamespace(**raw)}
        self._rows = rows

    def window_rows(self) -> list[dict[str, Any]]:
        return self._rows


def slo_met(
    last_seconds: float = 10.0,
    p50_ms: float | None = None,
    p95_ms: float | None = None,
    p99_ms: float | None = None,
    max_error_rate: float | None = None,
    min_throughput_rps: float | None = None,
    wait: bool = True,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Whether the running load met every objective given over its last ``last_seconds`` seconds.

    Objectives: ``p50_ms``, ``p95_ms``, ``p99_ms`` (latency percentiles, ms, at most), ``max_error_rate``
    (errors / requests, 0–1, at most; an error is no response or a status outside 200–399),
    ``min_throughput_rps`` (responses per second, at least). Seconds without any response meet nothing.
    Returns ``{"met": bool, "verdict": "met" | "violated", "observed": {…}, "thresholds": {…},
    "violations": ["p99_ms: observed 512.3 ms, threshold ≤ 150.0 ms, first broke +3–4 s (…)"], …}``: check
    it with ``tolerance: {type: regex, target: verdict, pattern: "^met$"}``. ``wait``: if the load has run
    for less than ``last_seconds``, wait until it has (default). Raises ActivityFailed when no load runs.
    """
    seconds = _seconds(last_seconds)
    given = {
        "p50_ms": p50_ms,
        "p95_ms": p95_ms,
        "p99_ms": p99_ms,
        "max_error_rate": max_error_rate,
        "min_throughput_rps": min_throughput_rps,
    }
    thresholds: dict[str, float] = {}
    for metric, value in given.items():
        if value is None:
            continue
        try:
            if isinstance(value, bool):
                raise TypeError
            thresholds[metric] = float(value)
        except (TypeError, ValueError):
            raise ActivityFailed(f"{metric} must be a number, got {value!r}") from None
    if not thresholds:
        raise ActivityFailed(f"give at least one objective: {', '.join(given)}")
    backend = backend_from_configuration(configuration)
    with failures("slo_met"):
        session, raw = _recent(backend, seconds, bool(wait))
    name = f"last {seconds:g} s"
    checks = slo.evaluate(_Span(name, raw, _rows_of(session, raw, name)), name, **thresholds)
    violations = []
    for c in checks:
        if c.ok:
            continue
        observed = slo._fmt(c.metric, c.observed)
        where = f", first broke {c.window}" if c.window else ""
        note = f" ({c.note})" if c.note else ""
        violations.append(
            f"{c.metric}: observed {observed}, threshold {slo._threshold_text(c.metric, c.threshold)}{where}{note}"
        )
    met = not violations
    return {
        "met": met,
        "verdict": "met" if met else "violated",
        "last_seconds": seconds,
        "observed": load_sessions.stats(raw),
        "thresholds": thresholds,
        "violations": violations,
    }


def load_stats(last_seconds: float = 10.0, wait: bool = True, configuration: Configuration = None) -> dict[str, Any]:
    """What the running load measured over its last ``last_seconds`` seconds: ``requests``, ``errors``,
    ``error_rate`` (0–1), ``throughput_rps`` (responses/s), ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` (ms),
    ``windows`` and ``seconds`` (what was covered).

    For a ``range`` tolerance on one number, e.g. ``{type: range, target: p99_ms, range: [0, 150]}``; the journal
    shows them all. Raises ActivityFailed when no load runs, or when no request completed in those seconds
    (there is no latency to report: the service answered nothing). ``wait`` as for slo_met.
    """
    seconds = _seconds(last_seconds)
    backend = backend_from_configuration(configuration)
    with failures("load_stats"):
        _, raw = _recent(backend, seconds, bool(wait))
    if not raw["requests"]:
        raise ActivityFailed(
            f"no request completed in the last {seconds:g} s of the load ({raw['windows']} windows): "
            "the service answered nothing, so there is no latency or error rate to report"
        )
    return {**load_sessions.stats(raw), "last_seconds": seconds}


def pods_ready(service: str, min_ready: int | None = None, configuration: Configuration = None) -> int | bool:
    """How many pods of ``service`` are running and ready; with ``min_ready``, whether at least that many are."""
    if not isinstance(service, str) or not service:
        raise ActivityFailed(f"service must be a non-empty string, got {service!r}")
    backend = backend_from_configuration(configuration)
    with failures(f"pods_ready {service}"):
        ready = len([p for p in backend.pods(service) if p.ready and p.phase == "Running"])
    if min_ready is None:
        return ready
    if isinstance(min_ready, bool) or not isinstance(min_ready, int | float) or min_ready < 0:
        raise ActivityFailed(f"min_ready must be a whole number of pods, got {min_ready!r}")
    return ready >= min_ready


def envoy_counter(service: str, stat: str, configuration: Configuration = None) -> int:
    """An Envoy counter or gauge summed over the sidecars of ``service``'s pods, e.g.
    ``http.outbound.fault.delays_injected``. Faults are counted by the CALLER's sidecar: a delay on http-lb
    moves that counter in proxy-access-control's pods."""
    if not isinstance(stat, str) or not stat:
        raise ActivityFailed(f"stat must be an Envoy stat name, got {stat!r}")
    backend = backend_from_configuration(configuration)
    with failures(f"envoy_counter {service} {stat}"):
        if not backend.pods(service):
            raise ActivityFailed(f"no pods of service {service!r}")
        values = service_stats(backend, service)
    if stat not in values:
        close = difflib.get_close_matches(stat, list(values), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ActivityFailed(f"the sidecars of {service} have no stat {stat!r}{hint}")
    return int(values[stat])
