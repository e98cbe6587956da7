"""The fault engine: inject, verify and always revert — with a ledger so that a killed run leaves nothing.

- :mod:`.injector` — :class:`Faults`, what the ``faults`` fixture, the Chaos Toolkit actions and ``clover``
  use: each fault becomes a handle, recorded in the ledger before it acts, reverted newest first;
- :mod:`.handles` — one class per kind of fault (delay, abort, shift, apply, kill, scale), each knowing how
  to inject itself, how its effect shows in the data plane, and how to put the mesh back;
- :mod:`.ledger` — the on-disk record of open faults and the sweep that reverts what a dead run left;
- :mod:`.istio` — faults merged into a service's VirtualService on a running mesh, and their exact revert.

A fault whose effect is never seen makes the test INCONCLUSIVE (:class:`~pytest_clover.errors.FaultInconclusive`),
never a pass. Nothing here knows which backend runs the mesh.
"""

from __future__ import annotations

from .handles import ApplyFault, FaultHandle, HttpFault, IstioFault, KillFault, ScaleFault, ShiftFault
from .injector import Faults
from .istio import clear_faults, inject_fault, known_services, require_service, restore_object
from .ledger import Ledger, read_ledger, registered_ledgers, revert_entry, sweep_ledger, sweep_registered

__all__ = [
    "ApplyFault",
    "FaultHandle",
    "Faults",
    "HttpFault",
    "IstioFault",
    "KillFault",
    "Ledger",
    "ScaleFault",
    "ShiftFault",
    "clear_faults",
    "inject_fault",
    "known_services",
    "read_ledger",
    "registered_ledgers",
    "require_service",
    "restore_object",
    "revert_entry",
    "sweep_ledger",
    "sweep_registered",
]
