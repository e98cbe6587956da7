"""Per-hop breakdown: where each request's time went on each hop, from the sidecars' access logs.

Every Envoy of the mesh (ingress gateway and sidecars) logs one JSON line per request it proxied, all
carrying the request's ``x-request-id``. Joining them on it and walking from the gateway entry along
``upstream_cluster`` gives nested spans, and their differences are the segments of the path::

    ingress → S1        gateway duration − Σ S1 inbound durations
    S1                  Σ S1 inbound − Σ S1 outbound   (the application and its sidecar; a leaf: all of it)
    S1 → S2             Σ S1 outbound − Σ S2 inbound   (network, sidecars, injected delays, retries)
    …

The segments of one request add up to its gateway duration. A delay fault on S2 is applied by the
caller's outbound sidecar, so it shows up in ``S1 → S2``. A mirrored copy (e.g. to an IDS) is never
reached by the walk, since no ``upstream_cluster`` on the path names its service.

Logs of a long run are large (≈200k lines for 2 minutes at 200 requests/s), so :class:`AccessLogCursor`
reads only what was appended since it was made, and requests are sampled by a hash of their id: every
log file is sampled alone and keeps the same requests, and only the kept lines are parsed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import tempfile
import time
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.protocol import LogFiles
from ..errors import CloverError
from ..logfiles import LogMark, appended_since, mark, rotation_lock

if TYPE_CHECKING:
    from ..backends.protocol import AccessLogSource

COLUMNS = ("request_id", "time", "segment", "order", "ms", "status", "flags")
"""Columns of ``hops.csv``; ``flags`` holds the Envoy response flags of the segment's entries (``DI``, ``UO``…)."""
HOPS_FILE = "hops.csv"
INGRESS = "ingress"
"""Name of the first hop's caller in segment names (``ingress → proxy-access-control``)."""
ARROW = " → "
DEFAULT_MAX_REQUESTS = 3000
SETTLE_SECONDS = 0.3
"""Envoys flush access logs every 100 ms, each on its own clock: a request whose gateway entry ended this
recently before the read may still miss the entries of inner hops, so it is left out."""

_REQUEST_ID = re.compile(rb'"request_id":\s*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"')
"""The request id as it appears in a line, JSON escapes and all (an escaped quote inside a value cannot match)."""
_GATEWAY_MARK = re.compile(rb'"direction"\s*:\s*"gateway"')
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------- sampling


def keeps(request_id: str | bytes, sample_every: int) -> bool:
    """Whether a request is in the sample: the same answer in every file, on every read."""
    _check_sample_every(sample_every)
    raw = request_id.encode("utf-8") if isinstance(request_id, str) else request_id
    return sample_every == 1 or zlib.crc32(raw) % sample_every == 0


def _check_sample_every(sample_every: int) -> None:
    if isinstance(sample_every, bool) or not isinstance(sample_every, int) or sample_every < 1:
        raise ValueError(f"sample_every must be an integer ≥ 1 (1 keeps every request), not {sample_every!r}")


def _parse(line: bytes) -> dict[str, Any] | None:
    import json

    try:
        entry = json.loads(line)
    except ValueError:  # a torn or foreign line: skipped, never fatal
        return None
    return entry if isinstance(entry, dict) else None


