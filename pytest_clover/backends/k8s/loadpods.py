"""Load generator pods on the cluster (``--clover-load-in-cluster``): the locust master and workers near the mesh.

Each load process is a one-replica Deployment in the run's namespace (a Deployment, not a bare pod, because a
bare pod is not what a restricted namespace lets every user create, and its replacement after a node loss is
what a long soak wants). Its pod template:

* is **not injected** (label ``sidecar.istio.io/inject: "false"``). Decided, not defaulted: locust's ZeroMQ
  channel through Istio sidecars is known to break (locust #3214; OPNFV Clover found the same for JMeter's RMI),
  and the other way out — keeping the sidecar and excluding the ZeroMQ ports
  (``traffic.sidecar.istio.io/excludeInboundPorts`` / ``excludeOutboundPorts``) — would leave a client sidecar
  on the load's path: the load would then enter the mesh at that sidecar, where a VirtualService of a mesh host
  applies its faults, instead of at the ingress gateway where local load enters. Without a sidecar, in-cluster
  load and local load cross the same hops and see the same faults, and the load pods' own CPU goes to requests.
* names its ports ``tcp-…`` (Istio never sniffs a protocol there, should a sidecar ever be added);
* carries the run's labels (``clover cleanup`` sweeps them) and ``app.kubernetes.io/component: load-master`` or
  ``load-worker``, by which the backend leaves them out of the app under test (kills, readiness, sidecar
  checks);
* runs ``python -m pytest_clover.load.master|worker`` from the load image (``docker/load/Dockerfile``), its
  config in ``CLOVER_LOAD_CONFIG`` and its address in ``POD_IP`` (downward API); on the embedded mesh's
  Kubernetes API the same Deployment runs as a local process (``clover.opnfv.org/local-command``).

The master's control port is reached through a port-forward, as ``kubectl port-forward`` would: it needs
``get``/``create`` on ``pods/portforward``, which the backend already uses for the Envoy admin API.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import BackendError
from ..protocol import LoadPodSpec, PodInfo
from .rest import KINDS, Rest
from .settings import MANAGED_BY_LABEL, RUN_ID_LABEL, ClusterRef

__all__ = [
    "LOAD_COMPONENTS",
    "LOAD_NAME",
    "NO_INJECTION_LABEL",
    "LoadChannel",
    "load_deployment",
    "wait_for_load_pods",
]

LOAD_NAME = "clover-load"
"""The ``app.kubernetes.io/name`` of every load pod."""
LOAD_COMPONENTS = ("load-master", "load-worker")
"""Their ``app.kubernetes.io/component`` (by role): tools of the run, not part of the app under test."""
LOAD_POD_LABEL = "clover.opnfv.org/load-pod"
"""Selects one load Deployment's pod (its name)."""
NO_INJECTION_LABEL = "sidecar.istio.io/inject"
"""Istio's per-pod opt-out of sidecar injection (``"false"``)."""
LOCAL_COMMAND = "{python} -m %s"
"""How the embedded mesh runs a load pod as a local process (``clover.opnfv.org/local-command``)."""


def load_deployment(spec: LoadPodSpec, *, namespace: str, image: str, run_id: str) -> dict[str, Any]:
    """The Deployment that runs one load process (see the module's docstring)."""
    labels = {
        MANAGED_BY_LABEL: "pytest-clover",
        RUN_ID_LABEL: run_id,
        "app.kubernetes.io/name": LOAD_NAME,
        "app.kubernetes.io/component": f"load-{spec.role}",
    }
    selector = {"app.kubernetes.io/name": LOAD_NAME, LOAD_POD_LABEL: spec.name}
    container: dict[str, Any] = {
        "name": "load",
        "image": image,
        "command": ["python", "-m", spec.module],
        "env": [
            {"name": "CLOVER_LOAD_CONFIG", "value": spec.config},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "workingDir": "/tmp",
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in spec.ports.items()],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip
    if spec.ready_port is not None:
        probe = {"tcpSocket": {"port": spec.ready_port}, "periodSeconds": 1, "failureThreshold": 3}
        container["readinessProbe"] = probe
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**labels, **selector, NO_INJECTION_LABEL: "false"},
                    "annotations": {"clover.opnfv.org/local-command": LOCAL_COMMAND % spec.module},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }  # fmt: skip


