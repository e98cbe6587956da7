"""The embedded Kubernetes API server, in process: every verb, subresource and refusal, as kube-apiserver answers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from pytest_clover.backends.local.kube.errors import ApiError, Cause
from pytest_clover.backends.local.kube.hooks import Connect, NoHooks, PodEndpoint
from pytest_clover.backends.local.kube.resources import Resource
from pytest_clover.backends.local.kube.server import (
    MAX_BODY_BYTES,
    create_app,
    decode_body,
    decode_protobuf,
    negotiate,
    parse_path,
)
from pytest_clover.backends.local.kube.store import Store

TOKEN = "token-of-this-mesh"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
KUBECTL_UA = "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"
CM_PATH = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
WAIT = 5.0


class Response:
    """What a request got: status, decoded body (JSON when it parses), headers, raw text."""

    def __init__(self, status: int, text: str, headers: CIMultiDictProxy[str]) -> None:
        self.status = status
        self.text = text
        self.headers = headers
        try:
            self.body: Any = json.loads(text)
        except ValueError:
            self.body = None

    def __repr__(self) -> str:
        return f"<{self.status} {self.text[:300]}>"


class Api:
    """A small client for the tests: JSON in, :class:`Response` out, the mesh's token by default."""

    def __init__(self, client: TestClient[web.Request, web.Application], store: Store) -> None:
        self.client = client
        self.store = store

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | str | io.BytesIO | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        sent = dict(AUTH) if auth else {}
        sent.update(headers or {})
        if body is not None:
            data = json.dumps(body)
        if data is not None:
            sent.setdefault("Content-Type", content_type)
        async with self.client.request(method, path, data=data, headers=sent) as response:
            return Response(response.status, await response.text(), response.headers)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.call("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, content_type: str, **kw: Any) -> Response:
        data = body if isinstance(body, str) else json.dumps(body)
        return await self.call("PATCH", path, data=data, content_type=content_type, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.call("DELETE", path, body, **kw)

    async def watch_lines(self, path: str, count: int, *, headers: dict[str, str] | None = None,
                          timeout: float = WAIT) -> list[dict[str, Any]]:
        """The first ``count`` events of a watch (fewer if it ends first)."""
        events: list[dict[str, Any]] = []
        async with self.client.get(path, headers={**AUTH, **(headers or {})}) as response:
            assert response.status == 200, await response.text()
            async with asyncio.timeout(timeout):
                while len(events) < count:
                    line = await response.content.readline()
                    if not line:
                        break
                    events.append(json.loads(line))
        return events


Scenario = Callable[[Api], Awaitable[None]]


def run(scenario: Scenario, *, hooks: Any = None, store: Store | None = None, **options: Any) -> None:
    """Run ``scenario`` against a fresh server (its own store unless given) on 127.0.0.1."""

    async def main() -> None:
        used = store or Store()
        app = create_app(store=used, hooks=hooks or NoHooks(), token=TOKEN, **options)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(Api(client, used))

    asyncio.run(main())


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "i:1"}]}},
        },
    }


def pod(name: str, *, node: str = "", labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "i:1", "ports": [{"containerPort": 8080,
                                                                                    "name": "http"}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}, **meta},
            "spec": spec}


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll ``condition`` (a store read, cheap) until it holds; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------ authentication


