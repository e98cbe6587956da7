"""Where load enters the mesh: from the run's Gateway, by Istio's documented recipe.

The Gateway's ``selector`` picks the ingress gateway pods; the Service that selects those pods gives the
address: its LoadBalancer ingress (IP or hostname), else a NodePort on a node's address, else — a cluster that
exposes neither, e.g. kind without a load-balancer — a port-forward to a gateway pod that the backend keeps open
for the run (:class:`PortForwarder`). ``--clover-ingress-url`` overrides all of it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import BackendError
from .admin import finish_forward
from .rest import KINDS, Kind, Rest
from .settings import ClusterRef

__all__ = ["IngressTarget", "PortForwarder", "find_ingress", "find_service_url"]


class IngressTarget:
    """The ingress: either a URL, or the gateway pod and port to forward to when no URL reaches it from here."""

    def __init__(self, url: str | None, *, namespace: str = "", pod: str = "", port: int = 0, how: str = "") -> None:
        self.url = url
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self.how = how
        """How the address was found (``LoadBalancer``, ``NodePort``, ``port-forward``), for ``clover status``."""


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def find_ingress(
    rest: Rest, gateway_kind: Kind, namespace: str, istio_namespace: str, *, cluster: ClusterRef
) -> IngressTarget:
    """The ingress of the run namespace's Gateway (``gateway_kind``: in the Istio version the cluster serves; see
    the module's docstring)."""
    gateways = rest.list(gateway_kind, namespace).get("items") or []
    if not gateways:
        raise BackendError(
            f"namespace {namespace} has no Istio Gateway: load needs an ingress (add one to the topology, or pass "
            "--clover-ingress-url)"
        )
    gateway = sorted(gateways, key=lambda g: g["metadata"]["name"])[0]
    spec = gateway.get("spec") or {}
    selector = dict(spec.get("selector") or {})
    server_ports = [int((s.get("port") or {}).get("number") or 0) for s in spec.get("servers") or []]
    gw_name = gateway["metadata"]["name"]
    for where in dict.fromkeys((namespace, istio_namespace)):
        pods = rest.list(KINDS["Pod"], where, labels=_selector_text(selector)).get("items") or []
        pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if not pods:
            continue
        pod_labels = pods[0]["metadata"].get("labels") or {}
        services = [
            s for s in rest.list(KINDS["Service"], where).get("items") or []
            if _matches((s.get("spec") or {}).get("selector") or {}, pod_labels)
        ]  # fmt: skip
        for service in sorted(services, key=lambda s: s["metadata"]["name"]):
            port = _service_port(service, server_ports)
            if port is None:
                continue
            url = _load_balancer_url(service, port) or _node_port_url(rest, service, port)
            if url:
                return IngressTarget(url[0], how=url[1])
            target = port.get("targetPort", port.get("port"))
            return IngressTarget(None, namespace=where, pod=pods[0]["metadata"]["name"],
                                 port=_container_port(pods[0], target), how="port-forward")  # fmt: skip
        ready = pods[0]["metadata"]["name"]
        return IngressTarget(None, namespace=where, pod=ready, port=server_ports[0] if server_ports else 80,
                             how="port-forward")  # fmt: skip
    raise BackendError(
        f"no ingress gateway pod matches the selector {_selector_text(selector) or '(none)'} of Gateway {gw_name} "
        f"in namespace {namespace} or {istio_namespace} ({cluster}); is Istio's ingress gateway installed? Or pass "
        "--clover-ingress-url"
    )


