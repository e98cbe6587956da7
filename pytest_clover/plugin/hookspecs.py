"""Hooks pytest-clover adds to pytest, for conftests and other plugins to implement."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..backends.protocol import Backend, BackendOptions
    from .settings import CloverSettings


@pytest.hookspec(firstresult=True)
def pytest_clover_make_backend(
    config: pytest.Config, settings: CloverSettings, options: BackendOptions
) -> Backend | None:
    """Build the backend the session's ``mesh`` fixture deploys (it is not deployed yet).

    ``settings.backend`` is the name ``--clover-backend`` gave; ``options`` says what to deploy, where the mesh may
    keep its state, the seed, and whether to keep it running. The first implementation to return a backend wins;
    pytest-clover's own (the last to run) asks the registry for the backend of that name
    (``registry.backend_class(name).from_options(options)``). Implement it to build a backend differently (extra
    settings, a wrapper that records every call) without replacing the ``clover_backend`` fixture.
    """
    return None
