"""Tests of server-side printing (``as=Table``) for the kinds the embedded Kubernetes API serves, including
the real ``kubectl get`` printing tables from a small HTTP server."""

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

from pytest_clover.backends.local.kube import resources
from pytest_clover.backends.local.kube.resources import Resource
from pytest_clover.backends.local.kube.tables import human_duration, table

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def stamp(seconds_ago: float) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(NOW - seconds_ago, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def resource(key: str) -> Resource:
    found = resources.by_key(key)
    assert found is not None
    return found


def columns(result: dict[str, Any], *, wide: bool = True) -> list[str]:
    return [c["name"] for c in result["columnDefinitions"] if wide or c["priority"] == 0]


def cells(result: dict[str, Any]) -> list[list[Any]]:
    return [row["cells"] for row in result["rows"]]


# --- durations --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
    (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60 * 7, "3h7m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (2 * 86400 + 3 * 3600, "2d3h"), (8 * 86400, "8d"),
    (729 * 86400, "729d"), (730 * 86400, "2y"), (731 * 86400, "2y1d"), (8 * 365 * 86400, "8y"),
])
def test_human_duration_as_kubernetes(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@given(st.integers(min_value=0, max_value=20 * 365 * 86400))
def test_human_duration_is_short_and_unit_suffixed(seconds: int) -> None:
    text = human_duration(seconds)
    assert 2 <= len(text) <= 8 and text[-1] in "smhdy" and text[0].isdigit()


# --- pods -------------------------------------------------------------------------------------------------------

def pod(name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": stamp(200), "uid": "u-" + name},
        "spec": {"containers": [{"name": "app", "image": "app"}, {"name": "istio-proxy", "image": "proxyv2"}],
                 "nodeName": "local"},
        "status": status,
    }


def running(name: str, ready: bool = True, restarts: int = 0, last_finished: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if last_finished:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": last_finished}}
    return status


def test_pod_columns_and_a_running_pod() -> None:
    obj = pod("web-1", phase="Running", podIP="127.0.0.5", podIPs=[{"ip": "127.0.0.5"}],
              conditions=[{"type": "Ready", "status": "True"}],
              containerStatuses=[running("app", restarts=2, last_finished=stamp(65)), running("istio-proxy")])
    result = table(resource("/pods"), [obj], now=NOW)
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert columns(result, wide=False) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert columns(result) == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                               "Readiness Gates"]
    assert result["columnDefinitions"][0]["format"] == "name"
    assert cells(result) == [["web-1", "2/2", "Running", "2 (65s ago)", "3m20s", "127.0.0.5", "local", "<none>",
                              "<none>"]]
    row_object = result["rows"][0]["object"]
    assert row_object["kind"] == "PartialObjectMetadata" and row_object["metadata"]["uid"] == "u-web-1"


@pytest.mark.parametrize(("status", "metadata", "ready", "shown"), [
    ({"phase": "Pending"}, {}, "0/2", "Pending"),
    ({"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
        running("istio-proxy")]}, {}, "1/2", "ContainerCreating"),
    ({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        running("istio-proxy")]}, {}, "1/2", "CrashLoopBackOff"),
    ({"phase": "Failed", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}},
        {"name": "istio-proxy", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                                                                                            "reason": "Completed"}}}]},
     {}, "0/2", "ExitCode:137"),
    ({"phase": "Running", "containerStatuses": [running("app"), running("istio-proxy")]},
     {"deletionTimestamp": stamp(1)}, "2/2", "Terminating"),
    ({"phase": "Failed", "reason": "Evicted"}, {}, "0/2", "Evicted"),
])
def test_pod_status_as_kubectl_shows_it(status: dict[str, Any], metadata: dict[str, Any], ready: str,
                                        shown: str) -> None:
    obj = pod("p", **status)
    obj["metadata"].update(metadata)
    ((_, ready_cell, status_cell, *_),) = cells(table(resource("/pods"), [obj], now=NOW))
    assert (ready_cell, status_cell) == (ready, shown)


def test_pod_restarts_without_a_last_termination_is_a_plain_count() -> None:
    obj = pod("p", phase="Running", containerStatuses=[running("app", restarts=3), running("istio-proxy")])
    assert cells(table(resource("/pods"), [obj], now=NOW))[0][3] == "3"


def test_pod_sidecar_init_container_counts_as_a_container() -> None:
    obj = pod("p", phase="Running", conditions=[{"type": "Initialized", "status": "True"}],
              initContainerStatuses=[{"name": "proxy", "ready": True, "started": True, "restartCount": 1,
                                      "state": {"running": {}}}],
              containerStatuses=[running("app"), running("istio-proxy")])
    obj["spec"]["initContainers"] = [{"name": "proxy", "image": "p", "restartPolicy": "Always"}]
    row = cells(table(resource("/pods"), [obj], now=NOW))[0]
    assert row[1:4] == ["3/3", "Running", "1"]


