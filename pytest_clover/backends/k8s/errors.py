"""The ``kubernetes`` client's exceptions, translated into pytest-clover's error tree at the boundary.

Every call the Kubernetes backend makes to a cluster goes through :func:`api_call` (or :func:`translate`): what
comes out is a :class:`~pytest_clover.errors.CloverError` raised ``from`` the client's exception, whose message
says which cluster, which verb on which resource, what the API server said (its ``Status`` message, always) and
what to do. The cases:

==============================================  ===================================================================
what the client raised                          what we raise
==============================================  ===================================================================
401 Unauthorized                                :class:`AccessDenied`: the context's credentials (token expired?)
403 Forbidden                                   :class:`AccessDenied`: verb, resource, namespace, the RBAC files
404 on an Istio collection (no object name)     :class:`IstioNotInstalled`
404 on a named object                           :class:`BackendError`: which object is gone
409 AlreadyExists / Conflict                    :class:`ObjectConflict`, the two told apart (and apply conflicts)
410 Expired                                     :class:`BackendError`: the list/watch version expired; re-list
422 Invalid with ``details.causes``             :class:`ConfigError`, one Problem per cause, field named
422 without causes, other 4xx                   :class:`BackendError`
429, 5xx                                        :class:`BackendError`: the API server is overloaded or failing
status 0, urllib3 connection/TLS/timeouts,      :class:`ClusterUnreachable`: the context and the server
``ConnectionError``, ``TimeoutError``, ssl
a kubeconfig the client cannot load             :class:`~.settings.SettingError`
==============================================  ===================================================================

``resource`` is written as Kubernetes' messages write it: the plural, ``.group`` unless core, ``/subresource``
when there is one — ``pods``, ``pods/exec``, ``deployments.apps/scale``, ``virtualservices.networking.istio.io``.

The client's exception classes are looked up when an exception is translated, not at import: this module
loads without the ``kubernetes`` client.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import (
    AccessDenied,
    BackendError,
    CloverError,
    ClusterUnreachable,
    ConfigError,
    IstioNotInstalled,
    ObjectConflict,
    Problem,
)
from .settings import ClusterRef, SettingError

__all__ = [
    "ISTIO_GROUPS",
    "ApiStatus",
    "api_call",
    "api_status",
    "rbac_dir",
    "rbac_fix",
    "split_resource",
    "translatable",
    "translate",
]

ISTIO_GROUPS = ("networking.istio.io", "telemetry.istio.io", "security.istio.io")
"""API groups that only exist when Istio's CRDs are installed: a 404 on one of their collections means no Istio."""

CLUSTER_SCOPED = frozenset({"namespaces", "customresourcedefinitions", "mutatingwebhookconfigurations", "nodes"})
"""Resources the cluster-scoped RBAC file grants (the others are namespaced)."""

# kube-apiserver's authorization refusal (k8s.io/apiserver responsewriters.forbiddenMessage), inside the Status
# message `<resource> "<name>" is forbidden: User "<user>" cannot <verb> resource "<r>[/<sub>]" in API group …`.
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)
# What websocket-client raises when exec/port-forward's upgrade is refused; the client's stream helpers turn it
# into ApiException(status=0, reason=str(exc)): "Handshake status 403 Forbidden -+-+- {headers} -+-+- body".
_HANDSHAKE = re.compile(r"Handshake status (?P<code>\d{3})\b")
_HANDSHAKE_SEPARATOR = " -+-+- "


def rbac_dir() -> Path:
    """The folder of the RBAC files in the installed package (``pytest_clover/backends/k8s/rbac``)."""
    return Path(__file__).resolve().parent / "rbac"


# Istio plurals no other API group uses, for callers that name a resource by its plural alone. (``gateways`` is
# not here: the Gateway API has one too.)
_ISTIO_PLURALS = {
    **dict.fromkeys(
        ("virtualservices", "destinationrules", "serviceentries", "sidecars", "envoyfilters", "workloadentries",
         "workloadgroups", "proxyconfigs"),
        "networking.istio.io",
    ),
    "telemetries": "telemetry.istio.io",
}  # fmt: skip


