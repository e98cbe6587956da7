"""Pods without a sidecar on the real embedded mesh: a pod template with ``sidecar.istio.io/inject: "false"``.

What in-cluster load workers need (issue 15): such a pod runs its app alone, outside the mesh, reaches the
ingress gateway directly as local load does, and is reached by meshed pods through its Service; the Kubernetes
API shows it as a cluster would (one container, no ``istio-proxy``), and it is restarted, killed and scaled as
any pod. A pod without the key keeps its sidecar. Three Deployments are applied with ``kubectl`` into the
session's SDC mesh (its own namespace, where the backend's ``pods()``, ``kill`` and ``scale`` act), and deleted
at the end of the module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.state import ProcessRecord
from pytest_clover.backends.protocol import PodInfo
from pytest_clover.errors import BackendError
from tests.helpers import Client, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on the PATH: install kubectl ≥ 1.27"),
]

SIDECAR_STATUS = "sidecar.istio.io/status"
BY_LABEL, BY_ANNOTATION, MESHED, WORKER = "bare-label", "bare-annotation", "meshed", "bare-worker"
APPS = (BY_LABEL, BY_ANNOTATION, MESHED, WORKER)

# Every pod's app: answers who it is, its readiness (toggled by POST /ready and /unready), its own environment,
# and fetches a URL the way an app does (urllib honours HTTP_PROXY: through the sidecar when it has one).
APP = r"""
import http.server, json, os, sys, urllib.error, urllib.parse, urllib.request

host, port, pod = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ready = True


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/healthz":
            self.reply(200 if ready else 503, {"ready": ready})
        elif url.path == "/env":
            self.reply(200, {"pid": os.getpid(), "http_proxy": os.environ.get("HTTP_PROXY")})
        elif url.path == "/fetch":
            request = urllib.request.Request(query["url"][0], headers={"User-Agent": query["agent"][0]})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    self.reply(200, {"status": answer.status, "body": answer.read().decode(errors="replace")})
            except urllib.error.HTTPError as error:
                self.reply(200, {"status": error.code, "body": error.read().decode(errors="replace")})
            except OSError as error:
                self.reply(200, {"status": 0, "body": repr(error)})
        else:
            self.reply(200, {"pod": pod})

    def do_POST(self):
        global ready
        ready = self.path == "/ready"
        self.reply(200, {"ready": ready})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print(format % args, flush=True)


print(f"APP {pod} serving on {host}:{port}", flush=True)
http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
"""


def _manifest(script: Path) -> str:
    """Three Deployments of the app (opted out by label, by annotation, and not at all), each with its Service,
    and a worker that opts out and has no port, no probe and no Service (as a load worker, which only dials out)."""
    serve = f"{{python}} {script} {{host}} {{port}} {{pod}}"
    container = {
        "name": "app",
        "image": "app:1",
        "ports": [{"containerPort": 8080, "name": "http"}],
        # One failure makes it unready: the readiness test need not wait out three probes.
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "failureThreshold": 1},
    }
    worker = {"name": "app", "image": "worker:1"}
    documents = []
    for app, labels, template_annotations, command, spec in (
        (BY_LABEL, {"app": BY_LABEL, "sidecar.istio.io/inject": "false"}, {}, serve, container),
        (BY_ANNOTATION, {"app": BY_ANNOTATION}, {"sidecar.istio.io/inject": "false"}, serve, container),
        (MESHED, {"app": MESHED}, {}, serve, container),
        (
            WORKER,
            {"app": WORKER, "sidecar.istio.io/inject": "false"},
            {},
            '{python} -c "import signal; signal.pause()"',
            worker,
        ),
    ):
        documents.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": app}},
                    "template": {
                        "metadata": {
                            "labels": labels,
                            "annotations": {**template_annotations, "clover.opnfv.org/local-command": command},
                        },
                        "spec": {"containers": [spec]},
                    },
                },
            }
        )
        if app == WORKER:
            continue
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": app},
                "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
            }
        )
    return "\n---\n".join(json.dumps(d) for d in documents)


@dataclass
class Kubectl:
    """The real kubectl against the mesh, with a private home and cache (no user config is read)."""

    kubeconfig: Path
    home: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        assert kubectl is not None
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            [kubectl, f"--cache-dir={self.home / 'cache'}", *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            timeout=60,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def kube(mesh: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """The three Deployments and their Services, applied with kubectl and ready; deleted afterwards."""
    folder = tmp_path_factory.mktemp("no-sidecar")
    script = folder / "app.py"
    script.write_text(APP)
    kube = Kubectl(Path(str(mesh.info()["kubeconfig"])), folder)
    manifest = _manifest(script)
    kube.run("apply", "-f", "-", stdin=manifest)
    try:
        for app in APPS:
            _ready_pod(mesh, app)
        yield kube
    finally:
        kube.run("delete", "-f", "-", "--wait=false", stdin=manifest)
        wait_for(
            lambda: not [p for p in mesh.pods() if p.service in APPS],
            timeout=60,
            what="the test's pods to be gone",
        )


def _ready_pod(mesh: LocalBackend, app: str, other_than: str = "") -> PodInfo:
    def ready() -> PodInfo | None:
        return next(
            (p for p in mesh.pods(app) if p.ready and p.phase == "Running" and p.name != other_than),
            None,
        )

    return wait_for(ready, timeout=90, interval=0.1, what=f"a ready pod of {app}")


def _processes(mesh: LocalBackend, pod: str) -> list[ProcessRecord]:
    """The pod's live processes, as the mesh records them (what `clover cleanup` would look at)."""
    return sorted((r for r in mesh.state.read_pids() if r.pod == pod and r.alive()), key=lambda r: r.role)


