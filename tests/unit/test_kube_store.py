"""The embedded Kubernetes API's object store: the registry and watch semantics of kube-apiserver."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.store import (
    EVENT_FIELD_GETTERS,
    POD_FIELD_GETTERS,
    ExpiredError,
    Store,
    Watcher,
)

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


class Clock:
    """A settable clock, so timestamps are known."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_store(history: int = 5000, max_pending: int = 10000) -> tuple[Store, Clock]:
    clock = Clock()
    store = Store(clock=clock, history=history, max_pending=max_pending)
    store.register(
        "/pods", kind="Pod", group="", namespaced=True, api_version="v1", generation=False,
        status_subresource=True, graceful=True, field_getters=POD_FIELD_GETTERS,
    )  # fmt: skip
    store.register("/configmaps", kind="ConfigMap", group="", namespaced=True, api_version="v1", generation=False)
    store.register(
        "/events", kind="Event", group="", namespaced=True, api_version="v1", generation=False,
        field_getters=EVENT_FIELD_GETTERS, allow_create_on_update=True,
    )  # fmt: skip
    store.register("/namespaces", kind="Namespace", group="", namespaced=False, api_version="v1", name_rule="label")
    store.register(
        "apps/deployments", kind="Deployment", group="apps", namespaced=True, api_version="apps/v1",
        status_subresource=True,
    )  # fmt: skip
    store.register(
        "networking.istio.io/virtualservices", kind="VirtualService", group="networking.istio.io", namespaced=True,
        api_version="networking.istio.io/v1", status_subresource=True,
    )  # fmt: skip
    return store, clock


def pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": [{"name": "c"}], **spec}}


def configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas},
    }


def drain(watcher: Watcher) -> list[tuple[str, str, str]]:
    """The queued events as (type, name, resourceVersion)."""
    out = []
    while (event := watcher.poll()) is not None:
        obj = event["object"]
        name = obj.get("metadata", {}).get("name", "") if event["type"] != "ERROR" else obj["message"]
        out.append((event["type"], name, obj.get("metadata", {}).get("resourceVersion", "")))
    return out


