"""The Kubernetes backend's settings: where the cluster is, which namespace, what it may touch.

They arrive as strings in :attr:`~pytest_clover.backends.protocol.BackendOptions.settings` (from the
``--clover-*`` options, their ini mirrors, or ``clover`` flags) and are parsed here once, with errors that name
the setting. This module imports only the standard library: the plugin validates settings at configure time
without loading the ``kubernetes`` client.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import CloverError

__all__ = [
    "DEFAULT_ALLOWED_CONTEXTS",
    "DEFAULT_IMAGE",
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "OPT_IN_ANNOTATION",
    "RUN_ID_LABEL",
    "ClusterRef",
    "K8sSettings",
    "SettingError",
]

FIELD_MANAGER = "pytest-clover"
"""The field manager of every server-side apply we make (``kubectl get -o yaml --show-managed-fields``)."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
"""Set to ``pytest-clover`` on every object and pod template we create: ``clover cleanup`` sweeps by it."""
RUN_ID_LABEL = "clover.opnfv.org/run-id"
"""The run that created an object (``<run id>``): one run's sweep never touches another's objects."""
OPT_IN_ANNOTATION = "clover.opnfv.org/chaos"
"""A namespace we did not create may take faults only if it carries this annotation with the value ``enabled``
(Chaos Mesh's opt-in pattern): nobody's production namespace takes a fault because of a typo."""
DEFAULT_IMAGE = "pytest-clover/sdc-vnf:0.1"
"""The image ``fixtures/sdc/Dockerfile`` builds (the sample VNF, and the reaper of the dead-man switch)."""
DEFAULT_LOAD_IMAGE = "pytest-clover/load:0.1"
"""The image ``docker/load/Dockerfile`` builds (the load generator's master and workers, in-cluster)."""
DEFAULT_ALLOWED_CONTEXTS = ("clover-*", "kind-*")
"""Contexts allowed when ``clover_allowed_contexts`` is not set: embedded meshes and kind clusters, both
throw-away. Any other cluster must be named on purpose."""


class SettingError(CloverError):
    """A Kubernetes backend setting that cannot be used; the message names the setting and what to write."""


@dataclass(frozen=True)
class ClusterRef:
    """Which cluster a request went to, for messages: a user must see *which* cluster refused or did not answer."""

    context: str
    """The kubeconfig context's name (``in-cluster`` when run in a pod)."""
    server: str
    """The API server's URL, e.g. ``https://127.0.0.1:6443``."""

    def __str__(self) -> str:
        return f"context {self.context!r} ({self.server})"