def split_resource(resource: str) -> tuple[str, str, str]:
    """``(plural, group, subresource)`` of a resource as messages name it: ``deployments.apps/scale`` →
    ``("deployments", "apps", "scale")``; ``pods`` → ``("pods", "", "")``. An API path is read too
    (``/apis/networking.istio.io/v1/namespaces/x/virtualservices/y``), and a bare Istio plural gets its group."""
    if resource.startswith(("/api/", "/apis/")):
        parts = [p for p in resource.split("?")[0].split("/") if p]
        group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1] if len(parts) > 1 else "", parts[3:])
        if len(rest) >= 3 and rest[0] == "namespaces":
            rest = rest[2:]  # /namespaces/<ns>/<plural>…; /namespaces/<ns> alone is the namespace itself
        plural = rest[0] if rest else ""
        return plural, group, rest[2] if len(rest) > 2 else ""
    main, _, subresource = resource.partition("/")
    plural, _, group = main.partition(".")
    return plural, group or _ISTIO_PLURALS.get(plural, ""), subresource


def _qualified(resource: str) -> str:
    """``resource`` as Kubernetes' messages name it, whatever form the caller gave."""
    plural, group, subresource = split_resource(resource)
    if not plural:
        return resource
    return plural + (f".{group}" if group else "") + (f"/{subresource}" if subresource else "")


@dataclass(frozen=True)
class ApiStatus:
    """What the API server said, from the Kubernetes ``Status`` body when there is one."""

    code: int
    reason: str = ""
    """The ``Status`` reason (``Forbidden``, ``AlreadyExists``, ``Conflict``…), else the HTTP reason phrase."""
    message: str = ""
    """The ``Status`` message, else the body's text (a plain-text answer), else the client's reason."""
    name: str = ""
    group: str = ""
    kind: str = ""
    """``details.kind``: the resource's plural for most errors (``pods``), the kind for 422 (``Deployment``)."""
    causes: tuple[Mapping[str, str], ...] = field(default_factory=tuple)
    retry_after: str = ""
    """The ``Retry-After`` header, or ``details.retryAfterSeconds``."""


def _decode_status(code: int, reason: str, body: str, headers: Mapping[str, str] | None) -> ApiStatus:
    retry_after = ""
    if headers:
        retry_after = str(next((v for k, v in headers.items() if k.lower() == "retry-after"), ""))
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        found = parsed.get("details")
        details: dict[str, Any] = found if isinstance(found, dict) else {}
        causes = tuple(
            {str(k): str(v) for k, v in c.items()} for c in details.get("causes") or () if isinstance(c, dict)
        )
        if not retry_after and details.get("retryAfterSeconds"):
            retry_after = str(details["retryAfterSeconds"])
        return ApiStatus(
            code=int(parsed.get("code") or code),
            reason=str(parsed.get("reason") or reason or ""),
            message=str(parsed.get("message") or ""),
            name=str(details.get("name") or ""),
            group=str(details.get("group") or ""),
            kind=str(details.get("kind") or ""),
            causes=causes,
            retry_after=retry_after,
        )
    # A plain-text answer (the max-in-flight filter's 429, a proxy in front of the API server) or none at all.
    return ApiStatus(code=code, reason=reason, message=(body or "").strip() or reason, retry_after=retry_after)


def api_status(exc: BaseException) -> ApiStatus | None:
    """The API server's answer carried by a client exception (``ApiException``, or a refused websocket upgrade
    of exec/port-forward), or None when no HTTP answer came (connection refused, timeout, TLS)."""
    status = getattr(exc, "status", None)
    upgrade_status = getattr(exc, "status_code", None)
    if status is None and isinstance(upgrade_status, int):  # websocket-client's refused upgrade, unwrapped
        raw = getattr(exc, "resp_body", None) or b""
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return _decode_status(upgrade_status, str(getattr(exc, "status_message", "") or ""), body, None)
    if not isinstance(status, int):
        return None
    reason = str(getattr(exc, "reason", "") or "")
    if status == 0:
        handshake = _HANDSHAKE.search(reason)
        if handshake is None:
            return None
        body = reason.split(_HANDSHAKE_SEPARATOR)[-1] if _HANDSHAKE_SEPARATOR in reason else ""
        return _decode_status(int(handshake["code"]), "", "" if body == "None" else body, None)
    headers = getattr(exc, "headers", None)
    raw_body: object = getattr(exc, "body", None)
    body = raw_body.decode("utf-8", "replace") if isinstance(raw_body, bytes) else str(raw_body or "")
    if not body and status == 410 and ": " in reason:
        # A watch's ERROR event: the client raises ApiException(status=410, reason="Expired: <message>").
        reason, _, message = reason.partition(": ")
        return ApiStatus(code=status, reason=reason, message=message)
    return _decode_status(status, reason, body, headers if isinstance(headers, Mapping) else None)


