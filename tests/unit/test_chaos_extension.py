"""The Chaos Toolkit extension without a mesh: configuration, actions on a FakeBackend, probes on a fake load.

The actions reach a :class:`pytest_clover.testing.FakeBackend` through the experiment configuration
(``clover_backend: fake`` + ``clover_location``, its state file); the probes read a LoadResult fed with synthetic window
messages, registered as the mesh's running load. No processes, no network, no locust.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed, InterruptExecution, InvalidActivity

from pytest_clover.chaos import actions, control, discover, load_sessions, probes
from pytest_clover.chaos.mesh import backend_from_configuration, mesh_key
from pytest_clover.errors import CloverError
from pytest_clover.istio.documents import ORIGINAL_ANNOTATION
from pytest_clover.load.result import LoadResult, new_histogram, window_message
from pytest_clover.testing import FakeBackend
from pytest_clover.timeline import Timeline

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake(tmp_path: Path) -> FakeBackend:
    backend = FakeBackend(SDC, state_file=tmp_path / "mesh.json")
    backend.deploy()
    return backend


@pytest.fixture
def config(fake: FakeBackend, tmp_path: Path) -> dict[str, Any]:
    return {
        "clover_backend": "fake",
        "clover_location": str(fake.state_file),
        "clover_report_dir": str(tmp_path / "r"),
    }


@pytest.fixture(autouse=True)
def no_loads_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets an empty load registry (and the control's), whatever it registers."""
    monkeypatch.setattr(load_sessions, "_sessions", {})
    monkeypatch.setattr(load_sessions, "_touched", {})
    monkeypatch.setattr(control, "_started", {})
    yield


def vs(backend: FakeBackend, name: str) -> dict[str, Any] | None:
    backend.reload()
    return next(
        (o for o in backend.istio_objects() if o["kind"] == "VirtualService" and o["metadata"]["name"] == name), None
    )


def window(start: float, latencies_ms: list[float], statuses: list[int] | None = None) -> dict[str, Any]:
    hist = new_histogram()
    for ms in latencies_ms:
        hist.record_value(round(ms * 1000))
    counts: dict[int, int] = {}
    for code in statuses if statuses is not None else [200] * len(latencies_ms):
        counts[code] = counts.get(code, 0) + 1
    message = window_message(start=start, end=start + 1.0, phase=None, histogram=hist, status_counts=counts)
    round_trip: dict[str, Any] = json.loads(json.dumps(message))
    return round_trip


class FakeRun:
    """The parts of LoadRun the registry uses; the result is a real LoadResult fed with synthetic windows."""

    pid = 4242
    mode = "open"

    def __init__(self, tmp_path: Path, windows: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self.result = LoadResult(mode="open", rate=100.0, users=None, seed=0, report_dir=tmp_path)
        for w in windows:
            self.result.ingest(w)
        self.alive = True
        self.stops = 0
        self.phases: list[tuple[str, str | None]] = []

    def begin_phase(self, name: str) -> None:
        self.phases.append(("begin", name))

    def end_phase(self) -> None:
        self.phases.append(("end", None))

    def stop(self) -> LoadResult:
        self.stops += 1
        self.alive = False
        return self.result


def register_load(
    backend: FakeBackend, run: FakeRun, tmp_path: Path, started: float | None = None
) -> load_sessions.LoadSession:
    session = load_sessions.LoadSession(
        mesh_key(backend),
        "the fake mesh",
        run,  # type: ignore[arg-type]
        tmp_path / "load",
        time.time() - 60 if started is None else started,
        {"mode": "open", "rate": 100.0, "users": None, "path": "/"},
        Timeline(),
        "action",
    )
    session.report_dir.mkdir(parents=True, exist_ok=True)
    load_sessions._sessions[session.key] = session
    return session


# --------------------------------------------------------------------------- configuration


def test_a_missing_mesh_says_where_it_looked_and_to_run_clover_up(tmp_path: Path) -> None:
    with pytest.raises(
        ActivityFailed, match=r"no clover mesh is running at .*nowhere.*clover --backend local up --location"
    ) as info:
        backend_from_configuration({"clover_state_dir": str(tmp_path / "nowhere")})
    assert "configuration clover_state_dir" in str(info.value)


def test_the_default_state_dir_is_the_clover_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOVER_STATE_DIR", str(tmp_path / "from-env"))
    for configuration in (None, {}, {"clover_backend": "local"}):
        with pytest.raises(ActivityFailed, match=r"from-env \(the local backend's default\)"):
            backend_from_configuration(configuration)


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        ({"clover_backend": "k9s"}, "clover_backend: no backend named 'k9s' is installed; did you mean k8s. installed: fake, k8s, local"),
        ({"clover_backend": "docker"}, "no backend named 'docker' is installed"),
        ({"clover_backend": "fake"}, "the fake backend has no default mesh.*set clover_location"),
        ({"clover_state_dir": 42}, "clover_state_dir must be a string, got int 42"),
        ("not a mapping", "configuration must be a mapping"),
    ],
)
def test_configuration_errors(configuration: Any, message: str) -> None:
    with pytest.raises(ActivityFailed, match=message):
        backend_from_configuration(configuration)


