"""A mesh in memory behind the Backend protocol, for fast tests of everything above the seam.

:class:`FakeBackend` reads the same topology YAML a real backend deploys and keeps: pods (killed ones are
replaced under new names, scaling adds and removes pods), Istio objects (``apply``/``remove`` validated like
the real thing), and an Envoy admin API that answers the three views the fault checks read
(``/stats?format=json``, ``/clusters?format=json``, ``/config_dump``) from that state. It is registered as the
``fake`` backend, so the registry, fault ledgers and Chaos Toolkit experiments reach it like any other.

With ``state_file`` its state lives in a JSON file, so another process (a pytester run, the next session
sweeping a ledger, an experiment's runner) sees the same mesh. A deployed fake also answers HTTP at its
ingress (on 127.0.0.1, in the process that deployed it): the gateway routes each request to the first
service its VirtualService names, applies that service's faults as a caller's Envoy would (header matches,
delay, abort), moves the fault counters and writes access-log entries in the format of
:mod:`pytest_clover.envoy.access_log` — enough for the backend contract's data-plane checks.

Two test controls: ``effects=False`` (the control plane accepts every change, the data plane never shows it:
every fault is inconclusive) and :meth:`FakeBackend.bump` (move a counter as traffic would). Without traffic,
each read of a sidecar's stats counts one more request acted on by every fault in force.

Use it by overriding the ``clover_backend`` fixture in a conftest::

    @pytest.fixture(scope="session")
    def clover_backend(clover_settings):
        return FakeBackend(clover_settings.topology, state_file=...)

or with ``--clover-backend=fake`` (its state file goes to the session's temporary folder).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Self

from ..backends.protocol import BackendOptions, LoadPodSpec, MeshRecord, PodInfo
from ..envoy.views import FAULT_FILTER
from ..errors import BackendError, ConfigError, MeshNotRunning, Problem, ReadinessTimeout
from ..istio.documents import ISTIO_KINDS, find_virtual_service

__all__ = ["FakeBackend"]

ROUTES_DUMP = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
GATEWAY = "istio-ingressgateway"
DOMAIN = "default.svc.cluster.local"
STATE_NAME = "fake-mesh.json"
"""The state file's name in the workdir a fake made from options gets."""
MEMORY_PREFIX = "memory:"
"""The location of a fake without a state file: reachable from its own process only."""
MAX_FAKE_DELAY_S = 1.0
"""The fake ingress sleeps an injected delay up to this long: enough to be measured, never enough to stall a test."""


def _read_topology(topology: str | os.PathLike[str]) -> list[dict[str, Any]]:
    import yaml

    from ..istio import iter_yaml_files

    docs: list[dict[str, Any]] = []
    for path in iter_yaml_files([topology]):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                docs.append(doc)
    return docs


def _stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _percent(fault: Mapping[str, Any]) -> float:
    percentage = fault.get("percentage")
    if isinstance(percentage, Mapping) and "value" in percentage:
        return float(percentage["value"])
    if "percent" in fault:
        return float(fault["percent"])
    return 100.0


