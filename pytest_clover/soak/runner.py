"""The soak runner: one open-loop load for the whole soak, the seeded schedule's faults injected and reverted on
time, every fault event judged on its own, guardrails watched window by window, and the report checkpointed.

:class:`Soak` is what the ``soak`` fixture gives a test::

    def test_nightly(soak):
        soak.run()                                  # the plan of --clover-soak-plan, for --clover-soak's duration

How a soak unfolds:

* The load starts at the plan's rate (open loop) and runs until the soak's wall-clock duration is over. Its
  traffic is tagged in three phases, each merged over the whole soak: ``quiet`` (no fault in force and every
  ended event recovered), ``fault`` (at least one fault in force) and ``recovery`` (every fault reverted, an event
  still waiting to be judged). So ``result.phases["quiet"]`` holds the exact percentiles of every quiet second of
  the night, from one merged HdrHistogram.
* Each scheduled event starts when its offset comes: the fault is injected through the ``faults`` fixture and its
  effect verified (a fault whose effect is not seen makes the event *inconclusive*, and the test inconclusive at
  its end, as for any fault); after its duration it is reverted (a kill is reverted at once: its replacement pods
  are waited for).
* **An event is judged on its own** from the 1-s windows: its SLO over its span (``[start, end]``; for a kill,
  from the kill until the mesh recovered), from the windows' merged histograms (``LoadResult.between``); its time
  to recover (from the end of its span to the first ``recovery.windows`` consecutive windows meeting the plan's
  SLO, which must begin within ``recovery.within_s``); and the requests and errors of its span up to recovery.
* **Guardrails** see every final window as it arrives; when one trips, the soak stops at once: every fault is
  reverted, the load stopped, events not yet judged are judged on what was seen, and the test fails naming the
  guardrail, when it tripped and why.
* **Checkpoints**: every ``checkpoint_s`` of wall time the test's data (``result.json``, ``windows.csv``,
  ``timeline.json``, ``soak.json``) is written atomically, and the report is rebuilt from it in a child process
  (:mod:`pytest_clover.soak.checkpoint`, one at a time, niced), so a SIGKILL at any moment leaves the report of
  everything up to the last checkpoint, marked partial, and ``clover report <run-dir>`` can finish it from the
  saved data.
* Per-kind times to recover go into the test's recoveries (median per fault kind), so ``history.jsonl``, the trend
  plot and ``--clover-compare`` follow them across nights like any recovery time.

Memory stays bounded whatever the duration: the runner keeps the windows of the last :data:`ROWS_KEPT` seconds
(enough to judge any event), the guardrails their longest lookback, the load result one row of scalars per window.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from ..errors import CloverError, FaultInconclusive, LoadGeneratorError, SLOViolation
from ..report.layout import write_json_atomic
from ..slo import SLOCheck, evaluate, format_table
from .guardrails import Guardrails, Trip, parse_guardrails
from .schedule import ScheduledFault, SoakPlan, describe, draw_schedule, load_plan, schedule_to_json

__all__ = [
    "PHASE_FAULT",
    "PHASE_QUIET",
    "PHASE_RECOVERY",
    "SOAK_FILE",
    "EventRecord",
    "Soak",
    "SoakOutcome",
    "SoakSettings",
]

PHASE_QUIET = "quiet"
PHASE_FAULT = "fault"
PHASE_RECOVERY = "recovery"
SOAK_FILE = "soak.json"
SOAK_VERSION = 1

TICK_S = 0.25
"""Longest sleep of the runner's loop: events start within this of their offset, windows are looked at this often."""
ROWS_KEPT = 3600
"""Final windows the runner keeps (one hour of 1-s windows, ~1 MB) to judge events' recoveries."""
MESH_CHECK_S = 5.0
"""How often the runner asks the backend whether the mesh still runs (when the backend can tell)."""
CHECKPOINT_REPORT_TIMEOUT_S = 300.0
"""How long the end of a soak waits for a checkpoint's report child still running before it stops it."""


