"""In-cluster load (``--clover-load-in-cluster``): the load generator's workers as pods near the mesh under test.

A load generator on the tester's machine measures the mesh *plus* the path from that machine into the cluster
(a LoadBalancer, a NodePort, a port-forward through the API server), and one machine's cores cap its rate. Here
the locust workers run as pods of the cluster (see :mod:`pytest_clover.backends.k8s.loadpods` for their
Deployments, and why they carry no sidecar), sending to the ingress gateway's in-cluster address, and the
results come back exactly as from local processes: the same JSON lines (``ready``, ``window``, ``done``), read
by the same :class:`~pytest_clover.load.run.LoadRun`, the windows merged exactly by the master.

Where the master runs (``--clover-load-master``):

* ``cluster`` (default): a pod too. It listens on its pod IP: ZeroMQ on :data:`ZMQ_PORT` for the workers, and
  :data:`CONTROL_PORT` for this process, which reaches it through a port-forward (the cluster's pod network is
  rarely reachable from a tester's machine). The control connection carries what a child's stdin and stdout
  carry; when it drops (pytest died), the master stops the load at once, as at the end of a pipe.
* ``local``: a child process here, as for ``--clover-load-workers``, listening on an address of this machine
  that the pods reach (``--clover-load-master-address``: a CI runner inside the cluster, or a node's address).

Either way, the worker pods are created after the master listens; a worker pod that dies is reported lost by the
master (locust's heartbeats, ~3 s), and the test is INCONCLUSIVE, as for a local worker. Every load pod is
deleted when the run stops, whatever happened; pods that outlive a killed pytest stop sending by themselves
(a worker stops once its master is silent for 10 s) and are swept with the run's other objects.

What is not the same as local workers: the worker pods' own latency to the gateway is inside the cluster (the
point of it); their clocks are other machines' (windows line up in unix time, to the clocks' synchronisation;
NTP keeps that to milliseconds); and locust's CSV files stay in the master pod (the windows carry the numbers).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..backends.protocol import LoadPods, LoadPodSpec
from ..errors import LoadGeneratorError
from .shares import worker_config

__all__ = [
    "CONTROL_PORT",
    "MASTER_PLACES",
    "ZMQ_PORT",
    "InCluster",
    "PodProcess",
]

ZMQ_PORT = 5557
"""The master's ZeroMQ port in its pod (locust's default): what the workers connect to."""
CONTROL_PORT = 5558
"""The master's control port in its pod: this process's JSON lines, through a port-forward."""
MASTER_PLACES = ("cluster", "local")
"""Where the master may run (``--clover-load-master``)."""
HELLO = '{"hello": "pytest-clover"}\n'
"""The first line on the control connection (what tells it from a readiness probe's)."""
DEFAULT_READY_TIMEOUT_S = 300.0
"""How long the load pods get to be ready (an image pull on a cold node takes minutes)."""

_runs = itertools.count(1)
"""Numbers the load runs of this process: each run's Deployments have names of their own."""


@dataclass(frozen=True)
class InCluster:
    """How to run a load generator in the cluster: the backend that creates the pods, and where the master goes."""

    pods: LoadPods
    """The backend (it satisfies :class:`~pytest_clover.backends.protocol.LoadPods`)."""
    master: str = "cluster"
    """``cluster`` (a pod) or ``local`` (a child process here); see the module's docstring."""
    master_address: str | None = None
    """With ``master="local"``: the address of this machine the pods connect to (required then)."""
    target_url: str | None = None
    """Where the worker pods send; None: the backend's :meth:`~LoadPods.load_target_url` (the ingress gateway as
    a pod reaches it)."""
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    """Seconds the pods get to start and connect (default 300: image pulls)."""
    run_name: str = "clover-load"
    """The prefix of the Deployments' names (a run number and the role follow)."""

    def __post_init__(self) -> None:
        if self.master not in MASTER_PLACES:
            raise ValueError(f"the master runs in one of {', '.join(MASTER_PLACES)}, not {self.master!r}")
        if self.master == "local" and not self.master_address:
            raise ValueError(
                "a local master needs the address of this machine that the cluster's pods reach "
                "(--clover-load-master-address); or run the master in the cluster (--clover-load-master=cluster)"
            )

    def launch(
        self, config: dict[str, Any], log_path: Path, start_master: Callable[[dict[str, Any]], subprocess.Popen[str]]
    ) -> Any:
        """Start the master and the worker pods for the load ``config`` (as :class:`LoadGenerator` builds it,
        ``workers`` ≥ 1); returns the master as :class:`LoadRun` drives a child process. ``start_master`` starts
        a local master process with a config (``--clover-load-master=local``)."""
        number = next(_runs)
        base = f"{self.run_name}-{os.getpid() % 100000}-{number}"
        workers = int(config.get("workers", 1))
        target = self.target_url or self.pods.load_target_url()
        master_cfg = {
            **config,
            "base_url": target.rstrip("/"),
            "workers": workers,
            "remote_workers": True,
            "ready_timeout_s": self.ready_timeout_s,
        }
        worker_names = [f"{base}-worker-{i}" for i in range(workers)]
        if self.master == "local":
            return self._local_master(master_cfg, worker_names, start_master)
        return self._pod_master(master_cfg, base, worker_names, log_path)

    # -- the master here ---------------------------------------------------------------------------------------

    def _local_master(
        self,
        cfg: dict[str, Any],
        worker_names: list[str],
        start_master: Callable[[dict[str, Any]], subprocess.Popen[str]],
    ) -> Any:
        assert self.master_address is not None
        port = _free_port(self.master_address)
        cfg = {**cfg, "bind_host": self.master_address, "bind_port": port}
        proc = start_master(cfg)
        try:
            self.pods.start_load_pods(self._worker_specs(cfg, worker_names, self.master_address, port), wait_for=[],
                                      timeout=self.ready_timeout_s)  # fmt: skip
        except BaseException:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            self.pods.delete_load_pods(worker_names)
            raise
        return LocalMaster(proc, lambda: self.pods.delete_load_pods(worker_names))

    # -- the master in a pod -----------------------------------------------------------------------------------

    def _pod_master(self, cfg: dict[str, Any], base: str, worker_names: list[str], log_path: Path) -> PodProcess:
        master_name = f"{base}-master"
        names = [master_name, *worker_names]
        cfg = {**cfg, "bind_host": "$POD_IP", "bind_port": ZMQ_PORT, "control_port": CONTROL_PORT, "report_dir": "."}
        master = LoadPodSpec(
            name=master_name,
            role="master",
            module="pytest_clover.load.master",
            config=json.dumps(cfg),
            ports={"tcp-zmq": ZMQ_PORT, "tcp-control": CONTROL_PORT},
            ready_port=CONTROL_PORT,
        )
        channel = None
        try:
            found = self.pods.start_load_pods([master], wait_for=[master_name], timeout=self.ready_timeout_s)
            master_ip = found[master_name].ip
            self.pods.start_load_pods(self._worker_specs(cfg, worker_names, master_ip, ZMQ_PORT), wait_for=[],
                                      timeout=self.ready_timeout_s)  # fmt: skip
            channel = self.pods.open_load_channel(master_name, CONTROL_PORT, timeout=30.0)
            channel.socket.sendall(HELLO.encode())
        except BaseException:
            if channel is not None:
                channel.close()
            self.pods.delete_load_pods(names)
            raise
        log_path.write_text(
            f"the load master runs in pod Deployment {master_name} (at {master_ip}), its {len(worker_names)} workers "
            f"in {', '.join(worker_names)}: their logs are the pods' logs (kubectl logs deploy/<name>)\n",
            encoding="utf-8",
        )
        return PodProcess(channel, release=lambda: self.pods.delete_load_pods(names), name=master_name)

    def _worker_specs(self, cfg: dict[str, Any], names: list[str], host: str, port: int) -> list[LoadPodSpec]:
        specs = []
        for index, name in enumerate(names):
            raw = worker_config(cfg, index, host, port, remote=True)
            raw["report_dir"] = "."
            specs.append(
                LoadPodSpec(name=name, role="worker", module="pytest_clover.load.worker", config=json.dumps(raw))
            )
        return specs


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise LoadGeneratorError(
                f"--clover-load-master-address={host} is not an address of this machine ({exc}): give one the "
                "cluster's pods reach this machine at"
            ) from exc
        return int(probe.getsockname()[1])


class LocalMaster:
    """A local master process whose workers are pods: the process, and the pods deleted with :meth:`release`."""

    def __init__(self, proc: subprocess.Popen[str], release: Callable[[], None]) -> None:
        self.proc = proc
        self._release = release
        self._released = False
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self) -> None:
        self.proc.terminate()

    def kill(self) -> None:
        self.proc.kill()

    def release(self) -> None:
        """Delete the worker pods (once)."""
        if not self._released:
            self._released = True
            self._release()

    def describe(self) -> str:
        return f"pid {self.proc.pid}"