def raises(code: int, call: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


# --- resourceVersion, get --------------------------------------------------------------------------------


def test_one_resource_version_counter_for_the_whole_store() -> None:
    store, _ = make_store()
    start = int(store.resource_version)
    a = store.create("/pods", pod("a"))
    b = store.create("/configmaps", configmap("b"))
    assert int(a["metadata"]["resourceVersion"]) == start + 1
    assert int(b["metadata"]["resourceVersion"]) == start + 2
    assert store.resource_version == str(start + 2)


def test_get_returns_a_deep_copy_and_404_as_kubernetes_words_it() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a", labels={"x": "1"}))
    got = store.get("/pods", "default", "a")
    got["metadata"]["labels"]["x"] = "changed"
    assert store.get("/pods", "default", "a")["metadata"]["labels"] == {"x": "1"}
    error = raises(404, store.get, "/pods", "default", "nope")
    assert error.message == 'pods "nope" not found'
    error = raises(404, store.get, "apps/deployments", "default", "nope")
    assert error.message == 'deployments.apps "nope" not found'
    raises(404, store.get, "/pods", "other", "a")


# --- create ----------------------------------------------------------------------------------------------


def test_create_sets_the_system_fields() -> None:
    store, _ = make_store()
    created = store.create("apps/deployments", deployment("web"))
    metadata = created["metadata"]
    assert len(metadata["uid"]) == 36
    assert metadata["creationTimestamp"] == "2026-05-28T20:26:40Z"
    assert metadata["generation"] == 1
    assert metadata["resourceVersion"] == store.resource_version
    cm = store.create("/configmaps", configmap("c"))
    assert "generation" not in cm["metadata"]  # a resource without generation


def test_create_takes_the_request_namespace() -> None:
    store, _ = make_store()
    body = configmap("c")
    del body["metadata"]["namespace"]
    assert store.create("/configmaps", body, namespace="team")["metadata"]["namespace"] == "team"
    error = raises(400, store.create, "/configmaps", configmap("d", namespace="a"), namespace="b")
    assert error.message == "the namespace of the provided object does not match the namespace sent on the request"
    error = raises(422, store.create, "/configmaps", body)
    assert error.message == 'ConfigMap "c" is invalid: metadata.namespace: Required value'
    # A cluster-scoped object loses a namespace it was given.
    ns = store.create("/namespaces", {"metadata": {"name": "team", "namespace": "x"}})
    assert "namespace" not in ns["metadata"]
    assert ns["kind"] == "Namespace" and ns["apiVersion"] == "v1"


def test_generate_name() -> None:
    store, _ = make_store()
    body = configmap("")
    body["metadata"] = {"generateName": "web-", "namespace": "default"}
    names = {store.create("/configmaps", body)["metadata"]["name"] for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert name.startswith("web-") and len(name) == 9
        assert set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    body["metadata"]["generateName"] = "x" * 70
    assert len(store.create("/configmaps", body)["metadata"]["name"]) == 63


def test_create_refusals() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a"))
    error = raises(409, store.create, "/pods", pod("a"))
    assert (error.message, error.reason) == ('pods "a" already exists', "AlreadyExists")
    error = raises(422, store.create, "/pods", pod("Bad_Name"))
    assert error.message == (
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must '
        "consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert error.causes[0].field == "metadata.name"
    error = raises(422, store.create, "/pods", {"metadata": {"namespace": "default"}})
    assert error.message == 'Pod "" is invalid: metadata.name: Required value: name or generateName is required'
    error = raises(422, store.create, "/namespaces", {"metadata": {"name": "a.b"}})
    assert "a lowercase RFC 1123 label must consist" in error.message
    error = raises(422, store.create, "/pods", pod("b", labels={"a": "b c"}))
    assert error.message.startswith('Pod "b" is invalid: metadata.labels: Invalid value: "b c": a valid label')
    body = pod("c")
    body["metadata"]["resourceVersion"] = "5"
    error = raises(500, store.create, "/pods", body)
    assert error.message == "resourceVersion should not be set on objects to be created"


def test_create_drops_status_of_a_status_subresource() -> None:
    store, _ = make_store()
    body = pod("a")
    body["status"] = {"phase": "Running"}
    assert "status" not in store.create("/pods", body)
    body["metadata"]["name"] = "b"
    assert store.create("/pods", body, status={"phase": "Pending"})["status"] == {"phase": "Pending"}
    cm = configmap("c")
    cm["status"] = {"kept": True}  # no status subresource: the body is stored as given
    assert store.create("/configmaps", cm)["status"] == {"kept": True}


def test_dry_run_create_writes_nothing() -> None:
    store, _ = make_store()
    before = store.resource_version
    out = store.create("/pods", pod("a"), dry_run=True)
    assert out["metadata"]["uid"] and "resourceVersion" not in out["metadata"]
    assert store.resource_version == before
    raises(404, store.get, "/pods", "default", "a")


# --- update ----------------------------------------------------------------------------------------------


def test_update_conflict_and_unconditional_update() -> None:
    store, _ = make_store()
    created = store.create("/configmaps", configmap("c", a="1"))
    stale = dict(created, data={"a": "2"})
    store.update("/configmaps", stale)
    error = raises(409, store.update, "/configmaps", dict(stale, data={"a": "3"}))
    assert error.message == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes '
        "to the latest version and try again"
    )
    assert error.reason == "Conflict"
    unconditional = configmap("c", a="4")  # no resourceVersion: last write wins
    assert store.update("/configmaps", unconditional)["data"] == {"a": "4"}
    error = raises(404, store.update, "/configmaps", configmap("missing"))
    assert error.message == 'configmaps "missing" not found'
    error = raises(400, store.update, "/configmaps", configmap("c"), name="other")
    assert error.message == "the name of the object (c) does not match the name on the URL (other)"


def test_update_keeps_system_fields() -> None:
    store, clock = make_store()
    created = store.create("/configmaps", configmap("c"))
    clock.now += 100
    body = configmap("c", a="1")
    body["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    updated = store.update("/configmaps", body)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    body["metadata"]["uid"] = "other"
    error = raises(422, store.update, "/configmaps", body)
    assert error.message == 'ConfigMap "c" is invalid: metadata.uid: Invalid value: "other": field is immutable'


def test_generation_follows_the_spec() -> None:
    store, _ = make_store()
    created = store.create("apps/deployments", deployment("web"))
    labelled = json.loads(json.dumps(created))
    labelled["metadata"]["labels"] = {"a": "b"}
    labelled = store.update("apps/deployments", labelled)
    assert labelled["metadata"]["generation"] == 1  # metadata only
    scaled = dict(labelled, spec={"replicas": 3})
    scaled["metadata"] = dict(labelled["metadata"], generation=7)  # a client cannot set generation
    scaled = store.update("apps/deployments", scaled)
    assert scaled["metadata"]["generation"] == 2
    with_status = dict(scaled, status={"replicas": 3})
    assert store.update("apps/deployments", with_status, subresource="status")["metadata"]["generation"] == 2


def test_status_subresource_separates_spec_and_status() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a"), status={"phase": "Pending"})
    body = store.get("/pods", "default", "a")
    body["status"] = {"phase": "Running"}
    body["spec"]["nodeName"] = "mesh"
    main = store.update("/pods", body)
    assert main["status"] == {"phase": "Pending"}  # the main resource ignores status
    assert main["spec"]["nodeName"] == "mesh"
    body = store.get("/pods", "default", "a")
    body["status"] = {"phase": "Running"}
    body["spec"]["nodeName"] = "elsewhere"
    body["metadata"]["labels"] = {"ignored": "yes"}
    status = store.update("/pods", body, subresource="status")
    assert status["status"] == {"phase": "Running"}
    assert status["spec"]["nodeName"] == "mesh"  # the status subresource changes only status
    assert "labels" not in status["metadata"]
    raises(404, store.update, "/configmaps", configmap("x"), subresource="status")


def test_a_no_op_update_writes_nothing() -> None:
    store, _ = make_store()
    created = store.create("/configmaps", configmap("c", a="1"))
    watcher = store.watch("/configmaps", "default", resource_version=created["metadata"]["resourceVersion"])
    again = store.update("/configmaps", created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert store.resource_version == created["metadata"]["resourceVersion"]
    assert drain(watcher) == []


def test_allow_create_on_update() -> None:
    store, _ = make_store()
    event = {"metadata": {"name": "e1", "namespace": "default"}, "reason": "Started", "involvedObject": {}}
    assert not store.exists("/events", "default", "e1")
    created = store.update("/events", event)
    assert created["metadata"]["uid"]
    assert store.exists("/events", "default", "e1")


# --- delete ----------------------------------------------------------------------------------------------


def test_delete_now_and_preconditions() -> None:
    store, _ = make_store()
    created = store.create("/configmaps", configmap("c"))
    error = raises(409, store.delete, "/configmaps", "default", "c", preconditions={"uid": "other"})
    assert error.message == (
        f'Operation cannot be fulfilled on ConfigMap "c": the UID in the precondition (other) does not match the '
        f"UID in record ({created['metadata']['uid']}). The object might have been deleted and then recreated"
    )
    error = raises(409, store.delete, "/configmaps", "default", "c", preconditions={"resourceVersion": "1"})
    assert "the ResourceVersion in the precondition (1) does not match" in error.message
    watcher = store.watch("/configmaps", resource_version=store.resource_version)
    obj, deleted_now = store.delete(
        "/configmaps", "default", "c", preconditions={"uid": created["metadata"]["uid"]}
    )  # fmt: skip
    assert deleted_now
    assert obj["metadata"]["resourceVersion"] == store.resource_version  # the deletion's revision
    assert drain(watcher) == [("DELETED", "c", store.resource_version)]
    raises(404, store.delete, "/configmaps", "default", "c")


def test_finalizers_keep_an_object_until_an_update_empties_them() -> None:
    store, clock = make_store()
    body = configmap("c")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    store.create("/configmaps", body)
    watcher = store.watch("/configmaps", resource_version=store.resource_version)
    clock.now += 5
    obj, deleted_now = store.delete("/configmaps", "default", "c")
    assert not deleted_now
    assert obj["metadata"]["deletionTimestamp"] == "2026-05-28T20:26:45Z"
    assert obj["metadata"]["deletionGracePeriodSeconds"] == 0
    assert drain(watcher) == [("MODIFIED", "c", store.resource_version)]
    # Deleting again changes nothing.
    before = store.resource_version
    assert store.delete("/configmaps", "default", "c") == (store.get("/configmaps", "default", "c"), False)
    assert store.resource_version == before
    # No new finalizer while being deleted.
    adding = store.get("/configmaps", "default", "c")
    adding["metadata"]["finalizers"].append("example.com/more")
    error = raises(422, store.update, "/configmaps", adding)
    assert "no new finalizers can be added if the object is being deleted" in error.message
    # Emptying the finalizers deletes it: one DELETED event, no MODIFIED.
    releasing = store.get("/configmaps", "default", "c")
    releasing["metadata"]["finalizers"] = []
    store.update("/configmaps", releasing)
    raises(404, store.get, "/configmaps", "default", "c")
    assert drain(watcher) == [("DELETED", "c", store.resource_version)]


def test_graceful_deletion_of_pods() -> None:
    store, clock = make_store()
    store.create("/pods", pod("a"))
    watcher = store.watch("/pods", resource_version=store.resource_version)
    obj, deleted_now = store.delete("/pods", "default", "a", grace_period_seconds=30)
    assert not deleted_now
    assert obj["metadata"]["deletionTimestamp"] == "2026-05-28T20:27:10Z"  # now + 30 s
    assert obj["metadata"]["deletionGracePeriodSeconds"] == 30
    assert drain(watcher) == [("MODIFIED", "a", store.resource_version)]
    # A longer or equal grace period leaves the pending deletion alone.
    before = store.resource_version
    assert not store.delete("/pods", "default", "a", grace_period_seconds=60)[1]
    assert store.resource_version == before
    # A shorter one shortens it.
    obj, _ = store.delete("/pods", "default", "a", grace_period_seconds=10)
    assert (obj["metadata"]["deletionTimestamp"], obj["metadata"]["deletionGracePeriodSeconds"]) == (
        "2026-05-28T20:26:50Z",
        10,
    )
    drain(watcher)
    # The kubelet's final delete: grace 0 marks it (MODIFIED) and removes it (DELETED).
    clock.now += 12
    obj, deleted_now = store.delete("/pods", "default", "a", grace_period_seconds=0)
    assert deleted_now
    assert [event[0] for event in drain(watcher)] == ["MODIFIED", "DELETED"]
    # Without a grace period (or with 0) a pod is marked and removed at once, as kube-apiserver does it.
    store.create("/pods", pod("b"))
    obj, deleted_now = store.delete("/pods", "default", "b")
    assert deleted_now and obj["metadata"]["deletionGracePeriodSeconds"] == 0
    assert [event[0] for event in drain(watcher)] == ["ADDED", "MODIFIED", "DELETED"]
    # Negative grace periods count as 1 s.
    store.create("/pods", pod("c"))
    obj, deleted_now = store.delete("/pods", "default", "c", grace_period_seconds=-5)
    assert not deleted_now and obj["metadata"]["deletionGracePeriodSeconds"] == 1


def test_delete_collection() -> None:
    store, _ = make_store()
    for name in ("a", "b", "c"):
        store.create("/pods", pod(name, labels={"app": "web" if name != "c" else "db"}))
    deleted = store.delete_collection("/pods", "default", label_selector="app=web")
    assert [obj["metadata"]["name"] for obj in deleted] == ["a", "b"]
    assert [item["metadata"]["name"] for item in store.list("/pods").items] == ["c"]


# --- list ------------------------------------------------------------------------------------------------


def test_list_is_in_etcd_key_order() -> None:
    store, _ = make_store()
    for namespace, name in [("b", "x"), ("a-x", "c"), ("a", "b"), ("a", "a")]:
        store.create("/configmaps", configmap(name, namespace=namespace))
    # etcd sorts "a-x/c" before "a/a" ('-' < '/'), unlike a (namespace, name) tuple sort.
    keys = [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in store.list("/configmaps").items]
    assert keys == ["a-x/c", "a/a", "a/b", "b/x"]
    assert [o["metadata"]["name"] for o in store.list("/configmaps", "a").items] == ["a", "b"]
    assert store.list("/configmaps", "nowhere").items == []
    assert store.list("/configmaps").resource_version == store.resource_version


def test_list_selectors() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a", labels={"app": "web"}, nodeName="n1"), status={"phase": "Running"})
    store.create("/pods", pod("b", labels={"app": "db"}), status={"phase": "Pending"})
    store.create("/pods", pod("c", namespace="other", labels={"app": "web"}))

    def names(**kwargs: Any) -> list[str]:
        return [o["metadata"]["name"] for o in store.list("/pods", **kwargs).items]

    assert names(label_selector="app=web") == ["a", "c"]  # "default/a" < "other/c"
    assert names(field_selector="status.phase=Running") == ["a"]
    assert names(field_selector="status.phase!=Running") == ["b", "c"]
    assert names(field_selector="spec.nodeName=n1,metadata.namespace=default") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    error = raises(400, store.list, "/pods", field_selector="status.hostIP=1.2.3.4")
    assert error.message == "field label not supported: status.hostIP"
    raises(400, store.list, "/configmaps", field_selector="data.a=1")
    raises(400, store.list, "/pods", label_selector="a b")


def test_event_field_selectors() -> None:
    store, _ = make_store()
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "a", "namespace": "default"},
        "reason": "Started",
        "type": "Normal",
        "source": {"component": "kubelet"},
    }
    store.create("/events", event)
    assert len(store.list("/events", field_selector="involvedObject.name=a,source=kubelet,type=Normal").items) == 1
    assert store.list("/events", field_selector="involvedObject.kind=Service").items == []


def test_limit_and_continue() -> None:
    store, _ = make_store()
    for index in range(5):
        store.create("/configmaps", configmap(f"c{index}"))
    first = store.list("/configmaps", "default", limit=2)
    assert [o["metadata"]["name"] for o in first.items] == ["c0", "c1"]
    assert first.remaining_item_count == 3
    token = json.loads(base64.urlsafe_b64decode(first.continue_token + "=="))
    assert token == {"v": "meta.k8s.io/v1", "rv": int(first.resource_version), "start": "c1\x00"}
    second = store.list("/configmaps", "default", limit=2, continue_token=first.continue_token)
    assert [o["metadata"]["name"] for o in second.items] == ["c2", "c3"]
    assert second.resource_version == first.resource_version
    last = store.list("/configmaps", "default", limit=2, continue_token=second.continue_token)
    assert [o["metadata"]["name"] for o in last.items] == ["c4"]
    assert (last.continue_token, last.remaining_item_count) == ("", None)
    # With a selector, no count; a page may hold fewer items than the limit of what remains.
    selected = store.list("/configmaps", "default", limit=2, field_selector="metadata.name!=c1")
    assert [o["metadata"]["name"] for o in selected.items] == ["c0", "c2"]
    assert selected.remaining_item_count is None and selected.continue_token


def test_continue_pages_show_the_first_page_snapshot_despite_concurrent_writes() -> None:
    store, _ = make_store()
    for index in range(6):
        store.create("/configmaps", configmap(f"c{index}", v="old"))
    first = store.list("/configmaps", limit=2)
    # Between pages: a deletion, a creation and an update of keys the next pages will cover.
    store.delete("/configmaps", "default", "c3")
    store.create("/configmaps", configmap("c25"))
    changed = store.get("/configmaps", "default", "c4")
    changed["data"] = {"v": "new"}
    store.update("/configmaps", changed)
    store.create("/configmaps", configmap("c0a"))  # before the continue point: never shown
    pages: list[dict[str, Any]] = list(first.items)
    token = first.continue_token
    while token:
        page = store.list("/configmaps", limit=2, continue_token=token)
        assert page.resource_version == first.resource_version
        pages.extend(page.items)
        token = page.continue_token
    assert [o["metadata"]["name"] for o in pages] == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert {o["metadata"]["name"]: o["data"]["v"] for o in pages}["c4"] == "old"
    # A new list sees the present.
    names = [o["metadata"]["name"] for o in store.list("/configmaps").items]
    assert names == ["c0", "c0a", "c1", "c2", "c25", "c4", "c5"]


def test_a_compacted_continue_token_is_410_with_an_inconsistent_continuation() -> None:
    store, _ = make_store(history=3)
    for index in range(4):
        store.create("/configmaps", configmap(f"c{index}"))
    first = store.list("/configmaps", "default", limit=1)
    for index in range(4):
        store.create("/configmaps", configmap(f"d{index}"))
    with pytest.raises(ExpiredError) as caught:
        store.list("/configmaps", "default", limit=1, continue_token=first.continue_token)
    error = caught.value
    assert error.code == 410 and error.reason == "Expired"
    assert error.message.startswith("The provided continue parameter is too old to display a consistent list result.")
    inconsistent = error.status()["metadata"]["continue"]
    page = store.list("/configmaps", "default", limit=10, continue_token=inconsistent)
    assert [o["metadata"]["name"] for o in page.items] == ["c1", "c2", "c3", "d0", "d1", "d2", "d3"]
    assert page.resource_version == store.resource_version


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("!!", "invalid continue token: continue key is not valid: illegal base64 data at input byte 0"),
        (
            base64.urlsafe_b64encode(b'{"v":"other","rv":1,"start":"a"}').decode().rstrip("="),
            "invalid continue token: continue key is not valid: server does not recognize this encoded version other",
        ),
        (
            base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":0,"start":"a"}').decode().rstrip("="),
            "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)",
        ),
        (
            base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":3,"start":"../x"}').decode().rstrip("="),
            "invalid continue token: continue key is not valid: ../x",
        ),
    ],
)
def test_invalid_continue_tokens_are_400(token: str, message: str) -> None:
    store, _ = make_store()
    assert raises(400, store.list, "/configmaps", limit=1, continue_token=token).message == message


