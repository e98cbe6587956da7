"""Unit tests for pytest_clover.report.plots: the figures contain what they claim (spans, labels, curves, bars).

Synthetic data only (no mesh, no load): window frames shaped like ``LoadResult.windows``, timelines shaped like
``Timeline.events()``, histograms from ``new_histogram()``. Assertions read the returned Figure's artists (by
gid) and ``PlotFigure.clover_spans``, never pixels; ``save`` is checked by opening the PNG with Pillow.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pytest_clover.load.result import new_histogram
from pytest_clover.report import plots
from pytest_clover.report.sample import SEGMENTS as SAMPLE_SEGMENTS

T0 = 1_795_270_500.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_windows(
    phases: Sequence[tuple[str | None, int]] = (("baseline", 60), ("fault", 30), ("recovery", 30)),
    *,
    rate: int = 100,
    p50: float = 3.0,
    p99: float = 8.0,
    fault_p99: float = 510.0,
    fault_error_rate: float = 0.0,
    start: float = T0,
) -> pandas.DataFrame:
    """1-s windows: steady latency, the "fault" phase slower (and failing at ``fault_error_rate``)."""
    rows: list[dict[str, Any]] = []
    t = start
    for phase, seconds in phases:
        for _ in range(seconds):
            faulty = phase == "fault"
            errors = round(rate * fault_error_rate) if faulty else 0
            tail = fault_p99 if faulty else p99
            rows.append(
                {
                    "start": t,
                    "end": t + 1.0,
                    "phase": phase,
                    "requests": rate,
                    "errors": errors,
                    "late": 0,
                    "error_rate": errors / rate,
                    "throughput_rps": float(rate),
                    "p50_ms": p50,
                    "p95_ms": (p50 + tail) / 2,
                    "p99_ms": tail,
                    "max_ms": tail * 1.2,
                }
            )
            t += 1.0
    return pandas.DataFrame(rows)


def make_events(
    phases: Sequence[tuple[str, int]] = (("baseline", 60), ("fault", 30), ("recovery", 30)),
    *,
    fault: tuple[float, float | None] | None = (60.15, 89.95),
    fault_id: Any = 7,
    description: str = "delay 500ms 50% on http-lb",
    verified: bool | None = True,
    start: float = T0,
) -> list[dict[str, Any]]:
    """A timeline as the fixtures write it; the fault's end event names it differently (pairing is by id)."""
    events: list[dict[str, Any]] = []
    t = start
    for name, seconds in phases:
        events.append({"time": t, "kind": "phase-start", "name": name, "seconds": seconds})
        events.append({"time": t + seconds, "kind": "phase-end", "name": name})
        t += seconds
    if fault is not None:
        ident = {"id": fault_id} if fault_id is not None else {}
        events.append({"time": start + fault[0], "kind": "fault-start", "name": description, "fault": "delay", **ident})
        if fault[1] is not None:
            end_name = "delay on http-lb" if fault_id is not None else description
            events.append({"time": start + fault[1], "kind": "fault-end", "name": end_name, **ident})
        if verified is not None:
            kind = "fault-verified" if verified else "fault-inconclusive"
            events.append({"time": start + fault[0] + 1.0, "kind": kind, "name": description, **ident})
    return sorted(events, key=lambda e: e["time"])


def axes_by_ylabel(fig: Figure, prefix: str) -> Axes:
    found = [ax for ax in fig.axes if ax.get_ylabel().startswith(prefix)]
    assert len(found) == 1, [ax.get_ylabel() for ax in fig.axes]
    return found[0]


def artists_with_gid(fig: Figure, gid: str) -> list[Any]:
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid)]


def x_extent(artist: Any) -> tuple[float, float]:
    """(x0, x1) in data units of a span: a Rectangle (axvspan) or a PolyCollection (broken_barh)."""
    if isinstance(artist, Rectangle):
        return artist.get_x(), artist.get_x() + artist.get_width()
    x0, _y0, x1, _y1 = artist.get_paths()[0].get_extents().extents
    return float(x0), float(x1)


def spans(fig: plots.PlotFigure, kind: str) -> list[dict[str, Any]]:
    return [s for s in fig.clover_spans if s["kind"] == kind]


