"""Bounded disk for the embedded mesh's logs: size-based rotation of every log file, whatever the run's length.

Without it a mesh's logs grow for as long as it runs. Measured on 2 cores with the SDC sample at 500
requests/s (``benchmarks/bench_log_disk.py``): the Envoy access logs wrote 4.8 kB per request (one line of
about 650 bytes per hop and direction), 2.4 MB/s, 66 GB for a nightly 8-hour soak; every other log wrote
nothing per request (``envoy.log`` holds Envoy's start-up warnings, the VNF and the supervisor log events).

How each file is bounded, checked by the supervisor every :data:`CHECK_INTERVAL_S` (one ``os.stat`` per file):

- ``access.log`` (Envoy's file access logger): *copied* to ``access.log.1`` (older copies shifted to ``.2`` …
  and the oldest deleted) and truncated in place. Envoy writes it with ``O_APPEND`` (``/proc/<pid>/fdinfo``:
  flags 0102001), so it goes on at the new end without being told anything; what it appended during the copy
  is copied again just before the truncation, so only lines written in those microseconds are lost. (The
  first design renamed the file and had Envoy reopen it, ``POST /reopen_logs``: under 500 requests/s that
  stalled the busiest Envoy for seconds — bursts of 503s that a soak charged to the mesh.) The access logs of
  every live pod are rotated together, as soon as one of them reaches ``max_bytes``: generation *n* then
  covers the same stretch of time in every pod, so a request's entries at every hop are in the same
  generation, but for requests that straddle the rotation (Envoys flush every 100 ms), and the oldest copy
  starts at about the same request everywhere. The supervisor runs the check in a thread: copying 32 MiB must
  not hold its event loop.
- ``envoy.log`` (Envoy's ``--log-path``, a few lines an hour): renamed, then Envoy is told to reopen it.
- ``app.log``, ``envoy.stdout.log``, ``zygote.log``, ``supervisor.out`` and ``supervisor.log``: a child's
  stdout (or the supervisor's own log), which the writer cannot reopen, so they are *copied* to ``.1`` and
  truncated in place (``copytruncate``). Every writer has them open with ``O_APPEND``, so it goes on writing
  at the new end; a line written between the copy and the truncation is lost (these logs are quiet).
- Deleted pods keep their logs (a test's per-hop report still joins their entries), but only the
  ``dead_pods_kept`` most recently deleted ones: older dead pods' log files are removed, else a soak with a
  kill every 5 minutes would leave about 100 folders of logs behind.

The disk bound (:meth:`LogLimits.disk_bound`): each file and its copies take at most ``(1 + generations) ×
(its limit + what is written between two checks)``; access logs rotate at ``max_bytes``, the other logs at
``min(max_bytes, OTHER_MAX_BYTES)``. With the defaults a pod's logs take at most 132 MiB, and a mesh of
*P* pods at most ``(P + 4) × 132 MiB + 36 MiB`` (its pods, 4 dead ones, its own logs): for the SDC sample's
9 pods, 1.7 GiB plus one check's writes per file, for any duration. In practice only the access logs grow:
at 500 requests/s they stay under about 0.9 GB (the benchmark's projection, every access log full).

A run shorter than the bound behaves as before: nothing is renamed until a file reaches its limit.

Readers live in :mod:`pytest_clover.logfiles` (re-exported here): ``generations`` lists a log's files oldest
first (what ``LocalBackend.access_log`` reads), and ``mark`` / ``appended_since`` find what was appended after
a point across rotations (what the report's per-hop cursor reads, in pytest's process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...logfiles import HEAD_BYTES, LogMark, appended_since, generation, generations, mark, rotation_lock

__all__ = [
    "ACCESS_LOG",
    "ACCESS_LOG_PERCENT_ENV",
    "ACCESS_LOG_PERCENT_SETTING",
    "CHECK_INTERVAL_S",
    "CHECK_SECONDS_ENV",
    "CHECK_SECONDS_SETTING",
    "COPY_TRUNCATED_POD_LOGS",
    "DEFAULT_DEAD_PODS_KEPT",
    "DEFAULT_GENERATIONS",
    "DEFAULT_MAX_BYTES",
    "GENERATIONS_ENV",
    "GENERATIONS_SETTING",
    "HEAD_BYTES",
    "MAX_BYTES_ENV",
    "MAX_BYTES_SETTING",
    "MESH_LOGS",
    "OTHER_MAX_BYTES",
    "REOPENED_POD_LOGS",
    "LogLimits",
    "LogMark",
    "LogRotator",
    "Rotation",
    "appended_since",
    "copy_truncate",
    "generation",
    "generations",
    "log_limits",
    "mark",
    "rotate_by_rename",
    "rotation_lock",
]

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
"""An access log is rotated once it holds this many bytes (32 MiB: the busiest sidecar of the SDC sample,
proxy-access-control, logs 2 lines of about 650 bytes per request, so 50 s of it at 500 requests/s and 2 min
at 200/s; a short run never gets there)."""
DEFAULT_GENERATIONS = 2
"""Rotated copies kept of each log (``.1``, ``.2``) beside the file being written: as every access log is
rotated at once, 2 keep at least the last 2 rotations' worth of requests in every pod (100 s at 500
requests/s, 4 min at 200/s) for a reader, whichever moment it reads."""
OTHER_MAX_BYTES = 4 * 1024 * 1024
"""The rotation size of every log but the access logs (``app.log``, ``envoy.log``, ``envoy.stdout.log``, the
supervisor's and the zygote's), when ``max_bytes`` is larger: they are quiet, and a bound of 32 MiB each would
count for nothing but the worst case."""
DEFAULT_DEAD_PODS_KEPT = 4
"""Deleted pods whose logs are kept (the most recently deleted); older dead pods' logs are removed."""
CHECK_INTERVAL_S = 2.0
"""Seconds between two checks of the files' sizes: a file may outgrow its limit by what is written meanwhile
(about 1.3 MB for the busiest access log at 500 requests/s)."""
MIN_MAX_BYTES = 4096
"""The smallest ``max_bytes`` accepted: a few access-log lines."""

