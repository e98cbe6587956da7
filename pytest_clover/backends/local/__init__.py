"""The local backend: the embedded mesh, a small Kubernetes + Istio on one machine.

Every pod is a local process behind a real Envoy sidecar, on its own loopback address, configured from the
same Kubernetes + Istio YAML a cluster would get. Registered as ``local``.

- :mod:`.client` — :class:`LocalBackend`, the protocol's implementation, in the process that asks for the mesh;
- :mod:`.supervisor` — one process per mesh: kubelet, the ReplicaSet and endpoints controllers and istiod at
  once; :mod:`.xds` serves every Envoy over gRPC ADS, :mod:`.zygote` forks the sample VNF's pods;
- :mod:`.translate` — Istio → Envoy v3, as istiod does it; :mod:`.render` writes it out (``clover render``);
- :mod:`.plan` — what the local backend needs and cannot honour; :mod:`.state` — state folders, the
  machine-wide registry, process records and the sweep; :mod:`.envoy` — the Envoy binary and its command line.
"""

from __future__ import annotations
