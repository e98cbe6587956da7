"""The load image (``docker/load/Dockerfile``) holds only what its COPY lines name: the master and the worker must
import from exactly those files, with locust and HdrHistogram beside them, and nothing else of the framework."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "load" / "Dockerfile"


def copied_paths() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^COPY\s+(\S+)\s+(\S+)\s*$", line)
        if match:
            assert match.group(1).rstrip("/") == match.group(2).rstrip("/"), f"COPY to another path: {line}"
            sources.append(match.group(1).rstrip("/"))
    return sources


def test_the_load_processes_import_from_the_files_the_image_copies(tmp_path: Path) -> None:
    sources = copied_paths()
    assert "pytest_clover/load" in sources
    app = tmp_path / "app"
    for source in sources:
        target = app / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, target)
    # The copy goes first on sys.path; every module of the framework imported must come from it.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import pytest_clover.load.worker, pytest_clover.load.master\n"
        "mods = [m for m in list(sys.modules.values()) if (m.__name__ or '').startswith('pytest_clover')]\n"
        "outside = [m.__name__ for m in mods if not (getattr(m, '__file__', '') or '').startswith(sys.argv[1])]\n"
        "print(len(mods), outside)\n"
        "sys.exit(1 if outside else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(app)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, f"imported from outside the image's files: {done.stdout} {done.stderr[-2000:]}"
