"""The local backend's state on disk: private, locked, and never an instruction to delete or kill what it names.

No mesh runs here: these tests build state folders and registry entries by hand, as a careless or hostile user
could, and check what ``clover cleanup`` (``sweep``), ``teardown`` and ``deploy`` do with them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer

import pytest

from pytest_clover import httpclient
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import (
    MAX_SOCKET_PATH,
    MeshState,
    ProcessRecord,
    registry_dir,
    remove_state,
    sweep,
)
from pytest_clover.errors import BackendError, InsecurePath
from pytest_clover.runtime import RUNTIME_ENV

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
MESH_ID = "mesh-0123abcd"


@pytest.fixture(autouse=True)
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runtime"
    monkeypatch.setenv(RUNTIME_ENV, str(path))
    monkeypatch.delenv("CLOVER_MAX_PODS", raising=False)
    return path


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (never part of any mesh); each stopped by its PID afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def sleeper(started: list[subprocess.Popen[bytes]], cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=cwd)
    started.append(proc)
    return proc


def plant_entry(mesh_id: str, state_dir: Path | str) -> Path:
    """A registry entry, as `clover up` writes one."""
    entry = registry_dir() / f"{mesh_id}.json"
    entry.write_text(json.dumps({"mesh_id": mesh_id, "state_dir": str(state_dir), "block": "127.99.1"}))
    return entry


def plant_mesh(folder: Path, mesh_id: str, supervisor: int | None = None, pids: tuple[int, ...] = ()) -> None:
    """A state folder whose mesh.json and pids.json name the given processes."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    mesh: dict[str, object] = {"mesh_id": mesh_id, "block": "127.99.1"}
    if supervisor is not None:
        mesh["supervisor"] = ProcessRecord.of(supervisor, "supervisor").__dict__
    (folder / "mesh.json").write_text(json.dumps(mesh))
    (folder / "pids.json").write_text(json.dumps([ProcessRecord.of(pid, "app", "p").__dict__ for pid in pids]))


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


# --------------------------------------------------------------------------- clover cleanup (sweep)


def test_an_entry_naming_a_folder_that_holds_no_mesh_is_refused_and_nothing_in_it_is_deleted(tmp_path: Path) -> None:
    victim = tmp_path / "precious"
    victim.mkdir(mode=0o700)
    (victim / "data.txt").write_text("keep me")
    entry = plant_entry("mesh-evil", victim)
    [result] = sweep()
    assert result.status == "refused" and result.reason.endswith("holds no mesh.json: it is not a mesh's state folder")
    assert (victim / "data.txt").read_text() == "keep me"
    assert not entry.exists()  # the entry claimed a block for nothing: dropped


def test_an_entry_whose_folder_names_another_mesh_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "other-mesh"
    plant_mesh(folder, "mesh-99999999")
    plant_entry(MESH_ID, folder)
    lines = LocalBackend.sweep()
    assert len(lines) == 1 and lines[0].startswith(f"refused: {MESH_ID}")
    assert "names mesh 'mesh-99999999', not 'mesh-0123abcd'" in lines[0]
    assert (folder / "mesh.json").exists()


def test_a_state_folder_others_may_write_to_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    plant_mesh(folder, MESH_ID)
    folder.chmod(0o777)
    plant_entry(MESH_ID, folder)
    [result] = sweep()
    assert result.status == "refused" and "can be written by its group or by others" in result.reason
    assert (folder / "mesh.json").exists()


def test_a_symbolic_link_in_the_entry_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    plant_mesh(target, MESH_ID)
    link = tmp_path / "link"
    link.symlink_to(target)
    plant_entry(MESH_ID, link)
    [result] = sweep()
    assert result.status == "refused" and "through a symbolic link" in result.reason
    assert (target / "mesh.json").exists()


