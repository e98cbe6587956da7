"""``<report-dir>/history.jsonl``: one compact record per test per run, for trends and ``--clover-compare``.

A record (one JSON line, ``"v": 1``)::

    {"v": 1, "run_id": "20261121-141500-4242", "time": 1795270500.0, "nodeid": "suites/test_02.py::test_x",
     "outcome": "passed", "partial": false, "seed": 7, "time_scale": 1.0, "weight": 1.0, "score_fraction": 1.0,
     "p99_ms": {"baseline": 8.1, "fault": 530.2}, "error_rate": {"baseline": 0.0, "fault": 0.0},
     "throughput_rps": {"baseline": 99.8, "fault": 99.6}, "recovery_s": {"fault": 1.0}}

The file is only ever appended to, one ``write`` per run, so a reader never sees half a run; a malformed line
(a disk filled mid-write) is skipped with a warning rather than making every later run unreadable.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NoReferenceRun, ReportDataError
from .summary import finite

HISTORY_FILE = "history.jsonl"
HISTORY_VERSION = 1
P99_FLOOR_MS = 5.0
"""A p99 rise under this never counts as a regression: at a few ms, scheduler noise moves p99 by tens of %."""
RECOVERY_FLOOR_S = 1.0
"""A recovery rise under this never counts: recovery is measured in 1-s windows."""


def records_for(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history records of one summary (one per test that reached a verdict; interrupted ones are kept out)."""
    run = summary["run"]
    now = finite(run.get("finished")) or finite(run.get("started")) or time.time()
    records = []
    for test in summary["tests"]:
        if test["outcome"] in ("interrupted", "skipped"):
            continue
        phases = test.get("phases") or {}
        records.append(
            {
                "v": HISTORY_VERSION,
                "run_id": run["run_id"],
                "time": now,
                "nodeid": test["nodeid"],
                "outcome": test["outcome"],
                "partial": bool(run.get("partial")),
                "seed": run.get("seed"),
                "time_scale": run.get("time_scale"),
                "weight": test.get("weight"),
                "score_fraction": test.get("score_fraction"),
                "p99_ms": {name: p.get("p99_ms") for name, p in phases.items()},
                "error_rate": {name: p.get("error_rate") for name, p in phases.items()},
                "throughput_rps": {name: p.get("throughput_rps") for name, p in phases.items()},
                "recovery_s": dict(test.get("recovery_s") or {}),
            }
        )
    return records


