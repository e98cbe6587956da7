"""Options, their ini mirrors, early UsageErrors, the report header, and the plugin's lazy imports."""

from __future__ import annotations

import re

import pytest

from .conftest import QUIET, SDC, Project, run

SHOW_SETTINGS = """
def test_settings(clover_settings):
    s = clover_settings
    print(f"SETTINGS backend={s.backend} seed={s.seed} scale={s.time_scale} keep={s.keep_mesh} "
          f"topology={s.topology} report_dir={s.report_dir}")
"""


def settings_line(result: pytest.RunResult) -> dict[str, str]:
    line = next(x for x in result.outlines if "SETTINGS " in x)
    return dict(part.split("=", 1) for part in line.split("SETTINGS ", 1)[1].split()[:6])


def test_the_report_header_prints_the_flag_that_replays_the_run(project: Project) -> None:
    project.pytester.makepyfile("def test_nothing(): pass")
    result = project.run("--clover-seed=1234")
    result.stdout.fnmatch_lines(
        ["pytest-clover *", "clover: backend=local, topology=*sdc, time scale=0.5", "Using --clover-seed=1234"]
    )


def test_the_seed_is_random_by_default_and_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SHOW_SETTINGS)
    seeds = []
    for _ in range(2):
        result = run(pytester, "-s")
        header = re.search(r"Using --clover-seed=(\d+)", result.stdout.str())
        assert header is not None, result.stdout.str()
        assert settings_line(result)["seed"] == header.group(1)
        seeds.append(header.group(1))
    assert seeds[0] != seeds[1]


def test_ini_keys_mirror_the_options_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    (pytester.path / "topo").mkdir()
    for f in SDC.iterdir():
        (pytester.path / "topo" / f.name).write_bytes(f.read_bytes())
    pytester.makeini(
        "[pytest]\nclover_backend = local\nclover_topology = topo\nclover_report_dir = out/reports\n"
        "clover_time_scale = 0.2\nclover_seed = 77\nclover_keep_mesh = true\n"
    )
    pytester.makepyfile(SHOW_SETTINGS)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=1)
    seen = settings_line(result)
    assert seen == {
        "backend": "local",
        "seed": "77",
        "scale": "0.2",
        "keep": "True",
        "topology": str(pytester.path / "topo"),
        "report_dir": str(pytester.path / "out" / "reports"),
    }
    result = run(pytester, "-s", "--clover-seed=5", "--clover-time-scale=3")
    seen = settings_line(result)
    assert (seen["seed"], seen["scale"]) == ("5", "3.0")


def test_relative_paths_resolve_against_the_rootdir_not_the_current_directory(project: Project) -> None:
    project.pytester.makepyfile(SHOW_SETTINGS)
    sub = project.path / "sub"
    sub.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        result = project.pytester.runpytest(*QUIET, "-s", str(project.path), "--clover-report-dir=r")
    assert settings_line(result)["report_dir"] == str(project.path / "r")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--clover-backend=k9s"],
            "*--clover-backend=k9s: no backend named 'k9s' is installed; did you mean k8s? installed: fake, k8s, local*",
        ),
        (
            ["--clover-backend=k8s", "--clover-kubeconfig=nowhere.yaml"],
            "*--clover-backend=k8s: no kubeconfig: */nowhere.yaml (--clover-kubeconfig) does not exist*",
        ),
        (
            ["--clover-backend=k8s", "--clover-max-kill-percent=150"],
            "*--clover-backend=k8s: --clover-max-kill-percent='150' is out of range*",
        ),
        (["--clover-backend=locall"], "*--clover-backend=locall: no backend named 'locall' is installed; did you mean local?*"),
        (["--clover-time-scale=0"], "*--clover-time-scale='0' must be a finite number > 0*"),
        (["--clover-time-scale=-1"], "*--clover-time-scale='-1' must be a finite number > 0*"),
        (["--clover-time-scale=nan"], "*--clover-time-scale='nan' must be a finite number > 0*"),
        (["--clover-time-scale=fast"], "*--clover-time-scale='fast' is not a number*"),
        (["--clover-seed=abc"], "*--clover-seed='abc' is not an integer*"),
        (["--clover-seed=-3"], "*--clover-seed=-3 is out of range*"),
        (
            ["--clover-topology=nowhere"],
            "*--clover-topology: topology */nowhere does not exist; pass --clover-topology=DIR*",
        ),
    ],
)
def test_a_bad_option_stops_the_run_before_any_test_and_says_what_to_do(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: " + message.lstrip("*")])
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("clover_time_scale = 0", "ERROR: clover_time_scale (ini)='0' must be a finite number > 0*"),
        ("clover_seed = twelve", "ERROR: clover_seed (ini)='twelve' is not an integer*"),
        ("clover_backend = k9s", "ERROR: clover_backend (ini)=k9s: no backend named 'k9s' is installed*"),
        ("clover_topology = missing", "ERROR: clover_topology (ini): topology */missing does not exist*"),
    ],
)
def test_a_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://203.0.113.10:6443"}
users:
- name: admin
  user: {token: not-used}
