"""pytest-clover: chaos and resilience testing for service-mesh network functions, as a pytest plugin."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
