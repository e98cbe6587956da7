"""The data-plane contract every backend satisfies: what pytest-clover reads from Envoy, whoever runs it.

- :mod:`.access_log` — the JSON access-log format every sidecar and gateway writes, and the fields the
  per-hop report needs from it;
- :mod:`.stats` — the stat names the fault checks and the suites read, matched the way they appear in any
  Envoy (ours name the outbound HTTP connection manager ``outbound``; Istio's ``outbound_0.0.0.0_9080``);
- :mod:`.views` — Envoy's view of the mesh (counters, endpoints, routes, faults in force) read through a
  backend's :meth:`~pytest_clover.backends.Backend.envoy_admin`.

A backend makes these hold: the local backend writes them into its own Envoy configuration; a cluster
backend has to switch them on (stats inclusion, a Telemetry access-log provider).
"""

from __future__ import annotations
