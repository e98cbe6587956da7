"""The local backend's client: the embedded mesh, driven through its supervisor process.

This module runs in the process that asks for the mesh (pytest, ``clover``, a Chaos Toolkit experiment); it
talks to the supervisor over a Unix socket (JSON lines) and reads Envoy's admin APIs and the logs directly.
It imports neither gRPC nor Envoy's protobufs: only the supervisor does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import BackendError, ConfigError, ConfigRejected, MeshNotRunning, Problem, ReadinessTimeout
from ...istio import iter_yaml_files, load_topology
from ..protocol import BackendOptions, MeshRecord, PodInfo
from .envoy import envoy_binary
from .plan import check_local_plan, fidelity_warnings
from .state import (
    MeshState,
    default_state_dir,
    die_with_parent,
    kill_recorded,
    register_mesh,
    remove_state,
    sweep,
    unregister_mesh,
    wait_gone,
)

_ERRORS: dict[str, type[BackendError]] = {
    "BackendError": BackendError,
    "ConfigRejected": ConfigRejected,
    "MeshNotRunning": MeshNotRunning,
    "ReadinessTimeout": ReadinessTimeout,
}


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
    ) -> None:
        self.topology_dir = Path(topology) if topology is not None else None
        self.state = MeshState(state_dir if state_dir is not None else default_state_dir())
        self.seed = seed
        self.detach = detach
        """True for ``clover up``: the supervisor outlives this process. False: it dies with it."""
        self.keep_state = keep_state
        self._supervisor: subprocess.Popen[bytes] | None = None
        self.warnings: list[Problem] = []
        """What the topology holds that the local backend will not honour (set by deploy)."""
        self._admin_urls: dict[str, str] = {}
        """Pod → its sidecar's admin API; a pod's name is never reused, so an entry never goes stale."""

    # ------------------------------------------------------------------ made by the registry

    @classmethod
    def from_options(cls, options: BackendOptions) -> LocalBackend:
        """A mesh to deploy in ``options.workdir`` (its state folder); ``keep`` detaches it from this process."""
        return cls(options.topology, options.workdir, seed=options.seed, detach=options.keep, keep_state=options.keep)

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
        envoy_binary()
        if self.state.running():
            raise BackendError(
                f"a mesh is already running at {self.state.root}: "
                "stop it with `clover down` or pass another --state-dir"
            )
        if self.state.root.exists():
            kill_recorded(self.state)
            remove_state(self.state)
        self.state.topology_dir.mkdir(parents=True)
        for i, path in enumerate(iter_yaml_files([self.topology_dir])):
            shutil.copyfile(path, self.state.topology_dir / f"{i:03d}-{path.name}")
        mesh_id = f"mesh-{uuid.uuid4().hex[:8]}"
        block = register_mesh(self.state, mesh_id)
        self.state.write_json(
            self.state.mesh_file,
            {
                "mesh_id": mesh_id,
                "block": block,
                "seed": self.seed,
                "topology": str(self.topology_dir.resolve()),
                "created": time.time(),
                "status": "launching",
                "keep_state": self.keep_state,
            },
        )
        try:
            self._launch(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.teardown()
            raise
        return list(self.warnings)

    def _launch(self, timeout: float) -> None:
        argv = [sys.executable, "-m", "pytest_clover.backends.local.supervisor", str(self.state.root)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            # The folder holding this package, so the supervisor imports this very copy of it.
            filter(None, [str(Path(__file__).resolve().parents[3]), env.get("PYTHONPATH")])
        )
        with open(self.state.root / "supervisor.out", "ab") as out:
            self._supervisor = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=self.detach,
                # Tied to this process unless detached: a killed pytest takes its mesh with it.
                preexec_fn=None if self.detach else die_with_parent,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._supervisor.poll() is not None:
                detail = ""
                with contextlib.suppress(OSError):
                    detail = (self.state.root / "supervisor.out").read_text(errors="replace").strip()[-3000:]
                raise BackendError(
                    f"the mesh supervisor exited at start (code {self._supervisor.returncode}):\n{detail}"
                )
            if self.state.socket_path.exists():
                with contextlib.suppress(MeshNotRunning):
                    self.call("ping", wait=2.0)
                    return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the mesh supervisor did not answer within {timeout:.0f} s; see {self.state.log_file}"
                )
            time.sleep(0.01)

    def teardown(self, timeout: float = 20.0) -> None:
        """Stop the mesh: ask the supervisor, then make sure by PID; remove its state and registry entry."""
        owner = self.state.owner()
        mesh: dict[str, Any] = {}
        with contextlib.suppress(BackendError):
            mesh = self.state.read_mesh()
        # Read now: a supervisor that stops cleanly removes pids.json with its state folder, and what it
        # recorded is what must be checked once it is gone.
        recorded = self.state.read_pids()
        if owner is not None and owner.alive():
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
        if mesh.get("mesh_id"):
            unregister_mesh(mesh["mesh_id"])
        if not self.keep_state:
            remove_state(self.state)

    # ------------------------------------------------------------------ control socket

    def call(self, op: str, wait: float = 60.0, **args: Any) -> Any:
        """One request to the supervisor; errors come back as the same CloverError types."""
        path = str(self.state.socket_path)
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
        except FileNotFoundError as exc:
            raise MeshNotRunning(f"no mesh is running at {self.state.root}: start one with `clover up`") from exc
        except ConnectionRefusedError as exc:
            raise MeshNotRunning(
                f"the mesh at {self.state.root} does not answer (its supervisor died?): run `clover cleanup`"
            ) from exc
        except TimeoutError as exc:
            raise BackendError(f"the mesh at {self.state.root} did not answer {op!r} within {wait:.0f} s") from exc
        except OSError as exc:
            raise BackendError(f"cannot reach the mesh at {self.state.root}: {exc}") from exc
        raw = b"".join(chunks)
        if not raw:
            raise MeshNotRunning(f"the mesh at {self.state.root} closed the connection during {op!r}")
        reply = json.loads(raw)
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error", {})
        if err.get("type") == "ConfigError":
            raise ConfigError([Problem(**p) for p in err.get("problems", [])])
        raise _ERRORS.get(err.get("type", ""), BackendError)(err.get("message", "unknown error"))

    # ------------------------------------------------------------------ the Backend protocol

    def record(self) -> MeshRecord:
        return MeshRecord(self.name, str(self.state.root))

    def status(self) -> dict[str, Any]:
        """Everything the supervisor says about the mesh (``clover status --json``)."""
        result: dict[str, Any] = self.call("status")
        return result

    def info(self) -> dict[str, Any]:
        status = self.status()
        return {key: status.get(key) for key in ("mesh_id", "status", "seed", "state_dir")}

    def ingress_url(self) -> str:
        url = self.status().get("ingress_url")
        if not url:
            raise BackendError("the topology has no Gateway, so the mesh has no ingress; add an Istio Gateway")
        return str(url)

    def pods(self, service: str | None = None) -> list[PodInfo]:
        raw = self.status()["pods"]
        for pod in raw:
            if pod.get("admin_url"):
                self._admin_urls[pod["name"]] = str(pod["admin_url"])
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
        self.call("scale", deployment=deployment, replicas=replicas)
        self.wait_ready(timeout)

    def desired_replicas(self) -> dict[str, int]:
        return {name: int(n) for name, n in (self.status().get("desired") or {}).items()}

    def _admin_url(self, pod: str) -> str:
        url = self._admin_urls.get(pod)
        if url is None:
            self.pods()
            url = self._admin_urls.get(pod)
        if url is None:
            raise BackendError(f"no pod named {pod!r} in the mesh at {self.state.root}")
        return url

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        from ... import httpclient  # requests costs ~60 ms to import: not for `clover down`

        url = self._admin_url(pod)
        try:
            response = httpclient.request("GET", url + path, timeout=timeout)
        except httpclient.RequestException as exc:
            raise BackendError(f"the Envoy admin API of {pod} ({url}) did not answer {path}: {exc}") from exc
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
        path = self.log_path(pod, "access")
        entries = []
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        return entries

    def log_path(self, pod: str, container: str = "app") -> Path:
        names = {"app": "app.log", "envoy": "envoy.log", "istio-proxy": "envoy.log", "access": "access.log"}
        if container not in names:
            raise BackendError(f"pod {pod} has no container {container!r}; give one of {', '.join(names)}")
        return self.state.pod_dir(pod) / names[container]