def _get(pod: PodInfo, path: str) -> Any:
    with Client(pod.url(8080), timeout=20) as client:
        reply = client.get(path)
    assert reply.status == 200, reply.body
    return reply.json()


def _fetch(pod: PodInfo, url: str, agent: str) -> dict[str, Any]:
    """Have the app of ``pod`` fetch ``url`` (with User-Agent ``agent``); its answer's status and body."""
    query = urllib.parse.urlencode({"url": url, "agent": agent})
    answer: dict[str, Any] = _get(pod, f"/fetch?{query}")
    return answer


def _log_entry(mesh: LocalBackend, pod: str, agent: str) -> dict[str, Any]:
    """The access-log entry of the request with User-Agent ``agent`` in ``pod``'s sidecar (flushed every 100 ms)."""

    def entry() -> dict[str, Any] | None:
        return next((e for e in mesh.access_log(pod) if e.get("user_agent") == agent), None)

    return wait_for(entry, timeout=10, what=f"the access-log entry of {agent} in {pod}")


# ------------------------------------------------------------------------------------------ the pod


@pytest.mark.parametrize("app", [BY_LABEL, BY_ANNOTATION])
def test_a_pod_that_opts_out_runs_its_app_alone(mesh: LocalBackend, kube: Kubectl, app: str) -> None:
    pod = _ready_pod(mesh, app)
    assert [r.role for r in _processes(mesh, pod.name)] == ["app"]
    folder = mesh.state.pod_dir(pod.name)
    assert (folder / "app.log").exists()
    for envoy_file in ("bootstrap.json", "admin.sock", "access.log", "envoy.log"):
        assert not (folder / envoy_file).exists(), envoy_file
    obj = kube.json("get", "pod", pod.name)
    assert [c["name"] for c in obj["spec"]["containers"]] == ["app"]
    assert [c["name"] for c in obj["status"]["containerStatuses"]] == ["app"]
    assert SIDECAR_STATUS not in (obj["metadata"].get("annotations") or {})
    # Its port is the app's own (nothing in front): the URL `pods()` gives reaches it, without any proxy set.
    assert _get(pod, "/") == {"pod": pod.name}
    assert _get(pod, "/env")["http_proxy"] is None
    # No Envoy: no admin API, and an access log that is empty rather than an error.
    assert mesh.access_log(pod.name) == []
    with pytest.raises(BackendError, match="opts out of sidecar injection"):
        mesh.envoy_admin(pod.name, "/stats")


def test_a_pod_without_a_port_or_probe_is_ready_once_running(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, WORKER)
    assert pod.ports == {}
    assert [r.role for r in _processes(mesh, pod.name)] == ["app"]
    obj = kube.json("get", "pod", pod.name)
    assert [(s["name"], s["ready"]) for s in obj["status"]["containerStatuses"]] == [("app", True)]


def test_a_pod_without_the_key_keeps_its_sidecar(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, MESHED)
    assert [r.role for r in _processes(mesh, pod.name)] == ["app", "envoy"]
    obj = kube.json("get", "pod", pod.name)
    assert [c["name"] for c in obj["spec"]["containers"]] == ["app", "istio-proxy"]
    assert json.loads(obj["metadata"]["annotations"][SIDECAR_STATUS]) == {"containers": ["istio-proxy"]}
    assert str(_get(pod, "/env")["http_proxy"]).startswith(f"http://{pod.ip}:")
    assert "server.live" in mesh.envoy_admin(pod.name, "/stats")


def test_its_readiness_is_its_apps_alone(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, BY_LABEL)
    app = _processes(mesh, pod.name)

    def condition(kind: str) -> str:
        obj = kube.json("get", "pod", pod.name)
        return next(str(c["status"]) for c in obj["status"]["conditions"] if c["type"] == kind)

    def addresses() -> list[str]:
        subsets = kube.json("get", "endpoints", BY_LABEL).get("subsets") or []
        return [a["ip"] for s in subsets for a in s.get("addresses") or []]

    assert addresses() == [pod.ip]
    with Client(pod.url(8080)) as client:
        assert client.request("POST", "/unready", body=b"").status == 200
        try:
            wait_for(lambda: condition("Ready") == "False", timeout=20, what="the pod to turn not ready")
            assert addresses() == []
            assert _processes(mesh, pod.name) == app  # the same process: not ready, not restarted
        finally:
            assert client.request("POST", "/ready", body=b"").status == 200
        wait_for(lambda: condition("Ready") == "True", timeout=20, what="the pod to be ready again")
    wait_for(lambda: addresses() == [pod.ip], timeout=10, what="the pod back in its Service's endpoints")


