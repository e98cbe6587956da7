"""``clover k8s check`` and the preflight behind it, with the official client against the embedded Kubernetes API
served in process (TLS on 127.0.0.1, as ``tests/unit/test_kube_server_kubectl.py`` serves it).

The embedded API answers every access review ``allowed`` (its token is cluster-admin), serves Istio's groups and
not ``admissionregistration.k8s.io``. What a real cluster may answer instead — an RBAC denial, no Istio, no review
API, an injector webhook — is put in front of it by an aiohttp middleware of the test (:class:`Cluster`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pytest_clover.backends.k8s.preflight import Finding, format_findings, permissions, preflight
from pytest_clover.backends.k8s.settings import ClusterRef
from pytest_clover.backends.local.kube.hooks import NoHooks
from pytest_clover.backends.local.kube.server import create_app, start, stop
from pytest_clover.backends.local.kube.store import Store
from pytest_clover.backends.local.kube.tls import make_credentials, server_ssl_context, write_kubeconfig
from pytest_clover.cli.main import main
from pytest_clover.errors import ClusterUnreachable

kubernetes = pytest.importorskip("kubernetes", reason="the official client is a test dependency")

TIMEOUT = 30.0
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
WEBHOOKS_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": {}, "code": code}  # fmt: skip


class Cluster:
    """The embedded API server on its own loop in a thread, with a kubeconfig (context ``clover-test``), and what
    the test wants a real cluster to answer differently:

    - ``denied``: (verb, group, resource[/subresource]) an access review answers ``allowed: false`` for;
    - ``istio``: False hides Istio's groups from discovery and answers 404 under them, as with no CRDs;
    - ``reviews``: False answers 404 to access reviews (an API server without them, or a proxy);
    - ``webhooks``: a list of MutatingWebhookConfiguration names served under admissionregistration.k8s.io/v1.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.credentials = make_credentials(directory / "creds", server_ip="127.0.0.1", mesh_id="test")
        self.kubeconfig = directory / "kubeconfig"
        self.store = Store()
        self.denied: set[tuple[str, str, str]] = set()
        self.istio = True
        self.reviews = True
        self.webhooks: list[str] | None = None
        self.review_count = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    @web.middleware
    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == SSAR_PATH and request.method == "POST":
            self.review_count += 1
            if not self.reviews:
                return web.json_response(
                    status_body(404, "NotFound", "the server could not find the requested resource"), status=404
                )
            review = json.loads(await request.read())
            attributes = review["spec"]["resourceAttributes"]
            resource = attributes["resource"] + (
                f"/{attributes['subresource']}" if attributes.get("subresource") else ""
            )
            if (attributes["verb"], attributes.get("group", ""), resource) in self.denied:
                review["status"] = {"allowed": False, "reason": "no RBAC policy matched"}
                return web.json_response(review, status=201)
        if not self.istio and path.startswith(("/apis/networking.istio.io", "/apis/telemetry.istio.io")):
            return web.json_response(
                status_body(404, "NotFound", "the server could not find the requested resource"), status=404
            )
        if self.webhooks is not None and path == WEBHOOKS_PATH:
            items = [{"metadata": {"name": n}, "webhooks": []} for n in self.webhooks]
            return web.json_response({"apiVersion": "admissionregistration.k8s.io/v1",
                                      "kind": "MutatingWebhookConfigurationList", "metadata": {}, "items": items})  # fmt: skip
        if not self.istio and path == "/apis":
            # Uncompressed, to be edited: the server gzips discovery documents for clients that accept it.
            request = request.clone(
                headers={k: v for k, v in request.headers.items() if k.lower() != "accept-encoding"}
            )
        response = await handler(request)
        if not self.istio and path == "/apis" and isinstance(response, web.Response) and response.body:
            groups = json.loads(bytes(response.body))  # type: ignore[arg-type]
            if groups.get("kind") == "APIGroupList":
                groups["groups"] = [g for g in groups["groups"] if not g["name"].endswith(".istio.io")]
                return web.json_response(groups)
        return response

    async def _start(self) -> None:
        app = create_app(store=self.store, hooks=NoHooks(), token=self.credentials.token)
        app.middlewares.append(self.answer)
        self.runner, self.port = await start(app, "127.0.0.1", 0, server_ssl_context(self.credentials))

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=TIMEOUT)
        write_kubeconfig(self.kubeconfig, server_url=f"https://127.0.0.1:{self.port}", credentials=self.credentials,
                         context="clover-test")  # fmt: skip

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(stop(self.runner), self.loop).result(timeout=TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def ref(self) -> ClusterRef:
        return ClusterRef("clover-test", f"https://127.0.0.1:{self.port}")

    def client(self) -> Any:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig), persist_config=False)

    def namespace(self, name: str, *, labels: dict[str, str] | None = None,
                  annotations: dict[str, str] | None = None) -> None:  # fmt: skip
        self.store.create("/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": name, "labels": labels or {},
                                                       "annotations": annotations or {}}})  # fmt: skip

    def pod(self, namespace: str, name: str, *, sidecar: bool, native: bool = False) -> None:
        containers = [{"name": "app", "image": "sdc:1"}]
        proxy = {"name": "istio-proxy", "image": "proxyv2:1.27"}
        spec: dict[str, Any] = {"containers": containers + ([proxy] if sidecar and not native else [])}
        if sidecar and native:
            spec["initContainers"] = [{**proxy, "restartPolicy": "Always"}]
        self.store.create("/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
                          namespace=namespace)  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(cluster: Cluster) -> Iterator[Any]:
    client = cluster.client()
    try:
        yield client
    finally:
        client.close()


