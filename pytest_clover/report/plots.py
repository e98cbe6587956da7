"""The report's plots: load over time with phases and fault windows, latency percentiles per phase, where the
time went per hop, a soak test's night (:func:`soak_overview`: events by verdict, downsampled p99 and error rate,
the error-budget burn-down, times to recover per fault kind), and the trend across runs.

Every function returns a :class:`matplotlib.figure.Figure` built with the object-oriented API only (never pyplot:
no global state, safe in threads and worker processes, no display needed); :func:`save` writes it as a PNG.
The figures are sized for a report page about 1000-1150 px wide at the default 100 dpi.

Colours mean the same thing in every plot: a phase has one colour (:func:`phase_color`; ``baseline`` green,
``fault`` orange, ``recovery`` blue), errors are red, and a fault window is a red-edged, red-hatched span.

:func:`timeseries` returns a :class:`PlotFigure` whose ``clover_spans`` lists the phase bands and fault windows it
drew, so a test (or the HTML report) can check them without reading pixels.

Units: times in the data are unix seconds; plot x axes count seconds (or minutes, or hours for long runs) since
the first window's start; latencies are in ms (histograms hold µs); error rates are fractions in the data and %
on the plots.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import tempfile
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from ..load.result import HOLD_S
from .summary import fault_intervals
from .summary import finite as _finite

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped,unused-ignore]
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

    from .soak import SoakData, TTRStats

FloatArray = npt.NDArray[np.float64]

# -- colours ----------------------------------------------------------------------------------------------------

ERROR_COLOR = "#d62728"
"""Errors, in every plot."""
FAULT_COLOR = "#c0392b"
"""Edges of a fault window (a red a shade darker than the errors, so an error line inside stays visible)."""
FAULT_FACE = (0.75, 0.22, 0.17, 0.05)
FAULT_HATCH = (0.75, 0.22, 0.17, 0.35)
"""A fault window's fill and hatch: faint, so the data drawn over it stays readable."""
OK_COLOR = "#34495e"
"""Successful responses."""
NEVER_COLOR = "#7b0c0c"
"""Trend: a recovery that never happened."""
NO_PHASE = "(between phases)"
"""Label of the traffic outside any phase (before the first, between two)."""
NO_PHASE_COLOR = "#a6a6a6"
LATENCY_COLORS = {"p50": "#9c8fd0", "p95": "#6a4fb0", "p99": "#2e0f6e"}
"""Latency percentiles over time: one purple ramp, darker for the tail (no clash with the phase colours)."""

_KNOWN_PHASES = {"baseline": "#2ca25f", "fault": "#f28e2b", "recovery": "#3a78b5"}
# Other phases: hues that stay distinct from those three (and from the errors' red) even as light bands.
_PHASE_PALETTE = (
    "#8e63b5",  # purple
    "#17a2b8",  # cyan
    "#a6a61d",  # olive
    "#e377c2",  # pink
    "#6f6f6f",  # grey
    "#8c564b",  # brown
    "#d9b300",  # gold
    "#283593",  # navy
)
# Hop colours come in (dark, light) pairs: a service's own time is dark, the hop into it is the light shade of the
# same hue, so "→ http-lb" and "http-lb" read as belonging together. No red (errors), and no green, orange or
# blue: a bar in a phase's colour would read as that phase.
_SEGMENT_PAIRS = (
    ("#6a3d9a", "#cab2d6"),  # purple
    ("#0f7c8c", "#a6dce4"),  # teal
    ("#a6761d", "#f0d595"),  # gold
    ("#b5407f", "#f1b6da"),  # magenta
    ("#2b3f73", "#aab6d8"),  # navy
    ("#7f7f17", "#dcdc8b"),  # olive
    ("#8c564b", "#d9b9ad"),  # brown
    ("#555555", "#c8c8c8"),  # grey
)

_GRID = "#e6e6e6"
_TEXT_MUTED = "#666666"
_TICK_SIZE = 9.0
_SMALL = 8.5
_WIDTH_IN = 11.0
_DPI = 100


def _stable_hash(text: str) -> int:
    # crc32, not hash(): str hashes are salted per process, and a phase must keep its colour across worker processes.
    return zlib.crc32(text.encode("utf-8"))


def phase_color(name: str | None) -> str:
    """The colour of a phase, the same in every plot and every run: ``baseline`` green, ``fault`` orange,
    ``recovery`` blue (case-insensitive), any other name a colour from a qualitative palette chosen by a stable
    hash of the name; None (traffic outside phases) grey."""
    if name is None or name == NO_PHASE:
        return NO_PHASE_COLOR
    known = _KNOWN_PHASES.get(name.strip().lower())
    if known is not None:
        return known
    return _PHASE_PALETTE[_stable_hash(name) % len(_PHASE_PALETTE)]


def phase_colors(names: Iterable[str | None]) -> dict[str | None, str]:
    """:func:`phase_color` for each name, except that two names of the set never share a colour: a name whose
    hashed colour is taken by another name of the set moves on to the next free palette colour (names are
    resolved in sorted order, so the same set always gets the same colours)."""
    unique = list(dict.fromkeys(names))
    out: dict[str | None, str] = {}
    taken: set[str] = set()
    for name in unique:
        if name is None or name == NO_PHASE or name.strip().lower() in _KNOWN_PHASES:
            out[name] = phase_color(name)
            taken.add(out[name])
    for name in sorted((n for n in unique if n not in out), key=str):
        assert name is not None
        start = _stable_hash(name) % len(_PHASE_PALETTE)
        for step in range(len(_PHASE_PALETTE)):
            color = _PHASE_PALETTE[(start + step) % len(_PHASE_PALETTE)]
            if color not in taken:
                break
        else:  # more phases than colours: sharing is unavoidable, keep the hashed one
            color = _PHASE_PALETTE[start]
        out[name] = color
        taken.add(color)
    return out


def segment_colors(segments: Sequence[str]) -> dict[str, str]:
    """A colour per hop segment (``segments`` in path order): a service's own time dark, the hop into it
    (``a → b``) the light shade of ``b``'s hue. Hues go by the service's position in the path, so neighbours
    always differ and one topology's path gets the same colours in every test."""
    services = list(dict.fromkeys(_segment_target(s) for s in segments))
    hue = {service: i % len(_SEGMENT_PAIRS) for i, service in enumerate(services)}
    return {s: _SEGMENT_PAIRS[hue[_segment_target(s)]][1 if _is_hop(s) else 0] for s in segments}


def _is_hop(segment: str) -> bool:
    return "→" in segment or "->" in segment


def _segment_target(segment: str) -> str:
    return re.split(r"→|->", segment)[-1].strip()


def _text_color_on(color: str) -> str:
    """Black or white, whichever reads better on ``color`` (by relative luminance)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.55 else "white"


# -- figures and small helpers -----------------------------------------------------------------------------------


class PlotFigure(Figure):
    """A Figure that also says what it drew, for tests and the report.

    ``clover_spans``: one dict per phase band and fault window of :func:`timeseries`: ``kind`` (``"phase"`` or
    ``"fault"``), ``name`` (phase name or fault description), ``id`` (fault id or None), ``start_s``/``end_s``
    (seconds since the first window's start: the plot's x origin, whatever unit the axis shows), ``verified``
    (faults: True, False for inconclusive, None). ``clover_x_unit`` is the x axis unit (``"s"``, ``"min"``,
    ``"h"``) and ``clover_x_scale`` the seconds per unit; ``clover_t0`` the unix time of x = 0.
    """

    clover_spans: list[dict[str, Any]]
    clover_x_unit: str
    clover_x_scale: float
    clover_t0: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clover_spans = []
        self.clover_x_unit = "s"
        self.clover_x_scale = 1.0
        self.clover_t0 = 0.0


def _new_figure(height_in: float, width_in: float = _WIDTH_IN, *, constrained: bool = True) -> PlotFigure:
    fig = PlotFigure(
        figsize=(width_in, height_in), dpi=_DPI, layout="constrained" if constrained else None, facecolor="white"
    )
    FigureCanvasAgg(fig)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.set(h_pad=0.06, w_pad=0.06, hspace=0.04, wspace=0.03)  # type: ignore[call-arg]
    return fig


def _title(fig: Figure | SubFigure, title: str, *, size: float = 12.0) -> None:
    fig.suptitle(_shorten(title, 140), x=0.01, ha="left", fontsize=size, fontweight="bold")


def _shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle with an ellipsis if longer than ``limit`` characters (test ids keep both ends)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2) :]


def _style(ax: Axes, *, grid_axis: Literal["x", "y", "both"] = "y") -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines[["left", "bottom"]].set_color("#999999")
    ax.tick_params(labelsize=_TICK_SIZE, color="#999999")
    ax.grid(True, axis=grid_axis, color=_GRID, linewidth=0.7)
    ax.set_axisbelow(True)


def _message_figure(title: str, message: str) -> PlotFigure:
    fig = _new_figure(2.0)
    _title(fig, title)
    ax = fig.add_subplot()
    ax.set_axis_off()
    _say(ax, message, fontsize=12)
    return fig


def _say(ax: Any, message: str, *, fontsize: float = 11) -> None:
    """A muted line in the middle of a panel that has nothing to draw (and says why)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=fontsize, color=_TEXT_MUTED, transform=ax.transAxes)


def _phase_name(value: Any) -> str | None:
    # pandas gives NaN (float) or pd.NA for a missing phase; only a non-empty string names a phase.
    return value if isinstance(value, str) and value else None


def fmt_ms(value: float) -> str:
    """A latency for a label: ``0.42``, ``3.1``, ``512``, ``12 300`` (ms, no unit)."""
    if not math.isfinite(value):
        return "–"
    if abs(value) < 1:
        return f"{value:.2f}"
    if abs(value) < 10:
        return f"{value:.1f}"
    if abs(value) < 10_000:
        return f"{value:.0f}"
    return f"{value:,.0f}".replace(",", " ")


def _plain_number(value: float, _pos: int | None = None) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:g}"