MAX_BYTES_ENV = "CLOVER_LOG_MAX_BYTES"
"""Environment variable giving ``max_bytes`` (bytes, or with a suffix: ``64KiB``, ``32MiB``, ``1GiB``)."""
GENERATIONS_ENV = "CLOVER_LOG_GENERATIONS"
"""Environment variable giving the rotated copies kept per log."""
ACCESS_LOG_PERCENT_ENV = "CLOVER_ACCESS_LOG_PERCENT"
"""Environment variable giving the share of requests every Envoy logs (100 by default: every request)."""
CHECK_SECONDS_ENV = "CLOVER_LOG_CHECK_SECONDS"
"""Environment variable giving the seconds between two checks (a test with a tiny bound checks more often)."""
MAX_BYTES_SETTING = "log_max_bytes"
"""The same as a local backend setting (in ``mesh.json``), which wins over the environment."""
GENERATIONS_SETTING = "log_generations"
"""The same as a local backend setting (in ``mesh.json``), which wins over the environment."""
ACCESS_LOG_PERCENT_SETTING = "access_log_percent"
"""The same as a local backend setting (in ``mesh.json``), which wins over the environment."""
CHECK_SECONDS_SETTING = "log_check_seconds"
"""The same as a local backend setting (in ``mesh.json``), which wins over the environment."""

ACCESS_LOG = "access.log"
"""Every pod's Envoy access log: rotated by renaming, in every live pod at once."""
REOPENED_POD_LOGS = ("envoy.log",)
"""Pod logs Envoy itself writes and reopens (besides the access log): rotated by renaming, each on its own."""
COPY_TRUNCATED_POD_LOGS = ("app.log", "envoy.stdout.log")
"""Pod logs that are a child's stdout and stderr, which it cannot reopen: copied and truncated."""
MESH_LOGS = ("supervisor.log", "supervisor.out", "zygote.log")
"""The mesh's own logs in its state folder: copied and truncated (the supervisor's stdout belongs to the
process that started it, ``supervisor.log`` to its logging handler, ``zygote.log`` to the zygote's stdout)."""

