"""Faults become Istio objects merged into the service's VirtualService, and revert exactly."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pytest_clover.errors import InvalidFault
from pytest_clover.istio import parse_istio_text
from pytest_clover.istio.documents import (
    ORIGINAL_ANNOTATION,
    fault_document,
    faulted_virtual_services,
    restored_document,
)

CANARY: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "http-lb"},
    "spec": {
        "hosts": ["http-lb"],
        "http": [
            {
                "name": "canary",
                "route": [
                    {"destination": {"host": "http-lb", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "http-lb", "subset": "v2"}, "weight": 20},
                ],
                "timeout": "3s",
            }
        ],
    },
}
GATEWAY_VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "sdcsample"},
    "spec": {"hosts": ["*"], "gateways": ["sdc-gateway"], "http": [{"route": [{"destination": {"host": "http-lb"}}]}]},
}


def _valid(doc: dict[str, Any]) -> None:
    objects, problems = parse_istio_text(yaml.safe_dump(doc))
    assert [p for p in problems if p.severity == "error"] == [] and len(objects) == 1


def test_delay_is_merged_into_the_existing_virtual_service_keeping_its_routes() -> None:
    doc = fault_document([GATEWAY_VS, CANARY], "http-lb", delay="500ms", percent=50)
    assert doc["metadata"]["name"] == "http-lb"
    route = doc["spec"]["http"][0]
    assert route["route"] == CANARY["spec"]["http"][0]["route"] and route["timeout"] == "3s"
    assert route["fault"] == {"delay": {"fixedDelay": "500ms", "percentage": {"value": 50.0}}}
    _valid(doc)


def test_delay_and_abort_are_independent() -> None:
    with_delay = fault_document([CANARY], "http-lb", delay="200ms")
    both = fault_document([with_delay], "http-lb", abort_status=503, percent=10)
    fault = both["spec"]["http"][0]["fault"]
    assert fault["delay"]["fixedDelay"] == "200ms" and fault["abort"] == {
        "httpStatus": 503,
        "percentage": {"value": 10.0},
    }
    # The original spec recorded at the first injection survives the second.
    assert restored_document(both) == CANARY


def test_header_scoped_fault_is_a_copy_of_the_route_placed_first() -> None:
    doc = fault_document([CANARY], "http-lb", abort_status=503, headers={"End-User": "jason"})
    first, second = doc["spec"]["http"]
    assert first["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert first["fault"]["abort"]["httpStatus"] == 503 and first["route"] == second["route"]
    assert "fault" not in second and second["name"] == "canary"
    _valid(doc)


def test_subset_scope_only_touches_routes_to_that_subset() -> None:
    two_routes = copy.deepcopy(CANARY)
    two_routes["spec"]["http"].insert(
        0, {"match": [{"uri": {"prefix": "/v1"}}], "route": [{"destination": {"host": "http-lb", "subset": "v1"}}]}
    )
    two_routes["spec"]["http"][1]["route"] = [{"destination": {"host": "http-lb", "subset": "v2"}}]
    doc = fault_document([two_routes], "http-lb", delay="1s", subset="v2")
    assert "fault" not in doc["spec"]["http"][0] and "fault" in doc["spec"]["http"][1]
    with pytest.raises(InvalidFault, match="subset 'v3'"):
        fault_document([two_routes], "http-lb", delay="1s", subset="v3")


def test_a_service_without_a_virtual_service_gets_one_that_clear_deletes() -> None:
    doc = fault_document([GATEWAY_VS], "clover-server", abort_status=500, percent=100)
    assert doc["spec"]["hosts"] == ["clover-server"] and doc["metadata"]["name"] == "clover-server"
    _valid(doc)
    assert faulted_virtual_services([GATEWAY_VS, doc]) == [doc]
    assert restored_document(doc) is None


def test_restore_gives_back_the_exact_original() -> None:
    doc = fault_document([CANARY], "http-lb", delay="100ms")
    assert ORIGINAL_ANNOTATION in doc["metadata"]["annotations"]
    assert restored_document(doc) == CANARY
    assert faulted_virtual_services([CANARY]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either a delay or an abort"),
        ({"delay": "1s", "abort_status": 503}, "either a delay or an abort"),
        ({"delay": "soon"}, "not a duration"),
        ({"delay": "1s", "percent": 120}, "percent must be from 0 to 100"),
    ],
)
def test_bad_fault_requests_say_what_to_do(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFault, match=message):
        fault_document([CANARY], "http-lb", **kwargs)


def test_source_scoped_fault_is_a_copy_of_the_route_for_those_callers_placed_first() -> None:
    doc = fault_document([CANARY], "http-lb", abort_status=503, source_labels={"app": "proxy", "version": "v2"})
    first, original = doc["spec"]["http"]
    assert first["match"] == [{"sourceLabels": {"app": "proxy", "version": "v2"}}]
    assert first["fault"] == {"abort": {"httpStatus": 503, "percentage": {"value": 100.0}}}
    assert first["route"] == CANARY["spec"]["http"][0]["route"] and "name" not in first
    assert "fault" not in original  # every other caller keeps the unfaulted route
    both = fault_document([CANARY], "http-lb", delay="1s", headers={"end-user": "jason"}, source_labels={"v": "2"})
    assert both["spec"]["http"][0]["match"] == [
        {"headers": {"end-user": {"exact": "jason"}}, "sourceLabels": {"v": "2"}}
    ]
    _valid(doc)
    _valid(both)
