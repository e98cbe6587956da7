"""The Kubernetes + Istio model every backend shares.

- :mod:`.model` — typed objects (Deployment, Service, Gateway, VirtualService, DestinationRule) and the
  :class:`~.model.Topology` they form;
- :mod:`.parse` — YAML → objects, every problem named by file, object and field, Istio's admission rules
  reproduced;
- :mod:`.checks` — cross-object checks and the entry points (:func:`load_topology`, :func:`validate`);
- :mod:`.documents` — faults and traffic shifts as VirtualService documents, and their exact revert.

Nothing here knows a backend: the model is what a cluster and the embedded mesh both take as input.
"""

from __future__ import annotations

from .checks import build_topology, check_references, load_topology, parse_istio_text, validate, validate_each
from .model import (
    CLUSTER_DOMAIN,
    DEFAULT_NAMESPACE,
    ISTIO_NETWORKING,
    LOCAL_COMMAND_ANNOTATION,
    Deployment,
    DestinationRule,
    Gateway,
    IstioObject,
    KubeObject,
    Service,
    Topology,
    VirtualService,
    parse_duration,
)
from .parse import iter_yaml_files, load_documents, parse_documents, parse_text

__all__ = [
    "CLUSTER_DOMAIN",
    "DEFAULT_NAMESPACE",
    "ISTIO_NETWORKING",
    "LOCAL_COMMAND_ANNOTATION",
    "Deployment",
    "DestinationRule",
    "Gateway",
    "IstioObject",
    "KubeObject",
    "Service",
    "Topology",
    "VirtualService",
    "build_topology",
    "check_references",
    "iter_yaml_files",
    "load_documents",
    "load_topology",
    "parse_documents",
    "parse_duration",
    "parse_istio_text",
    "parse_text",
    "validate",
    "validate_each",
]