def wait_for_load_pods(
    rest: Rest, namespace: str, names: list[str], *, timeout: float, pod_info: Callable[[Mapping[str, Any]], PodInfo]
) -> dict[str, PodInfo]:
    """Wait until each named load Deployment has a ready pod with an IP; its PodInfo by Deployment name. On timeout
    a BackendError says which pod waits for what (and how to look)."""
    wanted = set(names)
    found: dict[str, PodInfo] = {}

    def check(items: dict[str, dict[str, Any]]) -> tuple[bool, str]:
        found.clear()
        waiting = []
        for obj in items.values():
            meta = obj.get("metadata") or {}
            owner = (meta.get("labels") or {}).get(LOAD_POD_LABEL)
            if owner not in wanted or meta.get("deletionTimestamp"):
                continue
            info = pod_info(obj)
            if info.ready and info.ip:
                found[str(owner)] = info
            else:
                reasons = [
                    (s.get("state") or {}).get("waiting", {}).get("reason")
                    for s in (obj.get("status") or {}).get("containerStatuses") or []
                ]
                why = ", ".join(r for r in reasons if r) or info.phase
                waiting.append(f"{info.name} ({why})")
        missing = sorted(wanted - set(found))
        return not missing, "; ".join(waiting) or f"no pod yet for {', '.join(missing)}"

    selector = f"app.kubernetes.io/name={LOAD_NAME}"
    result = rest.wait_until(KINDS["Pod"], namespace, check, timeout=timeout, labels=selector)
    if not result.done:
        raise BackendError(
            f"the load pods {', '.join(sorted(wanted - set(found)))} in namespace {namespace} were not ready within "
            f"{timeout:.0f} s: {result.detail}. Can the cluster pull the load image (docker/load/Dockerfile; "
            f"--clover-load-image)? kubectl -n {namespace} describe pods -l app.kubernetes.io/name={LOAD_NAME}"
        )
    return dict(found)


class LoadChannel:
    """A connected socket to a port of a load pod, through a port-forward of the official client (its own
    ``ApiClient``: the client's stream helpers are not safe to share). :meth:`close` ends both."""

    def __init__(self, make_client: Callable[[], Any], namespace: str, pod: str, port: int, *, cluster: ClusterRef,
                 timeout: float) -> None:  # fmt: skip
        from kubernetes import client as kclient
        from kubernetes import stream as kstream

        from .admin import finish_forward
        from .errors import translate

        self._finish = finish_forward
        self.api = make_client()
        self.forward: Any = None
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        # The pod is ready (its probe reached the port) but the forward may race its first accept: a few tries.
        while time.monotonic() < deadline:
            try:
                self.forward = kstream.portforward(
                    kclient.CoreV1Api(self.api).connect_get_namespaced_pod_portforward, pod, namespace,
                    ports=str(port),
                )  # fmt: skip
                self.socket: socket.socket = self.forward.socket(port)
                self.socket.settimeout(None)
                return
            except Exception as exc:  # the client's and the WebSocket's exceptions, translated below
                last = exc
                if self.forward is not None:
                    finish_forward(self.forward)
                    self.forward = None
                time.sleep(0.2)
        self.api.close()
        assert last is not None
        raise translate(
            last, verb="create", resource="pods/portforward", namespace=namespace, name=pod, cluster=cluster
        ) from last

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()
        if self.forward is not None:
            self._finish(self.forward)
            self.forward = None
        with contextlib.suppress(Exception):
            self.api.close()
