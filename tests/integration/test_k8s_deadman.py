# The client 37 types every model field Optional and leaves ApiClient.close untyped.
# mypy: disable-error-code="no-untyped-call,union-attr,index"
"""The dead-man switch on a real embedded mesh: its reaper runs as a pod, and a dead run's fault is reverted.

The reaper Deployment is applied through the mesh's Kubernetes API and run by its kubelet as a local process
(the ``clover.opnfv.org/local-command`` annotation), which reaches the API server the in-cluster way
(``KUBERNETES_SERVICE_HOST``/``PORT`` and ``$CLOVER_SERVICEACCOUNT_DIR``, set by the embedded kubelet). Then a
fault goes into the ``http-lb`` VirtualService and the process that made it dies without cleaning up: SIGKILLed
(a child process), or, in process, a switch that simply stops renewing. The VirtualService must be back exactly
as before within 30 s, with an Event saying so; the time it took is printed (``pytest -s``).
"""

from __future__ import annotations

import copy
import gc
import json
import queue
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

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

kubernetes = pytest.importorskip("kubernetes", reason="the official client is a test dependency")
from kubernetes import client as kclient  # noqa: E402
from kubernetes import config as kconfig  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from pytest_clover.backends.k8s.deadman import (  # noqa: E402
    LEASE_NAME,
    LEDGER_NAME,
    REAPER_NAME,
    DeadManSwitch,
    entry_key,
    object_entry,
)
from pytest_clover.backends.k8s.settings import DEFAULT_IMAGE  # noqa: E402
from pytest_clover.vnf.reaper import EVENT_REASON  # noqa: E402

NAMESPACE = "default"
VS = ("networking.istio.io", "v1", NAMESPACE, "virtualservices", "http-lb")
PROMISE = 30.0
"""The issue's promise: a dead run's faults are gone within 30 s."""
START_TIMEOUT = 90.0

# A pytest run's side of the switch, to be SIGKILLed mid-fault: arm the switch, record the VirtualService,
# put a fault in it, say so, and wait to die.
CHILD = r"""
import sys
from kubernetes import client, config
from pytest_clover.backends.k8s.deadman import DeadManSwitch, entry_key, object_entry

kubeconfig, lease_seconds, image, files = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
configuration = client.Configuration()
# The client's files of the kubeconfig's inline CA in the test's folder: killed, this process cannot remove them.
config.load_kube_config(kubeconfig, client_configuration=configuration, persist_config=False, temp_file_path=files)
api = client.ApiClient(configuration)
switch = DeadManSwitch(api, "default", run_id="deadman-killed", image=image, lease_seconds=lease_seconds)
switch.start(timeout=90)
print("ARMED", flush=True)
custom = client.CustomObjectsApi(api)
args = ("networking.istio.io", "v1", "default", "virtualservices", "http-lb")
before = custom.get_namespaced_custom_object(*args)
entry = object_entry(before, "networking.istio.io/v1", "VirtualService", "default", "http-lb", "virtualservices")
switch.remember(entry_key("VirtualService", "http-lb"), entry)
faulty = dict(before)
for route in faulty["spec"]["http"]:
    route["fault"] = {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}
custom.replace_namespaced_custom_object(*args, faulty)
print("FAULT IN FORCE", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def api(sdc: LocalBackend) -> Iterator[kclient.ApiClient]:
    client = kconfig.new_client_from_config(str(sdc.info()["kubeconfig"]), persist_config=False)
    try:
        yield client
    finally:
        _delete_switch_objects(client)
        client.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _delete_switch_objects(api: kclient.ApiClient) -> None:
    """What a dead run's switch leaves (the reaper, the Lease, the ledger): deleted, and the reaper's pod gone,
    so that the shared mesh is as the next test expects."""
    core, apps = kclient.CoreV1Api(api), kclient.AppsV1Api(api)
    rbac, coordination = kclient.RbacAuthorizationV1Api(api), kclient.CoordinationV1Api(api)
    for delete, name in (
        (apps.delete_namespaced_deployment, REAPER_NAME),
        (rbac.delete_namespaced_role_binding, REAPER_NAME),
        (rbac.delete_namespaced_role, REAPER_NAME),
        (core.delete_namespaced_service_account, REAPER_NAME),
        (coordination.delete_namespaced_lease, LEASE_NAME),
        (core.delete_namespaced_config_map, LEDGER_NAME),
    ):
        try:
            delete(name, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(lambda: not _reaper_pods(api), 60, what="the reaper's pods to go")


def _reaper_pods(api: kclient.ApiClient) -> list[Any]:
    listed = kclient.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"app.kubernetes.io/name={REAPER_NAME}"
    )
    return list(listed.items or [])


def _read_vs(api: kclient.ApiClient) -> dict[str, Any]:
    vs = kclient.CustomObjectsApi(api).get_namespaced_custom_object(*VS)
    assert isinstance(vs, dict)
    return vs


def _content(vs: dict[str, Any]) -> str:
    metadata = vs.get("metadata") or {}
    return json.dumps([vs.get("spec"), metadata.get("labels") or {}, metadata.get("annotations") or {}],
                      sort_keys=True)  # fmt: skip


def _revert_events(api: kclient.ApiClient) -> list[Any]:
    events = kclient.CoreV1Api(api).list_namespaced_event(NAMESPACE).items or []
    return [e for e in events if e.reason == EVENT_REASON and e.involved_object.name == "http-lb"]


def _assert_reaper_runs_as_a_pod(api: kclient.ApiClient) -> None:
    pods = _reaper_pods(api)
    assert len(pods) == 1, [p.metadata.name for p in pods]
    (pod,) = pods
    assert pod.status.phase == "Running"
    assert pod.metadata.labels.get("sidecar.istio.io/inject") == "false"
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class Lines:
    """A child's stdout, line by line, waited for with a timeout (a stuck child must not hang the test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in "".join(self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {text!r}; the child said:\n{''.join(self.seen)}")
            try:
                self.seen.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                continue


