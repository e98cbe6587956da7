"""``clover k8s check``: can a run work on this cluster? RBAC verbs, Istio's CRDs, sidecar injection.

:func:`preflight` asks the cluster, read-only, what a run will need, and returns one :class:`Finding` per
question; :func:`format_findings` prints them as a table a person reads. The questions:

- **RBAC** — every (verb, resource, namespace) of pytest-clover's Role (``rbac/role.yaml``, the file a user
  applies: the check and the grant cannot drift apart), plus the cluster-scoped ones of deploy mode, each asked
  with a ``SelfSubjectAccessReview``. In deploy mode the namespaced rules are asked for every namespace (the
  run's does not exist yet); in existing mode for the namespace given.
- **Istio's CRDs** — API discovery: ``virtualservices``, ``destinationrules``, ``gateways`` of
  ``networking.istio.io``, ``telemetries`` of ``telemetry.istio.io``, and which versions are served.
- **Sidecar injection** — a ``MutatingWebhookConfiguration`` whose name contains ``istio-sidecar-injector``
  (``could not check`` when the API does not serve ``admissionregistration.k8s.io`` or we may not read it); in
  existing mode, the namespace's ``istio-injection=enabled`` / ``istio.io/rev`` label, its opt-in annotation,
  and whether its pods carry an ``istio-proxy`` container.

A finding that is not ``required`` (an optional permission, a question that could not be asked) is a warning:
``clover k8s check`` exits 1 only for required findings that are not ok.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from ...errors import CloverError, SafetyRefusal
from .errors import api_call, api_status, rbac_dir, rbac_fix
from .safety import check_namespace
from .settings import OPT_IN_ANNOTATION, ClusterRef

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ISTIO_RESOURCES", "Finding", "Permission", "format_findings", "permissions", "preflight"]

ISTIO_RESOURCES: dict[str, tuple[str, ...]] = {
    "networking.istio.io": ("virtualservices", "destinationrules", "gateways"),
    "telemetry.istio.io": ("telemetries",),
}
"""The Istio resources a run uses, by API group."""
INJECTOR_WEBHOOK = "istio-sidecar-injector"
"""What the name of Istio's injection webhook contains (``istio-sidecar-injector[-<revision>]``)."""
# The cluster-scoped rules of clusterrole.yaml that a run can do without: the CRDs are found by discovery, and
# the injector webhook is only read by this check.
_OPTIONAL_CLUSTER_RESOURCES = frozenset({"customresourcedefinitions", "mutatingwebhookconfigurations"})

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One answer of the preflight."""

    ok: bool
    what: str
    """The question, e.g. ``RBAC pods in namespace 'shop'``."""
    detail: str
    """What the cluster said."""
    fix: str = ""
    """What to do when not ok (a command to run, a file to apply)."""
    required: bool = True
    """False for what a run can do without, and for questions that could not be asked: a warning, not a failure."""

    @property
    def status(self) -> str:
        """``ok``, ``MISSING`` (required, not ok) or ``warning``."""
        if self.ok:
            return "ok"
        return "MISSING" if self.required else "warning"


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource that a run needs, in ``namespace`` ("" for every namespace, None: cluster-scoped)."""

    group: str
    resource: str
    """The plural, with ``/subresource`` when there is one (``pods/exec``)."""
    verbs: tuple[str, ...]
    namespace: str | None
    required: bool = True

    @property
    def qualified(self) -> str:
        """The resource as Kubernetes' messages name it: ``deployments.apps/scale``."""
        plural, _, subresource = self.resource.partition("/")
        return plural + (f".{self.group}" if self.group else "") + (f"/{subresource}" if subresource else "")


