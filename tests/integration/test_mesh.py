"""The embedded mesh behaves as Istio does, measured on real Envoy sidecars (issue: embedded mesh)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.envoy.views import service_stats
from pytest_clover.errors import ConfigError, ConfigRejected
from pytest_clover.faults import clear_faults, inject_fault
from tests.helpers import BackgroundLoad, Client, binomial_interval, median, wait_for

from .conftest import access_log_ids, endpoint_ips

pytestmark = pytest.mark.integration

SERVER_CLUSTER = "outbound|9180||clover-server.default.svc.cluster.local"


def _logged(mesh: LocalBackend, pod: str, request_id: str) -> bool:
    return request_id in access_log_ids(mesh, pod)


def _endpoints_are(mesh: LocalBackend, caller: str, expected: set[str]) -> bool:
    return endpoint_ips(mesh, caller, SERVER_CLUSTER) == expected


def _more_than(count: Callable[[], int], threshold: int) -> bool:
    return bool(count() > threshold)


def _server_rule(traffic_policy: str) -> str:
    """The clover-server DestinationRule (subsets v1/v2) with the given trafficPolicy block."""
    return textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: clover-server}
        spec:
          host: clover-server
          trafficPolicy:
        %s
          subsets:
            - {name: v1, labels: {version: v1}}
            - {name: v2, labels: {version: v2}}
        """
    ) % textwrap.indent(textwrap.dedent(traffic_policy).strip(), "    ")


def _server_route(settings: str) -> str:
    """A clover-server VirtualService with one route to every pod, plus the given route settings."""
    return textwrap.dedent(
        f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: clover-server}}
        spec:
          hosts: [clover-server]
          http:
            - route: [{{destination: {{host: clover-server}}}}]
              {settings}
        """
    )


def _pod_of(hop: str) -> str:
    return hop.split("/")[0]


def test_request_travels_proxy_lb_server_with_one_request_id(sdc: LocalBackend, ingress: Client) -> None:
    reply = ingress.get(
        "/sdc/content", {"x-request-id": "clover-trace-0001", "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    )
    assert reply.status == 200, reply.body
    pods = [_pod_of(h) for h in reply.hops]
    assert [p.rsplit("-", 2)[0] for p in pods] == [
        "proxy-access-control",
        f"http-lb-{reply.hops[1].split('/')[1]}",
        pods[2].rsplit("-", 2)[0],
    ]
    assert pods[2].startswith("clover-server")
    gateway = next(p.name for p in sdc.pods("istio-ingressgateway"))
    # Every hop's sidecar logged the same request id (inbound and outbound legs).
    for pod in [gateway, *pods]:
        wait_for(partial(_logged, sdc, pod, "clover-trace-0001"), 5, what=f"request id in {pod}'s access log")

    def lb_entries() -> list[dict[str, Any]]:
        return [e for e in sdc.access_log(pods[1]) if e["request_id"] == "clover-trace-0001"]

    # The lb's outbound leg is logged before its inbound leg completes.
    wait_for(lambda: {e["direction"] for e in lb_entries()} == {"inbound", "outbound"}, 5, what="both lb legs logged")
    entries = lb_entries()
    outbound = next(e for e in entries if e["direction"] == "outbound")
    server = next(p for p in sdc.pods("clover-server") if p.name == pods[2])
    assert outbound["upstream_host"] == f"{server.ip}:{server.ports[9180]}"
    assert outbound["upstream_cluster"].startswith("outbound|9180|")
    assert outbound["traceparent"].startswith("00-" + "ab" * 16)


def test_virtual_service_split_80_20_is_inside_the_binomial_interval(sdc: LocalBackend, ingress: Client) -> None:
    sdc.apply(
        textwrap.dedent(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: http-lb}
            spec:
              hosts: [http-lb]
              http:
                - route:
                    - {destination: {host: http-lb, subset: v1}, weight: 80}
                    - {destination: {host: http-lb, subset: v2}, weight: 20}
            """
        )
    )
    replies = ingress.many(1200, "/split")
    assert all(r.status == 200 for r in replies)
    v1 = sum(1 for r in replies if r.hops[1].endswith("/v1"))
    low, high = binomial_interval(len(replies), 0.8)
    assert low <= v1 <= high, f"{v1} of {len(replies)} went to v1; 99.9 % interval for 80 % is {low:.0f}..{high:.0f}"