def by_what(findings: list[Finding]) -> dict[str, Finding]:
    return {f.what: f for f in findings}


# --------------------------------------------------------------------------- what is asked


def test_permissions_come_from_the_packaged_role_and_cover_the_issue() -> None:
    deploy = permissions("deploy", None)
    asked = {(p.group, p.resource, v, p.namespace) for p in deploy for v in p.verbs}
    for expected in [
        ("", "pods", "delete", ""), ("", "pods/log", "get", ""), ("", "pods/exec", "create", ""),
        ("", "pods/portforward", "get", ""), ("", "pods/eviction", "create", ""), ("", "configmaps", "update", ""),
        ("apps", "deployments/scale", "patch", ""), ("coordination.k8s.io", "leases", "update", ""),
        ("networking.istio.io", "virtualservices", "watch", ""), ("telemetry.istio.io", "telemetries", "create", ""),
        ("rbac.authorization.k8s.io", "roles", "create", ""), ("", "namespaces", "create", None),
        ("", "namespaces", "delete", None), ("apiextensions.k8s.io", "customresourcedefinitions", "list", None),
        ("", "services", "get", "istio-system"),
    ]:  # fmt: skip
        assert expected in asked, expected
    existing = permissions("existing", "shop")
    assert {p.namespace for p in existing} == {"shop", "istio-system"}  # nothing cluster-scoped
    assert not any(p.required for p in existing if p.namespace == "istio-system")
    with pytest.raises(ValueError):
        permissions("existing", None)


# --------------------------------------------------------------------------- deploy mode


def test_deploy_mode_on_the_embedded_api_finds_nothing_missing(cluster: Cluster, api: Any) -> None:
    started = time.monotonic()
    findings = preflight(api, namespace=None, mode="deploy", cluster=cluster.ref)
    elapsed = time.monotonic() - started
    found = by_what(findings)
    assert [f.what for f in findings if f.status == "MISSING"] == []
    assert found["Istio CRDs networking.istio.io: virtualservices, destinationrules, gateways"].ok
    assert (
        "networking.istio.io/v1"
        in found["Istio CRDs networking.istio.io: virtualservices, destinationrules, gateways"].detail
    )
    assert found["Istio CRDs telemetry.istio.io: telemetries"].ok
    # The embedded API does not serve admissionregistration.k8s.io: a warning that says so, not a failure.
    webhook = found["sidecar injection: Istio's injector webhook"]
    assert webhook.status == "warning" and webhook.detail.startswith("could not check (404 NotFound")
    rbac = [f for f in findings if f.what.startswith("RBAC ")]
    assert len(rbac) == len(permissions("deploy", None)) and all(f.ok for f in rbac)
    assert found["RBAC pods in every namespace"].detail == "allowed: get, list, watch, delete"
    assert found["RBAC namespaces cluster-wide"].detail == "allowed: get, list, watch, create, patch, delete"
    assert cluster.review_count == sum(len(p.verbs) for p in permissions("deploy", None))
    assert elapsed < 20, f"{cluster.review_count} access reviews took {elapsed:.1f} s"


