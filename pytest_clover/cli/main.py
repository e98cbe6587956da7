"""The ``clover`` command: run, inspect and break a mesh from a shell.

Every command acts on one mesh, named by ``--backend`` (default ``local``) and ``--location`` (for the local
backend, its state folder: ``--state-dir``, ``$CLOVER_STATE_DIR``, else a per-user default). The global options
may come before or after the command (``clover --state-dir D up`` and ``clover up --state-dir D``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends.protocol import Backend, BackendClass, BackendOptions, MeshRecord, PodInfo
from ..errors import CloverError, ConfigError, MeshNotRunning, Problem

DEFAULT_TOPOLOGY = "fixtures/sdc"
BACKEND_ENV = "CLOVER_BACKEND"
DEFAULT_BACKEND = "local"


# --------------------------------------------------------------------------- which mesh


def _backend_class(args: argparse.Namespace) -> BackendClass:
    from ..backends.registry import backend_class

    return backend_class(args.backend)


def _record(args: argparse.Namespace) -> MeshRecord:
    location = args.location or _backend_class(args).default_location()
    return MeshRecord(args.backend, str(Path(location).expanduser()) if args.backend == "local" else location)


def _connect(args: argparse.Namespace) -> Backend:
    """The running mesh the options name; MeshNotRunning says how to start one."""
    record = _record(args)
    backend = _backend_class(args).connect(record)
    if backend is None:
        raise MeshNotRunning(f"no mesh is running: {record} is not up; start one with `clover up`")
    return backend


def _print_problems(problems: Sequence[Problem], stream: Any = None) -> None:
    # sys.stderr looked up when called, not bound at import: a caller may have replaced it since.
    for p in problems:
        print(str(p), file=stream or sys.stderr)


def _print_pods(pods: Sequence[PodInfo]) -> None:
    rows = [("NAME", "SERVICE", "VERSION", "READY", "STATUS", "RESTARTS", "ADDRESS")]
    for p in pods:
        address = f"{p.ip}:{next(iter(p.ports.values()), '')}" if p.ports else p.ip
        rows.append(
            (p.name, p.service, p.version or "-", "1/1" if p.ready else "0/1", p.phase, str(p.restarts), address)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _facts(info: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in info.items() if v not in (None, ""))


# --------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    topology = Path(args.topology)
    if not topology.exists():
        print(
            f"clover up: topology {topology} not found; run from the project folder or pass --topology DIR",
            file=sys.stderr,
        )
        return 2
    record = _record(args)
    options = BackendOptions(topology=topology, workdir=Path(record.location), seed=args.seed, keep=True)
    backend = _backend_class(args).from_options(options)
    started = time.monotonic()
    _print_problems(backend.deploy(timeout=args.timeout))
    info = backend.info()
    api: dict[str, Any] = {k: info.pop(k) for k in ("kube_api_url", "kubeconfig", "kube_api_error") if k in info}
    print(f"mesh ready in {time.monotonic() - started:.1f} s: {_facts(info)}")
    print(f"ingress: {backend.ingress_url()}")
    _print_api(api)
    _print_pods(backend.pods())
    if args.backend == DEFAULT_BACKEND and not args.location and not os.environ.get("CLOVER_STATE_DIR"):
        print(f"(the default mesh; elsewhere: export CLOVER_STATE_DIR={record.location})")
    return 0


def _print_api(api: dict[str, Any]) -> None:
    if api.get("kube_api_url"):
        print(f"kubernetes API: {api['kube_api_url']} (kubectl, the official client); for kubectl:")
        print(f"export KUBECONFIG={api['kubeconfig']}")
    elif api.get("kube_api_error"):
        print(f"kubernetes API: not serving: {api['kube_api_error']}")


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    """The path of the mesh's kubeconfig (``export KUBECONFIG=$(clover kubeconfig)``)."""
    info = _connect(args).info()
    path = info.get("kubeconfig")
    if not path:
        why = info.get("kube_api_error") or "this mesh serves no Kubernetes API (started with CLOVER_KUBE_API=0?)"
        raise CloverError(str(why))
    print(path)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    backend = _connect(args)
    record = backend.record()
    info = backend.info()
    pods = backend.pods()
    ingress = backend.ingress_url()
    if args.json:
        data = {**record.as_dict(), **info, "ingress_url": ingress, "pods": [p.as_dict() for p in pods]}
        print(json.dumps(data, indent=2))
        return 0
    print(f"{record}: {_facts(info)}")
    print(f"ingress: {ingress}")
    _print_pods(pods)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from ..istio.parse import read_yaml_file

    # Every file is read before the mesh is asked anything: a file that cannot be read (missing, not UTF-8, larger
    # than MAX_YAML_BYTES, which the embedded mesh's control socket could not take) stops the command with
    # nothing applied, rather than after the files before it.
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for path in args.files:
        text, problem = read_yaml_file(path)
        if problem is not None:
            problems.append(problem)
        elif text is not None:
            texts.append((str(path), text))
    if problems:
        raise ConfigError(problems)
    backend = _connect(args)
    for path, text in texts:
        _print_problems(backend.apply(text, source=path))
        print(f"applied {path}")
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    from ..faults import inject_fault

    headers = dict(_parse_header(h) for h in args.header or [])
    doc = inject_fault(
        _connect(args),
        args.service,
        delay=args.delay if args.kind == "delay" else None,
        abort_status=args.status if args.kind == "abort" else None,
        percent=args.percent,
        headers=headers or None,
        subset=args.subset,
    )
    what = f"delay {args.delay}" if args.kind == "delay" else f"abort {args.status}"
    scope = "".join(f" when {k}={v}" for k, v in headers.items())
    target = f"VirtualService/{doc['metadata']['name']}"
    print(f"injected {what} on {args.percent:g}% of requests to {args.service}{scope} ({target})")
    return 0


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CloverError(f"--header {text!r}: write NAME=VALUE, e.g. --header end-user=jason")
    return name.strip(), value.strip()


