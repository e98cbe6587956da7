"""An aggregated xDS (ADS) server: the supervisor feeds every Envoy over one gRPC stream, as istiod does.

Why not file-based xDS: Envoy opens one inotify instance per file-watched subscription (measured: 11 per
SDC sidecar, 99 for the whole mesh), and Linux allows 128 per user by default, so a second mesh on the
same machine could not start. One gRPC stream per Envoy costs no inotify instance at all, and Envoy's
ACK/NACK of every response is an exact, immediate confirmation, with Envoy's own reason on a rejection.

State of the world: listeners and clusters are sent whole; routes and endpoints per requested name.
Each push goes clusters → endpoints → listeners → routes, so nothing points at what does not exist yet.
"""

from __future__ import annotations

import os

# gRPC's fork handlers are not needed (children exec at once) and warn when a thread is busy in gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

# Imported for their side effect: registering the typed_config types that Any fields name.
from envoy.extensions.access_loggers.file.v3 import file_pb2 as _file  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2 as _fault  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2 as _router  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as _hcm  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2 as _prev  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as _opts  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from ...errors import ConfigRejected
from .translate import T_CLUSTER, T_ENDPOINTS, T_LISTENER, T_ROUTES

log = logging.getLogger("pytest_clover.xds")

PUSH_ORDER = (T_CLUSTER, T_ENDPOINTS, T_LISTENER, T_ROUTES)
STALE_ROUNDS = 6
"""Resync rounds (5 s each) after which responses an Envoy has not answered are given up on and sent again."""
WILDCARD_TYPES = (T_CLUSTER, T_LISTENER)
_MESSAGES: dict[str, type[Message]] = {
    T_CLUSTER: cluster_pb2.Cluster,
    T_ENDPOINTS: endpoint_pb2.ClusterLoadAssignment,
    T_LISTENER: listener_pb2.Listener,
    T_ROUTES: route_pb2.RouteConfiguration,
}


def resource_name(type_url: str, body: Mapping[str, Any]) -> str:
    return str(body["cluster_name"] if type_url == T_ENDPOINTS else body["name"])


