"""Tests for kube/patch.py: JSON merge patch, JSON patch, strategic merge patch and server-side apply."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.local.kube import schema_meta
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.patch import (
    REJECTED,
    apply,
    fields_from_v1,
    fields_of,
    fields_to_v1,
    json_patch,
    merge_patch,
    path_string,
    record_update,
    rfc7386_merge,
    strategic_merge_patch,
)

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:01Z"
T2 = "2026-01-01T00:00:02Z"
T3 = "2026-01-01T00:00:03Z"

# ---------------------------------------------------------------------------------------------------------
# RFC 7386 (JSON merge patch), Appendix A: (target, patch, result)

RFC7386_APPENDIX = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_APPENDIX)
def test_rfc7386_appendix(target: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy((target, patch))
    assert rfc7386_merge(target, patch) == expected
    assert (target, patch) == before


@pytest.mark.parametrize(("target", "patch", "expected"), [c for c in RFC7386_APPENDIX if isinstance(c[1], dict | list)])
def test_merge_patch_follows_the_rfc_for_objects_and_arrays(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


@pytest.mark.parametrize("patch", [None, "bar", 3, True])
def test_merge_patch_refuses_what_kubernetes_cannot_merge(patch: Any) -> None:
    # kube-apiserver's json-patch library answers ErrBadJSONPatch (400) for a null or scalar document.
    with pytest.raises(ApiError) as caught:
        merge_patch({"a": 1}, patch)
    assert (caught.value.code, caught.value.message) == (400, "Invalid JSON Patch")


def test_merge_patch_result_shares_nothing_with_its_inputs() -> None:
    target = {"a": {"b": [1]}, "c": {"d": 1}}
    patch = {"c": {"e": [2]}}
    result = merge_patch(target, patch)
    result["a"]["b"].append(9)
    result["c"]["e"].append(9)
    assert target == {"a": {"b": [1]}, "c": {"d": 1}}
    assert patch == {"c": {"e": [2]}}


# ---------------------------------------------------------------------------------------------------------
# RFC 6902 (JSON patch), Appendix A: (document, patch, result or None for an error)

RFC6902_APPENDIX: list[tuple[str, Any, list[Any], Any]] = [
    ("A.1 add an object member", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ("A.2 add an array element", {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ("A.3 remove an object member", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4 remove an array element", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ("A.5 replace a value", {"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ("A.6 move a value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 move an array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}], {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 test a value: success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.9 test a value: error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], None),
    ("A.10 add a nested member object", {"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 ignore unrecognized elements", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.12 add to a nonexistent target", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], None),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ("A.15 comparing strings and numbers", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], None),
    ("A.16 add an array value", {"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
]


@pytest.mark.parametrize(("name", "document", "patch", "expected"), RFC6902_APPENDIX, ids=[c[0] for c in RFC6902_APPENDIX])
def test_rfc6902_appendix(name: str, document: Any, patch: list[Any], expected: Any) -> None:
    before = copy.deepcopy((document, patch))
    if expected is None:
        # kube-apiserver reports an operation that does not apply as 422 with its generic wording.
        with pytest.raises(ApiError) as caught:
            json_patch(document, patch)
        assert (caught.value.code, caught.value.reason, caught.value.message) == (422, "Invalid", REJECTED)
        assert caught.value.message == "the server rejected our request due to an error in our request"
    else:
        assert json_patch(document, patch) == expected
    assert (document, patch) == before


@pytest.mark.parametrize(
    ("document", "patch", "expected"),
    [
        ({"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"}], {"a": [1, 2]}),  # Kubernetes accepts negatives
        ({"a": [1, 2]}, [{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1, 2]}),
        ({"a": [1, 2]}, [{"op": "add", "path": "/a/2", "value": 3}], {"a": [1, 2, 3]}),
        ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
        ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
        ({"a": 1}, [{"op": "test", "path": "", "value": {"a": 1.0}}], {"a": 1}),
        ({"a/b": 1, "m~n": 2}, [{"op": "remove", "path": "/a~1b"}, {"op": "remove", "path": "/m~0n"}], {}),
        ({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
        ({"a": 1}, None, {"a": 1}),
        # Kubernetes' json-patch library reads a missing object member as null (RFC 6902 would refuse these).
        ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], {"a": 1, "b": 2}),
        ({"a": 1}, [{"op": "copy", "from": "/b", "path": "/c"}], {"a": 1, "c": None}),
        ({"a": 1}, [{"op": "test", "path": "/b", "value": None}], {"a": 1}),
    ],
)
def test_json_patch_operations(document: Any, patch: Any, expected: Any) -> None:
    assert json_patch(document, patch) == expected


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/a/3", "value": 1}],
        [{"op": "replace", "path": "/no/where", "value": 1}],
        [{"op": "test", "path": "/missing", "value": 1}],
        [{"op": "move", "from": "/missing", "path": "/b"}],
        [{"op": "add", "path": "/a/5", "value": 1}],
        [{"op": "add", "path": "/a/x", "value": 1}],
        [{"op": "add", "path": "/a/01x", "value": 1}],
        [{"op": "test", "path": "/a/0", "value": True}],  # true is not 1
        [{"op": "move", "from": "/o", "path": "/o/inner"}],
        [{"op": "copy", "from": "/nope/deeper", "path": "/x"}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a"}],
        [None],
        [{"op": "add", "path": 3, "value": 1}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/b"}],
        [{"op": "remove", "path": ""}],
    ],
)
def test_json_patch_operations_that_do_not_apply_are_422(patch: list[Any]) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({"a": [1], "o": {}}, patch)
    assert (caught.value.code, caught.value.message, caught.value.causes) == (422, REJECTED, ())


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        ("x", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
        ([1], "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
        ([[]], "json: cannot unmarshal array into Go value of type jsonpatch.Operation"),
    ],
)
def test_json_patch_that_is_not_a_list_of_operations_is_400(patch: Any, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({}, patch)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)


def test_json_patch_limits_the_number_of_operations() -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({}, [{"op": "test", "path": "", "value": {}}] * 10001)
    assert caught.value.code == 413
    assert json_patch({}, [{"op": "test", "path": "", "value": {}}] * 10000) == {}


def test_json_patch_is_all_or_nothing_and_copies_values() -> None:
    document = {"a": [1]}
    value = {"deep": [1]}
    result = json_patch(document, [{"op": "add", "path": "/b", "value": value}])
    result["b"]["deep"].append(2)
    assert value == {"deep": [1]}
    with pytest.raises(ApiError):
        json_patch(document, [{"op": "add", "path": "/c", "value": 1}, {"op": "remove", "path": "/zzz"}])
    assert document == {"a": [1]}


# ---------------------------------------------------------------------------------------------------------
# Hypothesis: arbitrary JSON never makes the parsers fail with anything but ApiError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)
pointers = st.lists(st.sampled_from(["a", "b", "0", "1", "-", "~0", "~1", "", "01", "-1"]), max_size=3).map(
    lambda tokens: "".join("/" + t for t in tokens)
)
operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]), "path": pointers},
    optional={"from": pointers, "value": json_values},
)


@settings(max_examples=300, deadline=None)
@given(target=json_values, patch=json_values)
def test_merge_patch_only_raises_api_errors(target: Any, patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    try:
        merge_patch(target, patch)
    except ApiError as error:
        assert error.code == 400
    assert (target, patch) == before


@settings(max_examples=300, deadline=None)
@given(target=json_values, ops=st.lists(operations | json_values, max_size=4) | json_values)
def test_json_patch_only_raises_api_errors(target: Any, ops: Any) -> None:
    before = copy.deepcopy((target, ops))
    try:
        json_patch(target, ops)
    except ApiError as error:
        assert error.code in (400, 413, 422)
    assert (target, ops) == before


@settings(max_examples=200, deadline=None)
@given(target=st.dictionaries(st.text(max_size=3), json_values, max_size=4), patch=json_values)
def test_strategic_merge_patch_only_raises_api_errors(target: dict[str, Any], patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    try:
        strategic_merge_patch(target, patch, "apps/v1", "Deployment")
    except ApiError as error:
        assert error.code in (400, 422)
    assert (target, patch) == before


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch: the built-in kinds' merge keys


def deployment(**spec: Any) -> dict[str, Any]:
    pod_spec = {
        "containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "istio-proxy", "image": "proxyv2:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "one"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["a.example/one"], "ownerReferences": [{"uid": "u1", "name": "o1", "kind": "X"}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}, **spec},
    }


def pod_spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def smp(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return strategic_merge_patch(obj, patch, obj["apiVersion"], obj["kind"])


def test_containers_merge_by_name() -> None:
    patched = smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}})
    containers = pod_spec_of(patched)["containers"]
    assert [c["name"] for c in containers] == ["app", "istio-proxy"]
    assert containers[0]["image"] == "app:2"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_container_ports_env_and_mounts_merge_by_their_keys() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "app",
        "ports": [{"containerPort": 8080}],
        "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    }]}}}}
    app = pod_spec_of(smp(deployment(), patch))["containers"][0]
    # Without $setElementOrder, Go places items the live list does not have first.
    assert app["ports"] == [{"containerPort": 8080}, {"containerPort": 80, "protocol": "TCP"}]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]


def test_lists_without_a_merge_key_are_replaced() -> None:
    patched = smp(deployment(), {"spec": {"template": {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}}})
    assert pod_spec_of(patched)["tolerations"] == [{"key": "c", "operator": "Exists"}]


def test_volumes_image_pull_secrets_owner_references_and_finalizers_merge() -> None:
    patched = smp(deployment(), {
        "metadata": {"finalizers": ["b.example/two", "a.example/one"], "ownerReferences": [{"uid": "u2", "name": "o2"}]},
        "spec": {"template": {"spec": {"volumes": [{"name": "cache", "emptyDir": {}}],
                                       "imagePullSecrets": [{"name": "two"}]}}},
    })
    # The patch's order wins, and items only the live list has come after the new ones (as Go orders them).
    assert patched["metadata"]["finalizers"] == ["b.example/two", "a.example/one"]
    assert [o["uid"] for o in patched["metadata"]["ownerReferences"]] == ["u2", "u1"]
    assert [v["name"] for v in pod_spec_of(patched)["volumes"]] == ["cache", "data"]
    assert pod_spec_of(patched)["imagePullSecrets"] == [{"name": "two"}, {"name": "one"}]


def test_service_ports_merge_by_port() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"selector": {"app": "a", "tier": "x"},
                        "ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "name": "https"}]}}
    patched = smp(service, {"spec": {"ports": [{"port": 443, "targetPort": 8443}], "selector": {"tier": None}}})
    assert patched["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443},
    ]
    assert patched["spec"]["selector"] == {"app": "a"}


def test_patch_directives_on_built_in_kinds() -> None:
    base = deployment()
    # $patch: delete removes one container, null removes a key.
    patched = smp(base, {"metadata": {"labels": None},
                         "spec": {"template": {"spec": {"containers": [{"name": "istio-proxy", "$patch": "delete"}]}}}})
    assert [c["name"] for c in pod_spec_of(patched)["containers"]] == ["app"]
    assert "labels" not in patched["metadata"]
    # $patch: replace in a list makes the patch list the whole list.
    patched = smp(base, {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"},
                                                                        {"$patch": "replace"}]}}}})
    assert pod_spec_of(patched)["containers"] == [{"name": "only", "image": "x"}]
    # $patch: replace in a map replaces the map.
    patched = smp(base, {"metadata": {"labels": {"$patch": "replace", "new": "1"}}})
    assert patched["metadata"]["labels"] == {"new": "1"}
    # $retainKeys switches the deployment strategy without leaving rollingUpdate behind.
    patched = smp(base, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert patched["spec"]["strategy"] == {"type": "Recreate"}
    # $deleteFromPrimitiveList removes finalizers.
    patched = smp(base, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/one"]}})
    assert patched["metadata"]["finalizers"] == []
    # $setElementOrder reorders a merging list.
    patched = smp(base, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "istio-proxy"}, {"name": "app"}]}}}})
    assert [c["name"] for c in pod_spec_of(patched)["containers"]] == ["istio-proxy", "app"]
    assert base == deployment()


@pytest.mark.parametrize(
    ("patch", "code", "message"),
    [
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, 400, "invalid patch format of retainKeys"),
        ({"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}}, 400, "invalid patch format of retainKeys"),
        ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["x"]}}, 400, "invalid patch format of primitive list"),
        ({"metadata": {"$setElementOrderx": []}}, 400, "invalid patch format of setElementOrder list"),
        ({"metadata": {"finalizers": [["x"]]}}, 422, 'list element types are not identical: [["a.example/one"],[["x"]]]'),
        ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, 422,
         'map: {"image":"x"} does not contain declared merge key: name'),
        ({"spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "merge"}]}}}}, 422,
         "merging lists cannot yet be specified in the patch"),
        ({"spec": {"$patch": "explode"}}, 422, 'unknown patch type: explode in map: {"$patch":"explode"}'),
        (["not", "an", "object"], 400, "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ],
)
def test_strategic_merge_patch_errors(patch: Any, code: int, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        smp(deployment(), patch)
    assert (caught.value.code, caught.value.message) == (code, message)


def test_lists_of_lists_do_not_merge() -> None:
    target = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"finalizers": [["y"]]}}
    with pytest.raises(ApiError) as caught:
        smp(target, {"metadata": {"finalizers": [["x"]]}})
    # kube-apiserver answers ErrNoListOfLists with its generic 422.
    assert (caught.value.code, caught.value.message) == (422, REJECTED)


def test_strategic_merge_patch_is_refused_for_custom_resources() -> None:
    virtual_service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v"}}
    with pytest.raises(ApiError) as caught:
        strategic_merge_patch(virtual_service, {"spec": {}}, "networking.istio.io/v1", "VirtualService")
    assert (caught.value.code, caught.value.reason) == (415, "UnsupportedMediaType")
    # What kube-apiserver's CRD handler answers (kubectl's "try --type merge" hint is client-side only).
    assert caught.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


# ---------------------------------------------------------------------------------------------------------
# fieldsV1


def test_fields_v1_round_trip_and_dot_entries() -> None:
    encoded = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:metadata2": {"f:finalizers": {'v:"a.example/one"': {}}},
        "f:spec": {
            "f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
            }}}},
        },
    }
    paths = fields_from_v1(encoded)
    assert (("f", "metadata"), ("f", "labels")) in paths
    assert (("f", "metadata"), ("f", "labels"), ("f", "app")) in paths
    assert (("f", "spec"),) not in paths
    assert (("f", "metadata2"), ("f", "finalizers"), ("v", '"a.example/one"')) in paths
    assert fields_to_v1(paths) == encoded
    assert json.dumps(fields_to_v1(paths)) == json.dumps(encoded)


def test_fields_v1_malformed() -> None:
    with pytest.raises(ValueError):
        fields_from_v1({"x:what": {}})
    with pytest.raises(ValueError):
        fields_from_v1({"f:a": 1})


def test_path_strings_read_as_in_kubernetes_conflicts() -> None:
    assert path_string((("f", "spec"), ("f", "replicas"))) == ".spec.replicas"
    assert path_string((("f", "spec"), ("f", "containers"), ("k", '{"name":"app"}'), ("f", "image"))) == (
        '.spec.containers[name="app"].image'
    )
    assert path_string((("f", "ports"), ("k", '{"containerPort":80,"protocol":"TCP"}'))) == (
        '.ports[containerPort=80,protocol="TCP"]'
    )
    assert path_string((("f", "finalizers"), ("v", '"x"'))) == '.finalizers[="x"]'


# ---------------------------------------------------------------------------------------------------------
# Server-side apply


def config(replicas: int = 2, image: str = "nginx:1", env: dict[str, str] | None = None,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment apply configuration as a user writes it."""
    container: dict[str, Any] = {"name": "app", "image": image, "ports": [{"containerPort": 80}]}
    if env is not None:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
    }