def test_a_denied_verb_is_missing_with_the_rbac_fix(cluster: Cluster, api: Any) -> None:
    cluster.denied = {("create", "", "pods/exec"), ("delete", "", "namespaces"), ("get", "", "services")}
    findings = by_what(preflight(api, namespace=None, mode="deploy", cluster=cluster.ref))
    exec_ = findings["RBAC pods/exec in every namespace"]
    assert exec_.status == "MISSING" and exec_.detail == "denied: create (no RBAC policy matched); allowed: get"
    assert "clusterrole.yaml" in exec_.fix and "bindings.yaml" in exec_.fix and exec_.fix.startswith("kubectl apply")
    namespaces = findings["RBAC namespaces cluster-wide"]
    assert namespaces.status == "MISSING" and namespaces.detail.startswith("denied: delete")
    ingress = findings["RBAC services in namespace 'istio-system'"]
    assert ingress.status == "warning" and "ingress.yaml" in ingress.fix  # optional: --clover-ingress-url does without


def test_no_istio_says_istio_is_not_installed(cluster: Cluster, api: Any) -> None:
    cluster.istio = False
    findings = by_what(preflight(api, namespace=None, mode="deploy", cluster=cluster.ref))
    networking = findings["Istio CRDs networking.istio.io: virtualservices, destinationrules, gateways"]
    assert networking.status == "MISSING"
    assert networking.detail == "Istio is not installed in the cluster (no networking.istio.io CRDs)"
    assert "istioctl install" in networking.fix
    assert findings["Istio CRDs telemetry.istio.io: telemetries"].status == "warning"


def test_an_injector_webhook_is_found_by_name(cluster: Cluster, api: Any) -> None:
    cluster.webhooks = ["cert-manager-webhook", "istio-sidecar-injector-canary"]
    webhook = by_what(preflight(api, namespace=None, mode="deploy", cluster=cluster.ref))[
        "sidecar injection: Istio's injector webhook"
    ]
    assert webhook.ok and "istio-sidecar-injector-canary" in webhook.detail
    cluster.webhooks = ["cert-manager-webhook"]
    webhook = by_what(preflight(api, namespace=None, mode="deploy", cluster=cluster.ref))[
        "sidecar injection: Istio's injector webhook"
    ]
    assert webhook.status == "MISSING" and "pods get no sidecar" in webhook.detail


def test_without_access_reviews_rbac_could_not_be_checked(cluster: Cluster, api: Any) -> None:
    cluster.reviews = False
    findings = preflight(api, namespace=None, mode="deploy", cluster=cluster.ref)
    rbac = [f for f in findings if f.what.startswith("RBAC")]
    assert len(rbac) == 1 and rbac[0].status == "warning" and "could not check (404" in rbac[0].detail
    assert cluster.review_count == 1  # gave up after the first, rather than a hundred 404s


# --------------------------------------------------------------------------- existing mode


def test_existing_mode_checks_the_namespace_its_opt_in_and_its_sidecars(cluster: Cluster, api: Any) -> None:
    cluster.namespace("shop", labels={"istio-injection": "enabled"}, annotations={"clover.opnfv.org/chaos": "enabled"})
    cluster.pod("shop", "web-1", sidecar=True)
    cluster.pod("shop", "web-2", sidecar=True, native=True)
    findings = preflight(api, namespace="shop", mode="existing", cluster=cluster.ref)
    found = by_what(findings)
    assert found["namespace 'shop': opt-in"].ok
    injection = found["namespace 'shop': sidecar injection"]
    assert (
        injection.ok and injection.detail == "labelled istio-injection=enabled; 2 of 2 pods have an istio-proxy sidecar"
    )
    assert found["RBAC pods in namespace 'shop'"].ok
    assert "RBAC namespaces cluster-wide" not in found  # deploy mode's only
    assert [f.what for f in findings if f.status == "MISSING"] == []