def test_recorded_processes_that_do_not_run_in_the_mesh_are_never_signalled(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    # A process of this user, named by PID and start time in pids.json and as the supervisor in mesh.json,
    # but running elsewhere: what a planted or stale record names. The folder itself is a real dead mesh's.
    outsider = sleeper(sleepers, tmp_path)
    folder = tmp_path / "dead-mesh"
    plant_mesh(folder, MESH_ID, supervisor=outsider.pid, pids=(outsider.pid,))
    plant_entry(MESH_ID, folder)
    [result] = sweep(force=True)
    assert (result.status, result.killed) == ("stopped", 0)
    assert alive(outsider)
    assert not folder.exists()


def test_a_process_left_running_in_a_dead_mesh_is_stopped(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    folder = tmp_path / "dead-mesh"
    pod = folder / "pods" / "web-1"
    pod.mkdir(parents=True, mode=0o700)
    leftover = sleeper(sleepers, pod)
    plant_mesh(folder, MESH_ID, pids=(leftover.pid,))
    plant_entry(MESH_ID, folder)
    [result] = sweep()
    assert (result.status, result.killed) == ("swept", 1)
    assert leftover.wait(timeout=10) == -signal.SIGTERM
    assert not folder.exists() and list(registry_dir().iterdir()) == []


def test_a_folder_whose_lock_is_held_is_a_mesh_starting_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "starting"
    folder.mkdir(mode=0o700)
    state = MeshState(folder)
    fd = state.try_lock()
    assert fd is not None
    try:
        assert state.try_lock() is None and state.locked()
        plant_entry(MESH_ID, folder)  # registered, mesh.json not written yet: a deploy under way
        [result] = sweep()
        assert result.status == "running"
        with pytest.raises(BackendError, match="a mesh is starting or running at"):
            remove_state(state)
    finally:
        os.close(fd)
    assert not state.locked()


# --------------------------------------------------------------------------- teardown and deploy


def test_teardown_of_a_folder_that_is_not_a_mesh_leaves_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print('mine')")
    with pytest.raises(BackendError, match=r"holds no mesh\.json: it is not a mesh's state folder"):
        LocalBackend(state_dir=project).teardown()
    assert (project / "main.py").exists()


def test_deploy_refuses_a_folder_that_is_not_a_mesh_before_starting_anything(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir(mode=0o700)
    (project / "main.py").write_text("print('mine')")
    with pytest.raises(BackendError, match=r"is not empty and holds no mesh\.json"):
        LocalBackend(SDC, project).deploy(timeout=5)
    assert sorted(p.name for p in project.iterdir()) == ["main.py", "mesh.lock"]


def test_deploy_refuses_a_state_folder_of_another_user(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InsecurePath, match="can be written by its group or by others"):
        LocalBackend(SDC, shared).deploy(timeout=5)
    assert list(shared.iterdir()) == []


def test_deploy_fails_clearly_while_another_holds_the_mesh(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    fd = MeshState(folder).try_lock()
    assert fd is not None
    try:
        with pytest.raises(BackendError, match=r"a mesh is already starting or running at .*clover down"):
            LocalBackend(SDC, folder).deploy(timeout=5)
    finally:
        os.close(fd)
    assert [p.name for p in folder.iterdir()] == ["mesh.lock"]


# --------------------------------------------------------------------------- the pod limit


def test_deploy_refuses_more_pods_than_the_limit_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOVER_MAX_PODS", "5")
    with pytest.raises(BackendError, match=r"this topology would make the mesh 9 pods, more than its limit of 5"):
        LocalBackend(SDC, tmp_path / "state").deploy(timeout=5)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("value", ["many", "0", "254"])
def test_a_pod_limit_that_makes_no_sense_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLOVER_MAX_PODS", value)
    with pytest.raises(BackendError, match="CLOVER_MAX_PODS must be"):
        LocalBackend(SDC, tmp_path / "state")


# --------------------------------------------------------------------------- privacy


def test_state_files_are_written_for_their_user_alone(tmp_path: Path) -> None:
    state = MeshState(tmp_path)
    state.write_json(state.mesh_file, {"mesh_id": MESH_ID})
    assert stat.S_IMODE(state.mesh_file.stat().st_mode) == 0o600
    fd = state.try_lock()
    assert fd is not None
    os.close(fd)
    assert stat.S_IMODE(state.lock_file.stat().st_mode) == 0o600


@pytest.fixture
def deep_state(tmp_path: Path) -> Iterator[MeshState]:
    """A mesh state folder too deep for Unix socket paths; its short socket folder (outside tmp_path) goes after."""
    deep = MeshState(tmp_path / ("d" * 120))
    yield deep
    shutil.rmtree(deep.short_socket_dir, ignore_errors=True)


def test_a_deep_state_dir_gets_short_socket_paths_and_no_folder_until_one_is_bound(
    tmp_path: Path, deep_state: MeshState
) -> None:
    control, admin = deep_state.socket_path, deep_state.admin_socket("clover-server-v2-abcdefghij-klmno")
    for path in (control, admin):
        assert len(os.fsencode(str(path))) <= MAX_SOCKET_PATH and path.parent == deep_state.short_socket_dir
    assert control == MeshState(tmp_path / ("d" * 120)).socket_path  # client and supervisor find the same one
    # Asking where a socket is (a client of a mesh that never started) leaves nothing behind in TMPDIR.
    assert not deep_state.short_socket_dir.exists()
    assert deep_state.check_socket_dir(control) == control and not deep_state.short_socket_dir.exists()
    assert deep_state.make_socket_dir(control) == control
    assert stat.S_IMODE(deep_state.short_socket_dir.stat().st_mode) == 0o700
    shallow = MeshState(tmp_path / "s")
    assert shallow.socket_path == tmp_path / "s" / "control.sock"
    assert shallow.admin_socket("web-1") == tmp_path / "s" / "pods" / "web-1" / "admin.sock"
    assert shallow.make_socket_dir(shallow.socket_path) == shallow.socket_path and not shallow.root.exists()


def test_a_client_will_not_connect_through_a_short_socket_folder_others_can_write(deep_state: MeshState) -> None:
    deep_state.make_socket_dir(deep_state.socket_path)
    deep_state.short_socket_dir.chmod(0o777)
    with pytest.raises(InsecurePath, match="can be written by its group or by others"):
        deep_state.check_socket_dir(deep_state.socket_path)


def test_removing_a_deep_state_dir_removes_its_short_socket_too(deep_state: MeshState) -> None:
    deep_state.root.mkdir()
    deep_state.make_socket_dir(deep_state.socket_path).touch()  # what a SIGKILLed supervisor leaves
    remove_state(deep_state)
    assert not deep_state.socket_path.exists() and not deep_state.root.exists()
    assert not deep_state.short_socket_dir.exists()


# --------------------------------------------------------------------------- HTTP over a Unix socket


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"{self.path} {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True


def test_http_over_a_unix_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never used: trust_env is off
    path = tmp_path / "admin.sock"
    server = _Server(str(path), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(2):  # the second on the kept-alive connection
            reply = httpclient.request("GET", httpclient.unix_url(path, "/stats?format=json"), timeout=5)
            assert (reply.status_code, reply.text) == (200, "/stats?format=json localhost")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_unix_socket_nobody_listens_on_is_a_request_error(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: what a killed Envoy leaves
        with pytest.raises(httpclient.RequestException, match="Connection refused"):
            httpclient.request("GET", httpclient.unix_url(path, "/ready"), timeout=2)
    with pytest.raises(httpclient.RequestException, match="No such file"):
        httpclient.request("GET", httpclient.unix_url(tmp_path / "none.sock", "/ready"), timeout=2)


def test_the_supervisors_probe_reads_envoys_ready_over_a_unix_socket(tmp_path: Path) -> None:
    import asyncio

    from pytest_clover.backends.local.envoy import http_get_unix

    path = tmp_path / "admin.sock"
    server = _Server(str(path), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert asyncio.run(http_get_unix(str(path), "/ready", timeout=5)) == (200, "/ready localhost")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    status, error = asyncio.run(http_get_unix(str(tmp_path / "none.sock"), "/ready", timeout=5))
    assert status == 0 and "No such file" in error


def test_clover_render_gives_every_envoy_an_admin_socket_and_no_admin_port(tmp_path: Path) -> None:
    from pytest_clover.backends.local import render
    from pytest_clover.istio import load_topology

    topo = load_topology(SDC)
    for out in (tmp_path / "r", tmp_path / ("d" * 100)):
        for proxy in render.plan(topo, out):
            address = proxy.static_bootstrap()["admin"]["address"]
            assert list(address) == ["pipe"] and address["pipe"]["mode"] == 0o600
            assert len(os.fsencode(address["pipe"]["path"])) <= MAX_SOCKET_PATH
    [gateway] = [p for p in render.plan(topo, tmp_path / "r") if p.spec.kind == "gateway"]
    assert gateway.bootstrap["admin"]["address"]["pipe"]["path"] == str(
        tmp_path / "r" / "istio-ingressgateway" / "admin.sock"
    )