def _latency_scale(ax: Axes, low: float, high: float, *, axis: Literal["x", "y"] = "y") -> bool:
    """Log scale when [low, high] (ms, positive) spans more than ~1.5 decades, else linear from 0; plain numbers
    on the ticks (1, 10, 100, not 10²). Returns whether the axis is logarithmic."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    if not (math.isfinite(low) and math.isfinite(high)) or high <= 0:
        return False
    low = max(low, 1e-3)
    if high / low > 10**1.5:
        if axis == "y":
            ax.set_yscale("log")
            ax.set_ylim(low / 1.6, high * 1.8)
        else:
            ax.set_xscale("log")
            ax.set_xlim(low / 1.6, high * 1.8)
        decades = math.log10(high / low)
        subs = (1.0, 2.0, 5.0) if decades < 3.5 else (1.0,)
        target.set_major_locator(LogLocator(base=10, subs=subs))
        target.set_major_formatter(FuncFormatter(_plain_number))
        target.set_minor_locator(LogLocator(base=10, subs=tuple(float(s) for s in range(2, 10))))
        target.set_minor_formatter(NullFormatter())
        return True
    if axis == "y":
        ax.set_ylim(0, high * 1.15)
    else:
        ax.set_xlim(0, high * 1.15)
    target.set_major_formatter(FuncFormatter(_plain_number))
    return False


class _TextMeter:
    """Widths of strings in display pixels, measured by the figure's own Agg renderer (exact, and cheap)."""

    def __init__(self, fig: Figure) -> None:
        canvas = fig.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        self._renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
        self._props: dict[float, FontProperties] = {}

    def width(self, text: str, size: float) -> float:
        props = self._props.get(size)
        if props is None:
            props = self._props[size] = FontProperties(size=size)
        w, _h, _d = self._renderer.get_text_width_height_descent(text, props, ismath=False)
        return float(w)


def _execute_layout(fig: Figure) -> None:
    # Labels are placed by measured fit, which needs the axes' final size: run the layout engine once now (text
    # added afterwards is kept out of the layout, so the saved figure has the same geometry).
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)


# -- timeline (events) -------------------------------------------------------------------------------------------


@dataclass
class _Span:
    kind: Literal["phase", "fault"]
    name: str
    start: float
    """Unix seconds."""
    end: float
    id: Any = None
    verified: bool | None = None
    lane: int = 0


def _timeline(
    events: Sequence[Mapping[str, Any]], data_start: float, data_end: float
) -> tuple[list[_Span], list[_Span], list[tuple[float, str]]]:
    """(phase spans, fault spans, notes) from the timeline's events (unix seconds).

    Phases are sequential: a phase-start closes a phase still open. A fault pairs its start and end by ``id``
    (else by name); an interval with no end lasts to ``data_end``, one with no start begins at ``data_start``.
    """
    ordered = sorted((e for e in events if _finite(e.get("time")) is not None), key=lambda e: float(e["time"]))
    phases: list[_Span] = []
    open_phases: dict[str, float] = {}
    notes: list[tuple[float, str]] = []
    for event in ordered:
        t = float(event["time"])
        kind = str(event.get("kind", ""))
        name = str(event.get("name", ""))
        if kind == "phase-start":
            for other, since in list(open_phases.items()):
                phases.append(_Span("phase", other, since, t))
                del open_phases[other]
            open_phases[name] = t
        elif kind == "phase-end":
            phases.append(_Span("phase", name, open_phases.pop(name, data_start), t))
        elif kind == "note":
            notes.append((t, name))
    for name, since in open_phases.items():
        phases.append(_Span("phase", name, since, max(data_end, since)))
    fault_list = []
    for interval in fault_intervals(ordered):
        start = data_start if interval["start"] is None else interval["start"]
        end = data_end if interval["end"] is None else interval["end"]
        span = _Span("fault", interval["description"], start, max(end, start), id=interval["id"])
        span.verified = interval["verified"]
        fault_list.append(span)
    fault_list.sort(key=lambda s: s.start)
    phases.sort(key=lambda s: s.start)
    return phases, fault_list, notes


def _phases_from_windows(start: FloatArray, end: FloatArray, names: Sequence[str | None]) -> list[_Span]:
    """Phase spans from the windows' phase column: each run of consecutive windows of one phase."""
    spans: list[_Span] = []
    for i, name in enumerate(names):
        if name is None:
            continue
        if spans and spans[-1].name == name and i > 0 and names[i - 1] == name:
            spans[-1].end = float(end[i])
        else:
            spans.append(_Span("phase", name, float(start[i]), float(end[i])))
    return spans


def _assign_lanes(spans: Sequence[_Span]) -> int:
    """Overlapping fault windows go on separate lanes of the strip; returns the number of lanes."""
    lane_ends: list[float] = []
    for span in sorted(spans, key=lambda s: s.start):
        for lane, last_end in enumerate(lane_ends):
            if span.start >= last_end:
                span.lane = lane
                lane_ends[lane] = span.end
                break
        else:
            span.lane = len(lane_ends)
            lane_ends.append(span.end)
    return len(lane_ends)


# -- 1. load over time -------------------------------------------------------------------------------------------


