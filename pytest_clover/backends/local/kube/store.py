"""The mesh's object store: etcd and the generic registry logic of kube-apiserver, in memory.

Objects are JSON dicts as Kubernetes sends them; resources are named by ``"<group>/<plural>"`` keys
(``"/pods"``, ``"apps/deployments"``). One counter numbers every write of the store, as etcd's revision does,
and becomes the objects' ``metadata.resourceVersion``. The store is single-threaded: every call comes from
the supervisor's asyncio loop, and watchers are asyncio consumers of :meth:`Store.watch`.

What it does as Kubernetes does: uid / creationTimestamp / generation / generateName on create, metadata
validation (422 with Kubernetes' wording), 409 on a stale ``resourceVersion``, status subresources,
finalizers and graceful deletion, delete preconditions, lists in etcd key order with ``limit``/``continue``
(a continuation reads the snapshot of the first page, 410 once compacted), watches from any resourceVersion
with the watch cache's semantics (synthetic ADDED events, selector transitions as ADDED/DELETED, bookmarks,
``sendInitialEvents``, 410 Expired for a compacted resourceVersion). Stored objects are never changed in
place — every write stores a new dict — so the history can keep references to them.

Resource-specific behaviour (a pod's phase, defaulting, spec validation, garbage collection, namespace
lifecycle) belongs to the callers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import datetime as dt
import json
import marshal
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, Cause
from .selectors import (
    DNS1123_LABEL_FMT,
    FieldSelector,
    LabelSelector,
    dns1123_subdomain_errors,
    go_quote,
    label_key_errors,
    label_value_errors,
    max_len_error,
    regex_error,
)

__all__ = [
    "EVENT_FIELD_GETTERS",
    "POD_FIELD_GETTERS",
    "FieldGetter",
    "ListResult",
    "ResourceInfo",
    "Store",
    "Watcher",
]

FieldGetter = Callable[[dict[str, Any]], str]
# Aliases for annotations inside Store, whose `list` method shadows the builtin there.
_Objects = list[dict[str, Any]]
_Keys = list[str]
_Causes = list[Cause]

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
OPTIMISTIC_LOCK_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"
# Kubernetes' names.SimpleNameGenerator: 5 characters from an alphabet without vowels or look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_BASE = 63 - 5
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def _clone(obj: Any) -> Any:
    """A deep copy of a JSON value (marshal round-trips JSON types about 5× faster than copy.deepcopy)."""
    return marshal.loads(marshal.dumps(obj))


def _path(obj: Mapping[str, Any], *keys: str) -> Any:
    """The value at ``obj[k1][k2]…``, or None when any level is missing or not an object."""
    value: Any = obj
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    """How a field selector sees a value: strings as they are, booleans as Go prints them, None as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _getter(*keys: str) -> FieldGetter:
    return lambda obj: _text(_path(obj, *keys))


def _first_pod_ip(pod: dict[str, Any]) -> str:
    # Kubernetes selects on the first of status.podIPs (status.podIP mirrors it).
    ips = _path(pod, "status", "podIPs")
    if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
        return _text(ips[0].get("ip"))
    return _text(_path(pod, "status", "podIP"))