# -- colours -----------------------------------------------------------------------------------------------------


def test_phase_colours_are_fixed_for_known_phases_and_stable_for_others() -> None:
    assert plots.phase_color("baseline") == plots.phase_color("Baseline") != plots.phase_color("fault")
    assert len({plots.phase_color(p) for p in ("baseline", "fault", "recovery")}) == 3
    assert plots.phase_color("warm-up") == plots.phase_color("warm-up")
    assert plots.phase_color(None) == plots.NO_PHASE_COLOR
    # Whatever the hash, a set of phases never shares a colour (the palette is larger than the set).
    names = [f"soak-{i}" for i in range(8)] + ["baseline", "fault", "recovery"]
    colours = plots.phase_colors(names)
    assert len(set(colours.values())) == len(names)
    assert colours["fault"] == plots.phase_color("fault")
    assert plots.phase_colors(reversed(names)) == colours


# -- timeseries --------------------------------------------------------------------------------------------------


def test_timeseries_fault_window_matches_the_fault_events() -> None:
    fig = plots.timeseries(make_windows(), make_events(), "test_delay")
    faults = spans(fig, "fault")
    assert len(faults) == 1
    assert faults[0]["start_s"] == pytest.approx(60.15)
    assert faults[0]["end_s"] == pytest.approx(89.95)
    assert faults[0]["name"] == "delay 500ms 50% on http-lb"
    assert faults[0]["verified"] is True
    # Drawn on the strip and on each of the three panels, at those x positions (the axis is in seconds here).
    drawn = artists_with_gid(fig, "fault:7")
    assert len(drawn) == 4
    for artist in drawn:
        assert x_extent(artist) == pytest.approx((60.15, 89.95))
    # The label is on the strip (inside the fault's bar, which is wide enough), with its duration and verdict.
    strip_texts = [t.get_text() for t in fig.axes[0].texts]
    (label,) = [t for t in strip_texts if t.startswith("delay 500ms 50% on http-lb · 30 s")]
    assert label.endswith(("✓", "✓ verified"))


def test_timeseries_phase_bands_match_the_phase_events() -> None:
    fig = plots.timeseries(make_windows(), make_events(), "t")
    bands = [(s["name"], s["start_s"], s["end_s"]) for s in spans(fig, "phase")]
    assert bands == [("baseline", 0.0, 60.0), ("fault", 60.0, 90.0), ("recovery", 90.0, 120.0)]
    for name in ("baseline", "fault", "recovery"):
        collections = artists_with_gid(fig, f"phase:{name}")
        assert len(collections) == 4  # the strip and three panels
        colour = collections[0].get_facecolor()[0][:3]
        assert np.allclose(colour, to_rgb(plots.phase_color(name)))


def test_timeseries_panels_have_units() -> None:
    fig = plots.timeseries(make_windows(), make_events(), "t")
    throughput = axes_by_ylabel(fig, "throughput")
    assert "(responses/s)" in throughput.get_ylabel()
    assert "(%)" in axes_by_ylabel(fig, "error rate").get_ylabel()
    latency = axes_by_ylabel(fig, "latency (ms)")
    assert latency.get_xlabel() == "time since load start (s)"
    # 3 ms to 510 ms spans more than 1.5 decades: log scale.
    assert latency.get_yscale() == "log"
    legend = latency.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["p99", "p95", "p50"]
    assert fig.get_suptitle() == "t"


def test_timeseries_linear_latency_when_narrow_and_errors_in_red() -> None:
    windows = make_windows(fault_p99=12.0, fault_error_rate=0.3)
    fig = plots.timeseries(windows, make_events(), "abort")
    assert axes_by_ylabel(fig, "latency (ms)").get_yscale() == "linear"
    error_axes = axes_by_ylabel(fig, "error rate")
    (line,) = [ln for ln in error_axes.get_lines() if ln.get_label() == "error rate"]
    assert line.get_color() == plots.ERROR_COLOR
    assert np.nanmax(line.get_ydata()) == pytest.approx(30.0)
    throughput = axes_by_ylabel(fig, "throughput")
    (errors,) = [ln for ln in throughput.get_lines() if ln.get_label() == "errors"]
    assert errors.get_color() == plots.ERROR_COLOR
    assert np.nanmax(errors.get_ydata()) == pytest.approx(30.0)


