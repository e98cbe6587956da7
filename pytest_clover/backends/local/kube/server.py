"""The Kubernetes API server of the embedded mesh: an aiohttp application over the :mod:`.store`.

It answers what kube-apiserver answers, as ``kubectl`` 1.33 and the official Python client expect it:
bearer-token authentication, version/health/discovery/OpenAPI documents, the REST verbs of every served
resource (get, list, watch, create, update, patch in its four content types including server-side apply,
delete with propagation, deletecollection), server-side printing (``as=Table``), the ``status``/``scale``/
``eviction`` subresources and the streaming ones (``log``, ``proxy``, ``portforward``, ``exec``) handed to
:mod:`.streams`. Every refusal is a Kubernetes ``Status`` (:class:`.errors.ApiError`); nothing a client sends
yields anything else, and a bug answers a 500 ``Status`` and is logged.

What the mesh does with the objects goes through :class:`.hooks.ClusterHooks` (admission before a write,
"in force" after it, where pods listen); garbage collection and namespace deletion live in :mod:`.gc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import random
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import gc as garbage
from . import resources as res
from .errors import ApiError, Cause, go_json_type
from .hooks import ClusterHooks
from .resources import Resource
from .store import EVENT_FIELD_GETTERS, POD_FIELD_GETTERS, Store

__all__ = [
    "MAX_BODY_BYTES",
    "ApiServer",
    "Output",
    "Target",
    "create_app",
    "decode_body",
    "decode_protobuf",
    "encode_json",
    "negotiate",
    "parse_path",
    "start",
    "stop",
]

log = logging.getLogger("pytest_clover.kube.server")

MAX_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's limit on a request body (``--max-request-bytes`` defaults to 3 MiB)."""
MAX_NESTING = 100
"""Deepest JSON nesting accepted: real objects stay under 20 levels, and deeper ones would exhaust recursion."""
COMPRESS_ABOVE = 128 * 1024
"""Answers larger than this are gzipped when the client accepts it (kube-apiserver's threshold)."""
MAX_YAML_NODES = 1_000_000
"""Most values a YAML body may expand to (aliases count every time they are used)."""
MIN_WATCH_TIMEOUT = 1800.0
"""A watch without ``timeoutSeconds`` lasts between this and twice this (kube-apiserver's --min-request-timeout)."""
WRITE_STALL_SECONDS = 60.0
"""A watcher that accepts no byte for this long is cut off (its events would otherwise pile up in memory)."""
FRESHNESS_TIMEOUT = 3.0
"""How long a read "not older than" a resourceVersion the store has not reached waits for it before the answer
is 504 "Too large resource version" (the watch cache's ``blockTimeout``)."""
DEFAULT_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:19:08Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
BUILTIN_GROUPS = frozenset(
    {"", "apps", "discovery.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", "events.k8s.io", "policy",
     "autoscaling", "authorization.k8s.io", "rbac.authorization.k8s.io"}
)
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
# Resources whose REST storage answers a DELETE with the deleted object rather than a Status.
RETURNS_DELETED_OBJECT = frozenset({"/pods", "/services"})
# Resources a PUT may create (AllowCreateOnUpdate in their REST strategies).
CREATE_ON_UPDATE = frozenset({"/endpoints", "/events", "events.k8s.io/events", "coordination.k8s.io/leases"})
NOT_FOUND_MESSAGE = "the server could not find the requested resource"
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
# What a new object's status starts as, where Kubernetes' create strategy sets one (the given one is dropped).
INITIAL_STATUS: dict[str, dict[str, Any]] = {"/namespaces": {"phase": "Active"}, "/pods": {"phase": "Pending"}}

# Field selectors each resource supports beyond metadata.name and metadata.namespace (Kubernetes' field label
# conversion functions), with how to read the field from an object.
FieldGetter = Callable[[dict[str, Any]], str]


def _path_getter(*path: str) -> FieldGetter:
    def get(obj: dict[str, Any]) -> str:
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