def test_delay_on_clover_server_adds_200ms_at_the_median(sdc: LocalBackend, ingress: Client) -> None:
    ingress.many(50)  # warm connections on every hop
    before = median(r.seconds for r in (ingress.get("/d") for _ in range(60)))
    inject_fault(sdc, "clover-server", delay="200ms", percent=100)
    replies = [ingress.get("/d") for _ in range(60)]
    assert all(r.status == 200 for r in replies)
    after = median(r.seconds for r in replies)
    added_ms = (after - before) * 1000
    assert abs(added_ms - 200) <= 0.02 * 200 + 2, f"median rose by {added_ms:.1f} ms (before {before * 1000:.1f} ms)"
    # The fault sits on the caller's outbound route: the lb sidecars count it, the server's inbound does not.
    lb_delays = service_stats(sdc, "http-lb").get("http.outbound.fault.delays_injected", 0)
    assert lb_delays >= 60
    assert service_stats(sdc, "clover-server").get("http.outbound.fault.delays_injected", 0) == 0


def test_abort_50_percent_error_rate_is_inside_the_binomial_interval(sdc: LocalBackend, ingress: Client) -> None:
    inject_fault(sdc, "clover-server", abort_status=503, percent=50)
    replies = ingress.many(1000, "/a")
    errors = sum(1 for r in replies if r.status == 503)
    assert errors + sum(1 for r in replies if r.status == 200) == len(replies)
    low, high = binomial_interval(len(replies), 0.5)
    assert low <= errors <= high, (
        f"{errors} of {len(replies)} aborted; 99.9 % interval for 50 % is {low:.0f}..{high:.0f}"
    )
    # Aborts are not retried (Istio semantics): the lb sidecars injected exactly as many as failed.
    assert service_stats(sdc, "http-lb")["http.outbound.fault.aborts_injected"] >= errors


def test_header_scoped_fault_hits_only_matching_requests(sdc: LocalBackend, ingress: Client) -> None:
    inject_fault(sdc, "clover-server", abort_status=503, percent=100, headers={"end-user": "jason"})
    jason = ingress.many(100, "/h", {"end-user": "jason"})
    others = ingress.many(100, "/h", {"end-user": "maria"})
    anonymous = ingress.many(50, "/h")
    assert {r.status for r in jason} == {503}
    assert {r.status for r in others} == {200}
    assert {r.status for r in anonymous} == {200}


def test_removing_a_fault_takes_effect_for_the_next_request(sdc: LocalBackend, ingress: Client) -> None:
    inject_fault(sdc, "clover-server", abort_status=503, percent=100)
    assert ingress.get("/r").status == 503
    clear_faults(sdc)
    assert ingress.get("/r").status == 200  # the very next request, on the same keep-alive connections
    inject_fault(sdc, "clover-server", delay="300ms", percent=100)
    assert ingress.get("/r").seconds >= 0.3
    clear_faults(sdc)
    assert ingress.get("/r").seconds < 0.3


def test_outlier_detection_ejects_a_failing_server_pod(sdc: LocalBackend, ingress: Client, pod_client: Any) -> None:
    sdc.apply(
        _server_rule(
            "outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}"
        )
    )
    bad = sorted(sdc.pods("clover-server"), key=lambda p: p.name)[0]
    pod_client(bad).put_json("/clover/control", {"error_rate": 1.0})
    first = ingress.many(200, "/o", workers=4)
    assert any(r.status == 503 for r in first), "the bad pod never answered: the test did not exercise it"
    stats = service_stats(sdc, "http-lb")
    assert stats[f"cluster.{SERVER_CLUSTER}.outlier_detection.ejections_enforced_consecutive_5xx"] >= 1
    assert stats[f"cluster.{SERVER_CLUSTER}.outlier_detection.ejections_active"] >= 1
    after = ingress.many(300, "/o", workers=4)
    assert all(r.status == 200 for r in after), f"{sum(r.status != 200 for r in after)} errors after ejection"
    assert not any(bad.name in r.headers.get("x-clover-hops", "") for r in after)