_SIZE = re.compile(r"^\s*(\d+)\s*(|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LogLimits:
    """How big a mesh's logs may grow: the rotation size, the copies kept, and how often they are checked."""

    max_bytes: int = DEFAULT_MAX_BYTES
    """Bytes at which an access log is rotated (default 32 MiB); the other logs rotate at the smaller of
    this and :data:`OTHER_MAX_BYTES`."""
    generations: int = DEFAULT_GENERATIONS
    """Rotated copies kept of each log (default 2); 0 keeps none (a rotated file is deleted at once)."""
    dead_pods_kept: int = DEFAULT_DEAD_PODS_KEPT
    """Deleted pods whose logs are kept (default 4, the most recently deleted)."""
    interval: float = CHECK_INTERVAL_S
    """Seconds between two checks of the sizes (default 2 s): the cost is one ``os.stat`` per log file."""
    access_log_percent: float = 100.0
    """Share of requests every Envoy writes to its access log, in percent (default 100: every request). Below
    100, Envoy keeps a request by its ``x-request-id`` (the same answer at every hop for ids starting with 8
    hex digits, as Envoy's UUIDs do), so the per-hop report still sees whole requests, fewer of them."""

    @property
    def other_max_bytes(self) -> int:
        """Bytes at which every log but the access logs is rotated."""
        return min(self.max_bytes, OTHER_MAX_BYTES)

    def pod_bound(self, slack: int = 0) -> int:
        """The most bytes one pod's logs take, ``slack`` being what may be written to a file between checks."""
        copies = 1 + self.generations
        access = copies * (self.max_bytes + slack)
        others = copies * (self.other_max_bytes + slack) * (len(REOPENED_POD_LOGS) + len(COPY_TRUNCATED_POD_LOGS))
        return access + others

    def disk_bound(self, live_pods: int, slack: int = 0) -> int:
        """The most bytes a mesh of ``live_pods`` pods keeps in logs at any moment, whatever its duration: its
        live pods', its kept dead pods' and its own (``slack``: bytes one file may get between two checks)."""
        mesh = (1 + self.generations) * (self.other_max_bytes + slack) * len(MESH_LOGS)
        return (live_pods + self.dead_pods_kept) * self.pod_bound(slack) + mesh


def _parse_size(text: str) -> int | None:
    match = _SIZE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)[:1].lower()]