FIELD_GETTERS: dict[str, Mapping[str, FieldGetter]] = {
    "/pods": POD_FIELD_GETTERS,
    "/events": EVENT_FIELD_GETTERS,
    "/namespaces": {"status.phase": _path_getter("status", "phase")},
    "apps/replicasets": {"status.replicas": _path_getter("status", "replicas")},
}
# How names are validated (DNS-1123 subdomain unless listed): namespaces are labels, services DNS-1035 labels,
# RBAC objects anything usable as one URL path segment ("system:controller:..." included).
NAME_RULES = {"/namespaces": "label", "/services": "dns1035",
              **{f"rbac.authorization.k8s.io/{plural}": "path-segment"
                 for plural in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")}}
# Resources without metadata.generation.
NO_GENERATION = frozenset({"/namespaces", "/configmaps", "/endpoints", "/events", "events.k8s.io/events",
                           "/serviceaccounts", "coordination.k8s.io/leases", "discovery.k8s.io/endpointslices",
                           "rbac.authorization.k8s.io/roles", "rbac.authorization.k8s.io/rolebindings",
                           "rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/clusterrolebindings"})

# -------------------------------------------------------------------------------------------------- helpers


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    """The current time as Kubernetes writes timestamps: RFC 3339, seconds, ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def _qualified(resource: Resource) -> str:
    """``pods``, ``deployments.apps``: how messages name a resource (schema.GroupResource.String())."""
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def _no_route() -> ApiError:
    return ApiError(404, NOT_FOUND_MESSAGE)


def _method_not_supported(resource: Resource, action: str) -> ApiError:
    return ApiError(
        405,
        f'{action} is not supported on resources of kind "{_qualified(resource)}"',
        kind=resource.plural,
        group=resource.group,
    )


def _bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _invalid_options(kind: str, causes: list[Cause]) -> ApiError:
    return ApiError.invalid(kind, "", causes, group="meta.k8s.io")


def _go_quote(text: str) -> str:
    """A string quoted as Go's ``strconv.Quote``/``%q`` does, near enough for messages and headers."""
    return json.dumps(text)


def _warning_header(text: str) -> str:
    # RFC 7234 warning as kube-apiserver writes it: code 299, agent "-", the text quoted.
    return "299 - " + json.dumps(text, ensure_ascii=True)


def _json_depth_ok(value: Any, limit: int = MAX_NESTING) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub_surrogates(value: Any) -> Any:
    """Lone UTF-16 surrogates (``"\\ud800"`` in JSON) become U+FFFD, as Go's JSON decoder reads them."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub_surrogates(k): _scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_surrogates(v) for v in value]
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _go_json_error(text: str, exc: Exception) -> str:
    """Go's wording for a JSON syntax error, as far as it can be derived from Python's."""
    if isinstance(exc, json.JSONDecodeError):
        if exc.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        char = text[exc.pos]
        if exc.msg.startswith("Extra data"):
            return f"invalid character '{char}' after top-level value"
        if exc.msg.startswith("Expecting property name"):
            return f"invalid character '{char}' looking for beginning of object key string"
        if exc.msg.startswith("Expecting ',' delimiter") or exc.msg.startswith("Expecting ':' delimiter"):
            return f"invalid character '{char}' after object key:value pair"
        if exc.msg.startswith("Invalid control character"):
            return f"invalid character {_go_quote(char)} in string literal"
        return f"invalid character '{char}' looking for beginning of value"
    return str(exc)


class _YamlLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): plain JSON values, timestamps kept as strings."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expanded_size(value: Any) -> int:
    """How many nodes ``value`` has once shared (aliased) nodes are written out, counted up to a cap."""
    count = 0
    stack = [value]
    while stack and count <= MAX_YAML_NODES:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _yaml_to_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _yaml_key(k)): _yaml_to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_to_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value}")
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set):
        return [_yaml_to_json_value(v) for v in sorted(value, key=str)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _yaml_key(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def decode_body(data: bytes, content_type: str) -> Any:
    """A request body as a JSON value: JSON, or YAML for the YAML media types. Malformed → 400 worded as
    kube-apiserver words it."""
    base = content_type.split(";", 1)[0].strip().lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
    if base in ("application/yaml", "application/apply-patch+yaml", "text/yaml", "application/x-yaml"):
        try:
            loaded = yaml.load(text, Loader=_YamlLoader)
            # Aliases share nodes: an "alias bomb" is small in memory and gigabytes once written out.
            if _expanded_size(loaded) > MAX_YAML_NODES:
                raise ValueError("document contains excessive aliasing")
            value = _yaml_to_json_value(loaded)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise _bad_request(f"error converting YAML to JSON: yaml: {_yaml_message(exc)}") from None
    else:
        if not text.strip():
            raise _bad_request("couldn't get version/kind; json parse error: unexpected end of JSON input")
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _bad_request(f"couldn't get version/kind; json parse error: {_go_json_error(text, exc)}") from None
    if not _json_depth_ok(value):
        raise _bad_request(f"couldn't get version/kind; json parse error: exceeded max depth of {MAX_NESTING}")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        value = _scrub_surrogates(value)
    return value


# ------------------------------------------------------------------------------------------ protobuf bodies

PROTOBUF = "application/vnd.kubernetes.protobuf"
"""``protobuf.MEDIA_TYPE``, here without importing the decoder: :mod:`.protobuf`, :mod:`.patch` and
:mod:`.authorization` are imported on first use (the API starts while the mesh's pods do, and every module
it imports costs them CPU)."""


def decode_protobuf(data: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf body (``k8s\\0`` + runtime.Unknown) as the JSON object it stands for, for every
    served kind and the meta kinds (DeleteOptions…): see :mod:`.protobuf`. Other kinds → 415, malformed → 400."""
    from . import protobuf

    return protobuf.decode(data)


def _yaml_message(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"line {exc.problem_mark.line + 1}: {exc.problem}"
    return str(exc).replace("\n", " ")


def encode_json(value: Any) -> bytes:
    """Compact JSON, as kube-apiserver writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_bool(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise _bad_request(f"strconv.ParseBool: parsing {_go_quote(raw)}: invalid syntax")


def _parse_int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise _bad_request(f"strconv.ParseInt: parsing {_go_quote(raw)}: invalid syntax")
    value = int(raw)
    if not -(2**63) <= value < 2**63:
        raise _bad_request(f"strconv.ParseInt: parsing {_go_quote(raw)}: value out of range")
    return value


# ------------------------------------------------------------------------------------------ content negotiation


@dataclass(frozen=True)
class _MediaRange:
    type: str
    params: dict[str, str]
    quality: float


def _parse_accept(header: str) -> list[_MediaRange]:
    ranges: list[_MediaRange] = []
    for position, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        quality = 1.0
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            key = key.strip().lower()
            value = value.strip().strip('"')
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif key:
                params[key] = value
        ranges.append(_MediaRange(pieces[0].lower(), params, quality - position * 1e-6))
    ranges.sort(key=lambda r: -r.quality)
    return [r for r in ranges if r.quality > 0]


@dataclass(frozen=True)
class Output:
    """How to answer: ``json``, ``yaml``, ``table`` (with the Table's version) or ``partial`` (metadata)."""

    format: str = "json"
    table_version: str = "v1"


_JSON_TYPES = ("application/json", "application/*", "*/*")


def negotiate(accept: str | None) -> Output:
    """The representation a request's ``Accept`` asks for (the first one served wins, as kube-apiserver's
    negotiation does); protobuf is skipped (kubectl always lists JSON after it); nothing served → 406."""
    if not accept or not accept.strip():
        return Output()
    ranges = _parse_accept(accept)
    if not ranges:
        return Output()
    for media in ranges:
        wanted = media.params.get("as")
        if media.type in _JSON_TYPES:
            if not wanted:
                return Output()
            group, version = media.params.get("g", ""), media.params.get("v", "")
            if wanted == "Table" and group == "meta.k8s.io" and version in ("v1", "v1beta1"):
                return Output("table", version)
            if wanted in ("PartialObjectMetadata", "PartialObjectMetadataList") and group == "meta.k8s.io" and (
                version in ("v1", "v1beta1")
            ):
                return Output("partial", version)
            continue
        if media.type in ("application/yaml",) and not wanted:
            return Output("yaml")
    raise ApiError(
        406,
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )


# ------------------------------------------------------------------------------------------ routing


@dataclass
class Target:
    """What a resource URL designates (Kubernetes' RequestInfo)."""

    resource: Resource
    version: str
    namespace: str | None
    name: str | None
    subresource: str = ""
    rest: str = ""  # what follows the subresource (the path a proxy forwards)
    watch_path: bool = False

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the version the client asked for."""
        return res.group_version(self.resource.group, self.version)


def parse_path(path: str) -> tuple[str, str, Target | None]:
    """Split an API path. Returns ``(group, version, target)``; ``target`` is None for discovery paths
    (``/api``, ``/api/v1``, ``/apis/<g>[/<v>]``). Unknown resources → 404."""
    parts = path.split("/")[1:]
    if parts and parts[-1] == "" and "proxy" not in parts:
        parts = parts[:-1]
    if not parts or parts[0] not in ("api", "apis"):
        raise _no_route()
    if parts[0] == "api":
        group, version, rest = "", (parts[1] if len(parts) > 1 else ""), parts[2:]
    else:
        group = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else ""
        rest = parts[3:]
    if not rest:
        return group, version, None
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
        if not rest:
            raise _no_route()
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 2:
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    resource = res.find(group, version, plural)
    if resource is None or any(p == "" for p in rest[:3]):
        raise _no_route()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    extra = "/".join(rest[3:])
    if len(rest) > 3 and subresource != "proxy":
        raise _no_route()
    if subresource and resource.subresource(subresource) is None:
        raise _no_route()
    if not resource.namespaced and namespace is not None:
        raise _no_route()
    if resource.namespaced and namespace is None and name is not None:
        raise _no_route()
    if subresource == "proxy":
        # Kubernetes forwards the path after ".../proxy" as it came, a trailing slash included.
        marker = f"/{name}/proxy"
        index = path.find(marker)
        extra = path[index + len(marker) :] if index >= 0 else "/" + extra
    return group, version, Target(resource, version, namespace, name, subresource, extra, watch_path)


# ------------------------------------------------------------------------------------------ the server


@dataclass
class _Written:
    """A write's result: the object, its HTTP code, the warnings to send."""

    obj: dict[str, Any]
    code: int = 200
    warnings: list[str] = field(default_factory=list)


class ApiServer:
    """The request handlers, over one store and one set of hooks. :func:`create_app` builds it."""

    def __init__(
        self,
        store: Store,
        hooks: ClusterHooks,
        token: str,
        version: dict[str, Any] | None,
        *,
        bookmark_interval: float,
        freshness_timeout: float = FRESHNESS_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.token = token
        self.version = dict(version or DEFAULT_VERSION)
        self.bookmark_interval = bookmark_interval
        self.freshness_timeout = freshness_timeout
        self.clock = clock
        self.started = clock()
        """When the server started: the ``Last-Modified`` of its documents, which never change while it runs."""
        self.collector = garbage.GarbageCollector(store, hooks)

    # ---------------------------------------------------------------- setup

    def register_resources(self) -> None:
        """Register every stored resource with the store (once) and create the initial namespaces."""
        for resource in res.STORED_RESOURCES:
            if resource.key in self.store.resources:
                continue
            self.store.register(
                resource.key,
                kind=resource.kind,
                group=resource.group,
                namespaced=resource.namespaced,
                api_version=resource.api_version,
                generation=resource.key not in NO_GENERATION,
                status_subresource="status" in resource.subresources,
                field_getters=FIELD_GETTERS.get(resource.key),
                graceful=resource.key == "/pods",
                name_rule=NAME_RULES.get(resource.key, "subdomain"),
                allow_create_on_update=resource.key in CREATE_ON_UPDATE,
            )
        for name in INITIAL_NAMESPACES:
            with contextlib.suppress(ApiError):
                self.store.create("/namespaces", garbage.new_namespace(name), status={"phase": "Active"})
        from . import openapi

        # The Istio kinds are custom resources on a cluster: their definitions are there to list and read.
        for crd in openapi.crd_objects():
            with contextlib.suppress(ApiError):
                self.store.create(CRD_KEY, crd, status=crd.get("status"))

    # ---------------------------------------------------------------- entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: authenticate, route, answer; errors as Status."""
        try:
            if not _check_token(request.headers.get("Authorization"), self.token):
                raise ApiError(401, "Unauthorized")
            return await self._route(request)
        except ApiError as exc:
            return self._error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return self._error_response(
                ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
            )
        except (asyncio.CancelledError, ConnectionError):
            raise
        except HttpProcessingError as exc:
            # A body that broke off or was badly framed (the client's doing, not ours).
            return self._error_response(ApiError(400, f"error reading the request body: {exc.message or exc}"))
        except web.HTTPException as exc:
            return self._error_response(ApiError(exc.status, exc.reason or "error"))
        except Exception as exc:
            log.exception("API request %s %s failed", request.method, request.path_qs)
            return self._error_response(ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def _error_response(self, exc: ApiError) -> web.Response:
        headers = {"Cache-Control": "no-cache, private"}
        if exc.retry_after_seconds is not None:
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return web.Response(
            status=exc.code, body=encode_json(exc.status()), content_type="application/json", headers=headers
        )

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        method = request.method
        resource_path = path.startswith(("/api/", "/apis/")) and path.strip("/") not in ("api", "apis")
        if method not in ("GET", "HEAD") and not resource_path:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok", content_type="text/plain")
        if path in ("/version", "/version/"):
            return self._json(self.version)
        if path.startswith("/openapi/"):
            return self._openapi(request)
        if path in ("/api", "/api/", "/apis", "/apis/") or path.startswith(("/api/", "/apis/")):
            _, _, target = parse_path(path)
            if target is None:
                if method not in ("GET", "HEAD"):
                    raise ApiError(405, "the server does not allow this method on the requested resource")
                return self._discovery(path, request.headers.get("Accept"))
            return await self._resource(request, target)
        if path == "/":
            return self._json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2",
                                         "/openapi/v3", "/readyz", "/version"]})
        raise _no_route()

    # ---------------------------------------------------------------- documents

    def _json(self, body: Any, status: int = 200, *, content_type: str = "application/json",
              warnings: list[str] | None = None) -> web.Response:
        response = _compressible(web.Response(status=status, body=encode_json(body),
                                              headers={"Content-Type": content_type}))
        response.headers["Cache-Control"] = "no-cache, private"
        for warning in dict.fromkeys(warnings or ()):
            response.headers.add("Warning", _warning_header(warning))
        return response

    def _discovery(self, path: str, accept: str | None) -> web.Response:
        root = path.strip("/")
        if root in ("api", "apis") and accept:
            for media in _parse_accept(accept):
                if media.params.get("as") == "APIGroupDiscoveryList" and media.params.get("g") == (
                    "apidiscovery.k8s.io"
                ):
                    version = media.params.get("v", "")
                    if version in ("v2", "v2beta1") and media.type in _JSON_TYPES:
                        body = res.aggregated_discovery("api" if root == "api" else "apis", version)  # type: ignore[arg-type]
                        return self._json(
                            body,
                            content_type=f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList",
                        )
                elif media.type in _JSON_TYPES and not media.params.get("as"):
                    break
        document = res.legacy_discovery(path)
        if document is None:
            raise _no_route()
        return self._json(document)

    def _openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI documents, cacheable as kube-openapi serves them: each with an ``ETag`` (and the server's
        start as ``Last-Modified``), answered 304 to a client that has it; a group-version document asked by its
        hash is ``public, immutable`` (a stale hash is redirected to the current one), which is what lets
        kubectl keep it in its cache and not fetch it again on every ``kubectl apply``."""
        from . import openapi

        path = request.path
        gzip_ok = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        if path.rstrip("/") == "/openapi/v2":
            accept = request.headers.get("Accept", "")
            if "com.github.proto-openapi.spec.v2" in accept and "protobuf" in accept:
                # What kubectl asks for when it validates on the client side (a kind whose OpenAPI v3 has no
                # PATCH to tell it the server validates: the access reviews, a `kind: List`).
                document = openapi.openapi_v2_protobuf()
                headers = {"Content-Type": openapi.PROTOBUF_V2_CONTENT_TYPE, "Vary": "Accept"}
                return self._cacheable(request, document, headers, gzip_ok)
            document = openapi.openapi_v2()
            return self._cacheable(request, document, {"Content-Type": "application/json", "Vary": "Accept"}, gzip_ok)
        if path.rstrip("/") == "/openapi/v3":
            document = openapi.openapi_v3_index_bytes()
            return self._cacheable(request, document, {"Content-Type": "application/json"}, gzip_ok)
        if path.startswith("/openapi/v3/"):
            relative = path[len("/openapi/v3/") :]
            found = openapi.openapi_v3(relative)
            if found is not None:
                headers = {"Content-Type": "application/json"}
                wanted = request.query.get("hash")
                if wanted:
                    current = openapi.document_etag(found)
                    if wanted != current:
                        # A client holding an older document's URL is sent to the current one (http.Redirect).
                        location = f"/openapi/v3/{relative.strip('/')}?hash={current}"
                        return web.Response(status=301, text=f'<a href="{location}">Moved Permanently</a>.\n\n',
                                            content_type="text/html", headers={"Location": location})
                    # kubectl caches hash-addressed documents; so may every client.
                    headers.update({"Vary": "Accept", "Cache-Control": "public, immutable",
                                    "Expires": _http_date(self.clock() + 365 * 24 * 3600)})
                return self._cacheable(request, found, headers, gzip_ok)
        raise _no_route()

    def _cacheable(self, request: web.Request, document: bytes, headers: dict[str, str], gzip_ok: bool) -> web.Response:
        """``document`` with its ETag and Last-Modified, or 304 Not Modified when the client's copy is current
        (``If-None-Match``, else ``If-Modified-Since``, as Go's ``http.ServeContent`` decides)."""
        from . import openapi

        etag = f'"{openapi.document_etag(document)}"'
        modified = _http_date(self.started)
        headers = {"Cache-Control": "no-cache, private", **headers, "ETag": etag, "Last-Modified": modified}
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            if "*" in tags or etag in tags:
                return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        elif request.if_modified_since is not None and request.if_modified_since.timestamp() >= int(self.started):
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        return _static(document, headers, gzip_ok)

    # ---------------------------------------------------------------- resources

    async def _resource(self, request: web.Request, target: Target) -> web.StreamResponse:
        # HEAD is a GET without its body (aiohttp leaves the body out).
        method = "GET" if request.method == "HEAD" else request.method
        resource = target.resource
        query = request.query
        sub = target.subresource
        if sub in ("log", "proxy", "portforward", "exec"):
            return await self._stream(request, target)
        if sub == "eviction":
            if method != "POST":
                raise _method_not_supported(resource, _verb_name(method))
            return await self._evict(request, target)
        if sub == "scale":
            return await self._scale(request, target)
        if target.name is None:
            watch = target.watch_path or bool(_parse_bool(query, "watch"))
            if method == "GET":
                self._require_verb(resource, "watch" if watch else "list")
                return await (self._watch(request, target) if watch else self._list(request, target))
            if target.watch_path:
                raise _no_route()
            if resource.namespaced and target.namespace is None:
                raise ApiError(405, "the server does not allow this method on the requested resource")
            if method == "POST":
                self._require_verb(resource, "create")
                if not resource.stored:
                    return await self._review(request, target)
                return await self._create(request, target)
            if method == "DELETE":
                self._require_verb(resource, "deletecollection")
                return await self._delete_collection(request, target)
            raise _method_not_supported(resource, _verb_name(method))
        if target.watch_path or (method == "GET" and _parse_bool(query, "watch")):
            if method != "GET":
                raise _no_route()
            self._require_verb(resource, "watch")
            return await self._watch(request, target)
        if sub in ("", "status", "finalize"):
            if method == "GET" and sub != "finalize":
                self._require_verb(resource, "get")
                obj = self.store.get(resource.key, target.namespace, target.name)
                return self._respond_object(request, target, obj)
            if method == "PUT":
                self._require_verb(resource, "update")
                return await self._update(request, target)
            if method == "PATCH" and sub != "finalize":
                self._require_verb(resource, "patch")
                return await self._patch(request, target)
            if method == "DELETE" and not sub:
                self._require_verb(resource, "delete")
                return await self._delete(request, target)
        raise _method_not_supported(resource, _verb_name(method))

    def _require_verb(self, resource: Resource, verb: str) -> None:
        if verb not in resource.verbs:
            raise _method_not_supported(resource, verb)

    # ---------------------------------------------------------------- output

    def _out(self, obj: dict[str, Any], target: Target) -> dict[str, Any]:
        """The stored object as the version the client asked for."""
        # apiVersion and kind first, as Kubernetes writes them (readers of -o json/yaml expect it).
        rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        kind = obj.get("kind") or target.resource.kind
        obj.clear()
        obj.update(apiVersion=target.api_version, kind=kind, **rest)
        return obj

    def _respond_object(
        self, request: web.Request, target: Target, obj: dict[str, Any], status: int = 200,
        warnings: list[str] | None = None,
    ) -> web.Response:
        output = negotiate(request.headers.get("Accept"))
        obj = self._out(obj, target)
        if output.format == "table":
            return self._json(self._table(request, target, [obj], output), status, warnings=warnings)
        if output.format == "partial":
            return self._json(_partial(obj, output.table_version), status, warnings=warnings)
        if output.format == "yaml":
            return self._yaml(obj, status, warnings)
        return self._json(obj, status, warnings=warnings)

    def _yaml(self, body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
        text = yaml.safe_dump(body, default_flow_style=False, sort_keys=False, allow_unicode=True)
        response = web.Response(status=status, text=text, content_type="application/yaml")
        for warning in dict.fromkeys(warnings or ()):
            response.headers.add("Warning", _warning_header(warning))
        return response

    def _table(
        self, request: web.Request, target: Target, objects: list[dict[str, Any]], output: Output,
        *, headers: bool = True,
    ) -> dict[str, Any]:
        from . import tables

        include = request.query.get("includeObject", "") or "Metadata"
        if include not in ("Metadata", "Object", "None"):
            raise _invalid_options(
                "TableOptions",
                [Cause("includeObject", f"Invalid value: {_go_quote(include)}: must be 'Metadata', 'Object', "
                       "'None', or empty")],
            )
        table = tables.table(target.resource, objects, include_object=include, now=self.clock())
        table["apiVersion"] = f"meta.k8s.io/{output.table_version}"
        if not headers:
            # kube-apiserver sends the column definitions with a watch's first event only.
            table["columnDefinitions"] = None
        return table

    # ---------------------------------------------------------------- list

    def _list_options(self, query: Mapping[str, str], *, watch: bool) -> dict[str, Any]:
        rv = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        continue_token = query.get("continue", "")
        send_initial = _parse_bool(query, "sendInitialEvents")
        causes: list[Cause] = []
        if watch:
            if send_initial is not None and match != "NotOlderThan":
                causes.append(Cause("resourceVersionMatch", "Forbidden: sendInitialEvents requires setting "
                                    "resourceVersionMatch to NotOlderThan", "FieldValueForbidden"))
            if match:
                if send_initial is None:
                    causes.append(Cause("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden for "
                                        "watch unless sendInitialEvents is provided", "FieldValueForbidden"))
                if match != "NotOlderThan":
                    causes.append(Cause("resourceVersionMatch", f"Unsupported value: {_go_quote(match)}: supported "
                                        'values: "NotOlderThan"', "FieldValueNotSupported"))
                if continue_token:
                    causes.append(Cause("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden when "
                                        "continue is provided", "FieldValueForbidden"))
        else:
            if match:
                if not rv:
                    causes.append(Cause("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden unless "
                                        "resourceVersion is provided", "FieldValueForbidden"))
                if continue_token:
                    causes.append(Cause("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden when "
                                        "continue is provided", "FieldValueForbidden"))
                if match not in ("Exact", "NotOlderThan"):
                    causes.append(Cause("resourceVersionMatch", f"Unsupported value: {_go_quote(match)}: supported "
                                        'values: "Exact", "NotOlderThan", ""', "FieldValueNotSupported"))
                if match == "Exact" and rv == "0":
                    causes.append(Cause("resourceVersionMatch", 'Forbidden: resourceVersionMatch "exact" is '
                                        'forbidden for resourceVersion "0"', "FieldValueForbidden"))
            if send_initial is not None:
                causes.append(Cause("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for list",
                                    "FieldValueForbidden"))
        if causes:
            raise _invalid_options("ListOptions", causes)
        if rv and not rv.isdigit():
            raise _bad_request(f"invalid resource version: {_go_quote(rv)}")
        limit = _parse_int(query, "limit")
        timeout = _parse_int(query, "timeoutSeconds")
        return {
            "resource_version": rv,
            "match": match,
            "continue": continue_token,
            "send_initial_events": send_initial,
            "limit": limit if limit and limit > 0 else None,
            "timeout": timeout,
            "label_selector": query.get("labelSelector", ""),
            "field_selector": query.get("fieldSelector", ""),
            "allow_bookmarks": bool(_parse_bool(query, "allowWatchBookmarks")),
        }

    async def _wait_until_fresh(self, rv: str) -> None:
        """A read not older than ``rv`` waits (up to :attr:`freshness_timeout`) for the store to get there, as
        the watch cache waits for etcd's events (``waitUntilFreshAndBlock``); the store answers 504 if it has
        not by then."""
        if rv and rv != "0" and int(rv) > int(self.store.resource_version):
            await self.store.wait_for_revision(int(rv), self.freshness_timeout)

    async def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        options = self._list_options(request.query, watch=False)
        output = negotiate(request.headers.get("Accept"))
        if not options["continue"]:
            await self._wait_until_fresh(options["resource_version"])
        result = self.store.list(
            target.resource.key,
            target.namespace,
            label_selector=options["label_selector"],
            field_selector=options["field_selector"],
            limit=options["limit"],
            continue_token=options["continue"] or None,
            resource_version=options["resource_version"] or None,
            resource_version_match=options["match"] or None,
        )
        metadata: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            metadata["continue"] = result.continue_token
        if result.remaining_item_count is not None and result.continue_token:
            metadata["remainingItemCount"] = result.remaining_item_count
        # The listed items are the stored objects: copy the top level only, to set apiVersion.
        items = [self._out(dict(item), target) for item in result.items]
        if output.format == "table":
            table = self._table(request, target, items, output)
            table["metadata"] = metadata
            return self._json(table)
        if output.format == "partial":
            return self._json({
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{output.table_version}",
                "metadata": metadata,
                "items": [_partial(item, output.table_version) for item in items],
            })
        if target.resource.group in BUILTIN_GROUPS:
            # Typed lists of built-in kinds carry no apiVersion/kind per item; custom resources' lists do.
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        body = {"kind": target.resource.list_kind, "apiVersion": target.api_version, "metadata": metadata,
                "items": items}
        if output.format == "yaml":
            return self._yaml(body)
        return self._json(body)

    # ---------------------------------------------------------------- watch

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        options = self._list_options(request.query, watch=True)
        output = negotiate(request.headers.get("Accept"))
        field_selector = options["field_selector"]
        if target.name is not None:
            # A watch on one object is a watch on its collection narrowed to its name.
            name_requirement = f"metadata.name={target.name}"
            if field_selector and field_selector != name_requirement:
                parsed = [p.strip() for p in field_selector.split(",")]
                names = [p for p in parsed if p.startswith("metadata.name")]
                if any(p not in (name_requirement, f"metadata.name=={target.name}") for p in names):
                    raise _bad_request("fieldSelector metadata.name doesn't match requested name")
                field_selector = ",".join([*parsed, name_requirement])
            else:
                field_selector = name_requirement
        if request.method == "HEAD":
            # A HEAD has no body to stream events in: the headers a watch would start with, and done.
            return web.Response(status=200, headers={"Content-Type": "application/json",
                                                     "Cache-Control": "no-cache, private"})
        if options["send_initial_events"]:
            # Only a watch that starts with the current state waits for the store to reach its resourceVersion
            # (then fails with an ERROR event); a plain watch from a future one is opened at once and sends
            # the changes after it, as the watch cache does (waitUntilWatchCacheFreshAndForceAllEvents).
            await self._wait_until_fresh(options["resource_version"])
        watcher = self.store.watch(
            target.resource.key,
            target.namespace,
            label_selector=options["label_selector"],
            field_selector=field_selector,
            resource_version=options["resource_version"] or None,
            allow_bookmarks=options["allow_bookmarks"],
            send_initial_events=options["send_initial_events"],
        )
        try:
            timeout = options["timeout"]
            if timeout is None or timeout <= 0:
                timeout = MIN_WATCH_TIMEOUT * (1 + random.random())
            response = web.StreamResponse(
                status=200,
                headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            await self._pump(request, response, watcher, target, output, float(timeout), options["allow_bookmarks"])
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
            return response
        finally:
            watcher.close()

    async def _pump(
        self, request: web.Request, response: web.StreamResponse, watcher: Any, target: Target, output: Output,
        timeout: float, bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # kube-apiserver bookmarks periodically and once more shortly before the watch times out, so that a
        # client resumes from a recent resourceVersion.
        last_call = deadline - 2.0

        def bookmark_after(now: float) -> float:
            if not bookmarks:
                return math.inf
            regular = now + self.bookmark_interval
            return min(regular, last_call) if now < last_call else regular

        next_bookmark = bookmark_after(loop.time())
        first = True
        while True:
            now = loop.time()
            if now >= deadline:
                return
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            # Wake at least every few seconds to notice a client that went away without a word.
            wait = min(deadline, next_bookmark, now + 5.0) - now
            event = await watcher.next(max(wait, 0.0))
            if event is None:
                if loop.time() >= next_bookmark:
                    next_bookmark = bookmark_after(loop.time())
                    if not watcher.can_bookmark:
                        continue
                    event = watcher.bookmark()
                else:
                    continue
            data = self._event_bytes(request, event, target, output, first)
            first = first and event.get("type") not in ("ADDED", "MODIFIED", "DELETED")
            try:
                await asyncio.wait_for(response.write(data), WRITE_STALL_SECONDS)
            except (ConnectionError, RuntimeError, TimeoutError):
                return
            if event.get("type") == "ERROR":
                return

    def _event_bytes(
        self, request: web.Request, event: dict[str, Any], target: Target, output: Output, first: bool
    ) -> bytes:
        kind = event.get("type")
        obj = event.get("object")
        if kind != "ERROR" and isinstance(obj, dict):
            obj = self._out(dict(obj), target)
            if output.format == "table":
                if kind == "BOOKMARK":
                    table = self._table(request, target, [], output, headers=first)
                    table["metadata"] = dict(obj.get("metadata") or {})
                    obj = table
                else:
                    obj = self._table(request, target, [obj], output, headers=first)
            elif output.format == "partial":
                obj = _partial(obj, output.table_version)
        return encode_json({"type": kind, "object": obj}) + b"\n"

    # ---------------------------------------------------------------- bodies

    async def _body(self, request: web.Request, *, allowed: tuple[str, ...] = ("application/json",
                                                                              "application/yaml")) -> Any:
        content_type = request.headers.get("Content-Type", "") or "application/json"
        base = content_type.split(";", 1)[0].strip().lower()
        if base == PROTOBUF:
            data = await request.read()
            if len(data) > MAX_BODY_BYTES:
                raise ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
            return decode_protobuf(data)
        if base not in allowed:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(allowed),
            )
        data = await request.read()
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
        return decode_body(data, base)

    def _object_body(self, body: Any, target: Target, *, kind: str = "", api_version: str = "") -> dict[str, Any]:
        """Check an object a client sent for ``target``: a JSON object of the URL's kind and version, with
        well-typed metadata. Missing apiVersion/kind default to the URL's."""
        expected_kind = kind or target.resource.kind
        expected_version = api_version or target.api_version
        if not isinstance(body, dict):
            kind_name = "array" if isinstance(body, list) else go_json_type(body)
            raise _bad_request(
                f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind_name} into Go value "
                'of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string '
                '"json:\\"kind,omitempty\\"" }'
            )
        body_version = body.get("apiVersion")
        body_kind = body.get("kind")
        if body_version is not None and not isinstance(body_version, str):
            raise _bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal "
                               f"{go_json_type(body_version)} into Go struct field .apiVersion of type string")
        if body_kind is not None and not isinstance(body_kind, str):
            raise _bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal "
                               f"{go_json_type(body_kind)} into Go struct field .kind of type string")
        if body_version and body_version != expected_version:
            raise _bad_request(
                f"the API version in the data ({body_version}) does not match the expected API version "
                f"({expected_version})"
            )
        version = expected_version.rpartition("/")[2]
        if body_kind and body_kind != expected_kind:
            raise _bad_request(
                f"{body_kind} in version {_go_quote(version)} cannot be handled as a {expected_kind}: "
                f"the kind in the data ({body_kind}) does not match the kind on the URL ({expected_kind})"
            )
        body["apiVersion"] = expected_version
        body["kind"] = expected_kind
        _check_metadata(body, expected_kind, version)
        return body

    def _field_validation(self, query: Mapping[str, str], obj: dict[str, Any]) -> list[str]:
        """Unknown fields as ``fieldValidation`` wants them: Strict → 400, Warn (the default) → warnings."""
        directive = query.get("fieldValidation", "")
        if directive not in ("", "Ignore", "Warn", "Strict"):
            raise _invalid_options(
                "CreateOptions",
                [Cause("fieldValidation", f'Unsupported value: {_go_quote(directive)}: supported values: "", '
                       '"Ignore", "Strict", "Warn"', "FieldValueNotSupported")],
            )
        if directive == "Ignore":
            return []
        unknown = _unknown_fields(obj)
        if not unknown:
            return []
        messages = [f"unknown field {_go_quote(path.lstrip('.'))}" for path in unknown]
        if directive == "Strict":
            raise _bad_request("strict decoding error: " + ", ".join(messages))
        return messages

    def _write_options(self, request: web.Request, *, patch_type: str = "") -> tuple[str, bool, bool]:
        """``fieldManager`` (defaulted from the User-Agent), ``dryRun``, ``force`` — validated."""
        query = request.query
        manager = query.get("fieldManager", "")
        dry_values = query.getall("dryRun", [])
        force = _parse_bool(query, "force")
        causes: list[Cause] = []
        kind = "PatchOptions" if patch_type else ("CreateOptions" if request.method == "POST" else "UpdateOptions")
        if patch_type == "application/apply-patch+yaml":
            if not manager:
                causes.append(Cause("fieldManager", "Required value: is required for apply patch",
                                    "FieldValueRequired"))
        elif patch_type and force is not None:
            causes.append(Cause("force", "Forbidden: may not be specified for non-apply patch",
                                "FieldValueForbidden"))
        if len(manager) > 128:
            causes.append(Cause("fieldManager", "Too long: may not be more than 128 bytes", "FieldValueTooLong"))
        for index, char in enumerate(manager):
            if not char.isprintable():
                causes.append(Cause("fieldManager", f"Invalid value: {_go_quote(manager)}: invalid character "
                                    f"U+{ord(char):04X} (at position {index})"))
                break
        if any(value != "All" for value in dry_values):
            listed = "[" + " ".join(dry_values) + "]"
            causes.append(Cause("dryRun", f'Unsupported value: {listed}: supported values: "All"',
                                "FieldValueNotSupported"))
        if causes:
            raise _invalid_options(kind, causes)
        if not manager:
            manager = _manager_from_user_agent(request.headers.get("User-Agent", ""))
        return manager, bool(dry_values), bool(force)

    # ---------------------------------------------------------------- create

    async def _review(self, request: web.Request, target: Target) -> web.StreamResponse:
        """An access review: answered (201) from :mod:`.authorization`, never stored."""
        from . import authorization

        self._write_options(request)
        obj = self._object_body(await self._body(request), target)
        warnings = self._field_validation(request.query, obj)
        return self._respond_object(request, target, authorization.review(obj), 201, warnings)

    async def _create(self, request: web.Request, target: Target) -> web.StreamResponse:
        manager, dry_run, _ = self._write_options(request)
        obj = self._object_body(await self._body(request), target)
        warnings = self._field_validation(request.query, obj)
        written = await self._create_object(target, obj, manager=manager, dry_run=dry_run)
        return self._respond_object(request, target, written.obj, 201, warnings + written.warnings)

    async def _create_object(
        self, target: Target, obj: dict[str, Any], *, manager: str, dry_run: bool, applied: bool = False
    ) -> _Written:
        from . import authorization
        from . import patch as patching

        resource = target.resource
        metadata = obj.setdefault("metadata", {})
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if body_namespace and body_namespace != target.namespace:
                raise _bad_request("the namespace of the provided object does not match the namespace sent on the "
                                   "request")
            metadata["namespace"] = target.namespace
            self._check_namespace_accepts(resource, target.namespace or "", str(metadata.get("name") or ""))
        else:
            metadata.pop("namespace", None)
        if resource.key == "/namespaces":
            garbage.default_namespace(obj)
        authorization.default_rbac(obj)
        authorization.validate_rbac(obj, None)
        # Clients may not set what the server owns.
        for owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "selfLink"):
            metadata.pop(owned, None)
        warnings = await self.hooks.admit(resource, "CREATE", obj, None, dry_run=dry_run) or []
        if not applied:
            obj = patching.record_update(
                None, obj, manager=manager, api_version=target.api_version, now=now_rfc3339(self.clock)
            )
        stored = self.store.create(
            resource.key, obj, namespace=target.namespace, dry_run=dry_run, status=INITIAL_STATUS.get(resource.key)
        )
        if not dry_run:
            await self.hooks.committed(resource, "CREATE", stored)
        return _Written(stored, 201, list(warnings))

    def _check_namespace_accepts(self, resource: Resource, namespace: str, name: str) -> None:
        try:
            ns = self.store.get("/namespaces", None, namespace)
        except ApiError:
            raise ApiError.not_found("namespaces", namespace) from None
        if garbage.is_terminating(ns):
            message = f"unable to create new content in namespace {namespace} because it is being terminated"
            subject = f"{_qualified(resource)} {_go_quote(name)}" if name else _qualified(resource)
            raise ApiError(
                403,
                f"{subject} is forbidden: {message}",
                kind=resource.plural,
                name=name,
                group=resource.group,
                causes=(Cause("metadata.namespace", f"namespace {namespace} is being terminated",
                              "NamespaceTerminating"),),
            )

    # ---------------------------------------------------------------- update

    async def _update(self, request: web.Request, target: Target) -> web.StreamResponse:
        manager, dry_run, _ = self._write_options(request)
        obj = self._object_body(await self._body(request), target)
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if name != target.name:
            raise _bad_request(f"the name of the object ({name or ''}) does not match the name on the URL "
                               f"({target.name})")
        if target.resource.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != target.namespace:
                raise _bad_request(f"the namespace of the object ({metadata['namespace']}) does not match the "
                                   f"namespace on the request ({target.namespace})")
            metadata["namespace"] = target.namespace
        else:
            metadata.pop("namespace", None)
        warnings = self._field_validation(request.query, obj)
        try:
            old = self.store.get(target.resource.key, target.namespace, str(target.name))
        except ApiError as exc:
            if exc.code == 404 and target.resource.key in CREATE_ON_UPDATE and not target.subresource:
                written = await self._create_object(target, obj, manager=manager, dry_run=dry_run)
                return self._respond_object(request, target, written.obj, 201, warnings + written.warnings)
            raise
        written = await self._update_object(target, old, obj, manager=manager, dry_run=dry_run)
        return self._respond_object(request, target, written.obj, 200, warnings + written.warnings)

    async def _update_object(
        self, target: Target, old: dict[str, Any], obj: dict[str, Any], *, manager: str, dry_run: bool,
        applied: bool = False, subresource: str | None = None,
    ) -> _Written:
        from . import authorization
        from . import patch as patching

        resource = target.resource
        sub = target.subresource if subresource is None else subresource
        if sub == "finalize":
            # Only spec.finalizers may change through namespaces/finalize.
            merged = json.loads(json.dumps(old))
            merged.setdefault("spec", {})["finalizers"] = (obj.get("spec") or {}).get("finalizers") or []
            merged["metadata"]["resourceVersion"] = (obj.get("metadata") or {}).get("resourceVersion") or old[
                "metadata"
            ].get("resourceVersion")
            obj, sub = merged, ""
        authorization.default_rbac(obj)
        authorization.validate_rbac(obj, old)
        warnings = await self.hooks.admit(resource, "UPDATE", obj, old, dry_run=dry_run) or []
        if not applied:
            obj = patching.record_update(
                old, obj, manager=manager, api_version=target.api_version, now=now_rfc3339(self.clock),
                subresource=sub,
            )
        stored = self.store.update(
            resource.key, obj, namespace=target.namespace, name=target.name,
            subresource="status" if sub == "status" else None, dry_run=dry_run,
        )
        if not dry_run:
            await self.hooks.committed(resource, "UPDATE", stored)
            if garbage.is_terminating(stored):
                self.collector.poke()
        return _Written(stored, 200, list(warnings))

    # ---------------------------------------------------------------- patch

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        content_type = (request.headers.get("Content-Type", "") or "").split(";", 1)[0].strip().lower()
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(PATCH_TYPES),
            )
        manager, dry_run, force = self._write_options(request, patch_type=content_type)
        data = await request.read()
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
        patch_body = _decode_patch(data, content_type)
        attempts = 5
        for attempt in range(1, attempts + 1):
            try:
                written = await self._patch_once(
                    request, target, content_type, patch_body, manager=manager, dry_run=dry_run, force=force
                )
            except ApiError as exc:
                # Another write came between this patch's read and write (an optimistic-lock conflict, which
                # has no causes, unlike an apply conflict): patch the new state, as kube-apiserver retries.
                raced = exc.code == 409 and exc.reason == "Conflict" and not exc.causes
                if raced and attempt < attempts and not _patch_sets_rv(patch_body):
                    continue
                raise
            return self._respond_object(request, target, written.obj, written.code, written.warnings)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _patch_once(
        self, request: web.Request, target: Target, content_type: str, patch_body: Any, *, manager: str,
        dry_run: bool, force: bool,
    ) -> _Written:
        from . import patch as patching

        resource = target.resource
        key = resource.key
        now = now_rfc3339(self.clock)
        try:
            old: dict[str, Any] | None = self.store.get(key, target.namespace, str(target.name))
        except ApiError as exc:
            if exc.code != 404 or content_type != "application/apply-patch+yaml" or target.subresource:
                raise
            old = None
        if old is None:
            # Server-side apply creates what does not exist yet.
            applied = self._apply_body(patch_body, target)
            warnings = self._field_validation(request.query, applied)
            new = patching.apply(
                None, applied, manager=manager, force=force, api_version=target.api_version, kind=resource.kind,
                now=now,
            )
            new.setdefault("metadata", {})["name"] = target.name
            written = await self._create_object(target, new, manager=manager, dry_run=dry_run, applied=True)
            written.warnings[:0] = warnings
            return written
        live = self._out(old, target)
        if content_type == "application/apply-patch+yaml":
            applied = self._apply_body(patch_body, target)
            warnings = self._field_validation(request.query, applied)
            new = patching.apply(
                json.loads(json.dumps(live)), applied, manager=manager, force=force,
                api_version=target.api_version, kind=resource.kind, now=now, subresource=target.subresource,
            )
            recorded = True
        else:
            new = _apply_patch(content_type, live, patch_body, target)
            warnings = self._field_validation(request.query, new) if isinstance(new, dict) else []
            recorded = False
        new = self._patched_object(new, old, target)
        written = await self._update_object(target, old, new, manager=manager, dry_run=dry_run, applied=recorded)
        written.warnings[:0] = warnings
        return written

    def _apply_body(self, body: Any, target: Target) -> dict[str, Any]:
        """An apply configuration: an object whose apiVersion/kind :func:`.patch.apply` checks (they are
        required), with well-typed metadata naming the URL's object."""
        if not isinstance(body, dict):
            raise _bad_request(f"error decoding patch: json: cannot unmarshal {go_json_type(body)} into Go value of "
                               "type map[string]interface {}")
        applied = json.loads(json.dumps(body))
        _check_metadata(applied, target.resource.kind, target.version)
        metadata = applied["metadata"]
        if metadata.get("name") not in (None, "", target.name):
            raise _bad_request(f"the name of the object ({metadata.get('name')}) does not match the name on "
                               f"the URL ({target.name})")
        if target.resource.namespaced and metadata.get("namespace") not in (None, "", target.namespace):
            raise _bad_request(f"the namespace of the object ({metadata.get('namespace')}) does not match the "
                               f"namespace on the request ({target.namespace})")
        return dict(applied)

    def _patched_object(self, new: Any, old: dict[str, Any], target: Target) -> dict[str, Any]:
        """The result of a patch, checked as an update body; the resourceVersion defaults to the one patched
        (so that a write in between is detected) unless the patch set one."""
        obj = self._object_body(new, target)
        metadata = obj.setdefault("metadata", {})
        if metadata.get("name") != target.name:
            raise _bad_request(f"the name of the object ({metadata.get('name') or ''}) does not match the name on "
                               f"the URL ({target.name})")
        if target.resource.namespaced and metadata.get("namespace") != target.namespace:
            raise _bad_request(f"the namespace of the object ({metadata.get('namespace') or ''}) does not match "
                               f"the namespace on the request ({target.namespace})")
        if not metadata.get("resourceVersion"):
            metadata["resourceVersion"] = old["metadata"].get("resourceVersion")
        return obj

    # ---------------------------------------------------------------- delete

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        body: dict[str, Any] = {}
        data = await request.read()
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
        if data.strip():
            content_type = (request.headers.get("Content-Type") or "application/json").split(";", 1)[0].strip()
            if content_type.lower() == PROTOBUF:
                decoded: Any = decode_protobuf(data)
                decoded.pop("apiVersion", None)
            else:
                decoded = decode_body(data, content_type.lower())
            if not isinstance(decoded, dict):
                raise _bad_request("decoded object cannot be converted to DeleteOptions")
            kind = decoded.get("kind")
            if kind not in (None, "", "DeleteOptions"):
                raise _bad_request(f"no kind {_go_quote(str(kind))} is registered for the internal version of "
                                   "group \"meta.k8s.io\" in scheme")
            body = decoded
        grace = body.get("gracePeriodSeconds")
        if grace is None:
            grace = _parse_int(query, "gracePeriodSeconds")
        elif isinstance(grace, bool) or not isinstance(grace, int) or not -(2**63) <= grace < 2**63:
            raise _bad_request(f"json: cannot unmarshal {go_json_type(grace)} into Go struct field "
                               "DeleteOptions.gracePeriodSeconds of type int64")
        propagation = body.get("propagationPolicy", query.get("propagationPolicy"))
        orphan = body.get("orphanDependents")
        if orphan is None:
            orphan = _parse_bool(query, "orphanDependents")
        dry = body.get("dryRun")
        if dry is None:
            dry = query.getall("dryRun", [])
        if not isinstance(dry, list) or not all(isinstance(d, str) for d in dry):
            raise _bad_request("json: cannot unmarshal into Go struct field DeleteOptions.dryRun of type []string")
        preconditions = body.get("preconditions")
        if preconditions is not None and not (
            isinstance(preconditions, dict) and all(isinstance(v, str | None) for v in preconditions.values())
        ):
            raise _bad_request("json: cannot unmarshal into Go struct field DeleteOptions.preconditions of type "
                               "v1.Preconditions")
        causes: list[Cause] = []
        if orphan is not None and propagation is not None:
            causes.append(Cause("propagationPolicy", f"Invalid value: {_go_quote(str(propagation))}: orphanDependents "
                                "and deletionPropagation cannot be both set"))
        if propagation is not None and propagation not in ("Foreground", "Background", "Orphan"):
            causes.append(Cause("propagationPolicy", f"Unsupported value: {_go_quote(str(propagation))}: supported "
                                'values: "Foreground", "Background", "Orphan", "nil"', "FieldValueNotSupported"))
        if any(d != "All" for d in dry):
            causes.append(Cause("dryRun", f'Unsupported value: [{" ".join(dry)}]: supported values: "All"',
                                "FieldValueNotSupported"))
        if causes:
            raise _invalid_options("DeleteOptions", causes)
        if propagation is None and orphan is not None:
            propagation = "Orphan" if orphan else "Background"
        return {
            "grace": grace,
            "propagation": propagation or "Background",
            "dry_run": bool(dry),
            "preconditions": {k: v for k, v in (preconditions or {}).items() if v} or None,
        }

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        options = await self._delete_options(request)
        resource = target.resource
        assert target.name is not None
        obj, deleted_now, warnings = await self._delete_object(resource, target.namespace, target.name, options)
        if deleted_now and resource.key not in RETURNS_DELETED_OBJECT:
            details: dict[str, Any] = {"name": target.name, "group": resource.group, "kind": resource.plural,
                                       "uid": obj.get("metadata", {}).get("uid", "")}
            if not resource.group:
                del details["group"]
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            return self._json(status, warnings=warnings)
        return self._respond_object(request, target, obj, 200, warnings)

    async def _delete_object(
        self, resource: Resource, namespace: str | None, name: str, options: dict[str, Any]
    ) -> tuple[dict[str, Any], bool, list[str]]:
        key = resource.key
        dry_run = options["dry_run"]
        old = self.store.get(key, namespace, name)
        if resource.key == "/namespaces" and name in IMMORTAL_NAMESPACES:
            raise ApiError(403, f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           kind="namespaces", name=name)
        _check_preconditions(resource, name, old, options["preconditions"])
        warnings = list(await self.hooks.admit(resource, "DELETE", None, old, dry_run=dry_run) or [])
        if resource.key == "/namespaces":
            obj, deleted_now = await self.collector.delete_namespace(old, dry_run=dry_run)
        else:
            grace = options["grace"]
            if resource.key == "/pods":
                grace = garbage.pod_grace_period(old, grace)
            obj, deleted_now = await self.collector.delete(
                resource, old, propagation=options["propagation"], grace_period_seconds=grace, dry_run=dry_run,
                preconditions=options["preconditions"],
            )
        if not dry_run:
            await self.hooks.committed(resource, "DELETE", obj)
        return obj, deleted_now, warnings

    async def _delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        options = await self._delete_options(request)
        query = request.query
        listing = self.store.list(
            target.resource.key,
            target.namespace,
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
        )
        deleted: list[dict[str, Any]] = []
        warnings: list[str] = []
        for item in listing.items:
            metadata = item.get("metadata", {})
            try:
                obj, _, more = await self._delete_object(
                    target.resource, metadata.get("namespace"), metadata["name"], {**options, "preconditions": None}
                )
            except ApiError as exc:
                if exc.code == 404:
                    continue  # gone meanwhile (a garbage collection)
                raise
            deleted.append(self._out(obj, target))
            warnings.extend(more)
        body = {"kind": target.resource.list_kind, "apiVersion": target.api_version,
                "metadata": {"resourceVersion": self.store.resource_version}, "items": deleted}
        return self._json(body, warnings=warnings)

    # ---------------------------------------------------------------- scale

    async def _scale(self, request: web.Request, target: Target) -> web.StreamResponse:
        from . import patch as patching

        method = request.method
        resource = target.resource
        assert target.name is not None
        scale_target = Target(resource, target.version, target.namespace, target.name, "scale")
        if method == "GET":
            obj = self.store.get(resource.key, target.namespace, target.name)
            return self._json(_scale_of(obj))
        if method not in ("PUT", "PATCH"):
            raise _method_not_supported(resource, _verb_name(method))
        content_type = (request.headers.get("Content-Type", "") or "").split(";", 1)[0].strip().lower()
        patch_type = content_type if method == "PATCH" else ""
        if method == "PATCH" and content_type not in PATCH_TYPES:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: "
                           + ", ".join(PATCH_TYPES))
        manager, dry_run, force = self._write_options(request, patch_type=patch_type)
        if method == "PUT":
            body = await self._body(request)
        else:
            data = await request.read()
            if len(data) > MAX_BODY_BYTES:
                raise ApiError(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
            body = _decode_patch(data, content_type)
        for attempt in range(5):
            obj = self.store.get(resource.key, target.namespace, target.name)
            scale = _scale_of(obj)
            if method == "PUT":
                new_scale = body
            elif content_type == "application/apply-patch+yaml":
                new_scale = patching.apply(
                    _scale_with_managers(scale, obj), body, manager=manager, force=force,
                    api_version="autoscaling/v1", kind="Scale", now=now_rfc3339(self.clock), subresource="scale",
                )
            else:
                new_scale = _apply_patch(content_type, scale, body, scale_target, kind="Scale",
                                         api_version="autoscaling/v1")
            new_scale = self._object_body(new_scale, scale_target, kind="Scale", api_version="autoscaling/v1")
            scale_name = new_scale["metadata"].get("name")
            if scale_name and scale_name != target.name:
                raise _bad_request(f"the name of the object ({scale_name}) does not match the name on the URL "
                                   f"({target.name})")
            replicas = (new_scale.get("spec") or {}).get("replicas", 0)
            if isinstance(replicas, bool) or not isinstance(replicas, int):
                raise _bad_request(f"Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal "
                                   f"{go_json_type(replicas)} into Go struct field ScaleSpec.spec.replicas of type "
                                   "int32")
            if replicas < 0:
                raise ApiError.invalid("Scale", target.name, [Cause("spec.replicas", f"Invalid value: {replicas}: "
                                       "must be greater than or equal to 0")], group="autoscaling")
            wanted_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            updated = json.loads(json.dumps(obj))
            updated.setdefault("spec", {})["replicas"] = replicas
            if wanted_rv:
                updated["metadata"]["resourceVersion"] = wanted_rv
            if content_type == "application/apply-patch+yaml":
                updated = _managers_from_scale(updated, new_scale)
            try:
                written = await self._update_object(
                    Target(resource, target.version, target.namespace, target.name), obj, updated, manager=manager,
                    dry_run=dry_run, applied=content_type == "application/apply-patch+yaml", subresource="scale",
                )
            except ApiError as exc:
                # A write raced a patch (which named no resourceVersion itself): patch again.
                if exc.code == 409 and method == "PATCH" and not _patch_sets_rv(body) and attempt < 4:
                    continue
                raise
            return self._json(_scale_of(written.obj), warnings=written.warnings)
        raise ApiError(409, "too many conflicts scaling the object")

    # ---------------------------------------------------------------- eviction

    async def _evict(self, request: web.Request, target: Target) -> web.StreamResponse:
        body = await self._body(request)
        eviction_target = Target(target.resource, "v1", target.namespace, target.name, "eviction")
        if not isinstance(body, dict):
            raise _bad_request("couldn't get version/kind; json parse error: json: cannot unmarshal "
                               f"{go_json_type(body)} into Go value")
        api_version = body.get("apiVersion") or "policy/v1"
        if api_version not in ("policy/v1", "policy/v1beta1"):
            raise _bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                               "version (policy/v1)")
        body["apiVersion"] = "policy/v1"
        eviction = self._object_body(body, eviction_target, kind="Eviction", api_version="policy/v1")
        name = (eviction.get("metadata") or {}).get("name")
        if name and name != target.name:
            raise _bad_request(f"name in URL does not match name in Eviction object: {target.name} != {name}")
        raw_options = eviction.get("deleteOptions") or {}
        if not isinstance(raw_options, dict):
            raise _bad_request("decoded object cannot be converted to DeleteOptions")
        grace = raw_options.get("gracePeriodSeconds")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
            raise _bad_request("json: cannot unmarshal into Go struct field DeleteOptions.gracePeriodSeconds of type "
                               "int64")
        dry = raw_options.get("dryRun") or request.query.getall("dryRun", [])
        options = {
            "grace": grace,
            "propagation": raw_options.get("propagationPolicy") or "Background",
            "dry_run": bool(dry),
            "preconditions": raw_options.get("preconditions") if isinstance(raw_options.get("preconditions"),
                                                                             dict) else None,
        }
        assert target.name is not None
        await self._delete_object(target.resource, target.namespace, target.name, options)
        return self._json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                          201)

    # ---------------------------------------------------------------- streams

    async def _stream(self, request: web.Request, target: Target) -> web.StreamResponse:
        from . import streams

        resource = target.resource
        sub = target.subresource
        namespace = target.namespace or ""
        assert target.name is not None
        name = target.name
        if sub == "proxy":
            return await self._proxy(request, target)
        if sub == "log" and request.method != "GET":
            raise _method_not_supported(resource, _verb_name(request.method))
        if sub in ("portforward", "exec") and request.method not in ("GET", "POST"):
            raise _method_not_supported(resource, _verb_name(request.method))
        pod = self.store.get(resource.key, namespace, name)
        endpoint = self.hooks.pod_endpoint(namespace, name)
        query = request.query
        if sub == "log":
            containers = [str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []
                          if isinstance(c, dict) and isinstance(c.get("name"), str)]
            container = query.get("container", "")
            if not container:
                if len(containers) == 1:
                    container = containers[0]
                elif containers:
                    raise _bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                       f"[{' '.join(containers)}]")
                else:
                    container = "app"
            elif containers and container not in containers:
                raise _bad_request(f"container {container} is not valid for pod {name}")
            for flag in ("previous",):
                if _parse_bool(query, flag):
                    raise _bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            if endpoint is None:
                raise _bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
            path = endpoint.log_path(container)
            if path is None:
                raise _bad_request(f"container {container} is not valid for pod {name}")
            tail = _parse_int(query, "tailLines")
            since = _parse_int(query, "sinceSeconds")
            limit = _parse_int(query, "limitBytes")
            causes = []
            if tail is not None and tail < 0:
                causes.append(Cause("tailLines", f"Invalid value: {tail}: must be greater than or equal to 0"))
            if since is not None and since < 1:
                causes.append(Cause("sinceSeconds", f"Invalid value: {since}: must be greater than 0"))
            if limit is not None and limit < 1:
                causes.append(Cause("limitBytes", f"Invalid value: {limit}: must be greater than 0"))
            if causes:
                raise ApiError.invalid("PodLogOptions", "", causes)
            return await streams.serve_log(
                request, path, follow=bool(_parse_bool(query, "follow")), tail_lines=tail, since_seconds=since,
                timestamps=bool(_parse_bool(query, "timestamps")), limit_bytes=limit, running=endpoint.running,
            )
        if sub == "exec":
            # As kube-apiserver: an exec into a container the pod does not have (istio-proxy of a pod that opted out
            # of injection) is refused before anything runs.
            names = {str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)}
            wanted = query.get("container", "")
            if wanted and names and wanted not in names:
                raise _bad_request(f"container {wanted} is not valid for pod {name}")
        if endpoint is None or not endpoint.running():
            raise _bad_request(f"pod {name} is not running")
        if sub == "portforward":
            uid = str((pod.get("metadata") or {}).get("uid", ""))
            return await streams.serve_portforward(request, connect=endpoint.connect, pod=name, uid=uid)
        serve_exec = getattr(streams, "serve_exec", None)
        if serve_exec is None:
            raise _bad_request("exec is not supported by this server")
        result: web.StreamResponse = await serve_exec(request, endpoint=endpoint, pod=pod)
        return result

    async def _proxy(self, request: web.Request, target: Target) -> web.StreamResponse:
        from . import streams

        # Once authenticated, the mesh's token goes no further (kube-apiserver's authentication filter drops
        # the Authorization header): the pod behind the proxy must not learn it.
        headers = request.headers.copy()
        headers.popall("Authorization", None)
        request = request.clone(headers=headers)
        assert target.name is not None
        namespace = target.namespace or ""
        scheme_name_port = target.name
        parts = scheme_name_port.split(":")
        if len(parts) == 3:
            _, name, port = parts
        elif len(parts) == 2:
            name, port = parts
        else:
            name, port = parts[0], ""
        resource = target.resource
        obj = self.store.get(resource.key, namespace, name)
        path = target.rest or "/"
        if resource.key == "/services":
            connect = self.hooks.service_endpoint(namespace, name, port)
            if connect is None:
                raise ApiError(503, f'no endpoints available for service "{name}"')
            number = _service_target_port(obj, port)
            return await streams.serve_proxy(request, connect=connect, port=number, path=path)
        endpoint = self.hooks.pod_endpoint(namespace, name)
        if endpoint is None or not endpoint.running():
            raise _bad_request(f"pod {name} is not running")
        number = _pod_port(obj, port)
        return await streams.serve_proxy(request, connect=endpoint.connect, port=number, path=path)


