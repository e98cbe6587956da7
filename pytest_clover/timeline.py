"""One timeline per test: phases of load and fault events, in wall-clock time, for verdicts and reports."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    time: float
    """Unix time, seconds."""
    kind: str
    """``phase-start``, ``phase-end``, ``fault-start``, ``fault-end``, ``fault-verified``, ``note``…"""
    name: str
    """Phase name, or the fault's description (e.g. ``delay 500ms 50% on http-lb``)."""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "name": self.name, **self.data}


class Timeline:
    """Thread-safe, append-only list of events shared by the ``load`` and ``faults`` fixtures of one test."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, kind: str, name: str, when: float | None = None, **data: Any) -> Event:
        event = Event(time.time() if when is None else when, kind, name, dict(data))
        with self._lock:
            self._events.append(event)
        return event

    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: e.time)