@dataclass(frozen=True)
class K8sSettings:
    """What the Kubernetes backend is told; every field has an option (``--clover-<name>``) and an ini key."""

    kubeconfig: str | None = None
    """Path of the kubeconfig (``--clover-kubeconfig``). None: ``$KUBECONFIG``, else ``~/.kube/config``, else the
    in-cluster service account when run in a pod."""
    context: str | None = None
    """The kubeconfig context to use (``--clover-context``). None: the kubeconfig's current context."""
    namespace: str | None = None
    """``--clover-namespace``: test the app already deployed in this namespace (*existing* mode: we only inject,
    observe and revert; the namespace must carry :data:`OPT_IN_ANNOTATION`). None (default, *deploy* mode): the
    topology is applied into a new namespace ``clover-<run id>``, deleted at teardown."""
    image: str = DEFAULT_IMAGE
    """The VNF image (``--clover-image``), put in place of the topology's images in deploy mode and used by the
    reaper. Default: what ``fixtures/sdc/Dockerfile`` builds; push it where your cluster can pull it."""
    load_image: str = DEFAULT_LOAD_IMAGE
    """The load generator's image (``--clover-load-image``) for ``--clover-load-in-cluster``: what
    ``docker/load/Dockerfile`` builds (pytest-clover with locust); push it where your cluster can pull it."""
    ingress_url: str | None = None
    """``--clover-ingress-url``: where load goes, when the ingress gateway's own address is not reachable from
    here. None: found from the Gateway's selector (LoadBalancer, else NodePort, else a port-forward)."""
    allowed_contexts: tuple[str, ...] = DEFAULT_ALLOWED_CONTEXTS
    """ini ``clover_allowed_contexts`` (one per line or comma-separated; ``*`` wildcards): the only contexts the
    backend will talk to. Checked before a client is built."""
    max_kill_percent: float = 50.0
    """``--clover-max-kill-percent``: a kill may take at most this share of a Service's ready pods (percent,
    default 50: half the replicas survive any single kill)."""
    lease_seconds: float = 15.0
    """How long the dead-man switch's Lease lives without renewal (seconds, default 15): the reaper reverts every
    fault within this plus its polling interval after pytest stops renewing."""
    reaper: bool = True
    """Start the dead-man switch's reaper before the first fault (default True). Off only for clusters where no
    pod may be created; faults of a killed run then stay until ``clover cleanup --context``."""
    run_id: str = ""
    """This run's id (the report folder's name): labels everything created and names the namespace."""
    istio_namespace: str = "istio-system"
    """Where Istio's ingress gateway Service lives when the run namespace has none of its own."""
    propagation_timeout: float = 30.0
    """Seconds an Istio change may take to reach the caller's sidecar (istiod debounces 100 ms to 10 s)."""
    pod_access: str = "auto"
    """How this process reaches a pod's own ports (the suites' VNF control API): ``direct`` (its pod IP),
    ``port-forward`` (through the API server), or ``auto`` (default: direct when the pod answers there, else a
    port-forward kept for the run)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Settings given that this backend does not know (ignored; kept for messages)."""

    @property
    def mode(self) -> str:
        """``deploy`` or ``existing``."""
        return "existing" if self.namespace else "deploy"

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> K8sSettings:
        """Parse the string settings of :class:`~pytest_clover.backends.protocol.BackendOptions`."""
        known = {
            "kubeconfig", "context", "namespace", "image", "ingress_url", "allowed_contexts", "max_kill_percent",
            "lease_seconds", "reaper", "run_id", "istio_namespace", "propagation_timeout", "pod_access", "load_image",
        }  # fmt: skip
        out: dict[str, object] = {}
        strings = ("kubeconfig", "context", "namespace", "image", "ingress_url", "run_id", "istio_namespace",
                   "load_image")
        for key in strings:
            raw = (values.get(key) or "").strip()
            if raw:
                out[key] = os.path.expanduser(raw) if key == "kubeconfig" else raw
        if "namespace" in out:
            _check_dns_label(str(out["namespace"]), "--clover-namespace")
        if "ingress_url" in out and not re.match(r"^https?://[^/\s]+", str(out["ingress_url"])):
            raise SettingError(
                f"--clover-ingress-url={out['ingress_url']!r} is not a URL; give e.g. http://192.0.2.10:80"
            )
        allowed = values.get("allowed_contexts")
        if allowed is not None and allowed.strip():
            out["allowed_contexts"] = tuple(p for p in re.split(r"[,\s]+", allowed.strip()) if p)
        for key, flag, low, high in (
            ("max_kill_percent", "--clover-max-kill-percent", 0.0, 100.0),
            ("lease_seconds", "clover lease_seconds", 3.0, 3600.0),
            ("propagation_timeout", "clover propagation_timeout", 0.1, 3600.0),
        ):
            raw = (values.get(key) or "").strip()
            if raw:
                out[key] = _number(raw, flag, low, high)
        access = (values.get("pod_access") or "").strip().lower()
        if access:
            if access not in ("auto", "direct", "port-forward"):
                raise SettingError(f"the setting pod_access={access!r} is not one of auto, direct, port-forward")
            out["pod_access"] = access
        reaper = (values.get("reaper") or "").strip().lower()
        if reaper:
            if reaper not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise SettingError(f"the setting reaper={reaper!r} is not a boolean; give true or false")
            out["reaper"] = reaper in ("1", "true", "yes", "on")
        out["extra"] = {k: v for k, v in values.items() if k not in known}
        return cls(**out)  # type: ignore[arg-type]


def _number(raw: str, where: str, low: float, high: float) -> float:
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise SettingError(f"{where}={raw!r} is not a number; give one between {low:g} and {high:g}") from None
    if not math.isfinite(value) or not low < value <= high:
        raise SettingError(f"{where}={raw!r} is out of range; give a number above {low:g} and at most {high:g}")
    return value


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_dns_label(name: str, where: str) -> None:
    if not _DNS_LABEL.match(name):
        raise SettingError(
            f"{where}={name!r} is not a namespace name: lower-case letters, digits and '-', at most 63 characters, "
            "starting and ending with a letter or digit"
        )
