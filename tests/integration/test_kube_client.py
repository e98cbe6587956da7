# The client 37 types every model field Optional and leaves its config, watch and stream helpers untyped: the
# tests read what the server must have filled in.
# mypy: disable-error-code="no-untyped-call,union-attr,index,arg-type"
"""The official `kubernetes` client 37 against the embedded mesh's Kubernetes API (issue 11).

List and watch (with 410 handling), server-side apply, the scale subresource, port-forward and logs — the calls
the Kubernetes backend makes, on the session's SDC mesh (each test puts it back: the ``sdc`` fixture).
"""

from __future__ import annotations

import gc
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

kubernetes = pytest.importorskip(
    "kubernetes", reason="the official client is a test dependency: pip install kubernetes"
)
from kubernetes import client as kclient  # noqa: E402
from kubernetes import config as kconfig  # noqa: E402
from kubernetes import stream as kstream  # noqa: E402
from kubernetes import watch as kwatch  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402


@pytest.fixture
def api(sdc: LocalBackend) -> Iterator[kclient.ApiClient]:
    kubeconfig = Path(str(sdc.info()["kubeconfig"]))
    client = kconfig.new_client_from_config(str(kubeconfig), persist_config=False)
    try:
        yield client
    finally:
        client.close()
        _collect_client_sockets()


def _collect_client_sockets() -> None:
    """Collect the TLS sockets the client drops without closing (its port-forward and watch streams), here,
    where their ResourceWarning is expected, rather than in whatever test the garbage collector next runs in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _deployment_pods(sdc: LocalBackend, deployment: str) -> list[str]:
    return [p.name for p in sdc.pods() if p.deployment == deployment and p.ready]


def test_list_and_watch_see_a_kill_and_its_replacement(api: kclient.ApiClient, sdc: LocalBackend) -> None:
    core = kclient.CoreV1Api(api)
    listed = core.list_namespaced_pod("default", label_selector="app=clover-server")
    assert {p.metadata.name for p in listed.items} == {p.name for p in sdc.pods("clover-server")}
    rv = listed.metadata.resource_version
    assert rv and int(rv) > 0

    events: list[tuple[str, str]] = []
    done = threading.Event()

    def follow() -> None:
        w = kwatch.Watch()
        for event in w.stream(
            core.list_namespaced_pod,
            "default",
            label_selector="app=clover-server",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=30,
            _request_timeout=(5, 40),
        ):
            if event["type"] == "BOOKMARK":
                continue
            events.append((event["type"], event["object"].metadata.name))
            if done.is_set() and any(t == "ADDED" for t, _ in events):
                w.stop()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    victim = _deployment_pods(sdc, "clover-server")[0]
    before = {p.name for p in sdc.pods()}
    core.delete_namespaced_pod(victim, "default", grace_period_seconds=0)
    done.set()
    thread.join(timeout=40)
    assert ("DELETED", victim) in events, events
    assert any(t == "ADDED" and n not in before for t, n in events), events
    sdc.wait_ready(60)


def test_server_side_apply_of_an_istio_object_and_a_conflicting_manager(api: kclient.ApiClient) -> None:
    custom = kclient.CustomObjectsApi(api)
    body: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "clover-client-ssa"},
        "spec": {
            "hosts": ["ssa.example"],
            "gateways": ["sdc-gateway"],
            "http": [{"route": [{"destination": {"host": "proxy-access-control", "port": {"number": 9180}}}]}],
        },
    }
    args = ("networking.istio.io", "v1", "default", "virtualservices", "clover-client-ssa")
    try:
        created = custom.patch_namespaced_custom_object(
            *args, body, field_manager="pytest-clover", force=True, _content_type="application/apply-patch+yaml"
        )
        # An apply that creates answers 201, as kube-apiserver does; client 37 maps only 200 to a body for
        # custom objects, and gives None (the Kubernetes backend reads the object back).
        assert created is None
        applied = custom.get_namespaced_custom_object(*args)
        managers = {m["manager"] for m in applied["metadata"]["managedFields"]}
        assert "pytest-clover" in managers
        other = json.loads(json.dumps(body))
        other["spec"]["hosts"] = ["other.example"]
        with pytest.raises(ApiException) as conflict:
            custom.patch_namespaced_custom_object(
                *args, other, field_manager="someone-else", _content_type="application/apply-patch+yaml"
            )
        assert conflict.value.status == 409
        assert "conflict" in json.loads(conflict.value.body)["message"].lower()
        again = custom.patch_namespaced_custom_object(
            *args, body, field_manager="pytest-clover", force=True, _content_type="application/apply-patch+yaml"
        )
        assert again["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]  # nothing changed
    finally:
        custom.delete_namespaced_custom_object(*args)


def test_the_scale_subresource_moves_the_pods(api: kclient.ApiClient, sdc: LocalBackend) -> None:
    apps = kclient.AppsV1Api(api)
    scale = apps.read_namespaced_deployment_scale("clover-server", "default")
    assert scale.spec.replicas == 3 and scale.status.replicas == 3
    apps.patch_namespaced_deployment_scale("clover-server", "default", {"spec": {"replicas": 4}})
    wait_for(lambda: len(_deployment_pods(sdc, "clover-server")) == 4, 30, what="4 ready clover-server pods")
    wait_for(
        lambda: apps.read_namespaced_deployment_status("clover-server", "default").status.ready_replicas == 4,
        10,
        what="the Deployment's status to say 4 ready",
    )


def test_logs_and_port_forward_through_the_client(api: kclient.ApiClient, sdc: LocalBackend, ingress: Any) -> None:
    ingress.get("/")
    core = kclient.CoreV1Api(api)
    gateway = next(p for p in sdc.pods() if p.service == "istio-ingressgateway").name
    log = core.read_namespaced_pod_log(gateway, "default", container="istio-proxy", tail_lines=5)
    assert log.strip() and json.loads(log.strip().splitlines()[-1])

    pod = sdc.pods("clover-server")[0].name
    # The stream helpers swap the client's call_api: a client of its own, as the Kubernetes backend does.
    own = kconfig.new_client_from_config(str(sdc.info()["kubeconfig"]), persist_config=False)
    try:
        forward = kstream.portforward(
            kclient.CoreV1Api(own).connect_get_namespaced_pod_portforward, pod, "default", ports="15000"
        )
        sock = forward.socket(15000)
        sock.settimeout(10)
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = b""
        while b"LIVE" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        sock.close()
        forward.close()
        # The client's proxy thread closes its WebSocket once the local ends are closed: wait for it.
        wait_for(lambda: not forward.connected, 10, what="the port-forward's WebSocket to close")
        assert b"200 OK" in reply and b"LIVE" in reply, reply
    finally:
        own.close()
        _collect_client_sockets()