def test_a_stopped_fake_mesh_is_not_running(fake: FakeBackend, config: dict[str, Any]) -> None:
    assert isinstance(backend_from_configuration(config), FakeBackend)
    fake.teardown()
    with pytest.raises(
        ActivityFailed, match=r"no clover mesh is running at .*mesh\.json \(configuration clover_location\)"
    ):
        backend_from_configuration(config)


def test_an_unknown_clover_key_is_reported_with_a_suggestion(
    config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chaostoolkit"):
        backend_from_configuration({**config, "clover_statedir": "/x", "other_tool_key": 1})
    assert "clover_statedir is not used by pytest_clover.chaos; did you mean clover_state_dir?" in caplog.text
    assert "other_tool_key" not in caplog.text


# --------------------------------------------------------------------------- fault actions


def test_inject_delay_verified_by_traffic_then_cleared_exactly(fake: FakeBackend, config: dict[str, Any]) -> None:
    original = vs(fake, "http-lb")
    out = actions.inject_delay("http-lb", "300ms", percent=50, verify="traffic", configuration=config)
    assert out["fault"] == "delay" and out["delay"] == "300ms" and out["percent"] == 50.0
    assert out["virtual_service"] == "http-lb" and out["verified_by"] == "traffic"
    assert "requests delayed since injection" in out["verified"]
    json.dumps(out, allow_nan=False)  # the journal can hold it
    faulted = vs(fake, "http-lb")
    assert faulted is not None and ORIGINAL_ANNOTATION in faulted["metadata"]["annotations"]
    assert any(r.get("fault", {}).get("delay", {}).get("fixedDelay") == "300ms" for r in faulted["spec"]["http"])

    cleared = actions.clear_faults(configuration=config)
    assert cleared["cleared"] == ["http-lb"] and cleared["restored"] == ["http-lb"] and cleared["removed"] == []
    assert vs(fake, "http-lb") == original


def test_percent_may_come_as_a_string_from_a_var(fake: FakeBackend, config: dict[str, Any]) -> None:
    # Values given with `chaos run --var` arrive as strings, whatever the function's annotations say.
    out = actions.inject_abort("clover-server", http_status="503", percent="10", verify="traffic", configuration=config)  # type: ignore[arg-type]
    assert out["http_status"] == 503 and out["percent"] == 10.0
    cleared = actions.clear_faults(configuration=config)
    assert cleared["removed"] == ["clover-server"]  # clover created it, so clearing deletes it
    assert vs(fake, "clover-server") is None


def test_without_load_a_delay_is_verified_in_envoys_route_config(fake: FakeBackend, config: dict[str, Any]) -> None:
    # The fake's Envoy route dump carries the fault filter's settings, as a real sidecar's does.
    out = actions.inject_delay("http-lb", "250ms", percent=12.5, configuration=config)
    assert out["verified_by"] == "config"
    assert "routes to http-lb carry the fault filter's delay 250ms at 12.5%" in out["verified"]
    assert actions.clear_faults(configuration=config)["cleared"] == ["http-lb"]


def test_a_delay_envoy_does_not_show_fails_and_is_taken_back(tmp_path: Path) -> None:
    # Without effects the fake's Envoy keeps the routes it had at deploy: the config check cannot see the fault.
    fake = FakeBackend(SDC, state_file=tmp_path / "frozen.json", effects=False)
    fake.deploy()
    config = {"clover_backend": "fake", "clover_location": str(fake.state_file)}
    original = vs(fake, "http-lb")
    with pytest.raises(ActivityFailed) as info:
        actions.inject_delay("http-lb", "300ms", timeout=0.3, configuration=config)
    message = str(info.value)
    assert "delay 300ms 100% on http-lb: its effect was not seen" in message
    assert "no route with a fault" in message and "(it was reverted)" in message
    assert isinstance(info.value.__cause__, CloverError)
    assert vs(fake, "http-lb") == original


def test_a_fault_whose_counters_never_move_fails_by_traffic(tmp_path: Path) -> None:
    frozen = FakeBackend(SDC, state_file=tmp_path / "frozen.json", effects=False)
    frozen.deploy()
    config = {"clover_backend": "fake", "clover_location": str(frozen.state_file)}
    original = vs(frozen, "http-lb")
    with pytest.raises(ActivityFailed, match=r"did not move in any of .* pods.*Was load reaching http-lb"):
        actions.inject_abort("http-lb", verify="traffic", timeout=0.3, configuration=config)
    assert vs(frozen, "http-lb") == original


def test_an_unknown_service_fails_at_once_with_a_suggestion(config: dict[str, Any]) -> None:
    started = time.monotonic()
    with pytest.raises(ActivityFailed, match=r"no service 'http-lbb' in the mesh; did you mean http-lb\? services: "):
        actions.inject_delay("http-lbb", "300ms", configuration=config)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda c: actions.inject_delay("http-lb", "300ms", percent=150, configuration=c),
            "percent must be a number from 0 to 100, got 150",
        ),
        (
            lambda c: actions.inject_delay("http-lb", "soon", configuration=c),
            r"inject delay on http-lb: 'soon' is not a duration",
        ),
        (lambda c: actions.inject_delay("http-lb", "", configuration=c), "delay must be a non-empty string"),
        (
            lambda c: actions.inject_delay("http-lb", "1s", verify="maybe", configuration=c),
            "verify must be one of auto, traffic, config",
        ),
        (
            lambda c: actions.inject_delay("http-lb", "1s", headers=["x"], configuration=c),  # type: ignore[arg-type]
            "headers must map header names",
        ),
        (
            lambda c: actions.inject_abort("http-lb", http_status=700, configuration=c),
            "http_status must be from 200 to 599",
        ),
        (
            lambda c: actions.inject_abort("http-lb", percent=True, configuration=c),
            "percent must be a number, got True",
        ),
        (
            lambda c: actions.shift_traffic("http-lb", {"v1": 80, "v2": 10}, configuration=c),
            "weights must add up to 100",
        ),
        (lambda c: actions.shift_traffic("http-lb", [80, 20], configuration=c), "weights must map subsets"),  # type: ignore[arg-type]
        (
            lambda c: actions.kill_pods("clover-server", count=1, percent=50, configuration=c),
            "give count or percent, not both",
        ),
        (lambda c: actions.kill_pods("nobody", configuration=c), "kill pods of nobody: no running pod of 'nobody'"),
        (
            lambda c: actions.scale_deployment("clover-server", -1, configuration=c),
            "replicas must be a number of 0 or more",
        ),
        (lambda c: actions.scale_deployment("nope", 2, configuration=c), "scale nope to 2: no Deployment 'nope'"),
        (lambda c: actions.start_load(configuration=c), "give exactly one of rate"),
        (lambda c: actions.stop_load(configuration=c), "no load is running on the fake mesh .*: nothing to stop"),
    ],
)
def test_bad_arguments_and_backend_errors_become_activity_failed(
    config: dict[str, Any], call: Any, message: str
) -> None:
    with pytest.raises(ActivityFailed, match=message):
        call(config)