# ------------------------------------------------------------------------------------------ module helpers


@functools.lru_cache(maxsize=64)
def _gzipped(document: bytes) -> bytes:
    import gzip

    return gzip.compress(document, compresslevel=6, mtime=0)


def _static(document: bytes, headers: dict[str, str], gzip_ok: bool) -> web.Response:
    """A document that never changes while the mesh runs (OpenAPI): compressed once, not per request (kubectl
    fetches the OpenAPI of a kind on every `kubectl apply`)."""
    if gzip_ok and len(document) > COMPRESS_ABOVE:
        return web.Response(body=_gzipped(document), headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=document, headers=headers)


def _http_date(seconds: float) -> str:
    """An HTTP date (RFC 7231 IMF-fixdate), as Go's ``http.TimeFormat`` writes it."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds))


def _compressible(response: web.Response) -> web.Response:
    """Gzip a large answer for a client that accepts it, as kube-apiserver does above 128 KiB (aiohttp
    negotiates Accept-Encoding)."""
    if response.body is not None and len(response.body) > COMPRESS_ABOVE:  # type: ignore[arg-type]
        response.enable_compression()
    return response


def _check_token(header: str | None, token: str) -> bool:
    from .tls import check_token

    return check_token(header, token)


def _verb_name(method: str) -> str:
    return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


_METADATA_STRINGS = ("name", "generateName", "namespace", "resourceVersion", "uid", "creationTimestamp",
                     "deletionTimestamp", "selfLink")


def _check_metadata(obj: dict[str, Any], kind: str, version: str) -> None:
    """Types of ``metadata`` (and ``spec``/``status`` being objects) as Go's decoder enforces them."""

    def refuse(path: str, value: Any, go_type: str) -> ApiError:
        return _bad_request(
            f"{kind} in version {_go_quote(version)} cannot be handled as a {kind}: json: cannot unmarshal "
            f"{go_json_type(value)} into Go struct field {path} of type {go_type}"
        )

    metadata = obj.get("metadata")
    if metadata is None:
        obj["metadata"] = {}
        return
    if not isinstance(metadata, dict):
        raise refuse(f"{kind}.metadata", metadata, "v1.ObjectMeta")
    for name in _METADATA_STRINGS:
        value = metadata.get(name)
        if value is not None and not isinstance(value, str):
            raise refuse(f"ObjectMeta.metadata.{name}", value, "string")
    for name in ("labels", "annotations"):
        value = metadata.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise refuse(f"ObjectMeta.metadata.{name}", value, "map[string]string")
        for item in value.values():
            if not isinstance(item, str):
                raise refuse(f"ObjectMeta.metadata.{name}", item, "string")
    for name in ("generation", "deletionGracePeriodSeconds"):
        value = metadata.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise refuse(f"ObjectMeta.metadata.{name}", value, "int64")
    finalizers = metadata.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list):
            raise refuse("ObjectMeta.metadata.finalizers", finalizers, "[]string")
        for item in finalizers:
            if not isinstance(item, str):
                raise refuse("ObjectMeta.metadata.finalizers", item, "string")
    owners = metadata.get("ownerReferences")
    if owners is not None:
        if not isinstance(owners, list):
            raise refuse("ObjectMeta.metadata.ownerReferences", owners, "[]v1.OwnerReference")
        for owner in owners:
            if not isinstance(owner, dict):
                raise refuse("ObjectMeta.metadata.ownerReferences", owner, "v1.OwnerReference")
            for name in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(owner.get(name, ""), str):
                    raise refuse(f"OwnerReference.metadata.ownerReferences.{name}", owner[name], "string")
            for name in ("controller", "blockOwnerDeletion"):
                if owner.get(name) is not None and not isinstance(owner[name], bool):
                    raise refuse(f"OwnerReference.metadata.ownerReferences.{name}", owner[name], "bool")
    managed = metadata.get("managedFields")
    if managed is not None and (not isinstance(managed, list) or not all(isinstance(m, dict) for m in managed)):
        raise refuse("ObjectMeta.metadata.managedFields", managed, "[]v1.ManagedFieldsEntry")
    for section in ("spec", "status"):
        value = obj.get(section)
        if value is not None and not isinstance(value, dict) and kind not in ("ConfigMap",):
            raise refuse(f"{kind}.{section}", value, f"v1.{kind}{section.capitalize()}")
    if kind == "ConfigMap":
        for section in ("data", "binaryData"):
            value = obj.get(section)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise refuse(f"ConfigMap.{section}", value, "map[string]string")
            for item in value.values():
                if not isinstance(item, str):
                    raise refuse(f"ConfigMap.{section}", item, "string")


