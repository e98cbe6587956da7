"""What the Kubernetes backend may touch: the context allow-list, protected and foreign namespaces, the blast radius.

Three guards, each refusing with :class:`~pytest_clover.errors.SafetyRefusal` (nothing was changed; the message
names the setting that allows it):

- :func:`check_context` — before any client is built, the kubeconfig context must match ini
  ``clover_allowed_contexts`` (default: ``clover-*``, ``kind-*``). The kubeconfig is read as YAML here, with
  kubectl's merge rules for a ``KUBECONFIG`` list; the ``kubernetes`` client is not imported.
- :func:`check_namespace` — faults and kills only in a namespace this run created, or one that carries the
  opt-in annotation ``clover.opnfv.org/chaos=enabled``; never in ``kube-*`` or ``istio-system``
  (:data:`PROTECTED_NAMESPACES`), annotation or not.
- :func:`pick_kill_targets` — which ready pods a kill takes, drawn from the run's seed, and never more than
  ``--clover-max-kill-percent`` of them.
"""

from __future__ import annotations

import fnmatch
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ...errors import BackendError, InvalidFault, SafetyRefusal
from .settings import MANAGED_BY_LABEL, OPT_IN_ANNOTATION, RUN_ID_LABEL, ClusterRef, K8sSettings, SettingError

__all__ = [
    "IN_CLUSTER_CONTEXT",
    "MANAGED_BY_VALUE",
    "PROTECTED_NAMESPACES",
    "check_context",
    "check_namespace",
    "is_protected",
    "pick_kill_targets",
    "resolve_kubeconfig",
]

IN_CLUSTER_CONTEXT = "in-cluster"
"""The context name of the pod's own service account, when run in a pod with no kubeconfig."""
MANAGED_BY_VALUE = "pytest-clover"
"""The value of :data:`~.settings.MANAGED_BY_LABEL` on what pytest-clover creates."""
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "istio-system"})
"""Namespaces never touched, whatever their annotations say; any other ``kube-*`` namespace is protected too."""
_DEFAULT_KUBECONFIG = "~/.kube/config"
# How far a float product may stray above a whole number before it counts as the next one: 50 % of 3 pods is
# 1.5 → 2, but 7 % of 100 computed as 7.000000000000001 is 7.
_EPSILON = 1e-9


# --------------------------------------------------------------------------- the context allow-list


