"""Istio semantics in the Envoy output of ``pytest_clover.backends.local.translate``, and every rendered config passes
``envoy --mode validate``.

The expected values come from /work/shared/reference/istio-envoy.md (sections 2.x, 6.4 and 7): what
istiod emits for the same VirtualService / DestinationRule.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_clover.backends.local.envoy import envoy_binary
from pytest_clover.backends.local.render import static_bootstrap as _project_static_bootstrap
from pytest_clover.backends.local.translate import (
    MAX_UINT32,
    Endpoint,
    InboundPort,
    ProxySpec,
    eds_file_name,
    render_bootstrap,
    render_resources,
)
from pytest_clover.envoy.access_log import FORMAT as ACCESS_LOG_FORMAT
from pytest_clover.envoy.views import FAULT_FILTER
from pytest_clover.istio import Topology, load_topology, parse_documents, parse_text, validate

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "istio-samples"
BOOKINFO_SERVICES = SAMPLES / "bookinfo-services.yaml"
FQDN = "{}.default.svc.cluster.local"
REVIEWS = FQDN.format("reviews")
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: productpage}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""

REVIEWS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: sdc-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def topo(tmp_path: Path) -> Callable[..., Topology]:
    """``topo(yaml_text, ...)``: the services above plus the given documents, loaded as a topology."""
    counter = iter(range(1000))

    def build(*texts: str, services: bool = True) -> Topology:
        path = tmp_path / f"topology-{next(counter)}.yaml"
        parts = ([SERVICES] if services else []) + [t.strip("\n") for t in texts]
        path.write_text("\n---\n".join(parts) + "\n", encoding="utf-8")
        return load_topology(path)

    return build


def make_spec(**fields: Any) -> ProxySpec:
    """A ProxySpec from the fields it has (``xds_dir`` went away when xDS moved from files to ADS)."""
    known = {f.name for f in dataclasses.fields(ProxySpec)}
    return ProxySpec(**{k: v for k, v in fields.items() if k in known})


def sidecar(tmp_path: Path, labels: dict[str, str] | None = None, name: str = "productpage-v1-0") -> ProxySpec:
    return make_spec(
        name=name,
        namespace="default",
        kind="sidecar",
        ip="127.0.0.2",
        admin_port=15000,
        labels=labels if labels is not None else {"app": "productpage", "version": "v1"},
        xds_dir=str(tmp_path / name / "xds"),
        access_log=str(tmp_path / f"{name}.access.log"),
        outbound_port=15001,
        inbound=(InboundPort(9080, 9080, 20001),),
    )


def gateway_spec(tmp_path: Path) -> ProxySpec:
    return make_spec(
        name="istio-ingressgateway-0",
        namespace="default",
        kind="gateway",
        ip="127.0.0.3",
        admin_port=15000,
        labels={"istio": "ingressgateway"},
        xds_dir=str(tmp_path / "gw" / "xds"),
        access_log=str(tmp_path / "gw.access.log"),
        gateway_ports={80: 8080},
    )


ENDPOINTS: dict[tuple[str, int], list[Endpoint]] = {
    ("productpage", 9080): [Endpoint("productpage-v1-0", "127.0.0.2", 9080, {"app": "productpage", "version": "v1"})],
    ("reviews", 9080): [
        Endpoint("reviews-v1-0", "127.0.0.4", 9080, {"app": "reviews", "version": "v1"}),
        Endpoint("reviews-v2-0", "127.0.0.5", 9080, {"app": "reviews", "version": "v2"}),
        Endpoint("reviews-v2-1", "127.0.0.6", 9080, {"app": "reviews", "version": "v2"}),
        Endpoint("reviews-v3-0", "127.0.0.7", 9080, {"app": "reviews", "version": "v3"}),
    ],
    ("ratings", 9080): [Endpoint("ratings-v1-0", "127.0.0.8", 9080, {"app": "ratings", "version": "v1"})],
}


def render(t: Topology, proxy: ProxySpec) -> dict[str, dict[str, Any]]:
    files = render_resources(t, ENDPOINTS, proxy)
    # Rendered documents are JSON (the writer dumps them): a round trip proves it and detaches them.
    detached: dict[str, dict[str, Any]] = json.loads(json.dumps(files))
    return detached


def resources(files: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = files[name]["resources"]
    return found


def vhost(
    files: dict[str, dict[str, Any]], fqdn: str, port: int = 9080, rds: str = "rds_outbound.json"
) -> dict[str, Any]:
    (rc,) = resources(files, rds)
    found = [v for v in rc["virtual_hosts"] if v["name"] == f"{fqdn}:{port}"]
    assert len(found) == 1, [v["name"] for v in rc["virtual_hosts"]]
    first: dict[str, Any] = found[0]
    return first


def routes_for(files: dict[str, dict[str, Any]], host: str = REVIEWS) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = vhost(files, host)["routes"]
    return routes


def only_route(files: dict[str, dict[str, Any]], host: str = REVIEWS) -> dict[str, Any]:
    routes = routes_for(files, host)
    assert len(routes) == 1, routes
    return routes[0]


def cluster(files: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    found = [c for c in resources(files, "cds.json") if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in resources(files, "cds.json")]
    return found[0]


def eds_pods(files: dict[str, dict[str, Any]], cluster_name: str) -> list[str]:
    (cla,) = resources(files, eds_file_name(cluster_name))
    assert cla["cluster_name"] == cluster_name
    return [lb["endpoint"]["hostname"] for group in cla["endpoints"] for lb in group["lb_endpoints"]]


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def vs(body: str, name: str = "reviews", hosts: str = "[reviews]", extra: str = "") -> str:
    """A VirtualService document; ``body`` is its ``http:`` list, indented by two spaces."""
    return f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: {hosts}\n{extra}  http:\n{body}"


def dr(body: str, name: str = "reviews", host: str = "reviews") -> str:
    return f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n{body}"


TO_REVIEWS = "    route: [{destination: {host: reviews}}]\n"


def one_route(fields: str) -> str:
    """One http route to reviews with extra fields (YAML lines indented by four spaces)."""
    return "  - route: [{destination: {host: reviews}}]\n" + fields


# --------------------------------------------------------------------------- defaults (no VirtualService)


def test_default_route_without_virtual_service(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(), sidecar(tmp_path))
    route = only_route(files)
    assert route["match"] == {"prefix": "/"}
    action = route["route"]
    assert action["cluster"] == f"outbound|9080||{REVIEWS}"
    assert action["timeout"] == "0s"
    policy = action["retry_policy"]
    assert policy["retry_on"] == ISTIO_DEFAULT_RETRY_ON
    assert policy["num_retries"] == 2
    assert [p["name"] for p in policy["retry_host_predicate"]] == ["envoy.retry_host_predicates.previous_hosts"]
    assert policy["retry_host_predicate"][0]["typed_config"]["@type"].endswith("PreviousHostsPredicate")
    assert int(policy["host_selection_retry_max_attempts"]) == 5
    # Istio >= 1.24: an application's 503 is not retried by default.
    assert "retriable_status_codes" not in policy
    assert "typed_per_filter_config" not in route


def test_virtual_host_domains_cover_istio_host_forms(topo: Callable[..., Topology], tmp_path: Path) -> None:
    domains = vhost(render(topo(), sidecar(tmp_path)), REVIEWS)["domains"]
    for host in ("reviews", "reviews.default", "reviews.default.svc", REVIEWS):
        assert host in domains and f"{host}:9080" in domains


def test_default_cluster_settings(topo: Callable[..., Topology], tmp_path: Path) -> None:
    c = cluster(render(topo(), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")
    assert c["type"] == "EDS"
    assert c["lb_policy"] == "LEAST_REQUEST"  # Istio's default, not Envoy's ROUND_ROBIN
    assert seconds(c["connect_timeout"]) == 10.0  # mesh connectTimeout default
    (threshold,) = c["circuit_breakers"]["thresholds"]
    for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
        assert threshold[key] == MAX_UINT32 == 4294967295, key
    assert "outlier_detection" not in c


# --------------------------------------------------------------------------- timeout and retries


def test_timeout_sets_route_timeout(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(vs(one_route("    timeout: 1.5s\n"))), sidecar(tmp_path))
    assert seconds(only_route(files)["route"]["timeout"]) == 1.5


def test_virtual_service_route_without_timeout_has_timeout_disabled(
    topo: Callable[..., Topology], tmp_path: Path
) -> None:
    # Istio emits 0s (no timeout); Envoy's own default would be 15s.
    text = vs(
        "  - match: [{uri: {prefix: /a}}]\n"
        + TO_REVIEWS
        + "  - route: [{destination: {host: reviews}, weight: 50}, {destination: {host: ratings}, weight: 50}]\n"
    )
    assert [r["route"]["timeout"] for r in routes_for(render(topo(text), sidecar(tmp_path)))] == ["0s", "0s"]


def _grpc_timeout_cap(action: dict[str, Any]) -> str | None:
    cap = action.get("max_grpc_timeout") or action.get("max_stream_duration", {}).get("grpc_timeout_header_max")
    return None if cap is None else str(cap)


def test_timeout_also_caps_grpc_timeout_header(topo: Callable[..., Topology], tmp_path: Path) -> None:
    # istiod: max_grpc_timeout (now max_stream_duration.grpc_timeout_header_max) = the VS timeout, 0s when unset.
    action = only_route(render(topo(vs(one_route("    timeout: 2s\n"))), sidecar(tmp_path)))["route"]
    cap = _grpc_timeout_cap(action)
    assert cap is not None and seconds(cap) == 2.0
    default = only_route(render(topo(vs(one_route(""))), sidecar(tmp_path)))["route"]
    cap = _grpc_timeout_cap(default)
    assert cap is not None and seconds(cap) == 0.0


def test_retries_attempts_zero_means_no_retry_policy(topo: Callable[..., Topology], tmp_path: Path) -> None:
    action = only_route(render(topo(vs(one_route("    retries: {attempts: 0}\n"))), sidecar(tmp_path)))["route"]
    assert "retry_policy" not in action


def test_retry_on_status_codes_move_to_retriable_status_codes(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(
        topo(vs(one_route('    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "503,5xx"}\n'))), sidecar(tmp_path)
    )
    policy = only_route(files)["route"]["retry_policy"]
    assert policy["num_retries"] == 3
    assert policy["retriable_status_codes"] == [503]
    conditions = policy["retry_on"].split(",")
    assert "retriable-status-codes" in conditions and "5xx" in conditions and "503" not in conditions
    assert seconds(policy["per_try_timeout"]) == 2.0


def test_retries_without_retry_on_use_istio_conditions(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(vs(one_route("    retries: {attempts: 5}\n"))), sidecar(tmp_path))
    policy = only_route(files)["route"]["retry_policy"]
    assert (policy["retry_on"], policy["num_retries"]) == (ISTIO_DEFAULT_RETRY_ON, 5)
    assert "retriable_status_codes" not in policy


def test_retry_ignore_previous_hosts_false_drops_predicate(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(
        topo(vs(one_route("    retries: {attempts: 2, retryIgnorePreviousHosts: false}\n"))), sidecar(tmp_path)
    )
    policy = only_route(files)["route"]["retry_policy"]
    assert "retry_host_predicate" not in policy


# --------------------------------------------------------------------------- faults


def fault_of(route: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = route["typed_per_filter_config"][FAULT_FILTER]
    assert cfg["@type"] == "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    return cfg


def test_fault_delay_percentage_is_truncated_per_million(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(
        topo(vs(one_route("    fault: {delay: {fixedDelay: 2s, percentage: {value: 0.57}}}\n"))), sidecar(tmp_path)
    )
    delay = fault_of(only_route(files))["delay"]
    assert seconds(delay["fixed_delay"]) == 2.0
    assert delay["percentage"] == {"numerator": 5699, "denominator": "MILLION"}


def test_fault_deprecated_percent_is_per_hundred(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(vs(one_route("    fault: {delay: {fixedDelay: 5s, percent: 50}}\n"))), sidecar(tmp_path))
    assert fault_of(only_route(files))["delay"]["percentage"] == {"numerator": 50, "denominator": "HUNDRED"}


def test_fault_delay_without_any_percentage_is_zero(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(vs(one_route("    fault: {delay: {fixedDelay: 5s}}\n"))), sidecar(tmp_path))
    assert fault_of(only_route(files))["delay"]["percentage"] == {"numerator": 0, "denominator": "HUNDRED"}


def test_fault_abort_without_percentage_has_no_percentage(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(vs(one_route("    fault: {abort: {httpStatus: 503}}\n"))), sidecar(tmp_path))
    abort = fault_of(only_route(files))["abort"]
    assert abort == {"http_status": 503}
    assert "percentage" not in abort


def test_fault_abort_grpc_status_by_number(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(
        topo(vs(one_route("    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 33.3}}}\n"))),
        sidecar(tmp_path),
    )
    abort = fault_of(only_route(files))["abort"]
    assert abort["grpc_status"] == 14
    assert "http_status" not in abort
    assert abort["percentage"] == {"numerator": 333000, "denominator": "MILLION"}


def test_fault_keeps_retry_policy_and_timeout(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(one_route("    timeout: 1s\n    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"))
    route = only_route(render(topo(text), sidecar(tmp_path)))
    assert fault_of(route)["abort"]["percentage"] == {"numerator": 1000000, "denominator": "MILLION"}
    assert seconds(route["route"]["timeout"]) == 1.0
    assert route["route"]["retry_policy"]["retry_on"] == ISTIO_DEFAULT_RETRY_ON


def _hcm(listener: dict[str, Any]) -> dict[str, Any]:
    (chain,) = listener["filter_chains"]
    (f,) = chain["filters"]
    config: dict[str, Any] = f["typed_config"]
    return config


def test_fault_is_on_the_callers_outbound_route_not_inbound(topo: Callable[..., Topology], tmp_path: Path) -> None:
    # The reviews pod's own sidecar: its inbound listener must not fault; its outbound routes (as a caller) do.
    text = vs(one_route("    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"))
    files = render(topo(text), sidecar(tmp_path, {"app": "reviews", "version": "v1"}, name="reviews-v1-0"))
    assert FAULT_FILTER in only_route(files)["typed_per_filter_config"]
    listeners = {entry["name"]: entry for entry in resources(files, "lds.json")}
    inbound = _hcm(listeners["inbound|9080"])
    assert FAULT_FILTER not in [f["name"] for f in inbound["http_filters"]]
    assert "typed_per_filter_config" not in json.dumps(inbound)
    outbound = _hcm(listeners["virtualOutbound"])
    names = [f["name"] for f in outbound["http_filters"]]
    assert names.index(FAULT_FILTER) < names.index("envoy.filters.http.router") == len(names) - 1
    # The installed fault filter is empty: all behaviour comes from the per-route config.
    assert outbound["http_filters"][names.index(FAULT_FILTER)]["typed_config"].keys() == {"@type"}


# --------------------------------------------------------------------------- destinations, weights, subsets


def test_weighted_split_uses_subset_clusters(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - route:\n"
        "    - {destination: {host: reviews, subset: v1}, weight: 80}\n"
        "    - {destination: {host: reviews, subset: v2}, weight: 20}\n"
    )
    action = only_route(render(topo(text, REVIEWS_DR), sidecar(tmp_path)))["route"]
    assert "cluster" not in action
    assert action["weighted_clusters"]["clusters"] == [
        {"name": f"outbound|9080|v1|{REVIEWS}", "weight": 80},
        {"name": f"outbound|9080|v2|{REVIEWS}", "weight": 20},
    ]
    assert "total_weight" not in action["weighted_clusters"]


def test_weight_zero_destination_is_dropped(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - route:\n"
        "    - {destination: {host: reviews, subset: v1}, weight: 0}\n"
        "    - {destination: {host: reviews, subset: v2}, weight: 50}\n"
        "    - {destination: {host: reviews, subset: v3}, weight: 50}\n"
    )
    clusters = only_route(render(topo(text, REVIEWS_DR), sidecar(tmp_path)))["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == [f"outbound|9080|v2|{REVIEWS}", f"outbound|9080|v3|{REVIEWS}"]


def test_single_destination_ignores_weight(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs("  - route:\n    - {destination: {host: reviews, subset: v3}, weight: 30}\n")
    action = only_route(render(topo(text, REVIEWS_DR), sidecar(tmp_path)))["route"]
    assert action["cluster"] == f"outbound|9080|v3|{REVIEWS}"
    assert "weighted_clusters" not in action


def test_destination_by_fqdn_and_port(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(f"  - route: [{{destination: {{host: {REVIEWS}, port: {{number: 9080}}}}}}]\n", hosts=f"[{REVIEWS}]")
    assert only_route(render(topo(text), sidecar(tmp_path)))["route"]["cluster"] == f"outbound|9080||{REVIEWS}"


def test_subsets_get_clusters_with_label_filtered_endpoints(topo: Callable[..., Topology], tmp_path: Path) -> None:
    files = render(topo(REVIEWS_DR), sidecar(tmp_path))
    names = [c["name"] for c in resources(files, "cds.json")]
    for subset in ("", "v1", "v2", "v3"):
        assert f"outbound|9080|{subset}|{REVIEWS}" in names
    assert eds_pods(files, f"outbound|9080||{REVIEWS}") == [
        "reviews-v1-0",
        "reviews-v2-0",
        "reviews-v2-1",
        "reviews-v3-0",
    ]
    assert eds_pods(files, f"outbound|9080|v1|{REVIEWS}") == ["reviews-v1-0"]
    assert eds_pods(files, f"outbound|9080|v2|{REVIEWS}") == ["reviews-v2-0", "reviews-v2-1"]
    assert eds_pods(files, f"outbound|9080|v3|{REVIEWS}") == ["reviews-v3-0"]
    # The subset cluster asks for its own endpoints.
    c = cluster(files, f"outbound|9080|v2|{REVIEWS}")
    assert c["eds_cluster_config"]["service_name"] == f"outbound|9080|v2|{REVIEWS}"


def test_subset_with_no_matching_pods_has_no_endpoints(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr("  subsets:\n  - {name: v9, labels: {version: v9}}\n")
    assert eds_pods(render(topo(text), sidecar(tmp_path)), f"outbound|9080|v9|{REVIEWS}") == []


def test_route_to_undefined_subset_points_at_missing_cluster(topo: Callable[..., Topology], tmp_path: Path) -> None:
    # As on a cluster: the route names a cluster that does not exist, so Envoy answers 503 NC.
    files = render(topo(vs("  - route: [{destination: {host: reviews, subset: v7}}]\n")), sidecar(tmp_path))
    assert only_route(files)["route"]["cluster"] == f"outbound|9080|v7|{REVIEWS}"
    assert f"outbound|9080|v7|{REVIEWS}" not in [c["name"] for c in resources(files, "cds.json")]
    (rc,) = resources(files, "rds_outbound.json")
    assert rc["validate_clusters"] is False


# --------------------------------------------------------------------------- DestinationRule traffic policy


def test_connection_pool_sets_circuit_breakers(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr(
        "  trafficPolicy:\n"
        "    connectionPool:\n"
        "      tcp: {maxConnections: 1, connectTimeout: 250ms}\n"
        "      http: {http1MaxPendingRequests: 2, http2MaxRequests: 3, maxRetries: 4, maxRequestsPerConnection: 1}\n"
    )
    c = cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")
    (threshold,) = c["circuit_breakers"]["thresholds"]
    assert (
        threshold["max_connections"],
        threshold["max_pending_requests"],
        threshold["max_requests"],
        threshold["max_retries"],
    ) == (1, 2, 3, 4)
    assert seconds(c["connect_timeout"]) == 0.25
    options = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["common_http_protocol_options"]["max_requests_per_connection"] == 1


def test_connection_pool_unset_fields_stay_max_uint32(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr("  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 7}\n")
    (threshold,) = cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")["circuit_breakers"][
        "thresholds"
    ]
    assert threshold["max_connections"] == 7
    assert threshold["max_pending_requests"] == threshold["max_requests"] == threshold["max_retries"] == 4294967295


def test_outlier_detection_istio_defaults(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr(
        "  trafficPolicy:\n"
        "    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}\n"
    )
    c = cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")
    od = c["outlier_detection"]
    assert od["consecutive_5xx"] == 3
    assert od["enforcing_consecutive_5xx"] == 100
    assert od["enforcing_success_rate"] == 0
    assert od["max_ejection_percent"] == 100
    assert seconds(od["interval"]) == 1.0
    assert seconds(od["base_ejection_time"]) == 180.0
    # Panic mode off: minHealthPercent defaults to 0.
    assert c["common_lb_config"]["healthy_panic_threshold"]["value"] == 0


def test_outlier_gateway_errors_are_enforced(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr("  trafficPolicy:\n    outlierDetection: {consecutiveGatewayErrors: 2, consecutive5xxErrors: 0}\n")
    od = cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")["outlier_detection"]
    assert (od["consecutive_gateway_failure"], od["enforcing_consecutive_gateway_failure"]) == (2, 100)
    assert (od["consecutive_5xx"], od["enforcing_consecutive_5xx"]) == (0, 0)
    assert "max_ejection_percent" not in od  # only when > 0: Envoy's default (10) applies


def test_subset_traffic_policy_block_replaces_dr_block_whole(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr(
        "  trafficPolicy:\n"
        "    loadBalancer: {simple: ROUND_ROBIN}\n"
        "    connectionPool:\n"
        "      tcp: {maxConnections: 10}\n"
        "      http: {http1MaxPendingRequests: 5}\n"
        "    outlierDetection: {consecutive5xxErrors: 4}\n"
        "  subsets:\n"
        "  - name: v1\n"
        "    labels: {version: v1}\n"
        "  - name: v2\n"
        "    labels: {version: v2}\n"
        "    trafficPolicy:\n"
        "      connectionPool:\n"
        "        http: {http2MaxRequests: 7}\n"
    )
    files = render(topo(text), sidecar(tmp_path))
    (base,) = cluster(files, f"outbound|9080||{REVIEWS}")["circuit_breakers"]["thresholds"]
    assert (base["max_connections"], base["max_pending_requests"], base["max_requests"]) == (10, 5, MAX_UINT32)
    v1 = cluster(files, f"outbound|9080|v1|{REVIEWS}")
    (t1,) = v1["circuit_breakers"]["thresholds"]
    assert (t1["max_connections"], t1["max_pending_requests"]) == (10, 5)  # no subset policy: the DR's
    v2 = cluster(files, f"outbound|9080|v2|{REVIEWS}")
    (t2,) = v2["circuit_breakers"]["thresholds"]
    # The subset's connectionPool replaces the DR's whole: tcp.maxConnections and http1MaxPendingRequests are not inherited.
    assert (t2["max_connections"], t2["max_pending_requests"], t2["max_requests"]) == (MAX_UINT32, MAX_UINT32, 7)
    # Blocks the subset does not set still come from the DR.
    assert v2["lb_policy"] == "ROUND_ROBIN"
    assert v2["outlier_detection"]["consecutive_5xx"] == 4


@pytest.mark.parametrize(
    ("simple", "lb_policy"),
    [
        (None, "LEAST_REQUEST"),
        ("ROUND_ROBIN", "ROUND_ROBIN"),
        ("RANDOM", "RANDOM"),
        ("LEAST_REQUEST", "LEAST_REQUEST"),
        ("LEAST_CONN", "LEAST_REQUEST"),
    ],
)
def test_load_balancer_policy(
    topo: Callable[..., Topology], tmp_path: Path, simple: str | None, lb_policy: str
) -> None:
    text = dr(f"  trafficPolicy:\n    loadBalancer: {{simple: {simple}}}\n") if simple else dr("  subsets: []\n")
    assert cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")["lb_policy"] == lb_policy


def test_port_level_settings_replace_all_blocks(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = dr(
        "  trafficPolicy:\n"
        "    loadBalancer: {simple: ROUND_ROBIN}\n"
        "    connectionPool: {tcp: {maxConnections: 10}}\n"
        "    portLevelSettings:\n"
        "    - port: {number: 9080}\n"
        "      connectionPool: {http: {http2MaxRequests: 3}}\n"
    )
    c = cluster(render(topo(text), sidecar(tmp_path)), f"outbound|9080||{REVIEWS}")
    (t,) = c["circuit_breakers"]["thresholds"]
    assert (t["max_connections"], t["max_requests"]) == (MAX_UINT32, 3)
    assert c["lb_policy"] == "LEAST_REQUEST"  # omitted at port level: the default, not the DR's


# --------------------------------------------------------------------------- matches


def test_header_and_uri_matches(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - name: exact\n"
        "    match: [{uri: {exact: /reviews/1}, headers: {end-user: {exact: jason}}}]\n"
        + TO_REVIEWS
        + "  - name: prefix\n"
        "    match: [{uri: {prefix: /api}, ignoreUriCase: true, headers: {x-group: {prefix: beta}}}]\n"
        + TO_REVIEWS
        + "  - name: regex\n"
        "    match: [{uri: {regex: '/re/[0-9]+'}, headers: {x-id: {regex: '[a-f]+'}}}]\n"
        + TO_REVIEWS
        + "  - name: present\n"
        "    match: [{headers: {x-canary: {}, x-any: {regex: '*'}}}]\n" + TO_REVIEWS
    )
    routes = {r["name"]: r["match"] for r in routes_for(render(topo(text), sidecar(tmp_path)))}
    assert list(routes) == ["exact", "prefix", "regex", "present"]  # order kept: the first match wins
    assert routes["exact"] == {
        "path": "/reviews/1",
        "case_sensitive": True,
        "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}],
    }
    assert routes["prefix"]["prefix"] == "/api"
    assert routes["prefix"]["case_sensitive"] is False
    assert routes["prefix"]["headers"] == [{"name": "x-group", "string_match": {"prefix": "beta"}}]
    assert routes["regex"]["safe_regex"] == {"regex": "/re/[0-9]+"}
    assert routes["regex"]["case_sensitive"] is True
    assert routes["regex"]["headers"] == [{"name": "x-id", "string_match": {"safe_regex": {"regex": "[a-f]+"}}}]
    # No uri: prefix "/"; {} and regex "*" are presence matches; headers sorted by name.
    assert routes["present"]["prefix"] == "/"
    assert routes["present"]["headers"] == [
        {"name": "x-any", "present_match": True},
        {"name": "x-canary", "present_match": True},
    ]


def test_method_authority_query_and_without_headers(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - match:\n"
        "    - method: {exact: POST}\n"
        "      authority: {prefix: reviews}\n"
        "      queryParams: {debug: {exact: '1'}, trace: {}}\n"
        "      withoutHeaders: {x-skip: {exact: 'yes'}}\n" + TO_REVIEWS
    )
    match = only_route(render(topo(text), sidecar(tmp_path)))["match"]
    headers = {h["name"]: h for h in match["headers"]}
    assert headers[":method"]["string_match"] == {"exact": "POST"}
    assert headers[":authority"]["string_match"] == {"prefix": "reviews"}
    assert headers["x-skip"]["invert_match"] is True
    assert headers["x-skip"]["treat_missing_header_as_empty"] is True
    assert match["query_parameters"] == [
        {"name": "debug", "string_match": {"exact": "1"}},
        {"name": "trace", "present_match": True},
    ]


def test_one_envoy_route_per_match_block(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - name: r\n    match:\n    - {name: a, uri: {prefix: /a}}\n    - {name: b, uri: {prefix: /b}}\n" + TO_REVIEWS
    )
    routes = routes_for(render(topo(text), sidecar(tmp_path)))
    assert [(r["name"], r["match"]["prefix"]) for r in routes] == [("r.a", "/a"), ("r.b", "/b")]


def test_source_labels_match_only_on_matching_proxies(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - name: from-productpage\n"
        "    match: [{sourceLabels: {app: productpage}}]\n"
        "    route: [{destination: {host: reviews, subset: v2}}]\n"
        "  - name: everyone\n"
        "    route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    t = topo(text, REVIEWS_DR)
    from_productpage = routes_for(render(t, sidecar(tmp_path)))
    from_ratings = routes_for(render(t, sidecar(tmp_path, {"app": "ratings", "version": "v1"}, name="ratings-v1-0")))
    assert [r["name"] for r in from_productpage] == ["from-productpage", "everyone"]
    assert from_productpage[0]["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    assert [r["name"] for r in from_ratings] == ["everyone"]


def test_match_port_selects_the_service_port(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs("  - name: other-port\n    match: [{port: 9999}]\n" + TO_REVIEWS + "  - name: any\n" + TO_REVIEWS)
    assert [r["name"] for r in routes_for(render(topo(text), sidecar(tmp_path)))] == ["any"]


# --------------------------------------------------------------------------- gateways


def test_gateway_virtual_service_only_at_the_gateway(topo: Callable[..., Topology], tmp_path: Path) -> None:
    edge = vs(
        "  - name: edge\n    match: [{uri: {prefix: /}}]\n    route: [{destination: {host: productpage, port: {number: 9080}}}]\n",
        name="edge",
        hosts='["*"]',
        extra="  gateways: [sdc-gateway]\n",
    )
    mesh = vs("  - name: mesh-only\n    route: [{destination: {host: reviews, subset: v1}}]\n")
    t = topo(GATEWAY, edge, mesh, REVIEWS_DR)
    gw = render(t, gateway_spec(tmp_path))
    assert "rds_outbound.json" not in gw
    (rc,) = resources(gw, "rds_http_80.json")
    assert rc["name"] == "http.80"
    routes = [r for v in rc["virtual_hosts"] for r in v["routes"]]
    assert [r["name"] for r in routes] == ["edge"]  # the mesh VirtualService is not at the gateway
    assert routes[0]["route"]["cluster"] == f"outbound|9080||{FQDN.format('productpage')}"
    assert [v["domains"] for v in rc["virtual_hosts"]] == [["*"]]
    # The gateway listener listens on the mapped port and reads that route file.
    (listener,) = resources(gw, "lds.json")
    assert listener["address"]["socket_address"]["port_value"] == 8080
    assert _hcm(listener)["rds"]["route_config_name"] == "http.80"

    side = render(t, sidecar(tmp_path))
    names = [r["name"] for v in resources(side, "rds_outbound.json")[0]["virtual_hosts"] for r in v["routes"]]
    assert "edge" not in names
    assert "mesh-only" in names
    assert only_route(side, FQDN.format("productpage"))["name"] == "default"


def test_vs_bound_to_gateway_and_mesh_is_in_both(topo: Callable[..., Topology], tmp_path: Path) -> None:
    both = vs("  - name: both\n" + TO_REVIEWS, extra="  gateways: [sdc-gateway, mesh]\n")
    t = topo(GATEWAY, both)
    assert only_route(render(t, sidecar(tmp_path)))["name"] == "both"
    (rc,) = resources(render(t, gateway_spec(tmp_path)), "rds_http_80.json")
    assert [r["name"] for v in rc["virtual_hosts"] for r in v["routes"]] == ["both"]
    assert rc["virtual_hosts"][0]["domains"] == ["reviews", "reviews:*"]


def test_gateway_hosts_differing_in_case_share_a_virtual_host(topo: Callable[..., Topology], tmp_path: Path) -> None:
    upper = vs(
        "  - name: upper\n" + TO_REVIEWS, name="upper", hosts="[Foo.example]", extra="  gateways: [sdc-gateway]\n"
    )
    lower = vs(
        "  - name: lower\n" + TO_REVIEWS, name="lower", hosts="[foo.example]", extra="  gateways: [sdc-gateway]\n"
    )
    proxy = gateway_spec(tmp_path)
    assert_envoy_accepts(proxy, render_resources(topo(GATEWAY, upper, lower), ENDPOINTS, proxy), tmp_path)


def test_gateway_with_other_selector_is_not_served(topo: Callable[..., Topology], tmp_path: Path) -> None:
    edge = vs("  - name: edge\n" + TO_REVIEWS, extra="  gateways: [sdc-gateway]\n")
    t = topo(GATEWAY.replace("istio: ingressgateway", "istio: egressgateway"), edge)
    (rc,) = resources(render(t, gateway_spec(tmp_path)), "rds_http_80.json")
    assert rc["virtual_hosts"] == []


def test_gateway_has_fault_filter_and_sidecar_routes_none(topo: Callable[..., Topology], tmp_path: Path) -> None:
    edge = vs(
        "  - name: edge\n" + TO_REVIEWS + "    fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}}\n",
        extra="  gateways: [sdc-gateway]\n",
    )
    t = topo(GATEWAY, edge)
    (rc,) = resources(render(t, gateway_spec(tmp_path)), "rds_http_80.json")
    (route,) = rc["virtual_hosts"][0]["routes"]
    assert fault_of(route)["delay"]["percentage"] == {"numerator": 100000, "denominator": "MILLION"}
    assert "typed_per_filter_config" not in only_route(render(t, sidecar(tmp_path)))


# --------------------------------------------------------------------------- mirror and headers


def test_mirror_without_percentage_is_all_requests(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(one_route("    mirror: {host: reviews, subset: v2}\n"))
    (mirror,) = only_route(render(topo(text, REVIEWS_DR), sidecar(tmp_path)))["route"]["request_mirror_policies"]
    assert mirror["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    assert mirror["runtime_fraction"]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    assert mirror["disable_shadow_host_suffix_append"] is True
    assert mirror["trace_sampled"] is False


def test_mirror_percentage_is_per_million(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(one_route("    mirror: {host: ratings}\n    mirrorPercentage: {value: 50.0}\n"))
    (mirror,) = only_route(render(topo(text), sidecar(tmp_path)))["route"]["request_mirror_policies"]
    assert mirror["cluster"] == f"outbound|9080||{FQDN.format('ratings')}"
    assert mirror["runtime_fraction"]["default_value"] == {"numerator": 500000, "denominator": "MILLION"}


def test_mirror_percentage_zero_means_no_mirror(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(one_route("    mirror: {host: ratings}\n    mirrorPercentage: {value: 0}\n"))
    assert "request_mirror_policies" not in only_route(render(topo(text), sidecar(tmp_path)))["route"]


def test_request_and_response_header_operations(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        one_route(
            "    headers:\n"
            "      request:\n"
            "        set: {x-set: one}\n"
            "        add: {x-add: two}\n"
            "        remove: [x-secret]\n"
            "      response:\n"
            "        set: {x-served-by: mesh}\n"
        )
    )
    route = only_route(render(topo(text), sidecar(tmp_path)))
    assert route["request_headers_to_add"] == [
        {"header": {"key": "x-set", "value": "one"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "two"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"},
    ]
    assert route["request_headers_to_remove"] == ["x-secret"]
    assert route["response_headers_to_add"] == [
        {"header": {"key": "x-served-by", "value": "mesh"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]


def test_authority_header_becomes_host_rewrite(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(one_route("    headers:\n      request:\n        set: {':authority': other.example, x-a: b}\n"))
    route = only_route(render(topo(text), sidecar(tmp_path)))
    assert route["route"]["host_rewrite_literal"] == "other.example"
    assert [h["header"]["key"] for h in route["request_headers_to_add"]] == ["x-a"]


def test_per_destination_headers(topo: Callable[..., Topology], tmp_path: Path) -> None:
    split = vs(
        "  - route:\n"
        "    - {destination: {host: reviews, subset: v1}, weight: 50, headers: {request: {set: {x-v: one}}}}\n"
        "    - {destination: {host: reviews, subset: v2}, weight: 50}\n"
    )
    clusters = only_route(render(topo(split, REVIEWS_DR), sidecar(tmp_path)))["route"]["weighted_clusters"]["clusters"]
    assert clusters[0]["request_headers_to_add"] == [
        {"header": {"key": "x-v", "value": "one"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert "request_headers_to_add" not in clusters[1]
    single = vs("  - route:\n    - {destination: {host: reviews}, headers: {request: {add: {x-w: two}}}}\n")
    route = only_route(render(topo(single), sidecar(tmp_path)))
    assert route["request_headers_to_add"] == [
        {"header": {"key": "x-w", "value": "two"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
    ]


def test_redirect_and_direct_response(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs(
        "  - name: moved\n    match: [{uri: {prefix: /old}}]\n    redirect: {uri: /new, redirectCode: 302}\n"
        "  - name: teapot\n    directResponse: {status: 418, body: {string: short and stout}}\n"
    )
    routes = {r["name"]: r for r in routes_for(render(topo(text), sidecar(tmp_path)))}
    assert routes["moved"]["redirect"] == {"path_redirect": "/new", "response_code": "FOUND"}
    assert routes["teapot"]["direct_response"] == {"status": 418, "body": {"inline_string": "short and stout"}}
    assert "route" not in routes["teapot"]


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_identity(tmp_path: Path) -> None:
    boot = render_bootstrap(sidecar(tmp_path))
    assert boot["node"]["id"].startswith("sidecar~127.0.0.2~productpage-v1-0.default~")
    assert boot["node"]["cluster"] == "productpage.default"
    assert boot["node"]["metadata"]["LABELS"] == {"app": "productpage", "version": "v1"}
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.2", "port_value": 15000}
    assert {"lds_config", "cds_config"} <= boot["dynamic_resources"].keys()
    assert render_bootstrap(gateway_spec(tmp_path))["node"]["id"].startswith("router~")


@pytest.mark.parametrize("kind", ["sidecar", "gateway"])
def test_every_route_table_and_endpoint_set_is_delivered(
    topo: Callable[..., Topology], tmp_path: Path, kind: str
) -> None:
    proxy = sidecar(tmp_path) if kind == "sidecar" else gateway_spec(tmp_path)
    files = render(topo(REVIEWS_DR, GATEWAY), proxy)
    route_tables = {r["name"] for n, d in files.items() if n.startswith("rds_") for r in d["resources"]}
    wanted = {
        _hcm(listener)["rds"]["route_config_name"]
        for listener in resources(files, "lds.json")
        if "rds" in _hcm(listener)
    }
    assert wanted and wanted == route_tables
    for c in resources(files, "cds.json"):
        if c["type"] == "EDS":
            service = c["eds_cluster_config"]["service_name"]
            (cla,) = resources(files, eds_file_name(service))
            assert cla["cluster_name"] == service


# =========================================================================== envoy --mode validate


def _static_bootstrap(bootstrap: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The rendered proxy as one static bootstrap (RDS inlined, EDS clusters STATIC), as ``clover render`` writes it."""
    return _project_static_bootstrap(bootstrap, files)


