"""The chaos schedule of a soak: the plan file and the seeded timeline of fault events drawn from it.

A *plan* (``faults/schedules/*.yaml``, every field documented in ``faults/schedules/README.md``) says what load
runs for the whole soak, which SLOs each fault event and the quiet time between events are judged on, how fast
the mesh must recover, and which faults happen when: either *random* (each fault kind arrives with exponential
inter-arrival times of mean ``mtbf``) or *fixed* (a timeline of ``at`` offsets). :func:`load_plan` reads and
checks a plan, reporting every problem at once by file and field path; :func:`draw_schedule` turns a plan, the
soak's length and the run's seed into a list of :class:`ScheduledFault` — the same inputs always give the same
list, so a night can be replayed exactly from its ``--clover-seed``.

Drawing a random schedule, step by step (every rule deterministic):

1. Each fault kind draws its arrival times from its own random stream, derived from the seed and the kind's
   index in the plan (adding a kind at the end does not move the others' draws). Arrivals start at
   ``start_after``; each gap is exponential with mean ``mtbf``.
2. An arrival whose fault would start or be in force inside a quiet window is **dropped**: a quiet window
   thins the draw rather than postponing a burst of faults to its end.
3. The arrivals are placed in time order (ties: the kind listed first). Each event occupies its duration plus
   the recovery gap after it (``min_gap``); an event that would make more than ``max_overlap`` occupied at once
   is **postponed** to the earliest moment it fits, which also stays clear of quiet windows.
4. An event is dropped only when it no longer fits before the end: its end plus the time needed to judge its
   recovery (``recovery.within_s`` + ``recovery.windows`` one-second windows) must not pass the soak's end.

``time_scale`` multiplies every time of the *schedule* (mtbf, durations, start_after, min_gap, quiet windows,
timeline offsets) — that is how CI compresses a night into minutes — but not the recovery allowance, which is a
property of the system under test, in real seconds. For the same reason a scaled ``min_gap`` never drops below
``min(min_gap, recovery allowance)``: compressing a night must not start the next fault while the last one's
recovery is still being judged. Fault *parameters* (a 500 ms delay) are never scaled.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, Problem, ReportDataError
from ..slo import METRICS

__all__ = [
    "FAULT_PARAMS",
    "FaultSpec",
    "LoadSpec",
    "QuietWindow",
    "RecoverySpec",
    "SLOSpec",
    "ScheduleSpec",
    "ScheduledFault",
    "SoakPlan",
    "describe",
    "draw_schedule",
    "duration_seconds",
    "load_plan",
    "parse_duration",
    "parse_plan",
    "schedule_from_json",
    "schedule_to_json",
]

PLAN_OBJECT = "soak plan"
"""What :class:`~pytest_clover.errors.Problem` names as the object of a problem inside a plan."""

MAX_PLAN_BYTES = 256 * 1024
"""The largest plan file read (256 KiB): a plan is a page of YAML; anything bigger is a mistake (a wrong path, a
log file), and PyYAML is slow on large input."""

MAX_DURATION_S = 366 * 86400.0
"""The longest duration a plan or ``--clover-soak`` takes (a year): longer is surely a typo, and bounding it
keeps every sum of offsets finite."""

MAX_EVENTS = 100_000
"""The most fault events one draw may produce. A plan that asks for more (an mtbf of milliseconds over a night)
is refused instead of spending minutes and memory on a schedule no mesh could run."""

TIME_RESOLUTION_S = 0.001
"""Every offset and duration of a schedule is rounded to the millisecond: finer is meaningless for faults that
take tens of milliseconds to apply, and rounding keeps a saved schedule identical to a re-drawn one."""

RANDOM = "random"
FIXED = "fixed"

FAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "delay": ("delay", "percent", "headers", "subset", "source_labels"),
    "abort": ("status", "percent", "headers", "subset", "source_labels"),
    "kill": ("count", "percent", "grace"),
    "scale": ("replicas",),
    "shift": ("weights",),
}
"""Each fault kind and the keyword arguments its :class:`~pytest_clover.faults.injector.Faults` method takes
after the target (``Faults.delay(target, delay, percent=…, …)``); a plan's ``params`` may name only these."""

_REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {"delay": ("delay",), "scale": ("replicas",), "shift": ("weights",)}
INSTANT_KINDS = frozenset({"kill"})
"""Kinds that act once and are not "in force" afterwards: they take no ``duration`` (see :class:`FaultSpec`)."""

_TOP_FIELDS = ("title", "description", "load", "slo", "recovery", "schedule", "guardrails")
_LOAD_FIELDS = ("rate",)
_RECOVERY_FIELDS = ("within_s", "windows")
_SCHEDULE_FIELDS = ("mode", "start_after", "min_gap", "max_overlap", "quiet", "faults", "timeline")
_FAULT_FIELDS = ("kind", "target", "mtbf", "duration", "params", "slo")
_TIMELINE_FIELDS = ("at", "kind", "target", "duration", "params", "slo")
_QUIET_FIELDS = ("from", "to")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_PLAIN_NUMBER = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_EXAMPLE = "a number of seconds or a number with a unit ms, s, m or h (e.g. 500ms, 30s, 5m, 1h30m)"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class LoadSpec:
    """The load that runs for the whole soak."""

    rate: float
    """Requests per second, open loop (required): the load does not slow down when the mesh does, so a fault's
    cost shows as latency and errors instead of as fewer requests."""


@dataclass(frozen=True)
class SLOSpec:
    """Objectives, named as :func:`pytest_clover.slo.evaluate` takes them; None: not judged."""

    p50_ms: float | None = None
    """Median latency bound, in milliseconds; None: not judged."""
    p95_ms: float | None = None
    """95th percentile latency bound, in milliseconds; None: not judged."""
    p99_ms: float | None = None
    """99th percentile latency bound, in milliseconds; None: not judged."""
    max_error_rate: float | None = None
    """Largest share of requests that may fail (0.01 is 1 %); None: not judged."""
    min_throughput_rps: float | None = None
    """Smallest answered requests per second; None: not judged."""

    def objectives(self) -> dict[str, float]:
        """The objectives given, as keyword arguments for ``slo.evaluate`` or ``LoadResult.recovery_seconds``."""
        return {name: getattr(self, name) for name in METRICS if getattr(self, name) is not None}


