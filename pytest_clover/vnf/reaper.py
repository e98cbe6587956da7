"""The dead-man switch's reaper: puts back the faults a dead pytest left in a cluster (issue 12).

A pytest run on the Kubernetes backend starts this module as a one-replica Deployment in the namespace it
injects faults into, then renews a Lease every few seconds and writes every fault into a ledger ConfigMap
*before* making it (:mod:`pytest_clover.backends.k8s.deadman` is that side). If pytest stops renewing — it was
SIGKILLed, the laptop was closed, the network went away — the reaper reverts every entry of the ledger, so no
fault outlives its run by more than the lease plus a poll or two::

    python -m pytest_clover.vnf.reaper --host 0.0.0.0 --port 9190

It ships in the VNF image (``fixtures/sdc/Dockerfile`` copies only ``pytest_clover/__init__.py`` and
``pytest_clover/vnf/``), so it uses the **standard library only** and talks to the API server the in-cluster
way: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, trusting the service account's ``ca.crt``,
with its ``token`` (re-read for every request: projected tokens rotate) and its ``namespace``, from
``/var/run/secrets/kubernetes.io/serviceaccount/`` or the folder ``$CLOVER_SERVICEACCOUNT_DIR`` names (the
embedded mesh cannot mount the real path). ``http.client`` ignores ``HTTP_PROXY``, which is what we want: a pod's
``HTTP_PROXY`` is its sidecar, and the reaper must work when the mesh does not.

Every second it reads the Lease ``clover-deadman`` (``coordination.k8s.io/v1``). The lease is **expired** when
its record (``holderIdentity``, ``renewTime``, ``acquireTime``, ``leaseDurationSeconds``) has not *changed* for
``leaseDurationSeconds`` as measured by the reaper's own monotonic clock since it saw the last change — client-go
leader election's rule, which never compares two machines' clocks. A Lease with no holder has been released:
expired at once. A Lease that is missing counts as one that is not renewed. When the record changes again (pytest
was only suspended), the reaper goes back to watching.

While the lease is expired, each poll reads the ledger ConfigMap ``clover-ledger`` and, for every entry: reverts
it, records a Kubernetes Event (reason ``CloverFaultReverted``, type ``Warning``, involving the object put back),
and deletes the entry from the ConfigMap (``PUT`` with the ConfigMap's ``resourceVersion``; on 409 it reads the
ConfigMap again and deletes the key only if it still holds the value that was reverted). An entry that fails stays
and is retried on the next poll; the others go on.

The ledger: one ConfigMap key per entry (:func:`entry_key`), its value a JSON object. Schema version 1::

    {"schema": 1, "type": "object",              an Istio (or any namespaced) object to put back
     "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "plural": "virtualservices",
     "namespace": "shop", "name": "reviews",
     "original": {...} | null}                   the object before the run's first change to it; null when the
                                                 run created it (the revert deletes it)

    {"schema": 1, "type": "replicas",            a Deployment's replica count to put back (scale subresource)
     "namespace": "shop", "name": "reviews-v1", "replicas": 3}

Both may carry ``"runId"``, ``"holder"`` and ``"recordedAt"`` (RFC 3339), which only go into messages. An
``original`` needs ``apiVersion``, ``kind`` and ``metadata.name``; what is restored is every top-level field other
than ``apiVersion``, ``kind``, ``metadata`` and ``status`` (for Istio objects: ``spec``), plus
``metadata.labels`` and ``metadata.annotations``. Restoring an object is: GET the current one, replace those
fields by the original's, PUT it with the current ``resourceVersion``, and on 409 start again; when the object
is gone it is created again from the original; when it already equals the original nothing is written. An entry
the reaper cannot read (a newer schema, a bad value) is logged and left alone, never deleted.

``GET /healthz`` on ``--host``/``--port`` answers 200 once the reaper has read the Lease and the ledger at least
once (the Deployment's readiness probe, which :meth:`DeadManSwitch.start
<pytest_clover.backends.k8s.deadman.DeadManSwitch.start>` waits for), 503 before. One line per action goes to
stdout. SIGTERM (and SIGINT) end it with status 0 after the poll in progress.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import quote

__all__ = [
    "DEFAULT_PORT",
    "EVENT_REASON",
    "LEASE_NAME",
    "LEDGER_NAME",
    "SCHEMA_VERSION",
    "SERVICEACCOUNT_DIR",
    "SERVICEACCOUNT_DIR_ENV",
    "ApiFailure",
    "EntryError",
    "InCluster",
    "KubeApi",
    "ObjectEntry",
    "PollResult",
    "Reaper",
    "ReaperConfigError",
    "ReplicasEntry",
    "entry_key",
    "main",
    "parse_entry",
]

LEASE_NAME = "clover-deadman"
"""The Lease pytest renews; its namespace is the reaper's."""
LEDGER_NAME = "clover-ledger"
"""The ConfigMap of faults in force: one key per entry, its value the entry as JSON."""
EVENT_REASON = "CloverFaultReverted"
"""The ``reason`` of the Event recorded for each entry the reaper reverts."""
SCHEMA_VERSION = 1
"""The entry schema this reaper understands (an entry's ``"schema"``)."""
DEFAULT_PORT = 9190
"""The port of ``/healthz`` in the reaper's Deployment."""
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a pod's service-account token, CA and namespace."""
SERVICEACCOUNT_DIR_ENV = "CLOVER_SERVICEACCOUNT_DIR"
"""Names another folder holding the same three files (the embedded mesh cannot mount the real path)."""
POLL_INTERVAL = 1.0
"""Seconds between two reads of the Lease."""
DEFAULT_LEASE_SECONDS = 15
"""The lease duration assumed when the Lease does not say (or was never seen)."""
CONFLICT_RETRIES = 5
"""Writes retried in one poll after a 409 before the entry waits for the next poll."""
REQUEST_TIMEOUT = 5.0
"""Seconds one API request may take: a hung request must not stall the polls for long."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")
_PLURAL = re.compile(r"^[a-z][a-z0-9]*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_KEY_UNSAFE = re.compile(r"[^-._a-zA-Z0-9]")
_MAX_KEY = 253

# Restoring a Kubernetes object puts back everything but these top-level fields: identity and server state.
_NOT_RESTORED = frozenset({"apiVersion", "kind", "metadata", "status"})


# ------------------------------------------------------------------------------------------------ entries


class EntryError(ValueError):
    """A ledger entry that does not follow the schema; the message says which field."""


@dataclass(frozen=True)
class ObjectEntry:
    """A namespaced object to put back as it was before the run's first change, or to delete (``original`` None)."""

    api_version: str
    kind: str
    plural: str
    namespace: str
    name: str
    original: dict[str, Any] | None

    def describe(self) -> str:
        """``VirtualService shop/reviews``."""
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ReplicasEntry:
    """A Deployment whose replica count the run changed: put back to ``replicas``."""

    namespace: str
    name: str
    replicas: int

    def describe(self) -> str:
        """``Deployment shop/reviews-v1``."""
        return f"Deployment {self.namespace}/{self.name}"


