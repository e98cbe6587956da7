"""Plumbing shared by the four SDC components.

Identity and seeding, header propagation, upstream forwarding, the
``x-clover-hops`` bookkeeping and the ``/clover/*`` control surface all live
here so that every component behaves identically at the edges the tests
measure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.helpers import get_env_proxy_for_url
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

log = logging.getLogger("pytest_clover.vnf")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSONDict = dict[str, Any]

COMPONENTS = ("proxy", "lb", "server", "ids")
SERVICE_NAMES = {
    "proxy": "proxy-access-control",
    "lb": "http-lb",
    "server": "clover-server",
    "ids": "snort-ids",
}
DEFAULT_UPSTREAMS = {
    "proxy": "http://http-lb:9180",
    "lb": "http://clover-server:9180",
}
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 9180

HOPS_HEADER = "x-clover-hops"
POD_HEADER = "x-clover-pod"
# On a content request to clover-server, makes it answer with what it
# received instead of the payload; being an x-clover-* header it survives
# the proxy and lb hops, which /clover/echo (never forwarded) cannot.
ECHO_HEADER = "x-clover-echo"
CLOVER_HEADER_PREFIX = "x-clover-"
CLOVER_PATH_PREFIX = "/clover/"

# Tracing (Zipkin B3, W3C, OpenTracing) and Istio routing headers: the mesh
# can only stitch spans and apply per-user routes if every hop copies them.
PROPAGATED_HEADERS = frozenset(
    {
        "x-request-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "b3",
        "traceparent",
        "tracestate",
        "x-ot-span-context",
        "end-user",
        "user-agent",
    }
)
# Describe the forwarded body rather than the request, so they travel with
# it; without them a POSTed JSON document would arrive as octet-stream.
ENTITY_HEADERS = ("Content-Type", "Content-Encoding")
# Upstream response headers that are part of "the response unchanged"; the
# rest (Date, Server, framing, Envoy's own) belong to the upstream hop.
PASSTHROUGH_RESPONSE_HEADERS = frozenset({"content-type", "content-encoding", "location", "retry-after"})

# Bodies up to this size are buffered; larger or unsized ones are streamed so
# a 10 MiB payload test does not cost 10 MiB per in-flight request per hop.
INLINE_BODY_LIMIT = 1 << 20
STREAM_CHUNK = 1 << 16


class InvalidSetting(ValueError):
    """A setting of the sample VNF (its environment or its control API) was rejected; ``field`` names the
    culprit. The VNF is a program of its own: this is not one of pytest-clover's errors."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Identity:
    """Who this process is, as the backends describe it through the env."""

    component: str
    pod: str
    namespace: str
    version: str
    ip: str | None
    seed: int

    @classmethod
    def from_env(cls, component: str, env: Mapping[str, str] | None = None) -> Identity:
        env = os.environ if env is None else env
        raw_seed = env.get("CLOVER_SEED", "").strip()
        try:
            seed = int(raw_seed) if raw_seed else 0
        except ValueError:
            raise InvalidSetting("CLOVER_SEED", f"CLOVER_SEED must be an integer (got {raw_seed!r})") from None
        return cls(
            component=component,
            pod=env.get("POD_NAME") or socket.gethostname(),
            namespace=env.get("POD_NAMESPACE") or "default",
            version=env.get("POD_VERSION") or "v1",
            ip=env.get("POD_IP") or None,
            seed=seed,
        )

    @property
    def hop(self) -> str:
        return f"{self.pod}/{self.version}"

    def rng(self, seed: int | None = None) -> random.Random:
        # Mixing in the pod name keeps replicas from drawing identical fault
        # sequences while a fixed CLOVER_SEED still makes a run replayable.
        base = self.seed if seed is None else seed
        return random.Random(base ^ zlib.crc32(self.pod.encode()))


# --------------------------------------------------------------------------
# Validation helpers: each raises InvalidSetting naming the field and the range.


def check_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
    allowed = tuple(allowed)
    for key in obj:
        if key not in allowed:
            prefix = f"{where}: " if where else ""
            raise InvalidSetting(key, f"{prefix}unknown field {key!r}; allowed fields: {', '.join(allowed)}")


def _is_number(value: object) -> bool:
    # bool is an int subclass; "latency_ms": true is a client bug, not 1 ms.
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(field: str, value: object, lo: float, hi: float | None = None) -> float:
    if _is_number(value):
        assert isinstance(value, int | float)
        result = float(value)
        if math.isfinite(result) and result >= lo and (hi is None or result <= hi):
            return result
    if hi is None:
        expected = f"a finite number >= {lo:g}"
    else:
        expected = f"a number in [{lo:g}, {hi:g}]"
    raise InvalidSetting(field, f"{field} must be {expected} (got {value!r})")