def envoy_validate(config: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(config), encoding="utf-8")
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_envoy_accepts(proxy: ProxySpec, files: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    Path(proxy.access_log).parent.mkdir(parents=True, exist_ok=True)
    Path(proxy.access_log).touch()  # Envoy opens access logs even in validate mode
    static = _static_bootstrap(render_bootstrap(proxy), files)
    # Nothing dynamic is left to read from files.
    assert "dynamic_resources" not in static and '"rds"' not in json.dumps(static)
    result = envoy_validate(static, tmp_path / f"{proxy.name}.static.json")
    assert result.returncode == 0, f"envoy rejected {proxy.name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def pods_of(t: Topology, first_ip: int = 10) -> Iterator[tuple[str, dict[str, str], list[int], str]]:
    n = first_ip
    for dep in sorted(t.deployments.values(), key=lambda d: d.name):
        for i in range(dep.replicas):
            n += 1
            yield f"{dep.name}-{i}", dict(dep.pod_labels), [p.port for p in dep.containers[0].ports], f"127.0.0.{n}"


def endpoints_of(t: Topology) -> dict[tuple[str, int], list[Endpoint]]:
    out: dict[tuple[str, int], list[Endpoint]] = {}
    pods = list(pods_of(t))
    for svc in t.services.values():
        for sp in svc.ports:
            eps = out.setdefault((svc.name, sp.port), [])
            for name, labels, ports, ip in pods:
                if svc.selector and all(labels.get(k) == v for k, v in svc.selector.items()):
                    target = sp.target_port if isinstance(sp.target_port, int) else next(iter(ports), sp.port)
                    eps.append(Endpoint(name, ip, target, labels))
    return out


def proxies_of(t: Topology, tmp_path: Path, only: str | None = None) -> list[ProxySpec]:
    specs = []
    for name, labels, ports, ip in pods_of(t):
        if only is not None and labels.get("app") != only:
            continue
        specs.append(
            make_spec(
                name=name,
                namespace=t.namespace,
                kind="sidecar",
                ip=ip,
                admin_port=15000,
                labels=labels,
                xds_dir=str(tmp_path / name / "xds"),
                access_log=str(tmp_path / name / "access.log"),
                outbound_port=15001,
                inbound=tuple(InboundPort(p, p, 20000 + i) for i, p in enumerate(ports)),
            )
        )
    specs.append(gateway_spec(tmp_path))
    return specs


def test_envoy_accepts_the_sdc_fixture(tmp_path: Path) -> None:
    t = load_topology(REPO / "fixtures" / "sdc")
    eps = endpoints_of(t)
    specs = proxies_of(t, tmp_path)
    assert {s.labels.get("app") for s in specs if s.kind == "sidecar"} == {
        "proxy-access-control",
        "http-lb",
        "clover-server",
        "snort-ids",
    }
    for proxy in specs:
        files = render_resources(t, eps, proxy)
        if proxy.kind == "gateway":
            routes = [r for v in files["rds_http_80.json"]["resources"][0]["virtual_hosts"] for r in v["routes"]]
            assert routes, "the SDC gateway routes to proxy-access-control"
        assert_envoy_accepts(proxy, files, tmp_path)


SAMPLE_FILES = sorted(p for p in glob.glob(str(SAMPLES / "*.yaml")) if Path(p) != BOOKINFO_SERVICES)


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: Path(p).stem)
def test_envoy_accepts_istio_sample(tmp_path: Path, sample: str) -> None:
    folder = tmp_path / "topology"
    folder.mkdir()
    (folder / "services.yaml").write_text(BOOKINFO_SERVICES.read_text(), encoding="utf-8")
    (folder / "sample.yaml").write_text(Path(sample).read_text(), encoding="utf-8")
    # A gateway is part of every run, so gateway listeners get validated too.
    (folder / "gateway.yaml").write_text(GATEWAY, encoding="utf-8")
    t = load_topology(folder)
    eps = endpoints_of(t)
    for proxy in proxies_of(t, tmp_path, only="productpage"):
        assert_envoy_accepts(proxy, render_resources(t, eps, proxy), tmp_path)