def test_shift_traffic_is_verified_in_envoy_and_cleared_by_clear_faults(
    fake: FakeBackend, config: dict[str, Any]
) -> None:
    original = vs(fake, "http-lb")
    out = actions.shift_traffic("http-lb", {"v1": 90, "v2": 10.0}, configuration=config)  # type: ignore[dict-item]
    assert out["weights"] == {"v1": 90, "v2": 10}
    assert "routes http-lb as v1 90/v2 10" in out["verified"]
    assert actions.clear_faults(configuration=config)["restored"] == ["http-lb"]
    assert vs(fake, "http-lb") == original


def test_clear_faults_with_nothing_to_clear(config: dict[str, Any]) -> None:
    assert actions.clear_faults(configuration=config) == {
        "cleared": [],
        "restored": [],
        "removed": [],
        "verified": "no clover fault was in force",
    }


def test_kill_pods_waits_for_the_replacements(fake: FakeBackend, config: dict[str, Any]) -> None:
    before = {p.name for p in fake.pods("clover-server")}
    out = actions.kill_pods("clover-server", count=2, configuration=config)
    assert len(out["killed"]) == 2 and set(out["killed"]) <= before
    assert len(out["ready"]) == len(before) and not set(out["killed"]) & set(out["ready"])
    assert "gone;" in out["verified"]


