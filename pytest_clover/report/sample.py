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
) -> Path:
    """A run folder with ``tests`` tests of the given phase durations; returns the folder.

    ``hops``: sampled requests per test in ``hops.csv`` (a real load run keeps up to 3 000).
    """
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
    if finished:
        run.update({"finished": start + tests * sum(seconds) + 5.0, "exitstatus": 0, "partial": False})
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
    return folder
