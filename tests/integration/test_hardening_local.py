"""What a careless or hostile user could do to the embedded mesh, and what it must withstand (issue 10).

- `clover cleanup` deletes and signals only what is its user's own mesh, whatever a registry entry,
  mesh.json or pids.json claims (a hostile local user planted them);
- no other local user reaches an Envoy's admin API (a Unix socket in the 0700 state folder, no TCP port);
- two deploys on one state folder: one mesh, and a clear error for the other;
- a scale that cannot fit is refused before any pod starts; a scale that fails leaves the mesh as it was;
- a supervisor that dies is noticed by the next backend call, at once, as MeshNotRunning, and by a test's
  running load phase within a second: one short error, not a phase run on against nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import MeshState, ProcessRecord
from pytest_clover.errors import BackendError, MeshNotRunning, ReadinessTimeout
from tests.helpers import wait_for

from .conftest import SDC

pytestmark = pytest.mark.integration

ROOT = SDC.parents[1]


# --------------------------------------------------------------------------- helpers


def _run_as_nobody() -> list[str] | None:
    """The command prefix that runs a command as user nobody, or None where this machine cannot."""
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None
    runuser, setpriv = shutil.which("runuser"), shutil.which("setpriv")
    if runuser:
        return [runuser, "-u", "nobody", "--"]
    if setpriv:
        return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    return None


AS_NOBODY = _run_as_nobody()
NEEDS_NOBODY = pytest.mark.skipif(
    AS_NOBODY is None, reason="needs root, the user nobody and runuser or setpriv, to act as another local user"
)


def as_nobody(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert AS_NOBODY is not None
    return subprocess.run(
        [*AS_NOBODY, *argv], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, check=False
    )


def clover(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CLOVER_RUNTIME_DIR", "CLOVER_STATE_DIR", "TMPDIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process of this user that belongs to no mesh (what a planted pids.json names); stopped by its PID."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], cwd=tmp_path)
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def write_topology(folder: Path, command: str, replicas: int = 1) -> Path:
    """One Deployment ``web`` (no gateway: starts in a second), run by ``command``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "web.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: web}}
            spec:
              replicas: {replicas}
              selector: {{matchLabels: {{app: web}}}}
              template:
                metadata:
                  labels: {{app: web}}
                  annotations:
                    clover.opnfv.org/local-command: "{command}"
                spec:
                  containers: [{{name: web, image: x, ports: [{{name: http, containerPort: 8080}}]}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: web}}
            spec: {{selector: {{app: web}}, ports: [{{name: http, port: 8080}}]}}
            """
        )
    )
    return folder


VNF = "{python} -m pytest_clover.vnf server --host {host} --port {port}"

GATED_APP = textwrap.dedent(
    """
    import http.server, os, sys, time

    host, port, gate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    while not os.path.exists(gate):  # a pod that never gets ready while the gate is closed
        time.sleep(0.05)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

    http.server.HTTPServer((host, port), Handler).serve_forever()
    """
)


def gated_app(folder: Path) -> tuple[Path, Path]:
    """An executable HTTP server that starts listening only once its gate file exists: (program, gate)."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "gated-app"
    program.write_text(f"#!{sys.executable}\n{GATED_APP}")
    program.chmod(0o755)
    gate = folder / "gate"
    gate.touch()
    return program, gate


