"""pytest-clover: chaos and resilience testing for service-mesh network functions, as a pytest plugin.

What a test types against is importable from here: the fixtures' classes (:class:`Mesh`, :class:`Load`,
:class:`Faults`, :class:`SLO`, :class:`Soak`), what they return (:class:`LoadResult`, :class:`PhaseStats`,
:class:`PodInfo`, the fault handles, :class:`SoakOutcome`), the backend seam (:class:`Backend`,
:class:`MeshRecord`) and the errors::

    from pytest_clover import Faults, Load, Mesh

    def test_lb_delay(mesh: Mesh, load: Load, faults: Faults) -> None: ...

Each name is imported on first use, so ``import pytest_clover`` (which pytest does in every run of an
environment where it is installed) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from .backends.protocol import Backend, BackendOptions, MeshRecord, PodInfo
    from .errors import (
        AccessDenied,
        BackendError,
        BackendNotFound,
        CloverError,
        CloverFailure,
        CloverWarning,
        ClusterUnreachable,
        ConfigError,
        ConfigRejected,
        ExperimentError,
        ExperimentFailed,
        FaultInconclusive,
        Inconclusive,
        InsecurePath,
        InvalidFault,
        IstioNotInstalled,
        LoadGeneratorError,
        MeshNotRunning,
        NoReferenceRun,
        ObjectConflict,
        Problem,
        ReadinessTimeout,
        Regression,
        ReportDataError,
        RevertFailed,
        SafetyRefusal,
        ScheduleMissed,
        SLOViolation,
        WorkerLost,
    )
    from .faults import ApplyFault, FaultHandle, Faults, HttpFault, KillFault, ScaleFault, ShiftFault
    from .load.result import LoadResult, PhaseStats
    from .plugin.fixtures import Load, Mesh, TrackedRun
    from .plugin.settings import CloverSettings
    from .slo import SLO, SLOCheck
    from .soak.runner import Soak, SoakOutcome
    from .timeline import Timeline

_WHERE = {
    "Backend": "backends.protocol",
    "BackendOptions": "backends.protocol",
    "MeshRecord": "backends.protocol",
    "PodInfo": "backends.protocol",
    "ApplyFault": "faults",
    "FaultHandle": "faults",
    "Faults": "faults",
    "HttpFault": "faults",
    "KillFault": "faults",
    "ScaleFault": "faults",
    "ShiftFault": "faults",
    "LoadResult": "load.result",
    "PhaseStats": "load.result",
    "Load": "plugin.fixtures",
    "Mesh": "plugin.fixtures",
    "TrackedRun": "plugin.fixtures",
    "CloverSettings": "plugin.settings",
    "SLO": "slo",
    "SLOCheck": "slo",
    "Soak": "soak.runner",
    "SoakOutcome": "soak.runner",
    "Timeline": "timeline",
    **{
        name: "errors"
        for name in (
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
        )
    },
}

__all__ = [
    "SLO",
    "AccessDenied",
    "ApplyFault",
    "Backend",
    "BackendError",
    "BackendNotFound",
    "BackendOptions",
    "CloverError",
    "CloverFailure",
    "CloverSettings",
    "CloverWarning",
    "ClusterUnreachable",
    "ConfigError",
    "ConfigRejected",
    "ExperimentError",
    "ExperimentFailed",
    "FaultHandle",
    "FaultInconclusive",
    "Faults",
    "HttpFault",
    "Inconclusive",
    "InsecurePath",
    "InvalidFault",
    "IstioNotInstalled",
    "KillFault",
    "Load",
    "LoadGeneratorError",
    "LoadResult",
    "Mesh",
    "MeshNotRunning",
    "MeshRecord",
    "NoReferenceRun",
    "ObjectConflict",
    "PhaseStats",
    "PodInfo",
    "Problem",
    "ReadinessTimeout",
    "Regression",
    "ReportDataError",
    "RevertFailed",
    "SLOCheck",
    "SLOViolation",
    "SafetyRefusal",
    "ScaleFault",
    "ScheduleMissed",
    "ShiftFault",
    "Soak",
    "SoakOutcome",
    "Timeline",
    "TrackedRun",
    "WorkerLost",
    "__version__",
    "discover",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_clover' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


def discover(discover_system: bool = True) -> object:
    """Chaos Toolkit's ``chaos discover --no-install pytest-clover`` looks this up at the top of the package."""
    from .chaos import discover as discover_activities

    return discover_activities(discover_system)