def test_list_at_a_resource_version() -> None:
    store, _ = make_store(history=3)
    store.create("/configmaps", configmap("a"))
    at = store.resource_version
    store.create("/configmaps", configmap("b"))
    exact = store.list("/configmaps", resource_version=at, resource_version_match="Exact")
    assert [o["metadata"]["name"] for o in exact.items] == ["a"] and exact.resource_version == at
    latest = store.list("/configmaps", resource_version=at, resource_version_match="NotOlderThan")
    assert len(latest.items) == 2
    whole = store.list("/configmaps", resource_version="0", limit=1)  # the watch cache ignores the limit
    assert (len(whole.items), whole.continue_token) == (2, "")
    # A legacy resourceVersion with a limit reads exactly that revision.
    paged = store.list("/configmaps", resource_version=at, limit=5)
    assert [o["metadata"]["name"] for o in paged.items] == ["a"]
    error = raises(504, store.list, "/configmaps", resource_version="999999")
    assert error.message == f"Timeout: Too large resource version: 999999, current: {store.resource_version}"
    assert error.status()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    for index in range(4):
        store.create("/configmaps", configmap(f"x{index}"))
    error = raises(410, store.list, "/configmaps", resource_version=at, resource_version_match="Exact")
    assert error.message == "The resourceVersion for the provided list is too old."
    raises(400, store.list, "/configmaps", resource_version="abc")