Entry = ObjectEntry | ReplicasEntry


def entry_key(kind: str, name: str) -> str:
    """The ledger key of the entry for object ``kind``/``name``: ``virtualservice.reviews``.

    ConfigMap keys may hold only letters, digits, ``-``, ``_`` and ``.`` (at most 253 characters); Kubernetes
    names already fit, anything else becomes ``_``, and a key that would be too long is cut and ended with a
    hash of the whole, so two long names never share a key."""
    key = _KEY_UNSAFE.sub("_", f"{kind.lower()}.{name}")
    if len(key) > _MAX_KEY:
        digest = _fnv1a64(key)
        key = f"{key[: _MAX_KEY - 17]}.{digest:016x}"
    return key


def _fnv1a64(text: str) -> int:
    # hashlib would do as well; FNV keeps the key stable without caring which hashes a FIPS build allows.
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def parse_entry(raw: str | Mapping[str, Any]) -> Entry:
    """An entry of the ledger (its JSON text, or the decoded object), checked against the schema."""
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise EntryError(f"the entry is not JSON ({exc})") from exc
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise EntryError("the entry is not a JSON object")
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise EntryError(f"the entry has schema {schema!r}; this reaper understands schema {SCHEMA_VERSION} only")
    namespace = _field(data, "namespace", _DNS_LABEL, "a namespace name")
    name = _field(data, "name", _DNS_SUBDOMAIN, "a Kubernetes object name")
    kind_of_entry = data.get("type")
    if kind_of_entry == "replicas":
        replicas = data.get("replicas")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise EntryError(f"replicas must be a whole number, 0 or more, not {replicas!r}")
        return ReplicasEntry(namespace, name, replicas)
    if kind_of_entry != "object":
        raise EntryError(f'type must be "object" or "replicas", not {kind_of_entry!r}')
    api_version = _field(data, "apiVersion", _API_VERSION, "an apiVersion such as networking.istio.io/v1")
    kind = _field(data, "kind", _KIND, "a kind such as VirtualService")
    plural = _field(data, "plural", _PLURAL, "a lower-case resource name such as virtualservices")
    original = data.get("original")
    if original is not None:
        if not isinstance(original, Mapping):
            raise EntryError("original must be the object (a JSON object) or null")
        metadata = original.get("metadata")
        if not isinstance(metadata, Mapping) or metadata.get("name") != name:
            raise EntryError(f"original.metadata.name must be {name!r}, the entry's name")
        for meta_key in ("labels", "annotations"):
            value = metadata.get(meta_key)
            if value is not None and not (
                isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())
            ):
                raise EntryError(f"original.metadata.{meta_key} must map names to strings")
        original = copy.deepcopy(dict(original))
    return ObjectEntry(api_version, kind, plural, namespace, name, original)


