"""A run's saved data → ``summary.json`` (versioned schema) and the resilience score.

Everything here reads what the plugin left on disk, never live objects, so ``clover report <run-dir>``
rebuilds the same summary a finished session wrote, and a run killed midway is summarised from what it
completed. The files read, per run folder ``<report-dir>/<run-id>/``:

* ``run.json`` — the session: settings, versions, start, and (once it ended) end, exit status, partial;
* ``<test>/test.json`` — one per test that used pytest-clover: verdict, SLO checks, faults, recoveries;
* ``<test>/result.json`` (or ``<test>/run-N/result.json``) — the load result: phases, 1-s windows, the
  phases' HdrHistograms; ``<test>/timeline.json`` — phase and fault events;
* ``<test>/soak.json`` — a soak test's night: its events, each with its verdict, and its guardrails (read by
  :mod:`.soak`; the test's ``soak`` block).

The schema is documented field by field in ``docs/reports.md`` and checked by
``pytest_clover/report/summary.schema.json``.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReportDataError
from .soak import SoakData, read_soak, soak_summary

SCHEMA = "pytest-clover/summary"
SCHEMA_VERSION = 1
"""Bumped on any incompatible change of ``summary.json``; readers check it (``history.jsonl`` has its own)."""

SCORED_VERDICTS = ("passed", "failed", "error", "inconclusive")
"""Verdicts that count in the resilience score; skipped and interrupted tests are left out of it."""

VERDICT_ORDER = {"failed": 0, "error": 1, "inconclusive": 2, "interrupted": 3, "passed": 4, "skipped": 5}
"""The report lists tests worst first: what broke is what a reader looks for."""

SCORE_FORMULA = (
    "score = 100 × Σ(weight × fraction) / Σ(weight) over tests that reached a verdict; fraction = checks met / "
    "checks made (SLO objectives and regression checks, plus one missed check for a test that failed on an "
    "assertion of its own); a passed test without checks counts 1; an error or inconclusive test counts 0; "
    "skipped and interrupted tests are left out"
)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportDataError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise ReportDataError(f"{path}: not readable JSON ({exc})") from exc


def finite(value: Any) -> float | None:
    """``value`` as a float, or None for None, NaN, infinity and anything not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class SavedTest:
    """What one test left in its folder."""

    folder: Path
    record: dict[str, Any]
    """``test.json`` as written by the plugin."""
    result: dict[str, Any] | None = None
    """``result.json`` of the test's last load run, None if it ran no load."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """``timeline.json``: phase and fault events, in time order."""
    released: tuple[int, float | None] | None = None
    """Set by :meth:`release_windows`: (how many windows ``result["windows"]`` held, the first one's start)."""
    soak: SoakData | None = None
    """``soak.json`` of a soak test (its events, guardrails, burn-down); None for any other test."""

    @property
    def nodeid(self) -> str:
        return str(self.record.get("nodeid", self.folder.name))

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict", "interrupted"))

    @property
    def window_count(self) -> int:
        """How many 1-s windows the load result holds (also after :meth:`release_windows`)."""
        if self.released is not None:
            return self.released[0]
        return len((self.result or {}).get("windows") or [])

    @property
    def first_window_start(self) -> float | None:
        """Unix time the first window started (also after :meth:`release_windows`); None without windows."""
        if self.released is not None:
            return self.released[1]
        windows = (self.result or {}).get("windows") or []
        return finite(windows[0].get("start")) if windows else None

    def release_windows(self) -> None:
        """Drop ``result["windows"]``, keeping what the summary reads of them (how many, the first start).

        The windows are most of a long run's memory (an 8-h test: 28 800 of them, ~25 MB as Python objects);
        ``build_report`` releases each test's once its plots and its ``windows.csv`` rows are under way, so a run of
        many long tests is built holding one test's windows at a time.
        """
        if self.result is None or self.released is not None:
            return
        self.released = (self.window_count, self.first_window_start)
        self.result.pop("windows", None)

    @property
    def result_folder(self) -> Path | None:
        if self.result is None:
            return None
        relative = self.record.get("result_dir") or ""
        return (self.folder / relative) if relative else self.folder


@dataclass
class RunData:
    folder: Path
    run: dict[str, Any]
    tests: list[SavedTest]
    dropped_events: int = 0
    """Lines of ``events.ndjson`` that were not events (torn, garbled) and were left out: the report is partial."""


# --------------------------------------------------------------------------- the shape of what was read
#
# The files are the plugin's, but a report is rebuilt from whatever a folder holds (a copy, an edit, a disk that
# filled up): a value of the wrong type is a ReportDataError naming the file and the field, never a traceback
# from deep inside the summary. Numbers are read leniently where they are used (finite(), _whole()).


_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _expect(path: Path, data: Mapping[str, Any], key: str, kind: type, *, of_objects: bool = False) -> None:
    """``data[key]``, when present and not null, is a ``kind`` (a list or object of objects, if ``of_objects``)."""
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, kind):
        raise ReportDataError(f"{path}: {key} must be {_KINDS[kind]}, found {_kind(value)}")
    if of_objects:
        container: Any = value  # a dict or a list: checked above
        values: Iterable[Any] = container.values() if isinstance(container, dict) else container
        bad = [v for v in values if not isinstance(v, dict)]
        if bad:
            raise ReportDataError(f"{path}: {key} must be {_KINDS[kind]} of objects, found {_kind(bad[0])} in it")