def _utc_stamp(unix: float) -> str:
    """Envoy's %START_TIME% form (UTC, milliseconds), which sorts as text in time order."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(stamp: object) -> float | None:
    """``2026-11-21T16:13:03.535Z`` → Unix seconds; None when it is not such a timestamp."""
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# ---------------------------------------------------------------------------------------------- cursor


class AccessLogCursor:
    """The end of every pod's access log now; :meth:`read` returns what was appended after it.

    With a backend that exposes the files (``log_path(pod, "access")``, as :class:`LocalBackend` does), the
    cursor marks each file's end (:func:`pytest_clover.logfiles.mark`) and later reads what was appended since,
    across rotations, so a session's earlier traffic costs nothing. Otherwise it falls back to
    ``backend.access_log(pod)`` and keeps entries that started after the cursor was made. Pods that appear later
    are read from their start; pods killed since keep their file (and their service, for the join).
    """

    def __init__(self, backend: AccessLogSource) -> None:
        self.backend = backend
        pods = backend.pods()
        self.pod_service: dict[str, str] = {p.name: p.service for p in pods}
        """Every pod seen by the cursor → its service (``app`` label), including pods since killed."""
        self._log_path = backend.log_path if isinstance(backend, LogFiles) else None
        self._files: dict[str, LogMark] = {}
        for pod in pods:
            self._track(pod.name, at_end=True)
        # Envoy logs start times in whole milliseconds: `since` is the first whole millisecond after the offsets
        # were taken, waited for (at most 1 ms), so that a request sent once the cursor exists always has a start
        # time at or after it. A request entering in the millisecond the offsets were taken was left out (the
        # truncated start fell before an exact `since`): 1 request in 15 batches sent at once, measured.
        boundary = math.floor(time.time() * 1000 + 1) / 1000
        while (left := boundary - time.time()) > 0:
            time.sleep(left)
        self.since = boundary
        """Unix time (a whole millisecond) after every offset was taken. A request that entered the gateway at or
        after it has all of its entries past the offsets; one before it may have some entries before them (Envoy
        buffers its access log up to 100 ms), so :func:`record_hops` keeps only requests whose gateway entry
        started at or after it."""

    def _track(self, pod: str, *, at_end: bool) -> None:
        """Remember a pod's access log and where to read it from: its end now, or its start."""
        if self._log_path is None or pod in self._files:
            return
        path = Path(self._log_path(pod, "access"))
        self._files[pod] = mark(path) if at_end else LogMark(path, 0, b"")

    def pods(self) -> list[str]:
        """Pods present when the cursor was made or now (when the backend still answers)."""
        with contextlib.suppress(CloverError, OSError):
            for pod in self.backend.pods():
                self.pod_service.setdefault(pod.name, pod.service)
                self._track(pod.name, at_end=False)  # born after the cursor: all of its log is new
        return sorted(self.pod_service)

    # -- files

    def _blocks(self, pod: str) -> Generator[bytes]:
        """What was appended to the pod's access log since the cursor, in blocks of whole lines.

        A trailing line Envoy is still writing (no newline yet) is left out.
        """
        if pod not in self._files:
            return
        # The log may have rotated since the mark (the embedded mesh copies a full access log to .1 and truncates
        # it): the marked file is read on from the mark, then every newer one from its start, under the shared
        # rotation lock, so that no rotation moves lines between the listing and the reading.
        with rotation_lock(self._files[pod].path, exclusive=False):
            yield from self._read_pieces(appended_since(self._files[pod]))

    @staticmethod
    def _read_pieces(pieces: list[tuple[Path, int]]) -> Generator[bytes]:
        for path, offset in pieces:
            try:
                handle = path.open("rb")
            except OSError:  # rotated out meanwhile, or the state directory is gone
                continue
            with handle:
                try:
                    if os.fstat(handle.fileno()).st_size < offset:
                        offset = 0  # truncated or replaced: all of it is new
                    handle.seek(offset)
                    rest = b""
                    while chunk := handle.read(_CHUNK):
                        block = rest + chunk
                        end = block.rfind(b"\n") + 1
                        rest = block[end:]
                        if end:
                            yield block[:end]
                except OSError:
                    continue

    def _entries(self, pod: str) -> Iterator[dict[str, Any]]:
        """Fallback without files: the backend's parsed entries that started after the cursor."""
        since = _utc_stamp(self.since)
        try:
            entries = self.backend.access_log(pod)
        except (CloverError, OSError):
            return
        for entry in entries:
            if isinstance(entry, dict) and str(entry.get("start_time", "")) >= since:
                yield entry

    # -- public

    def count_gateway(self) -> int:
        """Requests the ingress gateway logged since the cursor: how many could be joined, before sampling."""
        total = 0
        for pod in self.pods():
            if self._log_path is None:
                total += sum(1 for e in self._entries(pod) if e.get("direction") == "gateway")
                continue
            blocks = self._blocks(pod)
            with contextlib.closing(blocks):
                first = next(blocks, b"")
                # One proxy per file: its first line tells whether it is a gateway's log.
                if _GATEWAY_MARK.search(first, 0, first.find(b"\n")):
                    total += first.count(b"\n") + sum(block.count(b"\n") for block in blocks)
        return total

    def read(self, sample_every: int = 1) -> list[dict[str, Any]]:
        """Entries appended since the cursor, of the requests kept by :func:`keeps`, every pod's in turn.

        Request ids are found by a regular expression over whole blocks; only the kept lines are parsed.
        Lines without a request id, unparsable lines and a line Envoy is still writing are skipped.
        """
        _check_sample_every(sample_every)
        out: list[dict[str, Any]] = []
        for pod in self.pods():
            if self._log_path is None:
                for entry in self._entries(pod):
                    rid = entry.get("request_id")
                    if isinstance(rid, str) and keeps(rid, sample_every):
                        out.append(entry)
                continue
            for block in self._blocks(pod):
                for match in _REQUEST_ID.finditer(block):
                    if sample_every > 1 and zlib.crc32(match.group(1)) % sample_every:
                        continue
                    start = block.rfind(b"\n", 0, match.start()) + 1
                    end = block.find(b"\n", match.end())
                    parsed = _parse(block[start:end])
                    if parsed is not None:
                        out.append(parsed)
        return out


