"""The ADS server's resync (``AdsServer.resync``): an Envoy whose ACK came too late for a push still gets the types
that push never sent, without waiting for another change — the stale-endpoint wedge a starved gateway fell into
in a soak (503 "no healthy upstream" for half an hour after its upstream was ready again)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_clover.backends.local.translate import T_CLUSTER, T_ROUTES
from pytest_clover.backends.local.xds import STALE_ROUNDS, AdsServer, group_by_type
from pytest_clover.errors import ConfigRejected


class Stream:
    """The server's end of one Envoy's ADS stream: what was written to it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def write(self, response: Any) -> None:
        self.sent.append(response)


def request(type_url: str, nonce: str = "", names: tuple[str, ...] = ()) -> Any:
    from envoy.service.discovery.v3 import discovery_pb2

    return discovery_pb2.DiscoveryRequest(type_url=type_url, response_nonce=nonce, resource_names=list(names))


def files(cluster_timeout: str, route_prefix: str) -> dict[str, Any]:
    cluster = {"@type": T_CLUSTER, "name": "outbound|80||lb", "type": "EDS", "connect_timeout": cluster_timeout,
               "eds_cluster_config": {"eds_config": {"ads": {}}}}
    routes = {"@type": T_ROUTES, "name": "80", "virtual_hosts": [{"name": "lb", "domains": ["*"], "routes": [
        {"match": {"prefix": route_prefix}, "route": {"cluster": "outbound|80||lb"}}]}]}
    return {"clusters": {"resources": [cluster]}, "routes": {"resources": [routes]}}  # fmt: skip


async def subscribe(server: AdsServer, name: str, stream: Stream) -> Any:
    state = server.proxy(name)
    state.context = stream
    for type_url, names in ((T_CLUSTER, ()), (T_ROUTES, ("80",))):
        await server._on_request(state, request(type_url, names=names))
    return state


def test_a_push_that_timed_out_is_completed_by_the_next_resync() -> None:
    async def scenario() -> None:
        server = AdsServer()
        stream = Stream()
        server.proxy("gateway").desired = group_by_type(files("1s", "/"))
        state = await subscribe(server, "gateway", stream)  # the first requests get the state of the world
        for response in list(stream.sent):
            names = ("80",) if response.type_url == T_ROUTES else ()
            await server._on_request(state, request(response.type_url, response.nonce, names))
        assert not state.pending

        # A change of both the cluster and the route; the Envoy is starved and does not ACK the cluster in time,
        # so the push stops there: the route is not sent.
        before = len(stream.sent)
        with pytest.raises(ConfigRejected, match="did not acknowledge Cluster"):
            await server.push("gateway", files("2s", "/v2"), timeout=0.05)
        assert [r.type_url for r in stream.sent[before:]] == [T_CLUSTER]
        late = stream.sent[-1]
        await server._on_request(state, request(T_CLUSTER, late.nonce))  # the late ACK

        # The resync sends what is still not acknowledged: the route, and nothing else.
        assert await server.resync("gateway") == [T_ROUTES]
        assert stream.sent[-1].type_url == T_ROUTES and "/v2" in str(stream.sent[-1].resources[0].value)
        await server._on_request(state, request(T_ROUTES, stream.sent[-1].nonce, ("80",)))
        assert await server.resync("gateway") == [], "in step: nothing is sent again"

    asyncio.run(scenario())


def test_responses_never_answered_are_given_up_on_after_some_rounds() -> None:
    async def scenario() -> None:
        server = AdsServer()
        stream = Stream()
        state = await subscribe(server, "gateway", stream)
        # The first state of the world, never answered (lost with a stream hiccup).
        await server._send(state, T_CLUSTER, only_changed=False)
        state.desired[T_CLUSTER] = {"c": {"name": "c", "type": "STATIC", "connect_timeout": "1s"}}
        assert state.pending
        for _ in range(STALE_ROUNDS - 1):
            assert await server.resync("gateway") == [], "an ACK may still come: wait"
        assert await server.resync("gateway") == [T_CLUSTER]
        assert await server.resync("gateway") == [], "sent again: now in flight"

    asyncio.run(scenario())


def test_resync_leaves_an_envoy_that_is_not_connected_alone() -> None:
    async def scenario() -> None:
        server = AdsServer()
        server.proxy("gone")
        assert await server.resync("gone") == []
        assert await server.resync("never-seen") == []

    asyncio.run(scenario())