def ssa(live: dict[str, Any] | None, applied: dict[str, Any], manager: str = "kubectl", *, force: bool = False,
        now: str = T0, subresource: str = "") -> dict[str, Any]:
    return apply(live, applied, manager=manager, force=force, api_version=applied.get("apiVersion", "apps/v1"),
                 kind=applied.get("kind", "Deployment"), now=now, subresource=subresource)


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply", subresource: str = "") -> set[str]:
    entry = managers(obj).get((manager, operation, subresource))
    return {path_string(p) for p in fields_from_v1(entry["fieldsV1"])} if entry else set()


def test_apply_creates_with_the_managed_fields_kubernetes_writes() -> None:
    created = ssa(None, config())
    assert created["spec"]["replicas"] == 2
    (entry,) = created["metadata"]["managedFields"]
    assert entry == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},  # LabelSelector is an atomic struct
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {'k:{"name":"app"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        # protocol is a key field with a default: the key carries it.
                        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                    }}},
                },
            },
        },
    }


def test_applying_the_same_configuration_again_changes_nothing() -> None:
    first = ssa(None, config(env={"A": "1"}))
    again = ssa(first, config(env={"A": "1"}), now=T1)
    assert again == first
    # The applied configuration is not modified, nor is the live object.
    applied = config()
    before = copy.deepcopy((first, applied))
    ssa(first, applied, now=T2)
    assert (first, applied) == before


def test_a_second_manager_setting_a_field_differently_conflicts() -> None:
    live = ssa(None, config())
    with pytest.raises(ApiError) as caught:
        ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 5}}, manager="hpa", now=T1)
    error = caught.value
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert [c.as_dict() for c in error.causes] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"},
    ]


def test_several_conflicts_are_listed_by_manager() -> None:
    live = ssa(None, config())
    with pytest.raises(ApiError) as caught:
        ssa(live, config(replicas=3, image="nginx:2"), manager="other", now=T1)
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="app"].image'
    )
    assert {c.field for c in caught.value.causes} == {
        ".spec.replicas", '.spec.template.spec.containers[name="app"].image',
    }


def test_the_same_value_is_shared_without_conflict() -> None:
    live = ssa(None, config())
    shared = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 2}}, manager="other", now=T1)
    assert ".spec.replicas" in owned(shared, "kubectl")
    assert owned(shared, "other") == {".spec.replicas"}
    assert {k for k in shared if k != "metadata"} == {k for k in live if k != "metadata"}


def test_force_takes_the_field_over() -> None:
    live = ssa(None, config())
    forced = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 5}}, manager="hpa", force=True, now=T1)
    assert forced["spec"]["replicas"] == 5
    assert owned(forced, "hpa") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(forced, "kubectl")
    # The former owner now leaves replicas alone when it applies without it, and cannot set it back.
    without = config()
    del without["spec"]["replicas"]
    again = ssa(forced, without, now=T2)
    assert again["spec"]["replicas"] == 5
    with pytest.raises(ApiError):
        ssa(forced, config(replicas=2), now=T3)


def test_fields_no_longer_applied_are_removed() -> None:
    live = ssa(None, config(env={"A": "1", "B": "2"}, labels={"app": "web", "team": "x"}))
    trimmed = ssa(live, config(env={"A": "1"}, labels={"app": "web"}), now=T1)
    container = trimmed["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert trimmed["metadata"]["labels"] == {"app": "web"}
    assert '.spec.template.spec.containers[name="app"].env[name="B"]' not in owned(trimmed, "kubectl")
    # A map left empty disappears, as Go leaves it unset.
    no_env = ssa(trimmed, config(), now=T2)
    assert "env" not in no_env["spec"]["template"]["spec"]["containers"][0]


def test_fields_another_manager_owns_stay_when_the_applier_drops_them() -> None:
    live = ssa(None, config(labels={"app": "web", "team": "x"}))
    co_owned = ssa(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                                                                                     "labels": {"team": "x"}}},
                   manager="labeller", now=T1)
    dropped = ssa(co_owned, config(labels={"app": "web"}), now=T2)
    assert dropped["metadata"]["labels"] == {"app": "web", "team": "x"}
    assert owned(dropped, "labeller") == {".metadata.labels.team"}


