"""How a distributed load generator's work is split between its workers (standard library only).

Used by the master process (:mod:`pytest_clover.load.master`, which imports locust) and by the pytest process,
which configures in-cluster worker pods (:mod:`pytest_clover.load.incluster`) and must never import locust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MASTER_ONLY_KEYS", "user_shares", "worker_config"]

MASTER_ONLY_KEYS = {"remote_workers": False, "bind_host": None, "bind_port": 0, "control_port": None}
"""Config keys that describe the master itself: a worker's config resets them."""


def user_shares(users: int, workers: int) -> list[int]:
    """Closed loop: ``users`` split as evenly as possible, the first ``users % workers`` workers one more."""
    return [users // workers + (1 if i < users % workers else 0) for i in range(workers)]


def worker_config(
    master: Mapping[str, Any], index: int, master_host: str, master_port: int, *, remote: bool = False
) -> dict[str, Any]:
    """The config of worker ``index`` of the master configured by ``master`` (a config as JSON data), reaching it at
    ``master_host:master_port``: the same load, the worker's index, its share of the closed-loop users, and
    (``remote``) the behaviour of a worker in a pod (no stdin pipe from the master; see ``Config.remote``)."""
    raw = dict(master)
    raw.update(MASTER_ONLY_KEYS)
    raw.update(worker_index=index, master_host=master_host, master_port=master_port, remote=remote)
    raw["ready_timeout_s"] = None
    users = master.get("users")
    if users is not None:
        raw["users"] = user_shares(int(users), int(master.get("workers", 1)))[index]
    return raw
