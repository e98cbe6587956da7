"""The resources the embedded Kubernetes API serves, and the discovery documents that describe them.

:data:`RESOURCES` is the one table of what is served (group, versions, kind, plural, scope, verbs, short
names, categories, subresources). Everything a client learns about the API before its first real request
is derived from it here: the legacy discovery documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``,
``/apis/<group>/<version>``) and the aggregated ones (``apidiscovery.k8s.io`` v2 and v2beta1) that kubectl
1.33 and the Python client ask for first. The OpenAPI documents live in :mod:`.openapi`, server-side
printing in :mod:`.tables`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "RESOURCES",
    "STORED_RESOURCES",
    "Resource",
    "Subresource",
    "aggregated_discovery",
    "by_key",
    "by_kind",
    "by_short_name",
    "find",
    "groups",
    "legacy_discovery",
    "negotiate_discovery",
    "subresource",
]

# The verbs of a resource with the full generic REST storage behind it.
ALL_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# The access reviews are asked, not kept: create is all they answer.
REVIEW_VERBS: tuple[str, ...] = ("create",)
# Namespaces cannot be deleted as a collection in Kubernetes.
NAMESPACE_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
ISTIO_CATEGORIES: tuple[str, ...] = ("istio-io", "networking-istio-io")
ISTIO_VERSIONS: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3")


@dataclass(frozen=True)
class Subresource:
    """What a subresource answers with and accepts: ``kind`` in ``group``/``version`` (``deployments/scale``
    is an ``autoscaling/v1`` ``Scale``; ``pods/exec`` a ``PodExecOptions``) and its verbs. An empty ``kind``
    means the parent's kind, group and version."""

    name: str
    verbs: tuple[str, ...]
    kind: str = ""
    group: str | None = None
    version: str | None = None


# Kubernetes' subresources by name, as the kube-apiserver lists them in discovery.
SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource("status", ("get", "patch", "update")),
    "scale": Subresource("scale", ("get", "patch", "update"), "Scale", "autoscaling", "v1"),
    "log": Subresource("log", ("get",)),
    "proxy": Subresource("proxy", ("create", "delete", "get", "patch", "update"), "PodProxyOptions", "", "v1"),
    "portforward": Subresource("portforward", ("create", "get"), "PodPortForwardOptions", "", "v1"),
    "exec": Subresource("exec", ("create", "get"), "PodExecOptions", "", "v1"),
    "eviction": Subresource("eviction", ("create",), "Eviction", "policy", "v1"),
    "token": Subresource("token", ("create",), "TokenRequest", "authentication.k8s.io", "v1"),
    "finalize": Subresource("finalize", ("update",)),
}
SERVICE_PROXY = Subresource("proxy", ("create", "delete", "get", "patch", "update"), "ServiceProxyOptions", "", "v1")


