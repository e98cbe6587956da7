"""The distributed load generator's master process: N local locust workers, their windows merged exactly.

Run by :class:`pytest_clover.load.run.LoadGenerator` with ``workers=N`` (N ≥ 2) as
``python -m pytest_clover.load.master CONFIG_JSON``; like the single generator (:mod:`.worker`), never imported by
the pytest process. To the parent it is that generator: the same JSON lines on stdin and stdout (``ready``,
``window``, ``done`` out; phases and the stop in; end of stdin or SIGTERM stop it at once), so ``LoadRun`` and
``LoadResult`` read it unchanged. Two additions: a ``{"type": "worker_lost", …}`` line as soon as a worker is
lost, and the merged windows' ``missing_workers`` (see :mod:`.merge`).

Inside: a locust ``MasterRunner`` bound to 127.0.0.1 on a free port, and N processes
``python -m pytest_clover.load.worker`` in their "worker of a master" mode, worker ``i`` sending requests
``i + k·N`` of the open-loop schedule (or its share of the closed-loop users: ``users // N``, one more for the
first ``users % N`` workers). The master does not use locust's user dispatch (it would rebalance users when a
worker goes missing): each worker spawns its own users, and the master only

* starts them together: once all are ready it picks ``t0`` (:data:`START_LEAD_S` ahead) and sends it to each;
* forwards every phase change and the stop, with the parent's ``at``, to every worker (``clover_cmd``);
* merges their windows (``clover_out``) with a :class:`~pytest_clover.load.merge.WindowMerger` and writes the
  merged ones to the parent;
* watches them: a worker whose process exits before its ``done``, that locust marks missing (no heartbeat for
  ~3 s), that sends a bad message, or that stays silent while the others finish windows, is *lost* — reported
  at once, killed (by PID) if still running, and no longer waited for;
* writes locust's CSV files (``locust_stats.csv`` …) from the statistics the workers report to it, as the single
  generator does (locust's approximate merge: the windows, not these files, carry the exact numbers);
* stops them by PID when it ends. Each worker's stdin is a pipe from the master: if the master dies, they see
  end-of-file and stop by themselves.

Worker ``i`` logs to ``load-worker-<i>.log`` next to the master's ``load-worker.log``.
"""

from __future__ import annotations

# isort: off
# locust must be imported before anything that could import ssl or urllib3 (see worker.py).
import locust  # noqa: F401
import gevent  # type: ignore[import-untyped,unused-ignore]

# isort: on
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gevent.event import Event  # type: ignore[import-untyped,unused-ignore]
from gevent.fileobject import FileObjectPosix  # type: ignore[import-untyped,unused-ignore]
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner
from locust.stats import PERCENTILES_TO_REPORT

from pytest_clover.limits import raise_open_files_limit
from pytest_clover.load.merge import MergeError, WindowMerger
from pytest_clover.load.shares import worker_config
from pytest_clover.load.worker import (
    CMD_MESSAGE,
    DRAIN_EXTRA_S,
    OUT_MESSAGE,
    Config,
    Emitter,
    FinalStatsCSVFileWriter,
    Greenlets,
    QuietSpawnRate,
    idle_until_deleted,
    read_config,
    stop_on_sigterm,
    trim_stats_forever,
    unix_offset,
)

log = logging.getLogger("pytest_clover.load.master")

BIND_HOST = "127.0.0.1"
"""Local workers only: the ZeroMQ port is not reachable from outside the machine."""
READY_TIMEOUT_S = 45.0
"""How long the workers get to start (import locust, spawn users, connect); the parent waits 60 s for us."""
START_LEAD_S = 0.2
"""``t0`` lies this far ahead of the start message, so every worker has it before its first intended time."""
WATCH_S = 0.2
"""How often the worker processes and locust's heartbeat states are looked at."""
CHECK_S = 1.0
"""How often silent workers are looked for (see :meth:`WindowMerger.check`)."""
STOP_EXTRA_S = 1.5
"""After the stop, workers get the request timeout + their drain margin + this to send their last windows; then
SIGTERM and :data:`TERM_WAIT_S`: within the parent's grace (the request timeout + 5 s)."""
TERM_WAIT_S = 2.0
"""After SIGTERM (a stop without waiting), how long workers get to send what they have."""
EXIT_GRACE_S = 0.5
"""A worker process seen ended with a failure is lost if its ``done`` has not come this long later."""
CLEAN_EXIT_GRACE_S = 5.0
"""The same for a worker that exited 0: it sent its ``done`` before exiting, and a master busy merging the last
windows of a fast run (7 000 requests/s per worker) may read it more than 0.5 s later: a suspected cause of
finished workers reported lost at the stop (benchmark, 2 of ~20 fast runs), not proven."""
EXIT_WAIT_S = 3.0
"""How long a worker that sent its ``done`` gets to exit before it is killed."""
WORKER_LOG = "load-worker-{index}.log"


