"""Log rotation of the embedded mesh (``pytest_clover.backends.local.logrotate``) on temporary files.

Writers are simulated the way the mesh's processes write: an Envoy keeps its access log open (``O_APPEND``)
and reopens the path only when told to; a child's stdout is an ``O_APPEND`` descriptor it never reopens.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_clover.backends.local.logrotate import (
    ACCESS_LOG,
    DEFAULT_GENERATIONS,
    DEFAULT_MAX_BYTES,
    GENERATIONS_ENV,
    MAX_BYTES_ENV,
    MESH_LOGS,
    OTHER_MAX_BYTES,
    LogLimits,
    LogRotator,
    appended_since,
    copy_truncate,
    generation,
    generations,
    log_limits,
    mark,
    rotate_by_rename,
    rotation_lock,
)
from pytest_clover.backends.local.translate import ProxySpec, _access_log
from pytest_clover.errors import ConfigError

MIB = 1024 * 1024


class Writer:
    """A process writing a log through an ``O_APPEND`` descriptor, reopening the path only when told to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.written = 0

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)
        self.written += len(data)

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    opened: list[Writer] = []
    yield opened
    for writer in opened:
        writer.close()


def line(number: int, size: int = 100) -> bytes:
    head = json.dumps({"n": number, "request_id": f"{number:08x}-0000"})
    return (head + " " * max(0, size - len(head) - 1) + "\n").encode()


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in generations(path))


# ------------------------------------------------------------------------------------------ one file


