"""Fixture wiring: the session mesh, per-worker state dirs, the load fixture's report dirs, the shared timeline."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import SDC, Project, run


def test_the_mesh_is_deployed_once_per_session_and_torn_down_at_its_end(project: Project) -> None:
    project.pytester.makepyfile(
        """
        def test_first(mesh):
            assert mesh.ingress_url.startswith("http://127.0.0.1:")  # the fake ingress answers HTTP
            assert mesh.backend.name == "fake"
            servers = mesh.pods("clover-server")
            assert sorted(p.version for p in servers) == ["v1", "v1", "v1", "v2"]
            assert len(mesh.pods()) == 9  # 8 pods and the ingress gateway

        def test_second(mesh):
            assert mesh.backend.history.count("deploy") == 1
            pod = mesh.pods("http-lb")[0].name
            mesh.backend.bump("upstream_rq_total", 5, pod=pod)
            assert mesh.stats("http-lb") == {"upstream_rq_total": 5}
            assert mesh.pod_stats(pod) == {"upstream_rq_total": 5}
            assert any(o["kind"] == "Gateway" for o in mesh.istio_objects())
        """
    )
    project.run().assert_outcomes(passed=2)
    mesh = project.mesh()
    assert not mesh.deployed and mesh.history == ["deploy", "teardown"]


def test_no_test_needs_the_mesh_so_none_is_deployed(project: Project) -> None:
    project.pytester.makepyfile("def test_plain(clover_settings): assert clover_settings.backend == 'local'")
    project.run().assert_outcomes(passed=1)
    assert not project.state_file.exists()


def test_keep_mesh_leaves_it_running_and_says_how_to_reach_it(project: Project) -> None:
    project.pytester.makepyfile("def test_it(mesh, faults): faults.delay('http-lb', '1s').verify()")
    result = project.run("--clover-keep-mesh")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"mesh kept running (fake): state in {project.state_file}; stop it with *"])
    mesh = project.mesh()
    assert mesh.deployed and "teardown" not in mesh.history
    assert not any("fault" in json.dumps(o) for o in mesh.istio_objects())  # faults are reverted anyway


def test_the_local_backend_gets_a_state_dir_of_its_own_per_xdist_worker(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nclover_topology = {SDC}\n")
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(config):
            # What pytest-xdist gives a worker: its id, and what the controller put in workerinput.
            config.workerinput = {"workerid": "gw3", "clover_seed": 99, "clover_run_id": "run-1"}
        """
    )
    pytester.makepyfile(
        """
        from pytest_clover.backends.local.client import LocalBackend

        def test_backend(clover_backend, clover_settings, tmp_path_factory):
            assert isinstance(clover_backend, LocalBackend)
            assert clover_backend.state.root == tmp_path_factory.getbasetemp() / "clover-mesh-gw3"
            assert (clover_settings.worker_id, clover_settings.seed, clover_settings.run_id) == ("gw3", 99, "run-1")
            assert clover_backend.seed == 99 and not clover_backend.detach
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_load_runs_against_the_ingress_with_the_seed_and_time_scale_in_the_tests_report_dir(project: Project) -> None:
    project.pytester.makepyfile(
        test_wiring="""
        import pytest

        @pytest.mark.parametrize("n", [1])
        def test_load(load, faults, mesh, n):
            run = load.start(rate=50, path="/x", headers={"end-user": "jason"})
            run.phase("baseline", seconds=4)
            with faults.delay("http-lb", "300ms"):
                run.phase("fault", seconds=4)
            result = run.stop()
            assert run.stop() is result and load.last_result is result
            assert result.phases["baseline"].requests == 100  # 50/s for 4 s × the 0.5 time scale
            second = load.start(users=3)
            second.mark("note", "left running")
            with pytest.raises(TypeError, match="not both"):
                load.start(rate=1, users=1)
        """
    )
    result = project.run("--clover-seed=4242")
    result.assert_outcomes(passed=1)
    [run_dir] = project.run_dirs()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["replay"].startswith("pytest ") and "--clover-seed=4242" in info["args"]
    assert info["replay"].endswith(" --clover-seed=4242 --clover-time-scale=0.5")
    assert info["replay"].count("--clover-seed") == 1  # the flag given is replaced, not repeated
    test_dir = run_dir / "test_wiring.py__test_load_1"
    generator = json.loads((test_dir / "generator.json").read_text())
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", generator.pop("base_url"))  # the fake mesh's ingress
    assert generator == {
        "seed": 4242,
        "time_scale": 0.5,
        "rate": 50,
        "users": None,
        "path": "/x",
        "paths": {},
        "headers": {"end-user": "jason"},
    }
    assert json.loads((test_dir / "run-2" / "generator.json").read_text())["users"] == 3
    # The second run, left running by the test, was stopped at teardown (stopping writes the result).
    assert (test_dir / "run-2" / "result.json").exists()
    events = [(e["kind"], e["name"]) for e in json.loads((test_dir / "timeline.json").read_text())]
    assert events == [
        ("phase-start", "baseline"),
        ("phase-end", "baseline"),
        ("fault-start", "delay 300ms 100% on http-lb"),
        ("phase-start", "fault"),
        ("phase-end", "fault"),
        ("fault-end", "delay 300ms 100% on http-lb"),
        ("note", "left running"),
        # never verified in the body: the automatic check after it found the effect it had before its revert
        ("fault-verified", "delay 300ms 100% on http-lb"),
    ]


def test_a_topology_warning_is_said_at_deploy_and_in_the_summary(pytester: pytest.Pytester) -> None:
    # Before: `clover validate` warned about a Service that selects no pod, and the run passed in silence.
    import shutil

    topology = pytester.path / "topology"
    shutil.copytree(SDC, topology)
    (topology / "orphan.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: orphan}\n"
        "spec:\n  selector: {app: nobody}\n  ports: [{name: http, port: 9180}]\n"
    )
    pytester.makeini(f"[pytest]\nclover_topology = {topology}\nclover_backend = fake\n")
    pytester.makepyfile("def test_it(mesh): pass")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    warning = "*Service/orphan: spec.selector: warning: {'app': 'nobody'} selects no Deployment's pods*"
    result.stdout.fnmatch_lines(["clover: the topology has 1 warning(s):", warning, "*pytest-clover*", "*", warning])


def test_a_mesh_that_stops_before_a_phase_ends_the_test_at_the_phase_with_one_short_error(project: Project) -> None:
    # Before: the phase ran against nothing, then "inconclusive … was load reaching http-lb?", a
    # ConnectionRefusedError traceback and a second error at teardown.
    project.pytester.makepyfile(
        """
        def test_it(mesh, load, faults):
            run = load.start(rate=10)
            faults.delay("http-lb", "100ms")
            mesh.backend.teardown()  # what a killed supervisor looks like to the plugin
            run.phase("fault", 30)
        """
    )
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*.py:5: MeshNotRunning: the fake mesh is not deployed*"])
    out = result.stdout.str()
    assert "INCONCLUSIVE" not in out and "ERROR at teardown" not in out and "Traceback" not in out
    assert "fake_backend.py" not in out  # the backend's own frames are not the user's business
