"""Fuzzing the validator and the translator: any input gives problems, never a traceback.

Three kinds of input: arbitrary JSON-like documents, real documents (the SDC fixture and the Istio
samples) mutated at random paths, and raw text full of YAML syntax. Parsing must only ever return
problems, each naming a file, an object and what is wrong; whatever parses without errors must also
render for a sidecar and a gateway, into JSON Envoy could read.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from pytest_clover.backends.local.translate import Endpoint, InboundPort, ProxySpec, render_bootstrap, render_resources
from pytest_clover.errors import Problem
from pytest_clover.istio import Topology, build_topology, parse_documents, parse_istio_text, parse_text
from pytest_clover.istio.model import Source
from pytest_clover.istio.parse import Document

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "istio-samples"
FILE = "fuzz.yaml"

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------- the checks


def make_spec(**fields: Any) -> ProxySpec:
    """A ProxySpec from the fields it has (``xds_dir`` went away when xDS moved from files to ADS)."""
    known = {f.name for f in dataclasses.fields(ProxySpec)}
    return ProxySpec(**{k: v for k, v in fields.items() if k in known})


def _sidecar(topo: Topology) -> ProxySpec:
    dep = next(iter(sorted(topo.deployments.values(), key=lambda d: d.name)), None)
    labels = dict(dep.pod_labels) if dep else {"app": "fuzz"}
    ports = [p.port for p in dep.containers[0].ports] if dep and dep.containers else [9080]
    return make_spec(
        name="fuzz-0",
        namespace=topo.namespace,
        kind="sidecar",
        ip="127.0.0.2",
        admin_port=15000,
        labels=labels,
        xds_dir="/nonexistent/xds",
        access_log="/nonexistent/access.log",
        outbound_port=15001,
        inbound=tuple(InboundPort(p, p, 20000 + i) for i, p in enumerate(ports)),
    )


def _gateway(topo: Topology) -> ProxySpec:
    ports = {s.port: 8000 + i for i, s in enumerate(s for g in topo.gateways.values() for s in g.servers)}
    return make_spec(
        name="gw-0",
        namespace=topo.namespace,
        kind="gateway",
        ip="127.0.0.3",
        admin_port=15000,
        labels={"istio": "ingressgateway"},
        xds_dir="/nonexistent/xds",
        access_log="/nonexistent/access.log",
        gateway_ports=ports or {80: 8080},
    )


def _endpoints(topo: Topology) -> dict[tuple[str, int], list[Endpoint]]:
    out: dict[tuple[str, int], list[Endpoint]] = {}
    for svc in topo.services.values():
        for sp in svc.ports:
            eps = out.setdefault((svc.name, sp.port), [])
            for i, dep in enumerate(topo.deployments.values()):
                if svc.selector and all(dep.pod_labels.get(k) == v for k, v in svc.selector.items()):
                    eps.append(Endpoint(f"{dep.name}-0", f"127.0.1.{i + 1}", 9080, dict(dep.pod_labels)))
    return out


def _event(name: str) -> None:
    try:
        event(name)  # shown by --hypothesis-show-statistics
    except InvalidArgument:  # called from a plain test
        pass


def check_problems(problems: list[Problem]) -> None:
    for p in problems:
        assert isinstance(p, Problem)
        assert isinstance(p.file, str) and p.file, p
        assert isinstance(p.obj, str) and p.obj, p
        assert isinstance(p.field, str), p
        assert isinstance(p.message, str) and p.message.strip(), p
        assert p.severity in ("error", "warning"), p
        str(p)  # printable


def check_render(topo: Topology) -> None:
    eps = _endpoints(topo)
    for proxy in (_sidecar(topo), _gateway(topo)):
        files = render_resources(topo, eps, proxy)
        # The xDS writer dumps these as JSON; NaN or infinity would be unreadable for Envoy.
        json.dumps(files, allow_nan=False)
        json.dumps(render_bootstrap(proxy), allow_nan=False)
        assert "cds.json" in files and "lds.json" in files


def check_documents(docs: list[Document], problems: list[Problem] | None = None) -> list[Problem]:
    problems = [] if problems is None else problems
    objects = parse_documents(docs, problems)
    topo = build_topology(objects, problems)
    check_problems(problems)
    if not [p for p in problems if p.severity == "error"]:
        check_render(topo)
        _event("rendered" if topo.services else "rendered (no services)")
    else:
        _event("rejected")
    return problems


def check_text(text: str) -> list[Problem]:
    problems: list[Problem] = []
    docs = parse_text(text, FILE, problems)
    check_documents(docs, problems)
    _istio, more = parse_istio_text(text, FILE)
    check_problems(more)
    return problems


def as_documents(bodies: list[Any]) -> list[Document]:
    return [Document(Source(FILE, i), body) for i, body in enumerate(bodies)]


# --------------------------------------------------------------------------- strategies

VOCAB = (
    "kind apiVersion metadata name namespace labels annotations spec items hosts gateways http match route "
    "destination host subset port number weight timeout retries attempts perTryTimeout retryOn "
    "retryIgnorePreviousHosts backoff fault delay abort fixedDelay exponentialDelay percentage percent value "
    "httpStatus grpcStatus mirror mirrorPercentage mirrorPercent mirrors headers request response set add remove "
    "uri exact prefix regex sourceLabels sourceNamespace ignoreUriCase queryParams withoutHeaders method scheme "
    "authority redirect redirectCode directResponse status body string rewrite delegate corsPolicy tls tcp "
    "trafficPolicy connectionPool maxConnections connectTimeout http1MaxPendingRequests http2MaxRequests maxRetries "
    "maxRequestsPerConnection idleTimeout outlierDetection consecutive5xxErrors consecutiveGatewayErrors interval "
    "baseEjectionTime maxEjectionPercent minHealthPercent splitExternalLocalOriginErrors "
    "consecutiveLocalOriginFailures loadBalancer simple subsets portLevelSettings retryBudget minRetryConcurrency "
    "selector servers protocol replicas matchLabels template containers image command args ports containerPort "
    "targetPort appProtocol env valueFrom fieldRef fieldPath readinessProbe httpGet tcpSocket path"
).split()
KINDS = ["Deployment", "Service", "Gateway", "VirtualService", "DestinationRule", "List", "ConfigMap", ""]
API_VERSIONS = [
    "apps/v1",
    "v1",
    "networking.istio.io/v1",
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "v2",
]

SPECIAL_STRINGS = [
    "", "*", "-", "1.5ms", "500us", "0s", "-1s", "1h30m", "10s", "9" * 400 + "s", "1e9h", "nan", "inf",
    "UNAVAILABLE", "5xx,503", "503", "5xx,,", "\u00b2", "99999999999", "(?=a)", "[", "a{99999999999}", "[[:a:]]",
    "(", "\\", "v1", "V1", "reviews", "reviews.default.svc.cluster.local", "mesh", "default/sdc-gateway", "http",
    "HTTP", "GRPC", "ROUND_ROBIN", "PASSTHROUGH", "\n", "a\nb", "\x00", "é", "\U0001f642", ":authority", "host",
    "End-User", "@request.auth.claims.x", "metadata.labels['version']", "0x10", "true", "null", "~",
]  # fmt: skip
SPECIAL_NUMBERS = [
    0,
    -1,
    1,
    80,
    9080,
    65535,
    65536,
    100,
    101,
    199,
    200,
    600,
    601,
    1000,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    2**1000,
]  # (more than 4300 digits: see the explicit test below)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(SPECIAL_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.00001, 0.0001, 0.57, 99.99999, 100.0, 100.0001, 1e300, -0.0]),
    st.text(max_size=12),
    st.sampled_from(SPECIAL_STRINGS),
    st.sampled_from(VOCAB),
)
keys = st.one_of(
    st.sampled_from(VOCAB),
    st.text(max_size=8),
    st.sampled_from(["End-User", "x\ny", ""]),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


@st.composite
def object_like(draw: st.DrawFn) -> dict[str, Any]:
    """Something shaped like a Kubernetes object, with an arbitrary spec (reaches the per-kind parsers)."""
    doc: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(API_VERSIONS)),
        "kind": draw(st.sampled_from(KINDS)),
        "metadata": {"name": draw(st.sampled_from(["web", "reviews", "sdc-gateway", "x"]))},
        "spec": draw(st.dictionaries(st.sampled_from(VOCAB), json_like, max_size=4)),
    }
    if draw(st.booleans()):
        doc[draw(keys)] = draw(json_like)
    return doc


def _files() -> list[list[Any]]:
    services = list(yaml.safe_load_all((SAMPLES / "bookinfo-services.yaml").read_text()))
    groups = [
        [d for f in sorted((REPO / "fixtures" / "sdc").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    ]
    for sample in sorted(glob.glob(str(SAMPLES / "*.yaml"))):
        if Path(sample).name != "bookinfo-services.yaml":
            groups.append(services + list(yaml.safe_load_all(Path(sample).read_text())))
    return [[d for d in g if d is not None] for g in groups]


BASE_GROUPS = _files()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _similar(old: Any) -> st.SearchStrategy[Any]:
    if isinstance(old, bool):
        return st.booleans()
    if isinstance(old, int):
        return st.sampled_from(SPECIAL_NUMBERS[:-1]) | st.integers(min_value=-2, max_value=70000)
    if isinstance(old, float):
        return st.floats(min_value=-1, max_value=101) | st.sampled_from([0.00001, 0.0001, 100.0, 100.0001])
    if isinstance(old, str):
        return st.sampled_from(SPECIAL_STRINGS) | st.text(max_size=8) | st.just(old + "x") | st.just(old.upper())
    if isinstance(old, list):
        return st.lists(st.sampled_from(old), max_size=len(old) + 2) if old else st.just([])
    return json_like


@st.composite
def mutated_groups(draw: st.DrawFn) -> tuple[list[Any], set[int]]:
    """A real multi-document topology with 1-5 random replacements, deletions and insertions.

    Returns the documents and the indexes of the mutated ones.
    """
    docs = copy.deepcopy(draw(st.sampled_from(BASE_GROUPS)))
    touched: set[int] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        i = draw(st.integers(min_value=0, max_value=len(docs) - 1))
        touched.add(i)
        path = draw(st.sampled_from(list(_paths(docs[i]))))
        op = draw(st.sampled_from(["replace", "replace", "similar", "similar", "delete", "insert"]))
        value = draw(json_like)
        if op == "similar":  # a value of the same type: more inputs get past validation into the translator
            old = _at(docs[i], path)
            value = draw(_similar(old)) if path else value
            op = "replace"
        if not path:
            if op == "replace":
                docs[i] = value
            continue
        parent, key = _at(docs[i], path[:-1]), path[-1]
        if op == "replace":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        else:
            target = parent[key]
            if isinstance(target, dict):
                target[draw(keys)] = value
            elif isinstance(target, list):
                target.insert(draw(st.integers(min_value=0, max_value=len(target))), value)
            else:
                parent[key] = value
    return docs, touched


YAML_PIECES = [
    "apiVersion: networking.istio.io/v1\n", "kind: VirtualService\n", "kind: Service\n", "metadata: {name: web}\n",
    "spec:\n", "  hosts: [web]\n", "  http:\n", "  - route: [{destination: {host: web}}]\n", "    timeout: 1.5ms\n",
    "---\n", "...\n", "- ", "? ", ": ", "{", "}", "[", "]", ",", "&a ", "*a ", "*b", "<<: *a\n", "!!float ",
    "!!int ", "!!timestamp ", "!!binary ", "!!bool ", "!!set ", "!!omap ", "!!python/object:os.system ", "!local ",
    "|\n", ">-\n", "'", '"', "#", "\t", "  ", "\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "\x00", "\ufeff",
    "\x85", "\u2028", "0x" + "f" * 40, "1:20:30", ".nan", "-.inf", "~", "null", "yes", "2001-12-14t21:59:43.10-05:00",
]  # fmt: skip
raw_texts = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\n\t ~.0123456789abcxyz")), max_size=200),
    st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join),
)


def _dump(docs: list[Any]) -> str | None:
    try:
        return yaml.safe_dump_all(docs, allow_unicode=True)
    except (yaml.YAMLError, ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------- the fuzz tests


@FUZZ
@given(st.lists(json_like, max_size=3))
def test_fuzz_json_like_documents(bodies: list[Any]) -> None:
    check_documents(as_documents(bodies))


@FUZZ
@given(st.lists(object_like(), min_size=1, max_size=4))
def test_fuzz_object_shaped_documents(bodies: list[Any]) -> None:
    check_documents(as_documents(bodies))


@FUZZ
@given(mutated_groups())
def test_fuzz_mutated_real_documents(group: tuple[list[Any], set[int]]) -> None:
    docs, _ = group
    check_documents(as_documents(docs))


@FUZZ
@given(mutated_groups())
def test_fuzz_mutated_real_documents_through_yaml(group: tuple[list[Any], set[int]]) -> None:
    """The mutated documents go through YAML text (parse_text); the untouched ones are used as they are."""
    docs, touched = group
    text = _dump([docs[i] for i in sorted(touched)])
    if text is None:
        return
    problems: list[Problem] = []
    parsed = parse_text(text, FILE, problems)
    kept = [Document(Source("kept.yaml", i), d) for i, d in enumerate(docs) if i not in touched]
    check_documents(parsed + kept, problems)


@FUZZ
@given(raw_texts)
@example("kind: !!float abc\n")
@example("a: !!timestamp yesterday\n")
@example("a: !!bool maybe\n")
@example("!!float")
@example("!!int")
@example("spec: " + "0x" + "f" * 5000 + "\n")
@example("0x" + "f" * 4000)  # a top-level number with more digits than str() will print
@example("&a [*a]\n")
@example(
    "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: {name: x}\nspec: &s {hosts: [x], http: [*s]}\n"
)
@example("[" * 600)  # nested too deeply for the YAML parser
def test_fuzz_raw_text(text: str) -> None:
    check_text(text)


# --------------------------------------------------------------------------- regressions found by fuzzing

VS = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: [web]\n  http:\n"
SVC = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n---\n"


@pytest.mark.parametrize(
    ("http", "rejected"),
    [
        ("  - route: [{destination: {host: web}}]\n    timeout: " + "9" * 400 + "s\n", True),  # float('inf') duration
        (
            '  - route: [{destination: {host: web}}]\n    retries: {attempts: 2, retryOn: "\u00b2"}\n',
            True,
        ),  # int('²') in translate
        ("  - redirect: {uri: /x, port: eighty}\n", True),  # int('eighty') in the translator
        ("  - redirect: {uri: /x, port: [1]}\n", True),
        (
            "  - match: [{uri: {regex: 'a{99999999999}'}}]\n    route: [{destination: {host: web}}]\n",
            True,
        ),  # OverflowError in re
        (
            "  - match: [{uri: {regex: '[[:alpha:]]'}}]\n    route: [{destination: {host: web}}]\n",
            False,
        ),  # FutureWarning, -W error
        (
            "  - route: [{destination: {host: web}}]\n    timeout: 0x" + "f" * 4000 + "\n",
            True,
        ),  # int too large to print
    ],
)
def test_former_crashes_are_problems(http: str, rejected: bool) -> None:
    problems = check_text(SVC + VS + http)
    errors = [p for p in problems if p.severity == "error"]
    assert bool(errors) is rejected, problems
    assert all(p.obj == "VirtualService/web" for p in errors), problems


def test_huge_numbers_anywhere_are_reported_not_printed() -> None:
    huge = 16**5000  # more digits than Python will turn into a string
    for doc in (
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": huge}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {huge: 1}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": huge}, "spec": {}},
    ):
        problems = check_documents(as_documents([doc]))
        assert any("too large" in p.message for p in problems), problems


def test_render_output_has_no_nan(tmp_path: Path) -> None:
    """A guard for check_render's JSON check: NaN in rendered output would be caught."""
    with pytest.raises(ValueError):
        json.dumps({"x": math.nan}, allow_nan=False)
