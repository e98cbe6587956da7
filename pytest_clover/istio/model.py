"""The Kubernetes + Istio model every backend shares: typed, immutable objects and the topology they form.

Objects come from :mod:`.parse` (YAML → objects, with every problem named) and :mod:`.checks` (the
cross-object checks and the entry points). A backend deploys a :class:`Topology`; the fault engine merges
faults into the objects' documents (:mod:`.documents`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError, Problem

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
LOCAL_COMMAND_ANNOTATION = "clover.opnfv.org/local-command"
SIDECAR_INJECT = "sidecar.istio.io/inject"
"""The pod label (Istio's current API) or annotation (its older one, still honoured) by which a pod opts out of
(``"false"``) or into (``"true"``) Istio's sidecar injection: see :func:`sidecar_injected`."""
DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "svc.cluster.local"
GRPC_STATUS = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


# --------------------------------------------------------------------------- names across namespaces


def resolve_host(host: str, namespace: str) -> tuple[str, str] | None:
    """The Kubernetes Service an Istio host names, as ``(service name, service namespace)``; None otherwise.

    ``namespace`` is the namespace of the object the host is written in. A short name (no dot) is read in that
    namespace, as Istio reads it (``reviews`` in a VirtualService of ``ns`` is ``reviews.ns.svc.cluster.local``,
    whatever namespace the Service is in). ``name.other``, ``name.other.svc`` and the FQDN name a Service of
    ``other`` (Istio itself takes a dotted host literally and matches it against the FQDN; the mesh also
    accepts the two shorter forms that a pod's DNS search path resolves). Wildcards, IPs and external names
    (``*``, ``*.example.com``, ``api.example.com``) name no Service.
    """
    if not host or "*" in host:
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return host, namespace
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
        return parts[0], parts[1]
    if len(parts) == 5 and ".".join(parts[2:]) == CLUSTER_DOMAIN:
        return parts[0], parts[1]
    return None


def resolve_gateway(ref: str, namespace: str) -> tuple[str, str]:
    """A VirtualService's gateway reference as ``(gateway namespace, gateway name)``: ``name`` is read in the
    VirtualService's ``namespace``, ``ns/name`` names another namespace's Gateway (Istio's rule)."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return ns, name
    return namespace, ref


def sidecar_injected(labels: Mapping[str, str], annotations: Mapping[str, str], *, default: bool = True) -> bool:
    """Whether Istio's sidecar injector gives a pod with these template ``labels`` and ``annotations`` a sidecar,
    as istiod's ``injectRequired`` decides it: the label ``sidecar.istio.io/inject`` when the pod has it (even
    empty), else the annotation of that name; exactly ``"true"`` or ``"false"`` decides, any other value
    (``"False"``, ``"no"``, ``""``) falls back to ``default``: the namespace's policy (istiod only logs a warning
    for a value that is neither, and injects in a namespace that has injection on). The embedded mesh injects
    every namespace, so its ``default`` is True."""
    value = labels[SIDECAR_INJECT] if SIDECAR_INJECT in labels else annotations.get(SIDECAR_INJECT, "")
    if value == "true":
        return True
    if value == "false":
        return False
    return default


# --------------------------------------------------------------------------- model: Kubernetes


@dataclass(frozen=True)
class Source:
    """Where an object came from: file path and 0-based document index in that file."""

    file: str
    index: int


@dataclass(frozen=True)
class ContainerPort:
    port: int
    name: str | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    field_ref: str | None = None
    """Downward-API path (``metadata.name``, ``metadata.labels['version']``, ``status.podIP``…)."""


@dataclass(frozen=True)
class Probe:
    kind: str
    """``http`` or ``tcp``."""
    port: int | str
    path: str = "/"
    failure_threshold: int = 3
    """Consecutive failed probes before a ready pod is marked not ready (``failureThreshold``, Kubernetes' default
    3): one slow answer is not an outage."""
    timeout_s: float = 1.0
    """Seconds one probe may take (``timeoutSeconds``, default 1)."""


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness: Probe | None = None

    def port_number(self, port: int | str) -> int | None:
        """Resolve a port given by number or by name to the container port number."""
        if isinstance(port, int):
            return port
        for p in self.ports:
            if p.name == port:
                return p.port
        return None


@dataclass(frozen=True)
class Deployment:
    name: str
    namespace: str
    replicas: int
    selector: Mapping[str, str]
    pod_labels: Mapping[str, str]
    pod_annotations: Mapping[str, str]
    containers: tuple[Container, ...]
    source: Source
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The Deployment's ``spec`` as written (pod template, strategy, paused, revisionHistoryLimit), where the
    object came from a document: what a rollout hashes and follows. Empty for objects built by hand."""

    @property
    def app(self) -> str:
        return self.pod_labels.get("app", self.name)

    @property
    def version(self) -> str:
        return self.pod_labels.get("version", "")

    @property
    def local_command(self) -> str | None:
        return self.pod_annotations.get(LOCAL_COMMAND_ANNOTATION)

    @property
    def sidecar_injected(self) -> bool:
        """Whether its pods get an Istio sidecar in a namespace with injection on (every namespace of the embedded
        mesh): False when its pod template opts out with ``sidecar.istio.io/inject: "false"`` (see
        :func:`sidecar_injected`)."""
        return sidecar_injected(self.pod_labels, self.pod_annotations)


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str
    name: str | None = None
    protocol: str = "http"
    """Istio protocol selection: from ``appProtocol`` or the port name prefix (``http-…``, ``grpc-…``)."""


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]
    source: Source

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.{CLUSTER_DOMAIN}"

    def port(self, number: int | None) -> ServicePort | None:
        """The port a destination means: its number, or the only port when none is given."""
        if number is None:
            return self.ports[0] if len(self.ports) == 1 else None
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class GatewayServer:
    port: int
    port_name: str
    protocol: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Gateway:
    name: str
    namespace: str
    selector: Mapping[str, str]
    servers: tuple[GatewayServer, ...]
    source: Source


