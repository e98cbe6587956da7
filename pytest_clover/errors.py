"""One exception tree for everything pytest-clover raises on purpose.

Library errors (OSError, yaml errors, HTTP errors) are translated at the boundary with
``raise ... from exc`` so that a user always sees what failed and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CloverError(Exception):
    """Base of every error pytest-clover raises on purpose; the message says what to do."""


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

    def __str__(self) -> str:
        where = f"{self.file}: {self.obj}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.severity}: {self.message}"


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


class MeshNotRunning(BackendError):
    """No mesh answers at the given state directory."""


class ConfigRejected(BackendError):
    """An Envoy refused a configuration we wrote; the previous configuration is still active."""


class ReadinessTimeout(BackendError):
    """Pods did not become ready in time; the message lists which and where their logs are."""


class CloverWarning(UserWarning):
    """Something the user should know that did not decide the verdict (e.g. faults an experiment left behind)."""
