"""Every test run gets a private runtime folder of its own (registries of meshes, the index of fault ledgers), so
that tests never see, sweep or leave anything in a developer's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_clover.runtime import RUNTIME_ENV


@pytest.fixture(scope="session", autouse=True)
def _private_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv(RUNTIME_ENV, str(tmp_path_factory.mktemp("clover-runtime-session")))
    yield
    mp.undo()
