"""The backend contract on LocalBackend, plus what only a local disk has:
temp and lock files, stale-lock breaking, key validation and process races."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import queue
import time
import uuid
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from registry.backends.base import Backend
from registry.backends.local import LOCK_SUFFIX, STALE_LOCK_SECONDS, TEMP_MARKER, LocalBackend
from registry.exceptions import PreconditionFailed
from registry.testing import BackendTests
from registry.testing.backend_tests import collect


class TestLocalBackend(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return LocalBackend(tmp_path / "store")


class TestLocalBackendNoFsync(BackendTests):
    """``fsync=False`` (bulk imports) keeps every other guarantee."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        backend = LocalBackend(tmp_path / "store", fsync=False)
        assert backend.fsync is False
        return backend


@pytest.fixture
def local(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "store")


def temp_name(name: str) -> str:
    """The name a writer gives its temp file for the key file ``name``."""
    return f".{name}{TEMP_MARKER}{uuid.uuid4().hex}"


def set_age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def is_internal(key: str) -> bool:
    last = key.rstrip("/").rsplit("/", 1)[-1]
    return TEMP_MARKER in last or last.endswith(LOCK_SUFFIX)


# -- temp and lock files -------------------------------------------------------------


@pytest.mark.anyio
async def test_leftover_temp_and_lock_files_are_never_listed(local: LocalBackend) -> None:
    await local.put("f/a", b"a")
    await local.put("f/sub/b", b"b")
    (local.root / "f" / temp_name("a")).write_bytes(b"half written")
    (local.root / "f" / f".a{LOCK_SUFFIX}").write_bytes(b"")
    (local.root / "f" / "sub" / temp_name("new")).write_bytes(b"crashed writer")

    files, folders = await collect(local, "")
    assert set(files) == {"f/a", "f/sub/b"} and folders == set()
    files, folders = await collect(local, "f/", delimiter="/")
    assert set(files) == {"f/a"} and folders == {"f/sub/"}
    files, folders = await collect(local, "f/sub/", delimiter="/")
    assert set(files) == {"f/sub/b"} and folders == set()


@pytest.mark.anyio
async def test_in_flight_temp_files_are_never_listed(local: LocalBackend) -> None:
    written = {f"live/k{i}" for i in range(20)}
    seen: set[str] = set()
    done = anyio.Event()
    value = b"x" * (1024 * 1024)

    async def writer() -> None:
        for key in sorted(written):
            info = await local.put(key, value)
            await local.put(key, value[:-1], if_match=info.etag)  # takes the lock file
            await local.put(key, value)
        done.set()

    async def lister() -> None:
        while not done.is_set():
            for delimiter in (None, "/"):
                files, folders = await collect(local, "live/", delimiter=delimiter)
                seen.update(files, folders)
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lister)
            tg.start_soon(writer)
    assert seen, "the lister never saw anything"
    assert seen <= written, f"listed internal files: {sorted(seen - written)}"
    files, _ = await collect(local, "")
    assert set(files) == written


# -- the compare-and-swap lock ------------------------------------------------------


@pytest.mark.anyio
async def test_stale_lock_is_broken_by_cas_put(local: LocalBackend) -> None:
    info = await local.put("k/key", b"v1")
    lock = local.root / "k" / f".key{LOCK_SUFFIX}"
    lock.write_bytes(b"")  # its holder died long ago
    set_age(lock, STALE_LOCK_SECONDS + 5)
    with anyio.fail_after(5):
        new = await local.put("k/key", b"v2", if_match=info.etag)
    assert await local.get("k/key") == b"v2"
    assert new.etag != info.etag
    assert not lock.exists()
    assert os.listdir(local.root / "k") == ["key"]


@pytest.mark.anyio
async def test_fresh_lock_makes_cas_wait(local: LocalBackend) -> None:
    info = await local.put("k/key", b"v1")
    lock = local.root / "k" / f".key{LOCK_SUFFIX}"
    lock.write_bytes(b"")  # held by a live writer
    finished = anyio.Event()

    async def cas() -> None:
        await local.put("k/key", b"v2", if_match=info.etag)
        finished.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cas)
            await anyio.sleep(0.3)
            assert not finished.is_set(), "CAS ignored a fresh lock"
            assert await local.get("k/key") == b"v1"
            lock.unlink()
            await finished.wait()
    assert await local.get("k/key") == b"v2"


@pytest.mark.anyio
async def test_remove_stale_temp(local: LocalBackend) -> None:
    await local.put("t/key", b"kept")
    old = local.root / "t" / temp_name("key")
    old.write_bytes(b"left by a crashed writer")
    set_age(old, 7200)
    fresh = local.root / "t" / temp_name("other")
    fresh.write_bytes(b"a writer still at work")

    assert await local.remove_stale_temp(older_than=3600, dry_run=True) == 1
    assert old.exists() and fresh.exists()
    assert await local.remove_stale_temp(older_than=3600) == 1
    assert not old.exists()
    assert fresh.exists()
    assert await local.get("t/key") == b"kept"
    assert await local.remove_stale_temp(older_than=3600) == 0


# -- keys ----------------------------------------------------------------------------


BAD_KEYS = ["../x", "/abs", "a//b", "", "a/./b", "a/../../x", "trailing/", ".."]


@pytest.mark.anyio
@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_raise_value_error(
    local: LocalBackend, tmp_path: Path, key: str
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError):
        await local.put(key, b"escape")
    with pytest.raises(ValueError):
        await local.put(key, b"escape", mode="create")
    with pytest.raises(ValueError):
        await local.put(key, b"escape", if_match="x")
    with pytest.raises(ValueError):
        await local.put_file(key, src)
    with pytest.raises(ValueError):
        await local.get(key)
    with pytest.raises(ValueError):
        await local.get_file(key, tmp_path / "dest")
    with pytest.raises(ValueError):
        await local.head(key)
    with pytest.raises(ValueError):
        await local.delete([key])
    assert sorted(os.listdir(tmp_path)) == before
    assert not (tmp_path / "x").exists()


