"""The soak plan file and the seeded chaos schedule drawn from it (pytest_clover.soak.schedule, issue 14)."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.errors import ConfigError, ReportDataError
from pytest_clover.soak.schedule import (
    FAULT_PARAMS,
    ScheduledFault,
    SoakPlan,
    describe,
    draw_schedule,
    load_plan,
    parse_duration,
    parse_plan,
    schedule_from_json,
    schedule_to_json,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEDULES = ROOT / "faults" / "schedules"

BASE: dict[str, Any] = {
    "load": {"rate": 50},
    "slo": {"p99_ms": 100, "max_error_rate": 0.01},
    "recovery": {"within_s": "10s", "windows": 2},
    "schedule": {
        "mode": "random",
        "start_after": "1m",
        "min_gap": "30s",
        "max_overlap": 1,
        "quiet": [{"from": "20m", "to": "25m"}],
        "faults": [
            {"kind": "kill", "target": "clover-server", "mtbf": "5m", "params": {"count": 1}},
            {
                "kind": "delay",
                "target": "http-lb",
                "mtbf": "5m",
                "duration": "30s",
                "params": {"delay": "500ms", "percent": 50},
                "slo": {"p99_ms": 700},
            },
        ],
    },
    "guardrails": {"burn_rate": {"fast": 14.4}, "anything": ["kept", "as", "is"]},
}

FIXED: dict[str, Any] = {
    "load": {"rate": 50},
    "slo": {"p99_ms": 100},
    "recovery": {"within_s": 10, "windows": 2},
    "schedule": {
        "mode": "fixed",
        "start_after": "1m",
        "min_gap": "20s",
        "quiet": [{"from": "10m", "to": "12m"}],
        "timeline": [
            {"at": "5m", "kind": "delay", "target": "http-lb", "duration": "30s", "params": {"delay": "1s"}},
            {"at": "2m", "kind": "kill", "target": "clover-server"},
            {"at": "3m", "kind": "scale", "target": "clover-server", "duration": "1m", "params": {"replicas": 1}},
        ],
    },
}


def plan_of(doc: dict[str, Any], file: str = "plan.yaml") -> SoakPlan:
    return parse_plan(yaml.safe_dump(doc, sort_keys=False), file=file)


def changed(base: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    change(doc)
    return doc


def fault(doc: dict[str, Any], i: int) -> dict[str, Any]:
    key = "faults" if "faults" in doc["schedule"] else "timeline"
    entry: dict[str, Any] = doc["schedule"][key][i]
    return entry


# --------------------------------------------------------------------------- the shipped plans


@pytest.mark.parametrize("name", ["nightly.yaml", "ci.yaml"])
def test_the_shipped_plans_parse_and_draw(name: str) -> None:
    plan = load_plan(SCHEDULES / name)
    kinds = {spec.kind for spec in plan.schedule.faults}
    assert {"kill", "delay", "abort"} <= kinds
    assert plan.source.endswith(name)
    events = draw_schedule(plan, duration_s=3600, seed=1, time_scale=1.0 if name == "nightly.yaml" else 0.05)
    assert events and {e.kind for e in events} <= kinds


def test_the_nightly_plan_has_the_benchmark_shape() -> None:
    plan = load_plan(SCHEDULES / "nightly.yaml")
    assert plan.load.rate == 500
    mtbf = {spec.kind: spec.mtbf_s for spec in plan.schedule.faults}
    assert mtbf["kill"] == mtbf["delay"] == 300
    assert mtbf["abort"] is not None and mtbf["abort"] > 300
    # About every 5 minutes each over an 8-hour night: far from saturated, so the draw is not all postponements.
    counts = {"kill": 0, "delay": 0}
    for seed in range(5):
        for event in draw_schedule(plan, duration_s=8 * 3600, seed=seed):
            if event.kind in counts:
                counts[event.kind] += 1
    for kind, count in counts.items():
        per_night = count / 5
        assert 0.6 * 96 <= per_night <= 1.1 * 96, f"{kind}: {per_night} events a night, expected about 96"


def test_the_ci_plan_yields_three_events_or_more_in_90_s_at_time_scale_005_whatever_the_seed() -> None:
    plan = load_plan(SCHEDULES / "ci.yaml")
    counts = [len(draw_schedule(plan, duration_s=90, seed=seed, time_scale=0.05)) for seed in range(300)]
    assert min(counts) >= 3, counts


def test_the_shipped_plans_are_not_collected_as_chaos_experiments() -> None:
    for path in SCHEDULES.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert "method" not in doc and "steady-state-hypothesis" not in doc, path


# --------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_schedule_and_other_seeds_other_ones() -> None:
    plan = plan_of(BASE)
    first = draw_schedule(plan, duration_s=4 * 3600, seed=42)
    assert draw_schedule(plan_of(BASE), duration_s=4 * 3600, seed=42) == first
    others = [draw_schedule(plan, duration_s=4 * 3600, seed=seed) for seed in range(20)]
    assert len({json.dumps(schedule_to_json(s)) for s in others}) == 20


def test_adding_a_kind_at_the_end_leaves_the_other_kinds_draws_alone() -> None:
    def unbounded(doc: dict[str, Any]) -> None:
        doc["schedule"]["max_overlap"] = 1000
        doc["schedule"]["quiet"] = []

    before = draw_schedule(plan_of(changed(BASE, unbounded)), duration_s=3 * 3600, seed=7)

    def more(doc: dict[str, Any]) -> None:
        unbounded(doc)
        doc["schedule"]["faults"].append({"kind": "abort", "target": "clover-server", "mtbf": "2m", "duration": "10s"})

    after = draw_schedule(plan_of(changed(BASE, more)), duration_s=3 * 3600, seed=7)
    assert any(e.kind == "abort" for e in after)
    assert [(e.at_s, e.kind) for e in after if e.kind != "abort"] == [(e.at_s, e.kind) for e in before]


# --------------------------------------------------------------------------- the exponential draw


def test_inter_arrival_times_are_exponential_with_mean_mtbf() -> None:
    mtbf = 300.0
    plan = plan_of(
        {
            "load": {"rate": 1},
            "slo": {"p99_ms": 100},
            "recovery": {"within_s": 0, "windows": 1},
            "schedule": {
                "max_overlap": 1000,
                "faults": [{"kind": "kill", "target": "clover-server", "mtbf": mtbf}],
            },
        }
    )
    events = draw_schedule(plan, duration_s=1000 * 3600, seed=3)
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(events)]
    assert len(gaps) > 10_000
    mean = sum(gaps) / len(gaps)
    assert abs(mean - mtbf) / mtbf < 0.03, mean
    # Exponential: half the gaps are shorter than mtbf·ln 2, 1 − 1/e of them shorter than mtbf, and the spread
    # equals the mean (a regular or a uniform draw fails all three).
    for quantile, share in ((mtbf * math.log(2), 0.5), (mtbf, 1 - math.exp(-1)), (2 * mtbf, 1 - math.exp(-2))):
        observed = sum(g < quantile for g in gaps) / len(gaps)
        assert abs(observed - share) < 0.02, (quantile, observed, share)
    spread = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert abs(spread - mean) / mean < 0.05, spread
    assert all(e.postponed_s == 0 for e in events)


# --------------------------------------------------------------------------- the rules, on many seeds and plans

KIND_PRESETS: list[dict[str, Any]] = [
    {"kind": "kill", "target": "clover-server", "params": {"count": 1}},
    {"kind": "delay", "target": "http-lb", "params": {"delay": "500ms", "percent": 50}},
    {"kind": "abort", "target": "clover-server", "params": {"status": 503, "percent": 10}},
    {"kind": "scale", "target": "clover-server", "params": {"replicas": 1}},
    {"kind": "shift", "target": "http-lb", "params": {"weights": {"v1": 90, "v2": 10}}},
]


@st.composite
def random_plans(draw: st.DrawFn) -> dict[str, Any]:
    faults = []
    for preset in draw(st.lists(st.sampled_from(KIND_PRESETS), min_size=1, max_size=4)):
        entry = dict(preset, mtbf=draw(st.integers(20, 900)))
        if preset["kind"] != "kill":
            entry["duration"] = draw(st.integers(1, 120))
        faults.append(entry)
    quiet = []
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, 3000))
        quiet.append({"from": start, "to": start + draw(st.integers(10, 600))})
    return {
        "load": {"rate": 50},
        "slo": {"p99_ms": 100},
        "recovery": {"within_s": draw(st.integers(0, 30)), "windows": draw(st.integers(1, 3))},
        "schedule": {
            "start_after": draw(st.integers(0, 300)),
            "min_gap": draw(st.integers(0, 60)),
            "max_overlap": draw(st.integers(1, 3)),
            "quiet": quiet,
            "faults": faults,
        },
    }


def occupied_until(plan: SoakPlan, event: ScheduledFault, time_scale: float) -> float:
    """The end of the span an event occupies, recomputed from the documented rule (gap floor included)."""
    gap = plan.schedule.min_gap_s
    gap = max(gap * time_scale, min(gap, plan.recovery.within_s + plan.recovery.windows))
    return round(max(event.ends_s + gap, event.at_s + 0.001), 3)


def most_occupied_at_once(plan: SoakPlan, events: Sequence[ScheduledFault], time_scale: float) -> int:
    """The most events occupied at one moment (reached where one starts), counted with a sweep."""
    edges = sorted(
        [(e.at_s, 1) for e in events] + [(occupied_until(plan, e, time_scale), -1) for e in events],
        key=lambda edge: (edge[0], edge[1]),  # at the same instant an end frees its place before a start takes one
    )
    most = busy = 0
    for _, step in edges:
        busy += step
        most = max(most, busy)
    return most


def check_every_rule(plan: SoakPlan, events: Sequence[ScheduledFault], duration_s: float, time_scale: float) -> None:
    assert [e.id for e in events] == [f"f{n:0{max(2, len(str(len(events))))}d}" for n in range(1, len(events) + 1)]
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    quiet_ends = {round(w.to_s * time_scale, 3) for w in plan.schedule.quiet}
    span_ends = {occupied_until(plan, e, time_scale) for e in events}
    for event in events:
        assert event.at_s >= plan.schedule.start_after_s * time_scale - 1e-9, event
        assert event.ends_s + plan.recovery.within_s + plan.recovery.windows <= duration_s + 1e-9, event
        assert event.postponed_s >= 0
        for window in plan.schedule.quiet:
            low, high = window.from_s * time_scale, window.to_s * time_scale
            in_force = event.at_s < high - 1e-9 and (event.ends_s > low + 1e-9 or event.at_s >= low - 1e-9)
            assert not in_force, (event, window)
        if event.postponed_s:
            # Postponed to the earliest moment it fits: where an occupied span or a quiet window ends.
            assert event.at_s in span_ends | quiet_ends, event
    assert most_occupied_at_once(plan, events, time_scale) <= plan.schedule.max_overlap


@settings(max_examples=60, deadline=None)
@given(
    doc=random_plans(),
    seed=st.integers(-(2**63), 2**63),
    duration_s=st.integers(60, 2 * 3600),
    time_scale=st.sampled_from([0.05, 0.2, 1.0, 3.0]),
)
def test_every_drawn_schedule_obeys_every_rule(
    doc: dict[str, Any], seed: int, duration_s: int, time_scale: float
) -> None:
    plan = plan_of(doc)
    events = draw_schedule(plan, duration_s=duration_s, seed=seed, time_scale=time_scale)
    check_every_rule(plan, events, duration_s, time_scale)
    assert draw_schedule(plan, duration_s=duration_s, seed=seed, time_scale=time_scale) == events


def test_the_checker_catches_a_broken_schedule() -> None:
    plan = plan_of(BASE)
    events = draw_schedule(plan, duration_s=3 * 3600, seed=1)
    check_every_rule(plan, events, 3 * 3600, 1.0)
    second = events[1]
    overlapping = ScheduledFault(**{**second.__dict__, "at_s": events[0].at_s + 1})
    with pytest.raises(AssertionError):
        check_every_rule(plan, [events[0], overlapping, *events[2:]], 3 * 3600, 1.0)
    in_quiet = ScheduledFault(**{**second.__dict__, "at_s": 21 * 60.0})
    with pytest.raises(AssertionError):
        check_every_rule(plan, [*events[:1], in_quiet], 3 * 3600, 1.0)


def test_a_quiet_window_drops_the_faults_it_would_hold_instead_of_postponing_them() -> None:
    doc = changed(BASE, lambda d: d["schedule"].update(max_overlap=1000, quiet=[{"from": "1h", "to": "2h"}]))
    plan = plan_of(doc)
    events = draw_schedule(plan, duration_s=3 * 3600, seed=5)
    assert any(e.at_s < 3600 for e in events) and any(e.at_s >= 7200 for e in events)
    assert not [e for e in events if 3600 <= e.at_s < 7200 or 3600 < e.ends_s <= 7200]
    assert all(e.postponed_s == 0 for e in events)
    # No burst where the window ends: the first event after it is a draw like any other, not a pile-up.
    assert len([e for e in events if 7200 <= e.at_s < 7260]) <= 2


def test_an_overlap_postpones_a_fault_to_the_earliest_moment_it_fits_and_keeps_it_while_it_fits() -> None:
    # Arrivals far more frequent than the 30 s + 30 s an event occupies: the events run back to back.
    def dense(doc: dict[str, Any]) -> None:
        doc["schedule"]["quiet"] = []
        doc["schedule"]["faults"] = [fault(doc, 1) | {"mtbf": "5s"}]

    plan = plan_of(changed(BASE, dense))
    duration = 3600.0
    events = draw_schedule(plan, duration_s=duration, seed=11)
    starts = [e.at_s for e in events]
    assert all(abs((b - a) - 60.0) < 1e-6 for a, b in itertools.pairwise(starts)), starts
    assert sum(e.postponed_s > 0 for e in events) > len(events) / 2
    # The last one is the last that fits: one more slot would end too late to judge its recovery.
    assert starts[-1] + 60 + 30 + 12 > duration >= starts[-1] + 30 + 12


def test_max_overlap_two_lets_two_faults_overlap_but_never_three() -> None:
    def two(doc: dict[str, Any]) -> None:
        doc["schedule"].update(max_overlap=2, quiet=[])
        fault(doc, 1)["mtbf"] = "20s"

    plan = plan_of(changed(BASE, two))
    events = draw_schedule(plan, duration_s=3600, seed=2)
    check_every_rule(plan, events, 3600, 1.0)
    assert most_occupied_at_once(plan, events, 1.0) == 2


# --------------------------------------------------------------------------- time scale


def test_time_scale_multiplies_the_schedule_but_not_the_soak_length() -> None:
    def loose(doc: dict[str, Any]) -> None:
        doc["schedule"].update(max_overlap=1000, min_gap=0)

    plan = plan_of(changed(BASE, loose))
    full = draw_schedule(plan, duration_s=10 * 3600, seed=9)
    tenth = draw_schedule(plan, duration_s=3600, seed=9, time_scale=0.1)
    # Away from the end (where the unscaled recovery allowance decides), every event is the same, × 0.1.
    early = [e for e in full if e.ends_s < 9 * 3600]
    assert len(early) > 50
    for a, b in zip(early, tenth, strict=False):
        assert (a.kind, a.target, a.params) == (b.kind, b.target, b.params)
        assert b.at_s == pytest.approx(a.at_s * 0.1, abs=0.002)
        assert b.duration_s == pytest.approx(a.duration_s * 0.1, abs=0.001)
    assert all(e.at_s >= 6.0 for e in tenth)  # start_after 1m × 0.1
    assert not [e for e in tenth if 120 <= e.at_s < 150 or 120 < e.ends_s <= 150]  # quiet 20–25 m × 0.1


def test_a_scaled_min_gap_never_drops_below_the_time_to_judge_a_recovery() -> None:
    def dense(doc: dict[str, Any]) -> None:
        doc["schedule"]["quiet"] = []
        fault(doc, 0)["mtbf"] = "10s"

    plan = plan_of(changed(BASE, dense))
    events = draw_schedule(plan, duration_s=600, seed=4, time_scale=0.05)
    starts = [e.at_s for e in events if e.kind == "kill"]
    assert len(starts) > 5
    # min_gap 30 s × 0.05 = 1.5 s, raised to within_s + windows = 12 s: kills back to back are 12 s apart.
    gaps = [b.at_s - a.ends_s for a, b in itertools.pairwise(events)]
    assert min(gaps) == pytest.approx(12.0, abs=0.002)


# --------------------------------------------------------------------------- fixed mode


def test_a_fixed_timeline_is_sorted_numbered_and_kept_as_written() -> None:
    plan = plan_of(FIXED)
    assert plan.schedule.mode == "fixed"
    events = draw_schedule(plan, duration_s=3600, seed=1)
    assert [(e.id, e.at_s, e.kind, e.origin) for e in events] == [
        ("f01", 120.0, "kill", "schedule.timeline[1]"),
        ("f02", 180.0, "scale", "schedule.timeline[2]"),
        ("f03", 300.0, "delay", "schedule.timeline[0]"),
    ]
    assert draw_schedule(plan, duration_s=3600, seed=2) == events  # the seed plays no part
    kill = events[0]
    assert kill.duration_s == 0 and kill.ends_s == kill.at_s and kill.params == {}
    assert events[1].params == {"replicas": 1} and events[1].ends_s == 240.0
    assert events[2].slo == {"p99_ms": 100.0}


def test_mode_fixed_is_assumed_when_only_a_timeline_is_given() -> None:
    plan = plan_of(changed(FIXED, lambda d: d["schedule"].pop("mode")))
    assert plan.schedule.mode == "fixed"


def test_a_fixed_timeline_too_long_for_the_soak_names_the_entry() -> None:
    plan = plan_of(FIXED)
    with pytest.raises(ConfigError) as caught:
        draw_schedule(plan, duration_s=320, seed=1)
    problems = [(p.file, p.field) for p in caught.value.problems]
    assert problems == [("plan.yaml", "schedule.timeline[0]")]
    assert "passes the soak's end" in str(caught.value)


def test_a_fixed_timeline_compressed_past_its_gaps_names_the_entry_and_the_scale() -> None:
    # The kill at 2m and the delay at 5m. At 0.1 they start at 12 s and 30 s: the kill occupies 12 s (min_gap
    # 20 s × 0.1 = 2 s, raised to within_s + windows = 12 s), up to 24 s: fine. At 0.05 they start at 6 s and
    # 15 s: the delay would start while the kill's recovery is still being judged.
    plan = plan_of(changed(FIXED, _drop("schedule.timeline.2")))
    assert len(draw_schedule(plan, duration_s=3600, seed=1, time_scale=0.1)) == 2
    with pytest.raises(ConfigError) as caught:
        draw_schedule(plan, duration_s=3600, seed=1, time_scale=0.05)
    assert [p.field for p in caught.value.problems] == ["schedule.timeline[0]"]
    assert "time scale 0.05" in str(caught.value) and "schedule.timeline[1] until 18s" in str(caught.value)


# --------------------------------------------------------------------------- bad input


def _parent(doc: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container holding ``path`` (dotted, list indices as numbers) and the key of it there."""
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    return node, int(last) if last.isdigit() else last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        node[key] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        del node[key]

    return change