def _rules(file: str, kind: str, name: str) -> list[dict[str, Any]]:
    """The rules of the ``kind``/``name`` object in the packaged RBAC file ``file``."""
    for doc in yaml.safe_load_all((rbac_dir() / file).read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return list(doc.get("rules") or [])
    raise CloverError(f"{rbac_dir() / file} has no {kind} {name}: the package is damaged; reinstall pytest-clover")


def _expand(rules: Iterable[dict[str, Any]], namespace: str | None, *, required: bool = True) -> list[Permission]:
    return [
        Permission(str(group), str(resource), tuple(str(v) for v in rule.get("verbs") or ()), namespace, required)
        for rule in rules
        for group in rule.get("apiGroups") or ()
        for resource in rule.get("resources") or ()
    ]


def permissions(mode: str, namespace: str | None, *, istio_namespace: str = "istio-system") -> list[Permission]:
    """What a run in ``mode`` (``deploy`` or ``existing``) needs, from the packaged RBAC files: the Role's rules
    in ``namespace`` (every namespace in deploy mode), deploy mode's cluster-scoped rules, and (optional) the
    ingress gateway's Services in ``istio_namespace``."""
    if mode not in ("deploy", "existing"):
        raise ValueError(f"mode must be 'deploy' or 'existing', not {mode!r}")
    if mode == "existing" and not namespace:
        raise ValueError("existing mode needs the namespace under test")
    wanted = _expand(_rules("role.yaml", "Role", "pytest-clover"), namespace if mode == "existing" else "")
    if mode == "deploy":
        for permission in _expand(_rules("clusterrole.yaml", "ClusterRole", "pytest-clover"), None):
            optional = permission.resource in _OPTIONAL_CLUSTER_RESOURCES
            wanted.append(Permission(permission.group, permission.resource, permission.verbs, None, not optional))
    wanted += _expand(_rules("ingress.yaml", "Role", "pytest-clover-ingress"), istio_namespace, required=False)
    return wanted


def _where(namespace: str | None) -> str:
    if namespace is None:
        return "cluster-wide"
    return f"in namespace {namespace!r}" if namespace else "in every namespace"


def _could_not_check(what: str, exc: BaseException, fix: str = "") -> Finding:
    status = api_status(exc)
    said = f"{status.code} {status.reason}: {status.message}" if status else f"{type(exc).__name__}: {exc}"
    return Finding(False, what, f"could not check ({said})", fix, required=False)


def _answer(
    call: Callable[[], T], *, cluster: ClusterRef, verb: str, resource: str, namespace: str | None = None
) -> tuple[T | None, BaseException | None]:
    """``call()``'s result, or the 403/404 that means "cannot be asked here" (returned, not raised); every other
    failure (unreachable, 401, 5xx) is raised translated: the check cannot go on."""
    with api_call(verb, resource, namespace=namespace, cluster=cluster):
        try:
            return call(), None
        except Exception as exc:
            status = api_status(exc)
            if status is not None and status.code in (403, 404):
                return None, exc
            raise


def _check_rbac(api: ApiClient, wanted: Sequence[Permission], cluster: ClusterRef) -> list[Finding]:
    from kubernetes import client

    authorization = client.AuthorizationV1Api(api)
    findings: list[Finding] = []
    for permission in wanted:
        plural, _, subresource = permission.resource.partition("/")
        what = f"RBAC {permission.qualified} {_where(permission.namespace)}"
        denied: list[str] = []
        reasons: list[str] = []
        for verb in permission.verbs:
            attributes = client.V1ResourceAttributes(
                group=permission.group,
                resource=plural,
                subresource=subresource or None,
                verb=verb,
                namespace=permission.namespace or None,
                # A Role grants a namespace's own object (get namespaces/NS) only by its name.
                name=permission.namespace if plural == "namespaces" and permission.namespace else None,
            )
            body = client.V1SelfSubjectAccessReview(
                api_version="authorization.k8s.io/v1",
                kind="SelfSubjectAccessReview",
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes),
            )
            review, refused = _answer(
                partial(authorization.create_self_subject_access_review, body),
                cluster=cluster,
                verb="create",
                resource="selfsubjectaccessreviews.authorization.k8s.io",
            )
            if refused is not None:
                # No review API (or not for us): one finding says so, rather than a hundred.
                return [_could_not_check("RBAC (SelfSubjectAccessReview)", refused, "kubectl auth can-i --list")]
            status = getattr(review, "status", None)
            if not getattr(status, "allowed", False):
                denied.append(verb)
                reason = getattr(status, "reason", "") or getattr(status, "evaluation_error", "")
                if reason:
                    reasons.append(str(reason))
        allowed = [verb for verb in permission.verbs if verb not in denied]
        if denied:
            detail = f"denied: {', '.join(denied)}" + (f" ({'; '.join(sorted(set(reasons)))})" if reasons else "")
            detail += f"; allowed: {', '.join(allowed)}" if allowed else ""
            fix = rbac_fix(denied[0], permission.qualified, permission.namespace or None)
            findings.append(Finding(False, what, detail, fix, permission.required))
        else:
            findings.append(Finding(True, what, f"allowed: {', '.join(allowed)}", "", permission.required))
    return findings