# --------------------------------------------------------------------------- model: Istio


@dataclass(frozen=True)
class StringMatch:
    kind: str
    """``exact``, ``prefix``, ``regex`` or ``present`` (``{}`` or ``regex: "*"``)."""
    value: str = ""


@dataclass(frozen=True)
class HTTPMatch:
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    ignore_uri_case: bool = False
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str | None = None
    gateways: tuple[str, ...] = ()
    stat_prefix: str | None = None


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int = 0
    headers: Headers | None = None


@dataclass(frozen=True)
class Delay:
    fixed_delay_ms: float
    percentage: float | None = None
    """``percentage.value`` (0–100, any precision); None when not given."""
    percent: int | None = None
    """The deprecated integer ``percent``; used only when ``percentage`` is absent, as Istio does."""


@dataclass(frozen=True)
class Abort:
    http_status: int | None = None
    grpc_status: str | None = None
    percentage: float | None = None


@dataclass(frozen=True)
class Fault:
    delay: Delay | None = None
    abort: Abort | None = None


@dataclass(frozen=True)
class Retries:
    attempts: int
    per_try_timeout_ms: float | None = None
    retry_on: str | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff_ms: float | None = None


@dataclass(frozen=True)
class Mirror:
    destination: Destination
    percentage: float | None = None
    """None means 100 % (Istio's default when no percentage is given)."""


@dataclass(frozen=True)
class HTTPRoute:
    name: str | None = None
    matches: tuple[HTTPMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()
    redirect: Mapping[str, Any] | None = None
    direct_response: Mapping[str, Any] | None = None
    rewrite: Mapping[str, Any] | None = None
    timeout_ms: float | None = None
    retries: Retries | None = None
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    headers: Headers | None = None


@dataclass(frozen=True)
class VirtualService:
    name: str
    namespace: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    http: tuple[HTTPRoute, ...]
    source: Source
    raw: Mapping[str, Any]
    """The document as written, so it can be merged into (faults) and written back unchanged."""

    @property
    def bound_to_mesh(self) -> bool:
        return not self.gateways or "mesh" in self.gateways


@dataclass(frozen=True)
class ConnectionPool:
    max_connections: int | None = None
    connect_timeout_ms: float | None = None
    max_connection_duration_ms: float | None = None
    tcp_idle_timeout_ms: float | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout_ms: float | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    interval_ms: float | None = None
    base_ejection_time_ms: float | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failures: int | None = None


@dataclass(frozen=True)
class RetryBudget:
    percent: float | None = None
    min_retry_concurrency: int | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: str | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    retry_budget: RetryBudget | None = None
    port_level: Mapping[int, TrafficPolicy] = field(default_factory=dict)

    def for_port(self, port: int) -> TrafficPolicy:
        """Istio: a portLevelSettings entry replaces the lb, pool and outlier blocks for that port."""
        return self.port_level.get(port, self)


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str]
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRule:
    name: str
    namespace: str
    host: str
    traffic_policy: TrafficPolicy | None
    subsets: tuple[Subset, ...]
    source: Source
    raw: Mapping[str, Any]

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)

    def policy_for(self, subset: str | None, port: int) -> TrafficPolicy | None:
        """Istio's merge: each block set on the subset replaces the DestinationRule's block whole."""
        base = self.traffic_policy.for_port(port) if self.traffic_policy else None
        sub = self.subset(subset) if subset else None
        if sub is None or sub.traffic_policy is None:
            return base
        over = sub.traffic_policy.for_port(port)
        if base is None:
            return over
        return TrafficPolicy(
            load_balancer=over.load_balancer or base.load_balancer,
            connection_pool=over.connection_pool or base.connection_pool,
            outlier_detection=over.outlier_detection or base.outlier_detection,
            retry_budget=base.retry_budget,
        )


