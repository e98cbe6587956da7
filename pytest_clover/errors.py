"""Everything pytest-clover raises on purpose, in one tree.

Two roots, because a run can end in two different ways and users, CI drivers and the report must tell them
apart::

    CloverError(Exception)            the run could not judge the system (the test ERRORS)
    ├── ConfigError                   Kubernetes/Istio YAML that cannot be used; carries every Problem
    ├── BackendError                  a mesh operation failed (process, port, Envoy or cluster trouble)
    │   ├── BackendNotFound           no backend is registered under the name asked for
    │   ├── MeshNotRunning            nothing answers where the mesh should be
    │   ├── ConfigRejected            an Envoy refused a configuration; the previous one stays in force
    │   ├── ReadinessTimeout          pods not ready in time; says which, and where their logs are
    │   ├── RevertFailed              a fault could not be put back; it stays in the ledger for a sweep
    │   ├── AccessDenied              the cluster refused us (401/403); names verb, resource, the RBAC file
    │   ├── IstioNotInstalled         the cluster serves no networking.istio.io CRDs
    │   ├── ClusterUnreachable        no API server answers; names the context and the server
    │   └── ObjectConflict            someone else changed the very fields a fault changes: not overwritten
    ├── InvalidFault                  a fault cannot be built as asked; nothing was changed
    ├── Inconclusive                  no evidence either way (the test is INCONCLUSIVE)
    │   ├── FaultInconclusive         a fault's effect was never seen
    │   ├── ScheduleMissed            the open-loop load fell far behind the rate asked for
    │   └── WorkerLost                a load worker was lost: windows lack its share (also a LoadGeneratorError)
    ├── LoadGeneratorError            the load generator died, could not start, or did not stop
    ├── ExperimentError               a Chaos Toolkit experiment could not be carried out
    ├── InsecurePath                  a private folder is another user's or writable by others: not used
    ├── SafetyRefusal                 a cluster action outside the allowed blast radius: nothing was changed
    ├── ReportDataError               a run folder cannot be read; names the file
    └── NoReferenceRun                --clover-compare names a run the history does not hold

    CloverFailure(AssertionError)     the system failed an objective (the test FAILS)
    ├── SLOViolation                  an SLO was missed; the message is the table of numbers
    ├── Regression                    p99, error rate or recovery regressed against an earlier run
    └── ExperimentFailed              a Chaos Toolkit steady-state hypothesis was not met

``CloverFailure`` derives from ``AssertionError`` so that pytest reports it as a failure, like a plain
``assert``. Library errors (OSError, YAML, HTTP, gRPC) are translated at the boundary where they happen with
``raise … from exc``: a user sees what failed and what to do about it, never a bare traceback.

``CloverWarning`` is for what a user should know that did not decide the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AccessDenied",
    "BackendError",
    "BackendNotFound",
    "CloverError",
    "CloverFailure",
    "CloverWarning",
    "ClusterUnreachable",
    "ConfigError",
    "ConfigRejected",
    "ExperimentError",
    "ExperimentFailed",
    "FaultInconclusive",
    "Inconclusive",
    "InsecurePath",
    "InvalidFault",
    "IstioNotInstalled",
    "LoadGeneratorError",
    "MeshNotRunning",
    "NoReferenceRun",
    "ObjectConflict",
    "Problem",
    "ReadinessTimeout",
    "Regression",
    "ReportDataError",
    "RevertFailed",
    "SLOViolation",
    "SafetyRefusal",
    "ScheduleMissed",
    "WorkerLost",
]


class CloverError(Exception):
    """Base of every error pytest-clover raises on purpose; the message says what to do."""


class CloverFailure(AssertionError):
    """Base of every verdict pytest-clover reaches against the system under test: the test FAILS."""


@dataclass(frozen=True)
class Problem:
    """One finding about a Kubernetes or Istio document."""

    file: str
    """The file the document came from (``<string>`` for text given directly)."""
    obj: str
    """``Kind/name`` of the object, or ``document N`` when it has no usable kind or name."""
    field: str
    """Dotted path of the field, e.g. ``spec.http[0].fault.abort.httpStatus``; empty for the whole object."""
    message: str
    """What is wrong and what to do about it."""
    severity: str = "error"
    """``error`` (the object is rejected) or ``warning`` (accepted; something will not behave as written)."""
    scope: str = ""
    """Which backend the problem concerns: empty for every backend; ``local`` for what only the embedded mesh
    cannot honour (a field Istio applies on a cluster), which a cluster backend leaves out."""

    def __str__(self) -> str:
        where = f"{self.file}: {self.obj}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.severity}: {self.message}"


# --------------------------------------------------------------------------- the run could not judge


class ConfigError(CloverError):
    """Kubernetes or Istio YAML that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [str(p) for p in errors] or [str(p) for p in self.problems]
        noun = "problem" if len(lines) == 1 else "problems"
        super().__init__(f"{len(lines)} {noun} in the configuration:\n  " + "\n  ".join(lines))

    @classmethod
    def single(cls, file: str, obj: str, field: str, message: str) -> ConfigError:
        return cls([Problem(file, obj, field, message)])


