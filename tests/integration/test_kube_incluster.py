# The client 37 types every model field Optional and leaves its config, watch and stream helpers untyped: the
# tests read what the server must have filled in.
# mypy: disable-error-code="no-untyped-call,union-attr,index,arg-type,attr-defined"
"""What the Kubernetes backend needs from the embedded mesh's Kubernetes API (issue 12), on the session's SDC mesh.

Access reviews and RBAC objects (kubectl and the official client), a pod that reaches the API the in-cluster way
(``KUBERNETES_SERVICE_HOST``/``_PORT`` and its service-account files), the ingress gateway's LoadBalancer Service
as Istio's recipe for the ingress URL reads it, and a watch from a resourceVersion the store has not reached.
Each test puts back what it changed (its namespace deleted, its objects removed).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import stat
import subprocess
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import Client, wait_for

pytestmark = pytest.mark.integration

kubernetes = pytest.importorskip(
    "kubernetes", reason="the official client is a test dependency: pip install kubernetes"
)
from kubernetes import client as kclient  # noqa: E402
from kubernetes import config as kconfig  # noqa: E402
from kubernetes import watch as kwatch  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from kubernetes.config.incluster_config import InClusterConfigLoader  # noqa: E402

KUBECTL = shutil.which("kubectl")
INGRESS_ANNOTATION = "clover.opnfv.org/ingress-url"

# A pod's app: reads its service-account files, lists its namespace's pods over HTTPS with them (the stdlib
# ignores the HTTP_PROXY its pod sets: the API is not behind the sidecar), prints what it got, then serves.
IN_CLUSTER_APP = """
import http.client, http.server, json, os, ssl, sys

folder = os.environ["CLOVER_SERVICEACCOUNT_DIR"]
token = open(os.path.join(folder, "token")).read().strip()
namespace = open(os.path.join(folder, "namespace")).read().strip()
context = ssl.create_default_context(cafile=os.path.join(folder, "ca.crt"))
host, port = os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"])
connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
connection.request("GET", f"/api/v1/namespaces/{namespace}/pods", headers={"Authorization": f"Bearer {token}"})
answer = connection.getresponse()
body = json.loads(answer.read())
report = {"status": answer.status, "namespace": namespace, "folder": folder, "host": host, "port": port,
          "pods": sorted(p["metadata"]["name"] for p in body.get("items", []))}
print("IN-CLUSTER " + json.dumps(report), flush=True)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.fixture
def api(sdc: LocalBackend) -> Iterator[kclient.ApiClient]:
    kubeconfig = Path(str(sdc.info()["kubeconfig"]))
    client = kconfig.new_client_from_config(str(kubeconfig), persist_config=False)
    try:
        yield client
    finally:
        client.close()
        # The watch's TLS socket is dropped unclosed by the client: collect it here, where it is expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
