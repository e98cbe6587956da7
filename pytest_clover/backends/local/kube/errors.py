"""Errors as the Kubernetes API answers them: a ``Status`` object with an HTTP code, a reason and causes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiError", "Cause", "go_json_type"]

# The reasons Kubernetes uses for each code (k8s.io/apimachinery/pkg/apis/meta/v1 StatusReason).
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class Cause:
    """One ``details.causes`` entry: which field, what kind of problem (``FieldValueInvalid``,
    ``FieldValueRequired``, ``FieldValueNotSupported``, ``FieldManagerConflict``, ``FieldValueDuplicate``…)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def as_dict(self) -> dict[str, str]:
        # Kubernetes leaves out an empty field (``omitempty``).
        body = {"reason": self.reason, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass
class ApiError(Exception):
    """A request the API refuses. ``reason`` defaults to the one Kubernetes gives ``code`` (``AlreadyExists``
    and ``Conflict`` are both 409: give ``reason`` for the former). ``kind``/``name``/``group`` fill
    ``details`` as Kubernetes does for errors about one object. The message says what to do."""

    code: int
    message: str
    reason: str = ""
    kind: str = ""
    name: str = ""
    group: str = ""
    causes: Sequence[Cause] = field(default_factory=tuple)
    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASONS.get(self.code, "Unknown")
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        """The ``Status`` object to send (``kind: Status``, ``apiVersion: v1``)."""
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.as_dict() for c in self.causes]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body

    @classmethod
    def not_found(cls, kind: str, name: str, group: str = "") -> ApiError:
        resource = f"{kind}.{group}" if group else kind
        return cls(404, f'{resource} "{name}" not found', kind=kind, name=name, group=group)

    @classmethod
    def already_exists(cls, kind: str, name: str, group: str = "") -> ApiError:
        resource = f"{kind}.{group}" if group else kind
        return cls(
            409, f'{resource} "{name}" already exists', reason="AlreadyExists", kind=kind, name=name, group=group
        )

    @classmethod
    def invalid(cls, kind: str, name: str, causes: Sequence[Cause], group: str = "") -> ApiError:
        """422 Invalid, as Kubernetes words it: ``Kind.group "name" is invalid: field: message, …``."""
        resource = f"{kind}.{group}" if group else kind
        listed = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
        if len(causes) > 1:
            listed = f"[{listed}]"  # as Kubernetes' aggregate error writes several
        return cls(422, f'{resource} "{name}" is invalid: {listed}', kind=kind, name=name, group=group, causes=causes)

    @classmethod
    def from_status(cls, body: Mapping[str, Any]) -> ApiError:
        details = body.get("details") or {}
        causes = tuple(
            Cause(str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", "")))
            for c in details.get("causes") or ()
        )
        return cls(
            int(body.get("code", 500)),
            str(body.get("message", "")),
            reason=str(body.get("reason", "")),
            kind=str(details.get("kind", "")),
            name=str(details.get("name", "")),
            group=str(details.get("group", "")),
            causes=causes,
        )


def go_json_type(value: Any) -> str:
    """A JSON value's kind as Go's encoding/json names it in its errors (``cannot unmarshal number into …``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