def _field(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise EntryError(f"{key} must be {what}, not {value!r}")
    return value


# --------------------------------------------------------------------------------------- the API server


class ReaperConfigError(Exception):
    """The pod lacks what the in-cluster configuration needs (environment, service-account files)."""


@dataclass(frozen=True)
class InCluster:
    """Where the API server is and how to authenticate, the in-cluster way."""

    host: str
    port: int
    token_path: Path
    ca_path: Path
    namespace: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> InCluster:
        """Read ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the service-account folder (``$CLOVER_SERVICEACCOUNT_DIR``
        or the standard path)."""
        env = os.environ if environ is None else environ
        host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
        port_text = env.get("KUBERNETES_SERVICE_PORT", "").strip()
        if not host or not port_text:
            raise ReaperConfigError(
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: the reaper must run in a pod "
                "(Kubernetes sets them in every container)"
            )
        try:
            port = int(port_text)
        except ValueError:
            raise ReaperConfigError(f"KUBERNETES_SERVICE_PORT={port_text!r} is not a port number") from None
        folder = Path(env.get(SERVICEACCOUNT_DIR_ENV, "").strip() or SERVICEACCOUNT_DIR)
        token_path, ca_path, namespace_path = folder / "token", folder / "ca.crt", folder / "namespace"
        for path in (token_path, ca_path, namespace_path):
            if not path.is_file():
                raise ReaperConfigError(
                    f"{path} is missing: the reaper needs its service account's token, ca.crt and namespace "
                    f"(automountServiceAccountToken must not be false; {SERVICEACCOUNT_DIR_ENV} names another folder)"
                )
        namespace = namespace_path.read_text(encoding="utf-8").strip()
        if not _DNS_LABEL.match(namespace):
            raise ReaperConfigError(f"{namespace_path} holds {namespace!r}, not a namespace name")
        # An IPv6 address arrives bare in the environment; http.client wants it without brackets too.
        return cls(host.strip("[]"), port, token_path, ca_path, namespace)


class ApiFailure(Exception):
    """A request the API server refused (``status`` its HTTP status) or that never got an answer (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class KubeApi:
    """A minimal JSON client of the Kubernetes API over one kept-alive HTTPS connection (not thread-safe)."""

    def __init__(self, config: InCluster, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.config = config
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(config.ca_path))
        self._connection: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _token(self) -> str:
        try:
            return self.config.token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ApiFailure(0, "NoToken", f"cannot read the token {self.config.token_path}: {exc}") from exc

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """Send one request; the decoded JSON answer of a 2xx, else :class:`ApiFailure`."""
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json",
                   "User-Agent": "clover-reaper/1"}  # fmt: skip
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        # A kept-alive connection the server closed meanwhile fails on first use: one fresh attempt covers it.
        for attempt in (1, 2):
            fresh = self._connection is None
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(
                    self.config.host, self.config.port, timeout=self.timeout, context=self._ssl
                )
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                raw = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1 and not fresh and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                                   ConnectionResetError)):  # fmt: skip
                    continue
                where = f"https://{self.config.host}:{self.config.port}"
                raise ApiFailure(0, "Unreachable", f"{method} {path} at {where} failed: {exc!r}") from exc
            break
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:200].decode("utf-8", "replace")}
        if not isinstance(decoded, dict):
            decoded = {"message": str(decoded)[:200]}
        if 200 <= status < 300:
            return decoded
        raise ApiFailure(status, str(decoded.get("reason") or "Error"), str(decoded.get("message") or ""))


class JsonApi(Protocol):
    """What the reaper needs of an API client: :class:`KubeApi` in a pod; ``clover cleanup --context`` gives it one
    over the official client's configuration."""

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


def collection_path(api_version: str, plural: str, namespace: str) -> str:
    """``/apis/<group>/<version>/namespaces/<ns>/<plural>`` (``/api/v1/...`` for the core group)."""
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"


def object_path(api_version: str, plural: str, namespace: str, name: str) -> str:
    """The URL path of one namespaced object."""
    return f"{collection_path(api_version, plural, namespace)}/{quote(name, safe='')}"


# ------------------------------------------------------------------------------------------- the reaper


@dataclass
class PollResult:
    """What one poll saw and did."""

    expired: bool = False
    """The lease was expired at this poll."""
    reverted: list[str] = field(default_factory=list)
    """Ledger keys reverted (and removed from the ledger) by this poll."""
    failed: dict[str, str] = field(default_factory=dict)
    """Ledger keys left in the ledger, with why."""
    error: str = ""
    """Why the Lease or the ledger could not be read, if it could not."""


Clock = Callable[[], float]
Log = Callable[[str], None]


def _stdout_log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} clover-reaper {message}", flush=True)


