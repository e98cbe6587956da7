"""Faults for tests: handles that inject, verify and revert — and a ledger so that a killed run leaves nothing.

``Faults`` (the ``faults`` fixture) creates one handle per fault. A handle is a context manager; leaving
the block, ``.revert()`` (idempotent) or the end of the test puts the mesh back, in reverse order of
injection, whatever happened in the test.

Verification. ``.verify()`` polls until the fault's effect is seen in the data plane, not just accepted
by the control plane: Envoy's fault counters moved (delay, abort), the killed pods are gone and replaced
(kill), a caller's Envoy holds the new number of endpoints (scale) or the new route weights (shift), the
objects are in force (apply). When the effect is not seen it raises :class:`FaultInconclusive`, and the
plugin reports the test as an ERROR, never as a pass or a fail: nothing can be concluded about resilience
to a fault that did not happen. A handle the test never verified is checked automatically right after
the test body (and, if it was reverted earlier, at the moment it was reverted), so an unverified fault can
never end in a silent pass.

The ledger. Before anything is injected, what is needed to revert it (the VirtualService as it was, the
previous replica count…) is appended to a JSON-lines file; the entry is closed after the revert. A
pytest killed with SIGKILL leaves its open entries behind, and :func:`sweep_ledger` (run by the next
session before any test, and by ``clover cleanup``) reverts them on the mesh they were injected in if it
still runs, and drops them if that mesh died (a mesh owned by pytest dies with it).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .backend import Backend, PodInfo
from .errors import BackendError, CloverError, ConfigError
from .inject import CREATED_MARK, ORIGINAL_ANNOTATION, fault_document, find_virtual_service
from .timeline import Timeline

COUNTERS = {
    "delay": "http.outbound.fault.delays_injected",
    "abort": "http.outbound.fault.aborts_injected",
}
"""The Envoy fault-filter counter a delay or an abort moves, on the callers' outbound listener."""

ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway")
H = TypeVar("H", bound="FaultHandle")
POLL_SECONDS = 0.2


class FaultInconclusive(CloverError):
    """A fault's effect was not seen, so the test says nothing about resilience to it: the test errors."""


# --------------------------------------------------------------------------- Envoy views


def admin_json(backend: Backend, pod: PodInfo, path: str) -> Any:
    """One Envoy admin endpoint of a pod, as JSON (a backend may serve it itself: ``admin_json(pod, path)``)."""
    own = getattr(backend, "admin_json", None)
    if callable(own):
        return own(pod.name, path)
    if not pod.admin_url:
        raise BackendError(f"pod {pod.name} has no Envoy admin API to read {path} from")
    from .local.envoy import admin_get

    status, body = admin_get(pod.admin_url, path)
    if status != 200:
        raise BackendError(f"Envoy admin of {pod.name} answered {status} for {path}")
    return json.loads(body)


def counter_by_pod(backend: Backend, counter: str) -> dict[str, int]:
    """The value of one Envoy counter in every pod that answers (pods that just died are skipped)."""
    out: dict[str, int] = {}
    for pod in backend.pods():
        if pod.phase == "Terminating":
            continue
        with contextlib.suppress(BackendError):
            value = backend.stats(pod.name).get(counter, 0)
            out[pod.name] = value if isinstance(value, int) else 0
    return out


def _caller(backend: Backend, service: str) -> PodInfo:
    """A sidecar that calls ``service`` (any sidecar of another service; every sidecar routes to all)."""
    pods = [p for p in backend.pods() if p.phase == "Running" and p.ready]
    sidecars = sorted((p for p in pods if p.deployment is not None), key=lambda p: p.name)
    for pod in sidecars:
        if pod.service != service:
            return pod
    if sidecars:
        return sidecars[0]
    raise BackendError("no running sidecar to read Envoy's view of the mesh from")


def _host_is(host: str, service: str) -> bool:
    return host == service or host.startswith(f"{service}.")


def endpoint_count(backend: Backend, service: str) -> tuple[int | None, str]:
    """Hosts of ``outbound|<port>||<service fqdn>`` in a caller's Envoy (``/clusters?format=json``)."""
    caller = _caller(backend, service)
    data = admin_json(backend, caller, "/clusters?format=json")
    for cluster in data.get("cluster_statuses", []):
        parts = str(cluster.get("name", "")).split("|")
        if len(parts) == 4 and parts[0] == "outbound" and parts[2] == "" and _host_is(parts[3], service):
            return len(cluster.get("host_statuses", [])), caller.name
    return None, caller.name


def _subset_of(cluster: str) -> str:
    parts = cluster.split("|")
    return parts[2] if len(parts) == 4 else cluster