def test_envoy_validate_catches_a_broken_config(tmp_path: Path) -> None:
    """The harness itself: a config Envoy must refuse is refused (so passing results mean something)."""
    t = load_topology(REPO / "fixtures" / "sdc")
    proxy = gateway_spec(tmp_path)
    files = render_resources(t, endpoints_of(t), proxy)
    files["cds.json"]["resources"][0]["lb_policy"] = "NO_SUCH_POLICY"
    Path(proxy.access_log).touch()
    result = envoy_validate(_static_bootstrap(render_bootstrap(proxy), files), tmp_path / "broken.json")
    assert result.returncode != 0


def test_access_logs_carry_the_duration_in_microseconds(tmp_path: Path) -> None:
    """Per-hop breakdowns subtract nested durations: every access log has the µs field beside %DURATION%."""
    assert ACCESS_LOG_FORMAT["duration_us"] == "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%"
    t = load_topology(REPO / "fixtures" / "sdc")
    eps = endpoints_of(t)
    seen = 0
    for proxy in proxies_of(t, tmp_path):
        for listener in render_resources(t, eps, proxy)["lds.json"]["resources"]:
            for log in _hcm(listener)["access_log"]:
                fmt = log["typed_config"]["log_format"]["json_format"]
                assert fmt["duration_us"] == ACCESS_LOG_FORMAT["duration_us"] and fmt["duration"] == "%DURATION%"
                seen += 1
    assert seen >= 2 * len(list(pods_of(t)))  # inbound + outbound of every sidecar, and the gateway


