"""The settings of one pytest-clover session: command-line options, their ini mirrors, and early validation.

Every option lives in the ``clover`` group and has an ini key of the same name with ``_`` for ``-``
(``--clover-time-scale`` ↔ ``clover_time_scale``); the command line wins over the ini file. Bad values
stop the run in ``pytest_configure`` with a ``pytest.UsageError`` that names the option and says what to
write instead. This module imports only the standard library and pytest: it is loaded on every pytest run
in an environment where pytest-clover is installed.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_BACKEND = "local"
DEFAULT_TOPOLOGY = "fixtures/sdc"
DEFAULT_REPORT_DIR = "reports"
DEFAULT_SOAK_PLAN = "faults/schedules/nightly.yaml"
DEFAULT_CHECKPOINT_S = 300.0
LEDGER_FOLDER = ".clover"
"""Folder of the report dir that holds the fault ledgers (one JSON-lines file per pytest process)."""


@dataclass(frozen=True)
class CloverSettings:
    """What the options and ini keys decided, validated; one instance per pytest process."""

    backend: str = DEFAULT_BACKEND
    """Which backend deploys the mesh, by its registered name (the ``pytest_clover.backends`` entry points).
    ``local`` (default): the embedded mesh, every pod a local process behind a real Envoy; ``fake``: an in-memory
    mesh for tests of a suite's flow. A name no installed distribution registers stops the run at configure."""

    topology: Path = Path(DEFAULT_TOPOLOGY)
    """Folder of Kubernetes + Istio YAML the ``mesh`` fixture deploys, absolute (a relative value is
    resolved against pytest's rootdir, so the run does not depend on the current directory). Default
    ``fixtures/sdc``, the sample VNF."""

    topology_explicit: bool = False
    """True when the topology came from ``--clover-topology`` or the ini file: it is then validated in
    ``pytest_configure``. The default topology is validated only once a collected test needs the mesh, so
    that installing pytest-clover never breaks an unrelated project's test run."""

    report_dir: Path = Path(DEFAULT_REPORT_DIR)
    """Where load reports go, absolute (relative values are resolved against the rootdir). Each run gets
    ``<report_dir>/<run_id>/``, each test ``<report_dir>/<run_id>/<test node id, sanitized>/``. Default
    ``reports/``. The fault ledgers live in ``<report_dir>/.clover/``."""

    time_scale: float = 1.0
    """Multiplies every load phase duration (unitless, > 0). Default 1. Use 0.2 for quick CI runs, larger
    values for soaks: the suites' SLOs hold at any scale, only the statistics get thinner."""

    seed: int = 0
    """Seeds pod names, kills and the load generator's schedules, so a run can be replayed. Default: drawn
    at random per run and printed in the report header as ``--clover-seed=N``."""

    seed_explicit: bool = False
    """True when the seed came from ``--clover-seed`` or the ini file."""

    keep_mesh: bool = False
    """Leave the mesh running at session end (default False: torn down). The terminal summary says where
    its state lives and how to stop it (``clover --state-dir DIR down``). Faults are reverted either way."""

    worker_id: str | None = None
    """The pytest-xdist worker id (``gw0``…), None outside xdist. Each worker deploys its own mesh in its
    own state dir; meshes on one machine never collide (each claims its own loopback block)."""

    started: float = 0.0
    """Unix time the session started (the report's header)."""

    run_id: str = ""
    """Names this run's report folder: ``<yyyymmdd-hhmmss>-<controller pid>``; shared by xdist workers."""

    deploy_timeout: float = 120.0
    """Seconds the ``mesh`` fixture waits for every pod to be ready. Cold starts of the embedded mesh
    take a few seconds; 120 s leaves room for a loaded CI machine."""

    verify_timeout: float | None = None
    """Seconds a fault's ``.verify()`` polls for its effect. None (default): each kind's own default —
    10 s for delay and abort (their counters move only while traffic crosses the faulted route, so the
    test's load must be running), 30 s for kill and scale (replacements must start and become ready)."""

    compare: str | None = None
    """What each test's p99, error rate and recovery time are compared with (from ``<report_dir>/history.jsonl``):
    ``last`` (the previous run), a run id, or ``last:N`` with N ≥ 2 (per test, the median of its last N complete
    runs, partial ones left out: for nightly runs, where one noisy night should neither hide nor fake a
    regression). A regression past the thresholds below FAILS the test, with both numbers in the message.
    Default None: no comparison."""

    regression_p99: float = 25.0
    """Percent a phase's p99 may grow over the reference run before it is a regression (default 25 %). A rise
    of less than 5 ms never counts: at a few ms, scheduler noise alone moves p99 by more than 25 %."""

    regression_error_rate: float = 1.0
    """Percentage points a phase's error rate may grow over the reference run (default 1 point)."""

    regression_recovery: float = 50.0
    """Percent a recovery time may grow over the reference run (default 50 %). A rise of less than 1 s never
    counts (recovery is measured in 1-s windows); a test that recovered before and never does now always does."""

    dry_run: bool = False
    """Chaos Toolkit's dry mode for the whole run (default False): experiments run with ``dry: activities``
    (no action or probe executed, no load) and the ``faults`` fixture records its faults without touching
    the mesh and without verifying them; SLO objectives are reported but do not fail tests (with nothing
    injected, a fault phase's objectives say nothing). For checking a suite's flow, not the system."""

    experiment_rate: float = 20.0
    """Requests per second of the load that runs during every collected Chaos Toolkit experiment (open loop;
    default 20), unless the experiment starts its own with the ``pytest_clover.chaos.control`` control or the
    ``start_load`` action. 0 runs the experiment without load."""

    load_workers: int = 1
    """Load generator processes per load run (``--clover-load-workers``; default 1). With N ≥ 2 a locust master
    runs N local workers: the open-loop schedule is split exactly between them and their windows are merged
    exactly (the same percentiles as one histogram of all requests); a worker lost mid-run makes the test
    INCONCLUSIVE. For rates one process cannot hold (one core: about 18 k requests/s open loop against a trivial
    target here). Local workers need a core each beside the mesh: as many as pytest's CPUs or more is warned of
    (below one generator's capacity, two workers cost 1.15–1.25× its CPU per request on a 2-core VM)."""

    load_in_cluster: bool = False
    """Run the load generator's workers as pods of the cluster under test (``--clover-load-in-cluster``; default
    False: local processes). Needs a backend that runs load pods (the k8s backend); the pods carry no sidecar and
    send to the ingress gateway's in-cluster address (see :mod:`pytest_clover.load.incluster`)."""

    load_master: str = "cluster"
    """Where the in-cluster load's master runs (``--clover-load-master``): ``cluster`` (default: a pod, reached
    through a port-forward) or ``local`` (a process here, which the pods must reach)."""

    load_master_address: str | None = None
    """With ``--clover-load-master=local``: this machine's address that the cluster's pods reach
    (``--clover-load-master-address``)."""

    load_target: str | None = None
    """Where in-cluster load pods send (``--clover-load-target``); None: the ingress gateway as a pod reaches it."""

    soak_s: float | None = None
    """Wall-clock seconds each soak test runs (``--clover-soak=8h``; tests using the ``soak`` fixture or marked
    ``soak``). None (default): soak tests are deselected, so ``pytest suites`` never starts a night by accident."""

    soak_plan: Path = Path(DEFAULT_SOAK_PLAN)
    """The soak plan (``--clover-soak-plan``), absolute: load, SLOs, recovery, the chaos schedule and the
    guardrails. Default ``faults/schedules/nightly.yaml`` under the rootdir; read and checked at configure time
    when ``--clover-soak`` is given, so a typo stops the run before any mesh starts."""

    checkpoint_s: float = DEFAULT_CHECKPOINT_S
    """Wall-clock seconds between a soak's checkpoints (``--clover-checkpoint``, default 5 min): the test's data
    is written and the report rebuilt, so a crash loses at most this much."""

    backend_settings: dict[str, str] = field(default_factory=dict)
    """What the backend is told beyond the topology (:attr:`BackendOptions.settings`): the Kubernetes backend's
    kubeconfig, context, namespace, image, ingress URL, allowed contexts, blast radius; this run's id and whether it
    is a dry run. Strings, by name; a backend ignores the ones it does not know."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form values for backends and tests; not set from the command line."""

    @property
    def run_report_dir(self) -> Path:
        return self.report_dir / self.run_id

    @property
    def ledger_dir(self) -> Path:
        return self.report_dir / LEDGER_FOLDER

    def header_lines(self) -> list[str]:
        lines = [
            f"clover: backend={self.backend}, topology={self.topology}, time scale={self.time_scale:g}",
            f"Using --clover-seed={self.seed}",
        ]
        if self.dry_run:
            lines.append("clover: DRY RUN: no fault is injected, no experiment activity runs; SLO misses do not fail")
        if self.compare:
            against = (
                f"the median of the last {self.compare.removeprefix('last:')} runs"
                if self.compare.startswith("last:")
                else f"run {self.compare}"
            )
            lines.append(f"clover: comparing with {against} (history: {self.report_dir / 'history.jsonl'})")
        return lines


