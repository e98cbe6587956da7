"""Fault handles: one per fault a test injects, each able to inject, verify and revert itself.

A handle is a context manager; leaving the block, ``.revert()`` (idempotent) or the end of the test puts the
mesh back. ``.verify()`` polls until the fault's effect is seen in the data plane, not just accepted by the
control plane: Envoy's fault counters moved (delay, abort), the killed pods are gone and replaced (kill), a
caller's Envoy holds the new number of endpoints (scale) or the new route weights (shift), the objects are in
force (apply). When the effect is not seen it raises :class:`~pytest_clover.errors.FaultInconclusive`: nothing
can be concluded about resilience to a fault that did not happen.

Handles are made by :class:`~pytest_clover.faults.injector.Faults`, which orders, records and reverts them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..backends.protocol import PodInfo
from ..envoy.stats import FAULT_KINDS
from ..envoy.views import endpoint_count, fault_counts_by_pod, route_weights
from ..errors import BackendError, FaultInconclusive, InvalidFault, MeshNotRunning, ReadinessTimeout
from ..istio.documents import fault_document, shift_document
from .istio import restore_object

if TYPE_CHECKING:
    from .injector import Faults

__all__ = [
    "ApplyFault",
    "FaultHandle",
    "HttpFault",
    "IstioFault",
    "KillFault",
    "ScaleFault",
    "ShiftFault",
    "split_text",
]

POLL_SECONDS = 0.2
"""Pause between two looks at the data plane while a check waits for a fault's effect."""


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
        return ""

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
            except MeshNotRunning:
                raise  # no point looking again: the mesh is gone, and the test says so at once
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
            except MeshNotRunning as exc:
                self._final = (False, f"the mesh is not running: {exc}")
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
            restore_object(self._faults.backend, kind, name, doc)

    def _revert_record(self) -> dict[str, Any] | None:
        return {"restore": [{"kind": k, "name": n, "doc": d} for k, n, d in self.before]}


class _ServiceTarget:
    """A fault on one service: that service is its target."""

    service: str

    @property
    def target(self) -> str:
        return self.service


class HttpFault(_ServiceTarget, IstioFault):
    """A delay or an abort merged into the service's VirtualService; verified by Envoy's fault counters."""

    default_timeout = 10.0
    auto_timeout = 1.0

    def __init__(self, faults: Faults, kind: str, service: str, description: str, **fault: Any) -> None:
        super().__init__(faults, description)
        self.kind = kind
        self.service = service
        self.fault = fault
        self.baseline: dict[str, int] | None = None

    def _documents(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [fault_document(objects, self.service, **self.fault)]

    def _inject(self) -> None:
        if self.baseline is None:  # not again when put back on top of a reverted fault: keep what was seen
            self.baseline = fault_counts_by_pod(self._faults.backend, self.kind)
        super()._inject()

    def _check(self) -> tuple[bool, str]:
        now = fault_counts_by_pod(self._faults.backend, self.kind)
        base = self.baseline or {}
        moved = sum(max(0, value - base.get(pod, 0)) for pod, value in now.items())
        verb = "delayed" if self.kind == "delay" else "aborted"
        if moved:
            stat = f"http.*.fault.{FAULT_KINDS[self.kind]}"
            return True, f"{moved} requests {verb} since injection (Envoy's {stat}, {len(now)} pods)"
        return False, f"Envoy's http.*.fault.{FAULT_KINDS[self.kind]} did not move in any of {len(now)} pods"

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


class ShiftFault(_ServiceTarget, IstioFault):
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
            return True, f"{caller}'s Envoy routes {self.service} as {split_text(expected)}"
        shown = "; ".join(split_text(s) for s in seen) or "no route"
        return False, f"{caller}'s Envoy routes {self.service} as {shown}, not {split_text(expected)}"


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


class KillFault(_ServiceTarget, FaultHandle):
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
        # The killed service's replacements, not the whole mesh: another service whose readiness flaps under load
        # (a saturated proxy in an hour-long soak) is the run's to judge, and must not fail this revert.
        timeout = max(self.default_timeout, 60.0)
        deadline = time.monotonic() + timeout
        while True:
            ok, detail = self._check()
            if ok:
                return
            if time.monotonic() >= deadline:
                raise ReadinessTimeout(f"{self.service} not back after the kill within {timeout:.0f} s: {detail}")
            time.sleep(POLL_SECONDS)

    def _check(self) -> tuple[bool, str]:
        pods = self._faults.backend.pods()
        alive = [p.name for p in pods if p.name in self.killed and p.phase != "Terminating"]
        ready = [p for p in self._ready(pods) if p.name not in self.killed]
        if alive:
            return False, f"still running: {', '.join(alive)}"
        if len(ready) < self.ready_before:
            return False, f"{len(ready)} of {self.ready_before} pods of {self.service} ready after the kill"
        return True, f"{', '.join(self.killed)} gone; {len(ready)} pods of {self.service} ready"


class ScaleFault(_ServiceTarget, FaultHandle):
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
        desired = backend.desired_replicas()
        if self.deployment not in desired:
            raise InvalidFault(
                f"no Deployment {self.deployment!r}; Deployments: {', '.join(sorted(desired)) or 'none'}"
            )
        self.previous = desired[self.deployment]

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


def split_text(split: Mapping[str, int]) -> str:
    return "/".join(f"{k or '(all)'} {v}" for k, v in split.items()) or "(none)"