def test_a_sigkilled_run_s_fault_is_reverted_by_the_reaper_pod(
    api: kclient.ApiClient, sdc: LocalBackend, tmp_path: Path
) -> None:
    before = _read_vs(api)
    events_before = len(_revert_events(api))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(sdc.info()["kubeconfig"]), "15", DEFAULT_IMAGE, str(tmp_path / "kube")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = Lines(child)
    try:
        lines.wait_for("ARMED", START_TIMEOUT + 10)
        _assert_reaper_runs_as_a_pod(api)
        lines.wait_for("FAULT IN FORCE", 30)
        faulty = _read_vs(api)
        assert all("fault" in route for route in faulty["spec"]["http"]), faulty["spec"]
        child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        assert child.stdin is not None
        child.stdin.close()
        assert child.stdout is not None
        lines.thread.join(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL, "".join(lines.seen)

    wait_for(lambda: _content(_read_vs(api)) == _content(before), PROMISE + 5,
             interval=0.1, what="the reaper to put http-lb back")  # fmt: skip
    took = time.monotonic() - killed_at
    print(f"\ndead-man switch: http-lb reverted {took:.1f} s after pytest's SIGKILL (lease 15 s, poll 1 s)")
    assert took <= PROMISE, f"the fault outlived its run by {took:.1f} s"
    wait_for(lambda: len(_revert_events(api)) > events_before, 10, what="the CloverFaultReverted Event")
    event = _revert_events(api)[-1]
    assert event.type == "Warning" and event.involved_object.kind == "VirtualService"
    assert "http-lb" in event.message
    ledger = kclient.CoreV1Api(api).read_namespaced_config_map(LEDGER_NAME, NAMESPACE)
    assert not ledger.data, ledger.data


def test_a_switch_that_stops_renewing_has_its_fault_reverted(api: kclient.ApiClient, sdc: LocalBackend) -> None:
    custom = kclient.CustomObjectsApi(api)
    before = _read_vs(api)
    switch = DeadManSwitch(api, NAMESPACE, run_id="deadman-abandoned", image=DEFAULT_IMAGE, lease_seconds=5)
    started = time.monotonic()
    switch.start(timeout=START_TIMEOUT)
    print(f"\ndead-man switch: armed in {time.monotonic() - started:.1f} s (the reaper's pod ready)")
    _assert_reaper_runs_as_a_pod(api)
    key = entry_key("VirtualService", "http-lb")
    switch.remember(key, object_entry(before, "networking.istio.io/v1", "VirtualService", NAMESPACE, "http-lb",
                                      "virtualservices"))  # fmt: skip
    faulty = copy.deepcopy(before)
    for route in faulty["spec"]["http"]:
        route["fault"] = {"delay": {"fixedDelay": "2s", "percentage": {"value": 100}}}
    faulty["metadata"].setdefault("annotations", {})["clover.opnfv.org/fault"] = "delay"
    custom.replace_namespaced_custom_object(*VS, faulty)
    # While the Lease is renewed (a third of 5 s) the reaper leaves the fault alone.
    wait_for(lambda: switch.renewals >= 3, 15, what="three renewals")
    assert _content(_read_vs(api)) == _content(faulty)
    assert set(switch.entries()) == {key}

    switch.abandon()
    stopped_at = time.monotonic()
    wait_for(lambda: _content(_read_vs(api)) == _content(before), PROMISE,
             interval=0.1, what="the reaper to put http-lb back")  # fmt: skip
    took = time.monotonic() - stopped_at
    print(f"dead-man switch: http-lb reverted {took:.1f} s after the renewals stopped (lease 5 s, poll 1 s)")
    assert took <= PROMISE
    wait_for(lambda: not switch.entries(), 10, what="the ledger to empty")
    assert any("delay" in (e.message or "") or "http-lb" in (e.message or "") for e in _revert_events(api))
    # Nothing left to revert: stop deletes the reaper, the Lease and the ledger.
    assert switch.stop(delete=True) == []
    wait_for(lambda: not _reaper_pods(api), 60, what="the reaper's pod to go")
    names = {c.metadata.name for c in kclient.CoreV1Api(api).list_namespaced_config_map(NAMESPACE).items}
    assert LEDGER_NAME not in names
