"""A zygote for the built-in VNF: one process imports aiohttp once, and each VNF pod is forked from it.

Starting a Python interpreter and importing aiohttp costs about 0.4 s of CPU per pod; eight pods on two
cores made mesh start-up and pod replacement slow. A fork from a warm zygote costs milliseconds. Each pod
is still its own process (its own PID, log, environment and signals); only the import work is shared.

Protocol over a Unix socket pair, one JSON line each way:
- supervisor → zygote: ``{"argv": [...], "env": {...}, "cwd": "...", "log": "..."}``
- zygote → supervisor: ``{"spawned": pid}`` for each request, and ``{"exited": pid, "code": n}`` when a
  child ends (negative code: killed by that signal, as subprocess reports it).
Every child dies with the zygote (PR_SET_PDEATHSIG), and the zygote dies with the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

_PR_SET_PDEATHSIG = 1
ZYGOTE_MODULE = "pytest_clover.vnf"


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the pod's process, then run the VNF's main; never returns."""
    code = 1
    try:
        _die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgid(0, 0)
        os.chdir(request["cwd"])
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(request["env"])
        argv = list(request["argv"])
        sys.argv = [f"{ZYGOTE_MODULE}", *argv]
        from pytest_clover.vnf.__main__ import main

        result = main(argv)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket) -> None:
    # Warm up: everything a VNF pod imports, once.
    import pytest_clover.vnf.__main__
    import pytest_clover.vnf.components  # noqa: F401

    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    buffer = b""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "request")
    sel.register(reader, selectors.EVENT_READ, "signal")
    sock.sendall(b'{"ready": true}\n')
    while True:
        for key, _ in sel.select():
            if key.data == "signal":
                with contextlib.suppress(BlockingIOError):
                    os.read(reader, 4096)
                continue
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    sock.close()
                    _child(request)
                children.add(pid)
                sock.sendall(json.dumps({"spawned": pid}).encode() + b"\n")
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
                    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                    sock.sendall(json.dumps({"exited": pid, "code": code}).encode() + b"\n")


def main() -> int:
    fd = int(sys.argv[1])
    _die_with_parent()
    sock = socket.socket(fileno=fd)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ZygoteProcess:
    """A pod process forked by the zygote, with the part of Popen's interface the supervisor uses."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.returncode: int | None = None
        self._pending_signal: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        if self.pid is None:
            self._pending_signal = sig
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _spawned(self, pid: int) -> None:
        self.pid = pid
        if self._pending_signal is not None:
            self.send_signal(self._pending_signal)


class ZygoteClient:
    """The supervisor's end: start the zygote, ask it for pods, learn when they exit."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._waiting: list[ZygoteProcess] = []
        self._by_pid: dict[int, ZygoteProcess] = {}
        self.process: Any = None
        self.on_change: Any = None
        """Called after a pod's PID becomes known or a pod exits (the supervisor records its processes)."""

    def start(self, log_path: str, preexec: Any, cwd: str | None = None) -> None:
        """Start the zygote; ``cwd``: the mesh's folder, where its processes run (how a sweep knows them)."""
        import subprocess

        ours, theirs = socket.socketpair()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pytest_clover.backends.local.zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
                cwd=cwd,
            )
        theirs.close()
        self._sock = ours

    async def run(self) -> None:
        """Read the zygote's reports until it goes away."""
        import asyncio

        assert self._sock is not None
        reader, _ = await asyncio.open_unix_connection(sock=self._sock)
        while line := await reader.readline():
            message = json.loads(line)
            if "spawned" in message and self._waiting:
                proc = self._waiting.pop(0)
                proc._spawned(int(message["spawned"]))
                self._by_pid[proc.pid or 0] = proc
                if self.on_change is not None:
                    self.on_change()
            elif "exited" in message:
                exited = self._by_pid.pop(int(message["exited"]), None)
                if exited is not None:
                    exited.returncode = int(message["code"])
        for proc in [*self._waiting, *self._by_pid.values()]:
            if proc.returncode is None:
                proc.returncode = -signal.SIGKILL

    async def stop(self, grace: float = 2.0) -> None:
        """End the zygote and reap it, so it is gone before the supervisor is (PR_SET_PDEATHSIG alone races)."""
        import asyncio

        if self.process is None or self.process.poll() is not None:
            return
        # Called once every pod it forked has exited: it holds nothing that a graceful exit would save.
        self.process.kill()
        deadline = time.monotonic() + grace
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log: str) -> ZygoteProcess:
        assert self._sock is not None
        proc = ZygoteProcess()
        self._waiting.append(proc)
        data = json.dumps({"argv": argv, "env": env, "cwd": cwd, "log": log}).encode() + b"\n"
        self._sock.setblocking(True)
        self._sock.sendall(data)
        return proc

    @staticmethod
    def handles(argv: list[str]) -> bool:
        """Whether a pod's command is the built-in VNF, which the zygote can fork."""
        return len(argv) >= 3 and argv[0] == sys.executable and argv[1:3] == ["-m", ZYGOTE_MODULE]
