"""Chaos Toolkit actions on a clover mesh: faults, pod kills, scaling, load.

Use them from an experiment with ``provider: {type: python, module: pytest_clover.chaos.actions, func: …}``;
the mesh is named by the experiment's ``configuration`` (see :mod:`pytest_clover.chaos.mesh`).

Every action checks its effect before it returns — the fault in force in Envoy (its counters moving while
load runs, else the route configuration of a caller's Envoy), the killed pods gone and replaced, the new
endpoints or route weights in a caller's Envoy — and raises ``chaoslib.exceptions.ActivityFailed`` when it
is not seen: a failed injection is never reported as a success. An Istio fault whose effect was not seen
is taken back before the action fails. Each returns a small JSON-ready dict saying what was done, which the
journal records.

Faults stay in force until :func:`clear_faults`: put it in the experiment's ``rollbacks`` and run with
``--rollback-strategy always`` (Chaos Toolkit skips rollbacks after a failed run by default).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from typing import Any

from ..backends.protocol import Backend
from ..errors import CloverError
from ..faults import FaultHandle, Faults, IstioFault
from ..faults import clear_faults as clear_istio_faults
from ..faults.istio import require_service
from ..istio.documents import ORIGINAL_ANNOTATION, faulted_virtual_services, restored_document
from . import load_sessions
from .mesh import ActivityFailed, backend_from_configuration, failures, record_from_configuration
from .verify import check_envoy_clean, check_envoy_fault, poll

__all__ = [
    "clear_faults",
    "inject_abort",
    "inject_delay",
    "kill_pods",
    "scale_deployment",
    "shift_traffic",
    "start_load",
    "stop_load",
]

VERIFY_MODES = ("auto", "traffic", "config")
FIRST_WINDOW_S = 5.0
"""start_load returns once the generator's first 1-second window arrived; it fails if none came this soon."""
Configuration = dict[str, Any] | None


