"""``clover validate``: every kind of bad Kubernetes/Istio input is rejected with a clear, located message.

Each case writes one small YAML file into ``tmp_path`` and asserts that ``validate([file])`` reports a
problem naming that file, the object (``Kind/name``, or ``document N`` / ``file`` when there is no
name), the exact dotted field path and a key phrase of the message (plus the hint, where one is given).
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pytest_clover.errors import ConfigError, Problem
from pytest_clover.istio import (
    Deployment,
    Topology,
    VirtualService,
    check_references,
    load_topology,
    parse_documents,
    parse_duration,
    parse_istio_text,
    validate,
)
from pytest_clover.istio.documents import read_istio_file
from pytest_clover.istio.model import Source, resolve_gateway, resolve_host
from pytest_clover.istio.parse import MAX_YAML_BYTES, Document

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "istio-samples"
BOOKINFO_SERVICES = SAMPLES / "bookinfo-services.yaml"
BAD_DIR = REPO / "tests" / "data" / "bad"

# --------------------------------------------------------------------------- building blocks

ISTIO = "networking.istio.io/v1"


def deployment(name: str = "web", **spec_over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": "v1"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 9080}]}
                    ]
                },
            },
        },
    }
    doc["spec"].update(spec_over)
    return doc


def service(name: str = "web", ports: Any = None, selector: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": [{"name": "http", "port": 9080, "targetPort": 9080}] if ports is None else ports,
        },
    }


def route(**extra: Any) -> dict[str, Any]:
    """One HTTP route to ``web``, with extra route fields."""
    return {"route": [{"destination": {"host": "web"}}], **extra}


def vs(*http: dict[str, Any], name: str = "web", **spec_over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": ["web"], "http": list(http) or [route()]}
    spec.update(spec_over)
    return {"apiVersion": ISTIO, "kind": "VirtualService", "metadata": {"name": name}, "spec": spec}


def dr(name: str = "web", **spec_over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "web"}
    spec.update(spec_over)
    return {"apiVersion": ISTIO, "kind": "DestinationRule", "metadata": {"name": name}, "spec": spec}


def gateway(name: str = "gw", servers: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": ISTIO,
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": servers
            if servers is not None
            else [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        },
    }


def fault(**f: Any) -> dict[str, Any]:
    return route(fault=f)


def with_spec(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``path`` (``spec.template.spec.containers``) set to ``value``."""
    out = copy.deepcopy(doc)
    keys = path.split(".")
    node = out
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return out


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    obj: str
    field: str
    phrases: tuple[str, ...]
    severity: str = "error"


def case(id: str, docs: Any, obj: str, field: str, *phrases: str, severity: str = "error") -> Any:
    text = docs if isinstance(docs, str) else dump(*(docs if isinstance(docs, list) else [docs]))
    return pytest.param(Case(id, text, obj, field, phrases, severity), id=id)


PCT = {"value": 100.0}

