"""The embedded Kubernetes API's authorization group and RBAC objects, in process (issue 12).

``authorization.k8s.io/v1`` access reviews are answered, not stored: the mesh's token may do everything.
``rbac.authorization.k8s.io/v1`` objects are stored, defaulted and validated as kube-apiserver does, printed
as ``kubectl get`` shows them, described in discovery and OpenAPI, and go with their namespace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pytest_clover.backends.local.kube import authorization, openapi, protobuf
from pytest_clover.backends.local.kube import resources as res
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.hooks import NoHooks
from pytest_clover.backends.local.kube.server import create_app
from pytest_clover.backends.local.kube.store import Store

TOKEN = "token-of-this-mesh"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSRR = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
ROLES = f"{RBAC}/namespaces/default/roles"
BINDINGS = f"{RBAC}/namespaces/default/rolebindings"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
WAIT = 5.0


class Api:
    """JSON in, (status, body) out, with the mesh's token."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=sent) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


def run(scenario: Callable[[Api], Awaitable[None]]) -> None:
    async def main() -> None:
        app = create_app(store=Store(), hooks=NoHooks(), token=TOKEN)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(Api(client))

    asyncio.run(main())


def access_review(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}


def role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": list(rules),
    }


def binding(name: str, role_name: str, *subjects: dict[str, Any], kind: str = "RoleBinding") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "roleRef": {"kind": "Role" if kind == "RoleBinding" else "ClusterRole", "name": role_name},
        "subjects": list(subjects),
    }


# ------------------------------------------------------------------------------------------ access reviews


def test_self_subject_access_review_is_allowed_for_anything_and_not_stored() -> None:
    async def scenario(api: Api) -> None:
        status, body = await api.call(
            "POST",
            SSAR,
            access_review(resourceAttributes={"namespace": "default", "verb": "create", "resource": "pods"}),
        )
        assert status == 201, body
        assert body["status"] == {"allowed": True, "reason": authorization.ALLOWED_REASON}
        assert body["spec"]["resourceAttributes"]["resource"] == "pods"
        assert body["kind"] == "SelfSubjectAccessReview" and body["apiVersion"] == "authorization.k8s.io/v1"
        assert body["metadata"] == {"creationTimestamp": None}
        status, body = await api.call(
            "POST", SSAR, access_review(nonResourceAttributes={"path": "/healthz", "verb": "get"})
        )
        assert (status, body["status"]["allowed"]) == (201, True)
        # Create is all a review answers: there is nothing to list or read back.
        listed, _ = await api.call("GET", SSAR)
        read, _ = await api.call("GET", f"{SSAR}/anything")
        assert (listed, read) == (405, 405)

    run(scenario)


@pytest.mark.parametrize(
    ("review", "field", "words"),
    [
        (access_review(), "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes"),
        (
            access_review(resourceAttributes={"verb": "get"}, nonResourceAttributes={"path": "/", "verb": "get"}),
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        ),
        (
            {**access_review(resourceAttributes={"verb": "get"}), "metadata": {"name": "mine"}},
            "metadata",
            "must be empty",
        ),
    ],
)
def test_self_subject_access_review_refusals_are_kubernetes_ones(
    review: dict[str, Any], field: str, words: str
) -> None:
    async def scenario(api: Api) -> None:
        status, body = await api.call("POST", SSAR, review)
        assert status == 422, body
        assert body["reason"] == "Invalid" and body["details"]["group"] == "authorization.k8s.io"
        assert [c["field"] for c in body["details"]["causes"]] == [field]
        assert words in body["message"]

    run(scenario)


def _proto(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_access_review_as_kubectl_sends_it_in_protobuf() -> None:
    # `kubectl auth can-i create pods -n default`: a typed client's protobuf body.
    attributes = _proto(1, b"default") + _proto(2, b"create") + _proto(5, b"pods")
    body = _proto(2, _proto(1, attributes))
    type_meta = _proto(1, b"authorization.k8s.io/v1") + _proto(2, b"SelfSubjectAccessReview")
    data = b"k8s\x00" + _proto(1, type_meta) + _proto(2, body)
    decoded = protobuf.decode(data)
    assert decoded["spec"] == {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}}

    async def scenario(api: Api) -> None:
        status, answer = await api.call(
            "POST",
            SSAR,
            data=data,
            headers={"Content-Type": protobuf.MEDIA_TYPE, "Accept": f"{protobuf.MEDIA_TYPE},application/json"},
        )
        assert (status, answer["status"]["allowed"]) == (201, True)

    run(scenario)


