# The client 37 types every model field Optional and leaves ApiClient.close untyped.
# mypy: disable-error-code="union-attr,index,no-untyped-call"
"""The dead-man switch against the embedded Kubernetes API server, in process over TLS on 127.0.0.1.

The reaper (:mod:`pytest_clover.vnf.reaper`) is driven one poll at a time with a clock the test moves: lease
expiry by an unchanged ``renewTime``, exact reverts, 409 retries, Events, entries that fail and are retried. Its
process is run once (``/healthz``, SIGTERM). The test process's side (:mod:`pytest_clover.backends.k8s.deadman`)
talks to the same server through the official client; a fake kubelet runs the reaper of its Deployment in a
thread.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pytest_clover.backends.local.kube.hooks import NoHooks
from pytest_clover.backends.local.kube.server import create_app, start, stop
from pytest_clover.backends.local.kube.store import Store
from pytest_clover.backends.local.kube.tls import Credentials, make_credentials, server_ssl_context
from pytest_clover.errors import AccessDenied, ClusterUnreachable, ObjectConflict, ReadinessTimeout
from pytest_clover.vnf.reaper import (
    EVENT_REASON,
    LEASE_NAME,
    LEDGER_NAME,
    ApiFailure,
    EntryError,
    InCluster,
    KubeApi,
    Reaper,
    ReaperConfigError,
    entry_key,
    parse_entry,
)
from tests.helpers import wait_for

kubernetes = pytest.importorskip("kubernetes", reason="the official client is a test dependency")
from kubernetes import client as kclient  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from pytest_clover.backends.k8s.deadman import (  # noqa: E402
    REAPER_NAME,
    DeadManSwitch,
    _translate,
    object_entry,
    replicas_entry,
)
from pytest_clover.backends.k8s.settings import MANAGED_BY_LABEL, RUN_ID_LABEL  # noqa: E402

TIMEOUT = 30.0
VS_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{{ns}}/leases/{LEASE_NAME}"
LEDGER_PATH = f"/api/v1/namespaces/{{ns}}/configmaps/{LEDGER_NAME}"
_names = itertools.count(1)


# ------------------------------------------------------------------------------------------ the server


class ApiServer:
    """The embedded API server (store only, no mesh behind it) on its own event loop in a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.credentials: Credentials = make_credentials(directory / "creds", server_ip="127.0.0.1", mesh_id="t")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> None:
        async def serve() -> tuple[web.AppRunner, int]:
            app = create_app(store=Store(), hooks=NoHooks(), token=self.credentials.token)
            return await start(app, "127.0.0.1", 0, server_ssl_context(self.credentials))

        self.thread.start()
        self.runner, self.port = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(TIMEOUT)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(stop(self.runner), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def service_account(self, namespace: str) -> Path:
        """A service-account folder (token, ca.crt, namespace) for a pod in ``namespace``."""
        folder = self.directory / f"sa-{namespace}"
        folder.mkdir(exist_ok=True)
        (folder / "token").write_text(self.credentials.token + "\n")
        (folder / "ca.crt").write_bytes(self.credentials.ca_pem)
        (folder / "namespace").write_text(namespace)
        return folder

    def in_cluster(self, namespace: str) -> InCluster:
        folder = self.service_account(namespace)
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
               "CLOVER_SERVICEACCOUNT_DIR": str(folder)}  # fmt: skip
        return InCluster.from_environment(env)

    def official_client(self, token: str | None = None) -> kclient.ApiClient:
        configuration = kclient.Configuration()
        configuration.host = f"https://127.0.0.1:{self.port}"
        configuration.ssl_ca_cert = str(self.credentials.ca_path)
        configuration.api_key = {"BearerToken": token or self.credentials.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return kclient.ApiClient(configuration)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("reaper-api"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Cluster:
    """One test's namespace on the server, and a JSON client (the reaper's own) to arrange and inspect it."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.namespace = f"reaper-{next(_names)}"
        self.config = server.in_cluster(self.namespace)
        self.kube = KubeApi(self.config)
        self.clients = [self.kube]
        self.kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": self.namespace}})

    def path(self, template: str) -> str:
        return template.format(ns=self.namespace)

    def create_lease(self, duration: int = 10, holder: str | None = "pytest:1", renew: str = "") -> None:
        spec: dict[str, Any] = {"leaseDurationSeconds": duration, "renewTime": renew or micro(time.time())}
        if holder is not None:
            spec["holderIdentity"] = holder
        body = {"metadata": {"name": LEASE_NAME}, "spec": spec}
        self.kube.request("POST", self.path("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"), body)

    def renew(self, renew_time: str) -> None:
        self.kube.request("PATCH", self.path(LEASE_PATH), {"spec": {"renewTime": renew_time}},
                          content_type="application/merge-patch+json")  # fmt: skip

    def create_ledger(self, **entries: dict[str, Any] | str) -> None:
        data = {key.replace("__", "."): v if isinstance(v, str) else json.dumps(v) for key, v in entries.items()}
        body = {"metadata": {"name": LEDGER_NAME}, "data": data}
        self.kube.request("POST", self.path("/api/v1/namespaces/{ns}/configmaps"), body)

    def ledger(self) -> dict[str, str]:
        return dict(self.kube.request("GET", self.path(LEDGER_PATH)).get("data") or {})

    def add_to_ledger(self, key: str, value: dict[str, Any]) -> None:
        self.kube.request("PATCH", self.path(LEDGER_PATH), {"data": {key: json.dumps(value)}},
                          content_type="application/merge-patch+json")  # fmt: skip

    def create_vs(self, name: str, **extra_meta: Any) -> dict[str, Any]:
        return self.kube.request("POST", self.path(VS_PATH), virtual_service(name, **extra_meta))

    def vs(self, name: str) -> dict[str, Any]:
        return self.kube.request("GET", self.path(VS_PATH) + f"/{name}")

    def change_vs(self, name: str, mutate: Any) -> dict[str, Any]:
        current = self.vs(name)
        mutate(current)
        return self.kube.request("PUT", self.path(VS_PATH) + f"/{name}", current)

    def events(self) -> list[dict[str, Any]]:
        listed = self.kube.request("GET", self.path("/api/v1/namespaces/{ns}/events"))
        return [e for e in listed.get("items") or [] if e.get("reason") == EVENT_REASON]

    def reaper(self, clock: Any = time.monotonic, api: KubeApi | None = None) -> tuple[Reaper, list[str]]:
        lines: list[str] = []
        used = api or KubeApi(self.config)
        self.clients.append(used)
        return Reaper(used, self.namespace, clock=clock, log=lines.append), lines

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def cluster(server: ApiServer) -> Iterator[Cluster]:
    made = Cluster(server)
    try:
        yield made
    finally:
        made.close()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def micro(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def virtual_service(name: str, **extra_meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"owner": "team-a"}, **extra_meta},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": "v1"}}]}]},
    }


def add_fault(vs: dict[str, Any]) -> None:
    vs["spec"]["http"][0]["fault"] = {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}
    vs["metadata"]["labels"]["clover"] = "fault"
    vs["metadata"]["annotations"] = {"clover.opnfv.org/fault": "abort"}


def content(obj: dict[str, Any]) -> tuple[Any, Any, Any]:
    metadata = obj["metadata"]
    return obj["spec"], metadata.get("labels") or {}, metadata.get("annotations") or {}


def vs_entry(cluster: Cluster, name: str, original: dict[str, Any] | None) -> dict[str, Any]:
    return object_entry(original, "networking.istio.io/v1", "VirtualService", cluster.namespace, name,
                        "virtualservices")  # fmt: skip


# ------------------------------------------------------------------------------------ entries and keys


def test_entry_keys_are_configmap_keys_and_never_collide() -> None:
    assert entry_key("VirtualService", "reviews") == "virtualservice.reviews"
    assert entry_key("Deployment", "a:b/c") == "deployment.a_b_c"
    long_a, long_b = entry_key("VirtualService", "x" * 300), entry_key("VirtualService", "x" * 299 + "y")
    assert len(long_a) <= 253 and len(long_b) <= 253 and long_a != long_b
    assert all(c.isalnum() or c in "-._" for c in long_a)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{not json", "not JSON"),
        ({"type": "object", "namespace": "ns", "name": "n", "apiVersion": "v1", "kind": "ConfigMap"}, "plural"),
        ({"type": "replicas", "namespace": "ns", "name": "d", "replicas": -1}, "replicas"),
        ({"type": "replicas", "namespace": "ns", "name": "d", "replicas": True}, "replicas"),
        ({"type": "restart", "namespace": "ns", "name": "d"}, "type"),
        ({"schema": 2, "type": "replicas", "namespace": "ns", "name": "d", "replicas": 1}, "schema 2"),
        ({"type": "replicas", "namespace": "../x", "name": "d", "replicas": 1}, "namespace"),
        ({"type": "object", "namespace": "ns", "name": "n", "apiVersion": "networking.istio.io/v1",
          "kind": "VirtualService", "plural": "virtualservices", "original": {"metadata": {"name": "other"}}},
         "original.metadata.name"),
    ],
)  # fmt: skip
def test_malformed_entries_are_refused_naming_the_field(entry: Any, message: str) -> None:
    with pytest.raises(EntryError, match=message):
        parse_entry(entry)


def test_object_entry_keeps_only_what_a_revert_needs() -> None:
    before = virtual_service("reviews")
    before["metadata"].update(resourceVersion="42", uid="u", managedFields=[{"manager": "kubectl"}], namespace="ns")
    before["status"] = {"validationMessages": []}
    entry = object_entry(before, "networking.istio.io/v1", "VirtualService", "ns", "reviews", "virtualservices")
    assert entry["original"]["metadata"] == {"name": "reviews", "namespace": "ns", "labels": {"app": "reviews"},
                                             "annotations": {"owner": "team-a"}}  # fmt: skip
    assert entry["original"]["spec"] == before["spec"] and "status" not in entry["original"]
    assert (
        object_entry(None, "networking.istio.io/v1", "VirtualService", "ns", "new", "virtualservices")["original"]
        is None
    )
    assert replicas_entry("ns", "reviews-v1", 3) == {"schema": 1, "type": "replicas", "namespace": "ns",
                                                     "name": "reviews-v1", "replicas": 3}  # fmt: skip
    with pytest.raises(ValueError, match="replicas"):
        replicas_entry("ns", "reviews-v1", -2)


def test_the_reaper_imports_only_what_the_vnf_image_ships() -> None:
    # The image holds pytest_clover/__init__.py, pytest_clover/vnf/ and the standard library (plus the VNF's
    # aiohttp, which the reaper must not need: it has to work with nothing but Python).
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pytest_clover.vnf.reaper\n"
        "ours = sorted(m for m in sys.modules if m.startswith('pytest_clover'))\n"
        "third = sorted(m.split('.')[0] for m in set(sys.modules) - before\n"
        "               if m.split('.')[0] not in sys.stdlib_module_names and not m.startswith('pytest_clover'))\n"
        "print(ours, third)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['pytest_clover', 'pytest_clover.vnf', 'pytest_clover.vnf.reaper'] []"


def test_in_cluster_configuration_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ReaperConfigError, match="KUBERNETES_SERVICE_HOST"):
        InCluster.from_environment({})
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
           "CLOVER_SERVICEACCOUNT_DIR": str(tmp_path)}  # fmt: skip
    with pytest.raises(ReaperConfigError, match="token is missing"):
        InCluster.from_environment(env)
    for name, text in (("token", "t"), ("ca.crt", "pem"), ("namespace", "shop\n")):
        (tmp_path / name).write_text(text)
    config = InCluster.from_environment(env)
    assert (config.host, config.port, config.namespace, config.token_path) == (
        "10.0.0.1", 443, "shop", tmp_path / "token"
    )  # fmt: skip
    with pytest.raises(ReaperConfigError, match="not a port"):
        InCluster.from_environment({**env, "KUBERNETES_SERVICE_PORT": "https"})


# ------------------------------------------------------------------------------------------- the lease


def test_the_lease_expires_only_when_its_record_stops_changing(cluster: Cluster) -> None:
    # renewTime is set far in the past: only its changes count, never its value against the reaper's clock.
    cluster.create_lease(duration=10, renew="2001-01-01T00:00:00.000000Z")
    cluster.create_ledger()
    clock = Clock()
    reaper, _ = cluster.reaper(clock)
    ready_before = reaper.ready
    assert not reaper.poll_once().expired
    assert (ready_before, reaper.ready) == (False, True)
    clock.now += 9.9
    assert not reaper.poll_once().expired
    cluster.renew("2001-01-01T00:00:05.000000Z")
    clock.now += 0.1  # 10 s after the first sight, but the record just changed
    assert not reaper.poll_once().expired
    clock.now += 9.9
    assert not reaper.poll_once().expired
    clock.now += 0.1
    assert reaper.poll_once().expired


def test_a_released_lease_expires_at_once_and_a_missing_one_after_its_duration(cluster: Cluster) -> None:
    cluster.create_ledger()
    clock = Clock()
    reaper, _ = cluster.reaper(clock)
    assert not reaper.poll_once().expired and not reaper.ready  # missing: not yet expired, not ready either
    clock.now += 15
    assert reaper.poll_once().expired  # the default duration when no Lease ever said otherwise

    cluster2 = Cluster(cluster.server)
    try:
        cluster2.create_lease(duration=30, holder=None)
        cluster2.create_ledger()
        released, _ = cluster2.reaper(Clock())
        assert released.poll_once().expired
    finally:
        cluster2.close()


# ------------------------------------------------------------------------------------------ reverting


def test_an_expired_lease_puts_a_virtual_service_back_exactly_and_records_an_event(cluster: Cluster) -> None:
    original = cluster.create_vs("reviews")
    cluster.change_vs("reviews", add_fault)
    cluster.create_lease(duration=5)
    key = entry_key("VirtualService", "reviews")
    cluster.create_ledger(**{key.replace(".", "__"): vs_entry(cluster, "reviews", original)})
    clock = Clock()
    reaper, lines = cluster.reaper(clock)
    first = reaper.poll_once()
    assert not first.expired and first.reverted == []
    assert content(cluster.vs("reviews")) != content(original)  # the fault is in force while the lease lives

    clock.now += 5
    result = reaper.poll_once()
    assert result.expired and result.reverted == [key] and result.failed == {}
    assert content(cluster.vs("reviews")) == content(original)
    assert cluster.ledger() == {}
    (event,) = cluster.events()
    assert event["type"] == "Warning"
    assert event["involvedObject"] == {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                       "namespace": cluster.namespace, "name": "reviews"}  # fmt: skip
    assert "put VirtualService" in event["message"] and "not renewed" in event["message"]
    assert any("reverted virtualservice.reviews" in line for line in lines), lines
    # Nothing left: later polls do nothing more.
    clock.now += 5
    assert reaper.poll_once().reverted == [] and len(cluster.events()) == 1


def test_created_objects_are_deleted_deleted_ones_recreated_and_replicas_restored(cluster: Cluster) -> None:
    created_by_run = cluster.create_vs("canary")
    original = cluster.create_vs("ratings")
    cluster.kube.request("DELETE", cluster.path(VS_PATH) + "/ratings")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "web:1"}]}}},
    }  # fmt: skip
    scale_path = cluster.path("/apis/apps/v1/namespaces/{ns}/deployments") + "/web/scale"
    cluster.kube.request("POST", cluster.path("/apis/apps/v1/namespaces/{ns}/deployments"), deployment)
    cluster.kube.request("PATCH", scale_path, {"spec": {"replicas": 1}}, content_type="application/merge-patch+json")
    assert created_by_run["metadata"]["name"] == "canary"
    cluster.create_lease(duration=1)
    cluster.create_ledger(
        virtualservice__canary=vs_entry(cluster, "canary", None),
        virtualservice__ratings=vs_entry(cluster, "ratings", original),
        **{"scale-web": replicas_entry(cluster.namespace, "web", 3)},
    )
    clock = Clock()
    reaper, _ = cluster.reaper(clock)
    reaper.poll_once()
    clock.now += 1
    result = reaper.poll_once()
    assert sorted(result.reverted) == ["scale-web", "virtualservice.canary", "virtualservice.ratings"], result
    with pytest.raises(ApiFailure) as gone:
        cluster.vs("canary")
    assert gone.value.status == 404
    assert content(cluster.vs("ratings")) == content(original)
    assert cluster.kube.request("GET", scale_path)["spec"]["replicas"] == 3
    kinds = sorted(e["involvedObject"]["kind"] for e in cluster.events())
    assert kinds == ["Deployment", "VirtualService", "VirtualService"]
    assert cluster.ledger() == {}


class Meddler(KubeApi):
    """The reaper's client, with someone else writing just before the reaper's first PUT to ``path``."""

    def __init__(self, config: InCluster, path: str, meddle: Any) -> None:
        super().__init__(config)
        self.path = path
        self.meddle = meddle
        self.puts: list[str] = []

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json") -> Any:
        if method == "PUT" and path == self.path and path not in self.puts:
            self.meddle()
        if method == "PUT":
            self.puts.append(path)
        return super().request(method, path, body, content_type=content_type)


def test_a_409_is_retried_against_the_new_version(cluster: Cluster) -> None:
    original = cluster.create_vs("reviews")
    cluster.change_vs("reviews", add_fault)
    cluster.create_lease(duration=1)
    cluster.create_ledger(virtualservice__reviews=vs_entry(cluster, "reviews", original))
    other = replicas_entry(cluster.namespace, "later", 2)
    vs_path = cluster.path(VS_PATH) + "/reviews"

    def someone_edits_the_vs() -> None:
        cluster.change_vs("reviews", lambda vs: vs["metadata"]["annotations"].update(meddler="yes"))

    api = Meddler(cluster.config, vs_path, someone_edits_the_vs)
    clock = Clock()
    reaper, _ = cluster.reaper(clock, api)
    reaper.poll_once()
    clock.now += 1
    result = reaper.poll_once()
    assert result.reverted == ["virtualservice.reviews"]
    assert api.puts.count(vs_path) == 2  # the first PUT met a 409, the second went on the new version
    assert content(cluster.vs("reviews")) == content(original)  # exactly: their annotation is not the original's
    api.close()

    # A 409 on the ledger: someone added an entry meanwhile; only the reverted key goes.
    cluster.change_vs("reviews", add_fault)
    cluster.add_to_ledger("virtualservice.reviews", vs_entry(cluster, "reviews", original))
    api = Meddler(cluster.config, cluster.path(LEDGER_PATH), lambda: cluster.add_to_ledger("scale-later", other))
    reaper2, _ = cluster.reaper(clock, api)
    reaper2.poll_once()
    clock.now += 1
    result = reaper2.poll_once()
    assert result.reverted == ["virtualservice.reviews"]
    assert api.puts.count(cluster.path(LEDGER_PATH)) == 2
    assert list(cluster.ledger()) == ["scale-later"]
    api.close()

    # A 409 because the very key got a new value (a new fault on the same object): that entry is not deleted.
    cluster.add_to_ledger("virtualservice.reviews", vs_entry(cluster, "reviews", original))
    newer = vs_entry(cluster, "reviews", original) | {"recordedAt": "2030-01-01T00:00:00.000000Z"}
    api = Meddler(cluster.config, cluster.path(LEDGER_PATH),
                  lambda: cluster.add_to_ledger("virtualservice.reviews", newer))  # fmt: skip
    reaper3, _ = cluster.reaper(clock, api)
    reaper3.poll_once()
    clock.now += 1
    reaper3.poll_once()
    assert json.loads(cluster.ledger()["virtualservice.reviews"]) == newer
    api.close()


class Flaky(KubeApi):
    """The reaper's client, failing the first ``times`` requests whose path ends with ``suffix``."""

    def __init__(self, config: InCluster, suffix: str, times: int = 1) -> None:
        super().__init__(config)
        self.suffix = suffix
        self.times = times

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json") -> Any:
        if path.endswith(self.suffix) and self.times > 0:
            self.times -= 1
            raise ApiFailure(503, "ServiceUnavailable", "the test says no")
        return super().request(method, path, body, content_type=content_type)


def test_a_failing_entry_stays_for_the_next_poll_and_the_others_go_on(cluster: Cluster) -> None:
    first = cluster.create_vs("first")
    second = cluster.create_vs("second")
    for name in ("first", "second"):
        cluster.change_vs(name, add_fault)
    cluster.create_lease(duration=1)
    cluster.create_ledger(
        virtualservice__first=vs_entry(cluster, "first", first),
        virtualservice__second=vs_entry(cluster, "second", second),
        garbage="{this is not an entry",
    )
    api = Flaky(cluster.config, "/virtualservices/first")
    clock = Clock()
    reaper, lines = cluster.reaper(clock, api)
    reaper.poll_once()
    clock.now += 1
    result = reaper.poll_once()
    assert result.reverted == ["virtualservice.second"]
    assert set(result.failed) == {"garbage", "virtualservice.first"}
    assert content(cluster.vs("second")) == content(second)
    assert content(cluster.vs("first")) != content(first)
    clock.now += 1
    result = reaper.poll_once()
    assert result.reverted == ["virtualservice.first"] and set(result.failed) == {"garbage"}
    assert content(cluster.vs("first")) == content(first)
    # A bad entry is never deleted (a newer writer may understand it) and logged once, not every second.
    assert list(cluster.ledger()) == ["garbage"]
    assert sum("garbage" in line for line in lines) == 1
    api.close()


def test_a_lease_renewed_after_expiry_means_watching_again(cluster: Cluster) -> None:
    original = cluster.create_vs("reviews")
    cluster.create_lease(duration=2)
    cluster.create_ledger()
    clock = Clock()
    reaper, lines = cluster.reaper(clock)
    reaper.poll_once()
    clock.now += 2
    assert reaper.poll_once().expired
    cluster.renew(micro(time.time() + 1))  # pytest was only suspended: it renews again...
    clock.now += 0.5
    assert not reaper.poll_once().expired
    assert any("watching again" in line for line in lines)
    # ...and makes a new fault, which the reaper leaves alone while the lease lives.
    cluster.change_vs("reviews", add_fault)
    cluster.add_to_ledger("virtualservice.reviews", vs_entry(cluster, "reviews", original))
    clock.now += 1
    assert reaper.poll_once().reverted == []
    assert "virtualservice.reviews" in cluster.ledger()
    clock.now += 1
    assert reaper.poll_once().reverted == ["virtualservice.reviews"]


def test_unreachable_api_server_is_an_error_of_the_poll_not_a_crash(cluster: Cluster, tmp_path: Path) -> None:
    config = InCluster("127.0.0.1", 9, cluster.config.token_path, cluster.config.ca_path, cluster.namespace)
    lines: list[str] = []
    reaper = Reaper(KubeApi(config, timeout=2), cluster.namespace, clock=Clock(), log=lines.append)
    result = reaper.poll_once()
    again = reaper.poll_once()
    reaper.api.close()
    assert "cannot read the Lease" in result.error and again.error == result.error and not reaper.ready
    assert len(lines) == 1, lines  # the same trouble every second is logged once


# ------------------------------------------------------------------------------------------ the process


def _healthz(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_process_serves_healthz_reverts_and_exits_0_on_sigterm(cluster: Cluster) -> None:
    original = cluster.create_vs("reviews")
    cluster.change_vs("reviews", add_fault)
    port = _free_port()
    env = {**os.environ, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.server.port),
           "CLOVER_SERVICEACCOUNT_DIR": str(cluster.config.token_path.parent), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_clover.vnf.reaper", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # No Lease and no ledger yet: not ready.
        assert wait_for(lambda: _healthz(port), TIMEOUT, what="/healthz to answer") == 503
        cluster.create_ledger(virtualservice__reviews=vs_entry(cluster, "reviews", original))
        cluster.create_lease(duration=1)
        wait_for(lambda: _healthz(port) == 200, TIMEOUT, what="/healthz 200 once the Lease and ledger are read")
        # The Lease is never renewed: the process reverts the fault on its own.
        wait_for(lambda: content(cluster.vs("reviews")) == content(original), TIMEOUT, what="the revert")
        wait_for(lambda: cluster.ledger() == {}, TIMEOUT, what="the ledger to empty")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    assert "reverted virtualservice.reviews" in output and "stopped" in output


def test_the_process_exits_2_without_an_in_cluster_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    done = subprocess.run([sys.executable, "-m", "pytest_clover.vnf.reaper", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 2 and "KUBERNETES_SERVICE_HOST" in done.stdout


# ------------------------------------------------------------------------------------------ the switch


class FakeKubelet:
    """Runs the reaper of the switch's Deployment in a thread (its real logic, polling every 0.1 s) and marks
    the Deployment ready once the reaper is: what a kubelet and the deployment controller do on a cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.reaper: Reaper | None = None
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _deployment(self, kube: KubeApi) -> dict[str, Any] | None:
        try:
            return kube.request("GET", self.cluster.path("/apis/apps/v1/namespaces/{ns}/deployments")
                                + f"/{REAPER_NAME}")  # fmt: skip
        except ApiFailure:
            return None

    def _run(self) -> None:
        kube = KubeApi(self.cluster.config)
        try:
            while not self.stop.wait(0.1):
                deployment = self._deployment(kube)
                if deployment is None:
                    continue
                if self.reaper is None:
                    self.reaper = Reaper(KubeApi(self.cluster.config), self.cluster.namespace, log=self.lines.append)
                self.reaper.poll_once()
                status = deployment.get("status") or {}
                if self.reaper.ready and not status.get("readyReplicas"):
                    deployment["status"] = {"observedGeneration": deployment["metadata"].get("generation", 1),
                                            "replicas": 1, "readyReplicas": 1, "availableReplicas": 1}  # fmt: skip
                    kube.request("PUT", self.cluster.path("/apis/apps/v1/namespaces/{ns}/deployments")
                                 + f"/{REAPER_NAME}/status", deployment)  # fmt: skip
        finally:
            kube.close()
            if self.reaper is not None:
                self.reaper.api.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)


@pytest.fixture
def official(server: ApiServer) -> Iterator[kclient.ApiClient]:
    api = server.official_client()
    try:
        yield api
    finally:
        api.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
def kubelet(cluster: Cluster) -> Iterator[FakeKubelet]:
    running = FakeKubelet(cluster)
    try:
        yield running
    finally:
        running.close()


def _names_of(cluster: Cluster, path: str) -> set[str]:
    listed = cluster.kube.request("GET", cluster.path(path))
    return {item["metadata"]["name"] for item in listed.get("items") or []}


OURS = {
    "/api/v1/namespaces/{ns}/serviceaccounts": REAPER_NAME,
    "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles": REAPER_NAME,
    "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings": REAPER_NAME,
    "/apis/apps/v1/namespaces/{ns}/deployments": REAPER_NAME,
    "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases": LEASE_NAME,
    "/api/v1/namespaces/{ns}/configmaps": LEDGER_NAME,
}


def test_the_switch_starts_the_reaper_renews_and_deletes_exactly_what_it_created(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    cluster.create_vs("theirs")  # an object of the namespace's owner: never touched
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-1", image="reaper:1", lease_seconds=1.5,
                           holder="laptop:42")  # fmt: skip
    switch.start(timeout=TIMEOUT)
    try:
        for path, name in OURS.items():
            assert name in _names_of(cluster, path), path
        deployment = cluster.kube.request("GET", cluster.path("/apis/apps/v1/namespaces/{ns}/deployments")
                                          + f"/{REAPER_NAME}")  # fmt: skip
        assert deployment["metadata"]["labels"][MANAGED_BY_LABEL] == "pytest-clover"
        assert deployment["metadata"]["labels"][RUN_ID_LABEL] == "run-1"
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
        assert template["spec"]["serviceAccountName"] == REAPER_NAME
        managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
        assert "pytest-clover" in managers
        lease = cluster.kube.request("GET", cluster.path(LEASE_PATH))
        assert lease["spec"]["holderIdentity"] == "laptop:42" and lease["spec"]["leaseDurationSeconds"] == 2
        first = lease["spec"]["renewTime"]
        wait_for(lambda: cluster.kube.request("GET", cluster.path(LEASE_PATH))["spec"]["renewTime"] != first,
                 TIMEOUT, what="a renewal")  # fmt: skip
        assert switch.renewals >= 1 and not switch.tripped
        assert kubelet.reaper is not None and kubelet.reaper.ready and not kubelet.reaper.expired
    finally:
        assert switch.stop(delete=True) == []
    for path in OURS:
        assert not (_names_of(cluster, path) & {REAPER_NAME, LEASE_NAME, LEDGER_NAME}), path
    assert "theirs" in _names_of(cluster, VS_PATH)


def test_a_dead_run_is_reverted_by_its_reaper(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    original = cluster.create_vs("reviews")
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-2", image="reaper:1", lease_seconds=1.0)
    switch.start(timeout=TIMEOUT)
    key = entry_key("VirtualService", "reviews")
    switch.remember(key, vs_entry(cluster, "reviews", original))
    cluster.change_vs("reviews", add_fault)
    assert set(switch.entries()) == {key}
    wait_for(lambda: switch.renewals >= 2, TIMEOUT, what="two renewals")
    assert content(cluster.vs("reviews")) != content(original) and cluster.ledger()
    started = time.monotonic()
    switch.abandon()  # what a SIGKILL leaves: nothing deleted, no more renewals
    wait_for(lambda: content(cluster.vs("reviews")) == content(original), TIMEOUT, what="the reaper's revert")
    took = time.monotonic() - started
    assert took < 1.0 + 5.0, took
    wait_for(lambda: cluster.ledger() == {}, TIMEOUT, what="the ledger to empty")
    assert [e["involvedObject"]["name"] for e in cluster.events()] == ["reviews"]
    assert switch.stop(delete=True) == []


def test_remember_keeps_the_first_original_and_forget_removes(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-3", image="reaper:1", lease_seconds=30)
    switch.start(timeout=TIMEOUT)
    try:
        first = virtual_service("reviews")
        second = copy.deepcopy(first)
        add_fault(second)
        key = entry_key("VirtualService", "reviews")
        switch.remember(key, vs_entry(cluster, "reviews", first))
        switch.remember(key, vs_entry(cluster, "reviews", second))
        switch.remember("scale-web", replicas_entry(cluster.namespace, "web", 3))
        entries = switch.entries()
        assert set(entries) == {key, "scale-web"}
        assert entries[key]["original"]["spec"] == first["spec"]
        assert entries[key]["runId"] == "run-3" and entries[key]["holder"] == switch.holder
        with pytest.raises(ValueError, match="ConfigMap key"):
            switch.remember("a key/with slash", replicas_entry(cluster.namespace, "web", 1))
        switch.forget(key)
        switch.forget(key)
        assert set(switch.entries()) == {"scale-web"}
        switch.forget("scale-web")
    finally:
        assert switch.stop(delete=True) == []


def test_stop_with_faults_left_releases_the_lease_for_the_reaper(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    original = cluster.create_vs("reviews")
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-4", image="reaper:1", lease_seconds=30)
    switch.start(timeout=TIMEOUT)
    switch.remember("virtualservice.reviews", vs_entry(cluster, "reviews", original))
    cluster.change_vs("reviews", add_fault)
    assert switch.stop(delete=True) == ["virtualservice.reviews"]
    # Released: the reaper reverts at its next poll, long before the 30 s lease would have run out.
    wait_for(lambda: content(cluster.vs("reviews")) == content(original), 10, what="the revert of a released lease")
    assert REAPER_NAME in _names_of(cluster, "/apis/apps/v1/namespaces/{ns}/deployments")
    # Once the ledger is empty, stopping again deletes what the switch created.
    wait_for(lambda: cluster.ledger() == {}, TIMEOUT, what="the ledger to empty")
    assert switch.stop(delete=True) == []
    for path in OURS:
        assert not (_names_of(cluster, path) & {REAPER_NAME, LEASE_NAME, LEDGER_NAME}), path


def test_tripped_once_the_lease_went_unrenewed_for_its_duration(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    clock = Clock()
    # 30 s: the renewal thread waits 10 s (real time) before its first renewal, so only the test moves the clock.
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-5", image="reaper:1", lease_seconds=30,
                           clock=clock)  # fmt: skip
    switch.start(timeout=TIMEOUT)
    try:
        seen = []
        for step in (29.9, 0.1, -30):  # the last step: tripped is sticky
            clock.now += step
            seen.append(switch.tripped)
        assert seen == [False, True, True]
    finally:
        switch.stop(delete=True)


def test_a_live_run_s_lease_is_refused_and_a_stale_one_taken_over(
    cluster: Cluster, official: kclient.ApiClient, kubelet: FakeKubelet
) -> None:
    cluster.create_lease(duration=15, holder="other-laptop:7")
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-6", image="reaper:1", lease_seconds=30)
    with pytest.raises(ObjectConflict, match="other-laptop:7"):
        switch.start(timeout=TIMEOUT)
    assert LEDGER_NAME not in _names_of(cluster, "/api/v1/namespaces/{ns}/configmaps")
    assert cluster.kube.request("GET", cluster.path(LEASE_PATH))["spec"]["holderIdentity"] == "other-laptop:7"

    cluster.renew("2001-01-01T00:00:00.000000Z")  # that run died long ago
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-6", image="reaper:1", lease_seconds=30)
    switch.start(timeout=TIMEOUT)
    try:
        assert cluster.kube.request("GET", cluster.path(LEASE_PATH))["spec"]["holderIdentity"] == switch.holder
    finally:
        switch.stop(delete=True)


def test_start_without_a_ready_reaper_times_out_and_cleans_up(cluster: Cluster, official: kclient.ApiClient) -> None:
    switch = DeadManSwitch(official, cluster.namespace, run_id="run-7", image="nowhere/reaper:0", lease_seconds=30)
    with pytest.raises(ReadinessTimeout, match="nowhere/reaper:0") as caught:
        switch.start(timeout=1.0)
    assert f"logs deploy/{REAPER_NAME}" in str(caught.value)
    for path in OURS:
        assert not (_names_of(cluster, path) & {REAPER_NAME, LEASE_NAME, LEDGER_NAME}), path


def test_cluster_errors_are_translated(server: ApiServer, cluster: Cluster) -> None:
    bad = server.official_client(token="not-the-token")
    try:
        switch = DeadManSwitch(bad, cluster.namespace, run_id="run-8", image="reaper:1")
        with pytest.raises(AccessDenied, match=r"401.*leases\.coordination\.k8s\.io"):
            switch.start(timeout=5)
    finally:
        bad.close()
    configuration = kclient.Configuration()
    configuration.host = "https://127.0.0.1:9"
    configuration.retries = 0
    nowhere = kclient.ApiClient(configuration)
    try:
        switch = DeadManSwitch(nowhere, cluster.namespace, run_id="run-8", image="reaper:1", request_timeout=2)
        with pytest.raises(ClusterUnreachable, match="does not answer"):
            switch.start(timeout=5)
    finally:
        nowhere.close()
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"kind": "Status", "code": 403, "message": 'leases is forbidden: User "x"'})
    error = _translate(forbidden, "create", "leases.coordination.k8s.io", "shop", LEASE_NAME, None)
    assert isinstance(error, AccessDenied)
    assert "leases is forbidden" in str(error) and "rbac" in str(error) and "shop" in str(error)
    assert _translate(TypeError("bug"), "create", "leases", "shop", None, None) is None