def test_kill_pods_that_are_never_replaced_fails(tmp_path: Path) -> None:
    frozen = FakeBackend(SDC, state_file=tmp_path / "frozen.json", effects=False)
    frozen.deploy()
    config = {"clover_backend": "fake", "clover_location": str(frozen.state_file)}
    with pytest.raises(ActivityFailed, match=r"kill 1 pod of clover-server: its effect was not seen"):
        actions.kill_pods("clover-server", timeout=0.3, configuration=config)
    # Without waiting for readiness, the kill itself is what is checked.
    out = actions.kill_pods("clover-server", wait_ready=False, timeout=0.3, configuration=config)
    assert out["verified"] == "killed pods gone"


def test_scale_deployment_reports_the_previous_count(config: dict[str, Any]) -> None:
    out = actions.scale_deployment("clover-server", 1, configuration=config)
    assert (out["replicas"], out["previous"]) == (1, 3)
    assert "endpoints for clover-server" in out["verified"]
    assert actions.scale_deployment("clover-server", "3", configuration=config)["previous"] == 1  # type: ignore[arg-type]


def test_actions_mark_the_running_loads_timeline(fake: FakeBackend, config: dict[str, Any], tmp_path: Path) -> None:
    session = register_load(fake, FakeRun(tmp_path), tmp_path)
    out = actions.inject_delay("http-lb", "300ms", verify="traffic", configuration=config)
    assert out["verified_by"] == "traffic"
    kinds = [e.kind for e in session.timeline.events()]
    assert kinds == ["fault-start", "fault-verified"]


def test_auto_verification_uses_traffic_while_load_runs(
    fake: FakeBackend, config: dict[str, Any], tmp_path: Path
) -> None:
    session = register_load(fake, FakeRun(tmp_path), tmp_path)
    out = actions.inject_delay("http-lb", "300ms", configuration=config)
    assert out["verified_by"] == "config and traffic"
    assert "requests delayed since injection" in out["verified"]
    # Header-scoped: the load does not carry the headers, so only the configuration can be checked.
    scoped = actions.inject_delay("http-lb", "300ms", headers={"end-user": "jason"}, configuration=config)
    assert scoped["verified_by"] == "config"
    actions.clear_faults(configuration=config)
    assert [e.kind for e in session.timeline.events()].count("fault-start") == 2
    assert "fault-end" in [e.kind for e in session.timeline.events()]


# --------------------------------------------------------------------------- probes


def test_probes_without_load_say_to_start_it(config: dict[str, Any]) -> None:
    calls: tuple[Callable[[], object], ...] = (
        lambda: probes.slo_met(p99_ms=100, configuration=config),
        lambda: probes.load_stats(configuration=config),
    )
    for probe in calls:
        with pytest.raises(
            ActivityFailed, match=r"start load first \(start_load action or the pytest_clover.chaos.control control\)"
        ):
            probe()