# --- watch -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource_version", [None, "", "0"])
def test_watch_without_a_version_starts_with_the_current_objects(resource_version: str | None) -> None:
    store, _ = make_store()
    a = store.create("/configmaps", configmap("a"))
    store.create("/configmaps", configmap("b"))
    watcher = store.watch("/configmaps", resource_version=resource_version)
    b_rv = store.resource_version
    store.delete("/configmaps", "default", "a")
    assert drain(watcher) == [
        ("ADDED", "a", a["metadata"]["resourceVersion"]),
        ("ADDED", "b", b_rv),
        ("DELETED", "a", store.resource_version),
    ]


def test_watch_from_a_version_replays_what_followed_it() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a"))
    since = store.resource_version
    store.create("/pods", pod("b"))
    store.create("/configmaps", configmap("other"))  # another resource: not in this watch
    changed = store.get("/pods", "default", "a")
    changed["spec"]["nodeName"] = "n1"
    store.update("/pods", changed)
    watcher = store.watch("/pods", resource_version=since)
    assert [(t, n) for t, n, _ in drain(watcher)] == [("ADDED", "b"), ("MODIFIED", "a")]
    store.create("/pods", pod("c"))
    assert [(t, n) for t, n, _ in drain(watcher)] == [("ADDED", "c")]
    # From the present: nothing yet.
    assert drain(store.watch("/pods", resource_version=store.resource_version)) == []
    # From the future: only what comes after that revision.
    future = store.watch("/pods", resource_version=str(int(store.resource_version) + 1))
    store.create("/pods", pod("d"))
    store.create("/pods", pod("e"))
    assert [n for _, n, _ in drain(future)] == ["e"]


