"""Guardrails of a soak: stop conditions judged on the stream of final 1-second load windows.

A soak plan's ``guardrails:`` mapping names what stops a run (AWS FIS calls them *stop conditions*); when one
trips, the soak runner stops the soak, reverts every fault and reports which guardrail tripped, when, and the
numbers. Three kinds, anchored in the SRE error-budget practice (Google SRE workbook, "Alerting on SLOs"):

``error_budget``
    The run's own budget: with an SLO target of 0.99, 1 % of the requests the run has sent so far may fail.
    *Consumed* is ``errors / (requests × (1 − slo_target))`` over every window seen; it trips when it reaches
    ``stop_at`` (1.0: exhausted). The budget grows with the traffic, so consumption can fall again while the
    mesh is healthy; :meth:`Guardrails.burn_down` keeps its history (remaining = 1 − consumed) for the plot.
``burn_rate``
    Multi-window burn-rate rules. The burn rate over a lookback is its error rate divided by ``1 − slo_target``
    (1 = spending the budget exactly as fast as it is earned). A rule ``{long: 1h, short: 5m, factor: 14.4}``
    trips when the burn rate over the last hour *and* over the last five minutes are both over 14.4: the long
    lookback says the burn is significant, the short one that it is still going on.
``p99_ms``
    The p99 of ``windows`` consecutive windows over ``above`` ms.

``min_requests`` (default :data:`DEFAULT_MIN_REQUESTS`) arms every guardrail only once that many requests were
seen: one error in the first five requests is a burn rate of 20× and means nothing.

Decisions, and why:

* **Time scale.** Lookbacks are durations of the plan's time and are multiplied by the run's ``time_scale``
  (CI compresses an 8-h night into minutes: ``long: 1h`` at 0.01 looks back 36 s). ``p99_ms.windows`` is a
  count of windows, which are 1 s of real time whatever the scale, so it is not scaled.
* **A lookback** holds the windows that *started* within it, measured back from the end of the newest window
  seen (50 ms of slack for float boundaries), and always the newest window itself (a lookback scaled below 1 s
  is that window alone). Windows are short at phase boundaries (``load/result.py``), so lookbacks are spans of
  time, never counts of windows.
* **A young run** (younger than a rule's ``long``) is judged over what it has. That is how the workbook's
  rules behave at startup: they are ratios of Prometheus ``rate()``s, and the ratio of two rates over ``[1h]``
  of series five minutes old is their ratio over those five minutes. A soak that burns at 20× in its first minutes is
  stopped then, not an hour later; ``min_requests`` keeps the first handful of requests from tripping it.
* **Windows without requests** (p99 NaN) neither count as high-p99 nor break a streak. ``load/result.py`` counts
  every request *sent*, with its outcome — a connection error or a timeout is status 0, an error, with its
  latency in the histogram — so an outage where nothing answers shows as errors (and high latencies), never as
  an empty window. An empty window means nothing was sent in that span (a gap of a few ms between phases, a
  stalled generator): no evidence about latency either way.
* **Order.** Windows should come in time order (final windows, as the load result gets them). One that comes
  late still counts in the totals (the budget stays exact) and, in the lookbacks, where it arrived (as if it had
  been sent just after the window before it).
* **Several at once.** When more than one guardrail trips on the same window, the first in the order
  error_budget, burn_rate (its rules in plan order), p99_ms is the one reported; :meth:`Guardrails.state` has
  every number.
* **After a trip** the trip is latched (``observe`` returns it from then on) and the numbers keep counting the
  windows still coming (those in flight while the soak stops), so the report covers the whole run.

Cost: :meth:`Guardrails.observe` is O(1) amortised per window (a pointer per lookback walks forward over a
prefix-sum buffer), and memory is bounded by the longest lookback: one ``(start, requests before, errors
before)`` tuple per window it holds (the list behind them is compacted once its dead front is as long as its live
part, so at most about twice that), plus at most :data:`BURN_DOWN_POINTS` burn-down points: every window is a
point until the bound is reached, then every other point is dropped and only every 2nd, 4th, … window is kept,
so the points stay evenly spaced, each exact at its time, and the latest window is always the last point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, Problem
from .schedule import duration_seconds

__all__ = [
    "BURN_DOWN_POINTS",
    "DEFAULT_MIN_REQUESTS",
    "GUARDRAIL_NAMES",
    "BurnRateRule",
    "BurnRateSpec",
    "ErrorBudgetSpec",
    "GuardrailSpec",
    "Guardrails",
    "P99Spec",
    "Trip",
    "parse_guardrails",
]

GUARDRAIL_NAMES = ("error_budget", "burn_rate", "p99_ms")
"""The kinds of guardrail, in the order they are checked on each window (the first that trips is reported)."""
DEFAULT_MIN_REQUESTS = 100
"""Requests a run must have seen before any guardrail can trip, when the plan does not say."""
BURN_DOWN_POINTS = 2000
"""At most this many points in :meth:`Guardrails.burn_down`, whatever the duration (an 8-h night has 28,800
windows)."""
_EDGE_SLACK_S = 0.05
"""A window starting this little before a lookback's start is still in it: window boundaries are floats."""
_PLAN_OBJECT = "soak plan"
"""What a :class:`~pytest_clover.errors.Problem` names as the object: the guardrails are a section of the plan."""