def _check_preconditions(
    resource: Resource, name: str, old: dict[str, Any], preconditions: dict[str, Any] | None
) -> None:
    if not preconditions:
        return
    metadata = old.get("metadata", {})
    for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(field_name)
        if wanted and wanted != metadata.get(field_name):
            raise ApiError(
                409,
                f"Operation cannot be fulfilled on {_qualified(resource)} {_go_quote(name)}: Precondition failed: "
                f"{label} in precondition: {wanted}, {label} in object meta: {metadata.get(field_name, '')}",
                kind=resource.plural,
                name=name,
                group=resource.group,
            )


def _manager_from_user_agent(user_agent: str) -> str:
    """kube-apiserver's default field manager: the User-Agent up to its first "/", printable, 128 bytes."""
    prefix = user_agent.split("/", 1)[0]
    kept: list[str] = []
    size = 0
    for char in prefix:
        if not char.isprintable() or unicodedata.category(char).startswith("C"):
            continue
        size += len(char.encode("utf-8"))
        if size > 128:
            break
        kept.append(char)
    return "".join(kept)


def _decode_patch(data: bytes, content_type: str) -> Any:
    body = decode_body(data, "application/apply-patch+yaml" if content_type.endswith("yaml") else "application/json")
    if content_type == "application/json-patch+json":
        if not isinstance(body, list):
            raise _bad_request(f"json: cannot unmarshal {go_json_type(body)} into Go value of type jsonpatch.Patch")
    elif not isinstance(body, dict):
        if content_type == "application/apply-patch+yaml":
            raise _bad_request(f"error decoding YAML: json: cannot unmarshal {go_json_type(body)} into Go value of "
                               "type map[string]interface {}")
        raise _bad_request(
            f"json: cannot unmarshal {go_json_type(body)} into Go value of type map[string]interface {{}}"
        )
    return body


