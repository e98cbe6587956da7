"""The fault ledger: the faults a process has open, on disk, so that a killed run leaves nothing in force.

Before anything is injected, what is needed to revert it (the VirtualService as it was, the previous replica
count…) is appended to a JSON-lines file; the entry is closed after the revert. A pytest killed with SIGKILL
leaves its open entries behind, and :func:`sweep_ledger` (run by the next session before any test, and by
``clover cleanup``) reverts them on the mesh they were injected in if it still runs — found again through the
backend registry from the entry's :class:`~pytest_clover.backends.MeshRecord` — and drops them if that mesh
died (a mesh owned by pytest dies with it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backends.protocol import Backend, MeshRecord
from ..backends.registry import connect
from ..errors import BackendNotFound, CloverError
from .istio import restore_object

__all__ = ["Ledger", "read_ledger", "registered_ledgers", "revert_entry", "sweep_ledger", "sweep_registered"]


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _owner_alive(owner: Mapping[str, Any]) -> bool:
    try:
        pid, created = int(owner["pid"]), float(owner["create_time"])
    except (KeyError, TypeError, ValueError):
        return False
    start = _process_start(pid)
    return start is not None and abs(start - created) < 0.05


class Ledger:
    """The faults this process has open, on disk, so a killed run can be swept later.

    JSON lines, append-only (a SIGKILL can cut a line short; such a line is ignored):
    ``{"op": "owner", "pid", "create_time", "started"}`` first, then ``{"op": "open", "id", "kind",
    "description", "time", "mesh", "revert"}`` before each injection (written again when the revert data
    changes: the last line of an id wins) and ``{"op": "close", "id"}`` after each revert. ``mesh`` says
    how to reach the mesh again (a :class:`~pytest_clover.backends.MeshRecord`: ``{"backend", "location"}``);
    ``revert`` holds ``{"restore": [{"kind", "name", "doc"}]}`` (doc None: delete) and/or ``{"scale": {"deployment",
    "replicas"}}``. The file is removed once nothing is open.

    While it holds open faults, the ledger is also listed in this user's private runtime folder
    (:func:`registered_ledgers`), so that ``clover cleanup`` and any later run find it from wherever it was written:
    a pytest killed while a ``--clover-keep-mesh`` mesh runs leaves faults on a mesh that outlives it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._open: dict[str, dict[str, Any]] = {}

    def _write(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as out:
            if fresh:
                pid = os.getpid()
                owner = {"op": "owner", "pid": pid, "create_time": _process_start(pid), "started": time.time()}
                out.write(json.dumps(owner) + "\n")
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()
        if fresh:
            _register(self.path)

    def open(self, fault_id: str, kind: str, description: str, mesh: MeshRecord, revert: Mapping[str, Any]) -> None:
        record = {
            "op": "open",
            "id": fault_id,
            "kind": kind,
            "description": description,
            "time": time.time(),
            "mesh": mesh.as_dict(),
            "revert": dict(revert),
        }
        with self._lock:
            self._write(record)
            self._open[fault_id] = record

    def close(self, fault_id: str) -> None:
        with self._lock:
            if self._open.pop(fault_id, None) is None:
                return
            self._write({"op": "close", "id": fault_id})
            if not self._open:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                _unregister(self.path)

    def open_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._open.values())


def _index_entry(path: Path) -> Path | None:
    """Where the runtime folder lists this ledger; None when the runtime folder cannot be used (the ledger in the
    report dir still works: the next run there sweeps it)."""
    from ..runtime import private_dir, runtime_dir

    try:
        index = private_dir(runtime_dir() / "ledgers")
    except CloverError:
        return None
    digest = hashlib.sha1(os.fsencode(str(path.resolve()))).hexdigest()[:24]
    return index / f"{digest}.json"


def _register(path: Path) -> None:
    entry = _index_entry(path)
    if entry is not None:
        with contextlib.suppress(OSError):
            entry.write_text(json.dumps({"path": str(path.resolve())}), encoding="utf-8")


def _unregister(path: Path) -> None:
    entry = _index_entry(path)
    if entry is not None:
        with contextlib.suppress(OSError):
            entry.unlink(missing_ok=True)


def registered_ledgers() -> list[Path]:
    """The ledgers of this user that still hold open faults, wherever they were written (stale entries dropped)."""
    from ..runtime import private_dir, runtime_dir

    try:
        index = private_dir(runtime_dir() / "ledgers")
    except CloverError:
        return []
    found: list[Path] = []
    for entry in sorted(index.glob("*.json")):
        try:
            path = Path(str(json.loads(entry.read_text(encoding="utf-8"))["path"]))
        except (OSError, ValueError, KeyError, TypeError):
            entry.unlink(missing_ok=True)
            continue
        if path.exists() or any(path.parent.glob(f"{path.name}.sweeping-*")):
            found.append(path)
        else:
            entry.unlink(missing_ok=True)
    return found


