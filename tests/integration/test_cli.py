"""The `clover` command end to end, and the lifecycle guarantees: nothing outlives a mesh."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import MeshState
from pytest_clover.errors import ReadinessTimeout
from tests.helpers import Client, wait_for

from .conftest import SDC

pytestmark = pytest.mark.integration


def clover(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"clover {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli_env(tmp_path: Path, runtime_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CLOVER_STATE_DIR"] = str(tmp_path / "mesh")
    env["CLOVER_RUNTIME_DIR"] = str(runtime_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SDC.parents[1]), env.get("PYTHONPATH")]))
    return env


def _listening(ip: str, port: int) -> bool:
    """True if something still listens there. SO_REUSEADDR, as servers use: TIME_WAIT leftovers do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            s.listen()
        except OSError:
            return True
    return False


def _footprint(status: dict[str, Any], state_dir: Path) -> tuple[list[psutil.Process], list[tuple[str, int]]]:
    state = MeshState(state_dir)
    procs = [psutil.Process(r.pid) for r in state.read_pids()]
    owner = state.owner()
    assert owner is not None
    procs.append(psutil.Process(owner.pid))
    # Envoy admin APIs are Unix sockets in the state dir (gone with it); every TCP port is in the block.
    ports = [(p["ip"], int(port)) for p in status["pods"] for port in p["ports"].values()]
    return procs, ports


def _descendants(state_dir: Path) -> list[psutil.Process]:
    """The supervisor and every process below it now, recorded in pids.json or not (the zygote's pods too)."""
    owner = MeshState(state_dir).owner()
    if owner is None:
        return []
    try:
        root = psutil.Process(owner.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _listening_in_block(block: str) -> list[tuple[str, int]]:
    """Every listening socket on the mesh's loopback block: the pods' ports and the xDS server."""
    return sorted(
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet4")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip.startswith(f"{block}.")
    )


def _assert_gone(
    procs: list[psutil.Process],
    ports: list[tuple[str, int]],
    state_dir: Path,
    runtime: Path,
    block: str | None = None,
) -> None:
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running: {[(p.pid, p.cmdline()[:3]) for p in alive]}"
    busy = [ip_port for ip_port in ports if _listening(*ip_port)]
    assert not busy, f"ports still bound: {busy}"
    if block is not None:
        assert _listening_in_block(block) == [], f"still listening in {block}.0/24"
    assert not state_dir.exists(), f"state left behind: {list(state_dir.rglob('*'))[:5]}"
    assert list((runtime / "registry").glob("*.json")) == [] or all(
        json.loads(p.read_text())["state_dir"] != str(state_dir.resolve())
        for p in (runtime / "registry").glob("*.json")
    )


def test_up_inject_kill_scale_down_leaves_nothing(cli_env: dict[str, str], runtime_dir: Path) -> None:
    state_dir = Path(cli_env["CLOVER_STATE_DIR"])
    up = clover("up", "--topology", str(SDC), "--seed", "11", env=cli_env)
    assert "ready in" in up.stdout and "ingress: http://127." in up.stdout
    status = json.loads(clover("status", "--json", env=cli_env).stdout)
    assert {p["service"] for p in status["pods"]} >= {"proxy-access-control", "http-lb", "clover-server", "snort-ids"}
    assert all(p["ready"] for p in status["pods"])
    procs, ports = _footprint(status, state_dir)
    block = MeshState(state_dir).read_mesh()["block"]
    try:
        with Client(status["ingress_url"]) as ingress:
            assert ingress.get("/").status == 200
            out = clover("inject", "abort", "clover-server", "--status", "503", "--percent", "100", env=cli_env).stdout
            assert "injected abort 503" in out
            assert ingress.get("/").status == 503
            clover("clear", env=cli_env)
            assert ingress.get("/").status == 200
            clover("inject", "delay", "http-lb", "--delay", "150ms", env=cli_env)
            assert ingress.get("/").seconds >= 0.15
            clover("clear", env=cli_env)
        killed = clover("kill", "clover-server", "--count", "2", "--wait", env=cli_env).stdout
        assert killed.startswith("killed ") and "replacements ready" in killed
        clover("scale", "clover-server", "4", env=cli_env)
        after = json.loads(clover("status", "--json", env=cli_env).stdout)
        servers = [p for p in after["pods"] if p["deployment"] == "clover-server"]
        assert len(servers) == 4 and all(p["ready"] for p in servers)
        procs += _footprint(after, state_dir)[0]
        ports += _footprint(after, state_dir)[1]
    finally:
        procs += _descendants(state_dir)
        down = clover("down", env=cli_env)
    assert "stopped and removed" in down.stdout
    _assert_gone(procs, ports, state_dir, runtime_dir, block)
    assert not MeshState(state_dir).socket_path.exists()
    # Commands against a mesh that is gone say so, without a traceback.
    gone = clover("status", env=cli_env, check=False)
    assert gone.returncode == 1 and "no mesh" in gone.stderr and "Traceback" not in gone.stderr


def test_cleanup_sweeps_a_mesh_whose_supervisor_was_killed(cli_env: dict[str, str], runtime_dir: Path) -> None:
    state_dir = Path(cli_env["CLOVER_STATE_DIR"])
    clover("up", "--topology", str(SDC), env=cli_env)
    status = json.loads(clover("status", "--json", env=cli_env).stdout)
    procs, ports = _footprint(status, state_dir)
    block = MeshState(state_dir).read_mesh()["block"]
    owner = MeshState(state_dir).owner()
    assert owner is not None
    os.kill(owner.pid, signal.SIGKILL)
    # PR_SET_PDEATHSIG: every app and Envoy dies with its supervisor, even on SIGKILL.
    wait_for(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs), 10, what="pods to die"
    )
    swept = clover("cleanup", env=cli_env)
    assert "swept" in swept.stdout
    _assert_gone(procs, ports, state_dir, runtime_dir, block)
    # A second cleanup finds nothing of this mesh (the session's shared mesh, alive, may be listed as running).
    again = clover("cleanup", env=cli_env).stdout
    assert str(state_dir) not in again and "swept" not in again, again


