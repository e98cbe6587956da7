"""Generate the protobuf table the embedded Kubernetes API decodes request bodies with
(``pytest_clover/backends/local/kube/protobuf/messages.json.xz``).

Kubernetes' typed clients (``kubectl create deployment``, ``kubectl run``, ``kubectl expose``…) send their
bodies as ``application/vnd.kubernetes.protobuf``. The messages are described by the ``generated.proto``
files of k8s.io/api and k8s.io/apimachinery; those give field numbers, protobuf types, ``repeated`` and maps.
What they do not give is how the Go struct the server decodes into turns into JSON: whether the Go field is a
pointer (an explicit zero is kept), carries ``omitempty`` (a zero is dropped) or is an embedded struct that
JSON inlines (``Probe.handler``, ``Volume.volumeSource``). That comes from the Go struct tags of the same
packages' ``types.go`` files, which are read next to the protos.

Only the messages reachable from the kinds the server serves (plus the meta kinds a client may send) are kept.
The special messages (Time, MicroTime, Duration, IntOrString, Quantity, RawExtension, FieldsV1, Unknown) are
decoded by hand in :mod:`pytest_clover.backends.local.kube.protobuf` and not written to the table.

Output (xz-compressed JSON)::

    {"source": {...commits...},
     "messages": {"<proto full name>": {"<field number>": [json name, type, flags, key type?]}},
     "kinds": {"<apiVersion>/<kind>" or "*/<kind>": "<proto full name>"}}

``type`` is a protobuf scalar type name or a message's full name; ``flags``: 1 repeated, 2 map (``type`` is the
value type, the fourth item the key type), 4 keep a zero (Go pointer or no ``omitempty``), 8 inline (JSON
merges the message's fields into the parent), 16 the message is a Go named slice (``{items: [...]}`` → list).

Usage::

    python tools/gen_kube_protobuf.py --api <k8s.io/api checkout or git dir> \\
        --apimachinery <k8s.io/apimachinery checkout or git dir> [--out DIR]

A git directory (such as a bare clone) is read at ``HEAD``. The shipped table was generated from kubernetes/api
10b39a39bcee995dfe7cd5e8e7b922be5e46f1e2 and kubernetes/apimachinery eed236ceee2c19c2753a3d93ac0631dc20750454
(see ``protobuf/NOTICE.md``).
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "pytest_clover" / "backends" / "local" / "kube" / "protobuf"

# (repository, directory in it, proto package) of every package whose messages may be reached.
PACKAGES = [
    ("api", "core/v1", "k8s.io.api.core.v1"),
    ("api", "apps/v1", "k8s.io.api.apps.v1"),
    ("api", "discovery/v1", "k8s.io.api.discovery.v1"),
    ("api", "coordination/v1", "k8s.io.api.coordination.v1"),
    ("api", "events/v1", "k8s.io.api.events.v1"),
    ("api", "policy/v1", "k8s.io.api.policy.v1"),
    ("api", "autoscaling/v1", "k8s.io.api.autoscaling.v1"),
    ("api", "batch/v1", "k8s.io.api.batch.v1"),
    ("api", "authentication/v1", "k8s.io.api.authentication.v1"),
    ("api", "authorization/v1", "k8s.io.api.authorization.v1"),
    ("api", "rbac/v1", "k8s.io.api.rbac.v1"),
    ("api", "scheduling/v1alpha3", "k8s.io.api.scheduling.v1alpha3"),  # PodSpec's workload reference
    ("apimachinery", "pkg/apis/meta/v1", "k8s.io.apimachinery.pkg.apis.meta.v1"),
    ("apimachinery", "pkg/runtime", "k8s.io.apimachinery.pkg.runtime"),
    ("apimachinery", "pkg/runtime/schema", "k8s.io.apimachinery.pkg.runtime.schema"),
    ("apimachinery", "pkg/util/intstr", "k8s.io.apimachinery.pkg.util.intstr"),
    ("apimachinery", "pkg/api/resource", "k8s.io.apimachinery.pkg.api.resource"),
]

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
# Decoded by hand: their JSON is not their protobuf shape.
SPECIAL = {
    f"{META}.Time", f"{META}.MicroTime", f"{META}.Duration", f"{META}.FieldsV1", f"{META}.Timestamp",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString", "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue", "k8s.io.apimachinery.pkg.runtime.RawExtension",
    "k8s.io.apimachinery.pkg.runtime.Unknown",
}

# The top-level kinds a body may carry: the served kinds by apiVersion, and the meta kinds that every group
# version registers (a typed client sends DeleteOptions as "apps/v1" DeleteOptions) under "*".
KINDS = {
    "v1/Pod": "k8s.io.api.core.v1.Pod",
    "v1/Service": "k8s.io.api.core.v1.Service",
    "v1/Endpoints": "k8s.io.api.core.v1.Endpoints",
    "v1/ConfigMap": "k8s.io.api.core.v1.ConfigMap",
    "v1/Event": "k8s.io.api.core.v1.Event",
    "v1/Namespace": "k8s.io.api.core.v1.Namespace",
    "v1/ServiceAccount": "k8s.io.api.core.v1.ServiceAccount",
    "v1/Secret": "k8s.io.api.core.v1.Secret",
    "v1/Binding": "k8s.io.api.core.v1.Binding",
    "apps/v1/Deployment": "k8s.io.api.apps.v1.Deployment",
    "apps/v1/ReplicaSet": "k8s.io.api.apps.v1.ReplicaSet",
    "discovery.k8s.io/v1/EndpointSlice": "k8s.io.api.discovery.v1.EndpointSlice",
    "coordination.k8s.io/v1/Lease": "k8s.io.api.coordination.v1.Lease",
    "events.k8s.io/v1/Event": "k8s.io.api.events.v1.Event",
    "policy/v1/Eviction": "k8s.io.api.policy.v1.Eviction",
    "autoscaling/v1/Scale": "k8s.io.api.autoscaling.v1.Scale",
    "batch/v1/Job": "k8s.io.api.batch.v1.Job",
    "authentication.k8s.io/v1/TokenRequest": "k8s.io.api.authentication.v1.TokenRequest",  # serviceaccounts/token
    # kubectl auth can-i sends its access reviews as protobuf.
    "authorization.k8s.io/v1/SelfSubjectAccessReview": "k8s.io.api.authorization.v1.SelfSubjectAccessReview",
    "authorization.k8s.io/v1/SelfSubjectRulesReview": "k8s.io.api.authorization.v1.SelfSubjectRulesReview",
    "rbac.authorization.k8s.io/v1/Role": "k8s.io.api.rbac.v1.Role",
    "rbac.authorization.k8s.io/v1/RoleBinding": "k8s.io.api.rbac.v1.RoleBinding",
    "rbac.authorization.k8s.io/v1/ClusterRole": "k8s.io.api.rbac.v1.ClusterRole",
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "k8s.io.api.rbac.v1.ClusterRoleBinding",
    "*/DeleteOptions": f"{META}.DeleteOptions",
    "*/Status": f"{META}.Status",
    "*/Patch": f"{META}.Patch",
    "*/CreateOptions": f"{META}.CreateOptions",
    "*/UpdateOptions": f"{META}.UpdateOptions",
    "*/PatchOptions": f"{META}.PatchOptions",
}

FIELD = re.compile(r"^\s*(optional|repeated)\s+(\S+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP_FIELD = re.compile(r"^\s*map<\s*(\S+)\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{")
NAMED_SLICE = re.compile(r"^type\s+(\w+)\s+\[\]\S+\s*$")
GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")
SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
           "fixed64", "sfixed32", "sfixed64", "double", "float"}


class Source:
    """Files of a checkout or, for a git directory, of its HEAD."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_git = (path / "HEAD").is_file() and (path / "objects").is_dir()

    def commit(self) -> str:
        git_dir = self.path if self.is_git else self.path / ".git"
        return subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()

    def files(self, directory: str) -> list[str]:
        if self.is_git:
            listed = subprocess.run(["git", f"--git-dir={self.path}", "ls-tree", "--name-only", f"HEAD:{directory}"],
                                    capture_output=True, text=True, check=True).stdout.split()
            return [f"{directory}/{name}" for name in listed]
        return [str(p.relative_to(self.path)) for p in sorted((self.path / directory).iterdir())]

    def read(self, name: str) -> str:
        if self.is_git:
            return subprocess.run(["git", f"--git-dir={self.path}", "show", f"HEAD:{name}"], capture_output=True,
                                  text=True, check=True).stdout
        return (self.path / name).read_text()