def test_self_subject_rules_review_lists_cluster_admin_rules() -> None:
    async def scenario(api: Api) -> None:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": "default"},
        }
        status, body = await api.call("POST", SSRR, review)
        assert status == 201, body
        rules = body["status"]
        assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in rules["resourceRules"]
        assert {"verbs": ["*"], "nonResourceURLs": ["*"]} in rules["nonResourceRules"]
        assert rules["incomplete"] is False
        status, body = await api.call("POST", SSRR, {**review, "spec": {}})
        assert (status, body["message"]) == (400, "no namespace on request")

    run(scenario)


def test_discovery_and_openapi_describe_the_new_groups() -> None:
    legacy = res.legacy_discovery("/apis/authorization.k8s.io/v1")
    assert legacy is not None
    entries = {r["name"]: r for r in legacy["resources"]}
    assert entries["selfsubjectaccessreviews"]["verbs"] == ["create"]
    # Nothing is stored, so there is no storage version to hash.
    assert "storageVersionHash" not in entries["selfsubjectaccessreviews"]
    groups = [g["name"] for g in (res.legacy_discovery("/apis") or {})["groups"]]
    assert (
        groups.index("authorization.k8s.io")
        < groups.index("rbac.authorization.k8s.io")
        < groups.index("apiextensions.k8s.io")
    )
    aggregated = res.aggregated_discovery("apis")
    rbac = next(item for item in aggregated["items"] if item["metadata"]["name"] == "rbac.authorization.k8s.io")
    scopes = {r["resource"]: r["scope"] for r in rbac["versions"][0]["resources"]}
    assert scopes == {
        "clusterrolebindings": "Cluster",
        "clusterroles": "Cluster",
        "rolebindings": "Namespaced",
        "roles": "Namespaced",
    }
    index = openapi.openapi_v3_index()["paths"]
    assert {"apis/authorization.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1"} <= index.keys()
    document = json.loads(openapi.openapi_v3("apis/authorization.k8s.io/v1") or b"{}")
    assert set(document["paths"][SSAR]) == {"post", "parameters"}
    assert "io.k8s.api.authorization.v1.SelfSubjectAccessReview" in document["components"]["schemas"]
    rbac_document = json.loads(openapi.openapi_v3("apis/rbac.authorization.k8s.io/v1") or b"{}")
    assert "patch" in rbac_document["paths"][f"{RBAC}/namespaces/{{namespace}}/roles/{{name}}"]
    assert openapi.unknown_fields(
        role("r", {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "typo": 1})
    ) == [".rules[0].typo"]


# ------------------------------------------------------------------------------------------ RBAC objects


