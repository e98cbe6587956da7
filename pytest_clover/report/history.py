"""``<report-dir>/history.jsonl``: one compact record per test per run, for trends and ``--clover-compare``.

A record (one JSON line, ``"v": 1``)::

    {"v": 1, "run_id": "20261121-141500-4242", "time": 1795270500.0, "nodeid": "suites/test_02.py::test_x",
     "outcome": "passed", "partial": false, "seed": 7, "time_scale": 1.0, "weight": 1.0, "score_fraction": 1.0,
     "p99_ms": {"baseline": 8.1, "fault": 530.2}, "error_rate": {"baseline": 0.0, "fault": 0.0},
     "throughput_rps": {"baseline": 99.8, "fault": 99.6}, "recovery_s": {"fault": 1.0}}

The file is only ever appended to, one ``write`` per run, so a reader never sees half a run; a malformed line
(a disk filled mid-write) is skipped with a warning rather than making every later run unreadable.

Readers:

* ``--clover-compare`` (:func:`references`, :func:`compare`, :func:`regression_message`): each test against one
  earlier run (``last``, a run id) or against the median of its last N complete runs (``last:N``, for nightly
  soaks, where one noisy night should neither hide nor fake a regression);
* the trend across runs (:func:`trend_data`, drawn by :func:`pytest_clover.report.plots.trend`): the run's
  resilience score (:func:`run_score`, the report's formula over the recorded fractions and weights), and per test
  p99 and error rate per phase and time to recover per key.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NoReferenceRun, ReportDataError
from .summary import finite, weighted_score

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


LAST = "last"
"""``--clover-compare=last``: the previous run."""
MEDIAN_PREFIX = "last:"
"""``--clover-compare=last:N``: per test, the median of its last N complete runs."""


def median_count(compare: str) -> int | None:
    """N of ``last:N`` (N ≥ 2), None for ``last`` or a run id.

    Raises :class:`ValueError` saying what to write for a ``last:…`` that is not one: ``last:x``, ``last:0``,
    ``last:1`` (the previous run alone is ``last``).
    """
    if not compare.startswith(MEDIAN_PREFIX):
        return None
    text = compare.removeprefix(MEDIAN_PREFIX).strip()
    try:
        count = int(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a number of runs; give last:N with N ≥ 2 (e.g. last:7, the median of the last 7 runs)"
        ) from None
    if count == 1:
        raise ValueError("last:1 is the previous run alone: write `last` (or last:N with N ≥ 2 for a median)")
    if count < 1:
        raise ValueError(f"last:{count} names no run; give last:N with N ≥ 2 (e.g. last:7) or `last`")
    return count


def reference_run(records: Sequence[Mapping[str, Any]], compare: str, current_run_id: str) -> str:
    """The run id ``compare`` (``last`` or a run id) designates; raises :class:`NoReferenceRun` if none.

    For ``last:N`` (see :func:`references`): the latest earlier complete run, the newest of those a median is
    taken over.
    """
    count = median_count(compare)
    if count is not None:
        complete = _complete_runs(records, current_run_id)
        if not complete:
            raise NoReferenceRun(_no_complete_run(records, compare, current_run_id))
        return complete[-1]
    ids = [r for r in run_ids(records) if r != current_run_id]
    if compare == LAST:
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


def references(
    records: Sequence[Mapping[str, Any]], compare: str, current_run_id: str
) -> tuple[str, dict[str, dict[str, Any]]]:
    """(what the run is compared with, nodeid → the record-shaped reference each test is compared with).

    ``last`` or a run id: that run's records (:func:`reference_run`, :func:`reference_records`). ``last:N``: per
    test, :func:`median_references`. Raises :class:`NoReferenceRun` when the history holds no such run (for
    ``last:N``: no earlier complete run at all); a test that no reference run ran is simply not in the mapping.
    """
    count = median_count(compare)
    if count is None:
        run_id = reference_run(records, compare, current_run_id)
        return run_id, reference_records(records, run_id)
    reference_run(records, compare, current_run_id)  # raises when there is no earlier complete run
    return f"the median of the last {count} runs", median_references(records, count, current_run_id)


def median_references(
    records: Sequence[Mapping[str, Any]], count: int, current_run_id: str
) -> dict[str, dict[str, Any]]:
    """nodeid → the median of the test's last ``count`` complete runs, shaped like a record.

    Per test, the runs are the last ``count`` runs that recorded it (in the order the history recorded them),
    leaving out the current run and partial runs (a crashed or interrupted night measured only part of the test);
    with fewer such runs, all there are. Per phase (p99, error rate) the median is over the runs that measured
    that phase; per recovery key, over the runs that have the key, a recovery that never happened (``None``)
    counting as +infinity, so a median that is ``None`` means more than half of those runs never recovered.

    Each reference also carries ``run_id`` (a label naming the median and its runs, which :func:`compare` puts
    in every check and :func:`regression_message` in its header), ``runs`` (the run ids, oldest first) and
    ``asked`` (``count``).
    """
    by_test: dict[str, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        run_id = str(record["run_id"])
        if run_id == current_run_id or record.get("partial"):
            continue
        # A run that recorded the test twice (the same report recorded again) counts once, with its last record.
        by_test.setdefault(str(record["nodeid"]), {})[run_id] = record
    out: dict[str, dict[str, Any]] = {}
    for nodeid, by_run in by_test.items():
        runs = list(by_run)[-count:]
        chosen = [by_run[run_id] for run_id in runs]
        reference: dict[str, Any] = {
            "run_id": median_label(runs, count),
            "nodeid": nodeid,
            "runs": runs,
            "asked": count,
        }
        for key in ("p99_ms", "error_rate", "throughput_rps"):
            reference[key] = {}
            for phase in dict.fromkeys(p for r in chosen for p in (r.get(key) or {})):
                values = [v for r in chosen if (v := finite((r.get(key) or {}).get(phase))) is not None]
                if values:
                    reference[key][phase] = statistics.median(values)
        reference["recovery_s"] = {}
        for after in dict.fromkeys(p for r in chosen for p in (r.get("recovery_s") or {})):
            times = [_recovery_time(r["recovery_s"][after]) for r in chosen if after in (r.get("recovery_s") or {})]
            seen = [t for t in times if t is not None]
            if seen:
                median = median_with_never(seen)
                reference["recovery_s"][after] = None if math.isinf(median) else median
        out[nodeid] = reference
    return out


def _recovery_time(value: Any) -> float | None:
    """A recorded recovery as a number: None (it never recovered) is +infinity; anything not a number is None."""
    if value is None:
        return math.inf
    return finite(value)


def median_with_never(values: Sequence[float]) -> float:
    """The median of ``values`` where +infinity (a recovery that never happened) may be among them.

    Infinite only when more than half the values are: with an even count whose two middle values are a time and
    "never" (exactly half never recovered), the median is the time, where the usual mean of the two would be
    infinite and claim a majority that is not there.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    low, high = ordered[n // 2 - 1], ordered[n // 2]
    if math.isinf(high):
        return low
    return (low + high) / 2


def median_label(runs: Sequence[str], asked: int) -> str:
    """How a regression message names a median reference: which runs, and how many of the ``asked`` there were."""
    if len(runs) == 1:
        return f"run {runs[0]}, the only earlier complete run of this test (of the last {asked} asked for)"
    listed = ", ".join(runs) if len(runs) <= 3 else f"{runs[0]}, {runs[1]}, …, {runs[-1]}"
    if len(runs) < asked:
        return f"the median of the {len(runs)} earlier complete runs of this test ({listed}; {asked} asked for)"
    return f"the median of the last {asked} runs ({listed})"


def _complete_runs(records: Iterable[Mapping[str, Any]], current_run_id: str) -> list[str]:
    """Run ids, in recorded order, of the earlier runs that were not partial."""
    return run_ids(r for r in records if r["run_id"] != current_run_id and not r.get("partial"))


def _no_complete_run(records: Sequence[Mapping[str, Any]], compare: str, current_run_id: str) -> str:
    partial = [r for r in run_ids(records) if r != current_run_id]
    why = f" ({len(partial)} partial run(s) are left out of a median)" if partial else ""
    return f"--clover-compare={compare}: the history holds no earlier complete run{why}"


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the reference a metric may get before it is a regression (``--clover-regression-*``)."""

    p99_percent: float = 25.0
    """Percent a phase's p99 may grow (default 25); a rise under :data:`P99_FLOOR_MS` never counts."""
    error_rate_points: float = 1.0
    """Percentage points a phase's error rate may grow (default 1)."""
    recovery_percent: float = 50.0
    """Percent a recovery time may grow (default 50); a rise under :data:`RECOVERY_FLOOR_S` never counts."""


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


def regression_message(checks: Sequence[Mapping[str, Any]], reference: str | Mapping[str, Any]) -> str:
    """A table of the regressed checks: metric, phase, the reference's value, this run's, the limit.

    ``reference`` is the reference run's id, or the reference record :func:`references` gave for the test: a run's
    record names that run, a median (``last:N``) names itself and its runs (its ``run_id`` label), e.g.
    "regressed against the median of the last 7 runs (20261201-020000-811, 20261202-020000-809, …,
    20261207-020000-812) (1 metric; --clover-compare)".
    """
    if isinstance(reference, str):
        against, column = f"run {reference}", f"run {reference}"
    else:
        runs = [str(r) for r in reference.get("runs") or []]
        label = str(reference.get("run_id"))
        if len(runs) > 1:
            against, column = label, f"median of {len(runs)} runs"
        elif runs:
            against, column = label, f"run {runs[0]}"
        else:
            against, column = f"run {label}", f"run {label}"
    bad = [c for c in checks if not c["ok"]]
    rows = [("metric", "phase", column, "this run", "allowed up to")]
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
    return f"regressed against {against} ({len(bad)} {noun}; --clover-compare):\n{table}"


# --------------------------------------------------------------------------- the trend across runs

FAILED_OUTCOMES = frozenset({"failed", "error", "errored"})
"""Outcomes the trend marks as a failed run of the test."""
TREND_FIELDS = ("p99_ms", "error_rate", "recovery_s")
"""The record fields the trend draws, one panel each: p99 and error rate per phase, recovery time per key."""


def run_score(records: Iterable[Mapping[str, Any]]) -> float | None:
    """One run's resilience score (0–100, one decimal) from its history records; None when no test counted.

    The report's formula (:data:`pytest_clover.report.summary.SCORE_FORMULA`, computed there by
    ``resilience_score``) over what each record kept of it: 100 × Σ(weight × score_fraction) / Σ(weight). A record
    without a fraction is left out as the report leaves out skipped and interrupted tests; a missing weight is 1,
    the default of ``@pytest.mark.resilience``. A test recorded twice in the run counts once, with its last record.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        latest[str(record.get("nodeid"))] = record
    score, _ = weighted_score((r.get("weight"), finite(r.get("score_fraction"))) for r in latest.values())
    return score


@dataclass(frozen=True)
class TrendData:
    """What the trend plot draws, shaped from history records by :func:`trend_data` (no plotting library needed)."""

    runs: list[str]
    """Run ids on the x axis, oldest first: the last ``last`` runs by the time they were recorded."""
    times: list[float | None]
    """Unix time each run was recorded (its earliest record's ``time``); None when no record had one."""
    scores: list[float | None]
    """Each run's resilience score in % (:func:`run_score` over all its records); None when no test counted."""
    partial: list[bool]
    """Whether each run was partial (interrupted, crashed, stopped early): its numbers cover part of the run."""
    tests: list[str]
    """Test node ids, in the order the window's records first name them."""
    series: dict[str, dict[str, dict[str, list[float]]]]
    """nodeid → field (``p99_ms``, ``error_rate``, ``recovery_s``) → phase or recovery key → one value per run.

    Units as recorded (ms, a fraction, s). NaN where the run did not record the test or that phase or key; for
    recovery, +infinity where the test never recovered (recorded ``None``).
    """
    failed: dict[str, list[int]]
    """nodeid → indices into :attr:`runs` of the runs where the test failed or errored."""

    @property
    def keys(self) -> list[str]:
        """Every phase and recovery key drawn, in first-seen order (the plot gives each one colour)."""
        return list(
            dict.fromkeys(k for per_test in self.series.values() for per_field in per_test.values() for k in per_field)
        )


def trend_data(records: Sequence[Mapping[str, Any]], *, last: int = 30) -> TrendData:
    """The last ``last`` runs of the history (by recorded time, then file order), shaped for the trend plot."""
    first_time: dict[str, float] = {}
    order: dict[str, int] = {}
    for i, record in enumerate(records):
        run_id = str(record.get("run_id"))
        order.setdefault(run_id, i)
        when = finite(record.get("time"))
        if when is not None:
            first_time[run_id] = min(first_time.get(run_id, when), when)
    runs = sorted(order, key=lambda r: (first_time.get(r, math.inf), order[r]))[-max(1, last) :] if order else []
    index = {run_id: i for i, run_id in enumerate(runs)}
    by_run: dict[str, list[Mapping[str, Any]]] = {run_id: [] for run_id in runs}
    for record in records:
        run_id = str(record.get("run_id"))
        if run_id in index:
            by_run[run_id].append(record)
    # Tests in first-seen order over the window, not per run: a test that joined later stays below the older ones.
    tests = list(dict.fromkeys(str(r.get("nodeid")) for r in records if str(r.get("run_id")) in index))
    series: dict[str, dict[str, dict[str, list[float]]]] = {t: {f: {} for f in TREND_FIELDS} for t in tests}
    failed: dict[str, list[int]] = {t: [] for t in tests}
    for run_id in runs:
        x = index[run_id]
        latest = {str(r.get("nodeid")): r for r in by_run[run_id]}
        for nodeid, record in latest.items():
            if str(record.get("outcome")) in FAILED_OUTCOMES:
                failed[nodeid].append(x)
            for field_name in TREND_FIELDS:
                for key, value in (record.get(field_name) or {}).items():
                    values = series[nodeid][field_name].setdefault(str(key), [math.nan] * len(runs))
                    number = _recovery_time(value) if field_name == "recovery_s" else finite(value)
                    values[x] = math.nan if number is None else number
    return TrendData(
        runs=runs,
        times=[first_time.get(run_id) for run_id in runs],
        scores=[run_score(by_run[run_id]) for run_id in runs],
        partial=[any(bool(r.get("partial")) for r in by_run[run_id]) for run_id in runs],
        tests=tests,
        series=series,
        failed=failed,
    )
