"""What the local backend needs from a topology beyond valid YAML: a command per container, and what it cannot honour.

Checked before anything starts, in the process that asks for the mesh (this module imports neither gRPC nor
Envoy's protobufs, which only the supervisor needs).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

from ...errors import BackendError, ConfigError, Problem
from ...istio.model import Deployment, Topology

__all__ = [
    "BLOCK_PODS",
    "DEFAULT_MAX_PODS",
    "MAX_PODS_ENV",
    "MAX_PODS_SETTING",
    "check_local_plan",
    "check_pod_count",
    "fidelity_warnings",
    "local_command",
    "max_pods_setting",
    "placeholders",
    "requested_max_pods",
    "too_many_pods",
]

BLOCK_PODS = 253
"""Pods a mesh's loopback block ``127.A.B.0/24`` has addresses for (.2 to .254; .1 is the xDS server's)."""
DEFAULT_MAX_PODS = 32
"""Pods a mesh may have at once unless the user says more (:data:`MAX_PODS_ENV`, :data:`MAX_PODS_SETTING`).

Each pod is two processes (an Envoy and its application), and every endpoint change is pushed to every Envoy
and waited for, so the mesh's cost grows with its pods on the machine's few cores. Measured on 2 cores: SDC
scaled to 32 pods (clover-server at 26) in 3.5 s, then served 2100 sequential requests in 10 s (p50 4.3 ms)
and replaced a killed pod in 0.3 s, its 32 Envoys holding 2.1 GB; 253 pods (the block's limit) took 20 s
to start at a load of 4.7, and a scale that big was a typing mistake."""
MAX_PODS_ENV = "CLOVER_MAX_PODS"
"""Environment variable that sets the pod limit (``clover up``, ``clover scale``, pytest)."""
MAX_PODS_SETTING = "max_pods"
"""The same as a backend setting (``BackendOptions.settings``), which wins over the environment."""


def fidelity_warnings(topo: Topology) -> list[Problem]:
    """The topology's warnings as the local backend reports them: every warning, those scoped ``local`` (what
    the embedded mesh does not honour, which a cluster applies) included."""
    return list(topo.warnings)


def local_command(dep: Deployment) -> str:
    """The command that runs this Deployment's container locally, or a ConfigError saying how to give one."""
    if len(dep.containers) != 1:
        raise ConfigError.single(
            dep.source.file,
            f"Deployment/{dep.name}",
            "spec.template.spec.containers",
            f"has {len(dep.containers)} containers; the local backend runs one container per pod",
        )
    if not dep.local_command:
        raise ConfigError.single(
            dep.source.file,
            f"Deployment/{dep.name}",
            "spec.template.metadata.annotations",
            "has no local command: add the annotation clover.opnfv.org/local-command, e.g. "
            '"{python} -m myservice --host {host} --port {port}"',
        )
    return dep.local_command


def check_local_plan(topo: Topology) -> None:
    """Everything the local backend needs beyond valid YAML, checked before anything starts."""
    problems: list[Problem] = []
    for dep in topo.deployments.values():
        try:
            template = local_command(dep)
            values = placeholders("127.0.0.1", "pod", {p.port: 1 for p in dep.containers[0].ports}, dep)
            shlex.split(template.format_map(values))
        except ConfigError as exc:
            problems.extend(exc.problems)
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(
                Problem(
                    dep.source.file,
                    f"Deployment/{dep.name}",
                    "spec.template.metadata.annotations.clover.opnfv.org/local-command",
                    f"cannot fill in the command ({exc!r}); placeholders are {{python}}, {{host}}, {{port}}, "
                    "{pod} and {port_<portname>}",
                )
            )
    if problems:
        raise ConfigError(problems)


def max_pods_setting(value: object, source: str) -> int:
    """A pod limit as given by the user (``source`` names where), checked."""
    try:
        limit = int(str(value).strip())
    except ValueError:
        raise BackendError(f"{source} must be a whole number of pods, got {value!r}") from None
    if not 1 <= limit <= BLOCK_PODS:
        raise BackendError(
            f"{source} must be between 1 and {BLOCK_PODS} (the pods a mesh's loopback block has addresses for), "
            f"got {limit}"
        )
    return limit


def requested_max_pods(settings: Mapping[str, str]) -> int | None:
    """The pod limit the user asked for (the backend setting, else the environment variable), None if neither."""
    if MAX_PODS_SETTING in settings:
        return max_pods_setting(settings[MAX_PODS_SETTING], f"the local backend's setting {MAX_PODS_SETTING}")
    if os.environ.get(MAX_PODS_ENV, "").strip():
        return max_pods_setting(os.environ[MAX_PODS_ENV], MAX_PODS_ENV)
    return None


def too_many_pods(what: str, total: int, limit: int) -> str:
    """The message when ``what`` would give a mesh ``total`` pods, over ``limit``."""
    return (
        f"{what} would make the mesh {total} pods, more than its limit of {limit}: nothing was started. Each pod "
        f"is an Envoy and an application process, and this machine has {os.cpu_count() or 1} CPUs; if it can "
        f"run them, raise the limit with {MAX_PODS_ENV}={total} (or the local backend's setting {MAX_PODS_SETTING})"
    )


def check_pod_count(topo: Topology, limit: int) -> None:
    """Refuse a topology with more pods than ``limit`` (its replicas and the gateway), before anything starts."""
    total = sum(d.replicas for d in topo.deployments.values()) + (1 if topo.gateways else 0)
    if total > limit:
        raise BackendError(too_many_pods("this topology", total, limit))


def placeholders(ip: str, pod: str, app_ports: dict[int, int], dep: Deployment) -> dict[str, str]:
    """The values a local command's ``{placeholders}`` take for one pod."""
    values = {"python": sys.executable, "host": ip, "pod": pod}
    container = dep.containers[0]
    if container.ports:
        values["port"] = str(app_ports[container.ports[0].port])
    for p in container.ports:
        if p.name:
            values[f"port_{p.name.replace('-', '_')}"] = str(app_ports[p.port])
    return values