def test_rbac_objects_are_stored_defaulted_and_printed() -> None:
    async def scenario(api: Api) -> None:
        status, created = await api.call(
            "POST",
            ROLES,
            role(
                "system:reaper",
                {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get", "patch"]},
            ),
        )
        assert status == 201, created
        assert "generation" not in created["metadata"]
        status, bound = await api.call(
            "POST",
            BINDINGS,
            binding(
                "reaper",
                "system:reaper",
                {"kind": "ServiceAccount", "name": "reaper", "namespace": "default"},
                {"kind": "User", "name": "alice"},
            ),
        )
        assert status == 201, bound
        # RBAC's v1 defaulting: the role's group, and the group of user and group subjects.
        assert bound["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        assert bound["subjects"][1]["apiGroup"] == "rbac.authorization.k8s.io"
        assert "apiGroup" not in bound["subjects"][0]
        _, table = await api.call("GET", BINDINGS, headers={"Accept": TABLE})
        assert [c["name"] for c in table["columnDefinitions"]] == [
            "Name",
            "Role",
            "Age",
            "Users",
            "Groups",
            "ServiceAccounts",
        ]
        assert table["rows"][0]["cells"][:2] == ["reaper", "Role/system:reaper"]
        assert table["rows"][0]["cells"][3:] == ["alice", "", "default/reaper"]
        _, roles = await api.call("GET", ROLES, headers={"Accept": TABLE})
        assert [c["name"] for c in roles["columnDefinitions"]] == ["Name", "Created At"]
        status, cluster_role = await api.call(
            "POST",
            f"{RBAC}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "preflight"},
                "rules": [{"nonResourceURLs": ["/version"], "verbs": ["get"]}],
            },
        )
        assert status == 201, cluster_role
        status, _ = await api.call(
            "POST",
            f"{RBAC}/clusterrolebindings",
            binding("preflight", "preflight", {"kind": "Group", "name": "testers"}, kind="ClusterRoleBinding"),
        )
        assert status == 201

    run(scenario)


@pytest.mark.parametrize(
    ("path", "obj", "fields"),
    [
        (ROLES, role("r", {"resources": ["pods"]}), ["rules[0].verbs", "rules[0].apiGroups"]),
        (ROLES, role("r", {"verbs": ["get"], "nonResourceURLs": ["/x"]}), ["rules[0].nonResourceURLs"]),
        (BINDINGS, {**binding("b", "r"), "roleRef": {"kind": "Secret", "name": "r"}}, ["roleRef.kind"]),
        (BINDINGS, binding("b", "", {"kind": "Robot", "name": "x"}), ["roleRef.name", "subjects[0].kind"]),
        (
            f"{RBAC}/clusterrolebindings",
            binding("b", "r", {"kind": "ServiceAccount", "name": "sa"}, kind="ClusterRoleBinding"),
            ["subjects[0].namespace"],
        ),
    ],
)
def test_rbac_objects_kubernetes_refuses_are_refused(path: str, obj: dict[str, Any], fields: list[str]) -> None:
    async def scenario(api: Api) -> None:
        status, body = await api.call("POST", path, obj)
        assert status == 422, body
        assert [c["field"] for c in body["details"]["causes"]] == fields
        assert body["details"]["group"] == "rbac.authorization.k8s.io"

    run(scenario)


def test_a_bindings_role_cannot_change() -> None:
    async def scenario(api: Api) -> None:
        status, _ = await api.call("POST", BINDINGS, binding("b", "first"))
        assert status == 201
        status, body = await api.call(
            "PATCH",
            f"{BINDINGS}/b",
            {"roleRef": {"name": "second"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert status == 422, body
        assert body["details"]["causes"][0]["field"] == "roleRef"
        assert "cannot change roleRef" in body["message"]
        status, body = await api.call(
            "PATCH",
            f"{BINDINGS}/b",
            {"subjects": [{"kind": "Group", "name": "g"}]},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert status == 200, body

    run(scenario)


def test_deleting_a_namespace_deletes_its_roles_and_bindings() -> None:
    async def scenario(api: Api) -> None:
        assert (await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "run"}}))[0] == 201
        assert (
            await api.call(
                "POST",
                f"{RBAC}/namespaces/run/roles",
                role("r", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
            )
        )[0] == 201
        assert (await api.call("POST", f"{RBAC}/namespaces/run/rolebindings", binding("b", "r")))[0] == 201
        assert (await api.call("DELETE", "/api/v1/namespaces/run"))[0] == 200
        async with asyncio.timeout(WAIT):
            while (await api.call("GET", "/api/v1/namespaces/run"))[0] != 404:
                await asyncio.sleep(0.01)
        for plural in ("roles", "rolebindings"):
            status, listed = await api.call("GET", f"{RBAC}/{plural}")
            assert status == 200 and listed["items"] == [], listed

    run(scenario)


def test_validation_helpers_directly() -> None:
    with pytest.raises(ApiError) as refused:
        authorization.validate_rbac(
            role("r", {"verbs": ["get"], "apiGroups": [""], "resources": ["a", "b"], "resourceNames": ["x"]}), None
        )
    assert refused.value.causes[0].field == "rules[0].resourceNames"
    authorization.validate_rbac({"kind": "ConfigMap"}, None)  # other kinds pass untouched
    with pytest.raises(ApiError) as unnamed:
        authorization.review({"kind": "SelfSubjectRulesReview", "spec": {}})
    assert unnamed.value.code == 400
