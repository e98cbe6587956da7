"""A pod's Envoy admin API and its logs, reached the way ``istioctl`` reaches them: a port-forward to 15000.

Envoy's admin API listens on the pod's localhost only, so neither ``pods/proxy`` nor the pod IP reach it; a
port-forward does, with ``get``/``create`` on ``pods/portforward``. Each forward gets an ``ApiClient`` of its own:
the client's stream helpers swap ``call_api`` on the client they are given, which would break any other request
on a shared one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from ...envoy.http1 import parse_response
from ...errors import BackendError, CloverError
from .errors import translate
from .settings import ClusterRef

__all__ = ["ADMIN_PORT", "admin_get"]

ADMIN_PORT = 15000
"""Envoy's admin port in an Istio sidecar (bound to the pod's localhost)."""


def admin_get(
    make_client: Callable[[], Any], namespace: str, pod: str, path: str, *, cluster: ClusterRef, timeout: float = 5.0
) -> str:
    """GET ``path`` on a pod's Envoy admin API through a port-forward; the body (a status other than 200 is a
    BackendError naming the pod and the path)."""
    from kubernetes import client as kclient
    from kubernetes import stream as kstream

    api = make_client()
    forward: Any = None
    try:
        try:
            forward = kstream.portforward(
                kclient.CoreV1Api(api).connect_get_namespaced_pod_portforward,
                pod,
                namespace,
                ports=str(ADMIN_PORT),
                _request_timeout=timeout,
            )
            sock = forward.socket(ADMIN_PORT)
            sock.settimeout(timeout)
            request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            sock.sendall(request)
            chunks: list[bytes] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            with contextlib.suppress(OSError):
                sock.close()
            error = forward.error(ADMIN_PORT)
        except CloverError:
            raise
        except Exception as exc:  # the client's and the WebSocket's exceptions, translated here
            raise translate(
                exc, verb="create", resource="pods/portforward", namespace=namespace, name=pod, cluster=cluster
            ) from exc
    finally:
        if forward is not None:
            finish_forward(forward)
        api.close()
    if error:
        raise BackendError(f"the port-forward to {ADMIN_PORT} of pod {namespace}/{pod} failed: {error}")
    return _http_body(b"".join(chunks), f"{namespace}/{pod}", path)


def finish_forward(forward: Any, timeout: float = 2.0) -> None:
    """Close a port-forward of the official client, and its WebSocket's TLS socket.

    The client's proxy thread closes the WebSocket when our end closes first, but when the pod's side closes first
    (an HTTP answer with ``Connection: close``) it returns without closing it, and the socket is left to the garbage
    collector (a ResourceWarning wherever that happens to run). Wait for the thread to let go of its local ends,
    then close what it left open."""
    with contextlib.suppress(Exception):
        forward.close()
    ports = list(getattr(forward, "local_ports", {}).values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.python.fileno() != -1 for p in ports):
        time.sleep(0.002)
    websocket = getattr(forward, "websocket", None)
    if websocket is not None and getattr(websocket, "sock", None) is not None:
        with contextlib.suppress(Exception):
            websocket.shutdown()


def _http_body(reply: bytes, pod: str, path: str) -> str:
    status, body = parse_response(reply)
    if status == 0:
        raise BackendError(f"the Envoy admin API of pod {pod} gave no HTTP answer to {path} ({len(reply)} bytes)")
    text = body.decode("utf-8", errors="replace")
    if status != 200:
        raise BackendError(f"the Envoy admin API of pod {pod} answered {path} with {status}: {text[:200]}")
    return text