def test_connection_pool_limit_overflows_fast_with_503_uo(sdc: LocalBackend, ingress: Client, pod_client: Any) -> None:
    counter = f"cluster.{SERVER_CLUSTER}.upstream_rq_pending_overflow"
    overflows_before = service_stats(sdc, "http-lb").get(counter, 0)
    sdc.apply(
        _server_rule(
            """
            connectionPool:
              tcp: {maxConnections: 1}
              http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
            """
        )
    )
    for pod in sdc.pods("clover-server"):
        pod_client(pod).put_json("/clover/control", {"latency_ms": 400})
    replies = ingress.many(16, "/cb", workers=16)
    overflowed = [r for r in replies if r.status == 503]
    assert overflowed, "no request overflowed the connection pool"
    assert any(r.status == 200 for r in replies)
    assert max(r.seconds for r in overflowed) < 0.3, "overflow should be fast, not queued behind the slow server"
    # Every 503 is the lb sidecar's overflow (flag UO on its call to clover-server), not an error of the server's.
    ids = {r.request_id for r in overflowed}

    def lb_calls() -> dict[str, str] | None:
        calls = {
            e["request_id"]: e["response_flags"]
            for pod in sdc.pods("http-lb")
            for e in sdc.access_log(pod.name)
            if e["direction"] == "outbound" and e["request_id"] in ids
        }
        return calls if len(calls) == len(ids) else None

    flags = wait_for(lb_calls, 5, what="the lb sidecars' access-log entries of the 503s")
    assert set(flags.values()) == {"UO"}, flags
    # ...and Envoy counted each one as a pending-queue overflow.
    overflows = service_stats(sdc, "http-lb").get(counter, 0) - overflows_before
    assert overflows == len(overflowed), f"{overflows} pending overflows counted for {len(overflowed)} 503s"


def test_killed_pod_is_replaced_under_a_new_name_and_endpoints_follow(sdc: LocalBackend, ingress: Client) -> None:
    lb = sdc.pods("http-lb")[0].name
    before = {p.name: p for p in sdc.pods("clover-server")}
    with BackgroundLoad(ingress, workers=2) as load:
        wait_for(lambda: load.count() > 20, 10, what="traffic before the kill")
        killed = sdc.kill("clover-server", count=1)
        assert len(killed) == 1 and killed[0] in before
        sdc.wait_ready(30)
        seen = load.count()
        wait_for(lambda: load.count() > seen + 50, 20, what="traffic after the replacement")
    after = {p.name: p for p in sdc.pods("clover-server")}
    assert killed[0] not in after
    new = set(after) - set(before)
    assert len(new) == 1 and len(after) == len(before)
    ips = endpoint_ips(sdc, lb, SERVER_CLUSTER)
    assert ips == {p.ip for p in after.values()}
    assert before[killed[0]].ip not in ips or before[killed[0]].ip == after[next(iter(new))].ip
    assert load.errors == []
    # Traffic reached the replacement.
    replies = ingress.many(200, "/k")
    assert any(next(iter(new)) in r.headers.get("x-clover-hops", "") for r in replies)


def test_scaling_3_5_1_updates_endpoints_without_errors(sdc: LocalBackend, ingress: Client) -> None:
    lb = sdc.pods("http-lb")[0].name
    with BackgroundLoad(ingress, workers=3) as load:
        for replicas in (5, 1, 3):
            sdc.scale("clover-server", replicas)
            pods = [p for p in sdc.pods("clover-server") if p.deployment == "clover-server"]
            assert len(pods) == replicas and all(p.ready for p in pods)
            expected = {p.ip for p in sdc.pods("clover-server")}
            wait_for(partial(_endpoints_are, sdc, lb, expected), 5, what="endpoints")
            seen = load.count()
            wait_for(partial(_more_than, load.count, seen + 30), 20, what="traffic at this size")
    bad = [r for r in load.replies if r.status != 200]
    assert load.errors == [] and not bad, f"{len(bad)} errors while scaling, e.g. {bad[:1]}"


def test_ids_receives_mirrored_copies_and_counts_alerts(sdc: LocalBackend, ingress: Client, pod_client: Any) -> None:
    ids = pod_client(sdc.pods("snort-ids")[0])
    start = ids.get("/clover/alerts").json()
    for _ in range(20):
        assert ingress.get("/welcome").status == 200
    wait_for(
        lambda: ids.get("/clover/alerts").json()["inspected"] >= start["inspected"] + 20, 5, what="mirrored copies"
    )
    assert ids.get("/clover/alerts").json()["total"] == start["total"]
    attack = ingress.get("/files/../../etc/passwd", {"user-agent": "asafaweb.com scanner"})
    assert attack.status in (200, 404)
    alerts = wait_for(
        lambda: (a := ids.get("/clover/alerts").json())["total"] > start["total"] and a, 5, what="an alert"
    )
    assert alerts["by_sid"].get("10000003", 0) >= 1  # Clover's ASafaWeb user-agent rule
    assert any(a["request_id"] == attack.request_id for a in alerts["recent"])