# The fields kube-apiserver lets a field selector use, beside metadata.name and metadata.namespace.
POD_FIELD_GETTERS: Mapping[str, FieldGetter] = {
    "spec.nodeName": _getter("spec", "nodeName"),
    "spec.restartPolicy": _getter("spec", "restartPolicy"),
    "spec.schedulerName": _getter("spec", "schedulerName"),
    "spec.serviceAccountName": _getter("spec", "serviceAccountName"),
    "spec.hostNetwork": lambda pod: "true" if _path(pod, "spec", "hostNetwork") else "false",
    "status.phase": _getter("status", "phase"),
    "status.podIP": _first_pod_ip,
    "status.nominatedNodeName": _getter("status", "nominatedNodeName"),
}
EVENT_FIELD_GETTERS: Mapping[str, FieldGetter] = {
    "involvedObject.kind": _getter("involvedObject", "kind"),
    "involvedObject.namespace": _getter("involvedObject", "namespace"),
    "involvedObject.name": _getter("involvedObject", "name"),
    "involvedObject.uid": _getter("involvedObject", "uid"),
    "involvedObject.apiVersion": _getter("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": _getter("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": _getter("involvedObject", "fieldPath"),
    "reason": _getter("reason"),
    "reportingComponent": _getter("reportingComponent"),
    "source": _getter("source", "component"),
    "type": _getter("type"),
}


def _now_rfc3339(seconds: float) -> str:
    """Kubernetes' metav1.Time on the wire: RFC 3339, whole seconds, UTC with ``Z``."""
    return dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


# --- name rules (k8s.io/apimachinery/pkg/api/validation) -------------------------------------------------

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character"
)


def _label_errors(value: str, fmt: str, message: str, *examples: str) -> list[str]:
    """A DNS label's problems, in Kubernetes' words: at most 63 bytes, and ``fmt``."""
    errors = []
    if len(value.encode()) > 63:
        errors.append(max_len_error(63))
    if not re.fullmatch(fmt, value):
        errors.append(regex_error(message, fmt, *examples))
    return errors


def _dns1123_label_errors(value: str) -> list[str]:
    return _label_errors(value, DNS1123_LABEL_FMT, _DNS1123_LABEL_MSG, "my-name", "123-abc")


def _dns1035_label_errors(value: str) -> list[str]:
    return _label_errors(value, _DNS1035_FMT, _DNS1035_MSG, "my-name", "abc-123")


def _path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{char}'" for char in "/%" if char in value]


_NAME_RULES: dict[str, Callable[[str], list[str]]] = {
    "subdomain": dns1123_subdomain_errors,
    "label": _dns1123_label_errors,
    "dns1035": _dns1035_label_errors,
    "path-segment": _path_segment_errors,
}


def _name_errors(rule: str, name: str, prefix: bool) -> list[str]:
    """``ValidateNameFunc``: a generateName prefix may end with '-' (Kubernetes masks it before checking)."""
    if prefix and rule != "path-segment" and len(name) > 1 and name.endswith("-"):
        name = name[:-2] + "a"
    return _NAME_RULES[rule](name)


# --- public types ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceInfo:
    """How the store treats one resource (see :meth:`Store.register`)."""

    key: str
    kind: str
    group: str
    plural: str
    namespaced: bool
    api_version: str
    generation: bool = True
    status_subresource: bool = False
    graceful: bool = False
    field_getters: Mapping[str, FieldGetter] = field(default_factory=dict)
    name_rule: str = "subdomain"
    allow_create_on_update: bool = False
    generation_bump: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None

    @property
    def qualified_resource(self) -> str:
        """``pods`` or ``deployments.apps``: how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Pod`` or ``Deployment.apps``: how 422 messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclass(frozen=True)
class ListResult:
    """One page of a list: the items (in etcd key order), the list's resourceVersion, the continue token
    (``""`` on the last page) and, without selectors, how many items remain after this page."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining_item_count: int | None = None


class ExpiredError(ApiError):
    """410 Expired that carries ``metadata.continue`` (the inconsistent continuation Kubernetes offers)."""

    def __init__(self, message: str, continue_token: str = "") -> None:
        super().__init__(410, message)
        self.continue_token = continue_token

    def status(self) -> dict[str, Any]:
        body = super().status()
        if self.continue_token:
            body["metadata"] = {"continue": self.continue_token}
        return body


@dataclass(frozen=True, slots=True)
class _Change:
    """One write in a resource's history. ``obj`` is the stored object after the write (for DELETED: the
    last state, carrying the deletion's resourceVersion); ``prev`` the stored object before it."""

    rv: int
    type: str
    skey: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None


class _Table:
    """The objects of one resource, keyed ``namespace/name`` (or ``name``) as etcd keys sort."""

    def __init__(self, info: ResourceInfo, history: int) -> None:
        self.info = info
        self.objects: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.history: deque[_Change] = deque()
        self.history_limit = history
        # Any resourceVersion >= floor can still be watched from or listed at; older ones are compacted.
        self.floor = 0
        self.watchers: set[Watcher] = set()

    def record(self, change: _Change) -> None:
        self.history.append(change)
        if len(self.history) > self.history_limit:
            self.history.popleft()
            # As the watch cache words it: the oldest retained event's revision minus one.
            self.floor = self.history[0].rv - 1
        for watcher in list(self.watchers):
            watcher._offer(change)

    def changes_after(self, rv: int) -> list[_Change]:
        """The retained changes with a resourceVersion above ``rv``, oldest first."""
        newer: list[_Change] = []
        for change in reversed(self.history):
            if change.rv <= rv:
                break
            newer.append(change)
        newer.reverse()
        return newer


class _Predicate:
    """A watch's or list's selection: namespace, label selector, field selector."""

    def __init__(self, info: ResourceInfo, namespace: str | None, label_selector: str, field_selector: str) -> None:
        self.info = info
        self.namespace = namespace if info.namespaced and namespace else None
        self.labels = LabelSelector.parse(label_selector or "")
        self.fields = FieldSelector.parse(field_selector or "")
        for name in self.fields.fields:
            if name not in ("metadata.name", "metadata.namespace") and name not in info.field_getters:
                raise ApiError(400, f"field label not supported: {name}")

    @property
    def selects_everything(self) -> bool:
        """Whether only the namespace restricts the selection (Kubernetes then counts remaining items)."""
        return self.labels.empty and self.fields.empty

    def matches(self, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        if not self.labels.empty and not self.labels.matches(metadata.get("labels") or {}):
            return False
        if self.fields.empty:
            return True

        def get(name: str) -> str:
            if name == "metadata.name":
                return _text(metadata.get("name"))
            if name == "metadata.namespace":
                return _text(metadata.get("namespace"))
            return self.info.field_getters[name](obj)

        return self.fields.matches(get)


def _with_rv(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    """A shallow-copied object whose ``metadata.resourceVersion`` is ``rv`` (the rest is shared)."""
    out = dict(obj)
    out["metadata"] = dict(obj.get("metadata") or {})
    out["metadata"]["resourceVersion"] = str(rv)
    return out


class Watcher:
    """One watch on a resource. :meth:`next` yields the events as Kubernetes sends them (deep copies);
    after an ERROR event the watch has ended (:attr:`ended`) and :meth:`next` returns None at once."""

    def __init__(
        self,
        store: Store,
        table: _Table,
        predicate: _Predicate,
        start_rv: int,
        allow_bookmarks: bool,
        max_pending: int,
    ) -> None:
        self._store = store
        self._table = table
        self._predicate = predicate
        self._start_rv = start_rv
        self._delivered_rv = start_rv
        self.allow_bookmarks = allow_bookmarks
        self._max_pending = max_pending
        # (type, object, resourceVersion override); objects are stored ones, copied when delivered.
        self._initial: deque[tuple[str, dict[str, Any], int | None]] = deque()
        self._live: deque[tuple[str, dict[str, Any], int | None]] = deque()
        self._wakeup = asyncio.Event()
        self._error: dict[str, Any] | None = None
        self.ended = False
        self.closed = False

    # -- fed by the store --------------------------------------------------------------------------------

    def _offer(self, change: _Change) -> None:
        """Queue ``change`` if it concerns this watch, as the watch cache converts it (cacheWatcher)."""
        if self.closed or self._error is not None or change.rv <= self._start_rv:
            return
        current = change.type != DELETED and self._predicate.matches(change.obj)
        previous = change.prev is not None and self._predicate.matches(change.prev)
        if current and not previous:
            self._live.append((ADDED, change.obj, None))
        elif current and previous:
            self._live.append((MODIFIED, change.obj, None))
        elif previous:
            assert change.prev is not None
            # Leaving the selection (or deleted): the previous content, at the event's resourceVersion.
            source = change.obj if change.type == DELETED else change.prev
            self._live.append((DELETED, source, change.rv))
        else:
            return
        if len(self._live) > self._max_pending:
            self._fail(
                ApiError(
                    410,
                    f"the watch of {self._table.info.qualified_resource} fell behind by more than "
                    f"{self._max_pending} events; start a new watch (list again, then watch)",
                )
            )
        self._wakeup.set()

    def _fail(self, error: ApiError) -> None:
        """End the watch with one ERROR event carrying ``error``'s Status; drop what is queued."""
        self._initial.clear()
        self._live.clear()
        self._error = {"type": ERROR, "object": error.status()}
        self._table.watchers.discard(self)
        self._wakeup.set()

    # -- consumed by the server or a controller ----------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many events are queued and not yet returned by :meth:`next`."""
        return len(self._initial) + len(self._live) + (1 if self._error is not None else 0)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event ``{"type", "object"}``, or None after ``timeout`` seconds without one (or at once
        when the watch has ended or been closed)."""
        if not self.pending and not self.ended and not self.closed:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return None
        return self.poll()

    def poll(self) -> dict[str, Any] | None:
        """The next queued event without waiting, or None."""
        if self.closed or self.ended:
            return None
        queue = self._initial if self._initial else self._live
        if queue:
            kind, obj, rv = queue.popleft()
            if kind == BOOKMARK:
                return {"type": BOOKMARK, "object": _clone(obj)}
            out = _clone(obj)
            if rv is not None:
                out.setdefault("metadata", {})["resourceVersion"] = str(rv)
            self._delivered_rv = max(self._delivered_rv, int(out["metadata"].get("resourceVersion", "0") or 0))
            return {"type": kind, "object": out}
        if self._error is not None:
            error, self._error = self._error, None
            self.ended = True
            return error
        return None

    @property
    def can_bookmark(self) -> bool:
        """Whether :meth:`bookmark` may be sent now: not while the store is below the revision the watch
        started from (a watch from a future resourceVersion), as the watch cache's watcher sends no bookmark
        older than that."""
        return bool(self._initial or self._live or self._error is not None) or self._store._rv >= self._start_rv

    def bookmark(self) -> dict[str, Any]:
        """A BOOKMARK event: every event up to its resourceVersion has been returned by :meth:`next`. The
        server decides when to send one (and only when the client allowed bookmarks and :attr:`can_bookmark`)."""
        if self._initial or (self._error is not None and not self._live):
            rv = self._delivered_rv
        elif self._live:
            # Everything before the first queued event has been delivered.
            _, obj, override = self._live[0]
            rv = (override if override is not None else int(obj["metadata"]["resourceVersion"])) - 1
        else:
            rv = self._store._rv
        return {"type": BOOKMARK, "object": self._bookmark_object(rv)}

    def _bookmark_object(self, rv: int, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        info = self._table.info
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if annotations:
            metadata["annotations"] = dict(annotations)
        return {"kind": info.kind, "apiVersion": info.api_version, "metadata": metadata}

    def close(self) -> None:
        """Stop the watch and forget what is queued."""
        self.closed = True
        self._initial.clear()
        self._live.clear()
        self._table.watchers.discard(self)
        self._wakeup.set()


# --- continue tokens (k8s.io/apiserver/pkg/storage/continue.go) -----------------------------------------


def _encode_continue(start: str, rv: int) -> str:
    body = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """The start key (with ``prefix``) and resourceVersion of a continue token; ApiError 400 if invalid."""

    def invalid(detail: str) -> ApiError:
        return ApiError(400, f"invalid continue token: continue key is not valid{detail}")

    if len(token) % 4 == 1 or any(char not in _URLSAFE_ALPHABET for char in token):
        position = next((i for i, char in enumerate(token) if char not in _URLSAFE_ALPHABET), len(token) - 1)
        raise invalid(f": illegal base64 data at input byte {position}")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise invalid(f": {error}") from None
    if not isinstance(data, dict):
        raise invalid(": json: cannot unmarshal into Go value of type storage.continueToken")
    version = data.get("v")
    if version != "meta.k8s.io/v1":
        raise invalid(f": server does not recognize this encoded version {version or ''}")
    rv = data.get("rv")
    start = data.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise invalid(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise invalid(": encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if not _is_clean_path(key):
        raise invalid(f": {start}")
    return prefix + key[1:], rv


_URLSAFE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _is_clean_path(key: str) -> bool:
    """Whether Go's ``path.Clean`` leaves ``key`` (which starts with '/') unchanged."""
    if key == "/":
        return True
    if key.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in key[1:].split("/"))


def _parse_rv(text: str) -> int:
    """A resourceVersion as Kubernetes' versioner parses it (``""`` and ``"0"`` are 0)."""
    if text in ("", "0"):
        return 0
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def _too_large(rv: int, current: int) -> ApiError:
    return ApiError(
        504,
        f"Timeout: Too large resource version: {rv}, current: {current}",
        causes=(Cause("", "Too large resource version", "ResourceVersionTooLarge"),),
        retry_after_seconds=1,
    )


class Store:
    """The in-memory object store. ``clock`` gives the time (seconds since the epoch) for timestamps;
    ``history`` is how many writes per resource a watch or a continuation can go back (the watch cache's
    capacity; older resourceVersions get 410 Expired); ``max_pending`` bounds a watcher's queue."""

    def __init__(self, clock: Callable[[], float] = time.time, history: int = 5000, max_pending: int = 10000) -> None:
        self._clock = clock
        self._history = history
        self._max_pending = max_pending
        self._tables: dict[str, _Table] = {}
        # A fresh etcd is at revision 1; every write moves the whole store one step.
        self._rv = 1
        # Who waits for the store to reach a revision (wait_for_revision), and which revision.
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- resources ----------------------------------------------------------------------------------------

    def register(
        self,
        key: str,
        *,
        kind: str,
        group: str,
        namespaced: bool,
        api_version: str,
        generation: bool = True,
        status_subresource: bool = False,
        graceful: bool = False,
        field_getters: Mapping[str, FieldGetter] | None = None,
        name_rule: str = "subdomain",
        allow_create_on_update: bool = False,
        generation_bump: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
    ) -> ResourceInfo:
        """Serve resource ``key`` (``"<group>/<plural>"``).

        ``generation``: the objects have ``metadata.generation`` (1 on create, +1 on a change beyond
        metadata and status — or when ``generation_bump(old, new)`` says so). ``status_subresource``: the
        main resource ignores status changes and ``update(..., subresource="status")`` changes only status.
        ``graceful``: a delete with a grace period > 0 only marks the object (pods). ``field_getters``: the
        fields a field selector may use beside ``metadata.name``/``metadata.namespace`` (e.g.
        :data:`POD_FIELD_GETTERS`). ``name_rule``: ``subdomain`` (most), ``label`` (namespaces), ``dns1035``
        (services) or ``path-segment`` (RBAC). ``allow_create_on_update``: PUT creates a missing object."""
        group_part, _, plural = key.partition("/")
        if not plural or group_part != group:
            raise ValueError(f"resource key {key!r} must be '<group>/<plural>' with group {group!r}")
        if name_rule not in _NAME_RULES:
            raise ValueError(f"unknown name rule {name_rule!r}; one of {sorted(_NAME_RULES)}")
        info = ResourceInfo(
            key=key,
            kind=kind,
            group=group,
            plural=plural,
            namespaced=namespaced,
            api_version=api_version,
            generation=generation,
            status_subresource=status_subresource,
            graceful=graceful,
            field_getters=dict(field_getters or {}),
            name_rule=name_rule,
            allow_create_on_update=allow_create_on_update,
            generation_bump=generation_bump,
        )
        existing = self._tables.get(key)
        if existing is not None:
            existing.info = info
        else:
            self._tables[key] = _Table(info, self._history)
        return info

    def is_registered(self, key: str) -> bool:
        """Whether resource ``key`` is served."""
        return key in self._tables

    def info(self, key: str) -> ResourceInfo:
        """How resource ``key`` was registered (KeyError when it was not)."""
        return self._tables[key].info

    @property
    def resources(self) -> _Keys:
        """The registered resource keys."""
        return list(self._tables)

    @property
    def resource_version(self) -> str:
        """The store's current revision (the resourceVersion of its latest write)."""
        return str(self._rv)

    async def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the store has reached ``revision`` (a write has that resourceVersion or a later one), at
        most ``timeout`` seconds; whether it has. What kube-apiserver's watch cache does before it serves a
        read "not older than" a revision it has not seen yet (``waitUntilFreshAndBlock``, 3 s there)."""
        if self._rv >= revision:
            return True
        waiter = (revision, asyncio.get_running_loop().create_future())
        self._revision_waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter[1]), timeout)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._revision_waiters.remove(waiter)
        return self._rv >= revision

    @property
    def revision_waiters(self) -> int:
        """How many reads wait for the store to reach a revision (:meth:`wait_for_revision`)."""
        return len(self._revision_waiters)

    def _wake_revision_waiters(self) -> None:
        for revision, future in self._revision_waiters:
            if revision <= self._rv and not future.done():
                future.set_result(None)

    def _table(self, key: str) -> _Table:
        try:
            return self._tables[key]
        except KeyError:
            raise ApiError(404, "the server could not find the requested resource") from None

    @staticmethod
    def _skey(info: ResourceInfo, namespace: str | None, name: str) -> str:
        return f"{namespace or ''}/{name}" if info.namespaced else name

    # -- reads --------------------------------------------------------------------------------------------

    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        """A deep copy of the object; 404 ApiError when absent."""
        table = self._table(key)
        obj = table.objects.get(self._skey(table.info, namespace, name))
        if obj is None:
            raise ApiError.not_found(table.info.plural, name, table.info.group)
        result: dict[str, Any] = _clone(obj)
        return result

    def exists(self, key: str, namespace: str | None, name: str) -> bool:
        """Whether the object is stored (e.g. to answer 201 rather than 200 to an update that creates)."""
        table = self._table(key)
        return self._skey(table.info, namespace, name) in table.objects

    def count(self, key: str, namespace: str | None = None) -> int:
        """How many objects of ``key`` are stored (in ``namespace`` when given)."""
        table = self._table(key)
        if namespace is None or not table.info.namespaced:
            return len(table.objects)
        low, high = self._range(table, f"{namespace}/", f"{namespace}/")
        return high - low

    @staticmethod
    def _range(table: _Table, prefix: str, start: str) -> tuple[int, int]:
        """The slice of ``table.order`` holding keys with ``prefix`` from ``start`` on."""
        low = bisect.bisect_left(table.order, max(start, prefix))
        # Keys are ASCII (names and namespaces are validated), so U+FFFF sorts after all of them.
        high = bisect.bisect_left(table.order, prefix + "\uffff") if prefix else len(table.order)
        return low, max(low, high)

    def list(
        self,
        key: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        copy: bool = True,
    ) -> ListResult:
        """The objects of ``key`` (in ``namespace``, or all namespaces when None) that the selectors select,
        in etcd key order (``namespace/name``).

        ``limit``/``continue_token``: paging as Kubernetes does it — every page shows the store as it was
        for the first page (410 Expired once that revision is compacted, with an inconsistent continuation
        in ``metadata.continue``); ``remaining_item_count`` only without selectors.
        ``resource_version``/``resource_version_match``: ``""``/None is the latest; ``"0"`` any — the
        latest, whole (the watch cache ignores the limit then); ``N`` with ``Exact`` (or a legacy ``N`` with
        a limit) the state at N (410 when compacted); ``N`` with ``NotOlderThan`` (or legacy) the latest
        (504 when N is in the future).

        The items are deep copies; ``copy=False`` returns the stored objects themselves, which must then be
        read-only (serialize them; never change them, not even at the top level): a LIST of 50 pods costs
        ~20 µs that way against ~0.3–0.6 ms with copies."""
        table = self._table(key)
        info = table.info
        predicate = _Predicate(info, namespace, label_selector, field_selector)
        prefix = f"{namespace}/" if info.namespaced and namespace else ""
        if limit is not None and limit <= 0:
            limit = None
        if resource_version == "0" and not continue_token:
            # The watch cache serves resourceVersion=0 lists whole: it ignores the limit.
            limit = None
        start = prefix
        read_rv = self._rv
        if continue_token:
            start, token_rv = _decode_continue(continue_token, prefix)
            if resource_version not in (None, "", "0"):
                raise ApiError(400, "specifying resource version is not allowed when using continue")
            if token_rv > 0:
                read_rv = token_rv
                if token_rv < table.floor:
                    raise ExpiredError(
                        "The provided continue parameter is too old to display a consistent list result. You can "
                        "start a new list without the continue parameter, or use the continue token in this "
                        "response to retrieve the remainder of the results. Continuing with the provided token "
                        "results in an inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in the list.",
                        _encode_continue(start[len(prefix) :], -1),
                    )
        elif resource_version not in (None, ""):
            try:
                wanted = _parse_rv(resource_version)
            except ValueError as error:
                raise ApiError(
                    400,
                    f"invalid resource version: resourceVersion: Invalid value: {go_quote(resource_version)}: {error}",
                ) from None
            match = resource_version_match or ""
            if match not in ("", "Exact", "NotOlderThan"):
                raise ApiError(400, f"unknown ResourceVersionMatch value: {match}")
            exact = match == "Exact" or (match == "" and limit is not None and wanted > 0)
            if wanted > self._rv:
                raise _too_large(wanted, self._rv)
            if exact and wanted > 0:
                if wanted < table.floor:
                    raise ApiError(410, "The resourceVersion for the provided list is too old.")
                read_rv = wanted

        keys, objects = self._snapshot(table, prefix, start, read_rv)
        items: _Objects = []
        last_key = ""
        more = False
        scanned = 0
        for skey in keys:
            if limit is not None and len(items) >= limit:
                more = True
                break
            scanned += 1
            obj = objects(skey)
            last_key = skey
            if predicate.matches(obj):
                items.append(obj)
        token = ""
        remaining: int | None = None
        if more:
            token = _encode_continue(last_key[len(prefix) :] + "\x00", read_rv)
            if predicate.selects_everything:
                remaining = len(keys) - scanned
        if copy:
            items = [_clone(item) for item in items]
        return ListResult(items, str(read_rv), token, remaining)

    def _snapshot(
        self, table: _Table, prefix: str, start: str, rv: int
    ) -> tuple[_Keys, Callable[[str], dict[str, Any]]]:
        """The keys from ``start`` with ``prefix`` as they were at revision ``rv``, and their objects."""
        low, high = self._range(table, prefix, start)
        if rv >= self._rv or not table.history or table.history[-1].rv <= rv:
            return table.order[low:high], table.objects.__getitem__
        # Undo the later writes: the oldest change after rv tells each key's state at rv.
        before: dict[str, dict[str, Any] | None] = {}
        for change in reversed(table.changes_after(rv)):
            before[change.skey] = change.prev
        lower = max(start, prefix)
        keys = [skey for skey in table.order[low:high] if skey not in before]
        keys.extend(
            skey
            for skey, obj in before.items()
            if obj is not None and skey >= lower and (not prefix or skey.startswith(prefix))
        )
        keys.sort()

        def lookup(skey: str) -> dict[str, Any]:
            old = before.get(skey)
            return old if old is not None else table.objects[skey]

        return keys, lookup

    # -- writes -------------------------------------------------------------------------------------------

    def _write(
        self, table: _Table, kind: str, skey: str, obj: dict[str, Any] | None, prev: dict[str, Any] | None
    ) -> int:
        """Commit one write at the next revision; notify the watchers. Returns the revision."""
        self._rv += 1
        rv = self._rv
        if self._revision_waiters:
            self._wake_revision_waiters()
        if kind == DELETED:
            assert prev is not None
            del table.objects[skey]
            index = bisect.bisect_left(table.order, skey)
            del table.order[index]
            stored = _with_rv(prev, rv)
        else:
            assert obj is not None
            obj["metadata"]["resourceVersion"] = str(rv)
            if prev is None:
                bisect.insort(table.order, skey)
            table.objects[skey] = obj
            stored = obj
        table.record(_Change(rv, kind, skey, stored, prev))
        return rv

    def _validate_metadata(self, info: ResourceInfo, obj: dict[str, Any]) -> _Causes:
        """``ValidateObjectMeta``: name, generateName, namespace, labels, annotations, finalizers."""
        metadata = obj["metadata"]
        causes: _Causes = []

        def invalid(path: str, value: Any, detail: str) -> None:
            shown = go_quote(value) if isinstance(value, str) else json.dumps(value)
            causes.append(Cause(path, f"Invalid value: {shown}: {detail}"))

        generate_name = metadata.get("generateName") or ""
        if generate_name:
            for message in _name_errors(info.name_rule, generate_name, True):
                invalid("metadata.generateName", generate_name, message)
        name = metadata.get("name") or ""
        if not name:
            causes.append(
                Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
            )
        else:
            for message in _name_errors(info.name_rule, name, False):
                invalid("metadata.name", name, message)
            if info.name_rule != "path-segment":
                for message in _path_segment_errors(name):
                    invalid("metadata.name", name, message)
        if info.namespaced:
            namespace = metadata.get("namespace") or ""
            if not namespace:
                causes.append(Cause("metadata.namespace", "Required value", "FieldValueRequired"))
            else:
                for message in _dns1123_label_errors(namespace):
                    invalid("metadata.namespace", namespace, message)
        generation = metadata.get("generation")
        if isinstance(generation, int) and generation < 0:
            invalid("metadata.generation", generation, "must be greater than or equal to 0")
        labels = metadata.get("labels") or {}
        if isinstance(labels, Mapping):
            for label_key, label_value in labels.items():
                for message in label_key_errors(str(label_key)):
                    invalid("metadata.labels", str(label_key), message)
                for message in label_value_errors(str(label_value)):
                    invalid("metadata.labels", str(label_value), message)
        annotations = metadata.get("annotations") or {}
        if isinstance(annotations, Mapping):
            size = 0
            for annotation_key, annotation_value in annotations.items():
                for message in label_key_errors(str(annotation_key).lower()):
                    invalid("metadata.annotations", str(annotation_key), message)
                size += len(str(annotation_key)) + len(str(annotation_value))
            if size > _TOTAL_ANNOTATION_SIZE_LIMIT:
                causes.append(
                    Cause(
                        "metadata.annotations",
                        f"Too long: may not be more than {_TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                        "FieldValueTooLong",
                    )
                )
        finalizers = metadata.get("finalizers") or []
        if isinstance(finalizers, list):
            for finalizer in finalizers:
                for message in label_key_errors(str(finalizer)):
                    invalid("metadata.finalizers", str(finalizer), message)
            if "orphan" in finalizers and "foregroundDeletion" in finalizers:
                invalid(
                    "metadata.finalizers",
                    finalizers,
                    "finalizer orphan and foregroundDeletion cannot be both set",
                )
        return causes

    def _generate_name(self, table: _Table, namespace: str | None, base: str) -> str:
        base = base[:_MAX_GENERATED_BASE]
        while True:
            name = base + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            if self._skey(table.info, namespace, name) not in table.objects:
                return name

    def _place_namespace(self, info: ResourceInfo, metadata: dict[str, Any], namespace: str | None) -> None:
        """``EnsureObjectNamespaceMatchesRequestNamespace``: the request's namespace wins over an empty one."""
        if not info.namespaced:
            metadata.pop("namespace", None)
            return
        body_namespace = metadata.get("namespace") or ""
        if namespace:
            if body_namespace and body_namespace != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace

    def create(
        self,
        key: str,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        status: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a new object and return (a copy of) it as stored.

        ``namespace`` is the request's (the URL's): it fills an empty ``metadata.namespace`` and must match
        a given one (400). The store sets uid, resourceVersion, creationTimestamp, generation 1, and a name
        from ``generateName``; it drops deletionTimestamp/deletionGracePeriodSeconds and, for a resource
        with a status subresource, the given status (``status`` replaces it: e.g. a pod's Pending phase).
        422 for invalid metadata, 409 AlreadyExists."""
        table = self._table(key)
        info = table.info
        new: dict[str, Any] = _clone(dict(obj))
        metadata = new.get("metadata")
        if not isinstance(metadata, dict):
            metadata = new["metadata"] = {}
        self._place_namespace(info, metadata, namespace)
        object_namespace = metadata.get("namespace") if info.namespaced else None
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = self._generate_name(table, object_namespace, str(metadata["generateName"]))
        new.setdefault("apiVersion", info.api_version)
        new.setdefault("kind", info.kind)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now_rfc3339(self._clock())
        metadata.pop("deletionTimestamp", None)
        metadata.pop("deletionGracePeriodSeconds", None)
        metadata.pop("selfLink", None)
        if info.generation:
            metadata["generation"] = 1
        if info.status_subresource:
            new.pop("status", None)
            if status is not None:
                new["status"] = _clone(dict(status))
        name = str(metadata.get("name") or "")
        causes = self._validate_metadata(info, new)
        if causes:
            raise ApiError.invalid(info.kind, name, causes, info.group)
        given_rv = metadata.get("resourceVersion")
        if given_rv not in (None, "", "0"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created", reason="Unknown")
        metadata.pop("resourceVersion", None)
        skey = self._skey(info, object_namespace, name)
        if skey in table.objects:
            raise ApiError.already_exists(info.plural, name, info.group)
        if dry_run:
            return new
        self._write(table, ADDED, skey, new, None)
        result: dict[str, Any] = _clone(new)
        return result

    def update(
        self,
        key: str,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (PUT) and return (a copy of) it as stored.

        ``namespace``/``name`` are the request's (a body that disagrees is 400). 404 when absent (unless
        the resource allows create-on-update); 409 Conflict when ``metadata.resourceVersion`` is given and
        stale (none given: unconditional). uid and creationTimestamp cannot change; generation follows the
        spec. With a status subresource, the main resource keeps the stored status and
        ``subresource="status"`` changes only status. An update that changes nothing writes nothing (same
        resourceVersion, no event). An update that empties the finalizers of an object being deleted (grace
        period 0) deletes it."""
        table = self._table(key)
        info = table.info
        new: dict[str, Any] = _clone(dict(obj))
        metadata = new.get("metadata")
        if not isinstance(metadata, dict):
            metadata = new["metadata"] = {}
        self._place_namespace(info, metadata, namespace)
        body_name = str(metadata.get("name") or "")
        if name is not None and body_name and body_name != name:
            raise ApiError(400, f"the name of the object ({body_name}) does not match the name on the URL ({name})")
        name = name if name is not None else body_name
        metadata["name"] = name
        object_namespace = metadata.get("namespace") if info.namespaced else None
        skey = self._skey(info, object_namespace, name)
        existing = table.objects.get(skey)
        if existing is None:
            if info.allow_create_on_update and subresource is None:
                metadata.pop("resourceVersion", None)
                return self.create(key, new, namespace=namespace, dry_run=dry_run)
            raise ApiError.not_found(info.plural, name, info.group)
        if subresource not in (None, "status") or (subresource == "status" and not info.status_subresource):
            raise ApiError(404, "the server could not find the requested resource")
        given_rv = str(metadata.get("resourceVersion") or "")
        try:
            wanted_rv = _parse_rv(given_rv)
        except ValueError as error:
            raise ApiError(400, f"metadata.resourceVersion: Invalid value: {go_quote(given_rv)}: {error}") from None
        old_meta = existing["metadata"]
        if wanted_rv and str(wanted_rv) != old_meta["resourceVersion"]:
            raise ApiError(
                409,
                f"Operation cannot be fulfilled on {info.qualified_resource} {go_quote(name)}: "
                + OPTIMISTIC_LOCK_MESSAGE,
                kind=info.plural,
                name=name,
                group=info.group,
            )

        if subresource == "status":
            # Only status (and the field managers' record of it) comes from the request.
            managed_fields = metadata.get("managedFields")
            candidate: dict[str, Any] = _clone(existing)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
            if managed_fields is not None:
                candidate["metadata"]["managedFields"] = managed_fields
            new = candidate
            metadata = new["metadata"]
        else:
            new.setdefault("apiVersion", info.api_version)
            new.setdefault("kind", info.kind)
            if info.status_subresource:
                if "status" in existing:
                    new["status"] = _clone(existing["status"])
                else:
                    new.pop("status", None)
            self._carry_system_metadata(info, metadata, old_meta, name)
            if info.generation:
                bump = (
                    info.generation_bump(existing, new)
                    if info.generation_bump is not None
                    else _spec_changed(existing, new)
                )
                base = old_meta.get("generation") or 0
                metadata["generation"] = base + 1 if bump else base
            else:
                metadata.pop("generation", None)
        metadata["resourceVersion"] = old_meta["resourceVersion"]
        causes = self._validate_metadata(info, new)
        causes.extend(self._validate_finalizers_update(metadata, old_meta))
        if causes:
            raise ApiError.invalid(info.kind, name, causes, info.group)
        if new == existing:
            result: dict[str, Any] = _clone(existing)
            return result
        if (
            old_meta.get("deletionTimestamp")
            and not metadata.get("finalizers")
            and not old_meta.get("deletionGracePeriodSeconds")
        ):
            # The last finalizer is gone from an object being deleted: it goes now (no MODIFIED event).
            if dry_run:
                return new
            rv = self._write(table, DELETED, skey, None, existing)
            return _with_rv(_clone(new), rv)
        if dry_run:
            return new
        self._write(table, MODIFIED, skey, new, existing)
        result = _clone(new)
        return result

    @staticmethod
    def _carry_system_metadata(info: ResourceInfo, metadata: dict[str, Any], old: Mapping[str, Any], name: str) -> None:
        """``rest.BeforeUpdate``: uid and timestamps stay as stored; changing them is 422 (immutable)."""
        causes: _Causes = []
        uid = metadata.get("uid")
        if not uid:
            metadata["uid"] = old["uid"]
        elif uid != old["uid"]:
            causes.append(Cause("metadata.uid", f"Invalid value: {go_quote(str(uid))}: field is immutable"))
        if old.get("creationTimestamp"):
            metadata["creationTimestamp"] = old["creationTimestamp"]
        if old.get("deletionTimestamp"):
            metadata["deletionTimestamp"] = old["deletionTimestamp"]
        elif metadata.get("deletionTimestamp"):
            causes.append(
                Cause(
                    "metadata.deletionTimestamp",
                    f"Invalid value: {go_quote(str(metadata['deletionTimestamp']))}: field is immutable",
                )
            )
        if old.get("deletionGracePeriodSeconds") is not None:
            if metadata.get("deletionGracePeriodSeconds") is None:
                metadata["deletionGracePeriodSeconds"] = old["deletionGracePeriodSeconds"]
            elif metadata["deletionGracePeriodSeconds"] != old["deletionGracePeriodSeconds"]:
                causes.append(
                    Cause(
                        "metadata.deletionGracePeriodSeconds",
                        f"Invalid value: {metadata['deletionGracePeriodSeconds']}: field is immutable",
                    )
                )
        elif metadata.get("deletionGracePeriodSeconds") is not None:
            causes.append(
                Cause(
                    "metadata.deletionGracePeriodSeconds",
                    f"Invalid value: {metadata['deletionGracePeriodSeconds']}: field is immutable",
                )
            )
        if causes:
            raise ApiError.invalid(info.kind, name, causes, info.group)

    @staticmethod
    def _validate_finalizers_update(metadata: Mapping[str, Any], old: Mapping[str, Any]) -> _Causes:
        if not old.get("deletionTimestamp"):
            return []
        before = set(old.get("finalizers") or [])
        added = [finalizer for finalizer in metadata.get("finalizers") or [] if finalizer not in before]
        if not added:
            return []
        shown = "[]string{" + ", ".join(go_quote(str(finalizer)) for finalizer in added) + "}"
        return [
            Cause(
                "metadata.finalizers",
                "Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {shown}",
                "FieldValueForbidden",
            )
        ]

    def delete(
        self,
        key: str,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object: ``(object, deleted_now)``.

        ``preconditions`` (``uid``, ``resourceVersion``) that do not hold: 409. An object with finalizers
        gets ``deletionTimestamp`` (now) and ``deletionGracePeriodSeconds`` 0 and stays until an update
        empties its finalizers. For a ``graceful`` resource, a grace period > 0 sets ``deletionTimestamp``
        (now + grace) and ``deletionGracePeriodSeconds`` and keeps the object (a MODIFIED event): the caller
        deletes it later with ``grace_period_seconds=0``; a shorter grace period shortens a pending one, a
        longer or no grace period leaves it alone; a grace period of 0 or None marks it (MODIFIED) and removes
        it (DELETED) at once. Everything else goes at once (a DELETED event)."""
        table = self._table(key)
        info = table.info
        skey = self._skey(info, namespace, name)
        existing = table.objects.get(skey)
        if existing is None:
            raise ApiError.not_found(info.plural, name, info.group)
        old_meta = existing["metadata"]
        self._check_preconditions(info, old_meta, preconditions, name)
        # A grace period past any date (kubectl accepts 2^62 s) is forever, without overflowing the clock.
        grace = None if grace_period_seconds is None else min(grace_period_seconds, 100 * 365 * 86400)
        if grace is not None and grace < 0:
            grace = 1
        now = self._clock()
        deleting = bool(old_meta.get("deletionTimestamp"))
        graceful = False
        new_timestamp: str | None = None
        new_grace = 0
        if info.graceful:
            pending_grace = old_meta.get("deletionGracePeriodSeconds")
            if deleting and pending_grace:
                if grace is None or grace >= pending_grace:
                    # Already being deleted gracefully, no sooner than asked: nothing changes.
                    return _clone(existing), False
                deadline = _parse_rfc3339(old_meta["deletionTimestamp"]) - pending_grace + grace
                new_grace = grace
                if deadline < now:
                    deadline = now
                    new_grace = 1 if grace else 0
                graceful, new_timestamp = True, _now_rfc3339(deadline)
            elif not deleting:
                # As the pod strategy does: always graceful, a grace period of 0 meaning "now" — the object
                # is marked (MODIFIED) and then removed (DELETED), as kube-apiserver does it.
                new_grace = grace or 0
                graceful, new_timestamp = True, _now_rfc3339(now + new_grace)
        finalizers = bool(old_meta.get("finalizers"))
        if graceful or finalizers:
            marked: dict[str, Any] = _clone(existing)
            meta = marked["metadata"]
            if graceful:
                meta["deletionTimestamp"] = new_timestamp
                meta["deletionGracePeriodSeconds"] = new_grace
                if not deleting and (meta.get("generation") or 0) > 0:
                    meta["generation"] += 1
            else:
                # markAsDeleting: now (unless an earlier deadline is set), grace period 0.
                if not deleting and (meta.get("generation") or 0) > 0:
                    meta["generation"] += 1
                timestamp = meta.get("deletionTimestamp")
                if not timestamp or _parse_rfc3339(timestamp) > now:
                    meta["deletionTimestamp"] = _now_rfc3339(now)
                meta["deletionGracePeriodSeconds"] = 0
            if marked != existing and not dry_run:
                self._write(table, MODIFIED, skey, marked, existing)
                existing = marked
            if finalizers or (graceful and new_grace > 0):
                return _clone(marked), False
        if dry_run:
            return _clone(existing), True
        rv = self._write(table, DELETED, skey, None, existing)
        return _with_rv(_clone(existing), rv), True

    @staticmethod
    def _check_preconditions(
        info: ResourceInfo, metadata: Mapping[str, Any], preconditions: Mapping[str, Any] | None, name: str
    ) -> None:
        if not preconditions:
            return
        uid = preconditions.get("uid")
        if uid is not None and uid != metadata.get("uid"):
            detail = (
                f"the UID in the precondition ({uid}) does not match the UID in record ({metadata.get('uid')}). "
                "The object might have been deleted and then recreated"
            )
            raise ApiError(
                409, f"Operation cannot be fulfilled on {info.qualified_kind} {go_quote(name)}: {detail}",
                kind=info.kind, name=name, group=info.group,
            )  # fmt: skip
        rv = preconditions.get("resourceVersion")
        if rv is not None and rv != metadata.get("resourceVersion"):
            detail = (
                f"the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record "
                f"({metadata.get('resourceVersion')}). The object might have been modified"
            )
            raise ApiError(
                409, f"Operation cannot be fulfilled on {info.qualified_kind} {go_quote(name)}: {detail}",
                kind=info.kind, name=name, group=info.group,
            )  # fmt: skip

    def delete_collection(
        self,
        key: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> _Objects:
        """Delete every selected object (as :meth:`delete` does each); the objects as deleted or marked."""
        selected = self.list(key, namespace, label_selector=label_selector, field_selector=field_selector, copy=False)
        info = self._table(key).info
        results = []
        for obj in selected.items:
            metadata = obj["metadata"]
            try:
                deleted, _ = self.delete(
                    key,
                    metadata.get("namespace") if info.namespaced else None,
                    metadata["name"],
                    grace_period_seconds=grace_period_seconds,
                    dry_run=dry_run,
                )
            except ApiError as error:
                if error.code == 404:
                    continue
                raise
            results.append(deleted)
        return results

    # -- watch --------------------------------------------------------------------------------------------

    def watch(
        self,
        key: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
        allow_bookmarks: bool = False,
        send_initial_events: bool | None = None,
    ) -> Watcher:
        """Watch ``key`` as the watch cache serves it.

        ``resource_version`` None/``""``/``"0"``: ADDED events for the current objects, then the changes
        (``send_initial_events=False``: only the changes). ``"N"``: every change after N, from the history;
        N compacted → one ERROR event (410 Expired, ``too old resource version: N (M)``) and the watch ends.
        ``send_initial_events=True``: the current objects as ADDED events, then a BOOKMARK annotated
        ``k8s.io/initial-events-end: "true"``, then the changes (N in the future → ERROR 504). Selectors
        filter, and an object that leaves the selection arrives as DELETED, one that enters as ADDED. An
        invalid selector is 400, an unparsable resourceVersion 422."""
        table = self._table(key)
        info = table.info
        predicate = _Predicate(info, namespace, label_selector, field_selector)
        try:
            wanted = _parse_rv(resource_version or "")
        except ValueError as error:
            raise ApiError.invalid(
                info.plural,
                "",
                [Cause("resourceVersion", f"Invalid value: {go_quote(resource_version or '')}: {error}")],
                info.group,
            ) from None
        initial = send_initial_events if send_initial_events is not None else wanted == 0
        start_rv = self._rv if (initial or wanted == 0) else wanted
        watcher = Watcher(self, table, predicate, start_rv, allow_bookmarks, self._max_pending)
        if send_initial_events and wanted > self._rv:
            watcher._fail(_too_large(wanted, self._rv))
            return watcher
        if initial:
            prefix = f"{predicate.namespace}/" if predicate.namespace else ""
            low, high = self._range(table, prefix, prefix)
            for skey in table.order[low:high]:
                obj = table.objects[skey]
                if predicate.matches(obj):
                    watcher._initial.append((ADDED, obj, None))
            if send_initial_events:
                marker = watcher._bookmark_object(start_rv, {INITIAL_EVENTS_END: "true"})
                watcher._initial.append((BOOKMARK, marker, None))
        elif wanted < table.floor:
            watcher._fail(ApiError(410, f"too old resource version: {wanted} ({table.floor})"))
            return watcher
        else:
            for change in table.changes_after(wanted):
                watcher._offer(change)
        if watcher._error is None:
            table.watchers.add(watcher)
        if watcher.pending:
            watcher._wakeup.set()
        return watcher

    def watchers(self, key: str) -> int:
        """How many watches of ``key`` are open."""
        return len(self._table(key).watchers)

    def history(self, key: str, after: str = "0") -> Iterable[tuple[str, str, str]]:
        """``(resourceVersion, type, namespace/name)`` of the retained writes of ``key`` after ``after``."""
        return [(str(change.rv), change.type, change.skey) for change in self._table(key).changes_after(int(after))]


def _spec_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether anything beyond metadata and status differs (what bumps a custom resource's generation)."""
    ignored = ("metadata", "status", "apiVersion", "kind")
    old_rest = {key: value for key, value in old.items() if key not in ignored}
    new_rest = {key: value for key, value in new.items() if key not in ignored}
    return old_rest != new_rest
