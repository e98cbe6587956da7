"""Generate the OpenAPI data the embedded Kubernetes API ships (``pytest_clover/backends/local/kube/openapi/``).

Two inputs, both public and Apache-2.0:

- Kubernetes' own OpenAPI v2 document (``swagger.json``) for the built-in kinds: the one the official Python
  client is generated from, ``kubernetes/swagger.json.unprocessed`` in the kubernetes-client/python repository.
  It carries what the client's models lose: definition names, ``format``s, required fields and the
  ``x-kubernetes-*`` extensions (patch merge keys and strategies, list types and map keys, GVKs). Every kept
  definition is checked against the installed ``kubernetes`` package's models (field names); fields that
  only the package knows (a newer Kubernetes release) are added from the model with their description.
- Istio's published CRDs (``manifests/charts/base/files/crd-all.gen.yaml`` in the istio/istio repository)
  for the Istio kinds: trimmed to the kinds and versions we serve, a schema shared by versions stored once.

Outputs (xz-compressed JSON, which also folds the repeated descriptions):
``builtin.json.xz`` (``{"definitions": {...}}`` in OpenAPI v2 form) and ``istio-crds.json.xz`` (a list of
CRD objects, ``apiextensions.k8s.io/v1``).

The shipped data was generated from kubernetes-client/python 024658493d124f046fc0a9827a2a3165cf2aee28 and
istio/istio 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c (see ``openapi/NOTICE.md``); needs PyYAML and, for the
check, the ``kubernetes`` package.

Usage::

    python tools/gen_kube_openapi.py --swagger swagger.json --istio-crds crd-all.gen.yaml [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import lzma
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "pytest_clover" / "backends" / "local" / "kube" / "openapi"

# The definitions whose closure we ship: each served built-in kind and its list, the subresource kinds, and the
# meta types every group-version document references.
ROOTS = [
    "io.k8s.api.core.v1.Namespace", "io.k8s.api.core.v1.NamespaceList",
    "io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.PodList",
    "io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.ServiceList",
    "io.k8s.api.core.v1.Endpoints", "io.k8s.api.core.v1.EndpointsList",
    "io.k8s.api.core.v1.ConfigMap", "io.k8s.api.core.v1.ConfigMapList",
    "io.k8s.api.core.v1.Event", "io.k8s.api.core.v1.EventList",
    "io.k8s.api.core.v1.ServiceAccount", "io.k8s.api.core.v1.ServiceAccountList",
    "io.k8s.api.events.v1.Event", "io.k8s.api.events.v1.EventList",
    "io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.DeploymentList",
    "io.k8s.api.apps.v1.ReplicaSet", "io.k8s.api.apps.v1.ReplicaSetList",
    "io.k8s.api.discovery.v1.EndpointSlice", "io.k8s.api.discovery.v1.EndpointSliceList",
    "io.k8s.api.coordination.v1.Lease", "io.k8s.api.coordination.v1.LeaseList",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionList",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.policy.v1.Eviction",
    "io.k8s.api.authentication.v1.TokenRequest",
    "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    "io.k8s.api.rbac.v1.Role", "io.k8s.api.rbac.v1.RoleList",
    "io.k8s.api.rbac.v1.RoleBinding", "io.k8s.api.rbac.v1.RoleBindingList",
    "io.k8s.api.rbac.v1.ClusterRole", "io.k8s.api.rbac.v1.ClusterRoleList",
    "io.k8s.api.rbac.v1.ClusterRoleBinding", "io.k8s.api.rbac.v1.ClusterRoleBindingList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
]

# (group, kind) and the versions we serve of it, from Istio's CRDs.
ISTIO_KINDS = {
    ("networking.istio.io", "VirtualService"): ("v1", "v1beta1", "v1alpha3"),
    ("networking.istio.io", "DestinationRule"): ("v1", "v1beta1", "v1alpha3"),
    ("networking.istio.io", "Gateway"): ("v1", "v1beta1", "v1alpha3"),
    ("networking.istio.io", "ServiceEntry"): ("v1", "v1beta1", "v1alpha3"),
    ("telemetry.istio.io", "Telemetry"): ("v1",),
}


def refs(node: Any) -> set[str]:
    """Definition names referenced anywhere under ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def closure(definitions: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The definitions reachable from ``roots``."""
    kept: dict[str, Any] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        kept[name] = definitions[name]
        pending.extend(refs(definitions[name]) - kept.keys())
    return dict(sorted(kept.items()))


def model_class(name: str) -> Any:
    """The ``kubernetes`` package's model for definition ``name``, or None (the client renames clashing ones:
    ``CoreV1Event``, ``EventsV1Event``)."""
    import kubernetes.client.models as models

    parts = name.split(".")
    kind, version, package = parts[-1], parts[-2], parts[-3]
    prefix = version[0].upper() + version[1:]
    for candidate in (f"{prefix}{kind}", f"{package.capitalize()}{prefix}{kind}", f"Core{prefix}{kind}"):
        cls = getattr(models, candidate, None)
        if cls is not None and hasattr(cls, "model_fields"):
            return cls
    return None


def field_schema(annotation: Any, description: str | None) -> dict[str, Any] | None:
    """An OpenAPI v2 schema for a model field's type annotation (only for fields the swagger lacks)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    schema: dict[str, Any] | None
    if origin is typing.Union and len(args) == 1:
        return field_schema(args[0], description)
    if origin is typing.Annotated:
        return field_schema(args[0], description)
    if origin is list:
        item = field_schema(args[0], None)
        schema = {"type": "array", "items": item} if item else None
    elif origin is dict:
        value = field_schema(args[1], None)
        schema = {"type": "object", "additionalProperties": value} if value else None
    elif annotation is str:
        schema = {"type": "string"}
    elif annotation is bool:
        schema = {"type": "boolean"}
    elif annotation is int:
        schema = {"type": "integer", "format": "int64"}
    elif annotation is float:
        schema = {"type": "number", "format": "double"}
    elif annotation is datetime.datetime:
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = None
    if schema is not None and description:
        schema["description"] = description
    return schema


