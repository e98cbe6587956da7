"""Tests of the embedded Kubernetes API's served resources, discovery documents, OpenAPI documents and CRDs,
including the real kubectl and the official Python client reading them from a small HTTP server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_clover.backends.local.kube import openapi, resources
from pytest_clover.backends.local.kube.resources import RESOURCES

SERVED_GROUP_VERSIONS = sorted({(r.group, v) for r in RESOURCES for v in r.versions})


# --- the table --------------------------------------------------------------------------------------------------

def test_keys_are_unique_and_every_resource_is_findable() -> None:
    assert len({r.key for r in RESOURCES}) == len(RESOURCES)
    for resource in RESOURCES:
        assert resources.by_key(resource.key) is resource
        for version in resource.versions:
            assert resources.find(resource.group, version, resource.plural) is resource
            api_version = f"{resource.group}/{version}" if resource.group else version
            assert resources.by_kind(api_version, resource.kind) is resource
        for short in resource.short_names:
            assert resource in resources.by_short_name(short)
        assert resource in resources.by_short_name(resource.kind)


def test_properties_of_core_apps_and_istio_resources() -> None:
    pods = resources.by_key("/pods")
    assert pods is not None and pods.api_version == "v1" and pods.preferred_version == "v1"
    assert pods.short_names == ("po",) and "all" in pods.categories
    deployments = resources.by_key("apps/deployments")
    assert deployments is not None and deployments.api_version == "apps/v1"
    assert deployments.subresources == ("scale", "status")
    vs = resources.by_key("networking.istio.io/virtualservices")
    assert vs is not None
    assert vs.versions[0] == "v1" and set(vs.versions) == {"v1", "v1beta1", "v1alpha3"}
    assert vs.short_names == ("vs",) and vs.categories == ("istio-io", "networking-istio-io")
    namespaces = resources.by_key("/namespaces")
    assert namespaces is not None and not namespaces.namespaced and "deletecollection" not in namespaces.verbs


def test_lookups_refuse_what_is_not_served() -> None:
    assert resources.find("apps", "v1beta1", "deployments") is None
    assert resources.find("", "v1", "secrets") is None
    assert resources.by_kind("v1", "Secret") is None
    assert resources.by_kind("networking.istio.io/v2", "VirtualService") is None
    assert resources.by_key("apps/daemonsets") is None


def test_short_names_follow_kubernetes_and_istio() -> None:
    expected = {"po": "/pods", "svc": "/services", "deploy": "apps/deployments", "rs": "apps/replicasets",
                "ns": "/namespaces", "cm": "/configmaps", "ep": "/endpoints", "vs": "networking.istio.io/virtualservices",
                "dr": "networking.istio.io/destinationrules", "gw": "networking.istio.io/gateways",
                "se": "networking.istio.io/serviceentries", "deploy.apps": "apps/deployments"}
    for short, key in expected.items():
        assert [r.key for r in resources.by_short_name(short)] == [key], short
    # "ev" is both the core and the events.k8s.io Event: the core one first, as kubectl resolves it.
    assert [r.key for r in resources.by_short_name("ev")] == ["/events", "events.k8s.io/events"]


# --- legacy discovery -------------------------------------------------------------------------------------------

def test_legacy_root_documents() -> None:
    api = resources.legacy_discovery("/api")
    assert api is not None and api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    apis = resources.legacy_discovery("/apis/")
    assert apis is not None and apis["kind"] == "APIGroupList"
    names = [g["name"] for g in apis["groups"]]
    assert "apps" in names and "networking.istio.io" in names and "" not in names
    istio = next(g for g in apis["groups"] if g["name"] == "networking.istio.io")
    assert istio["preferredVersion"] == {"groupVersion": "networking.istio.io/v1", "version": "v1"}
    assert [v["version"] for v in istio["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    group = resources.legacy_discovery("/apis/apps")
    assert group is not None and group["kind"] == "APIGroup" and group["name"] == "apps"


def test_legacy_resource_lists_name_subresources_with_their_kinds() -> None:
    core = resources.legacy_discovery("/api/v1")
    assert core is not None and core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["singularName"] == "pod"
    assert by_name["pods/log"]["kind"] == "Pod" and by_name["pods/log"]["verbs"] == ["get"]
    assert by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["pods/eviction"]["group"] == "policy" and by_name["pods/eviction"]["kind"] == "Eviction"
    assert by_name["namespaces"]["namespaced"] is False
    apps = resources.legacy_discovery("/apis/apps/v1")
    assert apps is not None and apps["groupVersion"] == "apps/v1"
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert scale["verbs"] == ["get", "patch", "update"]
    status = next(r for r in apps["resources"] if r["name"] == "deployments/status")
    assert status["kind"] == "Deployment" and "group" not in status


@pytest.mark.parametrize("path", ["/apis/apps/v2", "/apis/batch", "/apis/batch/v1", "/api/v2", "/", "/apis/apps/v1/x"])
def test_legacy_discovery_of_unserved_paths_is_none(path: str) -> None:
    assert resources.legacy_discovery(path) is None


@given(st.text(alphabet="/abcdefghijklmnopqrstuvwxyz0123456789.", max_size=40))
def test_legacy_discovery_never_raises(path: str) -> None:
    document = resources.legacy_discovery(path)
    assert document is None or document["kind"] in ("APIVersions", "APIGroupList", "APIGroup", "APIResourceList")


# --- aggregated discovery ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_discovery_shape(version: str) -> None:
    core = resources.aggregated_discovery("api", version)  # type: ignore[arg-type]
    assert core["kind"] == "APIGroupDiscoveryList" and core["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    (item,) = core["items"]
    assert "name" not in item["metadata"]
    (v1,) = item["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert set(subs) == {"eviction", "exec", "log", "portforward", "proxy", "status"}
    assert subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}

    groups = resources.aggregated_discovery("apis", version)  # type: ignore[arg-type]
    by_group = {i["metadata"]["name"]: i for i in groups["items"]}
    assert "" not in by_group
    istio = by_group["networking.istio.io"]
    assert [v["version"] for v in istio["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    for entry in istio["versions"]:
        vs = next(r for r in entry["resources"] if r["resource"] == "virtualservices")
        assert vs["responseKind"]["version"] == entry["version"]
    apps_v1 = by_group["apps"]["versions"][0]
    deployments = next(r for r in apps_v1["resources"] if r["resource"] == "deployments")
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    crds = next(r for r in by_group["apiextensions.k8s.io"]["versions"][0]["resources"])
    assert crds["scope"] == "Cluster"


@pytest.mark.parametrize(("accept", "wanted"), [
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;"
     "g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2"),
    ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
    ("application/json, */*", None),
    ("", None),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList", None),
    ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
])
def test_negotiate_discovery(accept: str, wanted: str | None) -> None:
    assert resources.negotiate_discovery(accept) == wanted


def test_aggregated_discovery_lists_every_served_resource_once_per_version() -> None:
    listed = set()
    for root in ("api", "apis"):
        for item in resources.aggregated_discovery(root)["items"]:
            for version in item["versions"]:
                for entry in version["resources"]:
                    key = (entry["responseKind"]["group"], version["version"], entry["resource"])
                    assert key not in listed
                    listed.add(key)
    assert listed == {(r.group, v, r.plural) for r in RESOURCES for v in r.versions}


# --- OpenAPI ----------------------------------------------------------------------------------------------------

def test_v3_index_points_at_every_group_version() -> None:
    index = openapi.openapi_v3_index()
    expected = {f"apis/{g}/{v}" if g else f"api/{v}" for g, v in SERVED_GROUP_VERSIONS}
    assert set(index["paths"]) == expected
    for path, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{path}?hash=")
        assert openapi.openapi_v3(url) == openapi.openapi_v3(path)
    assert openapi.openapi_v3("apis/batch/v1") is None


def _schemas_by_gvk(document: dict[str, Any], key: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = {}
    for schema in document[key].values() if key == "definitions" else document["components"]["schemas"].values():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            found[(gvk["group"], gvk["version"], gvk["kind"])] = schema
    return found


@pytest.mark.parametrize(("group", "version"), SERVED_GROUP_VERSIONS)
def test_v3_document_has_each_kind_and_a_patch_operation_taking_field_validation(group: str, version: str) -> None:
    document = json.loads(openapi.openapi_v3(f"apis/{group}/{version}" if group else f"api/{version}") or b"")
    assert document["openapi"].startswith("3.")
    schemas = _schemas_by_gvk(document, "components")
    for resource in RESOURCES:
        if resource.group != group or version not in resource.versions:
            continue
        assert (group, version, resource.kind) in schemas
        gvk = {"group": group, "version": version, "kind": resource.kind}
        if not resource.stored:
            # An access review is only ever created: no list kind, no other operation.
            assert (group, version, resource.list_kind) not in schemas
            operations = [op for op in document["paths"].values() if op.get("post", {}).get(
                "x-kubernetes-group-version-kind") == gvk]
            assert [sorted(op) for op in operations] == [["parameters", "post"]], resource.kind
            continue
        assert (group, version, resource.list_kind) in schemas
        # kubectl apply leaves validation to the server when a PATCH of the kind takes fieldValidation.
        patches = [op["patch"] for op in document["paths"].values()
                   if "patch" in op and op["patch"]["x-kubernetes-group-version-kind"] == gvk]
        assert patches, resource.kind
        assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patches[0]["parameters"])
    # Every $ref resolves inside the document.
    text = json.dumps(document)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "')[1:]):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref


def test_v2_document_has_every_kind_and_resolving_refs() -> None:
    document = json.loads(openapi.openapi_v2())
    assert document["swagger"] == "2.0"
    schemas = _schemas_by_gvk(document, "definitions")
    for resource in RESOURCES:
        for version in resource.versions:
            assert (resource.group, version, resource.kind) in schemas
    text = json.dumps(document)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "')[1:]):
        assert ref.removeprefix("#/definitions/") in document["definitions"], ref
    operation_ids = [op["operationId"] for item in document["paths"].values() for key, op in item.items()
                     if key != "parameters"]
    assert len(operation_ids) == len(set(operation_ids))
    assert "patchNetworkingIstioIoV1NamespacedVirtualService" in operation_ids
    assert "deleteCoreV1CollectionNamespacedPod" in operation_ids
    # v2 cannot say oneOf: the Istio schemas lose it there, as in Kubernetes.
    assert '"oneOf"' not in text


def test_merge_keys_and_list_types_as_kubernetes_declares_them() -> None:
    definitions = openapi.definitions("v1")
    pod_spec = definitions["io.k8s.api.core.v1.PodSpec"]["properties"]
    for field in ("containers", "initContainers", "volumes"):
        assert pod_spec[field]["x-kubernetes-patch-merge-key"] == "name"
        assert pod_spec[field]["x-kubernetes-patch-strategy"].startswith("merge")
        assert pod_spec[field]["x-kubernetes-list-type"] == "map"
        assert pod_spec[field]["x-kubernetes-list-map-keys"] == ["name"]
    container = definitions["io.k8s.api.core.v1.Container"]["properties"]
    assert container["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert container["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert container["ports"]["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    assert container["volumeMounts"]["x-kubernetes-patch-merge-key"] == "mountPath"
    service_spec = definitions["io.k8s.api.core.v1.ServiceSpec"]["properties"]
    assert service_spec["ports"]["x-kubernetes-list-map-keys"] == ["port", "protocol"]


def test_explain_relevant_descriptions_are_present() -> None:
    v1 = json.loads(openapi.openapi_v3("api/v1") or b"")["components"]["schemas"]
    containers = v1["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert "List of containers belonging to the pod" in containers["description"]
    assert v1["io.k8s.api.core.v1.Container"]["properties"]["image"]["description"]
    # Described refs are wrapped in allOf, as the kube-apiserver publishes v3.
    spec = v1["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}] and spec["description"]
    istio = json.loads(openapi.openapi_v3("apis/networking.istio.io/v1") or b"")["components"]["schemas"]
    vs = istio["io.istio.networking.v1.VirtualService"]
    assert "routing" in vs["properties"]["spec"]["description"]
    assert vs["properties"]["spec"]["properties"]["hosts"]["description"]
    assert vs["properties"]["metadata"]["allOf"][0]["$ref"].endswith("meta.v1.ObjectMeta")


def test_crd_objects_as_istio_ships_them() -> None:
    crds = {c["metadata"]["name"]: c for c in openapi.crd_objects()}
    assert set(crds) == {"virtualservices.networking.istio.io", "destinationrules.networking.istio.io",
                         "gateways.networking.istio.io", "serviceentries.networking.istio.io",
                         "telemetries.telemetry.istio.io"}
    vs = crds["virtualservices.networking.istio.io"]
    assert vs["apiVersion"] == "apiextensions.k8s.io/v1" and vs["kind"] == "CustomResourceDefinition"
    assert vs["spec"]["scope"] == "Namespaced" and vs["spec"]["names"]["shortNames"] == ["vs"]
    versions = vs["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1", "v1beta1", "v1alpha3"]
    assert [v["storage"] for v in versions] == [True, False, False]
    for version in versions:
        assert version["served"] is True
        assert "spec" in version["schema"]["openAPIV3Schema"]["properties"]
        assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Gateways", "Hosts", "Age"]
    assert vs["status"]["storedVersions"] == ["v1"]
    assert "additionalPrinterColumns" not in crds["gateways.networking.istio.io"]["spec"]["versions"][0]
    # Fresh copies: changing one does not change the next.
    vs["spec"]["names"]["kind"] = "Changed"
    assert openapi.crd_objects()[0]["spec"]["names"]["kind"] != "Changed"


# --- unknown fields ---------------------------------------------------------------------------------------------

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"any.thing/x": "y"}},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                                     "resources": {"limits": {"cpu": "1", "memory": "64Mi"}},
                                     "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]},
        },
    },
    "status": {"replicas": 2},
}


def test_unknown_fields_of_a_good_object_are_none() -> None:
    assert openapi.unknown_fields(DEPLOYMENT) == []
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "r"},
          "spec": {"hosts": ["r"], "http": [{"match": [{"headers": {"x": {"exact": "1"}}}],
                                             "route": [{"destination": {"host": "r", "subset": "v1"}, "weight": 100}],
                                             "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 5}}}}]},
          "status": {"anything": {"goes": True}}}
    assert openapi.unknown_fields(vs) == []


def test_unknown_fields_are_listed_with_their_paths() -> None:
    bad = json.loads(json.dumps(DEPLOYMENT))
    bad["spec"]["replica"] = 3
    bad["metadata"]["labelz"] = {}
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["imag"] = "x"
    container["ports"][0]["containerport"] = 80
    bad["spec"]["template"]["spec"]["containers"].append({"name": "b", "image": "b", "foo": {"bar": 1}})
    assert sorted(openapi.unknown_fields(bad)) == sorted([
        ".metadata.labelz", ".spec.replica", ".spec.template.spec.containers[0].imag",
        ".spec.template.spec.containers[0].ports[0].containerport", ".spec.template.spec.containers[1].foo",
    ])
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
          "spec": {"host": "r", "http": [{"route": [{"destination": {"host": "r", "port": {"numbr": 80}}}]}]}}
    assert openapi.unknown_fields(vs) == [".spec.host", ".spec.http[0].route[0].destination.port.numbr"]


@given(st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), st.integers(),
                       max_size=4))
def test_unknown_fields_reports_exactly_the_added_keys(extra: dict[str, int]) -> None:
    known = {"replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused",
             "progressDeadlineSeconds"}
    obj = json.loads(json.dumps(DEPLOYMENT))
    obj["spec"].update(extra)
    assert sorted(openapi.unknown_fields(obj)) == sorted(f".spec.{k}" for k in extra if k not in known)


def test_known_fields_of_unserved_kinds_is_none() -> None:
    assert openapi.known_fields("v1", "Secret") is None
    assert openapi.known_fields("apps/v2", "Deployment") is None
    assert openapi.unknown_fields({"apiVersion": "v1", "kind": "Secret", "foo": 1}) == []
    finder = openapi.known_fields("v1", "ConfigMap")
    assert finder is not None and finder({"data": {"a": "b"}, "dat": {}}) == [".dat"]


# --- the real kubectl and Python client against a server of these documents -----------------------------------

class DocumentServer:
    """An aiohttp server on loopback serving only discovery and OpenAPI, on its own thread; records requests.
    With ``aggregated=False`` it answers the aggregated-discovery Accept with the legacy documents, as an
    older kube-apiserver does."""

    def __init__(self, aggregated: bool = True) -> None:
        self.aggregated = aggregated
        self.requests: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path_qs}")
            path = request.path
            accept = request.headers.get("Accept", "")
            wanted = resources.negotiate_discovery(accept)
            if self.aggregated and path in ("/api", "/apis") and wanted is not None:
                body = resources.aggregated_discovery(path[1:], wanted)  # type: ignore[arg-type]
                return web.Response(body=json.dumps(body).encode(), headers={
                    "Content-Type": f"application/json;g=apidiscovery.k8s.io;v={wanted};as=APIGroupDiscoveryList"})
            if path == "/version":
                return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
            if path == "/openapi/v2" and "protobuf" in accept:
                return web.Response(body=openapi.openapi_v2_protobuf(),
                                    headers={"Content-Type": openapi.PROTOBUF_V2_CONTENT_TYPE})
            if path == "/openapi/v2":
                return web.Response(body=openapi.openapi_v2(), content_type="application/json")
            if path == "/openapi/v3":
                return web.json_response(openapi.openapi_v3_index())
            if path.startswith("/openapi/v3/"):
                document = openapi.openapi_v3(path)
                if document is not None:
                    return web.Response(body=document, content_type="application/json")
            legacy = resources.legacy_discovery(path)
            if legacy is not None:
                return web.json_response(legacy)
            if request.method == "POST":
                return web.json_response(await request.json(), status=201)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                      "reason": "NotFound", "message": "not found", "metadata": {}}, status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> DocumentServer:
        self._thread.start()
        assert self._ready.wait(10), "document server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture
def server() -> Iterator[DocumentServer]:
    with DocumentServer() as running:
        yield running


def kubectl(server: DocumentServer, cache: Path, *args: str, binary: str = "kubectl") -> str:
    done = subprocess.run(
        [binary, f"--server=http://127.0.0.1:{server.port}", f"--cache-dir={cache}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_kubectl
def test_kubectl_api_resources(server: DocumentServer, tmp_path: Path) -> None:
    out = kubectl(server, tmp_path, "api-resources")
    rows = {tuple(line.split()[:2]) for line in out.splitlines()[1:]}
    for resource in RESOURCES:
        first_short = resource.short_names[0] if resource.short_names else None
        if first_short:
            assert any(r[0] == resource.plural and first_short in r[1] for r in rows), resource.key
    assert "networking.istio.io/v1" in out and "apps/v1" in out
    assert "GET /apis" in " ".join(server.requests)


@needs_kubectl
def test_kubectl_api_resources_with_legacy_discovery(tmp_path: Path) -> None:
    with DocumentServer(aggregated=False) as legacy:
        out = kubectl(legacy, tmp_path, "api-resources", "--api-group=networking.istio.io")
        assert any(r.startswith("GET /apis/networking.istio.io/v1") for r in legacy.requests)
    assert "virtualservices" in out and "vs" in out and "VirtualService" in out


@needs_kubectl
def test_kubectl_explain(server: DocumentServer, tmp_path: Path) -> None:
    out = kubectl(server, tmp_path, "explain", "virtualservice.spec")
    assert "KIND:       VirtualService" in out and "VERSION:    v1" in out
    assert "hosts" in out and "The destination hosts to which traffic is being sent" in out
    out = kubectl(server, tmp_path, "explain", "pod.spec.containers")
    assert "<[]Container>" in out and "List of containers belonging to the pod" in out
    assert "imagePullPolicy" in out
    out = kubectl(server, tmp_path, "explain", "pod.spec.containers.resources.limits")
    assert "<map[string]Quantity>" in out
    out = kubectl(server, tmp_path, "explain", "svc.spec.ports.targetPort")
    assert "<IntOrString>" in out
    out = kubectl(server, tmp_path, "explain", "deploy.spec.strategy")
    assert "DeploymentStrategy" in out


@needs_kubectl
def test_kubectl_get_raw_openapi_v3(server: DocumentServer, tmp_path: Path) -> None:
    index = json.loads(kubectl(server, tmp_path, "get", "--raw", "/openapi/v3"))
    assert index == openapi.openapi_v3_index()


@needs_kubectl
def test_kubectl_apply_leaves_validation_to_the_server(server: DocumentServer, tmp_path: Path) -> None:
    # Two YAML documents (JSON is YAML). A ``kind: List`` would make kubectl validate on the client side
    # against /openapi/v2 in protobuf, which is not served.
    manifest = tmp_path / "objects.yaml"
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "r", "namespace": "default"}, "spec": {"hosts": ["r"]}}
    manifest.write_text(json.dumps(vs) + "\n---\n" + json.dumps(DEPLOYMENT) + "\n")
    out = kubectl(server, tmp_path / "cache", "apply", "-n", "default", "-f", str(manifest))
    assert "virtualservice.networking.istio.io/r created" in out and "deployment.apps/web created" in out
    posts = [r for r in server.requests if r.startswith("POST ")]
    assert len(posts) == 2 and all("fieldValidation=Strict" in p for p in posts), posts


@needs_kubectl
def test_kubectl_validates_a_list_on_the_client_with_protobuf_openapi_v2(server: DocumentServer,
                                                                          tmp_path: Path) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                 "data": {"a": "b"}}
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [configmap]}))
    assert "configmap/c created" in kubectl(server, tmp_path / "cache", "apply", "-f", str(good))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [dict(configmap, dta=1)]}))
    done = subprocess.run(["kubectl", f"--server=http://127.0.0.1:{server.port}", f"--cache-dir={tmp_path / 'cache'}",
                           "apply", "-f", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert 'unknown field "dta" in io.k8s.api.core.v1.ConfigMap' in done.stderr


OLD_KUBECTL = shutil.which("kubectl.1.27") or str(Path(str(shutil.which("kubectl") or "/nonexistent")).resolve()
                                                  .with_name("kubectl.1.27"))


@pytest.mark.skipif(not Path(OLD_KUBECTL).exists(), reason="kubectl 1.27 is not installed")
def test_kubectl_1_27_explains_from_protobuf_openapi_v2(server: DocumentServer, tmp_path: Path) -> None:
    out = kubectl(server, tmp_path, "explain", "vs.spec.http.route", binary=OLD_KUBECTL)
    assert "KIND:       VirtualService" in out and "destination" in out
    out = kubectl(server, tmp_path, "explain", "pods.spec.containers.ports", binary=OLD_KUBECTL)
    assert "<[]ContainerPort>" in out and "containerPort" in out
    assert any(r.startswith("GET /openapi/v2") for r in server.requests)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a protobuf message (the only wire type the tested levels use)."""
    out = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        assert key & 7 == 2, key
        length, at = _read_varint(data, at)
        out.append((key >> 3, data[at:at + length]))
        at += length
    return out