def test_two_meshes_run_side_by_side(mesh: LocalBackend, tmp_path: Path) -> None:
    second = LocalBackend(SDC, tmp_path / "second", seed=3)
    second.deploy(timeout=90)
    try:
        first_url, second_url = mesh.ingress_url(), second.ingress_url()
        assert first_url != second_url
        first_ips = {p.ip for p in mesh.pods()}
        assert first_ips.isdisjoint({p.ip for p in second.pods()})
        with Client(first_url) as a, Client(second_url) as b:
            assert a.get("/").status == 200 and b.get("/").status == 200
    finally:
        second.teardown()
    with Client(mesh.ingress_url()) as a:
        assert a.get("/").status == 200  # the first mesh was not touched


def test_a_pod_that_never_gets_ready_fails_deploy_naming_it(tmp_path: Path, runtime_dir: Path) -> None:
    topo = tmp_path / "topo"
    topo.mkdir()
    (topo / "app.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: broken}
            spec:
              replicas: 1
              selector: {matchLabels: {app: broken}}
              template:
                metadata:
                  labels: {app: broken}
                  annotations:
                    clover.opnfv.org/local-command: "{python} -c 'import sys; print(\\"boom: cannot start\\"); sys.exit(3)'"
                spec:
                  containers:
                    - {name: broken, image: none, ports: [{containerPort: 8080}]}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: broken}
            spec: {selector: {app: broken}, ports: [{name: http, port: 8080}]}
            """
        )
    )
    backend = LocalBackend(topo, tmp_path / "state")
    with pytest.raises(ReadinessTimeout) as info:
        backend.deploy(timeout=4)
    message = str(info.value)
    assert "broken" in message and "boom: cannot start" in message
    assert not (tmp_path / "state").exists()


def test_validate_reports_file_object_and_field(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - fault: {abort: {httpStatus: 700, percentage: {value: 50}}}\n"
        "    route: [{destination: {host: reviews}}]\n    retires: {attempts: 3}\n"
    )
    proc = clover("validate", str(bad), env=cli_env, check=False)
    assert proc.returncode == 1
    assert (
        f"{bad}: VirtualService/reviews: spec.http[0].fault.abort.httpStatus: error: 700 is out of range" in proc.stdout
    )
    assert "did you mean 'retries'?" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    ok = clover("validate", str(SDC), env=cli_env)
    assert ok.stdout.strip().endswith("0 error(s), 0 warning(s)")


def test_render_writes_configs_that_envoy_validates(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "render"
    started = time.monotonic()
    proc = clover("render", "--topology", str(SDC), "--out", str(out), "--check", env=cli_env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert len(lines) == 9 and all(line.startswith("ok") for line in lines), proc.stdout
    gateway = json.loads((out / "istio-ingressgateway" / "xds" / "rds_http_80.json").read_text())
    vhost = gateway["resources"][0]["virtual_hosts"][0]
    assert vhost["routes"][0]["route"]["request_mirror_policies"][0]["cluster"].endswith(
        "snort-ids.default.svc.cluster.local"
    )
    assert time.monotonic() - started < 120


def test_deploy_reports_unknown_kinds_and_unhonoured_fields_by_name(tmp_path: Path, runtime_dir: Path) -> None:
    topo = tmp_path / "topo"
    topo.mkdir()
    (topo / "server.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              selector: {matchLabels: {app: web}}
              template:
                metadata:
                  labels: {app: web, version: v1}
                  annotations:
                    clover.opnfv.org/local-command: "{python} -m pytest_clover.vnf server --host {host} --port {port}"
                spec:
                  containers: [{name: web, image: x, ports: [{name: http, containerPort: 8080}]}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: settings}
            data: {level: debug}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: web}
            spec:
              host: web
              trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
            """
        )
    )
    backend = LocalBackend(topo, tmp_path / "state")
    backend.deploy(timeout=60)
    try:
        found = {(w.obj, w.field) for w in backend.warnings}
        assert ("ConfigMap/settings", "kind") in found
        assert ("DestinationRule/web", "spec.trafficPolicy.tls") in found
        assert all(w.severity == "warning" for w in backend.warnings)
        web = backend.pods("web")
        assert len(web) == 1 and web[0].ready
        with Client(web[0].url(8080)) as client:
            assert client.get("/").status == 200
    finally:
        backend.teardown()
