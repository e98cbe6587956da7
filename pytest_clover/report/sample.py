"""Synthetic run folders with the exact layout the plugin writes: for the report's tests and benchmark.

``write_sample_run(folder, …)`` writes ``run.json`` and, per test, ``test.json``, ``result.json`` (windows,
phases, per-phase HdrHistograms), ``timeline.json`` and ``hops.csv``, for a baseline → fault → recovery
shape: a delay fault adds ``delay_ms`` to a share of the fault phase's requests on the
``proxy-access-control → http-lb`` hop. Seeded, so the same arguments give the same files.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PHASES = ("baseline", "fault", "recovery")
SEGMENTS = (
    "ingress → proxy-access-control",
    "proxy-access-control",
    "proxy-access-control → http-lb",
    "http-lb",
    "http-lb → clover-server",
    "clover-server",
)


def _histogram_b64(values_ms: Sequence[float], counts: Sequence[int]) -> str:
    from ..load.result import clamp_us, new_histogram, release_histogram

    hist = new_histogram()
    for value, count in zip(values_ms, counts, strict=True):
        if count:
            hist.record_value(clamp_us(value * 1000.0), count)
    encoded: str = hist.encode().decode("ascii")
    release_histogram(hist)
    return encoded


def write_sample_test(
    folder: Path,
    nodeid: str,
    *,
    start: float,
    seconds: Sequence[float] = (60.0, 30.0, 60.0),
    rate: float = 100.0,
    delay_ms: float = 500.0,
    delayed_share: float = 0.5,
    abort_share: float = 0.0,
    verdict: str = "passed",
    seed: int = 0,
    hops: int = 300,
) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    windows: list[dict[str, Any]] = []
    phases: dict[str, Any] = {}
    histograms: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    t = start
    for phase, duration in zip(PHASES, seconds, strict=True):
        events.append({"time": t, "kind": "phase-start", "name": phase, "seconds": duration})
        if phase == "fault":
            events.append(
                {
                    "time": t + 0.05,
                    "kind": "fault-start",
                    "name": f"delay {delay_ms:g}ms {delayed_share * 100:g}% on http-lb",
                    "fault": "delay",
                    "id": 1,
                    "target": "http-lb",
                }
            )
            events.append(
                {"time": t + 1.2, "kind": "fault-verified", "name": "delay on http-lb", "fault": "delay", "id": 1}
            )
        faulty = phase == "fault"
        requests_total = errors_total = 0
        n = math.ceil(duration)
        for i in range(n):
            w_end = min(t + i + 1, t + duration)
            requests = max(0, int(rng.gauss(rate * (w_end - t - i), math.sqrt(rate))))
            errors = int(requests * abort_share) if faulty else 0
            base = 3.0 + rng.random()
            p99 = base * 3 + (delay_ms if faulty and delayed_share > 0.01 else 0.0)
            p95 = base * 2 + (delay_ms if faulty and delayed_share > 0.05 else 0.0)
            p50 = base + (delay_ms if faulty and delayed_share >= 0.5 else 0.0)
            windows.append(
                {
                    "start": t + i,
                    "end": w_end,
                    "phase": phase,
                    "requests": requests,
                    "errors": errors,
                    "late": 0,
                    "error_rate": errors / requests if requests else None,
                    "throughput_rps": requests / (w_end - t - i) if w_end > t + i else None,
                    "p50_ms": p50,
                    "p95_ms": p95,
                    "p99_ms": p99,
                    "max_ms": p99 * 1.3,
                }
            )
            requests_total += requests
            errors_total += errors
        # The phase histogram: a lognormal-ish body, plus the delayed share shifted by the delay.
        values = [1.0 + 0.25 * k for k in range(60)]
        weights = [math.exp(-((k - 10) ** 2) / 40.0) for k in range(60)]
        scale = requests_total / sum(weights)
        counts = [int(w * scale) for w in weights]
        if faulty and delayed_share > 0:
            shifted = [int(c * delayed_share) for c in counts]
            counts = [c - s for c, s in zip(counts, shifted, strict=True)]
            values = values + [v + delay_ms for v in values]
            counts = counts + shifted
        histograms[phase] = _histogram_b64(values, counts)
        p = sorted(zip(values, counts, strict=True))
        total = sum(counts) or 1

        def pct(q: float, p: list[tuple[float, int]] = p, total: int = total) -> float:
            seen = 0
            for value, count in p:
                seen += count
                if seen >= q * total:
                    return value
            return p[-1][0]

        phases[phase] = {
            "name": phase,
            "start": t,
            "end": t + duration,
            "requests": requests_total,
            "errors": errors_total,
            "late": 0,
            "status_counts": {"200": requests_total - errors_total, **({"503": errors_total} if errors_total else {})},
            "error_rate": errors_total / requests_total if requests_total else None,
            "throughput_rps": requests_total / duration,
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": p[-1][0],
        }
        if phase == "fault":
            events.append(
                {"time": t + duration, "kind": "fault-end", "name": "delay on http-lb", "fault": "delay", "id": 1}
            )
        events.append({"time": t + duration, "kind": "phase-end", "name": phase})
        t += duration
    result = {
        "mode": "open",
        "rate": rate,
        "users": None,
        "seed": seed,
        "report_dir": str(folder),
        "phases": phases,
        "windows": windows,
        "events": events,
        "generator": {},
        "histograms": histograms,
    }
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    (folder / "timeline.json").write_text(json.dumps(events), encoding="utf-8")
    fault_phase = phases["fault"]
    slo = [
        {
            "phase": "baseline",
            "metric": "p99_ms",
            "threshold": 50.0,
            "observed": phases["baseline"]["p99_ms"],
            "ok": phases["baseline"]["p99_ms"] <= 50.0,
            "window": "",
            "note": "",
        },
        {
            "phase": "fault",
            "metric": "max_error_rate",
            "threshold": 0.01,
            "observed": fault_phase["error_rate"],
            "ok": (fault_phase["error_rate"] or 0.0) <= 0.01,
            "window": "",
            "note": "",
        },
    ]
    record = {
        "nodeid": nodeid,
        "folder": folder.name,
        "verdict": verdict,
        "duration_s": sum(seconds) + 3.0,
        "phases": {
            k: {"requests": v["requests"], "errors": v["errors"], "p99_ms": v["p99_ms"], "error_rate": v["error_rate"]}
            for k, v in phases.items()
        },
        "recovery": {"fault": 1.0},
        "faults": [
            {
                "description": f"delay {delay_ms:g}ms {delayed_share * 100:g}% on http-lb",
                "kind": "delay",
                "verified": True,
                "detail": "fault.delays_injected +50",
            }
        ],
        "slo": slo,
        "result_dir": "",
    }
    if verdict == "failed":
        record["message"] = "@pytest.mark.slo violated"
    (folder / "test.json").write_text(json.dumps(record), encoding="utf-8")
    _write_hops(folder / "hops.csv", rng, start, seconds, delay_ms, delayed_share, hops)


def _write_hops(
    path: Path, rng: random.Random, start: float, seconds: Sequence[float], delay_ms: float, share: float, n: int
) -> None:
    total = sum(seconds)
    fault_from, fault_to = start + seconds[0], start + seconds[0] + seconds[1]
    lines = ["request_id,time,segment,order,ms,status"]
    for k in range(n):
        when = start + rng.random() * total
        delayed = fault_from <= when < fault_to and rng.random() < share
        for order, segment in enumerate(SEGMENTS):
            ms = 0.2 + rng.random() * (1.5 if "→" in segment else 0.8)
            if delayed and segment == "proxy-access-control → http-lb":
                ms += delay_ms
            lines.append(f"req-{k},{when:.3f},{segment},{order},{ms:.3f},200")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_sample_run(
    folder: Path,
    *,
    tests: int = 3,
    seconds: Sequence[float] = (60.0, 30.0, 60.0),
    rate: float = 100.0,
    seed: int = 0,
    start: float = 1_795_270_500.0,
    finished: bool = True,
    verdicts: Sequence[str] | None = None,
    hops: int = 300,
    soak: SampleSoak | None = None,
) -> Path:
    """A run folder with ``tests`` tests of the given phase durations; returns the folder.

    ``hops``: sampled requests per test in ``hops.csv`` (a real load run keeps up to 3 000). ``soak``: also a soak
    test of that shape (:func:`write_sample_soak_test`), after the others; a ``running`` one leaves the run
    unfinished (a checkpoint is taken while the session runs), whatever ``finished`` says.
    """
    from .layout import folder_for_test

    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "run_id": folder.name,
        "started": start - 5.0,
        "backend": "local",
        "topology": "fixtures/sdc",
        "seed": seed,
        "time_scale": 1.0,
        "replay": f"pytest suites --clover-seed={seed} --clover-time-scale=1",
        "args": ["suites"],
        "compare": None,
        "versions": {"python": "3.11", "pytest-clover": "0.1.0"},
        "host": "sample",
    }
    soak_s = 0.0 if soak is None else soak.stop_s
    if finished and (soak is None or soak.state != "running"):
        run.update({"finished": start + tests * sum(seconds) + soak_s + 5.0, "exitstatus": 0, "partial": False})
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    t = start
    for i in range(tests):
        verdict = verdicts[i] if verdicts is not None and i < len(verdicts) else "passed"
        nodeid = f"suites/test_{i:02d}_sample.py::test_sample_{i}"
        write_sample_test(
            folder / f"suites_test_{i:02d}_sample.py__test_sample_{i}",
            nodeid,
            start=t,
            seconds=seconds,
            rate=rate,
            verdict=verdict,
            seed=seed + i,
            hops=hops,
        )
        t += sum(seconds)
    if soak is not None:
        write_sample_soak_test(folder / folder_for_test(soak.nodeid), start=t, spec=soak)
    return folder


# --------------------------------------------------------------------------- a soak test


@dataclass(frozen=True)
class SampleSoak:
    """The shape of a sample soak test (:func:`write_sample_soak_test`): a night of 1-s windows under a schedule of
    kills, delays and aborts, each event judged, as the soak runner leaves it in the test's folder."""

    seconds: float = 28_800.0
    """Planned length of the soak, in seconds (default 8 h)."""
    events: int = 200
    """Fault events in the schedule, spread evenly (with jitter) after the first 2 minutes."""
    rate: float = 500.0
    """Requests per second of the open-loop load (only the numbers in the windows depend on it)."""
    state: str = "finished"
    """``finished``; ``running`` (a checkpoint at ``elapsed_s``: the run is unfinished, the event then in force is
    pending, later ones are not in ``events`` yet); ``stopped`` (a guardrail tripped at ``trip_at_s``)."""
    elapsed_s: float | None = None
    """``running``: how far the checkpoint got, in seconds (default: inside the first event after half of
    ``seconds``, so one event is pending)."""
    trip_at_s: float | None = None
    """``stopped``: when the burn-rate guardrail tripped, seconds into the soak (default: 60 % of ``seconds``);
    the 10 minutes before it fail 25 % of requests, and the events after it are ``not-run``."""
    seed: int = 0
    """Seeds every draw: the same value gives the same files."""
    nodeid: str = "suites/test_soak.py::test_nightly_soak"
    """The test's node id (its folder is named from it)."""

    @property
    def stop_s(self) -> float:
        """Seconds of data the soak holds: all of it, or up to the checkpoint or the trip."""
        if self.state == "running":
            return self.elapsed_s if self.elapsed_s is not None else self.seconds / 2
        if self.state == "stopped":
            return self.trip_at_s if self.trip_at_s is not None else self.seconds * 0.6
        return self.seconds


