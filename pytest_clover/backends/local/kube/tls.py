"""The mesh's API credentials: its CA, the API server's serving certificate, a bearer token and kubeconfigs.

Every mesh gets its own CA (``clover-ca-<mesh id>``) whose only use is to sign the serving certificate of the
mesh's API server, so the CA key is never written anywhere: nothing else is ever signed. Keys are EC P-256,
which ``cryptography`` makes in about a millisecond (RSA-2048 takes a noticeable fraction of a second), so
start-up stays fast. Clients authenticate with the bearer token; kubectl and the official client verify the
server against ``certificate-authority-data`` in the kubeconfig :func:`write_kubeconfig` writes.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import json
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Credentials",
    "check_token",
    "kubeconfig",
    "load_credentials",
    "make_credentials",
    "server_ssl_context",
    "write_kubeconfig",
]

CA_FILE = "ca.crt"
CERT_FILE = "apiserver.crt"
KEY_FILE = "apiserver.key"
TOKEN_FILE = "token"

# The names in-cluster clients use for the API server, as kube-apiserver puts them in its own certificate.
SERVICE_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

# A mesh lives for a test session; a year is far beyond that and still tells anyone who finds a stale copy
# that it is not meant to be kept.
VALIDITY = datetime.timedelta(days=365)
# Tolerate a client whose clock is a little behind ours.
CLOCK_SKEW = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Credentials:
    """Where a mesh's credentials are, and the two values the API server and kubeconfigs need in memory."""

    directory: Path
    ca_path: Path
    cert_path: Path
    key_path: Path
    token_path: Path
    ca_pem: bytes
    token: str


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600) from its first byte. Not synced
    to disk: the files live no longer than the mesh, which a crash of the machine ends anyway, and an fsync
    costs the mesh's start-up milliseconds on a busy disk."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp already creates the file 0600; chmod anyway so a permissive umask or platform cannot widen it.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _paths(directory: Path) -> tuple[Path, Path, Path, Path]:
    return directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE, directory / TOKEN_FILE


def make_credentials(directory: Path, *, server_ip: str, mesh_id: str) -> Credentials:
    """Create a CA, a serving certificate for ``server_ip`` (and the in-cluster names of the API server) and a
    bearer token, and write them into ``directory`` (``ca.crt``, ``apiserver.crt``, ``apiserver.key``,
    ``token``, each mode 0600). ``directory`` is created if missing."""
    # Imported here: cryptography's x509 layer costs tens of milliseconds to import, and only start-up needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    address = ipaddress.ip_address(server_ip)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - CLOCK_SKEW, now + VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clover-ca-{mesh_id}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.IPAddress(address)]
    alternative_names += [x509.DNSName(name) for name in SERVICE_DNS_NAMES]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    # The serving chain: the leaf is enough, clients hold the CA.
    cert_pem = server_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = secrets.token_urlsafe(32)

    ca_path, cert_path, key_path, token_path = _paths(directory)
    _write_private(ca_path, ca_pem)
    _write_private(cert_path, cert_pem)
    _write_private(key_path, key_pem)
    _write_private(token_path, token.encode("ascii") + b"\n")
    return Credentials(directory, ca_path, cert_path, key_path, token_path, ca_pem, token)


def load_credentials(directory: Path) -> Credentials:
    """Read back the credentials :func:`make_credentials` wrote into ``directory``."""
    ca_path, cert_path, key_path, token_path = _paths(directory)
    for path in (cert_path, key_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the mesh's credentials in {directory} are incomplete")
    return Credentials(
        directory,
        ca_path,
        cert_path,
        key_path,
        token_path,
        ca_path.read_bytes(),
        token_path.read_text(encoding="ascii").strip(),
    )


def server_ssl_context(credentials: Credentials) -> ssl.SSLContext:
    """The TLS context the API server listens with: TLS 1.2 or newer, and HTTP/1.1 as the only ALPN protocol.

    kubectl offers ``h2`` before ``http/1.1``; aiohttp speaks HTTP/1.1 only, so the server must never agree
    to ``h2``. With ``http/1.1`` as the only protocol the server knows, OpenSSL picks it whatever the client
    prefers (and a client that offers no ALPN at all gets HTTP/1.1 as well)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(credentials.cert_path, credentials.key_path)
    context.set_alpn_protocols(["http/1.1"])
    return context


def kubeconfig(
    *, server_url: str, credentials: Credentials, context: str, namespace: str = "default"
) -> dict[str, Any]:
    """The kubeconfig document for one cluster, user and context, all named ``context``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(credentials.ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": context, "user": {"token": credentials.token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(
    path: Path, *, server_url: str, credentials: Credentials, context: str, namespace: str = "default"
) -> None:
    """Write a kubeconfig for the mesh's API server to ``path`` (mode 0600, atomically: a reader never sees
    half a file). The cluster, the user and the context are all named ``context``, the current context."""
    document = kubeconfig(server_url=server_url, credentials=credentials, context=context, namespace=namespace)
    # JSON is YAML: kubectl and the Python client read it, and it needs no YAML library here.
    _write_private(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def check_token(header_value: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` as a bearer token, compared in constant time.

    As kube-apiserver does, the scheme is case-insensitive, and an empty token never matches."""
    if not header_value or not token:
        return False
    # Split as kube-apiserver does: "<scheme> <token>[ <ignored>]", on single spaces.
    parts = header_value.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return False
    presented = parts[1]
    # compare_digest needs equal types; bytes also cope with a header holding non-ASCII characters.
    return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))
