"""Authorization on the embedded Kubernetes API: the access reviews, and RBAC objects validated but not enforced.

The embedded API has one credential, the mesh's bearer token, and it may do everything: it stands for a member
of ``system:masters``, whom kube-apiserver allows every request before RBAC is consulted. So:

- a ``SelfSubjectAccessReview`` (``authorization.k8s.io/v1``) is answered ``allowed: true`` for any resource or
  non-resource attributes (``kubectl auth can-i``, a backend's preflight); a ``SelfSubjectRulesReview`` lists
  the rules of ``cluster-admin`` plus what every authenticated user may do (``kubectl auth can-i --list``).
  Neither is stored: create answers the review with its status, as kube-apiserver does;
- Roles, RoleBindings, ClusterRoles and ClusterRoleBindings (``rbac.authorization.k8s.io/v1``) are stored as
  ordinary objects, so that ``kubectl apply`` of an RBAC manifest works and a backend can create the Role of
  its reaper. They are defaulted and validated as kube-apiserver does (a binding's ``roleRef`` is required and
  cannot change), but **nothing enforces them**: a request is never refused for want of a rule. Tests that need
  a refusal (403) must get it elsewhere.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ApiError, Cause

__all__ = [
    "ALLOWED_REASON",
    "RBAC_GROUP",
    "RBAC_KINDS",
    "default_rbac",
    "review",
    "validate_rbac",
]

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
AUTHORIZATION_VERSION = "authorization.k8s.io/v1"
ALLOWED_REASON = (
    "the embedded mesh's bearer token is cluster-admin: every request is allowed (RBAC objects are stored, not "
    "enforced)"
)
"""The ``status.reason`` of every access review (kube-apiserver gives the rule that allowed it)."""

# What a system:masters user holds on a kubeadm cluster: cluster-admin, and the rules every authenticated user
# has (system:basic-user, system:discovery, system:public-info-viewer).
RESOURCE_RULES: tuple[dict[str, list[str]], ...] = (
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    },
)
NON_RESOURCE_RULES: tuple[dict[str, list[str]], ...] = (
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
    {
        "verbs": ["get"],
        "nonResourceURLs": [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/openapi",
            "/openapi/*",
            "/readyz",
            "/version",
            "/version/",
        ],
    },
)


# ------------------------------------------------------------------------------------------ access reviews


def review(obj: dict[str, Any]) -> dict[str, Any]:
    """The answer to an access review ``obj`` (a ``SelfSubjectAccessReview`` or ``SelfSubjectRulesReview`` of
    ``authorization.k8s.io/v1``, apiVersion and kind already checked against the URL): the review with its
    status, to send with 201. Invalid → 422 (SelfSubjectAccessReview), 400 (a rules review without a
    namespace), as kube-apiserver answers."""
    kind = obj.get("kind")
    if kind == "SelfSubjectAccessReview":
        return _access_review(obj)
    if kind == "SelfSubjectRulesReview":
        return _rules_review(obj)
    raise ApiError(400, f"not an access review: {kind}")


def _access_review(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise ApiError(400, "SelfSubjectAccessReview.spec must be an object")
    spec = spec or {}
    resource_attributes = spec.get("resourceAttributes")
    non_resource_attributes = spec.get("nonResourceAttributes")
    causes: list[Cause] = []
    if resource_attributes is not None and non_resource_attributes is not None:
        causes.append(
            Cause(
                "spec.nonResourceAttributes",
                f"Invalid value: {_go_value(non_resource_attributes)}: "
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if resource_attributes is None and non_resource_attributes is None:
        causes.append(
            Cause(
                "spec.resourceAttributes",
                "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    metadata = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields" and v not in (None, "", {}, [])
    }
    if metadata:
        causes.append(Cause("metadata", f"Invalid value: {_go_value(metadata)}: must be empty"))
    if causes:
        raise ApiError.invalid("SelfSubjectAccessReview", "", causes, group="authorization.k8s.io")
    answered = copy.deepcopy(obj)
    answered["metadata"] = {"creationTimestamp": None}
    answered["status"] = {"allowed": True, "reason": ALLOWED_REASON}
    return answered


def _rules_review(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    namespace = spec.get("namespace") if isinstance(spec, dict) else None
    if not namespace:
        raise ApiError(400, "no namespace on request")
    # kube-apiserver answers a new object: the spec it was asked about is not repeated.
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": AUTHORIZATION_VERSION,
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": {
            "resourceRules": copy.deepcopy(list(RESOURCE_RULES)),
            "nonResourceRules": copy.deepcopy(list(NON_RESOURCE_RULES)),
            "incomplete": False,
        },
    }


# ------------------------------------------------------------------------------------------ RBAC objects


def default_rbac(obj: dict[str, Any]) -> None:
    """Fill in what RBAC's v1 defaulting fills in: a binding's ``roleRef.apiGroup`` and the ``apiGroup`` of its
    User and Group subjects (``rbac.authorization.k8s.io``)."""
    kind = obj.get("kind")
    if kind not in ("RoleBinding", "ClusterRoleBinding"):
        return
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict) and not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = RBAC_GROUP
    for subject in obj.get("subjects") or ():
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = RBAC_GROUP


def validate_rbac(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Refuse (422, worded as kube-apiserver's RBAC validation) a Role, ClusterRole, RoleBinding or
    ClusterRoleBinding that Kubernetes would refuse: a rule without verbs, api groups or resources; a binding
    without a valid ``roleRef`` or with a malformed subject; a changed ``roleRef`` (``old`` is the stored
    object on an update). Other kinds pass."""
    kind = str(obj.get("kind", ""))
    if kind not in RBAC_KINDS:
        return
    causes: list[Cause] = []
    if kind in ("Role", "ClusterRole"):
        rules = obj.get("rules") or []
        if not isinstance(rules, list):
            rules = []
        for index, rule in enumerate(rules):
            causes += _rule_causes(rule if isinstance(rule, dict) else {}, kind == "Role", f"rules[{index}]")
    else:
        causes += _binding_causes(obj, kind)
        if old is not None and _role_ref(old) != _role_ref(obj):
            causes.append(Cause("roleRef", f"Invalid value: {_go_value(_role_ref(obj))}: cannot change roleRef"))
    if causes:
        name = str((obj.get("metadata") or {}).get("name") or "")
        raise ApiError.invalid(kind, name, causes, group=RBAC_GROUP)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _rule_causes(rule: dict[str, Any], namespaced: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    verbs, groups = _strings(rule.get("verbs")), _strings(rule.get("apiGroups"))
    resources, names = _strings(rule.get("resources")), _strings(rule.get("resourceNames"))
    urls = _strings(rule.get("nonResourceURLs"))
    if not verbs:
        causes.append(_required(f"{path}.verbs", "verbs must contain at least one value"))
    if urls:
        if namespaced:
            causes.append(
                Cause(
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {_go_value(urls)}: namespaced rules cannot apply to non-resource URLs",
                )
            )
        if groups or resources or names:
            causes.append(
                Cause(
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {_go_value(urls)}: rules cannot apply "
                    "to both regular resources and non-resource URLs",
                )
            )
        return causes
    if not groups:
        causes.append(_required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not resources:
        causes.append(_required(f"{path}.resources", "resource rules must supply at least one resource"))
    if names and len(resources) > 1:
        causes.append(_required(f"{path}.resourceNames", "resource names cannot apply to multiple resources"))
    return causes


def _role_ref(obj: dict[str, Any]) -> dict[str, str]:
    ref = obj.get("roleRef")
    ref = ref if isinstance(ref, dict) else {}
    return {key: str(ref.get(key) or "") for key in ("apiGroup", "kind", "name")}


def _binding_causes(obj: dict[str, Any], kind: str) -> list[Cause]:
    causes: list[Cause] = []
    ref = _role_ref(obj)
    if ref["apiGroup"] != RBAC_GROUP:
        causes.append(_not_supported("roleRef.apiGroup", ref["apiGroup"], [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if kind == "RoleBinding" else ["ClusterRole"]
    if ref["kind"] not in kinds:
        causes.append(_not_supported("roleRef.kind", ref["kind"], kinds))
    if not ref["name"]:
        causes.append(_required("roleRef.name"))
    else:
        causes += [
            Cause("roleRef.name", f"Invalid value: {_go_value(ref['name'])}: {message}")
            for message in _path_segment_problems(ref["name"])
        ]
    subjects = obj.get("subjects") or []
    for index, subject in enumerate(subjects if isinstance(subjects, list) else []):
        causes += _subject_causes(
            subject if isinstance(subject, dict) else {}, kind == "RoleBinding", f"subjects[{index}]"
        )
    return causes


def _subject_causes(subject: dict[str, Any], namespaced: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = str(subject.get("name") or "")
    group = str(subject.get("apiGroup") or "")
    kind = str(subject.get("kind") or "")
    if not name:
        causes.append(_required(f"{path}.name"))
    if kind == "ServiceAccount":
        if group:
            causes.append(_not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            causes.append(_required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if not name:
            causes.append(Cause(f"{path}.name", f'Invalid value: "": {kind.lower()} name cannot be empty'))
        if group != RBAC_GROUP:
            causes.append(_not_supported(f"{path}.apiGroup", group, [RBAC_GROUP]))
    else:
        causes.append(_not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return causes


def _path_segment_problems(name: str) -> list[str]:
    """``path.IsValidPathSegmentName``: what RBAC names must be (usable as one URL path segment)."""
    problems = []
    if name in (".", ".."):
        problems.append(f"may not be '{name}'")
    for forbidden in ("/", "%"):
        if forbidden in name:
            problems.append(f"may not contain '{forbidden}'")
    return problems


def _required(path: str, detail: str = "") -> Cause:
    return Cause(path, f"Required value: {detail}" if detail else "Required value", "FieldValueRequired")


def _not_supported(path: str, value: str, supported: list[str]) -> Cause:
    listed = ", ".join(json.dumps(s) for s in supported)
    return Cause(path, f"Unsupported value: {json.dumps(value)}: supported values: {listed}", "FieldValueNotSupported")


def _go_value(value: Any) -> str:
    """A bad value as Kubernetes' field errors print it: strings quoted, anything else as JSON."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
