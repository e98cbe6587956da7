"""The load generator's child process: locust as a library, streaming 1-second windows to the parent.

Run by :class:`pytest_clover.load.run.LoadGenerator` as ``python -m pytest_clover.load.worker CONFIG_JSON``;
never imported by the pytest process (importing locust monkey-patches the whole process with gevent).

Protocol (one JSON object per line):

* stdout → parent: ``{"type": "ready", ...}`` once the users are spawned, then one ``{"type": "window", ...}``
  per window (see :func:`pytest_clover.load.result.window_message`), and ``{"type": "done", ...}`` last.
* parent → stdin: ``{"phase": "name", "at": T}`` / ``{"phase": null, "at": T}`` (what is sent from unix time
  ``T``, the instant the test changed phase, is tagged so) and ``{"stop": true, "at": T}`` (send nothing
  scheduled from ``T`` on, wait until every request sent has its outcome, send the last windows, exit). End of
  stdin (the parent died) and SIGTERM stop the generator at once, without waiting for outcomes.

Windows and phases are spans of *send time*, built by :class:`pytest_clover.load.result.SendWindows` (its
docstring and the definitions in ``result.py`` say how): every request is counted where it was sent.

Open loop (``rate``): intended send times ``t0 + i/rate``; as each comes, :class:`SendQueue` hands it to the
user first in line, which sends at once (a user finishing after a time has come takes it itself), and the
latency recorded is completion − intended time, so a stalled server is charged for every request that should
have been sent during the stall (coordinated omission corrected). A request sent more than 10 ms after its
intended time is counted as *late*, and still sent. When every user is busy and the next intended time has
passed, more users are spawned (up to a cap), so a slow target does not slow the schedule.

Closed loop (``users``): each user sends its next request as soon as the previous one has its outcome; latency
is the service time.

Requests: locust spawns, counts and stops the users (and, with a master, collects their statistics), but each
user's one task loops for the whole run and sends with a lean HTTP/1.1 client (:class:`HttpConnection`: one
keep-alive connection per user, ``GET`` requests built once per path, the answer read with a few ``bytes.find``)
instead of FastHttpUser's: ~20 µs of CPU per request instead of ~130 with locust's per-request statistics
(16 users on loopback, measured; bench_open_loop_profile.py shows the rest of a request's cost). Every request is
bounded by ``timeout_s`` as a whole (:class:`TimeoutWatch`). Redirects are not followed (a 3xx is the outcome),
no cookies are kept, no compression is asked for.

Worker of a master (``master_host`` in the config; started by :mod:`pytest_clover.load.master` for
``LoadGenerator(workers=N)``): the same generator, but worker ``i`` of ``N`` sends only the requests
``i, i + N, i + 2N…`` of the schedule (intended times ``t0 + (i + k·N)/rate``, ``t0`` chosen by the master, so
the N workers together send exactly the one-process schedule), or its share of the closed-loop users. It talks
to the master through locust's ZeroMQ channel (a ``WorkerRunner``, custom messages): ``clover_out`` carries its
ready/window/done messages (the same dicts as above, with ``worker: i``), ``clover_cmd`` brings the start
(``{"start": t0, "offset": …}``: the master's unix-to-monotonic offset, which every worker then uses, so their
window boundaries are the same floats), the phases and the stop. Its stdin is a pipe from the master that
stays silent: end of file means the master is gone, and the worker stops at once. It writes no CSV files: the
master writes locust's, from the statistics the workers report.

Locust's own statistics are kept only for its CSV files (they round latencies) and are fed in batches
(:class:`StatsFeed`); percentiles come from HdrHistograms in µs, one per window.
"""

from __future__ import annotations

# isort: off
# locust must be imported before anything that could import ssl or urllib3: it monkey-patches on import
# (gevent warns, and misbehaves, when ssl was imported before the patch).
import locust  # noqa: F401
import gevent  # type: ignore[import-untyped,unused-ignore]  # gevent ships no stubs (types-gevent is optional)

# isort: on
import contextlib
import csv
import ctypes
import gc
import json
import logging
import math
import os
import random
import resource
import signal
import socket
import ssl
import sys
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from gevent.event import Event  # type: ignore[import-untyped,unused-ignore]
from gevent.fileobject import FileObjectPosix  # type: ignore[import-untyped,unused-ignore]
from gevent.hub import Waiter  # type: ignore[import-untyped,unused-ignore]
from locust import User, constant, task
from locust import stats as locust_stats
from locust.contrib.fasthttp import LocustBadStatusCode
from locust.env import Environment
from locust.runners import LocalRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, RequestStats, StatsCSVFileWriter, StatsEntry, StatsError

from pytest_clover.limits import raise_open_files_limit
from pytest_clover.load.result import STAGE_S, SendWindows, Ticket

log = logging.getLogger("pytest_clover.load.worker")

LATE_AFTER_S = 0.010
"""An open-loop request sent later than this after its intended time counts as late."""
TICK_S = 0.05
"""The windows' timer: how often windows are cut, and those that became final sent."""
DRAIN_EXTRA_S = 1.0
"""After a stop, requests already sent get the request timeout plus this to get their outcome."""
CONNECT_AHEAD_S = 10.0
"""At start-up, the users get at most this long (and the request timeout) to open their connections."""
GROW_CHECK_S = 0.005
"""While (nearly) every user is in a request, how often the schedule is checked for falling behind."""
GROW_IDLE_S = 0.5
"""Otherwise the check sleeps until a user makes the process busy, or this long: polling every 5 ms cost
~15 ms of CPU a second per process for nothing (measured), twice that with two workers."""
BEHIND_S = 0.002
"""The schedule is behind (every user busy) when the next unclaimed intended time is this far in the past."""
EXPECTED_LATENCY_S = 0.1
MIN_USERS = 16
MAX_USERS = 10_000
OUT_MESSAGE = "clover_out"
"""locust custom message, worker → master: one of the worker's ready/window/done messages, with ``worker``."""
CMD_MESSAGE = "clover_cmd"
"""locust custom message, master → workers: ``{"start": t0, "offset": …}``, ``{"phase": …, "at": …}``,
``{"stop": true, "at": …}``."""
MASTER_SILENT_S = 10.0
"""A remote worker (a pod) stops when it heard no heartbeat from its master for this long: the master (and its
parent) are gone, and load nobody records must not go on. locust's own limit is 60 s."""
CONFIG_ENV = "CLOVER_LOAD_CONFIG"
"""Without a command-line argument the config is read from this environment variable (a pod's env)."""
MAX_OFFSET_SKEW_S = 0.01
"""A master's unix-to-monotonic offset further than this from ours is not from this machine's clock: not used."""
BYE_WAIT_S = 10.0
"""A worker of a master waits at most this long, after its ``done``, for the master's ``{"bye": true}``: the proof
the master has it. Closing at once lost a ``done`` in ZeroMQ's queue at 9 000 requests/s per worker (the master,
busy merging, read it later than the close's linger), and the master reported a worker that had finished as lost."""
LINGER_S = 1.0
"""A worker of a master waits at most this long, at exit, for its last messages to leave."""
ALARM_ENV = "CLOVER_LOAD_SEND_ALARM"
"""``0`` turns :class:`SendAlarm` off (benchmarks compare the two)."""
STATS_FEED_S = 0.25
"""How often locust's statistics are told the outcomes recorded since (see :class:`StatsFeed`); a divisor of 1 s."""
STATS_KEEP_S = 60
"""locust keeps a per-second request count per stats entry forever; older seconds are trimmed (its own
"current" figures read the last ~12 s), so a soak does not grow the child."""


