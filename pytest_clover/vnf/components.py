"""The four SDC components and :func:`make_app`, the one way to build them."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .common import (
    COMPONENTS,
    DEFAULT_UPSTREAMS,
    ECHO_HEADER,
    Component,
    Identity,
    InvalidSetting,
    JSONDict,
    Upstream,
    check_keys,
    drain,
    integer,
    json_env,
    json_response,
    number,
    own_headers,
    sleep_ms,
    string,
    validate_upstream,
)
from .ids import IDS

__all__ = ["IDS", "LB", "DenyRule", "Proxy", "Server", "build_component", "make_app"]


# --------------------------------------------------------------------------
# proxy-access-control


@dataclass(frozen=True)
class DenyRule:
    """One access-control rule; exactly one of the three matchers is set."""

    status: int
    path_prefix: str | None = None
    path_regex: re.Pattern[str] | None = None
    header: str | None = None
    value: str | None = None

    FIELDS = ("path_prefix", "path_regex", "header", "value", "status")

    @classmethod
    def parse(cls, raw: object, where: str) -> DenyRule:
        if not isinstance(raw, dict):
            raise InvalidSetting(where, f"{where} must be a JSON object (got {raw!r})")
        check_keys(raw, cls.FIELDS, where)
        matchers = [k for k in ("path_prefix", "path_regex", "header") if k in raw]
        if len(matchers) != 1:
            raise InvalidSetting(
                where,
                f"{where} must have exactly one of path_prefix, path_regex, header "
                f"(got {', '.join(matchers) or 'none'})",
            )
        status = integer(f"{where}.status", raw.get("status", 403), 100, 599)
        if "value" in raw and "header" not in raw:
            raise InvalidSetting(f"{where}.value", f"{where}.value is only valid with header")
        if "path_prefix" in raw:
            return cls(status, path_prefix=string(f"{where}.path_prefix", raw["path_prefix"]))
        if "path_regex" in raw:
            pattern = string(f"{where}.path_regex", raw["path_regex"])
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise InvalidSetting(
                    f"{where}.path_regex",
                    f"{where}.path_regex is not a valid regex ({pattern!r}: {exc})",
                ) from None
            return cls(status, path_regex=compiled)
        value = raw.get("value")
        return cls(
            status,
            header=string(f"{where}.header", raw["header"]).lower(),
            value=None if value is None else string(f"{where}.value", value, allow_empty=True),
        )

    def to_json(self) -> JSONDict:
        out: JSONDict = {}
        if self.path_prefix is not None:
            out["path_prefix"] = self.path_prefix
        elif self.path_regex is not None:
            out["path_regex"] = self.path_regex.pattern
        else:
            out["header"] = self.header
            if self.value is not None:
                out["value"] = self.value
        out["status"] = self.status
        return out

    def matches(self, request: web.Request) -> bool:
        # request.path is percent-decoded, so /%61dmin cannot slip past /admin.
        if self.path_prefix is not None:
            return request.path.startswith(self.path_prefix)
        if self.path_regex is not None:
            return self.path_regex.search(request.path) is not None
        assert self.header is not None
        got = request.headers.get(self.header)
        return got is not None and (self.value is None or got == self.value)


DEFAULT_DENY: list[JSONDict] = [{"path_prefix": "/admin"}, {"header": "x-clover-deny"}]


def parse_deny_rules(raw: object, field: str) -> list[DenyRule]:
    if not isinstance(raw, list):
        raise InvalidSetting(field, f"{field} must be a JSON list of rules (got {raw!r})")
    return [DenyRule.parse(item, f"{field}[{i}]") for i, item in enumerate(raw)]


class Proxy(Component):
    name = "proxy"

    def __init__(self, identity: Identity, upstream: Upstream, env: Mapping[str, str]) -> None:
        super().__init__(identity)
        self.upstream = upstream
        self._fwd = upstream
        raw = json_env(env, "CLOVER_DENY")
        self.rules = parse_deny_rules(DEFAULT_DENY if raw is None else raw, "CLOVER_DENY")
        self.allowed = 0
        self.denied = 0

    def config(self) -> JSONDict:
        return {
            "deny": [rule.to_json() for rule in self.rules],
            "allowed": self.allowed,
            "denied": self.denied,
            "upstream": str(self._fwd.url),
        }

    def update(self, patch: Mapping[str, Any]) -> None:
        check_keys(patch, ("deny", "allowed", "denied"), "control")
        rules = parse_deny_rules(patch["deny"], "deny") if "deny" in patch else None
        for counter in ("allowed", "denied"):
            if counter in patch:
                # Counters are observations; the only meaningful write is a reset.
                integer(counter, patch[counter], 0, 0)
        if rules is not None:
            self.rules = rules
        if "allowed" in patch:
            self.allowed = 0
        if "denied" in patch:
            self.denied = 0

    def stats(self) -> JSONDict:
        return {
            "allowed": self.allowed,
            "denied": self.denied,
            "upstream_errors": self._fwd.upstream_errors,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        for rule in self.rules:
            if rule.matches(request):
                self.denied += 1
                return json_response(self.identity, {"denied": True, "rule": rule.to_json()}, rule.status)
        self.allowed += 1
        return await self._fwd.forward(request)


# --------------------------------------------------------------------------
# http-lb


class LB(Component):
    name = "lb"

    def __init__(self, identity: Identity, upstream: Upstream) -> None:
        super().__init__(identity)
        self.upstream = upstream
        self._fwd = upstream
        self.extra_latency_ms = 0.0
        self.requests = 0

    def config(self) -> JSONDict:
        return {"extra_latency_ms": self.extra_latency_ms, "upstream": str(self._fwd.url)}

    def update(self, patch: Mapping[str, Any]) -> None:
        check_keys(patch, ("extra_latency_ms",), "control")
        if "extra_latency_ms" in patch:
            self.extra_latency_ms = number("extra_latency_ms", patch["extra_latency_ms"], 0)

    def stats(self) -> JSONDict:
        return {"requests": self.requests, "upstream_errors": self._fwd.upstream_errors}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await sleep_ms(self.extra_latency_ms)
        return await self._fwd.forward(request)


# --------------------------------------------------------------------------
# clover-server

MAX_PAYLOAD = 10 * 1024 * 1024
_PAYLOAD_LINE = b"clover-sdc payload 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
_payload_cache: dict[int, bytes] = {}


def payload(size: int) -> bytes:
    """Deterministic text of exactly ``size`` bytes, built once per size."""
    body = _payload_cache.get(size)
    if body is None:
        if len(_payload_cache) >= 16:
            # Sizes change only through the control API; a small bound keeps
            # a test sweeping sizes from pinning hundreds of MiB.
            _payload_cache.pop(next(iter(_payload_cache)))
        body = (_PAYLOAD_LINE * (size // len(_PAYLOAD_LINE) + 1))[:size]
        _payload_cache[size] = body
    return body


@dataclass
class ServerConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    payload_bytes: int = 128
    error_rate: float = 0.0
    error_status: int = 503
    max_concurrency: int = 0
    """Requests served at once (0: unlimited). Beyond it requests queue, as in a worker-pool server:
    what makes overload pile up latency, which a circuit breaker then turns into fast 503s."""

    FIELDS = ("latency_ms", "jitter_ms", "payload_bytes", "error_rate", "error_status", "max_concurrency", "seed")

    def merged(self, patch: Mapping[str, Any]) -> ServerConfig:
        """A validated copy with ``patch`` applied; ``self`` is left untouched."""
        check_keys(patch, self.FIELDS, "control")
        new = ServerConfig(**vars(self))
        if "latency_ms" in patch:
            new.latency_ms = number("latency_ms", patch["latency_ms"], 0)
        if "jitter_ms" in patch:
            new.jitter_ms = number("jitter_ms", patch["jitter_ms"], 0)
        if "payload_bytes" in patch:
            new.payload_bytes = integer("payload_bytes", patch["payload_bytes"], 0, MAX_PAYLOAD)
        if "error_rate" in patch:
            new.error_rate = number("error_rate", patch["error_rate"], 0.0, 1.0)
        if "error_status" in patch:
            new.error_status = integer("error_status", patch["error_status"], 500, 599)
        if "max_concurrency" in patch:
            new.max_concurrency = integer("max_concurrency", patch["max_concurrency"], 0, 100_000)
        if "seed" in patch:
            integer("seed", patch["seed"])
        return new


class Server(Component):
    name = "server"

    def __init__(self, identity: Identity, env: Mapping[str, str]) -> None:
        super().__init__(identity)
        self.seed = identity.seed
        self.rng = identity.rng()
        self.cfg = ServerConfig()
        self.requests = 0
        self.errors = 0
        self._headers = own_headers(identity)
        self._slots: asyncio.Semaphore | None = None
        raw = json_env(env, "CLOVER_SERVER_CONFIG")
        if raw is not None:
            if not isinstance(raw, dict):
                raise InvalidSetting("CLOVER_SERVER_CONFIG", "CLOVER_SERVER_CONFIG must be a JSON object")
            try:
                self.update(raw)
            except InvalidSetting as exc:
                raise InvalidSetting(exc.field, f"CLOVER_SERVER_CONFIG: {exc.message}") from None
        self._body = payload(self.cfg.payload_bytes)

    def config(self) -> JSONDict:
        out: JSONDict = dict(vars(self.cfg))
        out["seed"] = self.seed
        return out

    def update(self, patch: Mapping[str, Any]) -> None:
        self.cfg = self.cfg.merged(patch)
        self._body = payload(self.cfg.payload_bytes)
        if "max_concurrency" in patch:
            # Requests already waiting keep the old semaphore; new ones queue on the new limit.
            self._slots = asyncio.Semaphore(self.cfg.max_concurrency) if self.cfg.max_concurrency else None
        if "seed" in patch:
            self.seed = integer("seed", patch["seed"])
            self.rng = self.identity.rng(self.seed)

    def stats(self) -> JSONDict:
        return {"requests": self.requests, "errors": self.errors}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/upload", self._upload)

    async def _faults(self) -> web.Response | None:
        cfg = self.cfg
        delay = cfg.latency_ms
        if cfg.jitter_ms > 0:
            delay += self.rng.uniform(0.0, cfg.jitter_ms)
        await sleep_ms(delay)
        if cfg.error_rate > 0.0 and self.rng.random() < cfg.error_rate:
            self.errors += 1
            return json_response(
                self.identity,
                {"error": "injected by clover-server control", "pod": self.identity.pod},
                cfg.error_status,
            )
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        received = await drain(request)
        if ECHO_HEADER in request.headers:
            return self.echo(request, received)
        slots = self._slots
        if slots is not None:
            async with slots:
                failure = await self._faults()
        else:
            failure = await self._faults()
        if failure is not None:
            return failure
        return web.Response(body=self._body, content_type="text/plain", headers=self._headers)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await drain(request)
        failure = await self._faults()
        if failure is not None:
            return failure
        return web.Response(status=204, headers=self._headers)


# --------------------------------------------------------------------------


def _upstream_timeout(env: Mapping[str, str]) -> float:
    raw = env.get("CLOVER_UPSTREAM_TIMEOUT", "").strip()
    if not raw:
        return 30.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidSetting(
            "CLOVER_UPSTREAM_TIMEOUT",
            f"CLOVER_UPSTREAM_TIMEOUT must be a number of seconds > 0 (got {raw!r})",
        )
    return value


def resolve_upstream(component: str, upstream: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The upstream URL for ``component`` and where it came from, or None."""
    if component not in DEFAULT_UPSTREAMS:
        if upstream is not None:
            raise InvalidSetting("--upstream", f"--upstream is not accepted by the {component} component")
        return None
    if upstream is not None:
        return upstream, "--upstream"
    if env.get("CLOVER_UPSTREAM"):
        return env["CLOVER_UPSTREAM"], "CLOVER_UPSTREAM"
    return DEFAULT_UPSTREAMS[component], "default upstream"