# --------------------------------------------------------------------------- arguments


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """A number from the experiment (YAML numbers, or strings from ``--var``), range-checked."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ActivityFailed(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            span = f" from {low:g} to {high:g}"
        elif low is not None:
            span = f" of {low:g} or more"
        else:
            span = ""
        raise ActivityFailed(f"{name} must be a number{span}, got {value!r}")
    return number


def _integer(name: str, value: Any, *, low: int = 0) -> int:
    number = _number(name, value, low=low)
    if number != int(number):
        raise ActivityFailed(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ActivityFailed(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _headers(value: Any) -> dict[str, str] | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ActivityFailed(f"headers must map header names to values, e.g. {{end-user: jason}}, got {value!r}")
    return {k: str(v) for k, v in value.items()}


def _verify_mode(value: Any) -> str:
    if value not in VERIFY_MODES:
        raise ActivityFailed(f"verify must be one of {', '.join(VERIFY_MODES)}, got {value!r}")
    return str(value)


# --------------------------------------------------------------------------- shared steps


def _faults(backend: Backend) -> Faults:
    session = load_sessions.find(backend)
    timeline = session.timeline if session is not None and session.summary is None else None
    return Faults(backend, timeline=timeline)


def _known_service(backend: Backend, service: str) -> None:
    """Fail at once on a service the mesh does not have (a typo would otherwise time out verifying)."""
    with failures(f"look up service {service}"):
        require_service(backend, service)


def _load_running(backend: Backend) -> bool:
    session = load_sessions.find(backend)
    return session is not None and session.running


def _fail_and_revert(handle: FaultHandle, exc: CloverError) -> ActivityFailed:
    """The ActivityFailed for a fault whose effect was not seen, after taking the fault back."""
    undone = "it was reverted"
    try:
        handle.revert()
    except CloverError as revert_exc:
        undone = f"reverting it failed too ({revert_exc}); run clear_faults or `clover clear`"
    message = str(exc) if handle.description in str(exc) else f"{handle.description}: {exc}"
    return ActivityFailed(f"{message} ({undone})")


def _http_fault(
    kind: str,
    service: Any,
    configuration: Configuration,
    verify: Any,
    timeout: Any,
    percent: Any,
    headers: Any,
    subset: Any,
    source_labels: Any = None,
    **value: Any,
) -> dict[str, Any]:
    service = _text("service", service)
    pct = _number("percent", percent, low=0, high=100)
    scope = _headers(headers)
    labels = _headers(source_labels)
    subset = _text("subset", subset) if subset is not None else None
    mode = _verify_mode(verify)
    limit = _number("timeout", timeout, low=0)
    backend = backend_from_configuration(configuration)
    _known_service(backend, service)
    faults = _faults(backend)
    with failures(f"inject {kind} on {service}"):
        if kind == "delay":
            handle: FaultHandle = faults.delay(
                service, value["delay"], percent=pct, headers=scope, subset=subset, source_labels=labels
            )
        else:
            handle = faults.abort(
                service, value["status"], percent=pct, headers=scope, subset=subset, source_labels=labels
            )
    load_sessions.touched(backend)
    checks = [mode]
    if mode == "auto":
        # Traffic moves Envoy's fault counters only if it carries the fault's headers; the load sends none.
        # Source-scoped faults live in the matching callers' routes only: their counters are the evidence.
        checks = ["config", "traffic"] if _load_running(backend) and scope is None else ["config"]
        if labels:
            checks = ["traffic"]
    details = []
    try:
        if "config" in checks:
            details.append(
                poll(
                    lambda: check_envoy_fault(
                        backend, service, kind, delay=value.get("delay"), status=value.get("status"), percent=pct
                    ),
                    limit,
                    handle.description,
                )
            )
        if "traffic" in checks:
            handle.verify(timeout=limit)
            details.append(handle.detail)
    except CloverError as exc:
        raise _fail_and_revert(handle, exc) from exc
    doc = handle.applied[0] if isinstance(handle, IstioFault) and handle.applied else {}
    return {
        "fault": kind,
        "service": service,
        **({"delay": value["delay"]} if kind == "delay" else {"http_status": value["status"]}),
        "percent": pct,
        "headers": scope,
        "subset": subset,
        "source_labels": labels,
        "virtual_service": (doc.get("metadata") or {}).get("name"),
        "description": handle.description,
        "verified_by": " and ".join(checks),
        "verified": "; ".join(details),
    }


# --------------------------------------------------------------------------- faults


def inject_delay(
    service: str,
    delay: str,
    percent: float = 100.0,
    headers: dict[str, str] | None = None,
    subset: str | None = None,
    verify: str = "auto",
    timeout: float = 10.0,
    source_labels: dict[str, str] | None = None,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Delay ``percent`` % (0–100) of the requests callers send to ``service`` by ``delay`` (a duration: "500ms",
    "1.5s"), as an Istio fault merged into the service's VirtualService (its routes are kept).

    ``headers`` limits the fault to requests carrying these exact header values; ``source_labels`` to requests
    from pods with these labels (``{app: http-lb, version: v2}``: what a bad v2 caller would cause); ``subset``
    to the routes that send traffic to that DestinationRule subset (a whole weighted route, as Istio does).
    ``verify``: ``traffic`` waits until Envoy's fault counter
    moves (needs load reaching the service), ``config`` until a caller's Envoy holds the delay in its routes;
    ``auto`` (default) checks ``config``, then also ``traffic`` while a load
    started by start_load or the control runs and the fault is not header-scoped (at a low rate × percent, use
    ``config``). ``timeout``: seconds each check may wait. Raises ActivityFailed (and takes the fault back) when
    the effect is not seen. Undo with clear_faults.
    """
    _text("delay", delay)
    return _http_fault(
        "delay",
        service,
        configuration,
        verify,
        timeout,
        percent,
        headers,
        subset,
        source_labels,
        delay=str(delay).strip(),
    )