_SOAK_KINDS: tuple[str, ...] = ("kill", "delay", "abort")
_SOAK_WEIGHTS: tuple[float, ...] = (0.45, 0.45, 0.10)
_SOAK_PARAMS: dict[str, dict[str, Any]] = {
    "kill": {"count": 1},
    "delay": {"delay": "500ms", "percent": 50},
    "abort": {"status": 503, "percent": 5},
}
_SOAK_SLO = {"p99_ms": 250.0, "max_error_rate": 0.01}
_SOAK_WITHIN_S = 30.0
_SOAK_WINDOWS = 3
_SOAK_BUDGET_TARGET = 0.995
_SOAK_FAILURES = (
    "p99 {p99:.1f} ms > 750.0 ms while the fault was in force (first broke at +{late} s)",
    "did not recover within 30 s: p99 stayed above 250 ms",
    "error rate {rate:.2%} > 1.00 % while the fault was in force",
)


def _soak_schedule(spec: SampleSoak, rng: random.Random) -> list[dict[str, Any]]:
    first, last = 120.0, spec.seconds - 90.0
    spacing = (last - first) / max(spec.events, 1)
    kinds = _SOAK_KINDS
    schedule = []
    for i in range(spec.events):
        kind = rng.choices(kinds, _SOAK_WEIGHTS)[0]
        at = round(first + i * spacing + rng.random() * spacing * 0.3, 3)
        duration = 0.0 if kind == "kill" else round(min(30.0, spacing / 3), 3)
        params = dict(_SOAK_PARAMS[kind])
        slo = {"delay": {"p99_ms": 750.0, "max_error_rate": 0.01}, "abort": {"p99_ms": 250.0, "max_error_rate": 0.07}}
        schedule.append(
            {
                "id": f"f{i + 1:0{max(2, len(str(spec.events)))}d}",
                "at_s": at,
                "duration_s": duration,
                "ends_s": round(at + duration, 3),
                "kind": kind,
                "target": "clover-server" if kind != "delay" else "http-lb",
                "params": params,
                "slo": slo.get(kind, dict(_SOAK_SLO)),
                "origin": f"schedule.faults[{kinds.index(kind)}]",
                "postponed_s": 0.0,
            }
        )
    return schedule


