"""Chaos Toolkit experiment files collected as pytest tests.

**The rule.** A ``.yaml``, ``.yml`` or ``.json`` file in a folder named ``faults`` (at any depth below the
rootdir) is an experiment when its top level is a mapping with a ``method`` or a ``steady-state-hypothesis``
key; it must then also have a ``title`` and pass Chaos Toolkit's validation, or collection fails naming the
file and what is wrong. Other files there (Istio manifests the ``faults`` fixture applies, notes) are not
collected.

**A run.** Each experiment runs with chaoslib in a subprocess (:mod:`pytest_clover.chaos.runner`: chaoslib
keeps module globals and signal handlers, so never two experiments in one process, and never in pytest's)
against the session's mesh, with load running (``--clover-experiment-rate``) unless the experiment starts
its own. Rollbacks always run, even when the method failed. Afterwards pytest-clover checks the mesh itself:
faults the rollbacks left in force are reverted and scaled Deployments put back, and the test says so.

**Verdicts.** The steady state not met before the method, or deviated after it: FAILED, naming each probe,
its tolerance and the value it observed. An action that failed, a rollback that failed, an interrupted run:
ERROR (the experiment could not judge the system). The journal is saved as ``journal.json`` in the test's
report folder (linked from ``index.html``); the load's measurements and the per-hop breakdown are there as
for any other test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..backends.protocol import Backend
from ..errors import CloverError, ExperimentError, ExperimentFailed

SUFFIXES = (".yaml", ".yml", ".json")
FOLDER = "faults"
EXPERIMENT_MARKER = "clover_experiment: a Chaos Toolkit experiment file collected by pytest-clover"
RUN_TIMEOUT_S = 1800.0
"""An experiment that has not finished after this long is interrupted (its rollbacks still run)."""
INTERRUPT_GRACE_S = 60.0
"""After SIGTERM (chaoslib then plays the rollbacks), how long before SIGKILL."""


def is_candidate(path: Path, rootpath: Path) -> bool:
    if path.suffix.lower() not in SUFFIXES:
        return False
    try:
        parts = path.relative_to(rootpath).parts
    except ValueError:
        parts = path.parts
    return FOLDER in parts[:-1]


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise pytest.Collector.CollectError(f"{path}: not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise pytest.Collector.CollectError(f"{path}: not valid YAML: {exc}") from None


def looks_like_experiment(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" not in doc and ("method" in doc or "steady-state-hypothesis" in doc)


def _problems(doc: Mapping[str, Any]) -> list[str]:
    """What pytest-clover needs beyond Chaos Toolkit's validation, in words a user acts on."""
    problems = []
    if not isinstance(doc.get("title"), str) or not doc["title"].strip():
        problems.append("`title` is missing: give the experiment a title (it names the test)")
    if "description" not in doc:
        problems.append("`description` is missing: Chaos Toolkit requires one")
    if not isinstance(doc.get("method", []), list):
        problems.append("`method` must be a list of activities (it may be empty)")
    hypothesis = doc.get("steady-state-hypothesis")
    if hypothesis is not None:
        probes = hypothesis.get("probes") if isinstance(hypothesis, dict) else None
        if not isinstance(probes, list):
            problems.append("`steady-state-hypothesis.probes` must be a list of probes")
        else:
            for i, probe in enumerate(probes):
                if isinstance(probe, dict) and "tolerance" not in probe:
                    problems.append(
                        f"`steady-state-hypothesis.probes[{i}]` ({probe.get('name', '?')}) has no `tolerance`"
                    )
    for section in ("method", "rollbacks"):
        for i, activity in enumerate(doc.get(section) or []):
            if not isinstance(activity, dict):
                problems.append(f"`{section}[{i}]` must be a mapping (type, name, provider)")
                continue
            if "ref" in activity:
                continue
            for key in ("type", "name", "provider"):
                if key not in activity:
                    problems.append(f"`{section}[{i}]` ({activity.get('name', '?')}) has no `{key}`")
    return problems


