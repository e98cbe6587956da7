"""The Xtesting driver's pure parts: the child's command line, the pass ratio and the failure line (issue 13).

They need no Xtesting, so they run in every environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_clover.errors import ConfigError
from pytest_clover.xtesting import summary


def _test(nodeid: str, outcome: str, slo: list[dict[str, Any]] | None = None, message: str = "") -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": outcome, "message": message, "slo": slo or [], "faults": [], "recovery_s": {}}


def _summary(*tests: dict[str, Any]) -> dict[str, Any]:
    totals = {k: 0 for k in ("passed", "failed", "error", "inconclusive", "skipped", "interrupted")}
    for t in tests:
        totals[t["outcome"]] += 1
    return {
        "run": {"replay": "pytest x --clover-seed=1"},
        "score": {"value": 50.0},
        "totals": {**totals, "tests": len(tests)},
        "tests": list(tests),
    }


def test_command_maps_run_args_to_pytest_options(tmp_path: Path) -> None:
    args = {
        "paths": "faults",
        "backend": "k8s",
        "context": "kind-a",
        "namespace": "cnf",
        "time_scale": 0.2,
        "seed": 7,
        "markers": "not soak",
        "keyword": "delay",
        "extra": ["-x"],
    }
    command = summary.pytest_command("py", args, tmp_path)
    assert command[:4] == ["py", "-m", "pytest", "faults"]
    for expected in (
        "--clover-backend=k8s",
        "--clover-context=kind-a",
        "--clover-namespace=cnf",
        "--clover-time-scale=0.2",
        "--clover-seed=7",
        f"--clover-report-dir={tmp_path}",
    ):
        assert expected in command
    assert command[-5:] == ["-m", "not soak", "-k", "delay", "-x"]


def test_command_refuses_unknown_args(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timescale"):
        summary.pytest_command("py", {"timescale": 1}, tmp_path)


def test_pass_ratio_counts_errors_as_failed_and_ignores_skips() -> None:
    s = _summary(_test("a", "passed"), _test("b", "error"), _test("c", "skipped"), _test("d", "passed"))
    assert summary.pass_ratio(s) == pytest.approx(66.67)
    assert summary.pass_ratio(_summary(_test("c", "skipped"))) == 0.0


def test_reason_names_the_first_violated_slo_else_the_message() -> None:
    rows = [
        {"phase": "fault", "metric": "max_error_rate", "threshold": 0.01, "observed": 0.0, "ok": True},
        {"phase": "fault", "metric": "p99_ms", "threshold": 600.0, "observed": 812.5, "ok": False},
    ]
    s = _summary(
        _test("t::a", "failed", rows),
        _test("t::b", "error", message="BackendError: no mesh\nmore"),
        _test("t::c", "passed"),
    )
    reason = summary.failure_reason(s)
    assert reason.startswith("2 of 3 tests did not pass")
    assert "t::a FAILED (SLO p99_ms in phase fault: observed 812.5, threshold 600.0)" in reason
    assert "t::b ERROR (BackendError: no mesh)" in reason and "t::c" not in reason
    assert summary.failure_reason(_summary(_test("t::c", "passed"))) == ""


def test_run_args_name_environment_variables() -> None:
    env = {"CLOVER_NAMESPACE": "cnf", "KUBECONFIG": "/k/config", "EMPTY": ""}
    args = {
        "namespace": "${CLOVER_NAMESPACE}",
        "kubeconfig": "${KUBECONFIG:-}",
        "context": "${CLOVER_CONTEXT:-}",
        "time_scale": "${CLOVER_TIME_SCALE:-1}",
        "paths": ["suites/${CLOVER_NAMESPACE}", "faults"],
        "seed": 7,
        "markers": "${EMPTY}",
    }
    expanded = summary.expand_environment(args, env)
    # an empty expansion drops the key (the option keeps its own default), a set variable wins over the default
    assert expanded == {
        "namespace": "cnf",
        "kubeconfig": "/k/config",
        "time_scale": "1",
        "paths": ["suites/cnf", "faults"],
        "seed": 7,
    }


def test_an_unset_variable_without_default_names_the_case_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        summary.expand_environment({"namespace": "${CLOVER_NAMESPACE}"}, {}, case="clover_k8s_baseline: run.args")
    message = str(info.value)
    assert "testcases.yaml" in message and "clover_k8s_baseline" in message and "namespace" in message
    assert "export CLOVER_NAMESPACE=" in message


def test_the_shipped_cases_expand_with_and_without_a_cluster() -> None:
    import yaml

    shipped = Path(summary.__file__).parent / "data" / "testcases.yaml"
    tiers = {t["name"]: t["testcases"] for t in yaml.safe_load(shipped.read_text(encoding="utf-8"))["tiers"]}
    assert len(tiers["resilience"]) == len(tiers["resilience_k8s"]) == 9
    for case in tiers["resilience"]:
        command = summary.pytest_command("py", summary.expand_environment(case["run"]["args"], {}), Path("/r"))
        assert "--clover-backend=local" in command and "--clover-time-scale=1" in command
    for case in tiers["resilience_k8s"]:
        assert case["dependencies"] == [{"CLOVER_NAMESPACE": "."}]
        args = summary.expand_environment(case["run"]["args"], {"CLOVER_NAMESPACE": "cnf", "CLOVER_TIME_SCALE": "0.5"})
        command = summary.pytest_command("py", args, Path("/r"))
        assert {"--clover-backend=k8s", "--clover-namespace=cnf", "--clover-time-scale=0.5"} <= set(command)
        assert not any(c.startswith(("--clover-context", "--clover-kubeconfig")) for c in command)
        with pytest.raises(ConfigError, match="CLOVER_NAMESPACE"):
            summary.expand_environment(case["run"]["args"], {})


def test_the_reason_names_the_exception_not_the_test_arguments() -> None:
    longrepr = (
        "mesh = <Mesh the local mesh at /tmp/x>, load = <Load>\n\n"
        "    def test_breaker(mesh, load):\n"
        ">       fault.verify()\n"
        "E       pytest_clover.errors.FaultInconclusive: circuit breaker: its effect was not seen\n"
        "E       more detail\n\n"
        "suites/test_07.py:30: FaultInconclusive"
    )
    reason = summary.failure_reason(
        _summary(_test("suites/test_07.py::test_breaker", "inconclusive", message=longrepr))
    )
    assert reason.endswith("(pytest_clover.errors.FaultInconclusive: circuit breaker: its effect was not seen)"), reason
    plain = summary.failure_reason(_summary(_test("t.py::t", "error", message="\nOSError: no\nmore\n")))
    assert plain.endswith("(OSError: no)")