class LiveResult(Protocol):
    """What the runner reads from the load result while the load runs (``pytest_clover.load.result.LoadResult``)."""

    def add_window_listener(self, listener: Callable[[dict[str, Any]], None]) -> None: ...

    def between(self, start: float, end: float) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SoakSettings:
    """How long a soak runs and what it reads; from ``--clover-soak``, ``--clover-soak-plan``,
    ``--clover-checkpoint``, ``--clover-seed`` and ``--clover-time-scale``."""

    duration_s: float
    """Wall-clock seconds the soak runs (``--clover-soak=8h``). Never scaled: it is the night's length."""
    plan: Path
    """The soak plan file (``--clover-soak-plan``; default ``faults/schedules/nightly.yaml`` under the rootdir)."""
    seed: int = 0
    """The run's seed: the schedule is drawn from it, so ``--clover-seed`` replays a night's schedule exactly."""
    time_scale: float = 1.0
    """Multiplies the plan's times (mtbf, durations, gaps, quiet windows, guardrail lookbacks); 0.05 compresses
    an hour of plan into three minutes. Recovery allowances stay real seconds."""
    checkpoint_s: float = 300.0
    """Wall-clock seconds between checkpoints of the report (default 5 min): what a crash can lose at most."""


@dataclass
class EventRecord:
    """One scheduled fault event as the soak ran it, and its verdict."""

    scheduled: ScheduledFault
    """The event as the schedule drew it."""
    description: str = ""
    """The fault as the ``faults`` fixture named it (``delay 500ms 50% on http-lb``), once injected."""
    start: float | None = None
    """Unix time it was injected; None if it never started (the soak stopped first)."""
    end: float | None = None
    """Unix time it was reverted (for a kill: the kill itself, its span is the instant)."""
    verified: bool | None = None
    """Whether the fault's effect was seen (None: not checked yet)."""
    verdict: str = "pending"
    """``pending``, ``passed``, ``failed``, ``inconclusive`` (the fault's effect was not seen, or the soak stopped
    before the event could be judged) or ``not-run``."""
    checks: list[SLOCheck] = field(default_factory=list)
    """The event's SLO over its span (phase named by the event id)."""
    recovery_s: float | None = None
    """Seconds from the end of its span until the SLO held again for ``recovery.windows`` windows; None: not seen."""
    requests: int = 0
    """Requests sent during its span and until it recovered (or its recovery allowance ran out)."""
    errors: int = 0
    """Errors among those requests: what the event cost."""
    reason: str = ""
    """One line saying why it did not pass; empty when it passed."""
    handle: Any = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.scheduled.id

    @property
    def kind(self) -> str:
        return self.scheduled.kind

    def as_dict(self) -> dict[str, Any]:
        s = self.scheduled
        return {
            "id": s.id,
            "kind": s.kind,
            "target": s.target,
            "description": self.description or f"{s.kind} on {s.target}",
            "planned_at_s": s.at_s,
            "duration_s": s.duration_s,
            "start": self.start,
            "end": self.end,
            "verified": self.verified,
            "verdict": self.verdict,
            "checks": [c.as_dict() for c in self.checks],
            "recovery_s": self.recovery_s,
            "requests": self.requests,
            "errors": self.errors,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SoakOutcome:
    """What a soak found: every event with its verdict, the quiet time's SLO, the guardrail that stopped it."""

    plan: SoakPlan
    events: list[EventRecord]
    quiet: list[SLOCheck]
    """The plan's SLO on the ``quiet`` phase (every second with no fault in force and nothing left to recover)."""
    trip: Trip | None
    """The guardrail that stopped the soak, if one did."""
    stopped_by: str
    """Empty when the soak ran its whole duration; else ``guardrail``, ``interrupted`` or ``error: …``."""
    elapsed_s: float

    @property
    def failed(self) -> list[EventRecord]:
        return [e for e in self.events if e.verdict == "failed"]

    @property
    def inconclusive(self) -> list[EventRecord]:
        return [e for e in self.events if e.verdict == "inconclusive"]

    def problems(self) -> list[str]:
        """One line per reason the soak fails: the guardrail, each failed event, the quiet time's SLO."""
        lines = []
        if self.trip is not None:
            lines.append(f"guardrail {self.trip.guardrail} tripped: {self.trip.reason}")
        for event in self.failed:
            lines.append(f"{event.id} {event.scheduled.kind} on {event.scheduled.target}: {event.reason}")
        lines += [f"quiet time: {c.metric} {c.observed} over {c.threshold}" for c in self.quiet if not c.ok]
        return lines

    def check(self) -> None:
        """Raise :class:`~pytest_clover.errors.SLOViolation` (the test FAILS) listing every problem, if any."""
        __tracebackhide__ = True
        lines = self.problems()
        if not lines:
            return
        checks = [c for e in self.failed for c in e.checks] + list(self.quiet)
        head = f"soak of {self.elapsed_s:.0f} s failed: {len(lines)} problem{'s' if len(lines) != 1 else ''}"
        body = "\n  ".join(lines)
        table = f"\n{format_table(checks)}" if checks else ""
        raise SLOViolation(f"{head}\n  {body}{table}", checks)


class Soak:
    """The ``soak`` fixture: :meth:`run` runs one soak with the session's settings and raises if it failed."""

    def __init__(
        self,
        settings: SoakSettings,
        *,
        load: Any,
        faults: Any,
        slo_checks: list[SLOCheck],
        timeline: Any,
        report_dir: Path,
        save_result: Callable[[Any], None],
        save_timeline: Callable[[], None],
        recoveries: dict[str, float | None],
        check_mesh: Callable[[], None] | None = None,
        base_dir: Path | None = None,
        stop_run: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._load = load
        self._faults = faults
        self._slo_checks = slo_checks
        self._timeline = timeline
        self.report_dir = Path(report_dir)
        """This test's report folder (``soak.json`` goes here; its parent is the run's folder)."""
        self._save_result = save_result
        self._save_timeline = save_timeline
        self._recoveries = recoveries
        self._check_mesh = check_mesh
        self._base_dir = base_dir
        self._stop_run = stop_run
        """Stops the pytest session after this test (a guardrail with ``scope: run`` tripped)."""
        self.outcome: SoakOutcome | None = None
        """The last soak's outcome (also when :meth:`run` raised), None before one ran."""

    def plan_path(self, plan: str | os.PathLike[str] | None) -> Path:
        """The plan file: ``plan`` if given (relative to the rootdir when not found as given), else the setting."""
        if plan is None:
            return self.settings.plan
        path = Path(plan)
        if not path.is_absolute() and not path.exists() and self._base_dir is not None:
            path = self._base_dir / path
        return path

    def run(self, plan: str | os.PathLike[str] | None = None, *, check: bool = True) -> SoakOutcome:
        """Run the soak of ``plan`` (default ``--clover-soak-plan``) for the soak's duration; return its outcome,
        after raising SLOViolation if an event failed, a guardrail tripped or the quiet time broke the SLO
        (``check=False``: only return it)."""
        __tracebackhide__ = True
        path = self.plan_path(plan)
        loaded = load_plan(path)
        spec = parse_guardrails(loaded.guardrails_raw, file=loaded.source)
        s = self.settings
        schedule = draw_schedule(loaded, duration_s=s.duration_s, seed=s.seed, time_scale=s.time_scale)
        self._timeline.add(
            "note", "soak schedule", plan=str(path), seed=s.seed, events=len(schedule), schedule=describe(schedule)
        )
        engine = _Engine(
            self, loaded, schedule, Guardrails(spec, time_scale=s.time_scale), guardrails_raw=loaded.guardrails_raw
        )
        self.outcome = engine.run()
        trip = self.outcome.trip
        if trip is not None and spec.scope == "run" and self._stop_run is not None:
            self._stop_run(f"guardrail {trip.guardrail} (scope: run) tripped in a soak: {trip.reason}")
        if check:
            self.outcome.check()
        return self.outcome


class _Engine:
    """One soak's state and loop (see the module docstring); :meth:`run` is called once."""

    def __init__(
        self, soak: Soak, plan: SoakPlan, schedule: Sequence[ScheduledFault], guard: Guardrails, guardrails_raw: Any
    ) -> None:
        self.soak = soak
        self.plan = plan
        self.schedule = list(schedule)
        self.guard = guard
        self.guardrails_raw = guardrails_raw
        self.events = [EventRecord(s) for s in schedule]
        self.windows: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.rows: deque[dict[str, Any]] = deque(maxlen=ROWS_KEPT)
        self.newest_end = 0.0
        self.phase: str | None = None
        self.run_handle: Any = None
        self.live: LiveResult | None = None
        self.t0 = 0.0
        self.stopped_by = ""
        self.checkpoints = 0
        self.report_child: subprocess.Popen[bytes] | None = None
        self.wake = threading.Event()

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> SoakOutcome:
        settings = self.soak.settings
        started = time.time()
        self.run_handle = self.soak._load.start(rate=self.plan.load.rate)
        self.live = self.run_handle.live_result
        self.live.add_window_listener(self._on_window)
        quiet: list[SLOCheck] = []
        error: BaseException | None = None
        try:
            self.t0 = time.time()
            self._set_phase(PHASE_QUIET)
            self._loop(self.t0 + settings.duration_s)
        except KeyboardInterrupt:
            self.stopped_by = "interrupted"
            raise
        except BaseException as exc:
            self.stopped_by = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            error = exc
            raise
        finally:
            try:
                quiet = self._finish(error)
            finally:
                self._write_soak(final=True, quiet=quiet)
        return SoakOutcome(self.plan, self.events, quiet, self.guard.tripped, self.stopped_by, time.time() - started)

    def _loop(self, deadline: float) -> None:
        pending = deque(self.events)
        next_checkpoint = time.time() + self.soak.settings.checkpoint_s
        next_mesh_check = time.time() + MESH_CHECK_S
        while True:
            now = time.time()
            if self._drain():
                self.stopped_by = "guardrail"
                trip = self.guard.tripped
                assert trip is not None
                self.soak._timeline.add("note", f"guardrail {trip.guardrail} tripped", reason=trip.reason)
                return
            if not self.run_handle.alive:
                raise LoadGeneratorError("the load generator died during the soak; see load-worker.log")
            if self.soak._check_mesh is not None and now >= next_mesh_check:
                self.soak._check_mesh()
                next_mesh_check = now + MESH_CHECK_S
            for event in self._in_force():
                if now >= event.start + event.scheduled.duration_s:  # type: ignore[operator]
                    self._end(event)
            while pending and now >= self.t0 + pending[0].scheduled.at_s:
                event = pending.popleft()
                if now >= deadline:
                    pending.appendleft(event)
                    break
                self._start(event)
                now = time.time()
            self._judge_ready()
            self._update_phase()
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = time.time() + self.soak.settings.checkpoint_s
            if now >= deadline and not self._in_force():
                return
            upcoming = [deadline, next_checkpoint, now + TICK_S]
            if pending:
                upcoming.append(self.t0 + pending[0].scheduled.at_s)
            upcoming += [e.start + e.scheduled.duration_s for e in self._in_force()]  # type: ignore[operator]
            self.wake.wait(max(0.0, min(upcoming) - time.time()))
            self.wake.clear()

    def _on_window(self, row: dict[str, Any]) -> None:
        # In the load result's reader thread: queue it, wake the loop (the guardrails look at it there).
        self.windows.put(row)
        self.wake.set()

    def _drain(self) -> bool:
        """Feed the queued windows to the guardrails and keep them; True once a guardrail tripped."""
        while True:
            try:
                row = self.windows.get_nowait()
            except queue.Empty:
                return self.guard.tripped is not None
            self.rows.append(row)
            self.newest_end = max(self.newest_end, float(row["end"]))
            if row.get("phase") is not None and self.guard.observe(row) is not None:
                return True

    # -- events -----------------------------------------------------------------------------------------------

    def _in_force(self) -> list[EventRecord]:
        return [e for e in self.events if e.start is not None and e.end is None and e.handle is not None]

    def _start(self, event: EventRecord) -> None:
        s = event.scheduled
        self._set_phase(PHASE_FAULT)
        method = getattr(self.soak._faults, s.kind)
        event.start = time.time()
        try:
            event.handle = method(s.target, **s.params)
        except CloverError as exc:
            # The mesh refused this fault (e.g. the target is gone): the event did not happen, the soak goes on.
            event.end = event.start
            event.verdict, event.reason = "inconclusive", f"not injected: {exc}"
            return
        event.description = str(getattr(event.handle, "description", ""))
        try:
            event.handle.verify()
            event.verified = True
        except FaultInconclusive as exc:
            event.verified = False
            event.reason = f"its effect was not seen: {str(exc).splitlines()[0]}"
        if s.duration_s <= 0:
            self._end(event)

    def _end(self, event: EventRecord) -> None:
        event.end = time.time()
        if event.handle is not None:
            event.handle.revert()
        if event.scheduled.duration_s <= 0:
            event.end = event.start  # a kill's span is its instant; its recovery counts from the kill itself

    def _judge_ready(self) -> None:
        for event in self.events:
            if event.verdict == "pending" and event.end is not None:
                self._judge(event, final=False)

    def _judge(self, event: EventRecord, *, final: bool) -> None:
        """Judge an ended event once the windows after it say whether (and when) it recovered; with ``final``,
        judge it on whatever was seen (the soak stopped)."""
        assert event.start is not None and event.end is not None
        recovery = self.plan.recovery
        objectives = self.plan.slo.objectives()
        recovered_at = _recovered_at(self.rows, event.end, objectives, recovery.windows)
        limit = event.end + recovery.within_s
        waited_enough = self.newest_end >= limit + recovery.windows + 0.5
        if recovered_at is None and not (waited_enough or final):
            return
        span_end = event.end if event.scheduled.duration_s > 0 else (recovered_at or limit)
        span_end = max(span_end, event.start + 1.0)
        event.checks = self._span_checks(event, event.start, span_end)
        # What it cost: its span, and on until it recovered (or its allowance ran out).
        cost_end = max(span_end, min(recovered_at, limit) if recovered_at is not None else limit)
        cost = self.live.between(event.start, cost_end)  # type: ignore[union-attr]
        event.requests, event.errors = int(cost["requests"]), int(cost["errors"])
        if recovered_at is not None:
            event.recovery_s = round(max(0.0, recovered_at - event.end), 3)
        failed = [c for c in event.checks if not c.ok]
        if event.verified is False:
            event.verdict = "inconclusive"
        elif recovered_at is None and not waited_enough:
            event.verdict = "inconclusive"
            event.reason = event.reason or "the soak stopped before its recovery could be judged"
        elif failed:
            event.verdict = "failed"
            c = failed[0]
            event.reason = f"SLO {c.metric} over its span: observed {_num(c.observed)}, threshold {_num(c.threshold)}"
            if c.note:
                event.reason = f"SLO {c.metric}: {c.note}"
        elif event.recovery_s is None or event.recovery_s > recovery.within_s:
            event.verdict = "failed"
            event.reason = (
                f"did not recover within {recovery.within_s:g} s (SLO held for {recovery.windows} windows "
                + ("never" if event.recovery_s is None else f"only after {event.recovery_s:g} s")
                + ")"
            )
        else:
            event.verdict = "passed"
        self.soak._timeline.add(
            "note",
            f"soak event {event.id} {event.verdict}",
            id=event.id,
            recovery_s=event.recovery_s,
            errors=event.errors,
            reason=event.reason,
        )

    def _span_checks(self, event: EventRecord, start: float, end: float) -> list[SLOCheck]:
        objectives = dict(event.scheduled.slo) or self.plan.slo.objectives()
        if not objectives:
            return []
        stats = self.live.between(start, end)  # type: ignore[union-attr]
        rows = [dict(r, phase=event.id) for r in self.rows if start <= (r["start"] + r["end"]) / 2 < end]
        view = SimpleNamespace(phases={event.id: SimpleNamespace(**stats)}, window_rows=lambda: rows)
        return evaluate(view, event.id, **objectives)

    # -- phases -----------------------------------------------------------------------------------------------

    def _set_phase(self, name: str) -> None:
        if self.phase != name:
            self.run_handle.begin_phase(name)
            self.phase = name

    def _update_phase(self) -> None:
        if self._in_force():
            self._set_phase(PHASE_FAULT)
        elif any(e.verdict == "pending" and e.end is not None for e in self.events):
            self._set_phase(PHASE_RECOVERY)
        else:
            self._set_phase(PHASE_QUIET)

    # -- the end ----------------------------------------------------------------------------------------------

    def _finish(self, error: BaseException | None) -> list[SLOCheck]:
        """Revert what is in force, stop the load, judge what is left, wait for a checkpoint child; the quiet
        time's checks (none when the soak did not get that far)."""
        problems: list[BaseException] = []
        for event in self._in_force():
            try:
                self._end(event)
            except BaseException as exc:  # the fixture's teardown reverts what is left, and says so
                event.end = event.end or time.time()
                problems.append(exc)
        with contextlib.suppress(Exception):
            self.soak._faults.revert_all()
        with contextlib.suppress(LoadGeneratorError):
            if self.run_handle.alive:
                self.run_handle.end_phase()
        result: Any = None
        try:
            result = self.run_handle.stop()
        except LoadGeneratorError as exc:
            if error is None:
                problems.append(exc)
            result = getattr(exc, "result", None)
        self._drain()
        for event in self.events:
            if event.verdict == "pending":
                if event.end is not None:
                    self._judge(event, final=True)
                else:
                    event.verdict, event.reason = "not-run", self.stopped_by or "the soak ended first"
        self._record_recoveries()
        self._wait_report_child()
        quiet: list[SLOCheck] = []
        objectives = self.plan.slo.objectives()
        if result is not None and objectives and PHASE_QUIET in getattr(result, "phases", {}):
            quiet = evaluate(result, PHASE_QUIET, **objectives)
            self.soak._slo_checks.extend(quiet)
        if problems and error is None:
            raise problems[0]
        return quiet

    def _record_recoveries(self) -> None:
        """The median time to recover per fault kind, as the test's recoveries (history, trend, compare)."""
        by_kind: dict[str, list[float | None]] = {}
        for event in self.events:
            if event.verdict in ("passed", "failed") and event.end is not None:
                by_kind.setdefault(event.kind, []).append(event.recovery_s)
        for kind, values in by_kind.items():
            seen = [v for v in values if v is not None]
            # A kind with an event that never recovered has no median: None says "never", as recovery_seconds does.
            self.soak._recoveries[f"soak {kind}"] = statistics.median(seen) if len(seen) == len(values) else None

    # -- checkpoints ------------------------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Write the test's data and rebuild the report from it in a child (skipped while the last one runs)."""
        self.checkpoints += 1
        try:
            self.soak._save_result(self.live)
            self.soak._save_timeline()
            self._write_soak(final=False)
        except Exception as exc:  # a checkpoint that cannot be written must not end the night: the next one may
            self.soak._timeline.add("note", "soak checkpoint not written", error=f"{type(exc).__name__}: {exc}")
            return
        if self.report_child is not None and self.report_child.poll() is None:
            return
        run_dir = self.soak.report_dir.parent
        log = self.soak.report_dir / "checkpoint-report.log"
        with contextlib.suppress(OSError), log.open("ab") as out:
            self.report_child = subprocess.Popen(
                [sys.executable, "-m", "pytest_clover.soak.checkpoint", str(run_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for pytest must not kill it halfway through writing the report.
                start_new_session=True,
            )

    def _wait_report_child(self) -> None:
        child = self.report_child
        if child is None:
            return
        try:
            child.wait(timeout=CHECKPOINT_REPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self.report_child = None

    def _write_soak(self, *, final: bool, quiet: Sequence[SLOCheck] = ()) -> None:
        settings = self.soak.settings
        now = time.time()
        trip = self.guard.tripped
        state = "running" if not final else ("stopped" if self.stopped_by else "finished")
        data = {
            "v": SOAK_VERSION,
            "plan": self.plan.source,
            "title": self.plan.title,
            "seed": settings.seed,
            "time_scale": settings.time_scale,
            "rate": self.plan.load.rate,
            "duration_s": settings.duration_s,
            "started": self.t0 or None,
            "elapsed_s": round(now - self.t0, 3) if self.t0 else 0.0,
            "state": state,
            "stopped_by": self.stopped_by,
            "checkpoint": {
                "time": now,
                "count": self.checkpoints,
                "interval_s": settings.checkpoint_s,
                "final": final,
            },
            "slo": self.plan.slo.objectives(),
            "recovery": {"within_s": self.plan.recovery.within_s, "windows": self.plan.recovery.windows},
            "schedule": schedule_to_json(self.schedule),
            "quiet_windows": [
                {"from_s": q.from_s * settings.time_scale, "to_s": q.to_s * settings.time_scale}
                for q in self.plan.schedule.quiet
            ],
            "events": [e.as_dict() for e in self.events],
            "quiet": {"checks": [c.as_dict() for c in quiet]},
            "guardrails": {
                "spec": _jsonable(self.guardrails_raw),
                "state": self.guard.state(),
                "trip": trip.as_dict() if trip is not None else None,
                "burn_down": [list(point) for point in self.guard.burn_down()],
            },
        }
        self.soak.report_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.soak.report_dir / SOAK_FILE, _finite(data), indent=None)


def _recovered_at(
    rows: Sequence[Mapping[str, Any]], after: float, objectives: Mapping[str, float], windows: int
) -> float | None:
    """Start of the first run of consecutive windows (starting at or after ``after``) covering ``windows`` seconds
    in which every window meets every objective — the rule of ``LoadResult.recovery_seconds`` — or None."""
    later = sorted((r for r in rows if float(r["start"]) >= after - 1e-3), key=lambda r: float(r["start"]))
    needed = windows - 0.05
    run_start: float | None = None
    covered = 0.0
    for row in later:
        if not _meets(row, objectives):
            run_start, covered = None, 0.0
            continue
        if run_start is None:
            run_start = float(row["start"])
        covered += float(row["end"]) - float(row["start"])
        if covered >= needed:
            return after if run_start <= after + 1e-3 else run_start
    return None


def _meets(row: Mapping[str, Any], objectives: Mapping[str, float]) -> bool:
    if not row.get("requests"):
        return False  # a window that answered nothing has not recovered
    for metric, threshold in objectives.items():
        key = {"max_error_rate": "error_rate", "min_throughput_rps": "throughput_rps"}.get(metric, metric)
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if metric == "min_throughput_rps":
            if float(value) < threshold:
                return False
        elif float(value) > threshold:
            return False
    return True


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _finite(value: Any) -> Any:
    """NaN and infinities as None: soak.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