BAD_RANDOM = [
    ("unknown top key", _set("method", []), "method", "unknown field"),
    ("unknown top key typo", _set("recovry", {}), "recovry", "did you mean 'recovery'"),
    ("missing load", _drop("load"), "load", "is required"),
    ("missing slo", _drop("slo"), "slo", "is required"),
    ("rate zero", _set("load.rate", 0), "load.rate", "out of range"),
    ("rate text", _set("load.rate", "fast"), "load.rate", "must be a number"),
    ("unknown objective", _set("slo.p98_ms", 5), "slo.p98_ms", "unknown objective"),
    ("error rate over 1", _set("slo.max_error_rate", 5), "slo.max_error_rate", "out of range"),
    ("empty slo", _set("slo", {}), "slo", "gives no objective"),
    ("recovery windows zero", _set("recovery.windows", 0), "recovery.windows", "out of range"),
    ("recovery bad duration", _set("recovery.within_s", "soon"), "recovery.within_s", "not a duration"),
    ("bad mode", _set("schedule.mode", "chaotic"), "schedule.mode", "random or fixed"),
    ("bad duration", _set("schedule.start_after", "2 minutes"), "schedule.start_after", "e.g. 500ms"),
    ("negative gap", _set("schedule.min_gap", "-30s"), "schedule.min_gap", "negative"),
    ("max_overlap 0", _set("schedule.max_overlap", 0), "schedule.max_overlap", "out of range"),
    ("max_overlap text", _set("schedule.max_overlap", "one"), "schedule.max_overlap", "whole number"),
    ("quiet reversed", _set("schedule.quiet.0.to", "10m"), "schedule.quiet[0]", "before it begins"),
    ("quiet not a list", _set("schedule.quiet", {"from": 1}), "schedule.quiet", "must be a list"),
    ("quiet unknown key", _set("schedule.quiet.0.until", "1h"), "schedule.quiet[0].until", "unknown field"),
    ("no faults", _set("schedule.faults", []), "schedule.faults", "is empty"),
    ("timeline in random mode", _set("schedule.timeline", []), "schedule.timeline", "mode: fixed"),
    ("unknown kind", _set("schedule.faults.1.kind", "delya"), "schedule.faults[1].kind", "did you mean 'delay'"),
    ("missing kind", _drop("schedule.faults.1.kind"), "schedule.faults[1].kind", "is required"),
    ("missing target", _drop("schedule.faults.1.target"), "schedule.faults[1].target", "is required"),
    ("bad target", _set("schedule.faults.1.target", "HTTP LB"), "schedule.faults[1].target", "Kubernetes name"),
    ("missing mtbf", _drop("schedule.faults.0.mtbf"), "schedule.faults[0].mtbf", "is required"),
    ("negative mtbf", _set("schedule.faults.0.mtbf", -300), "schedule.faults[0].mtbf", "negative"),
    ("zero mtbf", _set("schedule.faults.0.mtbf", 0), "schedule.faults[0].mtbf", "zero"),
    ("nan mtbf", _set("schedule.faults.0.mtbf", float("nan")), "schedule.faults[0].mtbf", "NaN"),
    ("infinite mtbf", _set("schedule.faults.0.mtbf", float("inf")), "schedule.faults[0].mtbf", "longer than a year"),
    ("at in random mode", _set("schedule.faults.0.at", "1m"), "schedule.faults[0].at", "fixed timelines"),
    ("missing duration", _drop("schedule.faults.1.duration"), "schedule.faults[1].duration", "is required"),
    ("zero duration", _set("schedule.faults.1.duration", "0s"), "schedule.faults[1].duration", "zero"),
    ("kill duration", _set("schedule.faults.0.duration", "5s"), "schedule.faults[0].duration", "instantaneous"),
    ("kill slo", _set("schedule.faults.0.slo", {"max_error_rate": 2}), "schedule.faults[0].slo.max_error_rate", ""),
    ("unknown param", _set("schedule.faults.1.params.percnt", 5), "schedule.faults[1].params.percnt", "'percent'"),
    ("missing delay", _drop("schedule.faults.1.params.delay"), "schedule.faults[1].params.delay", "is required"),
    ("delay number", _set("schedule.faults.1.params.delay", 500), "schedule.faults[1].params.delay", "with a unit"),
    ("delay sub-ms", _set("schedule.faults.1.params.delay", "1.5ms"), "schedule.faults[1].params.delay", "whole"),
    ("percent > 100", _set("schedule.faults.1.params.percent", 150), "schedule.faults[1].params.percent", "range"),
    (
        "header number",
        _set("schedule.faults.1.params.headers", {"v": 2}),
        "schedule.faults[1].params.headers.v",
        "quote",
    ),
    ("kill both", _set("schedule.faults.0.params.percent", 50), "schedule.faults[0].params", "not both"),
    ("kill count 0", _set("schedule.faults.0.params.count", 0), "schedule.faults[0].params.count", "range"),
    ("kill grace", _set("schedule.faults.0.params.grace", "soon"), "schedule.faults[0].params.grace", "duration"),
    ("params list", _set("schedule.faults.1.params", [1]), "schedule.faults[1].params", "must be a mapping"),
    ("fault slo typo", _set("schedule.faults.1.slo.p99", 1), "schedule.faults[1].slo.p99", "unknown objective"),
    (
        "abort status",
        _set(
            "schedule.faults.1", {"kind": "abort", "target": "a", "mtbf": 60, "duration": 5, "params": {"status": 42}}
        ),
        "schedule.faults[1].params.status",
        "range",
    ),
    (
        "shift weights",
        _set("schedule.faults.1", {"kind": "shift", "target": "a", "mtbf": 60, "duration": 5, "params": {}}),
        "schedule.faults[1].params.weights",
        "is required",
    ),
    (
        "shift sum",
        _set(
            "schedule.faults.1",
            {"kind": "shift", "target": "a", "mtbf": 60, "duration": 5, "params": {"weights": {"v1": 50}}},
        ),
        "schedule.faults[1].params.weights",
        "add up to 100",
    ),
    (
        "scale replicas",
        _set(
            "schedule.faults.1",
            {"kind": "scale", "target": "a", "mtbf": 60, "duration": 5, "params": {"replicas": -1}},
        ),
        "schedule.faults[1].params.replicas",
        "range",
    ),
]

