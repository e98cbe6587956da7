"""The local backend's client: the embedded mesh, driven through its supervisor process.

This module runs in the process that asks for the mesh (pytest, ``clover``, a Chaos Toolkit experiment); it
talks to the supervisor over a Unix socket (JSON lines) and reads Envoy's admin APIs and the logs directly.
It imports neither gRPC nor Envoy's protobufs: only the supervisor does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import (
    BackendError,
    CloverError,
    ConfigError,
    ConfigRejected,
    MeshNotRunning,
    Problem,
    ReadinessTimeout,
)
from ...istio import iter_yaml_files, load_topology
from ...runtime import private_dir
from ..protocol import BackendOptions, MeshRecord, PodInfo
from .envoy import envoy_binary
from .plan import DEFAULT_MAX_PODS, check_local_plan, check_pod_count, fidelity_warnings, requested_max_pods
from .state import (
    FILE_MODE,
    LOCK_NAME,
    STATE_ENV,
    MeshState,
    ProcessRecord,
    clear_state,
    default_state_dir,
    die_with_parent,
    kill_recorded,
    register_mesh,
    remove_state,
    sweep,
    unregister_mesh,
    wait_gone,
    write_private,
)

_ERRORS: dict[str, type[BackendError]] = {
    "BackendError": BackendError,
    "ConfigRejected": ConfigRejected,
    "MeshNotRunning": MeshNotRunning,
    "ReadinessTimeout": ReadinessTimeout,
}


KUBE_API_ENV = "CLOVER_KUBE_API"
"""Set to 0 for a mesh without its Kubernetes API (it starts ~0.1 s of CPU sooner)."""


class LocalBackend:
    """Each pod a local process behind a real Envoy sidecar, on its own loopback address."""

    name = "local"

    def __init__(
        self,
        topology: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        seed: int = 0,
        detach: bool = False,
        keep_state: bool = False,
        max_pods: int | None = None,
        kube_api: bool | None = None,
    ) -> None:
        self.topology_dir = Path(topology) if topology is not None else None
        self.state = MeshState(state_dir if state_dir is not None else default_state_dir())
        self.seed = seed
        self.detach = detach
        """True for ``clover up``: the supervisor outlives this process. False: it dies with it."""
        self.keep_state = keep_state
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._owner: ProcessRecord | None = None
        """The supervisor as mesh.json last recorded it (for a mesh this process did not start)."""
        self.warnings: list[Problem] = []
        """What the topology holds that the local backend will not honour (set by deploy)."""
        self._admin_sockets: dict[str, str] = {}
        """Pod → its sidecar's admin API socket; a pod's name is never reused, so an entry never goes stale."""
        self._without_envoy: set[str] = set()
        """Pods that run no Envoy (their template opts out of sidecar injection): no admin API to ask."""
        self.kube_api = (
            kube_api if kube_api is not None else os.environ.get(KUBE_API_ENV, "1") not in ("0", "false", "no")
        )
        """Whether the mesh serves its Kubernetes API (``$CLOVER_KUBE_API=0`` turns it off)."""
        self.max_pods = max_pods if max_pods is not None else requested_max_pods({})
        """The pod limit the user asked for (the setting ``max_pods``, else ``$CLOVER_MAX_PODS``); None: the
        mesh's own (given at deploy, else :data:`~.plan.DEFAULT_MAX_PODS`)."""

    # ------------------------------------------------------------------ made by the registry

    @classmethod
    def from_options(cls, options: BackendOptions) -> LocalBackend:
        """A mesh to deploy in ``options.workdir`` (its state folder); ``keep`` detaches it from this process."""
        return cls(
            options.topology,
            options.workdir,
            seed=options.seed,
            detach=options.keep,
            keep_state=options.keep,
            max_pods=requested_max_pods(options.settings),
        )

    @classmethod
    def default_location(cls) -> str:
        """``$CLOVER_STATE_DIR``, else a per-user folder in the temp dir."""
        return str(default_state_dir())

    @classmethod
    def connect(cls, record: MeshRecord) -> LocalBackend | None:
        """The mesh whose state folder the record names, if its supervisor still runs."""
        if not record.location:
            raise MeshNotRunning(f"{record} names no state folder")
        if not MeshState(record.location).running():
            return None
        return cls(state_dir=record.location)

    @classmethod
    def sweep(cls, force: bool = False) -> list[str]:
        """Stop the meshes on this machine whose owner died (all of them with ``force``) and remove their state."""
        lines = []
        for r in sweep(force=force):
            if r.status == "running":
                lines.append(
                    f"left running: {r.mesh_id} at {r.state_dir} (its owner is alive; `clover down` or --force)"
                )
            elif r.status == "refused" and r.killed:
                lines.append(f"refused: {r.mesh_id} at {r.state_dir}: {r.reason} ({r.killed} processes stopped)")
            elif r.status == "refused":
                lines.append(
                    f"refused: {r.mesh_id} at {r.state_dir}: {r.reason} (nothing there was deleted or signalled; "
                    "its registry entry is dropped)"
                )
            else:
                lines.append(f"{r.status}: {r.mesh_id} at {r.state_dir} ({r.killed} processes stopped)")
        return lines

    # ------------------------------------------------------------------ lifecycle

    def deploy(self, timeout: float = 60.0) -> list[Problem]:
        if self.topology_dir is None:
            raise BackendError("no topology given: pass the folder of Kubernetes + Istio YAML to deploy")
        topo = load_topology(self.topology_dir)
        self.warnings = fidelity_warnings(topo)
        check_local_plan(topo)
        max_pods = self.max_pods or DEFAULT_MAX_PODS
        check_pod_count(topo, max_pods)
        # The log bound's settings ($CLOVER_LOG_*): a bad value stops the deploy here, with its name, rather than
        # the supervisor after it started.
        from .logrotate import log_limits

        log_limits({})
        envoy_binary()
        private_dir(self.state.root, STATE_ENV)
        self.state.root.chmod(0o700)  # ours (checked): an existing folder may have been 0755
        # The mesh's lock, taken before anything in the folder is touched, and held until the supervisor holds it
        # (it inherits it): a second deploy here fails now, instead of starting a second supervisor.
        lock = self.state.try_lock()
        if lock is None or self.state.running():
            if lock is not None:
                os.close(lock)
            raise BackendError(
                f"a mesh is already starting or running at {self.state.root}: "
                "stop it with `clover down` or pass another --state-dir"
            )
        try:
            self._clear_previous()
        except BaseException:
            os.close(lock)
            raise
        try:
            mesh_id = f"mesh-{uuid.uuid4().hex[:8]}"
            mesh = {
                "mesh_id": mesh_id,
                "seed": self.seed,
                "topology": str(self.topology_dir.resolve()),
                "created": time.time(),
                "status": "launching",
                "keep_state": self.keep_state,
                "max_pods": max_pods,
                "kube_api": self.kube_api,
            }
            # Before the registry entry, so that every entry leads to a folder that names its mesh.
            self.state.write_json(self.state.mesh_file, mesh)
            self.state.topology_dir.mkdir(mode=0o700)
            for i, path in enumerate(iter_yaml_files([self.topology_dir])):
                write_private(self.state.topology_dir / f"{i:03d}-{path.name}", path.read_bytes())
            mesh["block"] = register_mesh(self.state, mesh_id)
            self.state.write_json(self.state.mesh_file, mesh)
        except BaseException:
            os.close(lock)
            with contextlib.suppress(CloverError, OSError):
                self.teardown()
            raise
        try:
            self._launch(timeout, lock)
            self.wait_ready(timeout)
        except BaseException:
            with contextlib.suppress(CloverError, OSError):
                self.teardown()
            raise
        return list(self.warnings)

    def _clear_previous(self) -> None:
        """Empty the state folder of what a dead mesh left (holding its lock), or refuse a folder that is not one."""
        if not any(p.name != LOCK_NAME for p in self.state.root.iterdir()):
            return
        try:
            old = self.state.verify()
        except MeshNotRunning:
            raise BackendError(
                f"{self.state.root} is not empty and holds no mesh.json: it is not a mesh's state folder, and "
                "nothing in it is touched; pass a new or empty folder as --state-dir"
            ) from None
        kill_recorded(self.state)
        if old.get("mesh_id"):
            unregister_mesh(str(old["mesh_id"]))
        clear_state(self.state.root)

    def _launch(self, timeout: float, lock: int) -> None:
        """Start the supervisor, handing it the mesh's lock (``lock`` is closed here); return once it answers."""
        argv = [
            sys.executable,
            "-m",
            "pytest_clover.backends.local.supervisor",
            str(self.state.root),
            "--lock-fd",
            str(lock),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            # The folder holding this package, so the supervisor imports this very copy of it.
            filter(None, [str(Path(__file__).resolve().parents[3]), env.get("PYTHONPATH")])
        )
        try:
            out = os.open(
                self.state.root / "supervisor.out",
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
            )
            try:
                self._supervisor = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # The mesh's processes run in its folder (how a sweep tells them from any PID a file names).
                    cwd=str(self.state.root),
                    start_new_session=self.detach,
                    # Tied to this process unless detached: a killed pytest takes its mesh with it.
                    preexec_fn=None if self.detach else die_with_parent,
                    close_fds=True,
                    pass_fds=(lock,),
                )
            finally:
                os.close(out)
        finally:
            # The supervisor holds the lock now (or nobody does: it did not start).
            os.close(lock)
        deadline = time.monotonic() + timeout
        while True:
            if self._supervisor.poll() is not None:
                raise BackendError(
                    f"the mesh supervisor exited at start (code {self._supervisor.returncode}):\n"
                    + self._log_tail(lines=40)
                )
            if self.state.socket_path.exists():
                # A slow answer is asked again until the deadline: on a loaded machine (a soak beside it) the
                # supervisor's first ping can take seconds, and that is not a failed start.
                with contextlib.suppress(BackendError):
                    self.call("ping", wait=max(0.5, min(5.0, deadline - time.monotonic())))
                    return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the mesh supervisor did not answer within {timeout:.0f} s; see {self.state.log_file}"
                )
            time.sleep(0.01)

    def teardown(self, timeout: float = 20.0) -> None:
        """Stop the mesh: ask the supervisor, then make sure by PID; remove its state and registry entry.

        Only processes of this user running in the state folder are signalled, and only a private folder of this
        user's holding a mesh.json is removed: a --state-dir that names anything else is left as it is.
        """
        owner = self.state.owner()
        mesh: dict[str, Any] = {}
        with contextlib.suppress(BackendError):
            mesh = self.state.read_mesh()
        # Read now: a supervisor that stops cleanly removes pids.json with its state folder, and what it
        # recorded is what must be checked once it is gone.
        recorded = self.state.read_pids()
        if owner is not None and owner.ours(self.state.root):
            with contextlib.suppress(BackendError):
                self.call("shutdown", wait=5.0)
            wait_gone([owner], timeout)
        if self._supervisor is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._supervisor.wait(timeout=1.0)
        kill_recorded(self.state, also=recorded)
        if self._supervisor is not None and self._supervisor.poll() is None:
            self._supervisor.kill()
            self._supervisor.wait()
        if not self.keep_state:
            remove_state(self.state, mesh.get("mesh_id"), wait=5.0)
        # After the state is gone: an entry whose folder could not be removed leads `clover cleanup` to it.
        if mesh.get("mesh_id"):
            unregister_mesh(str(mesh["mesh_id"]))

    # ------------------------------------------------------------------ a dead supervisor

    def _log_tail(self, lines: int = 8) -> str:
        """The last lines of the supervisor's output and log: why it stopped, when it could say."""
        parts = []
        for path in (self.state.root / "supervisor.out", self.state.log_file):
            with contextlib.suppress(OSError):
                tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
                if tail:
                    parts.append(f"{path.name} ends:\n  " + "\n  ".join(tail))
        return "\n".join(parts) or f"(no supervisor.out or supervisor.log in {self.state.root})"

    def _mesh_gone(self, patience: float = 0.0) -> MeshNotRunning | None:
        """MeshNotRunning saying what happened if the mesh's supervisor is not running; None if it is.

        The supervisor this process started is polled (its exit is known at once, with its code); one it did
        not start is looked up by the PID and start time mesh.json records. ``patience``: seconds to keep
        looking, after a failure that a dying supervisor causes a moment before it is gone (its socket reset).
        """
        deadline = time.monotonic() + patience
        while True:
            gone = self._supervisor_exit()
            if gone is not None or time.monotonic() >= deadline:
                return gone
            time.sleep(0.01)

    def _supervisor_exit(self) -> MeshNotRunning | None:
        proc = self._supervisor
        if proc is not None:
            code = proc.poll()
            if code is None:
                return None
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            return self._gone(f"the mesh supervisor (PID {proc.pid}) {how}")
        # The record read last is kept: a supervisor's PID and start time never change, and checking them costs
        # ~0.05 ms where reading mesh.json again costs more; it is re-read only once that supervisor is gone.
        if self._owner is not None and self._owner.alive():
            return None
        owner = self._owner = self.state.owner()
        if owner is None:
            if self.state.mesh_file.exists():
                return None  # launching: no supervisor recorded yet
            return MeshNotRunning(
                f"no mesh is running at {self.state.root}: start one with `clover up`, "
                f"or pass --state-dir / set {STATE_ENV}"
            )
        if owner.alive():
            return None
        return self._gone(f"the mesh supervisor (PID {owner.pid}) is not running any more")

    def _gone(self, what: str) -> MeshNotRunning:
        return MeshNotRunning(
            f"{what}: the mesh at {self.state.root} is gone, its pods with it. {self._log_tail()}\n"
            "Deploy a new mesh; `clover cleanup` removes what this one left."
        )

    def check_running(self) -> None:
        """:class:`~pytest_clover.backends.protocol.Watchable`: MeshNotRunning if the supervisor has exited (a
        poll of our child, or a look at /proc for a supervisor another process started: ~0.05 ms)."""
        gone = self._supervisor_exit()
        if gone is not None:
            raise gone

    def _check_supervisor(self) -> None:
        """Fail at once if the supervisor this process started has exited (a poll: no system call beyond it)."""
        if self._supervisor is not None and self._supervisor.poll() is not None:
            gone = self._mesh_gone()
            assert gone is not None
            raise gone

    # ------------------------------------------------------------------ control socket

    def call(self, op: str, wait: float = 60.0, **args: Any) -> Any:
        """One request to the supervisor; errors come back as the same CloverError types.

        A supervisor that is gone is MeshNotRunning, with what its log says, however that shows: an exited
        child (polled first), a socket missing or refused, a connection closed mid-request.
        """
        self._check_supervisor()
        path = str(self.state.check_socket_dir(self.state.socket_path))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(wait)
                sock.connect(path)
                sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            # Briefly: a supervisor starting up refuses too, and must not cost its deploy a second.
            raise (self._mesh_gone(patience=0.1) or self._not_answering(exc)) from exc
        except TimeoutError as exc:
            gone = self._mesh_gone()
            if gone is not None:
                raise gone from exc
            raise BackendError(f"the mesh at {self.state.root} did not answer {op!r} within {wait:.0f} s") from exc
        except OSError as exc:
            gone = self._mesh_gone(patience=1.0)
            if gone is not None:
                raise gone from exc
            raise BackendError(f"cannot reach the mesh at {self.state.root}: {exc}") from exc
        raw = b"".join(chunks)
        if not raw:
            gone = self._mesh_gone(patience=1.0)
            raise gone or MeshNotRunning(f"the mesh at {self.state.root} closed the connection during {op!r}")
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise BackendError(f"the mesh at {self.state.root} answered {op!r} with no JSON: {raw[:200]!r}") from exc
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error", {})
        if err.get("type") == "ConfigError":
            raise ConfigError([Problem(**p) for p in err.get("problems", [])])
        raise _ERRORS.get(err.get("type", ""), BackendError)(err.get("message", "unknown error"))

    def _not_answering(self, exc: OSError) -> MeshNotRunning:
        # The supervisor runs but its socket does not take connections: it is starting or stopping.
        return MeshNotRunning(
            f"the mesh at {self.state.root} does not answer ({exc.strerror or exc}): it is starting or stopping; "
            "retry, or run `clover down`"
        )

    # ------------------------------------------------------------------ the Backend protocol

    def record(self) -> MeshRecord:
        return MeshRecord(self.name, str(self.state.root))

    def status(self) -> dict[str, Any]:
        """Everything the supervisor says about the mesh (``clover status --json``)."""
        result: dict[str, Any] = self.call("status")
        return result

    def info(self) -> dict[str, Any]:
        status = self.status()
        info = {key: status.get(key) for key in ("mesh_id", "status", "seed", "state_dir")}
        # The mesh's Kubernetes API (kubectl, the official client), when it serves one.
        for key in ("kube_api_url", "kubeconfig", "kube_api_error"):
            if status.get(key):
                info[key] = status[key]
        return info

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig of the mesh's Kubernetes API (``<state-dir>/kubeconfig``, mode 0600)."""
        return self.state.root / "kubeconfig"

    def ingress_url(self) -> str:
        url = self.status().get("ingress_url")
        if not url:
            raise BackendError("the topology has no Gateway, so the mesh has no ingress; add an Istio Gateway")
        return str(url)

    def pods(self, service: str | None = None) -> list[PodInfo]:
        raw = self.status()["pods"]
        for pod in raw:
            if pod.get("admin_socket"):
                self._admin_sockets[pod["name"]] = str(pod["admin_socket"])
            elif pod.get("envoy") is False:
                self._without_envoy.add(str(pod["name"]))
        pods = [PodInfo.from_dict(p) for p in raw]
        return [p for p in pods if service is None or p.service == service]

    def wait_ready(self, timeout: float = 60.0) -> None:
        try:
            self.call("wait_ready", wait=timeout + 5.0, timeout=timeout)
        except BackendError as exc:
            if isinstance(exc, MeshNotRunning):
                raise
            raise ReadinessTimeout(str(exc)) from exc

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        result = self.call("apply", text=yaml_text, source=source)
        return [Problem(**p) for p in result.get("warnings", [])]

    def apply_file(self, path: str | os.PathLike[str]) -> list[Problem]:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError.single(str(p), "file", "", f"cannot read it: {exc}") from exc
        return self.apply(text, source=str(p))

    def remove(self, kind: str, name: str) -> None:
        self.call("remove", kind=kind, name=name)

    def istio_objects(self) -> list[dict[str, Any]]:
        return list(self.status()["istio"])

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        result = self.call("kill", service=service, count=count, percent=percent, grace=grace)
        return list(result["killed"])

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        """Set a Deployment's replicas and wait until they are ready.

        Refused before any pod starts when the mesh would exceed its pod limit. A scale-up that does not get
        ready within ``timeout`` is undone (the previous count is restored, the pods it added are stopped),
        so a failed scale leaves the mesh where it was.
        """
        limit = {"max_pods": self.max_pods} if self.max_pods is not None else {}
        result = self.call("scale", deployment=deployment, replicas=replicas, **limit) or {}
        try:
            self.wait_ready(timeout)
        except ReadinessTimeout as exc:
            previous = result.get("previous")
            if previous is None or replicas <= previous:
                raise
            self.call("scale", deployment=deployment, replicas=previous)
            raise ReadinessTimeout(
                f"{exc}\nscaling {deployment} to {replicas} did not complete within {timeout:.0f} s: it is back at "
                f"{previous} replicas, and the pods it added are stopped"
            ) from exc

    def desired_replicas(self) -> dict[str, int]:
        return {name: int(n) for name, n in (self.status().get("desired") or {}).items()}

    def admin_socket(self, pod: str) -> str:
        """The Unix socket of ``pod``'s Envoy admin API (in the state folder, 0700: this user's alone)."""
        path = self._admin_sockets.get(pod)
        if path is None:
            self.pods()
            path = self._admin_sockets.get(pod)
        if path is None and pod in self._without_envoy:
            raise BackendError(
                f"pod {pod} has no Envoy: its pod template opts out of sidecar injection (sidecar.istio.io/inject: "
                '"false"), so it has no admin API, stats or access log'
            )
        if path is None:
            raise BackendError(f"no pod named {pod!r} in the mesh at {self.state.root}")
        return path

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        from ... import httpclient  # requests costs ~60 ms to import: not for `clover down`

        # Also for a supervisor this process did not start (its PID in mesh.json: ~0.1 ms): an Envoy outlives
        # its dead supervisor by a moment, and an answer from a mesh that is gone would mislead.
        gone = self._mesh_gone()
        if gone is not None:
            raise gone
        sock = self.admin_socket(pod)
        try:
            response = httpclient.request("GET", httpclient.unix_url(sock, path), timeout=timeout)
        except httpclient.RequestException as exc:
            # The mesh's death shows here first as a refused socket: its Envoys die with their supervisor.
            gone = self._mesh_gone(patience=0.2)
            if gone is not None:
                raise gone from exc
            if isinstance(exc, httpclient.ConnectionFailed):
                raise BackendError(
                    f"nothing answers on the Envoy admin socket of {pod} ({sock}) for {path}: the pod was deleted "
                    f"or its Envoy is restarting ({exc})"
                ) from exc
            raise BackendError(f"the Envoy admin API of {pod} ({sock}) did not answer {path}: {exc}") from exc
        if response.status_code != 200:
            raise BackendError(f"the Envoy admin API of {pod} answered {response.status_code} for {path}")
        return response.text

    def logs(self, pod: str, container: str = "app") -> str:
        path = self.log_path(pod, container)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError as exc:
            raise BackendError(f"no {container} log for pod {pod} ({path})") from exc
        except OSError as exc:
            raise BackendError(f"cannot read the {container} log of pod {pod} ({path}): {exc}") from exc

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        """Every entry of the pod's access log still on disk, oldest first: its rotated copies (``access.log.2``,
        ``access.log.1``, see :mod:`.logrotate`) and then the file Envoy writes. Torn lines are skipped."""
        from ...logfiles import generations, rotation_lock

        entries = []
        path = self.log_path(pod, "access")
        # The rotation lock, shared: a copy-and-truncate between the listing and the reading would move the newest
        # lines into a copy already read. Every file is opened before any is read, so that a reader left waiting
        # past the lock's timeout still reads a renamed file whatever its name has become.
        with rotation_lock(path, exclusive=False), contextlib.ExitStack() as opened:
            handles = []
            for generation_path in generations(path):
                with contextlib.suppress(FileNotFoundError):
                    handles.append(opened.enter_context(generation_path.open("rb")))
            for handle in handles:
                for line in handle.read().decode("utf-8", errors="replace").splitlines():
                    with contextlib.suppress(ValueError):
                        entries.append(json.loads(line))
        return entries

    def log_path(self, pod: str, container: str = "app") -> Path:
        names = {"app": "app.log", "envoy": "envoy.log", "istio-proxy": "envoy.log", "access": "access.log"}
        if container not in names:
            raise BackendError(f"pod {pod} has no container {container!r}; give one of {', '.join(names)}")
        return self.state.pod_dir(pod) / names[container]