@dataclass(frozen=True)
class RecoverySpec:
    """How fast the mesh must be back within the plan's SLO after each fault event ends."""

    within_s: float = 30.0
    """Seconds after a fault ends (for a kill: after the kill) by which its recovery must have begun (default
    30). Real seconds: never scaled by ``time_scale``, because recovery is the system's, not the schedule's."""
    windows: int = 3
    """Consecutive good one-second windows that count as recovered (default 3): enough to rule out a lucky
    second."""

    @property
    def observation_s(self) -> float:
        """Seconds after a fault's end needed to judge its recovery: the allowance plus the windows confirming it."""
        return self.within_s + self.windows


@dataclass(frozen=True)
class QuietWindow:
    """A span of the soak, as offsets from its start, in which no fault starts or is in force."""

    from_s: float
    """Where the window begins, seconds after the soak starts (before ``time_scale``)."""
    to_s: float
    """Where it ends (exclusive: a fault may start exactly here), seconds after the soak starts."""
    where: str = ""
    """The field path in the plan (``schedule.quiet[0]``), to name it in messages."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault kind of a random schedule (with ``mtbf_s``), or one entry of a fixed timeline (with ``at_s``).

    An event's *span* is ``[at, at + duration]``: the fault is in force and the event is judged on its ``slo``;
    its recovery is judged from the span's end. A kill acts once and is not in force afterwards, so its
    duration is 0: its time to recover counts from the kill itself, and its ``slo`` is judged from the kill until
    the mesh recovered (at least one second): the errors of the connections it cut."""

    kind: str
    """``delay``, ``abort``, ``kill``, ``scale`` or ``shift``: the :class:`~pytest_clover.faults.injector.Faults`
    method that injects it."""
    target: str
    """The service (delay, abort, kill, shift) or the Deployment (scale) it acts on, e.g. ``http-lb``."""
    params: dict[str, Any] = field(hash=False)
    """Keyword arguments for that method after the target (names in :data:`FAULT_PARAMS`), checked and
    normalised (a kill's ``grace`` in seconds); never scaled by ``time_scale``."""
    duration_s: float = 0.0
    """Seconds the fault stays in force before it is reverted (a scale: before scaling back); 0 for a kill."""
    mtbf_s: float | None = None
    """Random mode: the mean time between starts of this kind, in seconds; None in a fixed timeline."""
    at_s: float | None = None
    """Fixed mode: when the fault starts, seconds after the soak starts; None in random mode."""
    slo: SLOSpec | None = None
    """Objectives for while the fault is in force, each replacing the plan's of the same name (a 500 ms delay
    cannot meet a 250 ms p99); the plan's others still apply. None: the plan's ``slo`` as it is."""
    where: str = ""
    """The field path in the plan (``schedule.faults[1]``), to name it in messages."""


@dataclass(frozen=True)
class ScheduleSpec:
    """The ``schedule`` section: which faults happen when, and the rules every drawn schedule obeys."""

    mode: str
    """``random`` (kinds with an mtbf, drawn from the seed) or ``fixed`` (a timeline of ``at`` offsets)."""
    faults: tuple[FaultSpec, ...]
    """The fault kinds (random) or the timeline entries (fixed), in file order."""
    start_after_s: float = 0.0
    """Quiet warm-up before the first fault may start, in seconds (default 0): the baseline the soak compares
    its events with."""
    min_gap_s: float = 0.0
    """Seconds after each fault's end that still count as occupied (its recovery), before another may start
    when ``max_overlap`` is reached (default 0)."""
    max_overlap: int = 1
    """How many faults may be occupied (in force or inside their ``min_gap``) at once (default 1: never
    overlap, so each event is judged on its own)."""
    quiet: tuple[QuietWindow, ...] = ()
    """Spans with no fault starting or in force (e.g. a nightly backup, or a clean stretch to compare with)."""


@dataclass(frozen=True)
class SoakPlan:
    """A soak plan file, read and checked by :func:`load_plan`."""

    source: str
    """The file it was read from (``<string>`` for text given directly): named by every later error."""
    load: LoadSpec
    """The load for the whole soak."""
    slo: SLOSpec
    """The objectives for the quiet time between events, for recoveries, and for each event except those its
    fault's own ``slo`` replaces."""
    recovery: RecoverySpec
    """How fast each event must recover."""
    schedule: ScheduleSpec
    """Which faults happen when."""
    title: str = ""
    """A one-line name for the report header; empty when not given."""
    description: str = ""
    """Free text for the reader of the report; empty when not given."""
    guardrails_raw: Any = field(default=None, hash=False)
    """The ``guardrails`` section exactly as written (None when absent); :mod:`pytest_clover.soak.guardrails`
    parses it."""


@dataclass(frozen=True)
class ScheduledFault:
    """One fault event of a drawn schedule."""

    id: str
    """``f01``, ``f02``, … in start order (three digits and more when there are over 99 events)."""
    at_s: float
    """When it starts, in seconds after the soak starts (``time_scale`` applied), to the millisecond."""
    duration_s: float
    """Seconds it stays in force (``time_scale`` applied); 0 for a kill."""
    kind: str
    """``delay``, ``abort``, ``kill``, ``scale`` or ``shift``."""
    target: str
    """The service or Deployment it acts on."""
    params: dict[str, Any] = field(hash=False)
    """Keyword arguments for the ``Faults`` method after the target."""
    slo: dict[str, float] = field(default_factory=dict, hash=False)
    """The objectives the event is judged on over its span: the plan's, with those its fault's ``slo`` names
    replaced."""
    origin: str = ""
    """Which plan entry it came from (``schedule.faults[1]`` or ``schedule.timeline[3]``)."""
    postponed_s: float = 0.0
    """Seconds the overlap bound postponed it from its drawn start (random mode); 0 when it started as drawn."""

    @property
    def ends_s(self) -> float:
        """When it is reverted, in seconds after the soak starts (equal to ``at_s`` for a kill)."""
        return _ms(self.at_s + self.duration_s)


