"""The guarded JSON patches the k8s backend changes Istio objects with: exact, and never clobbering."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.k8s.jsondiff import changed_paths, diff, guarded_patch, strip_server_fields
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.patch import json_patch

keys = st.sampled_from(["a", "b", "c/d", "e~f", "http", "fault"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=12,
)
objects = st.dictionaries(keys, values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(objects, objects)
def test_the_patch_turns_base_into_desired(base: dict[str, Any], desired: dict[str, Any]) -> None:
    patched = json_patch(copy.deepcopy(base), guarded_patch(base, desired))
    assert patched == desired


@settings(max_examples=200, deadline=None)
@given(objects)
def test_no_change_no_operation(doc: dict[str, Any]) -> None:
    assert diff(doc, copy.deepcopy(doc)) == []


def _vs() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "http-lb", "namespace": "ns", "resourceVersion": "7", "uid": "u",
                     "managedFields": [{"manager": "kubectl"}], "labels": {"app": "lb"}},
        "spec": {"hosts": ["http-lb"], "http": [{"name": "canary", "route": [{"destination": {"host": "a"}}]},
                                                 {"name": "rest", "route": [{"destination": {"host": "b"}}]}]},
        "status": {"validationMessages": []},
    }  # fmt: skip


def test_server_fields_are_not_part_of_the_document() -> None:
    stripped = strip_server_fields(_vs())
    assert stripped["metadata"] == {"name": "http-lb", "namespace": "ns", "labels": {"app": "lb"}}
    assert "status" not in stripped


def test_someone_elses_edit_of_another_route_is_kept() -> None:
    base = strip_server_fields(_vs())
    desired = copy.deepcopy(base)
    desired["spec"]["http"][0]["fault"] = {"abort": {"httpStatus": 503, "percentage": {"value": 100.0}}}
    ops = guarded_patch(base, desired)
    theirs = copy.deepcopy(base)
    theirs["spec"]["http"][1]["timeout"] = "2s"
    assert changed_paths(ops, base, theirs) == []
    merged = json_patch(copy.deepcopy(theirs), ops)
    assert merged["spec"]["http"][1]["timeout"] == "2s"
    assert merged["spec"]["http"][0]["fault"]["abort"]["httpStatus"] == 503


def test_an_edit_of_the_same_field_makes_the_patch_fail_and_is_named() -> None:
    base = strip_server_fields(_vs())
    base["spec"]["http"][0]["fault"] = {"delay": {"fixedDelay": "1s"}}
    desired = copy.deepcopy(base)
    del desired["spec"]["http"][0]["fault"]  # the revert
    ops = guarded_patch(base, desired)
    theirs = copy.deepcopy(base)
    theirs["spec"]["http"][0]["fault"] = {"delay": {"fixedDelay": "9s"}}
    assert changed_paths(ops, base, theirs) == ["/spec/http/0/fault"]
    with pytest.raises(ApiError):
        json_patch(copy.deepcopy(theirs), ops)
