"""The public API: what a test types against is importable from ``pytest_clover``, and importing it costs nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_clover
from pytest_clover import errors


def test_every_public_name_resolves_to_the_object_its_module_defines() -> None:
    for name in pytest_clover.__all__:
        assert getattr(pytest_clover, name) is not None, name
    assert pytest_clover.Mesh.__module__ == "pytest_clover.plugin.fixtures"
    assert pytest_clover.Faults.__module__ == "pytest_clover.faults.injector"


def test_the_fixtures_classes_the_backend_seam_and_every_error_are_public() -> None:
    wanted = {"Mesh", "Load", "Faults", "SLO", "PodInfo", "LoadResult", "PhaseStats", "Backend", "MeshRecord"}
    assert wanted <= set(pytest_clover.__all__)
    assert set(errors.__all__) <= set(pytest_clover.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Meshh'"):
        pytest_clover.Meshh  # noqa: B018


def test_every_verdict_is_a_clover_failure_and_every_broken_run_a_clover_error() -> None:
    for failure in (errors.SLOViolation, errors.Regression, errors.ExperimentFailed):
        assert issubclass(failure, errors.CloverFailure) and issubclass(failure, AssertionError)
    for error in (
        errors.ConfigError,
        errors.BackendError,
        errors.FaultInconclusive,
        errors.InvalidFault,
        errors.LoadGeneratorError,
        errors.ExperimentError,
        errors.ReportDataError,
        errors.NoReferenceRun,
        errors.RevertFailed,
        errors.BackendNotFound,
    ):
        assert issubclass(error, errors.CloverError) and not issubclass(error, AssertionError)


def test_importing_the_package_imports_nothing_else() -> None:
    code = "import sys, pytest_clover; print(sorted(m for m in sys.modules if m.startswith('pytest_clover')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pytest_clover']"