# --------------------------------------------------------------------------- durations


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _duration(value: Any, *, allow_zero: bool) -> tuple[float | None, str]:
    """Seconds, or None and what is wrong with ``value``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, f"must be a duration, {_DURATION_EXAMPLE}; got {_kind_of(value)}"
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, f"is empty; write {_DURATION_EXAMPLE}"
        if text.startswith("-"):
            return None, f"{value!r} is negative; write {_DURATION_EXAMPLE}"
        if _PLAIN_NUMBER.match(text):
            seconds = float(text)
        else:
            seconds, pos = 0.0, 0
            for part in _DURATION_PART.finditer(text):
                if part.start() != pos:
                    break
                seconds += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
                pos = part.end()
            if pos != len(text) or pos == 0:
                return None, f"{value!r} is not a duration; write {_DURATION_EXAMPLE}"
    else:
        seconds = float(value)
        if math.isnan(seconds):
            return None, f"is not a number (NaN); write {_DURATION_EXAMPLE}"
        if seconds < 0:
            return None, f"{value!r} is negative; write {_DURATION_EXAMPLE}"
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        return None, f"{value!r} is longer than a year, the longest duration pytest-clover takes"
    if seconds == 0 and not allow_zero:
        return None, f"{value!r} is zero; it must be more than 0, e.g. 30s"
    return seconds, ""


def duration_seconds(value: Any, *, allow_zero: bool = False) -> tuple[float | None, str]:
    """Seconds in ``value`` (see :func:`parse_duration`), or None and what is wrong with it, for readers that
    collect every problem before raising (the guardrails)."""
    return _duration(value, allow_zero=allow_zero)


def parse_duration(
    value: Any, *, file: str = "<argument>", field: str = "duration", obj: str = PLAN_OBJECT, allow_zero: bool = False
) -> float:
    """Seconds in ``value``: a number of seconds (``90``, ``"90"``, ``1.5``) or a duration with units (``500ms``,
    ``30s``, ``5m``, ``2h``, ``1h30m``).

    Negative, NaN, infinite, longer than a year, garbage and (unless ``allow_zero``) zero raise
    :class:`~pytest_clover.errors.ConfigError` naming ``file``, ``obj`` and ``field`` with a valid example
    (e.g. ``parse_duration("8h", file="<command line>", field="--clover-soak")``)."""
    seconds, message = _duration(value, allow_zero=allow_zero)
    if seconds is None:
        raise ConfigError.single(file, obj, field, message)
    return seconds


# --------------------------------------------------------------------------- reading a plan


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Reads one plan, tracking field paths and collecting every problem instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, PLAN_OBJECT, path, message))

    def mapping(self, value: Any, path: str, example: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping such as {example}, got {_kind_of(value)}")
            return None
        return value

    def listing(self, value: Any, path: str, example: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.error(path, f"must be a list such as {example}, got {_kind_of(value)}")
            return None
        return value

    def known(self, d: Mapping[Any, Any], path: str, allowed: Sequence[str], what: str = "field") -> bool:
        """Report every key of ``d`` not in ``allowed``, with the closest allowed one; True when all are known."""
        ok = True
        for key in d:
            if key in allowed:
                continue
            ok = False
            guess = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"did you mean {guess[0]!r}? " if guess else ""
            self.error(_join(path, str(key)), f"unknown {what} {key!r}; {hint}allowed: {', '.join(allowed)}")
        return ok

    def duration(
        self, d: Mapping[str, Any], key: str, path: str, *, allow_zero: bool, required: bool = False
    ) -> float | None:
        if d.get(key) is None:
            if required:
                self.error(_join(path, key), f"is required: {_DURATION_EXAMPLE}")
            return None
        seconds, message = _duration(d[key], allow_zero=allow_zero)
        if seconds is None:
            self.error(_join(path, key), message)
        return seconds

    def number(
        self,
        value: Any,
        path: str,
        *,
        low: float,
        high: float | None = None,
        low_inclusive: bool = False,
        example: str,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number such as {example}, got {_kind_of(value)}")
            return None
        if (
            not math.isfinite(value)
            or (value < low if low_inclusive else value <= low)
            or (high is not None and value > high)
        ):
            above = f"{'at least' if low_inclusive else 'more than'} {low:g}"
            bound = f"{above} and at most {high:g}" if high is not None else above
            self.error(path, f"{value!r} is out of range; it must be {bound}, e.g. {example}")
            return None
        return value

    def integer(self, value: Any, path: str, *, low: int, high: int | None = None, example: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be a whole number such as {example}, got {_kind_of(value)}")
            return None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"{low} or more"
            self.error(path, f"{value} is out of range; it must be {bound}")
            return None
        return value

    def text(self, value: Any, path: str, example: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"must be a non-empty string such as {example}, got {_kind_of(value)}")
            return None
        return value

    def labels(self, value: Any, path: str, example: str) -> dict[str, str] | None:
        d = self.mapping(value, path, example)
        if d is None:
            return None
        out: dict[str, str] = {}
        for key, item in d.items():
            if not isinstance(key, str) or not key or not isinstance(item, str):
                self.error(
                    _join(path, str(key)), f"must map a name to a string (quote numbers: '2'), got {_kind_of(item)}"
                )
                continue
            out[key] = item
        return out


def load_plan(path: str | os.PathLike[str]) -> SoakPlan:
    """Read and check a soak plan file; :class:`~pytest_clover.errors.ConfigError` listing every problem (file
    and field path of each) otherwise, including a missing or unreadable file and YAML that does not parse."""
    file = str(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError.single(
            file, "file", "", "no such file; check the path (e.g. faults/schedules/ci.yaml)"
        ) from None
    except IsADirectoryError:
        raise ConfigError.single(
            file, "file", "", "is a folder; give a plan file such as faults/schedules/ci.yaml"
        ) from None
    except OSError as exc:
        raise ConfigError.single(file, "file", "", f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_PLAN_BYTES:
        raise ConfigError.single(file, "file", "", f"is larger than {MAX_PLAN_BYTES // 1024} KiB: not a soak plan")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(file, "file", "", f"is not UTF-8 text (byte {exc.start}): not a soak plan") from exc
    return parse_plan(text, file=file)


def parse_plan(text: str, *, file: str = "<string>") -> SoakPlan:
    """Check a soak plan given as YAML text (see :func:`load_plan`); ``file`` names it in messages."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError.single(file, "file", "", f"not valid YAML{where}: {detail}") from exc
    except RecursionError as exc:
        raise ConfigError.single(file, "file", "", "not valid YAML: nested too deeply") from exc
    if doc is None:
        raise ConfigError.single(file, "file", "", "is empty; a soak plan has load, slo and schedule sections")
    if not isinstance(doc, dict):
        raise ConfigError.single(
            file, "file", "", f"the top level must be a mapping with load, slo and schedule, got {_kind_of(doc)}"
        )
    r = _Reader(file)
    r.known(doc, "", _TOP_FIELDS)
    for key in ("load", "slo", "schedule"):
        if doc.get(key) is None:
            r.error(key, "is required (see faults/schedules/README.md)")
    title = r.text(doc["title"], "title", "'nightly SDC soak'") if doc.get("title") is not None else None
    description = r.text(doc["description"], "description", "'…'") if doc.get("description") is not None else None
    load = _parse_load(r, doc.get("load"))
    slo = _parse_slo(r, doc.get("slo"), "slo")
    recovery = _parse_recovery(r, doc.get("recovery"))
    schedule = _parse_schedule(r, doc.get("schedule"))
    if load is None or slo is None or recovery is None or schedule is None or r.problems:
        raise ConfigError(r.problems or [Problem(file, PLAN_OBJECT, "", "cannot be used")])
    plan = SoakPlan(
        source=file,
        load=load,
        slo=slo,
        recovery=recovery,
        schedule=schedule,
        title=title or "",
        description=description or "",
        guardrails_raw=doc.get("guardrails"),
    )
    if schedule.mode == FIXED:
        # What does not depend on the soak's length or the time scale is checked now, in the file's own times.
        problems = _check_timeline(plan, _scaled_entries(plan, 1.0), time_scale=1.0, duration_s=None)
        if problems:
            raise ConfigError(problems)
    return plan