def test_fields_set_by_updaters_are_not_pruned_by_an_applier() -> None:
    live = ssa(None, config())
    edited = copy.deepcopy(live)
    edited["metadata"]["annotations"] = {"note": "hand-made"}
    updated = record_update(live, edited, manager="kubectl-edit", api_version="apps/v1", now=T1)
    reapplied = ssa(updated, config(), now=T2)
    assert reapplied["metadata"]["annotations"] == {"note": "hand-made"}


def test_dropping_a_list_item_removes_it() -> None:
    two = config()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    live = ssa(None, two)
    one = ssa(live, config(), now=T1)
    assert [c["name"] for c in one["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_finalizers_are_a_set() -> None:
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a/x", "b/y"]},
               "data": {"k": "v"}}
    created = apply(None, applied, manager="m", force=False, api_version="v1", kind="ConfigMap", now=T0)
    assert created["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {"f:k": {}},
        "f:metadata": {"f:finalizers": {'v:"a/x"': {}, 'v:"b/y"': {}}},
    }
    other = apply(created, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["c/z"]}},
                  manager="n", force=False, api_version="v1", kind="ConfigMap", now=T1)
    assert other["metadata"]["finalizers"] == ["a/x", "b/y", "c/z"]


def test_custom_resource_lists_are_atomic() -> None:
    vs: dict[str, Any] = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"},
          "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r", "subset": "v1"}}]}]}}
    live = apply(None, vs, manager="a", force=False, api_version="networking.istio.io/v1", kind="VirtualService",
                 now=T0)
    assert live["metadata"]["managedFields"][0]["fieldsV1"] == {"f:spec": {"f:hosts": {}, "f:http": {}}}
    changed = copy.deepcopy(vs)
    changed["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v2"
    with pytest.raises(ApiError) as caught:
        apply(live, changed, manager="b", force=False, api_version="networking.istio.io/v1", kind="VirtualService",
              now=T1)
    assert caught.value.message == 'Apply failed with 1 conflict: conflict with "a": .spec.http'


@pytest.mark.parametrize(
    ("applied", "message"),
    [
        ({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}},
         "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1"),
        ({"kind": "Deployment", "metadata": {"name": "web"}},
         "Incorrect version specified in apply patch. Specified patch version: , expected: apps/v1"),
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": []}},
         "metadata.managedFields must be nil"),
    ],
)
def test_apply_refusals(applied: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError) as caught:
        apply(None, applied, manager="m", force=False, api_version="apps/v1", kind="Deployment", now=T0)
    assert (caught.value.code, caught.value.message) == (400, message)


def test_an_associative_list_item_without_its_key_is_invalid() -> None:
    broken = config()
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ApiError) as caught:
        ssa(None, broken)
    assert caught.value.code == 422
    assert "omits key field" in caught.value.message


def test_status_is_not_tracked_through_the_main_resource() -> None:
    with_status = config()
    with_status["status"] = {"replicas": 2}
    created = ssa(None, with_status)
    assert not any(path.startswith(".status") for path in owned(created, "kubectl"))
    status_update = copy.deepcopy(created)
    status_update["status"] = {"replicas": 3}
    status_update["spec"]["replicas"] = 9  # the status subresource cannot take spec fields
    recorded = record_update(created, status_update, manager="controller", api_version="apps/v1", now=T1,
                             subresource="status")
    assert owned(recorded, "controller", "Update", "status") == {".status.replicas"}
    assert ".spec.replicas" in owned(recorded, "kubectl")


# ---------------------------------------------------------------------------------------------------------
# Updates and the kubectl flows


def test_create_owns_every_field_but_the_server_set_ones() -> None:
    obj = config(env={"A": "1"})
    obj["metadata"].update({"uid": "u", "resourceVersion": "1", "creationTimestamp": T0, "generation": 1})
    obj["status"] = {"replicas": 0}
    created = record_update(None, obj, manager="kubectl-create", api_version="apps/v1", now=T0)
    (entry,) = created["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1",
    }
    # Maps and list items added by an update are owned themselves too (the "." entries).
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    container = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert container["."] == {} and container["f:env"]['k:{"name":"A"}'] == {".": {}, "f:name": {}, "f:value": {}}
    assert "f:status" not in entry["fieldsV1"]
    assert {k: v for k, v in created.items() if k != "metadata"} == {k: v for k, v in obj.items() if k != "metadata"}


def test_an_update_takes_the_fields_it_changes() -> None:
    live = ssa(None, config())
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    updated = record_update(live, edited, manager="kubectl-set", api_version="apps/v1", now=T1)
    image = '.spec.template.spec.containers[name="app"].image'
    assert image in owned(updated, "kubectl-set", "Update")
    assert image not in owned(updated, "kubectl")
    assert managers(updated)[("kubectl-set", "Update", "")]["time"] == T1
    assert managers(updated)[("kubectl", "Apply", "")]["time"] == T0
    # An update that changes nothing leaves managedFields alone.
    assert record_update(updated, copy.deepcopy(updated), manager="x", api_version="apps/v1", now=T2) == updated


def test_removed_fields_leave_their_owners() -> None:
    live = ssa(None, config(env={"A": "1"}))
    edited = copy.deepcopy(live)
    del edited["spec"]["template"]["spec"]["containers"][0]["env"]
    updated = record_update(live, edited, manager="editor", api_version="apps/v1", now=T1)
    assert not any("env" in path for path in owned(updated, "kubectl"))
    assert ("editor", "Update", "") not in managers(updated)  # it removed things but set none


def test_a_client_can_reset_managed_fields() -> None:
    live = ssa(None, config())
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = [{}]
    cleared = record_update(live, reset, manager="x", api_version="apps/v1", now=T1)
    assert "managedFields" not in cleared["metadata"]


def client_side_apply(live: dict[str, Any] | None, configuration: dict[str, Any], now: str) -> dict[str, Any]:
    """What `kubectl apply` (client-side) stores: the configuration with its last-applied annotation, sent as
    a create or a strategic merge patch by manager "kubectl-client-side-apply"."""
    annotated = copy.deepcopy(configuration)
    annotated["metadata"].setdefault("annotations", {})[
        "kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(configuration)
    new = annotated if live is None else strategic_merge_patch(live, annotated, "apps/v1", "Deployment")
    return record_update(live, new, manager="kubectl-client-side-apply", api_version="apps/v1", now=now)


def scale(live: dict[str, Any], replicas: int, now: str) -> dict[str, Any]:
    """`kubectl scale`: an update of the scale subresource by manager "kubectl"."""
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = replicas
    return record_update(live, new, manager="kubectl", api_version="apps/v1", now=now, subresource="scale")


def test_kubectl_client_side_apply_then_scale_then_server_side_apply_conflicts() -> None:
    live = client_side_apply(None, config(replicas=2), T0)
    assert set(managers(live)) == {("kubectl-client-side-apply", "Update", "")}
    scaled = scale(live, 5, T1)
    assert owned(scaled, "kubectl", "Update", "scale") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(scaled, "kubectl-client-side-apply", "Update")
    with pytest.raises(ApiError) as caught:
        ssa(scaled, config(replicas=2), manager="kubectl", now=T2)
    assert caught.value.code == 409
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas'
    )
    # --force-conflicts takes replicas back.
    forced = ssa(scaled, config(replicas=2), manager="kubectl", force=True, now=T2)
    assert forced["spec"]["replicas"] == 2
    assert ("kubectl", "Update", "scale") not in managers(forced)


def test_server_side_apply_by_another_manager_conflicts_with_client_side_apply() -> None:
    live = client_side_apply(None, config(replicas=2), T0)
    with pytest.raises(ApiError) as caught:
        ssa(live, config(replicas=3), manager="deployer", now=T1)
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert [c.as_dict() for c in caught.value.causes] == [{
        "reason": "FieldManagerConflict", "field": ".spec.replicas",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
    }]


def test_kubectl_may_take_over_what_its_last_applied_configuration_set() -> None:
    # Switching `kubectl apply` to --server-side: fields the annotation still describes are not conflicts.
    live = client_side_apply(None, config(replicas=2, image="nginx:1"), T0)
    switched = ssa(live, config(replicas=2, image="nginx:2"), manager="kubectl", now=T1)
    assert switched["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert '.spec.template.spec.containers[name="app"].image' in owned(switched, "kubectl")


def test_client_side_apply_round_trip_with_strategic_merge() -> None:
    live = client_side_apply(None, config(replicas=2, env={"A": "1"}), T0)
    updated = client_side_apply(live, config(replicas=3, env={"A": "1"}), T1)
    assert updated["spec"]["replicas"] == 3
    assert managers(updated)[("kubectl-client-side-apply", "Update", "")]["time"] == T1


def test_bookkeeping_never_fails_an_update() -> None:
    live = ssa(None, config())
    broken = copy.deepcopy(live)
    broken["spec"]["template"]["spec"]["containers"].append({"image": "nameless"})
    recorded = record_update(live, broken, manager="x", api_version="apps/v1", now=T1)
    assert recorded["metadata"]["managedFields"] == live["metadata"]["managedFields"]
    assert recorded["spec"]["template"]["spec"]["containers"][1] == {"image": "nameless"}


def test_multi_key_lists_need_every_key_without_a_default() -> None:
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]}}
    with pytest.raises(ApiError) as caught:
        apply(None, pod, manager="m", force=False, api_version="v1", kind="Pod", now=T0)
    assert caught.value.code == 422 and '"whenUnsatisfiable"' in caught.value.message
    pod["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "DoNotSchedule"
    created = apply(None, pod, manager="m", force=False, api_version="v1", kind="Pod", now=T0)
    assert 'k:{"topologyKey":"zone","whenUnsatisfiable":"DoNotSchedule"}' in (
        created["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:topologySpreadConstraints"]
    )


def test_apply_merges_into_fields_it_does_not_set_and_drops_nulls() -> None:
    live = ssa(None, config(env={"A": "1"}))
    partial = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": None}],
                                                              "resources": {"limits": {"cpu": "1"}}}]}}}}
    merged = ssa(live, partial, manager="other", now=T1)
    app = merged["spec"]["template"]["spec"]["containers"][0]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B"}]
    assert app["resources"] == {"limits": {"cpu": "1"}} and app["image"] == "nginx:1"


