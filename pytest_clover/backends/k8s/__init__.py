"""The Kubernetes backend: the same tests against a real cluster (or the embedded mesh's Kubernetes API).

It drives a cluster only through its API, with the official ``kubernetes`` client (the ``k8s`` extra), imported
by the modules that talk to the cluster and never at plugin load. The parts:

- :mod:`.settings` — :class:`~.settings.K8sSettings` (kubeconfig, context, namespace mode, image, allow-list,
  blast radius), parsed from the backend's string settings; the labels and annotations we put on what we create.
- :mod:`.errors` — the client's exceptions translated into pytest-clover's error tree at the boundary.
- :mod:`.safety` — the context allow-list, the protected and foreign namespaces, the blast radius of a kill.
- :mod:`.preflight` — ``clover k8s check``: RBAC verbs (SelfSubjectAccessReview), Istio CRDs, sidecar injection.
- :mod:`.deadman` — the dead-man switch: the reaper Deployment, the Lease we renew, the ledger ConfigMap of
  faults in force; the reaper itself is :mod:`pytest_clover.vnf.reaper` (it runs in the VNF image).
- :mod:`.backend` — :class:`~.backend.KubernetesBackend`, the protocol done the cluster way.
- ``rbac/`` — the minimal Role, ClusterRole, ServiceAccount and bindings, as YAML to apply.
"""