def test_requests_without_the_mesh_token_get_401_status() -> None:
    async def scenario(api: Api) -> None:
        for headers in ({}, {"Authorization": "Bearer another-mesh"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": "Bearer"}):
            response = await api.get("/api/v1/namespaces", auth=False, headers=headers)
            assert response.status == 401
            assert response.body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                     "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        assert (await api.get("/api/v1/namespaces", auth=False, headers={"Authorization": f"bearer {TOKEN}"})).status == 200

    run(scenario)


def test_version_and_health() -> None:
    async def scenario(api: Api) -> None:
        version = (await api.get("/version")).body
        assert version["gitVersion"].startswith("v1.33.")
        assert version["platform"] and version["goVersion"]
        for path in ("/healthz", "/livez", "/readyz", "/readyz/ping"):
            response = await api.get(path)
            assert (response.status, response.text) == (200, "ok")

    run(scenario)


# ------------------------------------------------------------------------------------------ discovery


def test_discovery_legacy_and_aggregated_by_accept() -> None:
    async def scenario(api: Api) -> None:
        legacy = await api.get("/api")
        assert legacy.body["kind"] == "APIVersions"
        aggregated = await api.get("/apis", headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                      "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"})
        assert aggregated.body["kind"] == "APIGroupDiscoveryList"
        assert aggregated.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        beta = await api.get("/api", headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"})
        assert beta.body["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
        # An unknown aggregated version falls back to the JSON alternative kubectl lists after it.
        fallback = await api.get("/apis", headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v9;as=APIGroupDiscoveryList,application/json"})
        assert fallback.body["kind"] == "APIGroupList"
        resources = (await api.get("/apis/apps/v1")).body
        assert {r["name"] for r in resources["resources"]} >= {"deployments", "deployments/scale"}
        assert (await api.get("/apis/nothing.example/v1")).status == 404

    run(scenario)


def test_openapi_documents() -> None:
    async def scenario(api: Api) -> None:
        v2 = await api.get("/openapi/v2", headers={"Accept-Encoding": "gzip"})
        assert v2.status == 200 and "definitions" in v2.body
        assert v2.headers["Content-Encoding"] == "gzip"
        small = await api.get("/version", headers={"Accept-Encoding": "gzip"})
        assert "Content-Encoding" not in small.headers
        index = (await api.get("/openapi/v3")).body
        url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        document = await api.get(url)
        assert document.status == 200 and "components" in document.body
        assert (await api.get("/openapi/v3/apis/nothing/v1")).status == 404

    run(scenario)


def test_openapi_documents_are_cacheable_as_kube_openapi_serves_them() -> None:
    async def scenario(api: Api) -> None:
        index = await api.get("/openapi/v3")
        etag = index.headers["ETag"]
        assert etag.startswith('"') and index.headers["Last-Modified"]
        # kubectl's HTTP cache revalidates the index on every run: 304, no body.
        again = await api.get("/openapi/v3", headers={"If-None-Match": etag})
        assert again.status == 304 and again.text == ""
        since = await api.get("/openapi/v3", headers={"If-Modified-Since": index.headers["Last-Modified"]})
        assert since.status == 304
        url = index.body["paths"]["apis/networking.istio.io/v1"]["serverRelativeURL"]
        document = await api.get(url)
        assert document.status == 200
        assert document.headers["Cache-Control"] == "public, immutable"
        assert document.headers["Vary"] == "Accept" and document.headers["Expires"]
        assert document.headers["ETag"] == f'"{url.rsplit("hash=", 1)[1]}"'
        # A stale hash (a document of an older server) is sent to the current one.
        stale = await api.get(url.split("?")[0] + "?hash=0BAD")  # aiohttp follows the redirect
        assert stale.status == 200 and stale.headers["ETag"] == document.headers["ETag"]
        async with api.client.get(url.split("?")[0] + "?hash=0BAD", headers=AUTH, allow_redirects=False) as moved:
            assert moved.status == 301 and moved.headers["Location"] == url
        unhashed = await api.get(url.split("?")[0])
        assert unhashed.headers["Cache-Control"] == "no-cache, private"
        v2 = await api.get("/openapi/v2", headers={"Accept-Encoding": "gzip"})
        assert (await api.get("/openapi/v2", headers={"If-None-Match": v2.headers["ETag"]})).status == 304
        # kubectl's client-side validation asks for OpenAPI v2 in protobuf (gnostic's openapi.v2.Document).
        accept = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        async with api.client.get("/openapi/v2", headers={**AUTH, "Accept": accept}) as proto:
            assert proto.status == 200
            assert proto.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            assert (await proto.read()).startswith(b"\n\x032.0")  # field 1 (swagger): "2.0"
            assert proto.headers["ETag"] != v2.headers["ETag"]

    run(scenario)


# ------------------------------------------------------------------------------------------ routing


def test_unknown_paths_resources_and_subresources_are_404_status() -> None:
    async def scenario(api: Api) -> None:
        for path in ("/api/v1/namespaces/default/widgets", "/apis/apps/v1/namespaces/default/pods",
                     "/api/v1/namespaces/default/configmaps/x/status", "/nothing",
                     "/api/v1/namespaces/default/namespaces/x", "/api/v2/pods",
                     "/apis/networking.istio.io/v9/virtualservices"):
            response = await api.get(path)
            assert response.status == 404, path
            assert response.body["message"] == "the server could not find the requested resource"
            assert response.body["kind"] == "Status"

    run(scenario)


def test_parse_path_reads_kubernetes_request_info() -> None:
    _, _, target = parse_path("/api/v1/namespaces/ns1/pods/p/log")
    assert target is not None and (target.namespace, target.name, target.subresource) == ("ns1", "p", "log")
    _, _, target = parse_path("/api/v1/namespaces/ns1")
    assert target is not None and (target.resource.plural, target.name, target.namespace) == ("namespaces", "ns1", None)
    _, _, target = parse_path("/api/v1/namespaces/ns1/status")
    assert target is not None and (target.name, target.subresource) == ("ns1", "status")
    _, _, target = parse_path("/api/v1/watch/namespaces/ns1/pods")
    assert target is not None and target.watch_path and target.namespace == "ns1"
    _, _, target = parse_path("/api/v1/namespaces/ns1/services/web:http/proxy/a/b/")
    assert target is not None and (target.name, target.rest) == ("web:http", "/a/b/")
    assert parse_path("/apis/apps/v1") == ("apps", "v1", None)


def test_namespace_itself_and_istio_versions_map_to_one_object() -> None:
    async def scenario(api: Api) -> None:
        ns = (await api.get("/api/v1/namespaces/default")).body
        assert ns["status"]["phase"] == "Active" and ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "default"}
        vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "r"},
              "spec": {"hosts": ["web"]}}
        created = await api.post("/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices", vs)
        assert created.status == 201 and created.body["apiVersion"] == "networking.istio.io/v1beta1"
        for version in ("v1", "v1alpha3"):
            got = (await api.get(f"/apis/networking.istio.io/{version}/namespaces/default/virtualservices/r")).body
            assert got["apiVersion"] == f"networking.istio.io/{version}"
            assert got["metadata"]["uid"] == created.body["metadata"]["uid"]
        listed = (await api.get("/apis/networking.istio.io/v1alpha3/virtualservices")).body
        assert listed["apiVersion"] == "networking.istio.io/v1alpha3"
        assert [i["apiVersion"] for i in listed["items"]] == ["networking.istio.io/v1alpha3"]
        wrong = await api.post("/apis/networking.istio.io/v1/namespaces/default/virtualservices", vs)
        assert wrong.status == 400
        assert wrong.body["message"] == ("the API version in the data (networking.istio.io/v1beta1) does not match "
                                         "the expected API version (networking.istio.io/v1)")

    run(scenario)


# ------------------------------------------------------------------------------------------ create


class RecordingHooks(NoHooks):
    """Admits with a warning, records what was committed, can refuse or crash on demand."""

    def __init__(self) -> None:
        self.admitted: list[tuple[str, str, bool]] = []
        self.committed_ops: list[tuple[str, str, str]] = []
        self.refuse: ApiError | None = None
        self.crash = False
        self.endpoints: dict[str, PodEndpoint] = {}
        self.services: dict[str, Connect] = {}

    async def admit(self, resource: Resource, operation: str, obj: dict[str, Any] | None,
                    old: dict[str, Any] | None, *, dry_run: bool) -> list[str]:
        if self.crash:
            raise RuntimeError("admission bug")
        if self.refuse is not None:
            raise self.refuse
        self.admitted.append((resource.key, operation, dry_run))
        if obj is not None and operation == "CREATE":
            obj.setdefault("metadata", {}).setdefault("annotations", {})["defaulted"] = "yes"
        return [f"{operation.lower()} admitted"]

    async def committed(self, resource: Resource, operation: str, obj: dict[str, Any]) -> None:
        self.committed_ops.append((resource.key, operation, obj["metadata"]["name"]))

    def pod_endpoint(self, namespace: str, name: str) -> PodEndpoint | None:
        return self.endpoints.get(f"{namespace}/{name}")

    def service_endpoint(self, namespace: str, name: str, port: str) -> Connect | None:
        return self.services.get(f"{namespace}/{name}")


def test_create_sets_system_fields_manager_admission_and_commits() -> None:
    hooks = RecordingHooks()

    async def scenario(api: Api) -> None:
        response = await api.post(CM_PATH + "?fieldManager=", configmap("a", k="v"), headers={"User-Agent": KUBECTL_UA})
        assert response.status == 201, response
        obj = response.body
        assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
        assert obj["metadata"]["namespace"] == "default" and obj["metadata"]["uid"]
        assert obj["metadata"]["annotations"] == {"defaulted": "yes"}
        [entry] = obj["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl", "Update", "v1")
        assert response.headers.getall("Warning") == ['299 - "create admitted"']
        assert hooks.committed_ops == [("/configmaps", "CREATE", "a")]
        named = await api.post(CM_PATH + "?fieldManager=kubectl-create", configmap("b"))
        assert named.status == 201
        again = await api.post(CM_PATH, configmap("a"))
        assert again.status == 409 and again.body["reason"] == "AlreadyExists"
        assert again.body["message"] == 'configmaps "a" already exists'

    run(scenario, hooks=hooks)


def test_create_refusals_are_worded_as_kubernetes() -> None:
    async def scenario(api: Api) -> None:
        mismatch = await api.post(CM_PATH, {**configmap("x"), "metadata": {"name": "x", "namespace": "other"}})
        assert mismatch.status == 400
        assert mismatch.body["message"] == ("the namespace of the provided object does not match the namespace sent "
                                            "on the request")
        missing = await api.post("/api/v1/namespaces/nowhere/configmaps", configmap("x"))
        assert (missing.status, missing.body["message"]) == (404, 'namespaces "nowhere" not found')
        wrong_kind = await api.post(CM_PATH, {**configmap("x"), "kind": "Secret"})
        assert wrong_kind.status == 400 and wrong_kind.body["message"].startswith(
            'Secret in version "v1" cannot be handled as a ConfigMap')
        wrong_version = await api.post(CM_PATH, {**configmap("x"), "apiVersion": "apps/v1"})
        assert wrong_version.body["message"] == ("the API version in the data (apps/v1) does not match the expected "
                                                 "API version (v1)")
        invalid = await api.post(CM_PATH, configmap("Not_Valid"))
        assert invalid.status == 422 and invalid.body["reason"] == "Invalid"
        typed = await api.post(CM_PATH, {"metadata": {"name": "x", "labels": {"a": 1}}})
        assert typed.status == 400 and "cannot unmarshal number into Go struct field ObjectMeta.metadata.labels" in (
            typed.body["message"])
        cluster = await api.post("/api/v1/pods", pod("p"))
        assert cluster.status == 405

    run(scenario)


def test_dry_run_touches_nothing() -> None:
    hooks = RecordingHooks()

    async def scenario(api: Api) -> None:
        before = api.store.resource_version
        created = await api.post(CM_PATH + "?dryRun=All", configmap("dry"))
        assert created.status == 201 and created.body["metadata"]["name"] == "dry"
        assert (await api.get(CM_PATH + "/dry")).status == 404
        await api.post(CM_PATH, configmap("real", a="1"))
        rv = api.store.resource_version
        assert int(rv) == int(before) + 1
        patched = await api.patch(CM_PATH + "/real?dryRun=All", {"data": {"a": "2"}}, "application/merge-patch+json")
        assert patched.body["data"] == {"a": "2"}
        deleted = await api.delete(CM_PATH + "/real?dryRun=All")
        assert deleted.status == 200
        assert api.store.resource_version == rv
        assert (await api.get(CM_PATH + "/real")).body["data"] == {"a": "1"}
        bad = await api.post(CM_PATH + "?dryRun=Some", configmap("x"))
        assert bad.status == 422 and 'supported values: "All"' in bad.body["message"]
        assert [op for op in hooks.committed_ops if op[2] == "dry"] == []
        assert ("/configmaps", "CREATE", True) in hooks.admitted

    run(scenario, hooks=hooks)


# ------------------------------------------------------------------------------------------ bodies


def test_bodies_json_yaml_protobuf_and_malformed() -> None:
    async def scenario(api: Api) -> None:
        as_yaml = yaml.safe_dump(configmap("from-yaml", when="2024-01-01"))
        created = await api.call("POST", CM_PATH, data=as_yaml, content_type="application/yaml")
        assert created.status == 201 and created.body["data"] == {"when": "2024-01-01"}
        broken = await api.call("POST", CM_PATH, data='{"metadata": ', content_type="application/json")
        assert broken.status == 400
        assert broken.body["message"] == "couldn't get version/kind; json parse error: unexpected end of JSON input"
        garbage = await api.call("POST", CM_PATH, data="xyz", content_type="application/json")
        assert garbage.body["message"] == ("couldn't get version/kind; json parse error: invalid character 'x' "
                                           "looking for beginning of value")
        array = await api.call("POST", CM_PATH, data="[1]", content_type="application/json")
        assert array.status == 400 and "cannot unmarshal array" in array.body["message"]
        unknown = await api.call("POST", CM_PATH, data="a=b", content_type="text/plain")
        assert unknown.status == 415 and unknown.body["reason"] == "UnsupportedMediaType"
        deep = await api.call("POST", CM_PATH, data="[" * 5000 + "]" * 5000, content_type="application/json")
        assert deep.status == 400
        surrogate = await api.call("POST", CM_PATH, data='{"metadata":{"name":"s"},"data":{"k":"\\ud800"}}')
        assert surrogate.status == 201 and surrogate.body["data"] == {"k": "\ufffd"}
        bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7))
        alias = await api.call("POST", CM_PATH, data=bomb, content_type="application/yaml")
        assert alias.status == 400 and "excessive aliasing" in alias.body["message"]
        big = await api.call("POST", CM_PATH, data=io.BytesIO(b"{" + b" " * MAX_BODY_BYTES + b"}"))
        assert big.status == 413
        assert big.body["message"] == f"Request entity too large: limit is {MAX_BODY_BYTES}"

    run(scenario)


