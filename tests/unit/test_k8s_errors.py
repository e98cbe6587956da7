"""The Kubernetes backend's error translation against recorded API responses (``tests/data/k8s_responses``).

Each recording is what kube-apiserver answers (status, headers, body: a ``Status`` as its handlers build it, or
the plain text of its max-in-flight filter); the test turns it into the exception the client 37 raises — through
the client's own ``RESTResponse`` and ``ApiException.from_response``, the websocket wrapping of its stream
helpers, or the watch's ERROR event — and checks what :func:`translate` makes of it. Timeouts and connection
errors are real: the client against sockets on 127.0.0.1 that refuse, hang up or never answer.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends.k8s.errors import api_call, api_status, rbac_dir, rbac_fix, split_resource, translate
from pytest_clover.backends.k8s.settings import ClusterRef, SettingError
from pytest_clover.errors import (
    AccessDenied,
    BackendError,
    CloverError,
    ClusterUnreachable,
    ConfigError,
    IstioNotInstalled,
    ObjectConflict,
)

kubernetes = pytest.importorskip("kubernetes", reason="the official client is a test dependency")
urllib3 = pytest.importorskip("urllib3")
from kubernetes.client import rest  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "k8s_responses"
CLUSTER = ClusterRef("kind-chaos", "https://127.0.0.1:6443")


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return data


def _body_bytes(data: dict[str, Any]) -> bytes:
    body = data["body"]
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def replay(name: str) -> tuple[ApiException, dict[str, Any]]:
    """The exception the client raises for the recorded answer, and the recorded request."""
    data = recording(name)
    if data["transport"] == "watch":
        # kubernetes.watch.Watch.stream on an ERROR event it does not retry: ApiException(status, "reason: message").
        status = data["body"]["object"]
        return ApiException(status=status["code"], reason=f"{status['reason']}: {status['message']}"), data["request"]
    body = _body_bytes(data)
    if data["transport"] == "websocket":
        # websocket-client's refused upgrade, as kubernetes.stream.ws_client wraps every error of its helpers.
        from websocket import WebSocketBadStatusException

        refused = WebSocketBadStatusException(
            f"Handshake status {data['status']} {data['reason']} -+-+- {data['headers']} -+-+- {body.decode()}",
            data["status"],
            data["reason"],
            data["headers"],
            body,
        )
        return ApiException(status=0, reason=str(refused)), data["request"]
    headers = {**data["headers"], "Content-Length": str(len(body))}
    raw = urllib3.HTTPResponse(
        body=body, headers=headers, status=data["status"], reason=data["reason"], preload_content=True
    )
    response = rest.RESTResponse(raw)
    response.read()  # type: ignore[no-untyped-call]
    with pytest.raises(ApiException) as raised:
        # What ApiClient does with a non-2xx answer (client/api_client.py, response_deserialize).
        ApiException.from_response(http_resp=response, body=None, data=None)
    return raised.value, data["request"]


def translated(name: str, cluster: ClusterRef | None = CLUSTER) -> tuple[CloverError, ApiException]:
    exc, request = replay(name)
    return translate(exc, cluster=cluster, **request), exc


def test_every_recording_is_used_and_well_formed() -> None:
    names = sorted(p.stem for p in RECORDINGS.glob("*.json"))
    tested = {
        "401-unauthorized", "403-delete-pod", "403-list-virtualservices", "403-create-namespace",
        "403-pods-exec-websocket", "404-virtualservices-no-crd", "404-telemetries-no-crd", "404-virtualservice-gone",
        "404-namespace-gone", "409-already-exists", "409-conflict", "409-apply-conflict", "410-expired-continue",
        "410-watch-expired", "422-invalid-deployment", "429-max-in-flight", "500-etcd", "503-unavailable",
        "504-timeout",
    }  # fmt: skip
    assert set(names) == tested
    for name in names:
        data = recording(name)
        assert data["_source"] and data["request"]["verb"] and data["request"]["resource"]
        assert int(name[:3]) == data["status"]
        if isinstance(data["body"], dict) and data["transport"] == "http":
            assert data["body"]["code"] == data["status"] and data["body"]["kind"] == "Status"


def test_the_client_raises_its_subclasses_from_the_recordings() -> None:
    # The replay goes through the client's own code: a change in client 38 shows here first.
    assert type(replay("403-delete-pod")[0]).__name__ == "ForbiddenException"
    assert type(replay("409-conflict")[0]).__name__ == "ConflictException"
    assert type(replay("422-invalid-deployment")[0]).__name__ == "UnprocessableEntityException"
    assert type(replay("503-unavailable")[0]).__name__ == "ServiceException"
    assert type(replay("429-max-in-flight")[0]) is ApiException


# --------------------------------------------------------------------------- 401 / 403


def test_401_names_the_cluster_and_the_credentials_of_the_context() -> None:
    error, _ = translated("401-unauthorized")
    assert type(error) is AccessDenied
    text = str(error)
    assert "context 'kind-chaos' (https://127.0.0.1:6443)" in text
    assert "the credentials of the context 'kind-chaos'" in text and "token expired?" in text
    assert "401 Unauthorized" in text


def test_403_names_verb_resource_namespace_user_and_the_exact_rbac_command() -> None:
    error, exc = translated("403-delete-pod")
    assert type(error) is AccessDenied
    text = str(error)
    assert "delete pods 'web-7d9f-x2k4q' in namespace 'shop'" in text
    assert "as system:serviceaccount:pytest-clover:pytest-clover" in text
    assert exc.body is not None and json.loads(exc.body)["message"] in text
    folder = rbac_dir()
    assert folder.is_dir() and (folder / "role.yaml").is_file()
    assert f"kubectl apply -n shop -f {folder / 'role.yaml'} -f {folder / 'rolebinding.yaml'}" in text
    assert "clover k8s check" in text


def test_403_takes_the_subresource_from_the_server_through_a_websocket_upgrade() -> None:
    # The caller said "exec pods"; the API server says exactly what it refused: create on pods/exec.
    error, _ = translated("403-pods-exec-websocket")
    assert type(error) is AccessDenied
    text = str(error)
    assert "create pods/exec 'web-7d9f-x2k4q' in namespace 'shop'" in text
    assert "403 Forbidden" in text and 'cannot create resource "pods/exec"' in text


def test_403_of_an_istio_list_and_of_a_cluster_scoped_create() -> None:
    listed, _ = translated("403-list-virtualservices")
    assert "list virtualservices.networking.istio.io in namespace 'shop'" in str(listed)
    assert "role.yaml" in str(listed)
    created, _ = translated("403-create-namespace")
    text = str(created)
    assert "create namespaces (cluster-wide)" in text
    assert f"kubectl apply -f {rbac_dir() / 'clusterrole.yaml'} -f {rbac_dir() / 'bindings.yaml'}" in text
    assert "/role.yaml" not in text and "rolebinding.yaml" not in text


def test_rbac_fix_points_at_files_that_exist() -> None:
    for verb, resource, namespace in (
        ("delete", "pods", "shop"),
        ("create", "namespaces", None),
        ("get", "services", "istio-system"),
        ("patch", "virtualservices.networking.istio.io", "clover-r1"),
    ):
        line = rbac_fix(verb, resource, namespace)
        files = [Path(word) for word in line.split() if word.endswith((".yaml", ".md)"))]
        assert files, line
        for path in files:
            assert Path(str(path).rstrip(")")).is_file(), path


# --------------------------------------------------------------------------- 404


@pytest.mark.parametrize(
    ("name", "group"),
    [("404-virtualservices-no-crd", "networking.istio.io"), ("404-telemetries-no-crd", "telemetry.istio.io")],
)
def test_404_on_an_istio_collection_says_istio_is_not_installed(name: str, group: str) -> None:
    error, _ = translated(name)
    assert type(error) is IstioNotInstalled
    assert str(error).startswith(f"Istio is not installed in the cluster (no {group} CRDs)")
    assert "the server could not find the requested resource" in str(error)


def test_404_of_a_named_object_says_which_object_is_gone() -> None:
    error, _ = translated("404-virtualservice-gone")
    assert type(error) is BackendError
    text = str(error)
    assert text.startswith("virtualservices.networking.istio.io 'reviews' in namespace 'shop' is gone")
    assert 'virtualservices.networking.istio.io "reviews" not found' in text


def test_404_names_the_missing_namespace_rather_than_the_object_asked_for() -> None:
    error, _ = translated("404-namespace-gone")
    assert type(error) is BackendError
    assert str(error).startswith("namespace 'clover-r1' is gone")
    assert "create configmaps 'clover-ledger'" in str(error)


def test_404_without_a_name_outside_istio_is_not_istio() -> None:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps(recording("404-virtualservices-no-crd")["body"])
    error = translate(exc, verb="list", resource="widgets.example.com", namespace="shop", cluster=CLUSTER)
    assert type(error) is BackendError
    assert "does not serve widgets in API group example.com" in str(error)


# --------------------------------------------------------------------------- 409, 410, 422


def test_409_already_exists_and_conflict_are_told_apart() -> None:
    exists, _ = translated("409-already-exists")
    conflict, _ = translated("409-conflict")
    assert type(exists) is ObjectConflict and type(conflict) is ObjectConflict
    assert "configmaps 'clover-ledger' in namespace 'clover-r1' already exists" in str(exists)
    assert "clover cleanup" in str(exists)
    assert "was changed by someone else since we read it" in str(conflict)
    assert "the object has been modified" in str(conflict)
    assert "already exists" not in str(conflict)


def test_409_apply_conflict_names_the_field_and_its_manager() -> None:
    error, _ = translated("409-apply-conflict")
    assert type(error) is ObjectConflict
    text = str(error)
    assert '.spec.replicas (conflict with "kubectl-client-side-apply" using apps/v1)' in text
    assert "Apply failed with 1 conflict" in text


@pytest.mark.parametrize("name", ["410-expired-continue", "410-watch-expired"])
def test_410_says_the_version_expired_and_to_list_again(name: str) -> None:
    error, exc = translated(name)
    assert type(error) is BackendError
    text = str(error)
    assert "has expired" in text and "list again" in text and "410 Expired" in text
    if name == "410-watch-expired":
        assert exc.body is None and "too old resource version: 1042 (7362)" in text
    else:
        assert "continue parameter is too old" in text


def test_422_with_causes_is_a_config_error_with_one_problem_per_cause() -> None:
    error, _ = translated("422-invalid-deployment")
    assert isinstance(error, ConfigError)
    fields = [(p.obj, p.field) for p in error.problems]
    assert fields == [
        ("Deployment.apps/web", "spec.replicas"),
        ("Deployment.apps/web", "spec.template.spec.containers[0].image"),
    ]
    assert "must be greater than or equal to 0" in error.problems[0].message
    assert 'Deployment.apps "web" is invalid' in str(error)  # the Status message, verbatim
    assert "kind-chaos" in error.problems[0].file


def test_422_without_causes_is_a_backend_error_with_the_message() -> None:
    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "the body is not what it should be",
            "reason": "Invalid",
            "code": 422,
        }
    )
    error = translate(exc, verb="create", resource="pods", namespace="shop", cluster=CLUSTER)
    assert type(error) is BackendError and "the body is not what it should be" in str(error)


# --------------------------------------------------------------------------- 429, 5xx


def test_429_plain_text_is_overloaded_with_retry_after() -> None:
    error, _ = translated("429-max-in-flight")
    assert type(error) is BackendError
    text = str(error)
    assert "is overloaded" in text and "Too many requests, please try again later." in text
    assert "retry after 1 s" in text


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("500-etcd", "500 InternalError: Internal error occurred: etcdserver: request timed out"),
        ("503-unavailable", "503 ServiceUnavailable: the server is currently unable to handle the request"),
        ("504-timeout", "504 Timeout: Timeout: request did not complete within requested timeout"),
    ],
)
def test_5xx_is_a_failing_api_server_with_its_message(name: str, said: str) -> None:
    error, _ = translated(name)
    assert type(error) is BackendError  # a 500 with details.causes is no configuration problem
    assert "is failing" in str(error) and said in str(error)


# --------------------------------------------------------------------------- no answer at all


class Listener:
    """A TCP socket on 127.0.0.1 that does one thing to every connection: ``close`` it at once, or ``hold`` it
    open without a word (until the test ends), or answer ``garbage`` to a TLS hello."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stop.is_set():  # the wake-up connection of close()
                conn.close()
                return
            if self.behaviour == "hold":
                self.held.append(conn)
                continue
            if self.behaviour == "garbage":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS\r\n")
            conn.close()

    def close(self) -> None:
        self.stop.set()
        # Closing a listening socket does not wake a thread blocked in accept(): a connection does.
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.sock.close()
        for conn in self.held:
            conn.close()