def namespace(api: kclient.ApiClient) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (its pods stopped, its objects gone)."""
    core = kclient.CoreV1Api(api)
    name = f"h12-{uuid.uuid4().hex[:8]}"
    core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:  # a test may have deleted it itself
                raise

        def gone() -> bool:
            try:
                core.read_namespace(name)
            except ApiException as exc:
                return bool(exc.status == 404)
            return False

        wait_for(gone, timeout=60, what=f"namespace {name} to be deleted")


def _kubectl(kubeconfig: Path, home: Path, *args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        [KUBECTL, f"--cache-dir={home / 'cache'}", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ------------------------------------------------------------------------------------------ authorization, RBAC


def test_access_reviews_allow_the_mesh_token_everything(api: kclient.ApiClient) -> None:
    authorization = kclient.AuthorizationV1Api(api)
    for spec in (
        kclient.V1SelfSubjectAccessReviewSpec(
            resource_attributes=kclient.V1ResourceAttributes(verb="create", resource="pods", namespace="default")
        ),
        kclient.V1SelfSubjectAccessReviewSpec(
            resource_attributes=kclient.V1ResourceAttributes(
                verb="patch", group="networking.istio.io", resource="virtualservices", namespace="default"
            )
        ),
        kclient.V1SelfSubjectAccessReviewSpec(
            non_resource_attributes=kclient.V1NonResourceAttributes(verb="get", path="/healthz")
        ),
    ):
        answer = authorization.create_self_subject_access_review(kclient.V1SelfSubjectAccessReview(spec=spec))
        assert answer.status.allowed is True
        assert answer.status.reason
    rules = authorization.create_self_subject_rules_review(
        kclient.V1SelfSubjectRulesReview(spec=kclient.V1SelfSubjectRulesReviewSpec(namespace="default"))
    )
    assert any(r.verbs == ["*"] and r.resources == ["*"] for r in rules.status.resource_rules)


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl on the PATH: install kubectl ≥ 1.27")
def test_kubectl_auth_can_i_and_an_rbac_manifest(sdc: LocalBackend, namespace: str, tmp_path: Path) -> None:
    kubeconfig = Path(str(sdc.info()["kubeconfig"]))
    assert _kubectl(kubeconfig, tmp_path, "auth", "can-i", "create", "pods", "-n", "default").strip() == "yes"
    assert (
        _kubectl(
            kubeconfig, tmp_path, "auth", "can-i", "delete", "virtualservices.networking.istio.io", "-n", namespace
        ).strip()
        == "yes"
    )
    listed = _kubectl(kubeconfig, tmp_path, "auth", "can-i", "--list", "-n", namespace)
    assert "*.*" in listed.split("\n")[1]
    manifest = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reaper, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reaper, namespace: {namespace}}}
rules:
- apiGroups: [networking.istio.io]
  resources: [virtualservices, destinationrules]
  verbs: [get, list, patch, update]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reaper, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reaper}}
subjects: [{{kind: ServiceAccount, name: reaper, namespace: {namespace}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {namespace}-preflight}}
rules: [{{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {namespace}-preflight}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {namespace}-preflight}}
subjects: [{{kind: ServiceAccount, name: reaper, namespace: {namespace}}}]
"""
    try:
        created = _kubectl(kubeconfig, tmp_path, "apply", "-f", "-", stdin=manifest)
        assert "role.rbac.authorization.k8s.io/reaper created" in created
        again = _kubectl(kubeconfig, tmp_path, "apply", "-f", "-", stdin=manifest)
        assert "role.rbac.authorization.k8s.io/reaper unchanged" in again
        wide = _kubectl(kubeconfig, tmp_path, "get", "rolebinding", "reaper", "-n", namespace, "-o", "wide")
        assert "Role/reaper" in wide and f"{namespace}/reaper" in wide
        bound = json.loads(
            _kubectl(kubeconfig, tmp_path, "get", "clusterrolebinding", f"{namespace}-preflight", "-o", "json")
        )
        assert bound["roleRef"]["name"] == f"{namespace}-preflight"
    finally:
        _kubectl(
            kubeconfig,
            tmp_path,
            "delete",
            "clusterrole,clusterrolebinding",
            f"{namespace}-preflight",
            "--ignore-not-found",
        )


