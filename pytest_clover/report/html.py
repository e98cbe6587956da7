"""``index.html``: one self-contained page (inline CSS, plots as data URIs; opens from disk, no network).

Reading order is what a person looks for: did the run pass and how resilient is the system (score, totals),
which tests broke and on which objective (the table, worst first), then per test when and how badly
(plots with the fault windows shaded, the SLO rows, the fault timeline), and last the trend across runs.

A soak test's section opens with its night (:func:`_soak_section`): plan, seed and replay, how far it got,
the guardrail that stopped it, the plot of the night and a compact table of its events — the ones that did not
pass first and the passed ones folded when there are many, so an 8-hour night keeps the page small.
"""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ReportDataError
from .build import data_uri
from .soak import SoakData, SoakEvent, clock, guardrail_line, read_soak, slo_during, table_order, ttr_by_kind

VERDICT_COLORS = {
    "passed": "#1a7f37",
    "failed": "#cf222e",
    "error": "#cf222e",
    "inconclusive": "#9a6700",
    "interrupted": "#6e7781",
    "skipped": "#6e7781",
}

PLOT_CAPTIONS = {
    "timeseries": "Throughput, error rate and latency per second; phases shaded, fault windows hatched.",
    "latency": "Latency percentiles per phase (HdrHistogram, coordinated-omission corrected in the open loop).",
    "hops": "Where the time went on each hop, per phase (mean of sampled requests, from the sidecars' access logs; "
    "the segment that grew most is outlined).",
    "soak": "The night: one marker and thin span per event, coloured by verdict; p99 and error rate downsampled "
    "(worst window per bucket, errors over requests); the plan's quiet windows green; the guardrail trip a dark-red "
    "line; the error budget left; below, the times to recover per fault kind against the plan's allowance.",
}