def test_existing_mode_refusals(cluster: Cluster, api: Any) -> None:
    cluster.namespace("shop")
    cluster.pod("shop", "web-1", sidecar=False)
    found = by_what(preflight(api, namespace="shop", mode="existing", cluster=cluster.ref))
    opt_in = found["namespace 'shop': opt-in"]
    assert opt_in.status == "MISSING" and opt_in.fix == "kubectl annotate namespace shop clover.opnfv.org/chaos=enabled"
    injection = found["namespace 'shop': sidecar injection"]
    assert injection.status == "MISSING"
    assert injection.detail == "no istio-injection/istio.io/rev label; 0 of 1 pods have an istio-proxy sidecar"
    assert "kubectl label namespace shop istio-injection=enabled" in injection.fix

    protected = by_what(preflight(api, namespace="kube-system", mode="existing", cluster=cluster.ref))
    assert protected["namespace 'kube-system': opt-in"].status == "MISSING"
    assert "is protected" in protected["namespace 'kube-system': opt-in"].detail

    gone = by_what(preflight(api, namespace="nowhere", mode="existing", cluster=cluster.ref))
    assert gone["namespace 'nowhere'"].status == "MISSING" and gone["namespace 'nowhere'"].detail == "does not exist"


def test_a_revision_label_counts_and_unlabelled_sidecars_count(cluster: Cluster, api: Any) -> None:
    cluster.namespace("rev", labels={"istio.io/rev": "canary"}, annotations={"clover.opnfv.org/chaos": "enabled"})
    cluster.namespace("manual", annotations={"clover.opnfv.org/chaos": "enabled"})
    cluster.pod("manual", "web-1", sidecar=True)
    rev = by_what(preflight(api, namespace="rev", mode="existing", cluster=cluster.ref))
    assert (
        rev["namespace 'rev': sidecar injection"].ok
        and "istio.io/rev=canary" in rev["namespace 'rev': sidecar injection"].detail
    )
    manual = by_what(preflight(api, namespace="manual", mode="existing", cluster=cluster.ref))
    assert manual["namespace 'manual': sidecar injection"].ok
    assert manual["namespace 'manual': sidecar injection"].detail.startswith("no injection label, but 1 of 1 pods")


# --------------------------------------------------------------------------- unreachable, the table, the CLI


def test_an_unreachable_cluster_raises_naming_context_and_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = kubernetes.client.Configuration()
    configuration.host = f"https://127.0.0.1:{port}"
    configuration.retries = 0
    client = kubernetes.client.ApiClient(configuration)
    try:
        with pytest.raises(ClusterUnreachable) as raised:
            preflight(client, namespace=None, mode="deploy", cluster=ClusterRef("kind-x", configuration.host))
    finally:
        client.close()
    assert f"the API server https://127.0.0.1:{port} of context 'kind-x' does not answer" in str(raised.value)


def test_format_findings_is_a_table_with_fixes_and_a_summary() -> None:
    text = format_findings([
        Finding(True, "RBAC pods in namespace 'shop'", "allowed: get"),
        Finding(False, "RBAC pods/exec in namespace 'shop'", "denied: create", "kubectl apply -n shop -f role.yaml"),
        Finding(False, "sidecar injection: webhook", "could not check (404)", "", required=False),
    ])  # fmt: skip
    lines = text.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert lines[1].startswith("ok ") and lines[2].startswith("MISSING ") and lines[4].startswith("warning ")
    assert lines[3].strip() == "fix: kubectl apply -n shop -f role.yaml"
    assert lines[1].index("RBAC") == lines[2].index("RBAC") == lines[4].index("sidecar")  # aligned columns
    assert lines[-1] == "3 checks: 1 ok, 1 missing, 1 warnings: a run will fail here until the MISSING rows are fixed"


def test_clover_k8s_check_exit_codes(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "check", "--kubeconfig", str(cluster.kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert f"clover k8s check: context 'clover-test' (https://127.0.0.1:{cluster.port}), deploy mode" in out
    assert "ok       context 'clover-test' on the allow-list" in out
    assert "0 missing" in out

    cluster.denied = {("patch", "networking.istio.io", "virtualservices")}
    assert main(["k8s", "check", "--kubeconfig", str(cluster.kubeconfig), "--allowed-contexts", "kind-*"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  RBAC virtualservices.networking.istio.io" in out
    assert "warning  context 'clover-test' on the allow-list" in out and "clover_allowed_contexts" in out

    cluster.namespace("shop", labels={"istio-injection": "enabled"}, annotations={"clover.opnfv.org/chaos": "enabled"})
    cluster.denied = set()
    assert main(["k8s", "check", "--kubeconfig", str(cluster.kubeconfig), "--namespace", "shop"]) == 0
    assert "existing mode in namespace 'shop'" in capsys.readouterr().out


def test_clover_k8s_check_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "check", "--kubeconfig", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("clover k8s: no kubeconfig:") and str(tmp_path / "missing") in err
