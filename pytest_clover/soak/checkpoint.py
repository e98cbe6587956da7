"""``python -m pytest_clover.soak.checkpoint RUN_DIR``: rebuild a running soak's report from its checkpointed data.

The soak runner starts this in a child process at every checkpoint, so the pytest process never holds the report's
plots and tables (its memory stays flat over a night) and a SIGKILL of pytest at any moment leaves the report as of
the last checkpoint. It runs at idle priority (:func:`lower_priority`), with one plot worker: the soak's load
generator and the mesh keep the cores. The report it writes is marked partial (the run has not finished); the
plugin's own build at the end of the session, or ``clover report RUN_DIR`` after a crash, replaces it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

NICENESS = 19
"""The lowest CPU priority of the normal class: for this process's session group, and for the process itself where
Linux's idle scheduling class is refused or missing."""
AUTOGROUP = Path("/proc/self/autogroup")
"""Linux's per-session scheduling group (``sched_autogroup_enabled``): its niceness weighs the whole session."""


def lower_priority() -> str:
    """Run this process only on CPU nothing else wants; what it got, for the log.

    The soak starts it in a session of its own (so that a Ctrl-C meant for pytest does not cut a report in half),
    and with Linux's autogroups (on by default) a session is a scheduling group that weighs as much as the session
    of pytest and the mesh, whatever the priority of the tasks inside: at niceness 10 the build took a core from the
    mesh and the load for its 2 s, the median latency went from 3.6 to 31–75 ms at every checkpoint, and in a 1-hour
    soak on 2 cores a kill that fell in one was judged on a p99 of 529 ms (measured). So, as this process leads its
    own session, its group gets the lowest weight (niceness 19: ~1.5 % of a contended core); and inside it, Linux's
    SCHED_IDLE (a waking task of the normal class takes the core at once), else niceness 19.
    """
    got = []
    if hasattr(os, "getsid") and os.getsid(0) == os.getpid():  # our own session: the group is ours alone
        try:
            # Empty when the task is in no autogroup (autogroups off, or a cgroup of its own decides its weight).
            if AUTOGROUP.read_text(encoding="ascii").strip():
                AUTOGROUP.write_text(f"{NICENESS}\n", encoding="ascii")
                got.append(f"session group niceness {NICENESS}")
        except OSError:
            pass  # no autogroups (a kernel without them): the task's own priority is what counts
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        got.append("idle scheduling class")
    except (AttributeError, OSError):  # not Linux, or refused
        try:
            got.append(f"niceness {os.nice(NICENESS)}")
        except (AttributeError, OSError):
            pass  # not allowed here: build at the normal priority rather than not at all
    return ", ".join(got) or "normal priority"


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report of the run folder named by the only argument; 0 when written, 1 otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m pytest_clover.soak.checkpoint RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    priority = lower_priority()
    from ..errors import CloverError
    from ..report.build import build_report

    try:
        built = build_report(run_dir, jobs=1)
    except (CloverError, OSError) as exc:
        print(f"checkpoint report of {run_dir} not built: {exc}", file=sys.stderr)
        return 1
    print(f"checkpoint report: {built.index} ({built.seconds:.1f} s, {priority})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