def test_fields_of_matches_apply_ownership() -> None:
    paths = {path_string(p) for p in fields_of(config(), "apps/v1", "Deployment")}
    assert ".spec.replicas" in paths and ".metadata.name" in paths and ".spec.selector" in paths
    assert '.spec.template.spec.containers[name="app"]' in paths



# ---------------------------------------------------------------------------------------------------------
# Properties of server-side apply

def _name_of(item: dict[str, Any]) -> Any:
    return item["name"]


def _port_key(item: dict[str, Any]) -> Any:
    return (item["containerPort"], item.get("protocol", "TCP"))


_env_vars: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from(["A", "B"])}, optional={"value": st.sampled_from(["1", "2"])}),
    max_size=2, unique_by=_name_of,
)
_ports: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries({"containerPort": st.sampled_from([80, 81])}, optional={"protocol": st.just("UDP")}),
    max_size=2, unique_by=_port_key,
)
_container_fields: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["a:1", "a:2"]), "env": _env_vars, "ports": _ports,
}
containers: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from(["app", "sidecar", "init"])}, optional=_container_fields),
    max_size=3, unique_by=_name_of,
)
configurations = st.builds(
    lambda labels, replicas, cs, finalizers: {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels, **({"finalizers": finalizers} if finalizers else {})},
        "spec": {**({"replicas": replicas} if replicas is not None else {}),
                 "template": {"spec": {"containers": cs}}},
    },
    st.dictionaries(st.sampled_from(["app", "team", "tier"]), st.sampled_from(["x", "y"]), max_size=3),
    st.none() | st.integers(0, 3),
    containers,
    st.lists(st.sampled_from(["a/x", "b/y"]), max_size=2, unique=True),
)


@settings(max_examples=150, deadline=None)
@given(first=configurations, second=configurations)
def test_apply_is_idempotent_and_owns_what_it_applied(first: dict[str, Any], second: dict[str, Any]) -> None:
    live = ssa(None, first)
    assert ssa(live, first, now=T1) == live
    then = ssa(live, second, now=T1)
    assert ssa(then, second, now=T2) == then
    # The sole applier owns exactly what it applied last, and nothing it dropped survives: the object is
    # what applying the second configuration from scratch gives.
    assert owned(then, "kubectl") == applied_paths(second)
    # (Up to empty lists and maps nobody owns, which Go would not keep either.)
    fresh = ssa(None, second, now=T1)
    for obj in (then, fresh):
        del obj["metadata"]["managedFields"]
    assert without_empty(then) == without_empty(fresh)


def without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_empty(v) for v in value]
    return value