def test_timeseries_draws_no_rate_for_a_window_of_a_few_ms() -> None:
    # Back-to-back phases leave a gap of a fraction of a ms (in no phase); one request sent in it is 5 000/s.
    windows = make_windows((("baseline", 5),))
    gap = {**windows.iloc[-1].to_dict(), "start": T0 + 5.0, "end": T0 + 5.0002, "phase": None, "requests": 1}
    after = {**windows.iloc[-1].to_dict(), "start": T0 + 5.0002, "end": T0 + 6.0002, "phase": "fault"}
    windows = pandas.concat([windows, pandas.DataFrame([gap, after])], ignore_index=True)
    fig = plots.timeseries(windows, [], "gap")
    throughput = axes_by_ylabel(fig, "throughput")
    (ok,) = [ln for ln in throughput.get_lines() if ln.get_label() == "ok"]
    assert np.nanmax(ok.get_ydata()) == pytest.approx(100.0)
    assert throughput.get_ylim()[1] < 200.0


def test_timeseries_fault_without_end_lasts_to_the_end_and_pairs_by_name_without_id() -> None:
    events = make_events(fault=(30.0, None), fault_id=None, verified=None)
    events.append({"time": T0 + 100.0, "kind": "fault-start", "name": "abort 503 30% on http-lb"})
    events.append({"time": T0 + 110.0, "kind": "fault-end", "name": "abort 503 30% on http-lb"})
    fig = plots.timeseries(make_windows(), events, "t")
    by_name = {s["name"]: (s["start_s"], s["end_s"]) for s in spans(fig, "fault")}
    assert by_name == {"delay 500ms 50% on http-lb": (30.0, 120.0), "abort 503 30% on http-lb": (100.0, 110.0)}
    # They overlap in time, so the strip puts them on two lanes: neither label may be dropped.
    texts = " | ".join(t.get_text() for t in fig.axes[0].texts)
    assert "delay 500ms 50% on http-lb" in texts or "F1" in texts
    assert "abort 503 30% on http-lb" in texts or "F2" in texts


def test_timeseries_phases_from_windows_when_the_timeline_has_none() -> None:
    windows = make_windows(phases=[(None, 5), ("baseline", 10), ("fault", 5)])
    fig = plots.timeseries(windows, [], "t")
    assert [(s["name"], s["start_s"], s["end_s"]) for s in spans(fig, "phase")] == [
        ("baseline", 5.0, 15.0),
        ("fault", 15.0, 20.0),
    ]


def test_timeseries_without_windows_does_not_raise() -> None:
    fig = plots.timeseries(pandas.DataFrame(), make_events(), "nothing measured")
    assert spans(fig, "fault")[0]["start_s"] == pytest.approx(60.15)
    assert plots.to_png_bytes(fig).startswith(PNG_SIGNATURE)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no load windows recorded" in texts


