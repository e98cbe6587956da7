"""The ``clover`` command (:func:`main`): run, inspect and break a mesh from a shell."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
