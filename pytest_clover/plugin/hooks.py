"""The pytest11 entry point: options, hooks and verdicts. Deliberately thin.

pytest loads this module in every run of an environment where pytest-clover is installed, so it imports only
pytest, the settings and the session state; the fixtures (:mod:`.fixtures`, registered from here), the mesh,
faults, load and SLO machinery load inside the fixtures and hooks that need them, and hooks return at once for
tests that use none of it.

Verdicts. An objective not met (``slo.check``, ``@pytest.mark.slo``, a regression) raises a
:class:`~pytest_clover.errors.CloverFailure`: the test FAILS. A :class:`~pytest_clover.errors.CloverError` in the
test body — a fault whose effect was never seen (:class:`~pytest_clover.errors.FaultInconclusive`), a load
generator that died, a mesh that broke — is reported as an ERROR (``INCONCLUSIVE`` for the former): the test
could not judge the system, which is different from the system failing the test.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from .. import __version__
from .session import SESSION_KEY, clover_session, progress
from .settings import SETTINGS_KEY, CloverSettings, add_options, load_settings, validate_topology

if TYPE_CHECKING:
    from ..backends.protocol import Backend, BackendOptions

pytest_plugins = ("pytest_clover.plugin.fixtures",)
"""The fixtures live in their own module, registered with this one (and disabled with it: ``-p no:clover``)."""

CLOVER_FIXTURES = ("load", "faults", "slo")
"""A test using one of these (or the slo marker) gets a row in the summary."""

SLO_MARKER = (
    "slo(phase, p50_ms=None, p95_ms=None, p99_ms=None, max_error_rate=None, min_throughput_rps=None): "
    "objectives checked after the test body against the test's last load result (repeatable; a miss fails)"
)


# --------------------------------------------------------------------------- configuration


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_clover_make_backend(config: pytest.Config, settings: CloverSettings, options: BackendOptions) -> Backend:
    """The default: the backend registered under ``settings.backend``."""
    from ..backends.registry import backend_class

    return backend_class(settings.backend).from_options(options)


RESILIENCE_MARKER = "resilience(weight=1.0): the test's weight in the run's resilience score (see docs/reports.md)"
SOAK_MARKER = "soak: a long-duration soak test, run only with --clover-soak=DURATION (deselected otherwise)"
SOAK_TIMEOUT_MARGIN_S = 900.0
"""With pytest-timeout installed, a soak test's limit is its duration plus this (start, last recoveries, report)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", SLO_MARKER)
    config.addinivalue_line("markers", RESILIENCE_MARKER)
    config.addinivalue_line("markers", SOAK_MARKER)
    config.addinivalue_line(
        "markers", "clover_experiment: a Chaos Toolkit experiment file collected by pytest-clover (set by it)"
    )
    settings = load_settings(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.compare and not hasattr(config, "workerinput"):
        _check_reference(settings)
    config.pluginmanager.register(_SummaryRows(config), "clover-summary")
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistHooks(settings), "clover-xdist")
    _take_sigterm(config)


SIGTERM_KEY = pytest.StashKey[Callable[[int, "FrameType | None"], None]]()
"""The SIGTERM handler this configuration installed, to give back at unconfigure."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, as pytest-clover receives it: the run ends the way Ctrl-C ends it."""


def _forward_to_workers(signum: int) -> None:
    """Give the xdist workers the SIGTERM at once. Left to xdist, a worker in a test hears of the end only from
    execnet: 5 s after being asked to exit it gets a SIGINT, and 10 s after the ask it is killed; a loaded
    machine then kills it mid-teardown, its faults still in force. The workers are the controller's children
    that execnet started (its bootstrap reads the worker's code from stdin)."""
    import psutil

    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        return
    for child in children:
        try:
            if "exec(eval(" in " ".join(child.cmdline()):
                child.send_signal(signum)
        except psutil.Error:
            continue


def _take_sigterm(config: pytest.Config) -> None:
    """Make SIGTERM end the run like Ctrl-C: fixtures tear down, open faults are reverted and a partial report
    is written. CI systems stop a cancelled or timed-out job with SIGTERM, and by default it ends pytest on the
    spot: faults stay in force on a cluster and the run leaves no report. A second SIGTERM ends the process at
    once. A handler someone else installed is left alone, and so is every thread but the main one (Python
    only lets the main thread install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        progress(config).terminated = True
        if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
            _forward_to_workers(signum)
        raise Terminated("SIGTERM: tearing down, reverting faults, writing a partial report (again to stop at once)")

    signal.signal(signal.SIGTERM, terminate)
    config.stash[SIGTERM_KEY] = terminate


def _give_back_sigterm(config: pytest.Config) -> None:
    ours = config.stash.get(SIGTERM_KEY, None)
    if ours is not None and signal.getsignal(signal.SIGTERM) is ours:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _XdistHooks:
    """Registered on the xdist controller only: every worker replays the controller's seed and run id."""

    def __init__(self, settings: CloverSettings) -> None:
        self.settings = settings

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["clover_seed"] = self.settings.seed
        node.workerinput["clover_run_id"] = self.settings.run_id

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # Every worker collects the whole suite; the controller never does. This is what "all tests" means.
        run = progress(node.config)
        run.collected = max(run.collected or 0, len(ids))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # An interrupted xdist run: xdist's own sessionfinish has now waited for the workers, which tear down
        # their interrupted tests (reverting faults, saving load results) on the way out. Built earlier, the
        # report would miss what they saved.
        if _deferred_to_xdist(session, exitstatus):
            _build_report(session, exitstatus)