# --------------------------------------------------------------------------- messages


def _where(namespace: str | None) -> str:
    return f" in namespace {namespace!r}" if namespace else ""


def _target(resource: str, name: str | None) -> str:
    return f"{resource} {name!r}" if name else resource


def _cluster(cluster: ClusterRef | None) -> str:
    return str(cluster) if cluster else "the cluster"


def _said_by(status: ApiStatus, cluster: ClusterRef | None) -> str:
    """``404 NotFound from context 'c' (https://…): <the Status message>``."""
    head = f"{status.code} {status.reason}".strip() + f" from {_cluster(cluster)}"
    return f"{head}: {status.message}" if status.message and status.message != status.reason else head


def _said(status: ApiStatus) -> str:
    """``403 Forbidden: <the Status message>``, as the API server put it."""
    head = f"{status.code} {status.reason}".strip()
    return f"{head}: {status.message}" if status.message and status.message != status.reason else head


def rbac_fix(verb: str, resource: str, namespace: str | None) -> str:
    """The ``kubectl apply`` lines that grant ``verb`` on ``resource`` with pytest-clover's RBAC files."""
    folder = rbac_dir()
    plural = split_resource(resource)[0]
    readme = f"(see {folder / 'README.md'} for which identity they bind)"
    if plural in CLUSTER_SCOPED or not namespace:
        return f"kubectl apply -f {folder / 'clusterrole.yaml'} -f {folder / 'bindings.yaml'} {readme}"
    if namespace == "istio-system" and plural == "services":
        return f"kubectl apply -f {folder / 'ingress.yaml'} {readme}"
    ns = namespace or "NAMESPACE"
    return (
        f"kubectl apply -n {ns} -f {folder / 'role.yaml'} -f {folder / 'rolebinding.yaml'} "
        f"(existing mode), or kubectl apply -f {folder / 'clusterrole.yaml'} -f {folder / 'bindings.yaml'} "
        f"(deploy mode) {readme}"
    )


def _forbidden(
    status: ApiStatus, verb: str, resource: str, namespace: str | None, name: str | None, cluster: ClusterRef | None
) -> AccessDenied:
    # The server knows exactly what it refused (the subresource included, e.g. pods/exec for a port-forward
    # helper): its words win over what the caller thought it was doing.
    refused = _FORBIDDEN.search(status.message)
    user = ""
    if refused is not None:
        verb = refused["verb"]
        plural, _, subresource = refused["resource"].partition("/")
        group = refused["group"]
        resource = plural + (f".{group}" if group else "") + (f"/{subresource}" if subresource else "")
        namespace = refused["namespace"] or None
        user = f" as {refused['user']}"
    what = f"{verb} {_target(resource, name)}{_where(namespace) or ' (cluster-wide)'}"
    return AccessDenied(
        f"{_cluster(cluster)} refused to let us {what}{user} ({_said(status)}). Grant it with pytest-clover's "
        f"RBAC files: {rbac_fix(verb, resource, namespace)}; `clover k8s check` lists every permission missing."
    )


def _not_found(
    status: ApiStatus, verb: str, resource: str, namespace: str | None, name: str | None, cluster: ClusterRef | None
) -> BackendError:
    plural, group, _ = split_resource(resource)
    if not status.name and group in ISTIO_GROUPS:
        return IstioNotInstalled(
            f"Istio is not installed in the cluster (no {group} CRDs): {verb} {resource}{_where(namespace)} got "
            f"{_said_by(status, cluster)}. Install Istio (istioctl install, or the base and istiod Helm charts), "
            "then check with `clover k8s check`."
        )
    if status.name:
        if status.kind == "namespaces":  # the namespace of the request, not the object asked for, is missing
            what = f"namespace {status.name!r}"
        else:
            gone = status.kind + (f".{status.group}" if status.group else "") if status.kind else resource
            what = f"{gone} {status.name!r}{_where(namespace)}"
        return BackendError(
            f"{what} is gone: {verb} {_target(resource, name)} got {_said_by(status, cluster)}. Someone (or the "
            "run's teardown) deleted it; look at what is there (`kubectl get`)."
        )
    return BackendError(
        f"{_cluster(cluster)} does not serve {plural}{f' in API group {group}' if group else ''}: {verb} "
        f"{_target(resource, name)}{_where(namespace)} got {_said_by(status, cluster)}. An API server too old, or "
        "an extension not installed? `kubectl api-resources` lists what it serves."
    )