def test_envoy_validate_parses_the_microsecond_operator(tmp_path: Path) -> None:
    """The validate runs above vouch for %COMMON_DURATION(…:us)% only as far as Envoy parses it.

    Envoy refuses an unknown operator or precision, but takes any unknown time-point name as a custom
    time point some filter may set (rendered null when none does): a misspelled ``DS_TX_END`` would pass
    validate, so tests/integration/test_hops.py checks that a live sidecar logs a number.
    """
    t = load_topology(REPO / "fixtures" / "sdc")
    proxy = gateway_spec(tmp_path)
    Path(proxy.access_log).touch()

    def validate_with(operator: str) -> subprocess.CompletedProcess[str]:
        files = render_resources(t, endpoints_of(t), proxy)
        for listener in files["lds.json"]["resources"]:
            for log in _hcm(listener)["access_log"]:
                log["typed_config"]["log_format"]["json_format"]["duration_us"] = operator
        return envoy_validate(_static_bootstrap(render_bootstrap(proxy), files), tmp_path / "operator.json")

    bad_precision = validate_with("%COMMON_DURATION(DS_RX_BEG:DS_TX_END:xs)%")
    assert bad_precision.returncode != 0 and "precision" in bad_precision.stdout + bad_precision.stderr
    assert validate_with("%NO_SUCH_OPERATOR%").returncode != 0
    assert validate_with("%COMMON_DURATION(DS_RX_BEG:DS_TX_FIN:us)%").returncode == 0  # custom time point