def caller_routes(backend: Backend, service: str) -> tuple[list[dict[str, Any]], str]:
    """The Envoy routes a caller of ``service`` holds for it (``/config_dump``), and that caller's name."""
    caller = _caller(backend, service)
    dump = admin_json(backend, caller, "/config_dump")
    routes: list[dict[str, Any]] = []
    for config in dump.get("configs", []):
        for dynamic in config.get("dynamic_route_configs", []):
            for vhost in (dynamic.get("route_config") or {}).get("virtual_hosts", []):
                if _host_is(str(vhost.get("name", "")).split(":")[0], service):
                    routes.extend(vhost.get("routes", []))
    return routes, caller.name


def route_weights(backend: Backend, service: str) -> tuple[list[dict[str, int]], str]:
    """Every route's subset → weight split for ``service`` in a caller's Envoy (``/config_dump``)."""
    routes, caller = caller_routes(backend, service)
    found: list[dict[str, int]] = []
    for route in routes:
        action = route.get("route") or {}
        if "weighted_clusters" in action:
            split = {
                _subset_of(str(c["name"])): int(c.get("weight", 0))
                for c in action["weighted_clusters"].get("clusters", [])
            }
        elif "cluster" in action:
            split = {_subset_of(str(action["cluster"])): 100}
        else:
            continue
        found.append(split)
    return found, caller


# --------------------------------------------------------------------------- handles


class FaultHandle:
    """One injected fault: a context manager with ``.verify()`` and ``.revert()``."""

    kind: str = "fault"
    default_timeout: float = 10.0
    """Seconds ``verify()`` polls by default."""
    auto_timeout: float = 10.0
    """Seconds the automatic check after the test body polls (short where only traffic could help)."""

    def __init__(self, faults: Faults, description: str) -> None:
        self._faults = faults
        self.description = description
        self.id = faults._next_id()
        self.active = False
        """True between injection and revert."""
        self.verified: bool | None = None
        """True once the effect was seen; False once it was found missing; None while unchecked."""
        self.detail = ""
        """What the last check saw, in words."""
        self._final: tuple[bool, str] | None = None

    @property
    def target(self) -> str:
        """What the fault acts on: a service, a Deployment, or the objects an applied manifest names."""
        return str(getattr(self, "service", "") or getattr(self, "deployment", "") or "")

    def __repr__(self) -> str:
        state = "active" if self.active else "reverted"
        return f"<{type(self).__name__} {self.description!r} {state} verified={self.verified}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.revert()

    # -- what each kind provides

    def _prepare(self) -> None:
        """Read what the revert will need (before anything changes)."""

    def _inject(self) -> None:
        raise NotImplementedError

    def _undo(self) -> None:
        raise NotImplementedError

    def _check(self) -> tuple[bool, str]:
        """One look at the data plane: (effect seen, what was seen)."""
        raise NotImplementedError

    def _revert_record(self) -> dict[str, Any] | None:
        """What the ledger must keep to revert this fault without this process; None: nothing to revert."""
        return None

    def _hint(self) -> str:
        return ""

    # -- public operations

    def verify(self, timeout: float | None = None) -> Self:
        """Wait until the fault's effect is seen; raise FaultInconclusive if it is not within ``timeout`` s."""
        __tracebackhide__ = True
        if self.verified or self._faults.dry_run:
            return self  # a dry run injects nothing, so there is nothing to see
        if not self.active:
            ok, detail = self._final if self._final is not None else (False, self.detail or "reverted before any check")
            return self._conclude(ok, detail, 0.0)
        cap = self._faults.verify_timeout
        limit = timeout if timeout is not None else (self.default_timeout if cap is None else cap)
        started = time.monotonic()
        deadline = started + max(limit, 0.0)
        while True:
            try:
                ok, detail = self._check()
            except BackendError as exc:
                ok, detail = False, f"the check failed: {exc}"
            if ok or time.monotonic() >= deadline:
                return self._conclude(ok, detail, time.monotonic() - started)
            time.sleep(POLL_SECONDS)

    def _conclude(self, ok: bool, detail: str, waited: float) -> Self:
        __tracebackhide__ = True
        self.detail = detail
        timeline = self._faults.timeline
        if ok:
            self.verified = True
            if timeline is not None:
                timeline.add("fault-verified", self.description, fault=self.kind, id=self.id, detail=detail)
            return self
        self.verified = False
        if timeline is not None:
            timeline.add("fault-inconclusive", self.description, fault=self.kind, id=self.id, detail=detail)
        after = f" after {waited:.1f} s" if waited > 0 else ""
        hint = self._hint()
        raise FaultInconclusive(
            f"{self.description}: its effect was not seen ({detail}{after}). "
            + (f"{hint} " if hint else "")
            + "Nothing can be concluded about resilience to a fault that did not happen."
        )

    def revert(self) -> None:
        """Undo the fault now (idempotent). Istio objects go back exactly as they were."""
        self._faults._revert(self)

    def _snapshot_before_revert(self) -> None:
        if self.verified is None and self._final is None:
            try:
                self._final = self._check()
            except BackendError as exc:
                self._final = (False, f"the check failed: {exc}")


