"""Where the kubernetes client writes a kubeconfig's inline certificates and keys: a private folder per process.

The client writes each ``*-data`` field of a kubeconfig (the cluster's CA, a client certificate, the client's
private key) to a file of its own, because Python's ssl takes paths, and removes those files when the process
exits normally. A run killed with SIGKILL never gets there: the files, a private key among them, stayed in the
system's temp folder for good (one per killed run, found after CI). So they go to a folder of this process in the
private runtime folder (0700, see :mod:`pytest_clover.runtime`), and each process that reads a kubeconfig first
removes the folders of processes that are gone.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
from pathlib import Path
from typing import Any

import psutil

from ...runtime import runtime_dir

__all__ = ["FOLDER", "kube_files_dir", "load_configuration", "sweep_dead"]

FOLDER = "kube-files"
"""In the runtime folder: one folder per process that read a kubeconfig, named by its PID."""


def load_configuration(kubeconfig: str | None, context: str | None, *, in_cluster: bool) -> Any:
    """A client configuration of its own (never the process-wide default) for ``context`` of ``kubeconfig``, or for
    the pod's service account; the kubeconfig's inline certificates and key written to this process's folder.
    Raises what the client raises: callers translate it."""
    from kubernetes import client, config

    configuration = client.Configuration()
    # The client 37 leaves its config helpers untyped.
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=kube_files_dir(),
        )
    return configuration


def kube_files_dir() -> str:
    """This process's folder for the client's files (made, and removed at a normal exit); the folders of processes
    that are gone are removed first."""
    return str(_own_folder(runtime_dir() / FOLDER))


@functools.cache
def _own_folder(base: Path) -> Path:
    # Once per runtime folder and process: the client reuses a file for the same content, so the folder must stay
    # for the life of the process.
    base.mkdir(mode=0o700, exist_ok=True)
    sweep_dead(base)
    mine = base / str(os.getpid())
    mine.mkdir(mode=0o700, exist_ok=True)
    # Registered before the client registers its own clean-up (at its first file), so it runs after it (atexit
    # runs last in first): the client removes its files, then this removes the folder and anything left.
    atexit.register(shutil.rmtree, mine, True)
    return mine


def sweep_dead(base: Path) -> list[Path]:
    """Remove the folders in ``base`` of processes that no longer run; returns them."""
    removed = []
    for entry in base.iterdir():
        if not (entry.name.isdigit() and entry.is_dir()) or entry.is_symlink():
            continue
        # A PID reused since only keeps a dead run's folder until that process ends.
        if not psutil.pid_exists(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
