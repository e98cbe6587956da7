"""The behaviour every backend must show, as test classes that a backend's own test suite subclasses.

Behaviour, not method names: a killed pod is replaced under a new name, scaling moves the endpoints a caller's
Envoy holds, an applied object is in force and gone once removed, and the stats and access logs carry what the
fault checks and the reports read. Subclass one of them in a test module, and give it a deployed backend as the
fixture ``contract_backend``::

    import pytest
    from pytest_clover.testing.contract import BackendContract

    @pytest.fixture
    def contract_backend(mesh):
        return mesh.backend  # the session's mesh, on --clover-backend=my-backend

    class TestMyBackend(BackendContract):
        pass

- :class:`BackendSmokeContract` — the control plane: pods, the mesh record, kill, scale, Istio objects. An
  in-memory backend passes it.
- :class:`BackendContract` — that, plus the data plane: Envoy's view of endpoints and routes, fault counters and
  access logs, with requests sent through the ingress.

The topology needs an ingress gateway and at least one Deployment behind a Service (the sample SDC has all of
it). Every test puts the mesh back as it found it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from ..backends.protocol import Backend, PodInfo, Watchable
from ..backends.registry import connect
from ..envoy.access_log import DIRECTIONS, missing_fields
from ..envoy.stats import fault_count
from ..envoy.views import counter_by_pod, endpoint_count, fault_matches, route_faults
from ..errors import BackendError
from ..istio.documents import fault_document, find_virtual_service, restored_document

__all__ = ["BackendContract", "BackendSmokeContract", "eventually"]

T = TypeVar("T")
WAIT_S = 60.0
"""How long a contract check waits for the mesh to show a change: a cold pod start on a loaded machine."""
HOP_WAIT_S = 10.0
"""How long the access-log check waits for a hop past the gateway once the gateway's own entries are there."""
PROBE_HEADER = "x-clover-contract"
"""Faults the contract injects act only on requests carrying this header, so other traffic never sees them."""


def eventually(check: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``check`` until it returns something other than None or False; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
        except BackendError as exc:  # a pod that just died, a listener being replaced: look again
            last = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last})" if last is not None else ""
            pytest.fail(f"not seen within {timeout:g} s: {what}{detail}")
        time.sleep(0.1)


def put_back(backend: Backend, doc: dict[str, Any]) -> None:
    """Undo a fault document: the VirtualService as it was before, or none if the fault created it."""
    restored = restored_document(doc)
    if restored is None:
        backend.remove(doc["kind"], doc["metadata"]["name"])
    else:
        backend.apply(yaml.safe_dump(restored), source="the backend contract")


def _serving(backend: Backend, deployment: str) -> list[PodInfo]:
    return [p for p in backend.pods() if p.deployment == deployment and p.serving]


def workload(backend: Backend) -> tuple[str, str]:
    """(service, deployment) to act on: the Deployment with the most pods, of the service with the most pods."""
    pods = [p for p in backend.pods() if p.deployment is not None and p.serving]
    if not pods:
        pytest.fail("the contract needs a topology with at least one Deployment behind a Service")
    by_service: dict[str, list[PodInfo]] = {}
    for pod in pods:
        by_service.setdefault(pod.service, []).append(pod)
    service = max(sorted(by_service), key=lambda s: len(by_service[s]))
    deployments: dict[str, int] = {}
    for pod in by_service[service]:
        assert pod.deployment is not None
        deployments[pod.deployment] = deployments.get(pod.deployment, 0) + 1
    return service, max(sorted(deployments), key=lambda d: deployments[d])


