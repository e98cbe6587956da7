"""Pods that opt out of sidecar injection in the embedded mesh (``sidecar.istio.io/inject: "false"``), piece by piece.

The decision as istiod makes it, the pod as the Kubernetes API shows it, its Events, ``pods/exec`` in it, and the
readers of access logs, which find none for such a pod. The whole path, on real processes, is in
``tests/integration/test_local_no_sidecar.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.backends.local.kube.cluster import SIDECAR_STATUS, Cluster, _events_of, exec_in_pod
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.logrotate import ACCESS_LOG, LogLimits, LogRotator
from pytest_clover.backends.local.supervisor import Pod
from pytest_clover.backends.local.translate import (
    NO_PROXY,
    InboundPort,
    ProxySpec,
    render_bootstrap,
    render_resources,
)
from pytest_clover.backends.local.zygote import ZygoteProcess
from pytest_clover.backends.protocol import PodInfo
from pytest_clover.errors import Problem
from pytest_clover.istio.model import SIDECAR_INJECT, Deployment, Topology, sidecar_injected
from pytest_clover.istio.parse import parse_documents, parse_text
from pytest_clover.report.hops import AccessLogCursor

# ------------------------------------------------------------------------------------------ the decision


@pytest.mark.parametrize(
    ("labels", "annotations", "injected"),
    [
        ({}, {}, True),  # the namespace's policy: the embedded mesh injects every namespace
        ({SIDECAR_INJECT: "false"}, {}, False),
        ({}, {SIDECAR_INJECT: "false"}, False),  # the older API, still honoured
        ({SIDECAR_INJECT: "true"}, {SIDECAR_INJECT: "false"}, True),  # the label wins over the annotation
        ({SIDECAR_INJECT: "false"}, {SIDECAR_INJECT: "true"}, False),
        ({SIDECAR_INJECT: ""}, {SIDECAR_INJECT: "false"}, True),  # a label present but empty still wins
        ({SIDECAR_INJECT: "False"}, {}, True),  # istiod takes only "true" and "false"; others: the default
        ({}, {SIDECAR_INJECT: "no"}, True),
        ({SIDECAR_INJECT: "0"}, {}, True),
        ({"app": "x"}, {"other": "false"}, True),
    ],
)
def test_injection_is_decided_as_istiod_decides_it(
    labels: dict[str, str], annotations: dict[str, str], injected: bool
) -> None:
    assert sidecar_injected(labels, annotations) is injected


def test_a_value_that_decides_nothing_falls_back_to_the_namespace_policy() -> None:
    assert sidecar_injected({SIDECAR_INJECT: "False"}, {}, default=False) is False
    assert sidecar_injected({SIDECAR_INJECT: "true"}, {}, default=False) is True
    assert sidecar_injected({}, {}, default=False) is False


def _deployments(text: str) -> dict[str, Deployment]:
    problems: list[Problem] = []
    objects = parse_documents(parse_text(text, "bare.yaml", problems), problems)
    assert not problems, problems
    return {o.name: o for o in objects if isinstance(o, Deployment)}


DEPLOYMENTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: by-label}
spec:
  selector: {matchLabels: {app: by-label}}
  template:
    metadata:
      labels: {app: by-label, sidecar.istio.io/inject: "false"}
      annotations: {clover.opnfv.org/local-command: "{python} -m http.server {port}"}
    spec: {containers: [{name: app, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: by-annotation}
spec:
  selector: {matchLabels: {app: by-annotation}}
  template:
    metadata:
      labels: {app: by-annotation}
      annotations: {sidecar.istio.io/inject: "false", clover.opnfv.org/local-command: "{python} -m http.server"}
    spec: {containers: [{name: app, image: x}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: meshed}
spec:
  selector: {matchLabels: {app: meshed}}
  template:
    metadata: {labels: {app: meshed}, annotations: {clover.opnfv.org/local-command: "{python} -m http.server"}}
    spec: {containers: [{name: app, image: x}]}
"""


def test_a_deployment_opts_out_by_its_pod_template_label_or_annotation() -> None:
    deployments = _deployments(DEPLOYMENTS)
    assert deployments["by-label"].sidecar_injected is False
    assert deployments["by-annotation"].sidecar_injected is False
    assert deployments["meshed"].sidecar_injected is True


# ------------------------------------------------------------------------------------------ no Envoy configuration


