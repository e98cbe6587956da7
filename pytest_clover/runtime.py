"""The per-user runtime folder: what pytest-clover keeps beyond one process (the local backend's registry of
meshes, the index of fault ledgers), and what a killed process may leave that must not lie in the open (the
kubernetes client's files of a kubeconfig's inline certificates and key: ``kube-files/<pid>``).

Whoever can write there can make ``clover cleanup`` delete or signal what they name, so it is private: created
0700, and refused — never used — when it is a symbolic link, when another user owns it, or when its group or
others may write to it. ``$CLOVER_RUNTIME_DIR`` names another one (tests use it to isolate themselves).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InsecurePath

__all__ = ["RUNTIME_ENV", "check_private_dir", "private_dir", "runtime_dir", "runtime_path"]

RUNTIME_ENV = "CLOVER_RUNTIME_DIR"


def runtime_path() -> Path:
    """Where the runtime folder is (``$CLOVER_RUNTIME_DIR``, else ``$TMPDIR/pytest-clover-<uid>``), unchecked and
    not made: to look whether there is anything in it without touching it."""
    override = os.environ.get(RUNTIME_ENV)
    return Path(override) if override else Path(tempfile.gettempdir()) / f"pytest-clover-{os.getuid()}"


def runtime_dir() -> Path:
    """The runtime folder, private to this user, made if missing (InsecurePath if it is not ours)."""
    return private_dir(runtime_path(), RUNTIME_ENV)


def private_dir(path: Path, setting: str = RUNTIME_ENV) -> Path:
    """``path`` as a folder only this user can write to: made 0700 if missing, InsecurePath if it is not ours.

    ``setting`` names what the user can set to use another folder (the message says so).
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InsecurePath(
            f"cannot make the private folder {path}: {exc}; set {setting} to a folder of your own"
        ) from exc
    return check_private_dir(path, setting)


def check_private_dir(path: Path, setting: str = RUNTIME_ENV) -> Path:
    """``path`` if it is a folder only this user can write to, else InsecurePath saying why; never makes it.

    For folders pytest-clover is about to delete or act on (a mesh's state folder named in the registry):
    what is checked is the folder itself, not what a file in it claims.
    """
    try:
        info = path.lstat()
    except OSError as exc:
        raise InsecurePath(f"cannot inspect the folder {path}: {exc}; set {setting} to a folder of your own") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InsecurePath(
            f"{path} is not a folder but {'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'a file'}: someone may "
            f"be redirecting pytest-clover's state; remove it, or set {setting} to a folder of your own"
        )
    if info.st_uid != os.getuid():
        raise InsecurePath(
            f"{path} belongs to user id {info.st_uid}, not to you ({os.getuid()}): pytest-clover will not keep its "
            f"state where another user can change it; set {setting} to a folder of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InsecurePath(
            f"{path} can be written by its group or by others (mode {stat.S_IMODE(info.st_mode):o}): anyone could "
            f"plant what `clover cleanup` acts on; run `chmod 700 {path}` or set {setting} to a folder of your own"
        )
    return path