def _conflict(
    status: ApiStatus, verb: str, resource: str, namespace: str | None, name: str | None, cluster: ClusterRef | None
) -> ObjectConflict:
    what = _target(resource, name or status.name or None) + _where(namespace)
    if status.reason == "AlreadyExists":
        return ObjectConflict(
            f"{what} already exists ({_said_by(status, cluster)}): another run's, or left by a run that was "
            "killed; `clover cleanup --context <context>` sweeps what pytest-clover left."
        )
    owners = [c for c in status.causes if c.get("reason") == "FieldManagerConflict"]
    if owners:
        fields = "; ".join(f"{c.get('field', '?')} ({c.get('message', '')})" for c in owners)
        return ObjectConflict(
            f"{what}: fields we {verb} are owned by another field manager: {fields} ({_said_by(status, cluster)}). "
            "Their change is kept and ours is not made: remove the other manager's fields, or give up the fault."
        )
    return ObjectConflict(
        f"{what} was changed by someone else since we read it ({_said_by(status, cluster)}); their change is kept "
        "and ours is not made: read it again and retry."
    )


def _invalid(
    status: ApiStatus, verb: str, resource: str, namespace: str | None, name: str | None, cluster: ClusterRef | None
) -> CloverError:
    if not status.causes:
        return BackendError(
            f"{_cluster(cluster)} refused to {verb} {_target(resource, name)}{_where(namespace)}: {_said(status)}"
        )
    kind = status.kind + (f".{status.group}" if status.group else "") if status.kind else resource
    obj = f"{kind}/{status.name or name or '?'}"
    source = f"{verb} on {_cluster(cluster)}"
    problems = [
        Problem(source, obj, c.get("field", ""), f"{c.get('message', '')} ({c.get('reason', 'Invalid')})")
        for c in status.causes
    ]
    error = ConfigError(problems)
    # ConfigError words its own message from the problems; the API server's whole sentence is added so the
    # message carries it verbatim, as every other translation does.
    error.args = (f"{error.args[0]}\n  the API server said: {_said(status)}",)
    return error


def _http(
    status: ApiStatus, verb: str, resource: str, namespace: str | None, name: str | None, cluster: ClusterRef | None
) -> CloverError:
    code = status.code
    if code == 401:
        context = f"{cluster.context!r}" if cluster else "in use"
        return AccessDenied(
            f"{_cluster(cluster)} does not accept our credentials ({_said(status)}) to {verb} "
            f"{_target(resource, name)}{_where(namespace)}: check the credentials of the context {context} (token "
            "expired? run `kubectl get ns` with that context to refresh them, or get a new token, e.g. `kubectl "
            "create token pytest-clover -n pytest-clover`)."
        )
    if code == 403:
        return _forbidden(status, verb, resource, namespace, name, cluster)
    if code == 404:
        return _not_found(status, verb, resource, namespace, name, cluster)
    if code == 409:
        return _conflict(status, verb, resource, namespace, name, cluster)
    if code == 410:
        return BackendError(
            f"the resourceVersion our {verb} of {resource}{_where(namespace)} started from has expired on "
            f"{_cluster(cluster)} ({_said(status)}): list again and watch from the new list's resourceVersion."
        )
    if code == 422:
        return _invalid(status, verb, resource, namespace, name, cluster)
    retry = f"; retry after {status.retry_after} s" if status.retry_after else ""
    if code == 429:
        return BackendError(
            f"the API server of {_cluster(cluster)} is overloaded and refused to {verb} {_target(resource, name)}"
            f"{_where(namespace)} ({_said(status)}{retry}): try again later, or run fewer tests at once."
        )
    if code >= 500:
        return BackendError(
            f"the API server of {_cluster(cluster)} is failing: {verb} {_target(resource, name)}{_where(namespace)} "
            f"answered {_said(status)}{retry}. Check the control plane (`kubectl get --raw /readyz?verbose`)."
        )
    return BackendError(
        f"{_cluster(cluster)} refused to {verb} {_target(resource, name)}{_where(namespace)}: {_said(status)}"
    )


