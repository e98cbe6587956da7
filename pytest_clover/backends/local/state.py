"""Where a local mesh keeps its state, and how a dead mesh is found and swept.

A mesh owns a state directory (``mesh.json``, ``pids.json``, per-pod configs and logs) and one entry in
the machine-wide registry, which also claims its loopback block ``127.A.B.0/24``. Processes are always
recorded with their start time, so a recycled PID is never mistaken for ours.

Nothing a file claims is trusted on its own: before a state folder is removed it must be a private folder of
this user holding the ``mesh.json`` of the mesh named; before a recorded process is signalled it must be this
user's and run inside that folder (its working directory, or its parent's). A registry entry or ``pids.json``
planted by someone else thus names nothing that gets deleted or killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import random
import re
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

from ...errors import BackendError, InsecurePath, MeshNotRunning
from ...runtime import check_private_dir, private_dir, runtime_dir

STATE_ENV = "CLOVER_STATE_DIR"
MAX_SOCKET_PATH = 107
"""Bytes in a Unix socket path (``sun_path`` holds 108 with the terminating NUL)."""
_PR_SET_PDEATHSIG = 1
FILE_MODE = 0o600
"""Every file of a mesh's state (configs, logs, records): only its user reads them. Folders are 0700."""
LOCK_NAME = "mesh.lock"
_MESH_ID = re.compile(r"mesh-[0-9a-f]{8}")

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
    fd = os.open(runtime_dir() / "registry.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (a rename), readable by this user only."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # O_EXCL below: never write through whatever is there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


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

    def ours(self, root: Path) -> bool:
        """True only if this very process runs, as this user, inside the mesh at ``root``.

        "Inside": its working directory, or its parent's (a pod process that changed its own), is ``root``
        or below it. Every process of a mesh is started there (the supervisor and the zygote in ``root``,
        each pod in its folder), and only this user can enter ``root`` (0700); a recorded PID and start time,
        which anyone can read from /proc, are not enough.
        """
        if not self.alive():
            return False
        try:
            proc = psutil.Process(self.pid)
            if not _mine(proc):
                return False
            if _inside(proc.cwd(), root):
                return True
            parent = proc.parent()
            return parent is not None and _mine(parent) and _inside(parent.cwd(), root)
        except psutil.Error:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process if it is still the one recorded. Callers check :meth:`ours` first."""
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


def _mine(proc: psutil.Process) -> bool:
    uids = proc.uids()
    return uids.real == uids.effective == os.getuid()


def _inside(cwd: str, root: Path) -> bool:
    # A folder removed while the process still runs in it reads "<path> (deleted)" in /proc.
    path = Path(cwd.removesuffix(" (deleted)"))
    return path == root or root in path.parents


class MeshState:
    """The on-disk layout of one mesh."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    mesh_file = property(lambda self: self.root / "mesh.json")
    pids_file = property(lambda self: self.root / "pids.json")

    lock_file = property(lambda self: self.root / LOCK_NAME)

    @property
    def socket_path(self) -> Path:
        """The supervisor's control socket."""
        return self.socket_for(self.root / "control.sock", "control.sock")

    def admin_socket(self, pod: str) -> Path:
        """Where the Envoy of ``pod`` serves its admin API: a Unix socket in the pod's private folder."""
        return self.socket_for(self.pod_dir(pod) / "admin.sock", f"admin-{_digest(pod, 16)}.sock")

    @property
    def short_socket_dir(self) -> Path:
        """This mesh's folder for sockets whose own path is too long (see :meth:`socket_for`); not made here."""
        return Path(tempfile.gettempdir()) / f"clover-sockets-{os.getuid()}" / _digest(str(self.root), 20)

    def socket_for(self, own: Path, short_name: str) -> Path:
        """``own`` if it fits in a Unix socket path, else ``short_name`` in :attr:`short_socket_dir`.

        Linux limits a socket path to 107 bytes; a state dir below a deep folder (pytest's basetemp inside a
        project's tmp dir) exceeds it. Such sockets get a short path in a private per-user folder instead,
        named by a hash of the state dir, so client and supervisor find the same one; both folders are
        checked like the runtime folder (this user's, 0700), as whoever can write there could swap a socket.

        Only a path: the folder is made by whoever binds there (:meth:`make_socket_dir`), so that a client asking
        a mesh that never started leaves no folder behind; a client checks the folder (:meth:`check_socket_dir`)
        before it connects.
        """
        if len(os.fsencode(str(own))) <= MAX_SOCKET_PATH:
            return own
        path = self.short_socket_dir / short_name
        if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
            raise BackendError(f"{path} is too long for a Unix socket: set TMPDIR to a shorter folder")
        return path

    def make_socket_dir(self, socket: Path) -> Path:
        """``socket``, its folder made first if it is the short one (0700, InsecurePath if it is not this user's)."""
        if socket.parent == self.short_socket_dir:
            private_dir(self.short_socket_dir.parent, "TMPDIR")
            private_dir(self.short_socket_dir, "TMPDIR")
        return socket

    def check_socket_dir(self, socket: Path) -> Path:
        """``socket``, after checking that its short folder, if it has one and it exists, is this user's alone."""
        if socket.parent == self.short_socket_dir and os.path.lexists(socket.parent):
            check_private_dir(self.short_socket_dir.parent, "TMPDIR")
            check_private_dir(self.short_socket_dir, "TMPDIR")
        return socket

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
        write_private(path, json.dumps(data, indent=1).encode())

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
        """Whether this mesh's supervisor runs: the one mesh.json records, if it is ours and runs in this folder."""
        owner = self.owner()
        return owner is not None and owner.ours(self.root)

    def verify(self, mesh_id: str | None = None) -> dict[str, Any]:
        """``mesh.json`` of a state folder this user may act on (remove, stop what it recorded), else an error.

        The folder must be private and this user's (as the runtime folder must), and its ``mesh.json`` must
        name ``mesh_id`` when one is given (the registry entry that led here). MeshNotRunning: no mesh.json.
        """
        check_private_dir(self.root, STATE_ENV)
        mesh = self.read_mesh()
        if mesh_id is not None and mesh.get("mesh_id") != mesh_id:
            raise InsecurePath(
                f"{self.mesh_file} names mesh {mesh.get('mesh_id')!r}, not {mesh_id!r} as the registry does: "
                "it is not that mesh's state folder, so nothing in it is touched"
            )
        return mesh

    def try_lock(self) -> int | None:
        """Take the mesh's lock (an exclusive flock on ``mesh.lock``): its file descriptor, None if held.

        Whoever holds it owns the folder: a deploying client, then its supervisor for the mesh's whole life
        (it inherits the descriptor). Closing every descriptor of that open file releases it, as does death.
        """
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def locked(self) -> bool:
        """Whether a client or supervisor holds the mesh's lock now (a mesh is starting or running here)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


# --------------------------------------------------------------------------- registry and loopback blocks


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(os.fsencode(text)).hexdigest()[:length]


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
    if not _MESH_ID.fullmatch(mesh_id):
        return  # not a name this module gives: it names no registry file (never a path elsewhere)
    _unlink_entry(registry_dir() / f"{mesh_id}.json")


def _unlink_entry(path: Path) -> None:
    with registry_lock():
        path.unlink(missing_ok=True)


def pick_port(ip: str, preferred: int | None = None) -> int:
    """A free TCP port on ``ip``: the preferred one when it is free, else one the kernel hands out."""
    candidates = [preferred, 0] if preferred else [0]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As Envoy and the apps bind: with SO_REUSEADDR. Without it, connections in TIME_WAIT on an address a
            # deleted pod had (addresses are reused) would make the container port look taken, and the new pod
            # would answer on some other port than the one its spec and the Kubernetes API say.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    """``swept`` (owner was dead), ``running`` (left alone), ``stopped`` (forced) or ``refused`` (not a state
    folder of this user's holding that mesh: nothing in it touched, nothing signalled)."""
    reason: str = ""


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
    """SIGTERM then SIGKILL every recorded process (and those in ``also``) that is still the one we started.

    Only processes of this user running inside the state folder (:meth:`ProcessRecord.ours`) are signalled:
    ``pids.json`` and ``mesh.json`` say which PIDs to look at, never which to kill.
    """
    candidates = [*state.read_pids(), *also]
    owner = state.owner()
    if owner is not None:
        candidates.append(owner)
    records = [r for r in dict.fromkeys(candidates) if r.ours(state.root)]
    for r in records:
        r.kill(signal.SIGTERM)
    if not wait_gone(records, grace):
        for r in records:
            r.kill(signal.SIGKILL)
        wait_gone(records, 2.0)
    return len(records)


def remove_state(state: MeshState, mesh_id: str | None = None, holding_lock: bool = False, wait: float = 0.0) -> None:
    """Remove a mesh's state folder, and its short sockets elsewhere, once nothing runs there.

    Only a private folder of this user's whose ``mesh.json`` names ``mesh_id`` (any mesh when None) is
    removed, and only while nobody else holds its lock (``holding_lock``: the caller does; ``wait``: seconds to
    wait for it, as a supervisor that was just stopped may still hold it); an empty folder goes too. Anything
    else raises InsecurePath or BackendError saying why, and nothing is deleted.
    """
    try:
        state.root.lstat()
    except FileNotFoundError:
        _remove_short_sockets(state)
        return
    try:
        state.verify(mesh_id)
    except MeshNotRunning:
        # No mesh.json: only a folder with nothing of anyone's in it goes (a deploy that stopped early).
        check_private_dir(state.root, STATE_ENV)
        if {p.name for p in state.root.iterdir()} - {LOCK_NAME}:
            raise BackendError(
                f"{state.root} holds no mesh.json: it is not a mesh's state folder, so it is left as it is; "
                "remove it yourself if it is yours, or pass another --state-dir"
            ) from None
    fd = None if holding_lock else state.try_lock()
    deadline = time.monotonic() + wait
    while not holding_lock and fd is None and time.monotonic() < deadline:
        # A supervisor's main thread is a zombie (what wait_gone waits for) a few tens of milliseconds before
        # its other threads are gone and its files, the lock among them, are closed.
        time.sleep(0.005)
        fd = state.try_lock()
    if not holding_lock and fd is None:
        raise BackendError(f"a mesh is starting or running at {state.root} (it holds {state.lock_file}): left as is")
    try:
        clear_state(state.root)
        # Last, while the lock is still held: a deploy waiting for it then finds no stale file, and one that
        # comes later makes a new lock file, which no removal of ours touches (rmdir fails on a non-empty folder).
        state.lock_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            state.root.rmdir()
    finally:
        if fd is not None:
            os.close(fd)
    _remove_short_sockets(state)


def clear_state(root: Path, keep: str = LOCK_NAME) -> None:
    """Remove everything in ``root`` but ``keep``; ``mesh.json`` last, so an interrupted removal can be redone.

    The caller holds the mesh's lock and has checked the folder (:meth:`MeshState.verify`)."""
    entries = sorted(root.iterdir(), key=lambda p: p.name == "mesh.json")
    for entry in entries:
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def _remove_short_sockets(state: MeshState) -> None:
    # Sockets a killed supervisor or Envoy never unlinked, in the per-user folder for short paths.
    folder = state.short_socket_dir
    with contextlib.suppress(OSError, InsecurePath):
        check_private_dir(folder.parent, "TMPDIR")
        check_private_dir(folder, "TMPDIR")
        shutil.rmtree(folder, ignore_errors=True)


def sweep(force: bool = False) -> list[SweepResult]:
    """Find meshes whose owner died; stop whatever they left and remove their state and registry entry.

    A registry entry is only a pointer: a folder that is not this user's private state folder of that very
    mesh is refused (nothing in it deleted, nothing signalled) and the entry, which claims a loopback block
    for nothing, is dropped.
    """
    results = []
    for path, entry in _registry_entries():
        state_dir = entry.get("state_dir")
        mesh_id = str(entry.get("mesh_id", path.stem))
        if not state_dir:
            _unlink_entry(path)
            continue
        state = MeshState(state_dir)
        try:
            problem = _not_sweepable(state, str(state_dir), mesh_id, force)
        except (BackendError, InsecurePath) as exc:
            problem = str(exc)
        if problem == "running":
            results.append(SweepResult(str(state_dir), mesh_id, 0, "running"))
            continue
        if problem:
            _unlink_entry(path)
            results.append(SweepResult(str(state_dir), mesh_id, 0, "refused", problem))
            continue
        killed = kill_recorded(state)
        try:
            # A supervisor just stopped (with --force) holds the lock a moment longer than it runs.
            remove_state(state, mesh_id, wait=5.0 if killed else 0.0)
        except (BackendError, InsecurePath) as exc:
            results.append(SweepResult(str(state_dir), mesh_id, killed, "refused", str(exc)))
            continue
        _unlink_entry(path)
        results.append(SweepResult(str(state_dir), mesh_id, killed, "stopped" if force else "swept"))
    return results


def _not_sweepable(state: MeshState, named: str, mesh_id: str, force: bool) -> str:
    """Why the mesh a registry entry names cannot be swept now: ``running``, a refusal, or "" (it can)."""
    if not os.path.lexists(named):
        return ""  # its state is gone: only the entry (and any short socket) is left
    if str(state.root) != named:
        return f"{named} leads to {state.root} through a symbolic link: not followed"
    check_private_dir(state.root, STATE_ENV)
    # Before mesh.json: a deploy holds the lock from before it writes anything.
    if state.locked() and not force:
        return "running"
    try:
        state.verify(mesh_id)
    except MeshNotRunning:
        return f"{state.root} holds no mesh.json: it is not a mesh's state folder"
    if state.running() and not force:
        return "running"
    return ""
