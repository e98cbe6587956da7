"""Faults: injected as Istio objects or pod operations, verified in the data plane, always reverted, ledgered."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.errors import ConfigError, FaultInconclusive, InvalidFault
from pytest_clover.faults import Faults, Ledger, read_ledger, sweep_ledger
from pytest_clover.istio.documents import shift_document
from pytest_clover.testing import FakeBackend
from pytest_clover.timeline import Timeline

from .conftest import SDC, Project, by_key, pristine_istio


@pytest.fixture
def fake(tmp_path: Path) -> FakeBackend:
    backend = FakeBackend(SDC, state_file=tmp_path / "mesh.json")
    backend.deploy()
    return backend


@pytest.fixture
def injector(fake: FakeBackend, tmp_path: Path) -> Faults:
    return Faults(fake, ledger=Ledger(tmp_path / "ledger.jsonl"), timeline=Timeline(), verify_timeout=0.3)


def vs(backend: FakeBackend, name: str) -> dict[str, Any] | None:
    return by_key(backend.istio_objects()).get(("VirtualService", name))


# --------------------------------------------------------------------------- the handles, directly


def test_delay_and_abort_merge_into_the_virtual_service_independently_and_revert_out_of_order(
    fake: FakeBackend, injector: Faults
) -> None:
    delay = injector.delay("http-lb", "300ms", percent=50)
    abort = injector.abort("http-lb", status=503, percent=10)
    route = vs(fake, "http-lb")["spec"]["http"][0]  # type: ignore[index]
    assert route["fault"] == {
        "delay": {"fixedDelay": "300ms", "percentage": {"value": 50.0}},
        "abort": {"httpStatus": 503, "percentage": {"value": 10.0}},
    }
    assert [r["destination"]["subset"] for r in route["route"]] == ["v1", "v2"]  # the canary routes are kept
    delay.revert()  # not the last one injected: the abort stays in force
    assert vs(fake, "http-lb")["spec"]["http"][0]["fault"] == {  # type: ignore[index]
        "abort": {"httpStatus": 503, "percentage": {"value": 10.0}}
    }
    delay.revert()  # idempotent
    abort.revert()
    assert by_key(fake.istio_objects()) == by_key(pristine_istio())


def test_reverting_an_earlier_fault_keeps_a_later_one_that_touches_more_objects(
    fake: FakeBackend, injector: Faults, tmp_path: Path
) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: http-lb}\n"
        "spec: {hosts: [http-lb], http: [{route: [{destination: {host: http-lb, subset: v1}}], timeout: 2s}]}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: http-lb}\n"
        "spec: {host: http-lb, subsets: [{name: v1, labels: {version: v1}}]}\n"
    )
    delay = injector.delay("http-lb", "300ms")
    applied = injector.apply(both)
    delay.revert()
    now = by_key(fake.istio_objects())
    assert now[("VirtualService", "http-lb")]["spec"]["http"][0]["timeout"] == "2s"
    assert len(now[("DestinationRule", "http-lb")]["spec"]["subsets"]) == 1  # the later fault is still in force
    applied.revert()
    assert by_key(fake.istio_objects()) == by_key(pristine_istio())


def test_a_verified_fault_lands_on_the_timeline(injector: Faults) -> None:
    with injector.delay("clover-server", "200ms") as handle:
        assert handle.verify() is handle
        assert handle.verified is True
        assert "requests delayed since injection" in handle.detail
    assert injector.timeline is not None
    assert [(e.kind, e.name) for e in injector.timeline.events()] == [
        ("fault-start", "delay 200ms 100% on clover-server"),
        ("fault-verified", "delay 200ms 100% on clover-server"),
        ("fault-end", "delay 200ms 100% on clover-server"),
    ]


@pytest.mark.parametrize(
    ("inject", "message"),
    [
        (lambda f: f.delay("http-lb", "1s"), "http.*.fault.delays_injected did not move in any of 9 pods"),
        (lambda f: f.abort("http-lb", 500, headers={"end-user": "jason"}), "carry the headers"),
        (lambda f: f.scale("clover-server", 1), "3 of 1 pods of clover-server ready"),
        (lambda f: f.shift("http-lb", {"v1": 90, "v2": 10}), "routes http-lb as v1 50/v2 50, not v1 90/v2 10"),
    ],
    ids=["delay", "abort", "scale", "shift"],
)
def test_a_fault_whose_effect_is_not_seen_is_inconclusive(tmp_path: Path, inject: Any, message: str) -> None:
    frozen = FakeBackend(SDC, effects=False)
    frozen.deploy()
    injector = Faults(frozen, verify_timeout=0.2)
    handle = inject(injector)
    with pytest.raises(FaultInconclusive, match="its effect was not seen") as info:
        handle.verify()
    assert message in str(info.value)
    assert handle.verified is False
    injector.revert_all()
    assert by_key(frozen.istio_objects()) == by_key(pristine_istio())


def test_kill_is_verified_by_the_pods_being_gone_and_replaced(fake: FakeBackend, injector: Faults) -> None:
    before = {p.name for p in fake.pods("clover-server")}
    handle = injector.kill("clover-server", count=2)
    assert len(handle.killed) == 2 and set(handle.killed) <= before
    handle.verify()
    now = {p.name for p in fake.pods("clover-server")}
    assert not now & set(handle.killed) and len(now) == len(before)
    handle.revert()  # waits for the replacements: nothing else to undo
    assert not any(h.startswith("scale") for h in fake.history)


def test_scale_is_verified_in_a_callers_endpoints_and_reverted_to_the_previous_replicas(
    fake: FakeBackend, injector: Faults
) -> None:
    with injector.scale("clover-server", 1) as handle:
        handle.verify()
        assert "has 2 endpoints for clover-server" in handle.detail  # 1 v1 pod + the v2 deployment's pod
        assert len(fake.pods("clover-server")) == 2
    assert fake.desired_replicas()["clover-server"] == 3
    assert len(fake.pods("clover-server")) == 4


def test_shift_creates_the_virtual_service_when_there_is_none_and_removes_it_on_revert(
    fake: FakeBackend, injector: Faults
) -> None:
    assert vs(fake, "clover-server") is None
    with injector.shift("clover-server", {"v1": 80, "v2": 20}) as handle:
        handle.verify()
        assert vs(fake, "clover-server")["spec"]["http"] == [  # type: ignore[index]
            {
                "route": [
                    {"destination": {"host": "clover-server", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "clover-server", "subset": "v2"}, "weight": 20},
                ]
            }
        ]
    assert vs(fake, "clover-server") is None


def test_shift_rewrites_only_the_default_routes_of_the_service() -> None:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews"},
            "spec": {
                "hosts": ["reviews"],
                "http": [
                    {
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                    },
                    {"route": [{"destination": {"host": "ratings"}}], "name": "elsewhere"},
                    {
                        "route": [{"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}}],
                        "retries": {"attempts": 2},
                    },
                ],
            },
        }
    ]
    doc = shift_document(objects, "reviews", {"v1": 50, "v3": 50})
    http = doc["spec"]["http"]
    assert http[0] == objects[0]["spec"]["http"][0] and http[1] == objects[0]["spec"]["http"][1]
    assert http[2] == {
        "route": [
            {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 50},
            {"destination": {"host": "reviews", "subset": "v3", "port": {"number": 9080}}, "weight": 50},
        ],
        "retries": {"attempts": 2},
    }
    for weights, message in [
        ({"v1": 80, "v2": 30}, "add up to 100"),
        ({"v1": 100.0}, "whole percentages"),
        ({}, "at least one subset"),
    ]:
        with pytest.raises(InvalidFault, match=message):
            shift_document(objects, "reviews", weights)  # type: ignore[arg-type]


def test_apply_puts_back_what_the_file_replaced_and_refuses_non_istio_kinds(
    fake: FakeBackend, injector: Faults, tmp_path: Path
) -> None:
    dr = tmp_path / "dr.yaml"
    dr.write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: clover-server}\n"
        "spec:\n  host: clover-server\n  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1, interval: 1s}}\n"
    )
    original = by_key(fake.istio_objects())[("DestinationRule", "clover-server")]
    handle = injector.apply(dr)
    handle.verify()
    assert (
        "outlierDetection"
        in by_key(fake.istio_objects())[("DestinationRule", "clover-server")]["spec"]["trafficPolicy"]
    )
    handle.revert()
    assert by_key(fake.istio_objects())[("DestinationRule", "clover-server")] == original
    bad = tmp_path / "deploy.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    with pytest.raises(ConfigError, match=r"Deployment/web: kind: error: only named Istio objects"):
        injector.apply(bad)


def test_a_fault_the_backend_refuses_leaves_no_ledger_entry(fake: FakeBackend, injector: Faults) -> None:
    with pytest.raises(InvalidFault, match="not a duration"):
        injector.delay("http-lb", "soon")
    assert injector.handles == [] and injector.ledger is not None and not injector.ledger.path.exists()


def test_an_injection_interrupted_by_ctrl_c_is_still_reverted(fake: FakeBackend, tmp_path: Path) -> None:
    class Interrupted(FakeBackend):
        def apply(self, yaml_text: str, source: str = "<string>") -> list[Any]:
            warnings = super().apply(yaml_text, source)
            if source.startswith("delay"):
                raise KeyboardInterrupt  # after the change took effect, before the reply came back
            return warnings

    backend = Interrupted(state_file=fake.state_file)
    injector = Faults(backend, ledger=Ledger(tmp_path / "ledger.jsonl"))
    with pytest.raises(KeyboardInterrupt):
        injector.delay("http-lb", "300ms")
    assert [e["kind"] for e in read_ledger(tmp_path / "ledger.jsonl")[1]] == ["delay"]
    injector.revert_all()
    assert by_key(backend.istio_objects()) == by_key(pristine_istio())
    assert not (tmp_path / "ledger.jsonl").exists()


# --------------------------------------------------------------------------- the ledger and the sweep


def write_ledger(path: Path, owner_pid: int, entries: list[dict[str, Any]], torn: bool = False) -> None:
    lines = [json.dumps({"op": "owner", "pid": owner_pid, "create_time": 1.0, "started": 0})]
    lines += [json.dumps({"op": "open", **e}) for e in entries]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ('{"op": "close", "id": "a' if torn else ""))


def faulted_entry(fake: FakeBackend, fault_id: str = "a") -> dict[str, Any]:
    """Leave a delay in force on http-lb, as a killed run would, and the ledger entry it wrote."""
    original = vs(fake, "http-lb")
    Faults(fake).delay("http-lb", "2s")
    return {
        "id": fault_id,
        "kind": "delay",
        "description": "delay 2s 100% on http-lb",
        "mesh": fake.record().as_dict(),
        "revert": {"restore": [{"kind": "VirtualService", "name": "http-lb", "doc": original}]},
    }


def test_sweep_reverts_faults_of_a_dead_run_on_its_mesh_if_it_still_runs(fake: FakeBackend, tmp_path: Path) -> None:
    folder = tmp_path / ".clover"
    write_ledger(folder / "ledger-main-1.jsonl", owner_pid=1, entries=[faulted_entry(fake)], torn=True)
    assert vs(fake, "http-lb")["spec"]["http"][0].get("fault")  # type: ignore[index]
    messages = sweep_ledger(folder)
    assert messages == [f"delay 2s 100% on http-lb: reverted on the fake mesh at {fake.state_file}"]
    assert by_key(fake.reload().istio_objects()) == by_key(pristine_istio())
    assert list(folder.iterdir()) == []
    assert sweep_ledger(folder) == []


def test_sweep_drops_faults_whose_mesh_died_and_leaves_live_owners_alone(fake: FakeBackend, tmp_path: Path) -> None:
    folder = tmp_path / ".clover"
    entry = faulted_entry(fake)
    write_ledger(folder / "ledger-gw0-2.jsonl", owner_pid=os.getpid(), entries=[entry])
    # The owner line of a live process needs its real start time to count as alive.
    live = Ledger(folder / "ledger-main-live.jsonl")
    live.open("b", "delay", "held by a running session", fake.record(), entry["revert"])
    fake.teardown()
    messages = sweep_ledger(folder)
    assert messages == [
        f"delay 2s 100% on http-lb: its fake mesh at {fake.state_file} no longer runs; nothing left to revert"
    ]
    assert [p.name for p in folder.iterdir()] == ["ledger-main-live.jsonl"]


def test_sweep_with_an_explicit_backend_reverts_on_it_and_keeps_what_failed(fake: FakeBackend, tmp_path: Path) -> None:
    path = tmp_path / "ledger-main-3.jsonl"
    broken = {
        "id": "b",
        "kind": "scale",
        "description": "scale nothing to 2",
        "mesh": {},
        "revert": {"scale": {"deployment": "nothing", "replicas": 2}},
    }
    write_ledger(path, owner_pid=3, entries=[faulted_entry(fake), broken])
    messages = sweep_ledger(path, FakeBackend(state_file=fake.state_file))
    assert messages[0].startswith("scale nothing to 2: could not be reverted (no Deployment 'nothing')")
    assert messages[1] == "delay 2s 100% on http-lb: reverted on the fake mesh at " + str(fake.state_file)
    assert [e["id"] for e in read_ledger(path)[1]] == ["b"]  # kept for the next sweep


# --------------------------------------------------------------------------- the fixture, in pytest runs


def test_the_faults_fixture_ledgers_each_fault_before_injecting_it(project: Project) -> None:
    project.pytester.makepyfile(
        """
        import os
        from pytest_clover.faults import read_ledger

        def test_ledger(mesh, faults, pytestconfig, monkeypatch):
            folder = pytestconfig.rootpath / "reports" / ".clover"
            seen = []
            apply = mesh.backend.apply

            def spy(text, source="<string>"):
                [path] = folder.glob("ledger-main-*.jsonl")
                seen.append(read_ledger(path))
                return apply(text, source)

            monkeypatch.setattr(mesh.backend, "apply", spy)
            original = next(o for o in mesh.istio_objects() if (o["kind"], o["metadata"]["name"]) == ("VirtualService", "http-lb"))
            handle = faults.delay("http-lb", "300ms")
            owner, [entry] = seen[0]
            assert owner["pid"] == os.getpid()
            assert entry["kind"] == "delay" and entry["mesh"]["backend"] == "fake"
            assert entry["revert"] == {"restore": [{"kind": "VirtualService", "name": "http-lb", "doc": original}]}
            handle.revert()
            assert list(folder.iterdir()) == []
        """
    )
    project.run().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ending", "outcome"),
    [
        ("assert False, 'the system failed'", {"failed": 1}),
        ("raise RuntimeError('the test broke')", {"failed": 1}),
        ("raise KeyboardInterrupt", None),
    ],
    ids=["assertion", "exception", "ctrl-c"],
)
def test_every_fault_is_reverted_in_reverse_order_whatever_ends_the_test(
    project: Project, ending: str, outcome: dict[str, int] | None
) -> None:
    (project.path / "faults").mkdir()
    (project.path / "faults" / "dr.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: http-lb}\n"
        "spec: {host: http-lb, subsets: [{name: v1, labels: {version: v1}}]}\n"
    )
    project.pytester.makepyfile(
        f"""
        def test_chaos(mesh, faults):
            faults.delay("http-lb", "500ms", percent=50)
            faults.abort("clover-server", 503, percent=10)
            faults.shift("http-lb", {{"v1": 90, "v2": 10}})
            faults.scale("clover-server", 1)
            faults.apply("faults/dr.yaml")
            faults.kill("snort-ids")
            {ending}
        """
    )
    result = project.run()
    if outcome is None:
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    else:
        result.assert_outcomes(**outcome)
    mesh = project.mesh()
    assert by_key(mesh.istio_objects()) == by_key(pristine_istio())
    assert mesh.desired["clover-server"] == 3
    applied = [h for h in mesh.history if h.split()[0] in ("apply", "remove", "scale")]
    assert applied == [
        "apply VirtualService/http-lb",
        "apply VirtualService/clover-server",
        "apply VirtualService/http-lb",
        "scale clover-server 1",
        "apply DestinationRule/http-lb",
        # the reverts, newest first
        "apply DestinationRule/http-lb",
        "scale clover-server 3",
        "apply VirtualService/http-lb",
        "remove VirtualService/clover-server",
        "apply VirtualService/http-lb",
    ]
    assert mesh.history[-1] == "teardown"
    assert project.open_ledger_entries() == []


def test_a_fault_verified_inside_the_test_that_did_not_act_makes_the_test_error_as_inconclusive(
    project: Project,
) -> None:
    project.effects(False)
    project.pytester.makepyfile(
        """
        def test_delay_absorbed(mesh, faults):
            faults.verify_timeout = 0.2
            with faults.delay("http-lb", "300ms") as fault:
                fault.verify()
            assert True
        """
    )
    result = project.run("-v", "-rE")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_delay_absorbed INCONCLUSIVE*",
            "*ERROR at call of test_delay_absorbed*",
            "*FaultInconclusive: delay 300ms 100% on http-lb: its effect was not seen*Was load reaching http-lb*",
        ]
    )
    assert by_key(project.mesh().istio_objects()) == by_key(pristine_istio())


def test_a_fault_never_verified_is_checked_after_the_body_so_it_cannot_pass_silently(project: Project) -> None:
    project.effects(False)
    project.pytester.makepyfile(
        """
        def test_reverted_in_the_body(mesh, faults):
            faults.verify_timeout = 0.2
            with faults.abort("http-lb", 503):
                pass

        def test_left_open(mesh, faults):
            faults.verify_timeout = 0.2
            faults.shift("http-lb", {"v1": 100, "v2": 0})
        """
    )
    result = project.run("-v")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_reverted_in_the_body INCONCLUSIVE*",
            "*test_left_open INCONCLUSIVE*",
            "*FaultInconclusive: 1 fault was never seen to take effect:",
            "*abort 503 100% on http-lb: its effect was not seen*",
        ]
    )
    assert "passed" not in result.stdout.str().splitlines()[-1]


def test_faults_that_acted_let_the_test_pass(project: Project) -> None:
    project.pytester.makepyfile(
        """
        def test_everything_acts(mesh, faults):
            with faults.delay("http-lb", "300ms"), faults.abort("clover-server", 503, percent=5):
                pass
            faults.kill("clover-server")
            faults.scale("http-lb-v2", 2)
            faults.shift("http-lb", {"v1": 20, "v2": 80})
        """
    )
    project.run().assert_outcomes(passed=1)


def test_a_pytest_killed_with_sigkill_is_swept_by_the_next_run(project: Project) -> None:
    project.pytester.makepyfile(
        test_killed=f"""
        import os

        def test_killed(mesh, faults):
            faults.delay("http-lb", "300ms")
            faults.scale("clover-server", 1)
            os.kill(os.getpid(), {int(signal.SIGKILL)})
        """
    )
    killed = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    assert killed.ret == -signal.SIGKILL
    mesh = project.mesh()
    assert mesh.deployed and mesh.desired["clover-server"] == 1  # the run died: nothing was reverted
    assert [e["kind"] for e in project.open_ledger_entries()] == ["delay", "scale"]

    (project.path / "test_killed.py").unlink()
    project.pytester.makepyfile(test_next="def test_next(): pass")
    result = project.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "clover: swept 2 faults left open by a killed run:",
            f"  scale clover-server to 1: reverted on the fake mesh at {project.state_file}",
            f"  delay 300ms 100% on http-lb: reverted on the fake mesh at {project.state_file}",
            "*swept 2 faults left open by a killed run (see the top)*",
        ]
    )
    mesh = project.mesh()
    assert by_key(mesh.istio_objects()) == by_key(pristine_istio())
    assert mesh.desired["clover-server"] == 3
    assert project.open_ledger_entries() == [] and list(project.ledger_dir.iterdir()) == []


@pytest.mark.parametrize(
    "inject",
    [
        lambda f: f.delay("http-lbb", "100ms"),
        lambda f: f.abort("no-such-service"),
        lambda f: f.shift("clover-servr", {"v1": 100}),
    ],
)
def test_a_fault_on_a_service_the_mesh_does_not_have_is_refused_at_once(
    fake: FakeBackend, injector: Faults, inject: Any
) -> None:
    # Before: accepted, then INCONCLUSIVE after the verification timeout, with a hint about load.
    with pytest.raises(InvalidFault, match=r"no service '[a-z-]+' in the mesh; (did you mean [a-z-]+\? )?services: "):
        inject(injector)
    assert injector.handles == [] and fake.reload().history == ["deploy"]


def test_scale_takes_a_whole_number_of_replicas(injector: Faults) -> None:
    with pytest.raises(InvalidFault, match="replicas must be a whole number of 0 or more, got '2'"):
        injector.scale("clover-server", "2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count must be a whole number of pods, 1 or more, got 0"),
        ({"count": "2"}, "count must be a whole number of pods, 1 or more, got '2'"),
        ({"percent": 500}, r"percent must be more than 0 and at most 100 \(a share of the pods\), got 500"),
        ({"grace": -1}, "grace must be 0 or more seconds, got -1"),
    ],
)
def test_kill_arguments_are_checked_before_anything_is_killed(
    fake: FakeBackend, injector: Faults, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFault, match=message):
        injector.kill("clover-server", **kwargs)
    assert fake.reload().history == ["deploy"]


def test_a_mesh_that_stops_mid_test_is_one_clear_error_at_once_not_an_inconclusive_fault(project: Project) -> None:
    # Before: ~27 s of polling, then "inconclusive … was load reaching http-lb?" and a second error at teardown.
    project.pytester.makepyfile(
        """
        import time

        def test_it(mesh, faults):
            fault = faults.delay("http-lb", "1s")
            mesh.backend.teardown()  # what a killed supervisor looks like to the fault engine
            started = time.monotonic()
            try:
                fault.verify(timeout=30)
            finally:
                assert time.monotonic() - started < 5
        """
    )
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*MeshNotRunning: the fake mesh is not deployed*"])
    result.stdout.fnmatch_lines(["delay 1s 100% on http-lb: not reverted, the mesh is not running*clover cleanup*"])
    assert "INCONCLUSIVE" not in result.stdout.str() and "ERROR at teardown" not in result.stdout.str()


def test_faults_a_killed_run_left_on_a_kept_mesh_are_found_from_any_report_dir(project: Project) -> None:
    # Before: only the next run with the same report dir reverted them; `clover cleanup` did not find them.
    project.pytester.makepyfile(
        test_killed=f"""
        import os

        def test_killed(mesh, faults):
            faults.delay("http-lb", "300ms")
            os.kill(os.getpid(), {int(signal.SIGKILL)})
        """
    )
    killed = project.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--clover-keep-mesh", "--clover-report-dir=first"
    )
    assert killed.ret == -signal.SIGKILL
    assert project.mesh().deployed and "fault" in json.dumps(project.mesh().istio_objects())

    (project.path / "test_killed.py").unlink()
    project.pytester.makepyfile(test_next="def test_next(): pass")
    result = project.run("--clover-report-dir=elsewhere")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"  delay 300ms 100% on http-lb: reverted on the fake mesh at {project.state_file}"]
    )
    assert by_key(project.mesh().istio_objects()) == by_key(pristine_istio())
    from pytest_clover.faults import registered_ledgers

    assert registered_ledgers() == []


def test_clover_cleanup_reverts_the_faults_a_killed_run_left_on_a_kept_mesh(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: `clover cleanup` said "left running: … its owner is alive" and the fault stayed in force.
    project.pytester.makepyfile(
        test_killed=f"""
        import os

        def test_killed(mesh, faults):
            faults.delay("http-lb", "300ms")
            os.kill(os.getpid(), {int(signal.SIGKILL)})
        """
    )
    killed = project.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--clover-keep-mesh", "--clover-report-dir=far/away"
    )
    assert killed.ret == -signal.SIGKILL
    assert by_key(project.mesh().istio_objects()) != by_key(pristine_istio())

    from pytest_clover.cli.main import main
    from pytest_clover.faults import registered_ledgers

    # Another folder than the run's report dir: the ledger is found through this user's runtime folder.
    monkeypatch.chdir(project.path.parent)
    assert main(["cleanup"]) == 0
    out = capsys.readouterr().out
    assert "fault swept: delay 300ms 100% on http-lb: reverted" in out
    assert by_key(project.mesh().istio_objects()) == by_key(pristine_istio())
    assert registered_ledgers() == []