def test_rename_shifts_the_copies_and_keeps_only_as_many_as_asked(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    for number in range(5):
        log.write_bytes(line(number))
        assert rotate_by_rename(log, keep=2)
    assert not log.exists()
    assert generations(log) == [generation(log, 2), generation(log, 1)]
    assert json.loads(generation(log, 1).read_bytes())["n"] == 4
    assert json.loads(generation(log, 2).read_bytes())["n"] == 3
    assert not generation(log, 3).exists()


def test_rename_leaves_a_missing_or_empty_log_alone_and_keep_zero_deletes(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    assert not rotate_by_rename(log, keep=2)
    log.touch()
    assert not rotate_by_rename(log, keep=2)
    assert generations(log) == [log]
    log.write_bytes(line(1))
    assert rotate_by_rename(log, keep=0)
    assert generations(log) == []


def test_a_smaller_setting_removes_the_copies_a_larger_one_left(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    for number in range(4):
        log.write_bytes(line(number))
        rotate_by_rename(log, keep=4)
    assert len(generations(log)) == 4
    log.write_bytes(line(9))
    rotate_by_rename(log, keep=1)
    assert generations(log) == [generation(log, 1)]
    assert json.loads(generation(log, 1).read_bytes())["n"] == 9


def test_a_writer_goes_on_into_the_renamed_file_until_it_reopens(tmp_path: Path, writers: list[Writer]) -> None:
    log = tmp_path / ACCESS_LOG
    envoy = Writer(log)
    writers.append(envoy)
    envoy.write(line(1))
    assert rotate_by_rename(log, keep=1)
    envoy.write(line(2))  # before its reopen: nothing is lost
    envoy.reopen()
    envoy.write(line(3))
    assert [json.loads(x)["n"] for x in generation(log, 1).read_bytes().splitlines()] == [1, 2]
    assert [json.loads(x)["n"] for x in log.read_bytes().splitlines()] == [3]


def test_copy_truncate_keeps_the_content_and_the_writer_appends_from_zero(
    tmp_path: Path, writers: list[Writer]
) -> None:
    log = tmp_path / "app.log"
    app = Writer(log)
    writers.append(app)
    app.write(b"listening\n" * 50)
    assert copy_truncate(log, keep=2)
    app.write(b"after\n")
    assert generation(log, 1).read_bytes() == b"listening\n" * 50
    # O_APPEND: the next write lands at the new end, no hole of the old length before it.
    assert log.read_bytes() == b"after\n"
    assert not list(tmp_path.glob(".*rotating"))
    assert not copy_truncate(tmp_path / "missing.log", keep=2)


def test_generations_lists_oldest_first_and_ignores_a_copy_after_a_gap(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    for number in (1, 2, 4):
        generation(log, number).write_text(str(number))
    log.write_text("0")
    assert [p.read_text() for p in generations(log)] == ["2", "1", "0"]


# ------------------------------------------------------------------------------------------ the rotator


def pod_folders(root: Path, names: list[str]) -> dict[str, Path]:
    folders = {}
    for name in names:
        folder = root / "pods" / name
        folder.mkdir(parents=True)
        folders[name] = folder
    return folders


def test_one_full_access_log_rotates_every_pod_s_in_place_without_a_reopen(
    tmp_path: Path, writers: list[Writer]
) -> None:
    limits = LogLimits(max_bytes=10_000, generations=2)
    live = pod_folders(tmp_path, ["gateway", "lb", "idle"])
    envoys = {name: Writer(folder / ACCESS_LOG) for name, folder in live.items() if name != "idle"}
    writers.extend(envoys.values())
    (live["idle"] / ACCESS_LOG).touch()
    rotator = LogRotator(limits, tmp_path / "pods")
    envoys["gateway"].write(line(1, 5_000))
    envoys["lb"].write(line(1, 500))
    assert rotator.check(live).rotated == [], "under the limit: nothing happens"
    assert generations(live["lb"] / ACCESS_LOG) == [live["lb"] / ACCESS_LOG]

    envoys["gateway"].write(line(2, 5_000))  # the gateway reaches the limit; the load balancer is far below it
    done = rotator.check(live)
    assert sorted(p.parent.name for p in done.rotated) == ["gateway", "lb"]  # the empty log is left alone
    # Copied and truncated in place: Envoy (O_APPEND, like these writers) goes on at the new end, no reopen.
    assert done.reopen == set()
    assert (live["lb"] / "access.log.1").stat().st_size == 500
    assert (live["lb"] / ACCESS_LOG).stat().st_size == 0
    envoys["lb"].write(line(3, 100))
    assert (live["lb"] / ACCESS_LOG).read_bytes() == line(3, 100)


def test_a_reader_holding_a_log_defers_every_access_log_s_rotation_to_the_next_check(
    tmp_path: Path, writers: list[Writer]
) -> None:
    limits = LogLimits(max_bytes=1_000, generations=2)
    live = pod_folders(tmp_path, ["gateway", "lb"])
    envoys = {name: Writer(folder / ACCESS_LOG) for name, folder in live.items()}
    writers.extend(envoys.values())
    for envoy in envoys.values():
        envoy.write(line(1, 2_000))
    rotator = LogRotator(limits, tmp_path / "pods")
    # The reader is another process, as pytest is to the supervisor: flock is per open file, across processes.
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pytest_clover.logfiles import rotation_lock\n"
            "with rotation_lock(sys.argv[1], exclusive=False) as held:\n"
            "    print(held, flush=True); sys.stdin.readline()",
            str(live["lb"] / ACCESS_LOG),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as reader:
        try:
            assert reader.stdout is not None and reader.stdin is not None
            assert reader.stdout.readline().strip() == "True"
            assert rotator.check(live).rotated == [], "a reader holds the load balancer's log: none may rotate"
            assert all(generations(folder / ACCESS_LOG) == [folder / ACCESS_LOG] for folder in live.values())
            reader.stdin.write("done\n")
            reader.stdin.flush()
            assert reader.wait(timeout=30) == 0
        finally:
            if reader.poll() is None:
                reader.kill()
    assert sorted(p.parent.name for p in rotator.check(live).rotated) == ["gateway", "lb"]
    assert not copy_truncate(live["lb"] / ACCESS_LOG, 2), "nothing new: an empty log is left alone"


def test_a_reader_waits_for_a_rotation_under_way_then_gives_up(tmp_path: Path) -> None:
    log = tmp_path / ACCESS_LOG
    log.write_bytes(line(1))
    with rotation_lock(log, exclusive=True, wait=0) as held:
        assert held
        with rotation_lock(log, exclusive=True, wait=0) as again:
            assert not again, "a second rotation does not wait"
        began = time.monotonic()
        with rotation_lock(log, exclusive=False, wait=0.2) as reading:
            assert not reading, "the reader gave up after its timeout and reads without the lock"
        assert time.monotonic() - began >= 0.2, "it waited for the rotation first"
    with rotation_lock(log, exclusive=False, wait=0.05) as reading:
        assert reading
    with rotation_lock(tmp_path / "gone" / ACCESS_LOG, exclusive=False) as reading:
        assert not reading, "a log whose folder is gone is read (and found missing) without waiting"


def test_quiet_logs_rotate_at_the_smaller_limit_and_mesh_logs_are_copied(tmp_path: Path) -> None:
    limits = LogLimits(max_bytes=64 * MIB, generations=1)
    assert limits.other_max_bytes == OTHER_MAX_BYTES
    live = pod_folders(tmp_path, ["pod"])
    (live["pod"] / "envoy.log").write_bytes(b"w" * OTHER_MAX_BYTES)
    (live["pod"] / "app.log").write_bytes(b"a" * (OTHER_MAX_BYTES - 1))
    (live["pod"] / "envoy.stdout.log").write_bytes(b"s" * OTHER_MAX_BYTES)
    supervisor_log = tmp_path / MESH_LOGS[0]
    supervisor_log.write_bytes(b"l" * OTHER_MAX_BYTES)
    done = LogRotator(limits, tmp_path / "pods", [supervisor_log]).check(live)
    assert {p.name for p in done.rotated} == {"envoy.log", "envoy.stdout.log", supervisor_log.name}
    assert done.reopen == {"pod"}, "envoy.log is Envoy's own: it must reopen it"
    assert not (live["pod"] / "envoy.log").exists()
    assert (live["pod"] / "envoy.stdout.log").stat().st_size == 0  # copied and truncated in place
    assert supervisor_log.stat().st_size == 0 and generation(supervisor_log, 1).stat().st_size == OTHER_MAX_BYTES
    assert (live["pod"] / "app.log").stat().st_size == OTHER_MAX_BYTES - 1


def test_disk_stays_bounded_over_a_long_simulated_run(tmp_path: Path, writers: list[Writer]) -> None:
    """Many rotations' worth of writes at uneven rates: at every check, each log and its copies stay within
    ``(1 + generations) × (limit + one check's writes)``, every byte written since the oldest copy's start is
    still there, and the Envoys keep writing to the new files."""
    rng = random.Random(14)
    limits = LogLimits(max_bytes=20_000, generations=2)
    live = pod_folders(tmp_path, ["gateway", "pac", "lb", "server"])
    rates = {"gateway": 1.0, "pac": 2.0, "lb": 2.0, "server": 0.4}  # lines per tick, as the SDC path has them
    envoys = {name: Writer(folder / ACCESS_LOG) for name, folder in live.items()}
    writers.extend(envoys.values())
    rotator = LogRotator(limits, tmp_path / "pods")
    line_size = 120
    most_per_check = 0
    sequence = 0
    for _tick in range(300):
        before = {name: envoy.written for name, envoy in envoys.items()}
        for name, envoy in envoys.items():
            for _ in range(int(rates[name] * rng.uniform(5, 15))):
                sequence += 1
                envoy.write(line(sequence, line_size))
        most_per_check = max(most_per_check, *(envoys[n].written - before[n] for n in envoys))
        for name in rotator.check(live).reopen:
            envoys[name].reopen()
            rotator.reopened(name)
        for folder in live.values():
            assert on_disk(folder / ACCESS_LOG) <= (1 + limits.generations) * (limits.max_bytes + most_per_check)
            assert len(generations(folder / ACCESS_LOG)) <= 1 + limits.generations
    written = sum(envoy.written for envoy in envoys.values())
    kept = sum(on_disk(folder / ACCESS_LOG) for folder in live.values())
    assert written > 10 * kept, "the run wrote far more than the bound, or nothing was tested"
    assert kept <= limits.disk_bound(len(live), slack=most_per_check)
    for folder in live.values():
        numbers = [json.loads(x)["n"] for p in generations(folder / ACCESS_LOG) for x in p.read_bytes().splitlines()]
        assert numbers == sorted(numbers), "the copies, oldest first, are the log in order"
    assert (live["pac"] / ACCESS_LOG).stat().st_size > 0, "the Envoy writes to the new file"


def test_only_the_most_recently_dead_pods_keep_their_logs(tmp_path: Path) -> None:
    limits = LogLimits(max_bytes=MIB, dead_pods_kept=2)
    live = pod_folders(tmp_path, ["alive"])
    dead = pod_folders(tmp_path, ["dead-a", "dead-b", "dead-c", "dead-d"])
    for age, (_name, folder) in enumerate(dead.items()):  # dead-a died last
        for name in (ACCESS_LOG, "access.log.1", "app.log", "envoy.log"):
            (folder / name).write_bytes(b"x")
            os.utime(folder / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
        (folder / "bootstrap.json").write_text("{}")
    (live["alive"] / ACCESS_LOG).write_bytes(b"x")
    os.utime(live["alive"] / ACCESS_LOG, (1, 1))  # the oldest of all, but alive
    rotator = LogRotator(limits, tmp_path / "pods")
    assert sorted(rotator.check(live).pruned) == ["dead-c", "dead-d"]
    assert (dead["dead-a"] / ACCESS_LOG).exists() and (dead["dead-b"] / "access.log.1").exists()
    assert sorted(p.name for p in dead["dead-d"].iterdir()) == ["bootstrap.json"]
    assert (live["alive"] / ACCESS_LOG).exists()
    assert rotator.check(live).pruned == [], "pruned once"


# ------------------------------------------------------------------------------------------ settings


def test_limits_come_from_the_settings_then_the_environment_then_the_defaults() -> None:
    assert log_limits({}, {}) == LogLimits()
    assert LogLimits().max_bytes == DEFAULT_MAX_BYTES and LogLimits().generations == DEFAULT_GENERATIONS
    env = {MAX_BYTES_ENV: "64KiB", GENERATIONS_ENV: "3", "CLOVER_ACCESS_LOG_PERCENT": "25%"}
    from_env = log_limits({}, env)
    assert (from_env.max_bytes, from_env.generations, from_env.access_log_percent) == (64 * 1024, 3, 25.0)
    both = log_limits({"log_max_bytes": 5_000_000, "log_generations": 0}, env)
    assert (both.max_bytes, both.generations) == (5_000_000, 0)
    assert log_limits({}, {MAX_BYTES_ENV: "2 g"}).max_bytes == 2 * 1024**3
    assert log_limits({"log_check_seconds": "0.25s"}, {"CLOVER_LOG_CHECK_SECONDS": "9"}).interval == 0.25


@pytest.mark.parametrize(
    ("settings", "environ", "where", "field"),
    [
        ({}, {MAX_BYTES_ENV: "lots"}, "the environment", MAX_BYTES_ENV),
        ({}, {MAX_BYTES_ENV: "100"}, "the environment", MAX_BYTES_ENV),
        ({"log_generations": "-1"}, {}, "the local backend's settings", "log_generations"),
        ({}, {GENERATIONS_ENV: "two"}, "the environment", GENERATIONS_ENV),
        ({"access_log_percent": "0"}, {}, "the local backend's settings", "access_log_percent"),
        ({}, {"CLOVER_ACCESS_LOG_PERCENT": "150"}, "the environment", "CLOVER_ACCESS_LOG_PERCENT"),
        ({}, {"CLOVER_LOG_CHECK_SECONDS": "0"}, "the environment", "CLOVER_LOG_CHECK_SECONDS"),
    ],
)
def test_a_bad_limit_names_where_it_was_given_and_what_to_give(
    settings: dict[str, object], environ: dict[str, str], where: str, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        log_limits(settings, environ)
    (problem,) = caught.value.problems
    assert (problem.file, problem.field) == (where, field)
    assert "must be" in problem.message and "got" in problem.message


def test_the_documented_bound_of_the_defaults() -> None:
    """The module's docstring: 132 MiB per pod, about 1.7 GiB for the SDC sample's 9 pods (4 dead ones kept)."""
    limits = LogLimits()
    per_file = (1 + limits.generations) * limits.max_bytes
    assert limits.pod_bound() == per_file + 3 * (1 + limits.generations) * OTHER_MAX_BYTES == 132 * MIB
    sdc = limits.disk_bound(9)
    assert sdc == 13 * 132 * MIB + 3 * 3 * OTHER_MAX_BYTES
    assert 1.6 < sdc / 1024**3 < 1.8
    assert limits.disk_bound(9, slack=MIB) > sdc


# ------------------------------------------------------------------------------------------ readers


def read(pieces: list[tuple[Path, int]]) -> list[int]:
    numbers = []
    for path, offset in pieces:
        with path.open("rb") as handle:
            handle.seek(offset)
            numbers += [json.loads(x)["n"] for x in handle.read().splitlines()]
    return numbers


def test_appended_since_follows_renames_and_copies(tmp_path: Path, writers: list[Writer]) -> None:
    log = tmp_path / ACCESS_LOG
    envoy = Writer(log)
    writers.append(envoy)
    envoy.write(line(1))
    start = mark(log)
    assert read(appended_since(start)) == []
    envoy.write(line(2))
    assert read(appended_since(start)) == [2]
    for number in (3, 4):
        rotate_by_rename(log, keep=3)
        envoy.reopen()
        envoy.write(line(number))
    assert read(appended_since(start)) == [2, 3, 4], "the marked file is .2 now: read on from there"

    app_log = tmp_path / "app.log"
    app = Writer(app_log)
    writers.append(app)
    app.write(line(10))
    point = mark(app_log)
    app.write(line(11))
    copy_truncate(app_log, keep=1)
    app.write(line(12))
    assert read(appended_since(point)) == [11, 12]


def test_appended_since_reads_everything_left_when_the_marked_file_is_gone(tmp_path: Path) -> None:
    log = tmp_path / ACCESS_LOG
    assert read(appended_since(mark(log))) == [], "no file yet, and none later: nothing"
    before = mark(log)
    log.write_bytes(line(1))
    assert read(appended_since(before)) == [1], "a file born after the mark is new from its start"
    start = mark(log)
    for number in (2, 3, 4):
        rotate_by_rename(log, keep=1)  # the marked file is deleted by the second rotation
        log.write_bytes(line(number))
    assert read(appended_since(start)) == [3, 4]

    empty = tmp_path / "envoy.log"
    empty.touch()
    older = tmp_path / "envoy.log.1"
    older.write_bytes(line(0))  # last written well before the mark: not read
    os.utime(older, (time.time() - 60, time.time() - 60))
    at_start = mark(empty)
    empty.write_bytes(line(5))
    rotate_by_rename(empty, keep=2)
    empty.write_bytes(line(6))
    assert read(appended_since(at_start)) == [5, 6], "an empty marked file: what was written after the mark"


# ------------------------------------------------------------------------------------------ sampling


def spec(tmp_path: Path, percent: float | None = None) -> ProxySpec:
    extra = {} if percent is None else {"access_log_percent": percent}
    return ProxySpec(
        name="pod-0",
        namespace="default",
        kind="sidecar",
        ip="127.0.0.2",
        labels={"app": "x"},
        access_log=str(tmp_path / ACCESS_LOG),
        **extra,  # type: ignore[arg-type]
    )


def test_access_logs_are_unfiltered_by_default_and_sampled_by_request_id_when_asked(tmp_path: Path) -> None:
    (default,) = _access_log(spec(tmp_path), "inbound")
    assert "filter" not in default, "every request logged, the configuration as it always was"
    (sampled,) = _access_log(spec(tmp_path, 12.5), "outbound")
    runtime = sampled["filter"]["runtime_filter"]
    assert runtime["percent_sampled"] == {"numerator": 125_000, "denominator": "MILLION"}
    assert not runtime.get("use_independent_randomness"), "hops must agree on which requests they keep"
    assert sampled["typed_config"] == default["typed_config"] | {
        "log_format": {"json_format": {**default["typed_config"]["log_format"]["json_format"], "direction": "outbound"}}
    }