def _proto_field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, *_varint(len(payload))]) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def protobuf_configmap(name: str, data: dict[str, str]) -> bytes:
    """A ConfigMap as kubectl's typed client sends it (k8s\\0 + runtime.Unknown)."""
    meta = _proto_field(1, name.encode())
    body = _proto_field(1, meta)
    for key, value in data.items():
        body += _proto_field(2, _proto_field(1, key.encode()) + _proto_field(2, value.encode()))
    type_meta = _proto_field(1, b"v1") + _proto_field(2, b"ConfigMap")
    return b"k8s\x00" + _proto_field(1, type_meta) + _proto_field(2, body)


def test_protobuf_bodies_of_typed_clients() -> None:
    decoded = decode_protobuf(protobuf_configmap("p", {"a": "1"}))
    assert decoded == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"a": "1"}}
    with pytest.raises(ApiError) as bad:
        decode_protobuf(b"k8s\x00\x0a\xff")
    assert bad.value.code == 400

    async def scenario(api: Api) -> None:
        created = await api.call("POST", CM_PATH, data=protobuf_configmap("p", {"a": "1"}),
                                 content_type="application/vnd.kubernetes.protobuf")
        assert created.status == 201 and created.body["data"] == {"a": "1"}
        # A pod with no name: decoded now, then refused as Kubernetes refuses it.
        type_meta = _proto_field(1, b"v1") + _proto_field(2, b"Pod")
        nameless = await api.call("POST", PODS, data=b"k8s\x00" + _proto_field(1, type_meta),
                                  content_type="application/vnd.kubernetes.protobuf")
        assert nameless.status == 422
        # Custom resources have no protobuf form (kubectl sends them as JSON).
        type_meta = _proto_field(1, b"networking.istio.io/v1") + _proto_field(2, b"VirtualService")
        custom = await api.call("POST", "/apis/networking.istio.io/v1/namespaces/default/virtualservices",
                                data=b"k8s\x00" + _proto_field(1, type_meta),
                                content_type="application/vnd.kubernetes.protobuf")
        assert custom.status == 415

    run(scenario)


