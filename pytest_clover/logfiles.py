"""Log files that rotate: a log's generations (``access.log.2``, ``access.log.1``, ``access.log``) and reading what
was appended to a log since a point, across rotations.

Standard library only: the embedded mesh's supervisor rotates its pods' logs with these names
(:mod:`pytest_clover.backends.local.logrotate`), and the report's per-hop breakdown (:mod:`pytest_clover.report.hops`)
reads them back, in pytest's process, without knowing which backend wrote them.

Rotating and reading take turns through :func:`rotation_lock`, an ``flock`` on a small file beside the log: a
rotation copies the file being written to ``.1`` and truncates it, so a reader that listed the files just before
would read ``.1`` without the lines just copied there, then find them gone from the truncated file. (Seen in CI:
the last request of a run missing from a hop's log, read while the last rotation ran.) A reader holds the lock
shared; a rotation takes it exclusively and without waiting, and when a reader holds it the rotation waits for
the next check (a log outgrows its limit by one check's writes, never loses lines).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HEAD_BYTES",
    "READ_LOCK_TIMEOUT_S",
    "LogMark",
    "appended_since",
    "generation",
    "generations",
    "lock_path",
    "mark",
    "rotation_lock",
]

READ_LOCK_TIMEOUT_S = 10.0
"""Seconds a reader waits for a rotation to finish (copying a 32 MiB log takes well under one) before it reads
anyway: a reader must never hang on a supervisor that died holding the lock (a dead process's lock is released
by the kernel, so this only guards against a stuck one)."""


MTIME_SLACK_S = 0.5
"""A file modified this little before a mark still counts as written after it (clocks and flush delays); an extra
entry from before the mark is harmless to a reader that filters by time, a missing one is not."""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def generation(path: Path, number: int) -> Path:
    """The path of a log's rotated copy ``number`` (1 the most recent): ``access.log`` → ``access.log.1``."""
    return path if number == 0 else path.with_name(f"{path.name}.{number}")


def generations(path: Path) -> list[Path]:
    """A log's files that exist, oldest first: its rotated copies (``….3``, ``….2``, ``….1``), then itself.

    Copies are counted up from ``.1`` and stop at the first missing one: a stray ``.7`` after a gap is
    not this log's."""
    path = Path(path)
    rotated = []
    number = 1
    while generation(path, number).exists():
        rotated.append(generation(path, number))
        number += 1
    rotated.reverse()
    return rotated + ([path] if path.exists() else [])


def lock_path(path: Path) -> Path:
    """The lock file of a log: ``access.log`` → ``.access.log.lock`` beside it (hidden, and not a generation)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def rotation_lock(path: Path, *, exclusive: bool, wait: float = READ_LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Hold a log's rotation lock: shared to read its generations, exclusive to rotate them.

    Yields whether the lock is held. A reader (``exclusive=False``) waits up to ``wait`` seconds for a rotation
    to end, then reads without the lock rather than hang; a rotation passes ``wait=0`` and, when it yields
    False, leaves the file for the next check. A log whose folder is gone yields False at once."""
    try:
        descriptor = os.open(lock_path(path), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield False
        return
    try:
        operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait
        held = False
        while True:
            try:
                fcntl.flock(descriptor, operation)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        yield held
    finally:
        os.close(descriptor)  # releases the lock with the last descriptor of this open file


HEAD_BYTES = 256
"""Bytes of a log's start a :class:`LogMark` keeps to recognise its file after a rotation: an access-log line
is about 550 bytes, and its first ones (time, request id) tell it from every other line."""


@dataclass(frozen=True)
class LogMark:
    """A point in a log: how far its file went, and how that file began (to find it again once rotated)."""

    path: Path
    """The log's path (the file being written)."""
    offset: int
    """The file's size then, in bytes (0 when there was no file)."""
    head: bytes
    """The file's first bytes then (up to :data:`HEAD_BYTES`): a renamed file keeps them, and so does the copy
    of a file copied and truncated, while the truncated file starts over with other lines."""
    inode: tuple[int, int] = (0, 0)
    """``(st_dev, st_ino)`` of the file, for an empty one (it has no head); (0, 0) when there was no file."""
    at: float = 0.0
    """Unix time of the mark (0: unknown). For an empty file: a copy made since holds only what came after."""


def mark(path: Path) -> LogMark:
    """The end of a log now: what :func:`appended_since` reads from."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            head = handle.read(HEAD_BYTES)
    except OSError:
        return LogMark(path, 0, b"", at=time.time())
    return LogMark(path, status.st_size, head, (status.st_dev, status.st_ino), at=time.time())


def _starts_with(path: Path, head: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(head)) == head
    except OSError:
        return False


def appended_since(since: LogMark) -> list[tuple[Path, int]]:
    """What was written to a log after ``since``, as (file, offset to read from) pieces, oldest first.

    The marked file is found among the log's files by its first bytes: where a rename took it (``.1``,
    ``.2``…), or in ``.1`` when it was copied and truncated. It is read from the mark on, then every newer
    file from its start. When it is gone (rotated out since), every file left is read from its start: entries
    from before the mark cannot be among them, as the marked file was older than all of them.

    A log that was empty at the mark has no head to find: every file written since the mark is read from its
    start (a copy-and-truncate keeps the inode of the file being written, so it cannot tell either; files
    last written before the mark hold nothing after it). A mark without its time falls back to the inode
    (right for a rename: a rotation skips empty files, so it is still the one being written, or the newest copy)."""
    files = generations(since.path)
    if since.offset == 0 and since.at > 0:
        return [(path, 0) for path in files if _mtime(path) >= since.at - MTIME_SLACK_S]
    if since.offset == 0:
        for index, path in enumerate(files):
            try:
                status = path.stat()
            except OSError:
                continue
            if (status.st_dev, status.st_ino) == since.inode:
                return [(newer, 0) for newer in files[index:]]
        return [(path, 0) for path in files]
    for index, path in enumerate(files):
        if _starts_with(path, since.head) and _size(path) >= since.offset:
            return [(path, since.offset)] + [(newer, 0) for newer in files[index + 1 :]]
    return [(path, 0) for path in files]