def _patch_sets_rv(patch_body: Any) -> bool:
    if isinstance(patch_body, dict):
        metadata = patch_body.get("metadata")
        return isinstance(metadata, dict) and bool(metadata.get("resourceVersion"))
    if isinstance(patch_body, list):
        return any(isinstance(op, dict) and "resourceVersion" in str(op.get("path", "")) for op in patch_body)
    return False


def _apply_patch(
    content_type: str, live: dict[str, Any], patch_body: Any, target: Target, *, kind: str = "", api_version: str = ""
) -> Any:
    from . import patch as patching

    if content_type == "application/merge-patch+json":
        return patching.merge_patch(live, patch_body)
    if content_type == "application/json-patch+json":
        return patching.json_patch(live, patch_body)
    return patching.strategic_merge_patch(
        live, patch_body, api_version or target.api_version, kind or target.resource.kind
    )


def _unknown_fields(obj: dict[str, Any]) -> list[str]:
    from . import openapi

    finder = getattr(openapi, "unknown_fields", None)
    if finder is None:
        return []
    found: list[str] = finder(obj)
    return found


def _partial(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata", {})}


def _selector_string(selector: Any) -> str:
    """A LabelSelector object as the string ``Scale.status.selector`` carries (metav1.FormatLabelSelector)."""
    if not isinstance(selector, dict):
        return ""
    parts: list[str] = []
    labels = selector.get("matchLabels") or {}
    if isinstance(labels, dict):
        parts.extend(f"{k}={v}" for k, v in sorted(labels.items()))
    for expression in selector.get("matchExpressions") or []:
        if not isinstance(expression, dict):
            continue
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = sorted(str(v) for v in expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` ``Scale`` view of a Deployment or ReplicaSet."""
    metadata = obj.get("metadata", {})
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    scale_metadata = {k: metadata[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                      if k in metadata}
    replicas = spec.get("replicas", 1)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": replicas},
        "status": {"replicas": status.get("replicas", 0), "selector": _selector_string(spec.get("selector"))},
    }


def _replicas_fields() -> dict[str, Any]:
    """fieldsV1 owning ``spec.replicas``."""
    return {"f:spec": {"f:replicas": {}}}


def _scale_with_managers(scale: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The Scale with the parent's owners of ``spec.replicas`` as its managedFields (so server-side apply on the
    scale subresource sees the same conflicts kube-apiserver's scale field-manager mapping reports)."""
    entries = []
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if "f:replicas" in (fields.get("f:spec") or {}):
            entries.append({**entry, "apiVersion": "autoscaling/v1", "fieldsV1": _replicas_fields()})
    if entries:
        scale["metadata"]["managedFields"] = entries
    return scale


def _managers_from_scale(obj: dict[str, Any], scale: dict[str, Any]) -> dict[str, Any]:
    """Carry the Scale's owners of ``spec.replicas`` back to the parent object's managedFields."""
    owners = {
        (e.get("manager"), e.get("operation"), e.get("subresource", "")): e
        for e in scale.get("metadata", {}).get("managedFields") or []
        if "f:replicas" in ((e.get("fieldsV1") or {}).get("f:spec") or {})
    }
    entries: list[dict[str, Any]] = []
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        ident = (entry.get("manager"), entry.get("operation"), entry.get("subresource", ""))
        fields = json.loads(json.dumps(entry.get("fieldsV1") or {}))
        spec = fields.get("f:spec")
        if ident not in owners and isinstance(spec, dict) and "f:replicas" in spec:
            del spec["f:replicas"]
            if not spec:
                del fields["f:spec"]
        if ident in owners:
            fields.setdefault("f:spec", {})["f:replicas"] = {}
            entry = {**entry, "time": owners.pop(ident).get("time", entry.get("time"))}
        if fields:
            entries.append({**entry, "fieldsV1": fields})
    for (manager, operation, sub), entry in owners.items():
        entries.append({"manager": manager, "operation": operation, "apiVersion": obj.get("apiVersion"),
                        "time": entry.get("time"), "fieldsType": "FieldsV1",
                        "fieldsV1": _replicas_fields(), **({"subresource": sub} if sub else {})})
    obj["metadata"]["managedFields"] = entries
    return obj


def _container_ports(pod: dict[str, Any]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        if isinstance(container, dict):
            ports.extend(p for p in container.get("ports") or [] if isinstance(p, dict))
    return ports


def _pod_port(pod: dict[str, Any], port: str) -> int:
    ports = _container_ports(pod)
    if not port:
        first = ports[0].get("containerPort") if ports else 80
        return first if isinstance(first, int) else 80
    if port.isdigit():
        return int(port)
    for entry in ports:
        if entry.get("name") == port and isinstance(entry.get("containerPort"), int):
            return int(entry["containerPort"])
    raise ApiError(503, f"no such port {port!r} in pod {pod.get('metadata', {}).get('name', '')}")


def _service_target_port(service: dict[str, Any], port: str) -> int:
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    for entry in ports:
        if not port or entry.get("name") == port or str(entry.get("port")) == port:
            value = entry.get("port")
            return value if isinstance(value, int) else 80
    if port.isdigit():
        return int(port)
    raise ApiError(503, f'no endpoints available for service "{service.get("metadata", {}).get("name", "")}"')


# ------------------------------------------------------------------------------------------ application

SERVER_KEY: web.AppKey[ApiServer] = web.AppKey("kube_api_server", ApiServer)


def create_app(
    *,
    store: Store,
    hooks: ClusterHooks,
    token: str,
    version: dict[str, Any] | None = None,
    bookmark_interval: float = 60.0,
    freshness_timeout: float = FRESHNESS_TIMEOUT,
) -> web.Application:
    """The API server as an aiohttp application over ``store``: every served resource is registered with the
    store and the initial namespaces created; the garbage collector runs while the application does.
    ``freshness_timeout``: how long a read from a resourceVersion the store has not reached waits for it."""
    server = ApiServer(store, hooks, token, version, bookmark_interval=bookmark_interval,
                       freshness_timeout=freshness_timeout)
    server.register_resources()
    # One byte over the limit is how kube-apiserver tells "too large" from "exactly at the limit".
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1, handler_args={"max_field_size": 65536})
    app[SERVER_KEY] = server
    app.router.add_route("*", "/{tail:.*}", server.handle)

    async def start_collector(_: web.Application) -> None:
        server.collector.start()

    async def stop_collector(_: web.Application) -> None:
        await server.collector.stop()

    app.on_startup.append(start_collector)
    app.on_cleanup.append(stop_collector)
    return app


async def start(app: web.Application, host: str, port: int, ssl_context: Any) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port) with TLS (``ssl_context``, None for plain HTTP).
    Returns the runner (for :func:`stop`) and the port actually bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    actual = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        actual = int(server.sockets[0].getsockname()[1])
    return runner, actual


async def stop(runner: web.AppRunner) -> None:
    """Stop serving: open watches end, the garbage collector stops, every client connection is closed."""
    transports = [handler.transport for handler in runner.server.connections] if runner.server else []
    await runner.cleanup()
    # Python 3.11's Server.wait_closed does not wait for the connections it handed out, and a TLS connection
    # being closed waits for the client's close_notify: abort what remains, closing or not.
    for transport in transports:
        # One already closed has dropped its TLS protocol: aborting it again raises.
        if transport is not None:
            with contextlib.suppress(AttributeError):
                transport.abort()

