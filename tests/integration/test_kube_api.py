"""The embedded mesh's Kubernetes API, driven by the real `kubectl` and the official `kubernetes` client (issue 11).

The session's SDC mesh serves it; each test puts the mesh back (the ``sdc`` fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl on the PATH: install kubectl ≥ 1.27")


@pytest.fixture
def kube(sdc: LocalBackend, tmp_path: Path) -> Iterator[KubeCtl]:
    info = sdc.info()
    assert info.get("kubeconfig"), f"the mesh serves no Kubernetes API: {info}"
    yield KubeCtl(Path(str(info["kubeconfig"])), tmp_path)


class KubeCtl:
    """The real kubectl against the mesh, with a private cache and home (no user config is read)."""

    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp),
            "KUBECONFIG": str(kubeconfig),
        }
        self.cache = tmp / "kube-cache"

    def argv(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        return [KUBECTL, f"--cache-dir={self.cache}", *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=timeout, input=stdin, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def _stop(proc: subprocess.Popen[str]) -> str:
    """Stop a kubectl started in the background (by its PID) and return what it printed."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


# --------------------------------------------------------------------------- serving


def test_the_kubeconfig_is_private_and_a_request_without_its_token_gets_401(sdc: LocalBackend) -> None:
    info = sdc.info()
    kubeconfig = Path(str(info["kubeconfig"]))
    assert kubeconfig == sdc.state.root / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["current-context"] == f"clover-{info['mesh_id']}"
    url = str(info["kube_api_url"])
    assert url.startswith("https://127.")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        request = urllib.request.Request(url + "/api/v1/pods", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info_401:
            urllib.request.urlopen(request, context=context, timeout=10)
        assert info_401.value.code == 401
        status = json.loads(info_401.value.read())
        assert status["kind"] == "Status" and status["reason"] == "Unauthorized"


# --------------------------------------------------------------------------- reading


@needs_kubectl
def test_kubectl_gets_every_kind_across_namespaces(kube: KubeCtl, sdc: LocalBackend) -> None:
    out = kube.run("get", "pods,deploy,svc,vs,dr,gw", "-A").stdout
    for pod in sdc.pods():
        assert pod.name in out
    for name in ("deployment.apps/clover-server", "service/http-lb", "virtualservice.networking.istio.io/"):
        assert name in out, out
    wide = kube.run("get", "pods", "-o", "wide").stdout
    assert "IP" in wide.splitlines()[0] and sdc.pods()[0].ip in wide
    pods = kube.json("get", "pods", "-l", "app=clover-server")["items"]
    assert {p["metadata"]["name"] for p in pods} == {p.name for p in sdc.pods("clover-server")}
    running = kube.json("get", "pods", "--field-selector", "status.phase=Running")["items"]
    assert len(running) == len(sdc.pods())
    pod = yaml.safe_load(kube.run("get", "pod", pods[0]["metadata"]["name"], "-o", "yaml").stdout)
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert set(statuses) == {"app", "istio-proxy"} and all(c["ready"] for c in statuses.values())
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["status"]["podIP"] == next(p.ip for p in sdc.pods() if p.name == pod["metadata"]["name"])


@needs_kubectl
def test_kubectl_api_resources_and_explain(kube: KubeCtl) -> None:
    resources = kube.run("api-resources").stdout
    for row in ("pods", "deployments", "virtualservices", "destinationrules", "gateways", "endpointslices"):
        assert row in resources, resources
    explained = kube.run("explain", "virtualservice.spec").stdout
    assert "http" in explained and "hosts" in explained


@needs_kubectl
def test_kubectl_get_pods_watch_streams_a_kill_and_its_replacement(kube: KubeCtl, sdc: LocalBackend) -> None:
    watch = kube.popen("get", "pods", "-w", "--output-watch-events")
    try:
        victim = sdc.pods("clover-server")[0].name
        before = {p.name for p in sdc.pods()}
        time.sleep(0.5)  # kubectl's initial list; the events below come after it either way
        kube.run("delete", "pod", victim, "--wait=false")
        replacement = wait_for(
            lambda: next((p.name for p in sdc.pods("clover-server") if p.name not in before and p.ready), None),
            30,
            what="a replacement pod",
        )
    finally:
        sdc.wait_ready(60)
        out = _stop(watch)
    assert victim in out and replacement in out, out
    assert "DELETED" in out and "ADDED" in out, out


# --------------------------------------------------------------------------- operating


@needs_kubectl
def test_kubectl_delete_pod_brings_a_replacement_under_a_new_name(kube: KubeCtl, sdc: LocalBackend) -> None:
    def ready() -> list[str]:
        return [p.name for p in sdc.pods() if p.deployment == "clover-server" and p.ready]

    victim = ready()[0]
    kube.run("delete", "pod", victim)
    wait_for(lambda: len(ready()) == 3 and victim not in ready(), 30, what="3 ready pods again")
    names = {p.name for p in sdc.pods("clover-server")}
    assert victim not in names
    assert victim not in kube.run("get", "pods").stdout


@needs_kubectl
def test_kubectl_scale_reaches_ready_pods_in_the_endpoints_and_rollout_status_follows(
    kube: KubeCtl, sdc: LocalBackend
) -> None:
    kube.run("scale", "deploy/clover-server", "--replicas=5")
    kube.run("rollout", "status", "deploy/clover-server", "--timeout=60s", timeout=90)
    ready = [p for p in sdc.pods() if p.deployment == "clover-server" and p.ready]
    assert len(ready) == 5
    assert len([p for p in sdc.pods() if p.deployment == "clover-server-v2"]) == 1
    endpoints = kube.json("get", "endpoints", "clover-server")
    addresses = {a["ip"] for s in endpoints["subsets"] for a in s["addresses"]}
    assert {p.ip for p in ready} <= addresses and len(addresses) == 6  # and the v2 pod, behind the same Service
    deployment = kube.json("get", "deploy", "clover-server")
    assert deployment["status"]["readyReplicas"] == 5
    assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"]


@needs_kubectl
def test_kubectl_logs_of_the_sidecar_show_the_access_log(kube: KubeCtl, sdc: LocalBackend, ingress: Any) -> None:
    for _ in range(3):
        ingress.get("/")
    gateway = next(p for p in sdc.pods() if p.service == "istio-ingressgateway")
    logs = kube.run("logs", gateway.name, "-c", "istio-proxy").stdout
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert lines, logs
    app = kube.run("logs", sdc.pods("clover-server")[0].name).stdout
    assert app.strip()


@needs_kubectl
def test_the_sidecar_stats_through_the_pods_proxy(kube: KubeCtl, sdc: LocalBackend) -> None:
    pod = sdc.pods("clover-server")[0].name
    stats = kube.run("get", "--raw", f"/api/v1/namespaces/default/pods/{pod}:15090/proxy/stats/prometheus").stdout
    assert "envoy_server_live" in stats or "envoy_cluster_upstream_rq" in stats, stats[:500]


@needs_kubectl
def test_kubectl_port_forward_reaches_envoys_admin_api(kube: KubeCtl, sdc: LocalBackend, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pod = sdc.pods("clover-server")[0].name
    forward = kube.popen("port-forward", f"pod/{pod}", f"{port}:15000", "--address=127.0.0.1")
    try:

        def ready_text() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                    return str(resp.read().decode())
            except OSError:
                return None

        assert "LIVE" in wait_for(ready_text, 20, what="Envoy's admin API through kubectl port-forward")
    finally:
        _stop(forward)


# --------------------------------------------------------------------------- faults and admission


FAULT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: clover-kubectl-fault
spec:
  hosts: [fault.example]
  gateways: [sdc-gateway]
  http:
  - fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
    route:
    - destination: {host: proxy-access-control, port: {number: 9180}}
"""


@needs_kubectl
def test_a_fault_applied_with_kubectl_is_in_effect_when_it_returns_and_gone_after_delete(
    kube: KubeCtl, ingress: Any
) -> None:
    host = {"host": "fault.example"}
    assert ingress.get("/", headers=host).status == 200  # the catch-all route serves the host until then
    kube.run("apply", "-f", "-", stdin=FAULT)
    assert ingress.get("/", headers=host).status == 418  # at once: the write returned after every Envoy's ACK
    assert ingress.get("/").status == 200  # only that host
    kube.run("delete", "vs", "clover-kubectl-fault")
    assert ingress.get("/", headers=host).status == 200


@needs_kubectl
def test_an_invalid_virtual_service_is_refused_naming_the_field(kube: KubeCtl) -> None:
    bad = FAULT.replace("httpStatus: 418", "httpStatus: 99").replace("clover-kubectl-fault", "clover-kubectl-bad")
    proc = kube.run("apply", "-f", "-", stdin=bad, check=False)
    assert proc.returncode != 0
    assert "spec.http[0].fault.abort.httpStatus" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@needs_kubectl
def test_reapplying_says_unchanged_and_server_side_apply_works(kube: KubeCtl, sdc: LocalBackend) -> None:
    vs = yaml.safe_load(FAULT)
    vs["metadata"]["name"] = "clover-kubectl-reapply"
    text = yaml.safe_dump(vs)
    try:
        assert "created" in kube.run("apply", "-f", "-", stdin=text).stdout
        assert "unchanged" in kube.run("apply", "-f", "-", stdin=text).stdout
        # A change to a custom resource: kubectl sends a JSON merge patch (the OpenAPI says no strategic merge).
        changed = text.replace("fault.example", "changed.example")
        assert "configured" in kube.run("apply", "-f", "-", stdin=changed).stdout
        assert kube.json("get", "vs", "clover-kubectl-reapply")["spec"]["hosts"] == ["changed.example"]
        assert "unchanged" in kube.run("apply", "-f", "-", stdin=changed).stdout
        diff = kube.run("diff", "-f", "-", stdin=text, check=False)
        assert diff.returncode == 1 and "changed.example" in diff.stdout, diff.stdout + diff.stderr
        text = changed
        assert "serverside-applied" in kube.run("apply", "--server-side", "-f", "-", stdin=text).stdout
    finally:
        kube.run("delete", "vs", "clover-kubectl-reapply", "--ignore-not-found")


@needs_kubectl
def test_kubectl_exec_reads_the_sidecar_as_istio_tools_do_and_runs_in_the_pod(kube: KubeCtl, sdc: LocalBackend) -> None:
    pod = sdc.pods("clover-server")[0]
    stats = kube.run("exec", pod.name, "-c", "istio-proxy", "--", "pilot-agent", "request", "GET", "stats").stdout
    assert "server.live" in stats, stats[:300]
    env = kube.run("exec", pod.name, "--", "sh", "-c", 'echo "$POD_NAME $POD_IP"; exit 3', check=False)
    assert env.returncode == 3, env.stderr
    assert env.stdout.split() == [pod.name, pod.ip]