def _unreachable(exc: BaseException, verb: str, resource: str, cluster: ClusterRef | None) -> ClusterUnreachable:
    what = _describe_network_error(exc)
    if cluster is not None:
        where = f"the API server {cluster.server} of context {cluster.context!r}"
        check = f"`kubectl --context {cluster.context} cluster-info`"
    else:
        where, check = "the Kubernetes API server", "`kubectl cluster-info`"
    return ClusterUnreachable(
        f"{where} does not answer ({what}) to {verb} {resource}. Is the cluster running and reachable from "
        f"here, and is the server in the kubeconfig right? Check with {check}."
    )


def _describe_network_error(exc: BaseException) -> str:
    import urllib3.exceptions as u3

    cause: BaseException = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    text = str(cause) or type(cause).__name__
    if getattr(exc, "status", None) == 0:  # the client's ApiException around a TLS or stream error: its reason
        text = " ".join(str(getattr(exc, "reason", "") or type(exc).__name__).split())
    if isinstance(cause, (u3.SSLError, ssl.SSLError)) or "SSLError" in text or "CERTIFICATE" in text:
        return f"TLS failed: {text}; check the context's certificate-authority"
    if isinstance(cause, (u3.ReadTimeoutError, u3.ConnectTimeoutError, TimeoutError)) and not isinstance(
        cause, u3.NewConnectionError
    ):
        return f"timed out: {text}"
    return text


def _is_network_error(exc: BaseException) -> bool:
    import urllib3.exceptions as u3

    if isinstance(exc, (u3.MaxRetryError, u3.NewConnectionError, u3.ProtocolError, u3.TimeoutError, u3.SSLError)):
        return True
    # socket.gaierror (a server name that does not resolve) is an OSError too, but not a ConnectionError.
    return isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, socket.gaierror))


def translate(
    exc: BaseException,
    *,
    verb: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    cluster: ClusterRef | None = None,
) -> CloverError:
    """The pytest-clover error for ``exc``, raised by the client while doing ``verb`` on ``resource`` (named
    as Kubernetes names it: ``pods/exec``, ``virtualservices.networking.istio.io``) in ``namespace``; the
    caller raises it ``from exc``. A CloverError is returned as it is."""
    if isinstance(exc, CloverError):
        return exc
    resource = _qualified(resource)
    status = api_status(exc)
    if status is not None:
        return _http(status, verb, resource, namespace, name, cluster)
    if getattr(exc, "status", None) == 0 and "Cannot prepare a request" not in str(getattr(exc, "reason", "")):
        return _unreachable(exc, verb, resource, cluster)  # the client's own wrapping of TLS and stream errors
    if _is_network_error(exc):
        return _unreachable(exc, verb, resource, cluster)
    if type(exc).__name__ == "ConfigException":  # kubernetes.config: a kubeconfig the client cannot use
        where = f" (context {cluster.context!r})" if cluster else ""
        return SettingError(
            f"the kubeconfig{where} cannot be used: {exc}; fix it, or point --clover-kubeconfig / "
            "--clover-context elsewhere"
        )
    return BackendError(
        f"{verb} {_target(resource, name)}{_where(namespace)} on {_cluster(cluster)} failed: "
        f"{type(exc).__name__}: {exc}"
    )


def translatable() -> tuple[type[BaseException], ...]:
    """The exception types :func:`translate` turns into pytest-clover errors (the client's, urllib3's, the
    network's); anything else is a programming error and is let through."""
    import urllib3.exceptions as u3

    kinds: list[type[BaseException]] = [u3.HTTPError, OSError]
    try:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:  # the client is not installed: nothing of it can be raised either
        pass
    else:
        kinds += [ApiException, ConfigException]
    try:
        from websocket import WebSocketException
    except ImportError:
        pass
    else:
        kinds.append(WebSocketException)
    return tuple(kinds)


@contextmanager
def api_call(
    verb: str,
    resource: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    cluster: ClusterRef | None = None,
) -> Iterator[None]:
    """Run the client calls inside translated: what the client (or urllib3, ssl, the socket) raises leaves as
    a pytest-clover error ``from`` it. Programming errors (TypeError, the client's validation) pass as they are."""
    try:
        yield
    except CloverError:
        raise
    except Exception as exc:
        if not isinstance(exc, translatable()):
            raise
        raise translate(exc, verb=verb, resource=resource, namespace=namespace, name=name, cluster=cluster) from exc
