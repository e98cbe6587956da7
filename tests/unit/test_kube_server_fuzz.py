"""Whatever a client sends, the embedded Kubernetes API server answers a Kubernetes Status (never a 500) and
stays up: parsers fuzzed directly, then random requests (paths, query strings, content types, bodies) over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.hooks import NoHooks
from pytest_clover.backends.local.kube.server import (
    create_app,
    decode_body,
    decode_protobuf,
    negotiate,
    parse_path,
)
from pytest_clover.backends.local.kube.store import Store

TOKEN = "fuzz-token"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "data", "name", "namespace",
                               "labels", "annotations", "finalizers", "ownerReferences", "resourceVersion",
                               "managedFields", "replicas", "uid", "generateName", "containers", "hosts",
                               "deleteOptions", "preconditions", "gracePeriodSeconds", "propagationPolicy"])
# Objects shaped like Kubernetes ones, with values of any type where Kubernetes expects strings or maps.
k8s_like = st.recursive(
    json_values,
    lambda children: st.dictionaries(field_names, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=25,
)
TEMPLATES: list[Any] = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
              "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "a"}, "spec": {"replicas": 3}},
    {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "a"},
     "deleteOptions": {"gracePeriodSeconds": 0}},
    {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
     "preconditions": {"uid": "u", "resourceVersion": "1"}},
    [{"op": "add", "path": "/metadata/labels/z", "value": "1"}, {"op": "test", "path": "/spec", "value": {}}],
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}},
]
FIELD_PATHS = ["metadata", "metadata.name", "metadata.labels", "metadata.labels.x", "metadata.finalizers",
               "metadata.ownerReferences", "metadata.managedFields", "metadata.resourceVersion", "metadata.uid",
               "metadata.namespace", "metadata.generateName", "spec", "spec.replicas", "spec.selector",
               "spec.template", "spec.template.spec.containers", "data", "data.k", "deleteOptions",
               "deleteOptions.gracePeriodSeconds", "preconditions", "propagationPolicy", "apiVersion", "kind",
               "status", "0", "0.path", "0.value", "1.op", "spec.finalizers"]


def _mutated(template: Any, changes: list[tuple[str, Any]]) -> bytes:
    """``template`` with the value at each dotted path replaced (created as needed)."""
    obj = json.loads(json.dumps(template))
    for path, value in changes:
        parent: Any = obj
        parts = path.split(".")
        for part in parts[:-1]:
            key: Any = int(part) if isinstance(parent, list) and part.isdigit() else part
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last: Any = parts[-1]
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            parent[int(last)] = value
    return json.dumps(obj).encode()


mutated_objects = st.builds(_mutated, st.sampled_from(TEMPLATES),
                            st.lists(st.tuples(st.sampled_from(FIELD_PATHS), json_values), max_size=3))
CONTENT_TYPES = ["application/json", "application/yaml", "application/merge-patch+json",
                 "application/json-patch+json", "application/strategic-merge-patch+json",
                 "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf", "text/plain", "",
                 "application/json; charset=utf-8"]
ACCEPTS = ["", "application/json", "application/yaml", "application/json;as=Table;v=v1;g=meta.k8s.io",
           "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "application/vnd.kubernetes.protobuf",
           "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", "text/html", "*/*;q=0", ",;=,"]
PATHS = [
    "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/{name}",
    "/api/v1/namespaces/{name}", "/api/v1/namespaces/{name}/status", "/api/v1/namespaces/{name}/finalize",
    "/api/v1/namespaces/default/pods/{name}", "/api/v1/namespaces/default/pods/{name}/status",
    "/api/v1/namespaces/default/pods/{name}/eviction", "/api/v1/namespaces/default/pods/{name}/log",
    "/api/v1/namespaces/default/pods/{name}/proxy/{name}", "/api/v1/namespaces/default/services/{name}/proxy/",
    "/api/v1/namespaces/default/pods/{name}/exec", "/api/v1/namespaces/default/pods/{name}/portforward",
    "/apis/apps/v1/namespaces/default/deployments/{name}", "/apis/apps/v1/namespaces/default/deployments/{name}/scale",
    "/apis/apps/v1/namespaces/default/deployments", "/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices",
    "/apis/networking.istio.io/v1/namespaces/default/virtualservices/{name}", "/api/v1/watch/namespaces/{name}/pods",
    "/api/v1/pods", "/apis/{name}", "/apis/{name}/{name}", "/api/{name}", "/{name}", "/openapi/v3/{name}",
    "/version", "/api", "/apis", "/api/v1/namespaces",
]
QUERY_NAMES = ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch",
               "watch", "timeoutSeconds", "allowWatchBookmarks", "sendInitialEvents", "fieldManager", "force",
               "dryRun", "fieldValidation", "gracePeriodSeconds", "propagationPolicy", "orphanDependents",
               "includeObject", "container", "tailLines", "follow", "sinceSeconds", "limitBytes", "ports"]
names = st.sampled_from(["a", "default", "x.y", "UPPER", "a:80", "", "-", "%2F", "web", "kube-system"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=12)
query_values = st.sampled_from(["true", "false", "1", "0", "-1", "All", "Strict", "Warn", "Orphan", "Foreground",
                                "NotOlderThan", "Exact", "a=b", "a in (b", "metadata.name=x", "", "99999999999999999999",
                                "status.phase!=Running", "abc", "9223372036854775807",
                                "-9223372036854775808", "1e3"]) | st.text(max_size=10)


@given(st.binary(max_size=300), st.sampled_from(CONTENT_TYPES))
def test_decode_body_raises_only_api_errors(data: bytes, content_type: str) -> None:
    try:
        decoded = decode_body(data, content_type)
    except ApiError as error:
        assert error.code == 400
    else:
        json.dumps(decoded)


@given(st.text(max_size=300).map(str.encode) | k8s_like.map(lambda v: json.dumps(v).encode()))
def test_decode_body_of_text_and_json(data: bytes) -> None:
    for content_type in ("application/json", "application/yaml"):
        try:
            json.dumps(decode_body(data, content_type))
        except ApiError as error:
            assert error.code == 400


@given(st.binary(max_size=200))
def test_decode_protobuf_raises_only_api_errors(data: bytes) -> None:
    for candidate in (data, b"k8s\x00" + data):
        try:
            json.dumps(decode_protobuf(candidate))
        except ApiError as error:
            assert error.code in (400, 415)


@given(st.text(max_size=200))
def test_negotiate_and_parse_path_raise_only_api_errors(text: str) -> None:
    try:
        negotiate(text)
    except ApiError as error:
        assert error.code == 406
    try:
        parse_path("/" + text)
    except ApiError as error:
        assert error.code == 404


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """One server for the whole HTTP fuzz, on a loop the examples run on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = Store()
        app = create_app(store=self.store, hooks=NoHooks(), token=TOKEN)
        self.client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        self.errors = _Errors()
        logging.getLogger("pytest_clover.kube").addHandler(self.errors)
        self.reseed()

    def reseed(self) -> None:
        """Put back the objects the examples aim at (an example may have deleted or changed them)."""
        seeds: list[tuple[str, dict[str, Any]]] = [
            ("apps/deployments", {"metadata": {"name": "a"}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}),
            ("/configmaps", {"metadata": {"name": "a"}, "data": {"k": "v"}}),
            ("/pods", {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "app"}], "nodeName": "n"}}),
            ("/services", {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}),
        ]
        for key, body in seeds:
            if not self.store.exists(key, "default", "a"):
                self.store.create(key, body, namespace="default")

    async def request(self, method: str, path: str, headers: dict[str, str], data: bytes) -> tuple[int, bytes]:
        async with asyncio.timeout(20):
            async with self.client.request(method, path, headers=headers, data=data) as response:
                if response.headers.get("Transfer-Encoding") == "chunked" and response.status == 200:
                    # A watch or a stream: its head is the answer; a bug while streaming is logged.
                    return response.status, b""
                return response.status, await response.read()

    def close(self) -> None:
        logging.getLogger("pytest_clover.kube").removeHandler(self.errors)
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    running = Harness()
    try:
        yield running
    finally:
        running.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    template=st.sampled_from(PATHS),
    name=names,
    query=st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), max_size=4),
    content_type=st.sampled_from(CONTENT_TYPES),
    accept=st.sampled_from(ACCEPTS),
    body=st.one_of(mutated_objects, mutated_objects, k8s_like.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=100),
                   st.just(b"k8s\x00\x0a\x04\x0a\x02v1")),
    authorized=st.booleans() | st.just(True),
)
def test_random_requests_get_a_status_never_a_500(
    harness: Harness, method: str, template: str, name: str, query: list[tuple[str, str]], content_type: str,
    accept: str, body: bytes, authorized: bool,
) -> None:
    path = template.replace("{name}", quote(name, safe=":"))
    pairs = list(query)
    if any(key == "watch" for key, _ in pairs) or "/watch/" in path or "follow" in dict(pairs):
        pairs.append(("timeoutSeconds", "1"))
    if pairs:
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    headers = {"Accept": accept} if accept else {}
    if content_type:
        headers["Content-Type"] = content_type
    if authorized:
        headers["Authorization"] = f"Bearer {TOKEN}"
    harness.reseed()
    status, raw = harness.loop.run_until_complete(harness.request(method, path, headers, body))
    assert status != 500, raw[:500]
    assert not harness.errors.records, harness.errors.records[0].getMessage()
    if not authorized and not path.startswith(("/healthz", "/livez", "/readyz")):
        assert status == 401
    if status >= 400 and method != "HEAD":
        status_body = json.loads(raw)
        assert status_body["kind"] == "Status" and status_body["code"] == status