def _stop_server(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class FakeBackend:
    """An in-memory mesh behind the Backend protocol; optionally persisted to a JSON file."""

    name = "fake"
    _live: ClassVar[weakref.WeakValueDictionary[str, FakeBackend]] = weakref.WeakValueDictionary()
    """In-memory fakes of this process by location, so that ``connect`` finds them."""

    def __init__(
        self,
        topology: str | os.PathLike[str] | None = None,
        *,
        state_file: str | os.PathLike[str] | None = None,
        seed: int = 0,
        effects: bool = True,
    ) -> None:
        """``effects=False``: the control plane accepts every change but the data plane never shows it
        (fault counters stay still, killed pods are not replaced, Envoy keeps the endpoints and routes it had
        at deploy), so every fault is inconclusive."""
        self.state_file = Path(state_file) if state_file is not None else None
        self.rng = random.Random(seed)
        self.effects = effects
        self.deployed = False
        self.deployments: dict[str, dict[str, Any]] = {}
        """name → {"replicas", "app", "version"}"""
        self.services: dict[str, int] = {}
        """name → port"""
        self.istio: list[dict[str, Any]] = []
        self.pods_: list[dict[str, Any]] = []
        self.desired: dict[str, int] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.access: dict[str, list[dict[str, Any]]] = {}
        """pod → its access-log entries (from traffic through the fake ingress)."""
        self.history: list[str] = []
        """Every operation, in order: ``apply VirtualService/x``, ``remove …``, ``kill …``, ``scale …``."""
        self.frozen: dict[str, Any] | None = None
        self.ingress: str = ""
        """The ingress URL while deployed: the fake's HTTP server when this process deployed it."""
        self.load_pods: dict[str, LoadPodSpec] = {}
        """Load pods asked for and not deleted (``--clover-load-in-cluster``), by Deployment name."""
        self._stop_server: weakref.finalize[[ThreadingHTTPServer], FakeBackend] | None = None
        self._lock = threading.RLock()
        self._round_robin = itertools.count()
        self._memory_id = f"{MEMORY_PREFIX}{uuid.uuid4().hex[:12]}"
        self.topology_path = Path(topology) if topology is not None else None
        """Where the topology came from (its warnings are what deploy returns)."""
        if self.state_file is None:
            FakeBackend._live[self._memory_id] = self
        if self.state_file is not None and self.state_file.exists():
            self._load()
        elif topology is not None:
            self._from_topology(_read_topology(topology))

    # ------------------------------------------------------------------ made by the registry

    @classmethod
    def from_options(cls, options: BackendOptions) -> FakeBackend:
        """A fake of ``options.topology`` whose state file is in ``options.workdir``."""
        return cls(options.topology, state_file=Path(options.workdir) / STATE_NAME, seed=options.seed)

    @classmethod
    def default_location(cls) -> str:
        raise BackendError("the fake backend has no default mesh: name its state file (the record's location)")

    @classmethod
    def connect(cls, record: MeshRecord) -> FakeBackend | None:
        """The mesh a record names, if its state file (or, in this process, its memory) says it is deployed."""
        if record.location.startswith(MEMORY_PREFIX):
            live = cls._live.get(record.location)
            return live if live is not None and live.deployed else None
        path = Path(record.location) if record.location else None
        if path is None or not path.exists():
            return None
        backend = cls(state_file=path)
        return backend if backend.deployed else None

    def record(self) -> MeshRecord:
        return MeshRecord(self.name, str(self.state_file) if self.state_file is not None else self._memory_id)

    def info(self) -> dict[str, Any]:
        return {"location": self.record().location, "deployed": self.deployed, "effects": self.effects}

    # ------------------------------------------------------------------ persistence

    def _from_topology(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            kind, meta, spec = doc.get("kind"), doc.get("metadata") or {}, doc.get("spec") or {}
            if kind == "Deployment":
                labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
                self.deployments[meta["name"]] = {
                    "replicas": int(spec.get("replicas", 1)),
                    "app": labels.get("app", meta["name"]),
                    "version": labels.get("version", ""),
                }
            elif kind == "Service":
                ports = spec.get("ports") or [{"port": 80}]
                self.services[meta["name"]] = int(ports[0].get("port", 80))
            elif kind in ISTIO_KINDS:
                self.istio.append(copy.deepcopy(doc))

    def _state(self) -> dict[str, Any]:
        return {
            "deployed": self.deployed,
            "effects": self.effects,
            "deployments": self.deployments,
            "services": self.services,
            "istio": self.istio,
            "pods": self.pods_,
            "desired": self.desired,
            "counters": self.counters,
            "access": self.access,
            "history": self.history,
            "frozen": self.frozen,
            "ingress": self.ingress,
            "rng": self.rng.random(),
        }

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(self._state(), indent=1), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        assert self.state_file is not None
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        self.deployed = bool(data["deployed"])
        self.effects = bool(data.get("effects", self.effects))
        self.deployments = data["deployments"]
        self.services = {k: int(v) for k, v in data["services"].items()}
        self.istio = data["istio"]
        self.pods_ = data["pods"]
        self.desired = {k: int(v) for k, v in data["desired"].items()}
        self.counters = data["counters"]
        self.access = data.get("access") or {}
        self.history = data["history"]
        self.frozen = data.get("frozen")
        self.ingress = str(data.get("ingress") or "")
        self.rng.seed(data.get("rng", 0))

    def reload(self) -> Self:
        """Read the state file again (another process may have changed the mesh)."""
        if self.state_file is not None and self.state_file.exists():
            self._load()
        return self

    # ------------------------------------------------------------------ pods

    def _new_pod(self, deployment: str) -> dict[str, Any]:
        dep = self.deployments[deployment]
        letters = "bcdfghjklmnpqrstvwxz2456789"
        name = f"{deployment}-{''.join(self.rng.choices(letters, k=10))}-{''.join(self.rng.choices(letters, k=5))}"
        used = {p["ip"] for p in self.pods_}
        n = next(i for i in range(2, 255) if f"127.66.0.{i}" not in used)
        port = self.services.get(dep["app"], 9180)
        labels = {"app": dep["app"], **({"version": dep["version"]} if dep["version"] else {})}
        return PodInfo(
            name, dep["app"], deployment, dep["version"], True, "Running", f"127.66.0.{n}", 0, labels, {port: port},
            time.time(),
        ).as_dict()  # fmt: skip

    def _reconcile(self) -> None:
        for name in self.deployments:
            mine = [p for p in self.pods_ if p["deployment"] == name]
            want = self.desired.get(name, self.deployments[name]["replicas"])
            while len(mine) < want:
                pod = self._new_pod(name)
                self.pods_.append(pod)
                mine.append(pod)
            for pod in sorted(mine, key=lambda p: p["created"])[want:]:
                self.pods_.remove(pod)

    def _snapshot(self) -> dict[str, Any]:
        return {"pods": copy.deepcopy(self.pods_), "istio": copy.deepcopy(self.istio)}

    # ------------------------------------------------------------------ the Backend protocol

    def deploy(self, timeout: float = 60.0) -> list[Problem]:
        if self.deployed:
            raise BackendError(f"a fake mesh is already running in {self.state_file}")
        self.pods_ = []
        if any(d.get("kind") == "Gateway" for d in self.istio):
            self.pods_.append(
                PodInfo(
                    f"{GATEWAY}-fake",
                    GATEWAY,
                    None,
                    "",
                    True,
                    "Running",
                    "127.66.0.1",
                    0,
                    {"istio": "ingressgateway"},
                    {8080: 8080},
                    time.time(),
                ).as_dict()
            )
        self._reconcile()
        self.deployed = True
        self.frozen = None if self.effects else self._snapshot()
        self.history.append("deploy")
        self._start_ingress()
        self._save()
        if self.topology_path is None:
            return []
        from ..istio import validate

        # What any backend would say about the topology; what only the embedded mesh cannot honour is not ours.
        return [p for p in validate([self.topology_path]) if p.severity == "warning" and p.scope != "local"]

    def teardown(self) -> None:
        self._stop_ingress()
        if self.deployed:
            self.history.append("teardown")
        self.deployed = False
        self.pods_ = []
        self.ingress = ""
        self._save()

    def ingress_url(self) -> str:
        self._require()
        return self.ingress or "http://127.66.0.1:8080"

    # -- load pods (:class:`~pytest_clover.backends.protocol.LoadPods`): recorded, never run

    def start_load_pods(self, pods: list[LoadPodSpec], *, wait_for: list[str], timeout: float) -> dict[str, PodInfo]:
        """Record the load pods asked for (:attr:`load_pods`); the named ones are "ready" at once, on 127.0.0.1."""
        self._require()
        for spec in pods:
            self.load_pods[spec.name] = spec
        return {
            name: PodInfo(name=f"{name}-0", service="clover-load", deployment=name, version="", ready=True,
                          phase="Running", ip="127.0.0.1", restarts=0)
            for name in wait_for
        }  # fmt: skip

    def open_load_channel(self, pod: str, port: int, timeout: float) -> Any:
        raise BackendError(f"the fake backend runs no load pods (asked for port {port} of {pod}): use a cluster")

    def delete_load_pods(self, names: list[str]) -> None:
        for name in names:
            self.load_pods.pop(name, None)

    def load_target_url(self) -> str:
        return self.ingress_url()

    def check_running(self) -> None:
        """:class:`~pytest_clover.backends.protocol.Watchable`: the fake mesh runs while it is deployed."""
        self._require()

    def _require(self) -> None:
        if not self.deployed:
            raise MeshNotRunning("the fake mesh is not deployed")

    def pods(self, service: str | None = None) -> list[PodInfo]:
        self._require()
        pods = [PodInfo.from_dict(p) for p in self.pods_]
        return [p for p in pods if service is None or p.service == service]

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._require()
        missing = [
            name
            for name, dep in self.deployments.items()
            if len([p for p in self.pods_ if p["deployment"] == name and p["ready"]])
            != self.desired.get(name, dep["replicas"])
        ]
        if missing:
            raise ReadinessTimeout(f"not ready: {', '.join(missing)}")

    def apply(self, yaml_text: str, source: str = "<string>") -> list[Problem]:
        import yaml

        from ..istio import parse_istio_text

        self._require()
        _, problems = parse_istio_text(yaml_text, source)
        if any(p.severity == "error" for p in problems):
            raise ConfigError(problems)
        with self._lock:
            for doc in yaml.safe_load_all(yaml_text):
                if not isinstance(doc, dict):
                    continue
                key = (doc["kind"], doc["metadata"]["name"])
                self.istio = [o for o in self.istio if (o["kind"], o["metadata"]["name"]) != key] + [doc]
                self.history.append(f"apply {key[0]}/{key[1]}")
            self._save()
        return [p for p in problems if p.severity != "error"]

    def remove(self, kind: str, name: str) -> None:
        self._require()
        with self._lock:
            before = len(self.istio)
            self.istio = [o for o in self.istio if (o["kind"], o["metadata"]["name"]) != (kind, name)]
            if len(self.istio) == before:
                raise BackendError(f"no {kind}/{name}")
            self.history.append(f"remove {kind}/{name}")
            self._save()

    def istio_objects(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.istio)

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> list[str]:
        self._require()
        mine = (p for p in self.pods_ if p["service"] == service and p["deployment"])
        candidates = sorted(mine, key=lambda p: p["name"])
        if not candidates:
            raise BackendError(f"no running pod of {service!r}")
        n = max(1, math.ceil(len(candidates) * percent / 100.0)) if percent is not None else (count or 1)
        if n > len(candidates):
            raise BackendError(f"cannot kill {n} pods of {service!r}: it has {len(candidates)}")
        victims = self.rng.sample(candidates, n)
        for pod in victims:
            self.pods_.remove(pod)
        if self.effects:
            self._reconcile()
        names = [p["name"] for p in victims]
        self.history.append(f"kill {' '.join(names)}")
        self._save()
        return names

    def scale(self, deployment: str, replicas: int, timeout: float = 60.0) -> None:
        self._require()
        if deployment not in self.deployments:
            raise BackendError(f"no Deployment {deployment!r}")
        self.desired[deployment] = replicas
        if self.effects:
            self._reconcile()
        self.history.append(f"scale {deployment} {replicas}")
        self._save()

    def desired_replicas(self) -> dict[str, int]:
        self._require()
        return {n: self.desired.get(n, d["replicas"]) for n, d in self.deployments.items()}

    def envoy_admin(self, pod: str, path: str, timeout: float = 5.0) -> str:
        """What a pod's Envoy admin API would answer for ``/stats?format=json``, ``/clusters?format=json`` and
        ``/config_dump``."""
        self._require()
        if not any(p["name"] == pod for p in self.pods_):
            raise BackendError(f"no pod named {pod!r}")
        if path.startswith("/stats"):
            stats = [{"name": name, "value": value} for name, value in self._stats(pod).items()]
            return json.dumps({"stats": stats})
        view = self.frozen or {"pods": self.pods_, "istio": self.istio}
        if path.startswith("/clusters"):
            return json.dumps({"cluster_statuses": self._clusters(view["pods"])})
        if path.startswith("/config_dump"):
            routes = {"name": "outbound", "virtual_hosts": self._vhosts(view["istio"])}
            return json.dumps(
                {"configs": [{"@type": ROUTES_DUMP, "dynamic_route_configs": [{"route_config": routes}]}]}
            )
        raise BackendError(f"the Envoy admin API of {pod} answered 404 for {path} (the fake serves three views)")

    def logs(self, pod: str, container: str = "app") -> str:
        self._require()
        if container == "access":
            return "".join(json.dumps(e) + "\n" for e in self.access_log(pod))
        return f"{pod}: a fake pod writes no {container} log\n"

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self.access.get(pod, [])]

    # ------------------------------------------------------------------ test controls and Envoy views

    def bump(self, counter: str, by: int = 1, pod: str | None = None) -> None:
        """Move one Envoy counter of a pod (the first sidecar by default), as traffic would."""
        self._require()
        name = pod or next(p["name"] for p in self.pods_ if p["deployment"])
        with self._lock:
            mine = self.counters.setdefault(name, {})
            mine[counter] = mine.get(counter, 0) + by
            self._save()

    def _faults_in_force(self) -> set[str]:
        kinds: set[str] = set()
        for doc in self.istio:
            if doc.get("kind") != "VirtualService":
                continue
            for route in (doc.get("spec") or {}).get("http") or []:
                kinds.update((route.get("fault") or {}).keys())
        return kinds

    def _stats(self, pod: str) -> dict[str, int]:
        info = next(p for p in self.pods_ if p["name"] == pod)
        with self._lock:
            mine = self.counters.setdefault(pod, {})
            if self.effects and info["deployment"]:
                # Traffic is flowing: every look at a caller's stats sees one more request hit each fault in force.
                for kind in self._faults_in_force():
                    key = f"http.outbound.fault.{'delays' if kind == 'delay' else 'aborts'}_injected"
                    mine[key] = mine.get(key, 0) + 1
                self._save()
            return dict(mine)

    def _cluster(self, service: str, subset: str | None) -> str:
        return f"outbound|{self.services.get(service, 9180)}|{subset or ''}|{service}.{DOMAIN}"

    def _clusters(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for service, port in sorted(self.services.items()):
            mine = [p for p in pods if p["service"] == service and p["ready"] and p["phase"] == "Running"]
            hosts = [{"address": {"socket_address": {"address": p["ip"], "port_value": port}}} for p in mine]
            out.append({"name": self._cluster(service, None), "host_statuses": hosts})
            for version in sorted({p["version"] for p in mine if p["version"]}):
                subset = [h for h, p in zip(hosts, mine, strict=True) if p["version"] == version]
                out.append({"name": self._cluster(service, version), "host_statuses": subset})
        return out

    @staticmethod
    def _fault_config(fault: Mapping[str, Any]) -> dict[str, Any]:
        """An Istio fault as the fault filter's per-route settings (MILLION units, as istiod writes them)."""
        out: dict[str, Any] = {}
        for kind in ("delay", "abort"):
            spec = fault.get(kind)
            if not isinstance(spec, Mapping):
                continue
            percentage = {"numerator": round(_percent(spec) * 10_000), "denominator": "MILLION"}
            if kind == "delay":
                out["delay"] = {"fixed_delay": spec.get("fixedDelay"), "percentage": percentage}
            else:
                out["abort"] = {"http_status": int(spec.get("httpStatus", 503)), "percentage": percentage}
        return out

    def _vhosts(self, istio: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vhosts = []
        for service, port in sorted(self.services.items()):
            vs = find_virtual_service(istio, service)
            routes: list[dict[str, Any]] = []
            for http in ((vs or {}).get("spec") or {}).get("http") or []:
                dests = [d for d in http.get("route") or [] if (d.get("weight", 100) or 0) > 0]
                names = [self._cluster(service, (d.get("destination") or {}).get("subset")) for d in dests]
                route: dict[str, Any]
                if len(dests) == 1:
                    route = {"route": {"cluster": names[0]}}
                elif dests:
                    clusters = [
                        {"name": n, "weight": int(d.get("weight", 0))} for n, d in zip(names, dests, strict=True)
                    ]
                    route = {"route": {"weighted_clusters": {"clusters": clusters}}}
                else:
                    continue
                fault = self._fault_config(http.get("fault") or {})
                if fault:
                    route["typed_per_filter_config"] = {FAULT_FILTER: fault}
                routes.append(route)
            if not routes:
                routes.append({"route": {"cluster": self._cluster(service, None)}})
            vhosts.append({"name": f"{service}.{DOMAIN}:{port}", "routes": routes})
        return vhosts

    # ------------------------------------------------------------------ the ingress

    def _start_ingress(self) -> None:
        """Answer HTTP at the ingress, in this process, until teardown or until this fake is dropped."""
        if not any(p["deployment"] is None for p in self.pods_):
            return
        # The server's threads hold only a weak reference: a test that drops its fake without tearing it down
        # does not keep the fake, its port and its threads alive until the process ends.
        ref = weakref.ref(self)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                backend = ref()
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = backend._serve(headers, self.path) if backend is not None else (503, "gone\n")
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the access log is the fake's own

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up (a load generator stopping) is no error of the fake's

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="fake-ingress", daemon=True).start()
        self._stop_server = weakref.finalize(self, _stop_server, server)
        self.ingress = f"http://127.0.0.1:{server.server_address[1]}"

    def _stop_ingress(self) -> None:
        stop, self._stop_server = self._stop_server, None
        if stop is not None:
            stop()

    def _target(self) -> str | None:
        """The service the gateway sends requests to: the first destination of a gateway-bound VirtualService."""
        for doc in self.istio:
            spec = doc.get("spec") or {}
            if doc.get("kind") != "VirtualService" or not [g for g in spec.get("gateways") or [] if g != "mesh"]:
                continue
            for http in spec.get("http") or []:
                for dest in http.get("route") or []:
                    host = str((dest.get("destination") or {}).get("host", "")).split(".")[0]
                    if host in self.services:
                        return host
        return next(iter(sorted(self.services)), None)

    @staticmethod
    def _matches(route: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
        conditions = route.get("match") or [{}]
        for condition in conditions:
            wanted = condition.get("headers") or {}
            if all(headers.get(name.lower()) == (spec or {}).get("exact") for name, spec in wanted.items()):
                return True
        return False

    def _serve(self, headers: Mapping[str, str], path: str) -> tuple[int, str]:
        """One request through the fake gateway; returns (status, body)."""
        started = time.time()
        with self._lock:
            gateway = next((p for p in self.pods_ if p["deployment"] is None), None)
            service = self._target()
            request_id = headers.get("x-request-id") or str(uuid.uuid4())
            status, flags, body = 503, "UH", "no healthy upstream"
            fault: Mapping[str, Any] = {}
            servers = [p for p in self.pods_ if p["service"] == service and p["ready"]] if service else []
            if service is not None:
                vs = find_virtual_service(self.istio, service) if self.effects else None
                routes: list[dict[str, Any]] = ((vs or {}).get("spec") or {}).get("http") or []
                route: dict[str, Any] = next((r for r in routes if self._matches(r, headers)), {})
                fault = route.get("fault") or {}
            counters = self.counters.setdefault(gateway["name"], {}) if gateway is not None else {}
        delay = fault.get("delay") if isinstance(fault.get("delay"), Mapping) else None
        abort = fault.get("abort") if isinstance(fault.get("abort"), Mapping) else None
        if delay is not None and self.rng.random() * 100 < _percent(delay):
            from ..istio import parse_duration

            time.sleep(min((parse_duration(delay.get("fixedDelay")) or 0.0) / 1000.0, MAX_FAKE_DELAY_S))
            counters["http.gateway.fault.delays_injected"] = counters.get("http.gateway.fault.delays_injected", 0) + 1
            flags = "DI"
        server = None
        if abort is not None and self.rng.random() * 100 < _percent(abort):
            status, flags, body = int(abort.get("httpStatus", 503)), "FI", "fault filter abort"
            counters["http.gateway.fault.aborts_injected"] = counters.get("http.gateway.fault.aborts_injected", 0) + 1
        elif servers:
            server = servers[next(self._round_robin) % len(servers)]
            status, flags, body = 200, "DI" if flags == "DI" else "-", f"fake {server['name']}\n"
        ended = time.time()
        cluster = f"outbound|{self.services[service]}||{service}.{DOMAIN}" if service else "-"
        common = {"start_time": _stamp(started), "request_id": request_id, "path": path, "response_code": status}
        with self._lock:
            if gateway is not None:
                self.access.setdefault(gateway["name"], []).append(
                    {
                        **common,
                        "pod": gateway["name"],
                        "direction": "gateway",
                        "upstream_cluster": cluster,
                        "authority": f"{service}:{self.services.get(service or '', 80)}" if service else "-",
                        "response_flags": flags,
                        "duration": round((ended - started) * 1000),
                        "duration_us": round((ended - started) * 1e6),
                    }
                )
            if server is not None:
                self.access.setdefault(server["name"], []).append(
                    {
                        **common,
                        "start_time": _stamp(ended),
                        "pod": server["name"],
                        "direction": "inbound",
                        "upstream_cluster": f"inbound|{self.services[service or '']}||",
                        "authority": f"{service}:{self.services.get(service or '', 80)}",
                        "response_flags": "-",
                        "duration": 0,
                        "duration_us": 0,
                    }
                )
            self._save()
        return status, body