def check_against_package(definitions: dict[str, Any]) -> list[str]:
    """Compare each definition with the installed ``kubernetes`` package's model; add the fields only the
    package has (when their type maps plainly) and return what differs, for the generator's log."""
    notes = []
    for name, definition in definitions.items():
        cls = model_class(name)
        properties = definition.get("properties")
        if cls is None or not properties:
            continue
        fields = {(f.serialization_alias or n): f for n, f in cls.model_fields.items()}
        for extra in sorted(set(fields) - set(properties)):
            schema = field_schema(fields[extra].annotation, fields[extra].description)
            if schema is None:
                notes.append(f"{name}.{extra}: only in the package, type not mapped, skipped")
                continue
            properties[extra] = schema
            notes.append(f"{name}.{extra}: added from the package")
        for missing in sorted(set(properties) - set(fields)):
            notes.append(f"{name}.{missing}: not in the package's model")
    return notes


def trim_crd(crd: dict[str, Any], versions: tuple[str, ...]) -> dict[str, Any]:
    """The CRD with only the served versions (in our preference order), Helm metadata dropped, and each
    version's schema stored once as ``schemaRef`` when an earlier version has the same one."""
    by_name = {v["name"]: v for v in crd["spec"]["versions"]}
    kept = []
    schemas: dict[str, str] = {}
    for version in versions:
        entry = dict(by_name[version])
        entry["storage"] = version == versions[0]
        key = json.dumps(entry["schema"], sort_keys=True)
        if key in schemas:
            del entry["schema"]
            entry["schemaRef"] = schemas[key]
        else:
            schemas[key] = version
        kept.append(entry)
    spec = dict(crd["spec"])
    spec["versions"] = kept
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd["metadata"]["name"], "labels": {"app": "istio-pilot"}},
        "spec": spec,
    }


def write(path: Path, data: Any) -> int:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    packed = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(packed)
    return len(packed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swagger", type=Path, required=True, help="Kubernetes' swagger.json (OpenAPI v2)")
    parser.add_argument("--istio-crds", type=Path, required=True, help="Istio's crd-all.gen.yaml")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    swagger = json.loads(args.swagger.read_text())
    definitions = closure(swagger["definitions"], ROOTS)
    for note in check_against_package(definitions):
        print("package check:", note, file=sys.stderr)
    size = write(args.out / "builtin.json.xz", {"definitions": definitions})
    print(f"builtin.json.xz: {len(definitions)} definitions, {size} bytes")

    crds = []
    for document in yaml.safe_load_all(args.istio_crds.read_text()):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        key = (document["spec"]["group"], document["spec"]["names"]["kind"])
        if key in ISTIO_KINDS:
            crds.append(trim_crd(document, ISTIO_KINDS[key]))
    if len(crds) != len(ISTIO_KINDS):
        raise SystemExit(f"found {len(crds)} of the {len(ISTIO_KINDS)} Istio CRDs we serve")
    size = write(args.out / "istio-crds.json.xz", crds)
    print(f"istio-crds.json.xz: {len(crds)} CRDs, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
