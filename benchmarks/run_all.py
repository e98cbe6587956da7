"""Run every benchmark, each in its own process, and print a summary table.

``python benchmarks/run_all.py [NAME ...]`` (``tox -e bench``): runs ``benchmarks/bench_*.py`` one after
another (or only those whose name contains one of the NAMEs), passes their output through, then prints
figure / target / ratio / PASS-or-MISS per benchmark. Benchmarks inform, they don't gate: the exit code is
0 even when a figure misses its target, and 1 only when a benchmark crashed (non-zero exit or no result).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_PREFIX = "BENCH-RESULT "  # as in benchmarks/_common.py (not imported: keep this runner standalone)
ORDER = [
    "bench_startup",
    "bench_down",
    "bench_fault_latency",
    "bench_kill_replace",
    "bench_hop_latency",
    "bench_throughput",
    "bench_load_ceiling",
    "bench_open_loop_profile",
    "bench_send_timing",
    "bench_load_workers",
    "bench_report",
    "bench_kube_api",
    "bench_k8s_backend",
]
TIMEOUT_S = 900.0
EXPLICIT_ONLY = {"bench_soak"}
"""Run only when named: the soak benchmark lasts as long as its soak (an hour by default)."""


def run(script: Path) -> tuple[dict[str, Any] | None, int, float]:
    """Run one benchmark, echoing its output; (its result, exit code, seconds)."""
    print(f"=== {script.stem}", flush=True)
    start = time.monotonic()
    result: dict[str, Any] | None = None
    with subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        # A hung benchmark gets SIGTERM (its `finally` tears the mesh down), then SIGKILL 30 s later.
        timers = [
            threading.Timer(TIMEOUT_S, proc.terminate),
            threading.Timer(TIMEOUT_S + 30.0, proc.kill),
        ]
        for timer in timers:
            timer.start()
        try:
            for line in proc.stdout:
                if line.startswith(RESULT_PREFIX):
                    result = json.loads(line[len(RESULT_PREFIX) :])
                else:
                    print(line, end="", flush=True)
            code = proc.wait()
        finally:
            for timer in timers:
                timer.cancel()
    return result, code, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    wanted = sys.argv[1:] if argv is None else argv
    found = {p.stem: p for p in HERE.glob("bench_*.py")}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    if not wanted:
        names = [n for n in names if n not in EXPLICIT_ONLY]
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
        if not names:
            print(f"no benchmark matches {wanted}; have {sorted(found)}", file=sys.stderr)
            return 2
    rows: list[tuple[str, str, str, str, str]] = []
    crashed = False
    for name in names:
        result, code, seconds = run(found[name])
        if code != 0 or result is None:
            crashed = True
            why = f"exit code {code}" if code != 0 else "no result line"
            rows.append((name, "—", "—", "—", f"CRASH ({why})"))
            print(f"=== {name}: CRASHED ({why}) after {seconds:.0f} s", flush=True)
            continue
        unit = result["unit"]
        ratio = float(result["ratio"])
        rows.append(
            (
                str(result["name"]),
                f"{result['figure']:.3g} {unit}",
                f"≤ {result['target']:g} {unit}",
                f"{ratio:.2f}",
                "PASS" if ratio <= 1.0 else "MISS",
            )
        )
        print(f"=== {name}: done in {seconds:.0f} s", flush=True)

    header = ("benchmark", "figure", "target", "ratio", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("(ratio = figure / target; ≤ 1 meets the target. Benchmarks inform, they don't gate.)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
