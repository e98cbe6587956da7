"""Chaos Toolkit experiment files as pytest tests, on the real embedded mesh (inner pytest runs in subprocesses).

`pytest faults` must pass with the shipped experiments; a failing experiment must fail with the probe, its
tolerance and the observed value, and its rollbacks must still have run; a method that fails is an ERROR;
faults the rollbacks leave behind are reverted by pytest-clover and reported; a dry run touches nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, SDC

pytestmark = pytest.mark.integration

QUIET = ("-p", "no:cacheprovider", "-p", "no:locust", "-p", "no:html", "-p", "no:hypothesispytest")


def _project(pytester: pytest.Pytester, runtime_dir: Path) -> Path:
    pytester.makeini(f"[pytest]\nclover_topology = {SDC}\nclover_report_dir = reports\n")
    (pytester.path / "faults").mkdir()
    return pytester.path / "faults"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*QUIET, "-v", *args, timeout=600)


def _summary(pytester: pytest.Pytester) -> dict[str, Any]:
    latest = pytester.path / "reports" / "latest"
    summary: dict[str, Any] = json.loads((latest / "summary.json").read_text())
    return summary


def _provider(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": f"pytest_clover.chaos.{module}", "func": func}
    if arguments:
        provider["arguments"] = arguments
    return provider


def _experiment(title: str, method: list[dict[str, Any]], rollbacks: list[dict[str, Any]], **slo: Any) -> str:
    doc = {
        "title": title,
        "description": f"{title} (a test experiment)",
        "steady-state-hypothesis": {
            "title": "SLO met",
            "probes": [
                {
                    "type": "probe",
                    "name": "slo",
                    "tolerance": {"type": "regex", "target": "verdict", "pattern": "^met$"},
                    "provider": _provider("probes", "slo_met", last_seconds=2, **slo),
                }
            ],
        },
        "method": method,
        "rollbacks": rollbacks,
    }
    return yaml.safe_dump(doc, sort_keys=False)


DELAY = {
    "type": "action",
    "name": "delay-http-lb",
    "provider": _provider("actions", "inject_delay", service="http-lb", delay="300ms"),
    "pauses": {"after": 3},
}
CLEAR = {"type": "action", "name": "clear-faults", "provider": _provider("actions", "clear_faults")}


def test_pytest_faults_passes_with_the_shipped_experiments(pytester: pytest.Pytester, runtime_dir: Path) -> None:
    faults = _project(pytester, runtime_dir)
    for path in sorted((ROOT / "faults").glob("*.yaml")):
        shutil.copy(path, faults / path.name)
    shutil.copy(ROOT / "faults" / "README.md", faults / "README.md")  # not an experiment: not collected
    result = _run(pytester, "faults")
    result.assert_outcomes(passed=4)
    summary = _summary(pytester)
    assert len(summary["tests"]) == 4 and summary["score"]["value"] == 100.0
    for test in summary["tests"]:
        assert test["files"].get("journal"), test["nodeid"]  # linked from index.html
        journal = json.loads((pytester.path / "reports" / "latest" / test["files"]["journal"]).read_text())
        assert journal["status"] == "completed" and not journal["deviated"]
        assert journal["rollbacks"], test["nodeid"]
        assert set(test["phases"]) >= {"steady-state-before", "method"}  # the stages are the load's phases
        assert test["phases"]["method"]["requests"] > 0
        assert any(row["phase"] == "steady-state-before" and row["ok"] for row in test["slo"])
    delay = next(t for t in summary["tests"] if "300 ms delay" in t["nodeid"])
    assert [f["description"] for f in delay["faults"]] == ["delay 300ms 100% on http-lb"]
    assert delay["phases"]["method"]["p50_ms"] > 290
    page = (pytester.path / "reports" / "latest" / "index.html").read_text()
    assert "Chaos Toolkit journal" in page


def test_a_failing_experiment_names_the_probe_and_its_rollbacks_still_run(
    pytester: pytest.Pytester, runtime_dir: Path
) -> None:
    faults = _project(pytester, runtime_dir)
    (faults / "too-strict.yaml").write_text(_experiment("too strict", [DELAY], [CLEAR], p99_ms=100))
    (faults / "bad-method.yaml").write_text(
        _experiment(
            "bad method",
            [
                {
                    "type": "action",
                    "name": "delay-nowhere",
                    "provider": _provider("actions", "inject_delay", service="http-lbb", delay="1s"),
                }
            ],
            [CLEAR],
            p99_ms=1000,
        )
    )
    (faults / "no-rollbacks.yaml").write_text(_experiment("no rollbacks", [DELAY], [], p99_ms=1000))
    result = _run(pytester, "faults")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    out = result.stdout.str()
    # The deviated hypothesis: FAILED, with the probe, its tolerance and what it observed; rollbacks ran.
    result.stdout.fnmatch_lines(
        [
            "*the steady state deviated after the method:*",
            '*probe \'slo\': tolerance {"type": "regex", "target": "verdict", "pattern": "^met$"}, observed p99_ms: observed 3*ms, threshold ≤ 100.0 ms*',
            "*rollbacks: ✓ action 'clear-faults' succeeded*",
        ]
    )
    # The failed injection: an ERROR (the experiment proves nothing), with our message.
    assert "the method failed, so the experiment proves nothing" in out
    assert "did you mean http-lb?" in out
    # No rollbacks: pytest-clover reverted the fault itself, and says so (a warning: the test itself passed).
    assert "reverted faults the rollbacks left in force: VirtualService/http-lb" in out
    assert "CloverWarning" in out
    summary = _summary(pytester)
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in summary["tests"]}
    assert outcomes == {"too strict": "failed", "bad method": "error", "no rollbacks": "passed"}


def test_a_malformed_experiment_is_a_collection_error_naming_the_file(
    pytester: pytest.Pytester, runtime_dir: Path
) -> None:
    faults = _project(pytester, runtime_dir)
    (faults / "broken.yaml").write_text("title: broken\nmethod:\n  - type: action\n    name: x\n")
    (faults / "untitled.yaml").write_text("description: d\nmethod: []\n")
    (faults / "bad.yaml").write_text("title: [unclosed\n")
    (faults / "virtualservice.yaml").write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\n")
    result = _run(pytester, "faults", "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines_random(
        [
            f"*{faults / 'broken.yaml'}: not a valid Chaos Toolkit experiment:*",
            "*(x) has no `provider`*",
            f"*{faults / 'untitled.yaml'}: not a valid Chaos Toolkit experiment:*",
            "*`title` is missing: give the experiment a title (it names the test)*",
            f"*{faults / 'bad.yaml'}: not valid YAML:*",
            "*3 errors*",
        ]
    )
    assert "virtualservice.yaml" not in result.stdout.str()


def test_a_dry_run_touches_nothing(pytester: pytest.Pytester, runtime_dir: Path) -> None:
    faults = _project(pytester, runtime_dir)
    (faults / "too-strict.yaml").write_text(_experiment("too strict", [DELAY], [CLEAR], p99_ms=100))
    pytester.makepyfile(
        test_fixture="""
        def test_fault_fixture(load, faults, mesh):
            run = load.start(rate=20)
            with faults.delay("http-lb", "300ms"):
                run.phase("fault", seconds=2)
            result = run.stop()
            assert result.phases["fault"].p50_ms < 100  # nothing was injected
            from pytest_clover.istio.documents import faulted_virtual_services

            assert faulted_virtual_services(mesh.istio_objects()) == []
        """
    )
    result = _run(pytester, "--clover-dry-run", "faults", "test_fixture.py")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*DRY RUN*"])
    folder = next((pytester.path / "reports" / "latest").glob("faults_too-strict*"))
    journal = json.loads((folder / "journal.json").read_text())
    assert journal["run"] and all(r["status"] == "succeeded" for r in journal["run"])
    assert not (folder / "result.json").exists()  # no load ran for the experiment
