"""``clover-run-tests``: Xtesting's ``run_tests`` with a results folder of your choice, so it runs without root.

Xtesting 1.x writes its results, its log and every case's ``res_dir`` under the fixed ``/var/lib/xtesting/results``
(``xtesting.utils.constants.RESULTS_DIR``, also written into its ``logging.ini``). In a Functest container that
folder exists and ``run_tests`` is used as it is. Elsewhere — a developer's machine, a CI job that is not root — this
launcher points those three places at ``--results-dir`` (default ``$CLOVER_XTESTING_RESULTS``, else Xtesting's own
folder) and then hands the remaining arguments to Xtesting's ``run_tests`` unchanged::

    clover-run-tests --results-dir ./xtesting-results -t clover_baseline -r

Nothing else about Xtesting changes: ``testcases.yaml`` is looked up where Xtesting looks (``~/.xtesting``,
``/etc/xtesting``, ``<venv>/etc/xtesting``), a ``logging.ini`` of yours there still wins, ``-r`` still pushes to
``$TEST_DB_URL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

RESULTS_ENV = "CLOVER_XTESTING_RESULTS"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clover-run-tests",
        description="Run Xtesting's run_tests with its results folder moved (no root needed). "
        "Every other argument goes to run_tests (-t CASE_OR_TIER, -r, -p, -n).",
    )
    parser.add_argument(
        "--results-dir",
        default=os.environ.get(RESULTS_ENV),
        help=f"where results, xtesting.log and each case's folder go (default ${RESULTS_ENV}, "
        "else Xtesting's /var/lib/xtesting/results)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``clover-run-tests``; returns ``run_tests``' exit code."""
    options, rest = _parser().parse_known_args(argv)
    try:
        from xtesting.ci import run_tests  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from xtesting.core import testcase  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from xtesting.utils import constants  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        print(
            f"clover-run-tests: Xtesting is not installed in this environment ({exc}); install it in a venv of its "
            "own: pip install 'pytest-clover[xtesting]' (or: tox -e xtesting)",
            file=sys.stderr,
        )
        return 2
    for name in ("RESULTS_DIR", "LOG_PATH", "DEBUG_LOG_PATH", "INI_PATH_DEFAULT", "DEBUG_INI_PATH_DEFAULT"):
        if not hasattr(constants, name):  # a future Xtesting that moved them: say so rather than half-patch
            print(
                f"clover-run-tests: this Xtesting has no constants.{name}; use its run_tests as root", file=sys.stderr
            )
            return 2
    sys.argv = ["run_tests", *rest]
    if not options.results_dir:
        return int(run_tests.main())
    results = Path(options.results_dir).expanduser().resolve()
    fixed = str(constants.RESULTS_DIR)
    with tempfile.TemporaryDirectory(prefix="clover-xtesting-") as scratch:
        # Xtesting's logging.ini names the fixed folder for its log files: a copy naming ours, used unless the
        # user keeps a logging.ini of their own where Xtesting looks for one.
        for attr in ("INI_PATH_DEFAULT", "DEBUG_INI_PATH_DEFAULT"):
            default = Path(getattr(constants, attr))
            copy = Path(scratch) / default.name
            copy.write_text(default.read_text(encoding="utf-8").replace(fixed, str(results)), encoding="utf-8")
            setattr(constants, attr, copy)
        constants.RESULTS_DIR = str(results)
        constants.LOG_PATH = str(results / Path(constants.LOG_PATH).name)
        constants.DEBUG_LOG_PATH = str(results / Path(constants.DEBUG_LOG_PATH).name)
        # TestCase read RESULTS_DIR when it was imported: each case's res_dir is <dir_results>/<case_name>.
        testcase.TestCase.dir_results = str(results)
        return int(run_tests.main())


if __name__ == "__main__":
    sys.exit(main())