def test_field_validation_strict_warn_ignore() -> None:
    async def scenario(api: Api) -> None:
        body = deployment("d")
        body["spec"]["foo"] = 1
        strict = await api.post(DEPLOYS + "?fieldValidation=Strict", body)
        assert strict.status == 400
        assert strict.body["message"] == 'strict decoding error: unknown field "spec.foo"'
        warned = await api.post(DEPLOYS + "?fieldValidation=Warn", body)
        assert warned.status == 201
        assert warned.headers.getall("Warning") == ['299 - "unknown field \\"spec.foo\\""']
        ignored = await api.put(DEPLOYS + "/d?fieldValidation=Ignore", body)
        assert ignored.status == 200 and "Warning" not in ignored.headers
        invalid = await api.post(DEPLOYS + "?fieldValidation=Loose", deployment("e"))
        assert invalid.status == 422

    run(scenario)


# ------------------------------------------------------------------------------------------ get and list


def test_get_as_table_yaml_and_not_acceptable() -> None:
    async def scenario(api: Api) -> None:
        await api.post(DEPLOYS, deployment("web"))
        table = (await api.get(DEPLOYS + "/web", headers={"Accept": TABLE})).body
        assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
        assert [c["name"] for c in table["columnDefinitions"]][:2] == ["Name", "Ready"]
        [row] = table["rows"]
        assert row["cells"][0] == "web" and row["object"]["kind"] == "PartialObjectMetadata"
        full = (await api.get(DEPLOYS + "?includeObject=Object", headers={"Accept": TABLE})).body
        assert full["rows"][0]["object"]["kind"] == "Deployment"
        assert full["metadata"]["resourceVersion"]
        beta = (await api.get(DEPLOYS, headers={"Accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"})).body
        assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
        as_yaml = await api.get(DEPLOYS + "/web", headers={"Accept": "application/yaml"})
        assert yaml.safe_load(as_yaml.text)["metadata"]["name"] == "web"
        protobuf_first = await api.get(DEPLOYS + "/web", headers={
            "Accept": "application/vnd.kubernetes.protobuf,application/json"})
        assert protobuf_first.body["kind"] == "Deployment"
        refused = await api.get(DEPLOYS + "/web", headers={"Accept": "application/vnd.kubernetes.protobuf"})
        assert refused.status == 406 and refused.body["reason"] == "NotAcceptable"
        bad_include = await api.get(DEPLOYS + "?includeObject=All", headers={"Accept": TABLE})
        assert bad_include.status == 422

    run(scenario)


def test_negotiate_picks_first_served_representation() -> None:
    assert negotiate(None).format == "json"
    assert negotiate(TABLE).format == "table"
    assert negotiate("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.1, application/json").format == "json"
    assert negotiate("*/*").format == "json"
    with pytest.raises(ApiError):
        negotiate("text/html")


def test_list_selectors_paging_and_options() -> None:
    async def scenario(api: Api) -> None:
        for index in range(5):
            await api.post(PODS, pod(f"p{index}", labels={"tier": "a" if index % 2 else "b"}))
        listed = (await api.get(PODS + "?labelSelector=tier%3Da")).body
        assert listed["kind"] == "PodList" and [p["metadata"]["name"] for p in listed["items"]] == ["p1", "p3"]
        # Items of a built-in kind's list carry no apiVersion/kind, as Kubernetes' typed lists.
        assert "apiVersion" not in listed["items"][0]
        phase = (await api.get(PODS + "?fieldSelector=status.phase%3DPending")).body
        assert len(phase["items"]) == 5
        names: list[str] = []
        token = ""
        while True:
            page = (await api.get(PODS + f"?limit=2&continue={token}")).body
            names += [p["metadata"]["name"] for p in page["items"]]
            token = page["metadata"].get("continue", "")
            if not token:
                break
            assert page["metadata"]["remainingItemCount"] >= 1
        assert names == [f"p{i}" for i in range(5)]
        bad_selector = await api.get(PODS + "?labelSelector=a%20in%20b")
        assert bad_selector.status == 400
        bad_field = await api.get(PODS + "?fieldSelector=spec.unknown%3Dx")
        assert bad_field.status == 400 and "field label not supported" in bad_field.body["message"]
        bad_limit = await api.get(PODS + "?limit=ten")
        assert bad_limit.status == 400
        bad_match = await api.get(PODS + "?resourceVersionMatch=Exact")
        assert bad_match.status == 422 and bad_match.body["details"]["kind"] == "ListOptions"
        future = await api.get(PODS + "?resourceVersion=999999&resourceVersionMatch=NotOlderThan")
        assert future.status == 504
        across = (await api.get("/api/v1/pods")).body
        assert len(across["items"]) == 5

    # A future resourceVersion waits for the store this long before the 504 (3 s by default, as Kubernetes).
    run(scenario, freshness_timeout=0.1)


# ------------------------------------------------------------------------------------------ watch


def test_watch_streams_events_and_ends_at_timeout() -> None:
    async def scenario(api: Api) -> None:
        await api.post(CM_PATH, configmap("a"))
        rv = (await api.get(CM_PATH)).body["metadata"]["resourceVersion"]

        async def writer() -> None:
            await api.post(CM_PATH, configmap("b"))
            await api.patch(CM_PATH + "/b", {"data": {"x": "1"}}, "application/merge-patch+json")
            await api.delete(CM_PATH + "/b")

        task = asyncio.create_task(writer())
        events = await api.watch_lines(CM_PATH + f"?watch=true&resourceVersion={rv}&timeoutSeconds=3", 3)
        await task
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "b")]
        assert events[0]["object"]["apiVersion"] == "v1"
        loop = asyncio.get_running_loop()
        started = loop.time()
        initial = await api.watch_lines("/api/v1/watch/namespaces/default/configmaps?timeoutSeconds=1", 10)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "a")]
        assert loop.time() - started < 4

    run(scenario)


def test_watch_bookmarks_initial_events_and_410() -> None:
    async def scenario(api: Api) -> None:
        await api.post(CM_PATH, configmap("a"))
        events = await api.watch_lines(
            CM_PATH + "?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
            "&timeoutSeconds=5", 3)
        assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "BOOKMARK"]
        assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert events[2]["object"]["kind"] == "ConfigMap"
        refused = await api.get(CM_PATH + "?watch=1&sendInitialEvents=true")
        assert refused.status == 422
        for index in range(5):
            await api.post(CM_PATH, configmap(f"n{index}"))
        expired = await api.watch_lines(CM_PATH + "?watch=1&resourceVersion=2", 5)
        assert [e["type"] for e in expired] == ["ERROR"]
        assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"

    run(scenario, store=Store(history=3), bookmark_interval=0.2)


