"""The Kubernetes API of the embedded mesh: what `kubectl` and the official client talk to.

The supervisor serves it (HTTPS on the mesh's loopback address, a CA and a bearer token per mesh) next to
its xDS server: it is the mesh's kube-apiserver, and its controllers turn what is stored into pods and Envoy
configuration. Nothing here imports the supervisor; the supervisor wires these parts together.

- :mod:`.errors` — :class:`ApiError`, a Kubernetes ``Status`` as an exception (code, reason, message, causes).
- :mod:`.resources` — the served resources (group, versions, kind, plural, scope, verbs, short names,
  subresources), discovery (legacy and aggregated), the OpenAPI documents ``kubectl apply`` / ``explain``
  fetch, and server-side printing (``as=Table``).
- :mod:`.selectors` — label and field selectors, parsed and matched as Kubernetes does.
- :mod:`.store` — the objects: uid, resourceVersion (one counter per mesh), generation, creationTimestamp;
  get, list (selectors, limit/continue), create, update (409 on a stale resourceVersion), delete
  (preconditions), watch (resourceVersion semantics, bookmarks, 410 Expired).
- :mod:`.patch` — JSON merge patch, JSON patch, strategic merge patch (Kubernetes' merge keys), server-side
  apply with field managers, ``managedFields`` and conflicts; :mod:`.schema_meta` holds the merge keys and list
  types Kubernetes declares for the built-in kinds.
- :mod:`.openapi` and :mod:`.tables` — the OpenAPI documents (generated data in ``openapi/``) and server-side
  printing; :mod:`.hooks` — what the server asks of the mesh; :mod:`.gc` — garbage collection and namespace
  deletion; :mod:`.spdy` — the SPDY/3.1 framing kubectl's port-forward tunnels through its WebSocket;
  :mod:`.cluster` — the mesh behind the API: admission, effects, the kubelet's and controllers' status.
- :mod:`.authorization` — the access reviews (``kubectl auth can-i``: the mesh's one token may do everything)
  and the RBAC objects, defaulted and validated as Kubernetes does, stored but not enforced.
- :mod:`.tls` — the mesh's CA, serving certificate, token and kubeconfig.
- :mod:`.streams` — ``pods/log`` (tail, since, follow), ``pods/portforward`` over the WebSocket protocol
  kubectl and the Python client speak, HTTP proxying for ``pods/proxy`` and ``services/proxy``.
- :mod:`.protobuf` — the protobuf bodies of kubectl's typed commands (``create deployment``…) decoded to JSON,
  from a table generated into ``protobuf/`` by ``tools/gen_kube_protobuf.py``.
- :mod:`.server` — the aiohttp application: authentication, routing, verbs, content types, watch streams.
"""