# --------------------------------------------------------------------------- validate ⇔ envoy, on edge inputs

REGEXES_ACCEPTED = [
    r"(?P<n>a)b",
    r"(?i)abc",
    r"\d+",
    r"[[:alpha:]]+",
    r"(?s).*",
    r"\x41",
    r"\bword\b",
    r"[(?=]x",
    r"\(?=x",
    r"a{2,5}",
    r"[a-z]{20}",
    r"a(?i)b",
    r"(?U)a+",
    r"(?i:A)b",
    r"(?s-m:.)",
    r"[]a]",
    r"[^]a]",
]
REGEXES_REJECTED = [
    r"(?=a)a",
    r"(?<!a)b",
    r"(a)\1",
    r"(?P<n>a)(?P=n)",
    r"a*+",
    r"a{2}+",
    r"a\Z",
    r"(?x) a",
    r"(?>a)",
    r"a(?#c)",
    r"\u0041",
    r"a{1001}",
]


def _regex_topology(tmp_path: Path, regexes: list[str]) -> tuple[Path, str]:
    path = tmp_path / "regex.yaml"
    matches = [
        {"name": f"m{i}", "uri": {"regex": rx}, "headers": {"x-h": {"regex": rx}}} for i, rx in enumerate(regexes)
    ]
    doc = yaml.safe_load(vs(one_route("")))
    doc["spec"]["http"][0]["match"] = matches
    path.write_text(SERVICES + "---\n" + yaml.safe_dump(doc), encoding="utf-8")
    return path, "VirtualService/reviews"