def test_protobuf_v2_document_carries_every_definition() -> None:
    document = dict((number, payload) for number, payload in _fields(openapi.openapi_v2_protobuf()))
    assert document[1] == b"2.0"
    names = [dict(_fields(entry))[1].decode() for _, entry in _fields(document[9])]
    assert names == list(json.loads(openapi.openapi_v2())["definitions"])
    paths = [dict(_fields(entry))[1].decode() for _, entry in _fields(document[8])]
    assert "/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/{name}" in paths


def test_python_client_discovers_resources(server: DocumentServer, tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.dynamic import DynamicClient

    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    with kubernetes.client.ApiClient(configuration) as api_client:
        # Its discovery cache in this test's folder: by default it writes one file per server address to the
        # system's temp folder (one per run of this test, left behind).
        client = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))  # type: ignore[no-untyped-call]
        vs = client.resources.get(api_version="networking.istio.io/v1", kind="VirtualService")
        assert vs.name == "virtualservices" and vs.namespaced and "vs" in vs.short_names
        scale = client.resources.get(api_version="apps/v1", kind="Deployment").subresources["scale"]
        assert scale.kind == "Scale"
        pods = client.resources.get(api_version="v1", kind="Pod")
        assert "log" in pods.subresources
        # The typed APIs deserialize discovery into strict models: every required field must be there.
        core = kubernetes.client.CoreV1Api(api_client).get_api_resources()
        assert "pods/log" in [r.name for r in core.resources]
        assert kubernetes.client.CoreApi(api_client).get_api_versions().versions == ["v1"]
        listed = kubernetes.client.ApisApi(api_client).get_api_versions()
        assert "networking.istio.io" in [g.name for g in listed.groups]
        apps = kubernetes.client.AppsApi(api_client).get_api_group()
        assert apps.preferred_version.group_version == "apps/v1"
        scale = next(r for r in kubernetes.client.AppsV1Api(api_client).get_api_resources().resources
                     if r.name == "deployments/scale")
        assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
