"""``run_tests`` (OPNFV Xtesting) runs pytest-clover cases on the embedded mesh (issue 13).

Runs only where Xtesting is installed (``tox -e xtesting``); elsewhere the module is skipped. Each test gives
``run_tests`` a HOME of its own, whose ``~/.xtesting/testcases.yaml`` (the first place Xtesting looks) is the
shipped file with a short time scale, plus a case whose SLO cannot be met.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.helpers import wait_for

pytestmark = pytest.mark.integration

pytest.importorskip("xtesting", reason="Xtesting is not installed here: run these with `tox -e xtesting`")

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "pytest_clover" / "xtesting" / "data" / "testcases.yaml"
RESULTS = Path("/var/lib/xtesting")  # Xtesting's fixed results folder (xtesting.utils.constants.RESULTS_DIR)
RUN_TIMEOUT_S = 600

IMPOSSIBLE_SLO_TEST = """
import pytest


@pytest.mark.slo(phase="steady", p99_ms=0.001)
def test_latency_below_a_microsecond(mesh, load):
    run = load.start(rate=10)
    run.phase("steady", seconds=5)
    run.stop()
"""


@pytest.fixture
def xtesting_home(tmp_path: Path) -> Iterator[Path]:
    """A HOME whose ~/.xtesting/testcases.yaml holds the shipped cases (time scale 0.2) and ``clover_impossible``;
    Xtesting's results folder is removed afterwards if this test created it."""
    existed = RESULTS.exists()
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    tier = config["tiers"][0]
    for case in tier["testcases"]:
        case["run"]["args"].update(dir=str(REPO), time_scale=0.2)
    folder = tmp_path / "impossible"
    folder.mkdir()
    (folder / "test_impossible.py").write_text(IMPOSSIBLE_SLO_TEST, encoding="utf-8")
    tier["testcases"].append(
        {
            "case_name": "clover_impossible",
            "project_name": "clover",
            "criteria": 100,
            "blocking": False,
            "description": "an SLO no mesh meets",
            "run": {
                "name": "pytest_clover",
                "args": {
                    "paths": [str(folder)],
                    "dir": str(REPO),
                    "time_scale": 0.2,
                    "topology": str(REPO / "fixtures" / "sdc"),
                },
            },
        }
    )
    home = tmp_path / "home"
    (home / ".xtesting").mkdir(parents=True)
    (home / ".xtesting" / "testcases.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    yield home
    if not existed:
        shutil.rmtree(RESULTS, ignore_errors=True)
    else:
        for case in tier["testcases"]:
            shutil.rmtree(RESULTS / "results" / case["case_name"], ignore_errors=True)


def run_tests(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``run_tests <args>`` of this venv, with HOME and ``env`` set."""
    command = [str(Path(sys.executable).parent / "run_tests"), *args]
    environment = {**os.environ, "HOME": str(home), **env}
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, cwd=home
    )


class Receiver(http.server.BaseHTTPRequestHandler):
    """A stand-in TestAPI: keeps the JSON bodies POSTed to it."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"href": "ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """The URL of a TestAPI stand-in on 127.0.0.1."""
    Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/results"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_baseline_passes_and_pushes_its_details(xtesting_home: Path, receiver: str) -> None:
    done = run_tests(xtesting_home, "-t", "clover_baseline", "-r", TEST_DB_URL=receiver)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "PASS" in output, output
    log = (RESULTS / "results" / "xtesting.log").read_text(encoding="utf-8")
    assert "clover_baseline" in log and "PASS" in log
    res_dir = RESULTS / "results" / "clover_baseline"
    assert list(res_dir.glob("*/summary.json")) and list(res_dir.glob("*/index.html")), sorted(res_dir.iterdir())
    assert len(Receiver.bodies) == 1, output
    body = Receiver.bodies[0]
    assert body["case_name"] == "clover_baseline" and body["project_name"] == "clover"
    assert body["criteria"] == "PASS"
    details = body["details"]
    [test] = details["tests"]
    assert test["name"] == "suites/test_01_baseline.py::test_baseline_slos_hold_under_nominal_load"
    assert test["verdict"] == "passed"
    assert {row["metric"] for row in test["slo"]} == {"p99_ms", "max_error_rate"} and all(r["ok"] for r in test["slo"])
    assert details["score"] == 100.0 and details["reason"] == ""
    assert "--clover-seed=" in details["replay"] and details["time_scale"] == 0.2
    assert Path(details["report_html"]).is_file()


def test_violated_slo_fails_the_case_and_names_it(xtesting_home: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump" / "requests.txt"
    done = run_tests(xtesting_home, "-t", "clover_impossible", "-r", TEST_DB_URL=f"file://{dump}")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "FAIL" in output, output
    assert "SLO p99_ms in phase steady" in output, output
    request = dump.read_text(encoding="utf-8")
    body = json.loads(request.split("\n\n", 1)[1].strip())
    assert body["criteria"] == "FAIL" and body["case_name"] == "clover_impossible"
    details = body["details"]
    [test] = details["tests"]
    assert test["verdict"] == "failed"
    violated = [row for row in test["slo"] if not row["ok"]]
    assert violated and violated[0]["metric"] == "p99_ms" and violated[0]["threshold"] == 0.001
    assert "test_latency_below_a_microsecond" in details["reason"] and "p99_ms" in details["reason"]


def test_no_tests_collected_is_a_run_error(xtesting_home: Path) -> None:
    config = yaml.safe_load((xtesting_home / ".xtesting" / "testcases.yaml").read_text(encoding="utf-8"))
    case = config["tiers"][0]["testcases"][0]
    case["run"]["args"]["keyword"] = "no_test_has_this_name"
    (xtesting_home / ".xtesting" / "testcases.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run_tests(xtesting_home, "-t", case["case_name"])
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "FAIL" in output, output


def test_interrupt_reverts_the_faults_and_fails_the_case(xtesting_home: Path) -> None:
    command = [str(Path(sys.executable).parent / "run_tests"), "-t", "clover_lb_delay"]
    environment = {**os.environ, "HOME": str(xtesting_home)}
    res_dir = RESULTS / "results" / "clover_lb_delay"
    with subprocess.Popen(
        command, env=environment, cwd=xtesting_home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            # The delay is in force once the run's fault ledger records it.
            wait_for(
                lambda: any("delay" in p.read_text(encoding="utf-8") for p in res_dir.glob(".clover/ledger-*.jsonl")),
                timeout=120,
                what="the lb delay fault to be injected",
            )
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode != 0, output
    assert "interrupted by SIGINT" in output and "FAIL" in output, output
    summary = json.loads((res_dir / "latest" / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["partial"] is True
    [test] = summary["tests"]
    assert test["outcome"] == "interrupted"
    assert test["faults"] and all(fault["end"] is not None for fault in test["faults"]), test["faults"]
