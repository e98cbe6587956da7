"""Server-side printing: the ``meta.k8s.io/v1`` ``Table`` kubectl asks for (``Accept: …;as=Table``).

kubectl prints what the server puts in the table, so the columns and cells here follow the kube-apiserver's
printers (``pkg/printers/internalversion``) for built-in kinds and the CRD table convertor (the CRD's
``additionalPrinterColumns``) for the Istio kinds. As in the kube-apiserver, every row carries every
column; kubectl hides the ``priority`` 1 ones unless ``-o wide``.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

from .resources import Resource

__all__ = ["human_duration", "table"]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources may "
    "allow a client to request the generation of an appropriate name automatically. Name is primarily intended "
    "for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More "
    "info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

Row = list[Any]
Column = dict[str, Any]


def human_duration(seconds: float) -> str:
    """A duration as Kubernetes' ``duration.HumanDuration`` prints it: ``5s``, ``3m20s``, ``2d3h``, ``3y``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _since(value: Any, now: float) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when unset."""
    moment = _parse_time(value)
    if moment is None:
        return "<unknown>"
    return human_duration(now - moment)


def _column(name: str, kind: str = "string", description: str = "", *, priority: int = 0,
            fmt: str = "") -> Column:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


NAME_COLUMN = _column("Name", "string", NAME_DESCRIPTION, fmt="name")
AGE_COLUMN = _column("Age", "string", AGE_DESCRIPTION)
# Column types are the kube-apiserver's, even where it declares "string" and sends integers (Up-to-date, Data).


def _get(obj: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and -len(obj) <= step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def _age(obj: dict[str, Any], now: float) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


def _format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, ``<none>`` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _format_selector(selector: Any) -> str:
    """A ``LabelSelector`` as ``metav1.LabelSelectorAsSelector(...).String()`` prints it."""
    if not isinstance(selector, dict):
        return "<none>"
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or ():
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = ",".join(sorted(str(v) for v in expression.get("values") or ()))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                "DoesNotExist": f"!{key}"}.get(str(operator), key)
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements))


def _containers_and_images(pod_spec: Any) -> tuple[str, str]:
    containers = _get(pod_spec, "containers") or []
    names = ",".join(str(c.get("name", "")) for c in containers if isinstance(c, dict))
    images = ",".join(str(c.get("image", "")) for c in containers if isinstance(c, dict))
    return names, images


