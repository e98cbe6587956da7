"""Cross-object checks (as ``istioctl analyze`` does) and the entry points that read a whole topology."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import ConfigError, Problem
from .model import (
    Deployment,
    DestinationRule,
    Gateway,
    IstioObject,
    KubeObject,
    Source,
    Topology,
    VirtualService,
    resolve_gateway,
    resolve_host,
)
from .parse import FieldReader, join_path, load_documents, parse_documents, parse_text

# --------------------------------------------------------------------------- topology


def check_references(topo: Topology, problems: list[Problem], others: Mapping[str, Topology] | None = None) -> None:
    """Cross-object checks, as ``istioctl analyze`` does: dangling hosts, subsets, gateways, ports.

    ``topo`` is one namespace's objects; ``others`` (namespace → topology), when given, are the other
    namespaces of the mesh, against which hosts and gateways naming another namespace are checked (without
    it, such references are taken as they are)."""
    for dep in topo.deployments.values():
        r = FieldReader(dep.source.file, f"Deployment/{dep.name}", problems)
        for i, c in enumerate(dep.containers):
            if c.readiness is not None and c.port_number(c.readiness.port) is None:
                r.error(
                    f"spec.template.spec.containers[{i}].readinessProbe",
                    f"port {c.readiness.port!r} is not a port of container {c.name!r}",
                )
    selected = _Selection(topo)
    for svc in topo.services.values():
        r = FieldReader(svc.source.file, f"Service/{svc.name}", problems)
        pods = selected.deployments(svc.selector)
        if not svc.selector:
            r.warn("spec.selector", "is empty, so the Service has no endpoints")
        elif topo.deployments and not pods:
            r.warn("spec.selector", f"{dict(svc.selector)} selects no Deployment's pods; the Service has no endpoints")
        for i, port in enumerate(svc.ports):
            if isinstance(port.target_port, str):
                if pods and not any(c.port_number(port.target_port) for d in pods for c in d.containers):
                    r.error(
                        f"spec.ports[{i}].targetPort",
                        f"no selected pod has a container port named {port.target_port!r}",
                    )
    # Each Service's DestinationRule, found once (Topology.destination_rule_for looks through them all per call).
    rules: dict[str, DestinationRule] = {}
    for rule in topo.destination_rules.values():
        ruled = topo.service_for_host(rule.host, rule.namespace)
        if ruled is not None:
            rules.setdefault(ruled.name, rule)
    for vs in topo.virtual_services.values():
        r = FieldReader(vs.source.file, f"VirtualService/{vs.name}", problems)
        for g in vs.gateways:
            if g == "mesh":
                continue
            gw_namespace, gname = resolve_gateway(g, vs.namespace)
            if gw_namespace != vs.namespace and others is not None:
                known = gw_namespace in others and gname in others[gw_namespace].gateways
            else:
                known = gname in topo.gateways
            if not known:
                r.error("spec.gateways", f"gateway {g!r} is not defined; add the Gateway or fix the name")
        for i, route in enumerate(vs.http):
            dests = [(f"spec.http[{i}].route[{j}].destination", d.destination) for j, d in enumerate(route.route)]
            dests += [(f"spec.http[{i}].mirror", m.destination) for m in route.mirrors]
            for path, dest in dests:
                target = topo.service_for_host(dest.host, vs.namespace)
                named = resolve_host(dest.host, vs.namespace)
                if target is None and named is not None and named[1] != vs.namespace and others is not None:
                    # Another namespace's Service (Istio exports Services mesh-wide by default).
                    other = others.get(named[1])
                    target = other.services.get(named[0]) if other is not None else None
                    if target is None:
                        r.warn(
                            join_path(path, "host"),
                            f"{dest.host!r} is not a Service of namespace {named[1]!r}; requests to it get 503",
                        )
                        continue
                if target is None:
                    if topo.services:
                        r.warn(
                            join_path(path, "host"),
                            f"{dest.host!r} is not a Service of this topology; requests to it get 503",
                        )
                    continue
                if dest.port is None and len(target.ports) > 1:
                    r.error(join_path(path, "port"), f"is required: Service {target.name} has several ports")
                elif dest.port is not None and target.port(dest.port) is None:
                    r.error(join_path(path, "port.number"), f"Service {target.name} has no port {dest.port}")
                if dest.subset and target.namespace == vs.namespace:
                    dr = rules.get(target.name)
                    if dr is None or dr.subset(dest.subset) is None:
                        r.warn(
                            join_path(path, "subset"),
                            f"subset {dest.subset!r} of {dest.host} is not defined in any DestinationRule; "
                            "requests routed to it get 503 (NC), as on a cluster",
                        )


class _Selection:
    """Which Deployments' pods a Service selector picks, without comparing every Service with every Deployment:
    that was quadratic, minutes for a topology of a few thousand of each (see MAX_YAML_BYTES)."""

    def __init__(self, topo: Topology) -> None:
        self._by_label: dict[tuple[str, str], list[Deployment]] = {}
        for dep in topo.deployments.values():
            for label in dep.pod_labels.items():
                self._by_label.setdefault(label, []).append(dep)
        self._cache: dict[frozenset[tuple[str, str]], list[Deployment]] = {}

    def deployments(self, selector: Mapping[str, str]) -> list[Deployment]:
        """The Deployments whose pod labels include every label of ``selector`` (none for an empty selector)."""
        if not selector:
            return []
        key = frozenset(selector.items())
        if key not in self._cache:
            # The rarest label's Deployments are the only candidates; the others must carry the rest.
            candidates = min((self._by_label.get(label, []) for label in key), key=len)
            self._cache[key] = [d for d in candidates if all(d.pod_labels.get(k) == v for k, v in key)]
        return self._cache[key]


def build_topology(
    objects: Iterable[KubeObject], problems: list[Problem], others: Mapping[str, Topology] | None = None
) -> Topology:
    """The topology ``objects`` form, its problems appended to ``problems`` (``others``: see
    :func:`check_references`)."""
    topo = Topology()
    seen: dict[tuple[str, str], Source] = {}
    for obj in objects:
        key = (type(obj).__name__, obj.name)
        if key in seen:
            first = seen[key]
            problems.append(
                Problem(
                    obj.source.file,
                    f"{key[0]}/{obj.name}",
                    "metadata.name",
                    f"is defined twice (first in {first.file}, document {first.index + 1}); "
                    "names must be unique per kind",
                )
            )
            continue
        seen[key] = obj.source
        topo.add(obj)
    namespaces = {o.namespace for o in objects}
    if len(namespaces) > 1:
        problems.append(
            Problem(
                "<topology>",
                "namespaces",
                "metadata.namespace",
                f"objects span several namespaces {sorted(namespaces)}; the local backend runs one namespace",
                "warning",
                scope="local",
            )
        )
    if namespaces:
        topo.namespace = sorted(namespaces)[0]
    check_references(topo, problems, others)
    topo.warnings = [p for p in problems if p.severity == "warning"]
    return topo


def validate(paths: Iterable[str | os.PathLike[str]]) -> list[Problem]:
    """Every problem in the given files and folders, read together as one topology."""
    problems: list[Problem] = []
    docs = load_documents(paths, problems)
    objects = parse_documents(docs, problems)
    build_topology(objects, problems)
    return problems


def validate_each(paths: Iterable[str | os.PathLike[str]]) -> list[Problem]:
    """``clover validate``: every problem, a folder read as one topology and each file on its own.

    Files given one by one are not one topology: Istio's own samples hold alternatives of the same object in
    separate files (``virtual-service-all-v1.yaml``, ``virtual-service-reviews-50-v3.yaml``), and a user checks
    them side by side. Names must be unique, and references resolve, within a folder.
    """
    problems: list[Problem] = []
    for path in paths:
        problems.extend(validate([path]))
    return problems


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read a topology folder (or file); raise ConfigError listing every error found."""
    p = Path(path)
    if not p.exists():
        raise ConfigError.single(
            str(p), "topology", "", "no such file or directory; pass a folder of Kubernetes + Istio YAML"
        )
    problems: list[Problem] = []
    docs = load_documents([p], problems)
    if not docs and not problems:
        raise ConfigError.single(str(p), "topology", "", "holds no YAML documents (*.yaml, *.yml)")
    objects = parse_documents(docs, problems)
    topo = build_topology(objects, problems)
    if any(x.severity == "error" for x in problems):
        raise ConfigError(problems)
    return topo


def parse_istio_text(text: str, file: str = "<string>") -> tuple[list[IstioObject], list[Problem]]:
    """Parse Istio objects given as YAML text (``clover apply``, fault injection)."""
    problems: list[Problem] = []
    objects = parse_documents(parse_text(text, file, problems), problems)
    istio: list[IstioObject] = []
    for obj in objects:
        if isinstance(obj, VirtualService | DestinationRule | Gateway):
            istio.append(obj)
        else:
            problems.append(
                Problem(
                    file,
                    f"{type(obj).__name__}/{obj.name}",
                    "kind",
                    "only Istio objects can be applied to a running mesh; "
                    "Deployments and Services are part of the topology",
                )
            )
    return istio, problems