BAD_INPUTS = [
    # ---- YAML and object envelope
    case(
        "yaml-syntax",
        "kind: Service\nmetadata: {name: web\nspec: [\n",
        "file",
        "",
        "not valid YAML",
        "line ",
        "column ",
    ),
    case("yaml-bad-tag-float", "kind: !!float abc\n", "file", "", "not valid YAML"),
    case("yaml-bad-tag-timestamp", "kind: !!timestamp yesterday\n", "file", "", "not valid YAML"),
    case("non-mapping-document", "- just\n- a list\n", "document 1", "", "must be a Kubernetes object", "a list"),
    case("scalar-document", "---\nhello\n", "document 1", "", "must be a Kubernetes object"),
    case(
        "missing-kind",
        {"apiVersion": "v1", "metadata": {"name": "web"}, "spec": {}},
        "document 1",
        "kind",
        "is required",
    ),
    case(
        "missing-apiVersion",
        {k: v for k, v in service().items() if k != "apiVersion"},
        "Service/web",
        "apiVersion",
        "is required",
        "apiVersion: v1",
    ),
    case(
        "wrong-apiVersion",
        {**deployment(), "apiVersion": "v1"},
        "Deployment/web",
        "apiVersion",
        "is not a version of Deployment",
        "apps/v1",
    ),
    case(
        "wrong-istio-apiVersion",
        {**vs(), "apiVersion": "networking.istio.io/v2"},
        "VirtualService/web",
        "apiVersion",
        "networking.istio.io/v1",
    ),
    case(
        "missing-metadata-name",
        {**vs(), "metadata": {"namespace": "default"}},
        "document 1",
        "metadata.name",
        "is required",
    ),
    case(
        "missing-metadata", {k: v for k, v in vs().items() if k != "metadata"}, "document 1", "metadata", "is required"
    ),
    case("missing-spec", {k: v for k, v in vs().items() if k != "spec"}, "VirtualService/web", "spec", "is required"),
    case("null-spec", {**vs(), "spec": None}, "VirtualService/web", "spec", "is required"),
    case(
        "invalid-dns-name",
        service(name="Web_Svc"),
        "Service/Web_Svc",
        "metadata.name",
        "not a valid name",
        "lower-case",
    ),
    case("name-trailing-newline", service(name="web\n"), "Service/web\n", "metadata.name", "not a valid name"),
    case("service-name-too-long", service(name="a" * 64), f"Service/{'a' * 64}", "metadata.name", "at most 63"),
    case("duplicate-object", [service(), service()], "Service/web", "metadata.name", "defined twice", "document 1"),
    case(
        "unknown-kind-warns",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {}},
        "ConfigMap/cfg",
        "kind",
        "not used by pytest-clover",
        severity="warning",
    ),
    case(
        "huge-number", with_spec(deployment(), "spec.replicas", 2**70), "Deployment/web", "spec.replicas", "too large"
    ),
    case(
        "huge-hex-number",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 0x" + "f" * 4000 + "}]\n",
        "Service/web",
        "spec.ports[0].port",
        "too large",
    ),
    case(
        "document-is-huge-number",
        "0x" + "f" * 4000 + "\n",
        "document 1",
        "",
        "must be a Kubernetes object",
        "too large to show",
    ),
    case("yaml-empty-tagged-float", "!!float\n", "file", "", "not valid YAML"),
    case(
        "self-referencing-alias",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: &s {ports: [*s]}\n",
        "Service/web",
        "spec.ports[0]",
        "refers to itself",
    ),
    # ---- Deployment
    case(
        "negative-replicas",
        deployment(replicas=-1),
        "Deployment/web",
        "spec.replicas",
        "-1 is out of range",
        "0 or more",
    ),
    case(
        "replicas-wrong-type",
        deployment(replicas="three"),
        "Deployment/web",
        "spec.replicas",
        "must be an integer",
        "'three'",
    ),
    case(
        "selector-mismatch",
        deployment(selector={"matchLabels": {"app": "other"}}),
        "Deployment/web",
        "spec.selector.matchLabels",
        "does not match the pod template labels",
    ),
    case("selector-missing", deployment(selector={}), "Deployment/web", "spec.selector.matchLabels", "is required"),
    case(
        "no-containers",
        with_spec(deployment(), "spec.template.spec.containers", []),
        "Deployment/web",
        "spec.template.spec.containers",
        "at least one container",
    ),
    case(
        "containerPort-out-of-range",
        with_spec(
            deployment(),
            "spec.template.spec.containers",
            [{"name": "web", "image": "w", "ports": [{"containerPort": 70000}]}],
        ),
        "Deployment/web",
        "spec.template.spec.containers[0].ports[0].containerPort",
        "70000 is out of range",
        "1 to 65535",
    ),
    case(
        "containerPort-string",
        with_spec(
            deployment(),
            "spec.template.spec.containers",
            [{"name": "web", "image": "w", "ports": [{"containerPort": "80"}]}],
        ),
        "Deployment/web",
        "spec.template.spec.containers[0].ports[0].containerPort",
        "must be an integer",
    ),
    case(
        "duplicate-container-name",
        with_spec(
            deployment(), "spec.template.spec.containers", [{"name": "a", "image": "w"}, {"name": "a", "image": "w"}]
        ),
        "Deployment/web",
        "spec.template.spec.containers",
        "used twice",
    ),
    case(
        "container-without-image-or-local-command",
        with_spec(deployment(), "spec.template.spec.containers", [{"name": "web", "ports": [{"containerPort": 80}]}]),
        "Deployment/web",
        "spec.template.spec.containers[0].image",
        "is required",
        "clover.opnfv.org/local-command",
    ),
    case(
        "container-with-an-empty-image-and-no-local-command",
        with_spec(
            deployment(), "spec.template.spec.containers", [{"name": "a", "image": "w"}, {"name": "b", "image": ""}]
        ),
        "Deployment/web",
        "spec.template.spec.containers[1].image",
        "a cluster runs the container's image, the embedded mesh the command",
    ),
    case(
        "env-value-not-string",
        with_spec(
            deployment(),
            "spec.template.spec.containers",
            [{"name": "a", "image": "w", "env": [{"name": "N", "value": 5}]}],
        ),
        "Deployment/web",
        "spec.template.spec.containers[0].env[0].value",
        "quote it",
    ),
    case(
        "label-not-string",
        with_spec(deployment(), "spec.template.metadata.labels", {"app": "web", "version": 1}),
        "Deployment/web",
        "spec.template.metadata.labels.version",
        "must be a string",
        '"1"',
    ),
    # ---- Service
    case("service-no-ports", service(ports=[]), "Service/web", "spec.ports", "at least one port"),
    case(
        "service-multi-port-unnamed",
        service(ports=[{"name": "http", "port": 80}, {"port": 81}]),
        "Service/web",
        "spec.ports[1].name",
        "is required when a Service has more than one port",
    ),
    case(
        "service-port-out-of-range",
        service(ports=[{"name": "http", "port": 0}]),
        "Service/web",
        "spec.ports[0].port",
        "out of range",
    ),
    case(
        "service-targetPort-name-not-found",
        [deployment(), service(ports=[{"name": "http", "port": 9080, "targetPort": "grpc"}])],
        "Service/web",
        "spec.ports[0].targetPort",
        "no selected pod has a container port named 'grpc'",
    ),
    case(
        "service-duplicate-port",
        service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
        "Service/web",
        "spec.ports",
        "port 80 is listed twice",
    ),
    # ---- VirtualService
    case("vs-no-hosts", vs(hosts=[]), "VirtualService/web", "spec.hosts", "is required"),
    case("vs-no-http", vs(http=[]), "VirtualService/web", "spec.http", "at least one HTTP route"),
    case("vs-hosts-not-a-list", vs(hosts="web"), "VirtualService/web", "spec.hosts", "must be a list"),
    case("vs-host-with-space", vs(hosts=["web", "a b"]), "VirtualService/web", "spec.hosts[1]", "'a b' is not a host"),
    case("vs-host-with-port", vs(hosts=["web.example:80"]), "VirtualService/web", "spec.hosts[0]", "is not a host"),
    case("vs-host-empty", vs(hosts=[""]), "VirtualService/web", "spec.hosts[0]", "is not a host"),
    case(
        "http-route-without-route",
        vs({"timeout": "1s"}),
        "VirtualService/web",
        "spec.http[0]",
        "needs a route",
        "redirect",
        "directResponse",
    ),
    case(
        "http-route-and-redirect",
        vs(route(redirect={"uri": "/x"})),
        "VirtualService/web",
        "spec.http[0]",
        "only one of route, redirect",
    ),
    case(
        "destination-without-host",
        vs({"route": [{"destination": {"subset": "v1"}}]}),
        "VirtualService/web",
        "spec.http[0].route[0].destination.host",
        "is required",
    ),
    case(
        "route-without-destination",
        vs({"route": [{"weight": 100}]}),
        "VirtualService/web",
        "spec.http[0].route[0].destination",
        "is required",
    ),
    case(
        "negative-weight",
        vs(
            {
                "route": [
                    {"destination": {"host": "web"}, "weight": -10},
                    {"destination": {"host": "web"}, "weight": 110},
                ]
            }
        ),
        "VirtualService/web",
        "spec.http[0].route[0].weight",
        "-10 is out of range",
    ),
    case(
        "weights-all-zero",
        vs({"route": [{"destination": {"host": "web"}, "weight": 0}, {"destination": {"host": "web"}, "weight": 0}]}),
        "VirtualService/web",
        "spec.http[0].route",
        "weights add up to 0",
    ),
    case(
        "duration-words",
        vs(route(timeout="5 seconds")),
        "VirtualService/web",
        "spec.http[0].timeout",
        "is not a duration",
        "500ms",
    ),
    case("duration-no-unit", vs(route(timeout="5")), "VirtualService/web", "spec.http[0].timeout", "is not a duration"),
    case("duration-number", vs(route(timeout=5)), "VirtualService/web", "spec.http[0].timeout", "is not a duration"),
    case(
        "duration-below-1ms",
        vs(route(timeout="500us")),
        "VirtualService/web",
        "spec.http[0].timeout",
        "shorter than 1ms",
    ),
    case("duration-zero", vs(route(timeout="0s")), "VirtualService/web", "spec.http[0].timeout", "shorter than 1ms"),
    case(
        "duration-sub-ms",
        vs(route(timeout="1.5ms")),
        "VirtualService/web",
        "spec.http[0].timeout",
        "sub-millisecond precision",
    ),
    case(
        "duration-enormous",
        vs(route(timeout="9" * 400 + "s")),
        "VirtualService/web",
        "spec.http[0].timeout",
        "too long",
    ),
    case(
        "duration-over-10000-years",
        vs(route(timeout="100000000h")),
        "VirtualService/web",
        "spec.http[0].timeout",
        "too long",
        "315576000000s",
    ),
    case(
        "delay-percentage-over-100",
        vs(fault(delay={"fixedDelay": "1s", "percentage": {"value": 150}})),
        "VirtualService/web",
        "spec.http[0].fault.delay.percentage.value",
        "150 is out of range",
        "0.0001 to 100",
    ),
    case(
        "abort-percentage-too-small",
        vs(fault(abort={"httpStatus": 503, "percentage": {"value": 0.00001}})),
        "VirtualService/web",
        "spec.http[0].fault.abort.percentage.value",
        "out of range",
    ),
    case(
        "percentage-not-number",
        vs(fault(abort={"httpStatus": 503, "percentage": {"value": "half"}})),
        "VirtualService/web",
        "spec.http[0].fault.abort.percentage.value",
        "must be a number",
    ),
    case(
        "percentage-unknown-field",
        vs(fault(abort={"httpStatus": 503, "percentage": {"valeu": 5}})),
        "VirtualService/web",
        "spec.http[0].fault.abort.percentage.valeu",
        "did you mean 'value'?",
    ),
    case(
        "abort-http-status-700",
        vs(fault(abort={"httpStatus": 700, "percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.abort.httpStatus",
        "700 is out of range",
        "200 to 600",
    ),
    case(
        "abort-no-status",
        vs(fault(abort={"percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.abort",
        "needs httpStatus",
    ),
    case(
        "abort-both-statuses",
        vs(fault(abort={"httpStatus": 503, "grpcStatus": "UNAVAILABLE", "percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.abort",
        "only one of httpStatus or grpcStatus",
    ),
    case(
        "abort-unknown-grpc-status",
        vs(fault(abort={"grpcStatus": "UNAVAILABEL", "percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.abort.grpcStatus",
        "is not a gRPC status",
        "UNAVAILABLE",
    ),
    case(
        "abort-removed-percent",
        vs(fault(abort={"httpStatus": 503, "percent": 50})),
        "VirtualService/web",
        "spec.http[0].fault.abort.percent",
        "was removed",
    ),
    case(
        "delay-exponential",
        vs(fault(delay={"exponentialDelay": "1s", "percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.delay.exponentialDelay",
        "not supported by Istio",
        "fixedDelay",
    ),
    case(
        "delay-without-fixedDelay",
        vs(fault(delay={"percentage": PCT})),
        "VirtualService/web",
        "spec.http[0].fault.delay.fixedDelay",
        "is required",
    ),
    case(
        "delay-percent-over-100",
        vs(fault(delay={"fixedDelay": "1s", "percent": 101})),
        "VirtualService/web",
        "spec.http[0].fault.delay.percent",
        "out of range",
    ),
    case("fault-empty", vs(fault()), "VirtualService/web", "spec.http[0].fault", "needs a delay, an abort, or both"),
    case(
        "retries-negative-attempts",
        vs(route(retries={"attempts": -1})),
        "VirtualService/web",
        "spec.http[0].retries.attempts",
        "out of range",
    ),
    case(
        "retries-zero-with-perTryTimeout",
        vs(route(retries={"attempts": 0, "perTryTimeout": "1s"})),
        "VirtualService/web",
        "spec.http[0].retries.attempts",
        "retries off",
        "perTryTimeout",
    ),
    case(
        "retries-unset-with-retryOn",
        vs(route(retries={"retryOn": "5xx"})),
        "VirtualService/web",
        "spec.http[0].retries.attempts",
        "retries off",
    ),
    case(
        "retries-bad-retryOn",
        vs(route(retries={"attempts": 2, "retryOn": "5xxx,reset"})),
        "VirtualService/web",
        "spec.http[0].retries.retryOn",
        "'5xxx' is not a retry condition",
        "did you mean '5xx'?",
    ),
    case(
        "retries-retryOn-empty-entry",
        vs(route(retries={"attempts": 2, "retryOn": "5xx,,reset"})),
        "VirtualService/web",
        "spec.http[0].retries.retryOn",
        "empty entry",
    ),
    case(
        "retries-retryOn-status-out-of-range",
        vs(route(retries={"attempts": 2, "retryOn": "5xx,99999999999"})),
        "VirtualService/web",
        "spec.http[0].retries.retryOn",
        "not an HTTP status code",
    ),
    case(
        "retries-attempts-over-int32",
        vs(route(retries={"attempts": 2**32})),
        "VirtualService/web",
        "spec.http[0].retries.attempts",
        "out of range",
    ),
    case(
        "weight-over-int32",
        vs(
            {
                "route": [
                    {"destination": {"host": "web"}, "weight": 2**32},
                    {"destination": {"host": "web"}, "weight": 1},
                ]
            }
        ),
        "VirtualService/web",
        "spec.http[0].route[0].weight",
        "out of range",
    ),
    case(
        "retries-retryOn-unicode-digit",
        vs(route(retries={"attempts": 2, "retryOn": "5\u00b2"})),
        "VirtualService/web",
        "spec.http[0].retries.retryOn",
        "is not a retry condition",
    ),
    case(
        "match-upper-case-header",
        vs(route(match=[{"headers": {"End-User": {"exact": "jason"}}}])),
        "VirtualService/web",
        "spec.http[0].match[0].headers.End-User",
        "must be lower case",
        "'end-user'",
    ),
    case(
        "match-header-bad-name",
        vs(route(match=[{"headers": {"end user\n": {"exact": "x"}}}])),
        "VirtualService/web",
        "spec.http[0].match[0].headers.end user\n",
        "not a valid header name",
    ),
    case(
        "stringmatch-exact-and-prefix",
        vs(route(match=[{"uri": {"exact": "/a", "prefix": "/"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri",
        "only one of exact, prefix or regex",
        "exact, prefix",
    ),
    case(
        "stringmatch-invalid-regex",
        vs(route(match=[{"uri": {"regex": "/api/[0-9"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri.regex",
        "not a valid regular expression",
    ),
    case(
        "stringmatch-regex-huge-repeat",
        vs(route(match=[{"uri": {"regex": "a{99999999999}"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri.regex",
        "not a valid regular expression",
    ),
    case(
        "stringmatch-regex-lookahead",
        vs(route(match=[{"headers": {"x": {"regex": "(?=a)a"}}}])),
        "VirtualService/web",
        "spec.http[0].match[0].headers.x.regex",
        "a lookahead",
        "RE2",
    ),
    case(
        "stringmatch-regex-backreference",
        vs(route(match=[{"uri": {"regex": "(a)\\1"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri.regex",
        "backreference",
        "RE2",
    ),
    case(
        "stringmatch-regex-repeat-over-1000",
        vs(route(match=[{"uri": {"regex": "a{2,1001}"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri.regex",
        "above 1000",
    ),
    case(
        "stringmatch-unknown-kind",
        vs(route(match=[{"uri": {"suffix": "/a"}}])),
        "VirtualService/web",
        "spec.http[0].match[0].uri.suffix",
        "unknown field",
    ),
    case(
        "unknown-field-did-you-mean",
        vs(route(retires={"attempts": 3})),
        "VirtualService/web",
        "spec.http[0].retires",
        "unknown field 'retires'",
        "did you mean 'retries'?",
    ),
    case("unknown-spec-field", vs(gateway=["gw"]), "VirtualService/web", "spec.gateway", "did you mean 'gateways'?"),
    case(
        "match-wrong-type",
        vs(route(match={"uri": {"prefix": "/"}})),
        "VirtualService/web",
        "spec.http[0].match",
        "must be a list",
        "a mapping",
    ),
    case(
        "mirror-percentage-out-of-range",
        vs(route(mirror={"host": "web"}, mirrorPercentage={"value": 150.0})),
        "VirtualService/web",
        "spec.http[0].mirrorPercentage.value",
        "out of range",
    ),
    case(
        "mirror-without-host",
        vs(route(mirror={"subset": "v2"})),
        "VirtualService/web",
        "spec.http[0].mirror.host",
        "is required",
    ),
    case(
        "redirect-bad-port",
        vs({"redirect": {"uri": "/x", "port": "eighty"}}),
        "VirtualService/web",
        "spec.http[0].redirect.port",
        "must be an integer",
    ),
    case(
        "redirect-bad-code",
        vs({"redirect": {"uri": "/x", "redirectCode": 200}}),
        "VirtualService/web",
        "spec.http[0].redirect.redirectCode",
        "out of range",
    ),
    case(
        "directResponse-without-status",
        vs({"directResponse": {"body": {"string": "x"}}}),
        "VirtualService/web",
        "spec.http[0].directResponse.status",
        "is required",
    ),
    case(
        "delegate-unsupported",
        vs({"delegate": {"name": "x"}}),
        "VirtualService/web",
        "spec.http[0].delegate",
        "not supported",
    ),
    case(
        "header-set-bad-name",
        vs(route(headers={"request": {"set": {"x y": "1"}}})),
        "VirtualService/web",
        "spec.http[0].headers.request.set.x y",
        "not a valid header name",
    ),
    case(
        "header-remove-empty-name",
        vs(route(headers={"response": {"remove": [""]}})),
        "VirtualService/web",
        "spec.http[0].headers.response.remove[0]",
        "not a valid header name",
    ),
    case(
        "header-add-value-newline",
        vs(route(headers={"request": {"add": {"x-a": "1\r\nx-b: 2"}}})),
        "VirtualService/web",
        "spec.http[0].headers.request.add.x-a",
        "NUL, CR or LF",
    ),
    case(
        "redirect-uri-newline",
        vs({"redirect": {"uri": "/x\n"}}),
        "VirtualService/web",
        "spec.http[0].redirect.uri",
        "NUL, CR or LF",
    ),
    case(
        "rewrite-authority-newline",
        vs(route(rewrite={"authority": "a\nb"})),
        "VirtualService/web",
        "spec.http[0].rewrite.authority",
        "NUL, CR or LF",
    ),
    case(
        "rewrite-uri-not-string",
        vs(route(rewrite={"uri": ["/a"]})),
        "VirtualService/web",
        "spec.http[0].rewrite.uri",
        "must be a string",
    ),
    case(
        "header-set-value-not-string",
        vs(route(headers={"request": {"set": {"x-n": 1}}})),
        "VirtualService/web",
        "spec.http[0].headers.request.set.x-n",
        "must be a string",
    ),
    case(
        "vs-gateway-not-defined",
        vs(gateways=["no-such-gateway"]),
        "VirtualService/web",
        "spec.gateways",
        "'no-such-gateway' is not defined",
    ),
    case(
        "destination-port-missing-on-multi-port-service",
        [service(ports=[{"name": "http", "port": 80}, {"name": "http-admin", "port": 81}]), vs()],
        "VirtualService/web",
        "spec.http[0].route[0].destination.port",
        "several ports",
    ),
    case(
        "destination-port-not-on-service",
        [service(), vs({"route": [{"destination": {"host": "web", "port": {"number": 1234}}}]})],
        "VirtualService/web",
        "spec.http[0].route[0].destination.port.number",
        "no port 1234",
    ),
    # ---- DestinationRule
    case("dr-missing-host", {**dr(), "spec": {"subsets": []}}, "DestinationRule/web", "spec.host", "is required"),
    case(
        "dr-invalid-subset-name",
        dr(subsets=[{"name": "V1_x", "labels": {"version": "v1"}}]),
        "DestinationRule/web",
        "spec.subsets[0].name",
        "not a valid subset name",
    ),
    case(
        "dr-duplicate-subset",
        dr(subsets=[{"name": "v1", "labels": {}}, {"name": "v1", "labels": {}}]),
        "DestinationRule/web",
        "spec.subsets[1].name",
        "subset 'v1' is defined twice",
    ),
    case(
        "dr-max-ejection-150",
        dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 150}}),
        "DestinationRule/web",
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        "150 is out of range",
        "0 to 100",
    ),
    case(
        "dr-local-origin-without-split",
        dr(trafficPolicy={"outlierDetection": {"consecutiveLocalOriginFailures": 3}}),
        "DestinationRule/web",
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
        "needs splitExternalLocalOriginErrors",
    ),
    case(
        "dr-outlier-bad-interval",
        dr(trafficPolicy={"outlierDetection": {"interval": "10"}}),
        "DestinationRule/web",
        "spec.trafficPolicy.outlierDetection.interval",
        "is not a duration",
    ),
    case(
        "dr-connection-pool-empty",
        dr(trafficPolicy={"connectionPool": {}}),
        "DestinationRule/web",
        "spec.trafficPolicy.connectionPool",
        "needs tcp or http",
    ),
    case(
        "dr-pool-negative",
        dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": -1}}}),
        "DestinationRule/web",
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        "out of range",
    ),
    case(
        "dr-retry-budget-over-uint32",
        dr(trafficPolicy={"retryBudget": {"minRetryConcurrency": 2**32}}),
        "DestinationRule/web",
        "spec.trafficPolicy.retryBudget.minRetryConcurrency",
        "out of range",
    ),
    case(
        "dr-pool-over-uint32",
        dr(trafficPolicy={"connectionPool": {"http": {"http2MaxRequests": 2**32}}}),
        "DestinationRule/web",
        "spec.trafficPolicy.connectionPool.http.http2MaxRequests",
        "out of range",
    ),
    case(
        "dr-lb-simple-invalid",
        dr(trafficPolicy={"loadBalancer": {"simple": "FASTEST"}}),
        "DestinationRule/web",
        "spec.trafficPolicy.loadBalancer.simple",
        "'FASTEST' is not a load balancer",
        "ROUND_ROBIN",
    ),
    case(
        "dr-subset-unknown-field",
        dr(subsets=[{"name": "v1", "lables": {}}]),
        "DestinationRule/web",
        "spec.subsets[0].lables",
        "did you mean 'labels'?",
    ),
    case(
        "dr-port-level-without-number",
        dr(trafficPolicy={"portLevelSettings": [{"loadBalancer": {"simple": "RANDOM"}}]}),
        "DestinationRule/web",
        "spec.trafficPolicy.portLevelSettings[0].port.number",
        "is required",
    ),
    # ---- Gateway
    case(
        "gateway-server-without-hosts",
        gateway(servers=[{"port": {"number": 80, "name": "http", "protocol": "HTTP"}}]),
        "Gateway/gw",
        "spec.servers[0].hosts",
        "at least one host",
    ),
    case("gateway-no-servers", gateway(servers=[]), "Gateway/gw", "spec.servers", "at least one server"),
    case(
        "gateway-bad-protocol",
        gateway(servers=[{"port": {"number": 80, "name": "http", "protocol": "HTTQ"}, "hosts": ["*"]}]),
        "Gateway/gw",
        "spec.servers[0].port.protocol",
        "is not a protocol",
    ),
    case(
        "gateway-server-without-port",
        gateway(servers=[{"hosts": ["*"]}]),
        "Gateway/gw",
        "spec.servers[0].port",
        "is required",
    ),
    # ---- warnings: accepted, but reported
    case(
        "warn-subset-not-defined",
        [service(), vs({"route": [{"destination": {"host": "web", "subset": "v9"}}]})],
        "VirtualService/web",
        "spec.http[0].route[0].destination.subset",
        "subset 'v9'",
        "503",
        "NC",
        severity="warning",
    ),
    case(
        "warn-deprecated-percent",
        vs(fault(delay={"fixedDelay": "1s", "percent": 50})),
        "VirtualService/web",
        "spec.http[0].fault.delay.percent",
        "deprecated",
        "percentage",
        severity="warning",
    ),
    case(
        "warn-abort-without-percentage",
        vs(fault(abort={"httpStatus": 503})),
        "VirtualService/web",
        "spec.http[0].fault.abort.percentage",
        "no request is aborted",
        severity="warning",
    ),
    case(
        "warn-delay-without-percentage",
        vs(fault(delay={"fixedDelay": "1s"})),
        "VirtualService/web",
        "spec.http[0].fault.delay.percentage",
        "no request is delayed",
        severity="warning",
    ),
    case(
        "warn-cors-unhonoured",
        vs(route(corsPolicy={"allowOrigins": [{"exact": "*"}]})),
        "VirtualService/web",
        "spec.http[0].corsPolicy",
        "not honoured",
        severity="warning",
    ),
    case(
        "warn-dr-tls-unhonoured",
        dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}),
        "DestinationRule/web",
        "spec.trafficPolicy.tls",
        "not honoured",
        severity="warning",
    ),
    case(
        "warn-gateway-tls-unhonoured",
        gateway(
            servers=[
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["*"],
                    "tls": {"httpsRedirect": True},
                }
            ]
        ),
        "Gateway/gw",
        "spec.servers[0].tls",
        "not honoured",
        severity="warning",
    ),
    case(
        "warn-consecutive-errors-deprecated",
        dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 5}}),
        "DestinationRule/web",
        "spec.trafficPolicy.outlierDetection.consecutiveErrors",
        "deprecated",
        severity="warning",
    ),
    case(
        "warn-service-selects-nothing",
        [deployment(), service(selector={"app": "nobody"})],
        "Service/web",
        "spec.selector",
        "selects no Deployment",
        severity="warning",
    ),
    case(
        "warn-mirror-percent-deprecated",
        vs(route(mirror={"host": "web"}, mirrorPercent=50)),
        "VirtualService/web",
        "spec.http[0].mirrorPercent",
        "deprecated",
        severity="warning",
    ),
]


def _show(problems: list[Problem]) -> str:
    return (
        "\n".join(f"  {p.severity}: {p.file} | {p.obj!r} | {p.field!r} | {p.message}" for p in problems)
        or "  (no problems)"
    )


def _find(problems: list[Problem], file: str, c: Case) -> Problem:
    for p in problems:
        if (
            p.file == file
            and p.obj == c.obj
            and p.field == c.field
            and p.severity == c.severity
            and all(s in p.message for s in c.phrases)
        ):
            return p
    raise AssertionError(
        f"expected {c.severity} at {c.obj!r} {c.field!r} containing {c.phrases}; got:\n{_show(problems)}"
    )


def test_bad_input_table_is_broad() -> None:
    ids = [p.values[0].id for p in BAD_INPUTS]
    assert len(ids) == len(set(ids))
    assert sum(1 for p in BAD_INPUTS if p.values[0].severity == "error") >= 25


@pytest.mark.parametrize("c", BAD_INPUTS)
def test_validate_reports_bad_input(tmp_path: Path, c: Case) -> None:
    path = tmp_path / f"{c.id}.yaml"
    path.write_text(c.text, encoding="utf-8")
    problems = validate([path])
    _find(problems, str(path), c)
    if c.severity == "warning":
        # Reported, not rejected: the input is still usable.
        assert not [p for p in problems if p.severity == "error"], _show(problems)
    else:
        with pytest.raises(ConfigError):
            load_topology(path)


def test_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    problems = validate([missing])
    assert [(p.file, p.obj, p.field, p.severity) for p in problems] == [(str(missing), "file", "", "error")]
    assert "no such file" in problems[0].message


def test_load_topology_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_topology(tmp_path / "nope")


def test_load_topology_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no YAML documents"):
        load_topology(tmp_path)


def test_problem_names_document_index_in_multi_doc_file(tmp_path: Path) -> None:
    path = tmp_path / "multi.yaml"
    path.write_text(dump(service(), {"apiVersion": "v1", "spec": {}}), encoding="utf-8")
    problems = validate([path])
    assert [(p.obj, p.field) for p in problems if p.severity == "error"] == [("document 2", "kind")]


def test_list_kind_items_are_expanded_and_located(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(dump({"apiVersion": "v1", "kind": "List", "items": [service(), "oops"]}), encoding="utf-8")
    problems = validate([path])
    assert [(p.obj, p.field) for p in problems if p.severity == "error"] == [("document 1 item 2", "")]


def test_all_problems_are_collected_not_just_the_first(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        dump(
            deployment(replicas=-1),
            service(ports=[]),
            vs(route(timeout="5 seconds", retires={})),
            dr(trafficPolicy={"connectionPool": {}}),
        ),
        encoding="utf-8",
    )
    fields = {(p.obj, p.field) for p in validate([path]) if p.severity == "error"}
    assert {
        ("Deployment/web", "spec.replicas"),
        ("Service/web", "spec.ports"),
        ("VirtualService/web", "spec.http[0].timeout"),
        ("VirtualService/web", "spec.http[0].retires"),
        ("DestinationRule/web", "spec.trafficPolicy.connectionPool"),
    } <= fields


def test_load_topology_error_lists_file_object_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(dump(service(), vs(fault(abort={"httpStatus": 700, "percentage": PCT}))), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    text = str(info.value)
    assert str(path) in text
    assert "VirtualService/web" in text
    assert "spec.http[0].fault.abort.httpStatus" in text
    assert "700 is out of range" in text
    assert all(p.severity == "error" for p in info.value.problems if "700" in p.message)


def test_load_topology_keeps_warnings(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(dump(service(), vs(fault(abort={"httpStatus": 503}))), encoding="utf-8")
    topo = load_topology(path)
    assert [(w.obj, w.field) for w in topo.warnings] == [("VirtualService/web", "spec.http[0].fault.abort.percentage")]
    assert topo.virtual_services["web"].http[0].fault.abort.percentage is None  # type: ignore[union-attr]


# --------------------------------------------------------------------------- good inputs


def test_sdc_fixture_has_no_problems() -> None:
    problems = validate([REPO / "fixtures" / "sdc"])
    assert not [p for p in problems if p.severity == "error"], _show(problems)
    topo = load_topology(REPO / "fixtures" / "sdc")
    assert set(topo.services) == {"proxy-access-control", "http-lb", "clover-server", "snort-ids"}
    assert set(topo.gateways) == {"sdc-gateway"}


SAMPLE_FILES = sorted(p for p in glob.glob(str(SAMPLES / "*.yaml")) if Path(p) != BOOKINFO_SERVICES)


def test_there_are_istio_samples() -> None:
    assert len(SAMPLE_FILES) >= 10


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: Path(p).stem)
def test_istio_sample_validates_with_services(sample: str) -> None:
    problems = validate([sample, BOOKINFO_SERVICES])
    errors = [p for p in problems if p.severity == "error"]
    assert not errors, _show(problems)


def test_deprecated_percent_sample_warns_and_keeps_value() -> None:
    sample = SAMPLES / "fault-injection-deprecated-percent.yaml"
    problems = validate([sample, BOOKINFO_SERVICES])
    assert any(p.field == "spec.http[0].fault.delay.percent" and p.severity == "warning" for p in problems)
    objs, probs = parse_istio_text(sample.read_text(), str(sample))
    assert not [p for p in probs if p.severity == "error"]
    first = objs[0]
    assert isinstance(first, VirtualService) and first.http[0].fault is not None
    delay = first.http[0].fault.delay
    assert delay is not None
    assert (delay.percent, delay.percentage, delay.fixed_delay_ms) == (50, None, 5000.0)


@pytest.mark.parametrize(
    "doc",
    [
        vs(route(match=[{"uri": {"regex": "[[:alpha:]]+"}}])),  # FutureWarning in re: must not fail under -W error
        vs(
            route(match=[{"uri": {"regex": "(?P<id>[0-9]+)(?i)x(?U)y+(?s:.)"}}])
        ),  # RE2: flags anywhere, U, named groups
        vs(route(match=[{"headers": {"x-a": {"prefix": ""}}}])),  # an empty prefix is a presence match
        vs(route(match=[{"headers": {"x-a": {"exact": "a\nb"}}}])),  # Envoy accepts any matcher value
        vs(route(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}])),
        vs(hosts=["web", "web.default.svc.cluster.local", "*.example.com", "*", "Web.Example"]),
        vs(route(headers={"request": {"set": {":authority": "a.example", "x-a": ""}}})),
        vs(route(retries={"attempts": 2147483647, "retryOn": "100,599,5xx"}, timeout="87600h")),
        vs({"redirect": {"uri": "/n", "scheme": "https", "port": 8443, "redirectCode": 308}}),
        # An image and no local command: the embedded mesh says so at deploy; a cluster runs it.
        deployment(),
        # A local command and no image: the embedded mesh runs it; a cluster backend says so at deploy.
        with_spec(
            with_spec(deployment(), "spec.template.spec.containers", [{"name": "web"}]),
            "spec.template.metadata.annotations",
            {"clover.opnfv.org/local-command": "{python} -m web --port {port}"},
        ),
    ],
)
def test_edge_inputs_are_accepted(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(dump(doc), encoding="utf-8")
    problems = validate([path])
    assert not [p for p in problems if p.severity == "error"], _show(problems)


def test_empty_prefix_becomes_presence_match() -> None:
    objs, problems = parse_istio_text(dump(vs(route(match=[{"headers": {"x-a": {"prefix": ""}}}]))))
    assert problems == []
    assert objs[0].http[0].matches[0].headers["x-a"].kind == "present"  # type: ignore[union-attr]


def test_v1alpha3_and_v1beta1_are_accepted(tmp_path: Path) -> None:
    for version in ("v1alpha3", "v1beta1", "v1"):
        path = tmp_path / f"{version}.yaml"
        path.write_text(dump({**vs(), "apiVersion": f"networking.istio.io/{version}"}), encoding="utf-8")
        assert not validate([path]), version


def test_trailing_empty_document_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(dump(service()) + "---\n", encoding="utf-8")
    assert validate([path]) == []


# --------------------------------------------------------------------------- parse_istio_text


def test_parse_istio_text_rejects_kube_objects() -> None:
    objs, problems = parse_istio_text(dump(service(), vs()), "inline.yaml")
    assert [type(o).__name__ for o in objs] == ["VirtualService"]
    assert [(p.file, p.obj, p.field) for p in problems] == [("inline.yaml", "Service/web", "kind")]
    assert "only Istio objects" in problems[0].message


def test_parse_istio_text_reports_problems_with_given_file() -> None:
    objs, problems = parse_istio_text("kind: [", "<apply>")
    assert objs == []
    assert [(p.file, p.obj) for p in problems] == [("<apply>", "file")]


def test_parse_istio_text_parses_fields() -> None:
    text = dump(
        vs(
            route(
                match=[{"name": "m", "headers": {"end-user": {"exact": "jason"}}, "uri": {"regex": "*"}}],
                timeout="1h30m",
                retries={"attempts": 3, "perTryTimeout": "500ms", "retryOn": "503,5xx"},
                fault={
                    "delay": {"fixedDelay": "1.5s", "percentage": {"value": 0.57}},
                    "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 1}},
                },
            )
        )
    )
    objs, problems = parse_istio_text(text)
    assert problems == []
    first = objs[0]
    assert isinstance(first, VirtualService)
    h = first.http[0]
    assert h.retries is not None and h.fault is not None and h.fault.delay is not None and h.fault.abort is not None
    assert h.matches[0].uri is not None
    assert h.timeout_ms == 5_400_000.0
    assert (h.retries.attempts, h.retries.per_try_timeout_ms, h.retries.retry_on) == (3, 500.0, "503,5xx")
    assert h.fault.delay.fixed_delay_ms == 1500.0 and h.fault.delay.percentage == 0.57
    assert h.fault.abort.grpc_status == "UNAVAILABLE" and h.fault.abort.percentage == 1.0
    assert h.matches[0].uri.kind == "present"
    assert h.matches[0].headers["end-user"].kind == "exact"


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h30m", 5_400_000.0),
        ("1.5s", 1500.0),
        ("500ms", 500.0),
        ("2m", 120_000.0),
        ("1h", 3_600_000.0),
        ("10s", 10_000.0),
        ("0.5s", 500.0),
        (".5s", 500.0),
        ("1m30s", 90_000.0),
        ("1000us", 1.0),
        ("2000000ns", 2.0),
        ("1s500ms", 1500.0),
    ],
)
def test_parse_duration(text: str, ms: float) -> None:
    assert parse_duration(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5 seconds",
        "s",
        "1.5",
        "-1s",
        "1d",
        "1S",
        " 1s",
        "1s ",
        "1h 30m",
        "ms",
        "1..5s",
        None,
        5,
        1.5,
        True,
        [],
        {},
    ],
)
def test_parse_duration_rejects(text: Any) -> None:
    assert parse_duration(text) is None


# --------------------------------------------------------------------------- bad-input fixture folder


def test_bad_fixture_folder_each_file_has_an_error() -> None:
    files = sorted(BAD_DIR.glob("*.yaml"))
    assert files, "tests/data/bad holds the bad-input fixtures"
    for f in files:
        problems = validate([f])
        errors = [p for p in problems if p.severity == "error" and p.file == str(f)]
        assert errors, f"{f.name}: no error\n{_show(problems)}"
        # Each fixture states the field it expects on its first line: "# expect: <obj> | <field> | <phrase>".
        first = f.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# expect: "), f.name
        obj, field, phrase = (s.strip() for s in first.removeprefix("# expect: ").split("|"))
        assert any(p.obj == obj and p.field == field and phrase in p.message for p in errors), (
            f"{f.name}\n{_show(problems)}"
        )


# --------------------------------------------------------------------------- input size and cost


def _over_the_limit() -> str:
    """Valid YAML (one comment) one byte larger than the limit: only its size is wrong."""
    return "#" * MAX_YAML_BYTES + "\n"


def test_validate_refuses_a_file_larger_than_the_limit_giving_its_size_and_the_limit(tmp_path: Path) -> None:
    # 50 MB of Deployments kept `clover validate` busy for minutes at 700 MB; the limit stops it at the door.
    path = tmp_path / "huge.yaml"
    path.write_text(_over_the_limit(), encoding="utf-8")
    problems = validate([path])
    assert [(p.file, p.obj, p.field, p.severity) for p in problems] == [(str(path), "file", "", "error")]
    assert f"({MAX_YAML_BYTES + 1} bytes)" in problems[0].message
    assert f"the 2.0 MiB ({MAX_YAML_BYTES} bytes) pytest-clover reads" in problems[0].message
    assert "split it into several files" in problems[0].message


def test_load_topology_and_parse_istio_text_refuse_input_larger_than_the_limit(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_text(_over_the_limit(), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"huge\.yaml: file: error: is 2\.0 MiB \(2097153 bytes\), more than"):
        load_topology(tmp_path)
    _, problems = parse_istio_text(_over_the_limit(), "big.yaml")
    assert [(p.file, p.obj, p.severity) for p in problems] == [("big.yaml", "file", "error")]
    assert "more than the 2.0 MiB" in problems[0].message


def test_input_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    text = dump(service())
    path.write_text(text + "#" * (MAX_YAML_BYTES - len(text) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_YAML_BYTES
    assert validate([path]) == []


def test_the_limit_keeps_an_applied_text_within_the_supervisors_line_limit() -> None:
    # `clover apply` sends the text as one JSON line; the embedded mesh's control socket reads lines up to
    # 16 MiB (asyncio's limit=2**24 in backends/local/supervisor.py). A control character is JSON's worst case.
    worst = json.dumps({"op": "apply", "text": "\x01" * MAX_YAML_BYTES, "source": "x" * 4096})
    assert len(worst.encode()) + 1 < 2**24


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"kind: Service\n\x9c\xff")
    problems = validate([path])
    assert [(p.file, p.obj, p.severity) for p in problems] == [(str(path), "file", "error")]
    assert "is not UTF-8 text (byte 14 is 0x9c)" in problems[0].message


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"\x9c\xff\x00", "is not UTF-8 text"),
        (("#" * MAX_YAML_BYTES + "\n").encode(), "more than the 2.0 MiB"),
        (b"kind: VirtualService\nmetadata: {name: [", "not valid YAML"),
        (b"kind: VirtualService\nmetadata: [a]\n", "only named Istio objects"),
    ],
)
def test_a_fault_file_that_cannot_be_used_is_a_config_error_naming_it(
    tmp_path: Path, content: bytes, phrase: str
) -> None:
    # faults.apply(path) reads with read_istio_file: a binary file was a UnicodeDecodeError, a huge one unbounded.
    path = tmp_path / "fault.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(str(path))) as info:
        read_istio_file(path)
    assert phrase in str(info.value)


class _CountedLabels(dict[str, str]):
    """Pod labels that count how often they are looked up."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        _CountedLabels.lookups += 1
        return super().get(key, default)


def test_cross_object_checks_grow_linearly_with_the_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every Service was compared with every Deployment, and every subset route looked through every
    # DestinationRule: a topology of a few thousand of each took minutes. Counted, not timed.
    n = 300
    docs: list[Any] = []
    for i in range(n):
        labels = {"app": f"s{i}", "version": "v1"}
        docs.append(
            with_spec(
                with_spec(deployment(f"d{i}"), "spec.selector", {"matchLabels": labels}),
                "spec.template.metadata.labels",
                labels,
            )
        )
        docs += [
            service(f"s{i}", selector={"app": f"s{i}"}),
            dr(f"r{i}", host=f"s{i}", subsets=[{"name": "v1", "labels": {"version": "v1"}}]),
        ]
        docs.append(vs({"route": [{"destination": {"host": f"s{i}", "subset": "v1"}}]}, name=f"v{i}", hosts=[f"s{i}"]))
    problems: list[Problem] = []
    objects = parse_documents([Document(Source("big.yaml", i), d) for i, d in enumerate(docs)], problems)
    assert problems == []
    topo = Topology()
    for obj in objects:
        topo.add(
            dataclasses.replace(obj, pod_labels=_CountedLabels(obj.pod_labels)) if isinstance(obj, Deployment) else obj
        )
    hosts = 0
    resolve = Topology.service_for_host

    def counted(self: Topology, host: str, namespace: str | None = None) -> Any:
        nonlocal hosts
        hosts += 1
        return resolve(self, host, namespace)

    monkeypatch.setattr(Topology, "service_for_host", counted)
    _CountedLabels.lookups = 0
    check_references(topo, problems)
    assert problems == []
    assert _CountedLabels.lookups <= 4 * n  # was n * n
    assert hosts <= 4 * n  # was n * n


# --------------------------------------------------------------------------- names across namespaces

_LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(name=_LABEL, namespace=_LABEL, other=_LABEL)
def test_resolve_host_reads_a_short_name_in_the_objects_namespace_and_dotted_forms_as_written(
    name: str, namespace: str, other: str
) -> None:
    assert resolve_host(name, namespace) == (name, namespace)
    for host in (f"{name}.{other}", f"{name}.{other}.svc", f"{name}.{other}.svc.cluster.local"):
        assert resolve_host(host, namespace) == (name, other), host
    for host in ("*", f"*.{other}.svc.cluster.local", f"{name}.{other}.example.com", f"{name}.{other}.svc.x"):
        assert resolve_host(host, namespace) is None, host
    assert resolve_gateway(name, namespace) == (namespace, name)
    assert resolve_gateway(f"{other}/{name}", namespace) == (other, name)


def _app(namespace: str, *docs: dict[str, Any]) -> Topology:
    """Objects of one namespace (as the store holds them), checked against nothing else."""
    problems: list[Problem] = []
    placed = [{**d, "metadata": {**d["metadata"], "namespace": namespace}} for d in docs]
    objects = parse_documents([Document(Source("t.yaml", i), d) for i, d in enumerate(placed)], problems)
    topo = Topology(namespace=namespace)
    for obj in objects:
        topo.add(obj)
    return topo


def _svc(name: str, port: int = 9080) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


def _route_to(name: str, host: str, gateways: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": ["*"], "http": [{"route": [{"destination": {"host": host}}]}]}
    if gateways is not None:
        spec["gateways"] = gateways
    return {"apiVersion": ISTIO, "kind": "VirtualService", "metadata": {"name": name}, "spec": spec}


def test_service_for_host_with_a_namespace_reads_short_names_there() -> None:
    topo = _app("sdc2", _svc("reviews"))
    svc = topo.services["reviews"]
    assert topo.service_for_host("reviews", "sdc2") is svc
    assert topo.service_for_host("reviews.sdc2", "default") is svc
    assert topo.service_for_host("reviews", "default") is None  # reviews.default, another Service
    assert topo.service_for_host("reviews.default.svc.cluster.local") is None
    moved = topo.in_namespace("sdc3")
    assert moved.namespace == "sdc3" and moved.services["reviews"].fqdn == "reviews.sdc3.svc.cluster.local"
    assert topo.services["reviews"].namespace == "sdc2"  # the original is untouched


def test_check_references_resolves_other_namespaces_when_it_sees_them() -> None:
    gateway = {
        "apiVersion": ISTIO,
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80, "name": "http",
                 "protocol": "HTTP"}, "hosts": ["*"]}]},
    }  # fmt: skip
    others = {"sdc2": _app("sdc2", _svc("reviews"), _svc("multi") | {"spec": {"selector": {"app": "m"}, "ports": [
        {"name": "http", "port": 1}, {"name": "http-2", "port": 2}]}}, gateway)}  # fmt: skip
    topo = _app(
        "default",
        _svc("web"),
        _route_to("to-reviews", "reviews.sdc2"),
        _route_to("to-missing", "missing.sdc2.svc.cluster.local"),
        _route_to("to-multi", "multi.sdc2"),
        _route_to("via-gw", "web", gateways=["sdc2/gw"]),
        _route_to("via-no-gw", "web", gateways=["sdc2/nope"]),
    )
    problems: list[Problem] = []
    check_references(topo, problems, others)
    found = {(p.obj, p.severity, p.field): p.message for p in problems}
    assert not [k for k in found if k[0] in ("VirtualService/to-reviews", "VirtualService/via-gw")], found
    assert "is not a Service of namespace 'sdc2'" in found[
        ("VirtualService/to-missing", "warning", "spec.http[0].route[0].destination.host")]  # fmt: skip
    assert "has several ports" in found[("VirtualService/to-multi", "error", "spec.http[0].route[0].destination.port")]
    assert "'sdc2/nope' is not defined" in found[("VirtualService/via-no-gw", "error", "spec.gateways")]
    # Without the other namespaces in view, the same references are taken as the one-namespace mesh took them.
    alone: list[Problem] = []
    check_references(topo, alone, None)
    assert ("VirtualService/to-reviews", "warning") in {(p.obj, p.severity) for p in alone}
