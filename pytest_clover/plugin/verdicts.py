"""Verdicts the plugin reaches after a test body: ``@pytest.mark.slo`` objectives, regressions against an
earlier run (``--clover-compare``), and the data each test's summary row carries.

A missed objective or a regression is a :class:`~pytest_clover.errors.CloverFailure`: the test FAILS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import NoReferenceRun, Regression
from .settings import SETTINGS_KEY

if TYPE_CHECKING:
    from .fixtures import Load
    from .session import CloverSession

__all__ = ["REGRESSIONS_KEY", "SLO_CHECKS_KEY", "check_regressions", "check_slo_markers", "report_data"]

SLO_CHECKS_KEY = pytest.StashKey[list[Any]]()


def check_slo_markers(item: pytest.Item, funcargs: Mapping[str, Any], markers: list[pytest.Mark]) -> None:
    """Judge the test's last load result against every ``@pytest.mark.slo`` (module, class, function)."""
    __tracebackhide__ = True
    from ..errors import SLOViolation
    from ..slo import evaluate, marker_objectives, violation

    loader = funcargs.get("load")
    if loader is None:
        raise SLOViolation(
            "@pytest.mark.slo checks the test's load result, but the test does not use the load fixture: "
            "request `load` and run the phases with load.start(...)",
            [],
        )
    loader.stop_all()  # a run the test left going is judged as it stands
    result = loader.last_result
    if result is None:
        raise SLOViolation(
            "@pytest.mark.slo checks the test's load result, but no load run was stopped: "
            "call run = load.start(...), run.phase(...), result = run.stop()",
            [],
        )
    checks = []
    for marker in reversed(markers):  # outermost (module, class) first
        phase, objectives = marker_objectives(marker.kwargs, marker.args)
        checks += evaluate(result, phase, **objectives)
    item.stash[SLO_CHECKS_KEY] = checks
    error = violation(checks, "@pytest.mark.slo violated")
    if error is not None and not item.config.stash[SETTINGS_KEY].dry_run:
        raise error


def report_data(item: pytest.Item) -> dict[str, Any]:
    """What the summary shows about one test (JSON-able, so it travels with xdist reports)."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    data: dict[str, Any] = {}
    loader = funcargs.get("load")
    if loader is not None:
        data.update(loader.summary())
    injector = funcargs.get("faults")
    if injector is not None:
        data["faults"] = injector.summary()
    checks: list[Any] = []
    judge = funcargs.get("slo")
    if judge is not None:
        checks.extend(judge.checks)
    if SLO_CHECKS_KEY in item.stash:
        marked: list[Any] = item.stash[SLO_CHECKS_KEY]
        checks.extend(marked)
    if checks:
        data["slo"] = [c.as_dict() for c in checks]
    if REGRESSIONS_KEY in item.stash:
        data["regressions"] = item.stash[REGRESSIONS_KEY]
    experiment = getattr(item, "clover_experiment", None)
    if experiment:
        data["phases"] = experiment.get("phases") or {}
        data["slo"] = list(experiment.get("slo") or [])
        data["experiment"] = experiment.get("experiment") or {}
    marker = item.get_closest_marker("resilience")
    if marker is not None:
        from ..slo import marker_weight

        data["weight"] = marker_weight(marker)
    return data


REGRESSIONS_KEY = pytest.StashKey[list[dict[str, Any]]]()


def check_regressions(item: pytest.Item, loader: Load, state: CloverSession) -> None:
    """Compare the test's last load result with its reference; raise :class:`Regression` if it got worse.

    The reference (``--clover-compare``, :func:`pytest_clover.report.history.references`) is the test's record in
    one earlier run (``last``, a run id) or the median of its last N complete runs (``last:N``); it is read once
    per process. A test no reference run ran is not compared.
    """
    __tracebackhide__ = True
    from ..report import history

    settings = state.settings
    if state.reference is None:
        records, _ = history.read(settings.report_dir)
        try:
            state.reference = history.references(records, settings.compare or history.LAST, settings.run_id)
        except NoReferenceRun:
            state.reference = ("", {})
    _, references = state.reference
    reference = references.get(item.nodeid)
    if reference is None:
        return  # a new test, or one no reference run ran: nothing to compare with
    loader.stop_all()
    summary = loader.summary()
    current = {
        "p99_ms": {name: p.get("p99_ms") for name, p in summary["phases"].items()},
        "error_rate": {name: p.get("error_rate") for name, p in summary["phases"].items()},
        "recovery_s": dict(summary["recovery"]),
    }
    thresholds = history.Thresholds(
        p99_percent=settings.regression_p99,
        error_rate_points=settings.regression_error_rate,
        recovery_percent=settings.regression_recovery,
    )
    checks = history.compare(current, reference, thresholds)
    item.stash[REGRESSIONS_KEY] = checks
    if any(not c["ok"] for c in checks):
        raise Regression(history.regression_message(checks, reference))