def test_regexes_validate_accepts_envoy_accepts(tmp_path: Path) -> None:
    path, _ = _regex_topology(tmp_path, REGEXES_ACCEPTED)
    assert not [p for p in validate([path]) if p.severity == "error"]
    proxy = sidecar(tmp_path)
    files = render_resources(load_topology(path), ENDPOINTS, proxy)
    assert len(routes_for(files)) == len(REGEXES_ACCEPTED)
    assert_envoy_accepts(proxy, files, tmp_path)


@pytest.mark.parametrize("regex", REGEXES_REJECTED)
def test_regexes_rejected_by_validate_are_rejected_by_envoy(tmp_path: Path, regex: str) -> None:
    path, obj = _regex_topology(tmp_path, [regex])
    errors = [p for p in validate([path]) if p.severity == "error"]
    assert [(p.obj, p.field) for p in errors] == [
        (obj, "spec.http[0].match[0].uri.regex"),
        (obj, "spec.http[0].match[0].headers.x-h.regex"),
    ]
    assert "RE2" in errors[0].message or "not a valid regular expression" in errors[0].message
    # Cross-check with the real RE2: hand Envoy the route anyway (bypassing validation).
    proxy = sidecar(tmp_path)
    files = render_resources(load_topology(_regex_topology(tmp_path, ["placeholder"])[0]), ENDPOINTS, proxy)
    route = routes_for(files)[0]
    route["match"] = {"safe_regex": {"regex": regex}}
    Path(proxy.access_log).touch()
    result = envoy_validate(_static_bootstrap(render_bootstrap(proxy), files), tmp_path / "rx.json")
    assert result.returncode != 0, f"Envoy accepts {regex!r}: validate should too"