def test_watch_from_a_compacted_version_is_one_410_error() -> None:
    store, _ = make_store(history=3)
    store.create("/pods", pod("a"))
    old = store.resource_version
    for name in "bcdef":
        store.create("/pods", pod(name))
    watcher = store.watch("/pods", resource_version=old)
    event = watcher.poll()
    assert event is not None and event["type"] == "ERROR"
    status = event["object"]
    floor = int(store.resource_version) - 3
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"] == f"too old resource version: {old} ({floor})"
    assert watcher.ended and watcher.poll() is None
    assert store.watchers("/pods") == 0
    # The oldest version still retained works.
    assert len(drain(store.watch("/pods", resource_version=str(floor)))) == 3
    assert raises(422, store.watch, "/pods", resource_version="x").message.startswith(
        'pods "" is invalid: resourceVersion: Invalid value: "x"'
    )


def test_selector_transitions_arrive_as_added_and_deleted() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a", labels={"app": "web"}))
    watcher = store.watch("/pods", label_selector="app=web", resource_version=store.resource_version)
    leaving = store.get("/pods", "default", "a")
    leaving["metadata"]["labels"] = {"app": "db"}
    store.update("/pods", leaving)
    left_rv = store.resource_version
    event = watcher.poll()
    assert event is not None and event["type"] == "DELETED"
    # The previous content (still selected), at the event's resourceVersion.
    assert event["object"]["metadata"]["labels"] == {"app": "web"}
    assert event["object"]["metadata"]["resourceVersion"] == left_rv
    unrelated = store.get("/pods", "default", "a")
    unrelated["spec"]["nodeName"] = "n1"
    store.update("/pods", unrelated)
    assert watcher.poll() is None
    entering = store.get("/pods", "default", "a")
    entering["metadata"]["labels"] = {"app": "web"}
    store.update("/pods", entering)
    assert [t for t, _, _ in drain(watcher)] == ["ADDED"]
    store.delete("/pods", "default", "a")
    assert [t for t, _, _ in drain(watcher)] == ["MODIFIED", "DELETED"]