def inject_abort(
    service: str,
    http_status: int = 503,
    percent: float = 100.0,
    headers: dict[str, str] | None = None,
    subset: str | None = None,
    verify: str = "auto",
    timeout: float = 10.0,
    source_labels: dict[str, str] | None = None,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Answer ``percent`` % (0–100) of the requests callers send to ``service`` with HTTP ``http_status``
    (200–599) instead of forwarding them; Istio never retries an injected abort.

    ``headers``, ``source_labels``, ``subset``, ``verify`` and ``timeout`` (seconds) as for inject_delay. Undo
    with clear_faults.
    """
    status = _integer("http_status", http_status, low=200)
    if status > 599:
        raise ActivityFailed(f"http_status must be from 200 to 599, got {http_status!r}")
    return _http_fault(
        "abort", service, configuration, verify, timeout, percent, headers, subset, source_labels, status=status
    )


def shift_traffic(
    service: str,
    weights: dict[str, int],
    timeout: float = 10.0,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Split ``service``'s default routes across DestinationRule subsets by ``weights``, whole percentages that
    add up to 100 (e.g. ``{"v1": 90, "v2": 10}``), in its VirtualService.

    Routes with a ``match`` keep their destination. Verified in a caller's Envoy (its route weights) within
    ``timeout`` seconds. Undo with clear_faults, which puts the VirtualService back exactly as it was.
    """
    service = _text("service", service)
    if not isinstance(weights, Mapping) or not weights:
        raise ActivityFailed(f"weights must map subsets to percentages, e.g. {{v1: 90, v2: 10}}, got {weights!r}")
    split = {str(k): _integer(f"weights[{k}]", v) for k, v in weights.items()}
    limit = _number("timeout", timeout, low=0)
    backend = backend_from_configuration(configuration)
    _known_service(backend, service)
    with failures(f"shift traffic of {service}"):
        handle = _faults(backend).shift(service, split)
    load_sessions.touched(backend)
    try:
        handle.verify(timeout=limit)
    except CloverError as exc:
        raise _fail_and_revert(handle, exc) from exc
    return {
        "service": service,
        "weights": split,
        "virtual_service": handle.applied[0]["metadata"]["name"],
        "description": handle.description,
        "verified": handle.detail,
    }


def clear_faults(timeout: float = 10.0, configuration: Configuration = None) -> dict[str, Any]:
    """Put every VirtualService a clover fault or traffic shift touched back exactly as it was (from the original
    spec kept in its annotation), or delete it if clover created it — whoever injected the faults.

    Verified within ``timeout`` seconds: the objects in force are the originals, and a caller's Envoy has no
    fault left on the routes of their hosts. Belongs in the experiment's rollbacks. Returns what was cleared.
    """
    limit = _number("timeout", timeout, low=0)
    backend = backend_from_configuration(configuration)
    with failures("clear faults"):
        before = faulted_virtual_services(backend.istio_objects())
        expected = {d["metadata"]["name"]: restored_document(d) for d in before}
        cleared = clear_istio_faults(backend)
    for name in cleared:
        what = f"faults cleared from VirtualService/{name}"
        load_sessions.mark(backend, "fault-end", what, fault="clear", target=name)
    # Envoy must show no fault for the hosts of every VirtualService put back without a fault of its own.
    services: set[str] = set()
    for doc in before:
        original = expected[doc["metadata"]["name"]]
        if original is None or not any(route.get("fault") for route in original["spec"].get("http") or []):
            services.update(str(host).split(".")[0] for host in doc["spec"].get("hosts") or [])

    def check() -> tuple[bool, str]:
        current = {o["metadata"]["name"]: o for o in backend.istio_objects() if o.get("kind") == "VirtualService"}
        for name, doc in expected.items():
            now = current.get(name)
            if doc is None and now is not None:
                return False, f"VirtualService/{name} is still there"
            if doc is not None and (now is None or now.get("spec") != doc.get("spec")):
                return False, f"VirtualService/{name} is not back to its original spec"
            annotations = ((now or {}).get("metadata") or {}).get("annotations") or {}
            if ORIGINAL_ANNOTATION in annotations:
                return False, f"VirtualService/{name} still carries {ORIGINAL_ANNOTATION}"
        for service in sorted(services):
            ok, detail = check_envoy_clean(backend, service)
            if not ok:
                return False, detail
        if not expected:
            return True, "no clover fault was in force"
        names = ", ".join(f"VirtualService/{n}" for n in sorted(expected))
        hosts = f"; no fault left in Envoy for {', '.join(sorted(services))}" if services else ""
        return True, f"{names} back as they were{hosts}"

    with failures("clear faults"):
        detail = poll(check, limit, "clear faults")
    return {
        "cleared": cleared,
        "restored": sorted(n for n, d in expected.items() if d is not None),
        "removed": sorted(n for n, d in expected.items() if d is None),
        "verified": detail,
    }


# --------------------------------------------------------------------------- pods


def kill_pods(
    service: str,
    count: int | None = None,
    percent: float | None = None,
    grace_seconds: float = 0.0,
    wait_ready: bool = True,
    timeout: float = 60.0,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Kill ``count`` pods of ``service`` (default 1), or ``percent`` % (0–100, at least one) of them; their
    Deployment replaces them under new names.

    ``grace_seconds``: 0 sends SIGKILL at once; more sends SIGTERM, then SIGKILL that many seconds later.
    ``wait_ready`` (default): returns once the killed pods are gone and as many pods of the service are ready
    as before (the replacements), within ``timeout`` seconds; otherwise once the killed pods are gone.
    """
    service = _text("service", service)
    if count is not None and percent is not None:
        raise ActivityFailed("give count or percent, not both")
    n = _integer("count", count, low=1) if count is not None else None
    pct = _number("percent", percent, low=0, high=100) if percent is not None else None
    grace = _number("grace_seconds", grace_seconds, low=0)
    limit = _number("timeout", timeout, low=0)
    backend = backend_from_configuration(configuration)
    with failures(f"kill pods of {service}"):
        handle = _faults(backend).kill(service, count=n, percent=pct, grace=grace)
    load_sessions.touched(backend)
    with failures(f"kill pods of {service}"):
        if wait_ready:
            handle.verify(timeout=limit)
            detail = handle.detail
        else:

            def gone() -> tuple[bool, str]:
                alive = [p.name for p in backend.pods(service) if p.name in handle.killed and p.phase != "Terminating"]
                return (False, f"still running: {', '.join(alive)}") if alive else (True, "killed pods gone")

            detail = poll(gone, limit, handle.description)
    ready = [p.name for p in backend.pods(service) if p.ready and p.phase == "Running"]
    return {
        "service": service,
        "killed": handle.killed,
        "ready": ready,
        "description": handle.description,
        "verified": detail,
    }


def scale_deployment(
    deployment: str, replicas: int, timeout: float = 60.0, configuration: Configuration = None
) -> dict[str, Any]:
    """Set ``deployment``'s replicas (0 or more) and wait until the pods are ready and a caller's Envoy holds the
    new number of endpoints for the service, within ``timeout`` seconds.

    Returns the previous count: scale back with a rollback ``scale_deployment(deployment, replicas=<previous>)``.
    """
    deployment = _text("deployment", deployment)
    count = _integer("replicas", replicas, low=0)
    limit = _number("timeout", timeout, low=0)
    backend = backend_from_configuration(configuration)
    with failures(f"scale {deployment} to {count}"):
        handle = _faults(backend).scale(deployment, count)
        handle.verify(timeout=limit)
    load_sessions.touched(backend)
    return {
        "deployment": deployment,
        "replicas": count,
        "previous": handle.previous,
        "description": handle.description,
        "verified": handle.detail,
    }


# --------------------------------------------------------------------------- load


def start_load(
    rate: float | None = None,
    users: int | None = None,
    path: str = "/",
    duration: float | None = None,
    seed: int = 0,
    request_timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Start load on the mesh's ingress, in a child process, for the probes (slo_met, load_stats) to measure.

    Exactly one of ``rate`` (open loop: requests per second on a fixed schedule; latency counted from each
    request's intended send time) and ``users`` (closed loop: that many users, each sending when its previous
    request completed). ``path``: the request path; ``headers``: added to every request; ``request_timeout``:
    seconds before a request counts as an error (status 0); ``seed``: drives the generator's randomness.
    ``duration``: seconds after which the load stops by itself (default: until stop_load, the control, or the
    end of the process). Files (locust CSVs, the generator's log, result.json) go to configuration
    ``clover_report_dir`` (default ``reports/chaos-<timestamp>/``). Returns once the first 1-second window
    of measurements arrived. One load per mesh at a time.
    """
    if (rate is None) == (users is None):
        raise ActivityFailed("give exactly one of rate (requests per second, open loop) and users (closed loop)")
    r = _number("rate", rate, low=0) if rate is not None else None
    u = _integer("users", users, low=1) if users is not None else None
    seconds = _number("duration", duration, low=0) if duration is not None else None
    backend = backend_from_configuration(configuration)
    with failures("start load"):
        session = load_sessions.start(
            backend,
            configuration or {},
            rate=r,
            users=u,
            path=_text("path", path),
            duration=seconds,
            seed=_integer("seed", seed),
            timeout_s=_number("request_timeout", request_timeout, low=0.001),
            headers=_headers(headers),
            owner="action",
        )
        deadline = time.monotonic() + FIRST_WINDOW_S
        while not session.run.result.window_rows():
            if not session.run.alive or time.monotonic() > deadline:
                why = "exited" if not session.run.alive else f"sent no measurement within {FIRST_WINDOW_S:g} s"
                with contextlib.suppress(ActivityFailed):
                    load_sessions.stop(backend)
                raise ActivityFailed(f"the load generator {why}; see {session.report_dir / 'load-worker.log'}")
            time.sleep(0.05)
    first = session.run.result.window_rows()[0]
    return {
        **load_sessions.clean_dict(session.request),
        "mesh": session.mesh,
        "first_window": load_sessions.stats(first),
    }


def stop_load(configuration: Configuration = None) -> dict[str, Any]:
    """Stop the load running on the mesh and return its summary: what was asked, ``overall`` (requests, errors,
    error_rate, throughput_rps, p50/p95/p99/max in ms), ``stages`` when the control saw the experiment's
    stages, and where its files are. Raises ActivityFailed when no load runs or the generator failed.
    Works also when the mesh itself is gone."""
    record = record_from_configuration(configuration)
    with failures("stop load"):
        return load_sessions.stop(record)
