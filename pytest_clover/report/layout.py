"""Where a run's files live, and how they are written so that a reader never sees half of one.

A run writes ``<report-dir>/<run-id>/``: ``run.json``, ``events.ndjson``, and one folder per test named by
:func:`folder_for_test`; the report (``index.html``, ``summary.json``, plots) is built from them. The
writers (the pytest plugin, the Chaos Toolkit extension) and the readers (``clover report``) share these rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

__all__ = ["folder_for_test", "write_json_atomic"]


def folder_for_test(nodeid: str) -> str:
    """A folder name for a test: ``suites/test_x.py::test_y[a]`` → ``suites_test_x.py__test_y_a``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", nodeid.replace("::", "__")).strip("._") or "test"
    if len(name) > 120:
        name = f"{name[:100]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:10]}"
    return name


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 1) -> None:
    """Write JSON so a reader (``clover report`` on a running session) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str), encoding="utf-8")
    os.replace(tmp, path)