def append(report_dir: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Append the records to ``<report_dir>/history.jsonl`` in one write (so a run is never half-recorded)."""
    path = Path(report_dir) / HISTORY_FILE
    if not records:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    return path


METRIC_FIELDS = ("p99_ms", "error_rate", "throughput_rps", "recovery_s")
"""A record's fields that map a phase (or, for recovery, the phase after a fault) to a number."""


def read(report_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(records in file order, warnings about lines that could not be read).

    A line that is not UTF-8, not JSON or not a version-1 record (a disk filled mid-write, a file overwritten by
    something else) is skipped with a warning naming the file and the line; no history file is no record. A file
    that exists but cannot be read at all (a folder, no permission) raises :class:`ReportDataError` naming it.
    """
    path = Path(report_dir) / HISTORY_FILE
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise ReportDataError(f"{path}: cannot read the run history: {exc.strerror or exc}") from exc
    # Split on b"\n" only, then decode line by line: one undecodable line costs that line, not the file (and
    # str.splitlines would also split inside a record at \x1c, \x85, \u2028 and other line boundaries).
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            warnings.append(f"{path}:{number}: not UTF-8 text, skipped")
            continue
        except (ValueError, RecursionError):
            warnings.append(f"{path}:{number}: not JSON, skipped")
            continue
        if not _is_record(record):
            warnings.append(f"{path}:{number}: not a version-{HISTORY_VERSION} record, skipped")
            continue
        records.append(record)
    return records, warnings


def _is_record(record: Any) -> bool:
    """A record as :func:`records_for` writes it, in the fields the readers (compare, trend) rely on."""
    return (
        isinstance(record, dict)
        and record.get("v") == HISTORY_VERSION
        and isinstance(record.get("nodeid"), str)
        and isinstance(record.get("run_id"), str)
        and all(isinstance(record.get(key) or {}, dict) for key in METRIC_FIELDS)
    )


def run_ids(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Run ids in the order they were recorded."""
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(str(r["run_id"]), None)
    return list(seen)


def reference_run(records: Sequence[Mapping[str, Any]], compare: str, current_run_id: str) -> str:
    """The run id ``compare`` (``last`` or a run id) designates; raises :class:`NoReferenceRun` if none."""
    ids = [r for r in run_ids(records) if r != current_run_id]
    if compare == "last":
        if not ids:
            raise NoReferenceRun(
                "--clover-compare=last: the history holds no earlier run; run once without --clover-compare first"
            )
        return ids[-1]
    if compare not in ids:
        known = ", ".join(ids[-5:]) or "none"
        raise NoReferenceRun(f"--clover-compare={compare}: no such run in the history (latest: {known})")
    return compare


def reference_records(records: Sequence[Mapping[str, Any]], run_id: str) -> dict[str, dict[str, Any]]:
    """nodeid → that run's record."""
    return {str(r["nodeid"]): dict(r) for r in records if r["run_id"] == run_id}


@dataclass(frozen=True)
class Thresholds:
    p99_percent: float = 25.0
    error_rate_points: float = 1.0
    recovery_percent: float = 50.0


def compare(current: Mapping[str, Any], reference: Mapping[str, Any], thresholds: Thresholds) -> list[dict[str, Any]]:
    """One check per comparable metric: p99 and error rate per phase both runs have, recovery per ``after``.

    ``current`` has the record's shape (``p99_ms``, ``error_rate``, ``recovery_s`` dicts). Each check is
    ``{metric, phase, reference, observed, allowed, ok, run_id}``; ``allowed`` is the largest value that is
    not a regression.
    """
    checks: list[dict[str, Any]] = []
    ref_id = reference.get("run_id")
    for phase, ref in (reference.get("p99_ms") or {}).items():
        ref_value = finite(ref)
        now = finite((current.get("p99_ms") or {}).get(phase))
        if ref_value is None or now is None:
            continue
        allowed = max(ref_value * (1 + thresholds.p99_percent / 100), ref_value + P99_FLOOR_MS)
        checks.append(_check("p99_ms", phase, ref_value, now, allowed, ref_id))
    for phase, ref in (reference.get("error_rate") or {}).items():
        ref_value = finite(ref)
        now = finite((current.get("error_rate") or {}).get(phase))
        if ref_value is None or now is None:
            continue
        allowed = ref_value + thresholds.error_rate_points / 100
        checks.append(_check("error_rate", phase, ref_value, now, allowed, ref_id))
    current_recovery = current.get("recovery_s") or {}
    for after, ref in (reference.get("recovery_s") or {}).items():
        if after not in current_recovery:
            continue
        ref_value = finite(ref)
        now = finite(current_recovery[after])
        if ref_value is None:
            continue  # never recovered before: anything now is no regression
        if now is None:
            checks.append(_check("recovery_s", after, ref_value, None, ref_value, ref_id, never=True))
            continue
        allowed = max(ref_value * (1 + thresholds.recovery_percent / 100), ref_value + RECOVERY_FLOOR_S)
        checks.append(_check("recovery_s", after, ref_value, now, allowed, ref_id))
    return checks


def _check(
    metric: str, phase: str, ref: float, now: float | None, allowed: float, run_id: Any, *, never: bool = False
) -> dict[str, Any]:
    return {
        "metric": metric,
        "phase": phase,
        "reference": ref,
        "observed": now,
        "allowed": allowed,
        "ok": (not never) and now is not None and now <= allowed + 1e-12,
        "run_id": run_id,
    }


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "never"
    if metric == "error_rate":
        return f"{value * 100:.2f} %"
    if metric == "recovery_s":
        return f"{value:.1f} s"
    return f"{value:.1f} ms"


def regression_message(checks: Sequence[Mapping[str, Any]], run_id: str) -> str:
    """A table of the regressed checks: metric, phase, the reference run's value, this run's, the limit."""
    bad = [c for c in checks if not c["ok"]]
    rows = [("metric", "phase", f"run {run_id}", "this run", "allowed up to")]
    for c in bad:
        label = {"p99_ms": "p99", "error_rate": "error rate", "recovery_s": "recovery after"}[c["metric"]]
        rows.append(
            (
                label,
                c["phase"],
                _fmt(c["metric"], c["reference"]),
                _fmt(c["metric"], c["observed"]),
                _fmt(c["metric"], c["allowed"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    noun = "metric" if len(bad) == 1 else "metrics"
    return f"regressed against run {run_id} ({len(bad)} {noun}; --clover-compare):\n{table}"