def test_field_selector_transitions() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a"), status={"phase": "Pending"})
    watcher = store.watch("/pods", field_selector="status.phase=Running")
    assert drain(watcher) == []
    running = store.get("/pods", "default", "a")
    running["status"] = {"phase": "Running"}
    store.update("/pods", running, subresource="status")
    assert [t for t, _, _ in drain(watcher)] == ["ADDED"]


def test_namespace_scoped_watch() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a", namespace="one"))
    watcher = store.watch("/pods", "two")
    store.create("/pods", pod("b", namespace="one"))
    store.create("/pods", pod("c", namespace="two"))
    assert [n for _, n, _ in drain(watcher)] == ["c"]


def test_send_initial_events_ends_with_an_annotated_bookmark() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a"))
    at = store.resource_version
    watcher = store.watch("/pods", allow_bookmarks=True, send_initial_events=True, resource_version="")
    events = [watcher.poll(), watcher.poll()]
    assert [e["type"] for e in events if e] == ["ADDED", "BOOKMARK"]
    assert events[1] == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": at, "annotations": {"k8s.io/initial-events-end": "true"}},
        },
    }
    quiet = store.watch("/pods", send_initial_events=False, allow_bookmarks=True, resource_version="0")
    assert quiet.poll() is None
    too_new = store.watch("/pods", send_initial_events=True, resource_version="99999")
    error = too_new.poll()
    assert error is not None and error["object"]["code"] == 504