def our_processes_in(folder: Path) -> list[psutil.Process]:
    """Live processes of this user whose command line or working directory names ``folder``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.uids().real != os.getuid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if str(folder) in " ".join(proc.cmdline()) or proc.cwd().startswith(str(folder)):
                found.append(proc)
        except psutil.Error:
            continue
    return found


# --------------------------------------------------------------------------- 1, 2: clover cleanup under attack


@NEEDS_NOBODY
def test_cleanup_deletes_and_signals_nothing_a_hostile_user_planted(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # A shared temp folder of the test's own (sticky and world-writable, as /tmp is).
    base = Path(tempfile.mkdtemp(prefix="clover-hostile-"))
    try:
        base.chmod(0o1777)
        if as_nobody("test", "-w", str(base)).returncode != 0:
            pytest.skip(f"user nobody cannot write to {base} (its parent folders are private)")
        victim = base / "victim"  # root's: what the registry entry asks cleanup to delete
        victim.mkdir(mode=0o700)
        (victim / "precious").write_text("keep me")
        # What the attacker reads from /proc/<pid>/stat, world-readable: the PID and start time of a root process.
        record = ProcessRecord.of(sleeper.pid, "app", "web-1").__dict__
        runtime = base / f"pytest-clover-{os.getuid()}"
        evil = base / "evil-state"
        attack = textwrap.dedent(
            """
            set -e
            mkdir -m 777 "$RUNTIME" "$RUNTIME/registry"
            mkdir -m 755 "$EVIL"
            printf '%s' "$MESH" > "$EVIL/mesh.json"
            printf '%s' "$PIDS" > "$EVIL/pids.json"
            printf '%s' "$ENTRY_VICTIM" > "$RUNTIME/registry/mesh-evil.json"
            printf '%s' "$ENTRY_EVIL" > "$RUNTIME/registry/mesh-evil2.json"
            """
        )
        planted = as_nobody(
            "sh",
            "-c",
            attack,
            env={
                "PATH": "/usr/bin:/bin",
                "RUNTIME": str(runtime),
                "EVIL": str(evil),
                "MESH": json.dumps({"mesh_id": "mesh-evil2", "block": "127.99.1", "supervisor": record}),
                "PIDS": json.dumps([record]),
                "ENTRY_VICTIM": json.dumps({"mesh_id": "mesh-evil", "state_dir": str(victim), "block": "127.99.2"}),
                "ENTRY_EVIL": json.dumps({"mesh_id": "mesh-evil2", "state_dir": str(evil), "block": "127.99.1"}),
            },
        )
        assert planted.returncode == 0, planted.stderr
        assert runtime.stat().st_uid != 0 and stat.S_IMODE(runtime.stat().st_mode) == 0o777

        def untouched() -> None:
            assert (victim / "precious").read_text() == "keep me"
            assert sleeper.poll() is None, "cleanup signalled a process it did not start"
            assert sorted(p.name for p in evil.iterdir()) == ["mesh.json", "pids.json"]
            assert sorted(p.name for p in (runtime / "registry").iterdir()) == ["mesh-evil.json", "mesh-evil2.json"]

        # As root, cleanup with the planted runtime folder (the default one under TMPDIR, then named outright).
        for env in (base_env(TMPDIR=str(base)), base_env(CLOVER_RUNTIME_DIR=str(runtime))):
            proc = clover("cleanup", env=env, cwd=tmp_path)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert f"{runtime} belongs to user id 65534, not to you (0)" in proc.stderr
            assert "set CLOVER_RUNTIME_DIR to a folder of your own" in proc.stderr and "Traceback" not in proc.stderr
            assert "swept" not in proc.stdout
            untouched()

        # The same entries in a private registry (one written before the runtime folder was checked): each is
        # refused on its own, for what the folder it names is, not for what it claims.
        private = tmp_path / "runtime"
        (private / "registry").mkdir(parents=True, mode=0o700)
        private.chmod(0o700)
        for entry in (runtime / "registry").iterdir():
            shutil.copy(entry, private / "registry" / entry.name)
        proc = clover("cleanup", env=base_env(CLOVER_RUNTIME_DIR=str(private)), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = sorted(proc.stdout.splitlines())
        assert len(lines) == 2, proc.stdout
        assert lines[0].startswith(f"refused: mesh-evil at {victim}: {victim} holds no mesh.json")
        assert lines[1].startswith(f"refused: mesh-evil2 at {evil}: {evil} belongs to user id 65534, not to you")
        assert all("nothing there was deleted or signalled" in line for line in lines)
        untouched()
        assert list((private / "registry").iterdir()) == []  # the entries pointed at nothing of ours: dropped
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- 3: the admin API is this user's


def test_no_envoy_admin_api_listens_on_tcp_and_its_socket_is_private(mesh: LocalBackend) -> None:
    state = mesh.state
    pods = {p.name for p in mesh.pods()}
    envoys = [r for r in state.read_pids() if r.role == "envoy" and r.pod in pods and r.alive()]
    assert {r.pod for r in envoys} == pods  # every pod and the gateway
    for record in envoys:
        sock = Path(mesh.admin_socket(record.pod))
        assert stat.S_ISSOCK(sock.lstat().st_mode) and sock.parent == state.pod_dir(record.pod)
        # Envoy listens on TCP for its listeners (the pod's ports) and nothing else: no admin port.
        listeners = json.loads(mesh.envoy_admin(record.pod, "/listeners?format=json"))["listener_statuses"]
        expected = {
            (lst["local_address"]["socket_address"]["address"], lst["local_address"]["socket_address"]["port_value"])
            for lst in listeners
        }
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(record.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == expected, f"{record.pod}'s Envoy listens on {listening - expected} beyond its listeners"
    # The state folder and everything in it: the user's alone (0700 folders; nothing for group or others).
    modes = {}
    for path in [state.root, *state.root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):  # a record being rewritten (.pids.json.tmp)
            info = path.lstat()
            modes[str(path)] = (stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode), info.st_uid)
    exposed = {path: oct(mode) for path, (mode, _, uid) in modes.items() if mode & 0o077 or uid != os.getuid()}
    assert exposed == {}
    assert {oct(mode) for mode, is_dir, _ in modes.values() if is_dir} == {"0o700"}


@NEEDS_NOBODY
def test_another_user_cannot_connect_to_an_envoy_admin_socket(mesh: LocalBackend) -> None:
    pod = next(p.name for p in mesh.pods() if p.deployment)
    sock = mesh.admin_socket(pod)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept OSError as exc:\n    print(type(exc).__name__); sys.exit(3)\n"
        "print('connected')\n"
    )
    # An interpreter nobody may run (the test's own may live in a folder only root can enter).
    python = next((c for c in (sys.executable, "/usr/bin/python3") if as_nobody(c, "-c", "pass").returncode == 0), None)
    if python is None:
        pytest.skip("no Python interpreter here that user nobody may run")
    proc = as_nobody(python, "-c", probe, sock)
    assert (proc.returncode, proc.stdout.strip()) == (3, "PermissionError"), proc.stdout + proc.stderr
    assert "LIVE" in mesh.envoy_admin(pod, "/ready")  # its own user still can


# --------------------------------------------------------------------------- 4: one mesh per state folder


def test_two_deploys_at_once_on_one_state_folder_make_one_mesh(tmp_path: Path, runtime_dir: Path) -> None:
    state_dir = tmp_path / "mesh"
    env = base_env(CLOVER_RUNTIME_DIR=str(runtime_dir))
    argv = [sys.executable, "-m", "pytest_clover.cli", "--state-dir", str(state_dir), "up", "--topology", str(SDC)]
    ups = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        for _ in range(2)
    ]
    outputs = [up.communicate(timeout=120) for up in ups]
    try:
        codes = sorted(up.returncode for up in ups)
        assert codes == [0, 1], outputs
        loser = next(err for up, (_, err) in zip(ups, outputs, strict=True) if up.returncode == 1)
        assert f"a mesh is already starting or running at {state_dir}" in loser and "Traceback" not in loser
        state = MeshState(state_dir)
        assert state.running()
        supervisors = [p for p in our_processes_in(state_dir) if "local.supervisor" in " ".join(p.cmdline())]
        assert len(supervisors) == 1
    finally:
        down = clover("--state-dir", str(state_dir), "down", env=env, cwd=tmp_path)
    assert down.returncode == 0 and "stopped and removed" in down.stdout, down.stdout + down.stderr
    assert our_processes_in(state_dir) == []
    assert not state_dir.exists()
    assert all(
        json.loads(p.read_text())["state_dir"] != str(state_dir) for p in (runtime_dir / "registry").glob("*.json")
    )


# --------------------------------------------------------------------------- 5: scaling within bounds


def test_a_scale_beyond_the_pod_limit_is_refused_before_any_pod_starts(sdc: LocalBackend) -> None:
    before = {p.name for p in sdc.pods()}
    desired = sdc.desired_replicas()
    started = time.monotonic()
    with pytest.raises(
        BackendError,
        match=r"scaling clover-server-v2 to 1000 would make the mesh 1008 pods, more than its limit of 32: nothing "
        r"was started\..*CLOVER_MAX_PODS=1008",
    ):
        sdc.scale("clover-server-v2", 1000)
    assert time.monotonic() - started < 2.0
    assert {p.name for p in sdc.pods()} == before and sdc.desired_replicas() == desired
    # The limit is the user's to set: here lower than the default, for this client's scales.
    limited = LocalBackend(state_dir=sdc.state.root, max_pods=11)
    limited.scale("clover-server-v2", 3)  # 11 pods: at the limit
    with pytest.raises(BackendError, match="would make the mesh 12 pods, more than its limit of 11"):
        limited.scale("clover-server-v2", 4)
    assert sdc.desired_replicas()["clover-server-v2"] == 3


def test_a_scale_whose_pods_cannot_start_is_undone(tmp_path: Path, runtime_dir: Path) -> None:
    program, _ = gated_app(tmp_path / "app")
    backend = LocalBackend(write_topology(tmp_path / "topo", f"{program} {{host}} {{port}} {program}"), tmp_path / "s")
    backend.deploy(timeout=60)
    try:
        [first] = backend.pods("web")
        program.unlink()  # the next pod's program cannot be started
        with pytest.raises(BackendError, match=r"scaling web to 3 failed: .*No such file.*it is back at 1 replicas"):
            backend.scale("web", 3, timeout=20)
        assert backend.desired_replicas() == {"web": 1}
        assert [(p.name, p.ready) for p in backend.pods("web")] == [(first.name, True)]
        recorded = {r.pod for r in backend.state.read_pids() if r.alive()}
        assert recorded == {first.name}, "the pods the failed scale made are stopped"
        # Any operation that fails in the supervisor is answered as such, never as a mesh that went away.
        with pytest.raises(BackendError, match=r"kill failed in the mesh supervisor: FileNotFoundError") as info:
            backend.kill("web")
        assert not isinstance(info.value, MeshNotRunning)
        assert backend.pods("web")
    finally:
        backend.teardown()


def test_a_scale_up_that_does_not_get_ready_in_time_is_undone(tmp_path: Path, runtime_dir: Path) -> None:
    program, gate = gated_app(tmp_path / "app")
    backend = LocalBackend(write_topology(tmp_path / "topo", f"{program} {{host}} {{port}} {gate}"), tmp_path / "s")
    backend.deploy(timeout=60)
    try:
        [first] = backend.pods("web")
        gate.unlink()  # new pods never listen: never ready
        with pytest.raises(ReadinessTimeout, match=r"scaling web to 3 did not complete within 2 s: it is back at 1"):
            backend.scale("web", 3, timeout=2)
        assert backend.desired_replicas() == {"web": 1}
        wait_for(
            lambda: [p.name for p in backend.pods("web")] == [first.name], timeout=15, what="the added pods to stop"
        )
        backend.wait_ready(10)
    finally:
        backend.teardown()


# --------------------------------------------------------------------------- 6: a dead supervisor, at once


def test_a_killed_supervisor_fails_the_next_call_at_once_naming_it(tmp_path: Path, runtime_dir: Path) -> None:
    backend = LocalBackend(write_topology(tmp_path / "topo", VNF), tmp_path / "s")
    backend.deploy(timeout=60)
    try:
        [pod] = backend.pods("web")
        other = LocalBackend(state_dir=backend.state.root)  # a process that reconnected (clover, an experiment)
        assert "LIVE" in other.envoy_admin(pod.name, "/ready")
        owner = backend.state.owner()
        assert owner is not None
        os.kill(owner.pid, signal.SIGKILL)
        checks: list[tuple[Callable[[], object], str]] = [
            (backend.pods, rf"the mesh supervisor \(PID {owner.pid}\) was killed by SIGKILL"),
            (lambda: backend.envoy_admin(pod.name, "/ready"), rf"\(PID {owner.pid}\) was killed by SIGKILL"),
            (other.pods, rf"the mesh supervisor \(PID {owner.pid}\) is not running any more"),
            (lambda: other.envoy_admin(pod.name, "/ready"), rf"\(PID {owner.pid}\) is not running any more"),
        ]
        for call, message in checks:
            started = time.monotonic()
            with pytest.raises(MeshNotRunning, match=message) as info:
                call()
            assert time.monotonic() - started < 1.0
            assert "supervisor.log ends:" in str(info.value) and "clover cleanup" in str(info.value)
            assert "Connection refused" not in str(info.value)
    finally:
        backend.teardown()
    assert not (tmp_path / "s").exists()


KILLED_MID_PHASE = """
import os, signal, threading, time
from pytest_clover.backends.local.state import MeshState


def test_it(mesh, load, faults):
    run = load.start(rate=20)
    faults.delay("http-lb", "100ms")
    owner = MeshState(mesh.backend.record().location).owner()
    threading.Timer(1.0, os.kill, (owner.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    try:
        run.phase("fault", 60)
    finally:
        print(f"phase ended after {time.monotonic() - started:.1f} s")
"""


def test_a_supervisor_killed_mid_phase_ends_the_test_at_once_with_one_error(
    pytester: pytest.Pytester, runtime_dir: Path
) -> None:
    # Before: ~27 s unnoticed, then "inconclusive … was load reaching http-lb?", a ConnectionRefusedError
    # traceback and two errors for one test.
    pytester.makeini(f"[pytest]\nclover_topology = {SDC}\n")
    pytester.makepyfile(test_killed=KILLED_MID_PHASE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_killed.py:12: MeshNotRunning: the mesh supervisor (PID *) was killed by*"])
    ended = re.search(r"phase ended after ([0-9.]+) s", result.stdout.str())
    assert ended is not None and float(ended.group(1)) < 5.0  # 1 s to the kill, then the watch's half second
    out = result.stdout.str()
    assert "INCONCLUSIVE" not in out and "ERROR at teardown" not in out and "Traceback" not in out
