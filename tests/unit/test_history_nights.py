"""Nightly history (issue 14): ``--clover-compare=last:N`` (the median of each test's last N complete runs), the
per-run resilience score and the data of the trend across nights, and the trend plot on 30 nights."""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pytest_clover.errors import NoReferenceRun
from pytest_clover.plugin.settings import parse_compare
from pytest_clover.report import history, plots
from pytest_clover.report.sample import write_sample_run
from pytest_clover.report.summary import build_summary, load_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

T0 = 1_795_230_000.0  # 2026-11-21 00:20 UTC
SOAK = "suites/test_09_soak.py::test_soak"
DELAY = "suites/test_02_lb_delay.py::test_lb_delay"


def night(k: int) -> str:
    """The run id of night ``k``: yyyymmdd-020000-<pid>, one day apart."""
    return time.strftime("%Y%m%d-020000", time.gmtime(T0 + k * 86400)) + f"-{800 + k}"


def record(
    run: int,
    nodeid: str = SOAK,
    *,
    p99: dict[str, float | None] | None = None,
    errors: dict[str, float | None] | None = None,
    recovery: dict[str, float | None] | None = None,
    partial: bool = False,
    outcome: str = "passed",
    fraction: float | None = 1.0,
    weight: float | None = 1.0,
) -> dict[str, Any]:
    return {
        "v": 1,
        "run_id": night(run),
        "time": T0 + run * 86400,
        "nodeid": nodeid,
        "outcome": outcome,
        "partial": partial,
        "seed": run,
        "time_scale": 1.0,
        "weight": weight,
        "score_fraction": fraction,
        "p99_ms": p99 if p99 is not None else {"quiet": 10.0, "fault": 500.0},
        "error_rate": errors if errors is not None else {"quiet": 0.0, "fault": 0.01},
        "throughput_rps": {},
        "recovery_s": recovery if recovery is not None else {"soak kill": 2.0},
    }


# --------------------------------------------------------------------------- last:N


@pytest.mark.parametrize(
    ("compare", "count"), [("last", None), ("20261121-020000-811", None), ("last:2", 2), ("last: 7", 7)]
)
def test_median_count_reads_last_n(compare: str, count: int | None) -> None:
    assert history.median_count(compare) == count