def test_bookmarks_carry_only_the_resource_version() -> None:
    store, _ = make_store()
    watcher = store.watch("apps/deployments", allow_bookmarks=True)
    store.create("/configmaps", configmap("elsewhere"))
    assert watcher.bookmark() == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"resourceVersion": store.resource_version},
        },
    }
    before = store.resource_version
    store.create("apps/deployments", deployment("web"))
    # With an event still queued, a bookmark must not claim its revision.
    assert watcher.bookmark()["object"]["metadata"]["resourceVersion"] == before


def test_a_watcher_that_falls_behind_is_ended_with_an_error() -> None:
    store, _ = make_store(max_pending=5)
    watcher = store.watch("/configmaps")
    for index in range(6):
        store.create("/configmaps", configmap(f"c{index}"))
    events = drain(watcher)
    assert len(events) == 1 and events[0][0] == "ERROR"
    assert "fell behind" in events[0][1]
    assert store.watchers("/configmaps") == 0
    store.create("/configmaps", configmap("later"))
    assert watcher.poll() is None


def test_events_carry_deep_copies() -> None:
    store, _ = make_store()
    store.create("/pods", pod("a", labels={"x": "1"}))
    first = store.watch("/pods")
    second = store.watch("/pods")
    event = first.poll()
    assert event is not None
    event["object"]["metadata"]["labels"]["x"] = "changed"
    other = second.poll()
    assert other is not None and other["object"]["metadata"]["labels"] == {"x": "1"}
    assert store.get("/pods", "default", "a")["metadata"]["labels"] == {"x": "1"}


def test_next_waits_for_an_event_and_times_out() -> None:
    async def scenario() -> None:
        store, _ = make_store()
        watcher = store.watch("/configmaps")
        started = time.monotonic()
        assert await watcher.next(0.05) is None
        assert time.monotonic() - started >= 0.04

        async def write_soon() -> None:
            await asyncio.sleep(0)
            store.create("/configmaps", configmap("c"))

        task = asyncio.create_task(write_soon())
        event = await watcher.next(5.0)
        await task
        assert event is not None and event["type"] == "ADDED"
        watcher.close()
        assert await watcher.next(5.0) is None  # closed: at once
        assert store.watchers("/configmaps") == 0

    asyncio.run(asyncio.wait_for(scenario(), 10))


# --- cost ------------------------------------------------------------------------------------------------


def test_benchmark_get_and_list_of_fifty_pods(capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = make_store()
    for index in range(50):
        body = pod(f"web-{index:02d}", labels={"app": "web", "pod-template-hash": "7d9f8b6c5"}, nodeName="mesh")
        body["spec"]["containers"] = [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}], "env": [{"name": "A", "value": "1"}]},
            {"name": "istio-proxy", "image": "istio/proxyv2", "args": ["proxy", "sidecar"]},
        ]
        store.create("/pods", body, status={"phase": "Running", "podIP": f"127.0.10.{index}"})
    for index in range(200):
        store.create("/configmaps", configmap(f"noise-{index}", namespace=f"ns{index % 7}"))

    def measure(call: Any, rounds: int = 300) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            call()
        return (time.perf_counter() - started) / rounds * 1e6

    get_us = measure(lambda: store.get("/pods", "default", "web-25"))
    list_us = measure(lambda: store.list("/pods", "default"))
    list_shared_us = measure(lambda: store.list("/pods", "default", copy=False))
    selected_us = measure(lambda: store.list("/pods", "default", label_selector="app=web", copy=False))
    page_us = measure(lambda: store.list("/pods", "default", limit=10, copy=False))
    with capsys.disabled():
        print(
            f"\nstore: GET {get_us:.1f} µs, LIST 50 pods {list_us:.0f} µs (deep copies) / {list_shared_us:.1f} µs "
            f"(copy=False), with a label selector {selected_us:.1f} µs, a page of 10 {page_us:.1f} µs"
        )
    assert len(store.list("/pods", "default").items) == 50