def _checked_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """``test.json`` in the shape the summary reads."""
    for key in ("nodeid", "folder", "verdict", "result_dir"):
        _expect(path, record, key, str)
    for key in ("slo", "faults", "regressions"):
        _expect(path, record, key, list, of_objects=True)
    _expect(path, record, "phases", dict, of_objects=True)
    _expect(path, record, "recovery", dict)
    _expect(path, record, "files", dict)
    relative = record.get("result_dir") or ""
    if relative and (Path(relative).is_absolute() or ".." in Path(relative).parts):
        raise ReportDataError(f"{path}: result_dir {relative!r} must be a folder inside the test's folder")
    return record


def _checked_result(path: Path, result: Any) -> dict[str, Any]:
    """``result.json`` in the shape the summary and the plots read."""
    if not isinstance(result, dict):
        raise ReportDataError(f"{path}: expected a JSON object, found {_kind(result)}")
    _expect(path, result, "phases", dict, of_objects=True)
    _expect(path, result, "windows", list, of_objects=True)
    _expect(path, result, "events", list)
    _expect(path, result, "histograms", dict)
    for values in (result.get("phases") or {}).values():
        _expect(path, values, "status_counts", dict)
    return result


def _events(raw: Any) -> list[dict[str, Any]]:
    """The events of a timeline: objects with a finite time (anything else is no event)."""
    if not isinstance(raw, list):
        return []
    return [e for e in raw if isinstance(e, dict) and finite(e.get("time")) is not None]


