"""Raw REST calls on one cluster through the official client's ``ApiClient``: JSON in, JSON out, errors translated.

The typed APIs of the client 37 validate every argument with pydantic and build a model for every object; the
backend needs neither (it reads a few fields and writes documents it already holds as dicts), and one path for
every kind — built-in or Istio — keeps server-side apply, JSON patch and watch uniform. Requests still go through
the client's configuration: its TLS, its credentials (refreshed tokens included) and its connection pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import BackendError, CloverError
from .errors import translate
from .settings import FIELD_MANAGER, ClusterRef

__all__ = ["KINDS", "Kind", "Rest", "WaitResult"]


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def resource(self) -> str:
        """``plural.group`` as RBAC and error messages name it (``deployments.apps``; ``pods`` for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if sub:
                base += f"/{sub}"
        return base


ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar")
"""The ``networking.istio.io`` kinds a fault or a topology writes; their version is the one the cluster serves."""

KINDS: dict[str, Kind] = {
    "Namespace": Kind("", "v1", "namespaces", namespaced=False),
    "Pod": Kind("", "v1", "pods"),
    "Service": Kind("", "v1", "services"),
    "ConfigMap": Kind("", "v1", "configmaps"),
    "ServiceAccount": Kind("", "v1", "serviceaccounts"),
    "Event": Kind("", "v1", "events"),
    "Node": Kind("", "v1", "nodes", namespaced=False),
    "Deployment": Kind("apps", "v1", "deployments"),
    "ReplicaSet": Kind("apps", "v1", "replicasets"),
    "Lease": Kind("coordination.k8s.io", "v1", "leases"),
    "Role": Kind("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "Telemetry": Kind("telemetry.istio.io", "v1", "telemetries"),
    "VirtualService": Kind("networking.istio.io", "v1", "virtualservices"),
    "DestinationRule": Kind("networking.istio.io", "v1", "destinationrules"),
    "Gateway": Kind("networking.istio.io", "v1", "gateways"),
    "ServiceEntry": Kind("networking.istio.io", "v1", "serviceentries"),
    "Sidecar": Kind("networking.istio.io", "v1", "sidecars"),
}


@dataclass
class WaitResult:
    """What a list+watch wait saw last: whether the condition held, and the reason it did not."""

    done: bool
    detail: str
    items: dict[str, dict[str, Any]]


class Rest:
    """JSON requests on one cluster. Every failure is a pytest-clover error naming the verb and the resource."""

    def __init__(self, api: Any, cluster: ClusterRef, *, timeout: float = 30.0) -> None:
        self.api = api
        """The ``kubernetes.client.ApiClient`` (owned by the backend, which closes it)."""
        self.cluster = cluster
        self.timeout = timeout
        """Seconds one ordinary request may take (connect and read); watches set their own."""

    # ------------------------------------------------------------------ one request

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str | None = None,
        resource: str = "",
        namespace: str | None = None,
        name: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one request; the parsed JSON body (the text with ``raw``). Non-2xx answers and transport failures
        raise the translated error."""
        response = self._send(method, path, query=query, body=body, content_type=content_type, timeout=timeout,
                              verb=verb, resource=resource or path, namespace=namespace, name=name)  # fmt: skip
        data: bytes = response.read()
        text = data.decode("utf-8", errors="replace")
        if raw:
            return text
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BackendError(
                f"the Kubernetes API at {self.cluster} answered {method} {path} with something not JSON: {text[:200]!r}"
            ) from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float] | None,
        verb: str | None,
        resource: str,
        namespace: str | None,
        name: str | None,
        stream: bool = False,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        what = verb or method.lower()
        try:
            request = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*request, _request_timeout=timeout if timeout is not None else self.timeout)
            if not 200 <= response.status <= 299:
                text = response.read().decode("utf-8", errors="replace")
                ApiException.from_response(http_resp=response, body=text, data=None)
            return response
        except CloverError:
            raise
        except Exception as exc:  # the client's and urllib3's own exceptions: translated at this boundary
            raise translate(
                exc, verb=what, resource=resource, namespace=namespace, name=name, cluster=self.cluster
            ) from exc

    # ------------------------------------------------------------------ shorthands

    def get(self, kind: Kind, namespace: str | None, name: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """One object; None when it does not exist and ``missing_ok``."""
        try:
            result: dict[str, Any] = self.request(
                "GET", kind.path(namespace, name), verb="get", resource=kind.resource, namespace=namespace, name=name
            )
        except BackendError as exc:
            if missing_ok and _is_not_found(exc):
                return None
            raise
        return result

    def list(self, kind: Kind, namespace: str | None, *, labels: str | None = None) -> dict[str, Any]:
        """A list (``items`` and ``metadata.resourceVersion``), optionally by label selector."""
        result: dict[str, Any] = self.request(
            "GET", kind.path(namespace), query={"labelSelector": labels}, verb="list", resource=kind.resource,
            namespace=namespace,
        )  # fmt: skip
        for item in result.get("items") or []:
            # Lists of built-in kinds leave each item's apiVersion and kind out.
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", _kind_name(kind))
        return result

    def apply(self, kind: Kind, namespace: str | None, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with our field manager, taking over fields other managers hold (we own the object)."""
        name = str(doc["metadata"]["name"])
        result: dict[str, Any] = self.request(
            "PATCH",
            kind.path(namespace, name),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(doc),
            content_type="application/apply-patch+yaml",
            verb="apply",
            resource=kind.resource,
            namespace=namespace,
            name=name,
        )
        return result

    def delete(
        self, kind: Kind, namespace: str | None, name: str, *, body: Mapping[str, Any] | None = None,
        missing_ok: bool = True, query: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        try:
            self.request("DELETE", kind.path(namespace, name), body=dict(body) if body else None, query=query,
                         verb="delete", resource=kind.resource, namespace=namespace, name=name)  # fmt: skip
        except BackendError as exc:
            if not (missing_ok and _is_not_found(exc)):
                raise

    # ------------------------------------------------------------------ list + watch

    def watch(
        self, kind: Kind, namespace: str | None, resource_version: str, *, labels: str | None, timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Watch events from ``resource_version`` for at most ``timeout`` seconds (bookmarks included)."""
        seconds = max(1, int(timeout))
        response = self._send(
            "GET", kind.path(namespace),
            query={"watch": "true", "resourceVersion": resource_version, "labelSelector": labels,
                   "allowWatchBookmarks": "true", "timeoutSeconds": seconds},
            body=None, content_type="application/json", timeout=(5.0, seconds + 5.0), verb="watch",
            resource=kind.resource, namespace=namespace, name=None,
        )  # fmt: skip
        raw = response.response
        try:
            for line in raw:
                if line.strip():
                    yield json.loads(line)
        except Exception as exc:  # a watch the server or the network cut: the caller re-lists
            if isinstance(exc, CloverError):
                raise
            return
        finally:
            raw.release_conn()

    def wait_until(
        self,
        kind: Kind,
        namespace: str | None,
        check: Callable[[dict[str, dict[str, Any]]], tuple[bool, str]],
        *,
        timeout: float,
        labels: str | None = None,
    ) -> WaitResult:
        """List, then watch, until ``check(items by name)`` says done or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        items: dict[str, dict[str, Any]] = {}
        rv = ""
        done, detail = False, "not checked yet"
        relist = True
        while True:
            if relist:
                listed = self.list(kind, namespace, labels=labels)
                items = {i["metadata"]["name"]: i for i in listed.get("items") or []}
                rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                relist = False
                done, detail = check(items)
                if done:
                    return WaitResult(True, detail, items)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return WaitResult(False, detail, items)
            try:
                for event in self.watch(kind, namespace, rv, labels=labels, timeout=min(remaining, 30.0)):
                    kind_of = event.get("type")
                    obj = event.get("object") or {}
                    if kind_of == "ERROR":
                        relist = True  # 410 Expired (or any error event): start again from a fresh list
                        break
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if kind_of == "BOOKMARK":
                        continue
                    name = (obj.get("metadata") or {}).get("name")
                    if not name:
                        continue
                    if kind_of == "DELETED":
                        items.pop(name, None)
                    else:
                        items[name] = obj
                    done, detail = check(items)
                    if done:
                        return WaitResult(True, detail, items)
                    if time.monotonic() >= deadline:
                        break
            except BackendError as exc:
                if not _is_gone(exc):
                    raise
                relist = True


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _kind_name(kind: Kind) -> str:
    for name, known in KINDS.items():
        if known.plural == kind.plural and known.group == kind.group:
            return name
    return kind.plural


def _status_code(exc: BaseException) -> int | None:
    cause = exc.__cause__
    status = getattr(cause, "status", None)
    return status if isinstance(status, int) else None


def _is_not_found(exc: BaseException) -> bool:
    return _status_code(exc) == 404


def _is_gone(exc: BaseException) -> bool:
    return _status_code(exc) == 410


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of the API answer behind a translated error (None: no answer)."""
    return _status_code(exc)