def _column(windows: pandas.DataFrame, name: str, n: int) -> FloatArray:
    import pandas

    if name not in windows.columns:
        return np.full(n, np.nan)
    values: FloatArray = pandas.to_numeric(windows[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values


def _bin(values: FloatArray, starts: npt.NDArray[np.intp], how: Literal["sum", "max", "first", "last"]) -> FloatArray:
    if how == "sum":
        out: FloatArray = np.add.reduceat(np.nan_to_num(values), starts)
    elif how == "max":
        # fmax ignores NaN (an empty window) unless the whole bin is empty.
        out = np.fmax.reduceat(values, starts)
    elif how == "first":
        out = values[starts]
    else:
        out = values[np.r_[starts[1:] - 1, len(values) - 1]]
    return out


def _steps(start: FloatArray, end: FloatArray, y: FloatArray, hole: float) -> tuple[FloatArray, FloatArray]:
    """x, y for ``drawstyle="steps-post"``: each window a flat step over [start, end]; a hole longer than ``hole``
    between two windows (the generator stalled: no row at all) is a break in the line, not a step bridging it."""
    if len(start) == 0:
        return np.array([]), np.array([])
    gap = np.flatnonzero(start[1:] - end[:-1] > hole)
    xs = np.insert(start, gap + 1, end[gap])
    ys = np.insert(y, gap + 1, np.nan)
    return np.append(xs, end[-1]), np.append(ys, y[-1])


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds > 3 * 3600:
        return "h", 3600.0
    if seconds > 20 * 60:
        return "min", 60.0
    return "s", 1.0


def timeseries(
    windows: pandas.DataFrame,
    events: Sequence[Mapping[str, Any]],
    title: str,
    *,
    max_points: int = 2000,
) -> PlotFigure:
    """Load over time: a strip naming the phases and fault windows, then throughput (ok and error responses/s),
    error rate (%) and latency p50/p95/p99 (ms), stacked on one time axis.

    ``windows``: one row per ~1-s window (:attr:`pytest_clover.load.result.LoadResult.windows`): start, end (unix
    s), phase, requests, errors, p50_ms, p95_ms, p99_ms (NaN where a window had no response). ``events``: the
    test's timeline (``phase-start``/``-end``, ``fault-start``/``-end`` paired by ``id``, ``fault-verified``,
    ``fault-inconclusive``, ``note``). x = time since the first window's start, in s, min (> 20 min) or h (> 3 h).

    More than ``max_points`` windows are drawn in bins of k consecutive windows (an 8-h run at 1 s would
    otherwise put ~30 windows on each pixel): throughput and error rate are the bin's totals, each latency
    percentile the worst window of the bin, so a short spike stays visible; the x label says so.
    """
    import pandas

    if windows is None:
        windows = pandas.DataFrame()
    n = len(windows)
    if n and "start" not in windows.columns:
        raise ValueError(f"windows have no 'start' column (columns: {', '.join(map(str, windows.columns))})")
    frame = windows.sort_values("start", kind="stable") if n else windows
    start = _column(frame, "start", n) if n else np.array([])
    valid = np.isfinite(start)
    if n and not valid.all():
        frame = frame[valid]
        n = len(frame)
        start = start[valid]
    end = _column(frame, "end", n) if n else np.array([])
    end = np.where(np.isfinite(end), end, start + 1.0) if n else end
    event_times = [float(e["time"]) for e in events if _finite(e.get("time")) is not None]
    if n:
        t0 = float(start[0])
        data_end = float(np.nanmax(end))
    elif event_times:
        t0, data_end = min(event_times), max(event_times)
    else:
        t0, data_end = 0.0, 1.0
    phases, faults, notes = _timeline(events, t0, data_end)
    if not any(e.get("kind") in ("phase-start", "phase-end") for e in events) and n:
        names = [_phase_name(v) for v in frame["phase"]] if "phase" in frame.columns else [None] * n
        phases = _phases_from_windows(start, end, names)

    lo = min([0.0] + [s.start - t0 for s in (*phases, *faults)] + [t - t0 for t, _ in notes])
    hi = max([data_end - t0] + [s.end - t0 for s in (*phases, *faults)] + [t - t0 for t, _ in notes])
    hi = max(hi, lo + 1.0)
    unit, scale = _time_unit(hi - lo)

    fault_lanes = _assign_lanes(faults)
    rows = 1 + max(fault_lanes, 1) + (1 if notes else 0)
    strip_h = 0.26 * rows + 0.1
    fig = _new_figure(7.2 + strip_h)
    fig.clover_t0, fig.clover_x_unit, fig.clover_x_scale = t0, unit, scale
    _title(fig, title)
    strip, ax_tp, ax_err, ax_lat = fig.subplots(
        4, 1, sharex=True, gridspec_kw={"height_ratios": [strip_h, 2.0, 1.35, 2.4]}
    )
    panels = (ax_tp, ax_err, ax_lat)
    for ax in panels:
        _style(ax)

    # Data, binned when there are many more windows than pixels.
    requests, errors = _column(frame, "requests", n), _column(frame, "errors", n)
    lat = {p: _column(frame, f"{p}_ms", n) for p in ("p50", "p95", "p99")}
    duration = np.where(end > start, end - start, np.nan)
    bin_note = ""
    if n > max_points:
        k = math.ceil(n / max_points)
        idx = np.arange(0, n, k)
        typical = float(np.nanmedian(duration)) if np.isfinite(duration).any() else 1.0
        bin_seconds = typical * k
        bin_note = f" — {bin_seconds:.0f}-s bins; latency: worst 1-s window of each bin"
        s_start, s_end = _bin(start, idx, "first"), _bin(end, idx, "last")
        requests, errors = _bin(requests, idx, "sum"), _bin(errors, idx, "sum")
        duration = _bin(np.nan_to_num(duration), idx, "sum")
        duration[duration <= 0] = np.nan
        lat = {p: _bin(v, idx, "max") for p, v in lat.items()}
        start, end = s_start, s_end
    x0, x1 = (start - t0) / scale, (end - t0) / scale
    hole = 0.5 / scale
    with np.errstate(invalid="ignore", divide="ignore"):
        # A window of a few ms (a short gap between two phases, in no phase) holds a request or two: as a rate
        # that reads thousands per second. It gets no throughput step; its error rate and latency are drawn.
        ok_rps = np.where(duration >= HOLD_S, (requests - errors) / duration, np.nan)
        err_rps = np.where(duration >= HOLD_S, errors / duration, np.nan)
        err_pct = np.where(requests > 0, errors / requests * 100.0, np.nan)

    # (a) throughput
    xs, ys = _steps(x0, x1, ok_rps, hole)
    ax_tp.plot(xs, ys, drawstyle="steps-post", color=OK_COLOR, lw=1.3, label="ok", zorder=3)
    xs, ys = _steps(x0, x1, err_rps, hole)
    ax_tp.fill_between(xs, 0, ys, step="post", color=ERROR_COLOR, alpha=0.25, lw=0, zorder=2)
    ax_tp.plot(xs, ys, drawstyle="steps-post", color=ERROR_COLOR, lw=1.2, label="errors", zorder=3)
    top = float(np.nanmax(ok_rps + np.nan_to_num(err_rps))) if n and np.isfinite(ok_rps).any() else 1.0
    ax_tp.set_ylim(0, max(top, 1.0) * 1.18)
    ax_tp.set_ylabel("throughput\n(responses/s)", fontsize=_TICK_SIZE + 0.5)
    ax_tp.yaxis.set_major_formatter(FuncFormatter(_plain_number))

    # (b) error rate
    xs, ys = _steps(x0, x1, err_pct, hole)
    ax_err.fill_between(xs, 0, ys, step="post", color=ERROR_COLOR, alpha=0.25, lw=0, zorder=2)
    ax_err.plot(xs, ys, drawstyle="steps-post", color=ERROR_COLOR, lw=1.2, label="error rate", zorder=3)
    peak = float(np.nanmax(err_pct)) if np.isfinite(err_pct).any() else 0.0
    ax_err.set_ylim(0, min(105.0, max(peak * 1.2, 1.0)))
    ax_err.set_ylabel("error rate\n(%)", fontsize=_TICK_SIZE + 0.5)
    ax_err.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    if peak == 0 and np.nansum(requests) > 0:
        ax_err.text(
            0.008,
            0.5,
            "no errors",
            transform=ax_err.transAxes,
            ha="left",
            va="center",
            fontsize=_SMALL,
            color=_TEXT_MUTED,
            style="italic",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )

    # (c) latency, tail drawn last so it sits on top
    for p in ("p50", "p95", "p99"):
        xs, ys = _steps(x0, x1, lat[p], hole)
        width = {"p50": 1.0, "p95": 1.1, "p99": 1.4}[p]
        ax_lat.plot(xs, ys, drawstyle="steps-post", color=LATENCY_COLORS[p], lw=width, label=p, zorder=3)
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in lat.values()])
    if positive.size:
        is_log = _latency_scale(ax_lat, float(positive.min()), float(positive.max()))
        ax_lat.set_ylabel("latency (ms)" + ("\nlog scale" if is_log else ""), fontsize=_TICK_SIZE + 0.5)
    else:
        ax_lat.set_ylabel("latency (ms)", fontsize=_TICK_SIZE + 0.5)
    ax_lat.set_xlabel(f"time since load start ({unit}){bin_note}", fontsize=_TICK_SIZE + 0.5)
    if not n:
        _say(ax_tp, "no load windows recorded", fontsize=11)

    # Phase bands and fault windows on every panel. One collection per phase name per panel (not one patch per
    # band): a soak test can have hundreds of phases.
    colors = phase_colors([s.name for s in phases])
    by_name: dict[str, list[tuple[float, float]]] = {}
    for s in phases:
        by_name.setdefault(s.name, []).append(((s.start - t0) / scale, (s.end - s.start) / scale))
    for ax in panels:
        trans = ax.get_xaxis_transform()
        for name, bars in by_name.items():
            coll = ax.broken_barh(bars, (0, 1), transform=trans, facecolors=colors[name], alpha=0.11, lw=0, zorder=0)
            coll.set_gid(f"phase:{name}")
        for f in faults:
            a, b = (f.start - t0) / scale, (f.end - t0) / scale
            span = ax.axvspan(a, b, facecolor=FAULT_FACE, hatch="///", hatchcolor=FAULT_HATCH, lw=0, zorder=1)
            span.set_gid(f"fault:{f.id if f.id is not None else f.name}")
            ax.vlines([a, b], 0, 1, transform=trans, colors=FAULT_COLOR, lw=1.0, zorder=1)
        if notes:
            ax.vlines(
                [(t - t0) / scale for t, _ in notes],
                0,
                1,
                transform=trans,
                colors="#555555",
                linestyles=":",
                lw=0.9,
                zorder=1,
            )
    for s in phases:
        fig.clover_spans.append(
            {
                "kind": "phase",
                "name": s.name,
                "id": None,
                "start_s": s.start - t0,
                "end_s": s.end - t0,
                "verified": None,
            }
        )
    for f in faults:
        fig.clover_spans.append(
            {
                "kind": "fault",
                "name": f.name,
                "id": f.id,
                "start_s": f.start - t0,
                "end_s": f.end - t0,
                "verified": f.verified,
            }
        )

    ax_lat.set_xlim(lo / scale, hi / scale)
    if faults:
        handles = [Line2D([], [], color=OK_COLOR, lw=1.3), Line2D([], [], color=ERROR_COLOR, lw=1.2), _fault_patch()]
        ax_tp.legend(handles, ["ok", "errors", "fault"], **_outside_legend())
    else:
        ax_tp.legend(**_outside_legend())
    handles_lat, labels_lat = ax_lat.get_legend_handles_labels()
    ax_lat.legend(handles_lat[::-1], labels_lat[::-1], **_outside_legend())
    _draw_strip(fig, strip, phases, faults, notes, colors, t0, scale, rows, fault_lanes)
    return fig


def _fault_label(fault: _Span, *, compact: bool = False) -> str:
    """The description, how long the fault lasted, and its verdict: ``delay 500ms on http-lb · 30 s  ✓ verified``
    (``compact``: the verdict as a sign only, ✓ or ?)."""
    if compact:
        verdict = {True: " ✓", False: " ?", None: ""}[fault.verified]
    else:
        verdict = {True: "  ✓ verified", False: "  ? inconclusive", None: ""}[fault.verified]
    return f"{fault.name} · {_duration(fault.end - fault.start)}{verdict}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fault_patch() -> Patch:
    return Patch(facecolor=FAULT_FACE, edgecolor=FAULT_COLOR, hatch="///", hatchcolor=FAULT_HATCH, lw=0.9)


def _outside_legend() -> dict[str, Any]:
    return {
        "loc": "upper left",
        "bbox_to_anchor": (1.005, 1.0),
        "borderaxespad": 0.0,
        "fontsize": _SMALL,
        "frameon": False,
        "handlelength": 1.6,
    }


