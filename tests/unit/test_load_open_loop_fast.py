"""The load generator's fast request path (``pytest_clover/load/worker.py``): its lean HTTP/1.1 client, the request
timeout watch, locust's statistics fed in batches, and the open loop's timing (never early; late sends counted;
latency from the intended send time).

worker.py imports locust, which monkey-patches the process that imports it, and the pytest process must never import
locust or gevent (``tests/integration/test_load.py`` checks it). So the checks run in one child process: this file,
run as a script, runs every ``check_*`` function below in a gevent-patched process (each against a scripted TCP
server on 127.0.0.1 where it needs one) and prints their results as one JSON object; the tests read them from a
module-scoped fixture and judge them here. A check that raised reports its traceback, and only its tests fail.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT_S = 10.0
"""A check still running after this long (a client waiting for an answer that never ends) is stopped: it crashed."""
CHILD_TIMEOUT_S = 120.0

# What the scripted server answers, by request path: the pieces of the answer (sent a moment apart, so the client
# must put them together) and whether it then closes the connection.
ANSWERS: dict[str, tuple[list[bytes], bool]] = {
    "/length": ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"], False),
    "/split": ([b"HTTP/1.1 2", b"00 OK\r\nContent-Len", b"gth: 5\r\n\r\nhe", b"llo"], False),
    "/chunked": (
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"],
        False,
    ),
    "/chunked-split": (
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r", b"\nwi", b"ki\r\n5\r\npedia\r\n0\r", b"\n\r\n"],
        False,
    ),
    "/until-close": ([b"HTTP/1.1 200 OK\r\n\r\n", b"body until close"], True),
    "/http10": ([b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], False),
    "/http10-keep-alive": ([b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"], False),
    "/close": ([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"], False),
    "/interim": (
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"],
        False,
    ),
    "/no-content": ([b"HTTP/1.1 204 No Content\r\n\r\n"], False),
    "/no-reason": ([b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"], False),
    "/big": ([b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n", b"x" * 150_000, b"y" * 150_000], False),
    "/extra": ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK"], False),
    "/bad-status": ([b"HTTP/2 200\r\n\r\n"], False),
    "/not-http": ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], False),
    "/truncated": ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], True),
    "/bad-length": ([b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"], False),
    "/silent-close": ([], True),
}
"""Path → (pieces, close after)."""

# The outcome the client must give for each answer: (status, body bytes, connection kept) or the error's class.
EXPECTED: dict[str, tuple[int, int, bool] | str] = {
    "/length": (200, 5, True),
    "/split": (200, 5, True),
    "/chunked": (200, 9, True),
    "/chunked-split": (200, 9, True),
    "/until-close": (200, 16, False),
    "/http10": (200, 2, False),
    "/http10-keep-alive": (200, 2, True),
    "/close": (200, 2, False),
    "/interim": (503, 0, True),
    "/no-content": (204, 0, True),
    "/no-reason": (404, 0, True),
    "/big": (200, 300_000, True),
    "/extra": (200, 2, False),
    "/bad-status": "BadResponse",
    "/not-http": "BadResponse",
    "/truncated": "BadResponse",
    "/bad-length": "BadResponse",
    "/silent-close": "NoResponse",
}


# -- the child process's side (gevent-patched; never run in the pytest process) ------------------------------------


class ScriptedServer:
    """A TCP server on 127.0.0.1 answering each request from :data:`ANSWERS` by its path (child process only)."""

    def __init__(self, answers: dict[str, tuple[list[bytes], bool]], tls: tuple[str, str] | None = None) -> None:
        from gevent.server import StreamServer  # type: ignore[import-untyped,unused-ignore]

        self.answers = answers
        self.accepted = 0
        self.heads: list[bytes] = []
        ssl_args = {} if tls is None else {"certfile": tls[0], "keyfile": tls[1]}
        self._server = StreamServer(("127.0.0.1", 0), self._serve, **ssl_args)
        self._server.start()
        self.port: int = self._server.server_port
        self.scheme = "http" if tls is None else "https"

    def url(self, path: str = "") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def _serve(self, sock: Any, _address: Any) -> None:
        import gevent  # type: ignore[import-untyped,unused-ignore]

        self.accepted += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                path = head.split(b" ")[1].decode()
                if path == "/hang":
                    gevent.sleep(3600)
                if path == "/reset":  # a head and part of the body, then a reset (SO_LINGER 0: RST, not FIN)
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                    gevent.sleep(0.01)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                pieces, close = self.answers.get(path, ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], False))
                for i, piece in enumerate(pieces):
                    if i:
                        gevent.sleep(0.002)  # the client reads what arrived so far: it must wait for the rest
                    sock.sendall(piece)
                if close or path == "/once":
                    return
        finally:
            sock.close()

    def stop(self) -> None:
        self._server.stop(timeout=0)  # handlers still waiting (a hung answer) are killed at once

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def check_framings() -> dict[str, Any]:
    from pytest_clover.load import worker

    outcomes: dict[str, Any] = {}
    with ScriptedServer(ANSWERS) as server:
        target = worker.HttpTarget(server.url(), {})
        for path in ANSWERS:
            connection = worker.HttpConnection(target, 5.0)
            try:
                status, length = connection.get(target.request_bytes(path))
                outcomes[path] = [status, length, connection.is_open]
            except OSError as exc:
                outcomes[path] = type(exc).__name__
            finally:
                connection.close()
        # Three requests on one kept-alive connection: one connection accepted.
        before = server.accepted
        connection = worker.HttpConnection(target, 5.0)
        answers = [connection.get(target.request_bytes(p)) for p in ("/length", "/chunked", "/no-content")]
        connection.close()
        return {"outcomes": outcomes, "kept_alive": [list(a) for a in answers], "connections": server.accepted - before}


def check_stale_connection_is_retried_once() -> dict[str, Any]:
    from pytest_clover.load import worker

    with ScriptedServer(ANSWERS) as server:
        target = worker.HttpTarget(server.url(), {})
        connection = worker.HttpConnection(target, 5.0)
        first = connection.get(target.request_bytes("/once"))  # answered, then the server closes the connection
        import gevent

        gevent.sleep(0.01)  # the close reaches the client's side
        second = connection.get(target.request_bytes("/length"))  # the stale connection fails: sent again
        accepted_after_retry = server.accepted
        connection.close()
        fresh = worker.HttpConnection(target, 5.0)
        try:
            fresh.get(target.request_bytes("/silent-close"))
            fresh_error = ""
        except OSError as exc:
            fresh_error = type(exc).__name__
        return {
            "first": list(first),
            "second": list(second),
            "accepted_after_retry": accepted_after_retry,
            "fresh_error": fresh_error,
            "accepted_after_fresh": server.accepted - accepted_after_retry,
        }


def check_reset_in_an_answer_is_not_retried() -> dict[str, Any]:
    from pytest_clover.load import worker

    with ScriptedServer(ANSWERS) as server:
        target = worker.HttpTarget(server.url(), {})
        connection = worker.HttpConnection(target, 5.0)
        first = connection.get(target.request_bytes("/length"))
        try:
            connection.get(target.request_bytes("/reset"))  # on the kept-alive connection
            error = ""
        except OSError as exc:
            error = type(exc).__name__
        return {"first": list(first), "error": error, "accepted": server.accepted, "requests": len(server.heads)}


def check_tls() -> dict[str, Any]:
    import tempfile

    from pytest_clover.backends.local.kube.tls import make_credentials
    from pytest_clover.load import worker

    with tempfile.TemporaryDirectory() as directory:  # the server reads its certificate at each accept
        credentials = make_credentials(Path(directory), server_ip="127.0.0.1", mesh_id="load-test")
        with ScriptedServer(ANSWERS, tls=(str(credentials.cert_path), str(credentials.key_path))) as server:
            target = worker.HttpTarget(server.url(), {})
            connection = worker.HttpConnection(target, 5.0)
            answers = [list(connection.get(target.request_bytes(p))) for p in ("/length", "/chunked")]
            connection.close()
            return {"answers": answers, "accepted": server.accepted}


def check_request_bytes() -> dict[str, Any]:
    from pytest_clover.load import worker

    with ScriptedServer(ANSWERS) as server:
        target = worker.HttpTarget(server.url("/api"), {"end-user": "jason"})
        connection = worker.HttpConnection(target, 5.0)
        connection.get(target.request_bytes("/a b?q=1"))
        connection.close()
        built = {
            "default_port": worker.HttpTarget("http://example.test", {}).request_bytes("/").decode(),
            "host_header": worker.HttpTarget("http://10.0.0.1:8080", {"Host": "svc.test"}).request_bytes("/").decode(),
            "ipv6": worker.HttpTarget("http://[::1]:8080", {}).request_bytes("/").decode(),
            "https_default": worker.HttpTarget("https://example.test", {}).request_bytes("/").decode(),
        }
        rejected = []
        for headers in ({"X": "a\r\nInjected: 1"}, {"Bad Name": "v"}, {"": "v"}):
            try:
                worker.HttpTarget("http://example.test", headers)
            except ValueError as exc:
                rejected.append(str(exc))
        for url in ("ftp://example.test", "http://"):
            try:
                worker.HttpTarget(url, {})
            except ValueError as exc:
                rejected.append(str(exc))
        return {"port": server.port, "received": server.heads[0].decode(), "built": built, "rejected": rejected}


def check_errors_and_timeouts() -> dict[str, Any]:
    import time

    import gevent

    from pytest_clover.load import worker

    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        refused_target = worker.HttpTarget(f"http://127.0.0.1:{probe.getsockname()[1]}", {})
        try:
            worker.HttpConnection(refused_target, 5.0).get(refused_target.request_bytes("/"))
            refused = ""
        except OSError as exc:
            refused = type(exc).__name__
    server = ScriptedServer(ANSWERS)
    target = worker.HttpTarget(server.url(), {})
    watch = worker.TimeoutWatch(0.2)
    watcher = gevent.spawn(watch.run)
    try:
        connection = worker.HttpConnection(target, 0.2)
        watch.connections.add(connection)
        began = time.perf_counter()
        try:
            connection.get(target.request_bytes("/hang"))
            hang = ""
        except OSError as exc:
            hang = type(exc).__name__
        took = time.perf_counter() - began
        after = connection.get(target.request_bytes("/length"))  # the connection opens again
        idle_expired = watch.check(time.perf_counter() + 100.0)  # no request under way: nothing to expire
        return {
            "refused": refused,
            "hang": hang,
            "took": took,
            "period": watch.period_s,
            "after": list(after),
            "idle_expired": idle_expired,
        }
    finally:
        watcher.kill()
        server.stop()


def check_stats_feed() -> dict[str, Any]:
    import random

    from locust.contrib.fasthttp import LocustBadStatusCode
    from locust.stats import RequestStats, StatsError

    from pytest_clover.load import worker

    rng = random.Random(7)
    target = worker.HttpTarget("http://127.0.0.1:9", {})
    routes = [worker.Route(target, "/a"), worker.Route(target, "/b")]
    feed = worker.StatsFeed(routes)
    batched, one_by_one = RequestStats(), RequestStats()
    refused = ConnectionRefusedError(111, "Connection refused")
    for i in range(3000):
        route = routes[1 if rng.random() < 0.3 else 0]
        service_s = rng.choice([rng.uniform(0.0001, 0.09), rng.uniform(0.1, 2.5)])
        status = rng.choice([200, 200, 200, 302, 503, 404, 0])
        length = rng.randrange(0, 5000) if status else 0
        error = refused if status == 0 else None
        route.record(service_s, status, length, error)
        # locust annotates int ms; its HTTP clients (and the feed) log float ms.
        one_by_one.log_request("GET", route.name, service_s * 1000.0, length)  # type: ignore[arg-type]
        if not 200 <= status < 400:
            failure = error if error is not None else LocustBadStatusCode(route.url, code=status)
            one_by_one.log_error("GET", route.name, failure)
        if i == 1234:
            feed.flush(batched)  # two batches: the second adds to the first
    feed.flush(batched)
    feed.flush(batched)  # nothing new: changes nothing

    def summary(stats: RequestStats) -> dict[str, Any]:
        entries = {}
        for name, entry in [*((n, stats.get(n, "GET")) for n in ("/a", "/b")), ("total", stats.total)]:
            entries[name] = {
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "total_ms": round(entry.total_response_time, 6),
                "min_ms": entry.min_response_time,
                "max_ms": entry.max_response_time,
                "buckets": sorted(entry.response_times.items()),
                "bytes": entry.total_content_length,
                "per_second": sum(entry.num_reqs_per_sec.values()),
                "failures_per_second": sum(entry.num_fail_per_sec.values()),
            }
        errors = sorted((e.name, StatsError.parse_error(e.error), e.occurrences) for e in stats.errors.values())
        return {"entries": entries, "errors": errors}

    return {
        "batched": summary(batched),
        "one_by_one": summary(one_by_one),
        "left": sum(len(r.times_ms) for r in routes),
    }


def check_open_loop_timing() -> dict[str, Any]:
    """400 requests/s with 8 users; the whole process is blocked (a CPU-bound greenlet) for 80 ms meanwhile."""
    import tempfile
    import time

    import gevent

    from pytest_clover.load import worker

    server = ScriptedServer({})
    messages: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as report_dir:
        config = worker.Config(base_url=server.url(), report_dir=report_dir, seed=3, rate=400.0)
        gen = worker.Generator(config, messages.append)
        book = gen.windows.book
        sends: list[list[float]] = []
        outcomes: list[list[float]] = []
        sent, complete = book.sent, book.complete

        def spy_sent(ticket: Any, *, late: bool = False) -> None:
            sends.append([ticket.sent, time.perf_counter(), float(late)])
            sent(ticket, late=late)

        def spy_complete(ticket: Any, latency_s: float, status: int, now: float) -> None:
            outcomes.append([ticket.sent, latency_s, float(status), now])
            complete(ticket, latency_s, status, now)

        book.sent, book.complete = spy_sent, spy_complete  # type: ignore[method-assign]
        gen.runner.spawn_users({gen.user_class.__name__: 8})
        start = time.perf_counter() + 0.05
        gen._start(start)
        hog: list[float] = []

        def block_the_process() -> None:
            hog.append(time.perf_counter())
            while time.perf_counter() < hog[0] + 0.08:
                pass  # no yield: every greenlet waits, as on a CPU-starved generator
            hog.append(time.perf_counter())

        gevent.spawn_later(0.15 + start - time.perf_counter(), block_the_process)
        gevent.sleep(start + 0.45 - time.perf_counter())
        gen._stop_sending(None)
        deadline = time.perf_counter() + 5.0
        while gen.windows.outstanding and time.perf_counter() < deadline:
            gevent.sleep(0.01)
        gen.windows.close(gen.stop_at or time.perf_counter())
        for g in gen.greenlets:
            g.kill()
        gen.runner.quit()
        gen.stats_feed.flush(gen.env.stats)
        windows = [m for m in messages if m.get("type") == "window" and m.get("final")]
        server.stop()
        return {
            "start": start,
            "hog": hog,
            "sends": sends,
            "outcomes": outcomes,
            "window_outcomes": sum(sum(m["status"].values()) for m in windows),
            "window_late": sum(m["late"] for m in windows),
            "locust_requests": gen.env.stats.total.num_requests,
            "max_ms": max((m["max_us"] or 0) / 1000 for m in windows),
        }


def check_send_alarm() -> dict[str, Any]:
    """The alarm that wakes the loop for the next send time: set again replaces the time before; rings once, and
    never early; set again from its own ring, rings again; left unset, its timerfd stops being readable; its
    descriptor is closed at the end. Without a timerfd (``CLOVER_LOAD_SEND_ALARM=0``) a libev timer rings."""
    import math
    import select
    import time

    import gevent

    from pytest_clover.load import worker

    rings: list[float] = []
    now = time.perf_counter()
    first, second, third = now + 0.004, now + 0.006, now + 0.008

    def ring() -> None:
        rings.append(time.perf_counter())
        if len(rings) == 1:
            alarm.set(third)

    alarm = worker.SendAlarm(ring)
    alarm.set(first)
    armed = [alarm.armed]
    alarm.set(second)  # replaces the first
    armed.append(alarm.armed)
    while (delay := third + 0.003 - time.perf_counter()) > 0:
        gevent.sleep(delay)
    readable = bool(alarm._fd >= 0 and select.select([alarm._fd], [], [], 0)[0])
    enabled, alarm_fd, closed_fds = alarm.enabled, alarm._fd, []
    real_close = os.close

    def spy_close(fd: int) -> None:
        closed_fds.append(fd)
        real_close(fd)

    os.close = spy_close
    try:
        alarm.close()
    finally:
        os.close = real_close
    closed = closed_fds == [alarm_fd] and not alarm.enabled

    fallback_rings: list[float] = []
    os.environ[worker.ALARM_ENV] = "0"
    try:
        fallback = worker.SendAlarm(lambda: fallback_rings.append(time.perf_counter()))
    finally:
        del os.environ[worker.ALARM_ENV]
    fallback_at = time.perf_counter() + 0.003
    fallback.set(fallback_at)
    deadline = time.perf_counter() + 1.0
    while not fallback_rings and time.perf_counter() < deadline:
        gevent.sleep(0.001)
    fallback.close()
    return {
        "enabled": enabled,
        "times": [first, second, third],
        "armed": armed,
        "armed_at_end": None if math.isinf(alarm.armed) else alarm.armed,
        "rings": rings,
        "readable_at_end": readable,
        "closed": closed,
        "fallback_enabled": fallback.enabled,
        "fallback_at": fallback_at,
        "fallback_rings": fallback_rings,
    }


def check_send_queue() -> dict[str, Any]:
    """The open loop's queue, with 3 users whose requests take 2.5 ms at 1 000 times a second (so at times none
    waits and a time is taken late); then a user killed in line, and the stop."""
    import time

    import gevent

    from pytest_clover.load import worker

    rate, per_user = 1000.0, 40
    schedule = worker.Schedule(rate)
    queue = worker.SendQueue(schedule, schedule.claim)
    got: list[list[Any]] = []  # [user, intended, handed at]

    def user(name: int) -> None:
        for _ in range(per_user):
            intended = queue.next_request()
            got.append([name, intended, time.perf_counter()])
            gevent.sleep(0.0025)  # the request

    t0 = time.perf_counter() + 0.01
    schedule.start(t0)
    users = [gevent.spawn(user, i) for i in range(3)]
    gevent.joinall(users, timeout=10.0)
    finished = all(u.dead for u in users)

    # A time already due is taken at once, without waiting in line (no other greenlet runs meanwhile).
    behind = worker.Schedule(rate)
    behind.start(time.perf_counter() - 0.5)
    behind_queue = worker.SendQueue(behind, behind.claim)
    others_ran: list[int] = []
    gevent.spawn(others_ran.append, 1)
    first_behind = behind_queue.next_request()
    took_at_once = not others_ran and first_behind == behind.t0
    behind_queue.close()

    # Killed in line: passed over, the next time goes to the user behind it.
    later = worker.Schedule(rate)
    later.start(time.perf_counter() + 0.02)
    later_queue = worker.SendQueue(later, later.claim)
    handed: list[list[Any]] = []
    in_line = [gevent.spawn(lambda i=i: handed.append([i, later_queue.next_request()])) for i in range(3)]
    gevent.sleep(0.001)
    line_before = len(later_queue.waiting)
    in_line[0].kill()
    gevent.joinall(in_line[1:2], timeout=1.0)
    handed_after_kill = list(handed)
    # Stopped: nobody in line is handed a time any more.
    later_queue.stop()
    gevent.sleep(0.05)
    handed_after_stop = handed[len(handed_after_kill) :]
    in_line[2].kill()
    later_queue.close()
    queue.close()
    return {
        "finished": finished,
        "t0": t0,
        "rate": rate,
        "got": got,
        "took_at_once": took_at_once,
        "later_t0": later.t0,
        "line_before": line_before,
        "handed_after_kill": handed_after_kill,
        "handed_after_stop": handed_after_stop,
    }


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "framings": check_framings,
    "stale": check_stale_connection_is_retried_once,
    "reset": check_reset_in_an_answer_is_not_retried,
    "tls": check_tls,
    "request_bytes": check_request_bytes,
    "errors": check_errors_and_timeouts,
    "stats_feed": check_stats_feed,
    "open_loop": check_open_loop_timing,
    "send_alarm": check_send_alarm,
    "send_queue": check_send_queue,
}


class CheckTimedOut(Exception):
    """A check ran too long (not an OSError: the checks catch those as the client's outcomes)."""


def run_checks() -> None:
    """The child process: every check, each result (or its traceback) under its name, as one JSON line."""
    # isort: off
    import pytest_clover.load.worker  # noqa: F401  (locust first: it monkey-patches the process)
    import gevent

    # isort: on

    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        try:
            with gevent.Timeout(CHECK_TIMEOUT_S, CheckTimedOut(f"{name}: still running after {CHECK_TIMEOUT_S} s")):
                results[name] = check()
        except Exception:
            results[name] = {"crashed": traceback.format_exc()}
    print(json.dumps(results))


# -- the pytest side ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)  # the child runs as the load worker does: patched
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=ROOT
    )
    assert done.returncode == 0, f"the checks' process failed ({done.returncode}):\n{done.stderr[-3000:]}"
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def result(results: dict[str, Any], name: str) -> dict[str, Any]:
    """One check's result; its traceback fails the test if it crashed."""
    value: dict[str, Any] = results[name]
    assert "crashed" not in value, value.get("crashed")
    return value


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_each_answer_framing_gives_its_status_length_and_keep_alive(results: dict[str, Any], path: str) -> None:
    outcomes = result(results, "framings")["outcomes"]
    expected = EXPECTED[path]
    assert outcomes[path] == (list(expected) if isinstance(expected, tuple) else expected)


