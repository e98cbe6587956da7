"""A backend from another distribution plugs in with its own folder and one entry point, and passes the contract.

``tests/data/third_party_backend`` holds such a distribution as it would be installed: a package
(``clover_memory``) and its metadata (``clover_memory-0.1.dist-info``, whose ``entry_points.txt`` registers
``memory`` in the ``pytest_clover.backends`` group). Put on ``sys.path``, it is found like any installed one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import QUIET, SDC

DISTRIBUTION = Path(__file__).resolve().parents[1] / "data" / "third_party_backend"


@pytest.fixture
def installed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The distribution copied into a site folder the inner pytest imports from (a subprocess: a fresh registry)."""
    site = pytester.path / "site"
    shutil.copytree(DISTRIBUTION, site)
    monkeypatch.setenv("PYTHONPATH", str(site))
    pytester.makeini(f"[pytest]\nclover_topology = {SDC}\n")
    return site


def test_a_third_party_backend_runs_the_contracts_smoke_subset_through_the_plugin(
    pytester: pytest.Pytester, installed: Path
) -> None:
    pytester.makepyfile(
        test_memory="""
        import pytest

        from pytest_clover.backends import names
        from pytest_clover.testing.contract import BackendSmokeContract


        @pytest.fixture
        def contract_backend(mesh):
            assert mesh.backend.name == "memory"
            return mesh.backend


        def test_it_is_registered():
            assert names() == ["fake", "k8s", "local", "memory"]


        class TestMemoryBackend(BackendSmokeContract):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*QUIET, "--clover-backend=memory", "-v", "-rs")
    # It declares no optional protocol: the Watchable check is skipped, saying why.
    result.assert_outcomes(passed=6, skipped=1)
    result.stdout.fnmatch_lines(["*the backend does not declare Watchable*"])
    result.stdout.fnmatch_lines(["*clover: backend=memory*", "*test_a_killed_pod_is_replaced_under_a_new_name PASSED*"])


def test_without_its_distribution_the_name_is_a_usage_error_naming_the_installed_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(*QUIET, "--clover-backend=memory")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clover-backend=memory: no backend named 'memory' is installed; installed: fake, k8s, local*"])