def describe_exit(code: int | None) -> str:
    """``exit code 3``, ``exit code -9 (killed by SIGKILL)``, ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code} (killed by signal {-code})"
    return f"exit code {code}"


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", errors="replace").rstrip()
    except OSError as exc:
        return f"(cannot read it: {exc})"


def bind_address(given: str | None) -> str:
    """The address to listen on: ``given``, or ``$NAME`` read from the environment (``$POD_IP``), or 127.0.0.1."""
    if not given:
        return BIND_HOST
    if given.startswith("$"):
        value = os.environ.get(given[1:], "").strip()
        if not value:
            raise SystemExit(f"the master's bind address {given} names an environment variable that is not set")
        return value
    return given


@dataclass
class WorkerProcess:
    """One worker as the master sees it."""

    index: int
    """0 … N−1: its share of the schedule is requests ``index + k·N``."""
    proc: subprocess.Popen[bytes] | None
    """The process (its stdin is the pipe whose end tells it the master is gone); None for a remote worker (a
    pod the parent started)."""
    log_path: Path
    """Its stderr and stdout."""
    node_id: str | None = None
    """locust's client id for it, learnt from its ``ready``."""
    ready: dict[str, Any] = field(default_factory=dict)
    """Its ``ready`` message (pid, users, max_users)."""
    done: dict[str, Any] | None = None
    """Its ``done`` message (users, abandoned), once it sent all its windows."""
    lost: str | None = None
    """Why it was lost (None: it was not)."""
    exited_at: float | None = None
    """Monotonic time its process was first seen ended (None: running)."""

    @property
    def pid(self) -> int | None:
        """Its PID on this machine (a remote worker's is in its ``ready`` message, on its own machine)."""
        if self.proc is not None:
            return self.proc.pid
        pid = self.ready.get("pid")
        return int(pid) if isinstance(pid, int) else None

    def poll(self) -> int | None:
        """Its exit code, None while it runs (or when it is remote: only heartbeats tell)."""
        return self.proc.poll() if self.proc is not None else None

    @property
    def finished(self) -> bool:
        return self.done is not None or self.lost is not None


