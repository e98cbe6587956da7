"""Soak guardrails (issue 14): parsing the ``guardrails:`` section, and judging synthetic window streams.

Every expected trip is computed in the test from the definitions (burn rate = error rate over the windows that
started in a lookback / (1 − target); budget consumed = errors / (requests × (1 − target)) over the run), with
prefix sums written here, never with the evaluator's own buffer.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.errors import ConfigError
from pytest_clover.soak.guardrails import (
    BURN_DOWN_POINTS,
    DEFAULT_MIN_REQUESTS,
    BurnRateRule,
    BurnRateSpec,
    ErrorBudgetSpec,
    Guardrails,
    GuardrailSpec,
    P99Spec,
    Trip,
    parse_guardrails,
)

T0 = 1_700_000_000.0
"""Unix time of the first window of every synthetic stream."""
PLAN = "faults/schedules/nightly.yaml"
EIGHT_HOURS = 8 * 3600

EXAMPLE = """
guardrails:
  error_budget:
    slo_target: 0.99
    stop_at: 1.0
  burn_rate:
    slo_target: 0.99
    rules:
      - {long: 1h, short: 5m, factor: 14.4}
      - {long: 6h, short: 30m, factor: 6}
  p99_ms:
    above: 2000
    windows: 10
  min_requests: 100
"""


def window(
    i: int,
    *,
    requests: int = 100,
    errors: int = 0,
    p99_ms: float = 40.0,
    start: float | None = None,
    duration: float = 1.0,
) -> dict[str, Any]:
    """One row as ``LoadResult.window_rows()`` gives it: window ``i`` of a stream of 1-s windows from T0."""
    begin = T0 + i if start is None else start
    empty = requests == 0
    return {
        "start": begin,
        "end": begin + duration,
        "phase": None,
        "requests": requests,
        "errors": errors,
        "late": 0,
        "error_rate": math.nan if empty else errors / requests,
        "throughput_rps": requests / duration,
        "p50_ms": math.nan if empty else p99_ms / 4,
        "p95_ms": math.nan if empty else p99_ms / 2,
        "p99_ms": math.nan if empty else p99_ms,
        "max_ms": math.nan if empty else p99_ms * 1.5,
    }


def stream(
    seconds: int,
    *,
    requests: int = 100,
    errors: Callable[[int], int] = lambda i: 0,
    p99_ms: Callable[[int], float] = lambda i: 40.0,
) -> list[dict[str, Any]]:
    """``seconds`` 1-s windows from T0, with ``errors(i)`` errors and a p99 of ``p99_ms(i)`` in window i."""
    return [window(i, requests=requests, errors=errors(i), p99_ms=p99_ms(i)) for i in range(seconds)]


def feed(guardrails: Guardrails, rows: Sequence[Mapping[str, Any]]) -> tuple[int, Trip] | None:
    """The index of the window that tripped a guardrail, and the trip; None if none did."""
    for index, row in enumerate(rows):
        trip = guardrails.observe(row)
        if trip is not None:
            return index, trip
    return None


def burn_rate_spec(*rules: tuple[str, str, float], target: float = 0.99, min_requests: int = 100) -> GuardrailSpec:
    raw = {
        "burn_rate": {"slo_target": target, "rules": [{"long": lg, "short": sh, "factor": f} for lg, sh, f in rules]},
        "min_requests": min_requests,
    }
    return parse_guardrails(raw, file=PLAN)


class Reference:
    """The definitions, computed directly over the whole stream with prefix sums (the test keeps everything)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.starts = [float(r["start"]) for r in rows]
        self.requests = [0]
        self.errors = [0]
        for r in rows:
            self.requests.append(self.requests[-1] + int(r["requests"]))
            self.errors.append(self.errors[-1] + int(r["errors"]))

    def consumed(self, k: int, target: float) -> float:
        """Budget consumed after window k: errors / (requests × (1 − target)) over windows 0..k."""
        requests = self.requests[k + 1]
        return self.errors[k + 1] / (requests * (1 - target)) if requests else 0.0

    def lookback(self, k: int, seconds: float, *, slack: float = 0.0) -> tuple[int, int]:
        """Requests and errors of the windows 0..k that started at or after end_k − seconds (and window k)."""
        cut = float(self.rows[k]["end"]) - seconds - slack
        first = min(bisect.bisect_left(self.starts, cut, 0, k + 1), k)
        return self.requests[k + 1] - self.requests[first], self.errors[k + 1] - self.errors[first]

    def burn(self, k: int, seconds: float, target: float) -> float:
        requests, errors = self.lookback(k, seconds)
        return errors / (requests * (1 - target)) if requests else math.nan

    def first_burn_trip(self, rules: Sequence[tuple[float, float, float]], target: float, min_requests: int) -> int:
        """The first window where some rule's long and short burn rates are both over its factor (armed)."""
        for k in range(len(self.rows)):
            if self.requests[k + 1] < min_requests:
                continue
            for long_s, short_s, factor in rules:
                if self.burn(k, long_s, target) > factor and self.burn(k, short_s, target) > factor:
                    return k
        return -1


