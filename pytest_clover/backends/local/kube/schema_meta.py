"""How the built-in kinds the mesh serves merge: the patch metadata Kubernetes declares in its Go types.

Two annotations on each Go field drive merging, and they do not always agree, so both are kept:

- ``patchStrategy`` / ``patchMergeKey`` struct tags — strategic merge patch (``kubectl patch``, client-side
  ``kubectl apply``): a list with ``merge`` is merged item by item on its merge key (or as a set of scalars
  when it has no key); any other list is replaced whole.
- ``+listType`` / ``+listMapKey`` / ``+structType`` / ``+mapType`` markers — server-side apply
  (structured-merge-diff): ``map`` lists are associative on one or more keys, ``set`` lists hold unique
  scalars, ``atomic`` lists (the default) and atomic structs/maps are owned as one value.

Taken from k8s.io/api core/v1, apps/v1, discovery/v1 and k8s.io/apimachinery meta/v1 ``types.go``. Only the
fields whose behaviour differs from the defaults are listed: an unlisted object field merges key by key and
an unlisted list is atomic, which is what Kubernetes does for them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUILTIN_GROUPS",
    "ROOT_TYPES",
    "TypeInfo",
    "child_type",
    "has_go_type",
    "item_type",
    "root_type",
]


@dataclass(frozen=True)
class TypeInfo:
    """What one field holds, as far as merging cares.

    ``kind`` is ``struct`` (a Go struct: known fields, each with its own type), ``map`` (a Go map: any keys,
    values of type ``elem``), ``list`` or ``unknown`` (not described: merges like a struct, lists atomic).
    For lists, ``elem`` names the item type. ``atomic`` makes a struct, map or list one indivisible value
    for server-side apply."""

    kind: str = "unknown"
    name: str = ""  # struct: key into STRUCTS
    elem: str = ""  # map/list: struct name of the values/items ("" = scalars or undescribed)
    atomic: bool = False
    # Strategic merge patch (struct tags).
    smp_merge: bool = False
    smp_key: str = ""
    smp_replace: bool = False  # an object the patch replaces whole (patchStrategy=replace)
    # Server-side apply (markers): "atomic" | "set" | "map".
    ssa_list: str = "atomic"
    ssa_keys: tuple[str, ...] = ()
    # Defaults the schema declares for key fields (a port's protocol is "TCP" when omitted).
    key_defaults: Mapping[str, Any] = field(default_factory=dict)


UNKNOWN = TypeInfo()
STRING_MAP = TypeInfo(kind="map")
ATOMIC_MAP = TypeInfo(kind="map", atomic=True)


def _struct(name: str) -> TypeInfo:
    return TypeInfo(kind="struct", name=name)


def _atomic_struct(name: str) -> TypeInfo:
    return TypeInfo(kind="struct", name=name, atomic=True)


def _merge_list(item: str, key: str, ssa_keys: tuple[str, ...] | None = None, **extra: Any) -> TypeInfo:
    """A list both strategies merge on ``key`` (server-side apply may key on more fields)."""
    return TypeInfo(kind="list", elem=item, smp_merge=True, smp_key=key, ssa_list="map",
                    ssa_keys=ssa_keys or (key,), **extra)


_PORT_DEFAULTS = {"protocol": "TCP"}

STRUCTS: dict[str, dict[str, TypeInfo]] = {
    "ObjectMeta": {
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "ownerReferences": _merge_list("OwnerReference", "uid"),
        # patchStrategy=merge without a key: a set of strings in both worlds.
        "finalizers": TypeInfo(kind="list", smp_merge=True, ssa_list="set"),
        "managedFields": TypeInfo(kind="list"),
    },
    "OwnerReference": {},
    "ObjectReference": {},
    "LocalObjectReference": {},
    "LabelSelector": {"matchLabels": STRING_MAP},
    "PodTemplateSpec": {"metadata": _struct("ObjectMeta"), "spec": _struct("PodSpec")},
    "PodSpec": {
        "volumes": _merge_list("Volume", "name"),
        "initContainers": _merge_list("Container", "name"),
        "containers": _merge_list("Container", "name"),
        "ephemeralContainers": _merge_list("Container", "name"),
        "imagePullSecrets": _merge_list("LocalObjectReference", "name"),
        "hostAliases": _merge_list("", "ip"),
        "topologySpreadConstraints": _merge_list("", "topologyKey", ("topologyKey", "whenUnsatisfiable")),
        "schedulingGates": _merge_list("", "name"),
        "resourceClaims": _merge_list("", "name"),
        "nodeSelector": ATOMIC_MAP,
        "overhead": STRING_MAP,
        "affinity": _struct("Affinity"),
    },
    "Affinity": {"nodeAffinity": _struct("NodeAffinity")},
    "NodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _atomic_struct("NodeSelector")},
    "NodeSelector": {},
    "Volume": {},
    "Container": {
        "ports": _merge_list("ContainerPort", "containerPort", ("containerPort", "protocol"),
                             key_defaults=_PORT_DEFAULTS),
        "env": _merge_list("EnvVar", "name"),
        "volumeMounts": _merge_list("", "mountPath"),
        "volumeDevices": _merge_list("", "devicePath"),
        "resources": _struct("ResourceRequirements"),
    },
    "ContainerPort": {},
    "EnvVar": {"valueFrom": _struct("EnvVarSource")},
    "EnvVarSource": {
        "configMapKeyRef": _atomic_struct("KeySelector"),
        "secretKeyRef": _atomic_struct("KeySelector"),
        "fieldRef": _atomic_struct("KeySelector"),
        "resourceFieldRef": _atomic_struct("KeySelector"),
    },
    "KeySelector": {},
    "ResourceRequirements": {
        "limits": STRING_MAP,
        "requests": STRING_MAP,
        "claims": TypeInfo(kind="list", ssa_list="map", ssa_keys=("name",)),
    },
    "PodStatus": {
        "conditions": _merge_list("", "type"),
        "podIPs": _merge_list("", "ip"),
        # Merged by ip for strategic merge, yet atomic for server-side apply.
        "hostIPs": TypeInfo(kind="list", smp_merge=True, smp_key="ip"),
    },
    "Pod": {"metadata": _struct("ObjectMeta"), "spec": _struct("PodSpec"), "status": _struct("PodStatus")},
    "ConditionsStatus": {"conditions": _merge_list("", "type")},
    "DeploymentSpec": {
        "selector": _atomic_struct("LabelSelector"),
        "template": _struct("PodTemplateSpec"),
    },
    "Deployment": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("DeploymentSpec"),
        "status": _struct("ConditionsStatus"),
    },
    "ReplicaSet": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("DeploymentSpec"),
        "status": _struct("ConditionsStatus"),
    },
    "ServiceSpec": {
        "ports": _merge_list("", "port", ("port", "protocol"), key_defaults=_PORT_DEFAULTS),
        "selector": ATOMIC_MAP,
    },
    "Service": {
        "metadata": _struct("ObjectMeta"),
        "spec": _struct("ServiceSpec"),
        "status": _struct("ConditionsStatus"),
    },
    "ConfigMap": {"metadata": _struct("ObjectMeta"), "data": STRING_MAP, "binaryData": STRING_MAP},
    "Endpoints": {"metadata": _struct("ObjectMeta")},
    "EndpointSlice": {"metadata": _struct("ObjectMeta")},
    "Namespace": {"metadata": _struct("ObjectMeta"), "status": _struct("ConditionsStatus")},
    "Event": {
        "metadata": _struct("ObjectMeta"),
        "involvedObject": _atomic_struct("ObjectReference"),
        "related": _atomic_struct("ObjectReference"),
        "regarding": _atomic_struct("ObjectReference"),
    },
    "Lease": {"metadata": _struct("ObjectMeta")},
    "ServiceAccount": {
        "metadata": _struct("ObjectMeta"),
        "secrets": _merge_list("ObjectReference", "name"),
    },
    # Any other kind of a built-in group: only its metadata is described.
    "Object": {"metadata": _struct("ObjectMeta")},
}

# The API groups whose kinds are compiled into kube-apiserver (strategic merge patch works for them).
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "discovery.k8s.io", "coordination.k8s.io", "events.k8s.io",
    "networking.k8s.io", "rbac.authorization.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io",
    "certificates.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "flowcontrol.apiserver.k8s.io",
})

# (group, kind) → root struct.
ROOT_TYPES: dict[tuple[str, str], str] = {
    ("", "Pod"): "Pod",
    ("", "Service"): "Service",
    ("", "ConfigMap"): "ConfigMap",
    ("", "Endpoints"): "Endpoints",
    ("", "Namespace"): "Namespace",
    ("", "Event"): "Event",
    ("events.k8s.io", "Event"): "Event",
    ("", "ServiceAccount"): "ServiceAccount",
    ("apps", "Deployment"): "Deployment",
    ("apps", "ReplicaSet"): "ReplicaSet",
    ("discovery.k8s.io", "EndpointSlice"): "EndpointSlice",
    ("coordination.k8s.io", "Lease"): "Lease",
}


def group_of(api_version: str) -> str:
    """The group of ``apps/v1`` is ``apps``; of ``v1`` it is the core group ``""``."""
    return api_version.rpartition("/")[0]


def has_go_type(api_version: str) -> bool:
    """Whether kinds of this API version are compiled into kube-apiserver (strategic merge patch needs the
    Go struct tags; custom resources have none)."""
    return group_of(api_version) in BUILTIN_GROUPS


def root_type(api_version: str, kind: str) -> TypeInfo:
    """The type of a whole object of this kind. Kinds not described here (custom resources included) get
    ``metadata`` only: their other fields merge as plain objects, their lists are atomic."""
    name = ROOT_TYPES.get((group_of(api_version), kind), "Object")
    return _struct(name)


def child_type(parent: TypeInfo, key: str) -> TypeInfo:
    """The type of ``parent[key]`` (a struct field or a map value)."""
    if parent.kind == "struct":
        return STRUCTS.get(parent.name, {}).get(key, UNKNOWN)
    if parent.kind == "map" and parent.elem:
        return _struct(parent.elem)
    return UNKNOWN


def item_type(parent: TypeInfo) -> TypeInfo:
    """The type of one item of the list ``parent``."""
    return _struct(parent.elem) if parent.elem else UNKNOWN