def test_slo_met_shows_observed_next_to_thresholds(fake: FakeBackend, config: dict[str, Any], tmp_path: Path) -> None:
    now = time.time()
    windows = [window(now - 30 + i, [5.0] * 100) for i in range(20)]  # fast, long ago
    windows += [window(now - 10 + i, [5.0] * 90 + [400.0] * 10, [200] * 99 + [503]) for i in range(10)]
    register_load(fake, FakeRun(tmp_path, windows), tmp_path)

    fast = probes.slo_met(last_seconds=10, p50_ms=50, max_error_rate=0.05, configuration=config)
    assert fast["met"] is True and fast["verdict"] == "met" and fast["violations"] == []
    assert fast["observed"]["requests"] == 1000 and fast["observed"]["error_rate"] == 0.01
    assert fast["thresholds"] == {"p50_ms": 50.0, "max_error_rate": 0.05}

    slow = probes.slo_met(
        last_seconds=10, p99_ms=150, max_error_rate=0.001, min_throughput_rps=50, configuration=config
    )
    assert slow["met"] is False and slow["verdict"] == "violated"
    assert slow["observed"]["p99_ms"] == pytest.approx(400.0, rel=1e-2)
    assert (
        slow["violations"][0].startswith("p99_ms: observed 400.")
        and "threshold ≤ 150.0 ms, first broke +0–1 s" in slow["violations"][0]
    )
    assert slow["violations"][1].startswith("max_error_rate: observed 1.00 %, threshold ≤ 0.10 %")
    assert len(slow["violations"]) == 2  # 100 rps ≥ 50 holds
    json.dumps(slow, allow_nan=False)

    # The older windows are what the last 30 s add: the p50 stays, the tail is diluted.
    assert probes.slo_met(last_seconds=30, p99_ms=450, configuration=config)["met"] is True


def test_slo_met_on_seconds_without_any_response_is_violated(
    fake: FakeBackend, config: dict[str, Any], tmp_path: Path
) -> None:
    now = time.time()
    register_load(fake, FakeRun(tmp_path, [window(now - 5 + i, []) for i in range(5)]), tmp_path)
    out = probes.slo_met(last_seconds=5, p99_ms=100, configuration=config)
    assert out["met"] is False and out["observed"]["requests"] == 0 and out["observed"]["p99_ms"] is None
    assert "nothing was measured, so nothing was met" in out["violations"][0]
    json.dumps(out, allow_nan=False)
    with pytest.raises(ActivityFailed, match="no request completed in the last 5 s of the load"):
        probes.load_stats(last_seconds=5, configuration=config)


def test_load_stats_returns_the_numbers_for_a_range_tolerance(
    fake: FakeBackend, config: dict[str, Any], tmp_path: Path
) -> None:
    from chaoslib.hypothesis import within_tolerance

    now = time.time()
    register_load(fake, FakeRun(tmp_path, [window(now - 3 + i, [10.0] * 50 + [20.0] * 50) for i in range(3)]), tmp_path)
    out = probes.load_stats(last_seconds=3, configuration=config)
    assert out["requests"] == 300 and out["windows"] == 3 and out["throughput_rps"] == 100.0
    assert out["p50_ms"] == pytest.approx(10.0, rel=1e-2) and out["p99_ms"] == pytest.approx(20.0, rel=1e-2)
    assert out["last_seconds"] == 3.0
    # The tolerances the docs show, as chaoslib evaluates them.
    assert within_tolerance({"type": "range", "target": "p99_ms", "range": [0, 50]}, out) is True
    assert within_tolerance({"type": "range", "target": "p99_ms", "range": [0, 15]}, out) is False
    slo = probes.slo_met(last_seconds=3, p99_ms=50, configuration=config)
    assert within_tolerance({"type": "regex", "target": "verdict", "pattern": "^met$"}, slo) is True
    slo = probes.slo_met(last_seconds=3, p99_ms=15, configuration=config)
    assert within_tolerance({"type": "regex", "target": "verdict", "pattern": "^met$"}, slo) is False