@dataclass
class Config:
    """What the parent (or the master) asks for, as the JSON argument on the command line."""

    base_url: str
    """Where the requests go: ``http(s)://host:port``."""
    report_dir: str
    """Folder for locust's CSV files (and, with workers, their logs)."""
    seed: int
    """Seeds the weighted path mix."""
    rate: float | None = None
    """Open loop: requests per second of the whole generator (all workers together). None: closed loop."""
    users: int | None = None
    """Closed loop: concurrent users (for a worker of a master: its share). None: open loop."""
    paths: dict[str, float] = field(default_factory=lambda: {"/": 1.0})
    """Path → weight; one path is sent always, several in a seeded weighted mix."""
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request."""
    timeout_s: float = 30.0
    """Each request's connect and read timeout (s); a stop waits this long for outcomes."""
    workers: int = 1
    """How many workers share the load (1: this process alone, as without a master)."""
    worker_index: int = 0
    """For a worker of a master: its index, 0 … workers−1 (it sends requests ``worker_index + k·workers``)."""
    master_host: str | None = None
    """For a worker of a master: where the master's ZeroMQ port listens. None: no master (stdin/stdout)."""
    master_port: int | None = None
    """For a worker of a master: the master's ZeroMQ port."""
    remote: bool = False
    """For a worker of a master: it runs elsewhere (a pod), not as the master's child. No stdin pipe tells it the
    master is gone: it stops once the master's heartbeats (one a second) stop for :data:`MASTER_SILENT_S`. It keeps
    its own clock offset (another machine's monotonic clock): window boundaries still line up in unix time, to the
    synchronisation of the machines' clocks."""
    remote_workers: bool = False
    """For a master: its workers are pods started by the parent (``--clover-load-in-cluster``), not its children;
    it waits for them to connect, and only locust's heartbeats and their silence tell it one was lost."""
    bind_host: str | None = None
    """For a master: the address its ZeroMQ port (and its control port) listen on; None: 127.0.0.1. ``$NAME``
    takes it from the environment variable ``NAME`` (``$POD_IP``: the pod's address, from the downward API)."""
    bind_port: int = 0
    """For a master: its ZeroMQ port (0: any free one; workers in pods need it known in advance)."""
    control_port: int | None = None
    """For a master in a pod: it serves its parent on this TCP port (one connection: the same JSON lines as
    stdin/stdout, reached through a port-forward) instead of stdin/stdout. None: stdin/stdout."""
    ready_timeout_s: float | None = None
    """For a master: how long its workers get to connect and be ready (None: 45 s; pods may need an image pulled)."""

    @classmethod
    def from_json(cls, text: str) -> Config:
        raw = json.loads(text)
        cfg = cls(**raw)
        if (cfg.rate is None) == (cfg.users is None):
            raise ValueError("exactly one of rate and users must be given")
        if not (isinstance(cfg.workers, int) and cfg.workers >= 1 and 0 <= cfg.worker_index < cfg.workers):
            raise ValueError(f"worker_index {cfg.worker_index!r} must lie in 0 … workers-1 (workers {cfg.workers!r})")
        if (cfg.master_host is None) != (cfg.master_port is None):
            raise ValueError("master_host and master_port go together")
        return cfg

    @property
    def of_master(self) -> bool:
        """This process is one worker of a master (not a generator of its own)."""
        return self.master_host is not None


def unix_offset() -> float:
    """unix time − perf_counter, now: turns this machine's monotonic clock into unix seconds and back."""
    # Windows are timed on the monotonic clock (a wall-clock step must not stretch a window) and reported in
    # unix seconds through one offset taken at start-up; the parent's phase instants come back through it.
    # The tightest of a few readings: a preemption between the two clock reads would skew every window.
    best_gap, offset = math.inf, 0.0
    for _ in range(5):
        before = time.time()
        perf = time.perf_counter()
        after = time.time()
        if after - before < best_gap:
            best_gap, offset = after - before, (before + after) / 2 - perf
    return offset


