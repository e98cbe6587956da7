"""Namespaces of the embedded mesh: a second SDC in ``sdc2``, brought up, faulted and deleted with the real kubectl.

The second app is applied once (``kubectl apply -n sdc2 -f fixtures/sdc/``) beside the session's SDC in
``default``, and again after the test that deletes its namespace; each test puts back what it changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import ProcessRecord
from tests.helpers import Client, wait_for

pytestmark = pytest.mark.integration

KUBECTL = shutil.which("kubectl")
SDC = Path(__file__).resolve().parents[2] / "fixtures" / "sdc"
NS = "sdc2"
SDC_PODS = 9  # 8 app pods and the namespace's ingress gateway

if KUBECTL is None:
    pytest.skip("no kubectl on the PATH: install kubectl ≥ 1.27", allow_module_level=True)


class KubeCtl:
    """The real kubectl against the mesh, with a private cache and home (no user config is read)."""

    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "KUBECONFIG": str(kubeconfig)}
        self.cache = tmp / "kube-cache"

    def run(self, *args: str, check: bool = True, timeout: float = 90, stdin: str | None = None) -> str:
        assert KUBECTL is not None
        proc = subprocess.run(
            [KUBECTL, f"--cache-dir={self.cache}", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            input=stdin,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))


def namespace_status(mesh: LocalBackend, namespace: str) -> dict[str, Any]:
    """What the supervisor says of one namespace's app (empty once the mesh runs nothing there)."""
    return dict((mesh.status().get("namespaces") or {}).get(namespace) or {})


def ready_pods(mesh: LocalBackend, namespace: str) -> list[dict[str, Any]]:
    return [p for p in namespace_status(mesh, namespace).get("pods", []) if p["ready"]]


def hops(reply: Any) -> list[str]:
    """The pods a request went through, from the SDC VNFs' ``x-clover-hops`` header (``pod/version`` each)."""
    return [h.strip().split("/")[0] for h in reply.headers.get("x-clover-hops", "").split(",") if h.strip()]


def outbound(pod: dict[str, Any]) -> Client:
    """A client that calls as the pod's application does: through its sidecar's outbound listener."""
    return Client(f"http://{pod['ip']}:{pod['outbound_port']}")


@pytest.fixture(scope="module")
def kube(mesh: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> KubeCtl:
    info = mesh.info()
    assert info.get("kubeconfig"), f"the mesh serves no Kubernetes API: {info}"
    return KubeCtl(Path(str(info["kubeconfig"])), tmp_path_factory.mktemp("kube-ns"))


@pytest.fixture(scope="module")
def second_app(mesh: LocalBackend, kube: KubeCtl) -> Iterator[None]:
    """Namespace ``sdc2`` deleted once the module is done, whatever its tests left."""
    yield
    kube.run("delete", "namespace", NS, "--ignore-not-found", "--timeout=90s", check=False, timeout=120)


@pytest.fixture
def sdc2(mesh: LocalBackend, kube: KubeCtl, second_app: None) -> str:
    """The SDC applied a second time, into namespace ``sdc2`` (again if a test deleted it); its ingress URL."""
    if len(ready_pods(mesh, NS)) != SDC_PODS:
        if kube.run("get", "namespace", NS, "--ignore-not-found", timeout=30) == "":
            kube.run("create", "namespace", NS)
        kube.run("apply", "-n", NS, "-f", str(SDC))
        wait_for(lambda: len(ready_pods(mesh, NS)) == SDC_PODS, 90, what=f"{SDC_PODS} ready pods in {NS}")
    url = wait_for(lambda: namespace_status(mesh, NS).get("ingress_url"), 30, what="the ingress of sdc2")
    return str(url)


@pytest.fixture
def default_pods(sdc: LocalBackend) -> set[str]:
    """The default namespace's pod names (after the session's mesh is put back)."""
    return {p.name for p in sdc.pods()}


# --------------------------------------------------------------------------- a second app


def test_a_second_sdc_gets_ready_pods_and_serves_through_its_own_ingress(
    sdc: LocalBackend, kube: KubeCtl, sdc2: str, default_pods: set[str]
) -> None:
    mine = {p["name"] for p in namespace_status(sdc, NS)["pods"]}
    assert len(mine) == SDC_PODS and not mine & default_pods
    assert sdc2 != sdc.ingress_url()
    # kubectl sees them as Running pods of sdc2, their Deployments available and their Services' endpoints.
    listed = kube.json("get", "pods", "-n", NS)["items"]
    assert {p["metadata"]["name"] for p in listed} == mine
    assert all(p["status"]["phase"] == "Running" for p in listed)
    deployment = kube.json("get", "deploy", "clover-server", "-n", NS)
    assert deployment["status"].get("readyReplicas") == 3
    endpoints = kube.json("get", "endpoints", "clover-server", "-n", NS)
    addresses = {a["targetRef"]["name"] for s in endpoints["subsets"] for a in s["addresses"]}
    assert len(addresses) == 4 and addresses <= mine
    # The gateway's Pod object says where that namespace's ingress is.
    gateway = next(p for p in listed if p["metadata"]["name"].startswith("istio-ingressgateway-"))
    assert gateway["metadata"]["annotations"]["clover.opnfv.org/ingress-url"] == sdc2
    # Requests through each ingress stay in their namespace, all the way down the SDC chain.
    with Client(sdc2) as client:
        replies = [client.get("/") for _ in range(8)]
    assert all(r.status == 200 for r in replies), [r.status for r in replies]
    seen = {pod for r in replies for pod in hops(r)}
    assert seen and seen <= mine, seen
    with Client(sdc.ingress_url()) as client:
        replies = [client.get("/") for _ in range(8)]
    assert all(r.status == 200 for r in replies)
    seen = {pod for r in replies for pod in hops(r)}
    assert seen and seen <= default_pods, seen
    # The backend protocol still lists the mesh's own namespace only.
    assert {p.name for p in sdc.pods()} == default_pods


def test_a_fault_on_sdc2s_clover_server_shows_only_there_and_the_reverse(
    sdc: LocalBackend, kube: KubeCtl, sdc2: str
) -> None:
    abort = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: clover-server}