def parse_proto(text: str, package: str) -> dict[str, list[tuple[str, str, str, int, str]]]:
    """Message name → fields (label, type, name, number, map key type) of a generated.proto."""
    messages: dict[str, list[tuple[str, str, str, int, str]]] = {}
    current: str | None = None
    depth = 0
    for line in text.splitlines():
        stripped = line.split("//", 1)[0].strip()
        if not stripped:
            continue
        if stripped.startswith("message ") and depth == 0:
            current = f"{package}.{stripped.split()[1]}"
            messages[current] = []
        if current is not None and depth == 1:
            if match := MAP_FIELD.match(stripped):
                key, value, name, number = match.groups()
                messages[current].append(("map", value, name, int(number), key))
            elif match := FIELD.match(stripped):
                label, kind, name, number = match.groups()
                messages[current].append((label, kind, name, int(number), ""))
        depth += stripped.count("{") - stripped.count("}")
        if depth == 0:
            current = None
    return messages


def parse_go(text: str) -> tuple[dict[tuple[str, str], dict[str, Any]], set[str]]:
    """(struct, protobuf field number) → Go field facts, and the named slice types, of a Go file."""
    fields: dict[tuple[str, str], dict[str, Any]] = {}
    slices: set[str] = set()
    struct: str | None = None
    for line in text.splitlines():
        if match := STRUCT.match(line):
            struct = match.group(1)
            continue
        if match := NAMED_SLICE.match(line):
            slices.add(match.group(1))
        if struct is None:
            continue
        if line.startswith("}"):
            struct = None
            continue
        match = GO_FIELD.match(line)
        if not match or 'protobuf:"' not in match.group(3):
            continue
        go_name, go_type, tags = match.groups()
        json_tag = re.search(r'json:"([^"]*)"', tags)
        proto_tag = re.search(r'protobuf:"([^"]*)"', tags)
        assert proto_tag is not None
        # Keyed by field number: a few tags (EphemeralContainer's embedded common part) carry no name=.
        tag_parts = proto_tag.group(1).split(",")
        if len(tag_parts) < 2 or not tag_parts[1].isdigit():
            continue
        proto_number = tag_parts[1]
        json_parts = (json_tag.group(1) if json_tag else "").split(",")
        fields[(struct, proto_number)] = {
            "json": json_parts[0] or (go_name or ""),
            "omitempty": "omitempty" in json_parts[1:],
            # Go's JSON inlines an embedded struct unless its tag names it (ObjectMeta is `json:"metadata"`).
            "inline": go_name is None and json_parts[0] == "",
            "pointer": go_type.startswith("*"),
        }
    return fields, slices