def client_for(port: int, *, scheme: str = "https") -> Any:
    configuration = kubernetes.client.Configuration()
    configuration.host = f"{scheme}://127.0.0.1:{port}"
    configuration.verify_ssl = False
    configuration.retries = 0  # one attempt: what is under test is the error, not urllib3's patience
    return kubernetes.client.ApiClient(configuration)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    running = Listener(request.param)
    yield running
    running.close()


def _call(port: int, *, timeout: float = 2.0, scheme: str = "https") -> BaseException:
    api = client_for(port, scheme=scheme)
    try:
        with pytest.raises(Exception) as raised:
            kubernetes.client.CoreV1Api(api).list_namespaced_pod("shop", _request_timeout=timeout)
        return raised.value
    finally:
        api.close()


def test_connection_refused_names_the_context_and_the_server(closed_port: int) -> None:
    exc = _call(closed_port)
    assert isinstance(exc, urllib3.exceptions.MaxRetryError)  # the client does not wrap it
    cluster = ClusterRef("kind-chaos", f"https://127.0.0.1:{closed_port}")
    error = translate(exc, verb="list", resource="pods", namespace="shop", cluster=cluster)
    assert type(error) is ClusterUnreachable
    text = str(error)
    assert f"the API server https://127.0.0.1:{closed_port} of context 'kind-chaos' does not answer" in text
    assert "Connection refused" in text and "kubectl --context kind-chaos cluster-info" in text