# ------------------------------------------------------------------------------------------ traffic


def test_a_meshed_pod_reaches_it_through_its_service(mesh: LocalBackend, kube: Kubectl) -> None:
    bare, meshed = _ready_pod(mesh, BY_LABEL), _ready_pod(mesh, MESHED)
    agent = f"to-bare-{uuid.uuid4().hex[:8]}"
    answer = _fetch(meshed, f"http://{BY_LABEL}:8080/", agent)
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"pod": bare.name}
    # Through the caller's sidecar, which sends it to the app's own port: no inbound listener in front of it.
    entry = _log_entry(mesh, meshed.name, agent)
    assert entry["upstream_host"] == f"{bare.ip}:8080"


def test_it_reaches_the_ingress_gateway_directly(mesh: LocalBackend, kube: Kubectl) -> None:
    bare = _ready_pod(mesh, BY_ANNOTATION)
    gateway = next(p for p in mesh.pods() if p.deployment is None)
    agent = f"from-bare-{uuid.uuid4().hex[:8]}"
    answer = _fetch(bare, mesh.ingress_url() + "/", agent)
    assert answer["status"] == 200, answer
    # It entered the mesh at the gateway as local load does (its app has no proxy: no sidecar on the way). Its
    # source address is no proof: on loopback every pod's connections, Envoys' included, come from 127.0.0.1.
    entry = _log_entry(mesh, gateway.name, agent)
    assert (entry["path"], str(entry["response_code"])) == ("/", "200")
    assert entry["upstream_cluster"] == "outbound|9180||proxy-access-control.default.svc.cluster.local"


# ------------------------------------------------------------------------------------------ the API, and lifecycle


def test_logs_and_exec_are_the_apps_and_istio_proxy_is_no_container(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, BY_LABEL)
    assert f"APP {pod.name} serving on {pod.ip}:8080" in kube.run("logs", pod.name).stdout
    missing = kube.run("logs", pod.name, "-c", "istio-proxy", check=False)
    assert missing.returncode != 0
    assert f"container istio-proxy is not valid for pod {pod.name}" in missing.stderr
    shell = kube.run("exec", pod.name, "--", "/bin/sh", "-c", 'echo "${HTTP_PROXY-none} $POD_NAME"').stdout
    assert shell.split() == ["none", pod.name]
    assert kube.run("exec", pod.name, "--", "pilot-agent", "request", "GET", "stats", check=False).returncode != 0
    into_proxy = kube.run("exec", pod.name, "-c", "istio-proxy", "--", "true", check=False)
    assert into_proxy.returncode != 0
    assert f"container istio-proxy is not valid for pod {pod.name}" in into_proxy.stderr


def test_a_killed_app_is_restarted_alone(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, BY_ANNOTATION)
    (app,) = _processes(mesh, pod.name)
    before = kube.json("get", "pod", pod.name)["status"]["containerStatuses"][0]["restartCount"]
    os.kill(app.pid, signal.SIGKILL)

    def restarted() -> list[ProcessRecord] | None:
        now = _processes(mesh, pod.name)
        return now if now and now[0].pid != app.pid else None

    (again,) = wait_for(restarted, timeout=30, what="the app to be restarted in place")
    assert again.role == "app"
    wait_for(
        lambda: any(p.name == pod.name and p.ready for p in mesh.pods(BY_ANNOTATION)),
        timeout=30,
        what="the same pod ready again",
    )
    statuses = kube.json("get", "pod", pod.name)["status"]["containerStatuses"]
    assert [(s["name"], s["restartCount"]) for s in statuses] == [("app", before + 1)]


def test_kill_and_scale_act_on_it_as_on_any_pod(mesh: LocalBackend, kube: Kubectl) -> None:
    pod = _ready_pod(mesh, BY_LABEL)
    assert mesh.kill(BY_LABEL) == [pod.name]
    replacement = _ready_pod(mesh, BY_LABEL, other_than=pod.name)
    assert [r.role for r in _processes(mesh, replacement.name)] == ["app"]
    mesh.scale(BY_ANNOTATION, 2)
    try:
        pods = [p for p in mesh.pods(BY_ANNOTATION) if p.phase == "Running"]
        assert len(pods) == 2 and all(p.ready for p in pods)
        assert all([r.role for r in _processes(mesh, p.name)] == ["app"] for p in pods)
        assert all(_get(p, "/") == {"pod": p.name} for p in pods)
    finally:
        mesh.scale(BY_ANNOTATION, 1)