def validate(path: Path, doc: Mapping[str, Any]) -> None:
    """Raise CollectError naming the file and every problem found (ours, then Chaos Toolkit's)."""
    problems = _problems(doc)
    if not problems:
        import copy

        from chaoslib.exceptions import ChaosException  # type: ignore[import-untyped,unused-ignore]
        from chaoslib.experiment import ensure_experiment_is_valid  # type: ignore[import-untyped,unused-ignore]

        try:
            ensure_experiment_is_valid(copy.deepcopy(dict(doc)))
        except ChaosException as exc:
            problems.append(str(exc).strip())
    if problems:
        raise pytest.Collector.CollectError(
            f"{path}: not a valid Chaos Toolkit experiment:\n  " + "\n  ".join(problems)
        )


class ExperimentFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        doc = _parse(self.path)
        if not looks_like_experiment(doc):
            return
        validate(self.path, doc)
        item = ExperimentItem.from_parent(self, name=str(doc["title"]).strip(), callobj=run_experiment_test)
        item.add_marker(pytest.mark.clover_experiment)
        yield item


class ExperimentItem(pytest.Function):
    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"experiment: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ExperimentFailed | ExperimentError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


# --------------------------------------------------------------------------- running one


def run_experiment_test(request: pytest.FixtureRequest, clover_settings: Any, clover_timeline: Any) -> None:
    """The body of every experiment test (fixtures by name, as for any pytest function)."""
    __tracebackhide__ = True
    from .session import clover_session

    item = request.node
    state = clover_session(request.config)
    folder = state.test_report_dir(item.nodeid)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("journal.json", "chaos-events.ndjson", "chaos-runner.log"):
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    dry = bool(clover_settings.dry_run)
    configuration: dict[str, Any] = {"clover_report_dir": str(folder)}
    mesh = None
    cursor = None
    replicas: dict[str, int] = {}
    if not dry:
        mesh = request.getfixturevalue("mesh")
        record = mesh.record
        configuration["clover_backend"] = record.backend
        configuration["clover_location"] = record.location
        replicas = mesh.backend.desired_replicas()
        with contextlib.suppress(Exception):  # the breakdown is a report extra
            from ..report.hops import AccessLogCursor

            cursor = AccessLogCursor(mesh.backend)
    journal_path = folder / "journal.json"
    events_path = folder / "chaos-events.ndjson"
    command = [
        sys.executable,
        "-m",
        "pytest_clover.chaos.runner",
        str(item.path),
        "--journal",
        str(journal_path),
        "--configuration",
        json.dumps(configuration),
        "--events",
        str(events_path),
    ]
    if dry:
        command.append("--dry")
    elif clover_settings.experiment_rate > 0:
        command += ["--load-rate", f"{clover_settings.experiment_rate:g}"]
    log_path = folder / "chaos-runner.log"
    cleanup: list[str] = []
    try:
        code = _run(command, log_path)
    finally:
        if mesh is not None:
            cleanup = _safety_net(mesh.backend, replicas)
            if cursor is not None:
                with contextlib.suppress(Exception):
                    from ..report.hops import record_hops

                    record_hops(cursor, mesh.backend, folder / "hops.csv")
        _replay_events(folder, clover_timeline)
    if code == 2:
        pytest.fail(f"{item.path}: {_tail(log_path)}", pytrace=False)
    if not journal_path.is_file():
        raise ExperimentError(
            f"the experiment runner exited ({_exit_text(code)}) without a journal; its log ({log_path}):\n"
            + _tail(log_path)
        )
    journal = json.loads(journal_path.read_text(encoding="utf-8"))
    verdict = judge(journal, dry=dry, cleanup=cleanup)
    verdict.data["phases"] = _phases(folder)
    item.clover_experiment = verdict.data
    item.add_report_section("call", "chaos experiment", verdict.text)
    if cleanup and verdict.failure is None:
        import warnings

        from ..errors import CloverWarning

        warnings.warn(CloverWarning(f"{item.path.name}: pytest-clover " + "; ".join(cleanup)), stacklevel=1)
    if verdict.failure is not None:
        raise verdict.failure


