"""The run's report: files, schema, partial runs, history and --clover-compare, JUnit, pytest-html, `clover report`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .conftest import QUIET, Project

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "pytest_clover" / "report" / "summary.schema.json").read_text())

TWO_TESTS = """
import pytest

@pytest.mark.slo(phase="baseline", p99_ms=100)
@pytest.mark.slo(phase="fault", max_error_rate=0.05)
def test_delay(load, faults):
    run = load.start(rate=40)
    run.phase("baseline", seconds=2)
    with faults.delay("http-lb", "300ms"):
        run.phase("fault", seconds=2)
    run.phase("recovery", seconds=2)
    result = run.stop()
    result.recovery_seconds("fault", p99_ms=100)

@pytest.mark.resilience(weight=3)
@pytest.mark.slo(phase="fault", p99_ms=100)
def test_missed(load):
    run = load.start(rate=40)
    run.phase("fault", seconds=2)
    run.stop()

def test_plain():
    pass
"""

PROFILE = {"baseline": {"p99_ms": 20.0}, "fault": {"p99_ms": 400.0}, "recovery": {"p99_ms": 22.0}}


def _setup(project: Project, source: str = TWO_TESTS, profile: dict[str, Any] | None = None) -> None:
    project.pytester.makepyfile(test_sdc=source)
    (project.path / "profile.json").write_text(json.dumps(profile or PROFILE))


def _summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    jsonschema.validate(summary, SCHEMA)
    return summary


def test_a_run_leaves_a_complete_report(project: Project) -> None:
    _setup(project)
    result = project.run("--clover-seed=7")
    result.assert_outcomes(passed=2, failed=1)
    [run_dir] = project.run_dirs()
    assert (project.report_dir / "latest").resolve() == run_dir.resolve()
    for name in ("index.html", "summary.json", "windows.csv", "events.ndjson", "run.json"):
        assert (run_dir / name).is_file(), name
    summary = _summary(run_dir)
    # Worst first; the plain test used nothing of pytest-clover and is not in the report.
    assert [t["nodeid"] for t in summary["tests"]] == ["test_sdc.py::test_missed", "test_sdc.py::test_delay"]
    missed, delay = summary["tests"]
    assert missed["outcome"] == "failed" and "@pytest.mark.slo violated" in missed["message"]
    assert missed["weight"] == 3.0 and missed["score_fraction"] == 0.0
    assert delay["outcome"] == "passed" and delay["score_fraction"] == 1.0
    assert summary["score"]["value"] == pytest.approx(100 * 1 / 4)
    assert summary["run"]["seed"] == 7 and summary["run"]["partial"] is False
    assert summary["run"]["replay"].endswith("--clover-seed=7 --clover-time-scale=0.5")
    (fault,) = delay["faults"]
    assert fault["kind"] == "delay" and fault["target"] == "http-lb" and fault["verified"] is True
    assert fault["start"] is not None and fault["end"] is not None and fault["end"] >= fault["start"]
    assert sorted(c["metric"] for c in delay["slo"]) == ["max_error_rate", "p99_ms"]
    assert delay["recovery_s"] == {"fault": None}
    assert set(delay["files"]) >= {"timeseries", "result", "timeline"}
    assert (run_dir / delay["files"]["timeseries"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    windows = (run_dir / "windows.csv").read_text().splitlines()
    assert windows[0].startswith("test,start,end,phase,requests,errors")
    assert sum(1 for line in windows if line.startswith("test_sdc.py::test_delay,")) == 3  # 3 phases of 2 s × 0.5

    events = [json.loads(line) for line in (run_dir / "events.ndjson").read_text().splitlines()]
    kinds = [(e["test"], e["kind"]) for e in events if e["test"] == "test_sdc.py::test_delay"]
    assert ("test_sdc.py::test_delay", "fault-start") in kinds and ("test_sdc.py::test_delay", "fault-end") in kinds
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)

    page = (run_dir / "index.html").read_text()
    assert page.index("test_sdc.py::test_missed") < page.index("test_sdc.py::test_delay")  # failed first
    assert "resilience score" in page and "25.0" in page and "--clover-seed=7" in page
    # Self-contained: no address but the mesh's own (the fake ingress listens on 127.0.0.1).
    assert "data:image/png;base64," in page and not re.findall(r"https?://(?!127\.)", page)

    result.stdout.fnmatch_lines(["resilience score: 25.0 / 100", f"report: {run_dir / 'index.html'}"])
    history = [json.loads(line) for line in (project.report_dir / "history.jsonl").read_text().splitlines()]
    assert sorted(r["nodeid"] for r in history) == ["test_sdc.py::test_delay", "test_sdc.py::test_missed"]


def test_no_report_when_no_test_used_pytest_clover(project: Project) -> None:
    project.pytester.makepyfile("def test_plain(): pass")
    project.run().assert_outcomes(passed=1)
    assert not project.report_dir.exists()


def test_an_interrupted_run_writes_a_partial_report_of_what_completed(project: Project) -> None:
    _setup(
        project,
        """
        def test_first(load):
            run = load.start(rate=10)
            run.phase("baseline", seconds=1)
            run.stop()

        def test_second(load):
            load.start(rate=10).phase("baseline", seconds=1)
            raise KeyboardInterrupt

        def test_third(load):
            pass
        """,
    )
    result = project.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    [run_dir] = project.run_dirs()
    summary = _summary(run_dir)
    assert summary["run"]["partial"] is True
    assert "interrupted" in summary["run"]["partial_reason"]
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in summary["tests"]}
    assert outcomes == {"test_first": "passed", "test_second": "interrupted"}
    # The interrupted test's fixtures are torn down before the report is built: its load result is in it.
    second = next(t for t in summary["tests"] if t["nodeid"].endswith("test_second"))
    assert list(second["phases"]) == ["baseline"] and second["phases"]["baseline"]["requests"] > 0
    assert "timeseries" in second["files"]
    # Built once (xdist is installed here, but this run is not distributed): one history record for the
    # completed test, none for the interrupted one.
    history = (project.report_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["nodeid"].split("::")[1] for line in history] == ["test_first"]
    assert "Partial report." in (run_dir / "index.html").read_text()
    result.stdout.fnmatch_lines(["resilience score: * (PARTIAL: *"])


def test_stopping_at_the_first_failure_marks_the_report_partial(project: Project) -> None:
    _setup(project, TWO_TESTS.replace("def test_plain", "def test_zz_never_runs"))
    project.run("-x", "-p", "no:randomly").assert_outcomes(passed=1, failed=1)
    summary = _summary(project.run_dirs()[0])
    assert summary["run"]["partial"] is True
    assert "2 of 3 collected tests completed" in summary["run"]["partial_reason"]


def test_compare_fails_a_test_whose_p99_regressed_with_both_numbers(project: Project) -> None:
    _setup(project)
    project.run().assert_outcomes(passed=2, failed=1)
    first = project.run_dirs()[0].name
    worse = {**PROFILE, "baseline": {"p99_ms": 60.0}}
    (project.path / "profile.json").write_text(json.dumps(worse))
    result = project.run("--clover-compare=last")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            f"*regressed against run {first} (1 metric; --clover-compare):*",
            f"*metric  phase     run {first}  this run  allowed up to*",
            "*p99     baseline  20.0 ms*60.0 ms   25.0 ms*",
        ]
    )
    second = project.run_dirs()[1]
    delay = next(t for t in _summary(second)["tests"] if t["nodeid"].endswith("test_delay"))
    bad = [c for c in delay["regressions"] if not c["ok"]]
    assert [(c["metric"], c["phase"], c["reference"], c["observed"]) for c in bad] == [
        ("p99_ms", "baseline", 20.0, 60.0)
    ]
    assert delay["score_fraction"] < 1.0


def test_compare_with_an_unknown_run_is_a_usage_error(project: Project) -> None:
    _setup(project)
    result = project.run("--clover-compare=20990101-000000-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clover-compare=20990101-000000-1: no such run in the history*"])


def test_compare_with_a_binary_history_is_a_usage_error_naming_the_file(project: Project) -> None:
    # Was: an INTERNALERROR (UnicodeDecodeError) at configure.
    _setup(project)
    project.report_dir.mkdir()
    (project.report_dir / "history.jsonl").write_bytes(b"\x00\xff\xfe binary\n\x9c\n")
    result = project.run("--clover-compare=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    where = project.report_dir / "history.jsonl"
    result.stderr.fnmatch_lines(
        [
            f"*--clover-compare=last: the history holds no earlier run*(history: {where}; 2 line(s) of it could not"
            f" be read, first: {where}:1: not UTF-8 text, skipped)*"
        ]
    )


def test_compare_with_a_history_that_cannot_be_read_is_a_usage_error_naming_it(project: Project) -> None:
    _setup(project)
    (project.report_dir / "history.jsonl").mkdir(parents=True)
    result = project.run("--clover-compare=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    where = project.report_dir / "history.jsonl"
    result.stderr.fnmatch_lines([f"*--clover-compare=last: {where}: cannot read the run history: Is a directory*"])


@pytest.mark.parametrize(
    "flag", ["--clover-regression-p99=-1", "--clover-regression-error-rate=lots", "--clover-experiment-rate=-2"]
)
def test_bad_regression_thresholds_are_usage_errors(project: Project, flag: str) -> None:
    result = project.run(flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{flag.split('=')[0]}=*"])


def test_a_bad_resilience_weight_fails_the_test_with_a_message(project: Project) -> None:
    _setup(project, "import pytest\n@pytest.mark.resilience(weight='high')\ndef test_x(load): pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.resilience(weight='high'): the weight must be a number*"])


def test_slo_observations_and_the_score_reach_junit_xml_as_xunit2_suite_properties(project: Project) -> None:
    _setup(project)
    project.run("--junitxml=junit.xml").assert_outcomes(passed=2, failed=1)
    tree = ET.parse(project.path / "junit.xml")
    suite = tree.getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["clover:resilience_score"] == "25.0"
    assert props["clover:test_sdc.py::test_delay:slo:baseline:p99_ms"] == "observed=20 threshold=100 ok=true"
    assert props["clover:test_sdc.py::test_missed:slo:fault:p99_ms"] == "observed=400 threshold=100 ok=false"
    assert props["clover:test_sdc.py::test_delay:recovery_s:fault"] == "never"
    # xunit2 allows no <properties> inside a <testcase>.
    assert suite.findall("testcase/properties") == []


def test_pytest_html_gets_the_plots_inline(project: Project) -> None:
    pytest.importorskip("pytest_html")
    _setup(project)
    result = project.pytester.runpytest_subprocess(
        *[a for a in QUIET if a != "no:html"][:-1], "--html=report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=2, failed=1)
    page = (project.path / "report.html").read_text()
    assert page.count("image/png;base64") >= 2  # at least the time series of the two clover tests


def _clover(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest_clover.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_clover_report_rebuilds_the_report_from_the_saved_data(project: Project) -> None:
    _setup(project)
    project.run().assert_outcomes(passed=2, failed=1)
    [run_dir] = project.run_dirs()
    before = _summary(run_dir)
    for name in ("index.html", "summary.json", "windows.csv"):
        (run_dir / name).unlink()
    for png in run_dir.glob("*/*.png"):
        png.unlink()
    done = _clover("report", str(run_dir), cwd=project.path)
    assert done.returncode == 0, done.stderr
    assert "resilience score: 25.0 / 100" in done.stdout and "index.html" in done.stdout
    after = _summary(run_dir)
    assert after["tests"] == before["tests"] and after["score"] == before["score"]
    assert list(run_dir.glob("*/timeseries.png"))


def test_clover_report_trend_needs_two_runs_then_plots_them(project: Project) -> None:
    _setup(project)
    project.run().assert_outcomes(passed=2, failed=1)
    once = _clover("report", "trend", cwd=project.path)
    assert once.returncode == 1 and "holds 1 run(s); a trend needs at least two" in once.stderr
    project.run().assert_outcomes(passed=2, failed=1)
    twice = _clover("report", "trend", cwd=project.path)
    assert twice.returncode == 0, twice.stderr
    assert "trend of 2 tests over the last 2 of 2 runs" in twice.stdout
    assert (project.report_dir / "trend.png").read_bytes()[:4] == b"\x89PNG"
    latest = project.run_dirs()[-1]
    assert "Trend across runs" in (latest / "index.html").read_text()


def test_clover_report_on_a_folder_that_is_not_a_run_names_it(tmp_path: Path) -> None:
    done = _clover("report", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path}/run.json: missing" in done.stderr


def test_dry_run_records_faults_without_touching_the_mesh_and_reports_slo_misses(project: Project) -> None:
    _setup(
        project,
        """
        import pytest

        @pytest.mark.slo(phase="fault", p99_ms=100)
        def test_dry(load, faults, mesh, slo):
            run = load.start(rate=40)
            with faults.delay("http-lb", "300ms") as delay:
                delay.verify()
                run.phase("fault", seconds=2)
            with faults.kill("clover-server"):
                pass
            result = run.stop()
            slo.check(result, phase="fault", p99_ms=100)  # missed, but a dry run reports it only
            assert mesh.backend.history == ["deploy"]  # no apply, no kill
        """,
    )
    result = project.run("--clover-dry-run")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["clover: DRY RUN: *"])
    test = _summary(project.run_dirs()[0])["tests"][0]
    assert [f["description"] for f in test["faults"]] == ["delay 300ms 100% on http-lb", "kill 1 pod of clover-server"]
    assert all(f["verified"] is None for f in test["faults"])
    assert [c["ok"] for c in test["slo"]] == [False, False]  # both misses are in the report


SECRET = "s3cr3t-planted-7f41c9"


def test_environment_values_stay_out_of_every_report_file_while_the_command_line_is_kept(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What CI machines carry in their environment: tokens, and variables that pytest-metadata picks up.
    for name in ("CLOVER_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "JENKINS_URL", "BUILD_URL", "GIT_COMMIT", "CI"):
        monkeypatch.setenv(name, f"{SECRET}-{name}")
    project.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slo(phase="steady", p99_ms=1000)
        def test_it(load, faults):
            run = load.start(rate=10)
            faults.delay("http-lb", "100ms")
            run.phase("steady", 1)
            run.stop()
        """
    )
    junit = project.path / "junit.xml"
    result = project.run("--clover-seed=7", f"--junitxml={junit}", "-k", "test_it")
    result.assert_outcomes(passed=1)
    files = [p for p in (project.path / "reports").rglob("*") if p.is_file()] + [junit]
    assert len(files) > 5
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaked, f"environment values written to {leaked}"
    [run_json] = {p.resolve() for p in (project.path / "reports").glob("*/run.json")}  # the run, and `latest`
    info = json.loads(run_json.read_text())
    assert "-k" in info["args"] and f"--junitxml={junit}" in info["args"]
    assert "--clover-seed=7" in info["replay"]