@dataclass(frozen=True)
class Resource:
    """One served resource: ``group`` ("" for the core group), ``versions`` (the preferred first), ``plural``
    (the URL segment), ``singular``, ``kind``, scope (``namespaced``), ``verbs``, ``short_names``,
    ``categories`` and ``subresources`` (names, e.g. ``("status", "scale")``). ``stored`` is False for a
    resource whose create answers a computed object and keeps nothing (the access reviews)."""

    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    stored: bool = True

    @property
    def key(self) -> str:
        """``"<group>/<plural>"``: ``"/pods"``, ``"apps/deployments"``."""
        return f"{self.group}/{self.plural}"

    @property
    def preferred_version(self) -> str:
        """The version clients should use: the first served one."""
        return self.versions[0]

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of the preferred version: ``"v1"``, ``"apps/v1"``."""
        return group_version(self.group, self.preferred_version)

    @property
    def list_kind(self) -> str:
        """The kind of a list of these: ``PodList``."""
        return f"{self.kind}List"

    @property
    def scope(self) -> str:
        """``"Namespaced"`` or ``"Cluster"``, as discovery and CRDs spell it."""
        return "Namespaced" if self.namespaced else "Cluster"

    def subresource(self, name: str) -> Subresource | None:
        """The served subresource ``name`` of this resource (``services/proxy`` differs from ``pods/proxy``)."""
        if name not in self.subresources:
            return None
        if name == "proxy" and self.key == "/services":
            return SERVICE_PROXY
        return SUBRESOURCES[name]


def group_version(group: str, version: str) -> str:
    """``apiVersion`` of ``group`` and ``version``: the core group has no prefix."""
    return f"{group}/{version}" if group else version


# In the kube-apiserver's group priority order (core, apps, events.k8s.io, authorization.k8s.io,
# rbac.authorization.k8s.io, apiextensions.k8s.io, coordination.k8s.io, discovery.k8s.io, then CRD groups):
# discovery lists groups in this order and kubectl resolves an ambiguous short name ("ev") to the first.
#
# RBAC objects are stored and served like any other, but nothing enforces them: the mesh has one bearer token,
# which may do everything (as system:masters may), and the access reviews answer accordingly.
RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "namespaces", "namespace", "Namespace", namespaced=False, verbs=NAMESPACE_VERBS,
             short_names=("ns",), subresources=("finalize", "status")),
    Resource("", ("v1",), "pods", "pod", "Pod", short_names=("po",), categories=("all",),
             subresources=("eviction", "exec", "log", "portforward", "proxy", "status")),
    Resource("", ("v1",), "services", "service", "Service", short_names=("svc",), categories=("all",),
             subresources=("proxy", "status")),
    Resource("", ("v1",), "endpoints", "endpoints", "Endpoints", short_names=("ep",)),
    Resource("", ("v1",), "configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    Resource("", ("v1",), "events", "event", "Event", short_names=("ev",)),
    Resource("", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",),
             subresources=("token",)),
    Resource("apps", ("v1",), "deployments", "deployment", "Deployment", short_names=("deploy",),
             categories=("all",), subresources=("scale", "status")),
    Resource("apps", ("v1",), "replicasets", "replicaset", "ReplicaSet", short_names=("rs",), categories=("all",),
             subresources=("scale", "status")),
    Resource("events.k8s.io", ("v1",), "events", "event", "Event", short_names=("ev",)),
    Resource("authorization.k8s.io", ("v1",), "selfsubjectaccessreviews", "selfsubjectaccessreview",
             "SelfSubjectAccessReview", namespaced=False, verbs=REVIEW_VERBS, stored=False),
    Resource("authorization.k8s.io", ("v1",), "selfsubjectrulesreviews", "selfsubjectrulesreview",
             "SelfSubjectRulesReview", namespaced=False, verbs=REVIEW_VERBS, stored=False),
    Resource("rbac.authorization.k8s.io", ("v1",), "clusterrolebindings", "clusterrolebinding",
             "ClusterRoleBinding", namespaced=False),
    Resource("rbac.authorization.k8s.io", ("v1",), "clusterroles", "clusterrole", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", ("v1",), "rolebindings", "rolebinding", "RoleBinding"),
    Resource("rbac.authorization.k8s.io", ("v1",), "roles", "role", "Role"),
    Resource("apiextensions.k8s.io", ("v1",), "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", namespaced=False, short_names=("crd", "crds"), categories=("api-extensions",),
             subresources=("status",)),
    Resource("coordination.k8s.io", ("v1",), "leases", "lease", "Lease"),
    Resource("discovery.k8s.io", ("v1",), "endpointslices", "endpointslice", "EndpointSlice"),
    Resource("networking.istio.io", ISTIO_VERSIONS, "virtualservices", "virtualservice", "VirtualService",
             short_names=("vs",), categories=ISTIO_CATEGORIES, subresources=("status",)),
    Resource("networking.istio.io", ISTIO_VERSIONS, "destinationrules", "destinationrule", "DestinationRule",
             short_names=("dr",), categories=ISTIO_CATEGORIES, subresources=("status",)),
    Resource("networking.istio.io", ISTIO_VERSIONS, "gateways", "gateway", "Gateway", short_names=("gw",),
             categories=ISTIO_CATEGORIES, subresources=("status",)),
    Resource("networking.istio.io", ISTIO_VERSIONS, "serviceentries", "serviceentry", "ServiceEntry",
             short_names=("se",), categories=ISTIO_CATEGORIES, subresources=("status",)),
    Resource("telemetry.istio.io", ("v1",), "telemetries", "telemetry", "Telemetry", short_names=("telemetry",),
             categories=("istio-io", "telemetry-istio-io"), subresources=("status",)),
)

STORED_RESOURCES: tuple[Resource, ...] = tuple(r for r in RESOURCES if r.stored)
"""The resources whose objects the store keeps (every one but the access reviews)."""

_BY_KEY: dict[str, Resource] = {r.key: r for r in RESOURCES}
_BY_GROUP_KIND: dict[tuple[str, str], Resource] = {(r.group, r.kind): r for r in RESOURCES}


def find(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at ``/apis/<group>/<version>/<plural>`` (``/api/v1/<plural>`` for group "")."""
    resource = _BY_KEY.get(f"{group}/{plural}")
    if resource is None or version not in resource.versions:
        return None
    return resource


def by_kind(api_version: str, kind: str) -> Resource | None:
    """The resource of objects with this ``apiVersion`` and ``kind`` (``"apps/v1"``, ``"Deployment"``)."""
    group, _, version = api_version.rpartition("/")
    resource = _BY_GROUP_KIND.get((group, kind))
    if resource is None or version not in resource.versions:
        return None
    return resource


def by_key(key: str) -> Resource | None:
    """The resource whose :attr:`Resource.key` is ``key`` (``"apps/deployments"``, ``"/pods"``)."""
    return _BY_KEY.get(key)


def by_short_name(name: str) -> list[Resource]:
    """The resources a kubectl-style name designates: plural, singular, short name or kind (case-insensitive),
    optionally qualified by group (``deploy.apps``); the core group first when ambiguous (``events``)."""
    lowered = name.lower()
    matches = []
    for resource in RESOURCES:
        names = {resource.plural, resource.singular, resource.kind.lower(), *resource.short_names}
        qualified = {f"{n}.{resource.group}" for n in names} if resource.group else set()
        if lowered in names or lowered in qualified:
            matches.append(resource)
    return matches