def test_one_connection_carries_request_after_request(results: dict[str, Any]) -> None:
    framings = result(results, "framings")
    assert framings["kept_alive"] == [list(EXPECTED[p][:2]) for p in ("/length", "/chunked", "/no-content")]
    assert framings["connections"] == 1


def test_a_connection_closed_while_idle_is_retried_once_and_a_fresh_one_is_not(results: dict[str, Any]) -> None:
    stale = result(results, "stale")
    assert stale["first"] == [200, 2] and stale["second"] == [200, 5]
    assert stale["accepted_after_retry"] == 2  # the first connection, and the one the retry opened
    assert stale["fresh_error"] == "NoResponse" and stale["accepted_after_fresh"] == 1  # not sent twice


def test_a_reset_in_the_middle_of_an_answer_fails_the_request_without_sending_it_again(
    results: dict[str, Any],
) -> None:
    reset = result(results, "reset")
    assert reset["first"] == [200, 5]
    assert reset["error"] in {"ConnectionResetError", "BadResponse"}
    assert reset["accepted"] == 1 and reset["requests"] == 2


def test_https_targets_are_reached_over_tls_without_checking_the_certificate(results: dict[str, Any]) -> None:
    tls = result(results, "tls")
    assert tls["answers"] == [[200, 5], [200, 9]]
    assert tls["accepted"] == 1  # kept alive over TLS too