def test_eight_hours_of_windows_plot_in_hours_and_save(tmp_path: Path) -> None:
    hours = 8
    windows = make_windows(phases=[("soak", hours * 3600)])
    assert len(windows) == 28_800
    events = [
        {"time": T0, "kind": "phase-start", "name": "soak"},
        {"time": T0 + 3600, "kind": "fault-start", "name": "kill 1 pod of http-lb", "id": 1},
        {"time": T0 + 3900, "kind": "fault-end", "name": "kill 1 pod of http-lb", "id": 1},
    ]
    fig = plots.timeseries(windows, events, "soak")
    latency = axes_by_ylabel(fig, "latency (ms)")
    assert latency.get_xlabel().startswith("time since load start (h)")
    assert fig.clover_x_unit == "h"
    assert spans(fig, "fault")[0]["start_s"] == pytest.approx(3600.0)
    # The fault span is drawn in hours on the axis.
    (panel_span,) = [a for a in artists_with_gid(fig, "fault:1") if a.axes is latency]
    assert x_extent(panel_span) == pytest.approx((1.0, 3900 / 3600))
    # Binned: far fewer points than windows, and the x label says how.
    (p99,) = [ln for ln in latency.get_lines() if ln.get_label() == "p99"]
    assert len(np.asarray(p99.get_xdata())) < 3000
    assert "bins" in latency.get_xlabel()
    out = plots.save(fig, tmp_path / "soak.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_half_an_hour_is_in_minutes() -> None:
    fig = plots.timeseries(make_windows(phases=[("soak", 1800)]), [], "t")
    assert fig.clover_x_unit == "min"
    assert axes_by_ylabel(fig, "latency (ms)").get_xlabel() == "time since load start (min)"


# -- latency by phase --------------------------------------------------------------------------------------------


def phase_histograms() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    hists: dict[str, Any] = {}
    for name, extra in (("baseline", 0.0), ("fault", 500.0), ("recovery", 0.0)):
        hist = new_histogram()
        for i, ms in enumerate(rng.lognormal(math.log(3.0), 0.35, 3000)):
            hist.record_value(round((ms + (extra if i % 2 else 0.0)) * 1000))
        hists[name] = hist
    hists["idle"] = new_histogram()
    return hists


def test_latency_by_phase_draws_a_curve_per_phase_with_the_histograms_percentiles() -> None:
    hists = phase_histograms()
    fig = plots.latency_by_phase(hists, "t")
    for name in ("baseline", "fault", "recovery"):
        (curve,) = artists_with_gid(fig, f"latency:{name}")
        assert curve.get_color() == plots.phase_color(name)
        assert len(curve.get_xdata()) <= 100
        for p in (50.0, 95.0, 99.0):
            (point,) = artists_with_gid(fig, f"p{p:g}:{name}")
            assert point.get_xdata()[0] == pytest.approx(-math.log10(1 - p / 100))
            assert point.get_ydata()[0] == pytest.approx(hists[name].get_value_at_percentile(p) / 1000.0)
    # The fault's p50 (half the requests delayed 500 ms) is far above the baseline's: log scale.
    (ax,) = [a for a in fig.axes if a.get_ylabel().startswith("latency (ms)")]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.xaxis.get_ticklabels()][:4] == ["0 %", "90 %", "99 %", "99.9 %"]
    # The empty phase is not drawn, and the legend says so.
    assert artists_with_gid(fig, "latency:idle") == []
    legend = ax.get_legend()
    assert legend is not None
    assert "idle: no requests" in [t.get_text() for t in legend.get_texts()]


# -- hops --------------------------------------------------------------------------------------------------------

SEGMENTS = SAMPLE_SEGMENTS


def hop_rows(delay_ms: float = 500.0, share: float = 0.5) -> pandas.DataFrame:
    rows = []
    request = 0
    for phase, t in (("baseline", T0), ("fault", T0 + 60), ("recovery", T0 + 90)):
        for k in range(40):
            request += 1
            delayed = phase == "fault" and k < share * 40
            for order, segment in enumerate(SEGMENTS):
                ms = 0.3 + 0.1 * order
                if delayed and segment == "proxy-access-control → http-lb":
                    ms += delay_ms
                rows.append(
                    {
                        "request_id": f"r{request}",
                        "time": t + k * 0.1,
                        "phase": phase,
                        "segment": segment,
                        "order": order,
                        "ms": ms,
                    }
                )
    return pandas.DataFrame(rows)


def test_hops_show_which_hop_absorbed_the_delay() -> None:
    fig = plots.hops(hop_rows(), "t")
    delayed = "proxy-access-control → http-lb"
    widths = {s: artists_with_gid(fig, f"hop:fault:{s}")[0].get_width() for s in SEGMENTS}
    assert max(widths, key=lambda s: widths[s]) == delayed
    assert widths[delayed] == pytest.approx(0.5 + 250.0)  # mean: half the requests +500 ms
    baseline = artists_with_gid(fig, f"hop:baseline:{delayed}")[0]
    assert baseline.get_width() == pytest.approx(0.5)
    # Stacked in path order, each segment in its own colour.
    lefts = [artists_with_gid(fig, f"hop:fault:{s}")[0].get_x() for s in SEGMENTS]
    assert lefts == sorted(lefts)
    assert len({artists_with_gid(fig, f"hop:fault:{s}")[0].get_facecolor() for s in SEGMENTS}) == len(SEGMENTS)
    # The growth is written on the hop that grew, naming it.
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(delayed in t and "+250" in t for t in labels), labels
    # p95 per segment: the delayed hop's fault p95 is the delay.
    (p95,) = artists_with_gid(fig, f"p95:fault:{delayed}")
    assert p95.get_xdata()[0] == pytest.approx(500.5, rel=0.01)