def _spec(kind: str = NO_PROXY, name: str = "by-label-abc-x1") -> ProxySpec:
    return ProxySpec(
        name=name,
        namespace="default",
        kind=kind,
        ip="127.0.9.2",
        labels={"app": "by-label"},
        access_log="",
        inbound=(InboundPort(8080, 8080, 8080),),
    )


def test_a_pod_without_a_sidecar_gets_no_envoy_configuration() -> None:
    with pytest.raises(ValueError, match="no sidecar"):
        render_bootstrap(_spec())
    with pytest.raises(ValueError, match="no sidecar"):
        render_resources(Topology(namespace="default"), {}, _spec())
    # The same spec as a sidecar renders: only the kind stops it.
    assert render_bootstrap(_spec(kind="sidecar"))["node"]["id"].startswith("sidecar~127.0.9.2~")


# ------------------------------------------------------------------------------------------ the pod as the API shows it


def _pod(dep: Deployment, kind: str, tmp_path: Path) -> Pod:
    app = ZygoteProcess()
    app.pid = 4242  # running: poll() is None until a returncode is set
    spec = _spec(kind, name=f"{dep.name}-abc-x1")
    return Pod(spec.name, dep, dict(dep.pod_labels), spec.ip, spec, tmp_path, app=app, ready=True)


class _NoStore:
    """A store that holds nothing: the pod has no ReplicaSet to be owned by."""

    def get(self, key: str, namespace: str, name: str) -> dict[str, Any]:
        raise ApiError(404, f"{key} {namespace}/{name} not found")


def _pod_object(pod: Pod) -> dict[str, Any]:
    supervisor = SimpleNamespace(home="default", ingress_url=lambda namespace=None: None)
    return Cluster(cast(Any, supervisor), cast(Any, _NoStore()))._pod_object(pod)


