"""Process limits the embedded mesh and the load generator need, set the way a cluster sets them.

A container on a cluster starts with a high open-files limit (containerd and CRI-O give 1048576); a login
shell gives 1024. Under overload a mesh holds about two sockets per request in flight in every hop (the
circuit-breaker suite queues ~800 requests at the end of its "no breaker" phase), so at 1024 the sample
proxy stopped accepting connections, failed its readiness probe and left the mesh answering 503 (UH) for
half a minute after the test — only for users whose shell has the default limit (root's here is 20000).
The soft limit is raised to the hard one, which needs no privilege.
"""

from __future__ import annotations

import resource

__all__ = ["OPEN_FILES_WANTED", "raise_open_files_limit"]

OPEN_FILES_WANTED = 1_048_576
"""What a container runtime gives a pod; the soft limit is raised towards this, never past the hard limit."""


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``min(wanted, hard limit)`` (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft  # a sandbox that refuses: keep what we have; the mesh still runs, with less headroom
        return target
    return soft
