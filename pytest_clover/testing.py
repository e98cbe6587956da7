"""Test doubles for pytest-clover's seams: an in-memory mesh and a load generator that sends nothing.

``FakeBackend`` implements the :class:`~pytest_clover.backend.Backend` protocol in memory, from the same
topology YAML the local backend deploys: pods, Istio objects (``apply``/``remove`` validated like the real
thing), kill and scale, Envoy stats with fault counters, and the two Envoy admin views the fault checks
read (``/clusters`` and ``/config_dump``). With ``state_file`` its state lives in a JSON file, so another
process (a pytester run, the next session sweeping a ledger) sees the same mesh.

Use it by overriding the ``clover_backend`` fixture in a conftest::

    @pytest.fixture(scope="session")
    def clover_backend(clover_settings):
        return FakeBackend(clover_settings.topology, state_file=...)

``FakeLoadGenerator`` has the load generator's constructor and ``start()``; phases take no time and the
result's statistics come from a profile. Override ``clover_load_generator`` to use it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .backend import PodInfo
from .errors import BackendError, ConfigError, Problem, ReadinessTimeout
from .inject import find_virtual_service
from .timeline import Timeline

ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway")
ROUTES_DUMP = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
GATEWAY = "istio-ingressgateway"
DOMAIN = "default.svc.cluster.local"


def _read_topology(topology: str | os.PathLike[str]) -> list[dict[str, Any]]:
    import yaml

    from .topology import iter_yaml_files

    docs: list[dict[str, Any]] = []
    for path in iter_yaml_files([topology]):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                docs.append(doc)
    return docs


class FakeBackend:
    """An in-memory mesh behind the Backend protocol; optionally persisted to a JSON file."""

    name = "fake"

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
        self.history: list[str] = []
        """Every operation, in order: ``apply VirtualService/x``, ``remove …``, ``kill …``, ``scale …``."""
        self.frozen: dict[str, Any] | None = None
        if self.state_file is not None and self.state_file.exists():
            self._load()
        elif topology is not None:
            self._from_topology(_read_topology(topology))

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
            "history": self.history,
            "frozen": self.frozen,
            "rng": self.rng.random(),
        }

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
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
        self.history = data["history"]
        self.frozen = data.get("frozen")
        self.rng.seed(data.get("rng", 0))

    def reload(self) -> Self:
        """Read the state file again (another process may have changed the mesh)."""
        if self.state_file is not None and self.state_file.exists():
            self._load()
        return self

    @classmethod
    def connect(cls, record: Mapping[str, Any]) -> FakeBackend | None:
        """The mesh a ledger record names, if its state file says it is still deployed."""
        path = record.get("state_file")
        if not path or not Path(str(path)).exists():
            return None
        backend = cls(state_file=str(path))
        return backend if backend.deployed else None

    def ledger_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"backend": self.name}
        if self.state_file is not None:
            record["state_file"] = str(self.state_file)
        return record

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
            name,
            dep["app"],
            deployment,
            dep["version"],
            True,
            "Running",
            f"127.66.0.{n}",
            0,
            labels,
            None,
            {port: port},
            time.time(),
        ).as_dict()

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

    def deploy(self, timeout: float = 60.0) -> None:
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
                    None,
                    {8080: 8080},
                    time.time(),
                ).as_dict()
            )
        self._reconcile()
        self.deployed = True
        self.frozen = None if self.effects else self._snapshot()
        self.history.append("deploy")
        self._save()

    def teardown(self) -> None:
        if self.deployed:
            self.history.append("teardown")
        self.deployed = False
        self.pods_ = []
        self._save()

    def ingress_url(self) -> str:
        return "http://127.66.0.1:8080"

    def _require(self) -> None:
        if not self.deployed:
            raise BackendError("the fake mesh is not deployed")

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

        from .topology import parse_istio_text

        self._require()
        _, problems = parse_istio_text(yaml_text, source)
        if any(p.severity == "error" for p in problems):
            raise ConfigError(problems)
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

    def status(self) -> dict[str, Any]:
        self._require()
        return {"desired": {n: self.desired.get(n, d["replicas"]) for n, d in self.deployments.items()}}

    def _faults_in_force(self) -> set[str]:
        kinds: set[str] = set()
        for doc in self.istio:
            if doc.get("kind") != "VirtualService":
                continue
            for route in (doc.get("spec") or {}).get("http") or []:
                kinds.update((route.get("fault") or {}).keys())
        return kinds

    def stats(self, pod: str) -> dict[str, Any]:
        self._require()
        info = next((p for p in self.pods_ if p["name"] == pod), None)
        if info is None:
            raise BackendError(f"no pod named {pod!r}")
        mine = self.counters.setdefault(pod, {})
        if self.effects and info["deployment"]:
            # Traffic is flowing: every look at a caller's stats sees one more request hit each fault in force.
            for kind in self._faults_in_force():
                key = f"http.outbound.fault.{'delays' if kind == 'delay' else 'aborts'}_injected"
                mine[key] = mine.get(key, 0) + 1
            self._save()
        return dict(mine)

    def service_stats(self, service: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for pod in self.pods(service):
            for name, value in self.stats(pod.name).items():
                total[name] = total.get(name, 0) + int(value)
        return total

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        return []

    # ------------------------------------------------------------------ test controls and Envoy views

    def bump(self, counter: str, by: int = 1, pod: str | None = None) -> None:
        """Move one Envoy counter of a pod (the first sidecar by default), as traffic would."""
        self._require()
        name = pod or next(p["name"] for p in self.pods_ if p["deployment"])
        mine = self.counters.setdefault(name, {})
        mine[counter] = mine.get(counter, 0) + by
        self._save()

    def admin_json(self, pod: str, path: str) -> Any:
        """What a pod's Envoy admin API would answer for ``/clusters?format=json`` and ``/config_dump``."""
        self._require()
        view = self.frozen or {"pods": self.pods_, "istio": self.istio}
        if path.startswith("/clusters"):
            return {"cluster_statuses": self._clusters(view["pods"])}
        if path.startswith("/config_dump"):
            routes = {"name": "outbound", "virtual_hosts": self._vhosts(view["istio"])}
            return {"configs": [{"@type": ROUTES_DUMP, "dynamic_route_configs": [{"route_config": routes}]}]}
        raise BackendError(f"the fake Envoy admin API has no {path}")

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

    def _vhosts(self, istio: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vhosts = []
        for service, port in sorted(self.services.items()):
            vs = find_virtual_service(istio, service)
            routes: list[dict[str, Any]] = []
            for http in ((vs or {}).get("spec") or {}).get("http") or []:
                dests = [d for d in http.get("route") or [] if (d.get("weight", 100) or 0) > 0]
                names = [self._cluster(service, (d.get("destination") or {}).get("subset")) for d in dests]
                if len(dests) == 1:
                    routes.append({"route": {"cluster": names[0]}})
                elif dests:
                    clusters = [
                        {"name": n, "weight": int(d.get("weight", 0))} for n, d in zip(names, dests, strict=True)
                    ]
                    routes.append({"route": {"weighted_clusters": {"clusters": clusters}}})
            if not routes:
                routes.append({"route": {"cluster": self._cluster(service, None)}})
            vhosts.append({"name": f"{service}.{DOMAIN}:{port}", "routes": routes})
        return vhosts


# --------------------------------------------------------------------------- load


@dataclass
class FakePhaseStats:
    """The fields of the load generator's PhaseStats."""

    name: str
    start: float
    end: float
    requests: int = 0
    errors: int = 0
    late: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    throughput_rps: float = 0.0
    p50_ms: float | None = 10.0
    p95_ms: float | None = 20.0
    p99_ms: float | None = 30.0
    max_ms: float | None = 40.0


@dataclass
class FakeLoadResult:
    """The parts of the load generator's LoadResult the plugin reads."""

    phases: dict[str, FakePhaseStats]
    windows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    recovery: dict[str, float | None] = field(default_factory=dict)

    def window_rows(self) -> list[dict[str, Any]]:
        return [dict(w) for w in self.windows]

    def recovery_seconds(self, after: str, **slo: float) -> float | None:
        return self.recovery.get(after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "open",
            "phases": {k: asdict(v) for k, v in self.phases.items()},
            "windows": self.windows,
            "events": self.events,
        }


WINDOW_KEYS = ("requests", "errors", "late", "error_rate", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")


class FakeLoadRun:
    """A run whose phases take no time; statistics from the generator's profile."""

    def __init__(self, generator: FakeLoadGenerator, rate: float | None, users: int | None) -> None:
        self.generator = generator
        self.rate = rate if rate is not None else float(users or 1) * 10.0
        self.alive = True
        # A virtual clock from the real start: phases take no time, but their windows get plausible dates.
        self.clock = time.time()
        self.phases: dict[str, FakePhaseStats] = {}
        self.windows: list[dict[str, Any]] = []
        self.result = FakeLoadResult(self.phases, self.windows)
        """Live, like the load generator's: every phase adds its windows and statistics at once."""
        self.stopped = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.alive:
            self.stop()

    def phase(self, name: str, seconds: float) -> None:
        if not self.alive:
            raise BackendError("the run is stopped")
        if self.generator.profile.get("crash") == name:
            from .load.run import LoadGeneratorError

            self.alive = False
            raise LoadGeneratorError(
                f"the load generator died during phase {name!r} (exit code -9)",
                exit_code=-9,
                stderr_tail="Traceback (most recent call last):\nMemoryError",
            )
        profile = dict(self.generator.profile.get(name, {}))
        per_window = profile.pop("windows", None)
        scaled = seconds * self.generator.time_scale
        n = max(1, math.ceil(scaled))
        start, end = self.clock, self.clock + scaled
        values: dict[str, Any] = {"requests": round(self.rate * scaled), "throughput_rps": self.rate}
        values.update(profile)
        stats = FakePhaseStats(name, start, end, **values)
        if stats.requests and "error_rate" not in profile:
            stats.error_rate = stats.errors / stats.requests
        self.phases[name] = stats
        timeline = self.generator.timeline
        if timeline is not None:
            timeline.add("phase-start", name, when=time.time(), seconds=scaled)
        for i in range(n):
            row: dict[str, Any] = {"start": start + i, "end": min(start + i + 1, end), "phase": name}
            row.update({k: getattr(stats, k) for k in WINDOW_KEYS})
            row["requests"] = max(0, round(stats.requests / n))
            if per_window and i < len(per_window):
                row.update(per_window[i])
            self.windows.append(row)
        if timeline is not None:
            timeline.add("phase-end", name, when=time.time())
        self.clock = end

    def mark(self, kind: str, name: str, **data: Any) -> None:
        if self.generator.timeline is not None:
            self.generator.timeline.add(kind, name, **data)

    def stop(self) -> FakeLoadResult:
        if not self.stopped:
            self.stopped = True
            self.alive = False
            self.result.recovery = dict(self.generator.profile.get("recovery_seconds", {}))
            self.generator._write("result.json", self.result.to_dict())
        return self.result


class FakeLoadGenerator:
    """The load generator's constructor and ``start()``, sending nothing.

    ``profile`` maps a phase name to PhaseStats fields to report (``{"fault": {"p99_ms": 900.0}}``),
    optionally with ``"windows": [{...}, ...]`` overriding single one-second windows; the key
    ``"recovery_seconds"`` maps a phase to what ``recovery_seconds(after=phase)`` returns, and ``"crash": phase``
    makes that phase raise the load generator's ``LoadGeneratorError`` as a dying child would.
    """

    profile: dict[str, Any] = {}  # noqa: RUF012 - class-level default, replaced per test

    def __init__(
        self,
        base_url: str,
        report_dir: Path,
        seed: int,
        time_scale: float = 1.0,
        timeline: Timeline | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url
        self.report_dir = Path(report_dir)
        self.seed = seed
        self.time_scale = time_scale
        self.timeline = timeline
        if profile is not None:
            self.profile = dict(profile)
        self.runs: list[FakeLoadRun] = []

    def _write(self, name: str, data: Any) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / name).write_text(json.dumps(data, indent=1), encoding="utf-8")

    def start(
        self,
        rate: float | None = None,
        users: int | None = None,
        path: str | None = None,
        paths: Mapping[str, float] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FakeLoadRun:
        if (rate is None) == (users is None):
            raise BackendError("give rate= or users=")
        self._write(
            "generator.json",
            {
                "base_url": self.base_url,
                "seed": self.seed,
                "time_scale": self.time_scale,
                "rate": rate,
                "users": users,
                "path": path,
                "paths": dict(paths or {}),
                "headers": dict(headers or {}),
            },
        )
        run = FakeLoadRun(self, rate, users)
        self.runs.append(run)
        return run