@dataclass(frozen=True)
class _Option:
    flag: str
    help: str
    ini_type: str = "string"
    flag_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS = (
    _Option(
        "--clover-backend",
        "Backend that deploys the mesh, by its registered name: local (default: the embedded mesh), fake, or one a "
        "plugin installs.",
    ),
    _Option(
        "--clover-topology",
        f"Folder of Kubernetes + Istio YAML to deploy, relative to the rootdir (default {DEFAULT_TOPOLOGY}).",
    ),
    _Option(
        "--clover-report-dir",
        f"Where load reports go, relative to the rootdir (default {DEFAULT_REPORT_DIR}/).",
    ),
    _Option(
        "--clover-time-scale",
        "Multiply every load phase duration: 0.2 for quick CI runs, larger for soaks (default 1).",
    ),
    _Option(
        "--clover-seed",
        "Seed for pod names, kills and load schedules (default: random, printed in the header to replay).",
    ),
    _Option(
        "--clover-keep-mesh",
        "Leave the mesh running after the session (prints its state dir and how to stop it).",
        ini_type="bool",
        flag_kwargs={"action": "store_true", "default": None},
    ),
    _Option(
        "--clover-compare",
        "Fail tests whose p99, error rate or recovery time regressed against an earlier run: last, a run id, or "
        "last:N (N >= 2: per test, the median of its last N complete runs) (read from <report-dir>/history.jsonl).",
    ),
    _Option(
        "--clover-regression-p99",
        "Percent growth of a phase's p99 over the compared run that counts as a regression (default 25; "
        "rises under 5 ms never count).",
    ),
    _Option(
        "--clover-regression-error-rate",
        "Percentage points of error-rate growth over the compared run that count as a regression (default 1).",
    ),
    _Option(
        "--clover-dry-run",
        "Chaos Toolkit's dry mode: experiments execute no activity and start no load; fault fixtures record "
        "faults without touching the mesh; SLO misses are reported, not failed.",
        ini_type="bool",
        flag_kwargs={"action": "store_true", "default": None},
    ),
    _Option(
        "--clover-experiment-rate",
        "Requests/s of the load run during each Chaos Toolkit experiment that starts none itself (default 20; "
        "0 for none).",
    ),
    _Option(
        "--clover-kubeconfig",
        "k8s backend: the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).",
    ),
    _Option("--clover-context", "k8s backend: the kubeconfig context (default: its current context)."),
    _Option(
        "--clover-namespace",
        "k8s backend: test the app already deployed in this namespace (existing mode; it must carry the annotation "
        "clover.opnfv.org/chaos=enabled). Default: deploy the topology into a new namespace clover-<run id>.",
    ),
    _Option("--clover-image", "k8s backend: the VNF image, in place of the topology's (and the reaper's)."),
    _Option("--clover-ingress-url", "k8s backend: where load enters the mesh (default: found from the Gateway)."),
    _Option(
        "--clover-max-kill-percent",
        "k8s backend: the largest share of a Service's ready pods one kill may take (default 50).",
    ),
    _Option(
        "--clover-allowed-contexts",
        "k8s backend: the only kubeconfig contexts the run may touch, comma-separated, * wildcards (default "
        "clover-*,kind-*: throw-away clusters).",
    ),
    _Option(
        "--clover-load-workers",
        "Load generator processes per load run (default 1): N ≥ 2 runs a locust master and N local workers, the "
        "schedule split and the percentiles merged exactly.",
    ),
    _Option(
        "--clover-load-in-cluster",
        "Run the load generator's workers as pods of the cluster under test (k8s backend): no sidecar, sending to "
        "the ingress gateway's in-cluster address; --clover-load-workers says how many.",
        ini_type="bool",
        flag_kwargs={"action": "store_true", "default": None},
    ),
    _Option(
        "--clover-load-master",
        "Where the in-cluster load's master runs: cluster (default: a pod, through a port-forward) or local.",
    ),
    _Option(
        "--clover-load-master-address",
        "With --clover-load-master=local: this machine's address the cluster's pods reach.",
    ),
    _Option(
        "--clover-load-target",
        "Where in-cluster load pods send (default: the ingress gateway's in-cluster address).",
    ),
    _Option("--clover-load-image", "k8s backend: the load generator's image for in-cluster load (docker/load)."),
    _Option(
        "--clover-soak",
        "Run the soak tests (the soak fixture, @pytest.mark.soak) for this wall-clock duration each: 8h, 90m, 90s. "
        "Without it they are deselected.",
    ),
    _Option(
        "--clover-soak-plan",
        f"The soak plan (load, SLOs, chaos schedule, guardrails), relative to the rootdir (default "
        f"{DEFAULT_SOAK_PLAN}).",
    ),
    _Option(
        "--clover-checkpoint",
        "How often a soak checkpoints its data and report, wall clock: 5m (default), 30s.",
    ),
    _Option(
        "--clover-regression-recovery",
        "Percent growth of a recovery time over the compared run that counts as a regression (default 50; "
        "rises under 1 s never count).",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("clover", "pytest-clover: chaos and resilience tests on a service mesh")
    for opt in OPTIONS:
        kwargs = opt.flag_kwargs or {"default": None, "metavar": opt.dest.removeprefix("clover_").upper()}
        group.addoption(opt.flag, dest=opt.dest, help=opt.help, **kwargs)
        if opt.ini_type == "bool":
            parser.addini(opt.dest, f"{opt.help} (ini mirror of {opt.flag})", type="bool", default=False)
        else:
            parser.addini(opt.dest, f"{opt.help} (ini mirror of {opt.flag})", default="")


def _raw(config: pytest.Config, opt: _Option) -> tuple[Any, str | None]:
    """The option's value and where it came from (the flag or the ini key), or (None, None) if unset."""
    value = config.getoption(opt.dest, None)
    if value is not None:
        return value, opt.flag
    ini = config.getini(opt.dest)
    if opt.ini_type == "bool":
        return (True, opt.dest) if ini else (None, None)
    if isinstance(ini, str) and ini.strip():
        return ini.strip(), f"{opt.dest} (ini)"
    return None, None


def _resolve(config: pytest.Config, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else Path(config.rootpath) / path


def parse_time_scale(text: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise pytest.UsageError(
            f"{where}={text!r} is not a number; give a factor > 0, e.g. 0.2 for a quick run or 3 for a soak"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise pytest.UsageError(
            f"{where}={text!r} must be a finite number > 0 (it multiplies every phase duration); e.g. 0.2 or 3"
        )
    return value


def parse_seed(text: Any, where: str) -> int:
    try:
        value = int(str(text), 10)
    except ValueError:
        raise pytest.UsageError(f"{where}={text!r} is not an integer; give e.g. --clover-seed=1234") from None
    if not 0 <= value < 2**32:
        raise pytest.UsageError(f"{where}={value} is out of range; give an integer from 0 to {2**32 - 1}")
    return value


def parse_workers(text: Any, where: str) -> int:
    """A count of load worker processes: a whole number from 1 to 64."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise pytest.UsageError(f"{where}={text!r} is not a whole number; give e.g. {where}=2") from None
    if not 1 <= value <= 64:
        raise pytest.UsageError(f"{where}={text!r} must be from 1 to 64 load worker processes; give e.g. {where}=2")
    return value


def parse_threshold(text: Any, where: str) -> float:
    try:
        value = float(str(text).strip().removesuffix("%").strip())
    except ValueError:
        raise pytest.UsageError(f"{where}={text!r} is not a number; give e.g. {where}=25") from None
    if not math.isfinite(value) or value < 0:
        raise pytest.UsageError(f"{where}={text!r} must be a number ≥ 0; give e.g. {where}=25")
    return value


def parse_compare(text: Any, where: str) -> str:
    """``--clover-compare``: ``last``, ``last:N`` (N ≥ 2) or a run id; a UsageError naming ``where`` otherwise."""
    from ..report.history import median_count

    value = str(text).strip()
    if not value or any(c in value for c in "/\\") or value.startswith("."):
        raise pytest.UsageError(
            f"{where}={text!r}: give `last`, `last:N` (the median of the last N runs, N ≥ 2) or a run id (a folder "
            "name under the report dir, e.g. 20261121-141500-4242)"
        )
    try:
        median_count(value)
    except ValueError as exc:
        raise pytest.UsageError(f"{where}={text!r}: {exc}") from None
    return value


def check_writable(folder: Path, where: str) -> None:
    """UsageError unless ``folder`` can be made and written: found now, not after the mesh started and a test ran.

    Nothing is left behind: the check makes (and removes) an empty folder in the nearest folder that exists.
    """
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise pytest.UsageError(f"{where}: {folder} cannot be made: {existing} is a file; pass --clover-report-dir=DIR")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".clover-check-", dir=existing))
    except OSError as exc:
        raise pytest.UsageError(
            f"{where}: {folder} cannot be written ({exc.strerror or exc}); pass --clover-report-dir=DIR with a "
            "folder you can write to"
        ) from None


def check_backend(value: str, where: str) -> str:
    """The backend's name if a distribution registers it; UsageError naming the installed ones otherwise."""
    from ..backends.registry import backend_class
    from ..errors import BackendError

    try:
        backend_class(value)
    except BackendError as exc:
        raise pytest.UsageError(f"{where}={value}: {exc}") from None
    return value


def validate_topology(path: Path, where: str) -> None:
    """Raise UsageError unless ``path`` holds a topology that loads; lists every problem found."""
    if not path.exists():
        raise pytest.UsageError(
            f"{where}: topology {path} does not exist; pass --clover-topology=DIR "
            "(a folder of Kubernetes + Istio YAML, relative to the rootdir)"
        )
    from ..errors import ConfigError
    from ..istio import load_topology

    try:
        load_topology(path)
    except ConfigError as exc:
        raise pytest.UsageError(f"{where}: topology {path} cannot be deployed: {exc}") from None


def load_settings(config: pytest.Config) -> CloverSettings:
    """Read and validate every clover option (UsageError on the first bad one)."""
    values: dict[str, Any] = {}

    backend, where = _raw(config, OPTIONS[0])
    if backend is not None:
        values["backend"] = check_backend(str(backend), where or "--clover-backend")

    topology, where = _raw(config, OPTIONS[1])
    if topology is not None:
        values["topology"] = _resolve(config, str(topology))
        values["topology_explicit"] = True
        validate_topology(values["topology"], where or "--clover-topology")
    else:
        values["topology"] = _resolve(config, DEFAULT_TOPOLOGY)

    report_dir, where = _raw(config, OPTIONS[2])
    values["report_dir"] = _resolve(config, str(report_dir) if report_dir is not None else DEFAULT_REPORT_DIR)
    if values["report_dir"].exists() and not values["report_dir"].is_dir():
        raise pytest.UsageError(
            f"{where or '--clover-report-dir'}: {values['report_dir']} exists and is not a folder; "
            "pass --clover-report-dir=DIR"
        )
    check_writable(values["report_dir"], where or "--clover-report-dir")

    scale, where = _raw(config, OPTIONS[3])
    if scale is not None:
        values["time_scale"] = parse_time_scale(str(scale), where or "--clover-time-scale")

    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    seed, where = _raw(config, OPTIONS[4])
    if seed is not None:
        values["seed"] = parse_seed(seed, where or "--clover-seed")
        values["seed_explicit"] = True
    elif workerinput is not None and "clover_seed" in workerinput:
        # pytest-xdist: every worker uses the seed the controller drew, so one flag replays the whole run.
        values["seed"] = int(workerinput["clover_seed"])
    else:
        values["seed"] = random.Random().getrandbits(32)

    keep, _ = _raw(config, OPTIONS[5])
    values["keep_mesh"] = bool(keep)

    compare, where = _raw(config, OPTIONS[6])
    if compare is not None:
        values["compare"] = parse_compare(compare, where or "--clover-compare")
    by_flag = {opt.flag: opt for opt in OPTIONS}
    for flag, key in (
        ("--clover-regression-p99", "regression_p99"),
        ("--clover-regression-error-rate", "regression_error_rate"),
        ("--clover-regression-recovery", "regression_recovery"),
        ("--clover-experiment-rate", "experiment_rate"),
    ):
        raw, where = _raw(config, by_flag[flag])
        if raw is not None:
            values[key] = parse_threshold(raw, where or flag)
    dry, _ = _raw(config, by_flag["--clover-dry-run"])
    values["dry_run"] = bool(dry)
    values.update(_soak_settings(config, by_flag))
    workers, where = _raw(config, by_flag["--clover-load-workers"])
    if workers is not None:
        values["load_workers"] = parse_workers(workers, where or "--clover-load-workers")
    values.update(_in_cluster_settings(config, by_flag, values.get("backend")))
    if values.get("load_workers", 1) > 1 and not values["load_in_cluster"] and not hasattr(config, "workerinput"):
        _warn_if_workers_crowd(config, values["load_workers"])

    values["started"] = time.time()
    if workerinput is not None:
        values["worker_id"] = str(workerinput.get("workerid", "gw"))
        values["run_id"] = str(workerinput.get("clover_run_id", "")) or _new_run_id()
    else:
        values["run_id"] = _new_run_id()
    values["backend_settings"] = _backend_settings(config, values)
    if "backend" in values:
        # Only for a backend named explicitly: its class is loaded already (check_backend), while the default's
        # would cost an import on every pytest run of a project that merely has pytest-clover installed.
        check_backend_settings(values["backend"], values["backend_settings"])
    return CloverSettings(**values)


def _warn_if_workers_crowd(config: pytest.Config, workers: int) -> None:
    """Local workers pay only with a core each to spare beside the mesh; say so when this machine has none."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < cpus:
        return
    from ..errors import CloverWarning

    config.issue_config_time_warning(
        CloverWarning(
            f"--clover-load-workers={workers}: pytest has {cpus} CPU(s) here, shared by the {workers} load workers "
            "and the mesh under test. A worker adds rate only with a core of its own to spare; here the workers "
            "cost more CPU per request than one generator and take cores from the mesh. Use at most "
            f"{max(1, cpus - 1)} here, or --clover-load-in-cluster on a cluster."
        ),
        stacklevel=2,
    )


def _in_cluster_settings(config: pytest.Config, by_flag: dict[str, _Option], backend: str | None) -> dict[str, Any]:
    """``load_in_cluster`` and its companions, checked together: a master place, its address, a target URL, and a
    backend that can run load pods."""
    values: dict[str, Any] = {}
    in_cluster, _ = _raw(config, by_flag["--clover-load-in-cluster"])
    master, master_where = _raw(config, by_flag["--clover-load-master"])
    address, _ = _raw(config, by_flag["--clover-load-master-address"])
    target, target_where = _raw(config, by_flag["--clover-load-target"])
    values["load_in_cluster"] = bool(in_cluster)
    if master is not None:
        place = str(master).strip().lower()
        if place not in ("cluster", "local"):
            raise pytest.UsageError(
                f"{master_where}={master!r}: the load master runs in the cluster or here; give cluster or local"
            )
        values["load_master"] = place
    if address is not None and str(address).strip():
        values["load_master_address"] = str(address).strip()
    if target is not None and str(target).strip():
        if not str(target).startswith(("http://", "https://")):
            raise pytest.UsageError(f"{target_where}={target!r} is not a URL; give e.g. http://ingress.example:80")
        values["load_target"] = str(target).strip()
    if not values["load_in_cluster"]:
        return values
    if values.get("load_master") == "local" and "load_master_address" not in values:
        raise pytest.UsageError(
            "--clover-load-master=local needs --clover-load-master-address: the address of this machine that the "
            "cluster's pods connect to (or run the master in the cluster: --clover-load-master=cluster)"
        )
    from ..backends.registry import backend_class
    from ..errors import CloverError

    name = backend or DEFAULT_BACKEND
    try:
        cls = backend_class(name)
    except CloverError:
        return values  # check_backend says it
    if not callable(getattr(cls, "start_load_pods", None)):
        raise pytest.UsageError(
            f"--clover-load-in-cluster: the {name} backend cannot run load pods (it has no cluster to put them in); "
            "use a cluster backend (--clover-backend=k8s), or --clover-load-workers=N for local worker processes"
        )
    return values


def _soak_settings(config: pytest.Config, by_flag: dict[str, _Option]) -> dict[str, Any]:
    """``soak_s``, ``soak_plan``, ``checkpoint_s``; with ``--clover-soak``, the plan is read and checked now."""
    values: dict[str, Any] = {}
    raw_plan, plan_where = _raw(config, by_flag["--clover-soak-plan"])
    values["soak_plan"] = _resolve(config, str(raw_plan) if raw_plan is not None else DEFAULT_SOAK_PLAN)
    soak, soak_where = _raw(config, by_flag["--clover-soak"])
    checkpoint, checkpoint_where = _raw(config, by_flag["--clover-checkpoint"])
    if soak is None and checkpoint is None:
        return values
    from ..errors import ConfigError
    from ..soak.schedule import load_plan, parse_duration

    try:
        if checkpoint is not None:
            values["checkpoint_s"] = parse_duration(
                checkpoint, file="<command line>", obj="option", field=checkpoint_where or "--clover-checkpoint"
            )
        if soak is not None:
            values["soak_s"] = parse_duration(soak, file="<command line>", obj="option", field=soak_where or "")
            load_plan(values["soak_plan"])
    except ConfigError as exc:
        where = plan_where or "--clover-soak-plan (default)"
        raise pytest.UsageError(f"{exc}\n(the plan is {values['soak_plan']}, from {where})") from None
    return values


_BACKEND_FLAGS = {
    "--clover-kubeconfig": "kubeconfig",
    "--clover-context": "context",
    "--clover-namespace": "namespace",
    "--clover-image": "image",
    "--clover-load-image": "load_image",
    "--clover-ingress-url": "ingress_url",
    "--clover-max-kill-percent": "max_kill_percent",
    "--clover-allowed-contexts": "allowed_contexts",
}


def _backend_settings(config: pytest.Config, values: dict[str, Any]) -> dict[str, str]:
    by_flag = {opt.flag: opt for opt in OPTIONS}
    out: dict[str, str] = {}
    for flag, key in _BACKEND_FLAGS.items():
        raw, _ = _raw(config, by_flag[flag])
        if raw is not None:
            out[key] = str(raw)
    if "kubeconfig" in out:
        out["kubeconfig"] = str(_resolve(config, out["kubeconfig"]))
    worker = values.get("worker_id")
    # Each xdist worker deploys its own mesh: on a cluster, its own namespace.
    out["run_id"] = f"{values['run_id']}-{worker}" if worker else str(values["run_id"])
    out["dry_run"] = "true" if values.get("dry_run") else "false"
    return out


def check_backend_settings(backend: str, settings: dict[str, str]) -> None:
    """Let the backend refuse bad settings now (UsageError), if it can check them without touching the mesh:
    a backend class with a ``validate_settings(settings)`` classmethod (the k8s backend checks its context against
    the allow-list here, before any client is built)."""
    from ..backends.registry import backend_class
    from ..errors import CloverError

    try:
        cls = backend_class(backend)
    except CloverError:
        return  # check_backend said it already
    validate = getattr(cls, "validate_settings", None)
    if not callable(validate):
        return
    try:
        validate(settings)
    except CloverError as exc:
        raise pytest.UsageError(f"--clover-backend={backend}: {exc}") from None


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


SETTINGS_KEY = pytest.StashKey[CloverSettings]()
