"""Process limits: what a pod gets on a cluster, not what a login shell gives."""

from __future__ import annotations

import subprocess
import sys


def test_the_open_files_limit_is_raised_to_the_hard_limit_in_a_child() -> None:
    # A login shell's 1024 is too few for a mesh under overload (docs in pytest_clover.limits).
    code = (
        "import resource; soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE);"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard));"
        "from pytest_clover.limits import raise_open_files_limit, OPEN_FILES_WANTED;"
        "got = raise_open_files_limit();"
        "want = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard);"
        "assert got == want == resource.getrlimit(resource.RLIMIT_NOFILE)[0], (got, want); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