def _draw_strip(
    fig: PlotFigure,
    ax: Axes,
    phases: Sequence[_Span],
    faults: Sequence[_Span],
    notes: Sequence[tuple[float, str]],
    colors: Mapping[str | None, str],
    t0: float,
    scale: float,
    rows: int,
    fault_lanes: int,
) -> None:
    """The strip above the panels: phases on the first row, fault windows below (one row per overlapping
    fault), notes on the last row; each labelled where its label fits, else listed in a legend beside it."""
    ax.set_ylim(0, rows)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", length=0)
    ax.tick_params(axis="y", length=0, labelsize=_SMALL, labelcolor=_TEXT_MUTED)
    phase_y = rows - 0.5
    fault_y = [rows - 1.5 - lane for lane in range(max(fault_lanes, 1))]
    note_y = 0.5 if notes else None
    ticks = [phase_y, fault_y[0]] + ([note_y] if note_y is not None else [])
    labels = ["phases", "faults"] + (["notes"] if notes else [])
    ax.set_yticks(ticks, labels)
    by_name: dict[str, list[tuple[float, float]]] = {}
    for s in phases:
        by_name.setdefault(s.name, []).append(((s.start - t0) / scale, (s.end - s.start) / scale))
    for name, bars in by_name.items():
        coll = ax.broken_barh(
            bars, (phase_y - 0.38, 0.76), facecolors=colors[name], alpha=0.55, edgecolor="white", lw=0.8
        )
        coll.set_gid(f"phase:{name}")
    for f in faults:
        rect = ax.broken_barh(
            [((f.start - t0) / scale, (f.end - f.start) / scale)],
            (fault_y[f.lane] - 0.38, 0.76),
            facecolors=(0.75, 0.22, 0.17, 0.10),
            edgecolor=FAULT_COLOR,
            hatch="///",
            hatchcolor=FAULT_HATCH,
            lw=0.9,
        )
        rect.set_gid(f"fault:{f.id if f.id is not None else f.name}")
    if notes:
        assert note_y is not None
        ax.plot([(t - t0) / scale for t, _ in notes], [note_y] * len(notes), "v", color="#555555", ms=5, lw=0)

    _execute_layout(fig)
    meter = _TextMeter(fig)
    x_lo, x_hi = ax.get_xlim()
    px_per_unit = ax.get_window_extent().width / (x_hi - x_lo)
    pad = 10.0

    labelled: set[str] = set()
    for s in phases:
        a, b = (s.start - t0) / scale, (s.end - t0) / scale
        if (b - a) * px_per_unit >= meter.width(s.name, _SMALL) + pad:
            text = ax.text(
                (a + b) / 2, phase_y, s.name, ha="center", va="center", fontsize=_SMALL, clip_on=True, color="#1a1a1a"
            )
            text.set_in_layout(False)
            labelled.add(s.name)
    extra: list[tuple[Any, str]] = []
    for name in dict.fromkeys(s.name for s in phases):
        if name not in labelled:
            extra.append((Patch(facecolor=colors[name], alpha=0.55), name))

    # Faults: inside the bar, else just after it, else just before it (where the lane is free), else a tag
    # (F1, F2…: one per distinct description) beside the bar and the description in a legend under the plot.
    # A verdict is appended: ✓ verified, ? inconclusive.
    occupied: dict[int, list[tuple[float, float]]] = {}
    for f in faults:
        occupied.setdefault(f.lane, []).append(((f.start - t0) / scale, (f.end - t0) / scale))

    def free(lane: int, x0: float, x1: float, own: tuple[float, float] | None = None) -> bool:
        return x0 >= x_lo and x1 <= x_hi and all(x1 <= o0 or x0 >= o1 for o0, o1 in occupied[lane] if (o0, o1) != own)

    tags: dict[str, str] = {}
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    gap = 3 / px_per_unit
    for f in faults:
        a, b = (f.start - t0) / scale, (f.end - t0) / scale
        label = _fault_label(f)
        compact = _fault_label(f, compact=True)
        w = (meter.width(label, _SMALL) + pad) / px_per_unit
        w_compact = (meter.width(compact, _SMALL) + pad) / px_per_unit
        y = fault_y[f.lane]
        if b - a >= w:
            text = ax.text((a + b) / 2, y, label, ha="center", va="center", fontsize=_SMALL, bbox=box)
        elif b - a >= w_compact:
            text = ax.text((a + b) / 2, y, compact, ha="center", va="center", fontsize=_SMALL, bbox=box)
        elif free(f.lane, b, b + gap + w, own=(a, b)):
            text = ax.text(b + gap, y, label, ha="left", va="center", fontsize=_SMALL, bbox=box)
            occupied[f.lane].append((b, b + gap + w))
        elif free(f.lane, a - gap - w, a, own=(a, b)):
            text = ax.text(a - gap, y, label, ha="right", va="center", fontsize=_SMALL, bbox=box)
            occupied[f.lane].append((a - gap - w, a))
        else:
            tag = tags.setdefault(label, f"F{len(tags) + 1}")
            w = (meter.width(tag, _SMALL) + pad) / px_per_unit
            where = b + gap if free(f.lane, b, b + gap + w, own=(a, b)) else max(a, x_lo)
            text = ax.text(
                where,
                y,
                tag,
                ha="left",
                va="center",
                fontsize=_SMALL,
                fontweight="bold",
                color=FAULT_COLOR,
                clip_on=True,
            )
            occupied[f.lane].append((where, where + w))
        text.set_in_layout(False)
    counts = Counter(_fault_label(f) for f in faults)
    for label, tag in tags.items():
        count = counts[label]
        extra.append((_fault_patch(), f"{tag}: {_shorten(label, 60)}" + (f" (×{count})" if count > 1 else "")))

    if notes:
        assert note_y is not None
        size = _SMALL - 0.5
        # Clear of the ▼ marker (5 pt wide) the label belongs to.
        note_gap = 6 / px_per_unit
        marks = sorted(((t - t0) / scale, name) for t, name in notes)
        free_from = prev_mark = -math.inf
        i = 0
        while i < len(marks):
            x, name = marks[i]
            # Notes whose markers this label would cover are folded into it ("+2 more"), and it starts after the
            # last of them; the report's timeline table lists every note.
            j = i + 1
            while True:
                label = _shorten(name, 48) + (f"  (+{j - i - 1} more)" if j - i > 1 else "")
                w = (meter.width(label, size) + pad) / px_per_unit + note_gap
                last = marks[j - 1][0]
                if j < len(marks) and marks[j][0] < last + w:
                    j += 1
                    continue
                break
            if x >= free_from and last + w <= x_hi:
                text = ax.text(last + note_gap, note_y, label, ha="left", va="center", fontsize=size, color="#444444")
                text.set_in_layout(False)
                free_from = last + w
            elif j == i + 1 and x - w >= max(free_from, prev_mark, x_lo):
                text = ax.text(x - note_gap, note_y, label, ha="right", va="center", fontsize=size, color="#444444")
                text.set_in_layout(False)
                free_from = x
            prev_mark = marks[j - 1][0]
            i = j
    if extra:
        # Under the plot, where any number of entries fits without covering data.
        fig.legend(
            [h for h, _ in extra],
            [lbl for _, lbl in extra],
            loc="outside lower center",
            ncol=min(3, len(extra)),
            fontsize=_SMALL,
            frameon=False,
            handlelength=1.6,
        )


# -- 2. latency percentiles per phase ----------------------------------------------------------------------------


def _nines(percentile: float) -> float:
    """x of a percentile on the "nines" axis: -log10(1 - p/100); 90 % → 1, 99 % → 2, 99.9 % → 3."""
    return -math.log10(max(1e-9, 1.0 - percentile / 100.0))


