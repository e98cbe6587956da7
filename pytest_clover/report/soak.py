"""A soak test's report data: ``soak.json`` read back, and the numbers its page, plot and summary show.

The soak runner writes ``<test folder>/soak.json`` at every checkpoint and at the end (atomically): the plan,
the seed, how far the night got (``state``: running, finished or stopped, and ``stopped_by``), the drawn
schedule, one entry per fault event with its own verdict, SLO checks, time to recover and errors, the quiet
time's checks, and the guardrails (their spec, their state, the trip if one stopped the soak, and the
error-budget burn-down). ``docs/reports.md`` ("Soaks") describes every field.

:func:`read_soak` is tolerant of missing keys (an older runner, a checkpoint written before an event ended:
each missing value is "not known"), but refuses a file that is not JSON, not an object, of a version it does not
know, or whose lists hold something else than objects — with a :class:`~pytest_clover.errors.ReportDataError`
naming the file and what to do. Everything else here is a pure computation on :class:`SoakData`: counts by
verdict, the time-to-recover distribution per fault kind, errors per event, the guardrail line, the
``summary.json`` block, and the downsampling the 8-hour plot draws from.

Nothing heavy is imported at module level (numpy only inside :func:`downsample`): ``summary.py`` imports this
module for every report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReportDataError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "JUDGED",
    "SOAK_FILE",
    "SOAK_VERSION",
    "VERDICTS",
    "Buckets",
    "GuardrailTrip",
    "SoakData",
    "SoakEvent",
    "TTRStats",
    "clock",
    "downsample",
    "errors_by_kind",
    "guardrail_line",
    "quantile",
    "read_soak",
    "slo_during",
    "soak_summary",
    "table_order",
    "ttr_by_kind",
    "verdict_counts",
]

SOAK_FILE = "soak.json"
"""The soak runner's file in the test's folder."""
SOAK_VERSION = 1
"""The ``v`` of ``soak.json`` this module reads; a file of another version is refused (its fields may mean
something else)."""
VERDICTS = ("passed", "failed", "inconclusive", "not-run", "pending")
"""An event's verdict: judged (the first three), never started (the soak stopped first), or not judged yet (a
checkpoint taken while it was in force or its recovery was being watched)."""
JUDGED = frozenset({"passed", "failed", "inconclusive"})
"""Verdicts of events that ran to the end of their judgement: only these count in the time-to-recover figures."""
MAX_FAILURES_IN_SUMMARY = 50
"""``summary.json`` lists at most this many failed / inconclusive events (the rest are counted): a night that
went wrong everywhere must not make the summary as large as ``soak.json``."""
MAX_BURN_DOWN_POINTS = 2000
"""The runner keeps at most 2000 burn-down points; a file with more (edited, another writer) is thinned to this
many, evenly, keeping the first and the last."""


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class SoakEvent:
    """One fault event of the soak as the runner judged it (one entry of ``soak.json``'s ``events``)."""

    id: str
    """``f01``, ``f02``, … as in the schedule."""
    kind: str
    """``delay``, ``abort``, ``kill``, ``scale`` or ``shift``."""
    target: str
    """The service or Deployment it acted on."""
    description: str
    """One line for a person: ``delay 500ms 50% on http-lb``."""
    planned_at_s: float | None
    """When the schedule placed it, seconds after the soak's start; None if not written."""
    duration_s: float
    """Seconds it was planned to stay in force (0 for a kill)."""
    start: float | None
    """Unix time it was applied; None if it never started."""
    end: float | None
    """Unix time it was reverted; None while in force or if it never started."""
    verified: bool | None
    """Whether its effect was seen (None: not checked, or not yet)."""
    verdict: str
    """One of :data:`VERDICTS` (kept as written if it is something else)."""
    checks: tuple[dict[str, Any], ...]
    """Its SLO checks (``SLOCheck.as_dict()``), numbers read leniently (None where not a number)."""
    recovery_s: float | None
    """Seconds from its end until the SLOs held again; None: did not recover within ``recovery.within_s`` (or
    not judged yet)."""
    requests: int
    """Requests sent while it was in force."""
    errors: int
    """Of those, how many failed."""
    reason: str
    """One line saying why it did not pass ("" when it passed)."""

    def at_s(self, started: float | None) -> float | None:
        """When it started, seconds into the soak: its actual start if known, else its planned one."""
        if self.start is not None and started is not None:
            return self.start - started
        return self.planned_at_s

    @property
    def error_rate(self) -> float | None:
        """Errors / requests while it was in force; None without requests."""
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class GuardrailTrip:
    """The guardrail that stopped the soak (``soak.json``'s ``guardrails.trip``)."""

    guardrail: str
    """``error_budget``, ``burn_rate`` or ``p99_ms``."""
    at: float | None
    """Unix time of the end of the window that tripped it; None if not written."""
    reason: str
    """One line with the numbers: what went over what."""
    numbers: dict[str, Any]
    """The numbers behind the reason, as the runner wrote them."""

    def as_dict(self) -> dict[str, Any]:
        """As ``Trip.as_dict()`` writes it."""
        return {"guardrail": self.guardrail, "at": self.at, "reason": self.reason, "numbers": dict(self.numbers)}


@dataclass(frozen=True)
class SoakData:
    """``soak.json``, read by :func:`read_soak`: every value the runner may leave out has a "not known" default."""

    path: Path
    """The file read (named in every problem found later)."""
    plan: str = ""
    """The plan file the soak ran (as given on the command line)."""
    title: str = ""
    """The plan's title ("" if it has none)."""
    seed: int | None = None
    """The seed the schedule was drawn from (the run's ``--clover-seed``)."""
    time_scale: float | None = None
    """The run's time scale (schedule times were multiplied by it)."""
    rate: float | None = None
    """Requests per second of the soak's open-loop load."""
    duration_s: float | None = None
    """How long the soak was planned to run, in seconds."""
    started: float | None = None
    """Unix time the soak (its load) started: the origin of every "into the soak" time."""
    elapsed_s: float | None = None
    """Seconds it ran until this file was written (the whole soak once it finished)."""
    state: str = "running"
    """``running`` (a checkpoint), ``finished`` or ``stopped``."""
    stopped_by: str = ""
    """Why it stopped early: ``guardrail``, ``interrupted``, ``error: <one line>``; "" otherwise."""
    checkpoint: dict[str, Any] = field(default_factory=dict)
    """``time`` (unix s), ``count``, ``interval_s``, ``final``: when this file was written, as written."""
    slo: dict[str, float] = field(default_factory=dict)
    """The plan's SLO (metric → threshold) that the quiet time and recoveries are judged on."""
    recovery_within_s: float | None = None
    """Seconds after a fault's end by which it must have recovered (the plan's ``recovery.within_s``)."""
    recovery_windows: int | None = None
    """Consecutive good 1-s windows that count as recovered."""
    schedule: tuple[dict[str, Any], ...] = ()
    """The drawn schedule (``schedule_to_json``), as written: every event planned, run or not."""
    events: tuple[SoakEvent, ...] = ()
    """The events that reached the runner's judgement (or are being judged), in start order."""
    quiet_checks: tuple[dict[str, Any], ...] = ()
    """The quiet time's SLO checks (phase ``quiet``)."""
    quiet_windows: tuple[tuple[float, float], ...] = ()
    """The plan's quiet windows as (from, to) seconds into the soak, time scale applied, when the runner writes
    them (``quiet_windows``: [{"from_s", "to_s"}]); empty otherwise."""
    guardrail_spec: dict[str, Any] = field(default_factory=dict)
    """The plan's raw ``guardrails`` mapping ({} without guardrails)."""
    guardrail_state: dict[str, Any] = field(default_factory=dict)
    """``Guardrails.state()`` at the time of writing."""
    trip: GuardrailTrip | None = None
    """The guardrail that stopped the soak, None if none did."""
    burn_down: tuple[tuple[float, float], ...] = ()
    """(unix time, remaining error-budget fraction) points, oldest first; empty without an error budget."""

    def into(self, unix: float | None) -> float | None:
        """A unix time as seconds into the soak (None if either is unknown)."""
        if unix is None or self.started is None:
            return None
        return unix - self.started


# --------------------------------------------------------------------------- reading


_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _number(value: Any) -> float | None:
    """A finite number, else None (booleans and numeric strings are not numbers in this file)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int:
    number = _number(value)
    return max(0, int(number)) if number is not None else 0


def _string(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _one_line(text: str, limit: int = 300) -> str:
    """First line of ``text``, cut to ``limit`` characters: a reason is one line on the page."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _mapping(path: Path, data: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    """``data[key]`` as an object (None: empty), else a ReportDataError naming ``prefix + key``."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportDataError(f"{path}: {prefix}{key} must be an object, found {_kind(value)}; {_FIX}")
    return value


def _objects(path: Path, value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a list of objects (None: empty), else a ReportDataError naming ``where``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportDataError(f"{path}: {where} must be a list, found {_kind(value)}; {_FIX}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ReportDataError(f"{path}: {where}[{i}] must be an object, found {_kind(item)}; {_FIX}")
    return value


_FIX = (
    "the soak runner writes soak.json atomically, so this file was edited or damaged: restore it, or move it away "
    "to build the report without the test's soak section"
)


def _check(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An SLO check as ``summary.json`` holds them: text fields as text, numbers or None."""
    return {
        "phase": _string(raw.get("phase")),
        "metric": _string(raw.get("metric")),
        "threshold": _number(raw.get("threshold")),
        "observed": _number(raw.get("observed")),
        "ok": bool(raw.get("ok")),
        "window": _string(raw.get("window")),
        "note": _string(raw.get("note")),
    }


def _event(path: Path, raw: Mapping[str, Any], index: int, state: str) -> SoakEvent:
    kind = _string(raw.get("kind"), "fault")
    target = _string(raw.get("target"))
    start, end = _number(raw.get("start")), _number(raw.get("end"))
    verdict = _string(raw.get("verdict"))
    if not verdict:
        # Not written: an event that never started did not run; one that did is still being judged.
        verdict = "not-run" if start is None and state != "running" else "pending"
    verified = raw.get("verified")
    return SoakEvent(
        id=_string(raw.get("id")) or f"#{index + 1}",
        kind=kind,
        target=target,
        description=_string(raw.get("description")) or f"{kind} on {target}".strip(),
        planned_at_s=_number(raw.get("planned_at_s")),
        duration_s=_number(raw.get("duration_s")) or 0.0,
        start=start,
        end=end,
        verified=verified if isinstance(verified, bool) else None,
        verdict=verdict,
        checks=tuple(_check(c) for c in _objects(path, raw.get("checks"), f"events[{index}].checks")),
        recovery_s=_number(raw.get("recovery_s")),
        requests=_count(raw.get("requests")),
        errors=_count(raw.get("errors")),
        reason=_one_line(_string(raw.get("reason"))),
    )


def _trip(raw: Any) -> GuardrailTrip | None:
    if not isinstance(raw, dict) or not raw.get("guardrail"):
        return None
    numbers = raw.get("numbers")
    return GuardrailTrip(
        guardrail=str(raw["guardrail"]),
        at=_number(raw.get("at")),
        reason=_one_line(_string(raw.get("reason"))),
        numbers=dict(numbers) if isinstance(numbers, dict) else {},
    )


def _burn_down(path: Path, raw: Any) -> tuple[tuple[float, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ReportDataError(f"{path}: guardrails.burn_down must be a list of [time, remaining], found {_kind(raw)}")
    points: list[tuple[float, float]] = []
    for item in raw:
        # A point that is not [number, number] is skipped: one bad point must not hide the curve.
        if isinstance(item, list | tuple) and len(item) == 2:
            t, v = _number(item[0]), _number(item[1])
            if t is not None and v is not None:
                points.append((t, v))
    points.sort(key=lambda p: p[0])
    if len(points) > MAX_BURN_DOWN_POINTS:
        step = math.ceil((len(points) - 1) / (MAX_BURN_DOWN_POINTS - 1))
        points = [*points[:-1:step], points[-1]]
    return tuple(points)


def _quiet_windows(raw: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list):
        return ()
    spans = []
    for item in raw:
        if isinstance(item, dict):
            a, b = _number(item.get("from_s")), _number(item.get("to_s"))
            if a is not None and b is not None and b > a:
                spans.append((a, b))
    return tuple(sorted(spans))


def read_soak(folder: Path) -> SoakData | None:
    """``<folder>/soak.json``, or None when the test left none (not a soak test).

    Raises :class:`~pytest_clover.errors.ReportDataError` naming the file and what to do when it is not JSON, not
    an object, of another version than :data:`SOAK_VERSION`, or when one of its lists holds something else than
    objects. A missing key is read as "not known" (a checkpoint, an older runner).
    """
    path = Path(folder) / SOAK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportDataError(f"{path}: cannot be read ({exc}); check the file's permissions and the disk") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReportDataError(f"{path}: not readable JSON ({exc}); {_FIX}") from exc
    if not isinstance(data, dict):
        raise ReportDataError(f"{path}: expected a JSON object, found {_kind(data)}; {_FIX}")
    version = data.get("v", SOAK_VERSION)
    if version != SOAK_VERSION or isinstance(version, bool):
        raise ReportDataError(
            f"{path}: v is {version!r}, but this pytest-clover reads soak.json version {SOAK_VERSION}; build the "
            "report with the pytest-clover version that ran the soak (`clover report <run-dir>` from it)"
        )
    state = _string(data.get("state"), "running") or "running"
    started = _number(data.get("started"))
    events = [_event(path, e, i, state) for i, e in enumerate(_objects(path, data.get("events"), "events"))]
    # Start order (the runner writes them so); an event with no time at all goes last, in file order.
    events.sort(key=lambda e: (e.at_s(started) is None, e.at_s(started) or 0.0))
    guardrails = _mapping(path, data, "guardrails")
    guardrail_state = _mapping(path, guardrails, "state", "guardrails.")
    trip = _trip(guardrails.get("trip"))
    if trip is None:
        trip = _trip(guardrail_state.get("tripped"))  # a runner that wrote the state but not the trip
    recovery = _mapping(path, data, "recovery")
    quiet = _mapping(path, data, "quiet")
    slo = {str(k): v for k, v in _mapping(path, data, "slo").items() if _number(v) is not None}
    windows = _number(recovery.get("windows"))
    seed = data.get("seed")
    return SoakData(
        path=path,
        plan=_string(data.get("plan")),
        title=_string(data.get("title")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        time_scale=_number(data.get("time_scale")),
        rate=_number(data.get("rate")),
        duration_s=_number(data.get("duration_s")),
        started=started,
        elapsed_s=_number(data.get("elapsed_s")),
        state=state,
        stopped_by=_one_line(_string(data.get("stopped_by"))),
        checkpoint=_mapping(path, data, "checkpoint"),
        slo={k: float(v) for k, v in slo.items()},
        recovery_within_s=_number(recovery.get("within_s")),
        recovery_windows=int(windows) if windows is not None else None,
        schedule=tuple(_objects(path, data.get("schedule"), "schedule")),
        events=tuple(events),
        quiet_checks=tuple(_check(c) for c in _objects(path, quiet.get("checks"), "quiet.checks")),
        quiet_windows=_quiet_windows(data.get("quiet_windows")),
        guardrail_spec=_mapping(path, guardrails, "spec", "guardrails."),
        guardrail_state=guardrail_state,
        trip=trip,
        burn_down=_burn_down(path, guardrails.get("burn_down")),
    )


# --------------------------------------------------------------------------- computations


def clock(seconds: float | None) -> str:
    """Seconds into the soak as ``h:mm:ss`` (``-0:00:03`` before its start); ``—`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    return f"{sign}{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def verdict_counts(events: Iterable[SoakEvent]) -> dict[str, int]:
    """``total`` and one count per verdict of :data:`VERDICTS` (0 when none); ``other`` only when some event has a
    verdict outside them (a newer runner), so the counts always add up to the total."""
    counts = dict.fromkeys(("total", *VERDICTS), 0)
    for event in events:
        counts["total"] += 1
        key = event.verdict if event.verdict in VERDICTS else "other"
        counts[key] = counts.get(key, 0) + 1
    return counts


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) of sorted values, linearly interpolated between the two nearest ranks (numpy's
    default, and ``statistics.quantiles(method="inclusive")``): the median of 1, 2, 3, 10 is 2.5, its p90 7.9."""
    if not ordered:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within 0 and 1, not {q}")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class TTRStats:
    """The times to recover of one fault kind, over its judged events."""

    kind: str
    """The fault kind."""
    values: tuple[float, ...]
    """Seconds to recover of the events that recovered, sorted."""
    never: int
    """Judged events that did not recover within the allowance (their ``recovery_s`` is null)."""

    @property
    def n(self) -> int:
        """How many recovered (the values the median, p90 and max are taken over)."""
        return len(self.values)

    @property
    def median(self) -> float | None:
        """Median seconds to recover; None when none recovered."""
        return quantile(self.values, 0.5) if self.values else None

    @property
    def p90(self) -> float | None:
        """90th percentile (linear interpolation, see :func:`quantile`); None when none recovered."""
        return quantile(self.values, 0.9) if self.values else None

    @property
    def max(self) -> float | None:
        """The longest recovery; None when none recovered."""
        return self.values[-1] if self.values else None

    def as_dict(self) -> dict[str, Any]:
        """``{"n", "never", "median", "p90", "max"}`` as ``summary.json`` holds them (seconds, 3 decimals)."""
        return {
            "n": self.n,
            "never": self.never,
            "median": _round(self.median),
            "p90": _round(self.p90),
            "max": _round(self.max),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ttr_by_kind(events: Iterable[SoakEvent]) -> dict[str, TTRStats]:
    """Per fault kind (in order of first appearance), the times to recover of its judged events (verdict passed,
    failed or inconclusive): pending and not-run events have no recovery to count."""
    values: dict[str, list[float]] = {}
    never: dict[str, int] = {}
    for event in events:
        if event.verdict not in JUDGED:
            continue
        values.setdefault(event.kind, [])
        never.setdefault(event.kind, 0)
        if event.recovery_s is None:
            never[event.kind] += 1
        else:
            values[event.kind].append(event.recovery_s)
    return {kind: TTRStats(kind, tuple(sorted(v)), never[kind]) for kind, v in values.items()}


def errors_by_kind(events: Iterable[SoakEvent]) -> dict[str, dict[str, Any]]:
    """Per fault kind: ``events``, ``requests`` and ``errors`` summed over its events that started, and their
    ``error_rate`` (errors / requests, None without requests): what each kind of fault cost the clients."""
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.start is None:
            continue
        entry = out.setdefault(event.kind, {"events": 0, "requests": 0, "errors": 0, "error_rate": None})
        entry["events"] += 1
        entry["requests"] += event.requests
        entry["errors"] += event.errors
    for entry in out.values():
        entry["error_rate"] = entry["errors"] / entry["requests"] if entry["requests"] else None
    return out


def slo_during(event: SoakEvent) -> dict[str, Any] | None:
    """The check the events table shows: the first one that failed, else the main one (``p99_ms``, else the
    first); None for an event without checks."""
    if not event.checks:
        return None
    failed = next((c for c in event.checks if not c["ok"]), None)
    if failed is not None:
        return failed
    return next((c for c in event.checks if c["metric"] == "p99_ms"), event.checks[0])


_TABLE_RANK = {"failed": 0, "inconclusive": 1, "pending": 2, "not-run": 3}


def table_order(events: Sequence[SoakEvent], *, fold_over: int = 60) -> tuple[list[SoakEvent], list[SoakEvent]]:
    """(events shown, passed events folded away) for the page's events table. Up to ``fold_over`` events: all
    shown, in start order, none folded. More: the failed ones first, then inconclusive, pending, not-run (each in
    start order), and the passed ones folded (the page puts them in a ``<details>`` block)."""
    if len(events) <= fold_over:
        return list(events), []
    shown = sorted((e for e in events if e.verdict != "passed"), key=lambda e: _TABLE_RANK.get(e.verdict, 4))
    return shown, [e for e in events if e.verdict == "passed"]


def guardrail_line(data: SoakData) -> str | None:
    """``burn_rate tripped at 0:50:00 into the soak: <reason>``; None when no guardrail tripped."""
    trip = data.trip
    if trip is None:
        return None
    return f"{trip.guardrail} tripped at {clock(data.into(trip.at))} into the soak: {trip.reason or 'no reason given'}"


def soak_summary(data: SoakData) -> dict[str, Any]:
    """The ``soak`` block of a test in ``summary.json`` (see ``docs/reports.md`` and ``summary.schema.json``)."""
    not_passed = [e for e in data.events if e.verdict in ("failed", "inconclusive")]
    not_passed.sort(key=lambda e: e.verdict != "failed")  # stable: failed first, each in start order
    kept = not_passed[:MAX_FAILURES_IN_SUMMARY]
    trip = data.trip
    return {
        "plan": data.plan,
        "title": data.title,
        "seed": data.seed,
        "state": data.state,
        "stopped_by": data.stopped_by,
        "duration_s": data.duration_s,
        "elapsed_s": data.elapsed_s,
        "rate_rps": data.rate,
        "time_scale": data.time_scale,
        "events": verdict_counts(data.events),
        "scheduled": len(data.schedule),
        "guardrail": None
        if trip is None
        else {
            "guardrail": trip.guardrail,
            "at": trip.at,
            "at_s": _round(data.into(trip.at)),
            "reason": trip.reason,
        },
        "ttr_s": {kind: stats.as_dict() for kind, stats in ttr_by_kind(data.events).items()},
        "recovery_within_s": data.recovery_within_s,
        "failures": [
            {
                "id": e.id,
                "verdict": e.verdict,
                "kind": e.kind,
                "target": e.target,
                "at_s": _round(e.at_s(data.started)),
                "reason": e.reason,
            }
            for e in kept
        ],
        "failures_omitted": len(not_passed) - len(kept),
    }


# --------------------------------------------------------------------------- downsampling for the plot


@dataclass(frozen=True)
class Buckets:
    """A night of 1-s windows cut into at most ``max_buckets`` buckets of ``per_bucket`` consecutive windows."""

    start: npt.NDArray[np.float64]
    """Unix time each bucket starts (its first window's start)."""
    end: npt.NDArray[np.float64]
    """Unix time each bucket ends (its last window's end)."""
    p99_ms: npt.NDArray[np.float64]
    """The worst (largest) p99 of the bucket's windows, so a one-second spike stays visible; NaN when none of
    its windows had a response."""
    requests: npt.NDArray[np.float64]
    """Requests summed over the bucket."""
    errors: npt.NDArray[np.float64]
    """Errors summed over the bucket."""
    error_rate: npt.NDArray[np.float64]
    """errors / requests of the bucket (not a mean of the windows' rates); NaN without requests."""
    per_bucket: int
    """Windows per bucket (1: not downsampled); the last bucket may hold fewer."""


def downsample(windows: Sequence[Mapping[str, Any]], max_buckets: int = 1500) -> Buckets:
    """The windows (``result.json``'s rows: start, end, requests, errors, p99_ms) in time order, cut into at most
    ``max_buckets`` buckets of k consecutive windows: per bucket the max p99 and the sum-based error rate.

    Windows without a finite start are left out; a missing end is start + 1 s; a missing count is 0."""
    import numpy as np

    if max_buckets < 1:
        raise ValueError(f"max_buckets must be at least 1, not {max_buckets}")

    def column(key: str) -> npt.NDArray[np.float64]:
        values = (_number(w.get(key)) for w in windows)
        return np.fromiter((math.nan if v is None else v for v in values), dtype=float, count=len(windows))

    start = column("start")
    order = np.argsort(start, kind="stable")
    order = order[np.isfinite(start[order])]
    start = start[order]
    end = column("end")[order]
    end = np.where(np.isfinite(end), end, start + 1.0)
    requests = np.nan_to_num(column("requests")[order])
    errors = np.nan_to_num(column("errors")[order])
    p99 = column("p99_ms")[order]
    n = len(start)
    if n == 0:
        empty = np.array([], dtype=float)
        return Buckets(empty, empty, empty, empty, empty, empty, 1)
    k = max(1, math.ceil(n / max_buckets))
    idx = np.arange(0, n, k)
    last = np.r_[idx[1:] - 1, n - 1]
    with np.errstate(invalid="ignore"):
        # fmax skips NaN (a window without a response) unless the whole bucket is NaN.
        p99_max = np.fmax.reduceat(p99, idx) if k > 1 else p99
        req = np.add.reduceat(requests, idx)
        err = np.add.reduceat(errors, idx)
        rate = np.where(req > 0, err / np.where(req > 0, req, 1.0), np.nan)
    return Buckets(start[idx], end[last], p99_max.astype(float), req, err, rate, k)
