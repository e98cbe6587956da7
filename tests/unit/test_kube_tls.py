"""The mesh's API credentials: kubectl and the official Python client trust the server and present the token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from pytest_clover.backends.local.kube.tls import (
    Credentials,
    check_token,
    load_credentials,
    make_credentials,
    server_ssl_context,
    write_kubeconfig,
)

# The official client 37 validates every field of VersionInfo: a /version answer must carry them all.
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:27:33Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
KUBECTL = shutil.which("kubectl")


class HttpsServer:
    """A tiny aiohttp HTTPS server answering ``/version`` to bearers of the token, run on its own thread."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.seen_authorization: list[str | None] = []

    async def version(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        self.seen_authorization.append(header)
        if not check_token(header, self.credentials.token):
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        return web.json_response(VERSION)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/version", self.version)
        # The official client asks for "/version/": kube-apiserver answers both.
        app.router.add_get("/version/", self.version)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_ssl_context(self.credentials))
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    async def _stop(self) -> None:
        assert self.runner is not None and self.runner.server is not None
        # A TLS connection the client keeps idle waits for the client's close_notify once the server closes
        # it; abort what is left so that no transport outlives the loop.
        transports = [handler.transport for handler in self.runner.server.connections]
        await self.runner.cleanup()
        for transport in transports:
            # One already closed has dropped its TLS protocol: aborting it again raises.
            if transport is not None:
                with contextlib.suppress(AttributeError):
                    transport.abort()

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    return make_credentials(tmp_path / "credentials", server_ip="127.0.0.1", mesh_id="m1")


@pytest.fixture
def server(credentials: Credentials) -> Iterator[HttpsServer]:
    running = HttpsServer(credentials)
    running.start()
    yield running
    running.stop()


def kubectl(kubeconfig: Path, cache: Path, *args: str, binary: str | None = None) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cache)}
    command = [binary or KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache / "kube-cache"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_files_are_private_and_load_back(credentials: Credentials) -> None:
    for path in (credentials.ca_path, credentials.cert_path, credentials.key_path, credentials.token_path):
        assert path.parent == credentials.directory
        assert (path.stat().st_mode & 0o777) == 0o600, path
    assert load_credentials(credentials.directory) == credentials
    # Nothing but the four files: the CA key is never written, no temporary file is left behind.
    assert sorted(p.name for p in credentials.directory.iterdir()) == [
        "apiserver.crt",
        "apiserver.key",
        "ca.crt",
        "token",
    ]


def test_certificates_name_the_mesh_and_the_server(credentials: Credentials) -> None:
    ca = x509.load_pem_x509_certificate(credentials.ca_pem)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "clover-ca-m1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = x509.load_pem_x509_certificate(credentials.cert_path.read_bytes())
    assert leaf.issuer == ca.subject
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    assert len(credentials.token) >= 40


def test_each_mesh_gets_its_own_ca_and_token(tmp_path: Path, credentials: Credentials) -> None:
    other = make_credentials(tmp_path / "other", server_ip="127.0.0.2", mesh_id="m2")
    assert other.ca_pem != credentials.ca_pem and other.token != credentials.token


def test_a_bad_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_credentials(tmp_path / "c", server_ip="not-an-ip", mesh_id="m")


def test_kubeconfig_is_private_and_complete(tmp_path: Path, credentials: Credentials) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(
        path, server_url="https://127.0.0.1:6443", credentials=credentials, context="clover-m1", namespace="shop"
    )
    assert (path.stat().st_mode & 0o777) == 0o600
    document = json.loads(path.read_text())
    assert document["current-context"] == "clover-m1"
    assert document["contexts"] == [
        {"name": "clover-m1", "context": {"cluster": "clover-m1", "user": "clover-m1", "namespace": "shop"}}
    ]
    assert document["users"][0]["user"] == {"token": credentials.token}
    # Rewriting replaces the file whole, still private.
    write_kubeconfig(path, server_url="https://127.0.0.1:7443", credentials=credentials, context="clover-m1")
    assert json.loads(path.read_text())["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials", "kubeconfig"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer TOKEN", True),
        ("bearer TOKEN", True),
        ("BEARER TOKEN", True),
        ("Bearer TOKEN trailing", True),  # kube-apiserver ignores what follows the token
        ("Bearer TOKEn", False),
        ("Bearer TOKEN2", False),
        ("Bearer  TOKEN", False),  # an empty token then the real one: kube-apiserver refuses it too
        ("Bearer ", False),
        ("Basic TOKEN", False),
        ("TOKEN", False),
        ("", False),
        (None, False),
        ("Bearer tøken", False),
    ],
)
def test_check_token(header: str | None, expected: bool) -> None:
    assert check_token(header, "TOKEN") is expected