def latency_by_phase(
    histograms: Mapping[str, HdrHistogram],
    title: str,
    *,
    points: int = 90,
) -> PlotFigure:
    """Latency percentile curves, one per phase, from each phase's HdrHistogram (values in µs; plotted in ms).

    x: percentile on the "nines" scale (-log10(1 - p/100): ticks at 0, 90, 99, 99.9 … %), up to the percentile
    the phase's request count resolves (1 - 1/n); y: latency (ms), log when the curves span > 1.5 decades.
    p50, p95 and p99 are marked on every curve and tabled below with the request count and max. At most
    ``points`` (+3) percentiles are queried per curve, all in one pass over the histogram. A phase without any
    request is not drawn; the table says so.
    """
    names = list(histograms)
    colors = phase_colors(names)
    rows: list[dict[str, Any]] = []
    fig = _new_figure(4.4 + 0.27 * (len(names) + 1))
    _title(fig, title)
    ax, ax_tab = fig.subplots(2, 1, gridspec_kw={"height_ratios": [4.0, 0.27 * (len(names) + 1) + 0.1]})
    _style(ax, grid_axis="both")
    ax.set_title("latency percentiles per phase", loc="left", fontsize=_TICK_SIZE + 1, color="#333333", pad=18)
    marks = {50.0: "o", 95.0: "s", 99.0: "D"}
    x_max = 1.0
    lows: list[float] = []
    highs: list[float] = []
    for name in names:
        hist = histograms[name]
        count = int(hist.get_total_count())
        if count == 0:
            rows.append({"name": name, "count": 0})
            continue
        top = min(5.0, max(1.0, math.log10(count)))
        x_max = max(x_max, top)
        xs = np.linspace(0.0, top, points)
        wanted = sorted(set([float(100.0 * (1.0 - 10.0**-x)) for x in xs] + list(marks) + [100.0]))
        values = hist.get_percentile_to_value_dict(wanted)
        # The query can stop early for the top percentiles; anything missing is the max.
        max_us = float(hist.get_max_value())
        curve_p = [p for p in wanted if p < 100.0 and _nines(p) <= top + 1e-9]
        curve_ms = np.array([float(values.get(p, max_us)) / 1000.0 for p in curve_p])
        curve_x = np.array([_nines(p) for p in curve_p])
        line = ax.plot(curve_x, curve_ms, color=colors[name], lw=1.8, label=f"{name}", zorder=3)[0]
        line.set_gid(f"latency:{name}")
        row = {"name": name, "count": count, "max": max_us / 1000.0}
        for p, marker in marks.items():
            v = float(values.get(p, max_us)) / 1000.0
            row[f"p{p:g}"] = v
            point = ax.plot(
                [_nines(p)], [v], marker=marker, ms=5.5, color=colors[name], mec="white", mew=0.8, lw=0, zorder=4
            )[0]
            point.set_gid(f"p{p:g}:{name}")
        rows.append(row)
        positive = curve_ms[curve_ms > 0]
        if positive.size:
            lows.append(float(positive.min()))
            highs.append(float(positive.max()))
    if not highs:
        _say(ax, "no requests in any phase", fontsize=11)
    else:
        is_log = _latency_scale(ax, min(lows), max(highs))
        ax.set_ylabel("latency (ms)" + (", log scale" if is_log else ""), fontsize=_TICK_SIZE + 0.5)
    x_top = math.ceil(x_max - 1e-9)
    ax.set_xlim(-0.05, x_top + 0.05)
    ticks = list(range(x_top + 1))
    ax.xaxis.set_major_locator(FixedLocator([float(t) for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _nines_label(v)))
    ax.set_xlabel("percentile (spaced by nines: 1 − p on a log scale)", fontsize=_TICK_SIZE + 0.5)
    # p50/p95/p99 named on a top axis, with faint guides down to the curves.
    guides = {"p50": _nines(50.0), "p95": _nines(95.0), "p99": _nines(99.0)}
    for x in guides.values():
        ax.axvline(x, color="#b3b3b3", lw=0.8, ls=(0, (3, 3)), zorder=1)
    top_axis = ax.secondary_xaxis("top")
    top_axis.set_xticks(list(guides.values()), list(guides))
    top_axis.tick_params(labelsize=_SMALL, colors=_TEXT_MUTED, length=0)
    top_axis.spines["top"].set_visible(False)
    if highs:
        handles = [Line2D([], [], color=colors[r["name"]], lw=1.8) for r in rows if r["count"]]
        labels = [str(r["name"]) for r in rows if r["count"]]
        for r in rows:
            if not r["count"]:
                handles.append(Line2D([], [], color="#bbbbbb", lw=1.8, ls=":"))
                labels.append(f"{r['name']}: no requests")
        ax.legend(handles, labels, **_outside_legend())
    _percentile_table(ax_tab, rows, colors)
    return fig


def _nines_label(x: float) -> str:
    if x <= 0:
        return "0 %"
    p = 100.0 * (1.0 - 10.0**-x)
    return f"{p:.{max(0, round(x) - 2)}f} %"


def _percentile_table(ax: Axes, rows: Sequence[Mapping[str, Any]], colors: Mapping[str | None, str]) -> None:
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(len(rows) + 0.9, -0.1)
    columns = [("requests", 0.40), ("p50 (ms)", 0.52), ("p95 (ms)", 0.64), ("p99 (ms)", 0.76), ("max (ms)", 0.88)]
    ax.text(0.02, 0.4, "phase", fontsize=_SMALL + 0.5, fontweight="bold", va="center")
    for label, x in columns:
        ax.text(x, 0.4, label, fontsize=_SMALL + 0.5, fontweight="bold", va="center", ha="right")
    ax.axhline(0.85, xmin=0.01, xmax=0.89, color="#cccccc", lw=0.8)
    for i, row in enumerate(rows, 1):
        y = i + 0.35
        name = str(row["name"])
        ax.text(0.02, y, "■", color=colors[name], fontsize=_SMALL + 2, va="center")
        ax.text(0.04, y, _shorten(name, 40), fontsize=_SMALL + 0.5, va="center")
        if not row["count"]:
            ax.text(0.40, y, "0", fontsize=_SMALL + 0.5, va="center", ha="right")
            ax.text(
                0.52,
                y,
                "no requests: not drawn",
                fontsize=_SMALL + 0.5,
                va="center",
                ha="left",
                color=_TEXT_MUTED,
                style="italic",
            )
            continue
        cells = [
            f"{row['count']:,}".replace(",", " "),
            fmt_ms(row["p50"]),
            fmt_ms(row["p95"]),
            fmt_ms(row["p99"]),
            fmt_ms(row["max"]),
        ]
        for (_label, x), cell in zip(columns, cells, strict=True):
            ax.text(x, y, cell, fontsize=_SMALL + 0.5, va="center", ha="right")


# -- 3. where the time went, per hop -----------------------------------------------------------------------------


def hops(rows: pandas.DataFrame, title: str, *, stat: Literal["mean", "median"] = "mean") -> PlotFigure:
    """Where each phase's time went: one horizontal bar per phase (in the order the phases first appear), its
    segments (ingress → proxy, proxy, proxy → lb, …) stacked in path order, each segment's ``stat`` (ms) written
    on it where it fits; below, each segment's ``stat`` and p95 per phase (log scale when wide).

    ``rows``: one per request and segment: request_id, time (unix s), phase, segment, order (position in the
    path), ms. The default ``stat`` is the mean, because means add up (the bar's length is the mean end-to-end
    time) and a delay injected into half of the requests shows as half of it, where a median flips between
    "nothing" and "everything" around a 50 % share. The segment that grew most against the first phase (the
    baseline) is outlined and its growth written on it. No rows: a figure saying so (never raises).
    """
    import pandas

    needed = {"segment", "ms"}
    if rows is None or len(rows) == 0 or not needed <= set(rows.columns):
        return _message_figure(title, "no access-log data")
    df = pandas.DataFrame(
        {
            "segment": rows["segment"].astype(str),
            "ms": pandas.to_numeric(rows["ms"], errors="coerce"),
            "phase": [_phase_name(v) or NO_PHASE for v in rows["phase"]] if "phase" in rows.columns else NO_PHASE,
            "order": pandas.to_numeric(rows["order"], errors="coerce") if "order" in rows.columns else 0.0,
            "time": pandas.to_numeric(rows["time"], errors="coerce") if "time" in rows.columns else 0.0,
            "request_id": rows["request_id"] if "request_id" in rows.columns else np.arange(len(rows)),
        }
    )
    df = df[np.isfinite(df["ms"].to_numpy(dtype=float, na_value=np.nan))]
    if df.empty:
        return _message_figure(title, "no access-log data")
    df = df.reset_index(drop=True)
    df["_seq"] = np.arange(len(df))
    first_seen = df.groupby("phase", sort=False).agg(t=("time", "min"), seq=("_seq", "min"))
    phase_order = list(first_seen.sort_values(["t", "seq"], na_position="last").index)
    seg_rank = df.groupby("segment", sort=False).agg(order=("order", "median"), seq=("_seq", "min"))
    segments = list(seg_rank.sort_values(["order", "seq"], na_position="last").index)
    grouped = df.groupby(["phase", "segment"], sort=False)["ms"]
    center = grouped.mean() if stat == "mean" else grouped.median()
    p95 = grouped.quantile(0.95)
    per_phase_requests = df.groupby("phase")["request_id"].nunique()

    def value(series: pandas.Series, phase: str, segment: str) -> float:
        v = series.get((phase, segment), math.nan)
        return float(v) if v is not None else math.nan

    pcolors = phase_colors(phase_order)
    scolors = segment_colors(segments)
    n_ph, n_seg = len(phase_order), len(segments)
    top_h = 0.55 * n_ph + 0.9
    bottom_h = 0.7 + n_seg * (0.1 + 0.13 * n_ph)
    fig = _new_figure(top_h + bottom_h + 1.0)
    _title(fig, title)
    ax, ax_p95 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [top_h, bottom_h]})
    _style(ax, grid_axis="x")
    _style(ax_p95, grid_axis="x")

    # Reference for "grew most": a phase named baseline, else the first one.
    reference = next((p for p in phase_order if p.lower() == "baseline"), phase_order[0])
    ys = np.arange(n_ph)
    totals = np.zeros(n_ph)
    bars: dict[tuple[str, str], tuple[float, float]] = {}
    for segment in segments:
        widths = np.array([value(center, p, segment) for p in phase_order])
        widths = np.nan_to_num(widths)
        container = ax.barh(
            ys,
            widths,
            left=totals,
            height=0.62,
            color=scolors[segment],
            edgecolor="white",
            lw=0.6,
            label=segment,
            zorder=2,
        )
        for patch, phase, bar_left, bar_width in zip(container.patches, phase_order, totals, widths, strict=True):
            patch.set_gid(f"hop:{phase}:{segment}")
            bars[(phase, segment)] = (float(bar_left), float(bar_width))
        totals = totals + widths
    x_hi = float(totals.max()) * 1.22 if totals.max() > 0 else 1.0
    ax.set_xlim(0, x_hi)
    ax.set_ylim(n_ph - 0.5, -0.5)
    ax.set_yticks(ys, [f"{p}\n{int(per_phase_requests.get(p, 0)):,} req".replace(",", " ") for p in phase_order])
    for label, phase in zip(ax.get_yticklabels(), phase_order, strict=True):
        label.set_color(pcolors[phase] if phase != NO_PHASE else _TEXT_MUTED)
        label.set_fontweight("bold")
    ax.tick_params(axis="y", length=0, labelsize=_TICK_SIZE)
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    ax.set_xlabel(f"{stat} time per request, by segment (ms), stacked in path order", fontsize=_TICK_SIZE + 0.5)
    ax.set_title(f"where the time went: {stat} ms per segment", loc="left", fontsize=_TICK_SIZE + 1, color="#333333")
    ax.legend(**_outside_legend())

    # Biggest growth against the reference phase.
    growth: dict[str, tuple[str, float]] = {}
    for phase in phase_order:
        if phase == reference:
            continue
        deltas = {s: value(center, phase, s) - value(center, reference, s) for s in segments}
        deltas = {s: d for s, d in deltas.items() if math.isfinite(d)}
        if not deltas:
            continue
        seg, delta = max(deltas.items(), key=lambda kv: kv[1])
        ref_total = float(totals[phase_order.index(reference)])
        if delta >= max(1.0, 0.25 * ref_total):
            growth[phase] = (seg, delta)

    _execute_layout(fig)
    meter = _TextMeter(fig)
    px_per_ms = ax.get_window_extent().width / x_hi
    for i, phase in enumerate(phase_order):
        grown = growth.get(phase)
        for segment in segments:
            left, width = bars[(phase, segment)]
            if width <= 0:
                continue
            text = fmt_ms(width)
            is_growth = grown is not None and grown[0] == segment
            if is_growth:
                assert grown is not None
                # The most telling label that fits: which hop, how long, how much more than the reference.
                growth_text = f"{text} ms  (+{fmt_ms(grown[1])} vs {reference})"
                for candidate in (f"{segment}: {growth_text}", growth_text):
                    if meter.width(candidate, _SMALL) + 8 <= width * px_per_ms:
                        text = candidate
                        break
                patch = next(p for p in ax.patches if p.get_gid() == f"hop:{phase}:{segment}")
                patch.set_edgecolor("#1a1a1a")
                patch.set_linewidth(1.4)
            if meter.width(text, _SMALL) + 6 <= width * px_per_ms:
                t = ax.text(
                    left + width / 2,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=_SMALL,
                    color=_text_color_on(scolors[segment]),
                    fontweight="bold" if is_growth else "normal",
                    zorder=4,
                )
                t.set_in_layout(False)
        t = ax.text(
            totals[i] + 4 / px_per_ms,
            i,
            f"{fmt_ms(float(totals[i]))} ms",
            ha="left",
            va="center",
            fontsize=_SMALL,
            color="#333333",
        )
        t.set_in_layout(False)
    _hop_p95_panel(ax_p95, center, p95, phase_order, segments, pcolors, scolors, stat)
    return fig


def _hop_p95_panel(
    ax: Axes,
    center: pandas.Series,
    p95: pandas.Series,
    phase_order: Sequence[str],
    segments: Sequence[str],
    pcolors: Mapping[str | None, str],
    scolors: Mapping[str, str],
    stat: str,
) -> None:
    """Per segment, one short line per phase from its ``stat`` (dot) to its p95 (bar end)."""
    n_ph = len(phase_order)
    step = 0.8 / max(n_ph, 1)
    values: list[float] = []
    for j, segment in enumerate(segments):
        for i, phase in enumerate(phase_order):
            c = center.get((phase, segment), math.nan)
            q = p95.get((phase, segment), math.nan)
            if c is None or q is None or not (math.isfinite(c) and math.isfinite(q)):
                continue
            y = j - 0.4 + step * (i + 0.5)
            color = pcolors[phase]
            ax.plot([c, q], [y, y], color=color, lw=2.2, alpha=0.55, solid_capstyle="butt", zorder=2)
            ax.plot([q], [y], marker="|", ms=9, mew=2, color=color, zorder=3)[0].set_gid(f"p95:{phase}:{segment}")
            ax.plot([c], [y], marker="o", ms=4.5, color=color, mec="white", mew=0.6, lw=0, zorder=4)
            values += [float(c), float(q)]
    positive = [v for v in values if v > 0]
    if positive:
        _latency_scale(ax, min(positive), max(positive), axis="x")
    ax.set_ylim(len(segments) - 0.5, -0.5)
    ax.set_yticks(range(len(segments)), list(segments))
    for label, segment in zip(ax.get_yticklabels(), segments, strict=True):
        label.set_color("#1a1a1a")
        label.set_bbox(
            {"boxstyle": "square,pad=0.1", "facecolor": scolors[segment], "alpha": 0.35, "edgecolor": "none"}
        )
    ax.tick_params(axis="y", length=0, labelsize=_TICK_SIZE)
    for j in range(len(segments) - 1):
        ax.axhline(j + 0.5, color=_GRID, lw=0.7, zorder=0)
    ax.set_xlabel(f"ms per segment: ● {stat} — | p95", fontsize=_TICK_SIZE + 0.5)
    ax.set_title(f"per segment: {stat} and p95 by phase", loc="left", fontsize=_TICK_SIZE + 1, color="#333333")
    handles = [Line2D([], [], color=pcolors[p], lw=2.2, marker="o", ms=4.5, mec="white") for p in phase_order]
    ax.legend(handles, list(phase_order), **_outside_legend())


# -- 4. history across runs --------------------------------------------------------------------------------------