def test_watch_bookmarks_shortly_before_it_times_out() -> None:
    async def scenario(api: Api) -> None:
        await api.post(CM_PATH, configmap("a"))
        rv = (await api.get(CM_PATH)).body["metadata"]["resourceVersion"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = await api.watch_lines(
            CM_PATH + f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=4&resourceVersion={rv}", 1)
        # Two seconds before the end, not at it (and not after the 60 s interval).
        assert 1.5 <= loop.time() - started < 3.5
        assert [e["type"] for e in events] == ["BOOKMARK"]
        assert events[0]["object"]["metadata"]["resourceVersion"] == rv

    run(scenario, bookmark_interval=60.0)


async def _store_waits(api: Api) -> None:
    """Until a read waits for the store to reach a revision."""
    async with asyncio.timeout(WAIT):
        while api.store.revision_waiters == 0:
            await asyncio.sleep(0.005)


def test_a_watch_from_a_future_resource_version_opens_and_sends_only_what_comes_after_it() -> None:
    async def scenario(api: Api) -> None:
        future = int(api.store.resource_version) + 3
        path = CM_PATH + f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=5&resourceVersion={future}"
        watching = asyncio.ensure_future(api.watch_lines(path, 3))
        async with asyncio.timeout(WAIT):
            while api.store.watchers("/configmaps") == 0:
                await asyncio.sleep(0.005)
        for index in range(5):
            await api.post(CM_PATH, configmap(f"c{index}"))
        events = await watching
        added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
        assert added == ["c3", "c4"], events
        # No bookmark goes back before the resourceVersion the watch asked for.
        marks = [int(e["object"]["metadata"]["resourceVersion"]) for e in events if e["type"] == "BOOKMARK"]
        assert all(rv >= future for rv in marks), events

    run(scenario, bookmark_interval=0.05)


def test_a_list_from_a_future_resource_version_waits_for_the_store_then_answers_504() -> None:
    async def scenario(api: Api) -> None:
        wanted = int(api.store.resource_version) + 1
        listing = asyncio.ensure_future(api.get(CM_PATH + f"?resourceVersion={wanted}"))
        await _store_waits(api)
        assert not listing.done()
        await api.post(CM_PATH, configmap("arrives"))
        answered = await listing
        assert answered.status == 200, answered
        assert [i["metadata"]["name"] for i in answered.body["items"]] == ["arrives"]

        loop = asyncio.get_running_loop()
        started = loop.time()
        current = api.store.resource_version
        too_new = await api.get(CM_PATH + f"?resourceVersion={int(current) + 5}&resourceVersionMatch=NotOlderThan")
        assert loop.time() - started >= 0.3
        assert too_new.status == 504 and too_new.headers["Retry-After"] == "1"
        assert too_new.body["reason"] == "Timeout"
        assert too_new.body["message"] == f"Timeout: Too large resource version: {int(current) + 5}, current: {current}"
        assert too_new.body["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                                      "message": "Too large resource version"}]
        assert too_new.body["details"]["retryAfterSeconds"] == 1

    run(scenario, freshness_timeout=0.3)


def test_a_watch_with_initial_events_waits_for_a_future_resource_version() -> None:
    query = "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"

    async def scenario(api: Api) -> None:
        wanted = int(api.store.resource_version) + 1
        watching = asyncio.ensure_future(api.watch_lines(CM_PATH + query + f"&resourceVersion={wanted}", 2))
        await _store_waits(api)
        await api.post(CM_PATH, configmap("arrives"))
        events = await watching
        assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
        assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}

        loop = asyncio.get_running_loop()
        started = loop.time()
        too_new = int(api.store.resource_version) + 5
        ended = await api.watch_lines(CM_PATH + query + f"&resourceVersion={too_new}", 2)
        assert loop.time() - started >= 0.3
        # The watch is open (200) and ends with one ERROR event carrying the 504, as the watch cache ends it.
        assert [e["type"] for e in ended] == ["ERROR"]
        assert ended[0]["object"]["code"] == 504
        assert ended[0]["object"]["message"].startswith(f"Timeout: Too large resource version: {too_new}")

    run(scenario, freshness_timeout=0.3)


def test_head_of_a_watch_is_headers_only() -> None:
    async def scenario(api: Api) -> None:
        await api.post(PODS, pod("a"))
        response = await api.call("HEAD", "/api/v1/watch/namespaces/default/pods?timeoutSeconds=1")
        assert response.status == 200 and response.text == ""
        # The connection is still usable: nothing was streamed after the headers.
        assert (await api.get(PODS)).status == 200

    run(scenario)


def test_watch_as_table_and_on_one_object() -> None:
    async def scenario(api: Api) -> None:
        await api.post(DEPLOYS, deployment("one"))
        await api.post(DEPLOYS, deployment("two"))
        events = await api.watch_lines(DEPLOYS + "?watch=1&timeoutSeconds=1", 2, headers={"Accept": TABLE})
        assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
        assert events[0]["object"]["columnDefinitions"] and events[1]["object"]["columnDefinitions"] is None
        assert [e["object"]["rows"][0]["cells"][0] for e in events] == ["one", "two"]
        one = await api.watch_lines("/apis/apps/v1/watch/namespaces/default/deployments/two?timeoutSeconds=1", 5)
        assert [e["object"]["metadata"]["name"] for e in one] == ["two"]
        clash = await api.get(DEPLOYS + "/two?watch=1&fieldSelector=metadata.name%3Done")
        assert clash.status == 400

    run(scenario)


def test_slow_watchers_are_cut_off_not_buffered() -> None:
    async def scenario(api: Api) -> None:
        async with api.client.get(CM_PATH + "?watch=1&resourceVersion=1", headers=AUTH) as response:
            assert response.status == 200
            # The client reads nothing while far more changes happen than the socket buffers and the
            # watcher's queue hold: the server stops writing, the watcher falls behind and is ended.
            for index in range(150):
                api.store.create("/configmaps", configmap(f"c{index}", blob="x" * 200_000), namespace="default")
                await asyncio.sleep(0)
            lines = []
            async with asyncio.timeout(WAIT):
                while True:
                    line = await response.content.readline()
                    if not line:
                        break
                    lines.append(json.loads(line))
        assert lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 410
        assert len(lines) < 150

    run(scenario, store=Store(max_pending=5))


# ------------------------------------------------------------------------------------------ update


def test_update_conflicts_names_and_status_subresource() -> None:
    async def scenario(api: Api) -> None:
        created = (await api.post(DEPLOYS, deployment("d"))).body
        stale = json.loads(json.dumps(created))
        created["spec"]["replicas"] = 3
        updated = await api.put(DEPLOYS + "/d", created)
        assert updated.status == 200 and updated.body["metadata"]["generation"] == 2
        stale["spec"]["replicas"] = 4
        conflict = await api.put(DEPLOYS + "/d", stale)
        assert conflict.status == 409 and conflict.body["reason"] == "Conflict"
        assert conflict.body["message"] == ('Operation cannot be fulfilled on deployments.apps "d": the object has '
                                            "been modified; please apply your changes to the latest version and try "
                                            "again")
        renamed = await api.put(DEPLOYS + "/other", updated.body)
        assert renamed.status == 400 and renamed.body["message"] == ("the name of the object (d) does not match the "
                                                                     "name on the URL (other)")
        with_status = updated.body
        with_status["status"] = {"replicas": 3}
        main = (await api.put(DEPLOYS + "/d", with_status)).body
        assert "status" not in main or main["status"] != {"replicas": 3}
        status = await api.put(DEPLOYS + "/d/status", with_status)
        assert status.status == 200 and status.body["status"] == {"replicas": 3}
        missing = await api.put(DEPLOYS + "/ghost", {**deployment("ghost")})
        assert missing.status == 404 and missing.body["message"] == 'deployments.apps "ghost" not found'
        assert (await api.put(PODS, pod("x"))).status == 405

    run(scenario)


def test_status_patch_and_namespace_finalize() -> None:
    async def scenario(api: Api) -> None:
        await api.post(DEPLOYS, deployment("d"))
        patched = await api.patch(DEPLOYS + "/d/status", {"status": {"replicas": 2}, "spec": {"replicas": 9}},
                                  "application/merge-patch+json")
        assert patched.status == 200 and patched.body["status"] == {"replicas": 2}
        assert patched.body["spec"]["replicas"] == 2
        status_entry = [m for m in patched.body["metadata"]["managedFields"] if m.get("subresource") == "status"]
        assert status_entry and status_entry[0]["fieldsV1"] == {"f:status": {"f:replicas": {}}}
        applied = await api.patch(DEPLOYS + "/d/status?fieldManager=ctl", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "status": {"readyReplicas": 1}}, "application/apply-patch+yaml")
        assert applied.status == 200 and applied.body["status"]["readyReplicas"] == 1
        await api.post("/api/v1/namespaces", {"metadata": {"name": "fin"}})
        namespace = (await api.get("/api/v1/namespaces/fin")).body
        namespace["spec"]["finalizers"] = []
        namespace["metadata"]["labels"]["ignored"] = "yes"
        finalized = await api.put("/api/v1/namespaces/fin/finalize", namespace)
        assert finalized.status == 200 and finalized.body["spec"]["finalizers"] == []
        assert "ignored" not in finalized.body["metadata"]["labels"]
        assert (await api.get("/api/v1/namespaces/fin/finalize")).status == 405

    run(scenario)


# ------------------------------------------------------------------------------------------ patch


def test_patch_content_types() -> None:
    async def scenario(api: Api) -> None:
        await api.post(DEPLOYS, deployment("d"))
        merged = await api.patch(DEPLOYS + "/d", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json")
        assert merged.body["metadata"]["labels"] == {"app": "d", "x": "y"}
        jsonpatch = await api.patch(DEPLOYS + "/d", [{"op": "replace", "path": "/spec/replicas", "value": 5}],
                                    "application/json-patch+json")
        assert jsonpatch.body["spec"]["replicas"] == 5
        strategic = await api.patch(DEPLOYS + "/d", {"spec": {"template": {"spec": {"containers": [
            {"name": "side", "image": "s:1"}]}}}}, "application/strategic-merge-patch+json")
        assert {c["name"] for c in strategic.body["spec"]["template"]["spec"]["containers"]} == {"app", "side"}
        managers = {m["manager"] for m in strategic.body["metadata"]["managedFields"]}
        assert managers == {"Python"} or "Python" in managers
        refused = await api.patch(DEPLOYS + "/d", {}, "application/json")
        assert refused.status == 415 and "application/apply-patch+yaml" in refused.body["message"]
        failing = await api.patch(DEPLOYS + "/d", [{"op": "test", "path": "/spec/replicas", "value": 1}],
                                  "application/json-patch+json")
        assert failing.status in (422, 500) and failing.body["kind"] == "Status"
        await api.post("/apis/networking.istio.io/v1/namespaces/default/virtualservices", {
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
            "spec": {"hosts": ["a"]}})
        crd = await api.patch("/apis/networking.istio.io/v1/namespaces/default/virtualservices/r", {"spec": {}},
                              "application/strategic-merge-patch+json")
        assert crd.status == 415
        missing = await api.patch(DEPLOYS + "/ghost", {}, "application/merge-patch+json")
        assert missing.status == 404
        renaming = await api.patch(DEPLOYS + "/d", {"metadata": {"name": "e"}}, "application/merge-patch+json")
        assert renaming.status == 400
        stale = await api.patch(DEPLOYS + "/d", {"metadata": {"resourceVersion": "1"}}, "application/merge-patch+json")
        assert stale.status == 409
        forced = await api.patch(DEPLOYS + "/d?force=true", {}, "application/merge-patch+json")
        assert forced.status == 422 and "may not be specified for non-apply patch" in forced.body["message"]

    run(scenario)


class RacingHooks(NoHooks):
    """While the first update is being admitted, another client changes the same object."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.raced = False

    async def admit(self, resource: Resource, operation: str, obj: dict[str, Any] | None,
                    old: dict[str, Any] | None, *, dry_run: bool) -> list[str]:
        if operation == "UPDATE" and not self.raced and self.store is not None:
            self.raced = True
            current = self.store.get("/configmaps", "default", "raced")
            current["data"]["other"] = "writer" if "other" not in current["data"] else "writer again"
            self.store.update("/configmaps", current)
        return []


def test_a_patch_that_races_another_write_is_applied_again() -> None:
    hooks = RacingHooks()

    async def scenario(api: Api) -> None:
        hooks.store = api.store
        await api.post(CM_PATH, configmap("raced", a="1"))
        patched = await api.patch(CM_PATH + "/raced", {"data": {"mine": "patch"}}, "application/merge-patch+json")
        assert patched.status == 200 and hooks.raced
        assert patched.body["data"] == {"a": "1", "other": "writer", "mine": "patch"}
        hooks.raced = False
        pinned = await api.patch(CM_PATH + "/raced", {"metadata": {"resourceVersion": patched.body["metadata"][
            "resourceVersion"]}, "data": {"mine": "again"}}, "application/merge-patch+json")
        assert pinned.status == 409

    run(scenario, hooks=hooks)


def test_server_side_apply_creates_is_idempotent_and_conflicts() -> None:
    async def scenario(api: Api) -> None:
        config = yaml.safe_dump(deployment("ssa", replicas=1))
        needs_manager = await api.patch(DEPLOYS + "/ssa", config, "application/apply-patch+yaml")
        assert needs_manager.status == 422
        assert needs_manager.body["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                                                 "value: is required for apply patch")
        created = await api.patch(DEPLOYS + "/ssa?fieldManager=alice", config, "application/apply-patch+yaml")
        assert created.status == 201, created
        again = await api.patch(DEPLOYS + "/ssa?fieldManager=alice", config, "application/apply-patch+yaml")
        assert again.status == 200
        assert again.body["metadata"]["resourceVersion"] == created.body["metadata"]["resourceVersion"]
        other = yaml.safe_dump(deployment("ssa", replicas=3))
        conflict = await api.patch(DEPLOYS + "/ssa?fieldManager=bob", other, "application/apply-patch+yaml")
        assert conflict.status == 409 and conflict.body["reason"] == "Conflict"
        assert conflict.body["details"]["causes"][0]["field"] == ".spec.replicas"
        forced = await api.patch(DEPLOYS + "/ssa?fieldManager=bob&force=true", other, "application/apply-patch+yaml")
        assert forced.status == 200 and forced.body["spec"]["replicas"] == 3
        wrong = await api.patch(DEPLOYS + "/ssa?fieldManager=bob", {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                    "metadata": {"name": "other"}},
                                "application/apply-patch+yaml")
        assert wrong.status == 400

    run(scenario)


# ------------------------------------------------------------------------------------------ delete


def test_delete_answers_and_options() -> None:
    async def scenario(api: Api) -> None:
        created = (await api.post(CM_PATH, configmap("a"))).body
        wrong = await api.delete(CM_PATH + "/a", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                  "preconditions": {"uid": "not-it"}})
        assert wrong.status == 409
        bad = await api.delete(CM_PATH + "/a?propagationPolicy=Sideways")
        assert bad.status == 422 and bad.body["details"]["kind"] == "DeleteOptions"
        deleted = await api.delete(CM_PATH + "/a", {"preconditions": {"uid": created["metadata"]["uid"]}})
        assert deleted.body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "details": {"name": "a", "kind": "configmaps", "uid": created["metadata"]["uid"]}}
        assert (await api.delete(CM_PATH + "/a")).status == 404
        await api.post(PODS, pod("unscheduled"))
        gone = await api.delete(PODS + "/unscheduled")
        assert gone.body["kind"] == "Pod"
        assert (await api.get(PODS + "/unscheduled")).status == 404
        await api.post(PODS, pod("running", node="mesh"))
        graceful = await api.delete(PODS + "/running")
        assert graceful.body["metadata"]["deletionGracePeriodSeconds"] == 30
        assert (await api.get(PODS + "/running")).body["metadata"]["deletionTimestamp"]
        forced = await api.delete(PODS + "/running?gracePeriodSeconds=0")
        assert forced.status == 200
        assert (await api.get(PODS + "/running")).status == 404

    run(scenario)


def test_deletecollection_with_selector() -> None:
    async def scenario(api: Api) -> None:
        for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
            await api.post(CM_PATH, {**configmap(name), "metadata": {"name": name, "labels": {"tier": tier}}})
        deleted = await api.delete(CM_PATH + "?labelSelector=tier%3Dx")
        assert deleted.body["kind"] == "ConfigMapList"
        assert sorted(i["metadata"]["name"] for i in deleted.body["items"]) == ["a", "b"]
        assert [i["metadata"]["name"] for i in (await api.get(CM_PATH)).body["items"]] == ["c"]
        refused = await api.delete("/api/v1/namespaces")
        assert refused.status == 405

    run(scenario)


# ------------------------------------------------------------------------------------------ garbage collection


def owned(name: str, owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": True}
    if block:
        ref["blockOwnerDeletion"] = True
    body = configmap(name)
    body["metadata"]["ownerReferences"] = [ref]
    return body


def test_background_orphan_and_foreground_propagation() -> None:
    async def scenario(api: Api) -> None:
        store = api.store
        owner = (await api.post(DEPLOYS, deployment("bg"))).body
        await api.post(CM_PATH, owned("bg-child", owner))
        await api.delete(DEPLOYS + "/bg")
        await wait_until(lambda: _absent(store, "/configmaps", "bg-child"))

        # Owners removed by anyone, not only through the API (a controller, the kubelet), are followed too.
        owner = (await api.post(DEPLOYS, deployment("direct"))).body
        await api.post(CM_PATH, owned("direct-child", owner))
        store.delete("apps/deployments", "default", "direct")
        await wait_until(lambda: _absent(store, "/configmaps", "direct-child"))

        owner = (await api.post(DEPLOYS, deployment("orphan"))).body
        await api.post(CM_PATH, owned("orphan-child", owner))
        await api.delete(DEPLOYS + "/orphan", {"propagationPolicy": "Orphan"})
        child = (await api.get(CM_PATH + "/orphan-child")).body
        assert "ownerReferences" not in child["metadata"]

        owner = (await api.post(DEPLOYS, deployment("fg"))).body
        await api.post(CM_PATH, owned("fg-child", owner, block=True))
        marked = (await api.delete(DEPLOYS + "/fg?propagationPolicy=Foreground")).body
        assert "foregroundDeletion" in marked["metadata"]["finalizers"] and marked["metadata"]["deletionTimestamp"]
        await wait_until(lambda: _absent(store, "/configmaps", "fg-child"))
        await wait_until(lambda: _absent(store, "apps/deployments", "fg"))

        owner = (await api.post(DEPLOYS, deployment("gone"))).body
        await api.delete(DEPLOYS + "/gone")
        # A dependent whose owner no longer exists is collected as soon as it appears.
        await api.post(CM_PATH, owned("dangling", owner))
        await wait_until(lambda: _absent(store, "/configmaps", "dangling"))

    run(scenario)


async def _absent(store: Store, key: str, name: str) -> bool:
    return not store.exists(key, "default", name)


def test_namespace_deletion_terminates_then_removes() -> None:
    async def scenario(api: Api) -> None:
        await api.post("/api/v1/namespaces", {"metadata": {"name": "tmp"}})
        await api.post("/api/v1/namespaces/tmp/configmaps", configmap("c"))
        await api.post("/api/v1/namespaces/tmp/pods", pod("busy", node="mesh"))
        deleted = await api.delete("/api/v1/namespaces/tmp")
        assert deleted.status == 200
        assert deleted.body["status"]["phase"] == "Terminating" and deleted.body["metadata"]["deletionTimestamp"]
        refused = await api.post("/api/v1/namespaces/tmp/configmaps", configmap("late"))
        assert refused.status == 403 and refused.body["reason"] == "Forbidden"
        assert refused.body["message"] == ('configmaps "late" is forbidden: unable to create new content in namespace '
                                           "tmp because it is being terminated")
        await wait_until(lambda: _absent_in(api.store, "/configmaps", "tmp", "c"))
        # The pod is terminating (its kubelet stops it); the namespace waits for it.
        assert api.store.exists("/namespaces", None, "tmp")
        api.store.delete("/pods", "tmp", "busy", grace_period_seconds=0)
        await wait_until(lambda: _absent_in(api.store, "/namespaces", None, "tmp"))
        immortal = await api.delete("/api/v1/namespaces/kube-system")
        assert immortal.status == 403 and immortal.body["message"] == ('namespaces "kube-system" is forbidden: this '
                                                                       "namespace may not be deleted")

    run(scenario)


async def _absent_in(store: Store, key: str, namespace: str | None, name: str) -> bool:
    return not store.exists(key, namespace, name)


# ------------------------------------------------------------------------------------------ subresources


def test_scale_subresource() -> None:
    async def scenario(api: Api) -> None:
        await api.post(DEPLOYS, deployment("web", replicas=2))
        scale = (await api.get(DEPLOYS + "/web/scale")).body
        assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
        assert scale["spec"] == {"replicas": 2} and scale["status"]["selector"] == "app=web"
        patched = await api.patch(DEPLOYS + "/web/scale?fieldManager=kubectl-scale", {"spec": {"replicas": 4}},
                                  "application/merge-patch+json")
        assert patched.body["spec"]["replicas"] == 4
        scale = patched.body
        scale["spec"]["replicas"] = 5
        put = await api.put(DEPLOYS + "/web/scale", scale)
        assert put.body["spec"]["replicas"] == 5
        stale = await api.put(DEPLOYS + "/web/scale", scale)
        assert stale.status == 409
        applied = await api.patch(DEPLOYS + "/web/scale?fieldManager=hpa&force=true",
                                  {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
                                   "spec": {"replicas": 1}}, "application/apply-patch+yaml")
        assert applied.status == 200 and applied.body["spec"]["replicas"] == 1
        web_deploy = (await api.get(DEPLOYS + "/web")).body
        assert web_deploy["spec"]["replicas"] == 1
        owners = [(m["manager"], m.get("subresource")) for m in web_deploy["metadata"]["managedFields"]
                  if "f:replicas" in m["fieldsV1"].get("f:spec", {})]
        assert owners == [("hpa", "scale")]
        negative = await api.patch(DEPLOYS + "/web/scale", {"spec": {"replicas": -1}}, "application/merge-patch+json")
        assert negative.status == 422
        assert (await api.get(CM_PATH + "/x/scale")).status == 404

    run(scenario)


def test_eviction_deletes_the_pod() -> None:
    async def scenario(api: Api) -> None:
        await api.post(PODS, pod("victim"))
        evicted = await api.post(PODS + "/victim/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                             "metadata": {"name": "victim", "namespace": "default"}})
        assert evicted.status == 201 and evicted.body["status"] == "Success"
        assert (await api.get(PODS + "/victim")).status == 404
        mismatch = await api.post(PODS + "/other/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                             "metadata": {"name": "victim"}})
        assert mismatch.status == 400

    run(scenario)


def test_log_and_proxy_go_to_the_pod(tmp_path: Path) -> None:
    hooks = RecordingHooks()
    log_file = tmp_path / "app.log"
    log_file.write_text("one\ntwo\nthree\n")
    seen: list[dict[str, str]] = []

    async def backend(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=f"pod saw {request.path_qs}", content_type="text/plain")

    async def scenario(api: Api) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", backend)
        async with TestServer(app, host="127.0.0.1") as pod_server:
            async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                assert port == 8080
                return await asyncio.open_connection("127.0.0.1", pod_server.port)

            hooks.endpoints["default/web"] = PodEndpoint(
                connect=connect, log_path=lambda c: log_file if c == "app" else None, running=lambda: True)
            hooks.services["default/svc"] = connect
            await api.post(PODS, pod("web", node="mesh"))
            await api.post(PODS, pod("idle"))
            logs = await api.get(PODS + "/web/log?tailLines=2")
            assert (logs.status, logs.text) == (200, "two\nthree\n")
            assert (await api.get(PODS + "/web/log?container=nope")).status == 400
            assert (await api.get(PODS + "/idle/log")).status == 400
            assert (await api.get(PODS + "/ghost/log")).status == 404
            assert (await api.get(PODS + "/web/log?tailLines=-3")).status == 422
            proxied = await api.get(PODS + "/web:http/proxy/some/path?q=1")
            assert (proxied.status, proxied.text) == (200, "pod saw /some/path?q=1")
            assert "Authorization" not in seen[-1]
            await api.post("/api/v1/namespaces/default/services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                "spec": {"ports": [{"name": "http", "port": 8080}]}})
            via_service = await api.get("/api/v1/namespaces/default/services/svc:http/proxy/")
            assert via_service.text == "pod saw /"
            assert (await api.get("/api/v1/namespaces/default/services/nobody/proxy/")).status == 404

    run(scenario, hooks=hooks)


# ------------------------------------------------------------------------------------------ hooks and robustness


def test_admission_refusals_pass_through_and_bugs_are_500_status(caplog: pytest.LogCaptureFixture) -> None:
    hooks = RecordingHooks()

    async def scenario(api: Api) -> None:
        hooks.refuse = ApiError.invalid("ConfigMap", "a", [Cause("data.k", "Invalid value: nope")])
        refused = await api.post(CM_PATH, configmap("a"))
        assert refused.status == 422 and refused.body["details"]["causes"][0]["field"] == "data.k"
        hooks.refuse = None
        hooks.crash = True
        with caplog.at_level(logging.ERROR, logger="pytest_clover.kube.server"):
            crashed = await api.post(CM_PATH, configmap("a"))
        assert crashed.status == 500 and crashed.body["reason"] == "InternalError"
        assert "admission bug" in caplog.text
        hooks.crash = False
        assert (await api.post(CM_PATH, configmap("a"))).status == 201

    run(scenario, hooks=hooks)


def test_decode_body_yaml_keeps_strings_and_refuses_nan() -> None:
    assert decode_body(b"a: 2024-01-01\nb: yes\n", "application/yaml") == {"a": "2024-01-01", "b": True}
    with pytest.raises(ApiError):
        decode_body(b"a: .nan\n", "application/yaml")
    with pytest.raises(ApiError):
        decode_body(b'{"a": NaN}', "application/json")
    assert struct.calcsize("B") == 1