def _check_reference(settings: CloverSettings) -> None:
    """--clover-compare must name a run the history holds: a typo is found before the first test, not after.

    ``last:N`` must have N ≥ 2 (``last:1`` is ``last``). With no earlier complete run at all, ``last:N`` compares
    nothing this time and says so on stderr (not as a warning: ``-W error`` would make it an INTERNALERROR): it is
    what a nightly job runs, and its first night (or the first after a row of crashed ones) must run, not stop at
    configure; ``last`` and a run id name one run, and a history without it is a usage error. The median of fewer
    than N runs is taken per test, with the message saying how many. A history that cannot be read, or whose lines
    are not records (so that no earlier run is found), is a usage error naming the file, here at configure, rather
    than an INTERNALERROR or a comparison with nothing.
    """
    import sys

    from ..errors import NoReferenceRun, ReportDataError
    from ..report import history

    compare = settings.compare or history.LAST
    try:
        median_of = history.median_count(compare)
    except ValueError as exc:
        raise pytest.UsageError(f"--clover-compare={compare}: {exc}") from None
    where = settings.report_dir / history.HISTORY_FILE
    try:
        records, skipped = history.read(settings.report_dir)
    except ReportDataError as exc:
        raise pytest.UsageError(f"--clover-compare={settings.compare}: {exc}") from None
    try:
        history.reference_run(records, compare, settings.run_id)
    except NoReferenceRun as exc:
        damaged = f"; {len(skipped)} line(s) of it could not be read, first: {skipped[0]}" if skipped else ""
        if median_of is not None and not skipped:
            sys.stderr.write(f"clover: {exc}: no test is compared this time (history: {where})\n")
            return
        raise pytest.UsageError(f"{exc} (history: {where}{damaged})") from None