def sweep_registered(backend: Backend | None = None) -> list[str]:
    """:func:`sweep_ledger` over every ledger of this user that holds open faults (``clover cleanup``)."""
    messages: list[str] = []
    for path in registered_ledgers():
        if path.exists():
            messages += sweep_ledger(path, backend)
            if not path.exists():
                _unregister(path)
    return messages


def read_ledger(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The owner record and the entries still open, in the order they were opened."""
    owner: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    order: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return owner, []
    for n, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if not isinstance(record, dict):
            continue
        op = record.get("op")
        if op == "owner" and not owner:
            owner = record
        elif op == "open" and record.get("id"):
            entries[str(record["id"])] = record
            order.setdefault(str(record["id"]), n)
        elif op == "close":
            entries.pop(str(record.get("id")), None)
    return owner, sorted(entries.values(), key=lambda r: order[str(r["id"])])


def revert_entry(backend: Backend, entry: Mapping[str, Any]) -> None:
    """Put back what one ledger entry says it changed, on ``backend``."""
    revert = entry.get("revert") or {}
    for item in reversed(revert.get("restore") or []):
        restore_object(backend, str(item["kind"]), str(item["name"]), item.get("doc"))
    scale = revert.get("scale")
    if scale:
        backend.scale(str(scale["deployment"]), int(scale["replicas"]))


def sweep_ledger(path: str | os.PathLike[str], backend: Backend | None = None) -> list[str]:
    """Revert the faults that dead runs left open; one line per fault swept.

    ``path`` is a ledger file or a folder of them (``<report-dir>/.clover``). A ledger whose owner still
    runs (another pytest, an xdist sibling) is left alone. With ``backend``, every open fault is reverted
    on it; without, each goes back on the mesh it was injected in when that mesh still runs (a
    ``--clover-keep-mesh`` or ``clover up`` mesh), and is dropped when that mesh is gone (it took its
    faults with it). A fault that cannot be reverted stays in a ledger for the next sweep.
    """
    root = Path(path)
    files = sorted(root.glob("*.jsonl*")) if root.is_dir() else [root]
    messages: list[str] = []
    for file in files:
        if ".sweeping-" in file.name:
            pid = file.name.rsplit(".sweeping-", 1)[1]
            if pid.isdigit() and _process_start(int(pid)) is not None:
                continue  # another process is sweeping it right now
        owner, _ = read_ledger(file)
        if owner and _owner_alive(owner):
            continue
        claimed = file.with_name(f"{file.name.split('.sweeping-')[0]}.sweeping-{os.getpid()}")
        try:
            os.replace(file, claimed)
        except FileNotFoundError:
            continue  # someone else claimed it first
        _, entries = read_ledger(claimed)
        left: list[dict[str, Any]] = []
        connected: dict[MeshRecord, Backend | BackendNotFound | None] = {}
        for entry in reversed(entries):
            record = MeshRecord.from_dict(entry.get("mesh") or {})
            what = f"{entry.get('description', entry.get('kind', 'fault'))}"
            if not entry.get("revert"):
                messages.append(f"{what}: nothing to revert")
                continue
            target: Backend | BackendNotFound | None = backend
            if target is None:
                if record not in connected:
                    try:
                        connected[record] = connect(record)
                    except BackendNotFound as exc:
                        connected[record] = exc
                    except CloverError:
                        connected[record] = None
                target = connected[record]
            if isinstance(target, BackendNotFound):
                messages.append(f"{what}: kept for the next sweep ({target})")
                left.append(entry)
                continue
            if target is None:
                mesh = str(record).removeprefix("the ")
                messages.append(f"{what}: its {mesh} no longer runs; nothing left to revert")
                continue
            try:
                revert_entry(target, entry)
            except CloverError as exc:
                messages.append(f"{what}: could not be reverted ({exc}); kept for the next sweep")
                left.append(entry)
                continue
            messages.append(f"{what}: reverted on {record}")
        if left:
            # No owner line: whoever sweeps next takes them.
            with open(file.with_name(file.name.split(".sweeping-")[0]), "a", encoding="utf-8") as out:
                for entry in reversed(left):
                    out.write(json.dumps(entry, sort_keys=True) + "\n")
        with contextlib.suppress(FileNotFoundError):
            claimed.unlink()
    return messages