def group_by_type(files: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Rendered documents (as ``render_resources`` gives them) → type URL → resource name → resource."""
    out: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in PUSH_ORDER}
    for doc in files.values():
        for res in doc["resources"]:
            body = {k: v for k, v in res.items() if k != "@type"}
            out[res["@type"]][resource_name(res["@type"], body)] = body
    return out


_PACKED: dict[tuple[str, str], any_pb2.Any] = {}


def _pack(type_url: str, body: Mapping[str, Any], canonical: str | None = None) -> any_pb2.Any:
    """JSON resource → protobuf Any, cached: sidecars mostly share identical routes and clusters."""
    key = (type_url, canonical if canonical is not None else _canonical(body))
    packed = _PACKED.get(key)
    if packed is None:
        if len(_PACKED) > 4096:
            _PACKED.clear()
        packed = any_pb2.Any()
        packed.Pack(json_format.ParseDict(body, _MESSAGES[type_url]()))
        _PACKED[key] = packed
    return packed


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass
class ProxyState:
    """What one Envoy should have, what it has acknowledged, and its live stream."""

    name: str
    desired: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in PUSH_ORDER})
    acked: dict[str, dict[str, str]] = field(default_factory=lambda: {t: {} for t in PUSH_ORDER})
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PUSH_ORDER, 0))
    subscribed: dict[str, set[str] | None] = field(default_factory=dict)
    """Type URL → requested names (None: wildcard). Absent: not requested yet."""
    context: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: dict[str, tuple[asyncio.Future[str | None], str, dict[str, str]]] = field(default_factory=dict)
    """Nonce → (outcome future, type URL, what the response carried as name → canonical body)."""
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    busy_rounds: int = 0
    """Consecutive :meth:`AdsServer.resync` rounds that found responses in flight to this Envoy."""


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.proxies: dict[str, ProxyState] = {}
        self._nonces = itertools.count(1)
        self._server: grpc.aio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        bound = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        return int(bound)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.2)

    def proxy(self, name: str) -> ProxyState:
        return self.proxies.setdefault(name, ProxyState(name))

    def forget(self, name: str) -> None:
        state = self.proxies.pop(name, None)
        if state is not None:
            for future, _, _ in state.pending.values():
                if not future.done():
                    future.set_result(None)

    # ------------------------------------------------------------------ pushing

    async def push(self, name: str, files: Mapping[str, Mapping[str, Any]], timeout: float = 10.0) -> bool:
        """Make ``files`` the proxy's configuration; when its Envoy is connected, wait for its ACKs.

        Returns False when nothing was sent (unchanged, or the Envoy has not connected yet: it gets the
        whole desired state when it does). Raises ConfigRejected with Envoy's reason on a NACK.
        """
        state = self.proxy(name)
        state.desired = group_by_type(files)
        if state.context is None:
            return False
        sent = False
        for type_url in PUSH_ORDER:
            future = await self._send(state, type_url, only_changed=True)
            if future is None:
                continue
            sent = True
            try:
                error = await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                kind = type_url.rsplit(".", 1)[-1]
                raise ConfigRejected(f"Envoy of {name} did not acknowledge {kind} within {timeout:.0f} s") from exc
            if error is not None:
                raise ConfigRejected(
                    f"Envoy of {name} rejected the {type_url.rsplit('.', 1)[-1]} update; the previous configuration "
                    f"stays active. Envoy says: {error}"
                )
        return sent

    async def resync(self, name: str) -> list[str]:
        """Send a connected Envoy, again, what it should have and has not acknowledged (nothing in flight to it).

        A push gives up waiting for an ACK after its timeout (an Envoy starved of CPU), and the types after the
        one that timed out are then not sent at all: without a later change, that Envoy would keep a stale view
        for good (an endpoint that came back, never routed to). Called periodically by the supervisor under its
        push lock; returns the type URLs sent (empty when the Envoy is in step)."""
        state = self.proxies.get(name)
        if state is None or state.context is None:
            return []
        if state.pending:
            # In flight: its ACK may still come. Responses unanswered for STALE_ROUNDS rounds are given up on
            # (an Envoy answers each response it processes; one it never answers was lost with a stream hiccup).
            state.busy_rounds += 1
            if state.busy_rounds < STALE_ROUNDS:
                return []
            for future, _, _ in state.pending.values():
                if not future.done():
                    future.set_result(None)
            state.pending.clear()
        state.busy_rounds = 0
        sent = []
        for type_url in PUSH_ORDER:
            if await self._send(state, type_url, only_changed=True) is not None:
                sent.append(type_url)
        return sent

    async def _send(self, state: ProxyState, type_url: str, only_changed: bool) -> asyncio.Future[str | None] | None:
        if type_url not in state.subscribed or state.context is None:
            return None
        names = state.subscribed[type_url]
        desired = state.desired[type_url]
        acked = state.acked[type_url]
        if type_url in WILDCARD_TYPES:
            canon = {n: _canonical(b) for n, b in desired.items()}
            if only_changed and canon == acked:
                return None
        else:
            wanted = {n: _canonical(b) for n, b in desired.items() if names is None or n in names}
            canon = {n: c for n, c in wanted.items() if not only_changed or acked.get(n) != c}
            if only_changed and not canon:
                return None
        state.versions[type_url] += 1
        nonce = str(next(self._nonces))
        response = discovery_pb2.DiscoveryResponse(
            version_info=str(state.versions[type_url]),
            type_url=type_url,
            nonce=nonce,
            resources=[_pack(type_url, desired[n], c) for n, c in canon.items()],
        )
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        state.pending[nonce] = (future, type_url, canon)
        async with state.lock:
            try:
                await state.context.write(response)
            except Exception as exc:
                state.pending.pop(nonce, None)
                log.warning("write to %s failed: %s", state.name, exc)
                return None
        return future

    # ------------------------------------------------------------------ the stream

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> None:
        state: ProxyState | None = None
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                if state is None:
                    meta = json_format.MessageToDict(request.node.metadata)
                    state = self.proxy(str(meta.get("POD_NAME") or request.node.id))
                    state.context = context
                    state.subscribed = {}
                    state.acked = {t: {} for t in PUSH_ORDER}
                    state.connected.set()
                await self._on_request(state, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("xDS stream ended: %s", exc)
        finally:
            if state is not None and state.context is context:
                state.context = None
                state.connected.clear()
                for future, _, _ in state.pending.values():
                    if not future.done():
                        future.set_result(None)
                state.pending.clear()

    async def _on_request(self, state: ProxyState, request: discovery_pb2.DiscoveryRequest) -> None:
        type_url = request.type_url
        answered = request.response_nonce in state.pending
        if answered:
            future, sent_type, carried = state.pending.pop(request.response_nonce)
            if request.HasField("error_detail"):
                if not future.done():
                    future.set_result(request.error_detail.message or "rejected")
            else:
                if sent_type in WILDCARD_TYPES:
                    state.acked[sent_type] = dict(carried)
                else:
                    state.acked[sent_type].update(carried)
                if not future.done():
                    future.set_result(None)
        if type_url not in _MESSAGES:
            return
        names: set[str] | None = None if type_url in WILDCARD_TYPES else (set(request.resource_names) or None)
        previous = state.subscribed.get(type_url)
        state.subscribed[type_url] = names
        if answered:
            if names is not None and previous is not None and names - previous:
                # An ACK that also asks for more names: send just those.
                await self._send(state, type_url, only_changed=True)
            return
        # Not an answer to a response in flight: a first request, a reconnect, or a cluster re-warming and
        # asking again for names it had. Each needs the full current state for the names it asks for.
        if names is not None:
            for n in [n for n in state.acked[type_url] if n in names]:
                del state.acked[type_url][n]
        await self._send(state, type_url, only_changed=False)
