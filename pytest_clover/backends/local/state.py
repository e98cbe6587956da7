"""Where a local mesh keeps its state, and how a dead mesh is found and swept.

A mesh owns a state directory (``mesh.json``, ``pids.json``, per-pod configs and logs) and one entry in
the machine-wide registry, which also claims its loopback block ``127.A.B.0/24``. Processes are always
recorded with their start time, so a recycled PID is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ...errors import BackendError, MeshNotRunning
from ...runtime import private_dir, runtime_dir

STATE_ENV = "CLOVER_STATE_DIR"
MAX_SOCKET_PATH = 107
"""Bytes in a Unix socket path (``sun_path`` holds 108 with the terminating NUL)."""
_PR_SET_PDEATHSIG = 1

# Resolved once here: between fork and exec the child must not dlopen (another thread may hold the
# loader lock: the supervisor runs gRPC's threads). Calling an already resolved function is safe.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when its parent dies, however the parent dies."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def default_state_dir() -> Path:
    override = os.environ.get(STATE_ENV)
    return Path(override) if override else runtime_dir() / "meshes" / "default"


def registry_dir() -> Path:
    """This user's registry of local meshes (one JSON file a mesh), inside the private runtime folder."""
    return private_dir(runtime_dir() / "registry")


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    with open(runtime_dir() / "registry.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    create_time: float
    role: str
    """``supervisor``, ``app`` or ``envoy``."""
    pod: str = ""

    def alive(self) -> bool:
        """True only if this very process still runs (same PID *and* start time), and is not a zombie."""
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    @classmethod
    def of(cls, pid: int, role: str, pod: str = "") -> ProcessRecord:
        try:
            created = psutil.Process(pid).create_time()
        except psutil.Error:
            created = 0.0
        return cls(pid, created, role, pod)


class MeshState:
    """The on-disk layout of one mesh."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    mesh_file = property(lambda self: self.root / "mesh.json")
    pids_file = property(lambda self: self.root / "pids.json")

    @property
    def socket_path(self) -> Path:
        """The supervisor's control socket: in the state dir, unless that path is too long for a Unix socket.

        Linux limits a socket path to 107 bytes; a state dir below a deep folder (pytest's basetemp inside a
        project's tmp dir) exceeds it. Such meshes get a short path in a private per-user folder instead,
        named by a hash of the state dir, so client and supervisor find the same one.
        """
        own = self.root / "control.sock"
        if len(os.fsencode(str(own))) <= MAX_SOCKET_PATH:
            return own
        import hashlib

        folder = Path(tempfile.gettempdir()) / f"clover-sockets-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid != os.getuid():
            raise BackendError(f"{folder} belongs to another user; set TMPDIR to a folder of your own")
        digest = hashlib.sha1(os.fsencode(str(self.root.resolve()))).hexdigest()[:20]
        return folder / f"{digest}.sock"

    log_file = property(lambda self: self.root / "supervisor.log")
    topology_dir = property(lambda self: self.root / "topology")

    def pod_dir(self, pod: str) -> Path:
        return self.root / "pods" / pod

    def read_mesh(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.mesh_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MeshNotRunning(
                f"no mesh at {self.root}: start one with `clover up`, or pass --state-dir / set {STATE_ENV}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise BackendError(f"{self.mesh_file} is unreadable ({exc}); run `clover cleanup` to sweep it") from exc
        return data

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def read_pids(self) -> list[ProcessRecord]:
        try:
            raw = json.loads(self.pids_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [ProcessRecord(**r) for r in raw]

    def write_pids(self, records: list[ProcessRecord]) -> None:
        self.write_json(self.pids_file, [r.__dict__ for r in records])

    def owner(self) -> ProcessRecord | None:
        try:
            data = self.read_mesh()
        except BackendError:
            return None
        sup = data.get("supervisor")
        return ProcessRecord(**sup) if sup else None

    def running(self) -> bool:
        owner = self.owner()
        return owner is not None and owner.alive()


# --------------------------------------------------------------------------- registry and loopback blocks


def _registry_entries() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            out.append((path, {}))
    return out


def _block_free(block: str) -> bool:
    # The block's .1 must be bindable: loopback covers 127/8 on Linux, and nobody may hold it.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((f"{block}.1", 0))
    except OSError:
        return False
    return True


def register_mesh(state: MeshState, mesh_id: str) -> str:
    """Claim a free 127.A.B.0/24 block for this mesh and record it in the registry; returns ``127.A.B``."""
    with registry_lock():
        taken = set()
        for path, entry in _registry_entries():
            if entry.get("state_dir") == str(state.root):
                path.unlink(missing_ok=True)
                continue
            if "block" in entry:
                taken.add(entry["block"])
        rng = random.Random()
        for _ in range(200):
            block = f"127.{rng.randint(64, 250)}.{rng.randint(1, 254)}"
            if block not in taken and _block_free(block):
                entry = {"mesh_id": mesh_id, "state_dir": str(state.root), "block": block, "created": time.time()}
                state.write_json(registry_dir() / f"{mesh_id}.json", entry)
                return block
    raise BackendError("no free loopback block 127.A.B.0/24 for a mesh; run `clover cleanup` to sweep dead meshes")


def unregister_mesh(mesh_id: str) -> None:
    with registry_lock():
        (registry_dir() / f"{mesh_id}.json").unlink(missing_ok=True)


def pick_port(ip: str, preferred: int | None = None) -> int:
    """A free TCP port on ``ip``: the preferred one when it is free, else one the kernel hands out."""
    candidates = [preferred, 0] if preferred else [0]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise BackendError(f"no free port on {ip}")


# --------------------------------------------------------------------------- sweeping


@dataclass(frozen=True)
class SweepResult:
    state_dir: str
    mesh_id: str
    killed: int
    status: str
    """``swept`` (owner was dead), ``running`` (left alone) or ``stopped`` (forced)."""


def wait_gone(records: Iterable[ProcessRecord], timeout: float) -> bool:
    """Poll until none of ``records`` runs; True if that happened within ``timeout``.

    A zombie counts as gone: it runs no code and holds no port or file. Not ``psutil.Process.wait``: for a
    process that is not our child (a ``clover up`` supervisor is an orphan), it lasts until whoever reaps
    orphans does: 1.2-1.9 s where PID 1 is a VM's lazy init (measured), forever where PID 1 never reaps.
    """
    pending = list(records)
    deadline = time.monotonic() + timeout
    while True:
        pending = [r for r in pending if r.alive()]
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def kill_recorded(state: MeshState, grace: float = 2.0, also: Iterable[ProcessRecord] = ()) -> int:
    """SIGTERM then SIGKILL every recorded process (and those in ``also``) that is still the one we started."""
    records = [r for r in {*state.read_pids(), *also} if r.alive()]
    owner = state.owner()
    if owner is not None and owner.alive() and owner not in records:
        records.append(owner)
    for r in records:
        r.kill(signal.SIGTERM)
    if not wait_gone(records, grace):
        for r in records:
            r.kill(signal.SIGKILL)
        wait_gone(records, 2.0)
    return len(records)


def remove_state(state: MeshState) -> None:
    # A control socket outside the state dir (a deep state dir's short path) goes too: a supervisor that was
    # killed never unlinked it.
    with contextlib.suppress(OSError, BackendError):
        socket_path = state.socket_path
        if state.root not in socket_path.parents:
            socket_path.unlink(missing_ok=True)
    shutil.rmtree(state.root, ignore_errors=True)


def sweep(force: bool = False) -> list[SweepResult]:
    """Find meshes whose owner died; stop whatever they left and remove their state and registry entry."""
    results = []
    for path, entry in _registry_entries():
        state_dir = entry.get("state_dir")
        mesh_id = entry.get("mesh_id", path.stem)
        if not state_dir:
            path.unlink(missing_ok=True)
            continue
        state = MeshState(state_dir)
        if state.running() and not force:
            results.append(SweepResult(state_dir, mesh_id, 0, "running"))
            continue
        killed = kill_recorded(state)
        remove_state(state)
        unregister_mesh(mesh_id)
        results.append(SweepResult(state_dir, mesh_id, killed, "stopped" if force else "swept"))
    return results