def _phases(folder: Path) -> dict[str, Any]:
    """The load's phases (the experiment's stages) as the terminal summary shows them."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        phases = json.loads((folder / "result.json").read_text(encoding="utf-8")).get("phases") or {}
        return {
            name: {k: p.get(k) for k in ("requests", "errors", "p99_ms", "error_rate")} for name, p in phases.items()
        }
    return {}


def _safety_net(backend: Backend, replicas: Mapping[str, int]) -> list[str]:
    """Undo what the experiment's rollbacks left: faults in force, Deployments at another scale."""
    from ..faults import clear_faults
    from ..istio.documents import faulted_virtual_services

    done = []
    try:
        left = [d["metadata"]["name"] for d in faulted_virtual_services(backend.istio_objects())]
        if left:
            clear_faults(backend)
            done.append(
                "reverted faults the rollbacks left in force: " + ", ".join(f"VirtualService/{n}" for n in left)
            )
        now = backend.desired_replicas()
        for deployment, count in replicas.items():
            if now.get(deployment, 0) != count:
                backend.scale(deployment, count)
                done.append(f"scaled Deployment/{deployment} back to {count} (it had {now.get(deployment, 0)})")
    except CloverError as exc:
        done.append(f"could not check the mesh after the experiment: {exc}")
    return done


def _run(command: list[str], log_path: Path) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    with log_path.open("wb") as log:
        # Its own session: a Ctrl-C reaches pytest, which then interrupts the runner (rollbacks still run).
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    except BaseException:
        # Timeout, Ctrl-C: SIGTERM makes chaoslib interrupt the run and play the rollbacks.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])
    return "(no log)"


def _replay_events(folder: Path, timeline: Any) -> None:
    """Put the load's events (phases = the experiment's stages, faults) on this test's timeline."""
    result = folder / "result.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        events = json.loads(result.read_text(encoding="utf-8")).get("events") or []
        for event in events:
            data = {k: v for k, v in event.items() if k not in ("time", "kind", "name")}
            timeline.add(str(event["kind"]), str(event["name"]), when=float(event["time"]), **data)


# --------------------------------------------------------------------------- the verdict