@pytest.mark.parametrize(
    ("compare", "says"),
    [
        ("last:1", "write `last`"),
        ("last:0", "last:0 names no run"),
        ("last:-3", "last:-3 names no run"),
        ("last:x", "'x' is not a number of runs"),
        ("last:", "'' is not a number of runs"),
    ],
)
def test_a_bad_last_n_says_what_to_write(compare: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        history.median_count(compare)
    with pytest.raises(pytest.UsageError, match=re.escape(f"--clover-compare={compare!r}: ")):
        parse_compare(compare, "--clover-compare")


def test_the_median_of_an_odd_number_of_runs_is_the_middle_one() -> None:
    records = [
        record(0, p99={"fault": 900.0}),  # older than the last 3: left out
        record(1, p99={"quiet": 10.0, "fault": 500.0}, errors={"fault": 0.03}, recovery={"soak kill": 4.0}),
        record(2, p99={"quiet": 30.0, "fault": 700.0}, errors={"fault": 0.01}, recovery={"soak kill": 2.0}),
        record(3, p99={"quiet": 20.0, "fault": 600.0}, errors={"fault": 0.02}, recovery={"soak kill": 9.0}),
    ]
    (ref,) = history.median_references(records, 3, current_run_id="now").values()
    assert ref["runs"] == [night(1), night(2), night(3)]
    assert ref["p99_ms"] == {"quiet": 20.0, "fault": 600.0}
    assert ref["error_rate"] == {"fault": 0.02}
    assert ref["recovery_s"] == {"soak kill": 4.0}


def test_the_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two() -> None:
    records = [
        record(k, p99={"fault": v}, recovery={"soak kill": r})
        for k, (v, r) in enumerate([(400.0, 1.0), (800.0, 5.0), (500.0, 2.0), (600.0, 3.0)])
    ]
    (ref,) = history.median_references(records, 4, current_run_id="now").values()
    assert ref["p99_ms"]["fault"] == pytest.approx(550.0)
    assert ref["recovery_s"]["soak kill"] == pytest.approx(2.5)


def test_partial_runs_and_the_current_run_are_left_out_and_older_runs_fill_in() -> None:
    records = [
        record(0, p99={"fault": 100.0}),
        record(1, p99={"fault": 200.0}),
        record(2, p99={"fault": 5000.0}, partial=True),  # a night that crashed at hour 2
        record(3, p99={"fault": 300.0}),
        record(4, p99={"fault": 9999.0}),  # this run, if the report is rebuilt
    ]
    (ref,) = history.median_references(records, 3, current_run_id=night(4)).values()
    assert ref["runs"] == [night(0), night(1), night(3)]
    assert ref["p99_ms"]["fault"] == 200.0


def test_runs_without_the_test_do_not_count_towards_its_n() -> None:
    records = [
        record(0, DELAY, p99={"fault": 100.0}),
        record(1, DELAY, p99={"fault": 300.0}),
        record(1, SOAK),
        record(2, SOAK),
        record(3, SOAK),
        record(3, DELAY, p99={"fault": 200.0}),
        record(3, DELAY, p99={"fault": 250.0}),  # the same run recorded twice: its last record counts, once
    ]
    refs = history.median_references(records, 3, current_run_id="now")
    assert refs[DELAY]["runs"] == [night(0), night(1), night(3)]
    assert refs[DELAY]["p99_ms"]["fault"] == 250.0
    assert refs[SOAK]["runs"] == [night(1), night(2), night(3)]


def test_a_phase_only_some_runs_measured_takes_the_median_of_those() -> None:
    records = [
        record(0, p99={"quiet": 10.0}),
        record(1, p99={"quiet": 12.0, "fault": 700.0}),
        record(2, p99={"quiet": 14.0, "fault": None}),  # measured nothing in that phase
    ]
    (ref,) = history.median_references(records, 3, current_run_id="now").values()
    assert ref["p99_ms"] == {"quiet": 12.0, "fault": 700.0}


@pytest.mark.parametrize(
    ("times", "median"),
    [
        ([2.0, None, 4.0], 4.0),  # one night of three never recovered: the middle of 2, 4, ∞
        ([2.0, None, None], None),  # two of three never: "never", and then nothing now is a regression
        ([2.0, None, 4.0, None], 4.0),  # exactly half never: not a majority, the time below the middle
        ([2.0, None, None, None], None),
        ([None], None),
    ],
)
def test_a_recovery_that_never_happened_counts_as_infinity(times: list[float | None], median: float | None) -> None:
    records = [record(k, recovery={"soak delay": t}) for k, t in enumerate(times)]
    (ref,) = history.median_references(records, len(times), current_run_id="now").values()
    assert ref["recovery_s"] == {"soak delay": median}
    current = {"recovery_s": {"soak delay": None}}
    checks = [c for c in history.compare(current, ref, history.Thresholds()) if c["metric"] == "recovery_s"]
    # Against a time, never recovering now regresses; against "never", nothing now is a regression (not checked).
    assert [c["ok"] for c in checks] == ([] if median is None else [False])


def test_references_for_last_n_and_for_one_run() -> None:
    records = [record(k, p99={"fault": 500.0 + k}) for k in range(5)]
    label, refs = history.references(records, "last:3", current_run_id="now")
    assert label == "the median of the last 3 runs"
    assert refs[SOAK]["p99_ms"]["fault"] == 503.0
    label, refs = history.references(records, "last", current_run_id="now")
    assert label == night(4) and refs[SOAK]["p99_ms"]["fault"] == 504.0 and refs[SOAK]["run_id"] == night(4)
    assert history.references(records, night(1), current_run_id="now")[1][SOAK]["p99_ms"]["fault"] == 501.0
    # The single-run forms are what they were.
    assert history.reference_run(records, "last", current_run_id=night(4)) == night(3)


def test_last_n_needs_one_earlier_complete_run() -> None:
    with pytest.raises(NoReferenceRun, match=r"^--clover-compare=last:3: the history holds no earlier complete run$"):
        history.references([], "last:3", current_run_id="now")
    partial_only = [record(0, partial=True), record(1, partial=True)]
    with pytest.raises(NoReferenceRun, match=r"no earlier complete run \(2 partial run\(s\) are left out"):
        history.references(partial_only, "last:3", current_run_id="now")
    # `last` is the previous run, partial or not, as it always was.
    assert history.references(partial_only, "last", current_run_id="now")[0] == night(1)


def test_the_regression_message_names_the_median_and_its_runs() -> None:
    records = [record(k, p99={"fault": v}) for k, v in enumerate([480.0, 500.0, 520.0, 900.0, 510.0])]
    refs = history.median_references(records, 5, current_run_id="now")
    checks = history.compare({"p99_ms": {"fault": 800.0}}, refs[SOAK], history.Thresholds())
    runs = f"{night(0)}, {night(1)}, …, {night(4)}"
    assert all(c["run_id"] == f"the median of the last 5 runs ({runs})" for c in checks)
    message = history.regression_message(checks, refs[SOAK])
    first, header, row = message.splitlines()
    assert first == f"regressed against the median of the last 5 runs ({runs}) (1 metric; --clover-compare):"
    assert header.split() == ["metric", "phase", "median", "of", "5", "runs", "this", "run", "allowed", "up", "to"]
    assert row.split() == ["p99", "fault", "510.0", "ms", "800.0", "ms", "637.5", "ms"]


def test_with_fewer_runs_than_asked_the_message_says_how_many() -> None:
    records = [record(0, p99={"fault": 500.0}), record(1, p99={"fault": 600.0})]
    ref = history.median_references(records, 7, current_run_id="now")[SOAK]
    checks = history.compare({"p99_ms": {"fault": 900.0}}, ref, history.Thresholds())
    message = history.regression_message(checks, ref)
    assert message.startswith(
        f"regressed against the median of the 2 earlier complete runs of this test ({night(0)}, {night(1)}; "
        "7 asked for) (1 metric; --clover-compare):"
    )
    assert "550.0 ms" in message
    (ref,) = history.median_references(records[:1], 7, current_run_id="now").values()
    message = history.regression_message(history.compare({"p99_ms": {"fault": 900.0}}, ref, history.Thresholds()), ref)
    assert message.startswith(f"regressed against run {night(0)}, the only earlier complete run of this test (of the")
    assert f"run {night(0)}  this run" in message.splitlines()[1]


def test_a_run_id_reference_keeps_its_message() -> None:
    ref = history.reference_records([record(0, p99={"fault": 500.0})], night(0))[SOAK]
    checks = history.compare({"p99_ms": {"fault": 900.0}}, ref, history.Thresholds())
    for reference in (ref, night(0)):
        assert history.regression_message(checks, reference).startswith(
            f"regressed against run {night(0)} (1 metric; --clover-compare):"
        )


# --------------------------------------------------------------------------- the score per run


def test_the_score_per_run_is_the_reports_score(tmp_path: Path) -> None:
    run = write_sample_run(
        tmp_path / "20261121-020000-811",
        tests=4,
        seconds=(3.0, 2.0, 3.0),
        rate=20.0,
        hops=0,
        verdicts=["passed", "failed", "error", "skipped"],
    )
    folders = sorted(p for p in run.iterdir() if p.is_dir())
    test_json = folders[1] / "test.json"
    data = json.loads(test_json.read_text())
    data["slo"][0]["ok"] = False  # 1 of 2 objectives met
    data["weight"] = 3.0
    test_json.write_text(json.dumps(data))
    summary = build_summary(load_run(run))
    records = history.records_for(summary)
    assert summary["score"]["value"] is not None and 0 < summary["score"]["value"] < 100
    assert history.run_score(records) == summary["score"]["value"]


def test_the_score_per_run_leaves_out_tests_without_a_fraction() -> None:
    records = [
        record(0, fraction=1.0, weight=1.0),
        record(0, DELAY, fraction=0.5, weight=None),  # no weight: the marker's default, 1
        record(0, "t::left_out", fraction=None, weight=5.0),
    ]
    assert history.run_score(records) == 75.0
    assert history.run_score(records[2:]) is None
    assert history.run_score([*records[:2], record(0, DELAY, fraction=1.0, weight=3.0)]) == 100.0  # last wins


# --------------------------------------------------------------------------- the trend across nights


def nights(count: int = 30, seed: int = 14) -> list[dict[str, Any]]:
    """``count`` nights of a soak and a delay test, file order shuffled within each night; night 17 crashed (partial),
    the delay test missed night 5, and the soak's delay events never recovered on nights 3 and 20."""
    rng = random.Random(seed)
    records = []
    for k in range(count):
        soak = record(
            k,
            p99={"quiet": 10.0 + k, "fault": 500.0 + k, "recovery": 12.0},
            errors={"quiet": 0.0, "fault": 0.01 * (k % 3)},
            recovery={"soak kill": 2.0 + k / 10, "soak delay": None if k in (3, 20) else 1.0},
            partial=k == 17,
            outcome="failed" if k in (3, 20) else "passed",
            fraction=0.5 if k in (3, 20) else 1.0,
            weight=3.0,
        )
        delay = record(k, DELAY, p99={"baseline": 8.0, "fault": 510.0}, recovery={"fault": 1.0}, fraction=1.0)
        night_records = [soak] if k == 5 else [soak, delay]
        rng.shuffle(night_records)
        records += night_records
    return records


def test_trend_data_has_the_runs_scores_and_series_of_the_window() -> None:
    records = nights(32)
    data = history.trend_data(records, last=30)
    assert data.runs == [night(k) for k in range(2, 32)]
    assert data.times == [T0 + k * 86400 for k in range(2, 32)]
    assert data.tests[0] in (SOAK, DELAY) and sorted(data.tests) == sorted([SOAK, DELAY])
    at = {run_id: i for i, run_id in enumerate(data.runs)}
    # Score: (3 × fraction + 1 × 1) / 4; night 5 has only the soak.
    assert data.scores[at[night(3)]] == pytest.approx(100 * (3 * 0.5 + 1) / 4, abs=0.05)
    assert data.scores[at[night(5)]] == 100.0
    assert data.scores[at[night(20)]] == 62.5
    assert data.partial == [k == 17 for k in range(2, 32)]
    soak = data.series[SOAK]
    assert soak["p99_ms"]["quiet"] == [10.0 + k for k in range(2, 32)]
    assert set(soak["recovery_s"]) == {"soak kill", "soak delay"}
    delay_recovery = soak["recovery_s"]["soak delay"]
    assert [i for i, v in enumerate(delay_recovery) if math.isinf(v)] == [at[night(3)], at[night(20)]]
    assert data.failed[SOAK] == [at[night(3)], at[night(20)]] and data.failed[DELAY] == []
    missing = data.series[DELAY]["p99_ms"]["fault"]
    assert [i for i, v in enumerate(missing) if math.isnan(v)] == [at[night(5)]]
    assert set(data.keys) >= {"quiet", "fault", "recovery", "baseline", "soak kill", "soak delay"}


def test_trend_data_orders_runs_by_time_not_file_order() -> None:
    records = [record(2), record(0), record(1)]
    assert history.trend_data(records, last=2).runs == [night(1), night(2)]
    assert history.trend_data([], last=30).runs == []


def lines(axes: Sequence[Axes], gid: str) -> list[Line2D]:
    """The lines (and marker sets) drawn with ``gid`` in ``axes``."""
    return [a for ax in axes for a in ax.get_lines() if a.get_gid() == gid]


def test_the_trend_of_30_nights_has_the_score_panel_over_one_row_per_test() -> None:
    data = history.trend_data(nights(30), last=30)
    fig = plots.trend(nights(30), title="nightly")
    assert len(fig.axes) == 2 * 3 + 1  # three panels per test, then the score
    score_ax = fig.axes[-1]
    (score,) = lines([score_ax], "trend:score")
    assert np.asarray(score.get_ydata(), dtype=float).tolist() == pytest.approx(
        [np.nan if s is None else s for s in data.scores], nan_ok=True
    )
    (hollow,) = lines([score_ax], "score:partial")
    assert np.asarray(hollow.get_xdata()).tolist() == [17]
    assert score_ax.get_ylabel() == "score (%)"
    # The soak's row: quiet and fault p99, the time to recover per fault kind, "never" where it never recovered.
    row = fig.axes[3 * data.tests.index(SOAK) : 3 * data.tests.index(SOAK) + 3]
    gids = {a.get_gid() for ax in row for a in ax.get_children() if a.get_gid()}
    assert gids >= {
        "trend:p99_ms:quiet",
        "trend:p99_ms:fault",
        "trend:recovery_s:soak kill",
        "trend:recovery_s:soak delay",
    }
    (never,) = lines(row, "never:soak delay")
    assert np.asarray(never.get_xdata()).tolist() == [3, 20]
    # Dates on the x axis, the latest night labelled.
    labels = [t.get_text() for t in score_ax.get_xticklabels()]
    assert labels[0] == time.strftime("%m-%d\n%H:%M", time.strptime(night(0)[:15], "%Y%m%d-%H%M%S"))
    assert labels[-1].startswith(time.strftime("%m-%d", time.strptime(night(29)[:8], "%Y%m%d")))
    assert 5 <= len(labels) <= 7


def test_the_trend_legend_sits_above_every_panel_and_the_png_renders() -> None:
    fig = plots.trend(nights(30), title="nightly")
    png = plots.to_png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert box.x1 <= fig.bbox.width + 1 and box.x0 >= 0  # inside the figure, however many keys
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes]
    assert all(panel is not None and box.y0 > panel.y1 for panel in panels)  # covers no panel
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"soak kill", "soak delay", "quiet", "failed run", "never recovered", "partial run"} <= set(texts)


def test_the_trend_draws_a_bounded_number_of_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound itself is large (rows cost time); the rule is the same at any bound.
    monkeypatch.setattr(plots, "TREND_MAX_TESTS", 3)
    records = [
        record(k, f"suites/test_{j:02d}.py::test_x", p99={"fault": 500.0}, errors={}, recovery={})
        for k in range(2)
        for j in range(5)
    ]
    fig = plots.trend(records)
    assert len(fig.axes) == 3 * 3 + 1
    assert [t.get_text() for t in fig.texts][:3] == [f"suites/test_{j:02d}.py::test_x" for j in range(3)]
    assert any(t.get_text().startswith("2 more tests not drawn (the trend draws 3)") for t in fig.texts)


def test_without_any_recorded_score_there_is_no_score_panel() -> None:
    fig = plots.trend([record(k, fraction=None) for k in range(3)])
    assert len(fig.axes) == 3
    assert lines(fig.axes, "trend:score") == []
    # Nothing failed, nothing never recovered, nothing partial: the legend names only what is drawn.
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["quiet", "fault", "soak kill"]