def test_the_request_carries_host_headers_and_the_encoded_path(results: dict[str, Any]) -> None:
    checked = result(results, "request_bytes")
    assert checked["received"] == (
        f"GET /api/a%20b?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{checked['port']}\r\nUser-Agent: pytest-clover-load\r\n"
        "end-user: jason"
    )
    built = checked["built"]
    assert built["default_port"].startswith("GET / HTTP/1.1\r\nHost: example.test\r\n")
    assert built["host_header"].count("Host:") == 1 and "\r\nHost: svc.test\r\n" in built["host_header"]
    assert "\r\nHost: [::1]:8080\r\n" in built["ipv6"]
    assert "\r\nHost: example.test\r\n" in built["https_default"]
    assert "accept-encoding" not in built["default_port"].lower()  # answers come uncompressed


def test_bad_headers_and_urls_are_rejected_naming_the_problem(results: dict[str, Any]) -> None:
    rejected = result(results, "request_bytes")["rejected"]
    assert len(rejected) == 5
    assert all("headers" in r for r in rejected[:3]) and all("base_url" in r for r in rejected[3:])


def test_refused_and_timed_out_requests_raise_os_errors(results: dict[str, Any]) -> None:
    errors = result(results, "errors")
    assert errors["refused"] == "ConnectionRefusedError"
    assert errors["hang"] == "TimeoutError"
    # Timed out after the timeout, within one look of the watch (and some scheduling slack).
    assert 0.2 <= errors["took"] < 0.2 + errors["period"] + 0.5
    assert errors["after"] == [200, 5]
    assert errors["idle_expired"] == 0


