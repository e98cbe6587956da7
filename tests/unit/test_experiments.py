"""Experiment files: what is collected, what is a collection error, and how a journal becomes a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_clover.errors import ExperimentError, ExperimentFailed
from pytest_clover.plugin.experiments import (
    is_candidate,
    judge,
    looks_like_experiment,
    validate,
)

SLO_TOLERANCE = {"type": "regex", "target": "verdict", "pattern": "^met$"}


def _probe(met: bool, observed: float = 12.0) -> dict[str, Any]:
    return {
        "activity": {"type": "probe", "name": "slo", "tolerance": SLO_TOLERANCE},
        "status": "succeeded",
        "tolerance_met": met,
        "output": {
            "met": met,
            "verdict": "met" if met else "violated",
            "observed": {"p99_ms": observed, "error_rate": 0.0},
            "thresholds": {"p99_ms": 100.0},
            "violations": [] if met else [f"p99_ms: observed {observed:.1f} ms, threshold ≤ 100.0 ms"],
        },
    }


def _action(name: str, status: str = "succeeded", exception: Any = None) -> dict[str, Any]:
    run: dict[str, Any] = {"activity": {"type": "action", "name": name}, "status": status}
    if exception is not None:
        run["exception"] = exception
    return run


def _journal(**overrides: Any) -> dict[str, Any]:
    journal: dict[str, Any] = {
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": {"steady_state_met": True, "probes": [_probe(True)]},
            "after": {"steady_state_met": True, "probes": [_probe(True)]},
        },
        "run": [_action("delay-http-lb")],
        "rollbacks": [_action("clear-faults")],
    }
    journal.update(overrides)
    return journal


def test_a_met_hypothesis_passes_and_becomes_slo_rows() -> None:
    verdict = judge(_journal())
    assert verdict.failure is None
    rows = verdict.data["slo"]
    assert [(r["phase"], r["metric"], r["threshold"], r["observed"], r["ok"]) for r in rows] == [
        ("steady-state-before", "p99_ms", 100.0, 12.0, True),
        ("steady-state-after", "p99_ms", 100.0, 12.0, True),
    ]
    assert "rollbacks:\n  ✓ action 'clear-faults' succeeded" in verdict.text


def test_a_deviated_hypothesis_fails_naming_probe_tolerance_and_observed_value() -> None:
    after = {"steady_state_met": False, "probes": [_probe(False, observed=318.7)]}
    verdict = judge(
        _journal(deviated=True, steady_states={"before": _journal()["steady_states"]["before"], "after": after})
    )
    assert isinstance(verdict.failure, ExperimentFailed)
    message = str(verdict.failure)
    assert message.startswith("the steady state deviated after the method:")
    assert 'probe \'slo\': tolerance {"type": "regex", "target": "verdict", "pattern": "^met$"}' in message
    assert "observed p99_ms: observed 318.7 ms, threshold ≤ 100.0 ms" in message
    assert "rollbacks: ✓ action 'clear-faults' succeeded" in message
    assert [r["ok"] for r in verdict.data["slo"]] == [True, False]


def test_a_steady_state_not_met_before_the_method_fails_and_says_nothing_was_injected() -> None:
    states = {"before": {"steady_state_met": False, "probes": [_probe(False, 250.0)]}}
    verdict = judge(_journal(status="failed", steady_states=states, run=[]))
    assert isinstance(verdict.failure, ExperimentFailed)
    assert "not met BEFORE the method, so nothing was injected" in str(verdict.failure)


def test_a_failed_action_is_an_error_with_the_last_line_of_its_exception() -> None:
    traceback = [
        "Traceback (most recent call last):\n",
        "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.ActivityFailed: no service 'x'; did you mean http-lb?\n",
    ]
    verdict = judge(_journal(run=[_action("delay-x", "failed", traceback)]))
    assert isinstance(verdict.failure, ExperimentError)
    assert (
        "the method failed, so the experiment proves nothing:\n  'delay-x': no service 'x'; did you mean http-lb?"
        in str(verdict.failure)
    )


def test_a_failed_rollback_is_an_error_and_the_cleanup_is_reported() -> None:
    verdict = judge(
        _journal(rollbacks=[_action("clear-faults", "failed", "boom")]),
        cleanup=["reverted faults the rollbacks left in force: VirtualService/http-lb"],
    )
    assert isinstance(verdict.failure, ExperimentError)
    message = str(verdict.failure)
    assert "a rollback failed" in message and "'clear-faults': boom" in message
    assert "pytest-clover reverted faults the rollbacks left in force: VirtualService/http-lb" in message


def test_an_interrupted_run_is_an_error() -> None:
    verdict = judge(_journal(status="interrupted"))
    assert isinstance(verdict.failure, ExperimentError) and "ended interrupted" in str(verdict.failure)


def test_a_dry_run_judges_no_tolerance() -> None:
    states: dict[str, Any] = {
        "before": {"steady_state_met": None, "probes": []},
        "after": {"steady_state_met": None, "probes": []},
    }
    assert judge(_journal(steady_states=states, deviated=True), dry=True).failure is None


@pytest.mark.parametrize(
    ("relative", "collected"),
    [
        ("faults/x.yaml", True),
        ("faults/sub/x.yml", True),
        ("suites/faults/x.json", True),
        ("x.yaml", False),
        ("faults/x.py", False),
        ("fixtures/sdc/istio.yaml", False),
    ],
)
def test_only_yaml_and_json_under_a_faults_folder_are_candidates(relative: str, collected: bool) -> None:
    assert is_candidate(Path("/repo") / relative, Path("/repo")) is collected


def test_manifests_and_notes_are_not_experiments() -> None:
    assert looks_like_experiment({"title": "t", "method": []})
    assert looks_like_experiment({"title": "t", "steady-state-hypothesis": {}})
    assert not looks_like_experiment({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "method": 1})
    assert not looks_like_experiment({"title": "notes"})
    assert not looks_like_experiment(["a", "list"])


def test_validation_names_the_file_and_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "faults" / "x.yaml"
    doc = {
        "method": [{"type": "action", "name": "a"}],
        "steady-state-hypothesis": {"title": "h", "probes": [{"type": "probe", "name": "p", "provider": {}}]},
    }
    with pytest.raises(pytest.Collector.CollectError) as info:
        validate(path, doc)
    message = str(info.value)
    assert message.startswith(f"{path}: not a valid Chaos Toolkit experiment:")
    for problem in (
        "`title` is missing",
        "`description` is missing",
        "`steady-state-hypothesis.probes[0]` (p) has no `tolerance`",
        "`method[0]` (a) has no `provider`",
    ):
        assert problem in message


def test_chaos_toolkits_own_validation_runs_too(tmp_path: Path) -> None:
    doc = {
        "title": "t",
        "description": "d",
        "method": [
            {
                "type": "action",
                "name": "a",
                "provider": {"type": "python", "module": "pytest_clover.chaos.actions", "func": "no_such_action"},
            }
        ],
    }
    with pytest.raises(pytest.Collector.CollectError, match="no_such_action"):
        validate(tmp_path / "x.yaml", doc)
