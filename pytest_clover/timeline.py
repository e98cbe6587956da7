"""One timeline per test: phases of load and fault events, in wall-clock time, for verdicts and reports."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._on_event = on_event

    def add(self, kind: str, name: str, when: float | None = None, **data: Any) -> Event:
        event = Event(time.time() if when is None else when, kind, name, dict(data))
        with self._lock:
            self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: e.time)


class EventStream:
    """Appends each event, as it happens, to a run's ``events.ndjson`` (one JSON object per line, ``test`` added).

    One ``write`` of one line on an ``O_APPEND`` descriptor per event, so the lines of several tests (and
    several xdist workers) interleave whole; a run killed midway leaves every event up to the kill.
    """

    def __init__(self, path: Path, test: str) -> None:
        self.path = path
        self.test = test

    def __call__(self, event: Event) -> None:
        line = json.dumps({"test": self.test, **event.as_dict()}, default=str) + "\n"
        with contextlib.suppress(OSError):  # a full disk must not fail the test that injected a fault
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