def integer(field: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    result: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    if result is not None and (lo is None or result >= lo) and (hi is None or result <= hi):
        return result
    if lo is not None and hi is not None:
        expected = f"an integer in [{lo}, {hi}]"
    elif lo is not None:
        expected = f"an integer >= {lo}"
    elif hi is not None:
        expected = f"an integer <= {hi}"
    else:
        expected = "an integer"
    raise InvalidSetting(field, f"{field} must be {expected} (got {value!r})")


def boolean(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidSetting(field, f"{field} must be true or false (got {value!r})")


def string(field: str, value: object, *, allow_empty: bool = False) -> str:
    if isinstance(value, str) and (allow_empty or value):
        return value
    kind = "a string" if allow_empty else "a non-empty string"
    raise InvalidSetting(field, f"{field} must be {kind} (got {value!r})")


def parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSetting(name, f"{name} is not valid JSON: {exc}") from None


def json_env(env: Mapping[str, str], name: str) -> Any | None:
    text = env.get(name, "").strip()
    return parse_json(name, text) if text else None


def validate_upstream(upstream: str, source: str) -> URL:
    try:
        url = URL(upstream)
    except (TypeError, ValueError) as exc:
        raise InvalidSetting(source, f"{source} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidSetting(source, f"{source} must be an http:// URL with a host (got {upstream!r})")
    if url.query_string or url.fragment:
        raise InvalidSetting(source, f"{source} must not carry a query or fragment (got {upstream!r})")
    return url


# --------------------------------------------------------------------------
# Responses generated by this component.


def _dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def own_headers(identity: Identity) -> dict[str, str]:
    """Headers for a response whose body this component generated."""
    return {HOPS_HEADER: identity.hop, POD_HEADER: identity.pod}


def json_response(identity: Identity, data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=_dumps(data),
        status=status,
        content_type="application/json",
        headers=own_headers(identity),
    )


def error_response(identity: Identity, exc: InvalidSetting, status: int = 400) -> web.Response:
    return json_response(identity, {"error": exc.message, "field": exc.field}, status)


async def read_json_object(request: web.Request) -> JSONDict:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise InvalidSetting("body", f"body: {exc.text}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidSetting("body", f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSetting("body", f"body must be a JSON object (got {type(data).__name__})")
    return data


async def drain(request: web.Request) -> int:
    """Read and discard the request body without buffering it."""
    total = 0
    if request.body_exists:
        async for chunk in request.content.iter_any():
            total += len(chunk)
    return total


# --------------------------------------------------------------------------
# Forwarding.


def propagated_headers(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        lname = name.lower()
        if lname in PROPAGATED_HEADERS or lname.startswith(CLOVER_HEADER_PREFIX):
            out.append((name, value))
    return out


def combine_hops(own: str, upstream_hops: str | None) -> str:
    return f"{own}, {upstream_hops}" if upstream_hops else own


class Upstream:
    """The single pooled client one forwarding component uses for its upstream."""

    def __init__(
        self,
        identity: Identity,
        url: URL,
        *,
        timeout_s: float = 30.0,
        pool_size: int = 512,
    ) -> None:
        self.identity = identity
        self.url = url
        self._prefix = str(url).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5.0)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        # The env-proxy lookup that ClientSession(trust_env=True) would redo on
        # every request (two thread-pool hops plus a ~/.netrc read, measured
        # at ~1 ms/request, 4-5x the rest of the client path) is done once
        # here with aiohttp's own resolver, so HTTP_PROXY/NO_PROXY semantics
        # are unchanged: with HTTP_PROXY set, requests go to the sidecar in
        # absolute form; without it, the upstream host is resolved directly.
        self.proxy: URL | None = None
        self.proxy_auth: aiohttp.BasicAuth | None = None
        try:
            self.proxy, self.proxy_auth = get_env_proxy_for_url(url)
        except LookupError:
            self.proxy, self.proxy_auth = None, None
        self.upstream_errors = 0

    def describe(self) -> str:
        via = f" via proxy {self.proxy}" if self.proxy is not None else ""
        return f"{self.url}{via}"

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx hook: the session must be created inside the running loop."""
        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            # A shared jar would leak one client's cookies into another's.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bodies are relayed byte for byte; never invent a User-Agent the
            # IDS would see, and never ask for a compressed body the original
            # client did not ask for.
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        try:
            yield
        finally:
            await self._session.close()
            self._session = None

    def unreachable(self, exc: BaseException) -> web.Response:
        self.upstream_errors += 1
        log.debug("upstream %s unreachable: %r", self.url, exc)
        return json_response(
            self.identity,
            {
                "error": "upstream unreachable",
                "upstream": str(self.url),
                "detail": str(exc) or type(exc).__name__,
            },
            status=502,
        )

    async def forward(self, request: web.Request) -> web.StreamResponse:
        session = self._session
        if session is None:
            raise RuntimeError("Upstream.forward called outside the app lifecycle")
        headers = propagated_headers(request.headers)
        data: bytes | aiohttp.StreamReader | None = None
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= INLINE_BODY_LIMIT:
                data = await request.read()
            else:
                data = request.content
                if length is not None:
                    # Keeps the upstream request sized instead of chunked.
                    headers.append(("Content-Length", str(length)))
            for name in ENTITY_HEADERS:
                value = request.headers.get(name)
                if value is not None:
                    headers.append((name, value))
        url = URL(self._prefix + request.rel_url.raw_path_qs, encoded=True)
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
                allow_redirects=False,
            ) as resp:
                out_headers = self._response_headers(resp.headers)
                length = resp.content_length
                if length is not None and length <= INLINE_BODY_LIMIT:
                    body = await resp.read()
                    return web.Response(status=resp.status, reason=resp.reason, body=body, headers=out_headers)
                return await self._stream(request, resp, out_headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self.unreachable(exc)

    def _response_headers(self, upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.items():
            lname = name.lower()
            if lname in PASSTHROUGH_RESPONSE_HEADERS or (
                lname.startswith(CLOVER_HEADER_PREFIX) and lname != HOPS_HEADER
            ):
                out.add(name, value)
        out[HOPS_HEADER] = combine_hops(self.identity.hop, upstream.get(HOPS_HEADER))
        return out

    async def _stream(
        self,
        request: web.Request,
        resp: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse:
        # Read the first chunk before committing the status line, so an
        # upstream that dies immediately still turns into a clean 502.
        first = await resp.content.read(STREAM_CHUNK)
        out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
        if resp.content_length is not None:
            out.content_length = resp.content_length
        await out.prepare(request)
        try:
            if first:
                await out.write(first)
            async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
                await out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is already sent; cutting the connection is the
            # only way left to tell the client the body is incomplete.
            self.upstream_errors += 1
            log.debug("upstream %s failed mid-stream: %r", self.url, exc)
            if request.transport is not None:
                request.transport.close()
            return out
        await out.write_eof()
        return out


# --------------------------------------------------------------------------
# The component skeleton: /clover/* surface shared by all four.


class Component:
    """Base for the four components; subclasses fill in the behaviour."""

    name = ""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.upstream: Upstream | None = None
        self._catch_all: web.AbstractResource | None = None

    # Overridden by subclasses -------------------------------------------------

    def config(self) -> JSONDict:
        return {}

    def update(self, patch: Mapping[str, Any]) -> None:
        check_keys(patch, (), "control")

    def stats(self) -> JSONDict:
        return {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Component-specific /clover/* routes."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Traffic: any path outside /clover/."""
        raise NotImplementedError

    # Shared ------------------------------------------------------------------

    def respond(self, data: object, status: int = 200) -> web.Response:
        return json_response(self.identity, data, status)

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        ident = self.identity
        return self.respond(
            {
                "ready": True,
                "pod": ident.pod,
                "version": ident.version,
                "component": ident.component,
            }
        )

    def echo(self, request: web.Request, body_bytes: int = 0) -> web.Response:
        """What this component received: the debugging view tests assert on."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return self.respond(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": headers,
                "body_bytes": body_bytes,
                "pod": self.identity.pod,
                "version": self.identity.version,
            }
        )

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        return self.echo(request, await drain(request))

    async def _get_control(self, request: web.Request) -> web.StreamResponse:
        return self.respond(self.config())

    async def _put_control(self, request: web.Request) -> web.StreamResponse:
        try:
            patch = await read_json_object(request)
            self.update(patch)
        except InvalidSetting as exc:
            return error_response(self.identity, exc)
        return self.respond(self.config())

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return self.respond(self.stats())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(CLOVER_PATH_PREFIX) or path == "/clover":
            return await self._clover_miss(request)
        return await self.handle(request)

    async def _clover_miss(self, request: web.Request) -> web.StreamResponse:
        # The forwarding catch-all also matches /clover/* when the method is
        # wrong; work out 405 vs 404 here so nothing under /clover/ leaks out.
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is self._catch_all:
                continue
            _, methods = await resource.resolve(request)
            allowed |= methods
        if allowed:
            resp = self.respond(
                {"error": "method not allowed", "path": request.path, "allowed": sorted(allowed)},
                405,
            )
            resp.headers["Allow"] = ", ".join(sorted(allowed))
            return resp
        return self.respond({"error": "no such clover endpoint", "path": request.path}, 404)

    def build_app(self) -> web.Application:
        # read() in forward() buffers up to INLINE_BODY_LIMIT; keep the two in step.
        app = web.Application(client_max_size=INLINE_BODY_LIMIT)
        router = app.router
        router.add_get("/clover/ready", self._ready)
        router.add_get("/clover/echo", self._echo)
        router.add_get("/clover/control", self._get_control)
        router.add_put("/clover/control", self._put_control)
        router.add_get("/clover/stats", self._stats)
        self.add_routes(router)
        catch_all = router.add_resource("/{tail:.*}")
        catch_all.add_route("*", self._dispatch)
        self._catch_all = catch_all
        if self.upstream is not None:
            app.cleanup_ctx.append(self.upstream.lifecycle)
        return app


async def sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000.0)
