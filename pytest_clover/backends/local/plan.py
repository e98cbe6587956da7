"""What the local backend needs from a topology beyond valid YAML: a command per container, and what it cannot honour.

Checked before anything starts, in the process that asks for the mesh (this module imports neither gRPC nor
Envoy's protobufs, which only the supervisor needs).
"""

from __future__ import annotations

import shlex
import sys

from ...errors import ConfigError, Problem
from ...istio.model import Deployment, Topology

__all__ = ["check_local_plan", "fidelity_warnings", "local_command", "placeholders"]


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
