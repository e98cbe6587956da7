"""``clover k8s``: commands about a Kubernetes cluster for the ``k8s`` backend.

``clover k8s check [--kubeconfig PATH] [--context NAME] [--namespace NS]`` runs the preflight
(:mod:`pytest_clover.backends.k8s.preflight`): RBAC verbs, Istio's CRDs, sidecar injection, printed as a table;
exit 0 when nothing required is missing, 1 otherwise. Without ``--namespace`` it checks deploy mode (a namespace
per run); with it, existing mode in that namespace.

The check is read-only, so it runs against any context; it says whether the context is on the allow-list a run
would use (the default ``clover-*``, ``kind-*``, or ``--allowed-contexts``: this command does not read the
pytest ini file where ``clover_allowed_contexts`` lives). The ``kubernetes`` client is imported when a command
runs, not when ``clover`` starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from ..backends.k8s.settings import ClusterRef

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``clover k8s`` (and its ``check``) on the ``clover`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "k8s",
        help="Check a Kubernetes cluster for the k8s backend (clover k8s check)",
        description="Commands about a Kubernetes cluster for --clover-backend=k8s.",
    )
    commands = parser.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="Preflight: RBAC verbs, Istio's CRDs, sidecar injection (exit 0 when nothing required is missing)",
        description="Ask the cluster, read-only, whether a run can work there: every permission a run needs "
        "(SelfSubjectAccessReview), Istio's CRDs, and sidecar injection. Without --namespace: deploy mode (a "
        "namespace per run); with it: existing mode in that namespace.",
    )
    check.add_argument("--kubeconfig", help="The kubeconfig (default: $KUBECONFIG, else ~/.kube/config)")
    check.add_argument("--context", help="The kubeconfig context (default: its current context)")
    check.add_argument("--namespace", help="Check existing mode in this namespace (default: deploy mode)")
    check.add_argument(
        "--allowed-contexts",
        metavar="PATTERNS",
        help="The allow-list to report against, as in ini clover_allowed_contexts (default: clover-*, kind-*)",
    )
    check.add_argument("--istio-namespace", default="istio-system", help="Where the ingress gateway lives")
    check.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """``clover k8s check``: print the preflight's findings; 0 when nothing required is missing, else 1."""
    from ..backends.k8s.preflight import Finding, format_findings, preflight
    from ..backends.k8s.safety import IN_CLUSTER_CONTEXT, check_context, resolve_kubeconfig
    from ..backends.k8s.settings import K8sSettings

    values = {"kubeconfig": args.kubeconfig or "", "context": args.context or "", "namespace": args.namespace or ""}
    if args.allowed_contexts:
        values["allowed_contexts"] = args.allowed_contexts
    settings = K8sSettings.from_mapping(values)
    # Every pattern matches here: the check reads and changes nothing; the allow-list is reported below.
    cluster = check_context(dataclasses.replace(settings, allowed_contexts=("*",)), None)
    patterns = settings.allowed_contexts
    allowed = any(fnmatch.fnmatchcase(cluster.context, p) for p in patterns)
    listing = Finding(
        allowed,
        f"context {cluster.context!r} on the allow-list",
        f"{'matches' if allowed else 'matches none of'} {', '.join(patterns)} ({cluster.server})",
        "" if allowed else f"name it in ini clover_allowed_contexts ([pytest] section), e.g. {cluster.context}",
        required=False,
    )
    api = _client(cluster.context == IN_CLUSTER_CONTEXT, resolve_kubeconfig(settings), cluster)
    try:
        findings = [listing, *preflight(
            api, namespace=settings.namespace, mode=settings.mode, cluster=cluster,
            istio_namespace=args.istio_namespace,
        )]  # fmt: skip
    finally:
        api.close()  # type: ignore[no-untyped-call]
    where = f"existing mode in namespace {settings.namespace!r}" if settings.namespace else "deploy mode"
    print(f"clover k8s check: {cluster}, {where}\n")
    print(format_findings(findings))
    return 1 if any(f.status == "MISSING" for f in findings) else 0


def _client(in_cluster: bool, kubeconfig: str | None, cluster: ClusterRef) -> ApiClient:
    """A private ApiClient for the checked context (never the process-wide default configuration)."""
    from kubernetes import client

    from ..backends.k8s.errors import api_call
    from ..backends.k8s.kubefiles import load_configuration

    with api_call("load", "kubeconfig", cluster=cluster):
        return client.ApiClient(load_configuration(kubeconfig, cluster.context, in_cluster=in_cluster))