# ---------------------------------------------------------------------------------------------- join


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = float(value)
            return parsed if math.isfinite(parsed) else None
    return None


def _ms(entry: Mapping[str, Any]) -> float:
    """The entry's duration in ms: the µs field when present (``duration_us``), else whole ms (``duration``)."""
    us = _number(entry.get("duration_us"))
    if us is not None:
        return us / 1000.0
    ms = _number(entry.get("duration"))
    return ms if ms is not None else 0.0


def _total(entries: Iterable[Mapping[str, Any]]) -> float:
    return sum(_ms(e) for e in entries)


def _flags(entries: Iterable[Mapping[str, Any]]) -> str:
    seen: dict[str, None] = {}
    for entry in entries:
        for flag in str(entry.get("response_flags") or "").split(","):
            flag = flag.strip()
            if flag and flag != "-":
                seen[flag] = None
    return ",".join(seen)


def _host_service(host: str) -> str:
    """``http-lb.default.svc.cluster.local:9180`` → ``http-lb``."""
    return host.rsplit(":", 1)[0].split(".", 1)[0] if host else ""


def target_service(entry: Mapping[str, Any]) -> str | None:
    """The service an outbound (or gateway) entry called.

    From ``upstream_cluster`` (``outbound|9180|v1|http-lb.default.svc.cluster.local``); else, when Envoy
    picked no cluster (no route), from the authority the caller asked for.
    """
    cluster = entry.get("upstream_cluster")
    if isinstance(cluster, str):
        parts = cluster.split("|")
        if len(parts) == 4 and parts[0] == "outbound" and parts[3]:
            return _host_service(parts[3])
    authority = entry.get("authority")
    if isinstance(authority, str) and authority and authority != "-":
        return _host_service(authority) or None
    return None


def _deployment(pod: str) -> str | None:
    """``clover-server-v2-hpkdrgncqz-ckcwg`` → ``clover-server-v2`` (Kubernetes' ``<deployment>-<hash>-<id>``)."""
    parts = pod.rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


class _Services:
    """pod → service, with pods no longer listed mapped by their deployment prefix."""

    def __init__(self, pod_service: Mapping[str, str]) -> None:
        self.pods: dict[str, str | None] = dict(pod_service)
        self.by_deployment: dict[str, str] = {}
        for pod, service in pod_service.items():
            deployment = _deployment(pod)
            if deployment is not None:
                self.by_deployment.setdefault(deployment, service)

    def of(self, pod: object) -> str | None:
        if not isinstance(pod, str):
            return None
        if pod not in self.pods:
            deployment = _deployment(pod)
            self.pods[pod] = self.by_deployment.get(deployment) if deployment else None  # None is remembered too
        return self.pods[pod]