class BackendSmokeContract:
    """The control plane of a backend: what every backend, even one in memory, must do."""

    def test_deployed_pods_are_serving_as_the_deployments_ask(self, contract_backend: Backend) -> None:
        backend = contract_backend
        desired = backend.desired_replicas()
        assert desired, "desired_replicas() names no Deployment"
        for deployment, replicas in desired.items():
            assert len(_serving(backend, deployment)) == replicas, f"{deployment}: not {replicas} serving pods"
        names = [p.name for p in backend.pods()]
        assert len(names) == len(set(names)), f"pod names are not unique: {names}"
        assert backend.ingress_url().startswith(("http://", "https://"))

    def test_the_record_finds_the_same_mesh_again(self, contract_backend: Backend) -> None:
        record = contract_backend.record()
        assert record.backend == contract_backend.name and record.location
        again = connect(record)
        assert again is not None, f"connect({record!r}) did not find the running mesh"
        assert sorted(p.name for p in again.pods()) == sorted(p.name for p in contract_backend.pods())
        assert contract_backend.info(), "info() says nothing about the mesh"

    def test_a_watchable_backend_says_its_running_mesh_runs(self, contract_backend: Backend) -> None:
        if not isinstance(contract_backend, Watchable):
            pytest.skip("the backend does not declare Watchable: load phases are not watched for a dead mesh")
        contract_backend.check_running()  # a running mesh: no MeshNotRunning
        again: object = connect(contract_backend.record())
        assert isinstance(again, Watchable), "a reconnected backend must be Watchable as the original is"
        again.check_running()

    def test_a_killed_pod_is_replaced_under_a_new_name(self, contract_backend: Backend) -> None:
        backend = contract_backend
        service, deployment = workload(backend)
        before = {p.name for p in _serving(backend, deployment)}
        killed = backend.kill(service, count=1)
        assert len(killed) == 1, f"kill(count=1) killed {killed}"

        def replaced() -> set[str] | None:
            now = {p.name for p in _serving(backend, deployment)}
            return now if len(now) == len(before) and killed[0] not in now else None

        after = eventually(replaced, f"{deployment} back to {len(before)} serving pods without {killed[0]}")
        assert after - before, "no pod with a new name replaced the killed one"
        backend.wait_ready(WAIT_S)

    def test_scaling_sets_the_desired_replicas_and_the_pods(self, contract_backend: Backend) -> None:
        backend = contract_backend
        _, deployment = workload(backend)
        replicas = backend.desired_replicas()[deployment]
        try:
            backend.scale(deployment, replicas + 1, timeout=WAIT_S)
            assert backend.desired_replicas()[deployment] == replicas + 1
            assert len(_serving(backend, deployment)) == replicas + 1
        finally:
            backend.scale(deployment, replicas, timeout=WAIT_S)
        eventually(lambda: len(_serving(backend, deployment)) == replicas, f"{deployment} back to {replicas} pods")

    def test_an_applied_object_is_in_force_and_gone_once_removed(self, contract_backend: Backend) -> None:
        backend = contract_backend
        service, _ = workload(backend)
        original = find_virtual_service(backend.istio_objects(), service)
        doc = fault_document(backend.istio_objects(), service, delay="2s", headers={PROBE_HEADER: "applied"})
        key = (doc["kind"], doc["metadata"]["name"])
        backend.apply(yaml.safe_dump(doc), source="the backend contract")
        try:
            current = {(o["kind"], o["metadata"]["name"]): o for o in backend.istio_objects()}
            assert key in current and current[key]["spec"] == doc["spec"], f"{key} is not in force as applied"
        finally:
            put_back(backend, doc)
        after = find_virtual_service(backend.istio_objects(), service)
        if original is None:
            assert after is None, f"{key} is still there after remove()"
        else:
            assert after is not None and after["spec"] == original["spec"], f"{key} did not go back as it was"