# --------------------------------------------------------------------------- parsing


def test_the_example_plan_parses_to_its_numbers() -> None:
    spec = parse_guardrails(yaml.safe_load(EXAMPLE)["guardrails"], file=PLAN)
    assert spec == GuardrailSpec(
        error_budget=ErrorBudgetSpec(slo_target=0.99, stop_at=1.0),
        burn_rate=BurnRateSpec(
            slo_target=0.99,
            rules=(BurnRateRule(3600.0, 300.0, 14.4), BurnRateRule(21600.0, 1800.0, 6.0)),
        ),
        p99_ms=P99Spec(above_ms=2000.0, windows=10),
        min_requests=100,
    )
    assert not spec.empty


def test_no_section_means_no_guardrail_and_nothing_ever_trips() -> None:
    spec = parse_guardrails(None, file=PLAN)
    assert spec.empty and spec == parse_guardrails({}, file=PLAN)
    guardrails = Guardrails(spec)
    assert feed(guardrails, stream(600, errors=lambda i: 100, p99_ms=lambda i: 1e6)) is None
    assert math.isnan(guardrails.budget_consumed) and guardrails.burn_down() == []
    json.dumps(guardrails.state(), allow_nan=False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("0.5s", 0.5),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_durations_are_strings_with_units_or_seconds(text: Any, seconds: float) -> None:
    spec = burn_rate_spec((text, "0.25s", 1.0))
    assert spec.burn_rate is not None and spec.burn_rate.rules[0].long_s == seconds


def test_burn_rate_takes_the_error_budget_target_when_it_gives_none() -> None:
    raw = {"error_budget": {"slo_target": 0.995}, "burn_rate": {"rules": [{"long": "1h", "short": "5m", "factor": 2}]}}
    spec = parse_guardrails(raw, file=PLAN)
    assert spec.burn_rate is not None and spec.burn_rate.slo_target == 0.995
    assert spec.error_budget == ErrorBudgetSpec(0.995, 1.0) and spec.min_requests == DEFAULT_MIN_REQUESTS


RULE = {"long": "1h", "short": "5m", "factor": 14.4}
BAD_CONFIGS: list[tuple[Any, str]] = [
    ([1, 2], "guardrails"),
    ({"error_budgets": {"slo_target": 0.99}}, "guardrails.error_budgets"),
    ({"error_budget": None}, "guardrails.error_budget"),
    ({"error_budget": {}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": 1.0}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": 0}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": 99}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": "0.99"}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": True}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": math.nan}}, "guardrails.error_budget.slo_target"),
    ({"error_budget": {"slo_target": 0.99, "stop_at": 0}}, "guardrails.error_budget.stop_at"),
    ({"error_budget": {"slo_target": 0.99, "stop_at": "all"}}, "guardrails.error_budget.stop_at"),
    ({"error_budget": {"slo_target": 0.99, "stop": 1}}, "guardrails.error_budget.stop"),
    ({"burn_rate": {"rules": [RULE]}}, "guardrails.burn_rate.slo_target"),
    ({"burn_rate": {"slo_target": 0.99}}, "guardrails.burn_rate.rules"),
    ({"burn_rate": {"slo_target": 0.99, "rules": []}}, "guardrails.burn_rate.rules"),
    ({"burn_rate": {"slo_target": 0.99, "rules": RULE}}, "guardrails.burn_rate.rules"),
    ({"burn_rate": {"slo_target": 0.99, "rules": ["1h/5m"]}}, "guardrails.burn_rate.rules[0]"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "1 hour"}]}}, "guardrails.burn_rate.rules[0].long"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "-30"}]}}, "guardrails.burn_rate.rules[0].long"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "5ms"}]}}, "guardrails.burn_rate.rules[0].long"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "1x"}]}}, "guardrails.burn_rate.rules[0].long"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": -60}]}}, "guardrails.burn_rate.rules[0].long"),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "short": "0s"}]}}, "guardrails.burn_rate.rules[0].short"),
    (
        {"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "5m", "short": "1h"}]}},
        "guardrails.burn_rate.rules[0].long",
    ),
    (
        {"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "long": "5m", "short": 300}]}},
        "guardrails.burn_rate.rules[0].long",
    ),
    ({"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "factor": 0}]}}, "guardrails.burn_rate.rules[0].factor"),
    (
        {"burn_rate": {"slo_target": 0.99, "rules": [{**RULE, "factor": "fast"}]}},
        "guardrails.burn_rate.rules[0].factor",
    ),
    (
        {"burn_rate": {"slo_target": 0.99, "rules": [{"long": "1h", "short": "5m"}]}},
        "guardrails.burn_rate.rules[0].factor",
    ),
    (
        {"burn_rate": {"slo_target": 0.99, "rules": [RULE, {**RULE, "window": "1h"}]}},
        "guardrails.burn_rate.rules[1].window",
    ),
    ({"p99_ms": {"windows": 10}}, "guardrails.p99_ms.above"),
    ({"p99_ms": {"above": 0, "windows": 10}}, "guardrails.p99_ms.above"),
    ({"p99_ms": {"above": 2000}}, "guardrails.p99_ms.windows"),
    ({"p99_ms": {"above": 2000, "windows": 0}}, "guardrails.p99_ms.windows"),
    ({"p99_ms": {"above": 2000, "windows": 2.5}}, "guardrails.p99_ms.windows"),
    ({"p99_ms": {"above": 2000, "windows": True}}, "guardrails.p99_ms.windows"),
    ({"p99_ms": {"above": 2000, "windows": 10, "bound": 3}}, "guardrails.p99_ms.bound"),
    ({"min_requests": -1}, "guardrails.min_requests"),
    ({"min_requests": "100"}, "guardrails.min_requests"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_CONFIGS, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD_CONFIGS)])
def test_a_bad_config_is_a_config_error_naming_the_file_and_the_field(raw: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_guardrails(raw, file=PLAN)
    assert [(p.file, p.field) for p in caught.value.problems] == [(PLAN, field)]
    assert PLAN in str(caught.value) and field in str(caught.value)
    assert caught.value.problems[0].message  # says what to do, not just "invalid"


def test_every_problem_is_listed_at_once() -> None:
    raw = {
        "error_budget": {"slo_target": 2},
        "burn_rate": {"rules": [{"long": "1m", "short": "5m", "factor": -1}]},
        "p99_ms": {"above": "slow", "windows": 0},
        "typo": 1,
    }
    with pytest.raises(ConfigError) as caught:
        parse_guardrails(raw, file=PLAN)
    assert sorted(p.field for p in caught.value.problems) == sorted(
        [
            "guardrails.typo",
            "guardrails.error_budget.slo_target",
            "guardrails.burn_rate.rules[0].factor",
            "guardrails.burn_rate.rules[0].long",
            "guardrails.p99_ms.above",
            "guardrails.p99_ms.windows",
        ]
    )


# --------------------------------------------------------------------------- an 8-hour healthy night


@dataclass
class Night:
    rows: list[dict[str, Any]]
    trips: list[Trip]
    most_stored: int
    largest_buffer: int
    guardrails: Guardrails
    hourly_most: int
    hourly_largest: int


@pytest.fixture(scope="module")
def healthy_night() -> Night:
    """8 h at 100 requests/s with the example's guardrails: 0.2 % errors on average (a burn rate of 0.2), bursts
    up to 3 % for a few seconds, p99 under the bound except runs of up to 9 windows over it (never 10)."""
    rng = random.Random(14)
    rows = []
    slow_left = 0
    for i in range(EIGHT_HOURS):
        burst = rng.random() < 0.002
        errors = rng.randint(0, 3) if burst else (1 if rng.random() < 0.1 else 0)
        if slow_left == 0 and rng.random() < 0.001:
            slow_left = rng.randint(1, 9)
        p99 = rng.uniform(2100, 5000) if slow_left else rng.uniform(20, 400)
        if slow_left:
            slow_left -= 1
        rows.append(window(i, errors=errors, p99_ms=p99))
    guardrails = Guardrails(parse_guardrails(yaml.safe_load(EXAMPLE)["guardrails"], file=PLAN))
    trips, most, largest, hourly_most, hourly_largest = [], 0, 0, 0, 0
    for row in rows:
        trip = guardrails.observe(row)
        if trip is not None:
            trips.append(trip)
        most = max(most, guardrails.stored_windows)
        largest = max(largest, len(guardrails._buffer))
    # Alongside, an hour-long lookback alone: its memory bound is far below the night's length, so a buffer
    # that is never compacted would show.
    hourly = Guardrails(burn_rate_spec(("1h", "5m", 14.4)))
    for row in rows:
        hourly.observe(row)
        hourly_most = max(hourly_most, hourly.stored_windows)
        hourly_largest = max(hourly_largest, len(hourly._buffer))
    return Night(rows, trips, most, largest, guardrails, hourly_most, hourly_largest)


def test_a_healthy_night_never_trips(healthy_night: Night) -> None:
    assert healthy_night.trips == [] and healthy_night.guardrails.tripped is None
    state = healthy_night.guardrails.state()
    assert state["windows"] == EIGHT_HOURS and state["tripped"] is None
    # Close calls were there to trip on: a p99 run of 9 windows, and bursts of errors.
    assert max(r["p99_ms"] for r in healthy_night.rows) > 2000
    json.dumps(state, allow_nan=False)


def test_memory_stays_within_the_longest_lookback_over_a_night(healthy_night: Night) -> None:
    longest = 6 * 3600  # the 6h rule, 1-s windows
    assert longest <= healthy_night.most_stored <= longest + 2
    # The list behind it is compacted once its dead front is as long as the live part.
    assert healthy_night.largest_buffer <= 2 * (longest + 2) + 64
    assert 3600 <= healthy_night.hourly_most <= 3600 + 2
    assert healthy_night.hourly_largest <= 2 * (3600 + 2) + 64


def test_the_burn_down_of_a_night_is_bounded_and_exact_at_both_ends(healthy_night: Night) -> None:
    reference = Reference(healthy_night.rows)
    points = healthy_night.guardrails.burn_down()
    assert 2 <= len(points) <= BURN_DOWN_POINTS
    last = len(healthy_night.rows) - 1
    assert [points[0][0], points[-1][0]] == [healthy_night.rows[0]["end"], healthy_night.rows[-1]["end"]]
    assert points[0][1] == pytest.approx(1 - reference.consumed(0, 0.99), abs=1e-12)
    assert points[-1][1] == pytest.approx(1 - reference.consumed(last, 0.99), abs=1e-12)
    assert healthy_night.guardrails.budget_consumed == pytest.approx(reference.consumed(last, 0.99), rel=1e-12)
    times = [t for t, _ in points]
    assert times == sorted(times)


def test_every_burn_down_point_is_the_exact_value_at_its_time_evenly_spaced() -> None:
    rng = random.Random(3)
    rows = stream(1000, errors=lambda i: rng.randint(0, 2))
    reference = Reference(rows)
    guardrails = Guardrails(GuardrailSpec(error_budget=ErrorBudgetSpec(0.99, stop_at=1e9)), burn_down_points=10)
    for row in rows:
        guardrails.observe(row)
        assert len(guardrails.burn_down()) <= 10
    points = guardrails.burn_down()
    indices = [round(t - T0) - 1 for t, _ in points]  # window i ends at T0 + i + 1
    assert indices[0] == 0 and indices[-1] == 999
    steps = {b - a for a, b in itertools.pairwise(indices[:-1])}
    assert len(steps) == 1  # evenly spaced, but for the latest point added at the end
    for index, (_, remaining) in zip(indices, points, strict=True):
        assert remaining == pytest.approx(1 - reference.consumed(index, 0.99), abs=1e-12)


# --------------------------------------------------------------------------- burn rate


def test_a_sustained_20_percent_error_rate_trips_the_burn_rate_at_the_expected_window() -> None:
    healthy_s, target, factor = 2 * 3600, 0.99, 14.4
    rows = stream(healthy_s + 3600, errors=lambda i: 20 if i >= healthy_s else 0)
    got = feed(Guardrails(burn_rate_spec(("1h", "5m", factor))), rows)
    expected = Reference(rows).first_burn_trip([(3600, 300, factor)], target, 100)
    # By hand: the 5-min burn is 20× from the first bad window; the hour's passes 14.4× once k of its 3600
    # windows carry 20 errors in 100: 20·k / (3600·100·0.01) > 14.4 ⇔ k > 2592.
    assert expected == healthy_s + 2593 - 1
    assert got is not None
    index, trip = got
    assert index == expected and trip.guardrail == "burn_rate" and trip.at == rows[expected]["end"]
    assert trip.numbers["long_burn"]["requests"] == 360_000 and trip.numbers["long_burn"]["errors"] == 20 * 2593
    assert trip.numbers["short_burn"]["burn_rate"] == pytest.approx(20.0)
    assert "14.4×" in trip.reason and "1h" in trip.reason and "5m" in trip.reason and "20.0×" in trip.reason
    json.dumps(trip.as_dict(), allow_nan=False)


def test_a_young_run_is_judged_over_what_it_has() -> None:
    # 10 min healthy, then 20 % errors: the hour is not full yet, so it is the run so far.
    rows = stream(3600, errors=lambda i: 20 if i >= 600 else 0)
    got = feed(Guardrails(burn_rate_spec(("1h", "5m", 14.4))), rows)
    expected = Reference(rows).first_burn_trip([(3600, 300, 14.4)], 0.99, 100)
    assert 0 < expected < 3600 - 1  # tripped before the long lookback filled
    assert got is not None and got[0] == expected
    assert got[1].numbers["long_burn"]["covered_s"] == pytest.approx(expected + 1)


def test_a_short_spike_only_the_short_window_sees_does_not_trip() -> None:
    spike = range(2 * 3600, 2 * 3600 + 60)
    rows = stream(3 * 3600, errors=lambda i: 100 if i in spike else 0)
    guardrails = Guardrails(burn_rate_spec(("1h", "5m", 14.4)))
    short_peak = long_peak = 0.0
    for row in rows:
        assert guardrails.observe(row) is None
        rule = guardrails.state()["burn_rate"][0] if row["start"] >= T0 + spike[0] else None
        if rule is not None and row["start"] < T0 + spike[-1] + 300:
            short_peak = max(short_peak, rule["short_burn"]["burn_rate"] or 0.0)
            long_peak = max(long_peak, rule["long_burn"]["burn_rate"] or 0.0)
    # The short window did see it (60 s of 100 % errors in 5 min is a 20× burn); the hour saw 1.67×.
    assert short_peak == pytest.approx(20.0) and long_peak == pytest.approx(100 / 60, rel=1e-9)


def test_time_scale_scales_the_lookbacks() -> None:
    rows = stream(400, errors=lambda i: 20 if i >= 100 else 0)
    reference = Reference(rows)
    scaled = Guardrails(burn_rate_spec(("1h", "5m", 14.4)), time_scale=0.01)
    got = feed(scaled, rows)
    expected = reference.first_burn_trip([(36, 3, 14.4)], 0.99, 100)
    assert expected == 100 + 26 - 1  # 20·k / (36·100·0.01) > 14.4 ⇔ k > 25.92
    assert got is not None and got[0] == expected
    assert [got[1].numbers["long_burn"]["lookback_s"], got[1].numbers["short_burn"]["lookback_s"]] == [36.0, 3.0]
    assert "time scale 0.01" in got[1].reason
    # 20·26/36 = 14.44: the reason shows the digit that makes it over 14.4 (not "14.4×" over 14.4×).
    assert "1h (14.44×)" in got[1].reason and "5m (20.0×)" in got[1].reason
    # Unscaled, the same 400 s are one young hour: its burn passes 14.4× only after 258 bad windows (20·k/(100 + k)).
    unscaled = feed(Guardrails(burn_rate_spec(("1h", "5m", 14.4))), rows)
    assert unscaled is not None
    assert unscaled[0] == reference.first_burn_trip([(3600, 300, 14.4)], 0.99, 100) == 100 + 258 - 1


@pytest.mark.parametrize(("min_requests", "expected"), [(0, 0), (5, 0), (6, -1), (100, -1)])
def test_min_requests_protects_the_start(min_requests: int, expected: int) -> None:
    # One error in the first 5 requests is a burn rate of 20× over every lookback; then 9 clean windows of 10
    # requests bring both under 14.4 (1 in 15 is 6.7×) before 100 requests were seen.
    rows = [window(0, requests=5, errors=1)] + [window(i, requests=10) for i in range(1, 10)]
    got = feed(Guardrails(burn_rate_spec(("1h", "5m", 14.4), min_requests=min_requests)), rows)
    assert (got[0] if got else -1) == expected


def test_the_reason_says_when_the_budget_would_be_gone() -> None:
    # Four hours at 0.1 % errors (10 % of the budget), then 30 % errors: the 1-h rule trips at factor 2 once its
    # hour averages over 2×; the budget is not spent yet, so the reason estimates when it will be.
    rows = stream(5 * 3600, errors=lambda i: 30 if i >= 4 * 3600 else (1 if i % 10 == 0 else 0))
    got = feed(Guardrails(burn_rate_spec(("1h", "5m", 2.0))), rows)
    assert got is not None
    index, trip = got
    assert index == Reference(rows).first_burn_trip([(3600, 300, 2.0)], 0.99, 100)
    reference = Reference(rows)
    short_burn = trip.numbers["short_burn"]["burn_rate"]
    assert short_burn == pytest.approx(reference.burn(index, 300, 0.99), rel=1e-12)
    consumed, elapsed = trip.numbers["budget_consumed"], rows[index]["end"] - T0
    assert consumed == pytest.approx(reference.consumed(index, 0.99), rel=1e-12) and consumed < 1
    # At the short window's burn b, the run's budget (a share of its requests) runs out after T·(1 − c)/(b − 1).
    assert trip.numbers["budget_exhausted_in_s"] == pytest.approx(elapsed * (1 - consumed) / (short_burn - 1))
    assert "would be gone in" in trip.reason


# --------------------------------------------------------------------------- error budget


@pytest.mark.parametrize("stop_at", [1.0, 0.5, 2.0])
def test_the_budget_trips_at_exactly_the_window_it_crosses_stop_at(stop_at: float) -> None:
    rng = random.Random(int(stop_at * 10))
    # 0.5 % errors for 20 min (half the budget), then 3 %: consumption climbs through every stop_at tested.
    rows = stream(4 * 3600, errors=lambda i: rng.randint(0, 1) if i < 1200 else rng.randint(1, 5))
    reference = Reference(rows)
    expected = next(
        k for k in range(len(rows)) if reference.requests[k + 1] >= 100 and reference.consumed(k, 0.99) >= stop_at
    )
    assert reference.consumed(expected - 1, 0.99) < stop_at  # the window before it had not crossed
    guardrails = Guardrails(GuardrailSpec(error_budget=ErrorBudgetSpec(0.99, stop_at=stop_at)))
    got = feed(guardrails, rows)
    assert got is not None
    index, trip = got
    assert index == expected and trip.guardrail == "error_budget" and trip.at == rows[expected]["end"]
    assert trip.numbers["consumed"] == pytest.approx(reference.consumed(expected, 0.99), rel=1e-12)
    assert trip.numbers["errors"] == reference.errors[expected + 1]
    assert f"{stop_at * 100:.0f} %" in trip.reason


def test_boundaries_a_burn_rate_at_its_factor_is_not_over_a_budget_at_stop_at_is_spent() -> None:
    # Half the requests fail and the target is 0.5: the burn rate is exactly 1 and exactly the whole budget is
    # spent (0.5 is exact in binary, so no rounding decides this).
    rows = stream(20, errors=lambda i: 50)
    assert feed(Guardrails(burn_rate_spec(("10s", "2s", 1.0), target=0.5)), rows) is None
    assert feed(Guardrails(burn_rate_spec(("10s", "2s", 0.999), target=0.5)), rows) is not None
    budget = GuardrailSpec(error_budget=ErrorBudgetSpec(0.5, stop_at=1.0), min_requests=100)
    got = feed(Guardrails(budget), rows)
    assert got is not None and got[0] == 0 and got[1].numbers["consumed"] == 1.0


# --------------------------------------------------------------------------- p99


def p99_spec(windows: int) -> GuardrailSpec:
    return GuardrailSpec(p99_ms=P99Spec(above_ms=1000.0, windows=windows), min_requests=0)


def first_streak(p99s: Sequence[float], above: float, n: int) -> int:
    """The first index where the last n windows with a p99 were all over ``above`` (NaN: skipped)."""
    streak = 0
    for index, value in enumerate(p99s):
        if math.isnan(value):
            continue
        streak = streak + 1 if value > above else 0
        if streak >= n:
            return index
    return -1


def test_the_p99_streak_trips_at_the_nth_window_and_one_good_window_resets_it() -> None:
    p99s = [100.0] * 10 + [2000.0] * 4 + [1000.0] + [2000.0] * 5 + [100.0] * 5
    rows = [window(i, p99_ms=p) for i, p in enumerate(p99s)]
    got = feed(Guardrails(p99_spec(5)), rows)
    expected = first_streak(p99s, 1000.0, 5)
    assert expected == 19  # not 13 + 1: the window at exactly 1000 ms (not above) broke the first streak
    assert got is not None and got[0] == expected
    trip = got[1]
    assert trip.guardrail == "p99_ms" and trip.numbers["streak"] == 5 and trip.numbers["since"] == T0 + 15
    assert "1000 ms" in trip.reason and "5 consecutive windows" in trip.reason


def test_a_window_without_requests_neither_counts_nor_breaks_a_streak() -> None:
    p99s = [2000.0] * 3 + [math.nan] + [2000.0] * 2
    rows = [window(i, p99_ms=p, requests=0 if math.isnan(p) else 100) for i, p in enumerate(p99s)]
    guardrails = Guardrails(p99_spec(5))
    got = feed(guardrails, rows)
    assert got is not None and got[0] == first_streak(p99s, 1000.0, 5) == 5
    assert feed(Guardrails(p99_spec(6)), rows) is None  # the empty window did not count as a sixth


# --------------------------------------------------------------------------- latching, state, input


def test_a_trip_latches_and_the_numbers_keep_counting() -> None:
    rows = stream(50, errors=lambda i: 50 if i == 5 else 0)
    guardrails = Guardrails(GuardrailSpec(error_budget=ErrorBudgetSpec(0.99), min_requests=0))
    got = feed(guardrails, rows)
    assert got is not None and got[0] == 5
    for row in rows[6:]:
        assert guardrails.observe(row) is got[1]
    assert guardrails.tripped is got[1]
    state = guardrails.state()
    assert state["windows"] == 50 and state["requests"] == 5000 and state["tripped"] == got[1].as_dict()
    assert guardrails.budget_consumed == pytest.approx(50 / (5000 * (1 - 0.99)))  # under 1 again, still tripped


def test_state_is_json_and_carries_every_guardrail() -> None:
    guardrails = Guardrails(parse_guardrails(yaml.safe_load(EXAMPLE)["guardrails"], file=PLAN))
    before = guardrails.state()
    assert before["windows"] == 0 and before["budget"]["consumed"] == 0.0 and len(before["burn_rate"]) == 2
    json.dumps(before, allow_nan=False)
    guardrails.observe(window(0, requests=0))  # an empty window: NaN p99, no burn rate yet
    guardrails.observe(window(1, errors=1, p99_ms=2500.0))
    state = json.loads(json.dumps(guardrails.state(), allow_nan=False))
    assert state["p99_ms"]["streak"] == 1 and state["p99_ms"]["worst_ms"] == 2500.0
    assert state["burn_rate"][0]["long_burn"]["errors"] == 1 and state["armed"] is True
    assert state["budget"]["consumed"] == pytest.approx(1.0) and state["tripped"] is None


@pytest.mark.parametrize(
    "row",
    [{"start": T0}, {**window(0), "requests": "many"}, {**window(0), "errors": 200}, {**window(0), "end": math.inf}],
)
def test_a_row_that_is_not_a_window_is_refused(row: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="window"):
        Guardrails(GuardrailSpec()).observe(row)


@pytest.mark.parametrize("kwargs", [{"time_scale": 0.0}, {"time_scale": math.nan}, {"burn_down_points": 1}])
def test_bad_constructor_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Guardrails(GuardrailSpec(), **kwargs)


# --------------------------------------------------------------------------- properties


SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
WINDOWS = st.lists(st.tuples(st.integers(0, 300), st.floats(0, 1), st.floats(0.01, 2.0)), min_size=1, max_size=150)
"""(requests, share of them that fail, duration in s) per window; windows follow each other without gaps."""


def random_rows(spec: list[tuple[int, float, float]]) -> Iterator[dict[str, Any]]:
    start = T0
    for requests, share, duration in spec:
        yield window(0, requests=requests, errors=round(requests * share), start=start, duration=duration)
        start += duration


@SETTINGS
@given(WINDOWS, st.floats(0.5, 0.9999))
def test_budget_consumed_is_the_direct_formula(spec: list[tuple[int, float, float]], target: float) -> None:
    rows = list(random_rows(spec))
    guardrails = Guardrails(GuardrailSpec(error_budget=ErrorBudgetSpec(target, stop_at=math.inf)))
    requests = errors = 0
    for row in rows:
        guardrails.observe(row)
        requests += row["requests"]
        errors += row["errors"]
        direct = errors / (requests * (1 - target)) if requests else 0.0
        assert guardrails.budget_consumed == pytest.approx(direct, rel=1e-12, abs=1e-12)
    last_time, last_remaining = guardrails.burn_down()[-1]
    assert last_time == rows[-1]["end"] and last_remaining == pytest.approx(1 - guardrails.budget_consumed)


@SETTINGS
@given(WINDOWS, st.floats(0.3, 20.0), st.floats(0.05, 0.95))
def test_lookback_sums_are_those_of_the_windows_started_within_it(
    spec: list[tuple[int, float, float]], long_s: float, short_share: float
) -> None:
    rows = list(random_rows(spec))
    reference = Reference(rows)
    rule = BurnRateRule(long_s=long_s, short_s=long_s * short_share, factor=math.inf)
    guardrails = Guardrails(GuardrailSpec(burn_rate=BurnRateSpec(0.9, (rule,))), time_scale=0.5)
    for k, row in enumerate(rows):
        guardrails.observe(row)
        numbers = guardrails.state()["burn_rate"][0]
        for key, seconds in (("long_burn", long_s * 0.5), ("short_burn", rule.short_s * 0.5)):
            requests, errors = reference.lookback(k, seconds, slack=0.05)
            assert (numbers[key]["requests"], numbers[key]["errors"]) == (requests, errors)
        assert guardrails.stored_windows <= k + 1


def test_scope_says_what_a_trip_stops() -> None:
    assert parse_guardrails({"p99_ms": {"above": 100, "windows": 2}}, file="plan.yaml").scope == "test"
    assert parse_guardrails({"scope": "run"}, file="plan.yaml").scope == "run"
    with pytest.raises(ConfigError, match=r"guardrails\.scope.*test, run"):
        parse_guardrails({"scope": "session"}, file="plan.yaml")