def find_service_url(rest: Rest, gateway_kind: Kind, namespace: str, istio_namespace: str) -> str:
    """The ingress gateway Service as a pod of the cluster reaches it: ``http://<service>.<namespace>.svc:<port>``
    (cluster DNS; the short ``.svc`` form works whatever the cluster's domain)."""
    gateways = rest.list(gateway_kind, namespace).get("items") or []
    if not gateways:
        raise BackendError(f"namespace {namespace} has no Istio Gateway: in-cluster load needs an ingress")
    spec = sorted(gateways, key=lambda g: g["metadata"]["name"])[0].get("spec") or {}
    selector = dict(spec.get("selector") or {})
    server_ports = [int((s.get("port") or {}).get("number") or 0) for s in spec.get("servers") or []]
    for where in dict.fromkeys((namespace, istio_namespace)):
        services = rest.list(KINDS["Service"], where).get("items") or []
        for service in sorted(services, key=lambda s: s["metadata"]["name"]):
            service_selector = (service.get("spec") or {}).get("selector") or {}
            if service_selector and all(selector.get(k) == v for k, v in service_selector.items()):
                port = _service_port(service, server_ports)
                if port is not None:
                    return f"http://{service['metadata']['name']}.{where}.svc:{port['port']}"
    raise BackendError(
        f"no Service in namespace {namespace} or {istio_namespace} selects the ingress gateway of namespace "
        f"{namespace}: pass --clover-load-target with the URL a pod reaches the ingress at"
    )


def _service_port(service: Mapping[str, Any], server_ports: list[int]) -> dict[str, Any] | None:
    ports = list((service.get("spec") or {}).get("ports") or [])
    for port in ports:
        if port.get("port") in server_ports:
            return dict(port)
    for port in ports:
        if port.get("name") in ("http2", "http"):
            return dict(port)
    return dict(ports[0]) if ports else None


def _load_balancer_url(service: Mapping[str, Any], port: Mapping[str, Any]) -> tuple[str, str] | None:
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        host = ingress.get("ip") or ingress.get("hostname")
        if host:
            return f"http://{_bracket(str(host))}:{port['port']}", "LoadBalancer"
    return None


def _node_port_url(rest: Rest, service: Mapping[str, Any], port: Mapping[str, Any]) -> tuple[str, str] | None:
    node_port = port.get("nodePort")
    if not node_port or (service.get("spec") or {}).get("type") not in ("NodePort", "LoadBalancer"):
        return None
    try:
        nodes = rest.list(KINDS["Node"], None).get("items") or []
    except BackendError:
        return None  # listing nodes needs a ClusterRole: fall back to a port-forward
    for wanted in ("ExternalIP", "InternalIP"):
        for node in nodes:
            for address in (node.get("status") or {}).get("addresses") or []:
                if address.get("type") == wanted and address.get("address"):
                    return f"http://{_bracket(str(address['address']))}:{node_port}", "NodePort"
    return None


def _container_port(pod: Mapping[str, Any], target: Any) -> int:
    if isinstance(target, int):
        return target
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    raise BackendError(f"the gateway pod {pod['metadata']['name']} has no port named {target!r}")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class PortForwarder:
    """A local listener on 127.0.0.1 whose every connection is forwarded to one port of one pod (what ``kubectl
    port-forward`` does), kept for the run. Each connection has its own port-forward stream and its own client:
    the client's stream helpers are not safe to share."""

    def __init__(self, make_client: Callable[[], Any], namespace: str, pod: str, port: int) -> None:
        self.make_client = make_client
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.local_port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name=f"clover-forward-{pod}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes import client as kclient
        from kubernetes import stream as kstream

        api = self.make_client()
        forward: Any = None
        try:
            forward = kstream.portforward(
                kclient.CoreV1Api(api).connect_get_namespaced_pod_portforward, self.pod, self.namespace,
                ports=str(self.port),
            )  # fmt: skip
            remote = forward.socket(self.port)
            _pump(conn, remote, self._stop)
        except Exception:  # a connection that cannot be forwarded is closed: the load counts it as an error
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            if forward is not None:
                finish_forward(forward)
            api.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)


def _pump(local: socket.socket, remote: Any, stop: threading.Event) -> None:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(local, selectors.EVENT_READ, remote)
    selector.register(remote, selectors.EVENT_READ, local)
    try:
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.5):
                source: Any = key.fileobj
                data = source.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    finally:
        selector.close()