def _integer(value: Any) -> int | None:
    """``value`` if it is an integer (not a boolean), else None: what summary.json holds for a seed or a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _whole(value: Any) -> int:
    """A count: ``value`` as an int, 0 for anything not a finite number."""
    number = finite(value)
    return int(number) if number is not None else 0


def _run_number(path: Path) -> int:
    tail = path.parent.name.split("-")[-1]
    return int(tail) if tail.isdigit() else 0


def _result_path(folder: Path, record: Mapping[str, Any]) -> Path | None:
    relative = record.get("result_dir") or ""
    candidates = [folder / relative / "result.json"] if relative else []
    # Without a recorded folder (a run killed before the record was written): the last run-N, else the test's own.
    runs = sorted(folder.glob("run-*/result.json"), key=_run_number)
    candidates += [*reversed(runs), folder / "result.json"]
    return next((p for p in candidates if p.is_file()), None)


def load_saved_test(folder: Path, streamed: Mapping[str, list[dict[str, Any]]] | None = None) -> SavedTest:
    """One test's folder. ``streamed``: the run's ``events.ndjson`` by test folder; its events complete the
    test's saved timeline (a test killed before saving it, a fault reverted only at the session's end)."""
    record_path = folder / "test.json"
    record: dict[str, Any] = read_json(record_path) if record_path.is_file() else {"verdict": "interrupted"}
    if not isinstance(record, dict):
        raise ReportDataError(f"{record_path}: expected a JSON object, found {type(record).__name__}")
    _checked_record(record_path, record)
    record.setdefault("folder", folder.name)
    result = None
    path = _result_path(folder, record)
    if path is not None:
        result = _checked_result(path, read_json(path))
        if path.parent != folder and not record.get("result_dir"):
            record["result_dir"] = path.parent.relative_to(folder).as_posix()
    events: list[dict[str, Any]] = []
    timeline = folder / "timeline.json"
    if timeline.is_file():
        events = _events(read_json(timeline))
    elif result is not None:
        events = _events(result.get("events"))
    if streamed and streamed.get(folder.name):
        # events.ndjson also has what happened after the timeline was saved: the revert of a fault that an
        # interrupted teardown left to the session's end, or everything, for a test killed before saving.
        seen = {_event_key(e) for e in events}
        events += [e for e in streamed[folder.name] if _event_key(e) not in seen]
    events.sort(key=lambda e: float(e["time"]))
    if not record.get("nodeid") and events and events[0].get("test"):
        record["nodeid"] = str(events[0]["test"])
    return SavedTest(folder=folder, record=record, result=result, events=events, soak=read_soak(folder))


def _event_key(event: Mapping[str, Any]) -> tuple[str, str, float]:
    return str(event.get("kind")), str(event.get("name")), round(float(event["time"]), 6)


def streamed_events(folder: Path) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """``events.ndjson`` grouped by test folder name, and how many lines were not events and were skipped (a torn
    last line from a kill mid-write, a garbled one): the caller says so, since the report then lacks them."""
    from .layout import folder_for_test

    grouped: dict[str, list[dict[str, Any]]] = {}
    dropped = 0
    path = folder / "events.ndjson"
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return grouped, 0
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            event = None
        if isinstance(event, dict) and event.get("test") and finite(event.get("time")) is not None:
            grouped.setdefault(folder_for_test(str(event["test"])), []).append(event)
        else:
            dropped += 1
    return grouped, dropped


def load_run(folder: Path, *, on_test: Callable[[SavedTest], None] | None = None) -> RunData:
    """Read a run folder (``<report-dir>/<run-id>``); raises :class:`ReportDataError` naming a bad file.

    ``on_test`` is called with each test as soon as it is read, before the next one is (``build_report`` starts
    the test's plots and writes its windows there, then releases them: see :meth:`SavedTest.release_windows`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such run folder"
        raise ReportDataError(f"{folder}: {what}; give a run folder, <report-dir>/<run-id>, e.g. reports/latest")
    run_path = folder / "run.json"
    if not run_path.is_file():
        raise ReportDataError(f"{run_path}: missing — is {folder} a pytest-clover run folder (reports/<run-id>)?")
    run = read_json(run_path)
    if not isinstance(run, dict):
        raise ReportDataError(f"{run_path}: expected a JSON object")
    tests = []
    # Read even for a finished run: an interrupted test may never have written its timeline.
    streamed, dropped = streamed_events(folder)
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (
            (child / "test.json").is_file()
            or (child / "result.json").is_file()
            or (child / "timeline.json").is_file()
            or (child / "soak.json").is_file()
            or child.name in streamed
        ):
            test = load_saved_test(child, streamed)
            if on_test is not None:
                on_test(test)
            tests.append(test)
    return RunData(folder=folder, run=run, tests=tests, dropped_events=dropped)


# --------------------------------------------------------------------------- the pieces of a test


def phase_table(test: SavedTest) -> dict[str, dict[str, Any]]:
    """Per phase: start/end (s since load start), requests, errors, late, error_rate, throughput, percentiles."""
    if test.result is not None:
        t0 = load_start(test)
        table = {}
        for name, p in (test.result.get("phases") or {}).items():
            table[name] = {
                "start_s": _offset(p.get("start"), t0),
                "end_s": _offset(p.get("end"), t0),
                "requests": _whole(p.get("requests")),
                "errors": _whole(p.get("errors")),
                "late": _whole(p.get("late")),
                "error_rate": finite(p.get("error_rate")),
                "throughput_rps": finite(p.get("throughput_rps")),
                "p50_ms": finite(p.get("p50_ms")),
                "p95_ms": finite(p.get("p95_ms")),
                "p99_ms": finite(p.get("p99_ms")),
                "max_ms": finite(p.get("max_ms")),
                "status_counts": {str(k): _whole(v) for k, v in (p.get("status_counts") or {}).items()},
            }
        return table
    # No result.json (interrupted before the load stopped): what the verdict hook saw, if anything.
    return {
        name: {
            "start_s": None,
            "end_s": None,
            "requests": _whole(p.get("requests")),
            "errors": _whole(p.get("errors")),
            "late": 0,
            "error_rate": finite(p.get("error_rate")),
            "throughput_rps": None,
            "p50_ms": None,
            "p95_ms": None,
            "p99_ms": finite(p.get("p99_ms")),
            "max_ms": None,
            "status_counts": {},
        }
        for name, p in (test.record.get("phases") or {}).items()
    }


def load_start(test: SavedTest) -> float | None:
    """Unix time the plots and offsets count from: the first window, else the first event."""
    first = test.first_window_start
    if first is not None:
        return first
    if test.events:
        return float(test.events[0]["time"])
    return None


def _offset(value: Any, t0: float | None) -> float | None:
    number = finite(value)
    if number is None or t0 is None:
        return None
    return round(number - t0, 3)


def fault_intervals(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A timeline's fault events as intervals, in start order: the one reading the summary and the plots share.

    Each ``fault-start`` opens an interval (a repeated fault opens another); a ``fault-end`` closes the open
    one with the same ``id`` (else name). An end with nothing open is a fault that began before the data
    (``start`` None) — except a ``clear`` (Chaos Toolkit's clear_faults), which ends whatever is open on its
    target. A new traffic shift ends the shift in force on the same service. ``end`` None: still open.
    """
    out: list[dict[str, Any]] = []
    open_by_key: dict[Any, dict[str, Any]] = {}
    last_by_key: dict[Any, dict[str, Any]] = {}
    ordered = sorted((e for e in events if finite(e.get("time")) is not None), key=lambda e: float(e["time"]))
    for event in ordered:
        kind = str(event.get("kind", ""))
        if not kind.startswith("fault-"):
            continue
        t = float(event["time"])
        key = event.get("id") if event.get("id") is not None else event.get("name")
        if not isinstance(key, str | int | float | bool | None):
            key = json.dumps(key, sort_keys=True, default=str)  # an id that is a list or an object: still one key
        target = str(event.get("target") or "")
        if kind == "fault-start":
            if event.get("fault") == "shift" and target:
                for other_key, other in list(open_by_key.items()):
                    if other["kind"] == "shift" and other["target"] == target:
                        other["end"] = t
                        del open_by_key[other_key]
            entry = _interval(event, start=t, end=None)
            out.append(entry)
            open_by_key[key] = last_by_key[key] = entry
        elif kind == "fault-end":
            opened = open_by_key.pop(key, None)
            if opened is not None:
                opened["end"] = t
            elif event.get("fault") == "clear":
                for other_key, other in list(open_by_key.items()):
                    if not target or other["target"] in ("", target):
                        other["end"] = t
                        del open_by_key[other_key]
            else:
                entry = _interval(event, start=None, end=t)
                out.append(entry)
                last_by_key[key] = entry
        elif kind in ("fault-verified", "fault-inconclusive") and key in last_by_key:
            last_by_key[key]["verified"] = kind == "fault-verified"
            last_by_key[key]["detail"] = str(event.get("detail") or "")
    return sorted(out, key=lambda e: (e["start"] is None, e["start"] or 0.0))


def _interval(event: Mapping[str, Any], *, start: float | None, end: float | None) -> dict[str, Any]:
    return {
        "id": event.get("id") if isinstance(event.get("id"), str) else _integer(event.get("id")),
        "kind": str(event.get("fault") or "fault"),
        "description": str(event.get("name", "")),
        "target": str(event.get("target") or ""),
        "start": start,
        "end": end,
        "verified": None,
        "detail": "",
    }


def fault_events(test: SavedTest) -> list[dict[str, Any]]:
    """Faults as intervals: kind, description, target, start/end (unix s and s since load start), verified."""
    t0 = load_start(test)
    faults = fault_intervals(test.events)
    # The test's own account (verified after the body, the final detail) wins over the timeline's.
    for recorded in test.record.get("faults") or []:
        for entry in faults:
            if entry["description"] == recorded.get("description") and recorded.get("verified") is not None:
                entry["verified"] = recorded["verified"]
                entry["detail"] = recorded.get("detail") or entry["detail"]
    for entry in faults:
        entry["start_s"] = _offset(entry["start"], t0)
        entry["end_s"] = _offset(entry["end"], t0)
    return faults


def slo_checks(test: SavedTest) -> list[dict[str, Any]]:
    return [
        {
            "phase": str(c.get("phase", "")),
            "metric": str(c.get("metric", "")),
            "threshold": finite(c.get("threshold")),
            "observed": finite(c.get("observed")),
            "ok": bool(c.get("ok")),
            "window": str(c.get("window") or ""),
            "note": str(c.get("note") or ""),
        }
        for c in test.record.get("slo") or []
    ]


def regressions(test: SavedTest) -> list[dict[str, Any]]:
    return [
        {
            "metric": str(r.get("metric", "")),
            "phase": str(r.get("phase", "")),
            "reference": finite(r.get("reference")),
            "observed": finite(r.get("observed")),
            "allowed": finite(r.get("allowed")),
            "ok": bool(r.get("ok")),
            "run_id": _text(r.get("run_id")),
        }
        for r in test.record.get("regressions") or []
    ]


def score_fraction(test: SavedTest) -> float | None:
    """The test's share of the score (0–1), None when it is left out (skipped, interrupted)."""
    verdict = test.verdict
    if verdict not in SCORED_VERDICTS:
        return None
    if verdict in ("error", "inconclusive"):
        return 0.0
    checks = [bool(c["ok"]) for c in slo_checks(test)] + [bool(r.get("ok")) for r in regressions(test)]
    if verdict == "failed" and all(checks):
        # It failed on something else (an assertion of its own): that is one more check not met.
        checks.append(False)
    if checks:
        return float(sum(checks)) / len(checks)
    return 1.0


def resilience_score(tests: Iterable[SavedTest]) -> tuple[float | None, int]:
    """(score 0–100 or None if no test counts, number of tests counted); see :data:`SCORE_FORMULA`."""
    return weighted_score((test.record.get("weight"), score_fraction(test)) for test in tests)


def weighted_score(tests: Iterable[tuple[Any, float | None]]) -> tuple[float | None, int]:
    """:data:`SCORE_FORMULA` over (weight, score fraction) pairs: 100 × Σ(weight × fraction) / Σ(weight), one
    decimal, and how many pairs counted. A pair without a fraction (skipped, interrupted) is left out; a missing
    weight is 1, the default of ``@pytest.mark.resilience``. None when nothing counted or the weights sum to 0 (or
    overflow: an edited file). The report and the history's trend both score with this."""
    total_weight = 0.0
    total = 0.0
    counted = 0
    for raw_weight, fraction in tests:
        if fraction is None:
            continue
        weight = finite(raw_weight)
        weight = 1.0 if weight is None else weight
        total_weight += weight
        total += weight * fraction
        counted += 1
    if counted == 0 or total_weight <= 0:
        return None, counted
    return finite(round(100.0 * total / total_weight, 1)), counted


# --------------------------------------------------------------------------- the summary


def summarise_test(test: SavedTest) -> dict[str, Any]:
    record = test.record
    summary = {
        "nodeid": test.nodeid,
        "folder": test.folder.name,
        "outcome": test.verdict,
        "message": str(record.get("message") or ""),
        "duration_s": finite(record.get("duration_s")),
        "weight": 1.0 if finite(record.get("weight")) is None else finite(record.get("weight")),
        "score_fraction": score_fraction(test),
        "load": _load_info(test),
        "phases": phase_table(test),
        "slo": slo_checks(test),
        "faults": fault_events(test),
        "recovery_s": {str(k): finite(v) for k, v in (record.get("recovery") or {}).items()},
        "regressions": regressions(test),
        "files": {str(k): str(v) for k, v in (record.get("files") or {}).items()},
    }
    if test.soak is not None:
        summary["soak"] = soak_summary(test.soak)  # only soak tests have the block (optional in the schema)
    return summary


def _load_info(test: SavedTest) -> dict[str, Any] | None:
    if test.result is None:
        return None
    r = test.result
    return {
        "mode": _text(r.get("mode")),
        "rate_rps": finite(r.get("rate")),
        "users": _integer(r.get("users")),
        "seed": _integer(r.get("seed")),
        "windows": test.window_count,
        "result_dir": test.record.get("result_dir") or "",
    }


def is_partial(run: Mapping[str, Any], tests: Iterable[SavedTest], dropped_events: int = 0) -> tuple[bool, str]:
    reasons = []
    if not run.get("finished"):
        reasons.append("the run did not finish (killed, or still running): this report holds the tests it completed")
    elif run.get("partial"):
        reasons.append(str(run.get("partial_reason") or "the run was interrupted"))
    else:
        interrupted = [t.nodeid for t in tests if t.verdict == "interrupted"]
        if interrupted:
            reasons.append(f"{len(interrupted)} test(s) interrupted: {', '.join(interrupted[:3])}")
    if dropped_events:
        reasons.append(dropped_events_problem(dropped_events))
    return bool(reasons), "; ".join(reasons)


def dropped_events_problem(dropped: int) -> str:
    """What the report says about lines of ``events.ndjson`` it could not read."""
    noun = "line" if dropped == 1 else "lines"
    return f"events.ndjson: {dropped} {noun} not readable as events were left out (phases and faults may be missing)"


def build_summary(data: RunData) -> dict[str, Any]:
    """The ``summary.json`` document for a run (see ``docs/reports.md``)."""
    run = data.run
    ordered = sorted(data.tests, key=lambda t: (VERDICT_ORDER.get(t.verdict, 9), t.nodeid))
    score, counted = resilience_score(ordered)
    partial, reason = is_partial(run, ordered, data.dropped_events)
    totals: dict[str, int] = {"tests": len(ordered)}
    for verdict in VERDICT_ORDER:
        totals[verdict] = sum(1 for t in ordered if t.verdict == verdict)
    started = finite(run.get("started"))
    finished = finite(run.get("finished"))
    versions = run.get("versions")
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "run": {
            "run_id": str(run.get("run_id") or data.folder.name),
            "started": started,
            "finished": finished,
            "duration_s": round(finished - started, 3) if started is not None and finished is not None else None,
            "partial": partial,
            "partial_reason": reason,
            # As summary.schema.json has them: a value of another type (run.json edited or damaged) is left out.
            "exitstatus": _integer(run.get("exitstatus")),
            "backend": _text(run.get("backend")),
            "topology": _text(run.get("topology")),
            "seed": _integer(run.get("seed")),
            "time_scale": finite(run.get("time_scale")),
            "replay": _text(run.get("replay")) or "",
            "compare": _text(run.get("compare")),
            "versions": {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
            "host": _text(run.get("host")) or platform.node(),
        },
        "score": {"value": score, "tests_scored": counted, "formula": SCORE_FORMULA},
        "totals": totals,
        "tests": [summarise_test(t) for t in ordered],
    }