def test_roles_and_bindings_go_with_their_namespace(api: kclient.ApiClient, namespace: str) -> None:
    rbac = kclient.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        kclient.V1Role(
            metadata=kclient.V1ObjectMeta(name="reaper"),
            rules=[kclient.V1PolicyRule(api_groups=["coordination.k8s.io"], resources=["leases"], verbs=["get"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        kclient.V1RoleBinding(
            metadata=kclient.V1ObjectMeta(name="reaper"),
            role_ref=kclient.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="reaper"),
            subjects=[kclient.RbacV1Subject(kind="ServiceAccount", name="default", namespace=namespace)],
        ),
    )
    assert [r.metadata.name for r in rbac.list_namespaced_role(namespace).items] == ["reaper"]
    kclient.CoreV1Api(api).delete_namespace(namespace)
    wait_for(
        lambda: (
            not rbac.list_namespaced_role(namespace).items and not rbac.list_namespaced_role_binding(namespace).items
        ),
        timeout=30,
        what="the namespace's roles and role bindings to be deleted with it",
    )


# ------------------------------------------------------------------------------------------ in-cluster pods


def test_a_pod_reaches_the_api_the_in_cluster_way(
    sdc: LocalBackend, api: kclient.ApiClient, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "in_cluster_app.py"
    script.write_text(IN_CLUSTER_APP)
    labels = {"app": "in-cluster"}
    template = kclient.V1PodTemplateSpec(
        metadata=kclient.V1ObjectMeta(
            labels=labels, annotations={"clover.opnfv.org/local-command": f"{{python}} {script} {{host}} {{port}}"}
        ),
        spec=kclient.V1PodSpec(
            containers=[
                kclient.V1Container(
                    name="app", image="in-cluster:1", ports=[kclient.V1ContainerPort(container_port=8080)]
                )
            ]
        ),
    )
    kclient.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        kclient.V1Deployment(
            metadata=kclient.V1ObjectMeta(name="in-cluster"),
            spec=kclient.V1DeploymentSpec(
                replicas=1, selector=kclient.V1LabelSelector(match_labels=labels), template=template
            ),
        ),
    )
    core = kclient.CoreV1Api(api)

    def report() -> dict[str, Any] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=in-cluster").items
        for pod in pods:
            if not pod.status.container_statuses or not pod.status.container_statuses[0].started:
                continue
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container="app")
            except ApiException:
                continue
            for line in log.splitlines():
                if line.startswith("IN-CLUSTER "):
                    found: dict[str, Any] = json.loads(line[len("IN-CLUSTER ") :])
                    found["pod"] = pod.metadata.name
                    return found
        return None

    seen = wait_for(report, timeout=60, what="the in-cluster app's report in its log")
    assert seen["status"] == 200 and seen["namespace"] == namespace
    assert seen["pod"] in seen["pods"]
    api_url = str(sdc.info()["kube_api_url"])
    assert api_url == f"https://{seen['host']}:{seen['port']}"
    # The files a pod finds under /var/run/secrets/kubernetes.io/serviceaccount, private to the mesh's user.
    folder = Path(seen["folder"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert (folder / "namespace").read_text() == namespace
    # The official client's in-cluster loader takes them as they are.
    configuration = kclient.Configuration()
    InClusterConfigLoader(
        token_filename=str(folder / "token"),
        cert_filename=str(folder / "ca.crt"),
        environ={"KUBERNETES_SERVICE_HOST": seen["host"], "KUBERNETES_SERVICE_PORT": str(seen["port"])},
    ).load_and_set(configuration)
    with kclient.ApiClient(configuration) as in_cluster:
        names = [p.metadata.name for p in kclient.CoreV1Api(in_cluster).list_namespaced_pod(namespace).items]
    assert seen["pod"] in names


# ------------------------------------------------------------------------------------------ ingress gateway


def test_ingress_url_by_istios_recipe_is_the_meshs(sdc: LocalBackend, api: kclient.ApiClient) -> None:
    core = kclient.CoreV1Api(api)
    gateways = kclient.CustomObjectsApi(api).list_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "gateways"
    )["items"]
    assert gateways, "the SDC topology has a Gateway"
    selector = ",".join(f"{k}={v}" for k, v in gateways[0]["spec"]["selector"].items())
    # Istio's recipe: the gateway's pods by the Gateway's selector, the LoadBalancer Service in front of them,
    # its load balancer's IP and the port named http2.
    # In the Gateway's own namespace: other tests of the session may have namespaces with gateways of their own.
    gateway_pods = core.list_namespaced_pod("default", label_selector=selector).items
    assert len(gateway_pods) == 1
    pod = gateway_pods[0]
    services = [
        s
        for s in core.list_namespaced_service(pod.metadata.namespace).items
        if s.spec.selector and all(pod.metadata.labels.get(k) == v for k, v in s.spec.selector.items())
    ]
    assert [s.metadata.name for s in services] == ["istio-ingressgateway"]
    service = services[0]
    assert service.spec.type == "LoadBalancer"
    assert pod.metadata.labels["istio"] == "ingressgateway" and pod.metadata.labels["app"] == "istio-ingressgateway"
    ip = service.status.load_balancer.ingress[0].ip
    port = next(p.port for p in service.spec.ports if p.name == "http2")
    url = f"http://{ip}:{port}"
    assert url == pod.metadata.annotations[INGRESS_ANNOTATION] == sdc.ingress_url()
    endpoints = core.read_namespaced_endpoints("istio-ingressgateway", pod.metadata.namespace)
    assert [a.ip for a in endpoints.subsets[0].addresses] == [pod.status.pod_ip]
    with Client(url) as client:
        assert client.get("/").status == 200


# ------------------------------------------------------------------------------------------ watch


def test_a_watch_from_a_future_resource_version_delivers_what_comes_after(
    api: kclient.ApiClient, namespace: str
) -> None:
    core = kclient.CoreV1Api(api)
    future = int(core.list_namespaced_config_map(namespace).metadata.resource_version) + 5
    seen: list[str] = []
    expected: list[str] = []
    written = threading.Event()

    def follow() -> None:
        w = kwatch.Watch()
        for event in w.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=str(future),
            timeout_seconds=20,
            _request_timeout=(5, 30),
        ):
            if event["type"] == "ADDED":
                seen.append(event["object"].metadata.name)
                if written.is_set() and len(seen) >= len(expected):
                    w.stop()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    # The watch is opened at once (no 504): whether it reaches the server before or after these writes, it
    # delivers exactly those after the resourceVersion it asked for (the store's counter is shared by every
    # write of the mesh, so each write's own resourceVersion says which those are).
    for index in range(10):
        made = core.create_namespaced_config_map(
            namespace, kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name=f"cm-{index}"))
        )
        if int(made.metadata.resource_version) > future:
            expected.append(made.metadata.name)
    written.set()
    wait_for(lambda: len(seen) >= len(expected), timeout=20, what="the watch to deliver the later writes")
    assert seen == expected
    assert 0 < len(expected) < 10, "some writes were at or before the resourceVersion, some after"
    core.create_namespaced_config_map(namespace, kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name="last")))
    thread.join(30)
    assert not thread.is_alive()