def test_batched_locust_statistics_equal_logging_each_request(results: dict[str, Any]) -> None:
    fed = result(results, "stats_feed")
    assert fed["left"] == 0
    batched, one_by_one = fed["batched"], fed["one_by_one"]
    assert batched["errors"] == one_by_one["errors"]
    for name, entry in one_by_one["entries"].items():
        got = batched["entries"][name]
        assert got.pop("total_ms") == pytest.approx(entry.pop("total_ms"), rel=1e-9)
        assert got == entry, name
    assert one_by_one["entries"]["total"]["requests"] == 3000


def test_the_open_loop_never_sends_early(results: dict[str, Any]) -> None:
    timing = result(results, "open_loop")
    sends = timing["sends"]
    assert len(sends) >= 100
    assert min(actual - intended for intended, actual, _late in sends) >= 0.0


def test_requests_due_while_the_process_was_blocked_are_late_and_charged_from_their_intended_time(
    results: dict[str, Any],
) -> None:
    timing = result(results, "open_loop")
    hog_start, hog_end = timing["hog"]
    due_in_hog = [s for s in timing["sends"] if hog_start <= s[0] < hog_end - 0.015]
    assert len(due_in_hog) >= 20  # 400/s for 65 ms
    assert all(late == 1.0 for _intended, _actual, late in due_in_hog)
    assert all(actual >= hog_end for _intended, actual, _late in due_in_hog)
    latencies = {intended: latency for intended, latency, _status, _now in timing["outcomes"]}
    for intended, _actual, _late in due_in_hog:
        assert latencies[intended] >= hog_end - intended  # coordinated omission corrected
    assert timing["max_ms"] >= (hog_end - hog_start - 0.015) * 1000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the send alarm is a Linux timerfd")
