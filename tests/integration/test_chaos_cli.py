"""The Chaos Toolkit extension end to end: the real `chaos run` against a mesh started with `clover up`.

One mesh for the module, started and stopped with the ``clover`` command in a temporary state dir (an isolated
registry); every experiment runs as ``python -m chaostoolkit run`` in a temporary folder with an empty settings
file, and the assertions read its journal and the mesh afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import MeshState

from .conftest import SDC

pytestmark = pytest.mark.integration

ROOT = SDC.parents[1]
DELAYED = "http.outbound.fault.delays_injected"


def clover(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"clover {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def up(runtime_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A mesh started by `clover up` in a temporary state dir; `clover down` afterwards, whatever happened."""
    state_dir = tmp_path_factory.mktemp("chaos-mesh") / "state"
    env = dict(os.environ)
    env.pop("CLOVER_STATE_DIR", None)
    env["CLOVER_RUNTIME_DIR"] = str(runtime_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        clover("--state-dir", str(state_dir), "up", "--topology", str(SDC), "--seed", "5", env=env)
        owner = MeshState(state_dir).owner()
        yield state_dir, env
    finally:
        clover("--state-dir", str(state_dir), "down", env=env)
    assert owner is not None and not owner.alive(), "the mesh's supervisor outlived `clover down`"
    assert not state_dir.exists()


def chaos_run(experiment: dict[str, Any], folder: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """Run the experiment with the real `chaos` CLI; (exit code, journal, console output)."""
    (folder / "settings.yaml").write_text("{}\n")
    source = folder / "experiment.yaml"
    source.write_text(yaml.safe_dump(experiment, sort_keys=False))
    journal = folder / "journal.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaostoolkit",
            "--no-version-check",
            "--settings",
            str(folder / "settings.yaml"),
            "--log-file",
            str(folder / "chaostoolkit.log"),
            "run",
            "--rollback-strategy",
            "always",
            "--journal-path",
            str(journal),
            str(source),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert journal.exists(), f"chaos run wrote no journal (exit {proc.returncode}):\n{output}"
    return proc.returncode, json.loads(journal.read_text()), output


def python(func: str, module: str = "actions", **arguments: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": f"pytest_clover.chaos.{module}", "func": func}
    if arguments:
        provider["arguments"] = arguments
    return provider


def load_control(**arguments: Any) -> dict[str, Any]:
    """The provider of the load control (a control names a module, not a function)."""
    return {"type": "python", "module": "pytest_clover.chaos.control", "arguments": arguments}


def virtual_service(state_dir: Path, name: str) -> dict[str, Any] | None:
    objects = LocalBackend(state_dir=state_dir).istio_objects()
    return next((o for o in objects if o["kind"] == "VirtualService" and o["metadata"]["name"] == name), None)


def load_worker_running(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and "pytest_clover.load.worker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def run_failures(run: dict[str, Any]) -> str:
    return "".join(run.get("exception") or [])


def test_a_delay_on_http_lb_is_absorbed_then_rolled_back(up: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    state_dir, env = up
    original = virtual_service(state_dir, "http-lb")
    assert original is not None
    slo = {
        "type": "probe",
        "name": "slo-met",
        "tolerance": {"type": "regex", "target": "verdict", "pattern": "^met$"},
        "provider": python("slo_met", "probes", last_seconds=3, p99_ms=1000, max_error_rate=0.01),
    }
    experiment = {
        "title": "http-lb absorbs a 300 ms delay",
        "description": "p99 stays under 1 s while every request to http-lb waits 300 ms",
        "configuration": {"clover_state_dir": str(state_dir), "clover_report_dir": str(tmp_path / "load")},
        "controls": [{"name": "clover-load", "provider": load_control(rate=20)}],
        "steady-state-hypothesis": {"title": "the SLO is met", "probes": [slo]},
        "method": [
            {
                "type": "action",
                "name": "delay-http-lb",
                "provider": python("inject_delay", service="http-lb", delay="300ms"),
            },
            {
                "type": "probe",
                "name": "latency-under-the-delay",
                "provider": python("load_stats", "probes", last_seconds=2),
                "pauses": {"before": 4},
            },
            {
                "type": "probe",
                "name": "delays-counted-by-the-caller",
                "provider": python("envoy_counter", "probes", service="proxy-access-control", stat=DELAYED),
            },
        ],
        "rollbacks": [{"type": "action", "name": "clear-faults", "provider": python("clear_faults")}],
    }
    code, journal, output = chaos_run(experiment, tmp_path, env)

    assert journal["status"] == "completed" and journal["deviated"] is False, output
    assert code == 0, output
    before, after = journal["steady_states"]["before"], journal["steady_states"]["after"]
    assert before["steady_state_met"] is True and after["steady_state_met"] is True
    for state in (before, after):
        probe = state["probes"][0]
        assert probe["status"] == "succeeded" and probe["tolerance_met"] is True
        assert probe["output"]["verdict"] == "met" and probe["output"]["observed"]["requests"] >= 40
        assert probe["output"]["thresholds"] == {"p99_ms": 1000.0, "max_error_rate": 0.01}
    assert after["probes"][0]["output"]["observed"]["p50_ms"] >= 290  # the delay was in force, and absorbed

    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert all(r["status"] == "succeeded" for r in runs.values()), [run_failures(r) for r in runs.values()]
    injected = runs["delay-http-lb"]["output"]
    assert (
        injected["verified_by"] == "config and traffic" and "requests delayed since injection" in injected["verified"]
    )
    assert runs["latency-under-the-delay"]["output"]["p50_ms"] >= 290
    assert runs["delays-counted-by-the-caller"]["output"] >= 20

    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    assert journal["rollbacks"][0]["output"]["restored"] == ["http-lb"]
    assert virtual_service(state_dir, "http-lb") == original

    load = journal["load"]
    assert list(load["stages"]) == ["steady-state-before", "method", "steady-state-after", "rollbacks"]
    assert load["stages"]["steady-state-before"]["p50_ms"] < 200 <= load["stages"]["method"]["p50_ms"]
    assert load["overall"]["errors"] == 0 and (tmp_path / "load" / "result.json").exists()
    assert not load_worker_running(load["pid"])


def test_failed_injections_are_failed_activities_and_leave_the_mesh_as_it_was(
    up: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    state_dir, env = up
    original = virtual_service(state_dir, "http-lb")
    experiment = {
        "title": "injections that cannot take effect",
        "description": "an unknown service, and an abort no request of the load can trigger",
        "configuration": {"clover_state_dir": str(state_dir), "clover_report_dir": str(tmp_path / "load")},
        "controls": [{"name": "clover-load", "provider": load_control(rate=10)}],
        "method": [
            {
                "type": "action",
                "name": "delay-a-typo",
                "provider": python("inject_delay", service="http-lbb", delay="300ms"),
            },
            {
                "type": "action",
                "name": "abort-nobody",
                "provider": python(
                    "inject_abort", service="http-lb", headers={"x-clover-never": "1"}, verify="traffic", timeout=2
                ),
            },
        ],
    }
    code, journal, output = chaos_run(experiment, tmp_path, env)

    # Chaos Toolkit's own semantics: a failed action does not fail the experiment, its journal entry does.
    assert journal["status"] == "completed" and code == 0, output
    typo, nobody = journal["run"]
    assert typo["status"] == "failed" and typo["output"] is None
    assert "no service 'http-lbb' in the mesh; did you mean http-lb?" in run_failures(typo)
    assert nobody["status"] == "failed" and nobody["output"] is None
    message = run_failures(nobody)
    assert "abort 503 100% on http-lb (requests with x-clover-never=1): its effect was not seen" in message
    assert "(it was reverted)" in message
    # Nothing in the rollbacks: the failed action took its own fault back.
    assert virtual_service(state_dir, "http-lb") == original
    assert journal["load"]["overall"]["requests"] > 0 and not load_worker_running(journal["load"]["pid"])


def test_an_experiment_against_no_mesh_says_to_run_clover_up(up: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, env = up
    nowhere = tmp_path / "no-mesh-here"
    experiment = {
        "title": "no mesh",
        "description": "the configuration points at a state dir where nothing runs",
        "configuration": {"clover_state_dir": str(nowhere)},
        "method": [{"type": "action", "name": "clear", "provider": python("clear_faults")}],
    }
    _, journal, output = chaos_run(experiment, tmp_path, env)
    (run,) = journal["run"]
    assert run["status"] == "failed", output
    assert f"no clover mesh is running at {nowhere}" in run_failures(run)
    assert f"`clover --backend local up --location {nowhere}`" in run_failures(run)


SHIPPED = sorted((ROOT / "faults").glob("*.yaml"))


def test_every_experiment_in_faults_is_shipped() -> None:
    assert [p.name for p in SHIPPED] == [
        "canary-bad-v2.yaml",
        "clover-server-pod-kill.yaml",
        "http-lb-delay.yaml",
        "ids-outage.yaml",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_chaos_run_completes_each_shipped_experiment_against_clover_up(
    up: tuple[Path, dict[str, str]], tmp_path: Path, path: Path
) -> None:
    """What the README tells users: `clover up`, then `chaos run faults/<file>` (the mesh named by env)."""
    state_dir, env = up
    before = LocalBackend(state_dir=state_dir).istio_objects()
    experiment = yaml.safe_load(path.read_text())
    code, journal, output = chaos_run(experiment, tmp_path, {**env, "CLOVER_STATE_DIR": str(state_dir)})
    assert code == 0, output
    assert journal["status"] == "completed" and journal["deviated"] is False, output
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    assert all(run["status"] == "succeeded" for run in journal["run"]), json.dumps(journal["run"], default=str)[:2000]
    assert journal["rollbacks"] and all(r["status"] == "succeeded" for r in journal["rollbacks"])
    assert journal["load"]["overall"]["requests"] > 0  # the control ran load through the whole experiment
    # The rollbacks put the mesh back: the same Istio objects, every Deployment at its size.
    after = LocalBackend(state_dir=state_dir).istio_objects()
    assert sorted(json.dumps(o, sort_keys=True) for o in after) == sorted(json.dumps(o, sort_keys=True) for o in before)
    backend = LocalBackend(state_dir=state_dir)
    backend.wait_ready(timeout=60)
    assert len([p for p in backend.pods("snort-ids") if p.ready]) == 1
