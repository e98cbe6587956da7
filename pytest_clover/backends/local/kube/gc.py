"""Garbage collection and namespace deletion, as Kubernetes' garbage collector and namespace controller do them.

- **Owners and dependents** (``metadata.ownerReferences``): when an object goes, the dependents none of whose
  owners remain go too (``Background`` propagation, the default). ``Foreground`` keeps the owner, with a
  ``deletionTimestamp`` and the ``foregroundDeletion`` finalizer, until its dependents are gone; ``Orphan``
  removes the references to it from its dependents, which stay.
- **Namespaces**: deleting one marks it ``Terminating`` (``status.phase``, ``metadata.deletionTimestamp``),
  deletes everything in it (pods gracefully), then removes it. Creating in it meanwhile is refused by the
  server (403). The store only sets a deletionTimestamp on an object that keeps a finalizer, so a
  terminating namespace also carries ``kubernetes`` in ``metadata.finalizers`` (Kubernetes keeps it in
  ``spec.finalizers`` only) until it goes.

The collector follows the store's watch streams, so objects removed by anyone (a controller of the mesh, the
kubelet finishing a pod's graceful deletion, a finalizer cleared by an update) are collected as well as those
deleted through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from . import resources as res
from .errors import ApiError
from .hooks import ClusterHooks
from .resources import Resource
from .store import Store

__all__ = [
    "FOREGROUND_FINALIZER",
    "NAMESPACE_FINALIZER",
    "GarbageCollector",
    "default_namespace",
    "is_terminating",
    "new_namespace",
    "pod_grace_period",
]

log = logging.getLogger("pytest_clover.kube.gc")

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
NAMESPACE_FINALIZER = "kubernetes"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
DEFAULT_POD_GRACE = 30
MAX_GRACE_SECONDS = 100 * 365 * 24 * 3600
"""A longer grace period is this one: the deletion deadline must stay a date the platform can write."""
RECHECK_SECONDS = 1.0
"""How often a pending namespace deletion looks again without being woken."""
IDLE_WAIT_SECONDS = 60.0
"""How long a follower sleeps without events (it wakes at once for one; stop() cancels it)."""


def new_namespace(name: str) -> dict[str, Any]:
    """A Namespace object as kube-apiserver stores a new one."""
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    default_namespace(obj)
    return obj


def default_namespace(obj: dict[str, Any]) -> None:
    """Kubernetes' defaults for a Namespace being created: its name label, the ``kubernetes`` finalizer in
    ``spec.finalizers``, ``status.phase: Active``."""
    metadata = obj.setdefault("metadata", {})
    name = metadata.get("name")
    if isinstance(name, str) and name:
        labels = metadata.get("labels")
        if not isinstance(labels, dict):
            labels = metadata["labels"] = {}
        labels[NAMESPACE_LABEL] = name
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    spec["finalizers"] = [NAMESPACE_FINALIZER]
    obj["status"] = {"phase": "Active"}


def is_terminating(namespace: dict[str, Any]) -> bool:
    """Whether a Namespace object is being deleted."""
    status = namespace.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    return phase == "Terminating" or bool((namespace.get("metadata") or {}).get("deletionTimestamp"))


def pod_grace_period(pod: dict[str, Any], requested: int | None) -> int:
    """The grace period a pod deletion gets: the request's, else the pod's ``terminationGracePeriodSeconds``
    (30); 0 for a pod no node runs (unscheduled) or that has finished, as the pod strategy decides."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return min(max(requested, 0), MAX_GRACE_SECONDS)
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and not isinstance(grace, bool) and grace >= 0:
        return min(grace, MAX_GRACE_SECONDS)
    return DEFAULT_POD_GRACE


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _owner_uids(obj: dict[str, Any]) -> list[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(r.get("uid")) for r in refs if isinstance(r, dict) and r.get("uid")]