def _parse_load(r: _Reader, raw: Any) -> LoadSpec | None:
    if raw is None:
        return None
    d = r.mapping(raw, "load", "{rate: 500}")
    if d is None:
        return None
    r.known(d, "load", _LOAD_FIELDS)
    if d.get("rate") is None:
        r.error("load.rate", "is required: requests per second, e.g. 500")
        return None
    rate = r.number(d["rate"], "load.rate", low=0, high=1_000_000, example="500")
    return None if rate is None else LoadSpec(rate=float(rate))


def _parse_slo(r: _Reader, raw: Any, path: str) -> SLOSpec | None:
    if raw is None:
        return None
    d = r.mapping(raw, path, "{p99_ms: 250, max_error_rate: 0.01}")
    if d is None:
        return None
    names = tuple(METRICS)
    r.known(d, path, names, what="objective")
    values: dict[str, float] = {}
    for name in names:
        if d.get(name) is None:
            continue
        where = _join(path, name)
        value: float | None
        if name == "max_error_rate":
            value = r.number(d[name], where, low=0, high=1, low_inclusive=True, example="0.01 (1 %)")
        elif name == "min_throughput_rps":
            value = r.number(d[name], where, low=0, example="450")
        else:
            value = r.number(d[name], where, low=0, example="250")
        if value is not None:
            values[name] = float(value)
    if not any(name in d for name in names):
        r.error(path, f"gives no objective; give at least one of {', '.join(names)}")
        return None
    return SLOSpec(**values)


def _parse_recovery(r: _Reader, raw: Any) -> RecoverySpec | None:
    if raw is None:
        return RecoverySpec()
    d = r.mapping(raw, "recovery", "{within_s: 30, windows: 3}")
    if d is None:
        return None
    r.known(d, "recovery", _RECOVERY_FIELDS)
    within = r.duration(d, "within_s", "recovery", allow_zero=True)
    windows = (
        r.integer(d["windows"], "recovery.windows", low=1, high=3600, example="3")
        if d.get("windows") is not None
        else RecoverySpec.windows
    )
    if windows is None:
        return None
    return RecoverySpec(within_s=RecoverySpec.within_s if within is None else within, windows=windows)


def _parse_schedule(r: _Reader, raw: Any) -> ScheduleSpec | None:
    if raw is None:
        return None
    d = r.mapping(raw, "schedule", "{mode: random, faults: [...]}")
    if d is None:
        return None
    r.known(d, "schedule", _SCHEDULE_FIELDS)
    mode = d.get("mode")
    if mode is None:
        mode = FIXED if d.get("timeline") is not None and d.get("faults") is None else RANDOM
    elif mode not in (RANDOM, FIXED):
        r.error("schedule.mode", f"must be random or fixed, got {_kind_of(mode)}")
        return None
    start_after = r.duration(d, "start_after", "schedule", allow_zero=True)
    min_gap = r.duration(d, "min_gap", "schedule", allow_zero=True)
    max_overlap = (
        r.integer(d["max_overlap"], "schedule.max_overlap", low=1, high=MAX_EVENTS, example="1 (never overlap)")
        if d.get("max_overlap") is not None
        else 1
    )
    quiet = _parse_quiet(r, d.get("quiet"))
    wanted, other = ("faults", "timeline") if mode == RANDOM else ("timeline", "faults")
    if d.get(other) is not None:
        hint = "a timeline of fixed offsets needs mode: fixed" if other == "timeline" else "mode: fixed takes timeline"
        r.error(_join("schedule", other), f"is not used in mode: {mode} ({hint}); remove it or change the mode")
    entries: list[FaultSpec] = []
    if d.get(wanted) is None:
        example = "[{kind: kill, target: clover-server, mtbf: 5m}]" if mode == RANDOM else "[{at: 2m, kind: ...}]"
        r.error(_join("schedule", wanted), f"is required in mode: {mode}, e.g. {example}")
    else:
        items = r.listing(d[wanted], _join("schedule", wanted), "[{kind: delay, target: http-lb, ...}]")
        if items is not None and not items:
            r.error(_join("schedule", wanted), "is empty; give at least one fault")
        for i, item in enumerate(items or []):
            spec = _parse_fault(r, item, f"schedule.{wanted}[{i}]", mode)
            if spec is not None:
                entries.append(spec)
    if max_overlap is None or quiet is None:
        return None
    return ScheduleSpec(
        mode=mode,
        faults=tuple(entries),
        start_after_s=start_after or 0.0,
        min_gap_s=min_gap or 0.0,
        max_overlap=max_overlap,
        quiet=quiet,
    )


