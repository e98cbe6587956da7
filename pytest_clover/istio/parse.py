"""Kubernetes + Istio YAML → model objects, with every problem named by file, object and field.

Every problem is collected, not just the first. Istio's own admission rules are reproduced (istiod's webhook
and the CRD's CEL rules), so what a cluster rejects is rejected here too. Fields that the portable model
carries but the embedded mesh cannot honour are warnings scoped ``local`` (see :class:`~pytest_clover.errors.Problem`):
a cluster backend drops them.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem
from .model import (
    DEFAULT_NAMESPACE,
    GRPC_STATUS,
    ISTIO_NETWORKING,
    ISTIO_VERSIONS,
    LOCAL_COMMAND_ANNOTATION,
    Abort,
    ConnectionPool,
    Container,
    ContainerPort,
    Delay,
    Deployment,
    Destination,
    DestinationRule,
    EnvVar,
    Fault,
    Gateway,
    GatewayServer,
    HeaderOperations,
    Headers,
    HTTPMatch,
    HTTPRoute,
    KubeObject,
    Mirror,
    OutlierDetection,
    Probe,
    Retries,
    RetryBudget,
    RouteDestination,
    Service,
    ServicePort,
    Source,
    StringMatch,
    Subset,
    TrafficPolicy,
    VirtualService,
    parse_duration,
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

RETRY_ON_TOKENS = frozenset(
    "5xx gateway-error reset reset-before-request connect-failure retriable-4xx refused-stream "
    "retriable-status-codes retriable-headers envoy-ratelimited http3-post-connect-failure "
    "cancelled deadline-exceeded internal resource-exhausted unavailable".split()
)
INT32_MAX = 2**31 - 1
"""Istio's counts and weights are int32: the API server rejects more (and Envoy's uint32 fields could not hold it)."""
MAX_DURATION_MS = 315_576_000_000_000.0
"""The longest google.protobuf.Duration (10 000 years); Envoy rejects longer ones."""
_VS_HOST = re.compile(r"\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*")
"""A VirtualService host: a DNS name, optionally with a leading ``*.``, or ``*``."""
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (an RFC 9110 token)."""
LB_SIMPLE = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")
MAX_YAML_BYTES = 2 * 1024 * 1024
"""The largest YAML input pytest-clover reads: each file of a topology, each file ``clover validate`` or ``clover
apply`` is given, each text :func:`~pytest_clover.istio.parse_istio_text` parses (2 MiB, some 50 000 lines: far
more than a topology or an Istio configuration needs). Two reasons for a limit. PyYAML is pure Python, so a
huge file is parsed for minutes while memory grows to many times its size (50 MB: over 2 minutes, 700 MB).
And ``clover apply`` sends the text to the embedded mesh's supervisor as one JSON line, which its control
socket reads up to 16 MiB; JSON escaping makes a byte of text at most 6 bytes (a control character as
``\\u0001``), so 2 MiB of any text fits in one line."""


# --------------------------------------------------------------------------- reading helpers


