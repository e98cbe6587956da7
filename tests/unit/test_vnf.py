"""Unit tests for the SDC VNF (pytest_clover.vnf), run against real aiohttp apps.

Each test starts the components it needs on loopback with
aiohttp.test_utils.TestServer and talks HTTP to them, chaining
proxy -> lb -> server where the behaviour under test spans hops. Plain
``asyncio.run`` drives them; no asyncio pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from pytest_clover.vnf.__main__ import main
from pytest_clover.vnf.common import Component, InvalidSetting
from pytest_clover.vnf.components import IDS, Proxy, Server, build_component, payload

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
PROXY_VARS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The forwarding hops honour HTTP_PROXY; a proxy in the developer's or
    # CI's environment must not capture loopback test traffic.
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pod_env(pod: str, version: str = "v1", **extra: str) -> dict[str, str]:
    return {"POD_NAME": pod, "POD_VERSION": version, "POD_NAMESPACE": "test", **extra}


@dataclass
class Running:
    component: Component
    server: TestServer

    def url(self, path: str = "/") -> URL:
        return self.server.make_url(path)

    @property
    def base(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")


@asynccontextmanager
async def serve(component: str, upstream: str | None = None, **env: str) -> AsyncIterator[Running]:
    comp = build_component(component, upstream, env=env)
    server = TestServer(comp.build_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield Running(comp, server)
    finally:
        await server.close()


@dataclass
class Chain:
    proxy: Running
    lb: Running
    server: Running
    http: aiohttp.ClientSession

    @property
    def srv(self) -> Server:
        assert isinstance(self.server.component, Server)
        return self.server.component


async def start(stack: AsyncExitStack, component: str, upstream: str | None = None, **env: str) -> Running:
    return await stack.enter_async_context(serve(component, upstream, **env))


async def client(stack: AsyncExitStack) -> aiohttp.ClientSession:
    return await stack.enter_async_context(aiohttp.ClientSession())


async def chain(
    stack: AsyncExitStack,
    *,
    server_env: dict[str, str] | None = None,
    lb_version: str = "v2",
    proxy_env: dict[str, str] | None = None,
) -> Chain:
    server = await start(stack, "server", **pod_env("clover-server-abc", "v1", **(server_env or {})))
    lb = await start(stack, "lb", server.base, **pod_env("http-lb-v2-xyz", lb_version))
    proxy = await start(stack, "proxy", lb.base, **pod_env("proxy-access-control-123", "v1", **(proxy_env or {})))
    return Chain(proxy, lb, server, await client(stack))


def with_chain(body: Callable[[Chain], Awaitable[None]], **kwargs: Any) -> None:
    async def go() -> None:
        async with AsyncExitStack() as stack:
            await body(await chain(stack, **kwargs))

    run(go())


async def put_control(http: aiohttp.ClientSession, target: Running, patch: object) -> aiohttp.ClientResponse:
    resp = await http.put(target.url("/clover/control"), data=json.dumps(patch))
    await resp.read()
    return resp


# --------------------------------------------------------------------------
# hops, propagation, forwarding


def test_hops_header_lists_each_pod_and_version_in_order() -> None:
    async def body(c: Chain) -> None:
        async with c.http.get(c.proxy.url("/index.html")) as resp:
            assert resp.status == 200
            text = await resp.text()
            assert resp.headers["x-clover-hops"] == (
                "proxy-access-control-123/v1, http-lb-v2-xyz/v2, clover-server-abc/v1"
            )
            # Only the component that generated the body names itself.
            assert resp.headers["x-clover-pod"] == "clover-server-abc"
            assert resp.content_type == "text/plain"
            assert len(text) == 128
        versions = [hop.rsplit("/", 1)[1] for hop in resp.headers["x-clover-hops"].split(", ")]
        assert versions == ["v1", "v2", "v1"]

    with_chain(body)


def test_propagates_exactly_the_tracing_routing_and_clover_headers() -> None:
    propagated = {
        "x-request-id": "req-42",
        "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
        "x-b3-spanid": "a2fb4a1d1a96d312",
        "x-b3-parentspanid": "0020000000000001",
        "x-b3-sampled": "1",
        "x-b3-flags": "0",
        "b3": "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "congo=t61rcWkgMzE",
        "x-ot-span-context": "ctx",
        "end-user": "jason",
        "user-agent": "clover-test/1.0",
        "x-clover-foo": "bar",
        "X-Clover-Case": "Upper",
        "x-clover-echo": "1",
    }
    dropped = {
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Authorization": "Bearer secret",
        "Cookie": "session=1",
        "X-Forwarded-For": "10.0.0.1",
        "X-Other": "nope",
    }

    async def body(c: Chain) -> None:
        async with c.http.get(c.proxy.url("/some/path?a=1&b=two"), headers={**propagated, **dropped}) as resp:
            assert resp.status == 200
            seen = await resp.json()
        received = seen["headers"]
        for name, value in propagated.items():
            assert received.get(name.lower()) == value, name
        for name in dropped:
            assert name.lower() not in received, name
        # Host names the server (the upstream URL), not the proxy the client used.
        assert received["host"] == f"127.0.0.1:{c.server.server.port}"
        extra = set(received) - {n.lower() for n in propagated} - {"host", "accept"}
        assert extra == set(), extra
        assert seen["method"] == "GET"
        assert seen["path"] == "/some/path"
        assert seen["query"] == "a=1&b=two"
        assert seen["pod"] == "clover-server-abc"

    with_chain(body)


def test_forwards_method_query_and_body_with_its_content_type() -> None:
    async def body(c: Chain) -> None:
        doc = json.dumps({"k": "v" * 1000}).encode()
        async with c.http.patch(
            c.proxy.url("/api/items/7?x=%2Fy"),
            data=doc,
            headers=CIMultiDict(
                [
                    ("x-clover-echo", "1"),
                    ("Content-Type", "application/json"),
                    ("x-clover-multi", "a"),
                    ("x-clover-multi", "b"),
                ]
            ),
        ) as resp:
            seen = await resp.json()
        assert seen["method"] == "PATCH"
        assert seen["path"] == "/api/items/7"
        assert seen["query"] == "x=/y"
        assert seen["body_bytes"] == len(doc)
        assert seen["headers"]["content-type"] == "application/json"
        assert seen["headers"]["x-clover-multi"] == "a, b"

    with_chain(body)


def test_streams_large_and_chunked_bodies_both_ways() -> None:
    async def body(c: Chain) -> None:
        size = 3 * 1024 * 1024 + 17

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // 65536):
                yield b"u" * 65536
            yield b"u" * (size % 65536)

        # Unknown length: the client sends chunked; each hop must relay it.
        async with c.http.post(c.proxy.url("/anything"), data=chunks(), headers={"x-clover-echo": "1"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["body_bytes"] == size
        # Known length above the buffering limit: streamed, but still sized.
        async with c.http.post(
            c.proxy.url("/anything"), data=io.BytesIO(b"s" * size), headers={"x-clover-echo": "1"}
        ) as resp:
            seen = await resp.json()
        assert seen["body_bytes"] == size
        assert seen["headers"]["content-length"] == str(size)
        assert "transfer-encoding" not in seen["headers"]
        async with c.http.post(c.proxy.url("/upload"), data=io.BytesIO(b"x" * size)) as resp:
            assert resp.status == 204
            assert resp.headers["x-clover-hops"].endswith("clover-server-abc/v1")
        assert c.srv.stats() == {"requests": 3, "errors": 0}

        await put_control(c.http, c.server, {"payload_bytes": 10 * 1024 * 1024})
        async with c.http.get(c.proxy.url("/big")) as resp:
            data = await resp.read()
            assert resp.status == 200
            assert resp.headers["x-clover-hops"].count(", ") == 2
        assert data == payload(10 * 1024 * 1024)

    with_chain(body)


def test_upstream_status_body_and_content_type_pass_through_unchanged() -> None:
    async def body(c: Chain) -> None:
        resp = await put_control(c.http, c.server, {"error_rate": 1.0, "error_status": 507})
        assert resp.status == 200
        async with c.http.get(c.proxy.url("/x")) as resp:
            assert resp.status == 507
            assert resp.content_type == "application/json"
            assert await resp.json() == {
                "error": "injected by clover-server control",
                "pod": "clover-server-abc",
            }
            assert resp.headers["x-clover-pod"] == "clover-server-abc"

    with_chain(body)


def test_clover_paths_are_answered_locally_and_never_forwarded() -> None:
    async def body(c: Chain) -> None:
        async with c.http.get(c.proxy.url("/clover/ready")) as resp:
            assert await resp.json() == {
                "ready": True,
                "pod": "proxy-access-control-123",
                "version": "v1",
                "component": "proxy",
            }
            assert resp.headers["x-clover-hops"] == "proxy-access-control-123/v1"
            assert resp.headers["x-clover-pod"] == "proxy-access-control-123"
        async with c.http.get(c.proxy.url("/clover/stats")) as resp:
            assert set(await resp.json()) == {"allowed", "denied", "upstream_errors"}
        async with c.http.get(c.proxy.url("/clover/no-such-thing")) as resp:
            assert resp.status == 404
        async with c.http.post(c.proxy.url("/clover/control"), data=b"{}") as resp:
            assert resp.status == 405
            assert set(resp.headers["Allow"].split(", ")) >= {"GET", "PUT"}
        async with c.http.get(c.lb.url("/clover/upload")) as resp:
            assert resp.status == 404
        assert c.srv.requests == 0

    with_chain(body)


def test_unreachable_upstream_is_a_502_naming_it() -> None:
    async def go() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with AsyncExitStack() as stack:
            lb = await start(stack, "lb", dead, **pod_env("lb-1"))
            proxy = await start(stack, "proxy", lb.base, **pod_env("proxy-1"))
            http = await client(stack)
            async with http.get(lb.url("/a")) as resp:
                assert resp.status == 502
                doc = await resp.json()
                assert resp.headers["x-clover-hops"] == "lb-1/v1"
                assert resp.headers["x-clover-pod"] == "lb-1"
            assert doc["error"] == "upstream unreachable"
            assert doc["upstream"] == dead
            assert doc["detail"]
            async with http.get(proxy.url("/a")) as resp:
                assert resp.status == 502
                assert resp.headers["x-clover-hops"] == "proxy-1/v1, lb-1/v1"
                assert resp.headers["x-clover-pod"] == "lb-1"
            assert lb.component.stats()["upstream_errors"] == 2

    run(go())


def test_upstream_calls_go_through_http_proxy_in_absolute_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def sidecar(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="via sidecar", headers={"x-clover-hops": "clover-server-9/v9"})

    async def go() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", sidecar)
        async with TestServer(app, host="127.0.0.1") as fake:
            monkeypatch.setenv("HTTP_PROXY", str(fake.make_url("/")).rstrip("/"))
            async with AsyncExitStack() as stack:
                lb = await start(stack, "lb", "http://clover-server:9180", **pod_env("lb-1"))
                http = await client(stack)
                async with http.get(lb.url("/p?q=1")) as resp:
                    assert resp.status == 200
                    assert await resp.text() == "via sidecar"
                    assert resp.headers["x-clover-hops"] == "lb-1/v1, clover-server-9/v9"
                # NO_PROXY is honoured too: this lb reaches its upstream directly.
                server = await start(stack, "server", **pod_env("srv"))
                monkeypatch.setenv("NO_PROXY", "127.0.0.1")
                direct = await start(stack, "lb", server.base, **pod_env("lb-2"))
                async with http.get(direct.url("/p")) as resp:
                    assert resp.headers["x-clover-hops"] == "lb-2/v1, srv/v1"
        assert seen == ["http://clover-server:9180/p?q=1"]

    run(go())


# --------------------------------------------------------------------------
# proxy-access-control


def test_default_deny_rules_block_admin_path_and_deny_header_without_forwarding() -> None:
    async def body(c: Chain) -> None:
        async with c.http.get(c.proxy.url("/admin/users")) as resp:
            assert resp.status == 403
            assert await resp.json() == {
                "denied": True,
                "rule": {"path_prefix": "/admin", "status": 403},
            }
            assert resp.headers["x-clover-hops"] == "proxy-access-control-123/v1"
            assert resp.headers["x-clover-pod"] == "proxy-access-control-123"
        # Percent-encoding must not get a request past a path rule.
        async with c.http.get(URL(c.proxy.base + "/%61dmin", encoded=True)) as resp:
            assert resp.status == 403
        async with c.http.get(c.proxy.url("/ok"), headers={"x-clover-deny": "anything"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["rule"] == {"header": "x-clover-deny", "status": 403}
        async with c.http.get(c.proxy.url("/administrator-guide"), headers={}) as resp:
            assert resp.status == 403  # a prefix rule, as documented
        async with c.http.get(c.proxy.url("/ok")) as resp:
            assert resp.status == 200
        assert c.srv.stats()["requests"] == 1
        async with c.http.get(c.proxy.url("/clover/control")) as resp:
            cfg = await resp.json()
        assert (cfg["allowed"], cfg["denied"]) == (1, 4)

    with_chain(body)


def test_deny_rules_from_control_api_and_env() -> None:
    async def body(c: Chain) -> None:
        rules = [
            {"path_regex": r"^/v\d+/secret", "status": 451},
            {"header": "x-clover-block", "value": "yes"},
        ]
        resp = await put_control(c.http, c.proxy, {"deny": rules})
        assert resp.status == 200
        async with c.http.get(c.proxy.url("/v2/secret/x")) as resp:
            assert resp.status == 451
        async with c.http.get(c.proxy.url("/ok"), headers={"x-clover-block": "yes"}) as resp:
            assert resp.status == 403
        async with c.http.get(c.proxy.url("/ok"), headers={"x-clover-block": "no"}) as resp:
            assert resp.status == 200
        # The defaults were replaced, not extended.
        async with c.http.get(c.proxy.url("/admin")) as resp:
            assert resp.status == 200
        assert c.srv.stats()["requests"] == 2

    with_chain(body)

    async def env_only(c: Chain) -> None:
        async with c.http.get(c.proxy.url("/env-only/x")) as resp:
            assert resp.status == 403
        async with c.http.get(c.proxy.url("/admin")) as resp:
            assert resp.status == 200

    with_chain(env_only, proxy_env={"CLOVER_DENY": json.dumps([{"path_prefix": "/env-only"}])})


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"deny": {"path_prefix": "/x"}}, "deny"),
        ({"deny": [{"path_prefix": "/x", "header": "h"}]}, "deny[0]"),
        ({"deny": [{"path_regex": "("}]}, "deny[0].path_regex"),
        ({"deny": [{"path_prefix": "/x", "status": 99}]}, "deny[0].status"),
        ({"deny": [{"path_prefix": "/x", "colour": "red"}]}, "colour"),
        ({"allowed": 5}, "allowed"),
    ],
)
def test_proxy_control_rejects_bad_rules(patch: dict[str, Any], field: str) -> None:
    async def body(c: Chain) -> None:
        before = c.proxy.component.config()
        resp = await put_control(c.http, c.proxy, patch)
        assert resp.status == 400
        doc = json.loads(await resp.text())
        assert doc["field"] == field
        assert field in doc["error"]
        assert c.proxy.component.config() == before

    with_chain(body)


# --------------------------------------------------------------------------
# clover-server


def test_error_rate_one_fails_everything_and_zero_nothing() -> None:
    async def body(c: Chain) -> None:
        await put_control(c.http, c.server, {"error_rate": 1.0})
        for _ in range(20):
            async with c.http.get(c.proxy.url("/")) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "injected by clover-server control"
        await put_control(c.http, c.server, {"error_rate": 0.0})
        for _ in range(20):
            async with c.http.get(c.proxy.url("/")) as resp:
                assert resp.status == 200
        async with c.http.get(c.server.url("/clover/stats")) as resp:
            assert await resp.json() == {"requests": 40, "errors": 20}

    with_chain(body)


def test_error_rate_half_is_binomial_and_replays_with_the_seed() -> None:
    n = 400

    async def statuses(env: dict[str, str]) -> list[int]:
        async with AsyncExitStack() as stack:
            server = await start(stack, "server", **env)
            http = await client(stack)
            await put_control(http, server, {"error_rate": 0.5})
            out = []
            for _ in range(n):
                async with http.get(server.url("/")) as resp:
                    await resp.read()
                    out.append(resp.status)
            assert server.component.stats() == {"requests": n, "errors": out.count(503)}
            return out

    first = run(statuses(pod_env("srv-a", CLOVER_SEED="7")))
    errors = first.count(503)
    # 99 % interval of Binomial(400, 0.5): 200 +/- 2.576 * 10.
    half_width = 2.576 * math.sqrt(n * 0.25)
    assert n / 2 - half_width <= errors <= n / 2 + half_width, errors
    assert set(first) == {200, 503}
    assert run(statuses(pod_env("srv-a", CLOVER_SEED="7"))) == first
    # The pod name is mixed into the seed so replicas do not fail in lockstep.
    assert run(statuses(pod_env("srv-b", CLOVER_SEED="7"))) != first


def test_put_seed_reseeds_the_fault_sequence() -> None:
    async def body(c: Chain) -> None:
        async def sample() -> list[int]:
            await put_control(c.http, c.server, {"seed": 99, "error_rate": 0.5})
            out = []
            for _ in range(30):
                async with c.http.get(c.server.url("/")) as resp:
                    out.append(resp.status)
            return out

        assert await sample() == await sample()
        async with c.http.get(c.server.url("/clover/control")) as resp:
            assert (await resp.json())["seed"] == 99

    with_chain(body)


def test_latency_ms_delays_each_response() -> None:
    async def body(c: Chain) -> None:
        await put_control(c.http, c.server, {"latency_ms": 150, "jitter_ms": 20})
        for _ in range(3):
            t0 = time.perf_counter()
            async with c.http.get(c.proxy.url("/")) as resp:
                await resp.read()
            assert time.perf_counter() - t0 >= 0.150
        await put_control(c.http, c.lb, {"extra_latency_ms": 100})
        t0 = time.perf_counter()
        async with c.http.get(c.proxy.url("/")) as resp:
            await resp.read()
        assert time.perf_counter() - t0 >= 0.250
        await put_control(c.http, c.server, {"latency_ms": 0, "jitter_ms": 0})
        await put_control(c.http, c.lb, {"extra_latency_ms": 0})
        t0 = time.perf_counter()
        async with c.http.get(c.proxy.url("/")) as resp:
            await resp.read()
        assert time.perf_counter() - t0 < 0.150

    with_chain(body)


@pytest.mark.parametrize("size", [0, 1, 1000, 65536 + 3, 2 * 1024 * 1024])
def test_payload_bytes_is_exact_and_deterministic(size: int) -> None:
    async def body(c: Chain) -> None:
        resp = await put_control(c.http, c.server, {"payload_bytes": size})
        assert resp.status == 200
        bodies = []
        for _ in range(2):
            async with c.http.get(c.proxy.url("/p")) as resp:
                assert resp.status == 200
                bodies.append(await resp.read())
        assert len(bodies[0]) == size
        assert bodies[0] == bodies[1]
        assert bodies[0] == payload(size)
        if size:
            assert bodies[0].decode("ascii").startswith("clover-sdc"[:size])

    with_chain(body)


def test_server_config_from_env() -> None:
    env = pod_env("s", CLOVER_SERVER_CONFIG=json.dumps({"payload_bytes": 5, "error_status": 599}))
    comp = build_component("server", env=env)
    assert comp.config()["payload_bytes"] == 5
    assert comp.config()["error_status"] == 599
    with pytest.raises(InvalidSetting) as info:
        build_component("server", env=pod_env("s", CLOVER_SERVER_CONFIG='{"error_rate": 3}'))
    assert info.value.field == "error_rate"
    assert "CLOVER_SERVER_CONFIG" in info.value.message


@pytest.mark.parametrize(
    ("patch", "field", "hint"),
    [
        ({"latency_ms": -1}, "latency_ms", ">= 0"),
        ({"latency_ms": "fast"}, "latency_ms", ">= 0"),
        ({"jitter_ms": float("inf")}, "jitter_ms", ">= 0"),
        ({"error_rate": 1.5}, "error_rate", "[0, 1]"),
        ({"error_rate": True}, "error_rate", "[0, 1]"),
        ({"error_status": 404}, "error_status", "[500, 599]"),
        ({"payload_bytes": 10 * 1024 * 1024 + 1}, "payload_bytes", "[0, 10485760]"),
        ({"payload_bytes": 1.5}, "payload_bytes", "[0, 10485760]"),
        ({"seed": "x"}, "seed", "integer"),
        ({"latency": 5}, "latency", "allowed fields"),
    ],
)
def test_server_control_validation_names_field_and_range(patch: dict[str, Any], field: str, hint: str) -> None:
    async def body(c: Chain) -> None:
        before = c.srv.config()
        # A valid field next to the bad one must not be applied either.
        resp = await put_control(c.http, c.server, {"latency_ms": 7, **patch})
        assert resp.status == 400
        doc = json.loads(await resp.text())
        assert doc["field"] == field
        assert field in doc["error"] and hint in doc["error"], doc["error"]
        assert c.srv.config() == before

    with_chain(body)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_control_rejects_non_object_bodies(raw: bytes) -> None:
    async def body(c: Chain) -> None:
        for target in (c.proxy, c.lb, c.server):
            async with c.http.put(target.url("/clover/control"), data=raw) as resp:
                assert resp.status == 400
                assert (await resp.json())["field"] == "body"

    with_chain(body)


def test_control_get_and_put_roundtrip() -> None:
    async def body(c: Chain) -> None:
        resp = await put_control(c.http, c.server, {"latency_ms": 1.5, "payload_bytes": 10})
        assert resp.status == 200
        async with c.http.get(c.server.url("/clover/control")) as resp:
            assert await resp.json() == {
                "latency_ms": 1.5,
                "jitter_ms": 0.0,
                "payload_bytes": 10,
                "error_rate": 0.0,
                "error_status": 503,
                "max_concurrency": 0,
                "seed": 0,
            }
        async with c.http.put(c.lb.url("/clover/control"), data=json.dumps({"extra_latency_ms": 2})) as resp:
            assert (await resp.json())["extra_latency_ms"] == 2.0

    with_chain(body)


# --------------------------------------------------------------------------
# snort-ids


async def ids_alerts(http: aiohttp.ClientSession, ids: Running) -> dict[str, Any]:
    async with http.get(ids.url("/clover/alerts")) as resp:
        doc: dict[str, Any] = await resp.json()
        return doc


def run_ids(body: Callable[[Running, aiohttp.ClientSession], Awaitable[None]], **env: str) -> None:
    async def go() -> None:
        async with AsyncExitStack() as stack:
            ids = await start(stack, "ids", **pod_env("snort-ids-1", **env))
            await body(ids, await client(stack))

    run(go())


def test_ids_default_signatures_fire_on_matching_requests_only() -> None:
    async def body(ids: Running, http: aiohttp.ClientSession) -> None:
        base = ids.base

        async def send(
            path: str,
            *,
            method: str = "GET",
            data: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            url = URL(base + path, encoded=True)  # keep "../" as sent
            async with http.request(method, url, data=data, headers=headers) as resp:
                assert resp.status == 200
                assert await resp.json() == {"inspected": True}
                assert resp.headers["x-clover-pod"] == "snort-ids-1"

        await send("/static/../../etc/hosts", headers={"x-request-id": "r1"})
        await send("/download?file=/etc/passwd")
        await send("/items?id=1%20UNION%20%20SELECT%20password")
        await send("/", headers={"User-Agent": "Mozilla/5.0 (compatible; asafaweb.com)"})
        await send("/", headers={"User-Agent": "Mozilla/5.0 (compatible; ASAFAWEB.COM)"})
        await send("/comment", method="POST", data=b"hi <ScRiPt>alert(1)</script>")
        await send("/clean?q=union", method="POST", data=b"nothing to see")
        doc = await ids_alerts(http, ids)
        assert doc["inspected"] == 7
        assert doc["by_sid"] == {
            "1000001": 1,
            "1000002": 1,
            "1000003": 1,
            "1000004": 1,
            "10000003": 1,
        }
        assert doc["total"] == 5
        first = doc["recent"][0]
        assert first["sid"] == 1000001
        assert first["request_id"] == "r1"
        assert first["path"] == "/static/../../etc/hosts"
        assert {a["msg"] for a in doc["recent"]} >= {"MALWARE-CNC User-Agent ASafaWeb Scan"}
        assert isinstance(first["time"], float)

    run_ids(body)


def test_ids_recent_alerts_are_bounded_and_reset() -> None:
    async def body(ids: Running, http: aiohttp.ClientSession) -> None:
        for i in range(150):
            async with http.get(ids.url("/a/..%2F"), headers={"x-request-id": f"r{i}"}) as resp:
                await resp.read()
        doc = await ids_alerts(http, ids)
        assert doc["total"] == 150
        assert doc["by_sid"] == {"1000001": 150}
        assert len(doc["recent"]) == 100
        assert [a["request_id"] for a in doc["recent"]] == [f"r{i}" for i in range(50, 150)]
        async with http.delete(ids.url("/clover/alerts")) as resp:
            assert resp.status == 200
        assert await ids_alerts(http, ids) == {
            "inspected": 0,
            "total": 0,
            "by_sid": {},
            "recent": [],
        }

    run_ids(body)


def test_ids_rule_add_match_duplicate_delete() -> None:
    async def body(ids: Running, http: aiohttp.ClientSession) -> None:
        rule = {"sid": 2000001, "msg": "evil header", "field": "header:X-Evil", "regex": "^yes"}
        async with http.post(ids.url("/clover/rules"), data=json.dumps(rule)) as resp:
            assert resp.status == 201
            assert (await resp.json())["field"] == "header:x-evil"
        async with http.post(ids.url("/clover/rules"), data=json.dumps(rule)) as resp:
            assert resp.status == 409
        nocase_rules = [
            {"sid": 2000002, "msg": "nc", "field": "body", "content": "DROP", "nocase": True},
            {"sid": 2000003, "msg": "rx", "field": "body", "regex": r"drop\s+table", "nocase": True},
            {"sid": 2000004, "msg": "cs", "field": "body", "regex": r"drop\s+table"},
        ]
        for extra in nocase_rules:
            async with http.post(ids.url("/clover/rules"), data=json.dumps(extra)) as resp:
                assert resp.status == 201
        async with http.post(ids.url("/x"), data=b"Drop  TABLE", headers={"x-evil": "yes!"}) as r:
            await r.read()
        async with http.post(ids.url("/x"), headers={"x-evil": "no"}) as r:
            await r.read()
        doc = await ids_alerts(http, ids)
        assert doc["by_sid"] == {"2000001": 1, "2000002": 1, "2000003": 1}
        async with http.delete(ids.url("/clover/rules/2000001")) as resp:
            assert resp.status == 200
            assert (await resp.json())["deleted"]["sid"] == 2000001
        async with http.delete(ids.url("/clover/rules/2000001")) as resp:
            assert resp.status == 404
        async with http.delete(ids.url("/clover/rules/abc")) as resp:
            assert resp.status == 400
        async with http.get(ids.url("/clover/rules")) as resp:
            sids = [r["sid"] for r in (await resp.json())["rules"]]
        assert 2000001 not in sids and 2000002 in sids and 10000003 in sids
        async with http.get(ids.url("/x"), headers={"x-evil": "yes"}) as r:
            await r.read()
        assert (await ids_alerts(http, ids))["by_sid"]["2000001"] == 1

    run_ids(body)


@pytest.mark.parametrize(
    ("rule", "field", "hint"),
    [
        ({"sid": 3, "msg": "m", "field": "path", "regex": "(unclosed"}, "regex", "(unclosed"),
        ({"sid": 3, "msg": "m", "field": "cookie", "content": "x"}, "field", "header:<name>"),
        ({"sid": 3, "msg": "m", "field": "path"}, "content", "exactly one"),
        ({"sid": 3, "msg": "m", "content": "a", "regex": "b"}, "content", "exactly one"),
        ({"sid": 0, "msg": "m", "content": "a"}, "sid", ">= 1"),
        ({"msg": "m", "content": "a"}, "sid", "required"),
        ({"sid": 3, "content": "a", "nocase": "yes"}, "nocase", "true or false"),
        ({"sid": 3, "content": "a", "severity": 1}, "severity", "allowed fields"),
    ],
)
def test_ids_rejects_bad_rules(rule: dict[str, Any], field: str, hint: str) -> None:
    async def body(ids: Running, http: aiohttp.ClientSession) -> None:
        async with http.post(ids.url("/clover/rules"), data=json.dumps(rule)) as resp:
            assert resp.status == 400
            doc = await resp.json()
        assert doc["field"] == field
        assert hint in doc["error"], doc["error"]
        assert isinstance(ids.component, IDS)
        assert 3 not in ids.component.rules

    run_ids(body)


def test_ids_rules_from_env_replace_defaults() -> None:
    rules = [{"sid": 9, "msg": "only", "field": "path", "content": "/only"}]

    async def body(ids: Running, http: aiohttp.ClientSession) -> None:
        for path in ("/only/here", "/a/../b"):
            async with http.get(URL(ids.base + path, encoded=True)) as resp:
                await resp.read()
        assert (await ids_alerts(http, ids))["by_sid"] == {"9": 1}
        assert isinstance(ids.component, IDS)
        assert list(ids.component.rules) == [9]

    run_ids(body, CLOVER_IDS_RULES=json.dumps(rules))
    with pytest.raises(InvalidSetting) as info:
        build_component("ids", env={"CLOVER_IDS_RULES": '[{"sid": 1, "regex": "["}]'})
    assert info.value.field == "regex"


# --------------------------------------------------------------------------
# construction and CLI


def test_identity_defaults_and_bad_seed() -> None:
    comp = build_component("server", env={})
    assert comp.identity.pod == socket.gethostname()
    assert (comp.identity.namespace, comp.identity.version) == ("default", "v1")
    assert comp.identity.seed == 0
    with pytest.raises(InvalidSetting) as info:
        build_component("server", env={"CLOVER_SEED": "abc"})
    assert info.value.field == "CLOVER_SEED"


def test_upstream_resolution() -> None:
    proxy = build_component("proxy", env={})
    assert isinstance(proxy, Proxy) and proxy.upstream is not None
    assert str(proxy.upstream.url) == "http://http-lb:9180"
    lb = build_component("lb", env={"CLOVER_UPSTREAM": "http://elsewhere:1"})
    assert lb.upstream is not None and str(lb.upstream.url) == "http://elsewhere:1"
    lb = build_component("lb", "http://flag:2", env={"CLOVER_UPSTREAM": "http://elsewhere:1"})
    assert lb.upstream is not None and str(lb.upstream.url) == "http://flag:2"
    lb = build_component("lb", env={})
    assert lb.upstream is not None and str(lb.upstream.url) == "http://clover-server:9180"
    for bad in ("ftp://x", "not a url", "http://h:1/?q=1"):
        with pytest.raises(InvalidSetting):
            build_component("lb", bad, env={})
    with pytest.raises(InvalidSetting):
        build_component("server", "http://x:1", env={})


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["router"], {}, "invalid choice"),
        (["server", "--port", "70000"], {}, "--port"),
        (["server", "--port", "http"], {}, "--port"),
        (["server", "--upstream", "http://x:1"], {}, "--upstream"),
        (["lb", "--upstream", "gopher://x"], {}, "--upstream"),
        (["proxy"], {"CLOVER_DENY": "[{"}, "CLOVER_DENY"),
        (["server"], {"CLOVER_SERVER_CONFIG": '{"jitter_ms": -2}'}, "jitter_ms"),
    ],
)
def test_cli_rejects_bad_arguments_with_exit_2(
    argv: list[str],
    env: dict[str, str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def _get_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2) as resp:
        doc: dict[str, Any] = json.load(resp)
        return doc


def test_cli_serves_ready_and_exits_0_on_sigterm() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(pod_env("cli-server-0", "v3"), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_clover.vnf", "server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        doc: dict[str, Any] | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                doc = _get_json(f"http://127.0.0.1:{port}/clover/ready")
                break
            except OSError:
                time.sleep(0.05)
        assert doc == {"ready": True, "pod": "cli-server-0", "version": "v3", "component": "server"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_server_max_concurrency_queues_requests_beyond_the_limit() -> None:
    async def body(c: Chain) -> None:
        resp = await put_control(c.http, c.server, {"latency_ms": 150, "max_concurrency": 1})
        assert resp.status == 200
        started = time.perf_counter()

        async def one() -> float:
            async with c.http.get(c.server.url("/q")) as r:
                assert r.status == 200
            return time.perf_counter() - started

        first, second = sorted(await asyncio.gather(one(), one()))
        assert first >= 0.15 and second >= 0.30, (first, second)  # the second waited for the first's slot
        resp = await put_control(c.http, c.server, {"max_concurrency": 0})
        started = time.perf_counter()
        both = await asyncio.gather(one(), one())
        assert max(both) < 0.29, both  # unlimited again: served side by side

    with_chain(body)