class BackendError(CloverError):
    """A mesh operation failed (process, port, Envoy or cluster trouble)."""


class BackendNotFound(BackendError):
    """No backend is registered under the name asked for (``--clover-backend``, a ledger, an experiment)."""


class MeshNotRunning(BackendError):
    """No mesh answers where the mesh record points."""


class ConfigRejected(BackendError):
    """An Envoy refused a configuration we wrote; the previous configuration is still active."""


class ReadinessTimeout(BackendError):
    """Pods did not become ready in time; the message lists which and where their logs are."""


class RevertFailed(BackendError):
    """A fault could not be reverted; it stays in the fault ledger, and the next run or ``clover cleanup`` sweeps it."""


class AccessDenied(BackendError):
    """The Kubernetes API refused us (401: who we are; 403: what we may do). Names the verb, the resource and the
    RBAC file that grants it."""


class IstioNotInstalled(BackendError):
    """The cluster does not serve Istio's ``networking.istio.io`` resources: Istio is not installed."""


class ClusterUnreachable(MeshNotRunning):
    """No Kubernetes API server answers (connection refused, TLS, timeout); names the context and the server."""


class ObjectConflict(BackendError):
    """Someone else changed the very fields a fault changes (or puts back) since we read them; their change is
    kept, and ours is not made."""


class InvalidFault(CloverError, ValueError):
    """A fault cannot be built as asked (a malformed duration, a percentage out of range, weights not adding up
    to 100, a subset no route sends traffic to); nothing was changed."""


class Inconclusive(CloverError):
    """The run produced no evidence either way (the test is INCONCLUSIVE, not passed, not failed)."""


class FaultInconclusive(Inconclusive):
    """A fault's effect was not seen, so the test says nothing about resilience to it: the test errors."""


class ScheduleMissed(Inconclusive):
    """The open-loop load fell far behind its schedule: the system was not tested at the rate asked for."""


class LoadGeneratorError(CloverError):
    """The load generator died, could not start, or did not stop cleanly.

    Carries the child's ``pid``, its ``exit_code`` (negative: killed by that signal; None: still running when
    given up on), the last lines of its log (``stderr_tail``) and, when the run got that far, the partial
    ``result`` measured until then.
    """

    def __init__(
        self,
        message: str,
        *,
        pid: int | None = None,
        exit_code: int | None = None,
        stderr_tail: str = "",
        log_path: Path | None = None,
        result: Any = None,
    ) -> None:
        self.pid = pid
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.log_path = log_path
        self.result = result
        """The :class:`~pytest_clover.load.result.LoadResult` measured until the failure, or None."""
        text = message
        if stderr_tail:
            where = f" ({log_path})" if log_path else ""
            text += f"\nlast lines of the load generator's log{where}:\n{stderr_tail}"
        super().__init__(text)


class WorkerLost(Inconclusive, LoadGeneratorError):
    """A worker of a distributed load generator (``LoadGenerator(workers=N)``) was lost (its process ended, it
    missed its heartbeats, or it went silent): the windows after the loss lack its share of the requests, so the
    system was not tested at the rate asked for. INCONCLUSIVE, never passed on a lower rate.

    A :class:`LoadGeneratorError` too (with the partial ``result``), so code that stops a load run and keeps
    what it measured handles it like any generator failure. ``lost_workers`` lists each loss as the generator
    reported it (``worker``, ``pid``, ``reason``, ``at``: unix seconds, ``windows``: how many miss it).
    """

    def __init__(self, message: str, *, lost_workers: Sequence[dict[str, Any]] = (), **kwargs: Any) -> None:
        self.lost_workers = [dict(loss) for loss in lost_workers]
        super().__init__(message, **kwargs)


class ExperimentError(CloverError):
    """The experiment could not be carried out (an action or rollback failed, the run was interrupted)."""


class InsecurePath(CloverError):
    """A folder pytest-clover keeps private (the runtime folder, a mesh's state) is not: another user owns it, or
    others may write to it. Nothing in it is used or acted on."""


class SafetyRefusal(CloverError):
    """A cluster action outside what the run may touch: a context not on the allow-list, a protected or foreign
    namespace, a kill over the blast radius. Nothing was changed; the message names the setting that allows it."""


class ReportDataError(CloverError):
    """A run folder cannot be read (missing or malformed files); the message names the file."""


class NoReferenceRun(CloverError, LookupError):
    """``--clover-compare`` names a run that ``history.jsonl`` does not hold."""


# --------------------------------------------------------------------------- the system failed


class SLOViolation(CloverFailure):
    """An objective was not met; the message is a table with the numbers. Fails the test."""

    def __init__(self, message: str, checks: Sequence[Any]) -> None:
        super().__init__(message)
        self.checks = list(checks)
        """The :class:`~pytest_clover.slo.SLOCheck` rows, met and missed."""


class Regression(CloverFailure):
    """p99, error rate or recovery regressed against the ``--clover-compare`` run. Fails the test."""


class ExperimentFailed(CloverFailure):
    """The steady-state hypothesis was not met: the system failed the experiment. Fails the test."""


class CloverWarning(UserWarning):
    """Something the user should know that did not decide the verdict (e.g. faults an experiment left behind)."""