def test_hops_without_rows_say_so() -> None:
    for empty in (
        pandas.DataFrame(),
        pandas.DataFrame(columns=["request_id", "time", "phase", "segment", "order", "ms"]),
    ):
        fig = plots.hops(empty, "t")
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts == ["no access-log data"]


# -- trend -------------------------------------------------------------------------------------------------------


def history(runs: int = 5) -> list[dict[str, Any]]:
    records = []
    for k in range(runs):
        for test in ("suites/test_a.py::test_delay", "suites/test_b.py::test_abort"):
            failed = test.endswith("abort") and k == 3
            records.append(
                {
                    "run_id": f"2026112{k}-141500-4242",
                    "time": T0 + k * 86400,
                    "nodeid": test,
                    "outcome": "failed" if failed else "passed",
                    "p99_ms": {"baseline": 8.0, "fault": 510.0 + k},
                    "error_rate": {"baseline": 0.0, "fault": 0.3 if test.endswith("abort") else None},
                    "recovery_s": {"fault": None if failed else 1.0 + k},
                }
            )
    return records


def row_artists(fig: Figure, row: int, gid: str) -> list[Any]:
    """Artists with ``gid`` in the three panels of the ``row``-th test."""
    return [a for ax in fig.axes[3 * row : 3 * row + 3] for a in ax.findobj(lambda a: a.get_gid() == gid)]


def test_trend_has_a_row_per_test_and_marks_failures() -> None:
    fig = plots.trend(history(), title="trend")
    titles = [t.get_text() for t in fig.texts]
    assert titles[:2] == ["suites/test_a.py::test_delay", "suites/test_b.py::test_abort"]
    assert len(fig.axes) == 2 * 3
    assert [ax.get_ylabel() for ax in fig.axes[:3]] == ["p99 latency (ms)", "error rate (%)", "recovery time (s)"]
    # The abort test failed in run 3: marked under each of its three panels, and only there.
    failed = row_artists(fig, 1, "failed")
    assert len(failed) == 3
    assert all(list(m.get_xdata()) == [3] and m.get_color() == plots.ERROR_COLOR for m in failed)
    assert row_artists(fig, 0, "failed") == []
    (never,) = row_artists(fig, 1, "never:fault")
    assert list(never.get_xdata()) == [3]
    # A missing value is a gap, not a zero.
    (delay_errors,) = row_artists(fig, 0, "trend:error_rate:fault")
    assert np.isnan(delay_errors.get_ydata()).all()
    (abort_errors,) = row_artists(fig, 1, "trend:error_rate:fault")
    assert list(abort_errors.get_ydata()) == pytest.approx([30.0] * 5)
    (p99,) = row_artists(fig, 0, "trend:p99_ms:fault")
    assert list(p99.get_ydata()) == [510.0, 511.0, 512.0, 513.0, 514.0]


def test_trend_keeps_the_last_runs() -> None:
    fig = plots.trend(history(runs=6), last=4)
    (p99,) = row_artists(fig, 0, "trend:p99_ms:fault")
    assert list(p99.get_ydata()) == [512.0, 513.0, 514.0, 515.0]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-1] == "11-25\n14:15"
    assert plots.trend([], title="x").axes[0].texts[0].get_text() == "no history yet"


# -- output ------------------------------------------------------------------------------------------------------


def test_save_writes_a_png_atomically(tmp_path: Path) -> None:
    from PIL import Image

    fig = plots.timeseries(make_windows(), make_events(), "t")
    target = tmp_path / "sub" / "timeseries.png"
    assert plots.save(fig, target) == target
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = (round(v) for v in fig.get_size_inches() * 100)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
    assert sorted(p.name for p in target.parent.iterdir()) == ["timeseries.png"]  # no temp file left behind
    assert plots.to_png_bytes(fig, dpi=50)[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(plots.to_png_bytes(fig, dpi=50))) as image:
        assert image.size == (round(width / 2), round(height / 2))
