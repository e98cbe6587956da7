"""What a run leaves for people and CI: the terminal summary, the timeline section, JUnit properties,
pytest-html extras, and the run's report (built once, on the controller, at session end).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..report.layout import write_json_atomic

if TYPE_CHECKING:
    from ..timeline import Timeline
    from .session import CloverSession, RunProgress

__all__ = [
    "finish_report",
    "format_summary",
    "html_extras",
    "junit_properties",
    "summary_rows",
    "timeline_text",
    "write_timeline",
]


def _ms(value: Any) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.0f}"


def summary_rows(rows: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = [("test", "verdict", "p99 ms by phase", "errors", "recovery")]
    for nodeid, row in rows.items():
        phases = row.get("phases") or {}
        p99 = "  ".join(f"{name} {_ms(p.get('p99_ms'))}" for name, p in phases.items()) or "—"
        requests = sum(int(p.get("requests") or 0) for p in phases.values())
        errors = sum(int(p.get("errors") or 0) for p in phases.values())
        rate = f"{errors / requests * 100:.2f} %" if requests else "—"
        recovery = (
            "  ".join(
                f"after {after} {'never' if value is None else f'{float(value):.1f} s'}"
                for after, value in (row.get("recovery") or {}).items()
            )
            or "—"
        )
        table.append((nodeid, str(row.get("verdict", "?")), p99, rate, recovery))
    return table


def format_summary(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    table = summary_rows(rows)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def timeline_text(timeline: Timeline) -> str:
    events = timeline.events()
    if not events:
        return ""
    t0 = events[0].time
    lines = []
    for e in events:
        extra = {k: v for k, v in e.data.items() if k not in ("id",)}
        tail = f"  {extra}" if extra else ""
        lines.append(f"{e.time - t0:8.3f} s  {e.kind:<18} {e.name}{tail}")
    return "\n".join(lines)


def write_timeline(timeline: Timeline, folder: Path) -> None:
    events = timeline.events()
    if not events:
        return
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "timeline.json").write_text(
            json.dumps([e.as_dict() for e in events], indent=1, default=str), encoding="utf-8"
        )


def junit_properties(config: pytest.Config, nodeid: str, row: Mapping[str, Any]) -> None:
    """SLO observations as ``<testsuite>`` properties of ``--junitxml`` (xunit2-valid, unlike per-testcase ones)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without junitxml
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for check in row.get("slo") or []:
        xml.add_global_property(
            f"clover:{nodeid}:slo:{check['phase']}:{check['metric']}",
            f"observed={_num(check.get('observed'))} threshold={_num(check.get('threshold'))} "
            f"ok={str(bool(check.get('ok'))).lower()}",
        )
    for after, seconds in (row.get("recovery") or {}).items():
        xml.add_global_property(f"clover:{nodeid}:recovery_s:{after}", "never" if seconds is None else _num(seconds))
    for check in row.get("regressions") or []:
        xml.add_global_property(
            f"clover:{nodeid}:regression:{check['phase']}:{check['metric']}",
            f"reference={_num(check.get('reference'))} observed={_num(check.get('observed'))} "
            f"allowed={_num(check.get('allowed'))} ok={str(bool(check.get('ok'))).lower()}",
        )


def _num(value: Any) -> str:
    if value is None:
        return "none"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if not math.isfinite(number) else f"{number:.6g}"


def html_extras(state: CloverSession, nodeid: str) -> list[Any]:
    """pytest-html extras: the test's plots as inline PNGs (rendered now, at the test's teardown)."""
    import base64

    import pytest_html  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from ..report.build import render_test_plots

    folder = state.test_report_dir(nodeid)
    if not (folder / "result.json").is_file() and not any(folder.glob("run-*/result.json")):
        return []
    files, problems = render_test_plots(folder, nodeid)
    state.report_problems.extend(problems)
    extras = []
    for name, relative in files.items():
        data = base64.b64encode((folder / relative).read_bytes()).decode("ascii")
        extras.append(pytest_html.extras.png(data, name=f"clover {name}"))
    return extras


def finish_report(
    session: pytest.Session, state: CloverSession, exitstatus: int | pytest.ExitCode, progress: RunProgress
) -> None:
    """Session end on the controller: finish ``run.json``, build the report, append the history, point ``latest``."""
    from ..report import history
    from ..report.build import build_report, point_latest, write_index

    settings = state.settings
    run_dir = settings.run_report_dir
    status = int(exitstatus)
    reasons = []
    if progress.terminated:
        reasons.append("the run was stopped by SIGTERM (a cancelled or timed-out job?)")
    elif status == int(pytest.ExitCode.INTERRUPTED):
        reasons.append("the run was interrupted (Ctrl-C or a signal)")
    if session.shouldfail or session.shouldstop:
        reasons.append(f"the run stopped early: {session.shouldfail or session.shouldstop}")
    if progress.collected is not None and len(progress.finished) < progress.collected:
        reasons.append(f"{len(progress.finished)} of {progress.collected} collected tests completed")
    info = {
        **state.run_info(),
        "finished": time.time(),
        "exitstatus": status,
        "partial": bool(reasons),
        "partial_reason": "; ".join(reasons),
        "collected": progress.collected,
    }
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "run.json", info)
        built = build_report(run_dir, report_dir=settings.report_dir)
    except Exception as exc:  # the tests' verdicts stand; the report says what it could not do
        state.report_problems.append(f"the report could not be built: {type(exc).__name__}: {exc}")
        return
    state.report = built
    try:
        history.append(settings.report_dir, history.records_for(built.summary))
        write_index(built, settings.report_dir)  # again: the trend now includes this run
    except OSError as exc:
        state.report_problems.append(f"history not appended: {exc}")
    state.report_problems.extend(built.problems)
    point_latest(settings.report_dir, run_dir)
    score = built.summary["score"]["value"]
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover
        return
    xml = session.config.stash.get(xml_key, None)
    if xml is not None:
        xml.add_global_property("clover:resilience_score", "none" if score is None else f"{score:.1f}")
        xml.add_global_property("clover:report", str(built.index))
        xml.add_global_property("clover:partial", str(built.summary["run"]["partial"]).lower())