class Windows:
    """The generator's :class:`SendWindows` on the process's clock, with the timer that sends its messages.

    Every method runs without yielding to another greenlet, so the bookkeeping needs no lock.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None], next_send: Callable[[], float]) -> None:
        self._emit_message = emit
        self._next_send = next_send
        self.offset = unix_offset()
        self.book = SendWindows(time.perf_counter(), offset=self.offset)
        self._closed = False

    def restart(self, start: float) -> None:
        """Start the first window at ``start`` (when the users are ready), nothing recorded before."""
        self.book.restart(start)

    def use_offset(self, offset: float) -> None:
        """Turn unix times into this clock through ``offset`` (a master's) from now on, before any window is sent:
        workers sharing one offset cut their windows at the very same floats."""
        self.offset = offset
        self.book.offset = offset

    def register(self, sent: float) -> Ticket:
        return self.book.register(sent)

    def sent(self, ticket: Ticket, *, late: bool = False) -> None:
        self.book.sent(ticket, late=late)

    @property
    def outstanding(self) -> int:
        return self.book.outstanding

    def perf_time(self, unix: float) -> float:
        return unix - self.offset

    def set_phase(self, phase: str | None, at_unix: float | None) -> None:
        now = time.perf_counter()
        at = now if at_unix is None else self.perf_time(at_unix)
        moved = self.book.set_phase(phase, at, now)
        if moved > 0.001:
            log.warning(
                "phase change to %r read %.3f s after the test made it, more than the %.2f s the windows can reach "
                "back: what was sent in its first %.3f s counts in the span before it",
                phase,
                now - at,
                STAGE_S,
                moved,
            )

    def stop_sending(self, at: float) -> None:
        self.book.stop(at)

    def close(self, end: float) -> None:
        """Send every window still open, final; later records are ignored."""
        if not self._closed:
            self._closed = True
            for message in self.book.close(end):
                self._emit_message(message)

    def run(self) -> None:
        """The timer: cuts the windows, sends those that became final (and provisional ones)."""
        while not self._closed:
            for message in self.book.tick(time.perf_counter(), self._next_send()):
                self._emit_message(message)
            gevent.sleep(TICK_S)


class PathPicker:
    """The next request path: the only path, or a seeded weighted choice.

    ``first``/``every``: a worker of ``every`` workers takes the choices ``first, first + every, …`` of the one
    seeded sequence (drawing and dropping the others'), so the workers together send the very mix, request by
    request, that one generator with that seed sends.
    """

    def __init__(self, paths: dict[str, float], seed: int, *, first: int = 0, every: int = 1) -> None:
        if not paths or any(w <= 0 for w in paths.values()):
            raise ValueError(f"paths need positive weights: {paths}")
        self._paths = list(paths)
        self._weights = list(paths.values())
        self._rng = random.Random(seed)
        self._every = every
        self._skip(first)

    def _skip(self, n: int) -> None:
        if len(self._paths) > 1:
            for _ in range(n):
                self._rng.choices(self._paths, self._weights)

    def pick(self) -> str:
        if len(self._paths) == 1:
            return self._paths[0]
        path = self._rng.choices(self._paths, self._weights)[0]
        self._skip(self._every - 1)
        return path


class Schedule:
    """Open loop: intended send times ``t0 + j/rate`` handed out in order to whichever user asks next.

    ``first``/``every``: worker ``first`` of ``every`` workers takes ``j = first + k·every`` (k = 0, 1, 2…),
    computed with the very expression one generator uses, so the workers' times are the same floats.
    """

    def __init__(self, rate: float, *, first: int = 0, every: int = 1) -> None:
        self.rate = rate
        self.t0 = 0.0
        self.index = first
        self.every = every
        self.started = Event()

    def start(self, t0: float) -> None:
        self.t0 = t0
        self.started.set()

    def next_due(self) -> float:
        return self.t0 + self.index / self.rate

    def claim(self) -> float:
        intended = self.t0 + self.index / self.rate
        self.index += self.every
        return intended


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class SendAlarm:
    """Calls ``ring`` (in the event loop's own greenlet) at the time it is set for: the open loop's send times.

    A Linux timerfd (nanosecond clock, no timer slack) where there is one. gevent's loop on Linux (libev, epoll)
    sleeps in whole milliseconds rounded up, and at least 1 ms: with its timers, a user waiting 0.3 ms for its
    intended time was woken ~0.8 ms late, one waiting 3.4 ms ~0.6 ms late, and, the latency counting from the
    intended time, each request's latency carried it (p50 1.16 ms against a server answering in ~0.1 ms, at 200
    requests/s; measured; 0.36 ms with the timerfd).

    Without a timerfd (not Linux, or a seccomp profile refusing it) :attr:`enabled` is False and a libev timer
    rings instead, at the loop's own resolution; so it does with ``CLOVER_LOAD_SEND_ALARM=0`` in the environment
    (for benchmarks that compare the two).
    """

    TFD_TIMER_ABSTIME = 1
    CLOCK_MONOTONIC = 1
    """perf_counter's clock on Linux (checked: the timerfd is only used when it is)."""

    def __init__(self, ring: Callable[[], None]) -> None:
        self.armed = math.inf
        """The time (perf_counter) the alarm is set for; inf when not set."""
        self._ring = ring
        self._spec = _Itimerspec()
        self._fd = -1
        self._watcher: Any = None
        self._timer: Any = None
        """The fallback: a libev timer, when there is no timerfd."""
        self._settime: Any = None
        if os.environ.get(ALARM_ENV) == "0":
            return
        if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            create, settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError):  # no libc symbols of that name: not Linux
            return
        create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        settime.restype = ctypes.c_int
        fd = create(self.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            log.warning("no timerfd (%s): open-loop sends may leave up to 1 ms late", os.strerror(ctypes.get_errno()))
            return
        self._fd, self._settime = fd, settime
        self._watcher = gevent.get_hub().loop.io(fd, 1)
        self._watcher.ref = False  # the alarm alone does not keep the loop running
        self._watcher.start(self._rang)

    @property
    def enabled(self) -> bool:
        """The timerfd is in use (not the loop's own, coarser timers)."""
        return self._fd >= 0

    def set(self, at: float) -> None:
        """Ring at ``at`` (perf_counter) instead of any time set before."""
        self.armed = at
        if self._fd >= 0:
            self._settime_at(at)
            return
        if self._timer is not None:
            self._timer.stop()
        self._timer = gevent.get_hub().loop.timer(max(0.0, at - time.perf_counter()))
        self._timer.start(self._timer_rang)

    def clear(self) -> None:
        """Do not ring (until set again)."""
        if self.armed == math.inf:
            return
        self.armed = math.inf
        if self._fd >= 0:
            self._settime_at(0.0)
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _settime_at(self, at: float) -> None:
        """Set the timerfd for ``at`` (0: off). Setting it also clears a ring not yet read, which is how a ring is
        acknowledged (the kernel zeroes the expiry count): no read() per ring."""
        value = self._spec.it_value
        value.tv_sec = int(at)
        value.tv_nsec = int((at - value.tv_sec) * 1e9)
        self._settime(self._fd, self.TFD_TIMER_ABSTIME, self._spec, None)

    def _rang(self) -> None:
        self.armed = math.inf
        self._ring()
        if self.armed == math.inf:  # not set again: end the ring (the timerfd stays readable until then)
            self._settime_at(0.0)

    def _timer_rang(self) -> None:
        self.armed = math.inf
        self._timer = None
        self._ring()

    def close(self) -> None:
        self.clear()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SendQueue:
    """Open loop: hands each intended send time, once it has come, to a user waiting for one.

    Users that finish a request ask for their next (:meth:`next_request`): a time that has already come is theirs
    at once (the schedule is behind: the send is late, and counted so); otherwise they wait in line, and the
    alarm, set for the next intended time, hands it to the user first in line, which sends at once. So a send
    costs no timer of its own, and no user holds a time before it comes.
    """

    def __init__(self, schedule: Schedule, claim: Callable[[], Any]) -> None:
        self.schedule = schedule
        self._claim = claim
        """Claims the schedule's next time and returns what the user needs to send it."""
        self.waiting: deque[Any] = deque()
        """The gevent Waiters of the users in line, first first."""
        self.stopped = False
        self.alarm = SendAlarm(self._due)

    def next_request(self) -> Any:
        """The calling user's next request (what ``claim`` returned), when its time has come."""
        if self.schedule.next_due() <= time.perf_counter():
            return self._claim()
        waiter = Waiter()
        self.waiting.append(waiter)
        if self.alarm.armed == math.inf:
            self.alarm.set(self.schedule.next_due())
        # Killed in line (locust stops its users so), the waiter stays in the line and is passed over: removing
        # it would cost a walk of the line per user at the stop of a run with thousands of them.
        return waiter.get()

    def _due(self) -> None:
        """The alarm rang (in the loop's greenlet): each time that has come goes to the next user in line."""
        waiting, schedule, perf_counter = self.waiting, self.schedule, time.perf_counter
        now = perf_counter()
        while waiting and not self.stopped:
            due = schedule.next_due()
            if due > now and due > (now := perf_counter()):  # the loop's timers can ring a little early
                self.alarm.set(due)
                return
            waiter = waiting.popleft()
            if waiter.greenlet is None:  # its user was killed while in line
                continue
            # The user sends, then comes back here once its request waits for the answer.
            waiter.switch(self._claim())
        # Nobody in line: the next user to finish takes the next time itself (see next_request).

    def stop(self) -> None:
        """Hand out no more times (the users in line stay there until locust stops them)."""
        self.stopped = True
        self.alarm.clear()

    def close(self) -> None:
        self.stop()
        self.alarm.close()


class BadResponse(ConnectionError):
    """The target's answer is not HTTP/1.x as this client reads it (or it ended early): the outcome is status 0."""


class NoResponse(ConnectionError):
    """The connection ended (or was reset) before the first byte of an answer."""


class HttpTarget:
    """Where the requests go, parsed once from ``base_url``: the address, TLS or not, and each path's request.

    Every request is a ``GET`` of HTTP/1.1 on a keep-alive connection; its bytes are built once per path
    (:meth:`request_bytes`): ``Host`` (from ``base_url``, or the configured ``Host`` header), a ``User-Agent``
    and the configured headers. No ``Accept-Encoding`` is sent (the target answers uncompressed), no cookies are
    kept, redirects are not followed (a 3xx is the outcome, and not an error).
    """

    USER_AGENT = "pytest-clover-load"

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL with a host, not {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        self.prefix = parts.path.rstrip("/")
        """``base_url``'s path (without a trailing /): every request path is appended to it."""
        for name, value in headers.items():
            if not name or any(c in name for c in ":\r\n\0 \t") or any(c in value for c in "\r\n\0"):
                raise ValueError(f"headers: {name!r}: {value!r} is not a valid HTTP header (name or value)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = {"host": f"Host: {host}" + ("" if self.port == default_port else f":{self.port}")}
        lines["user-agent"] = f"User-Agent: {self.USER_AGENT}"
        for name, value in headers.items():
            lines[name.lower()] = f"{name}: {value}"  # a configured Host or User-Agent replaces ours
        self._header_block = "".join(line + "\r\n" for line in lines.values())
        self._ssl_context: ssl.SSLContext | None = None
        if self.tls:
            # Like locust's FastHttpUser: the target's certificate is not checked (test meshes use their own CAs).
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context

    def url(self, path: str) -> str:
        """The full URL of ``path`` (for locust's failure messages)."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.prefix}{path}"

    def request_bytes(self, path: str) -> bytes:
        """The whole request for ``path``, ready to send (characters outside the URI alphabet percent-encoded)."""
        target = urllib.parse.quote(self.prefix + path, safe="!#$%&'()*+,/:;=?@[]~")
        return f"GET {target} HTTP/1.1\r\n{self._header_block}\r\n".encode("latin-1")

    def connect(self, timeout_s: float) -> socket.socket:
        """A new connection, TLS handshake done (each step within ``timeout_s``), without a timeout of its own
        from then on: the sends and receives of a request are bounded by :class:`TimeoutWatch`."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        try:
            # One write per request: no small writes for Nagle to hold back, but no reason to risk it either.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
            # A socket timeout costs a gevent Timeout (an object and a timer) on every wait: ~8 % of the CPU.
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return sock


RECV_BYTES = 65_536
"""The most one receive asks for."""
MAX_HEAD_BYTES = 65_536
"""A response whose status line and headers take more than this is a :class:`BadResponse`."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection of one user (opened at its first request, reopened when closed).

    A lean client, on purpose: a request is one ``send`` of bytes built in advance and a response is read with a
    few ``bytes.find`` calls — no request or response objects, no header dictionaries. locust's FastHttpUser spent
    ~120 µs of CPU per request on that (measured, 16 connections on loopback); this spends ~20, as much as a bare
    socket's send and receive.
    It reads any HTTP/1.x framing: ``Content-Length``, ``chunked``, a body up to the close; skips 1xx answers.
    """

    __slots__ = ("_expired", "_sock", "_target", "_timeout_s", "started")

    def __init__(self, target: HttpTarget, timeout_s: float) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self.started = 0.0
        """perf_counter when the request under way began (0: none): :class:`TimeoutWatch` reads it."""
        self._expired = False

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    @property
    def is_open(self) -> bool:
        """A connection is open (kept alive from the last answer, or being used)."""
        return self._sock is not None

    def connect_ahead(self) -> bool:
        """Open the connection now, before a request needs it (False: it cannot be made now; the first request
        tries again, and fails as a request)."""
        try:
            if self._sock is None:
                self._open()
        except OSError as exc:
            log.debug("could not connect ahead of the first request: %r", exc)
            return False
        return True

    def expire(self) -> None:
        """The request under way ran out of time (called by :class:`TimeoutWatch`, from another greenlet).

        Closing the socket wakes the request's greenlet out of its wait with an error (gevent cancels the waits
        on a socket closed elsewhere), which :meth:`get` turns into a TimeoutError.
        """
        self._expired = True
        self.close()

    def get(self, request: bytes) -> tuple[int, int]:
        """Send ``request`` (from :meth:`HttpTarget.request_bytes`) and read the whole answer: (status, body bytes).

        Raises OSError: the connection could not be made, broke, the answer was not HTTP (:class:`BadResponse`),
        or the request took longer than ``timeout_s`` as a whole (a TimeoutError, when :class:`TimeoutWatch`
        watches this connection; the connect alone is bounded by ``timeout_s`` in any case). A kept-alive
        connection that the target had closed meanwhile (reset, or closed before any byte of an answer) is
        retried once on a new one, as browsers and geventhttpclient do: GET is idempotent, and an idle close is
        not the target failing the request.
        """
        self.started = time.perf_counter()
        self._expired = False
        try:
            return self._get(request)
        except OSError as exc:
            if self._expired:
                raise TimeoutError(f"no answer within the request timeout ({self._timeout_s:g} s)") from exc
            raise
        finally:
            self.started = 0.0

    def _get(self, request: bytes) -> tuple[int, int]:
        reused = self._sock is not None
        while True:
            sock = self._sock if self._sock is not None else self._open()
            try:
                try:
                    # send, not sendall: gevent's sendall asks the kernel for the buffer size on every call. A
                    # request fits an empty send buffer; the rest, if any, goes through sendall.
                    sent = sock.send(request)
                    if sent < len(request):
                        sock.sendall(request[sent:])
                except (ConnectionResetError, BrokenPipeError) as exc:
                    raise NoResponse(*exc.args) from exc
                return self._read(sock)
            except NoResponse as exc:  # only before any byte of an answer: a reset later is the answer's failure
                self.close()
                if not reused or self._expired:
                    raise
                log.debug("a kept-alive connection was closed by the target (%r): sending again on a new one", exc)
                reused = False
            except BaseException:
                self.close()  # whatever is left in the pipe belongs to no request: never read it as an answer
                raise

    def _open(self) -> socket.socket:
        sock = self._target.connect(self._timeout_s)
        if self._expired:  # the time ran out while connecting
            sock.close()
            raise TimeoutError("the request timed out while connecting")
        self._sock = sock
        return sock

    def _more(self, sock: socket.socket) -> bytes:
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            raise BadResponse("the connection closed in the middle of an answer")
        return chunk

    def _read(self, sock: socket.socket) -> tuple[int, int]:
        # Nothing is ever left over from the previous answer (a connection with extra bytes is closed).
        try:
            buf = sock.recv(RECV_BYTES)
        except ConnectionResetError as exc:
            raise NoResponse(*exc.args) from exc
        if not buf:
            raise NoResponse("the connection closed before an answer")
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise BadResponse(f"no end of the headers in the first {MAX_HEAD_BYTES} bytes")
                searched = len(buf)
                buf += self._more(sock)
                end = buf.find(b"\r\n\r\n", max(0, searched - 3))
            head, buf = buf[:end], buf[end + 4 :]
            # "HTTP/1.1 200 OK": the version, then exactly three digits.
            code = head[9:12]
            if not (head.startswith(b"HTTP/1.") and head[8:9] == b" " and code.isdigit() and head[12:13] in b" \r"):
                raise BadResponse(f"not an HTTP/1.x status line: {head[:40]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            break
        lower = head.lower()
        keep_alive = _header(lower, _CONNECTION)
        reusable = (b"close" not in keep_alive) if head[7:8] != b"0" else (b"keep-alive" in keep_alive)
        if status in (204, 304) or 100 <= status < 200:
            length = 0
            reusable = reusable and status != 101  # switched to another protocol: no more HTTP on it
        elif b"chunked" in _header(lower, _TRANSFER_ENCODING):
            length, buf = self._chunked(sock, buf)
        elif (declared := _header(lower, _CONTENT_LENGTH)) != b"":
            try:
                length = int(declared)
            except ValueError:
                raise BadResponse(f"a Content-Length that is not a number: {declared[:40]!r}") from None
            if length < 0:
                raise BadResponse(f"a negative Content-Length: {length}")
            buf = self._skip(sock, buf, length)
        else:
            length, buf, reusable = len(buf), b"", False  # no framing: the body ends with the connection
            while chunk := sock.recv(RECV_BYTES):
                length += len(chunk)
        if buf or not reusable:
            # Bytes after the answer were never asked for (no pipelining): this connection cannot be trusted.
            self.close()
        return status, length

    def _skip(self, sock: socket.socket, buf: bytes, n: int) -> bytes:
        """Pass ``n`` bytes of a body, from ``buf`` then the socket; what is left of ``buf`` after them. Counted,
        not kept: the body's bytes matter only as a length."""
        if len(buf) >= n:
            return buf[n:]
        missing = n - len(buf)
        while missing:
            missing -= len(self._more_upto(sock, missing))
        return b""

    def _line(self, sock: socket.socket, buf: bytes, what: str) -> tuple[bytes, bytes]:
        """The next CRLF-ended line, from ``buf`` then the socket: (the line, what follows it)."""
        line_end = buf.find(b"\r\n")
        while line_end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise BadResponse(f"{what} too long")
            buf += self._more(sock)
            line_end = buf.find(b"\r\n")
        return buf[:line_end], buf[line_end + 2 :]

    def _more_upto(self, sock: socket.socket, n: int) -> bytes:
        chunk = sock.recv(min(n, RECV_BYTES))
        if not chunk:
            raise BadResponse("the connection closed in the middle of a body")
        return chunk

    def _chunked(self, sock: socket.socket, buf: bytes) -> tuple[int, bytes]:
        """Read a chunked body from ``buf`` and the socket: (its length, what follows it)."""
        length = 0
        while True:
            size_line, buf = self._line(sock, buf, "a chunk size line")
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse(f"not a chunk size: {size_text[:40]!r}") from None
            if size == 0:
                break
            if size < 0:
                raise BadResponse(f"a negative chunk size: {size_text[:40]!r}")
            length += size
            buf = self._skip(sock, buf, size + 2)  # the data and its CRLF
        while True:  # trailer fields, up to an empty line
            line, buf = self._line(sock, buf, "a trailer field")
            if not line:
                return length, buf


class TimeoutWatch:
    """Bounds every request (connect, send, whole answer) by the request timeout, for all the connections at once.

    One greenlet looks at every connection each :attr:`period_s` and expires those whose request began more
    than ``timeout_s`` ago: a request times out between ``timeout_s`` and ``timeout_s`` + ``period_s``. Socket
    timeouts did this per wait, at the cost of a gevent Timeout per wait.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.period_s = min(1.0, max(0.05, timeout_s / 10))
        """How often the connections are looked at (s): a tenth of the timeout, within 50 ms … 1 s."""
        self.connections: set[HttpConnection] = set()
        """The users' connections (each user adds its own, and removes it when it stops)."""

    def check(self, now: float) -> int:
        """Expire the requests begun more than ``timeout_s`` before ``now`` (perf_counter); returns how many."""
        limit = now - self.timeout_s
        overdue = [c for c in self.connections if 0.0 < c.started < limit]
        for connection in overdue:
            connection.expire()
        return len(overdue)

    def run(self) -> None:
        """The greenlet's body."""
        while True:
            gevent.sleep(self.period_s)
            self.check(time.perf_counter())


_CONNECTION = b"\r\nconnection:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_CONTENT_LENGTH = b"\r\ncontent-length:"


def _header(lower_head: bytes, line_start: bytes) -> bytes:
    """The value of a header in a lowercased response head (its first occurrence), stripped; b"" if none.
    ``line_start``: CRLF, the lowercased name and a colon (a header line begins after the status line's CRLF)."""
    start = lower_head.find(line_start)
    if start < 0:
        return b""
    start += len(line_start)
    end = lower_head.find(b"\r\n", start)
    return lower_head[start : end if end >= 0 else len(lower_head)].strip()


class Route:
    """One request path: its request bytes (built once), and what locust's statistics have not been told yet."""

    __slots__ = ("failures", "length", "name", "request", "times_ms", "url")

    def __init__(self, target: HttpTarget, path: str) -> None:
        self.name = path
        """The name of its entry in locust's statistics (and CSV files): the path, as FastHttpUser named it."""
        self.request = target.request_bytes(path)
        self.url = target.url(path)
        self.times_ms: list[float] = []
        """Service times (ms, send to answer) of the requests answered since the last :meth:`StatsFeed.flush`."""
        self.length = 0
        """Their body bytes, together."""
        self.failures: dict[int | str, list[Any]] = {}
        """Failures since the last flush: status code (or the exception's repr) → [the exception or None, count]."""

    def record(self, service_s: float, status: int, length: int, error: OSError | None) -> None:
        """One outcome, for locust's statistics (a failure is what the windows count as an error: no answer,
        or a status outside 200–399)."""
        self.times_ms.append(service_s * 1000.0)
        self.length += length
        if not 200 <= status < 400:
            key: int | str = status if error is None else repr(error)
            if (seen := self.failures.get(key)) is not None:
                seen[1] += 1
            else:
                self.failures[key] = [error, 1]


class StatsFeed:
    """Hands the routes' outcomes to locust's statistics in batches, :data:`STATS_FEED_S` apart.

    locust's ``RequestStats.log_request`` costs ~7 µs a request (an entry and the total, a per-second count, a
    rounded-time bucket, its "current percentiles" cache), as much as the rest of the open loop's own work. The
    batch makes one ``log_request`` per path (locust's own bookkeeping, including its cache, when a second begins)
    and adds the rest to the same counters in bulk, so locust's files read as if each request had been logged:
    the same counts, sums, min/max, rounded-time buckets, failures, and requests per second (of the flush, at
    most :data:`STATS_FEED_S` after the answer; flushes fall on whole seconds, so none straddles two).
    """

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def flush(self, stats: RequestStats) -> None:
        """Tell ``stats`` everything recorded since the last flush."""
        bucket = locust_stats.bucket_response_time  # looked up each time: locust documents replacing it
        for route in self.routes:
            if route.times_ms:
                times, route.times_ms = route.times_ms, []
                length, route.length = route.length, 0
                rest = Counter(bucket(t) for t in islice(times, 1, None))
                for entry in (stats.get(route.name, "GET"), stats.total):
                    _log_many(entry, times, length, rest)
            if route.failures:
                failures, route.failures = route.failures, {}
                for key, (error, count) in failures.items():
                    if error is None:
                        assert isinstance(key, int)
                        error = LocustBadStatusCode(route.url, code=key)  # what FastHttpUser logged for a status
                    stats.log_error("GET", route.name, error)
                    if count > 1:
                        second = int(time.time())
                        for entry in (stats.get(route.name, "GET"), stats.total):
                            entry.num_failures += count - 1
                            entry.num_fail_per_sec[second] += count - 1
                        stats.errors[StatsError.create_key("GET", route.name, error)].occurrences += count - 1


def _log_many(entry: StatsEntry, times: list[float], length: int, rest: Counter[int]) -> None:
    """``entry.log`` for each of ``times`` (ms), in bulk: ``rest`` holds the rounded buckets of all but the first."""
    # locust annotates its times as int ms, but its own HTTP clients log float ms, as these are: typed loosely.
    stats_entry: Any = entry
    first = times[0]
    stats_entry.log(first, length)  # locust's own per-second bookkeeping, once
    more = len(times) - 1
    if more:
        stats_entry.num_requests += more
        stats_entry.num_reqs_per_sec[int(stats_entry.last_request_timestamp or time.time())] += more
        stats_entry.total_response_time += sum(times) - first
        low, lowest = min(times), stats_entry.min_response_time
        stats_entry.min_response_time = low if lowest is None else min(lowest, low)
        stats_entry.max_response_time = max(stats_entry.max_response_time, max(times))
        response_times = stats_entry.response_times
        for rounded, n in rest.items():
            response_times[rounded] = response_times.get(rounded, 0) + n


class Greenlets:
    """The generator's and the master's shared bookkeeping: their greenlets, and how they stop. A subclass sets
    ``greenlets``, ``drain`` and ``stop_requested`` in its ``__init__``."""

    greenlets: list[gevent.Greenlet[Any, Any]]
    drain: bool
    stop_requested: Event

    def _spawn(self, fn: Callable[[], None]) -> None:
        g = gevent.spawn(fn)
        g.link_exception(lambda g: self._crash(g.exception))
        self.greenlets.append(g)

    def _crash(self, exc: BaseException | None) -> None:
        log.error("internal greenlet failed: %r", exc)
        self.stop_now()

    def stop_now(self) -> None:
        """SIGTERM, or the parent gone: stop without waiting for outstanding outcomes."""
        self.drain = False
        self.stop_requested.set()


class Generator(Greenlets):
    """One locust Environment and LocalRunner, the users, and the greenlets around them."""

    def __init__(self, cfg: Config, emit: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.stop_requested = Event()
        self.stop_at: float | None = None
        """Set by a stop command: the instant (perf_counter) from which nothing more is sent."""
        self.drain = True
        """Whether a stop waits for the outcomes of requests already sent (not when the parent is gone)."""
        self.emit = emit
        """Where messages go: stdout (alone), the master (a worker of a master)."""
        self.schedule_start = 0.0
        """perf_counter of the schedule's start (``t0``)."""
        self.halt = Event()
        """Never set: users park on it once sending has stopped (locust kills them at the end)."""
        self.go = Event()
        self.bye = Event()
        """Set by the master's ``{"bye": true}``: it has this worker's ``done``."""
        self.busy = Event()
        """Set by an open-loop user whose request makes (nearly) every user busy: the growth check wakes."""
        self.busy_at = 1
        """Requests in flight from which the process counts as busy (kept up to date by the growth check)."""
        self.started = Event()
        """Set when the schedule starts (at once alone; at the master's ``start`` for a worker of a master)."""
        first, every = cfg.worker_index, cfg.workers
        self.picker = PathPicker(cfg.paths, cfg.seed, first=first, every=every)
        self.schedule = Schedule(cfg.rate, first=first, every=every) if cfg.rate is not None else None
        self.windows = Windows(lambda message: self.emit(message), self._next_send)
        self.target = HttpTarget(cfg.base_url, cfg.headers)
        self.routes = {path: Route(self.target, path) for path in cfg.paths}
        """Path → its request bytes and its statistics for locust."""
        self.stats_feed = StatsFeed(list(self.routes.values()))
        self.timeouts = TimeoutWatch(cfg.timeout_s)
        self.queue = SendQueue(self.schedule, self._claim) if self.schedule is not None else None
        self.in_flight = 0
        self.connected = 0
        """Users whose connection was opened ahead of their first request (or could not be): see :meth:`run`."""
        self.user_class = self._make_user_class()
        self.env = Environment(user_classes=[self.user_class], host=cfg.base_url, stop_timeout=None)
        self.runner: LocalRunner | WorkerRunner
        if cfg.of_master:
            assert cfg.master_host is not None and cfg.master_port is not None
            # Connects at once (and waits for the master's answer): the master listens before it starts us.
            self.runner = self.env.create_worker_runner(cfg.master_host, cfg.master_port)
            self.runner.register_message(CMD_MESSAGE, self._on_master_command)
            self.emit = self._to_master
        else:
            self.runner = self.env.create_local_runner()
        self.initial_users, self.max_users = self._user_counts()
        self.csv: FinalStatsCSVFileWriter | None = None
        self.greenlets: list[gevent.Greenlet[Any, Any]] = []

    def _user_counts(self) -> tuple[int, int]:
        cfg = self.cfg
        if cfg.users is not None:
            return cfg.users, cfg.users
        assert cfg.rate is not None
        rate = cfg.rate / cfg.workers  # this process's share of the schedule
        initial = max(MIN_USERS, math.ceil(rate * EXPECTED_LATENCY_S))
        # Enough users to keep every request of a full timeout in flight, within the file-descriptor limit
        # (each user holds one connection).
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = min(MAX_USERS, max(initial, soft - 128), initial + math.ceil(rate * cfg.timeout_s))
        return min(initial, cap), cap

    def _make_user_class(self) -> type[User]:
        # A locust User per connection: locust spawns, counts and stops them (and, with a master, reports their
        # statistics); the one task never returns, so locust's per-task machinery (task choice, wait time, a
        # greenlet switch) is not paid per request.
        gen = self
        if self.schedule is not None:

            class OpenLoopUser(User):
                wait_time = constant(0)

                @task
                def send(self) -> None:
                    gen._open_loop_user()

            return OpenLoopUser

        class ClosedLoopUser(User):
            wait_time = constant(0)

            @task
            def send(self) -> None:
                gen._closed_loop_user()

        return ClosedLoopUser

    def _open_loop_user(self) -> None:
        """One open-loop user, until locust kills it: wait for an intended time to come, send, record."""
        queue = self.queue
        assert queue is not None
        next_request, book, perf_counter = queue.next_request, self.windows.book, time.perf_counter
        connection = HttpConnection(self.target, self.cfg.timeout_s)
        self.timeouts.connections.add(connection)
        try:
            connection.connect_ahead()  # before taking a time: the connect does not make the request late
            self.connected += 1
            queue.schedule.started.wait()
            while True:
                if self.stop_at is not None:
                    self.halt.wait()
                intended, ticket, route = next_request()
                sent = perf_counter()
                book.sent(ticket, late=sent - intended > LATE_AFTER_S)
                self._send(connection, route, ticket, sent, intended)
        finally:
            self.timeouts.connections.discard(connection)
            connection.close()

    def _claim(self) -> tuple[float, Ticket, Route]:
        """The schedule's next intended time, registered with the windows, and the route it goes to (picked in
        the schedule's order: the path sequence follows the schedule)."""
        assert self.schedule is not None
        intended = self.schedule.claim()
        return intended, self.windows.book.register(intended), self.routes[self.picker.pick()]

    def _closed_loop_user(self) -> None:
        """One closed-loop user, until locust kills it: send, wait for the answer, record, at once send again."""
        book, picker, routes, perf_counter = self.windows.book, self.picker, self.routes, time.perf_counter
        connection = HttpConnection(self.target, self.cfg.timeout_s)
        self.timeouts.connections.add(connection)
        try:
            connection.connect_ahead()
            self.connected += 1
            self.go.wait()
            while True:
                if self.stop_at is not None:
                    self.halt.wait()
                route = routes[picker.pick()]
                sent = perf_counter()
                ticket = book.register(sent)
                book.sent(ticket)
                self._send(connection, route, ticket, sent, sent)
        finally:
            self.timeouts.connections.discard(connection)
            connection.close()

    def _send(self, connection: HttpConnection, route: Route, ticket: Ticket, sent: float, since: float) -> None:
        """One request: its outcome goes to the windows (latency counted from ``since``: the intended send time in
        the open loop, coordinated omission corrected; the send itself in the closed loop) and to locust's
        statistics (the service time, from ``sent``)."""
        self.in_flight += 1
        if self.in_flight >= self.busy_at:
            self.busy.set()  # wakes the growth check (see _grow)
        error: OSError | None = None
        try:
            status, length = connection.get(route.request)
        except OSError as exc:
            # No usable answer (refused, reset, timed out, not HTTP): status 0, whatever status line arrived.
            status, length, error = 0, 0, exc
        finally:
            self.in_flight -= 1
        done = time.perf_counter()
        self.windows.book.complete(ticket, done - since, status, done)
        route.record(done - sent, status, length, error)
        if error is not None:
            # A refused connection fails without waiting for anything: yield, or a closed-loop user (or an open-loop
            # one catching up) would keep the process to itself.
            gevent.sleep(0)

    def _next_send(self) -> float:
        """No request registered from now on will have an earlier send time than this."""
        if self.stop_at is not None:
            return math.inf
        if self.schedule is not None:
            return self.schedule.next_due() if self.schedule.started.is_set() else math.inf
        return time.perf_counter()

    def _feed_stats(self) -> None:
        """locust's statistics, every :data:`STATS_FEED_S` on the unix clock (a greenlet's body)."""
        while True:
            now = time.time()
            gevent.sleep(STATS_FEED_S - now % STATS_FEED_S + 0.001)  # just after a multiple: a second's last batch
            self.stats_feed.flush(self.env.stats)

    # -- greenlets ---------------------------------------------------------------------------------------

    def _grow(self) -> None:
        """Open loop: spawn more users whenever the next intended time passed with no user free to take it."""
        assert self.schedule is not None
        name = self.user_class.__name__
        while True:
            users = self.runner.user_count
            # Behind schedule only means "too few users" when (nearly) every user is inside a request. With
            # users free, the process is short of CPU, and more users would only cost more CPU: growing then
            # ran away to the 10 000-user cap and throughput collapsed (measured at 1 500–3 000 req/s).
            self.busy_at = users - max(1, users // 20)
            if users >= self.max_users or self.stop_at is not None:
                gevent.sleep(GROW_IDLE_S)
                continue
            if self.in_flight < self.busy_at:
                # Not busy, so not short of users: sleep until a request makes it busy (no cooperative switch
                # between the clear and the wait, so no wake-up is missed).
                self.busy.clear()
                self.busy.wait(GROW_IDLE_S)
                continue
            gevent.sleep(GROW_CHECK_S)
            busy = self.in_flight >= self.busy_at
            if busy and self.stop_at is None and self.schedule.next_due() < time.perf_counter() - BEHIND_S:
                more = min(self.max_users - users, max(MIN_USERS, users // 4))
                log.info("schedule behind with %d users busy; spawning %d more", users, more)
                self.runner.spawn_users({name: more})

    def _read_commands(self) -> None:
        stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
        try:
            if self.cfg.remote:
                self._watch_master()
                return
            while True:
                line = stdin.readline()
                if not line:
                    log.info("stdin closed (the %s is gone): stopping", "master" if self.cfg.of_master else "parent")
                    break
                if self.cfg.of_master:
                    continue  # the master's commands come through ZeroMQ; this pipe only says it is alive
                try:
                    command = json.loads(line)
                except ValueError:
                    log.warning("ignoring a line on stdin that is not JSON: %r", line[:200])
                    continue
                if self._command(command):
                    return
            self.drain = False
        finally:
            self.stop_requested.set()

    def _watch_master(self) -> None:
        """A remote worker: wait until the master's heartbeats stop (then stop at once, as at end of stdin)."""
        began = time.time()
        while True:
            gevent.sleep(1.0)
            last = getattr(self.runner, "last_heartbeat_timestamp", None) or began
            if time.time() - last > MASTER_SILENT_S:
                log.error("no heartbeat from the master for %.0f s (it is gone): stopping", MASTER_SILENT_S)
                self.drain = False
                return

    def _command(self, command: Any) -> bool:
        """Carry out one command (see the module's protocol); True for the stop."""
        if not isinstance(command, dict):
            log.warning("ignoring a command that is not an object: %r", command)
            return False
        if command.get("bye"):
            self.bye.set()
            return False
        at = command.get("at")
        at = float(at) if isinstance(at, int | float) and math.isfinite(at) else None
        if command.get("stop"):
            self._stop_sending(at)
            self.stop_requested.set()
            return True
        if "start" in command and self.cfg.of_master:
            t0, offset = command["start"], command.get("offset")
            if isinstance(offset, int | float) and math.isfinite(offset):
                # One machine, one CLOCK_MONOTONIC: the master's offset is ours give or take the reading error,
                # and using the very same float makes every worker's boundaries identical.
                if self.cfg.remote:
                    # Another machine's monotonic clock: its offset means nothing here. The start and the phases
                    # come in unix time, so the boundaries agree with the other workers' to the clocks' sync.
                    log.info("remote worker: window boundaries follow this machine's clock (master's offset unused)")
                elif abs(offset - self.windows.offset) < MAX_OFFSET_SKEW_S:
                    self.windows.use_offset(float(offset))
                else:
                    log.warning(
                        "the master's clock offset differs from ours by %.3f s: keeping ours (windows may not "
                        "line up with the other workers')",
                        offset - self.windows.offset,
                    )
            if isinstance(t0, int | float) and math.isfinite(t0):
                self._start(self.windows.perf_time(float(t0)))
            else:
                log.warning("ignoring a start without a time: %r", command)
        if "phase" in command:
            self.windows.set_phase(command["phase"], at)
        return False

    def _on_master_command(self, environment: Any = None, msg: Any = None, **_kwargs: Any) -> None:
        self._command(getattr(msg, "data", None))

    def _to_master(self, message: dict[str, Any]) -> None:
        # msgpack carries the same dict the parent would read; NOBLOCK under the hood (a gone master drops it).
        self.runner.send_message(OUT_MESSAGE, {**message, "worker": self.cfg.worker_index})

    def _stop_sending(self, at_unix: float | None) -> None:
        now = time.perf_counter()
        at = now if at_unix is None else min(self.windows.perf_time(at_unix), now)
        self.stop_at = at
        if self.queue is not None:
            self.queue.stop()
        self.windows.stop_sending(at)

    def _trim_stats(self) -> None:
        trim_stats_forever(self.env)

    # -- life cycle --------------------------------------------------------------------------------------

    def run(self) -> int:
        os.makedirs(self.cfg.report_dir, exist_ok=True)
        if not self.cfg.of_master:  # a master writes locust's files from what its workers report
            self.csv = FinalStatsCSVFileWriter(
                self.env, PERCENTILES_TO_REPORT, os.path.join(self.cfg.report_dir, "locust"), full_history=True
            )
        self._spawn(self._read_commands)
        if isinstance(self.runner, WorkerRunner):
            # Our own users, not the master's dispatch: locust would rebalance (stop users mid-request) when
            # a worker goes missing, and each of ours keeps its share of the schedule whatever the others do.
            self.user_class.host = self.cfg.base_url  # what the runner's own start would set
            self.runner.spawn_users({self.user_class.__name__: self.initial_users})
        else:
            self.runner.start(self.initial_users, spawn_rate=self.initial_users)
        deadline = time.perf_counter() + 30.0
        while self.runner.user_count < self.initial_users:
            if time.perf_counter() > deadline or self.stop_requested.is_set():
                log.error("users did not spawn: %d of %d", self.runner.user_count, self.initial_users)
                return 3
            gevent.sleep(0.01)
        # The users connect before the schedule starts: a thousand connects in the first 0.3 s of the schedule
        # stalled the loop for up to 30 ms (late sends, charged to the target, in the test's first phase).
        deadline = time.perf_counter() + min(self.cfg.timeout_s, CONNECT_AHEAD_S)
        while self.connected < self.initial_users and time.perf_counter() < deadline:
            gevent.sleep(0.01)
        if self.connected < self.initial_users:
            log.warning("%d of %d users connected ahead of the start", self.connected, self.initial_users)
        # What is alive now (modules, locust, the users) lives as long as the process: frozen out of the cyclic
        # collector's sight, so that a full collection no longer walks ~50 000 objects (~10 ms during which no
        # request is sent: late sends, measured).
        gc.freeze()
        if not self.cfg.of_master:
            self._start(time.perf_counter())
        ready = {"type": "ready", "pid": os.getpid(), "users": self.runner.user_count, "max_users": self.max_users}
        if self.cfg.of_master:
            self.emit(ready)  # the master answers with the start (the same t0 for every worker)
            while not (self.started.wait(0.1) or self.stop_requested.is_set()):
                pass
        else:
            self.emit({**ready, "start": self.schedule_start + self.windows.offset})
        self.stop_requested.wait()
        return self.shutdown()

    def _start(self, start: float) -> None:
        """Start the schedule (and the windows) at ``start`` (perf_counter; the master's may lie ahead)."""
        if self.started.is_set():
            return
        self.schedule_start = start
        self.windows.restart(start)
        if self.schedule is not None:
            self.schedule.start(start)
            self._spawn(self._grow)
            self.go.set()
        else:
            # Closed loop: the users wait for the start (gevent timers may fire a little early: at most a
            # request or two land in the first window a hair before its start, where the windows put them).
            gevent.spawn_later(max(0.0, start - time.perf_counter()), self.go.set)
        self._spawn(self.windows.run)
        self._spawn(self._feed_stats)
        self._spawn(self.timeouts.run)
        if self.csv is not None:
            self._spawn(self.csv.stats_writer)
        self._spawn(self._trim_stats)
        self.started.set()

    def shutdown(self) -> int:
        if self.stop_at is None:
            self._stop_sending(None)
        assert self.stop_at is not None
        # Every request sent before the stop belongs to a window, so it is waited for: its outcome comes within
        # the request timeout. A second stop (SIGTERM) ends the wait.
        deadline = time.perf_counter() + self.cfg.timeout_s + DRAIN_EXTRA_S
        while self.drain and self.windows.outstanding and time.perf_counter() < deadline:
            gevent.sleep(0.01)
        self.windows.close(self.stop_at)
        abandoned, users = self.windows.book.abandoned, self.runner.user_count
        # Our greenlets go before locust's users: a growth check that saw the schedule fall behind while users
        # were stopping spawned more of them, and the stop overran its grace period.
        for g in self.greenlets:
            if g is not gevent.getcurrent():
                g.kill(block=True, timeout=1.0)
        if self.queue is not None:
            self.queue.close()  # nothing more is sent on schedule
        if isinstance(self.runner, WorkerRunner):
            self.runner.stop()
            self.stats_feed.flush(self.env.stats)  # the users are gone: nothing more comes
            with contextlib.suppress(Exception):  # the master may be gone: the statistics are only for its CSV
                self.runner._send_stats()  # a last report, so the master's locust CSV counts every request
            self.emit({"type": "done", "users": users, "abandoned": abandoned})
            # The receiving greenlet still runs, so the master's answer can come; a master known gone (end of our
            # stdin, or its heartbeats stopped: no drain) is not waited for.
            if self.drain and not self.bye.wait(BYE_WAIT_S):
                log.warning("the master did not confirm our done within %.0f s (gone, or very busy)", BYE_WAIT_S)
            self.runner.greenlet.kill(block=True, timeout=1.0)
            # Give the last messages a moment to leave, never wait for a master that is gone.
            self.runner.client.close(linger=int(LINGER_S * 1000))  # type: ignore[no-untyped-call]
            return 0
        self.runner.quit()
        self.stats_feed.flush(self.env.stats)  # the users are gone: nothing more comes
        if self.csv is not None:
            self.csv.write_final()
            self.csv.close_files()
        self.emit({"type": "done", "users": users, "abandoned": abandoned})
        return 0


def trim_stats_forever(env: Environment) -> None:
    """Every :data:`STATS_KEEP_S`, drop locust's per-second counts older than that (a greenlet's body)."""
    stats = env.stats
    while True:
        gevent.sleep(STATS_KEEP_S)
        cutoff = int(time.time()) - STATS_KEEP_S
        for entry in chain(stats.entries.values(), [stats.total]):
            for per_sec in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
                for second in [s for s in per_sec if s < cutoff]:
                    del per_sec[second]


class FinalStatsCSVFileWriter(StatsCSVFileWriter):
    """locust's CSV writer (``--csv`` with ``--csv-full-history``) plus one last write at the end of the run.

    The writer greenlet writes every second and is simply killed when locust stops, so the last second would
    be missing; ``write_final`` rewrites the summary files and appends a last history row.
    """

    def write_final(self) -> None:
        for handle, columns, rows in (
            (self.requests_csv_filehandle, self.requests_csv_columns, self._requests_data_rows),
            (self.failures_csv_filehandle, self.failures_columns, self._failures_data_rows),
            (self.exceptions_csv_filehandle, self.exceptions_columns, self._exceptions_data_rows),
        ):
            handle.seek(0)
            handle.truncate()
            writer = csv.writer(handle)
            writer.writerow(columns)
            rows(writer)
        if self.stats_history_csv_filehandle.tell() == 0:
            csv.writer(self.stats_history_csv_filehandle).writerow(self.stats_history_csv_columns)
        self._stats_history_data_rows(csv.writer(self.stats_history_csv_filehandle), time.time())
        for handle in (
            self.requests_csv_filehandle,
            self.failures_csv_filehandle,
            self.exceptions_csv_filehandle,
            self.stats_history_csv_filehandle,
        ):
            handle.flush()


class QuietSpawnRate(logging.Filter):
    """Drops locust's warning about a high spawn rate."""

    # Spawning every user at once is what we want (the open loop starts on a schedule, not a ramp); locust
    # warns about any spawn rate above 100.
    def filter(self, record: logging.LogRecord) -> bool:
        return "spawn rate is very high" not in record.getMessage()


class Emitter:
    """Writes messages to stdout, one JSON line each, flushed at once (the parent reads line by line)."""

    def __init__(self) -> None:
        self.on_parent_gone: Callable[[], None] = lambda: None
        self._gone = False

    def __call__(self, message: dict[str, Any]) -> None:
        if self._gone:
            return
        try:
            sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The parent is gone: nobody is left to read the result. Point fd 1 at /dev/null so the
            # interpreter's final flush does not fail again, and stop.
            self._gone = True
            log.warning("stdout closed (the parent is gone): stopping")
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            self.on_parent_gone()


def read_config(args: list[str], program: str) -> Config | None:
    """A load process's config: its one argument, else :data:`CONFIG_ENV` (a pod's environment); None (usage
    printed) when it has neither."""
    if len(args) > 1 or not (args or os.environ.get(CONFIG_ENV)):
        print(f"usage: python -m {program} CONFIG_JSON (or in ${CONFIG_ENV})", file=sys.stderr)
        return None
    return Config.from_json(args[0] if args else os.environ[CONFIG_ENV])


def stop_on_sigterm(stop: Callable[[], None]) -> Callable[[], bool]:
    """Have SIGTERM call ``stop``; returns whether a SIGTERM came (a pod being deleted exits, one that finished
    its run idles: see :func:`idle_until_deleted`)."""
    terminated: list[bool] = []

    def on_sigterm() -> None:
        terminated.append(True)
        stop()

    gevent.signal_handler(signal.SIGTERM, on_sigterm)
    return lambda: bool(terminated)


def idle_until_deleted(code: int) -> int:
    """A load process in a pod that ended stays, idle, until the pod is deleted (SIGTERM): its Deployment would
    restart it, and a restarted worker would connect to the master again."""
    log.info("finished (exit code %d): idle until the pod is deleted", code)
    gevent.signal_handler(signal.SIGTERM, lambda: os._exit(code))
    while True:
        gevent.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("locust.runners").addFilter(QuietSpawnRate())
    cfg = read_config(args, "pytest_clover.load.worker")
    if cfg is None:
        return 2
    # Each open-loop user holds a connection: allow as many descriptors as a pod would have.
    raise_open_files_limit()
    emit = Emitter()
    gen = Generator(cfg, emit)
    emit.on_parent_gone = gen.stop_now
    terminated = stop_on_sigterm(gen.stop_now)
    log.info(
        "load generator pid %d%s: %s against %s, seed %d",
        os.getpid(),
        f" (worker {cfg.worker_index} of {cfg.workers}, master {cfg.master_host}:{cfg.master_port})"
        if cfg.of_master
        else "",
        f"open loop {cfg.rate}/s" if cfg.rate is not None else f"closed loop {cfg.users} users",
        cfg.base_url,
        cfg.seed,
    )
    code = gen.run()
    return idle_until_deleted(code) if cfg.remote and not terminated() else code


if __name__ == "__main__":
    sys.exit(main())