def _settings(config: pytest.Config) -> CloverSettings | None:
    return config.stash.get(SETTINGS_KEY, None)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = _settings(config)
    lines = [f"pytest-clover {__version__}"]
    if settings is not None:
        lines += settings.header_lines()
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    """Sweep the faults a killed run left open, before any test runs: those of this report dir's ledgers, and those
    of every ledger this user's runtime folder lists (a run killed elsewhere, its mesh kept running)."""
    settings = _settings(session.config)
    if settings is None:
        return
    from ..runtime import runtime_path

    registered = runtime_path() / "ledgers"
    if not settings.ledger_dir.is_dir() and not (registered.is_dir() and any(registered.glob("*.json"))):
        return  # nothing to look at: a run that uses no pytest-clover pays for nothing
    from ..faults.ledger import sweep_ledger, sweep_registered

    messages: list[str] = []
    try:
        if settings.ledger_dir.is_dir():
            messages += sweep_ledger(settings.ledger_dir)
        messages += sweep_registered()
    except Exception as exc:  # a broken ledger must not stop the run; say so
        messages.append(f"a fault ledger could not be swept: {exc}")
    if not messages:
        return
    clover_session(session.config).swept = messages
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        noun = "fault" if len(messages) == 1 else "faults"
        reporter.write_line(f"clover: swept {len(messages)} {noun} left open by a killed run:")
        for line in messages:
            reporter.write_line(f"  {line}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (the ``soak`` fixture or marker) run only with ``--clover-soak``: a night is never started by a
    plain ``pytest suites``. They are deselected, not skipped: they were not asked for."""
    settings = _settings(config)
    if settings is None:
        return
    soaks = [i for i in items if "soak" in getattr(i, "fixturenames", ()) or i.get_closest_marker("soak")]
    if settings.soak_s is not None:
        if config.pluginmanager.hasplugin("timeout"):
            # pytest-timeout's per-test limit (ours is 300 s) would kill a night at its fifth minute: a soak gets its
            # own duration plus room for its start, its last recoveries and its report, and a hung one still ends.
            limit = settings.soak_s + SOAK_TIMEOUT_MARGIN_S
            for item in soaks:
                if item.get_closest_marker("timeout") is None:
                    item.add_marker(pytest.mark.timeout(limit))
        return
    if soaks:
        config.hook.pytest_deselected(items=soaks)
        items[:] = [i for i in items if i not in soaks]


def pytest_collection_finish(session: pytest.Session) -> None:
    """The default topology is validated only when a collected test needs the mesh."""
    settings = _settings(session.config)
    if settings is None:
        return
    run = progress(session.config)
    if not hasattr(session.config, "workerinput") and session.items:
        run.collected = len(session.items)
    if settings.topology_explicit:
        return
    if any("clover_backend" in getattr(item, "fixturenames", ()) for item in session.items):
        validate_topology(settings.topology, "--clover-topology (default)")


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    """Chaos Toolkit experiments: YAML/JSON files in a ``faults`` folder (see :mod:`.experiments`)."""
    if file_path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return None
    from .experiments import ExperimentFile, is_candidate

    if not is_candidate(file_path, parent.config.rootpath):
        return None
    node: pytest.Collector = ExperimentFile.from_parent(parent, path=file_path)
    return node


# --------------------------------------------------------------------------- verdicts


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = _marker_problem(item)
    if problem is not None:
        # Outside the except block: failing inside it would print the message twice ("During handling…").
        pytest.fail(problem, pytrace=False)


def _marker_problem(item: pytest.Item) -> str | None:
    """What is wrong with the test's resilience and slo markers, if anything."""
    weight = item.get_closest_marker("resilience")
    if weight is not None:
        from ..slo import marker_weight

        try:
            marker_weight(weight)
        except ValueError as exc:
            return str(exc)
    markers = list(item.iter_markers("slo"))
    if not markers:
        return None
    from ..slo import marker_objectives

    for marker in markers:
        try:
            marker_objectives(marker.kwargs, marker.args)
        except ValueError as exc:
            return str(exc)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """After a test body that passed: every fault must have been seen to act, then the slo markers hold."""
    outcome = yield
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    try:
        injector = funcargs.get("faults")
        if injector is not None:
            injector.check_effects()
        markers = list(item.iter_markers("slo"))
        if markers:
            from .verdicts import check_slo_markers

            check_slo_markers(item, funcargs, markers)
        settings = _settings(item.config)
        if settings is not None and settings.compare and not settings.dry_run and funcargs.get("load") is not None:
            from .verdicts import check_regressions

            check_regressions(item, funcargs["load"], clover_session(item.config))
    except Exception as exc:
        # A verdict of the plugin's, not a line of the test: reported as its message, without this frame.
        exc.clover_automatic = True  # type: ignore[attr-defined]
        raise
    return outcome


def _where_in_test(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """``file:line: `` of the test's own line that the exception passed through, or nothing."""
    path = getattr(item, "path", None)
    lines = [entry for entry in excinfo.traceback if path is not None and Path(entry.path) == path]
    return f"{lines[-1].path}:{lines[-1].lineno + 1}: " if lines else ""


def _uses_clover(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return (
        any(n in names for n in CLOVER_FIXTURES)
        or item.get_closest_marker("slo") is not None
        or item.get_closest_marker("clover_experiment") is not None
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if call.excinfo is not None and report.failed:
        from ..errors import CloverError, MeshNotRunning

        if call.excinfo.errisinstance(CloverError):
            from ..errors import Inconclusive

            report.clover_error = "inconclusive" if call.excinfo.errisinstance(Inconclusive) else "error"
        if getattr(call.excinfo.value, "clover_automatic", False):
            report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"
        elif call.excinfo.errisinstance(MeshNotRunning):
            # The mesh stopped under the test: where the test was and what the backend knows say it all; the
            # backend's frames and the socket error it translated would bury that.
            report.longrepr = _where_in_test(item, call.excinfo) + f"MeshNotRunning: {call.excinfo.value}"
    if _uses_clover(item):
        report.clover = {}
        if report.when == "call":
            from .outputs import timeline_text
            from .verdicts import report_data

            report.clover = report_data(item)
            timeline = getattr(item, "funcargs", {}).get("clover_timeline")
            text = timeline_text(timeline) if timeline is not None else ""
            if text:
                report.sections.append(("clover timeline", text))
        elif report.when == "teardown" and item.config.pluginmanager.hasplugin("html"):
            from .outputs import html_extras

            extras = html_extras(clover_session(item.config), item.nodeid)
            if extras:
                report.extras = [*getattr(report, "extras", []), *extras]
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    kind = getattr(report, "clover_error", None)
    if kind and report.failed:
        word = "INCONCLUSIVE" if kind == "inconclusive" else "ERROR"
        return "error", "E", (word, {"yellow": True} if kind == "inconclusive" else {"red": True})
    return None


class _SummaryRows:
    """Collects a row per test that used pytest-clover, for the terminal summary and the report (on the xdist
    controller too: worker reports arrive here with their ``clover`` data), and writes each test's
    ``test.json`` as its reports arrive, so a run killed midway still leaves what it completed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            progress(self.config).finished.add(report.nodeid)
        data = getattr(report, "clover", None)
        if data is None:
            return
        state = clover_session(self.config)
        rows = state.rows
        # Until the call report arrives, the test was interrupted (Ctrl-C stops pytest before it reports).
        row = rows.setdefault(report.nodeid, {"verdict": "interrupted", "duration_s": 0.0})
        row.update(data)
        row["duration_s"] = float(row.get("duration_s") or 0.0) + float(report.duration or 0.0)
        kind = getattr(report, "clover_error", None)
        if report.when == "call":
            row["verdict"] = kind or report.outcome
        elif report.failed:
            row["verdict"] = "error" if row["verdict"] in ("passed", "interrupted") else row["verdict"]
        elif report.skipped:
            row["verdict"] = "skipped"
        if report.failed and not row.get("message"):
            row["message"] = _short_message(report)
        if hasattr(self.config, "workerinput"):
            return  # the controller writes the records and the report
        state.write_test_record(report.nodeid, row)
        if report.when == "call":
            from .outputs import junit_properties

            junit_properties(self.config, report.nodeid, row)


def _short_message(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    return text if len(text) <= 4000 else text[:2000] + "\n…\n" + text[-1900:]


# --------------------------------------------------------------------------- session end


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the fixtures' teardown (done here for an interrupted run): revert anything still open (Ctrl-C at a
    bad moment), then build the run's report (controller only) — before junitxml writes its file, so the score
    reaches it."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        # pytest finalizes an interrupted test's fixtures only in its own sessionfinish, after this hook. Done
        # here first, the faults fixture reverts in order and the load fixture saves the test's result, so the
        # report has the interrupted test's plots, phases and faults.
        try:
            session._setupstate.teardown_exact(None)
        except Exception as exc:  # the report must still be written
            if reporter is not None:
                reporter.write_line(f"clover: tearing down the interrupted test failed: {exc!r}", red=True)
    if state.open_faults:
        problems = state.revert_open_faults()
        if reporter is not None:
            reporter.write_line("clover: reverted the faults still open at session end")
            for line in problems:
                reporter.write_line(f"  could not revert: {line}", red=True)
    if hasattr(session.config, "workerinput"):
        return
    if _deferred_to_xdist(session, exitstatus):
        return  # the workers are still tearing down their tests: _XdistHooks builds the report once they are gone
    _build_report(session, exitstatus)


def _deferred_to_xdist(session: pytest.Session, exitstatus: int) -> bool:
    """An interrupted run distributed by xdist (its controller's ``dsession`` plugin is active, not just
    installed): the report is built after xdist has waited for its workers."""
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    return interrupted and session.config.pluginmanager.has_plugin("dsession")


def _build_report(session: pytest.Session, exitstatus: int) -> None:
    from .outputs import finish_report

    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    if not state.rows and not state.settings.run_report_dir.is_dir():
        return  # no test used pytest-clover: leave no report folder behind
    finish_report(session, state, exitstatus, progress(session.config))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None and state.open_faults:
        state.revert_open_faults()
    _give_back_sigterm(config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or not (state.rows or state.swept or state.kept or state.topology_warnings or state.unreverted):
        return
    from .outputs import format_summary

    terminalreporter.section("pytest-clover")
    if state.rows:
        for line in format_summary(state.rows):
            terminalreporter.write_line(line)
    built = state.report
    if built is not None:
        score = built.summary["score"]["value"]
        run = built.summary["run"]
        partial = f" (PARTIAL: {run['partial_reason']})" if run["partial"] else ""
        terminalreporter.write_line(f"resilience score: {'—' if score is None else f'{score:.1f} / 100'}{partial}")
        terminalreporter.write_line(f"report: {built.index}")
        for line in state.report_problems:
            terminalreporter.write_line(f"  {line}", yellow=True)
    elif state.settings.run_report_dir.is_dir():
        terminalreporter.write_line(f"reports: {state.settings.run_report_dir}")
        for line in state.report_problems:
            terminalreporter.write_line(f"  {line}", yellow=True)
    if state.swept:
        noun = "fault" if len(state.swept) == 1 else "faults"
        terminalreporter.write_line(f"swept {len(state.swept)} {noun} left open by a killed run (see the top)")
    for line in state.kept:
        terminalreporter.write_line(line)
    for line in state.unreverted:
        terminalreporter.write_line(f"{line}; its ledger entry stays for `clover cleanup`", yellow=True)
    if state.topology_warnings:
        terminalreporter.write_line(f"the topology has {len(state.topology_warnings)} warning(s):", yellow=True)
        for line in state.topology_warnings:
            terminalreporter.write_line(f"  {line}", yellow=True)