def write_sample_soak_test(folder: Path, *, start: float, spec: SampleSoak = SampleSoak()) -> None:
    """A soak test's folder as the soak runner leaves it: ``soak.json``, ``result.json`` (windows in phases
    ``quiet``, ``fault``, ``recovery``, their histograms), ``timeline.json`` and ``test.json`` (none while
    ``running``: the plugin writes it at the test's end). ``start``: unix time the soak's load starts."""
    rng = random.Random(spec.seed)
    folder.mkdir(parents=True, exist_ok=True)
    schedule = _soak_schedule(spec, rng)
    stop = spec.stop_s
    if spec.state == "running" and spec.elapsed_s is None:
        later = [e for e in schedule if e["at_s"] >= spec.seconds / 2] or schedule[-1:]
        if later:  # in the middle of an event (a kill: while its recovery is watched), so it is pending
            stop = min(spec.seconds, later[0]["at_s"] + max(later[0]["duration_s"] / 2, 2.0))
    n = math.ceil(stop)
    # Per second of the soak: its phase, the extra latency and the error share the events cause.
    phase = ["quiet"] * n
    extra_ms = [0.0] * n
    error_share = [0.0] * n
    events: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    trip_from = stop - 600.0 if spec.state == "stopped" else math.inf
    for planned in schedule:
        at, duration, kind = planned["at_s"], planned["duration_s"], planned["kind"]
        draw = rng.random()
        verdict = "failed" if draw < 0.06 else "inconclusive" if draw < 0.08 else "passed"
        ttr: float | None = round(rng.uniform(0.5, 4.0) if kind == "kill" else rng.uniform(0.0, 1.5), 1)
        if verdict == "failed" and kind == "kill":
            ttr = None
        recovered_at = at + duration + (ttr if ttr is not None else _SOAK_WITHIN_S) + _SOAK_WINDOWS
        entry: dict[str, Any] = {
            "id": planned["id"],
            "kind": kind,
            "target": planned["target"],
            "description": {
                "kill": "kill 1 pod of clover-server",
                "delay": "delay 500ms 50% on http-lb",
                "abort": "abort 503 5% on clover-server",
            }[kind],
            "planned_at_s": at,
            "duration_s": duration,
            "start": None,
            "end": None,
            "verified": None,
            "verdict": "not-run",
            "checks": [],
            "recovery_s": None,
            "requests": 0,
            "errors": 0,
            "reason": "",
        }
        if at >= stop:
            if spec.state == "stopped":
                entry["reason"] = "the soak stopped before it (guardrail burn_rate)"
                events.append(entry)
            continue  # running: not reached yet (it is only in the schedule)
        first, end_s = int(at), int(min(at + max(duration, 1.0), stop))
        p99_add = {"kill": 180.0, "delay": 500.0, "abort": 0.0}[kind] * (1.6 if verdict == "failed" else 1.0)
        share = {"kill": 0.005, "delay": 0.0, "abort": 0.05}[kind]
        for s in range(first, max(end_s, first + 1)):
            if s < n:
                phase[s], extra_ms[s], error_share[s] = "fault", p99_add, share
        for s in range(max(end_s, first + 1), min(n, math.ceil(recovered_at))):
            phase[s] = "recovery"
            if ttr is None or s < at + duration + ttr:
                extra_ms[s], error_share[s] = (320.0, 0.01) if ttr is None else (60.0, 0.005)
        requests = int(spec.rate * max(duration, 1.0))
        errors = int(requests * share * (1.5 if verdict == "failed" and kind == "abort" else 1.0))
        p99 = 8.0 + p99_add
        threshold = planned["slo"]
        checks = [
            {
                "phase": planned["id"],
                "metric": "p99_ms",
                "threshold": threshold["p99_ms"],
                "observed": round(p99, 1),
                "ok": p99 <= threshold["p99_ms"],
                "window": "" if p99 <= threshold["p99_ms"] else "+2–3 s",
                "note": "",
            },
            {
                "phase": planned["id"],
                "metric": "max_error_rate",
                "threshold": threshold["max_error_rate"],
                "observed": round(errors / requests, 5) if requests else None,
                "ok": errors <= requests * threshold["max_error_rate"],
                "window": "",
                "note": "",
            },
        ]
        in_force = at + duration > stop or recovered_at > stop
        entry.update(
            start=start + at + 0.05,
            end=None if at + duration > stop else start + at + duration + 0.05,
            verified=verdict != "inconclusive",
            requests=requests,
            errors=errors,
            checks=checks,
            recovery_s=ttr,
        )
        if in_force and spec.state == "running":
            entry.update(verdict="pending", recovery_s=None, verified=None)
        elif in_force:
            entry.update(verdict="failed", recovery_s=None, reason="stopped by the burn_rate guardrail while judged")
        elif verdict == "inconclusive":
            entry.update(verdict=verdict, reason="fault effect never seen: fault.delays_injected did not grow")
        elif verdict == "failed":
            failed = [c for c in checks if not c["ok"]]
            template = _SOAK_FAILURES[1] if ttr is None else _SOAK_FAILURES[0 if kind != "abort" else 2]
            entry.update(verdict=verdict, reason=template.format(p99=p99, late=2, rate=errors / max(requests, 1)))
            if not failed and ttr is not None:
                checks[0].update(ok=False, observed=threshold["p99_ms"] * 1.08, window="+2–3 s")
        else:
            entry["verdict"] = "passed"
        events.append(entry)
        fid = planned["id"]
        timeline.append(
            {"time": entry["start"], "kind": "fault-start", "name": entry["description"], "fault": kind, "id": fid}
        )
        if entry["end"] is not None:
            timeline.append({"time": entry["end"], "kind": "fault-end", "name": entry["description"], "fault": kind})
            timeline[-1]["id"] = fid

    windows, burn_down = _soak_windows(spec, rng, start, phase, extra_ms, error_share, trip_from, stop)
    for s in range(n):
        if s == 0 or phase[s] != phase[s - 1]:
            if s:
                timeline.append({"time": start + s, "kind": "phase-end", "name": phase[s - 1]})
            timeline.append({"time": start + s, "kind": "phase-start", "name": phase[s]})
    if n:
        timeline.append({"time": start + stop, "kind": "phase-end", "name": phase[-1]})
    timeline.sort(key=lambda e: float(e["time"]))
    phases, histograms = _soak_phases(windows)
    result = {
        "mode": "open",
        "rate": spec.rate,
        "users": None,
        "seed": spec.seed,
        "report_dir": str(folder),
        "phases": phases,
        "windows": windows,
        "events": timeline,
        "generator": {},
        "histograms": histograms,
    }
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    (folder / "timeline.json").write_text(json.dumps(timeline), encoding="utf-8")
    trip: dict[str, Any] | None = None
    if spec.state == "stopped":
        trip = {
            "guardrail": "burn_rate",
            "at": start + stop,
            "reason": "burn rate 50.0× over 1h and 50.0× over 5m, both above 14.4×: the error budget is burning",
            "numbers": {"long_burn": 50.0, "short_burn": 50.0, "factor": 14.4},
        }
    quiet = phases.get("quiet", {})
    quiet_checks = [
        {
            "phase": "quiet",
            "metric": metric,
            "threshold": threshold,
            "observed": quiet.get(key),
            "ok": quiet.get(key) is not None and quiet[key] <= threshold,
            "window": "",
            "note": "",
        }
        for metric, key, threshold in (("p99_ms", "p99_ms", 250.0), ("max_error_rate", "error_rate", 0.01))
    ]
    soak = {
        "v": 1,
        "plan": "faults/schedules/nightly.yaml",
        "title": "nightly SDC soak",
        "seed": spec.seed,
        "time_scale": 1.0,
        "rate": spec.rate,
        "duration_s": spec.seconds,
        "started": start,
        "elapsed_s": stop,
        "state": spec.state,
        "stopped_by": "guardrail" if spec.state == "stopped" else "",
        "checkpoint": {
            "time": start + stop,
            "count": int(stop // 300) + 1,
            "interval_s": 300.0,
            "final": spec.state != "running",
        },
        "slo": dict(_SOAK_SLO),
        "recovery": {"within_s": _SOAK_WITHIN_S, "windows": _SOAK_WINDOWS},
        "schedule": schedule,
        "quiet_windows": [{"from_s": 4 * 3600.0, "to_s": 4 * 3600.0 + 900.0}] if spec.seconds > 4.5 * 3600 else [],
        "events": events,
        "quiet": {"checks": quiet_checks},
        "guardrails": {
            "spec": {
                "error_budget": {"slo_target": _SOAK_BUDGET_TARGET},
                "burn_rate": {"rules": [{"long": "1h", "short": "5m", "factor": 14.4}]},
            },
            "state": {
                "windows": len(windows),
                "tripped": trip,
                "budget": {"slo_target": _SOAK_BUDGET_TARGET, "remaining": burn_down[-1][1] if burn_down else 1.0},
            },
            "trip": trip,
            "burn_down": burn_down,
        },
    }
    (folder / "soak.json").write_text(json.dumps(soak), encoding="utf-8")
    if spec.state != "running":
        bad = any(e["verdict"] in ("failed", "inconclusive") for e in events) or trip is not None
        record: dict[str, Any] = {
            "nodeid": spec.nodeid,
            "folder": folder.name,
            "verdict": "failed" if bad else "passed",
            "duration_s": stop + 5.0,
            "slo": quiet_checks,
            "result_dir": "",
        }
        if bad:
            record["message"] = trip["reason"] if trip is not None else "soak events failed or were inconclusive"
        (folder / "test.json").write_text(json.dumps(record), encoding="utf-8")
    else:
        (folder / "test.json").write_text(
            json.dumps({"nodeid": spec.nodeid, "folder": folder.name, "result_dir": ""}), encoding="utf-8"
        )


def _soak_windows(
    spec: SampleSoak,
    rng: random.Random,
    start: float,
    phase: Sequence[str],
    extra_ms: Sequence[float],
    error_share: Sequence[float],
    trip_from: float,
    stop: float,
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """The soak's 1-s windows, and the error-budget burn-down over them (at most 2000 points, as the runner)."""
    windows: list[dict[str, Any]] = []
    points: list[list[float]] = []
    total_requests = total_errors = 0
    stride = max(1, math.ceil(len(phase) / 1999))
    for s, name in enumerate(phase):
        w_start, w_end = start + s, start + min(s + 1.0, stop)
        requests = max(0, int(spec.rate * (w_end - w_start) + rng.gauss(0.0, math.sqrt(spec.rate))))
        share = 0.25 if s >= trip_from else error_share[s]
        errors = min(requests, int(requests * share + rng.random()))
        base = 4.0 + rng.random() * 2.0
        p99 = base * 3 + extra_ms[s]
        windows.append(
            {
                "start": w_start,
                "end": w_end,
                "phase": name,
                "requests": requests,
                "errors": errors,
                "late": 0,
                "error_rate": errors / requests if requests else None,
                "throughput_rps": requests / (w_end - w_start) if w_end > w_start else None,
                "p50_ms": base + extra_ms[s] * 0.5,
                "p95_ms": base * 2 + extra_ms[s],
                "p99_ms": p99,
                "max_ms": p99 * 1.3,
            }
        )
        total_requests += requests
        total_errors += errors
        if s % stride == 0 or s == len(phase) - 1:
            consumed = total_errors / (total_requests * (1 - _SOAK_BUDGET_TARGET)) if total_requests else 0.0
            points.append([w_end, round(1.0 - consumed, 6)])
    return windows, points


def _soak_phases(windows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Per phase (quiet, fault, recovery, merged over the night): its statistics and its histogram, from the
    windows (the percentiles from a histogram of the windows' own percentiles: a sample, not a measurement)."""
    phases: dict[str, Any] = {}
    histograms: dict[str, str] = {}
    for name in ("quiet", "fault", "recovery"):
        mine = [w for w in windows if w["phase"] == name]
        if not mine:
            continue
        requests = sum(w["requests"] for w in mine)
        errors = sum(w["errors"] for w in mine)
        latencies: dict[float, int] = {}
        for w in mine:
            # Each window's requests spread over its p50 (half), p95 (45 %) and p99 (5 %): enough for a curve.
            for value, share in ((w["p50_ms"], 0.5), (w["p95_ms"], 0.45), (w["p99_ms"], 0.05)):
                key = round(value, 1)
                latencies[key] = latencies.get(key, 0) + max(1, int(w["requests"] * share))
        values = sorted(latencies)
        counts = [latencies[v] for v in values]
        histograms[name] = _histogram_b64(values, counts)
        total = sum(counts)

        def pct(q: float, values: list[float] = values, counts: list[int] = counts, total: int = total) -> float:
            seen = 0
            for value, count in zip(values, counts, strict=True):
                seen += count
                if seen >= q * total:
                    return value
            return values[-1]

        seconds = sum(w["end"] - w["start"] for w in mine)
        phases[name] = {
            "name": name,
            "start": mine[0]["start"],
            "end": mine[-1]["end"],
            "requests": requests,
            "errors": errors,
            "late": 0,
            "status_counts": {"200": requests - errors, **({"503": errors} if errors else {})},
            "error_rate": errors / requests if requests else None,
            "throughput_rps": requests / seconds if seconds else None,
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": values[-1],
        }
    return phases, histograms
