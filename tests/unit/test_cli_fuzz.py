"""Fuzzing the ``clover`` command: any arguments, any input file, never a traceback (issue 10).

``main()`` must return an exit code having said why on stderr (or stdout, for ``validate``'s problems), or
argparse must stop with status 2. Four kinds of input: random argument lists for every subcommand; random
bytes and YAML-ish text given to ``validate`` and ``apply``; a run folder of random files for ``report``;
a random ``history.jsonl`` for ``report trend``.

Hermetic: every mesh option points at a fake mesh that is not running (a state file that does not exist),
the working directory is an empty temporary folder, and ``up``, ``render`` and ``cleanup`` (which start a
mesh, write and run Envoy configurations, or sweep this user's meshes) are only parsed, never run.
Deterministic: ``derandomize=True`` and no example database.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_clover.cli.main import build_parser, main
from pytest_clover.report.sample import write_sample_run

FUZZ = settings(
    derandomize=True,  # the same examples on every run
    database=None,  # nothing written into the repository
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PARSE_ONLY = frozenset({"up", "render", "cleanup"})
"""Started, these would deploy a mesh, run Envoy, or sweep the meshes of whoever runs the tests."""
MESH_OPTIONS = frozenset({"--backend", "--location", "--state-dir"})
"""Set by the fuzz itself, before the command, to a mesh that does not run; never drawn."""


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand (``inject delay`` and ``inject abort`` as two), by the words that name it."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers and prefix:
            found[prefix] = parser
        for action in subparsers:
            for name, child in action.choices.items():
                walk(f"{prefix} {name}".strip(), child)

    walk("", build_parser())
    return found


COMMANDS = _commands()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        s
        for a in parser._actions
        for s in a.option_strings
        if s not in MESH_OPTIONS and s not in ("-h", "--help", "--version")
    )


VALUES = [
    "0", "-1", "1", "2", "100", "101", "500", "1e309", "-1e309", "nan", "inf", "-inf", "0.0001", "1.5", "",
    " ", "x", "NAME=VALUE", "=", "=x", "x=", "a=b=c", "200ms", "1.5s", "-5s", "99999999999999999999", "/x",
    "clover-server", "http-lb", "no-such-service", "app", "envoy", "access", "trend", "--", "-", "-x",
]  # fmt: skip
"""Values a careless user types; with random text (no NUL: argv cannot hold one; nothing that names a folder
outside the temporary one, or `clover validate /` would read the whole disk)."""

safe_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12).filter(
    lambda t: not t.startswith(("/", "~", "--")) and ".." not in t
)


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(the command's name, its argument list after the command words)."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    options = _options(COMMANDS[name])
    token = st.one_of(
        st.sampled_from(options) if options else st.nothing(),
        st.sampled_from(VALUES),
        safe_text,
        st.just("@FILE"),  # replaced by a file of random content
    )
    return name, draw(st.lists(token, max_size=8))


yaml_ish = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\n\t ~.0123456789abcxyz")), max_size=300),
    st.lists(
        st.sampled_from(
            [
                "apiVersion: networking.istio.io/v1\n", "kind: VirtualService\n", "kind: Deployment\n",
                "metadata: {name: web}\n", "spec:\n", "  hosts: [web]\n", "  http: [{route: [{destination: ",
                "{host: web}}]}]\n", "---\n", "- ", "[", "{", "&a ", "*a", "!!float x", "\t", "\x00", "\udcff",
            ]
        ),
        max_size=20,
    ).map("".join),
)  # fmt: skip


def _as_bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")


@contextlib.contextmanager
def _hermetic() -> Iterator[Path]:
    """An empty working folder, and no mesh named by the environment."""
    saved = {k: os.environ.pop(k, None) for k in ("CLOVER_BACKEND", "CLOVER_STATE_DIR")}
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="clover-fuzz-") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(cwd)
            for key, value in saved.items():
                if value is not None:
                    os.environ[key] = value


def _run(argv: Sequence[str], *, parse_only: bool = False) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``clover argv`` in this process; anything else raised fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if parse_only:
                build_parser().parse_args(list(argv))
                code = 0
            else:
                code = main(list(argv))
        except SystemExit as exc:
            # argparse: 2 for a usage error (its message on stderr), 0 only for --help.
            assert exc.code in (0, 2), exc.code
            code = int(exc.code or 0)
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


def _check(code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    if code != 0:
        assert (err or out).strip(), f"exit {code} without a word"


# --------------------------------------------------------------------------- the fuzz tests


@settings(FUZZ, max_examples=600)
@given(command_lines(), yaml_ish)
@example(("request", ["--count", "0"]), "")
@example(("kill", ["clover-server", "--count", "-1"]), "")
@example(("kill", ["clover-server", "--percent", "500"]), "")
@example(("report", ["trend", "--last", "-1"]), "")
@example(("apply", ["@FILE"]), b"\x9c\xff")
@example(("scale", ["clover-server", "1e309"]), "")
def test_any_arguments_to_any_command(line: tuple[str, list[str]], content: str | bytes) -> None:
    name, args = line
    with _hermetic() as folder:
        path = folder / "input.yaml"
        path.write_bytes(_as_bytes(content))
        args = [str(path) if a == "@FILE" else a for a in args]
        argv = ["--backend", "fake", "--location", str(folder / "no-mesh.json"), *name.split(), *args]
        code, out, err = _run(argv, parse_only=name.split()[0] in PARSE_ONLY)
    _check(code, out, err)


@settings(FUZZ, max_examples=300)
@given(st.lists(yaml_ish, min_size=1, max_size=3), st.sampled_from(["validate", "apply"]))
@example([b"\x9c\xff\x00"], "apply")
@example(["&a [*a]\n"], "validate")
@example(["[" * 600], "apply")
def test_any_file_given_to_validate_or_apply(contents: list[str | bytes], command: str) -> None:
    with _hermetic() as folder:
        files = []
        for i, content in enumerate(contents):
            files.append(folder / f"input-{i}.yaml")
            files[-1].write_bytes(_as_bytes(content))
        argv = ["--backend", "fake", "--location", str(folder / "no-mesh.json"), command, *map(str, files)]
        code, out, err = _run(argv)
    _check(code, out, err)
    if command == "apply":
        # Every file is read first: a bad one is named; good ones then find no mesh. Nothing else is said.
        assert code == 1
        assert "error(s) in the configuration" in err or "the fake mesh" in err or "no mesh" in err, err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
RUN_FIELDS = ["run_id", "started", "finished", "partial", "partial_reason", "seed", "time_scale", "versions", "host"]
TEST_FIELDS = ["nodeid", "verdict", "weight", "slo", "faults", "recovery", "regressions", "result_dir", "phases"]
RESULT_FIELDS = ["windows", "phases", "histograms", "events", "mode", "rate", "users", "seed"]
EVENT_FIELDS = ["test", "time", "kind", "name", "id", "fault", "target"]


def _json_file(fields: list[str]) -> st.SearchStrategy[bytes]:
    """A file as a run writes it (a JSON object of the right fields, any values), or anything at all."""
    shaped = st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)).map(
        lambda d: json.dumps(d).encode()
    )
    return st.one_of(shaped, json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=100))


def _ndjson(fields: list[str]) -> st.SearchStrategy[bytes]:
    line = st.one_of(
        st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)).map(lambda d: json.dumps(d)),
        st.text(max_size=20),
    )
    return st.lists(line, max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogateescape"))


@settings(FUZZ, max_examples=60)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "run.json": _json_file(RUN_FIELDS),
            "events.ndjson": _ndjson(EVENT_FIELDS),
            "t/test.json": _json_file(TEST_FIELDS),
            "t/result.json": _json_file(RESULT_FIELDS),
            "t/timeline.json": st.lists(
                st.dictionaries(st.sampled_from(EVENT_FIELDS), json_values, max_size=4), max_size=3
            ).map(lambda v: json.dumps(v).encode()),
            "t/hops.csv": st.binary(max_size=100),
        },
    )
)
@example({"run.json": b"\x00\xff"})
# Found by this fuzz: each was a traceback from the summary, the HTML or the JSON writer.
@example({"run.json": b"{}", "t/test.json": b'{"slo": "0"}'})
@example({"run.json": b"{}", "t/result.json": b"[]"})
@example({"run.json": b"{}", "t/result.json": b'{"windows": [null]}'})
@example({"run.json": b'{"run_id": null, "started": 253402300800.0}'})
@example({"run.json": b'{"seed": NaN, "versions": [1]}', "t/timeline.json": b'[{"time": "x", "id": [1]}]'})
@example({"run.json": b"{}", "events.ndjson": b"\x00\xff\n{torn"})
def test_a_run_folder_of_random_files(files: dict[str, bytes]) -> None:
    with _hermetic() as folder:
        run = folder / "reports" / "20261121-120000-1"
        for name, content in files.items():
            (run / name).parent.mkdir(parents=True, exist_ok=True)
            (run / name).write_bytes(content)
        run.mkdir(parents=True, exist_ok=True)
        code, out, err = _run(["report", str(run)])
    _check(code, out, err)


per_phase = st.one_of(st.dictionaries(st.sampled_from(["baseline", "fault", ""]), json_values, max_size=3), json_values)
history_lines = st.one_of(
    st.binary(max_size=60),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 1, 1.0, 2, True, "1"]),
            "run_id": st.sampled_from(["r1", "r2", "20261121-141500-1", "x" * 200, 7, None]),
            "nodeid": st.sampled_from(["t", "u", "", 3]),
        },
        optional={
            "time": st.one_of(json_values, st.sampled_from([1e300, -1e300, 1_795_270_500.0])),
            "outcome": json_values,
            "p99_ms": per_phase,
            "error_rate": per_phase,
            "recovery_s": per_phase,
        },
    ).map(json.dumps),
)


@settings(FUZZ, max_examples=100)
@given(st.lists(history_lines, max_size=8), st.sampled_from([None, "1", "2", "30"]))
@example([b"\x00\xff\xfe", b"\x9c"], None)
@example(
    [
        '{"v": 1, "run_id": "r1", "nodeid": "t", "time": 1e300, "p99_ms": {"fault": NaN}, "recovery_s": {"a": null}}',
        '{"v": 1, "run_id": "r2", "nodeid": "t", "time": "soon", "error_rate": {"fault": "x"}, "outcome": []}',
    ],
    "1",
)
def test_any_history_given_to_report_trend(lines: list[str | bytes], last: str | None) -> None:
    with _hermetic() as folder:
        (folder / "reports").mkdir()
        (folder / "reports" / "history.jsonl").write_bytes(b"\n".join(_as_bytes(line) for line in lines))
        code, out, err = _run(["report", "trend", *(["--last", last] if last else [])])
    _check(code, out, err)


def test_the_fuzz_covers_every_subcommand() -> None:
    assert {name.split()[0] for name in COMMANDS} == {
        "up", "status", "apply", "inject", "clear", "kill", "scale", "render", "validate", "down", "cleanup",
        "request", "report", "logs", "kubeconfig", "k8s",
    }  # fmt: skip


def test_a_real_run_folder_still_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The fuzz above sees errors; the same path on a good run folder still builds the report.
    run = write_sample_run(tmp_path / "20261121-120000-1", tests=1, seconds=(2.0, 1.0, 2.0))
    assert main(["report", str(run)]) == 0
    assert "resilience score:" in capsys.readouterr().out