def test_a_pod_that_opted_out_has_its_app_container_alone(tmp_path: Path) -> None:
    dep = _deployments(DEPLOYMENTS)["by-label"]
    pod = _pod(dep, NO_PROXY, tmp_path)
    assert pod.has_proxy is False and pod.containers == ("app",)
    obj = _pod_object(pod)
    assert [c["name"] for c in obj["spec"]["containers"]] == ["app"]
    assert obj["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]
    statuses = obj["status"]["containerStatuses"]
    assert [(s["name"], s["ready"], s["containerID"]) for s in statuses] == [("app", True, "clover://4242")]
    annotations = obj["metadata"]["annotations"]
    assert SIDECAR_STATUS not in annotations
    assert obj["metadata"]["labels"][SIDECAR_INJECT] == "false"
    # The template's annotations are the pod's, as on a cluster.
    assert annotations["clover.opnfv.org/local-command"] == dep.pod_annotations["clover.opnfv.org/local-command"]
    assert obj["status"]["phase"] == "Running"
    # Its PodInfo's URL is the app's own port: nothing stands in front of it.
    assert pod.info().url(8080) == "http://127.0.9.2:8080"


def test_an_injected_pod_keeps_its_sidecar_container_and_istios_status(tmp_path: Path) -> None:
    dep = _deployments(DEPLOYMENTS)["meshed"]
    pod = _pod(dep, "sidecar", tmp_path)
    assert pod.has_proxy is True and pod.containers == ("app", "istio-proxy")
    obj = _pod_object(pod)
    assert [c["name"] for c in obj["spec"]["containers"]] == ["app", "istio-proxy"]
    assert json.loads(obj["metadata"]["annotations"][SIDECAR_STATUS]) == {"containers": ["istio-proxy"]}


def test_events_name_the_containers_a_pod_has() -> None:
    cluster = cast(Any, SimpleNamespace(namespace="default"))
    created = _events_of(
        {"event": "pod-created", "pod": "bare-abc-x1", "deployment": "bare", "containers": ["app"], "time": 1.0},
        cluster,
    )
    assert [e["message"] for e in created if e["reason"] == "Started"] == ["Started containers app"]
    killed = _events_of(
        {
            "event": "killed",
            "pods": ["bare-abc-x1", "meshed-abc-x2"],
            "grace": 0,
            "containers": {"bare-abc-x1": ["app"], "meshed-abc-x2": ["app", "istio-proxy"]},
            "time": 1.0,
        },
        cluster,
    )
    assert [e["message"] for e in killed] == [
        "Stopping containers app (grace 0 s)",
        "Stopping containers app and istio-proxy (grace 0 s)",
    ]


# ------------------------------------------------------------------------------------------ pods/exec


class _ExecIO:
    def __init__(self, *command: str) -> None:
        self.command = list(command)
        self.stdin = None
        self.out = bytearray()
        self.err = bytearray()

    async def stdout(self, data: bytes) -> None:
        self.out += data

    async def stderr(self, data: bytes) -> None:
        self.err += data


def test_exec_in_a_pod_without_a_sidecar_runs_in_its_app_container_without_a_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy in the supervisor's own environment is not the pod's: its calls go straight where they dial.
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:3128")
    monkeypatch.setenv("https_proxy", "http://192.0.2.1:3128")
    pod = _pod(_deployments(DEPLOYMENTS)["by-label"], NO_PROXY, tmp_path)
    io = _ExecIO("/bin/sh", "-c", 'echo "${HTTP_PROXY-none} ${https_proxy-none} $POD_NAME $PWD"')
    assert asyncio.run(exec_in_pod(pod, io)) == 0
    assert io.out.decode().split() == ["none", "none", pod.name, str(tmp_path)]


def test_pilot_agent_is_not_in_a_pod_without_a_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no pilot-agent anywhere, as in an app's image
    pod = _pod(_deployments(DEPLOYMENTS)["by-label"], NO_PROXY, tmp_path)
    # Not the admin API (there is none): the command itself is looked for, and is not found.
    with pytest.raises(FileNotFoundError):
        asyncio.run(exec_in_pod(pod, _ExecIO("pilot-agent", "request", "GET", "stats")))


# ------------------------------------------------------------------------------------------ access-log readers


class _Backend:
    """Two pods in a state folder: one with a sidecar's access log, one without a sidecar (no access log)."""

    def __init__(self, root: Path) -> None:
        self.local = LocalBackend(state_dir=root)
        self.names = ["bare-abc-x1", "meshed-abc-x2"]
        for name in self.names:
            self.local.state.pod_dir(name).mkdir(parents=True)
            (self.local.state.pod_dir(name) / "app.log").write_text("started\n")
        (self.local.state.pod_dir("meshed-abc-x2") / ACCESS_LOG).write_text("")

    def pods(self, service: str | None = None) -> list[PodInfo]:
        return [
            PodInfo(n, n.split("-")[0], n.split("-")[0], "", ready=True, phase="Running", ip="127.0.9.2", restarts=0)
            for n in self.names
        ]

    def access_log(self, pod: str) -> list[dict[str, Any]]:
        return self.local.access_log(pod)

    def log_path(self, pod: str, container: str = "app") -> Path:
        return self.local.log_path(pod, container)


def test_access_log_readers_take_a_pod_without_an_access_log(tmp_path: Path) -> None:
    backend = _Backend(tmp_path / "state")
    assert backend.access_log("bare-abc-x1") == []
    cursor = AccessLogCursor(backend)
    entry = {"request_id": "r-1", "pod": "meshed-abc-x2", "direction": "inbound"}
    with (backend.local.state.pod_dir("meshed-abc-x2") / ACCESS_LOG).open("a") as log:
        log.write(json.dumps(entry) + "\n")
    assert [e["request_id"] for e in cursor.read()] == ["r-1"]
    # The rotation takes the pod too: its app log rotates, and no access log is made for it.
    limits = LogLimits(max_bytes=1024, generations=1)
    (backend.local.state.pod_dir("bare-abc-x1") / "app.log").write_text("x" * (limits.other_max_bytes + 1))
    folders = {n: backend.local.state.pod_dir(n) for n in backend.names}
    done = LogRotator(limits, backend.local.state.root / "pods").check(folders)
    assert backend.local.state.pod_dir("bare-abc-x1") / "app.log" in done.rotated
    assert not (backend.local.state.pod_dir("bare-abc-x1") / ACCESS_LOG).exists()


def test_clover_render_renders_no_proxy_for_a_pod_that_opted_out(tmp_path: Path) -> None:
    from pytest_clover.backends.local.render import plan
    from pytest_clover.istio import load_topology

    folder = tmp_path / "topology"
    folder.mkdir()
    (folder / "deployments.yaml").write_text(DEPLOYMENTS, encoding="utf-8")
    names = {proxy.spec.name for proxy in plan(load_topology(folder), tmp_path / "out")}
    assert "meshed-0" in names
    assert not {"by-label-0", "by-annotation-0"} & names