class GarbageCollector:
    """Deletes dependents whose owners are gone and finishes namespace and foreground deletions.

    :meth:`delete` and :meth:`delete_namespace` are the server's way in; :meth:`start` follows the store so
    that removals from anywhere are collected."""

    def __init__(self, store: Store, hooks: ClusterHooks) -> None:
        self.store = store
        self.hooks = hooks
        self._tasks: list[asyncio.Task[None]] = []
        self._namespaces: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event() if _has_loop() else None
        self._running = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Follow every resource's changes (from now on) on the running loop."""
        if self._running:
            return
        self._running = True
        self._changed = asyncio.Event()
        for resource in res.STORED_RESOURCES:
            self._tasks.append(asyncio.create_task(self._follow(resource), name=f"gc {resource.key}"))
        # Namespaces left terminating (e.g. stored before a restart of the server) are finished too.
        for namespace in self.store.list("/namespaces", None).items:
            if is_terminating(namespace):
                self._finish_namespace_later(namespace["metadata"]["name"])

    async def stop(self) -> None:
        """Stop following; pending namespace deletions stop where they are."""
        self._running = False
        tasks = [*self._tasks, *self._namespaces.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._namespaces.clear()

    def poke(self) -> None:
        """Something changed that a pending deletion may wait for: look again now."""
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ deletion requests

    async def delete(
        self,
        resource: Resource,
        old: dict[str, Any],
        *,
        propagation: str,
        grace_period_seconds: int | None,
        dry_run: bool,
        preconditions: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Delete ``old`` with ``propagation`` (Background, Foreground, Orphan). Returns the object and whether
        it is gone now (else it stays with a ``deletionTimestamp``: finalizers, a pod's grace period)."""
        metadata = old.get("metadata") or {}
        namespace = metadata.get("namespace") if resource.namespaced else None
        name = str(metadata.get("name"))
        if dry_run:
            return self.store.delete(
                resource.key, namespace, name, preconditions=preconditions,
                grace_period_seconds=grace_period_seconds, dry_run=True,
            )
        if propagation == "Orphan":
            await self._orphan_dependents(old)
        elif propagation == "Foreground" and not metadata.get("deletionTimestamp"):
            finalizers = list(metadata.get("finalizers") or [])
            if FOREGROUND_FINALIZER not in finalizers:
                updated = _copy(old)
                updated["metadata"]["finalizers"] = [*finalizers, FOREGROUND_FINALIZER]
                self.store.update(resource.key, updated)
        obj, deleted_now = self.store.delete(
            resource.key, namespace, name, preconditions=preconditions, grace_period_seconds=grace_period_seconds
        )
        # As Kubernetes' garbage collector, the dependents go after the answer, not before it.
        if deleted_now:
            await self._later(self.collect_dependents(obj))
        elif FOREGROUND_FINALIZER in ((obj.get("metadata") or {}).get("finalizers") or []):
            await self._later(self._foreground(resource, obj))
        return obj, deleted_now

    async def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background while the collector runs (else now: nobody would run it later)."""
        if not self._running:
            await work
            return
        task = asyncio.create_task(self._logged(work))
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("garbage collection failed")

    async def delete_namespace(self, namespace: dict[str, Any], *, dry_run: bool) -> tuple[dict[str, Any], bool]:
        """Mark ``namespace`` Terminating and have its content deleted, then the namespace itself."""
        name = str(namespace["metadata"]["name"])
        if is_terminating(namespace):
            return namespace, False
        updated = _copy(namespace)
        updated["status"] = {**(updated.get("status") or {}), "phase": "Terminating"}
        updated["metadata"].pop("resourceVersion", None)
        if dry_run:
            updated["metadata"]["deletionTimestamp"] = _now()
            return updated, False
        self.store.update("/namespaces", updated, subresource="status")
        marked = self._mark_deleting("/namespaces", None, name)
        self._finish_namespace_later(name)
        return marked, False

    def _mark_deleting(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Give an object a deletionTimestamp while it stays (a namespace while its content goes): deleted with
        a finalizer of ours present, which :meth:`_release` removes at the end."""
        obj = self.store.get(key, namespace, name)
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if NAMESPACE_FINALIZER not in finalizers:
            obj["metadata"]["finalizers"] = [*finalizers, NAMESPACE_FINALIZER]
            self.store.update(key, obj)
        marked, _ = self.store.delete(key, namespace, name)
        return marked

    def _release(self, key: str, namespace: str | None, name: str, finalizer: str) -> None:
        """Remove ``finalizer`` from an object being deleted: the store removes it once none remain."""
        try:
            obj = self.store.get(key, namespace, name)
        except ApiError:
            return
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return
        finalizers.remove(finalizer)
        obj["metadata"]["finalizers"] = finalizers
        self.store.update(key, obj)

    # ------------------------------------------------------------------ dependents

    def dependents(self, owner: dict[str, Any]) -> list[tuple[Resource, dict[str, Any]]]:
        """The objects whose ownerReferences name ``owner`` (by uid), in its namespace (every namespace for a
        cluster-scoped owner)."""
        uid = _uid(owner)
        if not uid:
            return []
        owner_namespace = (owner.get("metadata") or {}).get("namespace") or None
        found: list[tuple[Resource, dict[str, Any]]] = []
        for resource in res.STORED_RESOURCES:
            if owner_namespace is not None and not resource.namespaced:
                continue  # a namespaced owner cannot own cluster-scoped objects
            for item in self.store.list(resource.key, owner_namespace if resource.namespaced else None).items:
                if uid in _owner_uids(item):
                    found.append((resource, item))
        return found

    def _owner_exists(self, dependent: dict[str, Any], ref: dict[str, Any]) -> bool:
        resource = res.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if resource is None:
            return True  # an owner of a kind we do not serve: never collect on its account
        namespace = (dependent.get("metadata") or {}).get("namespace") if resource.namespaced else None
        try:
            owner = self.store.get(resource.key, namespace, str(ref.get("name", "")))
        except ApiError:
            return False
        return _uid(owner) == ref.get("uid")

    async def collect_dependents(self, owner: dict[str, Any]) -> None:
        """Delete the dependents of a removed ``owner`` that have no other owner left (Background)."""
        for resource, dependent in self.dependents(owner):
            metadata = dependent.get("metadata") or {}
            if metadata.get("deletionTimestamp"):
                continue
            refs = [r for r in metadata.get("ownerReferences") or [] if isinstance(r, dict)]
            if any(r.get("uid") != _uid(owner) and self._owner_exists(dependent, r) for r in refs):
                continue
            await self._delete_quietly(resource, dependent, "Background")

    async def _delete_quietly(self, resource: Resource, obj: dict[str, Any], propagation: str) -> None:
        metadata = obj.get("metadata") or {}
        grace = pod_grace_period(obj, None) if resource.key == "/pods" else None
        try:
            # The collector's deletions go through admission as a client's would (kube-apiserver's do).
            await self.hooks.admit(resource, "DELETE", None, obj, dry_run=False)
            deleted, _ = await self.delete(
                resource, obj, propagation=propagation, grace_period_seconds=grace, dry_run=False,
                preconditions={"uid": metadata.get("uid")} if metadata.get("uid") else None,
            )
            await self.hooks.committed(resource, "DELETE", deleted)
        except ApiError as exc:
            if exc.code not in (404, 409):
                log.warning("garbage collection of %s %s failed: %s", resource.key, metadata.get("name"), exc)

    async def _orphan_dependents(self, owner: dict[str, Any]) -> None:
        uid = _uid(owner)
        for resource, dependent in self.dependents(owner):
            updated = _copy(dependent)
            refs = [r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                updated["metadata"]["ownerReferences"] = refs
            else:
                updated["metadata"].pop("ownerReferences", None)
            with contextlib.suppress(ApiError):
                stored = self.store.update(resource.key, updated)
                await self.hooks.committed(resource, "UPDATE", stored)

    async def _foreground(self, resource: Resource, owner: dict[str, Any]) -> None:
        """One step of a foreground deletion: delete the dependents; once none blocks, let the owner go."""
        blocking = False
        for dep_resource, dependent in self.dependents(owner):
            metadata = dependent.get("metadata") or {}
            refs = [r for r in metadata.get("ownerReferences") or [] if r.get("uid") == _uid(owner)]
            if any(r.get("blockOwnerDeletion") for r in refs):
                blocking = True
            if not metadata.get("deletionTimestamp"):
                await self._delete_quietly(dep_resource, dependent, "Foreground")
        if blocking:
            # Look again: deleting may have removed them at once.
            blocking = any(
                any(r.get("uid") == _uid(owner) and r.get("blockOwnerDeletion")
                    for r in (d.get("metadata") or {}).get("ownerReferences") or [])
                for _, d in self.dependents(owner)
            )
        if not blocking:
            metadata = owner.get("metadata") or {}
            self._release(resource.key, metadata.get("namespace") if resource.namespaced else None,
                          str(metadata.get("name")), FOREGROUND_FINALIZER)

    # ------------------------------------------------------------------ following the store

    async def _follow(self, resource: Resource) -> None:
        while self._running:
            try:
                watcher = self.store.watch(resource.key, None, resource_version=self.store.resource_version)
            except Exception:
                log.exception("garbage collector cannot watch %s", resource.key)
                return
            try:
                while self._running:
                    event = await watcher.next(IDLE_WAIT_SECONDS)
                    if event is None:
                        continue
                    if event.get("type") == "ERROR":
                        break  # fell behind: watch again from now
                    try:
                        await self._on_event(resource, event)
                    except Exception:
                        log.exception("garbage collection after %s failed", event.get("type"))
            finally:
                watcher.close()

    async def _on_event(self, resource: Resource, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        kind = event.get("type")
        metadata = obj.get("metadata") or {}
        if kind == "DELETED":
            await self.collect_dependents(obj)
            for ref in metadata.get("ownerReferences") or []:
                self._recheck_foreground_owner(obj, ref)
            self.poke()
        elif kind == "ADDED" and metadata.get("ownerReferences"):
            refs = [r for r in metadata["ownerReferences"] if isinstance(r, dict)]
            if refs and not metadata.get("deletionTimestamp") and not any(self._owner_exists(obj, r) for r in refs):
                await self._delete_quietly(resource, obj, "Background")
        elif kind == "MODIFIED" and metadata.get("deletionTimestamp"):
            if FOREGROUND_FINALIZER in (metadata.get("finalizers") or []):
                await self._foreground(resource, obj)
            if resource.key == "/namespaces" and metadata.get("name") not in self._namespaces:
                self._finish_namespace_later(str(metadata.get("name")))
            self.poke()

    def _recheck_foreground_owner(self, dependent: dict[str, Any], ref: Any) -> None:
        if not isinstance(ref, dict):
            return
        resource = res.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if resource is None:
            return
        namespace = (dependent.get("metadata") or {}).get("namespace") if resource.namespaced else None
        try:
            owner = self.store.get(resource.key, namespace, str(ref.get("name", "")))
        except ApiError:
            return
        if FOREGROUND_FINALIZER in (owner["metadata"].get("finalizers") or []) and owner["metadata"].get(
            "deletionTimestamp"
        ):
            task = asyncio.create_task(self._logged(self._foreground(resource, owner)))
            self._tasks.append(task)
            task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    # ------------------------------------------------------------------ namespaces

    def _finish_namespace_later(self, name: str) -> None:
        if name in self._namespaces or not self._running:
            return
        task = asyncio.create_task(self._finish_namespace(name), name=f"delete namespace {name}")
        self._namespaces[name] = task
        task.add_done_callback(lambda _: self._namespaces.pop(name, None))

    def _content(self, namespace: str) -> list[tuple[Resource, dict[str, Any]]]:
        return [
            (resource, item)
            for resource in res.STORED_RESOURCES
            if resource.namespaced
            for item in self.store.list(resource.key, namespace).items
        ]

    async def _finish_namespace(self, name: str) -> None:
        """Delete everything in namespace ``name``, wait until it is empty, then remove the namespace."""
        while self._running:
            content = self._content(name)
            if not content:
                break
            for resource, item in content:
                if not (item.get("metadata") or {}).get("deletionTimestamp"):
                    await self._delete_quietly(resource, item, "Background")
            if not self._content(name):
                break
            assert self._changed is not None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RECHECK_SECONDS)
        if not self._running:
            return
        # Empty: the namespace controller's finalizer (spec.finalizers) goes, then our marker, and with the
        # last finalizer the store removes the namespace.
        try:
            namespace = self.store.get("/namespaces", None, name)
        except ApiError:
            return
        spec = namespace.get("spec") or {}
        if NAMESPACE_FINALIZER in (spec.get("finalizers") or []):
            namespace["spec"] = {**spec, "finalizers": [f for f in spec["finalizers"] if f != NAMESPACE_FINALIZER]}
            with contextlib.suppress(ApiError):
                namespace = self.store.update("/namespaces", namespace)
        self._release("/namespaces", None, name, NAMESPACE_FINALIZER)
        namespaces = res.by_key("/namespaces")
        if namespaces is not None:
            await self.hooks.committed(namespaces, "DELETE", namespace)


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(obj)


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