def cmd_clear(args: argparse.Namespace) -> int:
    from ..faults import clear_faults

    cleared = clear_faults(_connect(args))
    for name in cleared:
        print(f"cleared faults from VirtualService/{name}")
    if not cleared:
        print("no injected faults")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    backend = _connect(args)
    before = {p.name for p in backend.pods(args.service)}
    killed = backend.kill(args.service, count=args.count, percent=args.percent, grace=args.grace)
    print(f"killed {', '.join(killed)}")
    if args.wait:
        backend.wait_ready(args.timeout)
        replacements = sorted(p.name for p in backend.pods(args.service) if p.name not in before)
        print(f"replacements ready: {', '.join(replacements) or 'none'}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    backend = _connect(args)
    backend.scale(args.deployment, args.replicas, timeout=args.timeout)
    print(f"deployment {args.deployment} scaled to {args.replicas}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    # The embedded mesh's own tool: what its translator makes of a topology, checked by Envoy itself.
    from ..backends.local import render
    from ..backends.local.envoy import envoy_validate
    from ..istio import load_topology

    topo = load_topology(args.topology)
    _print_problems(topo.warnings)
    out = Path(args.out)
    statics = render.write(render.plan(topo, out.resolve()), out.resolve())
    print(f"rendered {len(statics)} proxies into {out}")
    failed = 0
    if args.check:
        for static in statics:
            ok, output = envoy_validate(static)
            print(f"{'ok  ' if ok else 'FAIL'} {static}")
            if not ok:
                failed += 1
                print(output, file=sys.stderr)
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ..istio import validate_each

    problems = validate_each(args.files)
    _print_problems(problems, sys.stdout)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    print(f"{errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def cmd_down(args: argparse.Namespace) -> int:
    from ..backends.protocol import Sweepable

    record = _record(args)
    cls = _backend_class(args)
    backend = cls.connect(record)
    if backend is not None:
        backend.teardown()
        print(f"{record} stopped and removed")
        return 0
    swept = [line for line in cls.sweep() if record.location in line] if isinstance(cls, Sweepable) else []
    if swept:
        print(f"{record} was not running; what it left is removed:")
        for line in swept:
            print(f"  {line}")
    else:
        print(f"no mesh runs at {record.location}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from ..backends.protocol import Sweepable
    from ..backends.registry import backend_class, names
    from ..faults import sweep_ledger, sweep_registered

    lines: list[str] = []
    ledgers = Path(args.report_dir) / ".clover"
    # Faults a killed pytest left open on a mesh that still runs (--clover-keep-mesh, clover up): first those of
    # the report dir given, then every ledger this user's runs listed, wherever their report dirs are.
    if ledgers.is_dir():
        lines += [f"fault swept: {line}" for line in sweep_ledger(ledgers)]
    lines += [f"fault swept: {line}" for line in sweep_registered()]
    settings = {k: v for k, v in (("context", args.context), ("kubeconfig", args.kubeconfig)) if v}
    if settings.get("context"):
        settings["allowed_contexts"] = settings["context"]  # named on the command line: that is the allow-list
    for name in names():
        cls = backend_class(name)
        if isinstance(cls, Sweepable):
            takes_settings = "settings" in inspect.signature(cls.sweep).parameters
            lines += cls.sweep(force=args.force, **({"settings": settings} if takes_settings and settings else {}))
    for line in lines:
        print(line)
    if not lines:
        print("nothing to clean up")
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    """Send requests through the ingress and show what served them (status, latency, hops)."""
    import uuid

    from .. import httpclient

    base = _connect(args).ingress_url()
    headers = dict(_parse_header(h) for h in args.header or [])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in range(args.count):
        started = time.perf_counter()
        try:
            resp = httpclient.request(
                "GET", base + args.path, timeout=30.0, headers={"x-request-id": str(uuid.uuid4()), **headers}
            )
        except httpclient.RequestException as exc:
            raise CloverError(f"the ingress at {base} did not answer: {exc}") from exc
        ms = (time.perf_counter() - started) * 1000
        latencies.append(ms)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        hops = (resp.headers.get("x-clover-hops") or resp.headers.get("server") or "").replace(", ", " → ")
        print(f"{resp.status_code}  {ms:7.1f} ms  {hops}")
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    codes = ", ".join(f"{n}× {code}" for code, n in sorted(statuses.items()))
    print(f"{args.count} requests: {codes}; p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return 0 if set(statuses) <= {200} else 1


def cmd_report(args: argparse.Namespace) -> int:
    if args.target == "trend":
        return _report_trend(args)
    return _report_run(args)


def _report_run(args: argparse.Namespace) -> int:
    from ..report.build import build_report

    run_dir = Path(args.target) if args.target else Path(args.report_dir) / "latest"
    if not run_dir.exists() and not args.target:
        print(
            f"clover report: {run_dir} does not exist; run the suites first (pytest suites) or give a run folder",
            file=sys.stderr,
        )
        return 1
    try:
        built = build_report(run_dir.resolve(), report_dir=Path(args.report_dir) if args.target is None else None)
    except OSError as exc:  # reading is checked file by file (ReportDataError); this is writing the report
        raise CloverError(f"cannot write the report into {run_dir}: {exc.strerror or exc}") from exc
    summary = built.summary
    score = summary["score"]["value"]
    totals = ", ".join(f"{v} {k}" for k, v in summary["totals"].items() if k != "tests" and v) or "no tests"
    partial = "  PARTIAL: " + summary["run"]["partial_reason"] if summary["run"]["partial"] else ""
    print(f"run {summary['run']['run_id']}: {summary['totals']['tests']} tests ({totals}){partial}")
    print(f"resilience score: {'—' if score is None else f'{score:.1f} / 100'}")
    for line in built.problems:
        print(f"  {line}", file=sys.stderr)
    print(f"report: {built.index}  (built in {built.seconds:.1f} s)")
    return 0


def _report_trend(args: argparse.Namespace) -> int:
    from ..report import history
    from ..report.build import render_trend

    report_dir = Path(args.report_dir)
    records, warnings = history.read(report_dir)
    for line in warnings:
        print(f"clover report trend: {line}", file=sys.stderr)
    runs = history.run_ids(records)
    if len(runs) < 2:
        where = report_dir / history.HISTORY_FILE
        print(
            f"clover report trend: {where} holds {len(runs)} run(s); a trend needs at least two "
            "(each pytest run with pytest-clover appends one)",
            file=sys.stderr,
        )
        return 1
    out = Path(args.out) if args.out else report_dir / "trend.png"
    try:
        render_trend(report_dir, out, last=args.last)
    except OSError as exc:
        raise CloverError(f"cannot write {out}: {exc.strerror or exc}; give --out a PNG file to write") from exc
    tests = len({r["nodeid"] for r in records})
    print(f"trend of {tests} tests over the last {min(len(runs), args.last)} of {len(runs)} runs: {out}")
    return 0


LOG_CONTAINERS = {"app": "app", "envoy": "istio-proxy", "istio-proxy": "istio-proxy", "access": "access"}


def cmd_logs(args: argparse.Namespace) -> int:
    backend = _connect(args)
    container = LOG_CONTAINERS[args.container]
    if container == "access":
        for entry in backend.access_log(args.pod):
            print(json.dumps(entry))
        return 0
    sys.stdout.write(backend.logs(args.pod, container))
    return 0


# --------------------------------------------------------------------------- the parser


def _whole_number(text: str, minimum: int, below: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} {below}: give {minimum} or more")
    return value


def _count(text: str) -> int:
    """A count of things to do (requests, pods, runs): a whole number, 1 or more."""
    return _whole_number(text, 1, "is too few")


def _replicas(text: str) -> int:
    return _whole_number(text, 0, "is negative")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _seconds(text: str) -> float:
    """A duration in seconds: 0 or more (a grace period may be 0)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} seconds is negative: give 0 or more")
    return value


def _timeout(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} seconds leaves no time: give more than 0")
    return value


def _share(text: str) -> float:
    """A share of requests, 0 to 100 % (0: the fault is in place but no request sees it)."""
    value = _number(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} % is not a share of requests: give 0 to 100")
    return value


def _pod_share(text: str) -> float:
    """A share of a service's pods: more than 0 and at most 100 % (at least one pod is killed)."""
    value = _number(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{text} % is not a share of the pods: give more than 0 and at most 100")
    return value


def _mesh_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options naming the mesh; on every subcommand too, where only a value actually given counts."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--backend",
        default=os.environ.get(BACKEND_ENV, DEFAULT_BACKEND) if top else argparse.SUPPRESS,
        help=f"The backend that runs the mesh (default: ${BACKEND_ENV}, else {DEFAULT_BACKEND})",
    )
    parser.add_argument(
        "--location",
        "--state-dir",
        dest="location",
        default=default,
        metavar="LOCATION",
        help="Where the mesh is: for the local backend its state folder (--state-dir; default: $CLOVER_STATE_DIR, "
        "else a per-user folder in the temp dir)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clover", description="Run, inspect and break a service mesh.")
    parser.add_argument("--version", action="version", version=f"pytest-clover {__version__}")
    _mesh_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _mesh_options(common, top=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], **kwargs)

    p = command("up", "Start the mesh in the background and wait until every pod is ready")
    p.add_argument(
        "--topology", default=DEFAULT_TOPOLOGY, help=f"Folder of Kubernetes + Istio YAML (default {DEFAULT_TOPOLOGY})"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="Seed for pod names, kills and the VNF's random errors (default 0)"
    )
    p.add_argument("--timeout", type=_timeout, default=60.0, help="Seconds to wait for readiness (default 60)")
    p.set_defaults(func=cmd_up)

    p = command("kubeconfig", "Print the path of the mesh's kubeconfig (export KUBECONFIG=$(clover kubeconfig))")
    p.set_defaults(func=cmd_kubeconfig)

    p = command("status", "Ingress URL and pods")
    p.add_argument("--json", action="store_true", help="Machine-readable output")
    p.set_defaults(func=cmd_status)

    p = command("apply", "Apply Istio YAML to the running mesh (takes effect before it returns)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_apply)

    p = command("inject", "Inject an Istio fault into a service's VirtualService")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in ("delay", "abort"):
        k = kinds.add_parser(kind, help=f"Inject an {kind}" if kind == "abort" else "Inject a delay", parents=[common])
        k.add_argument("service", help="Service whose callers see the fault (e.g. clover-server)")
        if kind == "delay":
            k.add_argument("--delay", required=True, help="Duration, e.g. 200ms or 1.5s")
        else:
            k.add_argument("--status", type=int, default=503, help="HTTP status to return (default 503)")
        k.add_argument("--percent", type=_share, default=100.0, help="Share of requests, 0-100 (default 100)")
        k.add_argument(
            "--header", action="append", metavar="NAME=VALUE", help="Only requests with this header (repeatable)"
        )
        k.add_argument("--subset", help="Only routes to this DestinationRule subset")
        k.set_defaults(func=cmd_inject)

    p = command("clear", "Remove every fault injected with `clover inject`")
    p.set_defaults(func=cmd_clear)

    p = command("kill", "Kill pods of a service; their Deployment replaces them")
    p.add_argument("service")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--count", type=_count, help="How many pods, 1 or more (default 1)")
    group.add_argument("--percent", type=_pod_share, help="Share of the service's pods, more than 0 and up to 100")
    p.add_argument(
        "--grace", type=_seconds, default=0.0, help="Seconds between SIGTERM and SIGKILL (default 0: SIGKILL)"
    )
    p.add_argument("--wait", action="store_true", help="Wait until the replacements are ready")
    p.add_argument("--timeout", type=_timeout, default=60.0)
    p.set_defaults(func=cmd_kill)

    p = command("scale", "Set a Deployment's replicas and wait for the pods and endpoints")
    p.add_argument("deployment")
    p.add_argument("replicas", type=_replicas)
    p.add_argument("--timeout", type=_timeout, default=60.0)
    p.set_defaults(func=cmd_scale)

    p = command("render", "Write the Envoy configs the embedded mesh would run, without starting anything")
    p.add_argument("--topology", default=DEFAULT_TOPOLOGY)
    p.add_argument("--out", default="clover-render", help="Output folder (default ./clover-render)")
    p.add_argument("--check", action="store_true", help="Also run `envoy --mode validate` on every config")
    p.set_defaults(func=cmd_render)

    p = command(
        "validate",
        "Check Kubernetes + Istio YAML; errors name file, object and field",
        description="Check Kubernetes + Istio YAML. A folder is checked as one topology (names unique, references "
        "resolved across its files); each file given is checked on its own.",
    )
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.set_defaults(func=cmd_validate)

    p = command("down", "Stop the mesh and remove its state")
    p.set_defaults(func=cmd_down)

    p = command("cleanup", "Sweep meshes whose owner died, and faults a killed run left open")
    p.add_argument("--force", action="store_true", help="Also stop meshes whose owner is alive")
    p.add_argument(
        "--report-dir", default="reports", help="Where pytest runs keep their fault ledgers (default reports)"
    )
    p.add_argument(
        "--context",
        help="Also sweep this kubeconfig context: revert what dead k8s-backend runs left, delete their namespaces",
    )
    p.add_argument("--kubeconfig", help="The kubeconfig of --context (default $KUBECONFIG, else ~/.kube/config)")
    p.set_defaults(func=cmd_cleanup)

    p = command("request", "Send requests through the ingress; print status, latency and hops")
    p.add_argument("path", nargs="?", default="/", help="Request path (default /)")
    p.add_argument("--count", type=_count, default=5, help="How many requests, 1 or more (default 5)")
    p.add_argument("--header", action="append", metavar="NAME=VALUE", help="Add a request header (repeatable)")
    p.set_defaults(func=cmd_request)

    p = command(
        "report",
        "Rebuild a run's report (HTML, plots, summary.json) from its saved data, or plot the trend across runs",
        description="clover report [RUN_DIR]: rebuild index.html, the plots, summary.json and windows.csv of a run "
        "from the files it saved (default: <report-dir>/latest). clover report trend: plot the resilience score per "
        "run, and per test p99 and error rate per phase and time to recover per fault (a soak: per fault kind), "
        "across the runs recorded in <report-dir>/history.jsonl (one plot across nights).",
    )
    p.add_argument("target", nargs="?", metavar="RUN_DIR|trend", help="A run folder (reports/<run-id>) or `trend`")
    p.add_argument("--report-dir", default="reports", help="Where runs and history.jsonl live (default reports)")
    p.add_argument("--out", help="trend: the PNG to write (default <report-dir>/trend.png)")
    p.add_argument(
        "--last", type=_count, default=30, help="trend: how many of the latest runs to plot, 1 or more (default 30)"
    )
    p.set_defaults(func=cmd_report)

    p = command("logs", "Print a pod's log")
    p.add_argument("pod")
    p.add_argument(
        "--container",
        default="app",
        choices=sorted(LOG_CONTAINERS),
        help="Which log (default app; envoy = istio-proxy)",
    )
    p.set_defaults(func=cmd_logs)

    # `clover k8s check`: the k8s backend's preflight (its module imports the kubernetes client only when run).
    from .k8s import add_parser as add_k8s_parser

    add_k8s_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        # Flushed here, not by the interpreter at exit, so that a reader gone away is seen below.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of our output went away (`clover up | head -1`): stop quietly, as a Unix tool killed by SIGPIPE.
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except ConfigError as exc:
        _print_problems(exc.problems)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        print(f"clover {args.command}: {errors} error(s) in the configuration", file=sys.stderr)
        return 1
    except CloverError as exc:
        print(f"clover {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clover {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered, flushed at exit, raises no BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # a stdout with no file descriptor (replaced, closed)
        sys.stdout = open(os.devnull, "w")  # left open: the interpreter flushes it at exit
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