class Verdict:
    def __init__(self) -> None:
        self.failure: BaseException | None = None
        self.lines: list[str] = []
        self.data: dict[str, Any] = {}

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _exception_text(exception: Any) -> str:
    """The last line of a journal's exception (chaoslib stores the formatted traceback, a list of strings)."""
    text = "".join(exception) if isinstance(exception, list) else str(exception or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no detail"
    last = lines[-1]
    prefix = "chaoslib.exceptions.ActivityFailed: "
    while last.startswith(prefix):
        last = last[len(prefix) :]
    return last


def _output_text(output: Any) -> str:
    if isinstance(output, dict):
        violations = output.get("violations")
        if violations:
            return "; ".join(str(v) for v in violations)
        if "observed" in output and isinstance(output["observed"], dict):
            shown = {k: v for k, v in output["observed"].items() if v is not None}
            return json.dumps(shown, default=str)
        if "status" in output and ("stdout" in output or "body" in output):
            return f"status {output['status']}"
    text = json.dumps(output, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def _probe_lines(state: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(a line per probe, lines for the probes that missed their tolerance)."""
    lines: list[str] = []
    missed: list[str] = []
    for run in (state or {}).get("probes") or []:
        activity = run.get("activity") or {}
        name = activity.get("name", "?")
        tolerance = json.dumps(activity.get("tolerance"), default=str)
        if run.get("status") == "failed":
            text = f"probe {name!r} failed to run: {_exception_text(run.get('exception'))}"
            lines.append("  ✗ " + text)
            missed.append(text)
            continue
        met = run.get("tolerance_met")
        observed = _output_text(run.get("output"))
        text = f"probe {name!r}: tolerance {tolerance}, observed {observed}"
        lines.append(("  ✓ " if met else "  ✗ ") + text)
        if met is False:
            missed.append(text)
    return lines, missed


def _activity_lines(runs: Any) -> tuple[list[str], list[str]]:
    lines, failed = [], []
    for run in runs or []:
        activity = run.get("activity") or {}
        name = activity.get("name", "?")
        status = run.get("status", "?")
        if status == "failed":
            reason = _exception_text(run.get("exception"))
            lines.append(f"  ✗ {activity.get('type', 'activity')} {name!r} failed: {reason}")
            failed.append(f"{name!r}: {reason}")
        else:
            lines.append(f"  ✓ {activity.get('type', 'activity')} {name!r} {status}")
    return lines, failed


def _slo_rows(stage: str, state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``slo_met`` probe outputs as the report's SLO rows (metric, threshold, observed, ok)."""
    rows = []
    observed_key = {"max_error_rate": "error_rate", "min_throughput_rps": "throughput_rps"}
    for run in (state or {}).get("probes") or []:
        output = run.get("output")
        if not isinstance(output, dict) or not isinstance(output.get("thresholds"), dict):
            continue
        for metric, threshold in output["thresholds"].items():
            if threshold is None:
                continue
            observed = (output.get("observed") or {}).get(observed_key.get(metric, metric))
            broke = [v for v in output.get("violations") or [] if str(v).startswith(f"{metric}:")]
            rows.append(
                {
                    "phase": stage,
                    "metric": metric,
                    "threshold": threshold,
                    "observed": observed,
                    "ok": not broke,
                    "window": "",
                    "note": f"probe {(run.get('activity') or {}).get('name', '?')}",
                }
            )
    return rows


def judge(journal: Mapping[str, Any], *, dry: bool = False, cleanup: list[str] | None = None) -> Verdict:
    verdict = Verdict()
    status = journal.get("status", "?")
    states = journal.get("steady_states") or {}
    before, after = states.get("before"), states.get("after")
    lines = verdict.lines
    lines.append(f"status: {status}; deviated: {journal.get('deviated')}" + ("  (dry run)" if dry else ""))
    before_lines, before_missed = _probe_lines(before)
    after_lines, after_missed = _probe_lines(after)
    method_lines, method_failed = _activity_lines(journal.get("run"))
    rollback_lines, rollback_failed = _activity_lines(journal.get("rollbacks"))
    if before_lines:
        lines += ["steady state before the method:", *before_lines]
    if method_lines:
        lines += ["method:", *method_lines]
    if after_lines:
        lines += ["steady state after the method:", *after_lines]
    lines += ["rollbacks:", *(rollback_lines or ["  (none declared)"])]
    for line in cleanup or []:
        lines.append(f"pytest-clover: {line}")
    verdict.data = {
        "slo": _slo_rows("steady-state-before", before) + _slo_rows("steady-state-after", after),
        "experiment": {"status": status, "deviated": bool(journal.get("deviated")), "journal": "journal.json"},
    }
    rollbacks = "rollbacks: " + ("; ".join(line.strip() for line in rollback_lines) or "none declared")
    if cleanup:
        rollbacks += "; pytest-clover " + "; ".join(cleanup)
    if dry:
        if status not in ("completed", "failed"):
            verdict.failure = ExperimentError(f"the dry run ended {status}\n{verdict.text}")
        return verdict
    if before is not None and before.get("steady_state_met") is False:
        verdict.failure = ExperimentFailed(
            "the steady state was not met BEFORE the method, so nothing was injected:\n  "
            + "\n  ".join(before_missed)
            + f"\n{rollbacks}"
        )
    elif journal.get("deviated") or (after is not None and after.get("steady_state_met") is False):
        verdict.failure = ExperimentFailed(
            "the steady state deviated after the method:\n  " + "\n  ".join(after_missed) + f"\n{rollbacks}"
        )
    elif method_failed:
        verdict.failure = ExperimentError(
            "the method failed, so the experiment proves nothing:\n  " + "\n  ".join(method_failed) + f"\n{rollbacks}"
        )
    elif rollback_failed:
        verdict.failure = ExperimentError(
            "a rollback failed; the mesh was checked and cleaned by pytest-clover:\n  "
            + "\n  ".join(rollback_failed)
            + f"\n{rollbacks}"
        )
    elif status != "completed":
        verdict.failure = ExperimentError(f"the experiment ended {status}\n{verdict.text}")
    return verdict