def test_a_young_load_is_waited_for_and_wait_false_does_not(
    fake: FakeBackend, config: dict[str, Any], tmp_path: Path
) -> None:
    now = time.time()
    run = FakeRun(tmp_path, [window(now - 1, [10.0] * 10)])
    register_load(fake, run, tmp_path, started=now - 1)
    assert probes.load_stats(last_seconds=5, wait=False, configuration=config)["windows"] == 1

    def more_windows() -> None:
        for i in range(4):
            time.sleep(0.1)
            run.result.ingest(window(now + i, [10.0] * 10))

    import threading

    feeder = threading.Thread(target=more_windows)
    feeder.start()
    try:
        out = probes.load_stats(last_seconds=5, configuration=config)
    finally:
        feeder.join()
    assert out["windows"] == 5 and out["requests"] == 50


def test_a_dead_generator_is_a_failed_probe(fake: FakeBackend, config: dict[str, Any], tmp_path: Path) -> None:
    run = FakeRun(tmp_path, [window(time.time() - 1, [10.0])])
    register_load(fake, run, tmp_path)
    run.alive = False
    with pytest.raises(ActivityFailed, match="exited: start load first"):
        probes.load_stats(configuration=config)


def test_probe_argument_errors(config: dict[str, Any]) -> None:
    with pytest.raises(ActivityFailed, match="give at least one objective: p50_ms, p95_ms, p99_ms, max_error_rate"):
        probes.slo_met(configuration=config)
    with pytest.raises(ActivityFailed, match="p99_ms must be a number, got 'fast'"):
        probes.slo_met(p99_ms="fast", configuration=config)  # type: ignore[arg-type]
    with pytest.raises(ActivityFailed, match="last_seconds must be positive"):
        probes.load_stats(last_seconds=0, configuration=config)


def test_pods_ready_and_envoy_counter(fake: FakeBackend, config: dict[str, Any]) -> None:
    assert probes.pods_ready("clover-server", configuration=config) == 4
    assert probes.pods_ready("clover-server", min_ready=4, configuration=config) is True
    assert probes.pods_ready("clover-server", min_ready=5, configuration=config) is False
    fake.bump("http.outbound.fault.delays_injected", 7, pod=fake.pods("http-lb")[0].name)
    assert probes.envoy_counter("http-lb", "http.outbound.fault.delays_injected", configuration=config) == 7
    with pytest.raises(
        ActivityFailed,
        match=r"no stat 'http.outbound.fault.delay_injected'; did you mean http.outbound.fault.delays_injected",
    ):
        probes.envoy_counter("http-lb", "http.outbound.fault.delay_injected", configuration=config)
    with pytest.raises(ActivityFailed, match="no pods of service 'nobody'"):
        probes.envoy_counter("nobody", "x", configuration=config)


# --------------------------------------------------------------------------- load registry and control


class FakeGenerator:
    """LoadGenerator's constructor and start(), handing out FakeRuns with one window already measured."""

    made: list[FakeGenerator] = []  # noqa: RUF012

    def __init__(self, base_url: str, report_dir: Path, seed: int = 0, timeline: Timeline | None = None) -> None:
        self.base_url, self.report_dir, self.seed = base_url, Path(report_dir), seed
        self.kwargs: dict[str, Any] = {}
        FakeGenerator.made.append(self)

    def start(self, **kwargs: Any) -> FakeRun:
        if kwargs.get("rate") is not None and kwargs["rate"] <= 0:
            raise ValueError(f"rate must be a positive number of requests per second, not {kwargs['rate']}")
        self.kwargs = kwargs
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / "load-worker.log").write_text("")
        now = time.time()
        return FakeRun(self.report_dir, [window(now - 3 + i, [5.0] * 20) for i in range(3)])


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch) -> type[FakeGenerator]:
    FakeGenerator.made = []
    monkeypatch.setattr(load_sessions, "LoadGenerator", FakeGenerator)
    return FakeGenerator