def test_configuration_envoy_rejects_is_a_loud_error_and_the_mesh_keeps_working(
    sdc: LocalBackend, ingress: Client
) -> None:
    # A valid regex whose compiled RE2 program (44005) exceeds Istio's limit (32768): only Envoy can judge that.
    bad = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: clover-server}
        spec:
          hosts: [clover-server]
          http:
            - match: [{uri: {regex: "/(alpha|bravo|charlie|delta|echo|foxtrot|golf|hotel){1000}"}}]
              route: [{destination: {host: clover-server}}]
            - route: [{destination: {host: clover-server}}]
        """
    )
    with pytest.raises(ConfigRejected, match="rejected"):
        sdc.apply(bad)
    assert all(o["metadata"]["name"] != "clover-server" or o["kind"] != "VirtualService" for o in sdc.istio_objects())
    assert ingress.get("/still-ok").status == 200


def test_invalid_istio_yaml_is_refused_before_touching_envoy(sdc: LocalBackend) -> None:
    with pytest.raises(ConfigError) as info:
        sdc.apply(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [x], http: [{route: [{destination: {host: clover-server}}], timeout: 5 seconds}]}\n",
            source="bad.yaml",
        )
    assert "bad.yaml: VirtualService/x: spec.http[0].timeout" in str(info.value)


def test_route_retries_on_5xx_mask_a_failing_pod_but_istio_default_does_not(
    sdc: LocalBackend, ingress: Client, pod_client: Any
) -> None:
    bad = sorted(sdc.pods("clover-server"), key=lambda p: p.name)[0]
    pod_client(bad).put_json("/clover/control", {"error_rate": 1.0})
    # Istio's default policy (no retries in the VirtualService) does not retry an application 503.
    default = ingress.many(200, "/retry", workers=4)
    assert any(r.status == 503 for r in default), (
        "with Istio's default retry policy the bad pod's 503s reach the client"
    )
    sdc.apply(_server_route("retries: {attempts: 3, retryOn: 5xx}"))
    retried = ingress.many(200, "/retry", workers=4)
    assert all(r.status == 200 for r in retried), f"{sum(r.status != 200 for r in retried)} errors despite retries"
    assert service_stats(sdc, "http-lb")[f"cluster.{SERVER_CLUSTER}.upstream_rq_retry_success"] >= 1


def test_virtual_service_timeout_turns_a_slow_server_into_a_fast_504(
    sdc: LocalBackend, ingress: Client, pod_client: Any
) -> None:
    for pod in sdc.pods("clover-server"):
        pod_client(pod).put_json("/clover/control", {"latency_ms": 800})
    sdc.apply(_server_route("timeout: 200ms"))
    reply = ingress.get("/slow")
    assert reply.status == 504 and 0.2 <= reply.seconds < 0.6, (reply.status, reply.seconds)
    lb = _pod_of(reply.hops[1])
    wait_for(
        lambda: any(e["response_flags"] == "UT" and e["request_id"] == reply.request_id for e in sdc.access_log(lb)),
        5,
        what="UT (upstream timeout) in the lb sidecar's access log",
    )


def test_a_crashed_container_restarts_in_place(sdc: LocalBackend, ingress: Client) -> None:
    import json
    import os
    import signal

    pod = sorted(sdc.pods("clover-server"), key=lambda p: p.name)[0]
    records = json.loads((sdc.state.pids_file).read_text())
    app_pid = next(r["pid"] for r in records if r["pod"] == pod.name and r["role"] == "app")
    os.kill(app_pid, signal.SIGKILL)  # the application dies on its own: no kill through the mesh
    again = wait_for(
        lambda: next(
            (p for p in sdc.pods("clover-server") if p.name == pod.name and p.restarts == 1 and p.ready), None
        ),
        15,
        what="the same pod back, ready, with one restart",
    )
    assert again is not None and again.ip == pod.ip and len(sdc.pods("clover-server")) == 4
    assert all(r.status == 200 for r in ingress.many(50, "/crash"))


def test_kill_by_percent_and_with_a_grace_period(sdc: LocalBackend) -> None:
    before = {p.name for p in sdc.pods("clover-server")}
    killed = sdc.kill("clover-server", percent=50)
    assert len(killed) == 2 and set(killed) <= before
    sdc.wait_ready(30)
    after = {p.name for p in sdc.pods("clover-server")}
    assert len(after) == 4 and not (after & set(killed))
    # With a grace period the pod is Terminating (out of the endpoints) until its process exits.
    victim = sdc.kill("clover-server", count=1, grace=5.0)[0]
    state = {p.name: p for p in sdc.pods("clover-server")}
    assert victim not in state or (state[victim].phase == "Terminating" and not state[victim].ready)
    sdc.wait_ready(30)
    assert victim not in {p.name for p in sdc.pods("clover-server")}
