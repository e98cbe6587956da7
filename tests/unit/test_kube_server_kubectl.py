"""The embedded Kubernetes API server driven by the real kubectl (1.33, through Google's dispatcher, which picks
the kubectl matching the server's /version) and the official Python client, over TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from pytest_clover.backends.local.kube.hooks import Connect, NoHooks, PodEndpoint
from pytest_clover.backends.local.kube.server import create_app, start, stop
from pytest_clover.backends.local.kube.store import Store
from pytest_clover.backends.local.kube.tls import make_credentials, server_ssl_context, write_kubeconfig

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
TIMEOUT = 60.0

SEED: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
     "spec": {"containers": [{"name": "app", "image": "web:1"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seeded", "namespace": "default"},
     "data": {"k": "v"}},
]

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels: {app: shop}
spec:
  replicas: 2
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: app
        image: shop:1
        ports:
        - containerPort: 8080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop}
"""


class OnePodHooks(NoHooks):
    """The pod ``web-1`` runs: its ``app`` log is a file, its port 9000 an echo server of the test."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.echo_port = 0
        self.echo: asyncio.Server | None = None

    async def start(self) -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        self.echo = await asyncio.start_server(echo, "127.0.0.1", 0)
        self.echo_port = self.echo.sockets[0].getsockname()[1]

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port != 9000:
            raise ConnectionRefusedError(f"nothing listens on port {port}")
        return await asyncio.open_connection("127.0.0.1", self.echo_port)

    def pod_endpoint(self, namespace: str, name: str) -> PodEndpoint | None:
        if (namespace, name) != ("default", "web-1"):
            return None
        return PodEndpoint(connect=self.connect, log_path=lambda c: self.log_file if c == "app" else None,
                           running=lambda: True)

    def service_endpoint(self, namespace: str, name: str, port: str) -> Connect | None:
        return None


class ApiServerThread:
    """The API server on its own event loop in a thread, with a kubeconfig for it."""

    def __init__(self, directory: Path, *, history: int = 5000) -> None:
        self.directory = directory
        self.log_file = directory / "web-1.log"
        self.log_file.write_text("starting\nlistening on 9000\n")
        self.hooks = OnePodHooks(self.log_file)
        self.credentials = make_credentials(directory / "creds", server_ip="127.0.0.1", mesh_id="test")
        self.kubeconfig = directory / "kubeconfig"
        self.store = Store(history=history)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _start(self) -> None:
        await self.hooks.start()
        app = create_app(store=self.store, hooks=self.hooks, token=self.credentials.token, bookmark_interval=1.0)
        for obj in SEED:
            key = {"Pod": "/pods", "Service": "/services", "ConfigMap": "/configmaps"}[obj["kind"]]
            self.store.create(key, obj, namespace="default")
        running = self.store.get("/pods", "default", "web-1")
        running["status"] = {"phase": "Running"}
        self.store.update("/pods", running, subresource="status")
        self.runner, self.port = await start(app, "127.0.0.1", 0, server_ssl_context(self.credentials))

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())
        write_kubeconfig(self.kubeconfig, server_url=f"https://127.0.0.1:{self.port}", credentials=self.credentials,
                         context="clover-test")

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=TIMEOUT)

    async def _stop_echo(self) -> None:
        if self.hooks.echo is not None:
            self.hooks.echo.close()
            await self.hooks.echo.wait_closed()

    def stop(self) -> None:
        if self.runner is not None:
            self.call(stop(self.runner))
        self.call(self._stop_echo())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def env(self) -> dict[str, str]:
        home = self.directory / "home"
        home.mkdir(exist_ok=True)
        return {**os.environ, "HOME": str(home), "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        command = [KUBECTL, f"--cache-dir={self.directory / 'cache'}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=self.env())
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerThread]:
    running = ApiServerThread(tmp_path_factory.mktemp("kube-api"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_kubectl_reads(server: ApiServerThread) -> None:
    version = json.loads(server.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.33.")
    assert version["clientVersion"]["minor"] == "33"
    namespaces = server.kubectl("get", "namespaces").stdout.split()
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(namespaces)
    pods = server.kubectl("get", "pods").stdout
    assert pods.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "web-1" in pods
    as_yaml = yaml.safe_load(server.kubectl("get", "pod", "web-1", "-o", "yaml").stdout)
    assert (as_yaml["kind"], as_yaml["metadata"]["name"]) == ("Pod", "web-1")
    resources = server.kubectl("api-resources").stdout
    assert any(line.split()[:2] == ["virtualservices", "vs"] for line in resources.splitlines())
    assert any(line.split()[:2] == ["deployments", "deploy"] for line in resources.splitlines())
    listed = json.loads(server.kubectl("get", "svc,cm", "-o", "json").stdout)
    assert {i["metadata"]["name"] for i in listed["items"]} == {"web", "seeded"}
    crds = server.kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io" in crds
    missing = server.kubectl("get", "pod", "nope", check=False)
    assert missing.returncode == 1 and 'pods "nope" not found' in missing.stderr


def test_kubectl_apply_diff_server_side_and_scale(server: ApiServerThread, tmp_path: Path) -> None:
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(MANIFEST)
    first = server.kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/shop created" in first and "virtualservice.networking.istio.io/shop created" in first
    second = server.kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/shop unchanged" in second and "virtualservice.networking.istio.io/shop unchanged" in second
    assert server.kubectl("diff", "-f", str(manifest), check=False).returncode == 0
    manifest.write_text(MANIFEST.replace("shop:1", "shop:2"))
    changed = server.kubectl("diff", "-f", str(manifest), check=False)
    assert changed.returncode == 1 and any(line.startswith("+") and "image: shop:2" in line for line in changed.stdout.splitlines())
    assert "deployment.apps/shop scaled" in server.kubectl("scale", "deployment/shop", "--replicas=3").stdout
    replicas = server.kubectl("get", "deploy", "shop", "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "3"
    conflict = server.kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert conflict.returncode != 0 and ".spec.replicas" in conflict.stderr and "conflict" in conflict.stderr
    forced = server.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest)).stdout
    assert "deployment.apps/shop serverside-applied" in forced
    image = server.kubectl("get", "deploy", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "shop:2"
    table = server.kubectl("get", "vs,deploy").stdout
    assert "virtualservice.networking.istio.io/shop" in table and "deployment.apps/shop" in table
    deleted = server.kubectl("delete", "-f", str(manifest)).stdout
    assert 'deployment.apps "shop" deleted' in deleted
    assert server.kubectl("get", "deploy", "shop", check=False).returncode == 1


def test_kubectl_create_configmap_patch_and_delete(server: ApiServerThread) -> None:
    assert "configmap/settings created" in server.kubectl("create", "configmap", "settings",
                                                          "--from-literal=a=1").stdout
    server.kubectl("patch", "configmap", "settings", "--type", "merge", "-p", '{"data":{"b":"2"}}')
    server.kubectl("patch", "configmap", "settings", "--type", "json", "-p",
                   '[{"op":"add","path":"/data/c","value":"3"}]')
    server.kubectl("patch", "configmap", "settings", "--type", "strategic", "-p", '{"data":{"d":"4"}}')
    data = json.loads(server.kubectl("get", "cm", "settings", "-o", "jsonpath={.data}").stdout)
    assert data == {"a": "1", "b": "2", "c": "3", "d": "4"}
    refused = server.kubectl("patch", "vs", "nothing", "-p", "{}", check=False)
    assert refused.returncode != 0
    assert 'configmap "settings" deleted' in server.kubectl("delete", "configmap", "settings").stdout
    assert server.kubectl("get", "cm", "settings", check=False).returncode == 1
    namespace = server.kubectl("create", "namespace", "scratch").stdout
    assert "namespace/scratch created" in namespace
    assert 'namespace "scratch" deleted' in server.kubectl("delete", "namespace", "scratch").stdout


def test_kubectl_get_watch(server: ApiServerThread) -> None:
    assert KUBECTL is not None
    watcher = subprocess.Popen(
        [KUBECTL, f"--cache-dir={server.directory / 'cache'}", "get", "configmaps", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen: list[str] = []

        def wait_for(name: str) -> None:
            while not any(line.split()[:1] == [name] for line in seen):
                seen.append(lines.get(timeout=TIMEOUT))

        wait_for("seeded")
        assert seen[0].split() == ["NAME", "DATA", "AGE"]
        server.kubectl("create", "configmap", "watched", "--from-literal=x=1")
        wait_for("watched")
        server.kubectl("label", "configmap", "watched", "touched=yes")
        count = sum(1 for line in seen if line.split()[:1] == ["watched"])
        while count < 2:
            line = lines.get(timeout=TIMEOUT)
            seen.append(line)
            count += line.split()[:1] == ["watched"]
        assert all(len(line.split()) == 3 for line in seen[1:])
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        reader.join(timeout=10)
        for pipe in (watcher.stdout, watcher.stderr):
            if pipe is not None:
                pipe.close()
        server.kubectl("delete", "configmap", "watched", "--ignore-not-found")


def test_official_python_client(tmp_path: Path) -> None:
    # The client's models are typed with optional fields everywhere: the test reads them as Any.
    kubernetes: Any = pytest.importorskip("kubernetes")
    client, config, watch = kubernetes.client, kubernetes.config, kubernetes.watch

    small = ApiServerThread(tmp_path, history=5)
    small.start()
    api_client = config.new_client_from_config(config_file=str(small.kubeconfig), persist_config=False)
    try:
        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        assert {n.metadata.name for n in core.list_namespace().items} >= {"default", "kube-system"}
        page = core.list_namespaced_config_map("default", limit=1)
        assert len(page.items) == 1
        for index in range(8):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})
        with pytest.raises(client.exceptions.ApiException) as expired:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version="2",
                                          timeout_seconds=5):
                pass
        assert expired.value.status == 410
        # Recover as a client must: list again, watch from the list's resourceVersion.
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
        events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1)]
        assert events == [("ADDED", "after")]
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                         "template": {"metadata": {"labels": {"a": "b"}},
                                      "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
        created = apps.patch_namespaced_deployment("ssa", "default", body, field_manager="py",
                                                   _content_type="application/apply-patch+yaml")
        assert [m.manager for m in created.metadata.managed_fields] == ["py"]
        scale = apps.patch_namespaced_deployment_scale("ssa", "default", {"spec": {"replicas": 4}})
        assert (scale.spec.replicas, scale.status.selector) == (4, "a=b")
        read = apps.read_namespaced_deployment_scale("ssa", "default")
        read.spec.replicas = 2
        assert apps.replace_namespaced_deployment_scale("ssa", "default", read).spec.replicas == 2
        with pytest.raises(client.exceptions.ApiException) as conflict:
            apps.patch_namespaced_deployment("ssa", "default", body, field_manager="py",
                                             _content_type="application/apply-patch+yaml")
        assert conflict.value.status == 409
        assert kubernetes.__version__.startswith("37")
    finally:
        api_client.close()
        small.stop()


def test_kubectl_logs_port_forward_and_proxy(server: ApiServerThread) -> None:
    assert server.kubectl("logs", "web-1").stdout == "starting\nlistening on 9000\n"
    assert server.kubectl("logs", "web-1", "--tail=1").stdout == "listening on 9000\n"
    assert server.kubectl("logs", "seeded", check=False).returncode != 0
    assert KUBECTL is not None
    with subprocess.Popen(
        [KUBECTL, f"--cache-dir={server.directory / 'cache'}", "port-forward", "pod/web-1", ":9000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env(),
    ) as forwarder:
        try:
            assert forwarder.stdout is not None
            line = forwarder.stdout.readline()
            assert line.startswith("Forwarding from 127.0.0.1:"), line
            local_port = int(line.split(":")[1].split()[0])
            with socket.create_connection(("127.0.0.1", local_port), timeout=TIMEOUT) as connection:
                connection.sendall(b"ping through the mesh API")
                received = b""
                while len(received) < len(b"ping through the mesh API"):
                    chunk = connection.recv(4096)
                    assert chunk, "connection closed"
                    received += chunk
            assert received == b"ping through the mesh API"
        finally:
            forwarder.terminate()
            forwarder.wait(timeout=10)
    unreachable = server.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/web-1:81/proxy/", check=False)
    assert unreachable.returncode != 0 and "error trying to reach service" in unreachable.stderr, unreachable.stderr


def _contains(actual: Any, expected: Any, path: str = "") -> None:
    """Every value of ``expected`` is in ``actual`` (the server adds uid, resourceVersion, defaults…); a null
    in ``expected`` (Go's zero time) means nothing was set."""
    if expected is None:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            if value is not None:
                assert key in actual, f"{path}.{key} is missing from {actual!r}"
                _contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            _contains(got, want, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# kubectl 1.33 sends protobuf from its typed commands; `expose` and `run` go through the dynamic client (JSON),
# checked here too as the reference the protobuf path must match.
PROTOBUF = "application/vnd.kubernetes.protobuf"
TYPED_COMMANDS = [
    (["create", "deployment", "pb-web", "--image=nginx", "--replicas=2", "--port=8080"], ["deployment", "pb-web"],
     PROTOBUF),
    (["create", "service", "clusterip", "pb-svc", "--tcp=80:8080"], ["service", "pb-svc"], PROTOBUF),
    (["expose", "deployment", "pb-exposable", "--port=80", "--name=pb-exposed"], ["service", "pb-exposed"],
     "application/json"),
    (["run", "pb-pod", "--image=x", "--labels=a=b", "--env=K=V", "--port=81", "--", "sleep", "1"], ["pod", "pb-pod"],
     "application/json"),
    (["create", "configmap", "pb-cm", "--from-literal=a=1", "--from-literal=b=two"], ["configmap", "pb-cm"], PROTOBUF),
    (["create", "namespace", "pb-ns"], ["namespace", "pb-ns"], PROTOBUF),
    (["create", "serviceaccount", "pb-sa"], ["serviceaccount", "pb-sa"], PROTOBUF),
    (["create", "job", "pb-job", "--image=x"], [], PROTOBUF),
]


@pytest.mark.parametrize(("command", "read_back", "media_type"), TYPED_COMMANDS)
def test_kubectl_typed_commands_send_protobuf(server: ApiServerThread, command: list[str], read_back: list[str],
                                              media_type: str) -> None:
    """kubectl's typed commands send protobuf bodies: what the server stores is what kubectl meant, i.e. what
    the same command prints with ``--dry-run=client -o json``."""
    if not read_back:  # a kind this server does not serve: refused as Kubernetes refuses an unknown resource
        refused = server.kubectl(*command, check=False)
        assert refused.returncode != 0 and "the server could not find the requested resource" in refused.stderr
        return
    if command[0] == "expose":
        server.kubectl("create", "deployment", "pb-exposable", "--image=x", "--port=80")
    split = command.index("--") if "--" in command else len(command)
    try:
        meant = json.loads(server.kubectl(*command[:split], "--dry-run=client", "-o", "json", *command[split:]).stdout)
        meant.pop("status", None)  # owned by the server: emptied on create, filled by controllers
        sent = server.kubectl("-v=8", *command).stderr
        assert f"Content-Type: {media_type}" in sent
        stored = json.loads(server.kubectl("get", *read_back, "-o", "json").stdout)
        _contains(stored, meant)
    finally:
        server.kubectl("delete", *read_back, "--ignore-not-found", "--wait=false")
        if command[0] == "expose":
            server.kubectl("delete", "deployment", "pb-exposable", "--wait=false")


def test_kubectl_rollout_restart_patches_a_protobuf_created_deployment(server: ApiServerThread) -> None:
    sent = server.kubectl("-v=8", "create", "deployment", "pb-restart", "--image=x").stderr
    assert f"Content-Type: {PROTOBUF}" in sent
    try:
        restarted = server.kubectl("-v=8", "rollout", "restart", "deployment/pb-restart")
        assert "deployment.apps/pb-restart restarted" in restarted.stdout
        assert "Content-Type: application/strategic-merge-patch+json" in restarted.stderr
        annotations = json.loads(server.kubectl(
            "get", "deployment", "pb-restart", "-o", "jsonpath={.spec.template.metadata.annotations}").stdout)
        assert "kubectl.kubernetes.io/restartedAt" in annotations
    finally:
        server.kubectl("delete", "deployment", "pb-restart", "--wait=false")