def subresource(resource: Resource, name: str) -> Subresource | None:
    """Shorthand for :meth:`Resource.subresource`."""
    return resource.subresource(name)


def groups() -> list[tuple[str, tuple[str, ...]]]:
    """The served API groups other than the core one, in the order first served, each with its versions
    (the preferred first)."""
    seen: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if not resource.group:
            continue
        versions = seen.setdefault(resource.group, [])
        for version in resource.versions:
            if version not in versions:
                versions.append(version)
    return [(group, tuple(versions)) for group, versions in seen.items()]


def _storage_version_hash(resource: Resource) -> str:
    # Kubernetes hashes the storage version's group/version/kind; clients only compare it for changes.
    digest = hashlib.sha256(f"{resource.group}/{resource.preferred_version}/{resource.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and version in r.versions]


def _api_resource_list(group: str, version: str) -> dict[str, Any]:
    """``APIResourceList`` of one group-version: each resource, then its subresources as ``plural/sub``."""
    entries: list[dict[str, Any]] = []
    for resource in _resources_in(group, version):
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(resource.verbs),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        if resource.stored:
            entry["storageVersionHash"] = _storage_version_hash(resource)
        entries.append(entry)
        for name in resource.subresources:
            sub = resource.subresource(name)
            assert sub is not None
            sub_entry: dict[str, Any] = {"name": f"{resource.plural}/{name}", "singularName": "",
                                         "namespaced": resource.namespaced}
            # Discovery names the group/version of a subresource only when it differs from the parent's.
            if sub.group is not None and (sub.group, sub.version) != (group, version):
                sub_entry["group"] = sub.group
                sub_entry["version"] = sub.version
            sub_entry["kind"] = sub.kind or resource.kind
            sub_entry["verbs"] = list(sub.verbs)
            entries.append(sub_entry)
    body: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        # The kube-apiserver sets apiVersion on group documents but not on /api/v1.
        body["apiVersion"] = "v1"
    body["groupVersion"] = group_version(group, version)
    body["resources"] = entries
    return body


def _api_group(group: str, versions: tuple[str, ...]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def legacy_discovery(path: str) -> dict[str, Any] | None:
    """The legacy discovery document at ``path`` (``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``,
    ``/apis/<group>/<version>``; a trailing slash is ignored), or None when nothing is served there."""
    parts = [p for p in path.split("/") if p]
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if parts == ["api", "v1"]:
        return _api_resource_list("", "v1")
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_api_group(g, versions) for g, versions in groups()]}
    if len(parts) in (2, 3) and parts[0] == "apis":
        for group, versions in groups():
            if group != parts[1]:
                continue
            if len(parts) == 2:
                return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}
            if parts[2] in versions:
                return _api_resource_list(group, parts[2])
    return None


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _resource_discovery(resource: Resource, version: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": _gvk(resource.group, version, resource.kind),
        "scope": resource.scope,
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    subs = []
    for name in resource.subresources:
        sub = resource.subresource(name)
        assert sub is not None
        kind_group = resource.group if sub.group is None else sub.group
        kind_version = version if sub.version is None else sub.version
        subs.append({
            "subresource": name,
            "responseKind": _gvk(kind_group, kind_version, sub.kind or resource.kind),
            "verbs": list(sub.verbs),
        })
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated_discovery(root: Literal["api", "apis"], version: Literal["v2", "v2beta1"] = "v2") -> dict[str, Any]:
    """The ``APIGroupDiscoveryList`` served at ``/api`` or ``/apis`` to a client that accepts
    ``application/json;g=apidiscovery.k8s.io;v=<version>;as=APIGroupDiscoveryList``."""
    if root == "api":
        listed: list[tuple[str, tuple[str, ...]]] = [("", ("v1",))]
    else:
        listed = groups()
    items = []
    for group, versions in listed:
        metadata: dict[str, Any] = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({
            "metadata": metadata,
            "versions": [
                {
                    "version": v,
                    "resources": [_resource_discovery(r, v) for r in _resources_in(group, v)],
                    "freshness": "Current",
                }
                for v in versions
            ],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def negotiate_discovery(accept: str) -> Literal["v2", "v2beta1"] | None:
    """Which aggregated discovery version an ``Accept`` header asks for first (kubectl 1.33 offers v2 then
    v2beta1, kubectl 1.27 only v2beta1), or None when it asks for none: then answer with legacy discovery."""
    for media in accept.split(","):
        parts = [p.strip() for p in media.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if params.get("g") != "apidiscovery.k8s.io" or params.get("as") != "APIGroupDiscoveryList":
            continue
        if parts[0] not in ("application/json", "*/*"):
            continue
        version = params.get("v")
        if version == "v2":
            return "v2"
        if version == "v2beta1":
            return "v2beta1"
    return None