def applied_paths(configuration: dict[str, Any]) -> set[str]:
    """What an applier of ``configuration`` owns: all it sets but the fields nobody owns."""
    stripped = {(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"), ("f", "name"))}
    return {path_string(p) for p in fields_of(configuration) if p not in stripped}


@settings(max_examples=100, deadline=None)
@given(first=configurations, second=configurations)
def test_a_second_applier_either_conflicts_or_converges(first: dict[str, Any], second: dict[str, Any]) -> None:
    live = ssa(None, first)
    try:
        merged = ssa(live, second, manager="other", now=T1)
    except ApiError as error:
        assert error.code == 409 and error.causes
        assert all(c.reason == "FieldManagerConflict" and c.message == 'conflict with "kubectl"' for c in error.causes)
        conflicting = {c.field for c in error.causes}
        merged = ssa(live, second, manager="other", force=True, now=T1)
        # Forcing moved exactly the conflicting fields away from the first applier.
        assert conflicting <= owned(merged, "other")
        assert not conflicting & owned(merged, "kubectl")
    assert owned(merged, "other") == applied_paths(second)
    assert ssa(merged, second, manager="other", now=T2) == merged



# ---------------------------------------------------------------------------------------------------------
# Differential: kubectl's own (Go) patch code, run offline with `kubectl patch --local`

KUBECTL = shutil.which("kubectl")


def kubectl_patch(obj: dict[str, Any], patch: Any, patch_type: str) -> Any:
    """The object `kubectl patch --local` computes, or the string "error" when it refuses the patch."""
    done = subprocess.run(
        [KUBECTL or "kubectl", "patch", "--local", "-f", "-", "--type", patch_type, "-p", json.dumps(patch),
         "-o", "json"],
        input=json.dumps(obj), capture_output=True, text=True, timeout=30,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    return "error" if done.returncode else json.loads(done.stdout)


def as_decoded(value: Any) -> Any:
    """kubectl prints the patched map as is, kube-apiserver keeps it decoded into the Go type: compare them
    without nulls, empty values and leftover directives."""
    if isinstance(value, dict):
        kept = {k: as_decoded(v) for k, v in value.items() if v is not None and not k.startswith("$")}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [as_decoded(v) for v in value]
    return value


def random_strategic_patch(rng: random.Random) -> dict[str, Any]:
    names = ["app", "istio-proxy", "new", "x"]

    def container() -> dict[str, Any]:
        c: dict[str, Any] = {"name": rng.choice(names)}
        if rng.random() < .5:
            c["image"] = rng.choice(["i:1", "i:2"])
        if rng.random() < .4:
            c["env"] = [rng.choice([{"name": n, "value": str(rng.randint(0, 3))}, {"name": n, "$patch": "delete"},
                                    {"name": n, "value": None}]) for n in rng.sample(["A", "B", "C"], rng.randint(0, 3))]
        if rng.random() < .3:
            c["ports"] = [{"containerPort": p} for p in rng.sample([80, 81, 8080], rng.randint(0, 2))]
        if rng.random() < .1:
            c["$patch"] = rng.choice(["delete", "replace"])
        if rng.random() < .2:
            c["$setElementOrder/env"] = [{"name": n} for n in rng.sample(["A", "B", "C"], rng.randint(0, 3))]
        return c

    spec: dict[str, Any] = {}
    if rng.random() < .3:
        spec["replicas"] = rng.choice([2, None])
    if rng.random() < .2:
        spec["strategy"] = rng.choice([{"$retainKeys": ["type"], "type": "Recreate"},
                                       {"rollingUpdate": {"maxSurge": 2}}, {"type": "Recreate", "rollingUpdate": None}])
    pod: dict[str, Any] = {}
    if rng.random() < .8:
        pod["containers"] = [container() for _ in range(rng.randint(0, 3))]
    if rng.random() < .2:
        pod["$setElementOrder/containers"] = [{"name": n} for n in rng.sample(names, rng.randint(1, 4))]
    if rng.random() < .2:
        pod["volumes"] = [rng.choice([{"name": "data", "$patch": "delete"}, {"name": "cache", "emptyDir": {}},
                                      {"name": "data", "$retainKeys": ["name", "configMap"], "configMap": {"name": "c"}}])]
    if rng.random() < .2:
        pod["tolerations"] = [{"key": "z", "operator": "Exists"}]
    if pod:
        spec["template"] = {"spec": pod}
    patch: dict[str, Any] = {"spec": spec} if spec else {}
    if rng.random() < .3:
        patch["metadata"] = rng.choice([
            {"finalizers": rng.sample(["a.example/one", "b.example/two", "c.example/three"], rng.randint(0, 2))},
            {"$deleteFromPrimitiveList/finalizers": ["a.example/one"]},
            {"labels": {"app": None, "x": "y"}},
            {"$setElementOrder/finalizers": rng.sample(["a.example/one", "b.example/two"], rng.randint(0, 2))},
        ])
    return patch


@pytest.mark.skipif(KUBECTL is None, reason="needs kubectl")
@pytest.mark.parametrize("seed", range(40))
def test_strategic_merge_patch_agrees_with_kubectl(seed: int) -> None:
    rng = random.Random(seed)
    start = deployment()
    if rng.random() < .5:
        try:
            start = smp(start, random_strategic_patch(rng))
        except ApiError:
            pass
    patch = random_strategic_patch(rng)
    expected = kubectl_patch(start, patch, "strategic")
    try:
        got: Any = smp(start, patch)
    except ApiError:
        got = "error"
    if isinstance(expected, dict):
        expected.pop("status", None)
    assert as_decoded(got) == as_decoded(expected), json.dumps(patch)


@pytest.mark.skipif(KUBECTL is None, reason="needs kubectl")
@pytest.mark.parametrize("seed", range(40))
def test_json_patch_agrees_with_kubectl(seed: int) -> None:
    rng = random.Random(seed)
    start = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v", "k2": "v2"},
             "metadata": {"name": "c", "labels": {"a": "1", "b/c": "2", "d~e": "3"}, "finalizers": ["f1", "f2"]}}
    paths = ["/data/k", "/data/new", "/metadata/labels/b~1c", "/metadata/labels/d~0e", "/metadata/finalizers/0",
             "/metadata/finalizers/-", "/metadata/finalizers/5", "/metadata/finalizers/-1", "/metadata/labels", "/data",
             "/nope/x", "/metadata/finalizers/01", "/metadata/finalizers/2"]
    operations = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["add", "remove", "replace", "move", "copy", "test"])
        operation: dict[str, Any] = {"op": op, "path": rng.choice(paths)}
        if op in ("add", "replace", "test"):
            operation["value"] = rng.choice(["x", {"z": "1"}, ["f9"], None, 1])
        if op in ("move", "copy"):
            operation["from"] = rng.choice(paths)
        operations.append(operation)
    expected = kubectl_patch(start, operations, "json")
    try:
        got: Any = json_patch(start, operations)
    except ApiError:
        got = "error"
    assert as_decoded(got) == as_decoded(expected), json.dumps(operations)


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch: Kubernetes' own fixtures
#
# The cases of k8s.io/apimachinery/pkg/util/strategicpatch/patch_test.go (createStrategicMergePatchTestCaseData
# and strategicMergePatchRawTestCases), over the test type ``mergeItem`` declared there: each case applies the
# two-way patch to the original and the three-way patch to the current object. Results must be equal
# including list order (Kubernetes' tests sort merging lists first; we hold ourselves to the exact order).

MERGE_ITEM = schema_meta.TypeInfo(kind="struct", name="mergeItem")


def _merging(item: str, key: str) -> schema_meta.TypeInfo:
    return schema_meta.TypeInfo(kind="list", elem=item, smp_merge=True, smp_key=key)


@pytest.fixture
def merge_item_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    info = schema_meta.TypeInfo
    monkeypatch.setitem(schema_meta.STRUCTS, "mergeItem", {
        "mergingList": _merging("mergeItem", "name"),
        "nonMergingList": info(kind="list", elem="mergeItem"),
        "mergingIntList": info(kind="list", smp_merge=True),
        "nonMergingIntList": info(kind="list"),
        # A pointer to a struct, tagged merge/name: used as a merging list by the fixtures.
        "mergeItemPtr": info(kind="struct", name="mergeItem", elem="mergeItem", smp_merge=True, smp_key="name"),
        "simpleMap": info(kind="map"),
        "replacingItem": info(smp_replace=True),
        "retainKeysMap": info(kind="struct", name="retainKeysMergeItem"),
        "retainKeysMergingList": _merging("mergeItem", "name"),
    })
    monkeypatch.setitem(schema_meta.STRUCTS, "retainKeysMergeItem", {
        "simpleMap": info(kind="map"),
        "mergingIntList": info(kind="list", smp_merge=True),
        "mergingList": _merging("mergeItem", "name"),
        "nonMergingList": info(kind="list", elem="mergeItem"),
    })
    monkeypatch.setitem(schema_meta.ROOT_TYPES, ("", "mergeItem"), "mergeItem")
    yield


# One case per line: [name, original, patch, expected].
FIXTURES_JSON = """[
["nil original / two-way",{},{"name":1,"value":1},{"name":1,"value":1}],
["nil original / three-way",{"name":1,"other":"a"},{"value":1},{"name":1,"value":1,"other":"a"}],
["nil patch / two-way",{"name":1},{},{"name":1}],
["nil patch / three-way",{"name":1},{},{"name":1}],
["add field to map / two-way",{"name":1},{"value":1},{"name":1,"value":1}],
["add field to map / three-way",{"name":1,"other":"a"},{"value":1},{"name":1,"value":1,"other":"a"}],
["add field to map with conflict / two-way",{"name":1},{"value":1},{"name":1,"value":1}],
["add field to map with conflict / three-way",{"name":"a","other":"a"},{"name":1,"value":1},{"name":1,"value":1,"other":"a"}],
["add field and delete field from map / two-way",{"name":1},{"name":null,"value":1},{"value":1}],
["add field and delete field from map / three-way",{"name":1,"other":"a"},{"name":null,"value":1},{"value":1,"other":"a"}],
["add field and delete field from map with conflict / two-way",{"name":1},{"name":null,"value":1},{"value":1}],
["add field and delete field from map with conflict / three-way",{"name":"a","other":"a"},{"name":null,"value":1},{"value":1,"other":"a"}],
["delete field from nested map / two-way",{"simpleMap":{"key1":1,"key2":1}},{"simpleMap":{"key2":null}},{"simpleMap":{"key1":1}}],
["delete field from nested map / three-way",{"simpleMap":{"key1":1,"key2":1,"other":"a"}},{"simpleMap":{"key2":null}},{"simpleMap":{"key1":1,"other":"a"}}],
["delete field from nested map with conflict / two-way",{"simpleMap":{"key1":1,"key2":1}},{"simpleMap":{"key2":null}},{"simpleMap":{"key1":1}}],
["delete field from nested map with conflict / three-way",{"simpleMap":{"key1":"a","key2":1,"other":"a"}},{"simpleMap":{"key1":1,"key2":null}},{"simpleMap":{"key1":1,"other":"a"}}],
["delete all fields from map / two-way",{"name":1,"value":1},{"name":null,"value":null},{}],
["delete all fields from map / three-way",{"name":1,"value":1,"other":"a"},{"name":null,"value":null},{"other":"a"}],
["delete all fields from map with conflict / two-way",{"name":1,"value":1},{"name":null,"value":null},{}],
["delete all fields from map with conflict / three-way",{"name":1,"value":"a","other":"a"},{"name":null,"value":null},{"other":"a"}],
["add field and delete all fields from map / two-way",{"name":1,"value":1},{"name":null,"value":null,"other":"a"},{"other":"a"}],
["add field and delete all fields from map / three-way",{"name":1,"value":1,"other":"a"},{"name":null,"value":null},{"other":"a"}],
["add field and delete all fields from map with conflict / two-way",{"name":1,"value":1},{"name":null,"value":null,"other":"a"},{"other":"a"}],
["add field and delete all fields from map with conflict / three-way",{"name":1,"value":1,"other":"b"},{"name":null,"value":null,"other":"a"},{"other":"a"}],
["replace list of scalars / two-way",{"nonMergingIntList":[1,2]},{"nonMergingIntList":[2,3]},{"nonMergingIntList":[2,3]}],
["replace list of scalars / three-way",{"nonMergingIntList":[1,2]},{"nonMergingIntList":[2,3]},{"nonMergingIntList":[2,3]}],
["replace list of scalars with conflict / two-way",{"nonMergingIntList":[1,2]},{"nonMergingIntList":[2,3]},{"nonMergingIntList":[2,3]}],
["replace list of scalars with conflict / three-way",{"nonMergingIntList":[1,4]},{"nonMergingIntList":[2,3]},{"nonMergingIntList":[2,3]}],
["delete all maps from merging list / two-way",{"mergingList":[{"name":1},{"name":2}]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["delete all maps from merging list / three-way",{"mergingList":[{"name":1},{"name":2}]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["delete all maps from merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2}]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["delete all maps from merging list with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b"}]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["delete all maps from empty merging list / two-way",{"mergingList":[{"name":1},{"name":2}]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["delete all maps from empty merging list / three-way",{"mergingList":[]},{"mergingList":[{"name":1,"$patch":"delete"},{"name":2,"$patch":"delete"}]},{"mergingList":[]}],
["merge empty merging lists / two-way",{"mergingList":[]},{},{"mergingList":[]}],
["merge empty merging lists / three-way",{"mergingList":[]},{},{"mergingList":[]}],
["defined null values should propagate overwrite current fields (with conflict) / two-way",{"name":2},{"name":1,"value":1,"other":null},{"name":1,"value":1}],
["defined null values should propagate overwrite current fields (with conflict) / three-way",{"name":"a","other":"a"},{"name":1,"value":1,"other":null},{"name":1,"value":1}],
["defined null values should propagate removing original fields / two-way",{"name":"original-name","value":"original-value"},{"name":"modified-name","value":null},{"name":"modified-name"}],
["defined null values should propagate removing original fields / three-way",{"name":"original-name","value":"original-value","other":"current-other"},{"name":"modified-name","value":null},{"name":"modified-name","other":"current-other"}],
["nil patch with retainKeys map / two-way",{"name":"a","retainKeysMap":{"name":"foo"}},{},{"name":"a","retainKeysMap":{"name":"foo"}}],
["nil patch with retainKeys map / three-way",{"name":"a","value":"b","retainKeysMap":{"name":"foo"}},{},{"name":"a","value":"b","retainKeysMap":{"name":"foo"}}],
["retainKeys map with no change should not be present / two-way",{"name":"a","retainKeysMap":{"name":"foo"}},{"value":"b"},{"name":"a","value":"b","retainKeysMap":{"name":"foo"}}],
["retainKeys map with no change should not be present / three-way",{"name":"a","other":"c","retainKeysMap":{"name":"foo"}},{"value":"b"},{"name":"a","value":"b","other":"c","retainKeysMap":{"name":"foo"}}],
["nested patch merge with empty list / two-way",{"name":"hi"},{"mergingList":[{"name":"hello"},{"$patch":"delete","name":"doesntexist"}]},{"name":"hi","mergingList":[{"name":"hello"}]}],
["nested patch merge with empty list / three-way",{"name":"hi","mergingList":[{"name":"hello2"}]},{"$setElementOrder/mergingList":[{"name":"hello"},{"name":"doesntexist"}],"mergingList":[{"name":"hello"}]},{"name":"hi","mergingList":[{"name":"hello"},{"name":"hello2"}]}],
["delete items in lists of scalars / two-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[1,2],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[1,2]}],
["delete items in lists of scalars / three-way",{"mergingIntList":[1,2,3,4]},{"$setElementOrder/mergingIntList":[1,2],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[1,2,4]}],
["delete all duplicate items in lists of scalars / two-way",{"mergingIntList":[1,2,3,3]},{"$setElementOrder/mergingIntList":[1,2],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[1,2]}],
["delete all duplicate items in lists of scalars / three-way",{"mergingIntList":[1,2,3,3,4]},{"$setElementOrder/mergingIntList":[1,2],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[1,2,4]}],
["add and delete items in lists of scalars / two-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[1,2,4],"$deleteFromPrimitiveList/mergingIntList":[3],"mergingIntList":[4]},{"mergingIntList":[1,2,4]}],
["add and delete items in lists of scalars / three-way",{"mergingIntList":[1,2,3,4]},{"$setElementOrder/mergingIntList":[1,2,4],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[1,2,4]}],
["merge lists of maps / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":4},{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]},{"mergingList":[{"name":4,"value":4},{"name":1},{"name":2,"value":2},{"name":3,"value":3}]}],
["merge lists of maps / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":4},{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]},{"mergingList":[{"name":4,"value":4},{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]}],
["merge lists of maps with conflict / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":3,"value":3}]},{"mergingList":[{"name":1},{"name":2,"value":2},{"name":3,"value":3}]}],
["merge lists of maps with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":3,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":2,"value":2},{"name":3,"value":3}]},{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]}],
["add field to map in merging list / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}],
["add field to map in merging list / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["add field to map in merging list / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}],
["add field to map in merging list / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["add field to map in merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}],
["add field to map in merging list with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":3,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2},{"name":3,"value":2,"other":"b"}]}],
["add duplicate field to map in merging list / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}],
["add duplicate field to map in merging list / three-way",{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{},{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["add an item that already exists in current object in merging list / two-way",{"mergingList":[{"name":1,"value":"a"},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],"mergingList":[{"name":3}]},{"mergingList":[{"name":1,"value":"a"},{"name":2},{"name":3}]}],
["add an item that already exists in current object in merging list / three-way",{"mergingList":[{"name":1,"value":"a","other":"x"},{"name":2},{"name":3}]},{},{"mergingList":[{"name":1,"value":"a","other":"x"},{"name":2},{"name":3}]}],
["add duplicate field to map in merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":1}]},{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}],
["add duplicate field to map in merging list with conflict / three-way",{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":3,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":2,"value":2}]},{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["replace map field value in merging list / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":"a"}]},{"mergingList":[{"name":1,"value":"a"},{"name":2,"value":2}]}],
["replace map field value in merging list / three-way",{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":"a"}]},{"mergingList":[{"name":1,"value":"a","other":"a"},{"name":2,"value":2,"other":"b"}]}],
["replace map field value in merging list with conflict / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":"a"}]},{"mergingList":[{"name":1,"value":"a"},{"name":2,"value":2}]}],
["replace map field value in merging list with conflict / three-way",{"mergingList":[{"name":1,"value":3,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":"a"}]},{"mergingList":[{"name":1,"value":"a","other":"a"},{"name":2,"value":2,"other":"b"}]}],
["delete map from merging list / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2}]}],
["delete map from merging list / three-way",{"mergingList":[{"name":1},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2,"other":"b"}]}],
["delete map from merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2}]}],
["delete map from merging list with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2,"other":"b"}]}],
["delete missing map from merging list / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2}]}],
["delete missing map from merging list / three-way",{"mergingList":[{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2,"other":"b"}]}],
["delete missing map from merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2}]}],
["delete missing map from merging list with conflict / three-way",{"mergingList":[{"name":3,"other":"a"}]},{"$setElementOrder/mergingList":[{"name":2}],"mergingList":[{"name":2},{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2},{"name":3,"other":"a"}]}],
["add map and delete map from merging list / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":3},{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2},{"name":3}]}],
["add map and delete map from merging list / three-way",{"mergingList":[{"name":1},{"name":2,"other":"b"},{"name":4,"other":"c"}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":3},{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2,"other":"b"},{"name":4,"other":"c"},{"name":3}]}],
["add map and delete map from merging list with conflict / two-way",{"mergingList":[{"name":1},{"name":2}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":3},{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":2},{"name":3}]}],
["add map and delete map from merging list with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":4,"other":"c"}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3}],"mergingList":[{"name":2},{"name":3},{"name":1,"$patch":"delete"}]},{"mergingList":[{"name":4,"other":"c"},{"name":2},{"name":3}]}],
["delete field from map in merging list / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1},{"name":2,"value":2}]}],
["delete field from map in merging list / three-way",{"mergingList":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["delete field from map in merging list with conflict / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1},{"name":2,"value":2}]}],
["delete field from map in merging list with conflict / three-way",{"mergingList":[{"name":1,"value":"a","other":"a"},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2}]}],
["delete missing field from map in merging list / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1},{"name":2,"value":2}]}],
["delete missing field from map in merging list / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["delete missing field from map in merging list with conflict / two-way",{"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null}]},{"mergingList":[{"name":1},{"name":2,"value":2}]}],
["delete missing field from map in merging list with conflict / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"value":null},{"name":2,"value":2}]},{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["replace non merging list nested in merging list / two-way",{"mergingList":[{"name":1,"nonMergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]},{"name":2}]}],
["replace non merging list nested in merging list / three-way",{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":1},{"name":2,"value":2}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":1,"value":1}]},{"name":2,"other":"b"}]}],
["replace non merging list nested in merging list with value conflict / two-way",{"mergingList":[{"name":1,"nonMergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]},{"name":2}]}],
["replace non merging list nested in merging list with value conflict / three-way",{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":1,"value":"c"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":1,"value":1}]},{"name":2,"other":"b"}]}],
["replace non merging list nested in merging list with deletion conflict / two-way",{"mergingList":[{"name":1,"nonMergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]},{"name":2}]}],
["replace non merging list nested in merging list with deletion conflict / three-way",{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":2,"value":2}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"name":1,"nonMergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","nonMergingList":[{"name":1,"value":1}]},{"name":2,"other":"b"}]}],
["add field to map in merging list nested in merging list / two-way",{"mergingList":[{"name":1,"mergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2}]}],
["add field to map in merging list nested in merging list / three-way",{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":1},{"name":2,"value":2}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2,"other":"b"}]}],
["add field to map in merging list nested in merging list with value conflict / two-way",{"mergingList":[{"name":1,"mergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2}]}],
["add field to map in merging list nested in merging list with value conflict / three-way",{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":1,"value":"a","other":"c"},{"name":2,"value":"b","other":"d"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]}]},{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":1,"value":1,"other":"c"},{"name":2,"value":2,"other":"d"}]},{"name":2,"other":"b"}]}],
["add field to map in merging list nested in merging list with deletion conflict / two-way",{"mergingList":[{"name":1,"mergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"mergingList":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2}]}],
["add field to map in merging list nested in merging list with deletion conflict / three-way",{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":2,"value":2,"other":"d"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":1,"value":1},{"name":2,"value":2,"other":"d"}]},{"name":2,"other":"b"}]}],
["add field to map in merging list nested in merging list with deletion conflict / two-way",{"mergingList":[{"name":1,"mergingList":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":2},{"name":1}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"mergingList":[{"name":2,"value":2},{"name":1,"value":1}]},{"name":2}]}],
["add field to map in merging list nested in merging list with deletion conflict / three-way",{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":2,"value":2,"other":"d"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":2}],"mergingList":[{"$setElementOrder/mergingList":[{"name":2},{"name":1}],"name":1,"mergingList":[{"name":1,"value":1}]}]},{"mergingList":[{"name":1,"other":"a","mergingList":[{"name":2,"value":2,"other":"d"},{"name":1,"value":1}]},{"name":2,"other":"b"}]}],
["add map to merging list by pointer / two-way",{"mergeItemPtr":[{"name":1}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":2}]},{"mergeItemPtr":[{"name":1},{"name":2}]}],
["add map to merging list by pointer / three-way",{"mergeItemPtr":[{"name":1,"other":"a"},{"name":3}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":2}]},{"mergeItemPtr":[{"name":1,"other":"a"},{"name":2},{"name":3}]}],
["add map to merging list by pointer with conflict / two-way",{"mergeItemPtr":[{"name":1}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":2}]},{"mergeItemPtr":[{"name":1},{"name":2}]}],
["add map to merging list by pointer with conflict / three-way",{"mergeItemPtr":[{"name":3}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"name":1},{"name":2}]},{"mergeItemPtr":[{"name":1},{"name":2},{"name":3}]}],
["add field to map in merging list by pointer / two-way",{"mergeItemPtr":[{"name":1,"mergeItemPtr":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"name":1,"mergeItemPtr":[{"name":1,"value":1}]}]},{"mergeItemPtr":[{"name":1,"mergeItemPtr":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2}]}],
["add field to map in merging list by pointer / three-way",{"mergeItemPtr":[{"name":1,"other":"a","mergeItemPtr":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"name":1,"mergeItemPtr":[{"name":1,"value":1}]}]},{"mergeItemPtr":[{"name":1,"other":"a","mergeItemPtr":[{"name":1,"value":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"name":2,"other":"b"}]}],
["add field to map in merging list by pointer with conflict / two-way",{"mergeItemPtr":[{"name":1,"mergeItemPtr":[{"name":1},{"name":2,"value":2}]},{"name":2}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"name":1,"mergeItemPtr":[{"name":1,"value":1}]}]},{"mergeItemPtr":[{"name":1,"mergeItemPtr":[{"name":1,"value":1},{"name":2,"value":2}]},{"name":2}]}],
["add field to map in merging list by pointer with conflict / three-way",{"mergeItemPtr":[{"name":1,"other":"a","mergeItemPtr":[{"name":1,"value":"a"},{"name":2,"value":2,"other":"b"}]},{"name":2,"other":"b"}]},{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"mergeItemPtr":[{"$setElementOrder/mergeItemPtr":[{"name":1},{"name":2}],"name":1,"mergeItemPtr":[{"name":1,"value":1}]}]},{"mergeItemPtr":[{"name":1,"other":"a","mergeItemPtr":[{"name":1,"value":1},{"name":2,"value":2,"other":"b"}]},{"name":2,"other":"b"}]}],
["merge lists of scalars / two-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[1,2,3],"mergingIntList":[3]},{"mergingIntList":[1,2,3]}],
["merge lists of scalars / three-way",{"mergingIntList":[1,2,4]},{"$setElementOrder/mergingIntList":[1,2,3],"mergingIntList":[3]},{"mergingIntList":[1,2,3,4]}],
["add duplicate field to map in merging int list / two-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[1,2,3],"mergingIntList":[3]},{"mergingIntList":[1,2,3]}],
["add duplicate field to map in merging int list / three-way",{"mergingIntList":[1,2,3]},{},{"mergingIntList":[1,2,3]}],
["add an item in a list of primitives and preserve order / two-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[3,1,2],"mergingIntList":[3]},{"mergingIntList":[3,1,2]}],
["add an item in a list of primitives and preserve order / three-way",{"mergingIntList":[1,4,2]},{"$setElementOrder/mergingIntList":[3,1,2],"mergingIntList":[3]},{"mergingIntList":[3,1,4,2]}],
["delete an item in a list of primitives and preserve order / two-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[2,1],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[2,1]}],
["delete an item in a list of primitives and preserve order / three-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[2,1],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[2,1]}],
["add an item in a list and preserve order / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":3},{"name":1},{"name":2}],"mergingList":[{"name":3,"value":3}]},{"mergingList":[{"name":3,"value":3},{"name":1},{"name":2,"value":2}]}],
["add an item in a list and preserve order / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":3},{"name":1},{"name":2}],"mergingList":[{"name":3,"value":3}]},{"mergingList":[{"name":3,"value":3},{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]}],
["add multiple items in a list and preserve order / two-way",{"mergingList":[{"name":1},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":1},{"name":4},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]},{"mergingList":[{"name":1},{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3}]}],
["add multiple items in a list and preserve order / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"}]},{"$setElementOrder/mergingList":[{"name":1},{"name":4},{"name":2},{"name":3}],"mergingList":[{"name":4,"value":4},{"name":3,"value":3}]},{"mergingList":[{"name":1,"other":"a"},{"name":4,"value":4},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]}],
["delete an item in a list and preserve order / two-way",{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1}],"mergingList":[{"name":3,"$patch":"delete"}]},{"mergingList":[{"name":2,"value":2},{"name":1}]}],
["delete an item in a list and preserve order / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1}],"mergingList":[{"name":3,"$patch":"delete"}]},{"mergingList":[{"name":2,"value":2,"other":"b"},{"name":1,"other":"a"}]}],
["change an item in a list and preserve order / two-way",{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3},{"name":1}],"mergingList":[{"name":3,"value":"x"}]},{"mergingList":[{"name":2,"value":2},{"name":3,"value":"x"},{"name":1}]}],
["change an item in a list and preserve order / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]},{"$setElementOrder/mergingList":[{"name":2},{"name":3},{"name":1}],"mergingList":[{"name":3,"value":"x"}]},{"mergingList":[{"name":2,"value":2,"other":"b"},{"name":3,"value":"x"},{"name":1,"other":"a"}]}],
["add and delete an item in a list and preserve order / two-way",{"mergingList":[{"name":1},{"name":3,"value":3},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":1}],"mergingList":[{"name":4,"value":4},{"name":3,"$patch":"delete"}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":1}]}],
["add and delete an item in a list and preserve order / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2,"other":"b"},{"name":3,"value":3}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":1}],"mergingList":[{"name":4,"value":4},{"name":3,"$patch":"delete"}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2,"other":"b"},{"name":1,"other":"a"}]}],
["set elements order in a list / two-way",{"mergingList":[{"name":1},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1}]}],
["set elements order in a list / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1,"other":"a"}]}],
["set elements order in a list with server-only items / two-way",{"mergingList":[{"name":1},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1}]}],
["set elements order in a list with server-only items / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":3,"value":3},{"name":4,"value":4},{"name":2,"value":2},{"name":9}]},{"$setElementOrder/mergingList":[{"name":4},{"name":2},{"name":3},{"name":1}]},{"mergingList":[{"name":4,"value":4},{"name":2,"value":2},{"name":3,"value":3},{"name":1,"other":"a"},{"name":9}]}],
["set elements order in a list with server-only items 2 / two-way",{"mergingList":[{"name":1},{"name":2,"value":2},{"name":3,"value":3},{"name":4,"value":4}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]},{"mergingList":[{"name":2,"value":2},{"name":1},{"name":4,"value":4},{"name":3,"value":3}]}],
["set elements order in a list with server-only items 2 / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2},{"name":9},{"name":3,"value":3},{"name":4,"value":4}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]},{"mergingList":[{"name":2,"value":2},{"name":1,"other":"a"},{"name":9},{"name":4,"value":4},{"name":3,"value":3}]}],
["set elements order in a list with server-only items 3 / two-way",{"mergingList":[{"name":1},{"name":2,"value":2},{"name":3,"value":3},{"name":4,"value":4}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]},{"mergingList":[{"name":2,"value":2},{"name":1},{"name":4,"value":4},{"name":3,"value":3}]}],
["set elements order in a list with server-only items 3 / three-way",{"mergingList":[{"name":1,"other":"a"},{"name":2,"value":2},{"name":7},{"name":9},{"name":8},{"name":3,"value":3},{"name":4,"value":4}]},{"$setElementOrder/mergingList":[{"name":2},{"name":1},{"name":4},{"name":3}]},{"mergingList":[{"name":2,"value":2},{"name":1,"other":"a"},{"name":7},{"name":9},{"name":8},{"name":4,"value":4},{"name":3,"value":3}]}],
["add an item in a int list and preserve order / two-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[3,1,2],"mergingIntList":[3]},{"mergingIntList":[3,1,2]}],
["add an item in a int list and preserve order / three-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[3,1,2],"mergingIntList":[3]},{"mergingIntList":[3,1,2]}],
["add multiple items in a int list and preserve order / two-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[1,4,2,3],"mergingIntList":[4,3]},{"mergingIntList":[1,4,2,3]}],
["add multiple items in a int list and preserve order / three-way",{"mergingIntList":[1,2]},{"$setElementOrder/mergingIntList":[1,4,2,3],"mergingIntList":[4,3]},{"mergingIntList":[1,4,2,3]}],
["delete an item in a int list and preserve order / two-way",{"mergingIntList":[1,3,2]},{"$setElementOrder/mergingIntList":[2,1],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[2,1]}],
["delete an item in a int list and preserve order / three-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[2,1],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[2,1]}],
["add and delete an item in a int list and preserve order / two-way",{"mergingIntList":[1,3,2]},{"$setElementOrder/mergingIntList":[4,2,1],"mergingIntList":[4],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[4,2,1]}],
["add and delete an item in a int list and preserve order / three-way",{"mergingIntList":[1,2,3]},{"$setElementOrder/mergingIntList":[4,2,1],"mergingIntList":[4],"$deleteFromPrimitiveList/mergingIntList":[3]},{"mergingIntList":[4,2,1]}],
["set elements order in a int list / two-way",{"mergingIntList":[1,3,4,2]},{"$setElementOrder/mergingIntList":[4,2,3,1]},{"mergingIntList":[4,2,3,1]}],
["set elements order in a int list / three-way",{"mergingIntList":[1,3,4,2]},{"$setElementOrder/mergingIntList":[4,2,3,1]},{"mergingIntList":[4,2,3,1]}],
["set elements order in a int list with server-only items / two-way",{"mergingIntList":[1,3,4,2]},{"$setElementOrder/mergingIntList":[4,2,3,1]},{"mergingIntList":[4,2,3,1]}],
["set elements order in a int list with server-only items / three-way",{"mergingIntList":[1,3,4,2,9]},{"$setElementOrder/mergingIntList":[4,2,3,1]},{"mergingIntList":[4,2,3,1,9]}],
["set elements order in a int list with server-only items 2 / two-way",{"mergingIntList":[1,2,3,4]},{"$setElementOrder/mergingIntList":[2,1,4,3]},{"mergingIntList":[2,1,4,3]}],
["set elements order in a int list with server-only items 2 / three-way",{"mergingIntList":[1,2,9,3,4]},{"$setElementOrder/mergingIntList":[2,1,4,3]},{"mergingIntList":[2,1,9,4,3]}],
["set elements order in a int list with server-only items 3 / two-way",{"mergingIntList":[1,2,3,2,4]},{"$setElementOrder/mergingIntList":[2,1,4,3,2]},{"mergingIntList":[2,2,1,4,3]}],
["set elements order in a int list with server-only items 3 / three-way",{"mergingIntList":[1,2,3,2,4]},{"$setElementOrder/mergingIntList":[2,1,4,3,2]},{"mergingIntList":[2,2,1,4,3]}],
["retainKeys map should clear defaulted field / two-way",{},{"retainKeysMap":{"other":"bar"}},{"retainKeysMap":{"other":"bar"}}],
["retainKeys map should clear defaulted field / three-way",{"retainKeysMap":{"value":"foo"}},{"retainKeysMap":{"$retainKeys":["other"],"other":"bar"}},{"retainKeysMap":{"other":"bar"}}],
["retainKeys map should clear defaulted field with conflict (discriminated union) / two-way",{},{"retainKeysMap":{"name":"type2","other":"bar"}},{"retainKeysMap":{"name":"type2","other":"bar"}}],
["retainKeys map should clear defaulted field with conflict (discriminated union) / three-way",{"retainKeysMap":{"name":"type1","value":"foo"}},{"retainKeysMap":{"$retainKeys":["name","other"],"name":"type2","other":"bar"}},{"retainKeysMap":{"name":"type2","other":"bar"}}],
["retainKeys map adds a field / two-way",{"retainKeysMap":{"name":"foo"}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map adds a field / three-way",{"retainKeysMap":{"name":"foo"}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map adds a field and clear a field / two-way",{"retainKeysMap":{"name":"foo"}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map adds a field and clear a field / three-way",{"retainKeysMap":{"name":"foo","other":"a"}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map deletes a field / two-way",{"retainKeysMap":{"name":"foo","value":"bar"}},{"retainKeysMap":{"$retainKeys":["name"],"value":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map deletes a field / three-way",{"retainKeysMap":{"name":"foo","value":"bar"}},{"retainKeysMap":{"$retainKeys":["name"],"value":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map deletes a field and clears a field / two-way",{"retainKeysMap":{"name":"foo","value":"bar"}},{"retainKeysMap":{"$retainKeys":["name"],"value":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map deletes a field and clears a field / three-way",{"retainKeysMap":{"name":"foo","value":"bar","other":"a"}},{"retainKeysMap":{"$retainKeys":["name"],"value":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map clears a field / two-way",{"retainKeysMap":{"name":"foo","value":"bar"}},{},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map clears a field / three-way",{"retainKeysMap":{"name":"foo","value":"bar","other":"a"}},{"retainKeysMap":{"$retainKeys":["name","value"]}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map nested map with no change / two-way",{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"a"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a"}}}],
["retainKeys map nested map with no change / three-way",{"retainKeysMap":{"name":"foo","simpleMap":{"key1":"a"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a"}}}],
["retainKeys map adds a field in a nested map / two-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key2":"b"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b"}}}],
["retainKeys map adds a field in a nested map / three-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key3":"c"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key2":"b"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b","key3":"c"}}}],
["retainKeys map deletes a field in a nested map / two-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key2":null}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a"}}}],
["retainKeys map deletes a field in a nested map / three-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b","key3":"c"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key2":null}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key3":"c"}}}],
["retainKeys map changes a field in a nested map / two-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key1":"x"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"x","key2":"b"}}}],
["retainKeys map changes a field in a nested map / three-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"a","key2":"b","key3":"c"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key1":"x"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"x","key2":"b","key3":"c"}}}],
["retainKeys map changes a field in a nested map with conflict / two-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"old","key2":"b"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key1":"modified"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"modified","key2":"b"}}}],
["retainKeys map changes a field in a nested map with conflict / three-way",{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"new","key2":"b","key3":"c"}}},{"retainKeysMap":{"$retainKeys":["name","simpleMap","value"],"simpleMap":{"key1":"modified"}}},{"retainKeysMap":{"name":"foo","value":"bar","simpleMap":{"key1":"modified","key2":"b","key3":"c"}}}],
["retainKeys map replaces non-merging list / two-way",{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}]}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}]}}],
["retainKeys map replaces non-merging list / three-way",{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}]}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"c"},{"name":"b"}]}}],
["retainKeys map nested non-merging list with no change / two-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}}],
["retainKeys map nested non-merging list with no change / three-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}}],
["retainKeys map nested non-merging list with no change with conflict / two-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}}],
["retainKeys map nested non-merging list with no change with conflict / three-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}},{"retainKeysMap":{"$retainKeys":["name","nonMergingList","value"],"value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"name":"foo","value":"bar","nonMergingList":[{"name":"a"},{"name":"b"}]}}],
["retainKeys map deletes nested non-merging list / two-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","nonMergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map deletes nested non-merging list / three-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","nonMergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map delete nested non-merging list with conflict / two-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","nonMergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map delete nested non-merging list with conflict / three-way",{"retainKeysMap":{"name":"foo","nonMergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","nonMergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map nested merging int list with no change / two-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","mergingIntList":[1,2]}}],
["retainKeys map nested merging int list with no change / three-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name","value"],"$setElementOrder/mergingIntList":[1,2],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","mergingIntList":[1,2,3]}}],
["retainKeys map adds an item in nested merging int list / two-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2]}},{"retainKeysMap":{"$setElementOrder/mergingIntList":[1,2,4],"$retainKeys":["mergingIntList","name"],"mergingIntList":[4]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,4]}}],
["retainKeys map adds an item in nested merging int list / three-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$setElementOrder/mergingIntList":[1,2,4],"$retainKeys":["mergingIntList","name"],"mergingIntList":[4]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,4,3]}}],
["retainKeys map deletes an item in nested merging int list / two-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name"],"$deleteFromPrimitiveList/mergingIntList":[2],"$setElementOrder/mergingIntList":[1,3]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,3]}}],
["retainKeys map deletes an item in nested merging int list / three-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3,4]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name"],"$deleteFromPrimitiveList/mergingIntList":[2],"$setElementOrder/mergingIntList":[1,3]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,3,4]}}],
["retainKeys map adds an item and deletes an item in nested merging int list / two-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name"],"mergingIntList":[5],"$deleteFromPrimitiveList/mergingIntList":[2],"$setElementOrder/mergingIntList":[1,3,5]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,3,5]}}],
["retainKeys map adds an item and deletes an item in nested merging int list / three-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3,4]}},{"retainKeysMap":{"$retainKeys":["mergingIntList","name"],"mergingIntList":[5],"$deleteFromPrimitiveList/mergingIntList":[2],"$setElementOrder/mergingIntList":[1,3,5]}},{"retainKeysMap":{"name":"foo","mergingIntList":[1,3,5,4]}}],
["retainKeys map deletes nested merging int list / two-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$retainKeys":["name"],"mergingIntList":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map deletes nested merging int list / three-way",{"retainKeysMap":{"name":"foo","mergingIntList":[1,2,3]}},{"retainKeysMap":{"$retainKeys":["name"],"mergingIntList":null}},{"retainKeysMap":{"name":"foo"}}],
["retainKeys map nested merging list with no change / two-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name","value"],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","mergingList":[{"name":"a"},{"name":"b"}]}}],
["retainKeys map nested merging list with no change / three-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name","value"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"}],"value":"bar"}},{"retainKeysMap":{"name":"foo","value":"bar","mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}}],
["retainKeys map adds an item in nested merging list / two-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}],"mergingList":[{"name":"c"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}}],
["retainKeys map adds an item in nested merging list / three-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"},{"name":"x"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}],"mergingList":[{"name":"c"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"x"}]}}],
["retainKeys map changes an item in nested merging list / two-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b","value":"foo"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"}],"mergingList":[{"name":"b","value":"bar"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b","value":"bar"}]}}],
["retainKeys map changes an item in nested merging list / three-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b","value":"foo"},{"name":"x"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"},{"name":"b"}],"mergingList":[{"name":"b","value":"bar"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b","value":"bar"},{"name":"x"}]}}],
["retainKeys map deletes nested merging list / two-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","mergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map deletes nested merging list / three-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["name","value"],"value":"bar","mergingList":null}},{"retainKeysMap":{"name":"foo","value":"bar"}}],
["retainKeys map deletes an item in nested merging list / two-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"}],"mergingList":[{"name":"b","$patch":"delete"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"}]}}],
["retainKeys map deletes an item in nested merging list / three-way",{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"b"},{"name":"x"}]}},{"retainKeysMap":{"$retainKeys":["mergingList","name"],"$setElementOrder/mergingList":[{"name":"a"}],"mergingList":[{"name":"b","$patch":"delete"}]}},{"retainKeysMap":{"name":"foo","mergingList":[{"name":"a"},{"name":"x"}]}}],
["retainKeys list of maps clears a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]},{},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps clears a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps clears a field with conflict / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"old"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"modified"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"modified"}]}],
["retainKeys list of maps clears a field with conflict / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"modified"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"modified"}]}],
["retainKeys list of maps changes a field and clear a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"old"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"new"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new"}]}],
["retainKeys list of maps changes a field and clear a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"old","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"new"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new"}]}],
["retainKeys list of maps changes a field and clear a field with conflict / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"old"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"new"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new"}]}],
["retainKeys list of maps changes a field and clear a field with conflict / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"modified","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"new"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"new"}]}],
["retainKeys list of maps adds a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"a"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps adds a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"a"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps adds a field and clear a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"a"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps adds a field and clear a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name","value"],"name":"foo","value":"a"}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}],
["retainKeys list of maps deletes a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name"],"name":"foo","value":null}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}],
["retainKeys list of maps deletes a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name"],"name":"foo","value":null}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}],
["retainKeys list of maps deletes a field and clear a field / two-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name"],"name":"foo","value":null}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}],
["retainKeys list of maps deletes a field and clear a field / three-way",{"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a","other":"x"}]},{"$setElementOrder/retainKeysMergingList":[{"name":"bar"},{"name":"foo"}],"retainKeysMergingList":[{"$retainKeys":["name"],"name":"foo","value":null}]},{"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}],
["delete and reorder in one list, reorder in another / two-way",{"mergingList":[{"name":"a","value":"a"},{"name":"b","value":"b"}],"mergeItemPtr":[{"name":"c","value":"c"},{"name":"d","value":"d"}]},{"$setElementOrder/mergingList":[{"name":"b"}],"$setElementOrder/mergeItemPtr":[{"name":"d"},{"name":"c"}],"mergingList":[{"$patch":"delete","name":"a"}]},{"mergingList":[{"name":"b","value":"b"}],"mergeItemPtr":[{"name":"d","value":"d"},{"name":"c","value":"c"}]}],
["delete and reorder in one list, reorder in another / three-way",{"mergingList":[{"name":"a","value":"a"},{"name":"b","value":"b"}],"mergeItemPtr":[{"name":"c","value":"c"},{"name":"d","value":"d"}]},{"$setElementOrder/mergingList":[{"name":"b"}],"$setElementOrder/mergeItemPtr":[{"name":"d"},{"name":"c"}],"mergingList":[{"$patch":"delete","name":"a"}]},{"mergingList":[{"name":"b","value":"b"}],"mergeItemPtr":[{"name":"d","value":"d"},{"name":"c","value":"c"}]}]
]
"""
SMP_FIXTURES: list[list[Any]] = json.loads(FIXTURES_JSON)


@pytest.mark.parametrize(("name", "original", "patch", "expected"), SMP_FIXTURES, ids=[c[0] for c in SMP_FIXTURES])
def test_strategic_merge_patch_kubernetes_fixtures(
    merge_item_kind: None, name: str, original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy((original, patch))
    assert strategic_merge_patch(original, patch, "v1", "mergeItem") == expected
    assert (original, patch) == before


def test_kubernetes_fixtures_were_all_loaded() -> None:
    assert len(SMP_FIXTURES) == 228
