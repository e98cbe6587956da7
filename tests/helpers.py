"""Small, dependency-free HTTP and statistics helpers shared by the integration tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    request_id: str

    @property
    def hops(self) -> list[str]:
        """``pod/version`` entries of x-clover-hops, outermost first."""
        raw = self.headers.get("x-clover-hops", "")
        return [h.strip() for h in raw.split(",") if h.strip()]

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP/1.1 connection per thread (never through a proxy from the environment)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> Reply:
        hdrs = dict(headers or {})
        rid = hdrs.setdefault("x-request-id", str(uuid.uuid4()))
        for attempt in range(2):
            conn = self._conn()
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, ConnectionError) as exc:
                # A server may close an idle keep-alive connection: retry once on a new one.
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                last = exc
                continue
            elapsed = time.perf_counter() - start
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                self._local.conn = None
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, elapsed, rid)
        raise AssertionError(f"unreachable: {last}")

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers)

    def put_json(self, path: str, payload: Any) -> Reply:
        return self.request("PUT", path, {"content-type": "application/json"}, json.dumps(payload).encode())

    def many(self, n: int, path: str = "/", headers: Mapping[str, str] | None = None, workers: int = 8) -> list[Reply]:
        """``n`` GETs spread over ``workers`` parallel keep-alive connections."""
        with ThreadPoolExecutor(workers) as pool:
            replies = list(pool.map(lambda _: self.get(path, headers), range(n)))
        # Worker threads are gone: their connections would otherwise leak.
        self.close()
        return replies


def wait_for(
    condition: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll until ``condition()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {value!r})")
        time.sleep(interval)


def binomial_interval(n: int, p: float, z: float = 3.2905) -> tuple[float, float]:
    """Normal-approximation interval for a binomial count (z = 3.2905: two-sided 99.9 %).

    Envoy draws its own random numbers, so these tests cannot be seeded; at 99 % each would fail one CI run in
    a hundred with nothing wrong, and there are several. A real mistake (a reversed split, a percentage read as
    per mille, retried aborts) still lands far outside."""
    mean = n * p
    half = z * math.sqrt(n * p * (1 - p))
    return mean - half, mean + half


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class BackgroundLoad:
    """Steady closed-loop traffic in threads while a test changes the mesh; records every reply."""

    client: Client
    workers: int = 4
    path: str = "/"
    replies: list[Reply] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.workers)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.client.get(self.path)
            except Exception as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                continue
            with self._lock:
                self.replies.append(reply)

    def __enter__(self) -> BackgroundLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.replies)