def join(entries: Iterable[Mapping[str, Any]], pod_service: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows of the per-hop breakdown (see :data:`COLUMNS`) for every request that went through the gateway.

    ``entries`` are access-log entries of any pods in any order; ``pod_service`` maps pod names to their
    service (``PodInfo.service``). A pod missing from it is mapped through a listed pod of the same
    Deployment (name prefix), else its entries are ignored. Requests with no gateway entry (sent to a pod
    directly) or with several (a client reusing one ``x-request-id``) are left out: they cannot be told
    apart. Rows come ordered by request (gateway start time), then along the path (``order`` 0, 1, …).
    """
    services = _Services(pod_service)
    by_request: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        rid = entry.get("request_id")
        if isinstance(rid, str) and rid:
            by_request.setdefault(rid, []).append(entry)
    requests = []
    for rid, group in by_request.items():
        gateways = [e for e in group if e.get("direction") == "gateway"]
        if len(gateways) != 1:
            continue
        start = parse_time(gateways[0].get("start_time"))
        if start is None:
            continue
        requests.append((start, rid, gateways[0], group))
    requests.sort(key=lambda r: (r[0], r[1]))
    rows: list[dict[str, Any]] = []
    for start, rid, gateway, group in requests:
        rows.extend(_walk(rid, start, gateway, group, services))
    return rows


def _by_start(entry: Mapping[str, Any]) -> str:
    return str(entry.get("start_time") or "")


def _walk(
    rid: str, start: float, gateway: Mapping[str, Any], group: Sequence[Mapping[str, Any]], services: _Services
) -> list[dict[str, Any]]:
    inbound: dict[str, list[Mapping[str, Any]]] = {}
    outbound: dict[str, list[Mapping[str, Any]]] = {}
    for entry in sorted(group, key=_by_start):
        direction = entry.get("direction")
        if direction not in ("inbound", "outbound"):
            continue
        service = services.of(entry.get("pod"))
        if service is not None:
            (inbound if direction == "inbound" else outbound).setdefault(service, []).append(entry)
    status = int(_number(gateway.get("response_code")) or 0)
    rows: list[dict[str, Any]] = []

    def emit(segment: str, ms: float, flagged: Iterable[Mapping[str, Any]]) -> None:
        rows.append(
            {
                "request_id": rid,
                "time": start,
                "segment": segment,
                "order": len(rows),
                # Spans are nested, so a negative difference is rounding (whole-ms durations) or overlap.
                "ms": round(max(ms, 0.0), 3),
                "status": status,
                "flags": _flags(flagged),
            }
        )

    visited: set[str] = set()

    def follow(caller: str, calls: Sequence[Mapping[str, Any]]) -> None:
        targets: dict[str | None, list[Mapping[str, Any]]] = {}
        for call in calls:
            targets.setdefault(target_service(call), []).append(call)
        for target, outs in targets.items():
            if target is None:
                continue
            # Every attempt (retries) of this call, on any pod of the target; each entry is used once.
            ins = inbound.pop(target, []) if target not in visited else []
            emit(f"{caller}{ARROW}{target}", _total(outs) - _total(ins), outs)
            if not ins:
                continue  # the path ends here: an abort, an overflow, a refused connection, or no log
            visited.add(target)
            onward = outbound.pop(target, [])
            emit(target, _total(ins) - _total(onward), ins)
            if onward:
                follow(target, onward)

    follow(INGRESS, [gateway])
    return rows


# ---------------------------------------------------------------------------------------------- record / load


def _csv_path(path: Path) -> Path:
    return path / HOPS_FILE if path.is_dir() else path


def _request_end(row: Mapping[str, Any], totals: Mapping[str, float]) -> float:
    return float(row["time"]) + totals[str(row["request_id"])] / 1000.0


def record_hops(
    cursor: AccessLogCursor,
    backend: AccessLogSource,
    path: Path,
    *,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    settle: float = SETTLE_SECONDS,
) -> int:
    """Write the per-hop breakdown of the requests since ``cursor`` to ``path``; return how many requests.

    ``path`` is the CSV file, or a directory to write ``hops.csv`` in. At most ``max_requests`` requests
    are joined: one in ``ceil(gateway lines / max_requests)`` is kept, chosen by a hash of its id. Only
    whole requests count: those that entered the gateway after ``cursor.since`` and ended at least
    ``settle`` seconds before the call (inner hops' entries may not be flushed yet). Bad or partial log
    lines are skipped; a mesh that no longer answers is read from the pods the cursor knew.
    """
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise ValueError(f"max_requests must be an integer ≥ 1, not {max_requests!r}")
    if not isinstance(cursor, AccessLogCursor):
        raise TypeError(f"record_hops needs an AccessLogCursor made before the traffic, not {type(cursor).__name__}")
    began = time.time()
    sample_every = max(1, math.ceil(cursor.count_gateway() / max_requests))
    entries = cursor.read(sample_every)
    pod_service = dict(cursor.pod_service)
    with contextlib.suppress(CloverError, OSError):
        pod_service.update({p.name: p.service for p in backend.pods()})
    rows = join(entries, pod_service)
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["request_id"]] = totals.get(row["request_id"], 0.0) + float(row["ms"])
    # Whole requests only: entered the gateway at or after the cursor's `since` (a whole millisecond, as the
    # gateway's start times are), and ended before the last flush.
    rows = [r for r in rows if float(r["time"]) >= cursor.since and _request_end(r, totals) <= began - settle]
    ids = sorted({r["request_id"] for r in rows}, key=lambda rid: (zlib.crc32(rid.encode("utf-8")), rid))
    if len(ids) > max_requests:  # the hash sample is ~max_requests on average; make it a bound
        kept = set(ids[:max_requests])
        rows = [r for r in rows if r["request_id"] in kept]
        ids = ids[:max_requests]
    write_rows(rows, _csv_path(Path(path)))
    return len(ids)


def write_rows(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    """``hops.csv`` from :func:`join` rows, written atomically (a header alone when there are none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row["request_id"],
                f"{float(row['time']):.3f}",
                row["segment"],
                int(row["order"]),
                f"{float(row['ms']):.3f}",
                int(row["status"]),
                row.get("flags") or "",
            ]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_hops(path: Path) -> Any:
    """``hops.csv`` (or the directory holding it) as a pandas DataFrame with typed columns."""
    import pandas  # type: ignore[import-untyped,unused-ignore]

    frame = pandas.read_csv(
        _csv_path(Path(path)),
        dtype={"request_id": str, "segment": str, "flags": str},
        keep_default_na=False,
    )
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = "" if column == "flags" else pandas.Series(dtype=float)
    frame["time"] = pandas.to_numeric(frame["time"], errors="coerce").astype(float)
    frame["ms"] = pandas.to_numeric(frame["ms"], errors="coerce").astype(float)
    frame["order"] = pandas.to_numeric(frame["order"], errors="coerce").fillna(0).astype(int)
    frame["status"] = pandas.to_numeric(frame["status"], errors="coerce").fillna(0).astype(int)
    return frame[list(COLUMNS)]


# ---------------------------------------------------------------------------------------------- phases


def phase_intervals(events: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    """(start, end, name) of each phase: a ``phase-start`` to the next ``phase-end`` of the same name.

    A phase never ended runs until the next phase starts (or for ever, when it is the last).
    """
    marks: list[tuple[float, str, str]] = []
    for event in events:
        try:
            kind, name, when = event["kind"], event["name"], float(event["time"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a timeline event needs time (Unix s), kind and name: {dict(event)!r}") from exc
        if kind in ("phase-start", "phase-end"):
            marks.append((when, kind, str(name)))
    marks.sort(key=lambda m: (m[0], m[1] == "phase-start"))  # at one instant, an end before a start
    intervals = []
    for i, (when, kind, name) in enumerate(marks):
        if kind != "phase-start":
            continue
        end = math.inf
        for later, later_kind, later_name in marks[i + 1 :]:
            if later_kind == "phase-end" and later_name == name:
                end = later
                break
            if later_kind == "phase-start":
                end = min(end, later)
        intervals.append((when, end, name))
    return intervals


def assign_phases(df: Any, events: Sequence[Mapping[str, Any]]) -> Any:
    """A copy of ``df`` (rows with a ``time`` column, Unix s) with a ``phase`` column from the timeline events.

    A row belongs to the phase during which its request entered the gateway (start inclusive, end
    exclusive, so a request on a boundary goes to the phase that starts there); outside every phase: None.
    """
    if "time" not in getattr(df, "columns", ()):
        raise ValueError("assign_phases needs a DataFrame with a 'time' column (Unix seconds), e.g. load_hops()")
    import numpy
    import pandas

    out = df.copy()
    times = out["time"].astype(float).to_numpy()
    phase = numpy.full(len(out), None, dtype=object)
    for start, end, name in phase_intervals(events):  # a later phase wins where two overlap
        phase[(times >= start) & (times < end)] = name
    out["phase"] = pandas.Series(phase, index=out.index, dtype=object)  # None stays None (not NaN)
    return out


__all__ = [
    "COLUMNS",
    "HOPS_FILE",
    "AccessLogCursor",
    "assign_phases",
    "join",
    "keeps",
    "load_hops",
    "phase_intervals",
    "record_hops",
    "target_service",
    "write_rows",
]