class IstioFault(FaultHandle):
    """A change to Istio objects: restored exactly (or removed if it created them) on revert."""

    kind: str = "istio"

    def __init__(self, faults: Faults, description: str) -> None:
        super().__init__(faults, description)
        self.before: list[tuple[str, str, dict[str, Any] | None]] = []
        self.applied: list[dict[str, Any]] = []

    @property
    def touches(self) -> set[tuple[str, str]]:
        return {(kind, name) for kind, name, _ in self.before}

    def _documents(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _prepare(self) -> None:
        objects = self._faults.backend.istio_objects()
        docs = self._documents(objects)
        current = {(o.get("kind"), (o.get("metadata") or {}).get("name")): o for o in objects}
        self.before = []
        for doc in docs:
            key = (str(doc["kind"]), str(doc["metadata"]["name"]))
            old = current.get(key)
            self.before.append((key[0], key[1], copy.deepcopy(dict(old)) if old is not None else None))
        self.applied = docs

    def _inject(self) -> None:
        import yaml

        self._faults.backend.apply(yaml.safe_dump_all(self.applied, sort_keys=False), source=self.description)

    def _undo(self) -> None:
        for kind, name, doc in reversed(self.before):
            restore(self._faults.backend, kind, name, doc)

    def _revert_record(self) -> dict[str, Any] | None:
        return {"restore": [{"kind": k, "name": n, "doc": d} for k, n, d in self.before]}


class HttpFault(IstioFault):
    """A delay or an abort merged into the service's VirtualService; verified by Envoy's fault counters."""

    default_timeout = 10.0
    auto_timeout = 1.0

    def __init__(self, faults: Faults, kind: str, service: str, description: str, **fault: Any) -> None:
        super().__init__(faults, description)
        self.kind = kind
        self.service = service
        self.fault = fault
        self.counter = COUNTERS[kind]
        self.baseline: dict[str, int] | None = None

    def _documents(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [fault_document(objects, self.service, **self.fault)]

    def _inject(self) -> None:
        if self.baseline is None:  # not again when put back on top of a reverted fault: keep what was seen
            self.baseline = counter_by_pod(self._faults.backend, self.counter)
        super()._inject()

    def _check(self) -> tuple[bool, str]:
        now = counter_by_pod(self._faults.backend, self.counter)
        base = self.baseline or {}
        moved = sum(max(0, value - base.get(pod, 0)) for pod, value in now.items())
        verb = "delayed" if self.kind == "delay" else "aborted"
        if moved:
            return True, f"{moved} requests {verb} since injection ({self.counter}, {len(now)} pods)"
        return False, f"{self.counter} did not move in any of {len(now)} pods"

    def _hint(self) -> str:
        scope = []
        if self.fault.get("headers"):
            scope.append("carry the headers")
        if self.fault.get("source_labels"):
            scope.append("come from pods with those labels")
        if self.fault.get("subset"):
            scope.append("go to the subset")
        extra = f" (and did it {' and '.join(scope)}?)" if scope else ""
        return f"Was load reaching {self.service} while the fault was in force{extra}? Verify while the load runs."


class ShiftFault(IstioFault):
    """Route weights across a service's subsets, written into its VirtualService (created if none)."""

    kind: str = "shift"
    default_timeout = 10.0
    auto_timeout = 5.0

    def __init__(self, faults: Faults, service: str, weights: Mapping[str, int], description: str) -> None:
        super().__init__(faults, description)
        self.service = service
        self.weights = dict(weights)

    def _documents(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [shift_document(objects, self.service, self.weights)]

    def _check(self) -> tuple[bool, str]:
        expected = {s: w for s, w in self.weights.items() if w > 0}
        seen, caller = route_weights(self._faults.backend, self.service)
        if any(split == expected for split in seen):
            return True, f"{caller}'s Envoy routes {self.service} as {_split_text(expected)}"
        shown = "; ".join(_split_text(s) for s in seen) or "no route"
        return False, f"{caller}'s Envoy routes {self.service} as {shown}, not {_split_text(expected)}"


class ApplyFault(IstioFault):
    """Istio YAML from a file, applied live; its objects are put back (or removed) on revert."""

    kind: str = "apply"
    default_timeout = 5.0
    auto_timeout = 5.0

    def __init__(self, faults: Faults, docs: list[dict[str, Any]], description: str) -> None:
        super().__init__(faults, description)
        self.docs = docs

    @property
    def target(self) -> str:
        return ", ".join(f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in self.docs)

    def _documents(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return copy.deepcopy(self.docs)

    def _check(self) -> tuple[bool, str]:
        current = {
            (o.get("kind"), (o.get("metadata") or {}).get("name")): o for o in self._faults.backend.istio_objects()
        }
        missing = [
            f"{d['kind']}/{d['metadata']['name']}"
            for d in self.applied
            if (current.get((d["kind"], d["metadata"]["name"])) or {}).get("spec") != d.get("spec")
        ]
        if missing:
            return False, f"not in force: {', '.join(missing)}"
        return True, f"{len(self.applied)} objects in force"


class KillFault(FaultHandle):
    """Pods killed; their Deployment replaces them. Revert waits until the replacements are ready."""

    kind: str = "kill"
    default_timeout = 30.0
    auto_timeout = 30.0

    def __init__(
        self, faults: Faults, service: str, count: int | None, percent: float | None, grace: float, description: str
    ) -> None:
        super().__init__(faults, description)
        self.service = service
        self.count = count
        self.percent = percent
        self.grace = grace
        self.killed: list[str] = []
        self.ready_before = 0

    def _ready(self, pods: Iterable[PodInfo]) -> list[PodInfo]:
        return [p for p in pods if p.service == self.service and p.ready and p.phase == "Running"]

    def _inject(self) -> None:
        backend = self._faults.backend
        self.ready_before = len(self._ready(backend.pods()))
        self.killed = backend.kill(self.service, count=self.count, percent=self.percent, grace=self.grace)
        if self._faults.timeline is not None:
            self._faults.timeline.add("note", f"killed {', '.join(self.killed)}", fault="kill", id=self.id)

    def _undo(self) -> None:
        self._faults.backend.wait_ready(timeout=max(self.default_timeout, 60.0))

    def _check(self) -> tuple[bool, str]:
        pods = self._faults.backend.pods()
        alive = [p.name for p in pods if p.name in self.killed and p.phase != "Terminating"]
        ready = [p for p in self._ready(pods) if p.name not in self.killed]
        if alive:
            return False, f"still running: {', '.join(alive)}"
        if len(ready) < self.ready_before:
            return False, f"{len(ready)} of {self.ready_before} pods of {self.service} ready after the kill"
        return True, f"{', '.join(self.killed)} gone; {len(ready)} pods of {self.service} ready"


class ScaleFault(FaultHandle):
    """A Deployment's replicas set; verified in a caller's Envoy endpoints; reverted to the previous count."""

    kind: str = "scale"
    default_timeout = 30.0
    auto_timeout = 30.0

    def __init__(self, faults: Faults, deployment: str, replicas: int, description: str) -> None:
        super().__init__(faults, description)
        self.deployment = deployment
        self.replicas = replicas
        self.previous = 0
        self.service = deployment

    def _prepare(self) -> None:
        backend = self._faults.backend
        pods = [p for p in backend.pods() if p.deployment == self.deployment]
        if pods:
            self.service = pods[0].service
        desired: Mapping[str, Any] = {}
        status = getattr(backend, "status", None)
        if callable(status):
            with contextlib.suppress(BackendError, TypeError, KeyError):
                desired = status().get("desired") or {}
        if self.deployment in desired:
            self.previous = int(desired[self.deployment])
        else:
            self.previous = len([p for p in pods if p.phase != "Terminating"])

    def _inject(self) -> None:
        self._faults.backend.scale(self.deployment, self.replicas, timeout=max(self.default_timeout, 60.0))

    def _undo(self) -> None:
        self._faults.backend.scale(self.deployment, self.previous, timeout=max(self.default_timeout, 60.0))

    def _revert_record(self) -> dict[str, Any] | None:
        return {"scale": {"deployment": self.deployment, "replicas": self.previous}}

    def _check(self) -> tuple[bool, str]:
        backend = self._faults.backend
        pods = [p for p in backend.pods() if p.service == self.service and p.phase == "Running" and p.ready]
        own = [p for p in pods if p.deployment == self.deployment]
        expected = self.replicas + len(pods) - len(own)
        seen, caller = endpoint_count(backend, self.service)
        if len(own) != self.replicas:
            return False, f"{len(own)} of {self.replicas} pods of {self.deployment} ready"
        if seen != expected:
            return False, f"{caller}'s Envoy has {seen} endpoints for {self.service}, expected {expected}"
        return True, f"{caller}'s Envoy has {seen} endpoints for {self.service}"


# --------------------------------------------------------------------------- documents


def shift_document(objects: Sequence[Mapping[str, Any]], service: str, weights: Mapping[str, int]) -> dict[str, Any]:
    """``service``'s VirtualService with its default routes split across subsets by ``weights``.

    Routes with a ``match`` (header canaries, paths…) and routes to other hosts stay as they are; every
    catch-all route to the service gets the new split (one is appended when there is none). Weights are
    whole percentages summing to 100, as Istio requires.
    """
    if not weights:
        raise BackendError("give at least one subset weight, e.g. {'v1': 80, 'v2': 20}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
    if bad:
        raise BackendError(f"weights must be whole percentages from 0 to 100, got {bad}")
    if sum(weights.values()) != 100:
        raise BackendError(f"weights must add up to 100 (Istio's rule), got {sum(weights.values())}: {dict(weights)}")
    found = find_virtual_service(objects, service)
    if found is None:
        doc: dict[str, Any] = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": service, "annotations": {ORIGINAL_ANNOTATION: CREATED_MARK}},
            "spec": {"hosts": [service], "http": []},
        }
    else:
        doc = found
        annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
        annotations.setdefault(ORIGINAL_ANNOTATION, json.dumps(doc.get("spec", {}), sort_keys=True))
    http: list[dict[str, Any]] = doc["spec"].setdefault("http", [])
    rewritten = False
    for route in http:
        dests = route.get("route") or []
        if route.get("match") or not dests:
            continue
        if not all(_host_is(str((d.get("destination") or {}).get("host", "")), service) for d in dests):
            continue
        port = (dests[0].get("destination") or {}).get("port")
        route["route"] = _split(service, weights, port)
        rewritten = True
    if not rewritten:
        http.append({"route": _split(service, weights, None)})
    return doc


def _split(service: str, weights: Mapping[str, int], port: Any) -> list[dict[str, Any]]:
    out = []
    for subset, weight in weights.items():
        dest: dict[str, Any] = {"host": service, "subset": subset}
        if port is not None:
            dest["port"] = copy.deepcopy(port)
        out.append({"destination": dest, "weight": weight})
    return out


def _split_text(split: Mapping[str, int]) -> str:
    return "/".join(f"{k or '(all)'} {v}" for k, v in split.items()) or "(none)"


def read_istio_file(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError.single(str(path), "file", "", f"cannot read it: {exc}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError.single(str(path), "file", "", f"not valid YAML: {exc}") from exc
    for i, doc in enumerate(docs):
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in ISTIO_KINDS or not name:
            raise ConfigError.single(
                str(path),
                f"{kind or 'document'}/{name or i}",
                "kind",
                f"only named Istio objects ({', '.join(ISTIO_KINDS)}) can be applied as a fault",
            )
    if not docs:
        raise ConfigError.single(str(path), "file", "", "holds no Istio objects")
    return docs


def restore(backend: Backend, kind: str, name: str, doc: Mapping[str, Any] | None) -> None:
    """Put one Istio object back as ``doc`` (None: it did not exist, so delete it)."""
    if doc is None:
        present = any(
            o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name for o in backend.istio_objects()
        )
        if present:
            backend.remove(kind, name)
        return
    import yaml

    backend.apply(yaml.safe_dump(dict(doc), sort_keys=False), source=f"revert {kind}/{name}")


# --------------------------------------------------------------------------- the ledger


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _owner_alive(owner: Mapping[str, Any]) -> bool:
    try:
        pid, created = int(owner["pid"]), float(owner["create_time"])
    except (KeyError, TypeError, ValueError):
        return False
    start = _process_start(pid)
    return start is not None and abs(start - created) < 0.05


class Ledger:
    """The faults this process has open, on disk, so a killed run can be swept later.

    JSON lines, append-only (a SIGKILL can cut a line short; such a line is ignored):
    ``{"op": "owner", "pid", "create_time", "started"}`` first, then ``{"op": "open", "id", "kind",
    "description", "time", "mesh", "revert"}`` before each injection (written again when the revert data
    changes: the last line of an id wins) and ``{"op": "close", "id"}`` after each revert. ``mesh`` says
    how to reach the mesh again (``{"backend": "local", "state_dir": …}``); ``revert`` holds
    ``{"restore": [{"kind", "name", "doc"}]}`` (doc None: delete) and/or ``{"scale": {"deployment",
    "replicas"}}``. The file is removed once nothing is open.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._open: dict[str, dict[str, Any]] = {}

    def _write(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as out:
            if fresh:
                pid = os.getpid()
                owner = {"op": "owner", "pid": pid, "create_time": _process_start(pid), "started": time.time()}
                out.write(json.dumps(owner) + "\n")
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()

    def open(
        self, fault_id: str, kind: str, description: str, mesh: Mapping[str, Any], revert: Mapping[str, Any]
    ) -> None:
        record = {
            "op": "open",
            "id": fault_id,
            "kind": kind,
            "description": description,
            "time": time.time(),
            "mesh": dict(mesh),
            "revert": dict(revert),
        }
        with self._lock:
            self._write(record)
            self._open[fault_id] = record

    def close(self, fault_id: str) -> None:
        with self._lock:
            if self._open.pop(fault_id, None) is None:
                return
            self._write({"op": "close", "id": fault_id})
            if not self._open:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()

    def open_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._open.values())


def read_ledger(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The owner record and the entries still open, in the order they were opened."""
    owner: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    order: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return owner, []
    for n, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if not isinstance(record, dict):
            continue
        op = record.get("op")
        if op == "owner" and not owner:
            owner = record
        elif op == "open" and record.get("id"):
            entries[str(record["id"])] = record
            order.setdefault(str(record["id"]), n)
        elif op == "close":
            entries.pop(str(record.get("id")), None)
    return owner, sorted(entries.values(), key=lambda r: order[str(r["id"])])


def mesh_record(backend: Backend) -> dict[str, Any]:
    """How a ledger finds this mesh again from another process."""
    own = getattr(backend, "ledger_record", None)
    if callable(own):
        return dict(own())
    state = getattr(backend, "state", None)
    root = getattr(state, "root", None)
    if backend.name == "local" and root is not None:
        return {"backend": "local", "state_dir": str(root)}
    return {"backend": backend.name}


def connect_backend(record: Mapping[str, Any]) -> Backend | None:
    """The mesh a ledger entry was injected in, if it still runs; None when it is gone."""
    kind = record.get("backend")
    if kind == "local" and record.get("state_dir"):
        from .local.backend import LocalBackend
        from .local.state import MeshState

        if not MeshState(str(record["state_dir"])).running():
            return None
        return LocalBackend(state_dir=str(record["state_dir"]))
    if kind == "fake":
        from .testing import FakeBackend

        return FakeBackend.connect(record)
    return None


def revert_entry(backend: Backend, entry: Mapping[str, Any]) -> None:
    revert = entry.get("revert") or {}
    for item in reversed(revert.get("restore") or []):
        restore(backend, str(item["kind"]), str(item["name"]), item.get("doc"))
    scale = revert.get("scale")
    if scale:
        backend.scale(str(scale["deployment"]), int(scale["replicas"]))


def _mesh_text(record: Mapping[str, Any]) -> str:
    where = record.get("state_dir") or record.get("state_file")
    return f"{record.get('backend', '?')} mesh" + (f" at {where}" if where else "")


def sweep_ledger(path: str | os.PathLike[str], backend: Backend | None = None) -> list[str]:
    """Revert the faults that dead runs left open; one line per fault swept.

    ``path`` is a ledger file or a folder of them (``<report-dir>/.clover``). A ledger whose owner still
    runs (another pytest, an xdist sibling) is left alone. With ``backend``, every open fault is reverted
    on it; without, each goes back on the mesh it was injected in when that mesh still runs (a
    ``--clover-keep-mesh`` or ``clover up`` mesh), and is dropped when that mesh is gone (it took its
    faults with it). A fault that cannot be reverted stays in a ledger for the next sweep.
    """
    root = Path(path)
    files = sorted(root.glob("*.jsonl*")) if root.is_dir() else [root]
    messages: list[str] = []
    for file in files:
        if ".sweeping-" in file.name:
            pid = file.name.rsplit(".sweeping-", 1)[1]
            if pid.isdigit() and _process_start(int(pid)) is not None:
                continue  # another process is sweeping it right now
        owner, _ = read_ledger(file)
        if owner and _owner_alive(owner):
            continue
        claimed = file.with_name(f"{file.name.split('.sweeping-')[0]}.sweeping-{os.getpid()}")
        try:
            os.replace(file, claimed)
        except FileNotFoundError:
            continue  # someone else claimed it first
        _, entries = read_ledger(claimed)
        left: list[dict[str, Any]] = []
        connected: dict[str, Backend | None] = {}
        for entry in reversed(entries):
            record = entry.get("mesh") or {}
            what = f"{entry.get('description', entry.get('kind', 'fault'))}"
            if not entry.get("revert"):
                messages.append(f"{what}: nothing to revert")
                continue
            target = backend
            if target is None:
                key = json.dumps(record, sort_keys=True)
                if key not in connected:
                    try:
                        connected[key] = connect_backend(record)
                    except CloverError:
                        connected[key] = None
                target = connected[key]
            if target is None:
                messages.append(f"{what}: its {_mesh_text(record)} no longer runs; nothing left to revert")
                continue
            try:
                revert_entry(target, entry)
            except CloverError as exc:
                messages.append(f"{what}: could not be reverted ({exc}); kept for the next sweep")
                left.append(entry)
                continue
            messages.append(f"{what}: reverted on the {_mesh_text(record)}")
        if left:
            # No owner line: whoever sweeps next takes them.
            with open(file.with_name(file.name.split(".sweeping-")[0]), "a", encoding="utf-8") as out:
                for entry in reversed(left):
                    out.write(json.dumps(entry, sort_keys=True) + "\n")
        with contextlib.suppress(FileNotFoundError):
            claimed.unlink()
    return messages


# --------------------------------------------------------------------------- the fixture object


def _percent_text(percent: float) -> str:
    return f"{percent:g}%"


class Faults:
    """The ``faults`` fixture: inject faults into the mesh, each returning a handle; all reverted at the end."""

    def __init__(
        self,
        backend: Backend,
        *,
        ledger: Ledger | None = None,
        timeline: Timeline | None = None,
        mesh: Mapping[str, Any] | None = None,
        verify_timeout: float | None = None,
        base_dir: Path | None = None,
        dry_run: bool = False,
    ) -> None:
        self.backend = backend
        self.dry_run = dry_run
        """``--clover-dry-run``: every fault is recorded on the timeline and reverted as usual, but the mesh is
        never touched (nothing injected, killed or scaled) and nothing is verified."""
        self.ledger = ledger
        self.timeline = timeline
        self.mesh = dict(mesh) if mesh is not None else mesh_record(backend)
        self.verify_timeout = verify_timeout
        """Seconds every check may poll, overriding each kind's default (delay/abort 10 s, kill/scale 30 s);
        also caps the automatic check after the test body. None: the defaults."""
        self.base_dir = base_dir
        self.handles: list[FaultHandle] = []
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self):x}"
        self._lock = threading.RLock()

    def _next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    # -- the faults

    def delay(
        self,
        service: str,
        delay: str,
        *,
        percent: float = 100.0,
        headers: Mapping[str, str] | None = None,
        subset: str | None = None,
        source_labels: Mapping[str, str] | None = None,
    ) -> HttpFault:
        """Delay ``percent`` % of the requests callers send to ``service`` by ``delay`` (e.g. ``"300ms"``).

        ``headers``: only requests with these header values; ``source_labels``: only requests from pods with
        these labels; ``subset``: only the routes sending traffic to that subset."""
        what = f"delay {delay} {_percent_text(percent)} on {service}" + _scope(headers, subset, source_labels)
        fault = HttpFault(
            self,
            "delay",
            service,
            what,
            delay=delay,
            percent=percent,
            headers=dict(headers or {}),
            subset=subset,
            source_labels=dict(source_labels or {}),
        )
        return self._start(fault)

    def abort(
        self,
        service: str,
        status: int = 503,
        *,
        percent: float = 100.0,
        headers: Mapping[str, str] | None = None,
        subset: str | None = None,
        source_labels: Mapping[str, str] | None = None,
    ) -> HttpFault:
        """Answer ``percent`` % of the requests callers send to ``service`` with ``status`` (not retried).

        Scoped like :meth:`delay`."""
        what = f"abort {status} {_percent_text(percent)} on {service}" + _scope(headers, subset, source_labels)
        fault = HttpFault(
            self,
            "abort",
            service,
            what,
            abort_status=status,
            percent=percent,
            headers=dict(headers or {}),
            subset=subset,
            source_labels=dict(source_labels or {}),
        )
        return self._start(fault)

    def kill(
        self, service: str, *, count: int | None = None, percent: float | None = None, grace: float = 0.0
    ) -> KillFault:
        """Kill pods of ``service`` (one by default); their Deployment replaces them."""
        if count is not None and percent is not None:
            raise BackendError("give count= or percent=, not both")
        amount = f"{count} pods" if count is not None else (f"{percent:g}% of pods" if percent is not None else "1 pod")
        what = f"kill {amount} of {service}" + (f" (grace {grace:g} s)" if grace else "")
        return self._start(KillFault(self, service, count, percent, grace, what))

    def scale(self, deployment: str, replicas: int) -> ScaleFault:
        """Set ``deployment``'s replicas; reverted to the previous count."""
        if replicas < 0:
            raise BackendError(f"replicas must be 0 or more, got {replicas}")
        return self._start(ScaleFault(self, deployment, replicas, f"scale {deployment} to {replicas}"))

    def shift(self, service: str, weights: Mapping[str, int]) -> ShiftFault:
        """Split ``service``'s default routes across subsets, e.g. ``{"v1": 80, "v2": 20}``."""
        return self._start(ShiftFault(self, service, weights, f"shift {service} to {_split_text(weights)}"))

    def apply(self, path: str | os.PathLike[str]) -> ApplyFault:
        """Apply Istio YAML from a file (relative to the rootdir when not found from here)."""
        p = Path(path)
        if not p.is_absolute() and not p.exists() and self.base_dir is not None:
            p = self.base_dir / p
        docs = read_istio_file(p)
        names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        return self._start(ApplyFault(self, docs, f"apply {p.name} ({names})"))

    # -- machinery

    def _start(self, handle: H) -> H:
        with self._lock:
            if self.dry_run:
                handle.active = True
                handle.detail = "dry run: not injected"
                self.handles.append(handle)
                if self.timeline is not None:
                    self.timeline.add(
                        "fault-start",
                        handle.description,
                        fault=handle.kind,
                        id=handle.id,
                        target=handle.target,
                        dry=True,
                    )
                return handle
            handle._prepare()
            record = handle._revert_record()
            if record is not None and self.ledger is not None:
                self.ledger.open(handle.id, handle.kind, handle.description, self.mesh, record)
            try:
                handle._inject()
            except CloverError:
                # The backend refused it: nothing changed.
                if self.ledger is not None:
                    self.ledger.close(handle.id)
                raise
            except BaseException:
                # Interrupted mid-way (Ctrl-C): it may be in force, so it is reverted like any other.
                handle.active = True
                self.handles.append(handle)
                raise
            handle.active = True
            self.handles.append(handle)
            if self.timeline is not None:
                self.timeline.add(
                    "fault-start", handle.description, fault=handle.kind, id=handle.id, target=handle.target
                )
            return handle

    def _revert(self, handle: FaultHandle) -> None:
        with self._lock:
            if not handle.active:
                return
            if self.dry_run:
                handle.active = False
                if self.timeline is not None:
                    self.timeline.add("fault-end", handle.description, fault=handle.kind, id=handle.id, dry=True)
                return
            handle._snapshot_before_revert()
            later: list[IstioFault] = []
            if isinstance(handle, IstioFault):
                index = self.handles.index(handle)
                later = [
                    h
                    for h in self.handles[index + 1 :]
                    if isinstance(h, IstioFault) and h.active and h.touches & handle.touches
                ]
            # Faults injected later on the same objects are taken off, then put back on top of the
            # restored objects: reverting a delay keeps an abort injected after it.
            for other in reversed(later):
                other._undo()
            handle._undo()
            handle.active = False
            if self.ledger is not None:
                self.ledger.close(handle.id)
            if self.timeline is not None:
                self.timeline.add("fault-end", handle.description, fault=handle.kind, id=handle.id)
            for other in later:
                other._prepare()
                record = other._revert_record()
                if record is not None and self.ledger is not None:
                    self.ledger.open(other.id, other.kind, other.description, self.mesh, record)
                other._inject()

    def revert_all(self) -> None:
        """Revert every fault still in force, newest first; each is attempted whatever the others do."""
        errors: list[BaseException] = []
        for handle in reversed(list(self.handles)):
            try:
                handle.revert()
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            where = f"; they stay in the ledger {self.ledger.path}" if self.ledger is not None else ""
            raise BackendError(
                f"{len(errors)} faults could not be reverted{where}: " + "; ".join(str(e) for e in errors)
            ) from errors[0]

    def check_effects(self) -> None:
        """Verify every fault not yet verified (the automatic check after the test body)."""
        __tracebackhide__ = True
        if self.dry_run:
            return
        problems = []
        for handle in self.handles:
            if handle.verified:
                continue
            cap = self.verify_timeout
            try:
                handle.verify(timeout=handle.auto_timeout if cap is None else min(handle.auto_timeout, cap))
            except FaultInconclusive as exc:
                problems.append(str(exc))
        if problems:
            noun = "fault was" if len(problems) == 1 else "faults were"
            raise FaultInconclusive(f"{len(problems)} {noun} never seen to take effect:\n  " + "\n  ".join(problems))

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"description": h.description, "kind": h.kind, "verified": h.verified, "detail": h.detail}
            for h in self.handles
        ]


def _scope(
    headers: Mapping[str, str] | None, subset: str | None, source_labels: Mapping[str, str] | None = None
) -> str:
    parts = []
    if headers:
        parts.append("requests with " + ", ".join(f"{k}={v}" for k, v in headers.items()))
    if source_labels:
        parts.append("from pods " + ",".join(f"{k}={v}" for k, v in source_labels.items()))
    if subset:
        parts.append(f"subset {subset}")
    return f" ({'; '.join(parts)})" if parts else ""