_SECTION_KEYS = ("error_budget", "burn_rate", "p99_ms", "min_requests", "scope")
SCOPES = ("test", "run")
"""What a tripped guardrail stops: the soak test, or the whole pytest run."""
_BUDGET_KEYS = ("slo_target", "stop_at")
_BURN_KEYS = ("slo_target", "rules")
_RULE_KEYS = ("long", "short", "factor")
_P99_KEYS = ("above", "windows")


# --------------------------------------------------------------------------- specification


@dataclass(frozen=True)
class ErrorBudgetSpec:
    """Stop when the run has spent (a share of) its error budget."""

    slo_target: float
    """Share of requests that must succeed, 0 < slo_target < 1 (0.99: 99 %). The budget is the rest: 1 − slo_target
    of all the requests the run sent so far. No default: a plan must say what it promises."""
    stop_at: float = 1.0
    """Fraction of the budget consumed that trips it: 1.0 (the default) when the budget is exhausted, 0.5 at half
    of it; above 1 lets a run overspend before it stops."""


@dataclass(frozen=True)
class BurnRateRule:
    """One multi-window burn-rate alert: trips when the burn rate over both lookbacks is over ``factor``."""

    long_s: float
    """The long lookback, in seconds of plan time (scaled by the run's time scale): is the burn significant?"""
    short_s: float
    """The short lookback, in seconds of plan time, shorter than ``long_s``: is it still burning now?"""
    factor: float
    """Burn rate (× the rate that spends the budget exactly as it is earned) both lookbacks must be over; the
    workbook pages at 14.4 over 1 h and 5 min, and at 6 over 6 h and 30 min."""


@dataclass(frozen=True)
class BurnRateSpec:
    """Multi-window burn-rate rules; any rule that trips stops the run."""

    slo_target: float
    """Share of requests that must succeed, 0 < slo_target < 1; the burn rate is error rate / (1 − slo_target).
    Defaults to ``error_budget.slo_target`` when the plan gives that one and not this one."""
    rules: tuple[BurnRateRule, ...]
    """At least one rule, in plan order (the order they are checked in)."""


@dataclass(frozen=True)
class P99Spec:
    """Stop when the p99 latency stays over a bound for a number of consecutive windows."""

    above_ms: float
    """The bound, in ms: a window whose p99 is strictly above it is a high window."""
    windows: int
    """How many consecutive high windows trip it (≥ 1). Windows are 1 s of real time: not scaled by the time
    scale. Windows without requests are skipped: they neither count nor break the streak."""


@dataclass(frozen=True)
class GuardrailSpec:
    """Every guardrail of a soak plan, parsed and checked by :func:`parse_guardrails`; all None: no guardrail."""

    error_budget: ErrorBudgetSpec | None = None
    """The run's error budget, or None (not checked)."""
    burn_rate: BurnRateSpec | None = None
    """Multi-window burn-rate rules, or None (not checked)."""
    p99_ms: P99Spec | None = None
    """The p99 streak bound, or None (not checked)."""
    min_requests: int = DEFAULT_MIN_REQUESTS
    """Requests the run must have seen before any guardrail can trip (≥ 0; default
    :data:`DEFAULT_MIN_REQUESTS`): the first few requests are noise, one error among them a huge burn rate."""
    scope: str = "test"
    """What a trip stops: ``test`` (default: this soak; the session's other tests still run) or ``run`` (the
    whole pytest session stops after this test, as when a CI job is cancelled: later tests are not started)."""

    @property
    def empty(self) -> bool:
        """True when no guardrail is configured: nothing can stop the run."""
        return self.error_budget is None and self.burn_rate is None and self.p99_ms is None

    @property
    def slo_target(self) -> float | None:
        """The target the error budget is counted against: ``error_budget``'s, else ``burn_rate``'s, else None."""
        if self.error_budget is not None:
            return self.error_budget.slo_target
        if self.burn_rate is not None:
            return self.burn_rate.slo_target
        return None


