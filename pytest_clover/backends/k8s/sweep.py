"""``clover cleanup --context C``: what killed runs left in a cluster, swept after the fact by label.

A run's namespace (deploy mode) and the dead-man switch's objects (both modes) carry our managed-by label. A run is
dead when its Lease ``clover-deadman`` is gone or has not been renewed for twice its duration (the reaper would have
reverted its faults already; if the reaper could not run, this does it). For each dead run: every entry still in its
ledger is reverted — by the reaper's own code, driven from here — then its namespace is deleted when we created
it, or, in a namespace someone else owns, exactly the objects we created. A live run is left alone unless
``--force``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...errors import BackendError
from .rest import KINDS, Kind, Rest, status_code
from .settings import MANAGED_BY_LABEL

__all__ = ["sweep_cluster"]

OURS = f"{MANAGED_BY_LABEL}=pytest-clover"


class _ReaperApi:
    """The reaper's API interface (``request(method, path, body)`` → JSON, ``ApiFailure`` on error) over our client."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json") -> Any:
        from ...vnf.reaper import ApiFailure

        try:
            return self.rest.request(method, path, body=body, content_type=content_type) or {}
        except BackendError as exc:
            raise ApiFailure(status_code(exc) or 0, type(exc).__name__, str(exc)) from exc

    def close(self) -> None:
        """Nothing to close: the backend owns the client."""


def _lease_alive(rest: Rest, namespace: str, now: dt.datetime) -> bool:
    from ...vnf.reaper import LEASE_NAME

    lease = rest.get(KINDS["Lease"], namespace, LEASE_NAME, missing_ok=True)
    if lease is None:
        return False
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return False
    renewed = str(spec.get("renewTime") or spec.get("acquireTime") or "")
    try:
        when = dt.datetime.fromisoformat(renewed.replace("Z", "+00:00"))
    except ValueError:
        return False
    # Two lease durations of slack: this machine's clock is not the renewer's.
    return (now - when).total_seconds() < 2 * float(spec.get("leaseDurationSeconds") or 15)


def _revert_ledger(rest: Rest, namespace: str, lines: list[str]) -> bool:
    """Revert every entry of a namespace's ledger; whether none was left behind."""
    from ...vnf.reaper import LEDGER_NAME, PollResult, Reaper

    ledger = rest.get(KINDS["ConfigMap"], namespace, LEDGER_NAME, missing_ok=True)
    if ledger is None or not ledger.get("data"):
        return True
    reaper = Reaper(_ReaperApi(rest), namespace, log=lambda message: lines.append(f"  {namespace}: {message}"),
                    instance="clover-cleanup")  # fmt: skip
    result = PollResult(expired=True)
    reaper.revert_ledger(ledger, result)
    return not result.failed


def sweep_cluster(rest: Rest, *, force: bool = False) -> list[str]:
    """Sweep what dead runs left on the cluster ``rest`` talks to; one line per thing done or left."""
    lines: list[str] = []
    now = dt.datetime.now(dt.UTC)
    where = str(rest.cluster)
    owned = {n["metadata"]["name"]: n for n in rest.list(KINDS["Namespace"], None, labels=OURS).get("items") or []}
    try:
        # Dead-man switches in namespaces someone else owns (existing mode): found by their labelled Lease.
        leases = rest.list(Kind("coordination.k8s.io", "v1", "leases"), None, labels=OURS).get("items") or []
    except BackendError:
        leases = []  # listing across namespaces needs a ClusterRole: the owned namespaces are still swept
    foreign = sorted({lease["metadata"]["namespace"] for lease in leases} - set(owned))
    for namespace in sorted(owned) + foreign:
        alive = _lease_alive(rest, namespace, now)
        if alive and not force:
            lines.append(f"{where}: namespace {namespace}: its run is alive (Lease renewed); left alone")
            continue
        clean = _revert_ledger(rest, namespace, lines)
        if not clean:
            lines.append(f"{where}: namespace {namespace}: some faults could not be reverted; kept for another try")
            continue
        if namespace in owned:
            rest.delete(KINDS["Namespace"], None, namespace, body={"propagationPolicy": "Background"})
            lines.append(f"{where}: namespace {namespace} (a run's own) deleted, its faults reverted")
        else:
            for kind_name in ("Deployment", "RoleBinding", "Role", "ServiceAccount", "ConfigMap", "Lease"):
                kind = KINDS[kind_name]
                for item in rest.list(kind, namespace, labels=OURS).get("items") or []:
                    rest.delete(kind, namespace, item["metadata"]["name"])
            lines.append(f"{where}: namespace {namespace}: faults reverted, our reaper, Lease and ledger removed")
    return lines