def _served_resources(api: ApiClient, cluster: ClusterRef) -> dict[str, tuple[list[str], set[str]]]:
    """For each Istio group: the versions served (preferred first), and the resources of the preferred one."""
    from kubernetes import client

    with api_call("get", "apis (discovery)", cluster=cluster):
        groups = client.ApisApi(api).get_api_versions().groups or []
    served: dict[str, tuple[list[str], set[str]]] = {}
    for group in groups:
        if group.name not in ISTIO_RESOURCES:
            continue
        preferred = group.preferred_version.version if group.preferred_version else ""
        versions = [v.version for v in group.versions or [] if v.version]
        versions.sort(key=lambda v: v != preferred)
        if not versions:
            continue
        listed, _ = _answer(
            partial(client.CustomObjectsApi(api).get_api_resources, group.name, versions[0]),
            cluster=cluster,
            verb="get",
            resource=f"{group.name} (discovery)",
        )
        if listed is None:  # listed in /apis but not served (a CRD being removed, an aggregated API down)
            continue
        served[group.name] = (versions, {r.name for r in listed.resources or [] if r.name})
    return served


def _check_crds(api: ApiClient, cluster: ClusterRef) -> list[Finding]:
    served = _served_resources(api, cluster)
    findings: list[Finding] = []
    for group, needed in ISTIO_RESOURCES.items():
        what = f"Istio CRDs {group}: {', '.join(needed)}"
        # The access log's format is installed with a Telemetry; without it the hop report says it has no log.
        required = group == "networking.istio.io"
        if group not in served:
            findings.append(Finding(
                False, what, f"Istio is not installed in the cluster (no {group} CRDs)",
                "install Istio (istioctl install, or the base and istiod Helm charts)", required,
            ))  # fmt: skip
            continue
        versions, resources = served[group]
        missing = [r for r in needed if r not in resources]
        if missing:
            findings.append(Finding(
                False, what, f"{group}/{versions[0]} does not serve {', '.join(missing)}",
                "install Istio's CRDs (istioctl install, or the base Helm chart)", required,
            ))  # fmt: skip
        else:
            findings.append(Finding(True, what, f"served ({', '.join(f'{group}/{v}' for v in versions)})"))
    return findings


def _check_webhook(api: ApiClient, cluster: ClusterRef) -> Finding:
    from kubernetes import client

    what = "sidecar injection: Istio's injector webhook"
    listed, refused = _answer(
        client.AdmissionregistrationV1Api(api).list_mutating_webhook_configuration,
        cluster=cluster,
        verb="list",
        resource="mutatingwebhookconfigurations.admissionregistration.k8s.io",
    )
    if refused is not None:
        status = api_status(refused)
        fix = rbac_fix("list", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None)
        return _could_not_check(what, refused, fix if status and status.code == 403 else "")
    names = sorted(w.metadata.name for w in getattr(listed, "items", None) or [] if w.metadata and w.metadata.name)
    injectors = [n for n in names if INJECTOR_WEBHOOK in n]
    if injectors:
        return Finding(True, what, f"installed ({', '.join(injectors)})")
    return Finding(
        False,
        what,
        f"no MutatingWebhookConfiguration named *{INJECTOR_WEBHOOK}* ({len(names)} others): pods get no sidecar",
        "install istiod (istioctl install), which installs the injector",
    )


def _has_sidecar(pod: Any) -> bool:
    spec = pod.spec
    if spec is None:
        return False
    # A native sidecar (Istio 1.27's default) is an init container that keeps running: restartPolicy Always.
    native = [c for c in spec.init_containers or [] if c.restart_policy == "Always"]
    return any(c.name == "istio-proxy" for c in [*(spec.containers or []), *native])