def test_regex_with_large_program_is_accepted(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs("  - match: [{uri: {regex: '/[a-z]{200}'}}]\n" + TO_REVIEWS)
    proxy = sidecar(tmp_path)
    assert_envoy_accepts(proxy, render_resources(topo(text), ENDPOINTS, proxy), tmp_path)


def test_direct_response_body_over_4k_is_accepted(topo: Callable[..., Topology], tmp_path: Path) -> None:
    text = vs("  - directResponse: {status: 200, body: {string: '" + "x" * 5000 + "'}}\n")
    proxy = sidecar(tmp_path)
    assert_envoy_accepts(proxy, render_resources(topo(text), ENDPOINTS, proxy), tmp_path)


EDGE_INPUTS = [
    (
        "header-prefix-empty",
        "  - match: [{headers: {x-a: {prefix: ''}}, queryParams: {q: {prefix: ''}}}]\n" + TO_REVIEWS,
    ),
    ("uri-exact-empty", "  - match: [{uri: {exact: ''}}]\n" + TO_REVIEWS),
    (
        "max-values",
        "  - route:\n    - {destination: {host: reviews}, weight: 2147483647}\n    - {destination: {host: ratings}, weight: 1}\n    timeout: 87600h\n    retries: {attempts: 2147483647, retryOn: '599,100'}\n",
    ),
    (
        "header-op-pseudo",
        "  - headers: {request: {set: {':authority': a.example, x-b: ''}, remove: [x-c]}}\n" + TO_REVIEWS,
    ),
    ("redirect-full", "  - redirect: {uri: /n, authority: a.example, scheme: https, port: 8443, redirectCode: 308}\n"),
]


@pytest.mark.parametrize(("label", "http"), EDGE_INPUTS, ids=[e[0] for e in EDGE_INPUTS])
def test_edge_inputs_validate_accepts_envoy_accepts(
    topo: Callable[..., Topology], tmp_path: Path, label: str, http: str
) -> None:
    text = vs(http)
    policies = dr(
        "  trafficPolicy:\n"
        "    connectionPool:\n"
        "      tcp: {maxConnections: 2147483647, connectTimeout: 87600h}\n"
        "      http: {http1MaxPendingRequests: 2147483647, http2MaxRequests: 2147483647, maxRetries: 2147483647, maxRequestsPerConnection: 2147483647}\n"
        "    outlierDetection: {consecutive5xxErrors: 4294967295, interval: 87600h, baseEjectionTime: 87600h}\n"
    )
    t = topo(text, policies)  # load_topology raises on any error: validate accepts
    for proxy in (sidecar(tmp_path), gateway_spec(tmp_path)):
        assert_envoy_accepts(proxy, render_resources(t, ENDPOINTS, proxy), tmp_path)


def test_routes_never_carry_max_stream_duration(topo: Callable[..., Topology], tmp_path: Path) -> None:
    # Any max_stream_duration switches Envoy's router to "new timeouts", which ignore route.timeout:
    # a VirtualService timeout would then silently stop working (found on the live mesh).
    for text in (vs(one_route("    timeout: 2s\n")), vs(one_route(""))):
        action = only_route(render(topo(text), sidecar(tmp_path)))["route"]
        assert "max_stream_duration" not in action


# =========================================================================== namespaces

OTHER = "other"
OTHER_REVIEWS = f"reviews.{OTHER}.svc.cluster.local"
OTHER_ENDPOINTS: dict[tuple[str, int], list[Endpoint]] = {
    ("productpage", 9080): [Endpoint("productpage-o-0", "127.0.1.2", 9080, {"app": "productpage", "version": "v1"})],
    ("reviews", 9080): [
        Endpoint("reviews-o-1", "127.0.1.4", 9080, {"app": "reviews", "version": "v1"}),
        Endpoint("reviews-o-2", "127.0.1.5", 9080, {"app": "reviews", "version": "v2"}),
    ],
    ("ratings", 9080): [Endpoint("ratings-o-0", "127.0.1.8", 9080, {"app": "ratings", "version": "v1"})],
}


def render_two(home: Topology, other: Topology, proxy: ProxySpec) -> dict[str, dict[str, Any]]:
    """``proxy`` of namespace ``default`` or ``other`` in a mesh running both (Bookinfo's services in each)."""
    moved = other.in_namespace(OTHER)
    if proxy.namespace == OTHER:
        files = render_resources(moved, OTHER_ENDPOINTS, proxy, [(home, ENDPOINTS)])
    else:
        files = render_resources(home, ENDPOINTS, proxy, [(moved, OTHER_ENDPOINTS)])
    detached: dict[str, dict[str, Any]] = json.loads(json.dumps(files))
    return detached


def unchecked(*texts: str) -> Topology:
    """The objects of ``texts`` as a topology, without the cross-object checks (which cannot see the other
    namespace these objects refer to)."""
    problems: list[Any] = []
    t = Topology()
    for obj in parse_documents(parse_text("\n---\n".join(texts), "<test>", problems), problems):
        t.add(obj)
    assert not [p for p in problems if p.severity == "error"], problems
    return t


def in_other(spec: ProxySpec) -> ProxySpec:
    return dataclasses.replace(spec, namespace=OTHER)


def test_a_proxy_sees_every_namespaces_services_short_names_only_its_own(
    topo: Callable[..., Topology], tmp_path: Path
) -> None:
    files = render_two(topo(), topo(), in_other(sidecar(tmp_path)))
    own = vhost(files, OTHER_REVIEWS)["domains"]
    for host in ("reviews", "reviews.other", "reviews.other.svc", OTHER_REVIEWS):
        assert host in own and f"{host}:9080" in own
    foreign = vhost(files, REVIEWS)["domains"]
    for host in ("reviews.default", "reviews.default.svc", REVIEWS):
        assert host in foreign and f"{host}:9080" in foreign
    assert "reviews" not in foreign and "reviews:9080" not in foreign
    # Each namespace's Service is its own cluster with its own endpoints.
    assert eds_pods(files, f"outbound|9080||{OTHER_REVIEWS}") == ["reviews-o-1", "reviews-o-2"]
    assert len(eds_pods(files, f"outbound|9080||{REVIEWS}")) == 4
    assert only_route(files, OTHER_REVIEWS)["route"]["cluster"] == f"outbound|9080||{OTHER_REVIEWS}"


def test_a_short_host_is_read_in_its_objects_namespace(topo: Callable[..., Topology], tmp_path: Path) -> None:
    abort = vs("  - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n" + TO_REVIEWS)
    for proxy in (sidecar(tmp_path), in_other(sidecar(tmp_path))):
        files = render_two(topo(), topo(abort), proxy)
        # The VirtualService of `other` routes other's reviews, for a caller of any namespace...
        faulted = only_route(files, OTHER_REVIEWS)
        assert faulted["typed_per_filter_config"][FAULT_FILTER]["abort"]["http_status"] == 503
        assert faulted["route"]["cluster"] == f"outbound|9080||{OTHER_REVIEWS}"
        # ...and default's reviews is untouched.
        assert "typed_per_filter_config" not in only_route(files, REVIEWS)


@pytest.mark.parametrize("host", ["reviews.other", "reviews.other.svc", OTHER_REVIEWS])
def test_a_dotted_or_full_host_names_another_namespaces_service(
    topo: Callable[..., Topology], tmp_path: Path, host: str
) -> None:
    to_other = vs(f"  - route: [{{destination: {{host: {host}}}}}]\n", name="to-other")
    files = render_two(topo(to_other.replace("[reviews]", "[ratings]")), topo(), sidecar(tmp_path))
    assert only_route(files, FQDN.format("ratings"))["route"]["cluster"] == f"outbound|9080||{OTHER_REVIEWS}"


def test_the_callers_namespaces_destination_rule_wins_then_the_services(
    topo: Callable[..., Topology], tmp_path: Path
) -> None:
    lb = "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
    theirs = dr(lb.replace("RANDOM", "ROUND_ROBIN") + "  subsets: [{name: v1, labels: {version: v1}}]\n")
    mine = dr(lb, host=OTHER_REVIEWS)
    # A proxy of `default` calling other's reviews: its own namespace's rule for that host first.
    files = render_two(topo(mine), topo(theirs), sidecar(tmp_path))
    assert cluster(files, f"outbound|9080||{OTHER_REVIEWS}")["lb_policy"] == "RANDOM"
    # Without one, the Service's namespace's rule, subsets included.
    files = render_two(topo(), topo(theirs), sidecar(tmp_path))
    assert cluster(files, f"outbound|9080||{OTHER_REVIEWS}")["lb_policy"] == "ROUND_ROBIN"
    assert eds_pods(files, f"outbound|9080|v1|{OTHER_REVIEWS}") == ["reviews-o-1"]
    # Default's own reviews is ruled by neither.
    assert cluster(files, f"outbound|9080||{REVIEWS}")["lb_policy"] == "LEAST_REQUEST"


def test_a_gateway_proxy_serves_its_own_namespaces_gateways_only(topo: Callable[..., Topology], tmp_path: Path) -> None:
    entry = vs("  - route: [{destination: {host: productpage}}]\n", name="entry", hosts='["*"]',
               extra="  gateways: [sdc-gateway]\n")  # fmt: skip
    home, other = topo(GATEWAY, entry), topo(GATEWAY, entry)
    for proxy, fqdn in ((gateway_spec(tmp_path), FQDN.format("productpage")),
                        (in_other(gateway_spec(tmp_path)), f"productpage.{OTHER}.svc.cluster.local")):  # fmt: skip
        (rc,) = resources(render_two(home, other, proxy), "rds_http_80.json")
        (host,) = rc["virtual_hosts"]
        assert host["domains"] == ["*"]
        assert [r["route"]["cluster"] for r in host["routes"]] == [f"outbound|9080||{fqdn}"]


def test_gateway_references_and_server_hosts_across_namespaces(topo: Callable[..., Topology], tmp_path: Path) -> None:
    scoped = GATEWAY.replace('hosts: ["*"]', 'hosts: ["./*", "other/ratings.example"]')
    # Bound from `other` by `default/sdc-gateway`: the server admits other's VirtualServices for one host only.
    remote = vs("  - route: [{destination: {host: ratings}}]\n", name="remote", hosts='["*", ratings.example]',
                extra="  gateways: [default/sdc-gateway]\n")  # fmt: skip
    # `sdc-gateway` read in `other` is other's, which does not exist: not bound here.
    unbound = vs("  - route: [{destination: {host: ratings}}]\n", name="unbound", hosts="[reviews.example]",
                 extra="  gateways: [sdc-gateway]\n")  # fmt: skip
    files = render_two(topo(scoped), unchecked(SERVICES, remote, unbound), gateway_spec(tmp_path))
    (rc,) = resources(files, "rds_http_80.json")
    assert [v["domains"][0] for v in rc["virtual_hosts"]] == ["ratings.example"]
    (route,) = rc["virtual_hosts"][0]["routes"]
    assert route["route"]["cluster"] == f"outbound|9080||ratings.{OTHER}.svc.cluster.local"


def test_envoy_accepts_a_proxy_of_a_two_namespace_mesh(tmp_path: Path) -> None:
    sdc = load_topology(REPO / "fixtures" / "sdc")
    other = sdc.in_namespace("sdc2")
    eps = endpoints_of(sdc)
    for proxy in (proxies_of(sdc, tmp_path, only="http-lb")[0], gateway_spec(tmp_path)):
        for spec in (proxy, dataclasses.replace(proxy, namespace="sdc2")):
            own, rest = (other, sdc) if spec.namespace == "sdc2" else (sdc, other)
            files = render_resources(own, eps, spec, [(rest, eps)])
            names = {c["name"] for c in resources(files, "cds.json")}
            assert "outbound|9180||clover-server.sdc2.svc.cluster.local" in names
            assert "outbound|9180|v2|clover-server.default.svc.cluster.local" in names
            assert_envoy_accepts(spec, files, tmp_path)
