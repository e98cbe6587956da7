"""The pytest11 entry point. Deliberately thin: heavy modules load only when a fixture needs them.

The fixtures (mesh, load, faults, slo) arrive with the plugin issue; until then this only reports the
version so a run's header shows which pytest-clover produced it.
"""

from __future__ import annotations

import pytest

from . import __version__


def pytest_report_header(config: pytest.Config) -> str:
    return f"pytest-clover {__version__}"