def test_an_empty_expected_token_never_matches() -> None:
    assert not check_token("Bearer ", "")
    assert not check_token(None, "")


def test_alpn_settles_on_http11(server: HttpsServer, credentials: Credentials) -> None:
    client = ssl.create_default_context(cadata=credentials.ca_pem.decode())
    client.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_12_at_least(credentials: Credentials) -> None:
    context = server_ssl_context(credentials)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # clients authenticate with the token, not a certificate


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_trusts_the_server_and_sends_the_token(
    tmp_path: Path, server: HttpsServer, credentials: Credentials
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=credentials, context="clover-m1")
    result = kubectl(kubeconfig, tmp_path, "get", "--raw", "/version")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == VERSION
    assert f"Bearer {credentials.token}" in server.seen_authorization


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("minor", [27, 33])
def test_versioned_kubectl_binaries_too(
    tmp_path: Path, server: HttpsServer, credentials: Credentials, minor: int
) -> None:
    assert KUBECTL is not None
    binary = Path(os.path.realpath(KUBECTL)).parent / f"kubectl.1.{minor}"
    if not binary.exists():
        pytest.skip(f"{binary} is not installed")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=credentials, context="clover-m1")
    result = kubectl(kubeconfig, tmp_path, "get", "--raw", "/version", binary=str(binary))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == VERSION


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_refuses_a_server_another_ca_signed(tmp_path: Path, server: HttpsServer) -> None:
    stranger = make_credentials(tmp_path / "stranger", server_ip="127.0.0.1", mesh_id="m2")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=stranger, context="clover-m2")
    result = kubectl(kubeconfig, tmp_path, "get", "--raw", "/version", "--request-timeout=20s")
    assert result.returncode != 0
    assert "certificate signed by unknown authority" in result.stderr
    assert server.seen_authorization == []  # the token never left the client


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_with_a_wrong_token_is_unauthorized(
    tmp_path: Path, server: HttpsServer, credentials: Credentials
) -> None:
    forged = Credentials(**{**credentials.__dict__, "token": "forged"})
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=forged, context="clover-m1")
    result = kubectl(kubeconfig, tmp_path, "get", "--raw", "/version", binary=None)
    assert result.returncode != 0
    assert server.seen_authorization and server.seen_authorization[-1] == "Bearer forged"


def test_official_client_trusts_the_server(tmp_path: Path, server: HttpsServer, credentials: Credentials) -> None:
    from kubernetes import client, config

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=credentials, context="clover-m1")
    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    try:
        info = client.VersionApi(api_client).get_code()
        assert (info.major, info.minor, info.git_version) == ("1", "33", "v1.33.1")
    finally:
        api_client.close()
    assert f"Bearer {credentials.token}" in server.seen_authorization


def test_official_client_refuses_a_server_another_ca_signed(tmp_path: Path, server: HttpsServer) -> None:
    import urllib3
    from kubernetes import client, config

    stranger = make_credentials(tmp_path / "stranger", server_ip="127.0.0.1", mesh_id="m2")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server_url=server.url, credentials=stranger, context="clover-m2")
    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)  # type: ignore[no-untyped-call]
    api_client.configuration.retries = 0
    api_client.rest_client.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(0)
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
            client.VersionApi(api_client).get_code()
    finally:
        api_client.close()
    assert server.seen_authorization == []