BAD_FIXED = [
    ("fixed before start_after", _set("schedule.timeline.1.at", "30s"), "schedule.timeline[1]", "start_after"),
    ("fixed inside a quiet window", _set("schedule.timeline.0.at", "11m"), "schedule.timeline[0]", "quiet window"),
    ("fixed overlapping", _set("schedule.timeline.0.at", "3m30s"), "schedule.timeline[0]", "max_overlap allows 1"),
    ("fixed entry with mtbf", _set("schedule.timeline.0.mtbf", "5m"), "schedule.timeline[0].mtbf", "random"),
    ("fixed entry without at", _drop("schedule.timeline.0.at"), "schedule.timeline[0].at", "is required"),
    ("faults in fixed mode", _set("schedule.faults", []), "schedule.faults", "mode: fixed takes timeline"),
]


@pytest.mark.parametrize(
    ("base", "change", "field", "message"),
    [pytest.param(BASE, *case[1:], id=case[0]) for case in BAD_RANDOM]
    + [pytest.param(FIXED, *case[1:], id=case[0]) for case in BAD_FIXED],
)
def test_bad_input_is_a_config_error_naming_the_file_and_the_field(
    base: dict[str, Any], change: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_of(changed(base, change), file="faults/schedules/mine.yaml")
    problems = caught.value.problems
    assert [p.field for p in problems] == [field], problems
    assert problems[0].file == "faults/schedules/mine.yaml" and problems[0].obj == "soak plan"
    assert message in problems[0].message
    assert f"faults/schedules/mine.yaml: soak plan: {field}: error:" in str(caught.value)


def test_every_problem_is_listed_not_just_the_first() -> None:
    def three(doc: dict[str, Any]) -> None:
        doc["load"]["rate"] = -1
        fault(doc, 0)["mtbf"] = "soon"
        fault(doc, 1)["params"]["percnt"] = 5

    with pytest.raises(ConfigError) as caught:
        plan_of(changed(BASE, three))
    assert [p.field for p in caught.value.problems] == [
        "load.rate",
        "schedule.faults[0].mtbf",
        "schedule.faults[1].params.percnt",
    ]
    assert str(caught.value).startswith("3 problems")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("- load\n- slo\n", "must be a mapping"),
        ("42\n", "must be a mapping"),
        ("load: {rate: 5\nslo: {}\n", "not valid YAML at line 2"),
        ("load: 1\n---\nslo: 2\n", "not valid YAML"),
    ],
)
def test_text_that_is_not_a_plan_is_a_config_error_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_plan(text, file="x.yaml")
    assert caught.value.problems[0].file == "x.yaml"
    assert message in str(caught.value)


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_plan(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_plan(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00load")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_plan(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 300_000)
    with pytest.raises(ConfigError, match="larger than"):
        load_plan(huge)


def test_the_plan_keeps_guardrails_exactly_as_written() -> None:
    plan = plan_of(BASE)
    assert plan.guardrails_raw == BASE["guardrails"]
    assert plan_of(changed(BASE, _drop("guardrails"))).guardrails_raw is None


def test_a_plan_asking_for_absurdly_many_events_is_refused_naming_the_mtbf() -> None:
    plan = plan_of(changed(BASE, _set("schedule.faults.0.mtbf", "1ms")))
    with pytest.raises(ConfigError) as caught:
        draw_schedule(plan, duration_s=3600, seed=1)
    assert caught.value.problems[0].field == "schedule.faults[0].mtbf"


@pytest.mark.parametrize(
    ("duration_s", "time_scale"), [(0, 1.0), (-5, 1.0), (float("nan"), 1.0), (60, 0), (60, float("inf"))]
)
def test_a_bad_soak_length_or_time_scale_is_a_config_error(duration_s: float, time_scale: float) -> None:
    with pytest.raises(ConfigError):
        draw_schedule(plan_of(BASE), duration_s=duration_s, seed=1, time_scale=time_scale)


# --------------------------------------------------------------------------- the parameters are Faults' own


def test_every_kind_and_parameter_is_a_faults_method_and_its_keyword_arguments() -> None:
    from pytest_clover.faults.injector import Faults

    for kind, params in FAULT_PARAMS.items():
        signature = inspect.signature(getattr(Faults, kind))
        names = [name for name in signature.parameters if name != "self"]
        assert set(params) == set(names[1:]), (kind, names)


def test_events_carry_their_own_slo_or_the_plans() -> None:
    plan = plan_of(BASE)
    events = draw_schedule(plan, duration_s=3 * 3600, seed=8)
    kinds = {e.kind: e for e in events}
    assert kinds["delay"].slo == {"p99_ms": 700.0, "max_error_rate": 0.01}  # its own p99, the plan's error rate
    assert kinds["kill"].slo == {"p99_ms": 100.0, "max_error_rate": 0.01}
    assert kinds["kill"].duration_s == 0 and kinds["kill"].ends_s == kinds["kill"].at_s
    assert kinds["delay"].params == {"delay": "500ms", "percent": 50}


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), (90, 90), ("90", 90), (1.5, 1.5)],
)
def test_durations_are_read_in_seconds(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["-5m", "5 m", "abc", "", "1y", "5m garbage", True, None, [1], float("nan"), float("inf"), -1, "0", 0]
)
def test_a_bad_duration_names_the_field_and_shows_an_example(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value, file="<command line>", field="--clover-soak")
    problem = caught.value.problems[0]
    assert (problem.file, problem.field) == ("<command line>", "--clover-soak")
    assert "e.g." in problem.message or "longer than a year" in problem.message