def test_the_send_alarm_rings_at_the_time_last_set_and_never_early(results: dict[str, Any]) -> None:
    alarm = result(results, "send_alarm")
    assert alarm["enabled"] and alarm["closed"]
    first, second, third = alarm["times"]
    assert alarm["armed"] == [first, second]
    # Not at the first time (replaced); at the second, and at the third (set from the first ring).
    rings = alarm["rings"]
    assert len(rings) == 2
    assert rings[0] >= second and rings[1] >= third
    assert alarm["armed_at_end"] is None and not alarm["readable_at_end"]


def test_without_a_timerfd_the_loops_own_timer_rings(results: dict[str, Any]) -> None:
    alarm = result(results, "send_alarm")
    assert not alarm["fallback_enabled"]
    assert len(alarm["fallback_rings"]) == 1
    # libev's timers run off the loop's cached clock: a ring can come a little early (the queue checks).
    assert alarm["fallback_rings"][0] >= alarm["fallback_at"] - 0.002


def test_the_send_queue_hands_out_every_time_once_in_order_and_never_early(results: dict[str, Any]) -> None:
    queue = result(results, "send_queue")
    assert queue["finished"]
    got = queue["got"]
    assert len(got) == 3 * 40
    t0, rate = queue["t0"], queue["rate"]
    # Every time of the schedule, once, in the schedule's order.
    assert [intended for _user, intended, _at in got] == [t0 + k / rate for k in range(len(got))]
    assert all(at >= intended for _user, intended, at in got)
    # Each user sent in turn with the others, not one user alone.
    assert {user for user, _intended, _at in got} == {0, 1, 2}


def test_a_due_time_is_taken_at_once_a_user_killed_in_line_is_passed_over_and_a_stopped_queue_hands_out_nothing(results: dict[str, Any]) -> None:
    queue = result(results, "send_queue")
    assert queue["took_at_once"]
    assert queue["line_before"] == 3
    # The first in line was killed: the first time goes to the second, and no time is lost to the dead one.
    assert queue["handed_after_kill"] == [[1, queue["later_t0"]]]
    assert queue["handed_after_stop"] == []


def test_every_outcome_reaches_the_windows_and_locust(results: dict[str, Any]) -> None:
    timing = result(results, "open_loop")
    outcomes = timing["outcomes"]
    # Every request due before the stop was sent and answered (the server is quick and never fails).
    assert len(outcomes) == len(timing["sends"]) >= 0.45 * 400 * 0.9
    assert {status for _i, _l, status, _n in outcomes} == {200.0}
    assert timing["window_outcomes"] == len(outcomes)
    assert timing["window_late"] == sum(late for _i, _a, late in timing["sends"])
    assert timing["locust_requests"] == len(outcomes)


if __name__ == "__main__":
    run_checks()