def test_pod_waiting_on_init_container() -> None:
    obj = pod("p", phase="Pending", initContainerStatuses=[
        {"name": "init", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}])
    obj["spec"]["initContainers"] = [{"name": "init", "image": "i"}]
    assert cells(table(resource("/pods"), [obj], now=NOW))[0][2] == "Init:0/1"


# --- workloads --------------------------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}


def test_deployment_columns_and_cells() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "creationTimestamp": stamp(2 * 86400 + 3 * 3600)},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "a"},
                                                "matchExpressions": [{"key": "env", "operator": "In",
                                                                      "values": ["prod", "dev"]}]},
                    "template": TEMPLATE},
           "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    result = table(resource("apps/deployments"), [obj], now=NOW)
    assert columns(result, wide=False) == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert columns(result)[5:] == ["Containers", "Images", "Selector"]
    # The kube-apiserver declares these columns as strings and fills them with integers.
    assert [c["type"] for c in result["columnDefinitions"]] == ["string"] * 8
    assert cells(result) == [["web", "2/3", 3, 2, "2d3h", "web,log", "nginx:1,busybox",
                              "app=web,env in (dev,prod),tier=a"]]


def test_deployment_without_replicas_or_status_defaults_to_one() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": TEMPLATE}}
    assert cells(table(resource("apps/deployments"), [obj], now=NOW))[0][:5] == ["d", "0/1", 0, 0, "<unknown>"]


def test_replicaset_columns_and_cells() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-6d4", "creationTimestamp": stamp(5)},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
           "status": {"replicas": 2, "readyReplicas": 1}}
    result = table(resource("apps/replicasets"), [obj], now=NOW)
    assert columns(result, wide=False) == ["Name", "Desired", "Current", "Ready", "Age"]
    assert cells(result) == [["web-6d4", 2, 2, 1, "5s", "web,log", "nginx:1,busybox", "app=web"]]


# --- services, endpoints ----------------------------------------------------------------------------------------

def service(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "creationTimestamp": stamp(60)},
            "spec": spec, "status": status or {}}


def test_service_columns_and_cells() -> None:
    objects = [
        service("web", {"type": "ClusterIP", "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
                        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                        "selector": {"b": "2", "a": "1"}}),
        service("np", {"type": "NodePort", "clusterIP": "10.0.0.8", "ports": [{"port": 80, "nodePort": 30080}],
                       "externalIPs": ["1.2.3.4"]}),
        service("lb", {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "ports": [{"port": 443}]}),
        service("lb2", {"type": "LoadBalancer", "clusterIP": "10.0.0.10", "ports": [{"port": 443}]},
                {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}),
        service("ext", {"type": "ExternalName", "externalName": "db.example"}),
        service("headless", {"clusterIP": "None"}),
    ]
    result = table(resource("/services"), objects, now=NOW)
    assert columns(result) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert cells(result) == [
        ["web", "ClusterIP", "10.0.0.7", "<none>", "80/TCP,53/UDP", "60s", "a=1,b=2"],
        ["np", "NodePort", "10.0.0.8", "1.2.3.4", "80:30080/TCP", "60s", "<none>"],
        ["lb", "LoadBalancer", "10.0.0.9", "<pending>", "443/TCP", "60s", "<none>"],
        ["lb2", "LoadBalancer", "10.0.0.10", "5.6.7.8,lb.example", "443/TCP", "60s", "<none>"],
        ["ext", "ExternalName", "<none>", "db.example", "<none>", "60s", "<none>"],
        ["headless", "ClusterIP", "None", "<none>", "<none>", "60s", "<none>"],
    ]


def test_endpoints_cells_list_three_then_count_the_rest() -> None:
    many = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 4)],
                         "ports": [{"port": 80}, {"port": 8080}]}]}
    empty = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "none"}}
    result = table(resource("/endpoints"), [many, empty], now=NOW)
    assert columns(result) == ["Name", "Endpoints", "Age"]
    assert cells(result) == [["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more...", "<unknown>"],
                             ["none", "<none>", "<unknown>"]]