_RUN_ID = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})")
SCORE_COLOR = OK_COLOR
"""The resilience score's line in the trend."""
TREND_MAX_TESTS = 40
"""Tests the trend draws a row for, at most (the first ones the window's records name; a note counts the others).
A row costs ~2 in of height and ~0.15 s of rendering: 40 rows keep the PNG under ~90 in and a few seconds."""


def _run_label(run_id: str, when: float | None) -> str:
    """A short tick label for a run: "11-21\\n14:15" from a ``YYYYMMDD-HHMMSS-…`` id or its time, else the id."""
    m = _RUN_ID.match(run_id)
    if m:
        return f"{m[2]}-{m[3]}\n{m[4]}:{m[5]}"
    if when is not None:
        import time

        try:
            return time.strftime("%m-%d\n%H:%M", time.localtime(when))
        except (OverflowError, OSError, ValueError):  # a time no run was recorded at (history.jsonl edited)
            pass
    return _shorten(run_id, 12)


def trend(records: Sequence[Mapping[str, Any]], title: str = "pytest-clover trend", *, last: int = 30) -> PlotFigure:
    """History across runs (``history.jsonl`` records), x = the last ``last`` runs in time order, labelled with
    their date and time.

    On top, the run's resilience score (%, :func:`pytest_clover.report.history.run_score`: the report's formula
    over the recorded fractions and weights; a hollow point for a partial run); left out when no run recorded a
    score. Then per test (at most :data:`TREND_MAX_TESTS`), one row of three panels: p99 per phase (ms), error
    rate per phase (%), time to recover per key (s; a soak's ``soak <kind>`` keys are its median time to recover
    per fault kind). One legend above the panels names every phase and key, each with one colour in every row.

    A failed run has a red column and a red ✕ under each of the test's panels; a missing value is a gap; a
    recovery that never happened (``None``) is a dark-red ▲ at the top of the recovery panel. The figure's axes
    are the tests' panels, three per row in row order, then the score panel.
    """
    from .history import trend_data

    data = trend_data(records, last=last)
    if not data.runs:
        return _message_figure(title, "no history yet")
    runs, n_runs = data.runs, len(data.runs)
    tests = data.tests[:TREND_MAX_TESTS]
    hidden = len(data.tests) - len(tests)
    keys = list(dict.fromkeys(k for t in tests for per_field in data.series[t].values() for k in per_field))
    colors = phase_colors(keys)
    has_score = any(score is not None for score in data.scores)
    has_partial = any(data.partial) and has_score

    handles: list[Any] = [Line2D([], [], color=colors[k], lw=1.4, marker="o", ms=3.5) for k in keys]
    labels = list(keys)
    # The markers' entries only when the figure has such a marker: a legend entry for nothing sends readers looking.
    if any(data.failed[t] for t in tests):
        handles.append(Line2D([], [], color=ERROR_COLOR, marker="x", mew=2, ms=7, lw=0))
        labels.append("failed run")
    if any(math.isinf(v) for t in tests for values in data.series[t]["recovery_s"].values() for v in values):
        handles.append(Line2D([], [], color=NEVER_COLOR, marker="^", ms=7, lw=0))
        labels.append("never recovered")
    if has_partial:
        handles.append(Line2D([], [], color=SCORE_COLOR, marker="o", ms=5, mfc="white", lw=0))
        labels.append("partial run")

    # Every row has the same structure, so the layout is computed here (in inches) rather than by constrained
    # layout, whose cost grows steeply with the number of axes (21 tests: ~4 s of a ~9 s save).
    title_h, legend_row_h, row_h, panel_title_h, ticks_h = 0.42, 0.21, 2.15, 0.34, 0.45
    score_h = 1.75 if has_score else 0.0
    note_h = 0.3 if hidden else 0.0
    left_h, gap_w, right_w = 0.72, 0.78, 0.15
    fig = _new_figure(1.0, constrained=False)
    width = fig.get_figwidth()
    legend_cols = _legend_columns(fig, labels, width - 0.2)
    legend_h = legend_row_h * math.ceil(len(labels) / legend_cols) + 0.1
    header_h = title_h + legend_h
    height = header_h + score_h + row_h * len(tests) + note_h
    fig.set_size_inches(width, height)
    panel_w = (width - left_h - right_w - 2 * gap_w) / 3
    tick_idx = _sparse_ticks(n_runs, 7)
    tick_labels = [_run_label(runs[i], data.times[i]) for i in tick_idx]
    rows_top = height - header_h - score_h
    for row, nodeid in enumerate(tests):
        top = rows_top - row * row_h
        fig.text(
            0.005,
            (top - 0.06) / height,
            _shorten(nodeid, 130),
            ha="left",
            va="top",
            fontsize=_TICK_SIZE + 1,
            fontweight="bold",
            color="#333333",
        )
        bottom = top - row_h + ticks_h
        axes = [
            fig.add_axes(
                (
                    (left_h + i * (panel_w + gap_w)) / width,
                    bottom / height,
                    panel_w / width,
                    (row_h - panel_title_h - ticks_h) / height,
                )
            )
            for i in range(3)
        ]
        _trend_row(axes, data.series[nodeid], data.failed[nodeid], n_runs, colors)
        for ax in axes:
            _run_axis(ax, n_runs, tick_idx, tick_labels)
    if has_score:
        score_ax = fig.add_axes(
            (
                left_h / width,
                (height - header_h - score_h + ticks_h) / height,
                (width - left_h - right_w) / width,
                (score_h - panel_title_h - ticks_h) / height,
            )
        )
        _score_panel(score_ax, data.scores, data.partial)
        _run_axis(score_ax, n_runs, tick_idx, tick_labels)
    fig.text(
        0.01,
        1 - 0.1 / height,
        _shorten(f"{title} — last {n_runs} run{'s' if n_runs != 1 else ''}", 140),
        ha="left",
        va="top",
        fontsize=12,
        fontweight="bold",
    )
    if hidden:
        fig.text(
            0.01,
            (note_h - 0.08) / height,
            f"{hidden} more test{'s' if hidden != 1 else ''} not drawn (the trend draws {TREND_MAX_TESTS}); "
            "history.jsonl has them all",
            ha="left",
            va="top",
            fontsize=_SMALL,
            color=_TEXT_MUTED,
        )
    fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(0.005, 1 - title_h / height),
        ncol=legend_cols,
        fontsize=_SMALL,
        frameon=False,
        handlelength=1.8,
        columnspacing=1.6,
        borderaxespad=0.0,
        borderpad=0.0,
    )
    return fig


def _legend_columns(fig: Figure, labels: Sequence[str], width_in: float) -> int:
    """How many legend columns ``labels`` take within ``width_in``: as few rows as fit, then columns as even as
    those rows allow. Widths are measured; columns are filled the way matplotlib fills them (``np.array_split``)."""
    if not labels:
        return 1
    meter = _TextMeter(fig)
    em = _SMALL / 72.0  # inches
    entries = [meter.width(label, _SMALL) / _DPI + (1.8 + 0.8) * em for label in labels]  # handle, pad, text

    def fits(ncol: int) -> bool:
        columns = [chunk for chunk in np.array_split(np.asarray(entries), ncol) if len(chunk)]
        return sum(float(c.max()) for c in columns) + 1.6 * em * (len(columns) - 1) <= width_in

    widest = next((n for n in range(len(labels), 0, -1) if fits(n)), 1)
    rows = math.ceil(len(labels) / widest)
    even = math.ceil(len(labels) / rows)
    return even if fits(even) else widest


def _trend_row(
    axes: Sequence[Axes],
    series: Mapping[str, Mapping[str, Sequence[float]]],
    failed: Sequence[int],
    n_runs: int,
    colors: Mapping[str | None, str],
) -> None:
    """One test's three panels: p99 per phase, error rate per phase (%), recovery per key (+inf: never)."""
    panels = (
        ("p99_ms", "p99 latency (ms)", 1.0),
        ("error_rate", "error rate (%)", 100.0),
        ("recovery_s", "recovery time (s)", 1.0),
    )
    for ax, (key, ylabel, factor) in zip(axes, panels, strict=True):
        _style(ax)
        values_all: list[float] = []
        for name, values in series.get(key, {}).items():
            ys = np.asarray(values, dtype=float) * factor
            never = [i for i, v in enumerate(ys) if math.isinf(v)]
            ys[~np.isfinite(ys)] = np.nan
            ax.plot(np.arange(n_runs), ys, "-o", color=colors[name], lw=1.4, ms=3.5, zorder=3, label=name)[0].set_gid(
                f"trend:{key}:{name}"
            )
            values_all += [float(v) for v in ys if np.isfinite(v)]
            if never:
                ax.plot(
                    never,
                    [0.94] * len(never),
                    "^",
                    color=NEVER_COLOR,
                    ms=7,
                    zorder=5,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )[0].set_gid(f"never:{name}")
        if key == "p99_ms":
            positive = [v for v in values_all if v > 0]
            if positive:
                _latency_scale(ax, min(positive), max(positive))
        else:
            top = max(values_all) if values_all else 0.0
            ax.set_ylim(0, max(top * 1.25, 1.0))
            ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        for x in failed:
            ax.axvspan(x - 0.45, x + 0.45, color=ERROR_COLOR, alpha=0.08, lw=0, zorder=0)
        if failed:
            ax.plot(
                list(failed),
                [0.0] * len(failed),
                "x",
                color=ERROR_COLOR,
                ms=7,
                mew=2,
                zorder=5,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )[0].set_gid("failed")
        ax.set_ylabel(ylabel, fontsize=_TICK_SIZE)


def _score_panel(ax: Axes, scores: Sequence[float | None], partial: Sequence[bool]) -> None:
    """The resilience score per run (%), the latest value written at its point; partial runs hollow."""
    _style(ax)
    ys = np.array([math.nan if s is None else s for s in scores], dtype=float)
    xs = np.arange(len(ys))
    ax.plot(xs, ys, "-o", color=SCORE_COLOR, lw=1.8, ms=4.5, zorder=3)[0].set_gid("trend:score")
    hollow = [i for i, p in enumerate(partial) if p and np.isfinite(ys[i])]
    if hollow:
        ax.plot(hollow, ys[hollow], "o", ms=5.5, mfc="white", mec=SCORE_COLOR, mew=1.4, lw=0, zorder=4)[0].set_gid(
            "score:partial"
        )
    seen = ys[np.isfinite(ys)]
    # A night that lost a few points must show: the axis starts near the lowest score, not always at 0.
    low = float(seen.min()) if seen.size else 0.0
    bottom = 0.0 if low < 40 else max(0.0, math.floor((low - 5) / 10) * 10)
    ax.set_ylim(bottom, 100 + (100 - bottom) * 0.12)
    ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    latest = next((i for i in range(len(ys) - 1, -1, -1) if np.isfinite(ys[i])), None)
    if latest is not None:
        ax.annotate(
            f"{ys[latest]:.1f} %",
            (latest, ys[latest]),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=_SMALL,
            color=SCORE_COLOR,
            fontweight="bold",
        )
    ax.set_ylabel("score (%)", fontsize=_TICK_SIZE)
    ax.set_title(
        "resilience score per run: 100 × Σ(weight × fraction) / Σ weight",
        loc="left",
        fontsize=_TICK_SIZE + 1,
        color="#333333",
    )