class BackendContract(BackendSmokeContract):
    """The control plane and the data plane: what a backend that runs real Envoys must show."""

    def test_scaling_moves_the_endpoints_in_a_callers_envoy(self, contract_backend: Backend) -> None:
        backend = contract_backend
        service, deployment = workload(backend)
        replicas = backend.desired_replicas()[deployment]

        def endpoints_match() -> bool:
            serving = [p for p in backend.pods(service) if p.serving]
            seen, _ = endpoint_count(backend, service)
            return seen == len(serving)

        try:
            backend.scale(deployment, replicas + 1, timeout=WAIT_S)
            eventually(endpoints_match, f"a caller's Envoy to hold every serving pod of {service} (scaled up)")
        finally:
            backend.scale(deployment, replicas, timeout=WAIT_S)
        eventually(endpoints_match, f"a caller's Envoy to hold every serving pod of {service} (scaled back)")

    def test_an_applied_fault_reaches_a_callers_routes_and_leaves_with_the_revert(
        self, contract_backend: Backend
    ) -> None:
        backend = contract_backend
        service, _ = workload(backend)
        doc = fault_document(
            backend.istio_objects(), service, delay="1.234s", percent=12.5, headers={PROBE_HEADER: "routes"}
        )

        def holds() -> bool:
            faults, _ = route_faults(backend, service)
            return any(fault_matches(f, "delay", delay="1.234s", percent=12.5) for f in faults)

        backend.apply(yaml.safe_dump(doc), source="the backend contract")
        try:
            eventually(holds, f"a caller's Envoy to route {service} with the delay 1.234s at 12.5%")
        finally:
            put_back(backend, doc)
        eventually(lambda: not holds(), f"the delay to leave the routes to {service}")

    def test_traffic_shows_in_the_fault_counters_and_the_access_logs(self, contract_backend: Backend) -> None:
        from .. import httpclient
        from ..report.hops import join

        backend = contract_backend
        ingress = backend.ingress_url()
        gateway = [p.name for p in backend.pods() if p.deployment is None]
        assert gateway, "no ingress gateway pod"
        pod_service = {p.name: p.service for p in backend.pods()}

        def send(headers: dict[str, str]) -> tuple[str, int]:
            request_id = str(uuid.uuid4())
            response = httpclient.request(
                "GET", ingress + "/", timeout=30.0, headers={"x-request-id": request_id, **headers}
            )
            return request_id, response.status_code

        sent = [send({}) for _ in range(5)]
        assert all(status < 500 for _, status in sent), f"requests through the ingress failed: {sent}"
        ids = {rid for rid, _ in sent}

        def logged() -> list[dict[str, Any]] | None:
            entries = [e for pod in pod_service for e in backend.access_log(pod) if e.get("request_id") in ids]
            at_gateway = {e["request_id"] for e in entries if e.get("pod") in gateway}
            return entries if at_gateway == ids else None

        entries = eventually(logged, "the gateway's access log to hold every request sent")
        # Each Envoy flushes its own log: the gateway's can be read before the sidecars' further along, and the abort
        # below needs a hop past the gateway (without one it went on the gateway's callee, which the gateway's own
        # VirtualService serves: never counted). Wait a little for such a hop; a backend that logs none keeps the
        # gateway's hops.
        deadline = time.monotonic() + HOP_WAIT_S
        while not any(row["order"] > 0 for row in join(entries, pod_service)) and time.monotonic() < deadline:
            time.sleep(0.1)
            entries = logged() or entries
        for entry in entries:
            assert not missing_fields(entry), f"an access-log entry lacks {missing_fields(entry)}: {entry}"
            assert entry["direction"] in DIRECTIONS, entry
        rows = join(entries, pod_service)
        first = {row["request_id"]: row["segment"] for row in rows if row["order"] == 0}
        assert set(first) == ids and all(s.startswith("ingress → ") for s in first.values()), first

        # An abort on a service a sidecar calls along the path (Istio applies it in the caller's routes; the
        # gateway follows its own VirtualService), for requests with the probe header only.
        segments = sorted({(row["order"], row["segment"]) for row in rows})
        calls = [s for order, s in segments if " → " in s and order > 0] or [s for _, s in segments if " → " in s]
        target = calls[0].split(" → ")[1]
        doc = fault_document(backend.istio_objects(), target, abort_status=418, headers={PROBE_HEADER: "abort"})

        def aborts() -> int:
            return sum(counter_by_pod(backend, lambda stats: fault_count(stats, "abort")).values())

        before = aborts()
        probes: set[str] = set()
        backend.apply(yaml.safe_dump(doc), source="the backend contract")
        try:

            def counted() -> bool:
                probes.add(send({PROBE_HEADER: "abort"})[0])
                return aborts() > before

            eventually(counted, f"Envoy to count the abort on {target} (http.*.fault.aborts_injected)")

            def flagged() -> bool:
                found = [e for pod in pod_service for e in backend.access_log(pod) if e.get("request_id") in probes]
                return any("FI" in str(e.get("response_flags")) and str(e.get("response_code")) == "418" for e in found)

            eventually(flagged, "an access-log entry of an aborted request with response code 418 and flag FI")
        finally:
            put_back(backend, doc)
