"""The fixtures a resilience test uses, and the objects they give it.

``mesh`` (:class:`Mesh`, one per session and xdist worker), ``load`` (:class:`Load`), ``faults``
(:class:`~pytest_clover.faults.Faults`), ``slo`` (:class:`~pytest_clover.slo.SLO`), ``soak``
(:class:`~pytest_clover.soak.runner.Soak`, with ``--clover-soak``), and the seams a conftest may override:
``clover_backend`` (which backend, built by the ``pytest_clover_make_backend`` hook) and
``clover_load_generator``. Registered by :mod:`pytest_clover.plugin.hooks`; imports nothing heavy until a
test asks for a fixture.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pytest

from ..backends.protocol import Backend, BackendOptions, MeshRecord, PodInfo, PodPorts, Watchable
from ..errors import MeshNotRunning, Problem, RevertFailed, ScheduleMissed
from ..report.layout import write_json_atomic
from .session import clover_session
from .settings import SETTINGS_KEY, CloverSettings

if TYPE_CHECKING:
    from ..faults import Faults
    from ..slo import SLO
    from ..soak.runner import Soak
    from ..timeline import Timeline
    from .progress import Progress

__all__ = ["SCHEDULE_TOLERANCE", "Load", "Mesh", "TrackedRun", "mesh_workdir"]

SCHEDULE_TOLERANCE = 0.1
"""The share of an open loop's scheduled requests that may go unanswered or leave more than 10 ms late before the
run proves nothing about the rate asked for. The suites keep far inside it (a few late sends in thousands on a
busy 2-core machine); a rate one core cannot generate misses it by orders of magnitude."""

MESH_WATCH_INTERVAL_S = 0.5
"""How often (seconds) a running phase checks that the mesh still runs: a mesh that dies mid-phase ends the test
within this, where the phase would otherwise run on to its end against nothing."""


# --------------------------------------------------------------------------- the fixtures


@pytest.fixture(scope="session")
def clover_settings(pytestconfig: pytest.Config) -> CloverSettings:
    """The validated options of this run (:class:`pytest_clover.plugin.settings.CloverSettings`)."""
    return pytestconfig.stash[SETTINGS_KEY]


def mesh_workdir(settings: CloverSettings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per pytest process for its mesh: xdist workers never share a mesh."""
    worker = settings.worker_id or "main"
    base = tmp_path_factory.getbasetemp()
    if settings.keep_mesh:
        # Outside the numbered basetemp, which pytest deletes a few runs later while the mesh may still run.
        return base.parent / f"clover-kept-{settings.run_id}-{worker}"
    return base / f"clover-mesh-{worker}"