@pytest.mark.anyio
async def test_list_rejects_escaping_prefix(local: LocalBackend) -> None:
    for prefix in ("../", "/abs/", "a/../../", "../outside/"):
        with pytest.raises(ValueError):
            await collect(local, prefix)


@pytest.mark.anyio
async def test_two_instances_share_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    one = LocalBackend(root)
    two = LocalBackend(f"file://{root}")
    assert one.uri == two.uri == f"file://{root}"
    info = await one.put("shared/key", b"from one", mode="create")
    with pytest.raises(PreconditionFailed):
        await two.put("shared/key", b"from two", mode="create")
    head = await two.head("shared/key")
    assert head is not None and head.etag == info.etag
    await two.put("shared/key", b"from two", if_match=info.etag)
    assert await one.get("shared/key") == b"from two"
    assert (root / "shared" / "key").read_bytes() == b"from two"


# -- process races -------------------------------------------------------------------

PROCESSES = 8
INCREMENTS_PER_PROCESS = 3
Report = tuple[int, str, str, int]


def race_payload(index: int) -> bytes:
    return f"process {index} ".encode() * (1000 + index)


def _process_worker(
    backend: LocalBackend,
    index: int,
    barrier: multiprocessing.synchronize.Barrier,
    reports: multiprocessing.queues.Queue[Report],
) -> None:
    """Race for one key with mode="create", then CAS-increment a counter."""

    async def create() -> tuple[str, str]:
        try:
            info = await backend.put("race/key", race_payload(index), mode="create")
        except PreconditionFailed:
            return "lost", ""
        return "won", info.etag

    async def increment() -> int:
        conflicts = 0
        while True:
            info = await backend.head("race/counter")
            assert info is not None
            value = int(await backend.get("race/counter"))
            try:
                await backend.put("race/counter", b"%d" % (value + 1), if_match=info.etag)
            except PreconditionFailed:
                conflicts += 1
                continue
            return conflicts

    async def main() -> tuple[str, str, int]:
        # Warm up (event loop, worker threads, lazy imports) before the start
        # line, so that the processes really hit the key at the same moment.
        await backend.head("race/key")
        await anyio.to_thread.run_sync(barrier.wait, 30.0)
        outcome, etag = await create()
        await anyio.to_thread.run_sync(barrier.wait, 30.0)
        conflicts = 0
        for _ in range(INCREMENTS_PER_PROCESS):
            conflicts += await increment()
        return outcome, etag, conflicts

    try:
        outcome, etag, conflicts = anyio.run(main)
    except BaseException as exc:
        reports.put((index, "error", repr(exc), 0))
        raise
    reports.put((index, outcome, etag, conflicts))


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_process_race_create_and_cas(local: LocalBackend) -> None:
    await local.put("race/counter", b"0")  # also gives the backend a limiter to drop
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    reports: multiprocessing.queues.Queue[Report] = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(local, i, barrier, reports))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    results: list[Report] = []
    try:
        deadline = time.monotonic() + 45
        while len(results) < PROCESSES:
            try:
                results.append(reports.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert len(results) == PROCESSES, f"only {len(results)} processes reported: {results}"
    errors = [r for r in results if r[1] == "error"]
    assert errors == []
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    winners = [r for r in results if r[1] == "won"]
    assert len(winners) == 1, f"{len(winners)} processes won a create race: {winners}"
    assert sum(r[1] == "lost" for r in results) == PROCESSES - 1
    winner, _, etag, _ = winners[0]
    assert await local.get("race/key") == race_payload(winner)
    head = await local.head("race/key")
    assert head is not None and head.etag == etag
    assert await local.get("race/counter") == b"%d" % (PROCESSES * INCREMENTS_PER_PROCESS)
    files, _ = await collect(local, "race/")
    assert set(files) == {"race/key", "race/counter"}
    leftovers = [n for n in os.listdir(local.root / "race") if is_internal(n)]
    assert leftovers == []


def test_temp_names_are_unique_across_threads_and_forked_children() -> None:
    """Temp names come from a per-process token and a counter (no random read
    per write); a forked child gets a token of its own, or its temp files
    could collide with its parent's (O_EXCL would fail the write)."""
    from registry.backends.local_files import is_temp_name, temp_name

    names = [temp_name("1.json") for _ in range(1000)]
    assert len(set(names)) == 1000 and all(is_temp_name(n) for n in names)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report a name and leave at once
        os.write(write, temp_name("1.json").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    token = len(".1.json" + TEMP_MARKER) + 32
    assert child[:token] != temp_name("1.json")[:token]


@pytest.mark.anyio
async def test_inline_reads_let_other_tasks_run_and_stay_cancellable(local: LocalBackend) -> None:
    """Inline reads yield to the event loop once every YIELD_EVERY reads:
    a task reading in a loop leaves room for others, and a cancelled scope
    stops it within YIELD_EVERY reads."""
    from registry.backends.local import YIELD_EVERY

    await local.put("k", b"v")
    reads = 20 * YIELD_EVERY
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # the ticker starts
        before = ticks
        for _ in range(reads):
            assert await local.get("k") == b"v"
        assert ticks - before >= reads // YIELD_EVERY - 1
        tg.cancel_scope.cancel()

    done = 0
    with anyio.CancelScope() as scope:
        scope.cancel()
        for _ in range(reads):
            await local.get("k")
            done += 1
    assert done < YIELD_EVERY