def _has_condition(status: Any, kind: str) -> bool:
    for condition in _get(status, "conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


# --- pods ---------------------------------------------------------------------------------------------------

POD_COLUMNS = [
    NAME_COLUMN,
    _column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", description="The aggregate status of the containers in this pod."),
    _column("Restarts", description="The number of times the containers in this pod have been restarted and when "
            "the last container in this pod has restarted."),
    AGE_COLUMN,
    _column("IP", description="podIP address allocated to the pod. Routable at least within the cluster. Empty if "
            "not yet allocated.", priority=1),
    _column("Node", description="NodeName indicates in which node this pod is scheduled.", priority=1),
    _column("Nominated Node", description="nominatedNodeName is set only when this pod preempts other pods on the "
            "node, but it cannot be scheduled right away as preemption victims receive their graceful termination "
            "periods.", priority=1),
    _column("Readiness Gates", description="If specified, all readiness gates will be evaluated for pod readiness.",
            priority=1),
]


def _latest(current: float | None, state: Any) -> float | None:
    finished = _parse_time(_get(state, "terminated", "finishedAt"))
    if finished is not None and (current is None or finished > current):
        return finished
    return current


def _pod_row(pod: dict[str, Any], now: float) -> Row:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    restartable = {c.get("name") for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or ()) + len(restartable)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: float | None = None
    last_sidecar_restart: float | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        restarts += int(container.get("restartCount") or 0)
        last_restart = _latest(last_restart, container.get("lastState"))
        is_sidecar = container.get("name") in restartable
        if is_sidecar:
            sidecar_restarts += int(container.get("restartCount") or 0)
            last_sidecar_restart = _latest(last_sidecar_restart, container.get("lastState"))
        state = container.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if is_sidecar and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + str(terminated["reason"])
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting is not None and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{index}/{len(spec.get('initContainers') or ())}"
        initializing = True
        break

    if not initializing or _has_condition(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        error_reason = ""
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount") or 0)
            last_restart = _latest(last_restart, container.get("lastState"))
            state = container.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None:
                if terminated.get("reason"):
                    reason = str(terminated["reason"])
                elif terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
                if int(terminated.get("exitCode") or 0) != 0:
                    error_reason = reason
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed":
            if has_running and _has_condition(status, "Ready"):
                reason = "Running"
            elif error_reason:
                reason = error_reason
            elif has_running:
                reason = "NotReady"

    deleting = bool(_get(pod, "metadata", "deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restart_cell = str(restarts)
    if restarts and last_restart is not None:
        restart_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = status.get("podIPs") or []
    ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    gate_cell = "<none>"
    if gates:
        met = sum(1 for g in gates if _has_condition(status, str(g.get("conditionType", ""))))
        gate_cell = f"{met}/{len(gates)}"
    return [
        _get(pod, "metadata", "name"), f"{ready}/{total}", reason, restart_cell, _age(pod, now), ip,
        spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gate_cell,
    ]


# --- workloads ----------------------------------------------------------------------------------------------

TEMPLATE_COLUMNS = [
    _column("Containers", description="Names of each container in the template.", priority=1),
    _column("Images", description="Images referenced by each container in the template.", priority=1),
    _column("Selector", description="Label selector for pods. Existing ReplicaSets whose pods are selected by this "
            "will be the ones affected by this deployment.", priority=1),
]
DEPLOYMENT_COLUMNS = [
    NAME_COLUMN,
    _column("Ready", description="Number of the pod with ready state"),
    _column("Up-to-date", "string", "Total number of non-terminating pods targeted by this deployment that have "
            "the desired template spec."),
    _column("Available", "string", "Total number of available non-terminating pods (ready for at least "
            "minReadySeconds) targeted by this deployment."),
    AGE_COLUMN,
    *TEMPLATE_COLUMNS,
]
REPLICASET_COLUMNS = [
    NAME_COLUMN,
    _column("Desired", "integer", "Replicas is the number of desired pods."),
    _column("Current", "integer", "Replicas is the most recently observed number of non-terminating pods."),
    _column("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready "
            "Condition."),
    AGE_COLUMN,
    *TEMPLATE_COLUMNS,
]


def _replicas(obj: dict[str, Any]) -> int:
    # The kube-apiserver defaults spec.replicas to 1 before anything is printed.
    value = _get(obj, "spec", "replicas")
    return 1 if value is None else int(value)


def _status_int(obj: dict[str, Any], name: str) -> int:
    return int(_get(obj, "status", name) or 0)


def _deployment_row(obj: dict[str, Any], now: float) -> Row:
    containers, images = _containers_and_images(_get(obj, "spec", "template", "spec"))
    return [
        _get(obj, "metadata", "name"), f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}",
        _status_int(obj, "updatedReplicas"), _status_int(obj, "availableReplicas"), _age(obj, now),
        containers, images, _format_selector(_get(obj, "spec", "selector")),
    ]


def _replicaset_row(obj: dict[str, Any], now: float) -> Row:
    containers, images = _containers_and_images(_get(obj, "spec", "template", "spec"))
    return [
        _get(obj, "metadata", "name"), _replicas(obj), _status_int(obj, "replicas"),
        _status_int(obj, "readyReplicas"), _age(obj, now), containers, images,
        _format_selector(_get(obj, "spec", "selector")),
    ]


# --- services and endpoints ---------------------------------------------------------------------------------

SERVICE_COLUMNS = [
    NAME_COLUMN,
    _column("Type", description="type determines how the Service is exposed."),
    _column("Cluster-IP", description="clusterIP is the IP address of the service and is usually assigned "
            "randomly."),
    _column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the cluster will "
            "also accept traffic for this service."),
    _column("Port(s)", description="The list of ports that are exposed by this service."),
    AGE_COLUMN,
    _column("Selector", description="Route service traffic to pods with label keys and values matching this "
            "selector.", priority=1),
]


def _external_ip(service: dict[str, Any]) -> str:
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or ()]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = _get(service, "status", "loadBalancer", "ingress") or []
        addresses = [str(i.get("ip") or i.get("hostname") or "") for i in ingress]
        addresses = [a for a in addresses if a]
        if external:
            return ",".join([*addresses, *external])
        return ",".join(addresses) if addresses else "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service_row(obj: dict[str, Any], now: float) -> Row:
    spec = obj.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for port in spec.get("ports") or ():
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            ports.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port.get('port')}/{protocol}")
    return [
        _get(obj, "metadata", "name"), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
        _external_ip(obj), ",".join(ports) or "<none>", _age(obj, now), _format_labels(spec.get("selector")),
    ]


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _limited(listed: list[str], total: int, limit: int = 3) -> str:
    text = ",".join(listed[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text


ENDPOINTS_COLUMNS = [NAME_COLUMN, _column("Endpoints", description="The set of all endpoints is the union of all "
                                          "subsets."), AGE_COLUMN]


def _endpoints_row(obj: dict[str, Any], now: float) -> Row:
    subsets = obj.get("subsets") or []
    if not subsets:
        cell = "<none>"
    else:
        listed: list[str] = []
        for subset in subsets:
            addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or ()]
            ports = subset.get("ports") or []
            if not ports:
                listed.extend(addresses)
            for port in ports:
                listed.extend(_join_host_port(a, port.get("port")) for a in addresses)
        cell = _limited(listed, len(listed))
    return [_get(obj, "metadata", "name"), cell, _age(obj, now)]


ENDPOINTSLICE_COLUMNS = [
    NAME_COLUMN,
    _column("AddressType", description="addressType specifies the type of address carried by this EndpointSlice."),
    _column("Ports", description="ports specifies the list of network ports exposed by each endpoint in this "
            "slice."),
    _column("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
    AGE_COLUMN,
]


def _endpointslice_row(obj: dict[str, Any], now: float) -> Row:
    ports = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in obj.get("ports") or ()]
    addresses = [str(a) for e in obj.get("endpoints") or () for a in e.get("addresses") or ()]
    return [
        _get(obj, "metadata", "name"), obj.get("addressType") or "",
        _limited(ports, len(ports)) if ports else "<unset>",
        _limited(addresses, len(addresses)) if addresses else "<unset>", _age(obj, now),
    ]


# --- the rest -----------------------------------------------------------------------------------------------

NAMESPACE_COLUMNS = [NAME_COLUMN, _column("Status", description="The status of the namespace"), AGE_COLUMN]
CONFIGMAP_COLUMNS = [NAME_COLUMN, _column("Data", "string", "Data contains the configuration data."), AGE_COLUMN]
SERVICEACCOUNT_COLUMNS = [NAME_COLUMN, _column("Secrets", "string", "Secrets is a list of the secrets in the same "
                                               "namespace that pods running using this ServiceAccount are allowed "
                                               "to use."), AGE_COLUMN]
LEASE_COLUMNS = [NAME_COLUMN, _column("Holder", description="holderIdentity contains the identity of the holder of "
                                      "a current lease."), AGE_COLUMN]
CRD_COLUMNS = [NAME_COLUMN, _column("Created At", "date", AGE_DESCRIPTION)]
EVENT_COLUMNS = [
    _column("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    _column("Type", description="Type of this event (Normal, Warning), new types could be added in the future"),
    _column("Reason", description="This should be a short, machine understandable string that gives the reason "
            "for the transition into the object's current status."),
    _column("Object", description="The object that this event is about."),
    _column("Subobject", description="If referring to a piece of an object instead of an entire object, this "
            "string should contain a valid JSON/Go field access statement.", priority=1),
    _column("Source", description="The component reporting this event.", priority=1),
    _column("Message", description="A human-readable description of the status of this operation."),
    _column("First Seen", description="The time at which the event was first recorded.", priority=1),
    _column("Count", description="The number of times this event has occurred.", priority=1),
    _column("Name", description=NAME_DESCRIPTION, priority=1, fmt="name"),
]


def _namespace_row(obj: dict[str, Any], now: float) -> Row:
    return [_get(obj, "metadata", "name"), _get(obj, "status", "phase") or "", _age(obj, now)]


def _configmap_row(obj: dict[str, Any], now: float) -> Row:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_get(obj, "metadata", "name"), count, _age(obj, now)]


def _serviceaccount_row(obj: dict[str, Any], now: float) -> Row:
    return [_get(obj, "metadata", "name"), len(obj.get("secrets") or ()), _age(obj, now)]


def _lease_row(obj: dict[str, Any], now: float) -> Row:
    return [_get(obj, "metadata", "name"), _get(obj, "spec", "holderIdentity") or "", _age(obj, now)]


def _crd_row(obj: dict[str, Any], now: float) -> Row:
    # The generic table convertor prints the creation time itself; kubectl shows it as is.
    created = _parse_time(_get(obj, "metadata", "creationTimestamp"))
    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") \
        if created is not None else None
    return [_get(obj, "metadata", "name"), stamp]


def _event_row(obj: dict[str, Any], now: float) -> Row:
    """A core/v1 or events.k8s.io/v1 Event: both print as the kube-apiserver's internal Event."""
    new_api = str(obj.get("apiVersion", "")).startswith("events.k8s.io/")
    regarding = (obj.get("regarding") if new_api else obj.get("involvedObject")) or {}
    first_time = obj.get("deprecatedFirstTimestamp" if new_api else "firstTimestamp")
    last_time = obj.get("deprecatedLastTimestamp" if new_api else "lastTimestamp")
    count = obj.get("deprecatedCount" if new_api else "count") or 0
    message = obj.get("note" if new_api else "message") or ""
    source = (obj.get("deprecatedSource" if new_api else "source")) or {}
    first = _since(first_time, now) if first_time else _since(obj.get("eventTime"), now)
    last = _since(last_time, now) if last_time else first
    series = obj.get("series")
    if isinstance(series, dict):
        last = _since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif not count:
        # Events of the new API that happened once carry no count.
        count = 1
    kind = str(regarding.get("kind") or "").lower()
    target = f"{kind}/{regarding['name']}" if regarding.get("name") else kind
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return [
        last, obj.get("type") or "", obj.get("reason") or "", target, regarding.get("fieldPath") or "",
        f"{component}, {instance}" if instance else component, str(message).strip(), first, int(count),
        _get(obj, "metadata", "name"),
    ]


def _binding_columns(kind: str) -> list[Column]:
    scope = "Role in the current namespace or a ClusterRole in the global namespace" if kind == "roleBinding" \
        else "ClusterRole in the global namespace"
    return [
        NAME_COLUMN,
        _column("Role", description=f"RoleRef can reference a {scope}. If the RoleRef cannot be resolved, the "
                "Authorizer must return an error. This field is immutable."),
        AGE_COLUMN,
        _column("Users", description=f"Users in the {kind}", priority=1),
        _column("Groups", description=f"Groups in the {kind}", priority=1),
        _column("ServiceAccounts", description=f"ServiceAccounts in the {kind}", priority=1),
    ]


ROLEBINDING_COLUMNS = _binding_columns("roleBinding")
CLUSTERROLEBINDING_COLUMNS = _binding_columns("clusterRoleBinding")


def _binding_row(obj: dict[str, Any], now: float) -> Row:
    """``printRoleBinding``: the role as ``Kind/name``; users, groups and service accounts (``ns/name``)."""
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in obj.get("subjects") or ():
        if not isinstance(subject, dict):
            continue
        kind, name = subject.get("kind"), str(subject.get("name") or "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace') or ''}/{name}")
    role = f"{_get(obj, 'roleRef', 'kind') or ''}/{_get(obj, 'roleRef', 'name') or ''}"
    return [_get(obj, "metadata", "name"), role, _age(obj, now), ", ".join(users), ", ".join(groups),
            ", ".join(accounts)]


def _default_row(obj: dict[str, Any], now: float) -> Row:
    return [_get(obj, "metadata", "name"), _age(obj, now)]


PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any], float], Row]]] = {
    "/pods": (POD_COLUMNS, _pod_row),
    "/services": (SERVICE_COLUMNS, _service_row),
    "/endpoints": (ENDPOINTS_COLUMNS, _endpoints_row),
    "/namespaces": (NAMESPACE_COLUMNS, _namespace_row),
    "/configmaps": (CONFIGMAP_COLUMNS, _configmap_row),
    "/serviceaccounts": (SERVICEACCOUNT_COLUMNS, _serviceaccount_row),
    "/events": (EVENT_COLUMNS, _event_row),
    "events.k8s.io/events": (EVENT_COLUMNS, _event_row),
    "apps/deployments": (DEPLOYMENT_COLUMNS, _deployment_row),
    "apps/replicasets": (REPLICASET_COLUMNS, _replicaset_row),
    "discovery.k8s.io/endpointslices": (ENDPOINTSLICE_COLUMNS, _endpointslice_row),
    "coordination.k8s.io/leases": (LEASE_COLUMNS, _lease_row),
    "apiextensions.k8s.io/customresourcedefinitions": (CRD_COLUMNS, _crd_row),
    # Roles have no printer in kube-apiserver: the default table convertor's name and creation time.
    "rbac.authorization.k8s.io/roles": (CRD_COLUMNS, _crd_row),
    "rbac.authorization.k8s.io/clusterroles": (CRD_COLUMNS, _crd_row),
    "rbac.authorization.k8s.io/rolebindings": (ROLEBINDING_COLUMNS, _binding_row),
    "rbac.authorization.k8s.io/clusterrolebindings": (CLUSTERROLEBINDING_COLUMNS, _binding_row),
}


