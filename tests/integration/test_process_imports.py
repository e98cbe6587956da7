"""What the process that drives a mesh imports: never gRPC, Envoy's protobufs, locust or gevent.

The supervisor (gRPC ADS) and the load worker (locust, which monkey-patches whatever imports it) are child
processes. import-linter checks the static imports (``lint-imports``); this checks a real process end to end,
in a subprocess so that nothing this test run imported counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import SDC

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from pytest_clover.backends import BackendOptions, backend_class
    from pytest_clover.envoy.views import service_stats
    from pytest_clover.faults import Faults

    backend = backend_class("local").from_options(BackendOptions(Path(sys.argv[1]), Path(sys.argv[2])))
    backend.deploy(timeout=90)
    try:
        faults = Faults(backend)
        with faults.abort("http-lb", 503, headers={"x-probe": "1"}):
            pass
        service_stats(backend, "http-lb")
        backend.kill("clover-server")
        backend.wait_ready(60)
    finally:
        backend.teardown()
    heavy = ("grpc", "envoy", "google.protobuf", "locust", "gevent")
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith("google.protobuf"))))
    """
)


def test_driving_a_local_mesh_imports_no_grpc_protobuf_locust_or_gevent(tmp_path: Path, runtime_dir: Path) -> None:
    env = {**os.environ, "CLOVER_RUNTIME_DIR": str(runtime_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(SDC), str(tmp_path / "mesh")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
