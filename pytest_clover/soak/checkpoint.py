"""``python -m pytest_clover.soak.checkpoint RUN_DIR``: rebuild a running soak's report from its checkpointed data.

The soak runner starts this in a child process at every checkpoint, so the pytest process never holds the report's
plots and tables (its memory stays flat over a night) and a SIGKILL of pytest at any moment leaves the report as of
the last checkpoint. It runs niced, with one plot worker: the soak's load generator and the mesh keep the cores.
The report it writes is marked partial (the run has not finished); the plugin's own build at the end of the session,
or ``clover report RUN_DIR`` after a crash, replaces it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

NICENESS = 10
"""How much lower than pytest's the child's CPU priority is."""


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report of the run folder named by the only argument; 0 when written, 1 otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m pytest_clover.soak.checkpoint RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    if hasattr(os, "nice"):
        try:
            os.nice(NICENESS)
        except OSError:
            pass  # not allowed here: build at the normal priority rather than not at all
    from ..errors import CloverError
    from ..report.build import build_report

    try:
        built = build_report(run_dir, jobs=1)
    except (CloverError, OSError) as exc:
        print(f"checkpoint report of {run_dir} not built: {exc}", file=sys.stderr)
        return 1
    print(f"checkpoint report: {built.index} ({built.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