contexts:
- name: prod-eu
  context: {cluster: prod, user: admin}
current-context: prod-eu
"""


def test_a_context_off_the_allow_list_is_refused_before_any_client_exists(pytester: pytest.Pytester) -> None:
    # 203.0.113.10 is TEST-NET-3: if anything tried to reach it, the run would hang instead of failing at once.
    (pytester.path / "kubeconfig").write_text(KUBECONFIG)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--clover-backend=k8s", "--clover-kubeconfig=kubeconfig")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --clover-backend=k8s: *prod-eu*clover_allowed_contexts*"])
    pytester.makeini("[pytest]\nclover_allowed_contexts = prod-*\n")
    allowed = run(pytester, "--clover-backend=k8s", "--clover-kubeconfig=kubeconfig", "--collect-only")
    assert allowed.ret == pytest.ExitCode.OK, allowed.stderr.str()


def test_a_topology_that_does_not_validate_lists_every_problem(pytester: pytest.Pytester) -> None:
    topo = pytester.mkdir("topo")
    (topo / "vs.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - retires: {attempts: 3}\n    fault: {abort: {httpStatus: 700, percentage: {value: 10}}}\n"
        "    route: [{destination: {host: reviews}}]\n"
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, f"--clover-topology={topo}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --clover-topology: topology *topo cannot be deployed: * problems in the configuration:",
            # fnmatch: "?" stands for the brackets of http[0]
            "*vs.yaml: VirtualService/reviews: spec.http?0?.retires: error: unknown field 'retires'*",
            "*vs.yaml: VirtualService/reviews: spec.http?0?.fault.abort.httpStatus: error: 700 is out of range*",
        ]
    )


def test_a_report_dir_that_is_a_file_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", reports="not a folder")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--clover-report-dir=reports.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --clover-report-dir: */reports.txt exists and is not a folder*"])


@pytest.mark.parametrize(
    ("report_dir", "message"),
    [
        ("/proc/clover-reports", "*--clover-report-dir: /proc/clover-reports cannot be written (*)*"),
        ("notes.txt/reports", "*--clover-report-dir: */notes.txt/reports cannot be made: */notes.txt is a file*"),
    ],
)
def test_a_report_dir_that_cannot_be_written_is_refused_before_any_test(
    pytester: pytest.Pytester, report_dir: str, message: str
) -> None:
    # Before: an INTERNALERROR, and only after the mesh had started and the first test had run.
    pytester.makefile(".txt", notes="")
    pytester.makepyfile("def test_plain(): pass")
    result = run(pytester, f"--clover-report-dir={report_dir}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not list(pytester.path.glob(".clover-check-*"))


def test_the_default_topology_is_only_required_by_tests_that_need_the_mesh(pytester: pytest.Pytester) -> None:
    # A project without fixtures/sdc that does not use the plugin is not disturbed by it…
    pytester.makepyfile(test_plain="def test_plain(): pass")
    run(pytester).assert_outcomes(passed=1)
    # …but a test that needs the mesh stops the run early, saying which topology is missing.
    pytester.makepyfile(test_mesh="def test_mesh(mesh): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --clover-topology (default): topology */fixtures/sdc does not exist; pass --clover-topology=DIR*"]
    )


def test_the_slo_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.slo(phase, p50_ms=None, *max_error_rate=None*"])


def test_the_plugin_imports_nothing_heavy_in_a_run_that_does_not_use_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runtime folder of its own: one that lists fault ledgers to sweep rightly makes a run load the fault engine.
    monkeypatch.setenv("CLOVER_RUNTIME_DIR", str(pytester.path / "runtime"))
    pytester.makepyfile(
        """
        import sys

        def test_modules():
            heavy = ["locust", "gevent", "grpc", "pandas", "yaml", "requests", "pytest_clover.faults",
                     "pytest_clover.istio", "pytest_clover.envoy", "pytest_clover.backends.local",
                     "pytest_clover.load.run", "pytest_clover.report.build"]
            assert [m for m in heavy if m in sys.modules] == []
            assert "pytest_clover.plugin.hooks" in sys.modules and "pytest_clover.plugin.fixtures" in sys.modules
        """
    )
    # A subprocess: this process has imported all of them already.
    pytester.runpytest_subprocess(*QUIET).assert_outcomes(passed=1)
