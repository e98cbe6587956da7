"""Drive a load generator from pytest: start it in a child process, tag phases, stop it, get a LoadResult.

The pytest process never imports locust or gevent: importing locust monkey-patches the whole process, which
breaks pytest-xdist (``LoopExit`` in the worker's queue) and anything that imported ssl first. The generator
runs as ``python -m pytest_clover.load.worker`` and talks JSON lines over its stdin/stdout (see worker.py);
its stderr goes to ``load-worker.log`` in the report directory, next to locust's CSV files
(``locust_stats.csv``, ``locust_stats_history.csv``, ``locust_failures.csv``, ``locust_exceptions.csv``).

With ``LoadGenerator(..., workers=N)`` (N ≥ 2) the child is ``python -m pytest_clover.load.master``, which speaks
the same protocol and runs N locust worker processes (logs ``load-worker-<i>.log``) whose windows it merges
exactly (see master.py and merge.py). A worker lost mid-run makes the run raise
:class:`~pytest_clover.errors.WorkerLost` (the test is INCONCLUSIVE): at the next phase, at once if a phase is
under way, and from :meth:`LoadRun.stop`.

Usage::

    gen = LoadGenerator(base_url="http://127.0.0.1:8080", report_dir=tmp_path / "load", seed=0)
    with gen.start(rate=100.0) as run:          # open loop: 100 requests/s on a fixed schedule
        run.phase("baseline", seconds=10)
        run.mark("fault-start", "delay 500ms on http-lb")
        run.phase("fault", seconds=10)
        run.phase("recovery", seconds=20)
    result = run.result                          # or: result = run.stop()
    result.phases["fault"].p99_ms, result.recovery_seconds("fault", p99_ms=50.0)
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from ..errors import LoadGeneratorError, WorkerLost
from ..timeline import Event, Timeline
from .result import LoadResult

if TYPE_CHECKING:
    from .incluster import InCluster

WORKER_MODULE = "pytest_clover.load.worker"
MASTER_MODULE = "pytest_clover.load.master"
"""The child for ``workers ≥ 2``: a locust master and its workers, behind the one-generator protocol."""
LOG_NAME = "load-worker.log"
READY_TIMEOUT_S = 60.0
"""Importing locust and spawning the users takes about a second; a slow CI machine gets plenty of room."""
STOP_GRACE_S = 5.0
"""After ``{"stop": true}`` the generator gets the request timeout (to collect the outcomes of the requests already
sent) plus this long to send its last windows and exit, then SIGTERM, then (this long later) SIGKILL."""
TAIL_BYTES = 4000


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exit code {code} (killed by {name})"
    return f"exit code {code}"


def _tail(path: Path, limit: int = TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return text.rstrip()


class LoadGenerator:
    """Starts load runs against one base URL; every run writes its files under ``report_dir``.

    ``seed`` drives everything random in the generator (the weighted path mix). ``time_scale`` multiplies
    every phase duration (e.g. 0.1 for a quick smoke run of a long suite). ``timeline`` receives the
    phase-start/phase-end events and :meth:`LoadRun.mark` events; a fresh one is made if none is given.
    ``workers`` ≥ 2 spreads the load over that many local locust worker processes under a master: the open-loop
    schedule split exactly between them (together they send the one-generator schedule), the closed loop's
    users split as evenly as possible, and their windows merged exactly (the same percentiles as one histogram
    of all requests). A worker lost mid-run makes the run INCONCLUSIVE (:class:`~pytest_clover.errors.WorkerLost`).
    """

    def __init__(
        self,
        base_url: str,
        report_dir: Path,
        seed: int = 0,
        time_scale: float = 1.0,
        timeline: Timeline | None = None,
        workers: int = 1,
        in_cluster: InCluster | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer (1: one process, no master), not {workers!r}")
        self.workers = workers
        self.in_cluster = in_cluster
        """Run the workers as pods of the cluster under test (``--clover-load-in-cluster``; see
        :mod:`pytest_clover.load.incluster`); None: local processes."""
        self.base_url = base_url.rstrip("/")
        self.report_dir = Path(report_dir)
        self.seed = seed
        self.time_scale = time_scale
        self.timeline = timeline if timeline is not None else Timeline()

    def start(
        self,
        *,
        rate: float | None = None,
        users: int | None = None,
        path: str = "/",
        paths: Mapping[str, float] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> LoadRun:
        """Start the generator and return once it sends; the traffic until the first phase has no phase.

        Exactly one of ``rate`` (open loop, requests/s on a fixed schedule; latency from the intended send
        time) and ``users`` (closed loop: that many users, each sending its next request when the previous one
        completed). ``paths`` (path → weight) replaces ``path`` with a seeded weighted mix. ``timeout_s``
        bounds each request (connect and read); a timeout counts as status 0. It also bounds how long
        :meth:`LoadRun.stop` waits for the requests already sent.
        """
        if (rate is None) == (users is None):
            raise ValueError("give exactly one of rate= (open loop, requests/s) and users= (closed loop)")
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate}")
        if users is not None and (isinstance(users, bool) or not isinstance(users, int) or users < 1):
            raise ValueError(f"users must be a positive integer, not {users!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        if users is not None and users < self.workers:
            raise ValueError(f"users={users} cannot be split over {self.workers} workers: give at least one each")
        mix = {path: 1.0} if paths is None else {str(p): float(w) for p, w in paths.items()}
        if not mix or any(not (math.isfinite(w) and w > 0) for w in mix.values()):
            raise ValueError(f"paths must map each path to a positive weight, not {paths!r}")
        if any(not p.startswith("/") for p in mix):
            raise ValueError(f"paths must start with '/': {sorted(mix)}")
        for name, value in (headers or {}).items():
            # Checked here, as the generator checks them: a bad header must be this error, not a dead child.
            if not name or any(c in name for c in ":\r\n\0 \t") or any(c in str(value) for c in "\r\n\0"):
                raise ValueError(f"headers: {name!r}: {value!r} is not a valid HTTP header (bad name, or CR/LF)")
        self.report_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "base_url": self.base_url,
            "report_dir": str(self.report_dir),
            "seed": self.seed,
            "rate": rate,
            "users": users,
            "paths": mix,
            "headers": dict(headers or {}),
            "timeout_s": float(timeout_s),
        }
        if self.workers > 1 or self.in_cluster is not None:
            config["workers"] = self.workers
        result = LoadResult(
            mode="open" if rate is not None else "closed",
            rate=rate,
            users=users,
            seed=self.seed,
            report_dir=self.report_dir,
        )
        return LoadRun._spawn(
            config, result, self.timeline, self.time_scale, self.report_dir / LOG_NAME, in_cluster=self.in_cluster
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child wants locust's normal, fully patched behaviour whatever the pytest process was told.
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    env.pop("LOCUST_SKIP_URLLIB3_PATCH", None)
    # Run the same pytest_clover as the parent, installed or not (benchmarks run from a checkout).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class LoadRun:
    """One running load generator. Use as a context manager, or call :meth:`stop`."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        result: LoadResult,
        timeline: Timeline,
        time_scale: float,
        log_path: Path,
    ) -> None:
        self._proc = proc
        self.result = result
        """The result, filled window by window; complete once :meth:`stop` returned."""
        self.timeline = timeline
        self.time_scale = time_scale
        self.log_path = log_path
        self._ready = threading.Event()
        self._eof = threading.Event()
        self._wake = threading.Event()
        """Set when a blocking phase must end early: the generator's output ended, or :meth:`interrupt`."""
        self._interrupted: BaseException | None = None
        self._send_lock = threading.Lock()
        self._ready_info: dict[str, Any] = {}
        self._done_info: dict[str, Any] | None = None
        self._protocol_error: BaseException | None = None
        self._stray: collections.deque[str] = collections.deque(maxlen=20)
        self._stopping = False
        self._stopped = False
        self._stop_error: LoadGeneratorError | None = None
        self._current_phase: str | None = None
        self._lost: list[dict[str, Any]] = []
        """``worker_lost`` messages of a distributed generator, in the order they came."""
        self.windows_missing_workers = 0
        """Windows received so far that lack some lost worker's requests (``missing_workers``)."""
        self.request_timeout_s = STOP_GRACE_S
        """The generator's request timeout: how long a stop may wait for the outcomes of requests in flight."""
        self._reader = threading.Thread(target=self._read, name=f"clover-load-reader-{proc.pid}", daemon=True)
        self._reader.start()

    @classmethod
    def _spawn(
        cls,
        config: dict[str, Any],
        result: LoadResult,
        timeline: Timeline,
        time_scale: float,
        log_path: Path,
        *,
        in_cluster: InCluster | None = None,
    ) -> LoadRun:
        if in_cluster is not None:
            proc: Any = in_cluster.launch(config, log_path, lambda cfg: cls._start_child(cfg, log_path, MASTER_MODULE))
            ready_timeout = in_cluster.ready_timeout_s + READY_TIMEOUT_S
        else:
            proc = cls._start_child(config, log_path)
            ready_timeout = READY_TIMEOUT_S
        run = cls(proc, result, timeline, time_scale, log_path)
        run.request_timeout_s = float(config.get("timeout_s", STOP_GRACE_S))
        try:
            run._wait_ready(ready_timeout)
        except BaseException:
            run._stopping = run._stopped = True
            run._terminate(grace_s=0.0)
            run._close_pipes()
            run._release()
            raise
        return run

    @staticmethod
    def _start_child(config: dict[str, Any], log_path: Path, module: str | None = None) -> subprocess.Popen[str]:
        """The generator's child: ``python -m MODULE CONFIG`` (by default the master for ``workers`` > 1, else the
        worker), its stderr to ``log_path``, JSON lines on its stdin and stdout."""
        if module is None:
            module = MASTER_MODULE if int(config.get("workers", 1)) > 1 else WORKER_MODULE
        with log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", module, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                bufsize=1,
                env=_child_env(),
                # Own session: Ctrl-C in the terminal reaches pytest only, which then stops the child cleanly.
                # If pytest dies instead, the child sees end-of-file on its stdin and stops by itself.
                start_new_session=True,
            )

    def _release(self) -> None:
        """Let go of what the generator used besides its process (in-cluster: delete the load pods)."""
        release = getattr(self._proc, "release", None)
        if release is not None:
            release()

    def _who(self) -> str:
        """The generator for a message: ``pid 1234``, or the pod an in-cluster master runs in."""
        describe = getattr(self._proc, "describe", None)
        return str(describe()) if describe is not None else f"pid {self._proc.pid}"

    # -- the child's output ----------------------------------------------------------------------------

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        try:
            for line in out:
                try:
                    message = json.loads(line)
                except ValueError:
                    self._stray.append(line.rstrip()[:300])
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                try:
                    if kind == "window":
                        self.result.ingest(message)
                        if message.get("missing_workers") and message.get("final", True):
                            self.windows_missing_workers += 1
                    elif kind == "worker_lost":
                        self._lost.append(message)
                        self._wake.set()  # a phase under way ends now: the rest of it would not be at full rate
                    elif kind == "ready":
                        self._ready_info = message
                        self._ready.set()
                    elif kind == "done":
                        self._done_info = message
                    else:
                        self._stray.append(line.rstrip()[:300])
                except (KeyError, TypeError, ValueError) as exc:
                    # Keep reading (a full pipe would block the child); the next phase()/stop() reports it.
                    if self._protocol_error is None:
                        self._protocol_error = exc
        except (OSError, ValueError):
            pass  # the pipe was closed under us by _terminate()
        finally:
            self._eof.set()
            self._wake.set()

    def _wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._eof.is_set() and not self._ready.is_set():
                raise self._error("the load generator exited before it was ready")
            if time.monotonic() > deadline:
                raise self._error(f"the load generator was not ready within {timeout:.0f} s", wait_s=0.0)

    def _error(self, what: str, wait_s: float = 2.0) -> LoadGeneratorError:
        """A LoadGeneratorError for the child's current state (waits up to ``wait_s`` for its exit code)."""
        try:
            code: int | None = self._proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            code = self._proc.poll()
        message = f"{what}: {self._who()}, {_describe_exit(code)}"
        if self._stray:
            message += "\nunexpected output on its stdout: " + " | ".join(self._stray)
        return LoadGeneratorError(
            message,
            pid=self._proc.pid,
            exit_code=code,
            stderr_tail=_tail(self.log_path),
            log_path=self.log_path,
            result=self.result,
        )

    def interrupt(self, error: BaseException) -> None:
        """End the phase that blocks now (and refuse any later one) with ``error``: what the caller saw go wrong
        around the load, e.g. the mesh under test stopped. The generator keeps running: :meth:`stop` still
        returns what it measured. Thread-safe; the first error wins."""
        if self._interrupted is None:
            self._interrupted = error
        self._wake.set()

    def _worker_lost(self) -> WorkerLost:
        """The WorkerLost for the losses reported so far (with the done message's window counts, once stopped)."""
        by_worker: dict[Any, dict[str, Any]] = {m.get("worker"): dict(m) for m in self._lost}
        for loss in (self._done_info or {}).get("lost_workers") or []:
            by_worker.setdefault(loss.get("worker"), {}).update(loss)
        losses = sorted(by_worker.values(), key=lambda loss: float(loss.get("at") or 0.0))
        start = float(self._ready_info.get("start") or 0.0)
        workers = int(self._ready_info.get("workers") or 0)
        lines = []
        for loss in losses:
            at = float(loss.get("at") or 0.0)
            line = (
                f"worker {loss.get('worker')} (pid {loss.get('pid')}) lost at "
                f"{time.strftime('%H:%M:%S', time.gmtime(at))}.{int(at * 1000) % 1000:03d} UTC"
                f" ({at - start:+.1f} s into the run): {loss.get('reason')}"
            )
            if "windows" in loss:
                covered = loss.get("covered_until")
                since = f"from {covered - start:+.1f} s" if isinstance(covered, int | float) else "from the start"
                line += f"; {loss['windows']} windows {since} on lack its requests"
            lines.append(line)
        share = ""
        if self.result.rate and workers:
            share = f" (each worker sends {self.result.rate / workers:g} of the {self.result.rate:g} requests/s)"
        message = (
            f"{len(losses)} of {workers or '?'} load workers lost{share}: the windows after a loss lack that "
            f"worker's requests, so the system was not tested at the load asked for. The test is INCONCLUSIVE.\n  "
            + "\n  ".join(lines)
            + f"\nworker logs: {self.log_path.parent}/load-worker-<worker>.log"
        )
        code = self._proc.poll()
        return WorkerLost(
            message,
            lost_workers=losses,
            pid=self._proc.pid,
            exit_code=code,
            log_path=self.log_path,
            result=self.result,
        )

    def _check(self) -> None:
        if self._interrupted is not None:
            raise self._interrupted
        if self._lost:
            raise self._worker_lost()
        if self._stopping:
            raise LoadGeneratorError(
                f"this load run ({self._who()}) was stopped; start a new one", pid=self._proc.pid
            )
        if self._eof.is_set():
            raise self._error("the load generator died")
        if self._protocol_error is not None:
            raise self._error(f"the load generator sent a bad message ({self._protocol_error})")

    def _send(self, message: Mapping[str, Any]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            with self._send_lock:
                stdin.write(json.dumps(message) + "\n")
                stdin.flush()
        except (OSError, ValueError) as exc:  # BrokenPipeError, or the pipe already closed
            raise self._error("the load generator died") from exc

    # -- public API ------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def mode(self) -> str:
        return self.result.mode

    @property
    def workers(self) -> int:
        """Worker processes generating the load (1: the child alone)."""
        return int(self._ready_info.get("workers", 1))

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes of a distributed generator (empty for one process: see :attr:`pid`)."""
        return [int(pid) for pid in self._ready_info.get("worker_pids", [])]

    @property
    def users(self) -> int:
        """Concurrent users the generator started with (open loop: it adds more when the target is slow)."""
        return int(self._ready_info.get("users", 0))

    def phase(self, name: str, seconds: float) -> None:
        """Tag the requests sent in the next ``seconds × time_scale`` seconds as phase ``name``; blocks that long.

        Adds ``phase-start`` and ``phase-end`` events to the timeline, at the very instants the generator's
        windows and the phase start and end (each request counts in the phase it was sent in). Raises
        LoadGeneratorError at once if the generator dies meanwhile.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a phase needs a non-empty name, not {name!r}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"phase seconds must be a non-negative number, not {seconds}")
        self._check()
        duration = seconds * self.time_scale
        started = time.time()
        self._send({"phase": name, "at": started})
        self.timeline.add("phase-start", name, when=started, seconds=duration)
        self._current_phase = name
        ended: float | None = None
        try:
            if self._wake.wait(duration):
                if self._interrupted is not None:
                    raise self._interrupted
                if self._lost:
                    raise self._worker_lost()
                raise self._error(f"the load generator died during phase {name!r}")
            ended = time.time()
            self._send({"phase": None, "at": ended})
        finally:
            self._current_phase = None
            self.timeline.add("phase-end", name, when=ended)

    def begin_phase(self, name: str) -> None:
        """Tag traffic from now on as phase ``name`` until :meth:`end_phase` (does not block).

        For callers that do not know a phase's length in advance, e.g. the stages of a Chaos Toolkit
        experiment. Ends the current open phase first, if any.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a phase needs a non-empty name, not {name!r}")
        self._check()
        if self._current_phase is not None:
            self.end_phase()
        started = time.time()
        self._send({"phase": name, "at": started})
        self.timeline.add("phase-start", name, when=started)
        self._current_phase = name

    def end_phase(self) -> None:
        """End the phase :meth:`begin_phase` opened (no-op when none is open)."""
        name = self._current_phase
        if name is None:
            return
        self._current_phase = None
        ended = time.time()
        with contextlib.suppress(LoadGeneratorError):  # a dead generator is reported by stop()
            self._send({"phase": None, "at": ended})
        self.timeline.add("phase-end", name, when=ended)

    def mark(self, kind: str, name: str, **data: Any) -> Event:
        """Add an event to the timeline (e.g. ``mark("fault-start", "delay 500ms on http-lb")``)."""
        return self.timeline.add(kind, name, **data)

    def stop(self) -> LoadResult:
        """Stop the generator (its last windows are kept) and return the result; the child is gone after this.

        Nothing scheduled from now on is sent; the requests already sent are waited for, so each counts in its
        window and phase with its outcome (a request without a response gets one within the request timeout:
        status 0). The generator gets that timeout plus :data:`STOP_GRACE_S` to send its last windows and exit;
        then SIGTERM (it sends what it has at once: requests still in flight are left out, and
        ``result.generator["abandoned"]`` says how many) and, :data:`STOP_GRACE_S` later, SIGKILL.

        Raises LoadGeneratorError (with the partial result attached) if the generator had died, crashed while
        stopping, or had to be killed, and :class:`~pytest_clover.errors.WorkerLost` (a LoadGeneratorError, and
        INCONCLUSIVE) if a worker of a distributed generator was lost; ``result.generator`` then says which
        (``lost_workers``) and how many windows lack requests (``windows_missing_workers``). Calling it again
        returns the same result (or raises the same error).
        """
        if self._stopped:
            if self._stop_error is not None:
                raise self._stop_error
            return self.result
        died = self._eof.is_set()
        self._stopping = True
        try:
            if not died:
                try:
                    self._send({"stop": True, "at": time.time()})
                except LoadGeneratorError:
                    died = True
            forced = self._terminate(grace_s=self.request_timeout_s + STOP_GRACE_S)
            self._reader.join(timeout=5.0)
        finally:
            self._stopped = True
            try:
                if self._proc.poll() is None:  # interrupted while waiting (e.g. Ctrl-C): never leave it behind
                    self._proc.kill()
                    self._proc.wait()
                self._close_pipes()
            finally:
                self._release()
        self.result.generator = dict(self._done_info or {})
        self.result.generator.pop("type", None)
        self.result.set_events(e.as_dict() for e in self.timeline.events())
        problem = None
        if died:
            problem = "the load generator died before it was stopped"
        elif forced:
            problem = f"the load generator did not stop within {STOP_GRACE_S:.0f} s and was killed"
        elif self._proc.returncode != 0 or self._done_info is None:
            problem = "the load generator failed while stopping"
        elif self._protocol_error is not None:
            problem = f"the load generator sent a bad message ({self._protocol_error})"
        if problem is not None:
            self._stop_error = self._error(problem)
            raise self._stop_error
        if self._lost or self.result.generator.get("lost_workers"):
            self._stop_error = self._worker_lost()
            raise self._stop_error
        return self.result

    def _terminate(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Wait ``grace_s`` for the child to exit; then SIGTERM, and SIGKILL if that takes another
        :data:`STOP_GRACE_S`. True if it had to be forced."""
        proc = self._proc
        try:
            proc.wait(timeout=grace_s)
            return False
        except subprocess.TimeoutExpired:
            pass
        for send in (proc.terminate, proc.kill):
            try:
                send()
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_GRACE_S)
                break
            except subprocess.TimeoutExpired:
                continue
        return True

    def _close_pipes(self) -> None:
        streams: list[IO[str] | None] = [self._proc.stdin, self._proc.stdout]
        for stream in streams:
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.stop()
            return
        # Already failing: stop the child, but let the original exception be the one reported.
        try:
            self.stop()
        except WorkerLost as lost:
            if isinstance(exc, WorkerLost):
                # The same loss, now with what the stop learnt (how many windows lack the worker's requests).
                raise lost from None
        except LoadGeneratorError:
            pass

    def __repr__(self) -> str:
        state = "running" if self.alive else _describe_exit(self._proc.returncode)
        return f"<LoadRun pid={self.pid} {self.mode} {state} phase={self._current_phase!r}>"