@dataclass(frozen=True)
class Trip:
    """A guardrail that tripped: which, when, why in one line, and the numbers behind it."""

    guardrail: str
    """``error_budget``, ``burn_rate`` or ``p99_ms``."""
    at: float
    """Unix time (s) of the end of the window that tripped it."""
    reason: str
    """One line for a person, with the numbers: what went over what."""
    numbers: dict[str, Any]
    """The numbers behind the reason, JSON-serialisable (NaN as None), for the report and the checkpoint."""

    def as_dict(self) -> dict[str, Any]:
        """The trip as a JSON-serialisable dict."""
        return {"guardrail": self.guardrail, "at": self.at, "reason": self.reason, "numbers": dict(self.numbers)}


# --------------------------------------------------------------------------- parsing


class _Problems:
    """Every problem found in a ``guardrails:`` mapping, each with its field path; raised together at the end."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.found: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.found.append(Problem(self.file, _PLAN_OBJECT, path, message))

    def mapping(self, value: Any, path: str, keys: tuple[str, ...]) -> Mapping[str, Any] | None:
        """``value`` if it is a mapping (its unknown keys reported), else None (reported)."""
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping with keys {', '.join(keys)}, not {_kind(value)}")
            return None
        for key in value:
            if key not in keys:
                self.add(
                    f"{path}.{key}", f"unknown key {key!r}: the keys here are {', '.join(keys)} (check the spelling)"
                )
        return value

    def number(self, value: Any, path: str, *, help_text: str) -> float | None:
        """``value`` as a finite float, or None (reported with ``help_text``)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(path, f"{help_text}, not {value!r}")
            return None
        return float(value)

    def slo_target(self, value: Any, path: str) -> float | None:
        number = self.number(value, path, help_text="must be a number between 0 and 1 (0.99 for 99 %)")
        if number is not None and not 0.0 < number < 1.0:
            self.add(path, f"must be between 0 and 1, both excluded (0.99 for 99 %), not {value!r}")
            return None
        return number

    def positive(self, value: Any, path: str, what: str) -> float | None:
        number = self.number(value, path, help_text=f"must be a number greater than 0 ({what})")
        if number is not None and number <= 0:
            self.add(path, f"must be greater than 0 ({what}), not {value!r}")
            return None
        return number

    def count(self, value: Any, path: str, *, minimum: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(path, f"must be a whole number ≥ {minimum} ({what}), not {value!r}")
            return None
        return value

    def duration(self, value: Any, path: str) -> float | None:
        # The plan's one duration syntax (schedule.parse_duration): 30s, 5m, 1h30m, 500ms, or seconds.
        seconds, problem = duration_seconds(value)
        if seconds is None:
            self.add(path, problem)
        return seconds


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def parse_guardrails(raw: Mapping[str, Any] | None, *, file: str) -> GuardrailSpec:
    """The guardrails of a soak plan's ``guardrails:`` mapping (None or missing: no guardrail).

    ``file`` is the plan's path, named in every problem. Raises :class:`~pytest_clover.errors.ConfigError`
    listing every problem found, each with its field path (``guardrails.burn_rate.rules[0].long``) and what to do.
    """
    if raw is None:
        return GuardrailSpec()
    problems = _Problems(file)
    top = problems.mapping(raw, "guardrails", _SECTION_KEYS)
    if top is None:
        raise ConfigError(problems.found)

    budget = _parse_budget(top["error_budget"], problems) if "error_budget" in top else None
    burn = None
    if "burn_rate" in top:
        # error_budget's target stands in for a missing one; when that one is itself wrong, it was reported.
        raw_budget = top.get("error_budget")
        budget_has_target = isinstance(raw_budget, Mapping) and "slo_target" in raw_budget
        fallback = budget.slo_target if budget is not None else None
        burn = _parse_burn_rate(top["burn_rate"], problems, fallback_target=fallback, fallback_given=budget_has_target)
    p99 = _parse_p99(top["p99_ms"], problems) if "p99_ms" in top else None
    min_requests: int | None = DEFAULT_MIN_REQUESTS
    if "min_requests" in top:
        min_requests = problems.count(
            top["min_requests"], "guardrails.min_requests", minimum=0, what="requests seen before any guardrail trips"
        )
    scope = top.get("scope", "test")
    if scope not in SCOPES:
        problems.add("guardrails.scope", f"must be one of {', '.join(SCOPES)} (what a trip stops), not {scope!r}")
    if problems.found:
        raise ConfigError(problems.found)
    assert min_requests is not None  # every None above was reported
    return GuardrailSpec(error_budget=budget, burn_rate=burn, p99_ms=p99, min_requests=min_requests, scope=scope)


def _parse_budget(value: Any, problems: _Problems) -> ErrorBudgetSpec | None:
    path = "guardrails.error_budget"
    section = problems.mapping(value, path, _BUDGET_KEYS)
    if section is None:
        return None
    if "slo_target" not in section:
        problems.add(f"{path}.slo_target", "missing: give the share of requests that must succeed (0.99 for 99 %)")
        target = None
    else:
        target = problems.slo_target(section["slo_target"], f"{path}.slo_target")
    stop_at: float | None = 1.0
    if "stop_at" in section:
        stop_at = problems.positive(
            section["stop_at"], f"{path}.stop_at", "the fraction of the budget, 1.0 = all of it"
        )
    if target is None or stop_at is None:
        return None
    return ErrorBudgetSpec(slo_target=target, stop_at=stop_at)


def _parse_burn_rate(
    value: Any, problems: _Problems, *, fallback_target: float | None, fallback_given: bool
) -> BurnRateSpec | None:
    path = "guardrails.burn_rate"
    section = problems.mapping(value, path, _BURN_KEYS)
    if section is None:
        return None
    target: float | None = fallback_target
    if "slo_target" in section:
        target = problems.slo_target(section["slo_target"], f"{path}.slo_target")
    elif not fallback_given:
        problems.add(
            f"{path}.slo_target",
            "missing: give the share of requests that must succeed (0.99 for 99 %), here or in error_budget",
        )
    raw_rules = section.get("rules")
    rules: list[BurnRateRule | None] = []
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.add(
            f"{path}.rules",
            f"must be a non-empty list of rules such as {{long: 1h, short: 5m, factor: 14.4}}, not {raw_rules!r}",
        )
    else:
        rules = [_parse_rule(rule, f"{path}.rules[{i}]", problems) for i, rule in enumerate(raw_rules)]
    if target is None or not rules or any(rule is None for rule in rules):
        return None
    return BurnRateSpec(slo_target=target, rules=tuple(rule for rule in rules if rule is not None))


def _parse_rule(value: Any, path: str, problems: _Problems) -> BurnRateRule | None:
    rule = problems.mapping(value, path, _RULE_KEYS)
    if rule is None:
        return None
    found: dict[str, float | None] = {}
    for key in _RULE_KEYS:
        if key not in rule:
            problems.add(f"{path}.{key}", f"missing: every rule needs long, short and factor ({key})")
            found[key] = None
        elif key == "factor":
            found[key] = problems.positive(rule[key], f"{path}.factor", "the burn rate both lookbacks must be over")
        else:
            found[key] = problems.duration(rule[key], f"{path}.{key}")
    long_s, short_s, factor = found["long"], found["short"], found["factor"]
    if long_s is not None and short_s is not None and long_s <= short_s:
        problems.add(
            f"{path}.long",
            f"must be longer than short ({_label(long_s)} ≤ {_label(short_s)}): swap them, or lengthen long",
        )
        return None
    if long_s is None or short_s is None or factor is None:
        return None
    return BurnRateRule(long_s=long_s, short_s=short_s, factor=factor)


def _parse_p99(value: Any, problems: _Problems) -> P99Spec | None:
    path = "guardrails.p99_ms"
    section = problems.mapping(value, path, _P99_KEYS)
    if section is None:
        return None
    above: float | None = None
    windows: int | None = None
    if "above" not in section:
        problems.add(f"{path}.above", "missing: give the p99 bound in ms (above: 2000)")
    else:
        above = problems.positive(section["above"], f"{path}.above", "the p99 bound in ms")
    if "windows" not in section:
        problems.add(f"{path}.windows", "missing: give how many consecutive 1-s windows over the bound trip it")
    else:
        windows = problems.count(section["windows"], f"{path}.windows", minimum=1, what="consecutive 1-s windows")
    if above is None or windows is None:
        return None
    return P99Spec(above_ms=above, windows=windows)


# --------------------------------------------------------------------------- formatting


def _label(seconds: float) -> str:
    """A lookback as a plan writes it: ``1h``, ``5m``, ``1h30m``, ``36s``, ``0.5s``."""
    if seconds >= 1 and float(seconds).is_integer():
        whole = int(seconds)
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
        return text
    return f"{seconds:g}s"


def _human(seconds: float) -> str:
    """A span for a person: ``40 s``, ``4 min``, ``2 h 5 min``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _times(burn: float, factor: float) -> str:
    """A burn rate over ``factor`` as ``15.2×``, with more digits when one decimal would not show it is over."""
    return f"{burn:.1f}×" if round(burn, 1) > factor else f"{burn:.4g}×"


def _budget_label(slo_target: float) -> str:
    return f"{(1.0 - slo_target) * 100:.6g} %"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- evaluation


class Guardrails:
    """Judges a soak's final windows against its guardrails, one window at a time, in bounded memory.

    ``time_scale`` multiplies every lookback (the run's ``--clover-time-scale``); ``burn_down_points`` bounds
    :meth:`burn_down` (≥ 2). Feed every final window, in time order, to :meth:`observe`.
    """

    def __init__(
        self, spec: GuardrailSpec, *, time_scale: float = 1.0, burn_down_points: int = BURN_DOWN_POINTS
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale must be a number greater than 0, not {time_scale!r}")
        if burn_down_points < 2:
            raise ValueError(f"burn_down_points must be at least 2, not {burn_down_points!r}")
        self.spec = spec
        self.time_scale = time_scale
        self._budget_target = spec.slo_target
        self._max_points = burn_down_points

        rules = spec.burn_rate.rules if spec.burn_rate is not None else ()
        # One pointer per distinct lookback, longest first: rules often share one (1h/5m and 6h/1h).
        self._lookbacks: list[float] = sorted(
            {r.long_s * time_scale for r in rules} | {r.short_s * time_scale for r in rules}, reverse=True
        )
        index = {seconds: i for i, seconds in enumerate(self._lookbacks)}
        self._rule_lookbacks = [(index[r.long_s * time_scale], index[r.short_s * time_scale]) for r in rules]
        self._pointers = [0] * len(self._lookbacks)
        """Absolute index (see ``_base``) of the oldest window in each lookback."""
        self._buffer: list[tuple[float, int, int]] = []
        """Per window still in the longest lookback: its start and the run's requests and errors *before* it, so
        that a lookback's sums are two subtractions. A list compacted now and then (see ``_compact``), not a
        deque: the pointers index into it, and a deque's indexing walks its blocks."""
        self._base = 0
        """Absolute index of ``_buffer[0]``: the count of windows dropped from its front."""

        self._windows = 0
        self._requests = 0
        self._errors = 0
        self._first_start = math.nan
        self._last_end = -math.inf
        """The end of the newest window seen: the "now" lookbacks are measured back from."""

        self._streak = 0
        self._streak_since = math.nan
        self._streak_worst_ms = math.nan
        self._streak_last_ms = math.nan

        self._points: list[tuple[float, float]] = []
        self._stride = 1
        """Every ``_stride``-th window becomes a burn-down point; doubles each time the points are halved."""
        self._latest_point: tuple[float, float] | None = None

        self._tripped: Trip | None = None

    # -- feeding ---------------------------------------------------------------------------------------

    def observe(self, window: Mapping[str, Any]) -> Trip | None:
        """Count one final window (a dict with the keys of ``LoadResult.window_rows()``); the trip, if any.

        Returns the first guardrail that tripped, on this window or an earlier one (latched), or None. Raises
        ValueError for a dict that is not a window row.
        """
        start, end, requests, errors, p99_ms = _read_window(window)
        if self._windows == 0:
            self._first_start = start
        self._windows += 1
        self._last_end = max(self._last_end, end)
        if self._lookbacks:
            self._buffer.append((start, self._requests, self._errors))
        self._requests += requests
        self._errors += errors
        if self._lookbacks:
            self._advance()
        if self.spec.p99_ms is not None:
            self._count_streak(start, requests, p99_ms, self.spec.p99_ms.above_ms)
        self._record_point(end)
        if self._tripped is None and self._requests >= self.spec.min_requests:
            self._tripped = self._check(end)
        return self._tripped

    def _advance(self) -> None:
        newest = self._base + len(self._buffer) - 1
        buffer, base = self._buffer, self._base
        for i, lookback in enumerate(self._lookbacks):
            cutoff = self._last_end - lookback - _EDGE_SLACK_S
            pointer = self._pointers[i]
            # The newest window stays in every lookback, however short: a lookback is never empty.
            while pointer < newest and buffer[pointer - base][0] < cutoff:
                pointer += 1
            self._pointers[i] = pointer
        self._compact()

    def _compact(self) -> None:
        # Dropping the front of a list copies the rest, so it waits until the dead part is as long as the live
        # one: amortised O(1) per window, and never more than twice the longest lookback in memory.
        dead = min(self._pointers) - self._base
        if dead >= 64 and 2 * dead >= len(self._buffer):
            del self._buffer[:dead]
            self._base += dead

    def _count_streak(self, start: float, requests: int, p99_ms: float, above_ms: float) -> None:
        if requests == 0 or math.isnan(p99_ms):
            return  # no evidence: neither counts nor breaks the streak (see the module docstring)
        if p99_ms > above_ms:
            if self._streak == 0:
                self._streak_since = start
                self._streak_worst_ms = p99_ms
            self._streak += 1
            self._streak_worst_ms = max(self._streak_worst_ms, p99_ms)
            self._streak_last_ms = p99_ms
        else:
            self._streak = 0
            self._streak_since = self._streak_worst_ms = self._streak_last_ms = math.nan

    def _record_point(self, end: float) -> None:
        # Downsampling: every window is a point until there are burn_down_points − 1 of them; then every other
        # point is dropped and the stride doubles, so the points stay evenly spaced (every 2^k-th window, the
        # first window always kept) and each keeps its exact value at its time. burn_down() adds the latest.
        if self._budget_target is None:
            return
        point = (end, 1.0 - self.budget_consumed)
        self._latest_point = point
        if (self._windows - 1) % self._stride == 0:
            self._points.append(point)
            if len(self._points) >= self._max_points:
                self._points = self._points[::2]
                self._stride *= 2

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def tripped(self) -> Trip | None:
        """The first guardrail that tripped, or None."""
        return self._tripped

    @property
    def budget_consumed(self) -> float:
        """Share of the run's error budget spent so far: errors / (requests × (1 − slo_target)) over every window
        seen (0.0 before any request; NaN when the plan gives no SLO target). Can exceed 1."""
        if self._budget_target is None:
            return math.nan
        return self._consumed(self._budget_target)

    def _consumed(self, slo_target: float) -> float:
        if self._requests == 0:
            return 0.0
        return self._errors / (self._requests * (1.0 - slo_target))

    def burn_down(self) -> list[tuple[float, float]]:
        """``(unix time, remaining budget fraction)`` points, oldest first: 1 − :attr:`budget_consumed` at the end
        of a window (negative once overspent). At most ``burn_down_points`` points, evenly spaced in windows;
        the first and the last are the exact values after the first and the latest window. Empty when the plan
        gives no SLO target or no window was seen."""
        points = list(self._points)
        if self._latest_point is not None and (not points or points[-1] is not self._latest_point):
            points.append(self._latest_point)
        return points

    def _burn(self, lookback_index: int, slo_target: float) -> dict[str, Any]:
        """The burn rate over one lookback, with its requests, errors and the span it covers so far."""
        oldest_start, requests_before, errors_before = self._buffer[self._pointers[lookback_index] - self._base]
        requests = self._requests - requests_before
        errors = self._errors - errors_before
        burn = errors / (requests * (1.0 - slo_target)) if requests else math.nan
        return {
            "lookback_s": self._lookbacks[lookback_index],
            "covered_s": self._last_end - oldest_start,
            "requests": requests,
            "errors": errors,
            "burn_rate": burn,
        }

    def state(self) -> dict[str, Any]:
        """Every number the guardrails judge by, JSON-serialisable (NaN as None), for checkpoints and the report:
        totals, the budget consumed, the burn rate over each rule's lookbacks, the high-p99 streak, the windows
        held in memory, and the trip if any."""
        spec = self.spec
        state: dict[str, Any] = {
            "windows": self._windows,
            "requests": self._requests,
            "errors": self._errors,
            "first_start": _json_number(self._first_start),
            "last_end": self._last_end if self._windows else None,
            "time_scale": self.time_scale,
            "min_requests": spec.min_requests,
            "armed": self._requests >= spec.min_requests,
            "stored_windows": self.stored_windows,
            "budget": None,
            "burn_rate": None,
            "p99_ms": None,
            "tripped": self._tripped.as_dict() if self._tripped is not None else None,
        }
        if self._budget_target is not None:
            consumed = self.budget_consumed
            state["budget"] = {
                "slo_target": self._budget_target,
                "consumed": consumed,
                "remaining": 1.0 - consumed,
                "stop_at": spec.error_budget.stop_at if spec.error_budget is not None else None,
            }
        if spec.burn_rate is not None:
            state["burn_rate"] = [
                self._rule_numbers(i, spec.burn_rate.slo_target)
                if self._windows
                else {"long": _label(rule.long_s), "short": _label(rule.short_s), "factor": rule.factor}
                for i, rule in enumerate(spec.burn_rate.rules)
            ]
        if spec.p99_ms is not None:
            state["p99_ms"] = {
                "above": spec.p99_ms.above_ms,
                "windows": spec.p99_ms.windows,
                "streak": self._streak,
                "since": _json_number(self._streak_since),
                "worst_ms": _json_number(self._streak_worst_ms),
                "last_ms": _json_number(self._streak_last_ms),
            }
        return state

    @property
    def stored_windows(self) -> int:
        """Windows held for the lookbacks (the longest lookback's worth, plus its newest window): the memory
        bound. The buffer behind them holds at most about twice as many tuples between compactions."""
        if not self._buffer:
            return 0
        return self._base + len(self._buffer) - min(self._pointers)

    def _rule_numbers(self, rule_index: int, slo_target: float) -> dict[str, Any]:
        assert self.spec.burn_rate is not None
        rule = self.spec.burn_rate.rules[rule_index]
        long_index, short_index = self._rule_lookbacks[rule_index]
        long_burn, short_burn = self._burn(long_index, slo_target), self._burn(short_index, slo_target)
        over = long_burn["burn_rate"] > rule.factor and short_burn["burn_rate"] > rule.factor
        for numbers in (long_burn, short_burn):
            numbers["burn_rate"] = _json_number(numbers["burn_rate"])
        return {
            "long": _label(rule.long_s),
            "short": _label(rule.short_s),
            "factor": rule.factor,
            "long_burn": long_burn,
            "short_burn": short_burn,
            "over": over,
        }

    # -- judging ---------------------------------------------------------------------------------------

    def _check(self, end: float) -> Trip | None:
        spec = self.spec
        if spec.error_budget is not None:
            consumed = self._consumed(spec.error_budget.slo_target)
            if consumed >= spec.error_budget.stop_at:
                return self._budget_trip(end, spec.error_budget, consumed)
        if spec.burn_rate is not None:
            for i, rule in enumerate(spec.burn_rate.rules):
                long_index, short_index = self._rule_lookbacks[i]
                # Cheap test first: one division per lookback; the numbers are only built for a trip.
                if self._over(long_index, rule.factor, spec.burn_rate.slo_target) and self._over(
                    short_index, rule.factor, spec.burn_rate.slo_target
                ):
                    return self._burn_trip(end, i, spec.burn_rate.slo_target)
        if spec.p99_ms is not None and self._streak >= spec.p99_ms.windows:
            return self._p99_trip(end, spec.p99_ms)
        return None

    def _over(self, lookback_index: int, factor: float, slo_target: float) -> bool:
        _, requests_before, errors_before = self._buffer[self._pointers[lookback_index] - self._base]
        requests = self._requests - requests_before
        if requests == 0:
            return False
        return (self._errors - errors_before) / (requests * (1.0 - slo_target)) > factor

    def _budget_trip(self, end: float, budget: ErrorBudgetSpec, consumed: float) -> Trip:
        allowed = self._requests * (1.0 - budget.slo_target)
        what = "exhausted" if budget.stop_at >= 1.0 else f"{budget.stop_at * 100:.0f} % spent"
        reason = (
            f"error budget {what}: {self._errors} errors in {self._requests} requests is {consumed * 100:.0f} % "
            f"of the {_budget_label(budget.slo_target)} budget ({allowed:.0f} errors); "
            f"the guardrail stops at {budget.stop_at * 100:.0f} %"
        )
        numbers = {
            "requests": self._requests,
            "errors": self._errors,
            "slo_target": budget.slo_target,
            "allowed_errors": allowed,
            "consumed": consumed,
            "stop_at": budget.stop_at,
        }
        return Trip("error_budget", end, reason, numbers)

    def _burn_trip(self, end: float, rule_index: int, slo_target: float) -> Trip:
        numbers = self._rule_numbers(rule_index, slo_target)
        long_burn, short_burn = numbers["long_burn"]["burn_rate"], numbers["short_burn"]["burn_rate"]
        consumed = self._consumed(slo_target)
        elapsed = self._last_end - self._first_start
        # Time left if the short lookback's burn goes on at the same request rate: the budget is a share of the
        # requests, so after x more seconds consumed = (c·T + b·x) / (T + x) for a run T seconds old, which
        # reaches 1 at x = T·(1 − c)/(b − 1).
        exhausted_in = elapsed * (1.0 - consumed) / (short_burn - 1.0) if short_burn > 1.0 else None
        budget = _budget_label(slo_target)
        if consumed >= 1.0:
            outlook = f"the error budget of {budget} is already spent ({consumed * 100:.0f} %)"
        elif exhausted_in is not None:
            outlook = f"the error budget of {budget} would be gone in {_human(exhausted_in)}"
        else:
            outlook = f"the error budget of {budget} is {consumed * 100:.0f} % spent"
        scaled = ""
        if self.time_scale != 1.0:
            rule = self.spec.burn_rate.rules[rule_index] if self.spec.burn_rate is not None else None
            if rule is not None:
                scaled = (
                    f" (time scale {self.time_scale:g}: {_label(rule.long_s * self.time_scale)} and "
                    f"{_label(rule.short_s * self.time_scale)})"
                )
        factor = numbers["factor"]
        reason = (
            f"burn rate over {factor:g}× for both {numbers['long']} ({_times(long_burn, factor)}) and "
            f"{numbers['short']} ({_times(short_burn, factor)}) windows{scaled}: {outlook}"
        )
        numbers.update(
            {
                "slo_target": slo_target,
                "time_scale": self.time_scale,
                "budget_consumed": consumed,
                "budget_exhausted_in_s": exhausted_in,
            }
        )
        return Trip("burn_rate", end, reason, numbers)

    def _p99_trip(self, end: float, p99: P99Spec) -> Trip:
        since = self._streak_since - self._first_start
        reason = (
            f"p99 over {p99.above_ms:g} ms for {self._streak} consecutive windows (from +{since:.0f} s into the run; "
            f"worst {self._streak_worst_ms:.1f} ms, last {self._streak_last_ms:.1f} ms)"
        )
        numbers = {
            "above": p99.above_ms,
            "windows": p99.windows,
            "streak": self._streak,
            "since": self._streak_since,
            "worst_ms": self._streak_worst_ms,
            "last_ms": self._streak_last_ms,
        }
        return Trip("p99_ms", end, reason, numbers)


def _read_window(window: Mapping[str, Any]) -> tuple[float, float, int, int, float]:
    """start, end, requests, errors and p99 (NaN when None or missing) of a window row."""
    try:
        start, end = float(window["start"]), float(window["end"])
        requests, errors = int(window["requests"]), int(window["errors"])
        raw_p99 = window.get("p99_ms")
        p99_ms = math.nan if raw_p99 is None else float(raw_p99)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a window row of LoadResult.window_rows() ({exc!r}): {dict(window)!r}") from exc
    if not 0 <= errors <= requests or not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"window row with 0 ≤ errors ≤ requests and finite times expected: {dict(window)!r}")
    return start, end, requests, errors, p99_ms