def resolve(kind: str, package: str, known: dict[str, Any]) -> str:
    if kind in SCALARS:
        return kind
    if kind.startswith("."):
        return kind[1:]
    local = f"{package}.{kind}"
    return local if local in known or local in SPECIAL else kind


def build(api: Source, apimachinery: Source) -> dict[str, Any]:
    """The table (see the module docstring)."""
    repos = {"api": api, "apimachinery": apimachinery}
    protos: dict[str, list[tuple[str, str, str, int, str]]] = {}
    message_package: dict[str, str] = {}
    go_fields: dict[tuple[str, str], dict[str, Any]] = {}
    named_slices: set[str] = set()
    for repo, directory, package in PACKAGES:
        source = repos[repo]
        parsed = parse_proto(source.read(f"{directory}/generated.proto"), package)
        protos.update(parsed)
        message_package.update({name: package for name in parsed})
        for name in source.files(directory):
            if not name.endswith(".go") or name.endswith(("_test.go", ".pb.go")) or "zz_generated" in name:
                continue
            found, slices = parse_go(source.read(name))
            go_fields.update({(f"{package}.{s}", p): facts for (s, p), facts in found.items()})
            named_slices.update(f"{package}.{s}" for s in slices)

    messages: dict[str, dict[str, list[Any]]] = {}
    pending = list(KINDS.values())
    while pending:
        name = pending.pop()
        if name in messages or name in SPECIAL:
            continue
        if name not in protos:
            raise SystemExit(f"message {name} not found in the listed packages")
        package = message_package[name]
        table: dict[str, list[Any]] = {}
        for label, kind, field_name, number, key in protos[name]:
            value_type = resolve(kind, package, protos)
            facts = go_fields.get((name, str(number)), {})
            if not facts and name not in named_slices:
                print(f"warning: no Go field for {name}.{field_name}: taken as omitempty", file=sys.stderr)
            flags = 0
            if label == "repeated":
                flags |= 1
            if label == "map":
                flags |= 2
            if facts.get("pointer") or (facts and not facts.get("omitempty")):
                flags |= 4
            if facts.get("inline"):
                flags |= 8
            if name in named_slices and field_name == "items" and len(protos[name]) == 1:
                flags |= 16
            json_name = field_name if not facts or facts.get("inline") else facts["json"] or field_name
            entry: list[Any] = [json_name, value_type, flags]
            if label == "map":
                entry.append(resolve(key, package, protos))
            table[str(number)] = entry
            if value_type not in SCALARS:
                pending.append(value_type)
        messages[name] = table
    return {
        "source": {"k8s.io/api": api.commit(), "k8s.io/apimachinery": apimachinery.commit()},
        "messages": dict(sorted(messages.items())),
        "kinds": KINDS,
    }


def main() -> None:
    """Read the sources, write ``messages.json.xz``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--api", type=Path, required=True, help="k8s.io/api checkout or git directory")
    parser.add_argument("--apimachinery", type=Path, required=True, help="k8s.io/apimachinery checkout or git dir")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build(Source(args.api), Source(args.apimachinery))
    args.out.mkdir(parents=True, exist_ok=True)
    data = json.dumps(table, separators=(",", ":"), sort_keys=False).encode()
    (args.out / "messages.json.xz").write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    print(f"{len(table['messages'])} messages, {len(data)} bytes of JSON")


if __name__ == "__main__":
    main()