def _kubeconfig_paths(kubeconfig: str | None, settings: K8sSettings) -> tuple[list[Path], str, bool]:
    """The kubeconfig files to read, where that choice came from (for messages), and whether it was asked for
    explicitly (a missing explicit file is an error; a missing default one may mean "in a pod")."""
    # kubectl's rule for a list of files (as $KUBECONFIG holds them): the ones that do not exist are skipped.
    if kubeconfig or settings.kubeconfig:
        chosen = kubeconfig or settings.kubeconfig or ""
        return [Path(os.path.expanduser(p)) for p in chosen.split(os.pathsep) if p], "--clover-kubeconfig", True
    env = os.environ.get("KUBECONFIG", "")
    if env.strip():
        return [Path(os.path.expanduser(p)) for p in env.split(os.pathsep) if p], "$KUBECONFIG", True
    return [Path(os.path.expanduser(_DEFAULT_KUBECONFIG))], _DEFAULT_KUBECONFIG, False


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingError(
            f"the kubeconfig {path} cannot be read ({exc.strerror or exc}); fix its permissions, or point "
            "--clover-kubeconfig at another"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingError(
            f"the kubeconfig {path} is not valid YAML ({exc}); `kubectl config view --kubeconfig {path}` shows "
            "what kubectl makes of it"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingError(f"the kubeconfig {path} is not a kubeconfig (a YAML mapping with contexts and clusters)")
    for key in ("contexts", "clusters"):
        entries = data.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
            raise SettingError(f"the kubeconfig {path}: {key} must be a list of entries with a name")
    return data


def _merge(paths: Sequence[Path]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """Contexts and clusters by name, and the current context, merged as kubectl merges a ``KUBECONFIG`` list:
    the first file to set a name (or ``current-context``) wins."""
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    current = ""
    for path in paths:
        data = _load(path)
        for entry in data.get("contexts") or []:
            contexts.setdefault(str(entry["name"]), entry.get("context") or {})
        for entry in data.get("clusters") or []:
            clusters.setdefault(str(entry["name"]), entry.get("cluster") or {})
        if not current and data.get("current-context"):
            current = str(data["current-context"])
    return contexts, clusters, current


def resolve_kubeconfig(settings: K8sSettings, kubeconfig: str | None = None) -> str | None:
    """The kubeconfig file(s) :func:`check_context` reads, as the client's ``config_file`` takes them (several
    joined with ``os.pathsep``), or None when there is none (in a pod: the in-cluster service account)."""
    paths, _, _ = _kubeconfig_paths(kubeconfig, settings)
    existing = [str(p) for p in paths if p.is_file()]
    return os.pathsep.join(existing) if existing else None


def _allowed(context: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(context, pattern) for pattern in patterns)


def _refuse_context(context: str, server: str, patterns: Sequence[str]) -> SafetyRefusal:
    listed = ", ".join(patterns) if patterns else "(empty)"
    return SafetyRefusal(
        f"the Kubernetes context {context!r} (server {server}) is not on the allow-list of contexts pytest-clover "
        f"may touch ({listed}): nothing was done. If this cluster is one to break on purpose, name it in the "
        f"setting clover_allowed_contexts, in the [pytest] section of your ini file (pytest.ini, tox.ini or "
        f"[tool.pytest.ini_options] in pyproject.toml), e.g.:\n\n    [pytest]\n    clover_allowed_contexts = "
        f"{', '.join([*patterns, context]) if patterns else context}\n"
    )


def check_context(settings: K8sSettings, kubeconfig: str | None) -> ClusterRef:
    """The cluster the settings point at — after checking its context is on ``settings.allowed_contexts``.

    ``kubeconfig`` (else ``settings.kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``) is read as
    YAML; no client is built. The context is ``settings.context``, else the kubeconfig's current context. In a
    pod with no kubeconfig (``KUBERNETES_SERVICE_HOST`` set), the context is ``in-cluster``. Raises
    :class:`SettingError` for a missing or malformed kubeconfig or an unknown context, and
    :class:`~pytest_clover.errors.SafetyRefusal` for a context not on the allow-list. The caller must build
    its client for ``ref.context`` explicitly, so that the context checked is the one used.
    """
    paths, origin, explicit = _kubeconfig_paths(kubeconfig, settings)
    existing = [p for p in paths if p.is_file()]
    if not existing:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        if not explicit and host:
            if settings.context and settings.context != IN_CLUSTER_CONTEXT:
                raise SettingError(
                    f"--clover-context={settings.context!r}, but there is no kubeconfig ({origin}) in this pod, only "
                    f"its service account: leave --clover-context out (or give {IN_CLUSTER_CONTEXT!r}), or mount a "
                    "kubeconfig and point --clover-kubeconfig at it"
                )
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
            if not _allowed(IN_CLUSTER_CONTEXT, settings.allowed_contexts):
                raise _refuse_context(IN_CLUSTER_CONTEXT, server, settings.allowed_contexts)
            return ClusterRef(IN_CLUSTER_CONTEXT, server)
        named = ", ".join(str(p) for p in paths)
        raise SettingError(
            f"no kubeconfig: {named} ({origin}) does not exist. Give --clover-kubeconfig PATH (or set KUBECONFIG); "
            "against the embedded mesh, `clover up` prints the `export KUBECONFIG=...` line to use"
        )
    contexts, clusters, current = _merge(existing)
    files = ", ".join(str(p) for p in existing)
    name = settings.context or current
    if not name:
        raise SettingError(
            f"the kubeconfig {files} has no current context: give --clover-context NAME (one of: "
            f"{', '.join(sorted(contexts)) or 'none defined'})"
        )
    if name not in contexts:
        source = "--clover-context" if settings.context else "its current-context"
        raise SettingError(
            f"the kubeconfig {files} has no context {name!r} ({source}); its contexts: "
            f"{', '.join(sorted(contexts)) or 'none'}. `kubectl config get-contexts` lists them"
        )
    cluster_name = str(contexts[name].get("cluster") or "")
    cluster = clusters.get(cluster_name)
    server = str((cluster or {}).get("server") or "")
    if not server:
        raise SettingError(
            f"the kubeconfig {files}: context {name!r} names cluster {cluster_name!r}, which has no server URL; "
            "fix the kubeconfig (`kubectl config view` shows it)"
        )
    if not _allowed(name, settings.allowed_contexts):
        raise _refuse_context(name, server, settings.allowed_contexts)
    return ClusterRef(name, server)


# --------------------------------------------------------------------------- namespaces


def is_protected(namespace: str) -> bool:
    """True for the namespaces never touched: :data:`PROTECTED_NAMESPACES` and every ``kube-*``."""
    return namespace in PROTECTED_NAMESPACES or namespace.startswith("kube-")


def _opt_in_line(namespace: str) -> str:
    return f"kubectl annotate namespace {namespace} {OPT_IN_ANNOTATION}=enabled"


def check_namespace(namespace_obj: Mapping[str, Any], *, run_id: str) -> None:
    """Refuse (SafetyRefusal) to act in a namespace unless this run created it (our managed-by label, and our
    run-id label equal to ``run_id``) or it carries ``clover.opnfv.org/chaos: enabled``. Protected namespaces
    (``kube-*``, ``istio-system``) are refused even with the annotation. ``namespace_obj`` is the Namespace as
    the API returns it (a dict: ``metadata.name``, ``labels``, ``annotations``)."""
    metadata = namespace_obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    if not name:
        raise SafetyRefusal("a namespace without a name cannot be checked: nothing was done")
    if is_protected(name):
        raise SafetyRefusal(
            f"namespace {name!r} is protected (kube-*, istio-system): pytest-clover never injects faults or kills "
            "pods there, with or without the opt-in annotation. Deploy the app under test into a namespace of "
            f"its own and annotate that one ({_opt_in_line('NAMESPACE')})."
        )
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    ours = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
    if ours and run_id and labels.get(RUN_ID_LABEL) == run_id:
        return
    if annotations.get(OPT_IN_ANNOTATION) == "enabled":
        return
    if ours:
        whose = f"created by another pytest-clover run ({RUN_ID_LABEL}={labels.get(RUN_ID_LABEL, '?')!r})"
    else:
        whose = "not created by pytest-clover"
    found = annotations.get(OPT_IN_ANNOTATION)
    annotation = (
        f"its annotation {OPT_IN_ANNOTATION} is {found!r}, not 'enabled'"
        if found is not None
        else f"it does not carry the opt-in annotation {OPT_IN_ANNOTATION}=enabled"
    )
    raise SafetyRefusal(
        f"namespace {name!r} is {whose} and {annotation}: pytest-clover does not touch it (nothing was done). "
        f"To let it take faults and kills, opt it in: {_opt_in_line(name)}"
    )


# --------------------------------------------------------------------------- the blast radius


def pick_kill_targets(
    ready_pods: Sequence[str],
    *,
    count: int | None,
    percent: float | None,
    max_percent: float,
    rng: random.Random,
) -> list[str]:
    """The pods a kill takes, sorted: ``count`` of them, or ``ceil(percent × n / 100)`` (at least 1) of the
    ``n`` ready pods, or one when neither is given; drawn with ``rng`` (the run's seed) from the names sorted,
    so a seed picks the same pods whatever order they were listed in. Refuses (SafetyRefusal) a kill of more
    than ``max_percent`` of the ready pods, and raises BackendError when none is ready."""
    pods = sorted(set(ready_pods))
    total = len(pods)
    if count is not None and percent is not None:
        raise InvalidFault("a kill takes a count or a percent of the pods, not both")
    if total == 0:
        raise BackendError("no ready pod to kill: the service has no ready replicas (see `kubectl get pods`)")
    if count is not None:
        if count < 1:
            raise InvalidFault(f"a kill of {count} pods kills nothing: give a count of 1 or more")
        wanted = count
    elif percent is not None:
        if not 0 < percent <= 100:
            raise InvalidFault(f"{percent:g} % is not a share of the pods: give more than 0 and at most 100")
        wanted = max(1, math.ceil(percent * total / 100 - _EPSILON))
    else:
        wanted = 1
    if wanted * 100 > max_percent * total + _EPSILON:
        allowed = math.floor(max_percent * total / 100 + _EPSILON)
        fewer = f"kill at most {allowed}" if allowed else "no kill of this service fits"
        raise SafetyRefusal(
            f"killing {wanted} of the {total} ready pods ({wanted * 100 / total:.0f} %) is over the blast radius of "
            f"{max_percent:g} % (--clover-max-kill-percent): nothing was killed. {fewer.capitalize()}, or raise "
            f"--clover-max-kill-percent (e.g. --clover-max-kill-percent={math.ceil(wanted * 100 / total)})."
        )
    if wanted > total:
        raise InvalidFault(f"a kill of {wanted} pods asks for more than the {total} ready; give at most {total}")
    return sorted(rng.sample(pods, wanted))