def _setting(
    name: str, env: str, settings: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """(value, where it was given, its name there) for a setting, the backend's setting first; None if unset."""
    if settings.get(name) not in (None, ""):
        return str(settings[name]), "the local backend's settings", name
    if environ.get(env, "").strip():
        return environ[env], "the environment", env
    return None


def log_limits(settings: Mapping[str, object], environ: Mapping[str, str] | None = None) -> LogLimits:
    """The log limits a mesh runs with: each from the local backend's settings (``mesh.json``: ``log_max_bytes``,
    ``log_generations``, ``access_log_percent``, ``log_check_seconds``), else the environment
    (:data:`MAX_BYTES_ENV`, :data:`GENERATIONS_ENV`, :data:`ACCESS_LOG_PERCENT_ENV`, :data:`CHECK_SECONDS_ENV`),
    else the default. A bad value raises a
    ConfigError naming where it was given, the setting, and what to give instead."""
    env = os.environ if environ is None else environ
    changes: dict[str, object] = {}
    for setting, variable, attribute, parse, wanted in _LIMIT_SETTINGS:
        given = _setting(setting, variable, settings, env)
        if given is None:
            continue
        value, where, field = given
        parsed = parse(value)
        if parsed is None:
            raise ConfigError.single(where, "local backend", field, f"must be {wanted}, got {value!r}")
        changes[attribute] = parsed
    return dataclasses.replace(LogLimits(), **changes)  # type: ignore[arg-type]


def _parse_max_bytes(text: str) -> int | None:
    size = _parse_size(text)
    return size if size is not None and size >= MIN_MAX_BYTES else None


def _parse_generations(text: str) -> int | None:
    try:
        count = int(text.strip())
    except ValueError:
        return None
    return count if 0 <= count <= 100 else None


def _parse_percent(text: str) -> float | None:
    try:
        percent = float(text.strip().rstrip("%"))
    except ValueError:
        return None
    return percent if 0.0 < percent <= 100.0 else None


def _parse_check_seconds(text: str) -> float | None:
    try:
        seconds = float(text.strip().removesuffix("s"))
    except ValueError:
        return None
    return seconds if 0.05 <= seconds <= 60.0 else None


_LIMIT_SETTINGS: tuple[tuple[str, str, str, Callable[[str], object | None], str], ...] = (
    (
        MAX_BYTES_SETTING,
        MAX_BYTES_ENV,
        "max_bytes",
        _parse_max_bytes,
        f"a size in bytes of at least {MIN_MAX_BYTES} (a number, or with a suffix: 64KiB, 32MiB, 1GiB): the size "
        "at which each log file is rotated",
    ),
    (
        GENERATIONS_SETTING,
        GENERATIONS_ENV,
        "generations",
        _parse_generations,
        f"a whole number from 0 to 100: the rotated copies kept of each log file (default {DEFAULT_GENERATIONS})",
    ),
    (
        ACCESS_LOG_PERCENT_SETTING,
        ACCESS_LOG_PERCENT_ENV,
        "access_log_percent",
        _parse_percent,
        "a percentage above 0 and at most 100: the share of requests every Envoy writes to its access log (100, "
        "the default, logs every request)",
    ),
    (
        CHECK_SECONDS_SETTING,
        CHECK_SECONDS_ENV,
        "interval",
        _parse_check_seconds,
        f"a number of seconds from 0.05 to 60: how often the log files' sizes are checked (default "
        f"{CHECK_INTERVAL_S:g})",
    ),
)
"""Each setting: its name in ``mesh.json``, its environment variable, the :class:`LogLimits` field, its parser
(None: refused), and what a valid value is (for the error)."""


# --------------------------------------------------------------------------------------------- one file


def _shift(path: Path, keep: int) -> None:
    """Make room for a new ``.1``: ``.keep`` (and any older copy) deleted, ``.n`` renamed ``.n+1``."""
    number = keep
    while generation(path, number + 1).exists():  # copies beyond ``keep``: left by a larger setting
        number += 1
    for stale in range(number, keep - 1, -1):
        if stale >= 1:
            with contextlib.suppress(FileNotFoundError):
                generation(path, stale).unlink()
    for number in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(generation(path, number), generation(path, number + 1))


def rotate_by_rename(path: Path, keep: int) -> bool:
    """Rename a log its writer reopens to ``.1`` (older copies shifted, the oldest beyond ``keep`` deleted).

    Its writer goes on writing to the renamed file until it reopens the path (a new file). With ``keep`` 0 the
    file is only deleted. False when there is no such file, it is empty (nothing to rotate) or a reader holds
    its :func:`rotation_lock` (the next check rotates it)."""
    path = Path(path)
    with rotation_lock(path, exclusive=True, wait=0) as held:
        return held and _rename(path, keep)


def _rename(path: Path, keep: int) -> bool:
    try:
        if path.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    if keep == 0:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    _shift(path, keep)
    try:
        os.replace(path, generation(path, 1))
    except FileNotFoundError:
        return False
    return True


def copy_truncate(path: Path, keep: int) -> bool:
    """Copy a log its writer cannot reopen to ``.1`` (older copies shifted), then truncate it to 0 bytes.

    The writer must have it open with ``O_APPEND`` (then it writes at the new end); a line written between the
    copy and the truncation is lost. The copy is written under a temporary name and renamed, so ``.1`` is never
    seen half-written. False when there is no such file, it is empty or a reader holds its
    :func:`rotation_lock` (the next check rotates it)."""
    path = Path(path)
    with rotation_lock(path, exclusive=True, wait=0) as held:
        return held and _copy_truncate(path, keep)


def _copy_truncate(path: Path, keep: int) -> bool:
    try:
        if path.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    if keep > 0:
        _shift(path, keep)
        partial = path.with_name(f".{path.name}.rotating")
        try:
            with path.open("rb") as source, partial.open("wb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
                # What was appended during the bulk copy, again, just before the truncation: the lines lost are
                # only those written in the microseconds between this last read and the truncate.
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
                os.truncate(path, 0)
            os.replace(partial, generation(path, 1))
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            return False
    else:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, 0)
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------------------------- the mesh


@dataclass
class Rotation:
    """What one :meth:`LogRotator.check` did, and what the supervisor must do next."""

    reopen: set[str] = dataclasses.field(default_factory=set)
    """Pods whose Envoy must reopen its log files (a rotation now, or an earlier one it has not acknowledged)."""
    rotated: list[Path] = dataclasses.field(default_factory=list)
    """Files rotated by this check (their path before rotation)."""
    pruned: list[str] = dataclasses.field(default_factory=list)
    """Dead pods whose logs this check removed."""


class LogRotator:
    """Keeps a mesh's logs within :class:`LogLimits`; :meth:`check` is called by the supervisor every
    ``limits.interval`` seconds, with the live pods and their folders.

    It only touches files. Telling Envoys to reopen is the caller's: it gets the pods in
    :attr:`Rotation.reopen` and calls :meth:`reopened` for each Envoy that did; the others are asked again at
    the next check (until then such an Envoy writes to its ``.1``, which a next rotation shifts, not lost).
    """

    def __init__(self, limits: LogLimits, pods_root: Path, mesh_logs: Iterable[Path] = ()) -> None:
        self.limits = limits
        """The sizes, copies and dead pods it keeps to."""
        self.pods_root = Path(pods_root)
        """The folder holding one folder per pod, live or dead (``<state>/pods``)."""
        self.mesh_logs = [Path(p) for p in mesh_logs]
        """The mesh's own logs (:data:`MESH_LOGS` in its state folder), copied and truncated."""
        self.pending: set[str] = set()
        """Pods whose Envoy has not yet reopened its files since their rotation."""
        self._pruned: set[str] = set()

    def reopened(self, pod: str) -> None:
        """The Envoy of ``pod`` reopened its log files (or will open them afresh: it restarted)."""
        self.pending.discard(pod)

    def check(self, live: Mapping[str, Path]) -> Rotation:
        """Rotate what outgrew its limit; ``live`` maps every live pod's name to its folder."""
        done = Rotation()
        keep = self.limits.generations
        small = self.limits.other_max_bytes
        access = {pod: Path(folder) / ACCESS_LOG for pod, folder in live.items()}
        # Together, so that a generation covers the same time in every pod (see the module's docstring).
        if any(_size(path) >= self.limits.max_bytes for path in access.values()):
            with contextlib.ExitStack() as locks:
                # All or none: while a reader holds one pod's log, every access log waits for the next check.
                held = all(locks.enter_context(rotation_lock(p, exclusive=True, wait=0)) for p in access.values())
                for path in access.values() if held else ():
                    # Envoy writes its access logs with O_APPEND (seen in /proc/<pid>/fdinfo: flags 0102001), so
                    # they are copied and truncated: no reopen. Renaming and POST /reopen_logs stalled a busy Envoy
                    # for seconds under load (503 bursts at 500 requests/s), which a soak then charged to the mesh.
                    if _copy_truncate(path, keep):
                        done.rotated.append(path)
        for pod, folder in live.items():
            for name in REOPENED_POD_LOGS:
                path = Path(folder) / name
                if _size(path) >= small and rotate_by_rename(path, keep):
                    done.rotated.append(path)
                    self.pending.add(pod)
            for name in COPY_TRUNCATED_POD_LOGS:
                path = Path(folder) / name
                if _size(path) >= small and copy_truncate(path, keep):
                    done.rotated.append(path)
        for path in self.mesh_logs:
            if _size(path) >= small and copy_truncate(path, keep):
                done.rotated.append(path)
        self.pending &= set(live)  # a deleted pod's Envoy reopens nothing
        done.reopen = set(self.pending)
        done.pruned = self._prune_dead(set(live))
        return done

    def _prune_dead(self, live: set[str]) -> list[str]:
        """Remove the logs of dead pods beyond the ``dead_pods_kept`` most recently deleted."""
        try:
            folders = [f for f in self.pods_root.iterdir() if f.is_dir() and f.name not in live]
        except OSError:
            return []
        dead = [f for f in folders if f.name not in self._pruned]
        if len(dead) <= self.limits.dead_pods_kept:
            return []

        def last_write(folder: Path) -> float:
            # A dead pod's logs stop changing when it dies: the newest of them dates its death.
            times = []
            for path in _log_files(folder) or [folder]:
                with contextlib.suppress(OSError):
                    times.append(path.stat().st_mtime)
            return max(times, default=0.0)

        dead.sort(key=last_write, reverse=True)
        pruned = []
        for folder in dead[self.limits.dead_pods_kept :]:
            for path in _log_files(folder):
                with contextlib.suppress(OSError):
                    path.unlink()
            self._pruned.add(folder.name)
            pruned.append(folder.name)
        return pruned


def _log_files(folder: Path) -> list[Path]:
    """A pod folder's log files and their rotated copies."""
    names = (ACCESS_LOG, *REOPENED_POD_LOGS, *COPY_TRUNCATED_POD_LOGS)
    found = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            base = path.name.split(".log", 1)[0] + ".log"
            if base in names and path.is_file():
                found.append(path)
    return found