def _run_axis(ax: Axes, n_runs: int, tick_idx: Sequence[int], tick_labels: Sequence[str]) -> None:
    """The shared x axis of every trend panel: one slot per run, sparse date labels."""
    ax.set_xlim(-0.6, n_runs - 0.4)
    ax.set_xticks(list(tick_idx), list(tick_labels))
    ax.tick_params(axis="x", labelsize=_SMALL - 0.5)


def _sparse_ticks(n: int, most: int) -> list[int]:
    """At most ``most`` run indices to label, evenly spread, always including the latest run."""
    if n <= most:
        return list(range(n))
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, most)})


# -- 5. a soak test over the night ---------------------------------------------------------------------------------

SOAK_VERDICT_COLORS = {
    "passed": "#1a7f37",
    "failed": "#cf222e",
    "inconclusive": "#9a6700",
    "pending": "#57606a",
    "not-run": "#8c959f",
}
"""An event's verdict, as the HTML report colours it (any other verdict: the pending grey)."""
_SOAK_SPAN_ALPHA = {"passed": 0.10, "failed": 0.28, "inconclusive": 0.22, "pending": 0.18}
# Passed events are the faint majority of a night; the ones that did not pass must stand out among 200 of them.
QUIET_WINDOW_COLOR = "#2ca25f"
"""The plan's quiet windows (no fault starts or is in force): the baseline's green, lightly."""
TRIP_COLOR = "#7b0c0c"
"""The guardrail trip: the dark red of a recovery that never happened in the trend."""
BUDGET_COLOR = "#6a3d9a"
SOAK_LABELLED_EVENTS = 30
"""Up to this many events, each marker is labelled with its id; more would overlap (the page's table has them)."""


def soak_overview(
    data: SoakData,
    windows: Sequence[Mapping[str, Any]] | None,
    title: str,
    *,
    max_buckets: int = 1500,
) -> PlotFigure:
    """A soak test over the night, readable for 8 hours and ~200 events: an event strip (one marker per event,
    coloured by verdict: passed green, failed red, inconclusive amber, pending grey, not-run hollow), p99 latency
    (ms) and error rate (%) from the test's windows, the error-budget burn-down (remaining fraction, 0 marked),
    all on one time axis (s, min or h since the soak started); below, the times to recover per fault kind (a box
    and the events' points, the plan's allowance as a dashed line, "never" counted at the right).

    Every event is a thin span on the time panels, coloured by its verdict; the plan's quiet windows are shaded
    green; a guardrail trip is a vertical dark-red line with its name; a checkpoint of a running soak is a dotted
    line ("checkpoint"), and the x axis runs to the planned end, so how far the night got shows.

    ``windows`` (``result.json``'s rows, unix s) are downsampled by
    :func:`pytest_clover.report.soak.downsample` to at most ``max_buckets`` buckets of consecutive windows: p99 is
    each bucket's worst window, the error rate its errors over its requests; the y labels say so. The cost is
    bounded by the buckets, the events (a few collections, not an artist per event) and ≤ 2000 burn-down points.
    ``clover_spans`` lists the events drawn (``kind`` "event", ``verdict``, start/end s since the soak started).
    """
    from .soak import JUDGED, downsample, ttr_by_kind

    buckets = downsample(windows or [], max_buckets)
    starts = [e.start for e in data.events if e.start is not None]
    t0 = data.started
    if t0 is None:
        t0 = float(buckets.start[0]) if len(buckets.start) else (min(starts) if starts else 0.0)
    data_end = float(buckets.end[-1]) - t0 if len(buckets.end) else 0.0
    ends = [e.end - t0 for e in data.events if e.end is not None]
    extent = max([1.0, data_end, data.duration_s or 0.0, data.elapsed_s or 0.0, *ends])
    unit, scale = _time_unit(extent)

    ttr = ttr_by_kind(data.events)
    ttr_h = max(1.5, 0.42 * len(ttr) + 0.9)
    fig = _new_figure(0.55 + 2.3 + 1.3 + 1.5 + ttr_h + 1.0)
    fig.clover_t0, fig.clover_x_unit, fig.clover_x_scale = t0, unit, scale
    _title(fig, f"{title} — {data.title}" if data.title else title)
    strip, ax_p99, ax_err, ax_budget, ax_ttr = fig.subplots(
        5, 1, gridspec_kw={"height_ratios": [0.55, 2.3, 1.3, 1.5, ttr_h]}
    )
    time_axes = (ax_p99, ax_err, ax_budget)
    for ax in (*time_axes, strip):
        if ax is not strip:
            _style(ax)
        ax.sharex(ax_budget) if ax is not ax_budget else None
    for ax in (strip, ax_p99, ax_err):
        ax.tick_params(axis="x", labelbottom=False)
    ax_budget.set_xlim(0, extent / scale)

    # (a) p99 and error rate, downsampled.
    x0, x1 = (buckets.start - t0) / scale, (buckets.end - t0) / scale
    hole = 0.5 / scale
    # Windows are ~1 s, so a bucket of k windows is ~k seconds: what the labels call it.
    per = f"\nper {buckets.per_bucket}-s bucket" if buckets.per_bucket > 1 else "\nper 1-s window"
    how = (
        f" — {buckets.per_bucket}-s buckets: p99 the worst 1-s window of each, error rate its errors / requests"
        if buckets.per_bucket > 1
        else ""
    )
    xs, ys = _steps(x0, x1, buckets.p99_ms, hole)
    ax_p99.plot(xs, ys, drawstyle="steps-post", color=LATENCY_COLORS["p99"], lw=1.1, zorder=3)[0].set_gid("soak:p99")
    positive = buckets.p99_ms[np.isfinite(buckets.p99_ms) & (buckets.p99_ms > 0)]
    slo_p99 = data.slo.get("p99_ms")
    is_log = False
    if positive.size:
        high = max(float(positive.max()), slo_p99 or 0.0)
        is_log = _latency_scale(ax_p99, float(positive.min()), high)
    ax_p99.set_ylabel("p99 (ms)" + (", log" if is_log else "") + per.replace("per", "worst per"), fontsize=_TICK_SIZE)
    if slo_p99 is not None:
        ax_p99.axhline(slo_p99, color=LATENCY_COLORS["p99"], ls="--", lw=0.9, alpha=0.7, zorder=2)
        ax_p99.text(
            0.004,
            slo_p99,
            f"SLO {fmt_ms(slo_p99)} ms",
            transform=ax_p99.get_yaxis_transform(),
            fontsize=_SMALL,
            va="bottom",
            ha="left",
            color=LATENCY_COLORS["p99"],
            zorder=5,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        ).set_in_layout(False)
    if not len(buckets.start):
        _say(ax_p99, "no load windows recorded yet", fontsize=11)
    err_pct = buckets.error_rate * 100.0
    xs, ys = _steps(x0, x1, err_pct, hole)
    ax_err.fill_between(xs, 0, ys, step="post", color=ERROR_COLOR, alpha=0.25, lw=0, zorder=2)
    ax_err.plot(xs, ys, drawstyle="steps-post", color=ERROR_COLOR, lw=1.0, zorder=3)[0].set_gid("soak:error_rate")
    peak = float(np.nanmax(err_pct)) if np.isfinite(err_pct).any() else 0.0
    slo_err = data.slo.get("max_error_rate")
    top = max(peak, (slo_err or 0.0) * 100.0)
    ax_err.set_ylim(0, min(105.0, max(top * 1.2, 1.0)))
    ax_err.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    ax_err.set_ylabel("error rate (%)" + per, fontsize=_TICK_SIZE)
    if slo_err is not None:
        ax_err.axhline(slo_err * 100.0, color=ERROR_COLOR, ls="--", lw=0.9, alpha=0.7, zorder=2)

    # (b) the error budget's burn-down.
    if data.burn_down:
        bx = np.array([(t - t0) / scale for t, _ in data.burn_down])
        by = np.array([v for _, v in data.burn_down])
        ax_budget.plot(bx, by, color=BUDGET_COLOR, lw=1.4, zorder=3)[0].set_gid("soak:burn_down")
        ax_budget.fill_between(bx, 0, by, where=by < 0, color=ERROR_COLOR, alpha=0.3, lw=0, interpolate=True)
        ax_budget.set_ylim(min(-0.1, float(by.min()) - 0.08), 1.08)
    else:
        ax_budget.set_ylim(-0.1, 1.08)
        _say(ax_budget, "no error budget in the plan (guardrails.error_budget or burn_rate)", fontsize=_SMALL + 0.5)
    ax_budget.axhline(0.0, color=ERROR_COLOR, lw=1.1, ls="--", zorder=2).set_gid("soak:budget_zero")
    ax_budget.text(
        1.0,
        0.0,
        "budget spent ",
        transform=ax_budget.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize=_SMALL,
        color=ERROR_COLOR,
    ).set_in_layout(False)
    ax_budget.set_ylabel("error budget\nremaining (fraction)", fontsize=_TICK_SIZE)
    ax_budget.set_xlabel(f"time since the soak started ({unit}){how}", fontsize=_TICK_SIZE + 0.5)

    # (c) events, quiet windows, the trip and the checkpoint on every time panel.
    min_width = extent / scale * 0.0015  # a kill (no duration) still shows: ~1.5 px
    spans: dict[str, list[tuple[float, float]]] = {}
    for event in data.events:
        if event.start is None:
            continue
        a = (event.start - t0) / scale
        b = (event.end - t0) / scale if event.end is not None else max(a, (data.elapsed_s or extent) / scale)
        verdict = event.verdict if event.verdict in _SOAK_SPAN_ALPHA else "pending"
        spans.setdefault(verdict, []).append((a, max(b - a, min_width)))
        fig.clover_spans.append(
            {
                "kind": "event",
                "name": event.description,
                "id": event.id,
                "start_s": event.start - t0,
                "end_s": None if event.end is None else event.end - t0,
                "verified": event.verified,
                "verdict": event.verdict,
            }
        )
    quiet = [(a / scale, (b - a) / scale) for a, b in data.quiet_windows]
    trip_x = None if data.trip is None or data.trip.at is None else (data.trip.at - t0) / scale
    checkpoint_x = data.elapsed_s / scale if data.state == "running" and data.elapsed_s is not None else None
    for ax in time_axes:
        trans = ax.get_xaxis_transform()
        if quiet:
            ax.broken_barh(quiet, (0, 1), transform=trans, facecolors=QUIET_WINDOW_COLOR, alpha=0.12, lw=0, zorder=0)
        for verdict, bars in spans.items():
            coll = ax.broken_barh(
                bars,
                (0, 1),
                transform=trans,
                facecolors=SOAK_VERDICT_COLORS[verdict],
                alpha=_SOAK_SPAN_ALPHA[verdict],
                lw=0,
                zorder=1,
            )
            coll.set_gid(f"soak:events:{verdict}")
        if trip_x is not None:
            ax.axvline(trip_x, color=TRIP_COLOR, lw=1.6, zorder=4).set_gid("soak:trip")
        if checkpoint_x is not None:
            ax.axvline(checkpoint_x, color=_TEXT_MUTED, lw=1.0, ls=":", zorder=4)
    if trip_x is not None:
        assert data.trip is not None
        ax_p99.text(
            trip_x,
            0.98,
            f" guardrail {data.trip.guardrail} ",
            transform=ax_p99.get_xaxis_transform(),
            ha="right",
            va="top",
            fontsize=_SMALL,
            color="white",
            fontweight="bold",
            zorder=5,
            bbox={"boxstyle": "square,pad=0.15", "facecolor": TRIP_COLOR, "edgecolor": "none"},
        ).set_in_layout(False)
    if checkpoint_x is not None:
        ax_p99.text(
            checkpoint_x,
            0.98,
            " checkpoint",
            transform=ax_p99.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=_SMALL,
            color=_TEXT_MUTED,
            zorder=5,
        ).set_in_layout(False)

    _soak_strip(strip, data, t0, scale, extent)
    _soak_ttr(ax_ttr, data, ttr, JUDGED)
    handles: list[Any] = [Line2D([], [], color=LATENCY_COLORS["p99"], lw=1.1)]
    labels = ["p99"]
    if quiet:
        handles.append(Patch(facecolor=QUIET_WINDOW_COLOR, alpha=0.25))
        labels.append("quiet window")
    if trip_x is not None:
        handles.append(Line2D([], [], color=TRIP_COLOR, lw=1.6))
        labels.append("guardrail trip")
    ax_p99.legend(handles, labels, **_outside_legend())
    return fig