# --- custom resources ---------------------------------------------------------------------------------------

_JSONPATH_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']*)'\]")


def _jsonpath(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath (``.spec.hosts``, ``.status.conditions[0].type``), None when absent. CRD
    printer columns only allow simple paths."""
    value = obj
    for match in _JSONPATH_STEP.finditer(path.strip().strip("{}")):
        field, index, quoted = match.groups()
        if index is not None:
            value = _get(value, int(index))
        else:
            value = _get(value, field if field is not None else quoted)
        if value is None:
            return None
    return value


def _custom_cell(kind: str, value: Any, now: float) -> Any:
    """A cell as the CRD table convertor makes it from a printer column's value."""
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        return str(value)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        moment = _parse_time(value)
        return "<invalid>" if moment is None else human_duration(now - moment)
    return None


def _custom_printer(resource: Resource, version: str) -> tuple[list[Column], Callable[[dict[str, Any], float], Row]]:
    from .openapi import printer_columns

    declared = printer_columns(resource, version)
    if not declared:
        declared = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                     "description": AGE_DESCRIPTION}]
    columns = [NAME_COLUMN] + [
        _column(str(c["name"]), str(c.get("type", "string")), str(c.get("description", "")),
                priority=int(c.get("priority", 0)), fmt=str(c.get("format", "")))
        for c in declared
    ]

    def row(obj: dict[str, Any], now: float) -> Row:
        cells: Row = [_get(obj, "metadata", "name")]
        for column in declared:
            cells.append(_custom_cell(str(column.get("type", "string")), _jsonpath(obj, str(column["jsonPath"])), now))
        return cells

    return columns, row


# --- the table ----------------------------------------------------------------------------------------------

def _row_object(obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(resource: Resource, objects: list[dict[str, Any]], *, include_object: str = "Metadata", now: float,
          resource_version: str = "", continue_token: str = "", no_headers: bool = False) -> dict[str, Any]:
    """The ``Table`` of ``objects`` of ``resource`` at time ``now`` (seconds since the epoch, for ages).
    ``include_object`` is the request's ``includeObject``: ``Metadata`` (a ``PartialObjectMetadata`` per row,
    kubectl's default), ``Object`` (the object itself) or ``None``. ``resource_version`` and ``continue_token``
    go to the table's ``metadata`` as for a list; ``no_headers`` leaves out the column definitions."""
    if resource.key in PRINTERS:
        columns, printer = PRINTERS[resource.key]
    else:
        version = resource.preferred_version
        if objects:
            version = str(objects[0].get("apiVersion", "")).rpartition("/")[2] or version
        columns, printer = _custom_printer(resource, version)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        attached = _row_object(obj, include_object)
        if attached is not None:
            row["object"] = attached
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [] if no_headers else [dict(c) for c in columns],
        "rows": rows,
    }