class Master(Greenlets):
    """The locust MasterRunner, the worker processes, the merger, and the greenlets around them."""

    def __init__(self, cfg: Config, emit: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.emit = emit
        self.workers: list[WorkerProcess] = []
        self.merger = WindowMerger(cfg.workers)
        self.stop_requested = Event()
        self.stop_at: float | None = None
        """Unix time of the parent's stop (None: none yet, or a stop without waiting)."""
        self.drain = True
        """Whether the stop waits for the workers' last outcomes (not after SIGTERM or with the parent gone)."""
        self.all_ready = Event()
        self.greenlets: list[gevent.Greenlet[Any, Any]] = []
        self.env = Environment(user_classes=[], host=cfg.base_url, stop_timeout=None)
        self.bind_host = bind_address(cfg.bind_host)
        self.runner: MasterRunner = self.env.create_master_runner(self.bind_host, cfg.bind_port)
        self.port = int(self.runner.server.port)
        self.runner.register_message(OUT_MESSAGE, self._on_worker_message)
        self.csv = FinalStatsCSVFileWriter(
            self.env, PERCENTILES_TO_REPORT, os.path.join(cfg.report_dir, "locust"), full_history=True
        )
        self.t0: float | None = None

    # -- workers ------------------------------------------------------------------------------------------------

    def _worker_config(self, index: int) -> dict[str, Any]:
        return worker_config(asdict(self.cfg), index, self.bind_host, self.port)

    def _start_workers(self) -> None:
        if self.cfg.remote_workers:
            # Pods the parent started (in-cluster load): they connect to us; their logs are the pods' logs.
            for index in range(self.cfg.workers):
                self.workers.append(WorkerProcess(index, None, Path(f"the log of load worker pod {index}")))
            return
        for index in range(self.cfg.workers):
            log_path = Path(self.cfg.report_dir) / WORKER_LOG.format(index=index)
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pytest_clover.load.worker", json.dumps(self._worker_config(index))],
                    stdin=subprocess.PIPE,  # never written: its end tells the worker we are gone
                    stdout=log_file,
                    stderr=log_file,
                )
            self.workers.append(WorkerProcess(index, proc, log_path))
            log.info("worker %d: pid %d, log %s", index, proc.pid, log_path)

    def _on_worker_message(self, environment: Any = None, msg: Any = None, **_kwargs: Any) -> None:
        raw = getattr(msg, "data", None)
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        index = data.get("worker")
        if not (isinstance(index, int) and 0 <= index < len(self.workers)):
            log.warning("ignoring a message from an unknown worker: %r", str(raw)[:200])
            return
        worker = self.workers[index]
        kind = data.get("type")
        if kind == "window":
            try:
                self._send(self.merger.add(index, data, time.monotonic()))
            except MergeError as exc:
                self._lose(worker, f"it sent a window that cannot be merged ({exc})")
        elif kind == "ready":
            if worker.finished or self.t0 is not None:
                # A worker pod restarted (killed, or its node lost) connects again: its share of the schedule has
                # been counted lost, and the run cannot take it back mid-way.
                log.warning("worker %d is ready again (a restarted pod?): ignored, the run has started", index)
                return
            worker.node_id, worker.ready = getattr(msg, "node_id", None), data
            log.info("worker %d ready: %s users, locust client %s", index, data.get("users"), worker.node_id)
            if all(w.ready for w in self.workers):
                self.all_ready.set()
        elif kind == "done":
            if worker.lost is None:
                worker.done = data
                self._send(self.merger.finish(index))
            if worker.node_id is not None:
                # The worker waits for this before it closes: its done cannot be lost in the close.
                self.runner.send_message(CMD_MESSAGE, {"bye": True}, client_id=worker.node_id)
        else:
            log.warning("worker %d: ignoring a message of type %r", index, kind)

    def _lose(self, worker: WorkerProcess, reason: str) -> None:
        """Stop waiting for ``worker``: tell the parent at once, kill it if it still runs, send what is due."""
        if worker.finished:
            return
        worker.lost = reason
        at = time.time()
        log.error("worker %d (pid %s) lost: %s", worker.index, worker.pid, reason)
        if self.t0 is None:  # before the start: the parent's error shows our log's tail, so show the worker's
            log.error("last lines of worker %d's log:\n%s", worker.index, _tail(worker.log_path))
        self.emit({"type": "worker_lost", "worker": worker.index, "pid": worker.pid, "reason": reason, "at": at})
        self._kill(worker)
        self._send(self.merger.lose(worker.index, reason, at))
        if all(w.lost is not None for w in self.workers):
            log.error("every worker was lost: stopping")
            self.stop_now()

    def _kill(self, worker: WorkerProcess) -> None:
        if worker.proc is None:  # a pod: the parent deletes it
            return
        if worker.proc.poll() is None:
            try:
                os.kill(worker.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _watch(self) -> None:
        """Lose the workers whose process exited before their ``done`` or that locust marks missing."""
        while True:
            gevent.sleep(WATCH_S)
            for worker in self.workers:
                if worker.finished:
                    continue
                code = worker.poll()
                if code is not None:
                    # Its last messages may still be on their way (a worker sends its done, then exits):
                    # lost only if they do not come within EXIT_GRACE_S.
                    now = time.monotonic()
                    if worker.exited_at is None:
                        worker.exited_at = now
                    elif now - worker.exited_at >= (CLEAN_EXIT_GRACE_S if code == 0 else EXIT_GRACE_S):
                        self._lose(worker, f"its process ended: {describe_exit(code)}; see {worker.log_path}")
                    continue
                node = self.runner.clients.get(worker.node_id) if worker.node_id else None
                if node is not None and node.state == STATE_MISSING:
                    self._lose(worker, "locust's heartbeats marked it missing (no heartbeat for ~3 s)")

    def _check_silence(self) -> None:
        while True:
            gevent.sleep(CHECK_S)
            before = set(self.merger.lost)
            messages = self.merger.check(time.monotonic(), time.time())
            for index in sorted(set(self.merger.lost) - before):
                worker = self.workers[index]
                worker.lost = self.merger.lost[index].reason
                log.error("worker %d (pid %s) lost: %s", index, worker.pid, worker.lost)
                self.emit(
                    {
                        "type": "worker_lost",
                        "worker": index,
                        "pid": worker.pid,
                        "reason": worker.lost,
                        "at": self.merger.lost[index].at,
                    }
                )
                self._kill(worker)
            self._send(messages)

    def _broadcast(self, command: dict[str, Any]) -> None:
        for worker in self.workers:
            if worker.node_id is not None and not worker.finished:
                self.runner.send_message(CMD_MESSAGE, command, client_id=worker.node_id)

    def _send(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.emit(message)

    # -- the parent -------------------------------------------------------------------------------------------

    def _read_commands(self) -> None:
        stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
        try:
            while True:
                line = stdin.readline()
                if not line:
                    log.info("stdin closed (the parent is gone): stopping")
                    break
                try:
                    command = json.loads(line)
                except ValueError:
                    log.warning("ignoring a line on stdin that is not JSON: %r", line[:200])
                    continue
                if not isinstance(command, dict):
                    continue
                if command.get("stop"):
                    at = command.get("at")
                    self.stop_at = float(at) if isinstance(at, int | float) and math.isfinite(at) else time.time()
                    return
                if "phase" in command:
                    # Forwarded as it is: every worker cuts its windows at the parent's very instant.
                    self._broadcast({"phase": command["phase"], "at": command.get("at")})
            self.drain = False
        finally:
            self.stop_requested.set()

    # -- life cycle -------------------------------------------------------------------------------------------

    def run(self) -> int:
        os.makedirs(self.cfg.report_dir, exist_ok=True)
        log.info("locust master on %s:%d for %d workers", self.bind_host, self.port, self.cfg.workers)
        self._start_workers()
        self._spawn(self._read_commands)
        self._spawn(self._watch)
        ready_timeout = self.cfg.ready_timeout_s or READY_TIMEOUT_S
        deadline = time.monotonic() + ready_timeout
        while not self.all_ready.wait(0.05):
            if self.stop_requested.is_set() or any(w.lost for w in self.workers):
                log.error("a worker failed before the start: %s", "; ".join(w.lost or "" for w in self.workers))
                return self._abort(3)
            if time.monotonic() > deadline:
                late = [w for w in self.workers if not w.ready]
                log.error("workers %s were not ready within %.0f s", [w.index for w in late], ready_timeout)
                for worker in late:
                    log.error("last lines of worker %d's log:\n%s", worker.index, _tail(worker.log_path))
                return self._abort(3)
        self.t0 = time.time() + START_LEAD_S
        self._broadcast({"start": self.t0, "offset": unix_offset()})
        self.merger.start(time.monotonic())
        self._spawn(self._check_silence)
        self._spawn(self.csv.stats_writer)
        self._spawn(lambda: trim_stats_forever(self.env))
        gevent.sleep(max(0.0, self.t0 - time.time()))  # "ready" means sending: the parent's phases come after t0
        self.emit(
            {
                "type": "ready",
                "pid": os.getpid(),
                "users": sum(int(w.ready.get("users", 0)) for w in self.workers),
                "max_users": sum(int(w.ready.get("max_users", 0)) for w in self.workers),
                "start": self.t0,
                "workers": self.cfg.workers,
                # Remote workers' PIDs are on their own machines: only local ones can be signalled from here.
                "worker_pids": [w.pid for w in self.workers if w.proc is not None],
                "remote_workers": self.cfg.remote_workers,
            }
        )
        self.stop_requested.wait()
        return self.shutdown()

    def _wait_finished(self, seconds: float, *, while_draining: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while not all(w.finished for w in self.workers) and time.monotonic() < deadline:
            if while_draining and not self.drain:
                return  # SIGTERM (or the parent gone) while waiting: stop waiting for outcomes
            gevent.sleep(0.02)

    def shutdown(self) -> int:
        self.merger.stopping()
        if self.drain:
            at = self.stop_at if self.stop_at is not None else time.time()
            self._broadcast({"stop": True, "at": at})
            self._wait_finished(self.cfg.timeout_s + DRAIN_EXTRA_S + STOP_EXTRA_S, while_draining=True)
        # Those still waiting for outcomes send what they have at once (SIGTERM, as the parent does to us); a
        # request still in flight is then left out of its window and counted as abandoned, not lost silently.
        hurried = [w for w in self.workers if not w.finished and w.proc is not None and w.proc.poll() is None]
        for worker in hurried:
            assert worker.proc is not None
            worker.proc.terminate()
        if hurried:
            self._wait_finished(TERM_WAIT_S)
        for worker in self.workers:
            if not worker.finished:
                self._lose(worker, "it did not send its last windows in time after the stop")
        self._send(self.merger.close())
        self._end_workers()
        for g in self.greenlets:
            if g is not gevent.getcurrent():
                g.kill(block=True, timeout=1.0)
        self.csv.write_final()
        self.csv.close_files()
        self.emit(self._done())
        self._quit_runner()
        return 0

    def _quit_runner(self) -> None:
        self.runner.quit()
        # Nothing is left to say to the workers (all ended): never let a pending message hold the exit.
        self.runner.server.close(linger=0)  # type: ignore[no-untyped-call]

    def _abort(self, code: int) -> int:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.terminate()
        self._end_workers()
        for g in self.greenlets:
            g.kill(block=True, timeout=1.0)
        self._quit_runner()
        return code

    def _end_workers(self) -> None:
        """Wait for every worker process to exit (SIGKILL, by PID, for those that do not) and reap it."""
        deadline = time.monotonic() + EXIT_WAIT_S
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d (pid %s) did not exit: killing it", worker.index, worker.pid)
                self._kill(worker)
                worker.proc.wait()
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()

    def _done(self) -> dict[str, Any]:
        per_worker = []
        for w in self.workers:
            per_worker.append(
                {
                    "worker": w.index,
                    "pid": w.pid,
                    "users": (w.done or {}).get("users", w.ready.get("users")),
                    "abandoned": (w.done or {}).get("abandoned"),
                    "requests": self.merger.requests_by_worker[w.index],
                    "exit_code": w.proc.returncode if w.proc is not None else None,
                }
            )
        lost = []
        for index, loss in sorted(self.merger.lost.items()):
            lost.append({**loss.as_dict(), "pid": self.workers[index].pid})
        return {
            "type": "done",
            "users": sum(int(p["users"] or 0) for p in per_worker),
            "abandoned": sum(int(p["abandoned"] or 0) for p in per_worker),
            "workers": self.cfg.workers,
            "per_worker": per_worker,
            "lost_workers": lost,
            "windows_missing_workers": self.merger.windows_missing_workers,
            "windows_misaligned": self.merger.windows_misaligned,
        }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("locust.runners").addFilter(QuietSpawnRate())
    cfg = read_config(args, "pytest_clover.load.master")
    if cfg is None:
        return 2
    if cfg.workers < (1 if cfg.remote_workers else 2) or cfg.of_master:
        print("the master needs workers >= 2 (1 if they are remote) and no master of its own", file=sys.stderr)
        return 2
    raise_open_files_limit()
    listener = listen_for_parent(bind_address(cfg.bind_host), cfg.control_port) if cfg.control_port else None
    emit = Emitter()
    master = Master(cfg, emit)
    emit.on_parent_gone = master.stop_now
    terminated = stop_on_sigterm(master.stop_now)
    if listener is not None:
        if not accept_parent(listener, PARENT_WAIT_S, give_up=terminated):
            log.error("no parent connected to the control port within %.0f s: stopping", PARENT_WAIT_S)
            master._quit_runner()
            return idle_until_deleted(3)
    log.info(
        "load master pid %d: %s against %s over %d workers, seed %d",
        os.getpid(),
        f"open loop {cfg.rate}/s" if cfg.rate is not None else f"closed loop {cfg.users} users",
        cfg.base_url,
        cfg.workers,
        cfg.seed,
    )
    code = master.run()
    if listener is None or terminated():  # a pod being deleted (SIGTERM) exits; one that finished idles
        return code
    hang_up()
    return idle_until_deleted(code)


PARENT_WAIT_S = 300.0
"""A master in a pod waits this long for its parent's connection (the parent connects as soon as the pod is ready)."""
HELLO = b'{"hello": "pytest-clover"}'
"""The first line the parent sends on the control port: what tells it from a readiness probe's connection."""
HELLO_WAIT_S = 5.0


def listen_for_parent(host: str, port: int) -> socket.socket:
    """The control port of a master in a pod: its parent (through a port-forward) speaks JSON lines on it."""
    listener = socket.create_server((host, port), backlog=8)
    log.info("control port %s:%d: waiting for the parent", host, port)
    return listener


def accept_parent(listener: socket.socket, timeout: float, give_up: Callable[[], bool] = lambda: False) -> bool:
    """Wait for the parent's connection (its first line is :data:`HELLO`; a probe's connection is closed) and make
    it this process's stdin and stdout, so the rest of the master speaks to it as to a parent's pipes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not give_up():
        listener.settimeout(min(1.0, max(0.1, deadline - time.monotonic())))
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(HELLO_WAIT_S)
        try:
            first = conn.recv(len(HELLO) + 1)
        except OSError:
            first = b""
        if first.strip() != HELLO:
            conn.close()  # a readiness probe, or a stranger
            continue
        conn.settimeout(None)
        os.dup2(conn.fileno(), 0)
        os.dup2(conn.fileno(), 1)
        conn.close()
        listener.close()
        log.info("parent connected from %s", peer)
        return True
    listener.close()
    return False


def hang_up() -> None:
    """End the parent's control connection (fds 0 and 1 are its only references): the parent sees the end of our
    output, as when a child process exits."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