def test_endpointslice_namespace_configmap_serviceaccount_lease() -> None:
    created = stamp(30)
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "web-abc", "creationTimestamp": created}, "addressType": "IPv4",
              "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    assert cells(table(resource("discovery.k8s.io/endpointslices"), [slice_], now=NOW)) == [
        ["web-abc", "IPv4", "80", "10.0.0.1,10.0.0.2", "30s"]]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "creationTimestamp": created},
                 "status": {"phase": "Active"}}
    result = table(resource("/namespaces"), [namespace], now=NOW)
    assert columns(result) == ["Name", "Status", "Age"] and cells(result) == [["default", "Active", "30s"]]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": created},
              "data": {"a": "1", "b": "2"}}
    assert cells(table(resource("/configmaps"), [config], now=NOW)) == [["c", 2, "30s"]]
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "creationTimestamp": created}}
    assert cells(table(resource("/serviceaccounts"), [account], now=NOW)) == [["default", 0, "30s"]]
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l", "creationTimestamp": created}, "spec": {"holderIdentity": "me"}}
    assert cells(table(resource("coordination.k8s.io/leases"), [lease], now=NOW)) == [["l", "me", "30s"]]


# --- events -----------------------------------------------------------------------------------------------------

def test_core_event_columns_and_cells() -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17a"}, "type": "Warning",
             "reason": "BackOff", "message": "Back-off restarting failed container \n",
             "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
             "source": {"component": "kubelet", "host": "local"}, "count": 4,
             "firstTimestamp": stamp(600), "lastTimestamp": stamp(5)}
    result = table(resource("/events"), [event], now=NOW)
    assert columns(result, wide=False) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert columns(result) == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                               "First Seen", "Count", "Name"]
    assert cells(result) == [["5s", "Warning", "BackOff", "pod/web-1", "spec.containers{app}", "kubelet, local",
                              "Back-off restarting failed container", "10m", 4, "web.17a"]]


def test_events_k8s_io_event_prints_like_a_core_event() -> None:
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "type": "Normal",
             "reason": "Scheduled", "note": "assigned", "regarding": {"kind": "Pod", "name": "web-1"},
             "eventTime": stamp(90), "reportingController": "scheduler", "reportingInstance": "s-1"}
    assert cells(table(resource("events.k8s.io/events"), [event], now=NOW)) == [
        ["90s", "Normal", "Scheduled", "pod/web-1", "", "scheduler, s-1", "assigned", "90s", 1, "e"]]
    series = dict(event, series={"count": 7, "lastObservedTime": stamp(3)})
    assert cells(table(resource("events.k8s.io/events"), [series], now=NOW))[0][0] == "3s"
    assert cells(table(resource("events.k8s.io/events"), [series], now=NOW))[0][8] == 7


# --- CRDs and Istio kinds ---------------------------------------------------------------------------------------

def test_crd_table_prints_creation_time() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "virtualservices.networking.istio.io", "creationTimestamp": "2023-11-14T22:00:00Z"}}
    result = table(resource("apiextensions.k8s.io/customresourcedefinitions"), [crd], now=NOW)
    assert columns(result) == ["Name", "Created At"] and result["columnDefinitions"][1]["type"] == "date"
    assert cells(result) == [["virtualservices.networking.istio.io", "2023-11-14T22:00:00Z"]]


def istio(kind: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": kind,
            "metadata": {"name": "reviews", "creationTimestamp": stamp(200)}, "spec": spec}


def test_istio_kinds_print_their_crd_printer_columns() -> None:
    vs = istio("VirtualService", "v1", {"hosts": ["reviews"], "gateways": ["mesh", "gw"]})
    result = table(resource("networking.istio.io/virtualservices"), [vs], now=NOW)
    assert columns(result) == ["Name", "Gateways", "Hosts", "Age"]
    assert cells(result) == [["reviews", '["mesh","gw"]', '["reviews"]', "3m20s"]]
    no_gateways = istio("VirtualService", "v1beta1", {"hosts": ["reviews"]})
    assert cells(table(resource("networking.istio.io/virtualservices"), [no_gateways], now=NOW)) == [
        ["reviews", None, '["reviews"]', "3m20s"]]
    dr = istio("DestinationRule", "v1alpha3", {"host": "reviews"})
    result = table(resource("networking.istio.io/destinationrules"), [dr], now=NOW)
    assert columns(result) == ["Name", "Host", "Age"] and cells(result) == [["reviews", "reviews", "3m20s"]]
    gw = istio("Gateway", "v1", {"servers": []})
    result = table(resource("networking.istio.io/gateways"), [gw], now=NOW)
    assert columns(result) == ["Name", "Age"] and cells(result) == [["reviews", "3m20s"]]
    se = istio("ServiceEntry", "v1", {"hosts": ["a.example"], "location": "MESH_EXTERNAL", "resolution": "DNS"})
    result = table(resource("networking.istio.io/serviceentries"), [se], now=NOW)
    assert columns(result) == ["Name", "Hosts", "Location", "Resolution", "Age"]
    assert cells(result) == [["reviews", '["a.example"]', "MESH_EXTERNAL", "DNS", "3m20s"]]


