"""The embedded kubelet judges readiness as kubelet does: a ready pod turns not ready only after
``failureThreshold`` failed probes in a row (default 3, one a second here), so one slow or failed answer never
drops it from its Service's endpoints; a probe with ``failureThreshold: 1`` drops it at the first failure."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pytest_clover.backends.local.client import LocalBackend
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

FLAKY_APP = textwrap.dedent(
    """
    import http.server, os, sys

    host, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # /ready fails while the flag file exists
            self.send_response(500 if os.path.exists(flag) else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer((host, port), Handler).serve_forever()
    """
)


def _topology(folder: Path, program: Path, flag: Path, threshold: int | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    extra = f", failureThreshold: {threshold}" if threshold is not None else ""
    (folder / "web.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: web}}
            spec:
              replicas: 1
              selector: {{matchLabels: {{app: web}}}}
              template:
                metadata:
                  labels: {{app: web}}
                  annotations:
                    clover.opnfv.org/local-command: "{program} {{host}} {{port}} {flag}"
                spec:
                  containers:
                    - name: web
                      image: x
                      ports: [{{name: http, containerPort: 8080}}]
                      readinessProbe: {{httpGet: {{path: /ready, port: http}}{extra}}}
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: web}}
            spec: {{selector: {{app: web}}, ports: [{{name: http, port: 8080}}]}}
            """
        )
    )
    return folder


def _deployed(tmp_path: Path, threshold: int | None) -> tuple[LocalBackend, Path]:
    program = tmp_path / "flaky-app"
    program.write_text(f"#!{sys.executable}\n{FLAKY_APP}")
    program.chmod(0o755)
    flag = tmp_path / "failing"
    backend = LocalBackend(_topology(tmp_path / "topo", program, flag, threshold), tmp_path / "s")
    backend.deploy(timeout=60)
    return backend, flag


def _ready(backend: LocalBackend) -> bool:
    [pod] = backend.pods("web")
    return pod.ready


def test_one_failed_probe_does_not_drop_a_ready_pod_three_do(tmp_path: Path, runtime_dir: Path) -> None:
    backend, flag = _deployed(tmp_path, None)
    try:
        assert _ready(backend)
        seen: list[bool] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.append(_ready(backend))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        flag.touch()  # the app fails its probe for 1.2 s: at most two probes (one a second) see it
        time.sleep(1.2)
        flag.unlink()
        time.sleep(1.5)
        stop.set()
        watcher.join(timeout=10)
        assert seen and all(seen), "a ready pod turned not ready on fewer than three failed probes"

        flag.touch()  # now for good: three failures in a row, about three seconds
        failing_since = time.monotonic()
        wait_for(lambda: not _ready(backend), timeout=15, what="the pod to turn not ready")
        assert time.monotonic() - failing_since >= 1.8, "not ready before three probes could have failed"
    finally:
        backend.teardown()


def test_a_failure_threshold_of_one_drops_the_pod_at_the_first_failure(tmp_path: Path, runtime_dir: Path) -> None:
    backend, flag = _deployed(tmp_path, 1)
    try:
        assert _ready(backend)
        flag.touch()
        failing_since = time.monotonic()
        wait_for(lambda: not _ready(backend), timeout=15, what="the pod to turn not ready")
        assert time.monotonic() - failing_since < 2.5
    finally:
        backend.teardown()
