"""Chaos Toolkit extension: break a clover mesh from any experiment file, and measure what it does.

Modules, each usable as a provider's ``module``:

- :mod:`pytest_clover.chaos.actions` — ``inject_delay``, ``inject_abort``, ``shift_traffic``, ``clear_faults``,
  ``kill_pods``, ``scale_deployment``, ``start_load``, ``stop_load``. Each verifies its effect before it returns
  and raises ``ActivityFailed`` when it is not seen.
- :mod:`pytest_clover.chaos.probes` — ``slo_met``, ``load_stats``, ``pods_ready``, ``envoy_counter``.
- :mod:`pytest_clover.chaos.control` — a control running load for the whole experiment.

The mesh is named in the experiment's ``configuration`` (``clover_state_dir``, ``clover_backend``,
``clover_report_dir``; see :mod:`pytest_clover.chaos.mesh`). A minimal experiment, against a mesh started
with ``clover up --state-dir /tmp/mesh``::

    title: http-lb absorbs a 300 ms delay
    description: p99 stays under 1 s while every request to http-lb waits 300 ms
    configuration: {clover_state_dir: /tmp/mesh}
    controls:
      - name: load
        provider: {type: python, module: pytest_clover.chaos.control, arguments: {rate: 20}}
    steady-state-hypothesis:
      title: SLO met
      probes:
        - type: probe
          name: slo
          tolerance: {type: regex, target: verdict, pattern: "^met$"}
          provider: {type: python, module: pytest_clover.chaos.probes, func: slo_met,
                     arguments: {last_seconds: 5, p99_ms: 1000, max_error_rate: 0.01}}
    method:
      - type: action
        name: delay-http-lb
        provider: {type: python, module: pytest_clover.chaos.actions, func: inject_delay,
                   arguments: {service: http-lb, delay: 300ms}}
    rollbacks:
      - type: action
        name: clear-faults
        provider: {type: python, module: pytest_clover.chaos.actions, func: clear_faults}

Run it with ``chaos run --rollback-strategy always experiment.yaml``: faults stay in force until
``clear_faults`` runs, and Chaos Toolkit skips rollbacks after a failed run unless told otherwise.
One experiment at a time per process (chaoslib keeps module-level state and signal handlers).

Importing this package does not import chaoslib; its modules do.
"""

from __future__ import annotations

from typing import Any

__all__ = ["discover"]

EXTENSION_NAME = "pytest-clover"


def discover(discover_system: bool = True) -> dict[str, Any]:
    """What ``chaos discover`` reports: every action and probe, and (``discover_system``) the default mesh.

    The system part is the mesh at the default state dir (``$CLOVER_STATE_DIR`` or the per-user one) when one
    runs there: its ingress URL, services and pods; None otherwise.
    """
    from chaoslib.discovery import (  # type: ignore[import-untyped,unused-ignore]
        discover_actions,
        discover_probes,
        initialize_discovery_result,
    )

    from .. import __version__

    discovery: dict[str, Any] = initialize_discovery_result(EXTENSION_NAME, __version__, "clover")
    discovery["activities"].extend(discover_actions("pytest_clover.chaos.actions"))
    discovery["activities"].extend(discover_probes("pytest_clover.chaos.probes"))
    if discover_system:
        discovery["system"] = _system()
    return discovery


def _system() -> dict[str, Any] | None:
    from ..errors import CloverError
    from .mesh import ActivityFailed, backend_from_configuration

    try:
        backend = backend_from_configuration(None)
        pods = backend.pods()
        ingress = backend.ingress_url()
    except (ActivityFailed, CloverError):
        return None
    return {
        "backend": backend.name,
        "ingress_url": ingress,
        "services": sorted({p.service for p in pods}),
        "pods": [p.as_dict() for p in pods],
    }
