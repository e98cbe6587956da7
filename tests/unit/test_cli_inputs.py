"""What a careless or hostile user gives the ``clover`` command: a clear error naming the option or the file,
never a traceback (issue 10). The mesh, where one is needed, is the fake backend persisted to a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_clover.cli.main import main
from pytest_clover.istio.parse import MAX_YAML_BYTES
from pytest_clover.report import history
from pytest_clover.testing import FakeBackend

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"
FAULT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: clover-server}
spec:
  hosts: [clover-server]
  http: [{route: [{destination: {host: clover-server}}]}]
"""


@pytest.fixture
def fake_mesh(tmp_path: Path) -> Iterator[list[str]]:
    """A deployed fake mesh; yields the options that name it (``--backend fake --location FILE``)."""
    state = tmp_path / "fake-mesh.json"
    backend = FakeBackend(SDC, state_file=state)
    backend.deploy()
    yield ["--backend", "fake", "--location", str(state)]
    backend.teardown()


def _history(mesh: list[str]) -> list[str]:
    """What the fake mesh was asked to do, read back from its state file."""
    return FakeBackend(state_file=mesh[-1]).history


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's exit (status 2) for ``argv``; its message."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


# --------------------------------------------------------------------------- counts and shares


@pytest.mark.parametrize(("value", "why"), [("0", "0 is too few: give 1 or more"), ("-1", "-1 is too few")])
def test_request_count_below_one_is_a_usage_error_naming_the_option(
    value: str, why: str, capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    # Was: an IndexError from the p50 of no latencies, after connecting to the mesh.
    message = _usage_error([*fake_mesh, "request", "/", "--count", value], capsys)
    assert message.startswith("clover request: error: argument --count: ") and why in message


@pytest.mark.parametrize(
    ("option", "why"),
    [
        (["--count", "0"], "argument --count: 0 is too few: give 1 or more"),
        (["--count", "-3"], "argument --count: -3 is too few"),
        (
            ["--percent", "500"],
            "argument --percent: 500 % is not a share of the pods: give more than 0 and at most 100",
        ),
        (["--percent", "0"], "argument --percent: 0 % is not a share of the pods"),
        (["--percent", "nan"], "argument --percent: 'nan' is not a finite number"),
        (["--grace", "-1"], "argument --grace: -1 seconds is negative"),
        (["--timeout", "0"], "argument --timeout: 0 seconds leaves no time"),
    ],
)
def test_kill_refuses_a_count_or_share_that_kills_nothing_or_too_much(
    option: list[str], why: str, capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    # Was: --count 0 printed "killed ; replaced by nothing" (exit 0) on the local mesh; --percent 500 said
    # "cannot kill 20 pods" without the percent.
    message = _usage_error([*fake_mesh, "kill", "clover-server", *option], capsys)
    assert why in message
    assert _history(fake_mesh) == ["deploy"]  # nothing was killed


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_report_trend_last_below_one_is_a_usage_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: "trend … over the last -1 of 2 runs".
    message = _usage_error(["report", "trend", "--report-dir", str(tmp_path), "--last", value], capsys)
    assert "argument --last:" in message


def test_scale_to_a_negative_count_is_a_usage_error(capsys: pytest.CaptureFixture[str], fake_mesh: list[str]) -> None:
    message = _usage_error([*fake_mesh, "scale", "clover-server", "-1"], capsys)
    assert "argument replicas: -1 is negative: give 0 or more" in message


def test_inject_percent_outside_0_to_100_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    message = _usage_error([*fake_mesh, "inject", "abort", "clover-server", "--percent", "101"], capsys)
    assert "argument --percent: 101 % is not a share of requests: give 0 to 100" in message


# --------------------------------------------------------------------------- files given to apply and validate


def test_apply_of_a_binary_file_names_the_file_and_applies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    # Was: UnicodeDecodeError (clover validate handled the same file cleanly).
    good = tmp_path / "good.yaml"
    good.write_text(FAULT)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x9c\xff\x00binary")
    assert main([*fake_mesh, "apply", str(good), str(garbage)]) == 1
    err = capsys.readouterr().err
    assert f"{garbage}: file: error: is not UTF-8 text (byte 0 is 0x9c)" in err
    assert "clover apply: 1 error(s) in the configuration" in err
    assert _history(fake_mesh) == ["deploy"]  # every file is read before any is applied


def test_apply_refuses_a_file_over_the_limit_before_sending_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    # Was, on the embedded mesh: "cannot reach the mesh … Broken pipe" (its control socket reads lines of
    # up to 16 MiB, and the text went in one).
    big = tmp_path / "big.yaml"
    big.write_text(FAULT + "#" * MAX_YAML_BYTES + "\n")
    assert main([*fake_mesh, "apply", str(big)]) == 1
    err = capsys.readouterr().err
    size = big.stat().st_size
    assert f"{big}: file: error: is 2.0 MiB ({size} bytes), more than the 2.0 MiB ({MAX_YAML_BYTES} bytes)" in err
    assert _history(fake_mesh) == ["deploy"]


def test_apply_reads_its_files_before_asking_for_the_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "fake", "--location", str(tmp_path / "none.json"), "apply", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: file: error: is a folder" in err


def test_apply_of_a_good_file_still_applies_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(FAULT)
    assert main([*fake_mesh, "apply", str(good)]) == 0
    assert f"applied {good}" in capsys.readouterr().out
    assert _history(fake_mesh) == ["deploy", "apply VirtualService/clover-server"]


def test_validate_of_a_file_over_the_limit_is_one_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: 50 MB (300 000 objects) still running after 120 s at 718 MB.
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_YAML_BYTES + 1))
    assert main(["validate", str(big), str(SDC)]) == 1
    out = capsys.readouterr().out
    assert f"{big}: file: error: is 2.0 MiB" in out
    assert out.strip().endswith("1 error(s), 0 warning(s)")


