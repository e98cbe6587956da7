"""The fault engine: :class:`Faults` (the ``faults`` fixture, the Chaos Toolkit actions, the ``clover`` command)
injects faults as handles, keeps their order, records each in the ledger before it acts, and reverts them all —
newest first, whatever happened.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..backends.protocol import Backend, MeshRecord
from ..errors import CloverError, FaultInconclusive, InvalidFault, MeshNotRunning, RevertFailed
from ..istio.documents import read_istio_file
from ..timeline import Timeline
from .handles import (
    ApplyFault,
    FaultHandle,
    HttpFault,
    IstioFault,
    KillFault,
    ScaleFault,
    ShiftFault,
    split_text,
)
from .istio import require_service
from .ledger import Ledger

__all__ = ["Faults"]

H = TypeVar("H", bound=FaultHandle)


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
        mesh: MeshRecord | None = None,
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
        self.mesh = mesh if mesh is not None else backend.record()
        """Where the ledger says the faults were injected (how a later sweep finds this mesh again)."""
        self.verify_timeout = verify_timeout
        """Seconds every check may poll, overriding each kind's default (delay/abort 10 s, kill/scale 30 s);
        also caps the automatic check after the test body. None: the defaults."""
        self.base_dir = base_dir
        self.handles: list[FaultHandle] = []
        self.unreverted: list[str] = []
        """Faults left in force because the mesh stopped answering (their ledger entries stay open)."""
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
        require_service(self.backend, service)
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
        require_service(self.backend, service)
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
            raise InvalidFault("give count= or percent=, not both")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise InvalidFault(f"count must be a whole number of pods, 1 or more, got {count!r}")
        if percent is not None and (
            isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100
        ):
            raise InvalidFault(f"percent must be more than 0 and at most 100 (a share of the pods), got {percent!r}")
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidFault(f"grace must be 0 or more seconds, got {grace!r}")
        amount = f"{count} pods" if count is not None else (f"{percent:g}% of pods" if percent is not None else "1 pod")
        what = f"kill {amount} of {service}" + (f" (grace {grace:g} s)" if grace else "")
        return self._start(KillFault(self, service, count, percent, grace, what))

    def scale(self, deployment: str, replicas: int) -> ScaleFault:
        """Set ``deployment``'s replicas; reverted to the previous count."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise InvalidFault(f"replicas must be a whole number of 0 or more, got {replicas!r}")
        return self._start(ScaleFault(self, deployment, replicas, f"scale {deployment} to {replicas}"))

    def shift(self, service: str, weights: Mapping[str, int]) -> ShiftFault:
        """Split ``service``'s default routes across subsets, e.g. ``{"v1": 80, "v2": 20}``."""
        require_service(self.backend, service)
        return self._start(ShiftFault(self, service, weights, f"shift {service} to {split_text(weights)}"))

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
                plan: list[str] = []
                plans = getattr(self.backend, "plan", None)
                if getattr(self.backend, "dry_run", False) and isinstance(plans, list):
                    # A backend in dry-run mode changes nothing itself: let it resolve the fault (which pods, which
                    # patch) so that the run lists what it would have done.
                    already = len(plans)
                    handle._prepare()
                    handle._inject()
                    plan = [str(line) for line in plans[already:]]
                handle.active = True
                handle.detail = "dry run: not injected" + (f"; would {'; '.join(plan)}" if plan else "")
                self.handles.append(handle)
                if self.timeline is not None:
                    extra: dict[str, Any] = {"plan": plan} if plan else {}
                    self.timeline.add(
                        "fault-start",
                        handle.description,
                        fault=handle.kind,
                        id=handle.id,
                        target=handle.target,
                        dry=True,
                        **extra,
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
        """Revert every fault still in force, newest first; each is attempted whatever the others do.

        A fault that cannot be reverted because the mesh no longer answers (MeshNotRunning) is not an error of its
        own: the test already says the mesh stopped, and its ledger entry stays for `clover cleanup` or the next
        run, which drop it if the mesh took it with it. Those are listed in ``unreverted``.
        """
        errors: list[BaseException] = []
        for handle in reversed(list(self.handles)):
            try:
                handle.revert()
            except MeshNotRunning as exc:
                handle.active = False
                self.unreverted.append(f"{handle.description}: not reverted, the mesh is not running ({exc})")
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            where = f"; they stay in the ledger {self.ledger.path}" if self.ledger is not None else ""
            raise RevertFailed(
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