spec:
  hosts: [clover-server]
  http:
    - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
      route: [{destination: {host: clover-server}}]
"""
    kube.run("apply", "-n", NS, "-f", "-", stdin=abort)
    try:
        with Client(sdc2) as faulted, Client(sdc.ingress_url()) as clean:
            assert {faulted.get("/").status for _ in range(6)} == {503}
            assert {clean.get("/").status for _ in range(6)} == {200}
    finally:
        kube.run("delete", "virtualservice", "clover-server", "-n", NS)
    # The same fault in default (through the backend protocol, as the fault engine applies it) leaves sdc2 alone.
    sdc.apply(abort)
    with Client(sdc2) as clean, Client(sdc.ingress_url()) as faulted:
        assert {faulted.get("/").status for _ in range(6)} == {503}
        assert {clean.get("/").status for _ in range(6)} == {200}


def test_a_virtual_service_with_a_short_host_in_sdc2_routes_sdc2s_service(
    sdc: LocalBackend, kube: KubeCtl, sdc2: str, default_pods: set[str]
) -> None:
    only_v2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: clover-server}
spec:
  hosts: [clover-server]
  http:
    - route: [{destination: {host: clover-server, subset: v2}}]
"""
    v2 = {p["name"] for p in namespace_status(sdc, NS)["pods"] if p["deployment"] == "clover-server-v2"}
    assert len(v2) == 1
    kube.run("apply", "-n", NS, "-f", "-", stdin=only_v2)
    try:
        with Client(sdc2) as client:
            servers = {hops(client.get("/"))[-1] for _ in range(12)}
        assert servers == v2
        # Default's clover-server is another Service: its traffic still goes to its four pods, v1 and v2.
        with Client(sdc.ingress_url()) as client:
            servers = {hops(client.get("/"))[-1] for _ in range(24)}
        assert servers <= default_pods and len(servers) >= 2
    finally:
        kube.run("delete", "virtualservice", "clover-server", "-n", NS)


