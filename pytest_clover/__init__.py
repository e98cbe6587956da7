"""pytest-clover: chaos and resilience testing for service-mesh network functions, as a pytest plugin."""

from __future__ import annotations

__version__ = "0.1.0.dev0"


def discover(discover_system: bool = True) -> object:
    """Chaos Toolkit's ``chaos discover --no-install pytest-clover`` looks this up at the top of the package."""
    from .chaos import discover as discover_activities

    return discover_activities(discover_system)