def build_component(
    component: str,
    upstream: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    identity: Identity | None = None,
) -> Component:
    """Build the component object (tests reach into it; main only needs the app).

    ``env`` defaults to ``os.environ``; HTTP_PROXY/NO_PROXY are always read
    from the real process environment, as aiohttp resolves them.
    """
    if component not in COMPONENTS:
        raise InvalidSetting("component", f"component must be one of {', '.join(COMPONENTS)} (got {component!r})")
    env = os.environ if env is None else env
    identity = Identity.from_env(component, env) if identity is None else identity
    target = resolve_upstream(component, upstream, env)
    fwd: Upstream | None = None
    if target is not None:
        url = validate_upstream(*target)
        fwd = Upstream(identity, url, timeout_s=_upstream_timeout(env))
    if component == "proxy":
        assert fwd is not None
        return Proxy(identity, fwd, env)
    if component == "lb":
        assert fwd is not None
        return LB(identity, fwd)
    if component == "server":
        return Server(identity, env)
    return IDS(identity, env)


def make_app(
    component: str,
    upstream: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    identity: Identity | None = None,
) -> web.Application:
    """The aiohttp application for one component; raises InvalidSetting on bad config."""
    return build_component(component, upstream, env=env, identity=identity).build_app()


def describe(component: Component) -> str:
    ident = component.identity
    text = f"{component.name} pod={ident.pod} version={ident.version}"
    if component.upstream is not None:
        text += f" upstream={component.upstream.describe()}"
    return text