def test_a_pods_outbound_call_resolves_in_its_own_namespace_and_crosses_by_name(
    sdc: LocalBackend, sdc2: str, default_pods: set[str]
) -> None:
    pods2 = namespace_status(sdc, NS)["pods"]
    mine = {p["name"] for p in pods2}
    servers2 = {p["name"] for p in pods2 if p["service"] == "clover-server"}
    caller2 = next(p for p in pods2 if p["service"] == "http-lb")
    caller1 = next(p for p in sdc.status()["pods"] if p["service"] == "http-lb")
    servers1 = {p.name for p in sdc.pods("clover-server")}
    # `http://clover-server:9180` from a pod of sdc2 is sdc2's clover-server; from default, default's.
    with outbound(caller2) as client:
        served = {hops(client.get("/", {"host": "clover-server:9180"}))[0] for _ in range(12)}
    assert served and served <= servers2, served
    with outbound(caller1) as client:
        served = {hops(client.get("/", {"host": "clover-server:9180"}))[0] for _ in range(12)}
    assert served and served <= servers1, served
    # Another namespace's Service by `svc.ns` or its FQDN (Istio exports Services mesh-wide).
    with outbound(caller1) as client:
        for host in ("clover-server.sdc2:9180", "clover-server.sdc2.svc.cluster.local:9180"):
            reply = client.get("/", {"host": host})
            assert reply.status == 200 and hops(reply)[0] in servers2, (host, reply.status, hops(reply))
    # The SDC chain itself (proxy → http-lb → clover-server, each calling a short name) stays in sdc2.
    proxy2 = next(p for p in pods2 if p["service"] == "proxy-access-control")
    with Client(f"http://{proxy2['ip']}:{proxy2['ports']['9180']}") as client:
        chain = hops(client.get("/"))
    assert len(chain) == 3 and set(chain) <= mine, chain
    assert not set(chain) & default_pods


def test_a_virtual_service_removed_by_garbage_collection_leaves_the_mesh(kube: KubeCtl, sdc2: str) -> None:
    kube.run("create", "configmap", "fault-owner", "-n", NS)
    try:
        uid = kube.json("get", "configmap", "fault-owner", "-n", NS)["metadata"]["uid"]
        owned = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: clover-server
  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: fault-owner, uid: "{uid}"}}]
spec:
  hosts: [clover-server]
  http:
    - fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}
      route: [{{destination: {{host: clover-server}}}}]
"""
        kube.run("apply", "-n", NS, "-f", "-", stdin=owned)
        with Client(sdc2) as client:
            assert client.get("/").status == 503
            # The owner goes; the garbage collector deletes the VirtualService, and the mesh drops it.
            kube.run("delete", "configmap", "fault-owner", "-n", NS)
            wait_for(lambda: client.get("/").status == 200, 30, what="sdc2 serving again without the fault")
        assert kube.run("get", "vs", "clover-server", "-n", NS, "--ignore-not-found") == ""
    finally:
        kube.run("delete", "configmap", "fault-owner", "-n", NS, "--ignore-not-found")
        kube.run("delete", "vs", "clover-server", "-n", NS, "--ignore-not-found")


def test_kubectl_delete_namespace_stops_its_pods_and_leaves_default_serving(
    sdc: LocalBackend, kube: KubeCtl, sdc2: str, default_pods: set[str]
) -> None:
    pods2 = namespace_status(sdc, NS)["pods"]
    assert pods2
    names = {p["name"] for p in pods2}
    processes = [r for r in _process_records(sdc) if r.pod in names]
    assert len(processes) == 2 * (SDC_PODS - 1) + 1  # an app and an Envoy per pod; the gateway is an Envoy alone
    kube.run("delete", "namespace", NS, "--timeout=90s", timeout=120)
    assert not namespace_status(sdc, NS)
    assert kube.run("get", "namespace", NS, check=False, timeout=30) == ""
    assert [r for r in processes if r.alive()] == []
    with Client(sdc.ingress_url()) as client:
        replies = [client.get("/") for _ in range(6)]
    assert all(r.status == 200 for r in replies)
    assert {pod for r in replies for pod in hops(r)} <= default_pods
    with pytest.raises(OSError):
        Client(sdc2, timeout=2).get("/")


def _process_records(mesh: LocalBackend) -> list[ProcessRecord]:
    """The mesh's processes as it records them (PID and start time, role, pod)."""
    return [ProcessRecord(**r) for r in json.loads(mesh.state.pids_file.read_text())]
