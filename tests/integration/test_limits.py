"""Every process of a mesh runs with a pod's open-files limit, not the 1024 a login shell gives.

At 1024 the circuit-breaker suite's queue made the sample proxy refuse connections, fail its readiness probe and
leave the mesh answering 503 (UH) after the test, for a user with the default limit only. The mesh is started
here from a process whose soft limit is 512, as a login shell's would be low.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_clover.limits import OPEN_FILES_WANTED

from .conftest import SDC

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))

    from pytest_clover.backends import BackendOptions, backend_class
    from pytest_clover.backends.local.state import MeshState

    backend = backend_class("local").from_options(BackendOptions(Path(sys.argv[1]), Path(sys.argv[2])))
    backend.deploy(timeout=90)
    try:
        state = MeshState(sys.argv[2])
        records = [state.owner(), *[r for r in state.read_pids() if r.alive()]]
        limits = {}
        for r in records:
            for line in Path(f"/proc/{r.pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    limits[f"{r.role} {r.pod} {r.pid}"] = int(line.split()[3])
    finally:
        backend.teardown()
    print(json.dumps(limits))
    """
)


def test_every_process_of_the_mesh_has_a_pods_open_files_limit(tmp_path: Path, runtime_dir: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)
    if wanted <= 512:
        pytest.skip(f"the hard open-files limit here ({hard}) leaves nothing to raise")
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
    limits: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    roles = {name.split()[0] for name in limits}
    assert {"supervisor", "envoy", "app"} <= roles, limits
    low = {name: value for name, value in limits.items() if value != wanted}
    assert not low, f"processes without a pod's open-files limit ({wanted}): {low}"