def test_include_object_and_list_metadata() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "7"}, "data": {}}
    full = table(resource("/configmaps"), [obj], include_object="Object", now=NOW, resource_version="9",
                 continue_token="abc")
    assert full["rows"][0]["object"] is obj
    assert full["metadata"] == {"resourceVersion": "9", "continue": "abc"}
    bare = table(resource("/configmaps"), [obj], include_object="None", now=NOW, no_headers=True)
    assert "object" not in bare["rows"][0] and bare["columnDefinitions"] == []
    assert table(resource("/configmaps"), [], now=NOW)["rows"] == []


def test_every_served_resource_prints_one_cell_per_column() -> None:
    for served in resources.RESOURCES:
        obj = {"apiVersion": served.api_version, "kind": served.kind,
               "metadata": {"name": "x", "creationTimestamp": stamp(1)}}
        result = table(served, [obj], now=NOW)
        assert len(result["rows"][0]["cells"]) == len(result["columnDefinitions"]), served.key
        for column in result["columnDefinitions"]:
            assert set(column) == {"name", "type", "format", "description", "priority"}


# --- the real kubectl -------------------------------------------------------------------------------------------

class TableServer:
    """A loopback aiohttp server that lists ``objects`` of one resource (as a Table when asked), on its own thread."""

    def __init__(self, served: Resource, objects: list[dict[str, Any]], now: float) -> None:
        self.served, self.objects, self.now = served, objects, now
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
            if request.path == "/version":
                return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
            legacy = resources.legacy_discovery(request.path)
            if legacy is not None:
                return web.json_response(legacy)
            if request.path.rstrip("/").endswith(self.served.plural):
                if "as=Table" in request.headers.get("Accept", ""):
                    return web.json_response(table(self.served, self.objects, now=self.now, resource_version="1"))
                return web.json_response({"kind": self.served.list_kind, "apiVersion": self.served.api_version,
                                          "metadata": {"resourceVersion": "1"}, "items": self.objects})
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                      "reason": "NotFound", "message": "not found", "metadata": {}}, status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> TableServer:
        self._thread.start()
        assert self._ready.wait(10), "table server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def pods_server() -> Iterator[TableServer]:
    objects = [pod("web-1", phase="Running", podIPs=[{"ip": "127.0.0.5"}],
                   containerStatuses=[running("app"), running("istio-proxy", ready=False)])]
    objects[0]["metadata"]["creationTimestamp"] = stamp(0)
    # kubectl prints what the server computed: ages are relative to the server's clock, here NOW.
    with TableServer(resource("/pods"), objects, now=NOW) as running_server:
        yield running_server


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_get_prints_the_server_table(pods_server: TableServer, tmp_path: Path) -> None:
    def get(*args: str) -> list[list[str]]:
        done = subprocess.run(["kubectl", f"--server=http://127.0.0.1:{pods_server.port}", f"--cache-dir={tmp_path}",
                               "get", "pods", "-n", "default", *args], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        return [line.split() for line in done.stdout.splitlines()]

    assert get() == [["NAME", "READY", "STATUS", "RESTARTS", "AGE"], ["web-1", "1/2", "Running", "0", "0s"]]
    wide = get("-o", "wide")
    assert wide[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS",
                       "GATES"]
    assert wide[1] == ["web-1", "1/2", "Running", "0", "0s", "127.0.0.5", "local", "<none>", "<none>"]
    listed = json.loads(subprocess.run(
        ["kubectl", f"--server=http://127.0.0.1:{pods_server.port}", f"--cache-dir={tmp_path}", "get", "pods", "-n",
         "default", "-o", "json"], capture_output=True, text=True, timeout=60, check=True).stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web-1"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_get_prints_istio_printer_columns(tmp_path: Path) -> None:
    vs = istio("VirtualService", "v1", {"hosts": ["reviews"], "gateways": ["mesh"]})
    vs["metadata"]["namespace"] = "default"
    with TableServer(resource("networking.istio.io/virtualservices"), [vs], now=NOW) as served:
        done = subprocess.run(["kubectl", f"--server=http://127.0.0.1:{served.port}", f"--cache-dir={tmp_path}",
                               "get", "vs", "-n", "default"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        ["NAME", "GATEWAYS", "HOSTS", "AGE"], ["reviews", '["mesh"]', '["reviews"]', "3m20s"]]
