"""SLO verdicts on a load result: per phase, with the numbers and the window where an objective first broke.

``check(result, phase=…, p99_ms=…, max_error_rate=…)`` compares one phase's aggregate statistics with
each threshold given and raises :class:`SLOViolation` (an ``AssertionError``, so the test FAILS) with a
table: phase, metric, threshold, observed, and the first one-second window of that phase that broke the
objective. An objective on a phase without requests is a violation too: nothing measured is nothing met.

Works on anything shaped like the load generator's ``LoadResult`` (``phases[name]`` with the statistics
as attributes, ``window_rows()`` as dicts), so it is tested without generating load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import SLOViolation

# metric → (attribute of the phase stats / key of a window row, "max" (observed ≤ threshold) or "min")
METRICS: dict[str, tuple[str, str]] = {
    "p50_ms": ("p50_ms", "max"),
    "p95_ms": ("p95_ms", "max"),
    "p99_ms": ("p99_ms", "max"),
    "max_error_rate": ("error_rate", "max"),
    "min_throughput_rps": ("throughput_rps", "min"),
}


class LoadResultLike(Protocol):
    @property
    def phases(self) -> Mapping[str, Any]: ...

    def window_rows(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class SLOCheck:
    """One objective on one phase, judged."""

    phase: str
    metric: str
    """``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_error_rate`` or ``min_throughput_rps``."""
    threshold: float
    observed: float | None
    """The phase's aggregate value; None when the phase has no requests or does not exist."""
    ok: bool
    window: str = ""
    """Where it first broke: ``+3–4 s (1204.1 ms)``, seconds into the phase; empty when it held."""
    note: str = ""
    """Why there is no observed value, when there is none."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "metric": self.metric,
            "threshold": self.threshold,
            "observed": self.observed,
            "ok": self.ok,
            "window": self.window,
            "note": self.note,
        }


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric == "max_error_rate":
        return f"{value * 100:.2f} %"
    if metric == "min_throughput_rps":
        return f"{value:.1f} rps"
    return f"{value:.1f} ms"


def _threshold_text(metric: str, threshold: float) -> str:
    return ("≥ " if METRICS[metric][1] == "min" else "≤ ") + _fmt(metric, threshold)


def _breaks(metric: str, value: Any, threshold: float) -> bool:
    if value is None:
        return False
    direction = METRICS[metric][1]
    return float(value) < threshold if direction == "min" else float(value) > threshold


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _first_broken_window(rows: Sequence[Mapping[str, Any]], phase: str, metric: str, threshold: float) -> str:
    mine = [r for r in rows if r.get("phase") == phase]
    if not mine:
        return ""
    start = min(float(r["start"]) for r in mine)
    key = METRICS[metric][0]
    for row in sorted(mine, key=lambda r: float(r["start"])):
        if metric != "min_throughput_rps" and not row.get("requests"):
            continue  # an empty window has no latency and no error rate
        if _breaks(metric, row.get(key), threshold):
            offset = f"+{_seconds(float(row['start']) - start)}–{_seconds(float(row['end']) - start)} s"
            return f"{offset} ({_fmt(metric, row.get(key))})"
    return "no single window"


def evaluate(result: LoadResultLike, phase: str, **thresholds: float | None) -> list[SLOCheck]:
    """Judge each given threshold on ``phase``; never raises on a violation (see :func:`check`)."""
    unknown = sorted(set(thresholds) - set(METRICS))
    if unknown:
        raise TypeError(f"unknown SLO metric {', '.join(unknown)}; use {', '.join(METRICS)}")
    given = {k: float(v) for k, v in thresholds.items() if v is not None}
    if not given:
        raise TypeError(f"give at least one objective: {', '.join(METRICS)}")
    stats = result.phases.get(phase)
    note = ""
    if stats is None:
        known = ", ".join(result.phases) or "none"
        note = f"the run has no phase {phase!r} (phases: {known})"
    elif not getattr(stats, "requests", 0):
        note = f"phase {phase!r} has no requests: nothing was measured, so nothing was met"
    if note:
        return [SLOCheck(phase, m, t, None, False, note=note) for m, t in given.items()]
    rows = result.window_rows()
    checks = []
    for metric, threshold in given.items():
        raw = getattr(stats, METRICS[metric][0], None)
        observed = None if raw is None else float(raw)
        if observed is None:
            checks.append(SLOCheck(phase, metric, threshold, None, False, note=f"the result has no {metric}"))
            continue
        ok = not _breaks(metric, observed, threshold)
        window = "" if ok else _first_broken_window(rows, phase, metric, threshold)
        checks.append(SLOCheck(phase, metric, threshold, observed, ok, window))
    return checks


def format_table(checks: Sequence[SLOCheck]) -> str:
    header = ("phase", "metric", "threshold", "observed", "verdict", "first broke (seconds into the phase)")
    rows = [header]
    for c in checks:
        rows.append(
            (
                c.phase,
                c.metric,
                _threshold_text(c.metric, c.threshold),
                _fmt(c.metric, c.observed),
                "ok" if c.ok else "FAIL",
                c.window if not c.note else c.note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]).rstrip() for r in rows
    )


def violation(checks: Sequence[SLOCheck], title: str = "SLO violated") -> SLOViolation | None:
    failed = [c for c in checks if not c.ok]
    if not failed:
        return None
    return SLOViolation(f"{title}: {len(failed)} of {len(checks)} objectives not met\n{format_table(checks)}", checks)


def check(result: LoadResultLike, phase: str, **thresholds: float | None) -> list[SLOCheck]:
    """Judge ``phase`` of ``result``; raise :class:`SLOViolation` (a test failure) if any objective broke."""
    __tracebackhide__ = True
    checks = evaluate(result, phase, **thresholds)
    error = violation(checks)
    if error is not None:
        raise error
    return checks


class SLO:
    """The ``slo`` fixture: ``slo.check(result, phase=…, p99_ms=…, …)``; every verdict is kept for the report."""

    def __init__(self, *, dry_run: bool = False) -> None:
        self.checks: list[SLOCheck] = []
        self.dry_run = dry_run
        """``--clover-dry-run``: misses are recorded for the report but do not fail the test."""

    def check(
        self,
        result: LoadResultLike,
        *,
        phase: str,
        p50_ms: float | None = None,
        p95_ms: float | None = None,
        p99_ms: float | None = None,
        max_error_rate: float | None = None,
        min_throughput_rps: float | None = None,
    ) -> list[SLOCheck]:
        """Judge one phase; raise SLOViolation with a table of the numbers if an objective is not met."""
        __tracebackhide__ = True
        checks = evaluate(
            result,
            phase,
            p50_ms=p50_ms,
            p95_ms=p95_ms,
            p99_ms=p99_ms,
            max_error_rate=max_error_rate,
            min_throughput_rps=min_throughput_rps,
        )
        self.checks.extend(checks)
        error = violation(checks)
        if error is not None and not self.dry_run:
            raise error
        return checks


def marker_objectives(kwargs: Mapping[str, Any], args: Sequence[Any]) -> tuple[str, dict[str, float]]:
    """Validate one ``@pytest.mark.slo(phase=…, **objectives)``; ValueError says what is wrong."""
    if args:
        raise ValueError("@pytest.mark.slo takes keyword arguments only, e.g. slo(phase='baseline', p99_ms=150)")
    phase = kwargs.get("phase")
    if not isinstance(phase, str) or not phase:
        raise ValueError("@pytest.mark.slo needs phase='<name of a load phase>'")
    objectives = {k: v for k, v in kwargs.items() if k != "phase"}
    unknown = sorted(set(objectives) - set(METRICS))
    if unknown:
        raise ValueError(f"@pytest.mark.slo: unknown objective {', '.join(unknown)}; use {', '.join(METRICS)}")
    if not objectives:
        raise ValueError(f"@pytest.mark.slo(phase={phase!r}) gives no objective; add one of {', '.join(METRICS)}")
    bad = {k: v for k, v in objectives.items() if isinstance(v, bool) or not isinstance(v, int | float)}
    if bad:
        raise ValueError(f"@pytest.mark.slo: objectives must be numbers, got {bad}")
    return phase, {k: float(v) for k, v in objectives.items()}


def marker_weight(marker: Any) -> float:
    """The weight of ``@pytest.mark.resilience(weight=…)`` (default 1); ValueError saying what to write."""
    value = marker.kwargs.get("weight", marker.args[0] if marker.args else 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"@pytest.mark.resilience(weight={value!r}): the weight must be a number ≥ 0, e.g. weight=2")
    return float(value)
