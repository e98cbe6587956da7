"""A load generator that sends nothing: the real one's constructor and ``start()``, phases that take no time.

The result's statistics come from a profile. Override the ``clover_load_generator`` fixture with
:class:`FakeLoadGenerator` to test a suite's flow, SLO verdicts and reports without traffic.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..errors import LoadGeneratorError
from ..load.result import Schedule
from ..timeline import Timeline

__all__ = ["FakeLoadGenerator", "FakeLoadResult", "FakeLoadRun", "FakePhaseStats"]


@dataclass
class FakePhaseStats:
    """The fields of the load generator's PhaseStats."""

    name: str
    start: float
    end: float
    requests: int = 0
    errors: int = 0
    late: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    throughput_rps: float = 0.0
    p50_ms: float | None = 10.0
    p95_ms: float | None = 20.0
    p99_ms: float | None = 30.0
    max_ms: float | None = 40.0


@dataclass
class FakeLoadResult:
    """The parts of the load generator's LoadResult the plugin reads."""

    phases: dict[str, FakePhaseStats]
    windows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    recovery: dict[str, float | None] = field(default_factory=dict)
    rate: float | None = None
    """The open loop's rate (None: closed loop, or a result made by hand): what ``schedule()`` judges against."""

    def window_rows(self) -> list[dict[str, Any]]:
        return [dict(w) for w in self.windows]

    def schedule(self) -> Schedule | None:
        """As the real result's: the phases' requests and late sends against the rate (profiles may set both)."""
        if not self.rate:
            return None
        return Schedule(
            rate=self.rate,
            seconds=sum(p.end - p.start for p in self.phases.values()),
            answered=sum(p.requests for p in self.phases.values()),
            late=sum(p.late for p in self.phases.values()),
        )

    def recovery_seconds(self, after: str, **slo: float) -> float | None:
        return self.recovery.get(after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "open",
            "phases": {k: asdict(v) for k, v in self.phases.items()},
            "windows": self.windows,
            "events": self.events,
        }


WINDOW_KEYS = ("requests", "errors", "late", "error_rate", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")


class FakeLoadRun:
    """A run whose phases take no time; statistics from the generator's profile."""

    def __init__(self, generator: FakeLoadGenerator, rate: float | None, users: int | None) -> None:
        self.generator = generator
        self.rate = rate if rate is not None else float(users or 1) * 10.0
        self.alive = True
        # A virtual clock from the real start: phases take no time, but their windows get plausible dates.
        self.clock = time.time()
        self.phases: dict[str, FakePhaseStats] = {}
        self.windows: list[dict[str, Any]] = []
        self.result = FakeLoadResult(self.phases, self.windows, rate=rate)
        """Live, like the load generator's: every phase adds its windows and statistics at once."""
        self.stopped = False
        self.interrupted: BaseException | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.alive:
            self.stop()

    def interrupt(self, error: BaseException) -> None:
        """As the load generator's: the next phase raises ``error``."""
        if self.interrupted is None:
            self.interrupted = error

    def phase(self, name: str, seconds: float) -> None:
        if self.interrupted is not None:
            raise self.interrupted
        if not self.alive:
            raise LoadGeneratorError("the load run is stopped: start another with load.start(...)")
        if self.generator.profile.get("crash") == name:
            self.alive = False
            raise LoadGeneratorError(
                f"the load generator died during phase {name!r} (exit code -9)",
                exit_code=-9,
                stderr_tail="Traceback (most recent call last):\nMemoryError",
            )
        profile = dict(self.generator.profile.get(name, {}))
        per_window = profile.pop("windows", None)
        scaled = seconds * self.generator.time_scale
        n = max(1, math.ceil(scaled))
        start, end = self.clock, self.clock + scaled
        values: dict[str, Any] = {"requests": round(self.rate * scaled), "throughput_rps": self.rate}
        values.update(profile)
        stats = FakePhaseStats(name, start, end, **values)
        if stats.requests and "error_rate" not in profile:
            stats.error_rate = stats.errors / stats.requests
        self.phases[name] = stats
        timeline = self.generator.timeline
        if timeline is not None:
            timeline.add("phase-start", name, when=time.time(), seconds=scaled)
        for i in range(n):
            row: dict[str, Any] = {"start": start + i, "end": min(start + i + 1, end), "phase": name}
            row.update({k: getattr(stats, k) for k in WINDOW_KEYS})
            row["requests"] = max(0, round(stats.requests / n))
            if per_window and i < len(per_window):
                row.update(per_window[i])
            self.windows.append(row)
        if timeline is not None:
            timeline.add("phase-end", name, when=time.time())
        self.clock = end

    def mark(self, kind: str, name: str, **data: Any) -> None:
        if self.generator.timeline is not None:
            self.generator.timeline.add(kind, name, **data)

    def stop(self) -> FakeLoadResult:
        if not self.stopped:
            self.stopped = True
            self.alive = False
            self.result.recovery = dict(self.generator.profile.get("recovery_seconds", {}))
            self.generator._write("result.json", self.result.to_dict())
        return self.result


class FakeLoadGenerator:
    """The load generator's constructor and ``start()``, sending nothing.

    ``profile`` maps a phase name to PhaseStats fields to report (``{"fault": {"p99_ms": 900.0}}``),
    optionally with ``"windows": [{...}, ...]`` overriding single one-second windows; the key
    ``"recovery_seconds"`` maps a phase to what ``recovery_seconds(after=phase)`` returns, and ``"crash": phase``
    makes that phase raise the load generator's ``LoadGeneratorError`` as a dying child would.
    """

    profile: dict[str, Any] = {}  # noqa: RUF012 - class-level default, replaced per test

    def __init__(
        self,
        base_url: str,
        report_dir: Path,
        seed: int,
        time_scale: float = 1.0,
        timeline: Timeline | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url
        self.report_dir = Path(report_dir)
        self.seed = seed
        self.time_scale = time_scale
        self.timeline = timeline
        if profile is not None:
            self.profile = dict(profile)
        self.runs: list[FakeLoadRun] = []

    def _write(self, name: str, data: Any) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / name).write_text(json.dumps(data, indent=1), encoding="utf-8")

    def start(
        self,
        rate: float | None = None,
        users: int | None = None,
        path: str | None = None,
        paths: Mapping[str, float] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FakeLoadRun:
        if (rate is None) == (users is None):
            raise ValueError("give exactly one of rate= (open loop, requests/s) and users= (closed loop)")
        self._write(
            "generator.json",
            {
                "base_url": self.base_url,
                "seed": self.seed,
                "time_scale": self.time_scale,
                "rate": rate,
                "users": users,
                "path": path,
                "paths": dict(paths or {}),
                "headers": dict(headers or {}),
            },
        )
        run = FakeLoadRun(self, rate, users)
        self.runs.append(run)
        return run
