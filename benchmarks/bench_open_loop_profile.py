"""Where the open loop's CPU goes, per scheduled request: a CPU-time sampling profile of the load generator.

What: the generator's child process (``python -m pytest_clover.load.worker``) in the open loop, at a rate it holds
(``--rate``, default :data:`RATE`), for :data:`SECONDS` s against bench_load_ceiling.py's target (an aiohttp
low-level server answering ``200 ok`` in its own process on 127.0.0.1).

How: this script starts the child itself, with the same JSON-lines protocol as ``LoadGenerator`` (ready, a phase,
stop), under a small bootstrap (:data:`BOOTSTRAP`) that installs a sampler before running the worker module: the
kernel sends SIGPROF every :data:`SAMPLE_EVERY_S` of the process's *CPU time* (user + system; an idle process is
not sampled), and the handler counts the Python stack it interrupted. Sampling runs only during the measured
phase (SIGUSR1 starts it, SIGUSR2 stops it and writes the counts). Time spent in C — the kernel's send and
receive, libev's loop, greenlet switches — is charged to the Python frame that called it or, for the event loop's
own work, to the code that runs next; the process's system CPU (psutil) says how much of the total is the
kernel's. Cost: ~2 % of the CPU (one stack walk per ms).

Printed: requests, late sends and CPU per request (user / system) over the phase; the CPU grouped by what it
serves (:data:`GROUPS`, by the innermost frame); the top functions by own samples and by inclusive samples.
:func:`profile_open_loop` is also called by bench_load_ceiling.py at the end of its run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks._common import report
from benchmarks.bench_load_ceiling import Server, server

RATE = 4000.0
"""Requests per second of the profiled run (the ceiling bench passes ~90 % of the ceiling it found)."""
SECONDS = 8.0
WARM_UP_S = 1.0
"""After ready and before the measured phase: connections opened, caches warm."""
SAMPLE_EVERY_S = 0.001
"""One sample per this much CPU time of the generator."""
TOP = 15
"""How many functions each top list prints."""
EXIT_TIMEOUT_S = 60.0
BARE_CEILING_RPS = 10_600.0
"""Bare locust's closed-loop ceiling on one core of this machine, as issue 15 measured it (bench_load_ceiling.py
measures it afresh; this script only sets its budget from it)."""
TARGET_RATIO = 0.8
TARGET_US_PER_REQUEST = 1e6 / (TARGET_RATIO * BARE_CEILING_RPS)
"""The CPU a request may cost for one core to hold 0.8× bare locust's ceiling: ~118 µs. (The cost per request falls
as the rate rises, as the event loop handles more per wake-up, so a run below the ceiling is judged strictly.)"""

BOOTSTRAP = """\
import collections, json, runpy, signal, sys
out, every = sys.argv[1], float(sys.argv[2])
counts = collections.Counter()
def sample(signum, frame):
    stack = []
    while frame is not None:
        code = frame.f_code
        stack.append(code.co_filename + "|" + code.co_qualname)
        frame = frame.f_back
    counts["\\t".join(reversed(stack))] += 1
def start(signum, frame):
    signal.setitimer(signal.ITIMER_PROF, every, every)
def stop(signum, frame):
    signal.setitimer(signal.ITIMER_PROF, 0)
    with open(out, "w") as fh:
        json.dump(counts, fh)
signal.signal(signal.SIGPROF, sample)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv = ["pytest_clover.load.worker", sys.argv[3]]
runpy.run_module("pytest_clover.load.worker", run_name="__main__", alter_sys=True)
"""
"""Runs the worker module (as ``python -m`` would) with the sampler's signal handlers installed first."""

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "HTTP client: request bytes out, answer parsed (worker.py)",
        ("worker.py|HttpConnection.", "worker.py|HttpTarget.", "worker.py|_header"),
    ),
    ("gevent sockets: send/recv/connect and their kernel time", ("gevent/_socket", "gevent/ssl", "gevent/socket.py")),
    (
        "gevent hub: event loop, timers, greenlet switches",
        ("gevent/hub.py", "gevent/_hub", "gevent/_waiter", "gevent/timeout.py", "gevent/event.py", "gevent/_compat"),
    ),
    ("open loop: scheduling, users (worker.py)", ("load/worker.py|",)),
    ("windows: send-time bookkeeping, HdrHistograms (result.py, hdrh)", ("load/result.py|", "hdrh/")),
    (
        "FastHttpUser's client: geventhttpclient, its cookie jar (before issue 15)",
        ("geventhttpclient/", "contrib/fasthttp.py", "http/cookiejar.py", "urllib/parse.py"),
    ),
    ("locust: runner, users, statistics and CSV", ("locust/",)),
    ("messages to the parent (json, stdout)", ("json/", "|Emitter.")),
)
"""Group name → substrings of ``file|qualified name`` of the innermost frame; the first group that matches wins."""