IstioObject = VirtualService | DestinationRule | Gateway
KubeObject = Deployment | Service | IstioObject


@dataclass
class Topology:
    """Everything a mesh is built from. Istio objects can change while the mesh runs."""

    deployments: dict[str, Deployment] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    gateways: dict[str, Gateway] = field(default_factory=dict)
    virtual_services: dict[str, VirtualService] = field(default_factory=dict)
    destination_rules: dict[str, DestinationRule] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    namespace: str = DEFAULT_NAMESPACE

    def copy(self) -> Topology:
        """A copy whose tables can change without touching this one (objects are immutable)."""
        return Topology(
            dict(self.deployments),
            dict(self.services),
            dict(self.gateways),
            dict(self.virtual_services),
            dict(self.destination_rules),
            list(self.warnings),
            self.namespace,
        )

    def service_for_host(self, host: str, namespace: str | None = None) -> Service | None:
        """Resolve an Istio host (short name, ``name.ns``, or FQDN) to a Service of this topology.

        ``namespace`` is where the host is written (the VirtualService's or DestinationRule's namespace): a
        short name is read there (:func:`resolve_host`). Without it, a short name means this topology's
        Service of that name, whatever its namespace (one namespace per topology)."""
        name = host.split(".")[0]
        svc = self.services.get(name)
        if svc is None:
            return None
        if namespace is not None:
            return svc if resolve_host(host, namespace) == (svc.name, svc.namespace) else None
        if host in (svc.name, f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc", svc.fqdn):
            return svc
        return None

    def destination_rule_for(self, service: Service) -> DestinationRule | None:
        """The DestinationRule of ``service`` among this topology's (the first whose host names it)."""
        for dr in self.destination_rules.values():
            if self.service_for_host(dr.host, dr.namespace) is service:
                return dr
        return None

    def in_namespace(self, namespace: str) -> Topology:
        """A copy of this topology in ``namespace``: every object moved there (as ``kubectl apply -n``)."""

        def moved(table: Mapping[str, Any]) -> dict[str, Any]:
            return {k: replace(v, namespace=namespace) for k, v in table.items()}

        return Topology(
            moved(self.deployments),
            moved(self.services),
            moved(self.gateways),
            moved(self.virtual_services),
            moved(self.destination_rules),
            list(self.warnings),
            namespace,
        )

    def add(self, obj: KubeObject) -> None:
        """Add or replace an object (``kubectl apply`` semantics: same kind and name replaces)."""
        table: dict[str, Any] = self._table(obj)
        table[obj.name] = obj

    def remove(self, kind: str, name: str) -> bool:
        table = self._table_for_kind(kind)
        return table.pop(name, None) is not None

    def _table(self, obj: KubeObject) -> dict[str, Any]:
        return self._table_for_kind(type(obj).__name__)

    def _table_for_kind(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "Deployment": self.deployments,
            "Service": self.services,
            "Gateway": self.gateways,
            "VirtualService": self.virtual_services,
            "DestinationRule": self.destination_rules,
        }
        if kind not in tables:
            raise ConfigError.single("<request>", f"{kind}/?", "kind", f"unknown kind {kind!r}")
        return tables[kind]

    def istio_objects(self) -> list[IstioObject]:
        return [*self.gateways.values(), *self.virtual_services.values(), *self.destination_rules.values()]


def parse_duration(value: Any) -> float | None:
    """Parse an Istio/Go duration (``1h30m``, ``1.5s``, ``500ms``) to milliseconds; None if malformed."""
    if isinstance(value, bool) or not isinstance(value, str) or not value:
        return None
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNIT_MS[m.group(2)]
        pos = m.end()
    return total if pos == len(value) else None