class FieldReader:
    """Reads one document, tracking field paths and collecting problems instead of raising."""

    def __init__(self, file: str, obj: str, problems: list[Problem]) -> None:
        self.file = file
        self.obj = obj
        self.problems = problems

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.obj, path, message))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.obj, path, message, "warning"))

    def unhonoured(self, path: str, why: str) -> None:
        """A field the model carries that the embedded mesh cannot honour: a warning for the local backend only."""
        message = f"not honoured by the local backend ({why}); it is applied on a cluster only"
        self.problems.append(Problem(self.file, self.obj, path, message, "warning", scope="local"))

    def mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_kind_of(value)}")
            return None
        return value

    def fields(self, d: Mapping[str, Any], path: str, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in d:
            if key not in allowed:
                guess = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"; did you mean {guess[0]!r}?" if guess else f"; known fields: {', '.join(sorted(allowed))}"
                self.error(join_path(path, str(key)), f"unknown field {key!r}{hint}")

    def string(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> str | None:
        value = d.get(key)
        if value is None:
            if required:
                self.error(join_path(path, key), "is required")
            return None
        if not isinstance(value, str):
            self.error(join_path(path, key), f"must be a string, got {_kind_of(value)}")
            return None
        if required and not value:
            self.error(join_path(path, key), "must not be empty")
            return None
        return value

    def integer(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        low: int | None = None,
        high: int | None = None,
        required: bool = False,
    ) -> int | None:
        value = d.get(key)
        if value is None:
            if required:
                self.error(join_path(path, key), "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(join_path(path, key), f"must be an integer, got {_kind_of(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(join_path(path, key), f"{value} is out of range; allowed {_range_text(low, high)}")
            return None
        return value

    def boolean(self, d: Mapping[str, Any], key: str, path: str) -> bool | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(join_path(path, key), f"must be true or false, got {_kind_of(value)}")
            return None
        return value

    def duration(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> float | None:
        value = d.get(key)
        if value is None:
            if required:
                self.error(join_path(path, key), "is required (a duration such as 500ms, 2s or 1m)")
            return None
        ms = parse_duration(value)
        if ms is None:
            self.error(
                join_path(path, key),
                f"{value!r} is not a duration; write a number with a unit: ns, us, ms, s, m or h (e.g. 500ms, 1.5s)",
            )
            return None
        if not math.isfinite(ms) or ms > MAX_DURATION_MS:
            self.error(
                join_path(path, key), f"{value!r} is too long; the longest duration is 315576000000s (10000 years)"
            )
            return None
        if ms < 1.0:
            self.error(join_path(path, key), f"{value!r} is shorter than 1ms, the smallest duration Istio accepts")
            return None
        if abs(ms - round(ms)) > 1e-9:
            self.error(
                join_path(path, key), f"{value!r} has sub-millisecond precision; Istio accepts whole milliseconds"
            )
            return None
        return ms

    def percentage(self, d: Mapping[str, Any], key: str, path: str) -> float | None:
        """Istio ``Percent`` message: ``{value: double}``; valid values are 0 or 0.0001–100."""
        raw = self.mapping(d.get(key), join_path(path, key))
        if raw is None:
            return None
        p = join_path(path, key)
        self.fields(raw, p, ["value"])
        value = raw.get("value", 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(join_path(p, "value"), f"must be a number from 0 to 100, got {_kind_of(value)}")
            return None
        if value != 0 and not 0.0001 <= value <= 100.0:
            self.error(join_path(p, "value"), f"{value} is out of range; allowed 0 or 0.0001 to 100")
            return None
        return float(value)

    def string_map(self, d: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        raw = self.mapping(d.get(key), join_path(path, key))
        if raw is None:
            return {}
        out: dict[str, str] = {}
        for k, v in raw.items():
            if isinstance(v, bool | int | float):
                v = str(v).lower() if isinstance(v, bool) else str(v)
                self.error(join_path(join_path(path, key), str(k)), f'must be a string; quote it: "{v}"')
                continue
            if not isinstance(v, str):
                self.error(join_path(join_path(path, key), str(k)), f"must be a string, got {_kind_of(v)}")
                continue
            out[str(k)] = v
        return out

    def sequence(self, d: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(join_path(path, key), f"must be a list, got {_kind_of(value)}")
            return []
        return value

    def strings(self, d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.sequence(d, key, path)):
            if not isinstance(item, str):
                self.error(f"{join_path(path, key)}[{i}]", f"must be a string, got {_kind_of(item)}")
            else:
                out.append(item)
        return tuple(out)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if _is_huge(value):
        return "a number too large to show"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"{low} or more"
    return f"{high} or less"


# --------------------------------------------------------------------------- loading documents


@dataclass(frozen=True)
class Document:
    source: Source
    body: Any


def iter_yaml_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand directories to their ``*.yaml``/``*.yml``/``*.json`` files, sorted for a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
        else:
            yield path


def _size_text(size: int) -> str:
    return f"{size} bytes" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MiB ({size} bytes)"


def _too_large(file: str, size: int | None) -> Problem:
    how_big = f"is {_size_text(size)}, more" if size is not None else "holds more"
    limit = _size_text(MAX_YAML_BYTES)
    return Problem(
        file,
        "file",
        "",
        f"{how_big} than the {limit} pytest-clover reads from one YAML input: split it into several files",
    )


def read_yaml_file(path: str | os.PathLike[str]) -> tuple[str | None, Problem | None]:
    """The text of one YAML file, or the problem that stops it being read (missing, unreadable, not UTF-8, larger
    than :data:`MAX_YAML_BYTES`). At most the limit and one byte are read, so neither a huge file nor a device
    (``/dev/zero``) is ever held in memory whole."""
    file = str(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_YAML_BYTES + 1)
            if len(data) > MAX_YAML_BYTES:
                size = os.fstat(stream.fileno()).st_size
                # A device or a pipe has no size; a regular file's says how much over the limit it is.
                return None, _too_large(file, size if size > MAX_YAML_BYTES else None)
    except FileNotFoundError:
        return None, Problem(file, "file", "", "no such file; check the path")
    except IsADirectoryError:
        return None, Problem(file, "file", "", "is a folder; give a YAML file (clover validate also takes folders)")
    except OSError as exc:
        return None, Problem(file, "file", "", f"cannot read it: {exc.strerror or exc}")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Problem(
            file,
            "file",
            "",
            f"is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}): give a Kubernetes or Istio YAML file",
        )


def load_documents(paths: Iterable[str | os.PathLike[str]], problems: list[Problem]) -> list[Document]:
    """Read every YAML document of the given files and folders; unreadable input becomes a problem."""
    docs: list[Document] = []
    for path in iter_yaml_files(paths):
        text, problem = read_yaml_file(path)
        if problem is not None:
            problems.append(problem)
        if text is not None:
            docs.extend(parse_text(text, str(path), problems))
    return docs


def parse_text(text: str, file: str, problems: list[Problem]) -> list[Document]:
    """The YAML documents of ``text``; a text too large (:data:`MAX_YAML_BYTES`) or not YAML becomes a problem."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        problems.append(_too_large(file, size))
        return []
    try:
        bodies = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.append(Problem(file, "file", "", f"not valid YAML{where}: {detail}"))
        return []
    except RecursionError:
        problems.append(Problem(file, "file", "", "not valid YAML: nested too deeply"))
        return []
    except (ValueError, TypeError, AttributeError, LookupError, OverflowError) as exc:
        # PyYAML's constructors raise plain Python errors for bad explicit tags (``!!float abc``, ``!!bool x``).
        problems.append(Problem(file, "file", "", f"not valid YAML: a value cannot be read as its tagged type ({exc})"))
        return []
    return [Document(Source(file, i), body) for i, body in enumerate(bodies) if body is not None]


# --------------------------------------------------------------------------- parsing objects


def parse_documents(docs: Sequence[Document], problems: list[Problem]) -> list[KubeObject]:
    """Turn documents into objects. Lists (``kind: List``) are expanded; unknown kinds are reported."""
    objects: list[KubeObject] = []
    for doc in docs:
        for body, index_label in _expand_lists(doc, problems):
            obj = _parse_object(doc.source, index_label, body, problems)
            if obj is not None:
                objects.append(obj)
    return objects


def _expand_lists(doc: Document, problems: list[Problem]) -> Iterator[tuple[Any, str]]:
    label = f"document {doc.source.index + 1}"
    body = doc.body
    if isinstance(body, dict) and body.get("kind") == "List" and isinstance(body.get("items"), list):
        for i, item in enumerate(body["items"]):
            yield item, f"{label} item {i + 1}"
    else:
        yield body, label


_PARSERS: dict[str, tuple[str, ...]] = {
    "Deployment": ("apps/v1",),
    "Service": ("v1",),
    "Gateway": tuple(f"{ISTIO_NETWORKING}/{v}" for v in ISTIO_VERSIONS),
    "VirtualService": tuple(f"{ISTIO_NETWORKING}/{v}" for v in ISTIO_VERSIONS),
    "DestinationRule": tuple(f"{ISTIO_NETWORKING}/{v}" for v in ISTIO_VERSIONS),
}


def _parse_object(source: Source, label: str, body: Any, problems: list[Problem]) -> KubeObject | None:
    file = source.file
    if not isinstance(body, dict):
        problems.append(Problem(file, label, "", f"must be a Kubernetes object (a mapping), got {_kind_of(body)}"))
        return None
    kind = body.get("kind")
    api = body.get("apiVersion")
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    obj_label = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) and name else label
    r = FieldReader(file, obj_label, problems)
    unusable = _unrepresentable(body)
    if unusable is not None:
        r.error(*unusable)
        return None
    if not isinstance(kind, str) or not kind:
        r.error("kind", "is required (e.g. kind: VirtualService)")
        return None
    if not isinstance(api, str) or not api:
        r.error("apiVersion", f"is required (e.g. apiVersion: {_PARSERS.get(kind, ('v1',))[0]})")
        return None
    if kind not in _PARSERS:
        r.warn("kind", f"kind {kind!r} ({api}) is not used by pytest-clover; the object is ignored")
        return None
    if api not in _PARSERS[kind]:
        r.error("apiVersion", f"{api!r} is not a version of {kind}; use one of: {', '.join(_PARSERS[kind])}")
        return None
    if not isinstance(meta, dict):
        r.error("metadata", "is required, with at least metadata.name")
        return None
    if not isinstance(name, str) or not name:
        r.error("metadata.name", "is required")
        return None
    pattern = _DNS1123_LABEL if kind == "Service" else _DNS1123_SUBDOMAIN
    if len(name) > (63 if kind == "Service" else 253) or not pattern.fullmatch(name):
        r.error(
            "metadata.name",
            f"{name!r} is not a valid name: use lower-case letters, digits and '-', starting and ending "
            "with a letter or digit" + (" (at most 63 characters)" if kind == "Service" else ""),
        )
        return None
    namespace = r.string(meta, "namespace", "metadata") or DEFAULT_NAMESPACE
    spec = r.mapping(body.get("spec"), "spec")
    if spec is None:
        if body.get("spec") is None:
            r.error("spec", "is required")
        return None
    if kind == "Deployment":
        return _parse_deployment(r, source, name, namespace, spec)
    if kind == "Service":
        return _parse_service(r, source, name, namespace, spec)
    if kind == "Gateway":
        return _parse_gateway(r, source, name, namespace, spec)
    if kind == "VirtualService":
        return _parse_virtual_service(r, source, name, namespace, spec, body)
    return _parse_destination_rule(r, source, name, namespace, spec, body)


def _unrepresentable(body: Any) -> tuple[str, str] | None:
    """The first value no API server accepts: an integer beyond int64, or an alias that contains itself."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[bool, str, Any]] = [(False, "", body)]
    while stack:
        leaving, path, value = stack.pop()
        if leaving:
            on_path.discard(id(value))
            done.add(id(value))
            continue
        if _is_huge(value):
            return path, "is too large a number; Kubernetes and Istio take 64-bit integers at most"
        if not isinstance(value, dict | list):
            continue
        if id(value) in on_path:
            return path, "refers to itself (a YAML alias inside its own anchor); Kubernetes objects must be trees"
        if id(value) in done:
            continue
        on_path.add(id(value))
        stack.append((True, path, value))
        if isinstance(value, list):
            stack.extend((False, f"{path}[{i}]", v) for i, v in enumerate(value))
            continue
        for k, v in value.items():
            if _is_huge(k):
                return path, "has a key that is too large a number"
            stack.append((False, join_path(path, str(k)), v))
    return None


def _is_huge(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63


def _count_errors(problems: list[Problem]) -> int:
    return sum(1 for p in problems if p.severity == "error")


def _parse_deployment(r: FieldReader, source: Source, name: str, ns: str, spec: dict[str, Any]) -> Deployment | None:
    before = _count_errors(r.problems)
    replicas = r.integer(spec, "replicas", "spec", low=0)
    selector = r.mapping(spec.get("selector"), "spec.selector") or {}
    match_labels = r.string_map(selector, "matchLabels", "spec.selector")
    if "matchExpressions" in selector:
        r.unhonoured("spec.selector.matchExpressions", "only matchLabels selects pods locally")
    template = r.mapping(spec.get("template"), "spec.template")
    if template is None:
        r.error("spec.template", "is required (the pod template)")
        return None
    tmeta = r.mapping(template.get("metadata"), "spec.template.metadata") or {}
    labels = r.string_map(tmeta, "labels", "spec.template.metadata")
    annotations = r.string_map(tmeta, "annotations", "spec.template.metadata")
    if not match_labels:
        r.error("spec.selector.matchLabels", "is required: the labels that select this Deployment's pods")
    elif any(labels.get(k) != v for k, v in match_labels.items()):
        r.error(
            "spec.selector.matchLabels",
            f"{match_labels} does not match the pod template labels {labels}; the selector must match them",
        )
    pspec = r.mapping(template.get("spec"), "spec.template.spec")
    containers: list[Container] = []
    raw_containers = r.sequence(pspec or {}, "containers", "spec.template.spec")
    if not raw_containers:
        r.error("spec.template.spec.containers", "is required: at least one container")
    for i, raw in enumerate(raw_containers):
        c = _parse_container(r, f"spec.template.spec.containers[{i}]", raw)
        if c is not None:
            containers.append(c)
    names = [c.name for c in containers]
    for dup in {n for n in names if names.count(n) > 1}:
        r.error("spec.template.spec.containers", f"container name {dup!r} is used twice")
    if not annotations.get(LOCAL_COMMAND_ANNOTATION):
        # Without either, no backend can start the pod; found here, not at mesh setup.
        for i, raw in enumerate(raw_containers):
            if isinstance(raw, dict) and raw.get("image") in (None, ""):
                r.error(
                    f"spec.template.spec.containers[{i}].image",
                    "is required: a cluster runs the container's image, the embedded mesh the command in the "
                    f"annotation {LOCAL_COMMAND_ANNOTATION} (spec.template.metadata.annotations); give one or both",
                )
    if _count_errors(r.problems) > before:
        return None
    return Deployment(
        name=name,
        namespace=ns,
        replicas=1 if replicas is None else replicas,
        selector=match_labels,
        pod_labels=labels,
        pod_annotations=annotations,
        containers=tuple(containers),
        source=source,
    )


def _parse_container(r: FieldReader, path: str, raw: Any) -> Container | None:
    c = r.mapping(raw, path)
    if c is None:
        r.error(path, "must be a container (a mapping with name and image)")
        return None
    name = r.string(c, "name", path, required=True)
    image = r.string(c, "image", path) or ""
    ports: list[ContainerPort] = []
    for j, rp in enumerate(r.sequence(c, "ports", path)):
        pp = f"{path}.ports[{j}]"
        p = r.mapping(rp, pp)
        if p is None:
            continue
        number = r.integer(p, "containerPort", pp, low=1, high=65535, required=True)
        pname = r.string(p, "name", pp)
        if number is not None:
            ports.append(ContainerPort(number, pname))
    env: list[EnvVar] = []
    for j, re_ in enumerate(r.sequence(c, "env", path)):
        ep = f"{path}.env[{j}]"
        e = r.mapping(re_, ep)
        if e is None:
            continue
        ename = r.string(e, "name", ep, required=True)
        value = e.get("value")
        if value is not None and not isinstance(value, str):
            r.error(join_path(ep, "value"), f'must be a string; quote it: "{value}"')
            continue
        field_ref = None
        value_from = r.mapping(e.get("valueFrom"), join_path(ep, "valueFrom"))
        if value_from is not None:
            ref = r.mapping(value_from.get("fieldRef"), join_path(ep, "valueFrom.fieldRef"))
            if ref is None:
                r.unhonoured(join_path(ep, "valueFrom"), "only valueFrom.fieldRef is resolved locally")
            else:
                field_ref = r.string(ref, "fieldPath", join_path(ep, "valueFrom.fieldRef"), required=True)
        if ename:
            env.append(EnvVar(ename, value, field_ref))
    readiness = None
    probe = r.mapping(c.get("readinessProbe"), join_path(path, "readinessProbe"))
    if probe is not None:
        http = r.mapping(probe.get("httpGet"), join_path(path, "readinessProbe.httpGet"))
        tcp = r.mapping(probe.get("tcpSocket"), join_path(path, "readinessProbe.tcpSocket"))
        chosen = http if http is not None else tcp
        if chosen is None:
            r.unhonoured(join_path(path, "readinessProbe"), "only httpGet and tcpSocket probes run locally")
        else:
            port = chosen.get("port")
            if not isinstance(port, int | str) or isinstance(port, bool):
                r.error(join_path(path, "readinessProbe"), "port is required (a number or a container port name)")
            else:
                where = join_path(path, "readinessProbe")
                failures = r.integer(probe, "failureThreshold", where, low=1, high=100)
                timeout = r.integer(probe, "timeoutSeconds", where, low=1, high=3600)
                readiness = Probe(
                    "http" if http is not None else "tcp",
                    port,
                    str(chosen.get("path", "/")),
                    failure_threshold=failures or 3,
                    timeout_s=float(timeout or 1),
                )
    command = r.strings(c, "command", path)
    args = r.strings(c, "args", path)
    if not name:
        return None
    return Container(name, image, command, args, tuple(env), tuple(ports), readiness)


def _protocol_of(name: str | None, app_protocol: str | None) -> str:
    """Istio's protocol selection: explicit appProtocol, else the port name's prefix, else sniffed (http)."""
    label = (app_protocol or (name or "").split("-")[0]).lower()
    if label in ("http", "http2", "grpc", "grpc-web", "tcp", "tls", "https", "mongo", "redis", "mysql", "udp"):
        return label
    return "http"


def _parse_service(r: FieldReader, source: Source, name: str, ns: str, spec: dict[str, Any]) -> Service | None:
    before = _count_errors(r.problems)
    selector = r.string_map(spec, "selector", "spec")
    ports: list[ServicePort] = []
    raw_ports = r.sequence(spec, "ports", "spec")
    if not raw_ports:
        r.error("spec.ports", "is required: at least one port")
    for i, rp in enumerate(raw_ports):
        path = f"spec.ports[{i}]"
        p = r.mapping(rp, path)
        if p is None:
            continue
        number = r.integer(p, "port", path, low=1, high=65535, required=True)
        pname = r.string(p, "name", path)
        if len(raw_ports) > 1 and not pname:
            r.error(join_path(path, "name"), "is required when a Service has more than one port")
        target = p.get("targetPort", number)
        if isinstance(target, bool) or not isinstance(target, int | str):
            r.error(
                join_path(path, "targetPort"), f"must be a port number or a container port name, got {_kind_of(target)}"
            )
            continue
        if isinstance(target, int) and not 1 <= target <= 65535:
            r.error(join_path(path, "targetPort"), f"{target} is out of range; allowed 1 to 65535")
            continue
        proto = r.string(p, "protocol", path)
        if proto not in (None, "TCP"):
            r.unhonoured(join_path(path, "protocol"), f"{proto} ports are not proxied; only TCP/HTTP is")
        app_protocol = r.string(p, "appProtocol", path)
        protocol = _protocol_of(pname, app_protocol)
        if protocol not in ("http", "http2", "grpc"):
            r.unhonoured(join_path(path, "name"), f"{protocol} traffic is proxied as HTTP/1.1")
        if number is not None:
            ports.append(ServicePort(number, target, pname, protocol))
    numbers = [p.port for p in ports]
    for dup in {n for n in numbers if numbers.count(n) > 1}:
        r.error("spec.ports", f"port {dup} is listed twice")
    if _count_errors(r.problems) > before:
        return None
    return Service(name, ns, selector, tuple(ports), source)


def _parse_gateway(r: FieldReader, source: Source, name: str, ns: str, spec: dict[str, Any]) -> Gateway | None:
    before = _count_errors(r.problems)
    r.fields(spec, "spec", ["selector", "servers"])
    selector = r.string_map(spec, "selector", "spec")
    servers: list[GatewayServer] = []
    raw = r.sequence(spec, "servers", "spec")
    if not raw:
        r.error("spec.servers", "is required: at least one server (port and hosts)")
    for i, rs in enumerate(raw):
        path = f"spec.servers[{i}]"
        s = r.mapping(rs, path)
        if s is None:
            continue
        r.fields(s, path, ["port", "hosts", "tls", "bind", "defaultEndpoint", "name"])
        port = r.mapping(s.get("port"), join_path(path, "port"))
        if port is None:
            r.error(join_path(path, "port"), "is required")
            continue
        r.fields(port, join_path(path, "port"), ["number", "name", "protocol", "targetPort"])
        number = r.integer(port, "number", join_path(path, "port"), low=1, high=65535, required=True)
        pname = r.string(port, "name", join_path(path, "port")) or ""
        protocol = (r.string(port, "protocol", join_path(path, "port"), required=True) or "").upper()
        if protocol and protocol not in ("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS", "MONGO"):
            r.error(
                join_path(path, "port.protocol"),
                f"{protocol!r} is not a protocol; use HTTP, HTTPS, HTTP2, GRPC, TCP or TLS",
            )
        elif protocol and protocol not in ("HTTP", "HTTP2", "GRPC"):
            r.unhonoured(join_path(path, "port.protocol"), f"{protocol} servers are not opened locally")
        hosts = r.strings(s, "hosts", path)
        if not hosts:
            r.error(join_path(path, "hosts"), 'is required: at least one host, e.g. "*"')
        if "tls" in s:
            r.unhonoured(join_path(path, "tls"), "the local ingress gateway speaks plain HTTP")
        if number is not None and protocol in ("HTTP", "HTTP2", "GRPC"):
            servers.append(GatewayServer(number, pname, protocol, hosts))
    if _count_errors(r.problems) > before:
        return None
    return Gateway(name, ns, selector, tuple(servers), source)


# --------------------------------------------------------------------------- VirtualService

_HTTP_ROUTE_FIELDS = (
    "name match route redirect directResponse delegate rewrite timeout retries fault mirror mirrors "
    "mirrorPercentage mirrorPercent mirror_percent corsPolicy headers"
).split()
_MATCH_FIELDS = (
    "name uri scheme method authority headers withoutHeaders queryParams ignoreUriCase port sourceLabels "
    "sourceNamespace gateways statPrefix"
).split()


def _parse_virtual_service(
    r: FieldReader, source: Source, name: str, ns: str, spec: dict[str, Any], body: dict[str, Any]
) -> VirtualService | None:
    before = _count_errors(r.problems)
    r.fields(spec, "spec", ["hosts", "gateways", "http", "tls", "tcp", "exportTo"])
    hosts = r.strings(spec, "hosts", "spec")
    if not hosts:
        r.error("spec.hosts", "is required: the service names this VirtualService routes (e.g. [reviews])")
    for i, host in enumerate(hosts):
        if not _VS_HOST.fullmatch(host):
            r.error(f"spec.hosts[{i}]", f"{host!r} is not a host; use a service name, an FQDN or *.example.com")
    gateways = r.strings(spec, "gateways", "spec")
    for key in ("tls", "tcp"):
        if spec.get(key):
            r.unhonoured(f"spec.{key}", f"{key.upper()} routes are not proxied locally")
    http: list[HTTPRoute] = []
    raw_http = r.sequence(spec, "http", "spec")
    if not raw_http and not spec.get("tls") and not spec.get("tcp"):
        r.error("spec.http", "is required: at least one HTTP route")
    for i, rh in enumerate(raw_http):
        route = _parse_http_route(r, f"spec.http[{i}]", rh)
        if route is not None:
            http.append(route)
    if _count_errors(r.problems) > before:
        return None
    return VirtualService(name, ns, hosts, gateways, tuple(http), source, body)


def _parse_string_match(r: FieldReader, path: str, raw: Any) -> StringMatch | None:
    m = r.mapping(raw, path)
    if m is None:
        if raw is None:
            return StringMatch("present")
        return None
    r.fields(m, path, ["exact", "prefix", "regex"])
    given = [k for k in ("exact", "prefix", "regex") if k in m]
    if not given:
        return StringMatch("present")
    if len(given) > 1:
        r.error(path, f"give only one of exact, prefix or regex (found {', '.join(given)})")
        return None
    kind = given[0]
    value = m[kind]
    if not isinstance(value, str):
        r.error(join_path(path, kind), f"must be a string, got {_kind_of(value)}")
        return None
    if kind == "prefix" and not value:
        return StringMatch("present")  # every value starts with "" (and Envoy rejects an empty prefix)
    if kind == "regex":
        if value == "*":
            return StringMatch("present")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FutureWarning on "[[" must not become an error under -W error
                # RE2 takes flag groups anywhere and has U (ungreedy); Python's re does not: check the rest.
                re.compile(re.sub(r"\(\?[imsU-]+\)", "", re.sub(r"\(\?[imsU-]+:", "(?:", value)))
        except (re.error, OverflowError, RecursionError) as exc:
            r.error(join_path(path, kind), f"{value!r} is not a valid regular expression: {exc}")
            return None
        unsupported = _not_re2(value)
        if unsupported:
            r.error(
                join_path(path, kind),
                f"{value!r} uses {unsupported}, which RE2 (the regex engine of Istio and Envoy) does not support",
            )
            return None
    return StringMatch(kind, value)


_NOT_RE2_GROUPS = {
    "(?=": "a lookahead",
    "(?!": "a negative lookahead",
    "(?<=": "a lookbehind",
    "(?<!": "a negative lookbehind",
    "(?>": "an atomic group",
    "(?(": "a conditional group",
    "(?#": "a comment group",
    "(?P=": "a backreference",
}


def _not_re2(pattern: str) -> str | None:
    """A construct Python's ``re`` accepts but RE2 rejects (Envoy would then refuse the whole route table)."""
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        nxt = pattern[i + 1 : i + 2]
        if c == "\\":
            if nxt in tuple("123456789"):
                return f"a backreference (\\{nxt})"
            if nxt in ("Z", "u", "U"):
                return f"the escape \\{nxt}"
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1 if nxt != "^" else 2
            if pattern[i : i + 1] == "]":
                i += 1  # a ] right after [ or [^ is a literal
            continue
        elif c == "(":
            for prefix, what in _NOT_RE2_GROUPS.items():
                if pattern.startswith(prefix, i):
                    return what
            flags = re.match(r"\(\?([a-zA-Z-]+)[):]", pattern[i:])
            if flags and set(flags.group(1)) - set("imsU-"):
                return f"the inline flags (?{flags.group(1)})"
        elif c in "*+?}" and nxt == "+":
            return f"a possessive quantifier ({c}+)"
        elif c == "{":
            counts = re.match(r"\{(\d*)(?:,(\d*))?\}", pattern[i:])
            if counts and any(n and int(n) > 1000 for n in counts.groups()):
                return "a repetition count above 1000"
        i += 1
    return None


def _parse_match_map(r: FieldReader, path: str, raw: Any, lower_case: bool) -> dict[str, StringMatch]:
    m = r.mapping(raw, path)
    out: dict[str, StringMatch] = {}
    for key, value in (m or {}).items():
        key = str(key)
        if lower_case and not _HEADER_NAME.fullmatch(key) and not key.startswith("@request.auth.claims."):
            r.error(join_path(path, key), f"{key!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
            continue
        if lower_case and key != key.lower():
            r.error(join_path(path, key), f"header names must be lower case in Istio; write {key.lower()!r}")
            continue
        sm = _parse_string_match(r, join_path(path, key), value)
        if sm is not None:
            out[key] = sm
    return out


def _parse_match(r: FieldReader, path: str, raw: Any) -> HTTPMatch | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(m, path, _MATCH_FIELDS)

    def sm(key: str) -> StringMatch | None:
        return _parse_string_match(r, join_path(path, key), m[key]) if key in m else None

    return HTTPMatch(
        name=r.string(m, "name", path),
        uri=sm("uri"),
        scheme=sm("scheme"),
        method=sm("method"),
        authority=sm("authority"),
        headers=_parse_match_map(r, join_path(path, "headers"), m.get("headers"), lower_case=True),
        without_headers=_parse_match_map(
            r, join_path(path, "withoutHeaders"), m.get("withoutHeaders"), lower_case=True
        ),
        query_params=_parse_match_map(r, join_path(path, "queryParams"), m.get("queryParams"), lower_case=False),
        ignore_uri_case=bool(r.boolean(m, "ignoreUriCase", path)),
        port=r.integer(m, "port", path, low=1, high=65535),
        source_labels=r.string_map(m, "sourceLabels", path),
        source_namespace=r.string(m, "sourceNamespace", path),
        gateways=r.strings(m, "gateways", path),
        stat_prefix=r.string(m, "statPrefix", path),
    )


def _parse_destination(r: FieldReader, path: str, raw: Any) -> Destination | None:
    d = r.mapping(raw, path)
    if d is None:
        r.error(path, "is required: destination.host names the service")
        return None
    r.fields(d, path, ["host", "subset", "port"])
    host = r.string(d, "host", path, required=True)
    subset = r.string(d, "subset", path)
    port = None
    if "port" in d:
        pm = r.mapping(d.get("port"), join_path(path, "port"))
        if pm is not None:
            r.fields(pm, join_path(path, "port"), ["number"])
            port = r.integer(pm, "number", join_path(path, "port"), low=1, high=65535, required=True)
    if not host:
        return None
    return Destination(host, subset, port)


def _parse_header_ops(r: FieldReader, path: str, raw: Any) -> HeaderOperations | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(m, path, ["set", "add", "remove"])
    ops = HeaderOperations(r.string_map(m, "set", path), r.string_map(m, "add", path), r.strings(m, "remove", path))
    named = [(join_path(join_path(path, op), k), k, v) for op in ("set", "add") for k, v in getattr(ops, op).items()]
    named += [(f"{join_path(path, 'remove')}[{i}]", k, "") for i, k in enumerate(ops.remove)]
    for field_path, name, value in named:
        if not _HEADER_NAME.fullmatch(name.removeprefix(":")):
            r.error(field_path, f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
        elif any(ch in value for ch in "\x00\r\n"):
            r.error(field_path, "a header value must not contain NUL, CR or LF")
    return ops


def _parse_headers(r: FieldReader, path: str, raw: Any) -> Headers | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(m, path, ["request", "response"])
    return Headers(
        _parse_header_ops(r, join_path(path, "request"), m.get("request")),
        _parse_header_ops(r, join_path(path, "response"), m.get("response")),
    )


def _parse_fault(r: FieldReader, path: str, raw: Any) -> Fault | None:
    f = r.mapping(raw, path)
    if f is None:
        return None
    r.fields(f, path, ["delay", "abort"])
    delay = abort = None
    if "delay" in f:
        dp = join_path(path, "delay")
        d = r.mapping(f["delay"], dp)
        if d is not None:
            r.fields(d, dp, ["fixedDelay", "exponentialDelay", "percentage", "percent"])
            if "exponentialDelay" in d:
                r.error(join_path(dp, "exponentialDelay"), "is not supported by Istio; use fixedDelay")
            fixed = r.duration(d, "fixedDelay", dp, required="exponentialDelay" not in d)
            pct = r.percentage(d, "percentage", dp)
            percent = r.integer(d, "percent", dp, low=0, high=100)
            if "percent" in d and "percentage" not in d:
                r.warn(join_path(dp, "percent"), "is deprecated; use percentage: {value: N}")
            if fixed is not None:
                delay = Delay(fixed, pct, percent)
    if "abort" in f:
        ap = join_path(path, "abort")
        a = r.mapping(f["abort"], ap)
        if a is not None:
            r.fields(a, ap, ["httpStatus", "grpcStatus", "http2Error", "percentage"])
            if "percent" in a:
                r.error(join_path(ap, "percent"), "was removed from Istio; use percentage: {value: N}")
            if "http2Error" in a:
                r.error(join_path(ap, "http2Error"), "is not supported by Istio; use httpStatus or grpcStatus")
            status = r.integer(a, "httpStatus", ap, low=200, high=600)
            grpc = r.string(a, "grpcStatus", ap)
            if grpc is not None and grpc not in GRPC_STATUS:
                r.error(join_path(ap, "grpcStatus"), f"{grpc!r} is not a gRPC status; use a name such as UNAVAILABLE")
                grpc = None
            if status is not None and grpc is not None:
                r.error(ap, "give only one of httpStatus or grpcStatus")
            pct = r.percentage(a, "percentage", ap)
            if status is None and grpc is None and "httpStatus" not in a and "grpcStatus" not in a:
                r.error(ap, "needs httpStatus (e.g. 503) or grpcStatus")
            elif status is not None or grpc is not None:
                abort = Abort(status, grpc, pct)
                if pct is None:
                    r.warn(join_path(ap, "percentage"), "is not set, so no request is aborted (Istio's default is 0 %)")
    if "delay" not in f and "abort" not in f:
        r.error(path, "needs a delay, an abort, or both")
    if delay is not None and delay.percentage is None and delay.percent is None:
        r.warn(join_path(path, "delay.percentage"), "is not set, so no request is delayed (Istio's default is 0 %)")
    return Fault(delay, abort) if (delay or abort) else None


def _parse_retries(r: FieldReader, path: str, raw: Any) -> Retries | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(
        m,
        path,
        ["attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"],
    )
    attempts = r.integer(m, "attempts", path, low=0, high=INT32_MAX)
    per_try = r.duration(m, "perTryTimeout", path)
    retry_on = r.string(m, "retryOn", path)
    if retry_on is not None:
        for token in (t.strip() for t in retry_on.split(",")):
            if not token:
                r.error(join_path(path, "retryOn"), "has an empty entry; separate conditions with single commas")
            elif token.isascii() and token.isdigit():
                if not 100 <= int(token) <= 599:
                    r.error(join_path(path, "retryOn"), f"{token!r} is not an HTTP status code (100 to 599)")
            elif token not in RETRY_ON_TOKENS:
                guess = difflib.get_close_matches(token, sorted(RETRY_ON_TOKENS), n=1)
                hint = f"; did you mean {guess[0]!r}?" if guess else ""
                r.error(join_path(path, "retryOn"), f"{token!r} is not a retry condition or HTTP status{hint}")
    # Istio's attempts is a plain int32: unset means 0, retries off.
    if (attempts == 0 or m.get("attempts") is None) and (
        per_try is not None or retry_on is not None or "retryRemoteLocalities" in m
    ):
        r.error(
            join_path(path, "attempts"),
            f"{'is 0' if attempts == 0 else 'is not set, which means 0'} (retries off), "
            "so perTryTimeout, retryOn and retryRemoteLocalities must not be set",
        )
    if m.get("retryRemoteLocalities"):
        r.unhonoured(join_path(path, "retryRemoteLocalities"), "a local mesh has one locality")
    return Retries(
        attempts=attempts or 0,
        per_try_timeout_ms=per_try,
        retry_on=retry_on,
        retry_ignore_previous_hosts=r.boolean(m, "retryIgnorePreviousHosts", path),
        backoff_ms=r.duration(m, "backoff", path),
    )


def _header_safe_string(r: FieldReader, d: Mapping[str, Any], key: str, path: str) -> None:
    """A string Envoy puts into a request or reply line (path, Host, Location): no NUL, CR or LF."""
    value = r.string(d, key, path)
    if value is not None and any(ch in value for ch in "\x00\r\n"):
        r.error(join_path(path, key), "must not contain NUL, CR or LF")


def _parse_http_route(r: FieldReader, path: str, raw: Any) -> HTTPRoute | None:
    h = r.mapping(raw, path)
    if h is None:
        return None
    r.fields(h, path, _HTTP_ROUTE_FIELDS)
    matches = [
        m for i, rm in enumerate(r.sequence(h, "match", path)) if (m := _parse_match(r, f"{path}.match[{i}]", rm))
    ]
    routes: list[RouteDestination] = []
    raw_routes = r.sequence(h, "route", path)
    for i, rd in enumerate(raw_routes):
        rp = f"{path}.route[{i}]"
        d = r.mapping(rd, rp)
        if d is None:
            continue
        r.fields(d, rp, ["destination", "weight", "headers"])
        dest = _parse_destination(r, join_path(rp, "destination"), d.get("destination"))
        weight = r.integer(d, "weight", rp, low=0, high=INT32_MAX)
        headers = _parse_headers(r, join_path(rp, "headers"), d.get("headers"))
        if dest is not None:
            routes.append(RouteDestination(dest, weight or 0, headers))
    if len(raw_routes) > 1 and routes and sum(x.weight for x in routes) == 0 and len(routes) == len(raw_routes):
        r.error(f"{path}.route", "the weights add up to 0; give at least one destination a positive weight")
    redirect = r.mapping(h.get("redirect"), join_path(path, "redirect"))
    direct = r.mapping(h.get("directResponse"), join_path(path, "directResponse"))
    if "delegate" in h:
        r.error(
            join_path(path, "delegate"),
            "delegate VirtualServices are not supported by the local backend; inline the routes",
        )
    if not raw_routes and redirect is None and direct is None and "delegate" not in h:
        r.error(path, "needs a route (destinations), a redirect or a directResponse")
    if raw_routes and (redirect is not None or direct is not None):
        r.error(path, "give only one of route, redirect or directResponse")
    if redirect is not None:
        r.fields(
            redirect, join_path(path, "redirect"), ["uri", "authority", "port", "derivePort", "scheme", "redirectCode"]
        )
        r.integer(redirect, "redirectCode", join_path(path, "redirect"), low=300, high=399)
        r.integer(redirect, "port", join_path(path, "redirect"), low=1, high=65535)
        r.string(redirect, "scheme", join_path(path, "redirect"))
        for key in ("uri", "authority"):
            _header_safe_string(r, redirect, key, join_path(path, "redirect"))
    if direct is not None:
        r.fields(direct, join_path(path, "directResponse"), ["status", "body"])
        r.integer(direct, "status", join_path(path, "directResponse"), low=200, high=599, required=True)
    rewrite = r.mapping(h.get("rewrite"), join_path(path, "rewrite"))
    if rewrite is not None:
        r.fields(rewrite, join_path(path, "rewrite"), ["uri", "authority", "uriRegexRewrite"])
        for key in ("uri", "authority"):
            _header_safe_string(r, rewrite, key, join_path(path, "rewrite"))
        if "uriRegexRewrite" in rewrite:
            r.unhonoured(join_path(path, "rewrite.uriRegexRewrite"), "regex rewrites are not translated yet")
    if "corsPolicy" in h:
        r.unhonoured(join_path(path, "corsPolicy"), "CORS is not enforced by the local sidecars")
    mirrors: list[Mirror] = []
    if "mirror" in h:
        dest = _parse_destination(r, join_path(path, "mirror"), h.get("mirror"))
        pct = r.percentage(h, "mirrorPercentage", path)
        if "mirrorPercent" in h:
            legacy = r.integer(h, "mirrorPercent", path, low=0, high=100)
            r.warn(join_path(path, "mirrorPercent"), "is deprecated; use mirrorPercentage: {value: N}")
            if pct is None and legacy is not None:
                pct = float(legacy)
        if dest is not None:
            mirrors.append(Mirror(dest, pct))
    for i, rm in enumerate(r.sequence(h, "mirrors", path)):
        mp = f"{path}.mirrors[{i}]"
        mm = r.mapping(rm, mp)
        if mm is None:
            continue
        r.fields(mm, mp, ["destination", "percentage"])
        dest = _parse_destination(r, join_path(mp, "destination"), mm.get("destination"))
        if dest is not None:
            mirrors.append(Mirror(dest, r.percentage(mm, "percentage", mp)))
    return HTTPRoute(
        name=r.string(h, "name", path),
        matches=tuple(matches),
        route=tuple(routes),
        redirect=redirect,
        direct_response=direct,
        rewrite=rewrite,
        timeout_ms=r.duration(h, "timeout", path),
        retries=_parse_retries(r, join_path(path, "retries"), h.get("retries")),
        fault=_parse_fault(r, join_path(path, "fault"), h.get("fault")),
        mirrors=tuple(mirrors),
        headers=_parse_headers(r, join_path(path, "headers"), h.get("headers")),
    )


# --------------------------------------------------------------------------- DestinationRule


def _parse_traffic_policy(r: FieldReader, path: str, raw: Any, port_level: bool = False) -> TrafficPolicy | None:
    t = r.mapping(raw, path)
    if t is None:
        return None
    known = ["loadBalancer", "connectionPool", "outlierDetection", "tls", "tunnel", "proxyProtocol", "retryBudget"]
    r.fields(t, path, [*known, "port"] if port_level else [*known, "portLevelSettings"])
    lb = None
    if "loadBalancer" in t:
        lp = join_path(path, "loadBalancer")
        m = r.mapping(t["loadBalancer"], lp) or {}
        r.fields(m, lp, ["simple", "consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"])
        lb = r.string(m, "simple", lp)
        if lb is not None and lb not in LB_SIMPLE:
            r.error(join_path(lp, "simple"), f"{lb!r} is not a load balancer; use one of {', '.join(LB_SIMPLE)}")
            lb = None
        for key in ("consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"):
            if key in m:
                r.unhonoured(
                    join_path(lp, key), "not translated yet; the simple policy (default LEAST_REQUEST) is used"
                )
        if lb == "PASSTHROUGH":
            r.unhonoured(join_path(lp, "simple"), "PASSTHROUGH needs original-destination routing")
    for key in ("tls", "tunnel", "proxyProtocol"):
        if key in t:
            r.unhonoured(join_path(path, key), "local sidecars talk plain HTTP to each other")
    pool = None
    if "connectionPool" in t:
        pool = _parse_pool(r, join_path(path, "connectionPool"), t["connectionPool"])
    outlier = None
    if "outlierDetection" in t:
        outlier = _parse_outlier(r, join_path(path, "outlierDetection"), t["outlierDetection"])
    budget = None
    if "retryBudget" in t:
        bp = join_path(path, "retryBudget")
        b = r.mapping(t["retryBudget"], bp) or {}
        r.fields(b, bp, ["percent", "minRetryConcurrency", "budgetInterval"])
        pct = r.percentage(b, "percent", bp)
        budget = RetryBudget(pct, r.integer(b, "minRetryConcurrency", bp, low=0, high=2**32 - 1))
    levels: dict[int, TrafficPolicy] = {}
    for i, rl in enumerate(r.sequence(t, "portLevelSettings", path)):
        lp = f"{path}.portLevelSettings[{i}]"
        lm = r.mapping(rl, lp) or {}
        pm = r.mapping(lm.get("port"), join_path(lp, "port"))
        number = r.integer(pm or {}, "number", join_path(lp, "port"), low=1, high=65535, required=True)
        sub = _parse_traffic_policy(r, lp, lm, port_level=True)
        if number is not None and sub is not None:
            levels[number] = sub
    return TrafficPolicy(lb, pool, outlier, budget, levels)


def _parse_pool(r: FieldReader, path: str, raw: Any) -> ConnectionPool | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(m, path, ["tcp", "http"])
    if not m.get("tcp") and not m.get("http"):
        r.error(path, "needs tcp or http settings")
    tp, hp = join_path(path, "tcp"), join_path(path, "http")
    tcp = r.mapping(m.get("tcp"), tp) or {}
    http = r.mapping(m.get("http"), hp) or {}
    r.fields(tcp, tp, ["maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"])
    r.fields(
        http,
        hp,
        "http1MaxPendingRequests http2MaxRequests maxRequestsPerConnection maxRetries idleTimeout "
        "h2UpgradePolicy useClientProtocol maxConcurrentStreams http2KeepAlive".split(),
    )
    if "tcpKeepalive" in tcp:
        r.unhonoured(join_path(tp, "tcpKeepalive"), "loopback connections need no keepalive probes")
    for key in ("h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams", "http2KeepAlive"):
        if key in http:
            r.unhonoured(join_path(hp, key), "local sidecars speak HTTP/1.1 to each other")
    return ConnectionPool(
        max_connections=r.integer(tcp, "maxConnections", tp, low=0, high=INT32_MAX),
        connect_timeout_ms=r.duration(tcp, "connectTimeout", tp),
        max_connection_duration_ms=r.duration(tcp, "maxConnectionDuration", tp),
        tcp_idle_timeout_ms=r.duration(tcp, "idleTimeout", tp),
        http1_max_pending_requests=r.integer(http, "http1MaxPendingRequests", hp, low=0, high=INT32_MAX),
        http2_max_requests=r.integer(http, "http2MaxRequests", hp, low=0, high=INT32_MAX),
        max_requests_per_connection=r.integer(http, "maxRequestsPerConnection", hp, low=0, high=INT32_MAX),
        max_retries=r.integer(http, "maxRetries", hp, low=0, high=INT32_MAX),
        idle_timeout_ms=r.duration(http, "idleTimeout", hp),
    )


def _parse_outlier(r: FieldReader, path: str, raw: Any) -> OutlierDetection | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    r.fields(
        m,
        path,
        "consecutive5xxErrors consecutiveGatewayErrors consecutiveErrors interval baseEjectionTime maxEjectionPercent "
        "minHealthPercent splitExternalLocalOriginErrors consecutiveLocalOriginFailures".split(),
    )
    if "consecutiveErrors" in m:
        r.warn(join_path(path, "consecutiveErrors"), "is deprecated and ignored by Istio; use consecutive5xxErrors")
    split = bool(r.boolean(m, "splitExternalLocalOriginErrors", path))
    local = r.integer(m, "consecutiveLocalOriginFailures", path, low=0)
    if local is not None and not split:
        r.error(join_path(path, "consecutiveLocalOriginFailures"), "needs splitExternalLocalOriginErrors: true")
    return OutlierDetection(
        consecutive_5xx_errors=_uint32(r, m, "consecutive5xxErrors", path),
        consecutive_gateway_errors=_uint32(r, m, "consecutiveGatewayErrors", path),
        interval_ms=r.duration(m, "interval", path),
        base_ejection_time_ms=r.duration(m, "baseEjectionTime", path),
        max_ejection_percent=r.integer(m, "maxEjectionPercent", path, low=0, high=100),
        min_health_percent=r.integer(m, "minHealthPercent", path, low=0, high=100),
        split_external_local_origin_errors=split,
        consecutive_local_origin_failures=local,
    )


def _uint32(r: FieldReader, m: Mapping[str, Any], key: str, path: str) -> int | None:
    # UInt32Value may also be written in its wrapper form {value: N}.
    if isinstance(m.get(key), dict):
        return r.integer(m[key], "value", join_path(path, key), low=0, high=2**32 - 1)
    return r.integer(m, key, path, low=0, high=2**32 - 1)


def _parse_destination_rule(
    r: FieldReader, source: Source, name: str, ns: str, spec: dict[str, Any], body: dict[str, Any]
) -> DestinationRule | None:
    before = _count_errors(r.problems)
    r.fields(spec, "spec", ["host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"])
    host = r.string(spec, "host", "spec", required=True)
    if "workloadSelector" in spec:
        r.unhonoured("spec.workloadSelector", "the rule applies to every client")
    policy = _parse_traffic_policy(r, "spec.trafficPolicy", spec.get("trafficPolicy"))
    subsets: list[Subset] = []
    for i, rs in enumerate(r.sequence(spec, "subsets", "spec")):
        sp = f"spec.subsets[{i}]"
        s = r.mapping(rs, sp)
        if s is None:
            continue
        r.fields(s, sp, ["name", "labels", "trafficPolicy"])
        sname = r.string(s, "name", sp, required=True)
        if sname and not _DNS1123_LABEL.fullmatch(sname):
            r.error(join_path(sp, "name"), f"{sname!r} is not a valid subset name (lower-case letters, digits, '-')")
            continue
        if sname and any(x.name == sname for x in subsets):
            r.error(join_path(sp, "name"), f"subset {sname!r} is defined twice")
            continue
        sub_policy = _parse_traffic_policy(r, join_path(sp, "trafficPolicy"), s.get("trafficPolicy"))
        if sname:
            subsets.append(Subset(sname, r.string_map(s, "labels", sp), sub_policy))
    if _count_errors(r.problems) > before or host is None:
        return None
    return DestinationRule(name, ns, host, policy, tuple(subsets), source, body)