def _check_namespace(api: ApiClient, namespace: str, cluster: ClusterRef) -> list[Finding]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    what = f"namespace {namespace!r}"
    found, refused = _answer(
        partial(core.read_namespace, namespace), cluster=cluster, verb="get", resource="namespaces", namespace=namespace
    )
    if refused is not None:
        status = api_status(refused)
        if status is not None and status.code == 404:
            return [
                Finding(False, what, "does not exist", "deploy the app under test there, or give another --namespace")
            ]
        return [_could_not_check(what, refused, rbac_fix("get", "namespaces", namespace))]
    metadata = found.metadata if found is not None else None
    labels = dict(metadata.labels or {}) if metadata else {}
    annotations = dict(metadata.annotations or {}) if metadata else {}
    findings: list[Finding] = []
    try:
        check_namespace({"metadata": {"name": namespace, "labels": labels, "annotations": annotations}}, run_id="")
        findings.append(Finding(True, f"{what}: opt-in", f"annotated {OPT_IN_ANNOTATION}=enabled"))
    except SafetyRefusal as refusal:
        text = str(refusal)
        fix = f"kubectl annotate namespace {namespace} {OPT_IN_ANNOTATION}=enabled" if "protected" not in text else ""
        findings.append(Finding(False, f"{what}: opt-in", text.split(": pytest-clover")[0], fix))
    pods, _ = _answer(
        partial(core.list_namespaced_pod, namespace), cluster=cluster, verb="list", resource="pods", namespace=namespace
    )
    items = list(getattr(pods, "items", None) or [])
    with_sidecar = sum(1 for p in items if _has_sidecar(p))
    sidecars = f"{with_sidecar} of {len(items)} pods have an istio-proxy sidecar" if pods is not None else ""
    label = labels.get("istio-injection")
    revision = labels.get("istio.io/rev")
    injection = f"{what}: sidecar injection"
    if label == "enabled" or (revision and label != "disabled"):
        how = "istio-injection=enabled" if label == "enabled" else f"istio.io/rev={revision}"
        detail = f"labelled {how}" + (f"; {sidecars}" if sidecars else "")
        ok = pods is None or not items or with_sidecar == len(items)
        fix = "" if ok else f"restart the pods without one: kubectl rollout restart deployment -n {namespace}"
        findings.append(Finding(ok, injection, detail, fix))
    elif items and with_sidecar == len(items):
        findings.append(Finding(True, injection, f"no injection label, but {sidecars}"))
    else:
        state = "labelled istio-injection=disabled" if label == "disabled" else "no istio-injection/istio.io/rev label"
        findings.append(Finding(
            False, injection, state + (f"; {sidecars}" if sidecars else ""),
            f"kubectl label namespace {namespace} istio-injection=enabled --overwrite, then "
            f"kubectl rollout restart deployment -n {namespace}",
        ))  # fmt: skip
    return findings


def preflight(
    api: ApiClient,
    *,
    namespace: str | None,
    mode: str,
    cluster: ClusterRef,
    istio_namespace: str = "istio-system",
) -> list[Finding]:
    """Ask the cluster behind ``api`` whether a run in ``mode`` (``deploy``, or ``existing`` in ``namespace``)
    can work there: RBAC, Istio's CRDs, sidecar injection. Read-only (access reviews create nothing). Raises the
    translated error when the cluster does not answer or refuses our credentials (401)."""
    wanted = permissions(mode, namespace, istio_namespace=istio_namespace)
    findings = _check_crds(api, cluster)
    findings.append(_check_webhook(api, cluster))
    if mode == "existing" and namespace:
        findings += _check_namespace(api, namespace, cluster)
    findings += _check_rbac(api, wanted, cluster)
    return findings


def format_findings(findings: Sequence[Finding]) -> str:
    """The findings as a table (status, check, what the cluster said), each fix under its row, and a summary."""
    rows = [("STATUS", "CHECK", "DETAIL")] + [(f.status, f.what, f.detail) for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines: list[str] = []
    for index, (status, what, detail) in enumerate(rows):
        lines.append(f"{status.ljust(widths[0])}  {what.ljust(widths[1])}  {detail}".rstrip())
        finding = findings[index - 1] if index else None
        if finding is not None and not finding.ok and finding.fix:
            lines.append(f"{''.ljust(widths[0])}  fix: {finding.fix}")
    missing = sum(1 for f in findings if f.status == "MISSING")
    warnings = sum(1 for f in findings if f.status == "warning")
    ok = len(findings) - missing - warnings
    verdict = "a run can work here" if not missing else "a run will fail here until the MISSING rows are fixed"
    lines.append(f"\n{len(findings)} checks: {ok} ok, {missing} missing, {warnings} warnings: {verdict}")
    return "\n".join(lines)