class Reaper:
    """The reaper's logic, one :meth:`poll_once` at a time (``main`` calls it every second).

    ``clock`` is a monotonic clock in seconds (injectable for tests); only its differences matter."""

    def __init__(
        self,
        api: JsonApi,
        namespace: str,
        *,
        clock: Clock = time.monotonic,
        log: Log = _stdout_log,
        instance: str = "",
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.clock = clock
        self.log = log
        self.instance = instance or os.environ.get("HOSTNAME", "") or socket.gethostname()
        self._ready = threading.Event()
        self._record: tuple[Any, ...] | None = None
        self._seen = False
        self._changed_at = 0.0
        self._duration = float(DEFAULT_LEASE_SECONDS)
        self._holder = ""
        self._expired = False
        self._why = f"the Lease {LEASE_NAME} expired"
        self._bad_entries: dict[str, str] = {}
        self._trouble = ""

    @property
    def ready(self) -> bool:
        """Whether the Lease and the ledger have both been read at least once (``/healthz`` answers 200)."""
        return self._ready.is_set()

    @property
    def expired(self) -> bool:
        """Whether the lease was expired at the last poll."""
        return self._expired

    # ---------------------------------------------------------------- the lease

    def _lease_path(self) -> str:
        return object_path("coordination.k8s.io/v1", "leases", self.namespace, LEASE_NAME)

    def _ledger_path(self) -> str:
        return object_path("v1", "configmaps", self.namespace, LEDGER_NAME)

    def _observe(self, lease: dict[str, Any] | None, now: float) -> bool:
        """Take in the Lease as read now (None: missing); whether it is expired."""
        spec = (lease or {}).get("spec") or {}
        record = (
            (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"),
             spec.get("leaseDurationSeconds"))
            if lease is not None else None
        )  # fmt: skip
        if not self._seen or record != self._record:
            self._seen = True
            self._record = record
            self._changed_at = now
            duration = spec.get("leaseDurationSeconds")
            if isinstance(duration, int) and not isinstance(duration, bool) and duration > 0:
                self._duration = float(duration)
            self._holder = str(spec.get("holderIdentity") or "")
            if self._expired:
                if lease is not None and self._holder:
                    self.log(f"lease {LEASE_NAME} renewed by {self._holder}: watching again")
                    self._expired = False
                    return False
                return True
        if lease is not None and not spec.get("holderIdentity"):
            expired, why = True, f"the Lease {LEASE_NAME} was released (no holder)"
        else:
            unchanged = now - self._changed_at
            expired = unchanged >= self._duration
            what = f"the Lease {LEASE_NAME}" + (f" of {self._holder}" if self._holder else "")
            state = "missing and " if lease is None else ""
            why = f"{what} was {state}not renewed for {unchanged:.0f} s (lease {self._duration:g} s)"
        if expired and not self._expired:
            self.log(f"{why}: reverting the faults in the ledger {LEDGER_NAME}")
            self._why = why
        self._expired = expired
        return expired

    # ---------------------------------------------------------------- one poll

    def poll_once(self) -> PollResult:
        """Read the Lease; when it is expired, revert every entry of the ledger. Never raises for API trouble:
        what failed is in the result (and logged), and the next poll tries again."""
        result = PollResult()
        now = self.clock()
        try:
            lease: dict[str, Any] | None = self.api.request("GET", self._lease_path())
        except ApiFailure as exc:
            if exc.status != 404:
                result.error = f"cannot read the Lease {self.namespace}/{LEASE_NAME}: {exc}"
                self._log_trouble(result.error)
                return result
            lease = None
        result.expired = self._observe(lease, now)
        if self.ready and not result.expired:
            self._trouble = ""
            return result
        try:
            ledger = self.api.request("GET", self._ledger_path())
        except ApiFailure as exc:
            result.error = f"cannot read the ledger ConfigMap {self.namespace}/{LEDGER_NAME}: {exc}"
            self._log_trouble(result.error)
            return result
        self._trouble = ""
        if lease is not None and not self.ready:
            self._ready.set()
            entries = len(ledger.get("data") or {})
            self.log(f"watching the Lease {self.namespace}/{LEASE_NAME} (ledger: {entries} entries)")
        if result.expired:
            self.revert_ledger(ledger, result)
        return result

    def _log_trouble(self, message: str) -> None:
        # The same failure every second (an API server down for a minute) is one line, not sixty.
        if message != self._trouble:
            self._trouble = message
            self.log(message)

    def revert_ledger(self, ledger: dict[str, Any], result: PollResult) -> None:
        """Revert every entry of ``ledger`` (the ConfigMap as read), recording what happened in ``result``: what an
        expired Lease triggers, and what ``clover cleanup --context`` does for a run whose reaper never ran."""
        data = dict(ledger.get("data") or {})
        for key in sorted(data):
            raw = data[key]
            try:
                entry = parse_entry(raw)
            except EntryError as exc:
                # Logged once per value: a bad entry is retried every second and would flood the log.
                if self._bad_entries.get(key) != raw:
                    self._bad_entries[key] = raw
                    self.log(f"cannot read the ledger entry {key!r}, left in the ledger: {exc}")
                result.failed[key] = str(exc)
                continue
            try:
                done = self._revert(entry)
            except ApiFailure as exc:
                result.failed[key] = str(exc)
                self.log(f"could not revert {key} ({entry.describe()}): {exc}; retrying on the next poll")
                continue
            self.log(f"reverted {key}: {done}")
            self._record_event(entry, done)
            try:
                self._drop(key, raw, ledger)
            except ApiFailure as exc:
                # Reverting again is harmless (it finds the object as it was), so the entry simply stays.
                result.failed[key] = f"reverted, but not removed from the ledger: {exc}"
                self.log(f"could not remove {key} from the ledger: {exc}; retrying on the next poll")
                continue
            result.reverted.append(key)

    # ---------------------------------------------------------------- reverting

    def _revert(self, entry: Entry) -> str:
        """Put back what ``entry`` records; a sentence saying what was done."""
        if isinstance(entry, ReplicasEntry):
            return self._restore_replicas(entry)
        path = object_path(entry.api_version, entry.plural, entry.namespace, entry.name)
        if entry.original is None:
            try:
                self.api.request("DELETE", path)
            except ApiFailure as exc:
                if exc.status != 404:
                    raise
                return f"{entry.describe()} (created by the run) was already gone"
            return f"deleted {entry.describe()}, which the run had created"
        for _ in range(CONFLICT_RETRIES):
            try:
                current = self.api.request("GET", path)
            except ApiFailure as exc:
                if exc.status != 404:
                    raise
                if self._recreate(entry, entry.original):
                    return f"created {entry.describe()} again as it was before the run (it had been deleted)"
                continue
            if _restorable(current) == _restorable(entry.original):
                return f"{entry.describe()} was already as before the run"
            try:
                self.api.request("PUT", path, _restored(current, entry.original))
            except ApiFailure as exc:
                if exc.status != 409:
                    raise
                continue
            return f"put {entry.describe()} back as it was before the run"
        raise ApiFailure(409, "Conflict", f"{entry.describe()} kept changing under {CONFLICT_RETRIES} attempts")

    def _recreate(self, entry: ObjectEntry, original: dict[str, Any]) -> bool:
        """Create the object again from ``original``; False when someone created it meanwhile (try again)."""
        metadata = original.get("metadata") or {}
        body = {k: copy.deepcopy(v) for k, v in original.items() if k not in ("metadata", "status")}
        body["apiVersion"] = entry.api_version
        body["kind"] = entry.kind
        body["metadata"] = {"name": entry.name, "namespace": entry.namespace}
        for meta_key in ("labels", "annotations"):
            if metadata.get(meta_key):
                body["metadata"][meta_key] = dict(metadata[meta_key])
        try:
            self.api.request("POST", collection_path(entry.api_version, entry.plural, entry.namespace), body)
        except ApiFailure as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _restore_replicas(self, entry: ReplicasEntry) -> str:
        path = object_path("apps/v1", "deployments", entry.namespace, entry.name) + "/scale"
        for _ in range(CONFLICT_RETRIES):
            try:
                scale = self.api.request("GET", path)
            except ApiFailure as exc:
                if exc.status == 404:
                    return f"{entry.describe()} is gone: no replica count to restore"
                raise
            spec = scale.setdefault("spec", {})
            before = spec.get("replicas")
            if before == entry.replicas:
                return f"{entry.describe()} already had {entry.replicas} replicas"
            spec["replicas"] = entry.replicas
            try:
                self.api.request("PUT", path, scale)
            except ApiFailure as exc:
                if exc.status != 409:
                    raise
                continue
            return f"scaled {entry.describe()} from {before} back to {entry.replicas} replicas"
        raise ApiFailure(409, "Conflict", f"{entry.describe()}'s scale kept changing under {CONFLICT_RETRIES} attempts")

    def _drop(self, key: str, reverted_value: str, ledger: dict[str, Any]) -> None:
        """Delete ``key`` from the ledger if it still holds ``reverted_value`` (a newer value is a new fault)."""
        current = ledger
        for _ in range(CONFLICT_RETRIES):
            data = current.get("data") or {}
            if data.get(key) != reverted_value:
                return
            updated = copy.deepcopy(current)
            del updated["data"][key]
            try:
                written = self.api.request("PUT", self._ledger_path(), updated)
            except ApiFailure as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
                current = self.api.request("GET", self._ledger_path())
                continue
            # The caller keeps using this dict for the next keys: give it the new resourceVersion and data.
            ledger.clear()
            ledger.update(written)
            return
        raise ApiFailure(409, "Conflict", f"the ledger kept changing under {CONFLICT_RETRIES} attempts")

    def _record_event(self, entry: Entry, done: str) -> None:
        """An Event on the reverted object (best effort: the revert is what matters)."""
        if isinstance(entry, ReplicasEntry):
            involved = {"apiVersion": "apps/v1", "kind": "Deployment"}
        else:
            involved = {"apiVersion": entry.api_version, "kind": entry.kind}
        involved.update(namespace=entry.namespace, name=entry.name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # kube-apiserver appends 5 characters to generateName; the whole must stay a 253-character name.
            "metadata": {"generateName": f"{entry.name[:200]}.clover-reaper-", "namespace": entry.namespace},
            "involvedObject": involved,
            "reason": EVENT_REASON,
            "message": f"{done} (pytest-clover's dead-man switch: {self._why})",
            "type": "Warning",
            "source": {"component": "clover-reaper"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "clover-reaper",
            "reportingInstance": self.instance,
        }
        try:
            self.api.request("POST", collection_path("v1", "events", entry.namespace), event)
        except ApiFailure as exc:
            self.log(f"could not record an Event for {entry.describe()}: {exc}")


def _labels_and_annotations(obj: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    metadata = obj.get("metadata") or {}
    return dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})


def _restorable(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a revert puts back, in a form two objects can be compared by."""
    fields = {k: v for k, v in obj.items() if k not in _NOT_RESTORED}
    return (json.dumps(fields, sort_keys=True), *_labels_and_annotations(obj))


def _restored(current: dict[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` (its identity and resourceVersion) with the original's content, labels and annotations."""
    body = {k: v for k, v in current.items() if k in _NOT_RESTORED}
    body.update({k: copy.deepcopy(v) for k, v in original.items() if k not in _NOT_RESTORED})
    metadata = dict(body.get("metadata") or {})
    labels, annotations = _labels_and_annotations(original)
    for meta_key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            metadata[meta_key] = value
        else:
            metadata.pop(meta_key, None)
    body["metadata"] = metadata
    return body


# ------------------------------------------------------------------------------------------ the process


def _health_server(host: str, port: int, reaper: Reaper) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/healthz":
                self._answer(404, b"not found\n")
            elif reaper.ready:
                self._answer(200, b"ok\n")
            else:
                self._answer(503, b"the Lease and the ledger have not been read yet\n")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every second or two would drown the one line per action this log is for.
            return

    server = ThreadingHTTPServer((host, port), Health)
    server.daemon_threads = True
    return server


_DESCRIPTION = "The dead-man switch's reaper: puts back the faults a dead pytest left in a cluster."


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_clover.vnf.reaper --host H --port P``: poll until SIGTERM; 0 then, 2 when the pod lacks
    its in-cluster configuration."""
    parser = argparse.ArgumentParser(prog="python -m pytest_clover.vnf.reaper", description=_DESCRIPTION)
    parser.add_argument("--host", default="0.0.0.0", help="address of /healthz (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port of /healthz (default {DEFAULT_PORT})")
    parser.add_argument("--interval", type=float, default=POLL_INTERVAL, help="seconds between polls (default 1)")
    args = parser.parse_args(argv)
    try:
        config = InCluster.from_environment()
    except ReaperConfigError as exc:
        _stdout_log(f"cannot start: {exc}")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    api = KubeApi(config)
    reaper = Reaper(api, config.namespace)
    try:
        server = _health_server(args.host, args.port, reaper)
    except OSError as exc:
        _stdout_log(f"cannot serve /healthz on {args.host}:{args.port}: {exc}")
        return 2
    thread = threading.Thread(target=server.serve_forever, name="healthz", daemon=True)
    thread.start()
    _stdout_log(
        f"started: API server https://{config.host}:{config.port}, namespace {config.namespace}, "
        f"/healthz on {args.host}:{args.port}"
    )
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reaper.poll_once()
            except Exception as exc:  # the reaper must outlive any one bad poll
                _stdout_log(f"poll failed: {exc!r}")
            stop.wait(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        server.shutdown()
        server.server_close()
        api.close()
    _stdout_log("stopped (SIGTERM)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
