"""Nightly long-duration soak runs (issue 14): steady load for hours under a seeded chaos schedule.

- :mod:`.schedule` — the soak plan file (load, SLOs, recovery, fault kinds with their mean time between failures,
  quiet windows) and the seeded, deterministic schedule of fault events drawn from it;
- :mod:`.guardrails` — the stop conditions (SLO burn rate, exhausted error budget, p99 over a bound for N windows);
- the runner (lead) — drives the load, injects and reverts each event, judges it, checkpoints the report.

Nothing is imported here: ``import pytest_clover.soak.schedule`` costs only that module.
"""

from __future__ import annotations