SOAK_FOLD_OVER = 60
"""A soak with more events than this lists the ones that did not pass first and folds the passed ones into a
``<details>`` block."""
SOAK_MAX_ROWS = 1000
"""At most this many events are rows of the page (failed first); the rest are counted, and all are in
``soak.json``: 100 000 events must not make a page of 30 MB."""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 10px} h3{font-size:16px;margin:0 0 8px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:12px 0}
.head{display:flex;gap:24px;align-items:center;flex-wrap:wrap}
.score{font-size:44px;font-weight:700;line-height:1} .score small{font-size:14px;font-weight:400;color:#57606a}
.meta{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}
.meta dt{color:#57606a} .meta dd{margin:0}
code,pre{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace} pre{white-space:pre-wrap;margin:6px 0}
.banner{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:10px 14px;margin:12px 0}
.banner.bad{background:#ffebe9;border-color:#cf222e}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:5px 8px;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top} th{background:#f6f8fa;font-weight:600} td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.ok{color:#1a7f37} .bad{color:#cf222e;font-weight:600} .muted{color:#57606a}
img{max-width:100%;border:1px solid #eaeef2;border-radius:6px;margin:6px 0}
figure{margin:10px 0} figcaption{font-size:12px;color:#57606a}
.totals span{margin-right:14px}
a{color:#0969da;text-decoration:none} a:hover{text-decoration:underline}
.soak{border-left:4px solid #6a3d9a;padding-left:12px;margin:10px 0}
.v-passed{background:#1a7f37} .v-failed{background:#cf222e} .v-inconclusive{background:#9a6700}
.v-pending,.v-not-run{background:#6e7781}
details{margin:8px 0} details>summary{cursor:pointer;color:#0969da}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return "—"
    try:
        return datetime.datetime.fromtimestamp(float(ts), datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # beyond year 9999 or the platform's time_t: not a time we wrote
        return _e(ts)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "—"
    s = float(seconds)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_metric(metric: str, value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    if "error_rate" in metric:
        return f"{value * 100:.2f} %"
    if "throughput" in metric:
        return f"{value:.1f} rps"
    if metric.endswith("_s") or metric == "recovery":
        return f"{value:.1f} s"
    return f"{value:.1f} ms"


def _threshold(check: Mapping[str, Any]) -> str:
    sign = "≥" if check["metric"] == "min_throughput_rps" else "≤"
    return f"{sign} {fmt_metric(check['metric'], check['threshold'])}"


def _badge(verdict: str) -> str:
    color = VERDICT_COLORS.get(verdict, "#6e7781")
    return f'<span class="badge" style="background:{color}">{_e(verdict.upper())}</span>'


def _anchor(nodeid: str) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in nodeid)


def _deciding(test: Mapping[str, Any]) -> str:
    """The SLO rows that decided the verdict: the missed ones if any, else every one (compact)."""
    checks = test.get("slo") or []
    missed = [c for c in checks if not c["ok"]]
    shown = missed or checks
    parts = []
    for c in shown[:6]:
        css = "bad" if not c["ok"] else "ok"
        observed = fmt_metric(c["metric"], c["observed"])
        parts.append(
            f'<div class="{css}">{_e(c["phase"])} {_e(c["metric"])} {_e(observed)} '
            f'<span class="muted">({_e(_threshold(c))})</span></div>'
        )
    if len(shown) > 6:
        parts.append(f'<div class="muted">… {len(shown) - 6} more</div>')
    regressed = [r for r in test.get("regressions") or [] if not r.get("ok")]
    for r in regressed[:3]:
        parts.append(
            f'<div class="bad">regressed: {_e(r["metric"])} {_e(r["phase"])} '
            f"{_e(fmt_metric(r['metric'], r['observed']))} vs {_e(fmt_metric(r['metric'], r['reference']))}</div>"
        )
    if not parts and test.get("message"):
        parts.append(f'<div class="bad">{_e(str(test["message"]).splitlines()[0][:200])}</div>')
    return "".join(parts) or '<span class="muted">no SLO checks</span>'


def _recovery(test: Mapping[str, Any]) -> str:
    items = (test.get("recovery_s") or {}).items()
    return "<br>".join(f"after {_e(k)}: {'never' if v is None else f'{v:.1f} s'}" for k, v in items) or "—"


def _tests_table(tests: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for t in tests:
        fraction = t.get("score_fraction")
        share = "—" if fraction is None else f"{fraction * 100:.0f} %"
        faults = ", ".join(f["description"] for f in t.get("faults") or []) or "—"
        rows.append(
            f"<tr><td>{_badge(t['outcome'])}</td>"
            f'<td><a href="#{_anchor(t["nodeid"])}"><code>{_e(t["nodeid"])}</code></a></td>'
            f"<td>{_deciding(t)}</td><td>{_e(faults)}</td><td>{_recovery(t)}</td>"
            f'<td class="num">{share}</td></tr>'
        )
    return (
        "<table><tr><th>verdict</th><th>test</th><th>SLO rows that decided it</th><th>faults</th>"
        "<th>recovery</th><th>score</th></tr>" + "".join(rows) + "</table>"
    )


def _phase_table(phases: Mapping[str, Mapping[str, Any]]) -> str:
    if not phases:
        return ""
    head = (
        "<tr><th>phase</th><th>from</th><th>to</th><th>requests</th><th>errors</th><th>error rate</th>"
        "<th>throughput</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>late</th></tr>"
    )
    rows = []
    for name, p in phases.items():
        start = "—" if p.get("start_s") is None else f"{p['start_s']:.0f} s"
        end = "—" if p.get("end_s") is None else f"{p['end_s']:.0f} s"
        rows.append(
            f"<tr><td>{_e(name)}</td><td class=num>{start}</td><td class=num>{end}</td>"
            f"<td class=num>{p['requests']}</td><td class=num>{p['errors']}</td>"
            f"<td class=num>{fmt_metric('error_rate', p.get('error_rate'))}</td>"
            f"<td class=num>{fmt_metric('throughput', p.get('throughput_rps'))}</td>"
            + "".join(f"<td class=num>{fmt_metric(k, p.get(k))}</td>" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            + f"<td class=num>{p.get('late', 0)}</td></tr>"
        )
    return "<h3>Phases</h3><table>" + head + "".join(rows) + "</table>"


def _slo_table(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return ""
    rows = []
    for c in checks:
        verdict = '<span class="ok">met</span>' if c["ok"] else '<span class="bad">missed</span>'
        detail = c.get("window") or c.get("note") or ""
        rows.append(
            f"<tr><td>{_e(c['phase'])}</td><td>{_e(c['metric'])}</td><td class=num>{_e(_threshold(c))}</td>"
            f"<td class=num>{_e(fmt_metric(c['metric'], c['observed']))}</td><td>{verdict}</td>"
            f"<td>{_e(detail)}</td></tr>"
        )
    return (
        "<h3>SLO checks</h3><table><tr><th>phase</th><th>metric</th><th>threshold</th><th>observed</th>"
        "<th></th><th>first window that broke it</th></tr>" + "".join(rows) + "</table>"
    )


def _fault_table(faults: Sequence[Mapping[str, Any]]) -> str:
    if not faults:
        return ""
    rows = []
    for f in faults:
        seen = f.get("verified")
        verified = (
            '<span class="muted">unchecked</span>'
            if seen is None
            else ('<span class="ok">seen</span>' if seen else '<span class="bad">not seen</span>')
        )
        start = "—" if f.get("start_s") is None else f"{f['start_s']:.1f} s"
        end = "still active" if f.get("end") is None else ("—" if f.get("end_s") is None else f"{f['end_s']:.1f} s")
        rows.append(
            f"<tr><td>{_e(f['kind'])}</td><td>{_e(f['description'])}</td><td>{_e(f.get('target'))}</td>"
            f"<td class=num>{start}</td><td class=num>{end}</td><td>{verified}</td>"
            f"<td class=muted>{_e(f.get('detail'))}</td></tr>"
        )
    return (
        "<h3>Fault timeline</h3><table><tr><th>kind</th><th>fault</th><th>target</th><th>start</th><th>end</th>"
        "<th>effect</th><th>what the check saw</th></tr>" + "".join(rows) + "</table>"
    )


def _regression_table(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return ""
    rows = []
    for c in checks:
        verdict = '<span class="ok">ok</span>' if c["ok"] else '<span class="bad">regressed</span>'
        rows.append(
            f"<tr><td>{_e(c['metric'])}</td><td>{_e(c['phase'])}</td>"
            f"<td class=num>{_e(fmt_metric(c['metric'], c['reference']))}</td>"
            f"<td class=num>{_e(fmt_metric(c['metric'], c['observed']))}</td>"
            f"<td class=num>{_e(fmt_metric(c['metric'], c['allowed']))}</td><td>{verdict}</td></tr>"
        )
    run_id = checks[0].get("run_id", "?")
    return (
        f"<h3>Compared with {_e(_reference_name(str(run_id)))}</h3><table><tr><th>metric</th><th>phase</th>"
        "<th>then</th><th>now</th><th>allowed up to</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _reference_name(run_id: str) -> str:
    """``run <id>`` for one reference run; the label as it is for a median (``the median of the last 7 runs…``)."""
    return run_id if run_id.startswith(("the median", "run ")) else f"run {run_id}"


def _links(files: Mapping[str, str]) -> str:
    names = {
        "result": "result.json",
        "windows": "windows.csv",
        "timeline": "timeline.json",
        "hops_csv": "hops.csv",
        "locust_stats": "locust stats",
        "locust_history": "locust history",
        "locust_failures": "locust failures",
        "journal": "Chaos Toolkit journal",
        "soak_json": "soak.json",
    }
    links = [f'<a href="{_e(files[k])}">{label}</a>' for k, label in names.items() if k in files]
    return ('<p class="muted">data: ' + " · ".join(links) + "</p>") if links else ""


def _soak_badge(verdict: str) -> str:
    """:func:`_badge` by CSS class: an events table of hundreds of rows repeats no inline style."""
    known = verdict in ("passed", "failed", "inconclusive", "pending", "not-run")
    return f'<span class="badge v-{verdict}">{_e(verdict.upper())}</span>' if known else _badge(verdict)


def _soak_row(event: SoakEvent, started: float | None) -> str:
    """One event of the soak's table: id, at, kind, target, verdict, SLO during, time to recover, errors, reason."""
    check = slo_during(event)
    if check is None:
        during = '<span class="muted">—</span>'
    else:
        css = "ok" if check["ok"] else "bad"
        during = (
            f'<span class="{css}">{_e(check["metric"])} {_e(fmt_metric(check["metric"], check["observed"]))}</span>'
            f' <span class="muted">({_e(_threshold(check))})</span>'
        )
    if event.verdict in ("pending", "not-run"):
        ttr = '<span class="muted">—</span>'
    elif event.recovery_s is None:
        ttr = '<span class="bad">never</span>'
    else:
        ttr = f"{event.recovery_s:.1f} s"
    rate = event.error_rate
    errors = f"{event.errors}" + (f' <span class="muted">({rate * 100:.2f} %)</span>' if rate else "")
    return (
        f"<tr><td><code>{_e(event.id)}</code></td><td class=num>{clock(event.at_s(started))}</td>"
        f"<td>{_e(event.kind)}</td><td>{_e(event.target)}</td><td>{_soak_badge(event.verdict)}</td><td>{during}</td>"
        f"<td class=num>{ttr}</td><td class=num>{errors}</td><td>{_e(event.reason)}</td></tr>"
    )


_SOAK_HEAD = (
    "<tr><th>id</th><th>at</th><th>kind</th><th>target</th><th>verdict</th><th>SLO during</th>"
    "<th>recovered after</th><th>errors</th><th>reason</th></tr>"
)


def _soak_events_table(data: SoakData) -> str:
    if not data.events:
        return '<p class="muted">No fault event has started yet.</p>'
    shown, folded = table_order(list(data.events), fold_over=SOAK_FOLD_OVER)
    budget = SOAK_MAX_ROWS
    rows = [_soak_row(e, data.started) for e in shown[:budget]]
    budget -= len(rows)
    parts = ["<table>" + _SOAK_HEAD + "".join(rows) + "</table>"]
    if len(shown) > len(rows):
        parts.append(f'<p class="muted">… and {len(shown) - len(rows)} more not passed: see soak.json.</p>')
    if folded:
        kept = folded[: max(budget, 0)]
        more = len(folded) - len(kept)
        body = "<table>" + _SOAK_HEAD + "".join(_soak_row(e, data.started) for e in kept) + "</table>" if kept else ""
        tail = f'<p class="muted">… and {more} more passed: see soak.json.</p>' if more else ""
        parts.append(f"<details><summary>{len(folded)} passed events</summary>{body}{tail}</details>")
    return "".join(parts)


def _soak_guardrail(data: SoakData) -> str:
    line = guardrail_line(data)
    if line is not None:
        assert data.trip is not None
        return (
            f'<div class="banner bad"><b>Guardrail {_e(data.trip.guardrail)}</b> stopped the soak '
            f"{clock(data.into(data.trip.at))} into it ({_when(data.trip.at)}): {_e(data.trip.reason)}</div>"
        )
    names = ", ".join(str(k) for k in data.guardrail_spec if k != "min_requests")
    budget = (data.guardrail_state or {}).get("budget")
    left = ""
    if isinstance(budget, dict) and isinstance(budget.get("remaining"), int | float):
        left = f"; error budget left: {budget['remaining'] * 100:.1f} %"
    if not names:
        return '<p class="muted">No guardrail in the plan: nothing could stop the soak early.</p>'
    return f'<p class="muted">Guardrails {_e(names)}: none tripped{_e(left)}.</p>'


def _soak_section(test: Mapping[str, Any], run_dir: Path, replay: str) -> str:
    """The soak test's night: what ran, how far, what stopped it, the plot, the TTR figures and the events."""
    block = test.get("soak") or {}
    try:
        data = read_soak(run_dir / str(test.get("folder") or ""))
    except ReportDataError as exc:
        return f'<div class="banner bad">{_e(exc)}</div>'
    if data is None:
        return ""
    planned, elapsed = data.duration_s, data.elapsed_s
    share = f" ({elapsed / planned * 100:.0f} %)" if planned and elapsed is not None else ""
    state = _e(data.state) + (f" ({_e(data.stopped_by)})" if data.stopped_by else "")
    checkpoint = data.checkpoint or {}
    if data.state == "running":
        state += f' <span class="muted">(checkpoint {_e(checkpoint.get("count", "?"))}: events so far)</span>'
    counts = block.get("events") or {}
    totals = " ".join(
        f"<span>{_badge(k)} {v}</span>" for k, v in counts.items() if k != "total" and isinstance(v, int) and v
    )
    scheduled = f" of {len(data.schedule)} scheduled" if data.schedule else ""
    parts = [
        '<div class="soak">',
        f"<h3>Soak — {_e(data.title or data.plan or 'untitled plan')}</h3>",
        '<dl class="meta">',
        f"<dt>plan</dt><dd><code>{_e(data.plan or '—')}</code></dd>",
        f"<dt>seed</dt><dd>{_e(data.seed)} — replay with <code>{_e(replay)}</code></dd>",
        f"<dt>duration</dt><dd>{_duration(planned)} planned · {_duration(elapsed)} elapsed{share}</dd>",
        f"<dt>state</dt><dd>{state}</dd>",
        f"<dt>load</dt><dd>{_e(fmt_metric('throughput', data.rate))} open loop · time scale {_e(data.time_scale)}</dd>",
        "</dl>",
        _soak_guardrail(data),
        f'<div class="totals">{counts.get("total", len(data.events))} events{scheduled}: {totals}</div>',
    ]
    rel = (test.get("files") or {}).get("soak")
    if rel and (run_dir / rel).is_file():
        parts.append(
            f'<figure><img alt="soak plot of {_e(test["nodeid"])}" src="{data_uri(run_dir / rel)}">'
            f"<figcaption>{_e(PLOT_CAPTIONS['soak'])}</figcaption></figure>"
        )
    ttr = ttr_by_kind(data.events)
    if ttr:
        within = data.recovery_within_s
        rows = "".join(
            f"<tr><td>{_e(kind)}</td><td class=num>{s.n}</td><td class=num>{fmt_metric('recovery', s.median)}</td>"
            f"<td class=num>{fmt_metric('recovery', s.p90)}</td><td class=num>{fmt_metric('recovery', s.max)}</td>"
            f"<td class=num>{f'<span class=bad>{s.never}</span>' if s.never else '0'}</td></tr>"
            for kind, s in ttr.items()
        )
        parts.append(
            f"<h3>Time to recover per fault kind</h3><p class=muted>allowance: {fmt_metric('recovery', within)} "
            "after each fault ends</p><table><tr><th>kind</th><th>recovered</th><th>median</th><th>p90</th>"
            f"<th>max</th><th>never</th></tr>{rows}</table>"
        )
    parts += ["<h3>Events</h3>", _soak_events_table(data)]
    # The quiet time's checks, unless the test's own SLO table (just below) already has them.
    if data.quiet_checks and not any(c.get("phase") == "quiet" for c in test.get("slo") or []):
        parts.append(_slo_table(data.quiet_checks).replace("<h3>SLO checks</h3>", "<h3>Quiet time</h3>"))
    parts.append("</div>")
    return "\n".join(p for p in parts if p)


def _test_section(test: Mapping[str, Any], run_dir: Path, replay: str = "") -> str:
    parts = [
        f'<section class="card" id="{_anchor(test["nodeid"])}">',
        f"<h3>{_badge(test['outcome'])} <code>{_e(test['nodeid'])}</code></h3>",
    ]
    if test.get("message") and test["outcome"] != "passed":
        parts.append(f"<pre>{_e(test['message'])}</pre>")
    load = test.get("load")
    if load:
        what = f"{load['rate_rps']:g} requests/s (open loop)" if load.get("rate_rps") else f"{load.get('users')} users"
        duration = _duration(test.get("duration_s"))
        windows = load["windows"]
        parts.append(f'<p class="muted">load: {_e(what)}, {windows} one-second windows; test took {duration}</p>')
    if test.get("soak") is not None:
        parts.append(_soak_section(test, run_dir, replay))
    files = test.get("files") or {}
    for name in ("timeseries", "latency", "hops"):
        rel = files.get(name)
        if rel and (run_dir / rel).is_file():
            parts.append(
                f'<figure><img alt="{name} plot of {_e(test["nodeid"])}" src="{data_uri(run_dir / rel)}">'
                f"<figcaption>{_e(PLOT_CAPTIONS[name])}</figcaption></figure>"
            )
    parts += [
        _slo_table(test.get("slo") or []),
        # A soak's events table (above) already lists every fault, with more: not 200 rows twice.
        "" if test.get("soak") is not None else _fault_table(test.get("faults") or []),
        _regression_table(test.get("regressions") or []),
        _phase_table(test.get("phases") or {}),
    ]
    if test.get("recovery_s"):
        parts.append(f"<p><b>Recovery</b>: {_recovery(test)}</p>")
    parts.append(_links(files))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def render_index(
    summary: Mapping[str, Any], run_dir: Path, *, trend: Path | None = None, problems: Sequence[str] = ()
) -> str:
    run = summary["run"]
    score = summary["score"]["value"]
    totals = summary["totals"]
    versions = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items()) or "—"
    replay = run.get("replay") or ""
    banners = []
    if run.get("partial"):
        banners.append(f'<div class="banner bad"><b>Partial report.</b> {_e(run.get("partial_reason"))}</div>')
    for line in problems:
        banners.append(f'<div class="banner">{_e(line)}</div>')
    total_line = " ".join(f"<span>{_badge(k)} {v}</span>" for k, v in totals.items() if k != "tests" and v)
    score_text = "—" if score is None else f"{score:.1f}"
    tests = summary["tests"]
    body = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>pytest-clover — run {_e(run['run_id'])}</title><style>{CSS}</style></head><body><main>",
        f"<h1>pytest-clover — run {_e(run['run_id'])}</h1>",
        *banners,
        '<div class="card head">',
        f'<div><div class="score">{score_text}<small> / 100</small></div>',
        '<div class="muted">resilience score</div></div>',
        '<dl class="meta">',
        f"<dt>backend</dt><dd>{_e(run.get('backend'))}</dd>",
        f"<dt>topology</dt><dd><code>{_e(run.get('topology'))}</code></dd>",
        f"<dt>seed</dt><dd>{_e(run.get('seed'))} — replay with <code>{_e(replay)}</code></dd>",
        f"<dt>time scale</dt><dd>{_e(run.get('time_scale'))}</dd>",
        f"<dt>started</dt><dd>{_when(run.get('started'))} · took {_duration(run.get('duration_s'))}</dd>",
        f"<dt>versions</dt><dd>{_e(versions)}</dd>",
        "</dl></div>",
        f'<div class="totals">{len(tests)} tests: {total_line}</div>',
        _tests_table(tests),
        f'<p class="muted">Score: {_e(summary["score"]["formula"])}.</p>',
        "<h2>Tests</h2>",
        *(_test_section(t, run_dir, replay) for t in tests),
    ]
    if trend is not None and trend.is_file():
        body += [
            "<h2>Trend across runs</h2>",
            f'<figure><img alt="trend" src="{data_uri(trend)}"><figcaption>p99, error rate and recovery time per '
            "test over the recorded runs (reports/history.jsonl).</figcaption></figure>",
        ]
    body.append(
        '<p class="muted">Files: <a href="summary.json">summary.json</a> · <a href="windows.csv">windows.csv</a> · '
        '<a href="events.ndjson">events.ndjson</a></p></main></body></html>'
    )
    return "\n".join(body)