@pytest.fixture(scope="session")
def clover_backend(
    clover_settings: CloverSettings, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    """The backend the ``mesh`` fixture deploys (not deployed yet): the one ``--clover-backend`` names, as the
    ``pytest_clover_make_backend`` hook builds it.

    Override it in a conftest to hand the session a backend of your own, e.g. a
    :class:`pytest_clover.testing.FakeBackend`.
    """
    options = BackendOptions(
        topology=clover_settings.topology,
        workdir=mesh_workdir(clover_settings, tmp_path_factory),
        seed=clover_settings.seed,
        keep=clover_settings.keep_mesh,
        settings=clover_settings.backend_settings,
    )
    backend: Backend = pytestconfig.hook.pytest_clover_make_backend(
        config=pytestconfig, settings=clover_settings, options=options
    )
    return backend


@pytest.fixture(scope="session")
def mesh(clover_backend: Backend, clover_settings: CloverSettings, pytestconfig: pytest.Config) -> Iterator[Mesh]:
    """The topology deployed on the chosen backend for the whole session (one per xdist worker)."""
    state = clover_session(pytestconfig)
    deployed = Mesh(clover_backend, keep=clover_settings.keep_mesh)
    warnings = [str(p) for p in deployed.deploy(clover_settings.deploy_timeout)]
    if warnings:
        # Said where the run starts (and again in the summary), not only by `clover validate`: a Service that
        # selects no pod answers nothing, and a test on it would pass for the wrong reason or fail for one.
        state.topology_warnings = warnings
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(f"clover: the topology has {len(warnings)} warning(s):", yellow=True)
            for line in warnings:
                reporter.write_line(f"  {line}", yellow=True)
    try:
        yield deployed
    finally:
        problems = state.revert_open_faults()
        state.kept.extend(_propagation_lines(deployed.backend))
        if clover_settings.keep_mesh:
            record = deployed.record
            how = f"clover --backend {record.backend} --location {record.location} down"
            state.kept.append(f"mesh kept running ({record.backend}): state in {record.location}; stop it with `{how}`")
        else:
            deployed.teardown()
        if problems:
            raise RevertFailed(
                "faults left open at session end could not be reverted (they stay in the fault ledger, which the "
                "next run or `clover cleanup` sweeps): " + "; ".join(problems)
            )


@pytest.fixture
def clover_timeline(request: pytest.FixtureRequest) -> Iterator[Timeline]:
    """One timeline per test: load phases and fault events, shared by ``load`` and ``faults``."""
    from ..timeline import EventStream, Timeline
    from .outputs import write_timeline

    state = clover_session(request.config)
    timeline = Timeline(on_event=EventStream(state.events_path(), request.node.nodeid))
    yield timeline
    if timeline.events():
        write_timeline(timeline, state.test_report_dir(request.node.nodeid))


@pytest.fixture
def faults(mesh: Mesh, clover_timeline: Timeline, pytestconfig: pytest.Config) -> Iterator[Faults]:
    """Inject faults (delay, abort, kill, scale, shift, apply); every one is reverted after the test."""
    from ..faults import Faults

    state = clover_session(pytestconfig)
    injector = Faults(
        mesh.backend,
        ledger=state.ledger(),
        timeline=clover_timeline,
        mesh=mesh.record,
        verify_timeout=state.settings.verify_timeout,
        base_dir=pytestconfig.rootpath,
        dry_run=state.settings.dry_run,
    )
    state.open_faults.append(injector)
    try:
        yield injector
    finally:
        try:
            injector.revert_all()
            state.unreverted.extend(injector.unreverted)
        finally:
            if injector in state.open_faults and not any(h.active for h in injector.handles):
                state.open_faults.remove(injector)


@pytest.fixture(scope="session")
def clover_load_generator() -> Callable[..., Any]:
    """The load generator class ``load`` instantiates; override to substitute one (``testing.FakeLoadGenerator``)."""
    # pytest_clover.load.run never imports locust: the generator runs it in a child process.
    from ..load.run import LoadGenerator

    return LoadGenerator


@pytest.fixture
def load(
    mesh: Mesh,
    clover_timeline: Timeline,
    clover_load_generator: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> Iterator[Load]:
    """Start load at the mesh's ingress: ``load.start(rate=…)`` or ``load.start(users=…)``."""
    from .progress import Progress

    state = clover_session(request.config)
    loader = Load(
        clover_load_generator,
        base_url=lambda: mesh.ingress_url,
        report_dir=state.test_report_dir(request.node.nodeid),
        seed=state.settings.seed,
        time_scale=state.settings.time_scale,
        timeline=clover_timeline,
        progress=Progress.for_test(request.config, request.node.name, state.settings.time_scale),
        hop_cursor=lambda: _hop_cursor(mesh),
        check_mesh=mesh.backend.check_running if isinstance(mesh.backend, Watchable) else None,
        workers=state.settings.load_workers,
        in_cluster=_in_cluster(state.settings, mesh.backend),
    )
    try:
        yield loader
    finally:
        loader.stop_all()


def _in_cluster(settings: Any, backend: Backend) -> Any:
    """The :class:`~pytest_clover.load.incluster.InCluster` of ``--clover-load-in-cluster``, or None."""
    if not settings.load_in_cluster:
        return None
    from ..backends.protocol import LoadPods
    from ..load.incluster import InCluster

    if not isinstance(backend, LoadPods):  # configure checked the class; a substitute backend may still lack it
        raise pytest.UsageError(f"--clover-load-in-cluster: the {backend.name} backend cannot run load pods")
    return InCluster(
        backend,
        master=settings.load_master,
        master_address=settings.load_master_address,
        target_url=settings.load_target,
    )


def _propagation_lines(backend: Backend) -> list[str]:
    """How long Istio changes took to reach the callers' sidecars, when the backend measured it (a cluster's istiod
    pushes after the API has answered): a line for the session summary."""
    try:
        measured = backend.info().get("propagation_ms")
    except Exception:  # a summary line is not worth an error at teardown
        return []
    if not isinstance(measured, dict) or not measured.get("count"):
        return []
    return [
        f"Istio changes reached the callers' sidecars in {measured.get('median', 0):g} ms (median), "
        f"{measured.get('max', 0):g} ms (slowest) over {measured['count']} changes ({backend.name} backend)"
    ]


def _requests_sent(result: Any) -> int:
    """How many requests a load result counted over its phases (0 when it cannot tell)."""
    try:
        return int(sum(int(p.requests) for p in result.phases().values()))
    except Exception:  # a substitute generator's result without phases: nothing to compare with
        return 0


def _hop_cursor(mesh: Mesh) -> Any:
    from ..report.hops import AccessLogCursor

    return AccessLogCursor(mesh.backend)


@pytest.fixture
def soak(
    load: Load,
    faults: Faults,
    slo: SLO,
    clover_timeline: Timeline,
    clover_settings: CloverSettings,
    request: pytest.FixtureRequest,
) -> Soak:
    """``soak.run()``: steady load for ``--clover-soak``'s duration under the seeded chaos schedule of
    ``--clover-soak-plan``, every event judged, guardrails watched, the report checkpointed."""
    from ..soak.runner import Soak, SoakSettings
    from .outputs import write_timeline

    s = clover_settings
    if s.soak_s is None:  # only reached by a test that asks for the fixture in a way collection did not see
        pytest.skip("soak tests run only with --clover-soak=DURATION (e.g. --clover-soak=8h)")
    return Soak(
        SoakSettings(
            duration_s=s.soak_s,
            plan=s.soak_plan,
            seed=s.seed,
            time_scale=s.time_scale,
            checkpoint_s=s.checkpoint_s,
        ),
        load=load,
        faults=faults,
        slo_checks=slo.checks,
        timeline=clover_timeline,
        report_dir=load.report_dir,
        save_result=Load.save_result,
        save_timeline=lambda: write_timeline(clover_timeline, load.report_dir),
        recoveries=load.recoveries,
        check_mesh=load.check_mesh,
        base_dir=request.config.rootpath,
        stop_run=lambda why: setattr(request.session, "shouldfail", why),
    )


@pytest.fixture
def slo(clover_settings: CloverSettings) -> SLO:
    """``slo.check(result, phase=…, p99_ms=…, max_error_rate=…, …)``: a missed objective fails the test."""
    from ..slo import SLO

    return SLO(dry_run=clover_settings.dry_run)


# --------------------------------------------------------------------------- mesh


class Mesh:
    """The deployed topology (the ``mesh`` fixture): its ingress, pods, stats and the backend operations."""

    def __init__(self, backend: Backend, *, keep: bool = False) -> None:
        self.backend = backend
        """The :class:`~pytest_clover.backends.protocol.Backend` itself, for anything not passed through here."""
        self.keep = keep
        self._ingress: str | None = None

    def __repr__(self) -> str:
        return f"<Mesh {self.record}>"

    @property
    def record(self) -> MeshRecord:
        """How another process reaches this mesh (a Chaos Toolkit experiment, ``clover``, a ledger sweep)."""
        return self.backend.record()

    def deploy(self, timeout: float) -> list[Problem]:
        """Deploy the topology; returns what the backend will not honour in it."""
        return self.backend.deploy(timeout=timeout)

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

    def pod_url(self, pod: PodInfo, port: int) -> str:
        """Base URL that reaches container port ``port`` of ``pod`` from here: its own address where that works,
        else what the backend provides (a port-forward to a cluster's pod)."""
        if isinstance(self.backend, PodPorts):
            return self.backend.pod_url(pod.name, port)
        return pod.url(port)

    def stats(self, service: str) -> dict[str, int]:
        """Envoy counters and gauges summed over the pods of ``service``."""
        from ..envoy.views import service_stats

        return service_stats(self.backend, service)

    def pod_stats(self, pod: str) -> dict[str, Any]:
        """One pod's Envoy stats: counters and gauges as ints, text readouts as strings."""
        from ..envoy.views import pod_stats

        return pod_stats(self.backend, pod)

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

    def logs(self, pod: str, container: str = "app") -> str:
        """A container's log: ``app`` or ``istio-proxy`` (its Envoy sidecar)."""
        return self.backend.logs(pod, container)


# --------------------------------------------------------------------------- load


class TrackedRun:
    """A load run as the test sees it: the generator's run, with its result remembered for the plugin."""

    def __init__(
        self, run: Any, load: Load, hop_cursor: Any = None, schedule_tolerance: float | None = SCHEDULE_TOLERANCE
    ) -> None:
        self._run = run
        self._load = load
        self._hop_cursor = hop_cursor
        self.schedule_tolerance = schedule_tolerance
        """How far (a share) the open loop may miss its schedule before the run is inconclusive; None: never."""
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

    @property
    def live_result(self) -> Any:
        """The generator's result while it runs, filled window by window (``result`` is set only once stopped)."""
        return self._run.result

    def phase(self, name: str, seconds: float) -> Any:
        """Run a phase for ``seconds`` × the time scale (blocks), tagging its requests with ``name``.

        Raises :class:`~pytest_clover.errors.MeshNotRunning` at once if the mesh stops meanwhile (when its
        backend can tell: :class:`~pytest_clover.backends.protocol.Watchable`), as it raises LoadGeneratorError
        at once if the load generator dies."""
        __tracebackhide__ = True
        with self._watching_the_mesh():
            progress = self._load.progress
            if progress is None:
                return self._run.phase(name, seconds)
            # The live line is drawn from a thread while the generator's phase blocks here, as it always does.
            with progress.phase(self._run, name, seconds):
                return self._run.phase(name, seconds)

    @contextlib.contextmanager
    def _watching_the_mesh(self) -> Iterator[None]:
        check = self._load.check_mesh
        if check is None:
            yield
            return
        check()  # a mesh already gone: say so rather than run a phase against nothing
        done = threading.Event()

        def watch() -> None:
            while not done.wait(MESH_WATCH_INTERVAL_S):
                try:
                    check()
                except MeshNotRunning as exc:
                    self._run.interrupt(exc)
                    return
                except Exception:  # a check that cannot tell is no verdict; the next one may
                    continue

        watcher = threading.Thread(target=watch, name="clover-mesh-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def mark(self, kind: str, name: str, **data: Any) -> Any:
        """Put an event on the test's timeline (e.g. ``run.mark("note", "v2 at 50 %")``)."""
        return self._run.mark(kind, name, **data)

    def stop(self) -> Any:
        """Stop the load; returns the result (the same one if called again).

        Raises :class:`~pytest_clover.errors.ScheduleMissed` (the test is INCONCLUSIVE) when the open loop fell
        behind its schedule by more than ``schedule_tolerance``: the system was not tested at the rate asked for.
        The result is saved for the report all the same.
        """
        __tracebackhide__ = True
        if self.result is None:
            self.result = self._run.stop()
            self._load._remember(self.result, self._hop_cursor)
            self._check_schedule()
        return self.result

    def _check_schedule(self) -> None:
        __tracebackhide__ = True
        schedule = getattr(self.result, "schedule", None)
        report = schedule() if callable(schedule) and self.schedule_tolerance is not None else None
        why = report.missed(self.schedule_tolerance) if report is not None else None
        if why is not None:
            raise ScheduleMissed(
                f"the load missed its schedule: {why}. The system was not tested at the rate asked for (the "
                "generator, one core, or the machine could not keep up): lower the rate, or pass "
                "load.start(..., schedule_tolerance=None) to judge the run anyway"
            )


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
        check_mesh: Callable[[], None] | None = None,
        workers: int = 1,
        in_cluster: Any = None,
    ) -> None:
        self._factory = factory
        self.check_mesh = check_mesh
        """Raises MeshNotRunning if the mesh under load has stopped (cheap); None when the backend cannot tell."""
        self.workers = workers
        """Generator processes per run (``--clover-load-workers``); passed to the generator only when above 1, so
        a substitute generator (``clover_load_generator``) that knows nothing of workers keeps working."""
        self.in_cluster = in_cluster
        """How to run the generator in the cluster (:class:`pytest_clover.load.incluster.InCluster`,
        ``--clover-load-in-cluster``); passed to the generator only when set. None: local processes."""
        self._hop_cursor = hop_cursor
        self._base_url = base_url
        self.report_dir = report_dir
        """This test's report folder: ``<report-dir>/<run-id>/<test>/`` (``run-N/`` below it for further runs)."""
        self.seed = seed
        self.time_scale = time_scale
        self.timeline = timeline
        self.progress = progress
        """The terminal display of the phases (:mod:`pytest_clover.plugin.progress`), None for none."""
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
        schedule_tolerance: float | None = SCHEDULE_TOLERANCE,
    ) -> TrackedRun:
        """Start load at the ingress: ``rate=`` requests/s (open loop) or ``users=`` (closed loop).

        ``schedule_tolerance``: the share of scheduled requests the open loop may miss (not answered, or sent more
        than 10 ms late) before ``stop()`` makes the test INCONCLUSIVE (default 0.1); None never does."""
        if schedule_tolerance is not None and not 0 <= schedule_tolerance < 1:
            raise ValueError(
                f"schedule_tolerance must be a share from 0 to 1 (0.1 is 10 %) or None, not {schedule_tolerance!r}"
            )
        if (rate is None) == (users is None):
            raise TypeError("give rate= (requests per second, open loop) or users= (closed loop), not both")
        n = len(self.runs) + 1
        report_dir = self.report_dir if n == 1 else self.report_dir / f"run-{n}"
        report_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {"workers": self.workers} if self.workers > 1 else {}
        if self.in_cluster is not None:
            extra.update(workers=self.workers, in_cluster=self.in_cluster)
        generator = self._factory(
            base_url=self._base_url(),
            report_dir=report_dir,
            seed=self.seed,
            time_scale=self.time_scale,
            timeline=self.timeline,
            **extra,
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
        run = TrackedRun(generator.start(**kwargs), self, cursor, schedule_tolerance)
        self.runs.append(run)
        return run

    def _remember(self, result: Any, hop_cursor: Any = None) -> None:
        self.results.append(result)
        self._write(result)
        folder = getattr(result, "report_dir", None)
        if hop_cursor is not None and folder is not None:
            from ..report.hops import record_hops

            try:
                joined = record_hops(hop_cursor, hop_cursor.backend, Path(folder) / "hops.csv")
            except Exception as exc:
                self.problems.append(f"per-hop breakdown not saved: {type(exc).__name__}: {exc}")
            else:
                sent = _requests_sent(result) if joined == 0 else 0
                if sent > 0:
                    # Said, not left as an empty plot: on a cluster, access logging may simply be off.
                    self.problems.append(
                        f"per-hop breakdown empty: no sidecar access-log entries for the {sent} requests sent; "
                        "is access logging on in the mesh? (on a cluster: meshConfig.accessLogEncoding=JSON and the "
                        "Telemetry the k8s backend creates; see docs/kubernetes.md)"
                    )
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
    def save_result(result: Any) -> None:
        """Write a result's ``result.json`` and ``windows.csv`` now (a soak's checkpoint: the result may still be
        filling; the files are replaced, never appended)."""
        Load._write(result)

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
            # Replaced whole (a soak rewrites it at every checkpoint): a reader, or a SIGKILL, never sees half of it.
            target = Path(folder) / "windows.csv"
            partial = target.with_name(f".{target.name}.tmp")
            with open(partial, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            os.replace(partial, target)

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