def _parse_quiet(r: _Reader, raw: Any) -> tuple[QuietWindow, ...] | None:
    if raw is None:
        return ()
    items = r.listing(raw, "schedule.quiet", "[{from: 55m, to: 65m}]")
    if items is None:
        return None
    windows: list[QuietWindow] = []
    for i, item in enumerate(items):
        path = f"schedule.quiet[{i}]"
        d = r.mapping(item, path, "{from: 55m, to: 65m}")
        if d is None:
            continue
        r.known(d, path, _QUIET_FIELDS)
        start = r.duration(d, "from", path, allow_zero=True, required=True)
        end = r.duration(d, "to", path, allow_zero=False, required=True)
        if start is None or end is None:
            continue
        if end <= start:
            r.error(path, f"ends ({d['to']!r}) before it begins ({d['from']!r}); write from: the earlier offset")
            continue
        windows.append(QuietWindow(from_s=start, to_s=end, where=path))
    return tuple(windows)


def _parse_fault(r: _Reader, raw: Any, path: str, mode: str) -> FaultSpec | None:
    example = "{kind: delay, target: http-lb, mtbf: 5m, duration: 30s}"
    d = r.mapping(raw, path, example)
    if d is None:
        return None
    fields, other = (_FAULT_FIELDS, "at") if mode == RANDOM else (_TIMELINE_FIELDS, "mtbf")
    if other in d:
        # The other mode's key, named as such rather than as an unknown field.
        r.error(
            _join(path, other),
            "is for fixed timelines (schedule.timeline); a random fault kind has an mtbf"
            if other == "at"
            else "is for random schedules (schedule.faults); a timeline entry has an at",
        )
    r.known({key: value for key, value in d.items() if key != other}, path, fields)
    kind = d.get("kind")
    if kind is None:
        r.error(_join(path, "kind"), f"is required: one of {', '.join(FAULT_PARAMS)}")
    elif kind not in FAULT_PARAMS:
        guess = difflib.get_close_matches(str(kind), list(FAULT_PARAMS), n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        r.error(_join(path, "kind"), f"unknown fault kind {kind!r}; {hint}kinds: {', '.join(FAULT_PARAMS)}")
        kind = None
    target = None
    if d.get("target") is None:
        r.error(_join(path, "target"), "is required: the service (or, for scale, the Deployment), e.g. http-lb")
    elif not isinstance(d["target"], str) or not _NAME.match(d["target"]):
        r.error(
            _join(path, "target"),
            f"must be a Kubernetes name (lower-case letters, digits, '-'), e.g. http-lb; got {_kind_of(d['target'])}",
        )
    else:
        target = d["target"]
    mtbf = at = None
    if mode == RANDOM:
        mtbf = r.duration(d, "mtbf", path, allow_zero=False, required=True)
    else:
        at = r.duration(d, "at", path, allow_zero=True, required=True)
    duration = 0.0
    if kind in INSTANT_KINDS:
        if "duration" in d:
            r.error(
                _join(path, "duration"),
                f"a {kind} is instantaneous and takes no duration: its event is judged from the {kind} on "
                "(recovery.within_s); remove it",
            )
    elif kind is not None:
        duration = r.duration(d, "duration", path, allow_zero=False, required=True) or 0.0
    params = _parse_params(r, kind, d.get("params"), _join(path, "params")) if kind is not None else None
    slo = None
    if d.get("slo") is not None:
        # A kill's own slo covers its span too: from the kill until the mesh recovered (at least one second).
        slo = _parse_slo(r, d["slo"], _join(path, "slo"))
    if kind is None or target is None or params is None or (mtbf is None and at is None):
        return None
    return FaultSpec(
        kind=kind, target=target, params=params, duration_s=duration, mtbf_s=mtbf, at_s=at, slo=slo, where=path
    )


def _parse_params(r: _Reader, kind: str, raw: Any, path: str) -> dict[str, Any] | None:
    if raw is None:
        raw = {}
    d = r.mapping(raw, path, "{delay: 500ms, percent: 50}" if kind == "delay" else "{count: 1}")
    if d is None:
        return None
    allowed = FAULT_PARAMS[kind]
    ok = r.known(d, path, allowed, what=f"{kind} parameter")
    for name in _REQUIRED_PARAMS.get(kind, ()):
        if d.get(name) is None:
            ok = False
            r.error(_join(path, name), f"is required for a {kind}, e.g. {_PARAM_EXAMPLES[name]}")
    out: dict[str, Any] = {}
    for name in allowed:
        if d.get(name) is None:
            continue
        value = _check_param(r, kind, name, d[name], _join(path, name))
        if value is None:
            ok = False
        else:
            out[name] = value
    if kind == "kill" and "count" in out and "percent" in out:
        r.error(path, "give count or percent of the pods to kill, not both")
        ok = False
    return out if ok else None


_PARAM_EXAMPLES = {
    "delay": "500ms",
    "percent": "50",
    "headers": "{end-user: jason}",
    "subset": "v2",
    "source_labels": "{app: http-lb, version: v2}",
    "status": "503",
    "count": "1",
    "grace": "5s",
    "replicas": "1",
    "weights": "{v1: 90, v2: 10}",
}


def _check_param(r: _Reader, kind: str, name: str, value: Any, path: str) -> Any:
    """The parameter's value as the ``Faults`` method takes it, or None (and a problem) when it is wrong."""
    example = _PARAM_EXAMPLES[name]
    if name == "delay":
        # Passed to Istio's fixedDelay as written: it needs a unit and whole milliseconds.
        if not isinstance(value, str):
            r.error(path, f"must be a duration with a unit, e.g. {example}; got {_kind_of(value)}")
            return None
        seconds, message = _duration(value, allow_zero=False)
        if seconds is None or _PLAIN_NUMBER.match(value.strip()):
            r.error(path, message or f"{value!r} needs a unit, e.g. {example}")
            return None
        if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
            r.error(path, f"{value!r} has sub-millisecond precision; Istio takes whole milliseconds, e.g. {example}")
            return None
        return value.strip()
    if name == "percent":
        return r.number(value, path, low=0, high=100, example=example)
    if name in ("headers", "source_labels"):
        return r.labels(value, path, example)
    if name == "subset":
        return r.text(value, path, example)
    if name == "status":
        return r.integer(value, path, low=200, high=599, example=example)
    if name == "count":
        return r.integer(value, path, low=1, example=example)
    if name == "grace":
        seconds, message = _duration(value, allow_zero=True)
        if seconds is None:
            r.error(path, message)
        return seconds
    if name == "replicas":
        return r.integer(value, path, low=0, high=10_000, example=example)
    if name == "weights":
        d = r.mapping(value, path, example)
        if d is None:
            return None
        weights: dict[str, int] = {}
        for subset, weight in d.items():
            w = r.integer(weight, _join(path, str(subset)), low=0, high=100, example="90")
            if w is not None:
                weights[str(subset)] = w
        if len(weights) != len(d):
            return None
        if sum(weights.values()) != 100:
            r.error(path, f"must add up to 100 (Istio's rule), got {sum(weights.values())}; e.g. {example}")
            return None
        return weights
    raise AssertionError(f"no check for the {kind} parameter {name}")  # FAULT_PARAMS and this function disagree


# --------------------------------------------------------------------------- the rules every schedule obeys


def _effective_gap(plan: SoakPlan, time_scale: float) -> float:
    """The scaled ``min_gap``, never below what it takes to judge a recovery when the plan's own gap covered it."""
    gap = plan.schedule.min_gap_s
    return _ms(max(gap * time_scale, min(gap, plan.recovery.observation_s)))


def _in_quiet(start: float, end: float, quiet: Sequence[QuietWindow]) -> QuietWindow | None:
    """The first quiet window a fault in force over ``[start, end]`` (an instant when equal) falls in, if any."""
    for window in quiet:
        if start < window.to_s and (end > window.from_s or start >= window.from_s):
            return window
    return None


class _Occupancy:
    """Placed events as half-open ``[start, start + length)`` spans (the fault plus its gap), answering "would one
    more span here make more than ``limit`` occupied at once?" and "where to try next?" without scanning them all.

    Besides the spans it keeps where ``limit`` are already occupied ("full"), as sorted disjoint intervals with
    touching ones merged: a span fits where it meets no full interval, and a run of back-to-back events (a plan
    that asks for more faults than fit) is one interval to jump over, not one step per event."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.starts: list[float] = []
        self.spans: list[tuple[float, float, str]] = []
        self.longest = 0.0
        self.full_starts: list[float] = []
        self.full_ends: list[float] = []

    def add(self, start: float, end: float, label: str) -> None:
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.spans.insert(i, (start, end, label))
        self.longest = max(self.longest, end - start)
        near = self.overlapping(start, end)
        if len(near) < self.limit:
            return
        # How many are occupied is constant between consecutive span edges: mark the stretches that reach the limit.
        edges = sorted({start, end} | {edge for s in near for edge in (s[0], s[1]) if start < edge < end})
        for low, high in itertools.pairwise(edges):
            if sum(1 for s in near if s[0] <= low < s[1]) >= self.limit:
                self._mark_full(low, high)

    def _mark_full(self, low: float, high: float) -> None:
        first = bisect.bisect_left(self.full_ends, low)  # the first full interval ending at or after `low`
        last = bisect.bisect_right(self.full_starts, high)  # past the last one starting at or before `high`
        if first < last:
            low, high = min(low, self.full_starts[first]), max(high, self.full_ends[last - 1])
        self.full_starts[first:last] = [low]
        self.full_ends[first:last] = [high]

    def overlapping(self, start: float, end: float) -> list[tuple[float, float, str]]:
        """The placed spans that share some time with ``[start, end)``."""
        low = bisect.bisect_right(self.starts, start - self.longest)
        high = bisect.bisect_left(self.starts, end)
        return [s for s in self.spans[max(0, low - 1) : high] if s[0] < end and start < s[1]]

    def _blocking(self, start: float, end: float) -> int | None:
        i = bisect.bisect_right(self.full_ends, start)
        return i if i < len(self.full_starts) and self.full_starts[i] < end else None

    def fits(self, start: float, end: float) -> bool:
        """Whether one more span ``[start, end)`` keeps at most ``limit`` occupied at every moment."""
        return self._blocking(start, end) is None

    def next_try(self, start: float, end: float) -> float | None:
        """Where to try next after ``[start, end)`` did not fit: the end of the first full stretch in its way."""
        i = self._blocking(start, end)
        return None if i is None else self.full_ends[i]


def _span_end(at: float, duration: float, gap: float) -> float:
    # An occupied span of zero length (a kill with no gap) would never collide, not even with a kill at the very
    # same millisecond: give every span at least one millisecond.
    return max(_ms(at + duration + gap), _ms(at + TIME_RESOLUTION_S))


def _scaled_entries(plan: SoakPlan, time_scale: float) -> list[tuple[float, float, int, FaultSpec]]:
    """Fixed mode: (start, duration, file index, entry), scaled and sorted by start, then file order."""
    rows = [
        (_ms((spec.at_s or 0.0) * time_scale), _ms(spec.duration_s * time_scale), i, spec)
        for i, spec in enumerate(plan.schedule.faults)
    ]
    return sorted(rows, key=lambda row: (row[0], row[2]))


def _clock(seconds: float) -> str:
    """``1h02m03s``-style text for an offset, as short as it can be."""
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = int(seconds)
    fraction = f"{seconds - whole:.3f}"[1:].rstrip("0").rstrip(".")
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes:02d}m" if hours else f"{minutes}m")
    return text + (f"{secs:02d}{fraction}s" if secs or fraction else "")


def _check_timeline(
    plan: SoakPlan,
    entries: Sequence[tuple[float, float, int, FaultSpec]],
    *,
    time_scale: float,
    duration_s: float | None,
) -> list[Problem]:
    """Every rule a fixed timeline breaks, each naming its entry; ``duration_s`` None skips the end-of-soak rule."""
    found: list[tuple[int, Problem]] = []
    schedule = plan.schedule
    order = {spec.where: i for i, spec in enumerate(schedule.faults)}

    def error(spec: FaultSpec, message: str) -> None:
        found.append((order[spec.where], Problem(plan.source, PLAN_OBJECT, spec.where, message)))

    start_after = _ms(schedule.start_after_s * time_scale)
    quiet = _scaled_quiet(plan, time_scale)
    gap = _effective_gap(plan, time_scale)
    occupancy = _Occupancy(schedule.max_overlap)
    scale_note = f" (at time scale {time_scale:g})" if time_scale != 1.0 else ""
    for at, duration, _, spec in entries:
        if at < start_after:
            error(spec, f"starts at {_clock(at)}, before schedule.start_after ({_clock(start_after)}){scale_note}")
        window = _in_quiet(at, at + duration, quiet)
        if window is not None:
            error(
                spec,
                f"is in force from {_clock(at)} to {_clock(at + duration)}, inside the quiet window {window.where} "
                f"({_clock(window.from_s)} to {_clock(window.to_s)}){scale_note}",
            )
        end = _span_end(at, duration, gap)
        if not occupancy.fits(at, end):
            busy = ", ".join(f"{label} until {_clock(e)}" for _, e, label in occupancy.overlapping(at, end))
            error(
                spec,
                f"starts at {_clock(at)} while earlier faults are in force or inside their min_gap ({busy}); "
                f"schedule.max_overlap allows {schedule.max_overlap} at once{scale_note}",
            )
        occupancy.add(at, end, spec.where)
        if duration_s is not None and at + duration + plan.recovery.observation_s > duration_s:
            error(
                spec,
                f"ends at {_clock(at + duration)}; with the {_clock(plan.recovery.observation_s)} it takes to judge "
                f"its recovery (recovery.within_s + windows) that passes the soak's end ({_clock(duration_s)})"
                f"{scale_note}",
            )
    # Checked in time order, reported in file order: the reader fixes the file top to bottom.
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


def _scaled_quiet(plan: SoakPlan, time_scale: float) -> list[QuietWindow]:
    return [
        QuietWindow(from_s=_ms(w.from_s * time_scale), to_s=_ms(w.to_s * time_scale), where=w.where)
        for w in plan.schedule.quiet
    ]


# --------------------------------------------------------------------------- drawing a schedule


def draw_schedule(plan: SoakPlan, *, duration_s: float, seed: int, time_scale: float = 1.0) -> list[ScheduledFault]:
    """The fault events of a soak of ``duration_s`` seconds (wall time, not scaled), in start order.

    Deterministic for (plan, duration_s, seed, time_scale): the same seed always gives the same schedule. The
    rules (drops, postponements) are in this module's docstring. A fixed timeline that breaks one at this
    length and scale raises :class:`~pytest_clover.errors.ConfigError` naming each entry."""
    for name, value in (("duration_s", duration_s), ("time_scale", time_scale)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError.single(plan.source, "soak run", name, f"must be a number more than 0, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError.single(plan.source, "soak run", "seed", f"must be a whole number, got {_kind_of(seed)}")
    if plan.schedule.mode == FIXED:
        return _fixed_schedule(plan, duration_s, time_scale)
    return _random_schedule(plan, duration_s, seed, time_scale)


def _numbered(plan: SoakPlan, placed: Iterable[tuple[float, int, float, float, FaultSpec]]) -> list[ScheduledFault]:
    """ScheduledFaults with ids in start order from (start, plan index, duration, postponed, spec) rows."""
    rows = sorted(placed, key=lambda row: (row[0], row[1]))
    width = max(2, len(str(len(rows))))
    return [
        ScheduledFault(
            id=f"f{n:0{width}d}",
            at_s=at,
            duration_s=duration,
            kind=spec.kind,
            target=spec.target,
            params=dict(spec.params),
            slo={**plan.slo.objectives(), **(spec.slo.objectives() if spec.slo else {})},
            origin=spec.where,
            postponed_s=_ms(postponed),
        )
        for n, (at, _, duration, postponed, spec) in enumerate(rows, start=1)
    ]


def _fixed_schedule(plan: SoakPlan, duration_s: float, time_scale: float) -> list[ScheduledFault]:
    entries = _scaled_entries(plan, time_scale)
    problems = _check_timeline(plan, entries, time_scale=time_scale, duration_s=duration_s)
    if problems:
        raise ConfigError(problems)
    return _numbered(plan, ((at, i, duration, 0.0, spec) for at, duration, i, spec in entries))


def _arrivals(plan: SoakPlan, duration_s: float, seed: int, time_scale: float) -> list[tuple[float, int]]:
    """Every kind's drawn start times, as (start, kind index), in time order."""
    start_after = plan.schedule.start_after_s * time_scale
    arrivals: list[tuple[float, int]] = []
    for index, spec in enumerate(plan.schedule.faults):
        # A stream per kind, seeded from (seed, index) through a string (hashed with SHA-512, the same on every
        # platform and Python version): adding a kind at the end leaves the earlier kinds' draws as they were.
        rng = random.Random(f"pytest-clover soak schedule {seed} {index}")
        rate = 1.0 / ((spec.mtbf_s or 0.0) * time_scale)
        t = start_after
        while True:
            t += rng.expovariate(rate)
            if t >= duration_s:
                break
            arrivals.append((_ms(t), index))
            if len(arrivals) > MAX_EVENTS:
                raise ConfigError.single(
                    plan.source,
                    PLAN_OBJECT,
                    f"{spec.where}.mtbf",
                    f"asks for more than {MAX_EVENTS} fault events in {_clock(duration_s)} (mtbf "
                    f"{_clock(spec.mtbf_s or 0.0)} at time scale {time_scale:g}); give a longer mtbf",
                )
    arrivals.sort()
    return arrivals


def _random_schedule(plan: SoakPlan, duration_s: float, seed: int, time_scale: float) -> list[ScheduledFault]:
    schedule = plan.schedule
    quiet = _scaled_quiet(plan, time_scale)
    gap = _effective_gap(plan, time_scale)
    observation = plan.recovery.observation_s
    occupancy = _Occupancy(schedule.max_overlap)
    placed: list[tuple[float, int, float, float, FaultSpec]] = []
    for drawn, index in _arrivals(plan, duration_s, seed, time_scale):
        spec = schedule.faults[index]
        duration = _ms(spec.duration_s * time_scale)
        if _in_quiet(drawn, drawn + duration, quiet) is not None:
            continue  # a quiet window thins the draw
        at: float | None = drawn
        while at is not None:
            if at + duration + observation > duration_s:
                at = None  # no longer fits before the end: dropped
                break
            window = _in_quiet(at, at + duration, quiet)
            if window is not None:
                at = window.to_s  # postponed past a quiet window too
                continue
            end = _span_end(at, duration, gap)
            if occupancy.fits(at, end):
                break
            at = occupancy.next_try(at, end)
        if at is None:
            continue
        occupancy.add(at, _span_end(at, duration, gap), spec.where)
        placed.append((at, index, duration, at - drawn, spec))
    return _numbered(plan, placed)


# --------------------------------------------------------------------------- showing and saving


def _params_text(params: Mapping[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        if isinstance(value, Mapping):
            value = ",".join(f"{k}:{v}" for k, v in value.items())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{name}={value}")
    return " ".join(parts) or "—"


def describe(schedule: Sequence[ScheduledFault]) -> str:
    """A compact table of the events (id, start, kind, target, duration, params) for the terminal and the report
    header; offsets are from the soak's start."""
    if not schedule:
        return "no fault events"
    header = ("id", "at", "kind", "target", "duration", "params")
    rows = [
        (
            event.id,
            _clock(event.at_s),
            event.kind,
            event.target,
            "instant" if event.duration_s == 0 else _clock(event.duration_s),
            _params_text(event.params) + (f" (postponed {_clock(event.postponed_s)})" if event.postponed_s else ""),
        )
        for event in schedule
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    return "\n".join(lines)


_JSON_FIELDS = ("id", "at_s", "duration_s", "ends_s", "kind", "target", "params", "slo", "origin", "postponed_s")


def schedule_to_json(schedule: Sequence[ScheduledFault]) -> list[dict[str, Any]]:
    """The events as plain JSON-ready dicts (``ends_s`` included for readers that do not recompute it)."""
    return [
        {
            "id": e.id,
            "at_s": e.at_s,
            "duration_s": e.duration_s,
            "ends_s": e.ends_s,
            "kind": e.kind,
            "target": e.target,
            "params": dict(e.params),
            "slo": dict(e.slo),
            "origin": e.origin,
            "postponed_s": e.postponed_s,
        }
        for e in schedule
    ]


def schedule_from_json(rows: Any, *, file: str = "<json>") -> list[ScheduledFault]:
    """Events saved by :func:`schedule_to_json`; :class:`~pytest_clover.errors.ReportDataError` naming ``file``
    and the entry when they are not what it writes."""

    def bad(where: str, message: str) -> ReportDataError:
        return ReportDataError(f"{file}: {where}: {message}; the schedule cannot be read back")

    if not isinstance(rows, list):
        raise bad("schedule", f"must be a list of events, got {_kind_of(rows)}")
    events: list[ScheduledFault] = []
    for i, row in enumerate(rows):
        where = f"schedule[{i}]"
        if not isinstance(row, dict):
            raise bad(where, f"must be a mapping, got {_kind_of(row)}")
        missing = [key for key in _JSON_FIELDS if key not in row]
        if missing:
            raise bad(where, f"has no {', '.join(missing)}")
        for key in ("id", "kind", "target", "origin"):
            if not isinstance(row[key], str):
                raise bad(f"{where}.{key}", f"must be a string, got {_kind_of(row[key])}")
        for key in ("at_s", "duration_s", "ends_s", "postponed_s"):
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise bad(f"{where}.{key}", f"must be a number of seconds, 0 or more, got {_kind_of(value)}")
        if row["kind"] not in FAULT_PARAMS:
            raise bad(f"{where}.kind", f"unknown fault kind {row['kind']!r}")
        for key in ("params", "slo"):
            if not isinstance(row[key], dict):
                raise bad(f"{where}.{key}", f"must be a mapping, got {_kind_of(row[key])}")
        for name, value in row["slo"].items():
            if name not in METRICS or isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(f"{where}.slo.{name}", f"must be one of {', '.join(METRICS)} with a number")
        event = ScheduledFault(
            id=row["id"],
            at_s=float(row["at_s"]),
            duration_s=float(row["duration_s"]),
            kind=row["kind"],
            target=row["target"],
            params=dict(row["params"]),
            slo={str(k): float(v) for k, v in row["slo"].items()},
            origin=row["origin"],
            postponed_s=float(row["postponed_s"]),
        )
        if abs(event.ends_s - float(row["ends_s"])) > TIME_RESOLUTION_S:
            raise bad(f"{where}.ends_s", f"is {row['ends_s']} but at_s + duration_s is {event.ends_s}")
        events.append(event)
    return events