def _soak_strip(ax: Axes, data: SoakData, t0: float, scale: float, extent: float) -> None:
    """One marker per event at its start (not-run ones hollow, at their planned time), coloured by verdict; each
    labelled by id when there are at most :data:`SOAK_LABELLED_EVENTS`; the legend counts them per verdict."""
    from .soak import verdict_counts

    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.35], ["events"])
    ax.tick_params(axis="y", length=0, labelsize=_SMALL, labelcolor=_TEXT_MUTED)
    ax.tick_params(axis="x", length=0)
    by_verdict: dict[str, list[float]] = {}
    placed: list[tuple[float, str]] = []
    for event in data.events:
        at = event.at_s(data.started)
        if event.start is not None:
            at = event.start - t0
        if at is None:
            continue
        verdict = event.verdict if event.verdict in SOAK_VERDICT_COLORS else "pending"
        by_verdict.setdefault(verdict, []).append(at / scale)
        placed.append((at / scale, event.id))
    counts = verdict_counts(data.events)
    handles, labels = [], []
    for verdict, color in SOAK_VERDICT_COLORS.items():
        xs = by_verdict.get(verdict)
        if not xs:
            continue
        hollow = verdict == "not-run"
        ax.plot(
            xs,
            [0.35] * len(xs),
            "o" if hollow else "v",
            ms=6,
            lw=0,
            color=color,
            mfc="none" if hollow else color,
            mew=1.2,
            zorder=3,
        )[0].set_gid(f"soak:markers:{verdict}")
        handles.append(
            Line2D([], [], marker="o" if hollow else "v", ms=6, lw=0, color=color, mfc="none" if hollow else color)
        )
        labels.append(f"{verdict} ({counts.get(verdict, len(xs))})")
    if len(placed) <= SOAK_LABELLED_EVENTS:
        for i, (x, event_id) in enumerate(sorted(placed)):
            ax.text(
                x,
                0.72 if i % 2 == 0 else 0.98,
                event_id,
                ha="center",
                va="top",
                fontsize=_SMALL - 1,
                color="#333333",
                clip_on=True,
            ).set_in_layout(False)
    if handles:
        ax.legend(handles, labels, **{**_outside_legend(), "fontsize": _SMALL - 0.5})


def _soak_ttr(ax: Axes, data: SoakData, ttr: Mapping[str, TTRStats], judged: frozenset[str]) -> None:
    """Per fault kind, one row: a box (quartiles, median, whiskers to min and max) over its times to recover (when
    ≥ 3 recovered), each event a point coloured by its verdict (spread vertically by its rank, no randomness),
    those that never recovered counted at the right, and the plan's allowance as a dashed vertical line."""
    from .soak import quantile

    _style(ax, grid_axis="x")
    kinds = list(ttr)
    within = data.recovery_within_s
    if not kinds:
        ax.set_axis_off()
        _say(ax, "no event judged yet: no time to recover", fontsize=_SMALL + 1)
        return
    values = [v for stats in ttr.values() for v in stats.values]
    hi = max([*values, within or 0.0, 1.0]) * 1.25
    for row, kind in enumerate(kinds):
        stats = ttr[kind]
        if stats.n >= 3:
            # Drawn by hand, not with boxplot(): the quartiles are the same interpolated quantiles as the page's
            # median and p90 (soak.quantile), and the whiskers reach the fastest and the slowest recovery.
            q1, median, q3 = (quantile(stats.values, q) for q in (0.25, 0.5, 0.75))
            low, high = stats.values[0], stats.values[-1]
            ax.hlines([row, row], [low, q3], [q1, high], color="#8c959f", lw=1.0, zorder=2)
            ax.vlines([low, high], row - 0.12, row + 0.12, color="#8c959f", lw=1.0, zorder=2)
            box = ax.broken_barh(
                [(q1, q3 - q1)], (row - 0.27, 0.54), facecolors="#eef1f5", edgecolor="#8c959f", lw=0.9, zorder=2
            )
            box.set_gid(f"soak:ttr:{kind}")
            ax.vlines([median], row - 0.27, row + 0.27, color="#1f2328", lw=1.6, zorder=4)
        mine = [e for e in data.events if e.kind == kind and e.verdict in judged and e.recovery_s is not None]
        for verdict in ("passed", "inconclusive", "failed"):
            xs = [e.recovery_s for e in mine if e.verdict == verdict and e.recovery_s is not None]
            if not xs:
                continue
            # Spread by rank with the golden ratio: deterministic, and no two neighbours on one line.
            ys = [row + ((i * 0.618034) % 1.0 - 0.5) * 0.5 for i in range(len(xs))]
            ax.plot(xs, ys, "o", ms=3.2, lw=0, color=SOAK_VERDICT_COLORS[verdict], alpha=0.75, zorder=3)
        if stats.never:
            ax.plot([hi], [row], "x", ms=7, mew=2, color=TRIP_COLOR, zorder=4, clip_on=False)
            ax.text(
                hi,
                row - 0.12,
                f"never ×{stats.never}",
                ha="right",
                va="bottom",
                fontsize=_SMALL,
                color=TRIP_COLOR,
            ).set_in_layout(False)
    labels = []
    for kind in kinds:
        s = ttr[kind]
        if s.n:
            assert s.median is not None and s.p90 is not None
            labels.append(f"{kind}  n={s.n}\nmedian {s.median:.1f} s · p90 {s.p90:.1f} s")
        else:
            labels.append(f"{kind}  n=0")
    ax.set_yticks(range(len(kinds)), labels)
    ax.tick_params(axis="y", length=0, labelsize=_SMALL)
    ax.set_ylim(len(kinds) - 0.5, -0.5)
    top = max(values, default=0.0)
    if top > 0 and hi > 4 * top:
        # The allowance far beyond every recovery (30 s against 1–4 s) would squeeze the boxes into the left edge:
        # linear up to 1 s, logarithmic beyond, so both the spread and the allowance read.
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.7)
        ticks = [t for t in (0, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600) if t <= hi]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlim(0, hi)
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    if within is not None:
        ax.axvline(within, color=TRIP_COLOR, ls="--", lw=1.0, zorder=2).set_gid("soak:allowance")
        ax.text(
            within,
            -0.5,
            f" allowance {within:g} s",
            ha="left",
            va="bottom",
            fontsize=_SMALL,
            color=TRIP_COLOR,
        ).set_in_layout(False)
    ax.set_xlabel("time to recover (s) per fault kind, over the judged events", fontsize=_TICK_SIZE + 0.5)


# -- 6. output ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def missing_glyphs_allowed() -> Iterator[None]:
    """Draw a character the font lacks (a control character or an emoji in a test id, a phase name, a run id) as
    matplotlib does, a box, without its warning: under ``-W error`` (pytest's filterwarnings) the warning would
    cost the whole plot, drawn while figures are laid out and saved."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        yield


def to_png_bytes(fig: Figure, *, dpi: int = _DPI) -> bytes:
    """The figure as PNG bytes, rendered by Agg (no display, no pyplot)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # savefig lays out a figure that has a layout engine by drawing it once without rendering, then draws it again
    # for real. Running the layout once here and saving with the positions frozen makes that one draw, not two.
    # The engine must be removed (None), not set to "none": that leaves a placeholder engine, and savefig still
    # makes its dry draw for any engine at all (a tenth of the time the plots take). With the rc settings off,
    # None removes it whatever the user's matplotlibrc asks for.
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
    try:
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white", metadata={"Software": "pytest-clover"})
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
    return buffer.getvalue()


def save(fig: Figure, path: Path, *, dpi: int = _DPI) -> Path:
    """Write the figure as a PNG at ``path`` atomically (a reader never sees half a file); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_png_bytes(fig, dpi=dpi)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        # mkstemp makes the file private (0600); a report is meant to be read by whoever reads the folder.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