@pytest.mark.parametrize("listener", ["hold"], indirect=True)
def test_a_read_timeout_is_unreachable_and_says_it_timed_out(listener: Listener) -> None:
    exc = _call(listener.port, timeout=0.3, scheme="http")
    assert isinstance(exc, urllib3.exceptions.MaxRetryError)
    assert isinstance(exc.reason, urllib3.exceptions.ReadTimeoutError)
    error = translate(exc, verb="list", resource="pods", namespace="shop", cluster=CLUSTER)
    assert type(error) is ClusterUnreachable and "timed out" in str(error)


@pytest.mark.parametrize("listener", ["close"], indirect=True)
def test_a_hang_up_is_unreachable(listener: Listener) -> None:
    exc = _call(listener.port, scheme="http")
    assert isinstance(exc, urllib3.exceptions.MaxRetryError)
    assert isinstance(exc.reason, urllib3.exceptions.ProtocolError)
    error = translate(exc, verb="list", resource="pods", namespace="shop", cluster=CLUSTER)
    assert type(error) is ClusterUnreachable and "Connection aborted" in str(error)


@pytest.mark.parametrize("listener", ["garbage"], indirect=True)
def test_a_tls_failure_is_unreachable_and_says_tls(listener: Listener) -> None:
    exc = _call(listener.port)
    error = translate(exc, verb="list", resource="pods", namespace="shop", cluster=CLUSTER)
    assert type(error) is ClusterUnreachable
    assert "TLS failed" in str(error) and "certificate-authority" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        urllib3.exceptions.ProtocolError("Response ended prematurely"),
        urllib3.exceptions.ReadTimeoutError(None, "/api/v1/pods?watch=true", "Read timed out."),
        urllib3.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
        ApiException(status=0, reason="SSLError\n[SSL: WRONG_VERSION_NUMBER] wrong version number"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_a_watch_stream_raises_mid_read_is_unreachable(exc: BaseException) -> None:
    error = translate(exc, verb="watch", resource="pods", namespace="shop", cluster=CLUSTER)
    assert type(error) is ClusterUnreachable
    assert "https://127.0.0.1:6443" in str(error) and "'kind-chaos'" in str(error)


def test_no_cluster_given_still_says_what_to_check() -> None:
    error = translate(ConnectionRefusedError(111, "Connection refused"), verb="get", resource="pods")
    assert type(error) is ClusterUnreachable and "kubectl cluster-info" in str(error)


# --------------------------------------------------------------------------- api_call


def test_api_call_raises_from_the_client_exception() -> None:
    exc, request = replay("403-delete-pod")
    with pytest.raises(AccessDenied) as raised, api_call(**request, cluster=CLUSTER):
        raise exc
    assert raised.value.__cause__ is exc


def test_api_call_lets_programming_errors_and_clover_errors_through() -> None:
    with pytest.raises(TypeError), api_call("get", "pods"):
        raise TypeError("grace_period_seconds must be an int")
    original = ObjectConflict("mine")
    with pytest.raises(ObjectConflict) as raised, api_call("get", "pods"):
        raise original
    assert raised.value is original


def test_a_kubeconfig_the_client_cannot_load_is_a_setting_error() -> None:
    from kubernetes.config.config_exception import ConfigException

    with pytest.raises(SettingError) as raised, api_call("load", "kubeconfig", cluster=CLUSTER):
        raise ConfigException("Invalid kube-config file. No configuration found.")
    assert "No configuration found" in str(raised.value) and "--clover-kubeconfig" in str(raised.value)


def test_translate_returns_clover_errors_unchanged_and_wraps_the_unknown() -> None:
    original = AccessDenied("x")
    assert translate(original, verb="get", resource="pods") is original
    other = translate(ValueError("odd"), verb="get", resource="pods", cluster=CLUSTER)
    assert type(other) is BackendError and "ValueError: odd" in str(other)


def test_split_resource_and_api_status() -> None:
    assert split_resource("deployments.apps/scale") == ("deployments", "apps", "scale")
    assert split_resource("virtualservices.networking.istio.io") == ("virtualservices", "networking.istio.io", "")
    assert split_resource("pods") == ("pods", "", "")
    assert api_status(ConnectionRefusedError()) is None
    status = api_status(replay("409-already-exists")[0])
    assert status is not None and (status.code, status.reason, status.name) == (409, "AlreadyExists", "clover-ledger")


def test_resources_named_by_api_path_or_bare_istio_plural_are_qualified() -> None:
    assert split_resource("/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews") == (
        "virtualservices",
        "networking.istio.io",
        "",
    )
    assert split_resource("/apis/apps/v1/namespaces/shop/deployments/web/scale") == ("deployments", "apps", "scale")
    assert split_resource("/api/v1/namespaces/shop/pods") == ("pods", "", "")
    assert split_resource("/api/v1/namespaces/shop") == ("namespaces", "", "")
    assert split_resource("virtualservices") == ("virtualservices", "networking.istio.io", "")
    assert split_resource("gateways") == ("gateways", "", "")  # the Gateway API has gateways too
    for resource in ("virtualservices", "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"):
        exc, _ = replay("404-virtualservices-no-crd")
        error = translate(exc, verb="list", resource=resource, namespace="shop", cluster=CLUSTER)
        assert type(error) is IstioNotInstalled, resource


def test_a_server_name_that_does_not_resolve_is_unreachable() -> None:
    error = translate(socket.gaierror(-2, "Name or service not known"), verb="get", resource="pods", cluster=CLUSTER)
    assert type(error) is ClusterUnreachable and "Name or service not known" in str(error)