# --- properties: paging and watching under arbitrary writes -------------------------------------------------

_names = st.sampled_from([f"c{index}" for index in range(12)])
_operation = st.tuples(st.sampled_from(["create", "update", "delete"]), _names, st.sampled_from(["a", "b"]))


def _apply(store: Store, operation: tuple[str, str, str]) -> None:
    """Apply one write, ignoring the ones that do not apply (creating what exists, deleting what does not)."""
    kind, name, app = operation
    try:
        if kind == "create":
            body = configmap(name, v=app)
            body["metadata"]["labels"] = {"app": app}
            store.create("/configmaps", body)
        elif kind == "update":
            current = store.get("/configmaps", "default", name)
            current["metadata"]["labels"] = {"app": app}
            current["data"] = {"v": app + "!"}
            store.update("/configmaps", current)
        else:
            store.delete("/configmaps", "default", name)
    except ApiError as error:
        assert error.code in (404, 409)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_operation, max_size=15),
    st.integers(1, 4),
    st.lists(st.lists(_operation, max_size=4), max_size=6),
    st.sampled_from(["", "app=a", "app!=a"]),
)
def test_pages_always_show_the_first_page_snapshot(
    setup: list[tuple[str, str, str]], limit: int, between: list[list[tuple[str, str, str]]], selector: str
) -> None:
    store, _ = make_store()
    for operation in setup:
        _apply(store, operation)
    snapshot = [
        (o["metadata"]["name"], o["metadata"]["resourceVersion"])
        for o in store.list("/configmaps", label_selector=selector).items
    ]
    page = store.list("/configmaps", limit=limit, label_selector=selector)
    seen = [(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in page.items]
    writes = iter(between)
    while page.continue_token:
        for operation in next(writes, []):
            _apply(store, operation)
        page = store.list("/configmaps", limit=limit, label_selector=selector, continue_token=page.continue_token)
        assert len(page.items) <= limit
        seen.extend((o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in page.items)
    assert seen == snapshot


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_operation, max_size=12),
    st.lists(_operation, max_size=12),
    st.sampled_from(["", "app=a", "app!=a", "!app"]),
    st.booleans(),
)
def test_a_watch_replayed_onto_its_start_state_gives_the_present(
    before: list[tuple[str, str, str]], after: list[tuple[str, str, str]], selector: str, from_version: bool
) -> None:
    store, _ = make_store()
    for operation in before:
        _apply(store, operation)
    start = store.resource_version
    state: dict[str, dict[str, Any]] = {}
    if from_version:
        state = {o["metadata"]["name"]: o for o in store.list("/configmaps", label_selector=selector).items}
        # Writes between the list and the watch are replayed from the history.
        _apply(store, ("create", "late", "a"))
        watcher = store.watch("/configmaps", label_selector=selector, resource_version=start)
    else:
        watcher = store.watch("/configmaps", label_selector=selector)
    for operation in after:
        _apply(store, operation)
    last_rv = 0
    while (event := watcher.poll()) is not None:
        obj = event["object"]
        name = obj["metadata"]["name"]
        rv = int(obj["metadata"]["resourceVersion"])
        if rv > int(start):
            # Changes come in revision order (initial events come in key order, all at or before the start).
            assert rv >= last_rv
            last_rv = rv
        if event["type"] == "ADDED":
            assert name not in state
            state[name] = obj
        elif event["type"] == "MODIFIED":
            assert name in state
            state[name] = obj
        else:
            assert event["type"] == "DELETED" and name in state
            del state[name]
    present = {o["metadata"]["name"]: o for o in store.list("/configmaps", label_selector=selector).items}
    assert state == present


def test_introspection_helpers() -> None:
    store, _ = make_store()
    assert store.is_registered("/pods") and not store.is_registered("/nodes")
    assert store.info("apps/deployments").qualified_resource == "deployments.apps"
    raises(404, store.get, "/nodes", None, "n1")
    store.create("/configmaps", configmap("a", namespace="one"))
    start = store.resource_version
    store.create("/configmaps", configmap("b", namespace="two"))
    store.delete("/configmaps", "one", "a")
    assert (store.count("/configmaps"), store.count("/configmaps", "two"), store.count("/configmaps", "one")) == (
        1,
        1,
        0,
    )
    assert [(kind, key) for _, kind, key in store.history("/configmaps", start)] == [
        ("ADDED", "two/b"),
        ("DELETED", "one/a"),
    ]
    with pytest.raises(ValueError):
        store.register("apps/things", kind="Thing", group="", namespaced=True, api_version="v1")