def test_start_and_stop_load(
    fake: FakeBackend, config: dict[str, Any], generator: type[FakeGenerator], tmp_path: Path
) -> None:
    started = actions.start_load(rate="50", path="/x", headers={"end-user": "jason"}, configuration=config)  # type: ignore[arg-type]
    assert started["mode"] == "open" and started["rate"] == 50.0 and started["path"] == "/x"
    assert started["report_dir"] == str(tmp_path / "r") and started["first_window"]["requests"] == 20
    gen = generator.made[0]
    assert gen.base_url == fake.ingress_url()
    assert gen.kwargs == {
        "rate": 50.0,
        "users": None,
        "path": "/x",
        "headers": {"end-user": "jason"},
        "timeout_s": 30.0,
    }
    with pytest.raises(ActivityFailed, match=r"a load is already running on the fake mesh .*stop it first"):
        actions.start_load(users=3, configuration=config)

    summary = actions.stop_load(configuration=config)
    assert summary["overall"]["requests"] == 60 and summary["overall"]["p99_ms"] == pytest.approx(5.0, rel=1e-2)
    assert summary["files"]["result"] == str(tmp_path / "r" / "result.json")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["mode"] == "open"
    json.dumps(summary, allow_nan=False)
    with pytest.raises(ActivityFailed, match="no load is running"):
        actions.stop_load(configuration=config)
    # A second load in the same report folder gets its own subfolder.
    assert actions.start_load(users=2, configuration=config)["report_dir"] == str(tmp_path / "r" / "load-2")
    assert load_sessions.stop_all() == [
        f"stopped the load on the fake mesh at {fake.state_file} (its files: {tmp_path / 'r' / 'load-2'})"
    ]


def test_start_load_refusals_are_activity_failures(config: dict[str, Any], generator: type[FakeGenerator]) -> None:
    with pytest.raises(ActivityFailed, match="rate must be a number of 0 or more"):
        actions.start_load(rate=-1, configuration=config)
    with pytest.raises(ActivityFailed, match="cannot start the load: rate must be a positive number"):
        actions.start_load(rate=0, configuration=config)
    with pytest.raises(ActivityFailed, match="users must be a whole number"):
        actions.start_load(users=2.5, configuration=config)  # type: ignore[arg-type]


def test_a_load_with_a_duration_stops_by_itself(config: dict[str, Any], generator: type[FakeGenerator]) -> None:
    actions.start_load(rate=10, duration=0.2, configuration=config)
    session = next(iter(load_sessions._sessions.values()))
    assert session.timer is not None
    session.timer.join(timeout=5)
    assert session.summary is not None and not session.run.alive
    with pytest.raises(ActivityFailed, match="has stopped: start load first"):
        probes.load_stats(configuration=config)
    assert actions.stop_load(configuration=config)["overall"]["requests"] == 60


def test_the_control_runs_load_around_the_experiment_and_journals_it(
    fake: FakeBackend, config: dict[str, Any], generator: type[FakeGenerator]
) -> None:
    arguments = {"rate": 25, "path": "/"}
    control.validate_control({"name": "load", "provider": {"type": "python", "module": "x", "arguments": arguments}})
    control.before_experiment_control({}, configuration=config, **arguments)
    session = load_sessions.find(fake)
    assert session is not None and session.owner == "action" and session.request["rate"] == 25.0
    for hook in ("hypothesis", "method", "hypothesis", "rollback"):
        getattr(control, f"before_{hook}_control")({}, configuration=config, **arguments)
        getattr(control, f"after_{hook}_control")({}, configuration=config, **arguments)
    journal: dict[str, Any] = {"status": "completed"}
    control.after_experiment_control({}, state=journal, configuration=config, **arguments)
    assert [s["name"] for s in session.stages] == ["steady-state-before", "method", "steady-state-after", "rollbacks"]
    assert all(s["end"] is not None for s in session.stages)
    # Each stage is a phase of the load, so the report shows the experiment's stages like any test's phases.
    stages = ["steady-state-before", "method", "steady-state-after", "rollbacks"]
    assert session.run.phases == [step for name in stages for step in (("begin", name), ("end", None))]  # type: ignore[attr-defined]
    assert set(journal["load"]["stages"]) == {"steady-state-before", "method", "steady-state-after", "rollbacks"}
    assert journal["load"]["overall"]["requests"] == 60
    assert load_sessions.find(fake) is None
    control.cleanup_control()  # nothing left to stop