# --------------------------------------------------------------------------- clover report


@pytest.mark.parametrize("target", ["/dev/null", "file"])
def test_report_of_something_that_is_not_a_folder_says_so(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: NotADirectoryError (cleaning up windows.csv's temporary file in a "folder" that is a file).
    path = Path(target) if target.startswith("/") else tmp_path / target
    if not path.exists():
        path.write_text("not a run")
    assert main(["report", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"clover report: {path}: not a folder; give a run folder, <report-dir>/<run-id>" in err


def test_report_trend_on_a_binary_history_warns_per_line_and_needs_two_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: UnicodeDecodeError.
    (tmp_path / history.HISTORY_FILE).write_bytes(
        b"\x00\xff\xfe garbage\n" + os.urandom(64).replace(b"\n", b"") + b"\n"
    )
    assert main(["report", "trend", "--report-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"clover report trend: {tmp_path / history.HISTORY_FILE}:1: not UTF-8 text, skipped" in err
    assert "holds 0 run(s); a trend needs at least two" in err


def test_report_trend_that_cannot_write_its_png_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        {"v": 1, "run_id": run, "time": 1_795_270_500.0 + i, "nodeid": "t", "outcome": "passed", "p99_ms": {"a": 1.0}}
        for i, run in enumerate(("r1", "r2"))
    ]
    history.append(tmp_path, records)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "trend.png"
    assert main(["report", "trend", "--report-dir", str(tmp_path), "--out", str(out)]) == 1
    assert f"clover report: cannot write {out}: " in capsys.readouterr().err


# --------------------------------------------------------------------------- a reader that goes away


def test_a_closed_pipe_on_stdout_ends_the_command_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    # `clover up … | head -1`: head exits after one line; writing the rest raised BrokenPipeError.
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written: every write gets EPIPE
    stdout = open(write_end, "w", encoding="utf-8")  # closed below, after main has pointed its fd at /dev/null
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["validate", str(SDC)]) == 141  # 128 + SIGPIPE, as a shell reports a tool SIGPIPE ended
        stdout.write("what is still buffered goes to /dev/null\n")
        stdout.flush()  # the interpreter's flush at exit: no BrokenPipeError either
    finally:
        stdout.close()


def test_a_closed_pipe_on_stdout_leaves_no_message_at_exit() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_clover.cli", "validate", str(SDC)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_the_json_status_of_a_fake_mesh_is_still_printed(
    capsys: pytest.CaptureFixture[str], fake_mesh: list[str]
) -> None:
    # The flush main now does must not change what a reader that stays gets.
    assert main([*fake_mesh, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "fake"
