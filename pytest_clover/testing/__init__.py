"""Test doubles and the backend contract, for pytest-clover's own tests and for yours.

- :class:`FakeBackend` — a mesh in memory behind the Backend protocol (registered as the ``fake`` backend);
- :class:`FakeLoadGenerator` — the load generator's interface, sending nothing;
- :mod:`pytest_clover.testing.contract` — the behaviour every backend must show, as test classes a backend's
  own test suite subclasses (:class:`~pytest_clover.testing.contract.BackendContract`).

Production code never imports this package: the fake is found, like any backend, through the registry.
"""

from __future__ import annotations

from .fake_backend import FakeBackend
from .fake_load import FakeLoadGenerator, FakeLoadResult, FakeLoadRun, FakePhaseStats

__all__ = ["FakeBackend", "FakeLoadGenerator", "FakeLoadResult", "FakeLoadRun", "FakePhaseStats"]