def test_the_control_interrupts_the_experiment_when_load_cannot_start(
    config: dict[str, Any], generator: type[FakeGenerator], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(
        InterruptExecution, match="the load did not start: cannot start the load: rate must be a positive"
    ):
        control.before_experiment_control({}, configuration=config, rate=0)
    assert "the load did not start" in caplog.text


def test_cleanup_control_stops_a_load_the_run_left(
    fake: FakeBackend, config: dict[str, Any], generator: type[FakeGenerator]
) -> None:
    control.before_experiment_control({}, configuration=config, users=3)
    session = load_sessions.find(fake)
    assert session is not None
    control.cleanup_control()
    assert session.summary is not None and load_sessions.find(fake) is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "give exactly one of rate"),
        ({"rate": 1, "users": 2}, "give exactly one of rate"),
        ({"rate": 1, "duration": 5}, "unknown argument duration"),
    ],
)
def test_validate_control(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidActivity, match=message):
        control.validate_control(
            {"name": "load", "provider": {"type": "python", "module": "x", "arguments": arguments}}
        )


def test_at_exit_faults_left_in_force_are_reported(fake: FakeBackend, config: dict[str, Any]) -> None:
    actions.inject_delay("http-lb", "300ms", verify="traffic", configuration=config)
    left = load_sessions.faults_left()
    assert (
        len(left) == 1
        and "VirtualService/http-lb" in left[0]
        and "clear_faults in the experiment's rollbacks" in left[0]
    )
    actions.clear_faults(configuration=config)
    assert load_sessions.faults_left() == []


def test_summary_handles_nan_and_json(tmp_path: Path, fake: FakeBackend) -> None:
    run = FakeRun(tmp_path, [window(time.time() - 1, [])])
    session = register_load(fake, run, tmp_path)
    session.stage("method", end=False)
    summary = session.stop()
    assert summary["overall"]["p99_ms"] is None and summary["overall"]["error_rate"] is None
    assert math.isfinite(summary["duration_s"])
    json.dumps(summary, allow_nan=False)
    assert session.stop() is summary and run.stops == 1  # idempotent


# --------------------------------------------------------------------------- discovery


def test_discover_lists_every_action_and_probe() -> None:
    discovery = discover(discover_system=False)
    names = {(a["type"], a["name"]) for a in discovery["activities"]}
    assert names == {("action", n) for n in actions.__all__} | {("probe", n) for n in probes.__all__}
    assert discovery["extension"]["name"] == "pytest-clover" and discovery["system"] is None
    delay = next(a for a in discovery["activities"] if a["name"] == "inject_delay")
    assert [a["name"] for a in delay["arguments"]][:3] == ["service", "delay", "percent"]
    assert "500ms" in delay["doc"]


def test_importing_the_package_does_not_import_chaoslib() -> None:
    code = "import sys, pytest_clover, pytest_clover.chaos; print('chaoslib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_a_run_longer_than_the_ring_counts_every_window(tmp_path: Path, fake: FakeBackend) -> None:
    from pytest_clover.load.result import RECENT_WINDOWS

    now = time.time()
    total = RECENT_WINDOWS + 5
    template = window(0.0, [5.0] * 2)
    run = FakeRun(tmp_path)
    for i in range(total):
        run.result.ingest({**template, "start": now - total + i, "end": now - total + i + 1})
    summary = register_load(fake, run, tmp_path, started=now - total).stop()
    overall = summary["overall"]
    assert overall["requests"] == 2 * total and overall["windows"] == total
    assert overall["percentiles_over_seconds"] == float(RECENT_WINDOWS)
    assert overall["p50_ms"] == pytest.approx(5.0, rel=1e-2)
