"""What the Xtesting driver reports, read from a pytest-clover run's ``summary.json``.

Pure functions (no Xtesting import): the pytest command line built from ``testcases.yaml``'s ``run.args``, the
Xtesting ``result`` (the pass ratio) and ``details`` (per test the verdict, SLO rows, recovery and faults; the
score; the report path; the replay flags; and on failure the one-line ``reason`` a CI reader needs).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_clover.errors import ConfigError

# run.args key -> the pytest option it becomes (a value is appended as ``--opt=value``).
_VALUE_OPTIONS = {
    "backend": "--clover-backend",
    "kubeconfig": "--clover-kubeconfig",
    "context": "--clover-context",
    "namespace": "--clover-namespace",
    "time_scale": "--clover-time-scale",
    "seed": "--clover-seed",
    "topology": "--clover-topology",
}
KNOWN_ARGS = frozenset(_VALUE_OPTIONS) | {"paths", "markers", "keyword", "extra", "python", "dir", "max_duration"}
"""Every ``run.args`` key the driver understands; any other is a typo in ``testcases.yaml`` and refused."""


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_environment(
    args: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, case: str = "run.args"
) -> dict[str, Any]:
    """``run.args`` with ``${VAR}`` and ``${VAR:-default}`` replaced from the environment, in strings and in lists of
    strings, so one ``testcases.yaml`` serves every cluster (Xtesting passes ``run.args`` through as written).

    A key whose value expands to the empty string is dropped (``context: ${CLOVER_CONTEXT:-}`` means "the
    kubeconfig's current context" when the variable is unset). A variable that is unset and has no default is an
    error naming the case and the key: a cluster case must not quietly run against whatever the defaults point at.
    """
    env = os.environ if environ is None else environ

    def expand(value: Any, key: str) -> Any:
        if isinstance(value, str):

            def one(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                raise ConfigError.single(
                    "testcases.yaml",
                    case,
                    key,
                    f"names the environment variable {name}, which is not set: export {name}=... before run_tests, "
                    f"or give a default as ${{{name}:-value}}",
                )

            return _VARIABLE.sub(one, value)
        if isinstance(value, list):
            return [expand(item, key) for item in value]
        return value

    expanded = {key: expand(value, key) for key, value in args.items()}
    return {key: value for key, value in expanded.items() if value != ""}


def pytest_command(python: str, args: Mapping[str, Any], report_dir: Path) -> list[str]:
    """The child's command line: ``<python> -m pytest <paths> <options>``, reports into ``report_dir``."""
    unknown = sorted(set(args) - KNOWN_ARGS)
    if unknown:
        raise ConfigError.single(
            "testcases.yaml",
            "run.args",
            ", ".join(unknown),
            f"unknown key(s); fix the spelling, the known ones are {', '.join(sorted(KNOWN_ARGS))}",
        )
    paths = args.get("paths", ["suites"])
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ConfigError.single("testcases.yaml", "run.args", "paths", "empty: name suites, faults or a test folder")
    command = [python, "-m", "pytest", *map(str, paths), "-p", "no:cacheprovider", f"--clover-report-dir={report_dir}"]
    for key, option in _VALUE_OPTIONS.items():
        if args.get(key) is not None:
            command.append(f"{option}={args[key]}")
    if args.get("markers"):
        command += ["-m", str(args["markers"])]
    if args.get("keyword"):
        command += ["-k", str(args["keyword"])]
    extra = args.get("extra") or []
    if isinstance(extra, str) or not isinstance(extra, Sequence):
        raise ConfigError.single("testcases.yaml", "run.args", "extra", "must be a list of pytest arguments: ['-x']")
    command += [str(item) for item in extra]
    return command


def run_folders(report_dir: Path) -> set[Path]:
    """The run folders (``<run-id>/`` holding a ``summary.json``) already under ``report_dir``."""
    if not report_dir.is_dir():
        return set()
    return {p.parent.resolve() for p in report_dir.glob("*/summary.json") if not p.parent.is_symlink()}


def load_summary(run_folder: Path) -> dict[str, Any]:
    """The run's ``summary.json`` as a dict."""
    data: dict[str, Any] = json.loads((run_folder / "summary.json").read_text(encoding="utf-8"))
    return data


def pass_ratio(summary: Mapping[str, Any]) -> float:
    """Xtesting's ``result``: passed / (passed + failed) in percent; errors and inconclusive tests count as failed,
    skipped and interrupted ones are left out; 0 when no test reached a verdict."""
    totals = summary.get("totals", {})
    passed = int(totals.get("passed", 0))
    failed = int(totals.get("failed", 0)) + int(totals.get("error", 0)) + int(totals.get("inconclusive", 0))
    if passed + failed == 0:
        return 0.0
    return round(100.0 * passed / (passed + failed), 2)


def _first_violation(test: Mapping[str, Any]) -> str:
    for row in test.get("slo", []):
        if not row.get("ok", True):
            return (
                f"SLO {row['metric']} in phase {row['phase']}: observed {row['observed']}, threshold {row['threshold']}"
            )
    for row in test.get("regressions", []):
        if not row.get("ok", True):
            return f"regression of {row['metric']} in phase {row['phase']}: {row['observed']} > {row['allowed']}"
    return _headline(str(test.get("message", ""))) or str(test.get("outcome", "failed"))


def _headline(message: str) -> str:
    """The line of a pytest failure text that names the exception (pytest's first ``E   `` line: the text opens
    with the test's arguments and source), else its first line (a message of pytest-clover's own)."""
    lines = [line for line in message.splitlines() if line.strip()]
    raised = [line[1:].strip() for line in lines if line.startswith("E ")]
    if raised:
        return raised[0]
    return lines[0].strip() if lines else ""


def failure_reason(summary: Mapping[str, Any]) -> str:
    """One line naming each test that did not pass and its first violated SLO (else its first message line);
    empty when every test that reached a verdict passed."""
    bad = [t for t in summary.get("tests", []) if t.get("outcome") in ("failed", "error", "inconclusive")]
    if not bad:
        return ""
    parts = [f"{t['nodeid']} {t['outcome'].upper()} ({_first_violation(t)})" for t in bad]
    return f"{len(bad)} of {summary['totals']['tests']} tests did not pass: " + "; ".join(parts)


def details(summary: Mapping[str, Any], run_folder: Path) -> dict[str, Any]:
    """Xtesting ``details`` for a finished run (pushed to the TestAPI as they are)."""
    run = summary.get("run", {})
    tests = [
        {
            "name": t["nodeid"],
            "verdict": t["outcome"],
            "message": t.get("message", ""),
            "slo": t.get("slo", []),
            "recovery_s": t.get("recovery_s", {}),
            "faults": [
                {k: f.get(k) for k in ("kind", "target", "description", "verified", "start_s", "end_s")}
                for f in t.get("faults", [])
            ],
        }
        for t in summary.get("tests", [])
    ]
    return {
        "tests": tests,
        "totals": summary.get("totals", {}),
        "score": summary.get("score", {}).get("value"),
        "report": str(run_folder),
        "report_html": str(run_folder / "index.html"),
        "run_id": run.get("run_id"),
        "backend": run.get("backend"),
        "partial": run.get("partial", False),
        "replay": run.get("replay", ""),
        "seed": run.get("seed"),
        "time_scale": run.get("time_scale"),
        "reason": failure_reason(summary),
    }
