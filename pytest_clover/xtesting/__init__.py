"""pytest-clover as an OPNFV Xtesting test case (Functest): ``run_tests -t clover_baseline``.

Register it in the ``xtesting.testcase`` entry-point group as ``pytest_clover = pytest_clover.xtesting:Resilience``
and name it in ``testcases.yaml`` (``run.name: pytest_clover``; the shipped file is ``data/testcases.yaml`` in this
package: a ``resilience`` tier on the embedded mesh and a ``resilience_k8s`` tier against the cluster under test).
``run.args`` (strings may name environment variables, ``${VAR}`` or ``${VAR:-default}``; a key that expands to the
empty string is left out):

- ``paths``: what pytest collects (``suites/test_01_baseline.py``, ``faults``, a user's folder); default ``suites``.
- ``dir``: the project folder the paths and the topology are relative to (default ``$CLOVER_DIR``, else the
  current directory).
- ``backend``, ``kubeconfig``, ``context``, ``namespace``, ``time_scale``, ``seed``, ``topology``: the
  ``--clover-*`` options of the same name.
- ``markers`` (``-m``), ``keyword`` (``-k``), ``extra`` (a list of further pytest arguments).
- ``python``: the interpreter of the child (default ``$CLOVER_PYTHON``, else this one).
- ``max_duration``: seconds after which the run is interrupted like a Ctrl-C (faults reverted, partial report).

pytest runs in a **child process**: locust monkey-patches (gevent) whatever process imports it, and Xtesting has
imported boto3 and requests long before; and the Kubernetes backend's ``kubernetes`` client needs
python-dateutil >= 3 while Xtesting's botocore pins < 3, so a Functest-style image keeps two virtualenvs and
points ``python`` (or ``CLOVER_PYTHON``) at the one with ``pytest-clover[k8s]``.

``result`` is the **pass ratio** in percent: passed / (passed + failed), where errors and inconclusive tests count
as failed and skipped or interrupted ones are left out; 0 when no test reached a verdict. The resilience score is
in ``details["score"]``. The report (``summary.json``, ``index.html``, per-test folders) is written into the case's
``res_dir``, so ``publish_artifacts`` uploads it. A SIGINT/SIGTERM is passed on to the child once (it reverts its
faults and writes a partial report), the case fails, and the cases after it in the tier are skipped.

``clover-run-tests`` (:mod:`pytest_clover.xtesting.launcher`) is Xtesting's ``run_tests`` with its results folder
moved, for runs without root.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Resilience"]


def __getattr__(name: str) -> Any:
    """Load the driver (and with it Xtesting) only when Xtesting asks for it, so that the rest of this package
    (``summary``) imports where Xtesting is not installed."""
    if name == "Resilience":
        from pytest_clover.xtesting.driver import Resilience

        return Resilience
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