class _Lines:
    """The control connection's incoming lines, as a child's stdout: iterating ends at the connection's end,
    which marks the process ended."""

    def __init__(self, stream: IO[str], ended: threading.Event) -> None:
        self._stream = stream
        self._ended = ended

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._stream
        except (OSError, ValueError):
            pass
        finally:
            self._ended.set()

    def readline(self) -> str:
        line = self._stream.readline()
        if not line:
            self._ended.set()
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()


class PodProcess:
    """The master in a pod, as :class:`~pytest_clover.load.run.LoadRun` drives a child process: the control
    connection's two directions are its stdin and stdout, its end is the process's end (exit code 0; -15 when
    ended from here), and :meth:`terminate` / :meth:`kill` close the connection, which stops the master at once.
    :meth:`release` deletes the load pods."""

    def __init__(self, channel: Any, *, release: Callable[[], None], name: str) -> None:
        self.channel = channel
        self.name = name
        self._release = release
        self._released = False
        self._ended = threading.Event()
        self._closed_here = False
        sock: socket.socket = channel.socket
        self.stdin: IO[str] = sock.makefile("w", encoding="utf-8", newline="\n")
        self.stdout = _Lines(sock.makefile("r", encoding="utf-8", newline="\n"), self._ended)
        self.pid = 0
        """Not a process of this machine (0): :meth:`describe` names the pod."""

    @property
    def returncode(self) -> int | None:
        if not self._ended.is_set():
            return None
        return -15 if self._closed_here else 0

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"load master pod {self.name}", timeout or 0.0)
        code = self.returncode
        assert code is not None
        return code

    def terminate(self) -> None:
        """Close the control connection: the master stops at once (its last windows are lost with it)."""
        if not self._ended.is_set():
            self._closed_here = True
        self.channel.close()
        self._ended.set()

    kill = terminate

    def release(self) -> None:
        """Close the connection and delete the load pods (once)."""
        self.channel.close()
        self._ended.set()
        if not self._released:
            self._released = True
            self._release()

    def describe(self) -> str:
        return f"load master pod {self.name}"