def test_zero_is_a_duration_only_where_it_means_something() -> None:
    assert parse_duration("0s", allow_zero=True) == 0
    with pytest.raises(ConfigError, match="zero"):
        parse_duration("0s")


# --------------------------------------------------------------------------- showing and saving


def test_describe_shows_one_line_per_event_with_its_id_kind_target_and_params() -> None:
    events = draw_schedule(plan_of(BASE), duration_s=2 * 3600, seed=3)
    text = describe(events)
    lines = text.splitlines()
    assert lines[0].split() == ["id", "at", "kind", "target", "duration", "params"]
    assert len(lines) == len(events) + 1
    for event, line in zip(events, lines[1:], strict=True):
        assert line.split()[0] == event.id and event.kind in line and event.target in line
        assert ("instant" in line) == (event.kind == "kill")
        if event.kind == "delay":
            assert "delay=500ms percent=50" in line and " 30s " in line
    assert describe([]) == "no fault events"


def test_a_saved_schedule_reads_back_identical() -> None:
    events = draw_schedule(load_plan(SCHEDULES / "ci.yaml"), duration_s=90, seed=12, time_scale=0.05)
    saved = json.loads(json.dumps(schedule_to_json(events)))
    assert saved[0]["ends_s"] == events[0].ends_s
    assert schedule_from_json(saved, file="run/schedule.json") == events


@pytest.mark.parametrize(
    ("rows", "where"),
    [
        ({"not": "a list"}, "schedule"),
        ([1], "schedule[0]"),
        ([{"id": "f01"}], "schedule[0]"),
        ("broken", "schedule"),
    ],
)
def test_a_saved_schedule_that_is_not_one_names_the_file_and_the_entry(rows: Any, where: str) -> None:
    with pytest.raises(ReportDataError) as caught:
        schedule_from_json(rows, file="run/schedule.json")
    assert str(caught.value).startswith(f"run/schedule.json: {where}")


def test_a_saved_event_with_a_wrong_field_is_named() -> None:
    events = draw_schedule(plan_of(BASE), duration_s=3600, seed=1)
    rows = schedule_to_json(events)
    rows[1]["at_s"] = "soon"
    with pytest.raises(ReportDataError, match=r"schedule\[1\]\.at_s"):
        schedule_from_json(rows, file="s.json")
    rows = schedule_to_json(events)
    rows[0]["ends_s"] = rows[0]["ends_s"] + 5
    with pytest.raises(ReportDataError, match=r"schedule\[0\]\.ends_s"):
        schedule_from_json(rows, file="s.json")