@dataclass
class Profile:
    """One profiled open-loop run."""

    rate: float
    seconds: float
    requests: int
    late: int
    errors: int
    cpu_user_s: float
    cpu_system_s: float
    samples: Counter[str] = field(default_factory=Counter)
    """Stack (frames ``file|qualname`` joined by tabs, outermost first) → samples."""

    @property
    def cpu_us_per_request(self) -> float:
        return (self.cpu_user_s + self.cpu_system_s) / max(1, self.requests) * 1e6

    def own(self) -> Counter[str]:
        """Innermost frame → samples."""
        own: Counter[str] = Counter()
        for stack, n in self.samples.items():
            own[stack.rsplit("\t", 1)[-1]] += n
        return own

    def inclusive(self) -> Counter[str]:
        """Frame → samples of the stacks it is on (counted once per stack)."""
        inclusive: Counter[str] = Counter()
        for stack, n in self.samples.items():
            for frame in set(stack.split("\t")):
                inclusive[frame] += n
        return inclusive

    def groups(self) -> Counter[str]:
        """:data:`GROUPS` name (or "other") → samples."""
        grouped: Counter[str] = Counter()
        for frame, n in self.own().items():
            grouped[next((name for name, keys in GROUPS if any(k in frame for k in keys)), "other")] += n
        return grouped

    def lines(self) -> list[str]:
        """The printed report."""
        total = sum(self.samples.values()) or 1
        cpu = self.cpu_user_s + self.cpu_system_s
        out = [
            f"  open loop {self.rate:.0f}/s for {self.seconds:.1f} s: {self.requests} requests "
            f"({self.requests / self.seconds:.0f}/s), {self.late} late, {self.errors} errors; generator CPU "
            f"{cpu / self.seconds * 100:.0f} % of a core = {self.cpu_us_per_request:.1f} µs per request "
            f"(user {self.cpu_user_s / max(1, self.requests) * 1e6:.1f}, kernel "
            f"{self.cpu_system_s / max(1, self.requests) * 1e6:.1f}); {total} samples",
            "  where the CPU goes (innermost Python frame; C time is charged to its caller):",
        ]
        for name, n in self.groups().most_common():
            out.append(f"    {n / total * 100:5.1f} %  {self.cpu_us_per_request * n / total:6.1f} µs/req  {name}")
        out.append("  top functions by own samples:")
        out += [f"    {n / total * 100:5.1f} %  {_short(f)}" for f, n in self.own().most_common(TOP)]
        out.append("  top functions by inclusive samples:")
        out += [f"    {n / total * 100:5.1f} %  {_short(f)}" for f, n in self.inclusive().most_common(TOP)]
        return out


def _short(frame: str) -> str:
    """``…/site-packages/gevent/hub.py|Hub.run`` → ``gevent/hub.py Hub.run``."""
    path, _, name = frame.partition("|")
    parts = Path(path).parts
    return f"{'/'.join(parts[-2:]) if len(parts) > 1 else path} {name}"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)  # the worker runs fully patched, as under LoadGenerator
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def profile_open_loop(srv: Server, rate: float = RATE, seconds: float = SECONDS) -> Profile:
    """Run the generator in the open loop at ``rate`` against ``srv`` for ``seconds``, sampled; its profile."""
    with tempfile.TemporaryDirectory(prefix="clover-bench-profile-") as tmp:
        config = {"base_url": srv.url, "report_dir": tmp, "seed": 0, "rate": rate, "paths": {"/": 1.0}}
        samples_path = Path(tmp) / "samples.json"
        cmd = [sys.executable, "-c", BOOTSTRAP, str(samples_path), str(SAMPLE_EVERY_S), json.dumps(config)]
        with (Path(tmp) / "worker.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=_child_env()
            )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            ready = json.loads(proc.stdout.readline() or "{}")
            if ready.get("type") != "ready":
                raise RuntimeError(f"the generator did not start: {(Path(tmp) / 'worker.log').read_text()[-2000:]}")
            child = psutil.Process(proc.pid)
            time.sleep(WARM_UP_S)

            def send(message: dict[str, Any]) -> None:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(message) + "\n")
                proc.stdin.flush()

            proc.send_signal(signal.SIGUSR1)
            before = child.cpu_times()
            began = time.time()
            send({"phase": "profile", "at": began})
            time.sleep(seconds)
            ended = time.time()
            after = child.cpu_times()
            proc.send_signal(signal.SIGUSR2)
            send({"phase": None, "at": ended})
            send({"stop": True, "at": ended})
            requests = late = errors = 0
            for line in proc.stdout:
                message = json.loads(line)
                if message.get("type") == "window" and message.get("final") and message.get("phase") == "profile":
                    status = {int(code): n for code, n in message["status"].items()}
                    requests += sum(status.values())
                    errors += sum(n for code, n in status.items() if not 200 <= code < 400)
                    late += message["late"]
            proc.wait(EXIT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        samples: Counter[str] = Counter(json.loads(samples_path.read_text())) if samples_path.exists() else Counter()
    return Profile(
        rate=rate,
        seconds=ended - began,
        requests=requests,
        late=late,
        errors=errors,
        cpu_user_s=after.user - before.user,
        cpu_system_s=after.system - before.system,
        samples=samples,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=RATE, help=f"requests per second (default {RATE:.0f})")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"profiled seconds (default {SECONDS:.0f})")
    args = parser.parse_args()
    with server() as srv:
        print(f"  target: aiohttp low-level server on {srv.loop}, own process (pid {srv.proc.pid})", flush=True)
        profile = profile_open_loop(srv, args.rate, args.seconds)
    for line in profile.lines():
        print(line)
    groups = profile.groups()
    total = sum(groups.values()) or 1
    report(
        "open_loop_profile",
        f"open loop at {profile.rate:.0f}/s: {profile.cpu_us_per_request:.1f} µs of generator CPU per request "
        f"(budget {TARGET_US_PER_REQUEST:.0f} µs: {TARGET_RATIO}× bare locust's {BARE_CEILING_RPS:.0f}/s on one core); "
        f"{profile.late} late of {profile.requests}",
        figure=profile.cpu_us_per_request,
        unit="µs CPU/request",
        target=TARGET_US_PER_REQUEST,
        rate=profile.rate,
        requests=profile.requests,
        late=profile.late,
        errors=profile.errors,
        cpu_user_us_per_request=profile.cpu_user_s / max(1, profile.requests) * 1e6,
        cpu_system_us_per_request=profile.cpu_system_s / max(1, profile.requests) * 1e6,
        groups={name: n / total for name, n in groups.items()},
    )


if __name__ == "__main__":
    main()
