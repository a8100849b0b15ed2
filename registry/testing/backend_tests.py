"""The backend contract as a reusable pytest suite (the zarr ``StoreTests`` pattern).

A subclass provides one fixture, ``backend``, returning a fresh, empty
:class:`~registry.backends.base.Backend` (a plain or an async fixture; an
async generator fixture can ``aclose`` it afterwards)::

    class TestMemoryBackend(BackendTests):
        @pytest.fixture
        def backend(self) -> Backend:
            return MemoryBackend()

Every test is async and marked ``anyio``; the ``anyio_backend`` fixture picks
the event loop. The class attributes below scale the heavier tests down for
slow remote stores.

Races are real: tasks are released together, and the tests check that a lost
precondition really fails (a store that ignores ``mode="create"`` or
``if_match`` makes every MVCC guarantee above it meaningless).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest

from registry.backends.base import Backend, FileInfo
from registry.exceptions import ObjectNotFound, PreconditionFailed

__all__ = ["BackendTests", "collect"]

MiB = 1024 * 1024


async def collect(
    backend: Backend, prefix: str, *, delimiter: str | None = None
) -> tuple[dict[str, FileInfo], set[str]]:
    """List ``prefix`` into ({key: FileInfo}, {folder prefixes}); no entry may repeat."""
    files: dict[str, FileInfo] = {}
    folders: set[str] = set()
    async for entry in backend.list(prefix, delimiter=delimiter):
        if isinstance(entry, str):
            assert entry not in folders, f"folder {entry!r} listed twice"
            folders.add(entry)
        else:
            assert isinstance(entry, FileInfo), f"list yielded {entry!r}"
            assert entry.key not in files, f"key {entry.key!r} listed twice"
            files[entry.key] = entry
    return files, folders


def _generation_payload(generation: int, size: int) -> bytes:
    """A value that identifies its generation in every byte (torn reads show)."""
    pattern = bytes([generation % 256, (generation * 31 + 7) % 256])
    return generation.to_bytes(4, "big") + pattern * ((size - 4) // 2)


class BackendTests:
    """The whole byte-level backend contract. Subclasses provide ``backend``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    #: size of the file used by the put_file / get_file round trip
    large_file_size: ClassVar[int] = 5 * MiB + 4097
    #: concurrent ``mode="create"`` writers racing for one key
    create_race_writers: ClassVar[int] = 20
    #: concurrent compare-and-swap incrementers of one counter
    cas_incrementers: ClassVar[int] = 10
    #: overwrites done while readers poll the key
    overwrite_rounds: ClassVar[int] = 50
    #: size of each value in the torn-read test
    overwrite_value_size: ClassVar[int] = 128 * 1024
    #: put/delete cycles per task in the sibling-delete race
    churn_rounds: ClassVar[int] = 100
    #: a race that takes longer than this is a hang
    race_timeout: ClassVar[float] = 60.0

    # -- get / put / head -------------------------------------------------------

    async def test_put_get_round_trip(self, backend: Backend) -> None:
        await backend.put("a/b/c.bin", b"hello world")
        await backend.put("top", b"at the root")
        assert await backend.get("a/b/c.bin") == b"hello world"
        assert await backend.get("top") == b"at the root"

    async def test_put_returns_file_info_matching_head(self, backend: Backend) -> None:
        before = time.time()
        info = await backend.put("x/y.json", b"0123456789")
        assert isinstance(info, FileInfo)
        assert info.key == "x/y.json"
        assert info.size == 10
        assert isinstance(info.etag, str) and info.etag
        assert before - 300 <= info.mtime <= time.time() + 300
        head = await backend.head("x/y.json")
        assert head is not None
        assert head.key == "x/y.json"
        assert head.size == 10
        assert head.etag == info.etag

    async def test_get_missing_raises_object_not_found(self, backend: Backend) -> None:
        await backend.put("folder/present", b"1")
        for key in ("absent", "folder/absent", "no/such/folder/key"):
            with pytest.raises(ObjectNotFound):
                await backend.get(key)
        # ObjectNotFound keeps ``except KeyError`` working
        with pytest.raises(KeyError):
            await backend.get("absent")

    async def test_head_missing_is_none(self, backend: Backend) -> None:
        await backend.put("folder/present", b"1")
        assert await backend.head("absent") is None
        assert await backend.head("folder/absent") is None
        assert await backend.head("no/such/folder/key") is None
        assert await backend.head("folder/present") is not None

    async def test_folder_is_not_a_key(self, backend: Backend) -> None:
        await backend.put("dir/file", b"inside")
        assert await backend.head("dir") is None
        with pytest.raises(ObjectNotFound):
            await backend.get("dir")
        await backend.delete(["dir"])  # not a key: nothing to delete, no error
        assert await backend.get("dir/file") == b"inside"

    async def test_overwrite_replaces_value_and_etag(self, backend: Backend) -> None:
        first = await backend.put("k", b"first")
        second = await backend.put("k", b"second value")
        assert await backend.get("k") == b"second value"
        assert second.size == len(b"second value")
        assert second.etag != first.etag
        head = await backend.head("k")
        assert head is not None and head.etag == second.etag and head.size == second.size

    async def test_successive_writes_get_distinct_etags(self, backend: Backend) -> None:
        # Same size, different content, written back to back: an etag built
        # from coarse timestamps or recycled inodes would repeat here.
        etags = [(await backend.put("k", b"value-%04d" % i)).etag for i in range(30)]
        assert len(set(etags)) == len(etags), "an etag was reused for different content"
        for stale in etags[:-1]:
            with pytest.raises(PreconditionFailed):
                await backend.put("k", b"must not land", if_match=stale)
        assert await backend.get("k") == b"value-0029"

    async def test_binary_all_byte_values(self, backend: Backend) -> None:
        data = bytes(range(256)) * 4 + bytes(reversed(range(256)))
        info = await backend.put("bin/all-bytes", data)
        assert info.size == len(data)
        assert await backend.get("bin/all-bytes") == data

    async def test_empty_value(self, backend: Backend, tmp_path: Path) -> None:
        info = await backend.put("empty/value", b"")
        assert info.size == 0
        assert await backend.get("empty/value") == b""
        head = await backend.head("empty/value")
        assert head is not None and head.size == 0  # exists, unlike a missing key
        files, _ = await collect(backend, "empty/")
        assert set(files) == {"empty/value"} and files["empty/value"].size == 0

        src = tmp_path / "empty-src"
        src.write_bytes(b"")
        assert (await backend.put_file("empty/file", src)).size == 0
        dest = tmp_path / "empty-dest"
        dest.write_bytes(b"stale content to be replaced")
        got = await backend.get_file("empty/file", dest)
        assert got.size == 0
        assert dest.read_bytes() == b""

    async def test_keys_with_special_characters(self, backend: Backend) -> None:
        keys = [
            "meta/my-model/1.0.0.json",
            "meta/ns:model.v2/0001.json",
            "objects/a-b_c.d:e/0f1e2d3c-4b5a/weights.part-00001.npy",
            "x:y/-lead/trail-/v.1.2",
            "dots/.hidden-but-legal",
        ]
        for i, key in enumerate(keys):
            info = await backend.put(key, f"value {i}".encode())
            assert info.key == key
        for i, key in enumerate(keys):
            assert await backend.get(key) == f"value {i}".encode()
            head = await backend.head(key)
            assert head is not None and head.key == key
        files, _ = await collect(backend, "")
        assert set(files) == set(keys)
        files, folders = await collect(backend, "meta/", delimiter="/")
        assert files == {}
        assert folders == {"meta/my-model/", "meta/ns:model.v2/"}

    # -- mode="create" ------------------------------------------------------------

    async def test_put_create_first_write_wins(self, backend: Backend) -> None:
        first = await backend.put("c/key", b"first", mode="create")
        assert first.size == 5
        with pytest.raises(PreconditionFailed):
            await backend.put("c/key", b"second", mode="create")
        assert await backend.get("c/key") == b"first"
        head = await backend.head("c/key")
        assert head is not None and head.etag == first.etag
        # a plain overwrite is still allowed afterwards
        await backend.put("c/key", b"third")
        assert await backend.get("c/key") == b"third"

    async def test_put_create_after_delete(self, backend: Backend) -> None:
        await backend.put("c/key", b"old", mode="create")
        await backend.delete(["c/key"])
        await backend.put("c/key", b"new", mode="create")
        assert await backend.get("c/key") == b"new"

    # -- if_match (compare-and-swap) ----------------------------------------------

    async def test_if_match_current_etag_succeeds(self, backend: Backend) -> None:
        first = await backend.put("cas/key", b"v1")
        second = await backend.put("cas/key", b"v2", if_match=first.etag)
        assert second.etag != first.etag
        assert second.size == 2
        assert await backend.get("cas/key") == b"v2"
        head = await backend.head("cas/key")
        assert head is not None and head.etag == second.etag
        # the new etag works in turn
        third = await backend.put("cas/key", b"v3", if_match=head.etag)
        assert third.etag not in (first.etag, second.etag)
        assert await backend.get("cas/key") == b"v3"

    async def test_if_match_stale_etag_fails(self, backend: Backend) -> None:
        first = await backend.put("cas/key", b"v1")
        second = await backend.put("cas/key", b"v2")
        with pytest.raises(PreconditionFailed):
            await backend.put("cas/key", b"lost update", if_match=first.etag)
        assert await backend.get("cas/key") == b"v2"
        head = await backend.head("cas/key")
        assert head is not None and head.etag == second.etag

    async def test_if_match_missing_key_fails(self, backend: Backend) -> None:
        with pytest.raises(PreconditionFailed):
            await backend.put("cas/never", b"x", if_match="some-etag")
        assert await backend.head("cas/never") is None
        # a key that existed and was deleted is missing too
        info = await backend.put("cas/gone", b"x")
        await backend.delete(["cas/gone"])
        with pytest.raises(PreconditionFailed):
            await backend.put("cas/gone", b"resurrected", if_match=info.etag)
        assert await backend.head("cas/gone") is None

    # -- files ----------------------------------------------------------------------

    async def test_put_file_get_file_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        data = random.Random(20240601).randbytes(self.large_file_size)
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        info = await backend.put_file("files/big.bin", src)
        assert info.key == "files/big.bin"
        assert info.size == len(data)
        head = await backend.head("files/big.bin")
        assert head is not None and head.size == len(data) and head.etag == info.etag

        dest = tmp_path / "out" / "dest.bin"
        dest.parent.mkdir()
        got = await backend.get_file("files/big.bin", dest)
        assert got.size == len(data)
        assert dest.stat().st_size == len(data)
        assert dest.read_bytes() == data
        # the two APIs see the same bytes
        assert await backend.get("files/big.bin") == data
        await backend.put("files/small.bin", b"small")
        small = tmp_path / "small.bin"
        assert (await backend.get_file("files/small.bin", small)).size == 5
        assert small.read_bytes() == b"small"

    async def test_put_file_create_mode(self, backend: Backend, tmp_path: Path) -> None:
        first = tmp_path / "first.bin"
        first.write_bytes(b"\x01" * (2 * MiB + 3))
        other = tmp_path / "other.bin"
        other.write_bytes(b"\x02" * 100)
        info = await backend.put_file("files/once", first, mode="create")
        assert info.size == 2 * MiB + 3
        with pytest.raises(PreconditionFailed):
            await backend.put_file("files/once", other, mode="create")
        dest = tmp_path / "dest.bin"
        await backend.get_file("files/once", dest)
        assert dest.read_bytes() == first.read_bytes()
        head = await backend.head("files/once")
        assert head is not None and head.etag == info.etag
        # overwrite mode replaces
        await backend.put_file("files/once", other)
        assert await backend.get("files/once") == b"\x02" * 100

    async def test_get_file_missing_raises(self, backend: Backend, tmp_path: Path) -> None:
        with pytest.raises(ObjectNotFound):
            await backend.get_file("files/absent", tmp_path / "dest")

    # -- delete -----------------------------------------------------------------------

    async def test_delete_many_missing_not_error(self, backend: Backend) -> None:
        for key in ("d/1", "d/2", "d/sub/3", "keep/4"):
            await backend.put(key, key.encode())
        await backend.delete(["d/1", "never/existed", "d/sub/3", "d/also-missing"])
        assert await backend.head("d/1") is None
        assert await backend.head("d/sub/3") is None
        with pytest.raises(ObjectNotFound):
            await backend.get("d/1")
        assert await backend.get("d/2") == b"d/2"
        assert await backend.get("keep/4") == b"keep/4"
        await backend.delete([])
        await backend.delete(["d/1"])  # twice is fine
        files, _ = await collect(backend, "")
        assert set(files) == {"d/2", "keep/4"}

    # -- list -------------------------------------------------------------------------

    async def _populate_tree(self, backend: Backend) -> dict[str, bytes]:
        tree = {
            "a/1": b"one",
            "a/2.json": b"two!",
            "a/b/3": b"three",
            "a/b/c/4": b"four..",
            "a/d/5": b"",
            "ab/6": b"not below a/",
            "top": b"root file",
        }
        for key, value in tree.items():
            await backend.put(key, value)
        return tree

    async def test_list_recursive(self, backend: Backend) -> None:
        tree = await self._populate_tree(backend)
        files, folders = await collect(backend, "a/")
        assert folders == set()
        assert set(files) == {"a/1", "a/2.json", "a/b/3", "a/b/c/4", "a/d/5"}
        for key, info in files.items():
            assert info.key == key
            assert info.size == len(tree[key])
        files, folders = await collect(backend, "a/b/")
        assert set(files) == {"a/b/3", "a/b/c/4"} and folders == set()
        files, folders = await collect(backend, "")
        assert set(files) == set(tree) and folders == set()

    async def test_list_with_delimiter(self, backend: Backend) -> None:
        tree = await self._populate_tree(backend)
        files, folders = await collect(backend, "a/", delimiter="/")
        assert set(files) == {"a/1", "a/2.json"}
        assert folders == {"a/b/", "a/d/"}
        for key, info in files.items():
            assert info.size == len(tree[key])
        files, folders = await collect(backend, "a/b/", delimiter="/")
        assert set(files) == {"a/b/3"} and folders == {"a/b/c/"}
        files, folders = await collect(backend, "", delimiter="/")
        assert set(files) == {"top"}
        assert folders == {"a/", "ab/"}

    async def test_list_empty_or_missing_prefix(self, backend: Backend) -> None:
        assert await collect(backend, "") == ({}, set())
        assert await collect(backend, "", delimiter="/") == ({}, set())
        await self._populate_tree(backend)
        for delimiter in (None, "/"):
            assert await collect(backend, "missing/", delimiter=delimiter) == ({}, set())
            assert await collect(backend, "a/missing/", delimiter=delimiter) == ({}, set())
            # a key is not a folder
            assert await collect(backend, "top/", delimiter=delimiter) == ({}, set())

    async def test_list_after_deleting_a_folder(self, backend: Backend) -> None:
        await self._populate_tree(backend)
        await backend.delete(["a/b/3", "a/b/c/4"])
        assert await collect(backend, "a/b/") == ({}, set())
        files, folders = await collect(backend, "a/", delimiter="/")
        assert set(files) == {"a/1", "a/2.json"}
        assert folders == {"a/d/"}  # a/b/ is gone with its last key

    async def test_list_info_matches_head(self, backend: Backend) -> None:
        await self._populate_tree(backend)
        for delimiter in (None, "/"):
            files, _ = await collect(backend, "a/", delimiter=delimiter)
            assert files
            for key, info in files.items():
                head = await backend.head(key)
                assert head is not None
                assert (info.size, info.etag) == (head.size, head.etag)

    # -- concurrency ------------------------------------------------------------------

    async def test_overwrite_is_atomic_for_readers(self, backend: Backend) -> None:
        size = self.overwrite_value_size
        rounds = self.overwrite_rounds
        await backend.put("atomic/key", _generation_payload(0, size))
        done = anyio.Event()
        violations: list[str] = []
        reads: list[int] = []

        async def reader(index: int) -> None:
            last = 0
            count = 0
            while True:
                data = await backend.get("atomic/key")
                count += 1
                generation = int.from_bytes(data[:4], "big") if len(data) >= 4 else -1
                if not 0 <= generation <= rounds or data != _generation_payload(generation, size):
                    violations.append(f"reader {index}: torn value of {len(data)} bytes")
                elif generation < last:
                    violations.append(f"reader {index}: saw {generation} after {last}")
                else:
                    last = generation
                if done.is_set():
                    break
                await anyio.lowlevel.checkpoint()
            reads.append(count)

        async def writer() -> None:
            for generation in range(1, rounds + 1):
                await backend.put("atomic/key", _generation_payload(generation, size))
                await anyio.lowlevel.checkpoint()
            done.set()

        with anyio.fail_after(self.race_timeout):
            async with anyio.create_task_group() as tg:
                for index in range(4):
                    tg.start_soon(reader, index)
                tg.start_soon(writer)
        assert violations == []
        assert len(reads) == 4 and all(count >= 1 for count in reads)
        assert await backend.get("atomic/key") == _generation_payload(rounds, size)

    async def test_concurrent_create_exactly_one_winner(self, backend: Backend) -> None:
        writers = self.create_race_writers
        go = anyio.Event()
        won: dict[int, FileInfo] = {}
        lost: list[int] = []

        async def writer(index: int) -> None:
            await go.wait()
            try:
                won[index] = await backend.put(
                    "race/key", b"writer %d" % index + b"." * index, mode="create"
                )
            except PreconditionFailed:
                lost.append(index)

        with anyio.fail_after(self.race_timeout):
            async with anyio.create_task_group() as tg:
                for index in range(writers):
                    tg.start_soon(writer, index)
                await anyio.sleep(0.01)
                go.set()
        assert len(won) == 1, f"{len(won)} writers won a create race: {sorted(won)}"
        assert len(lost) == writers - 1
        (winner, info), *_ = won.items()
        assert await backend.get("race/key") == b"writer %d" % winner + b"." * winner
        head = await backend.head("race/key")
        assert head is not None and head.etag == info.etag

    async def test_concurrent_cas_counter(self, backend: Backend) -> None:
        tasks = self.cas_incrementers
        await backend.put("cas/counter", b"0")
        arrived = 0
        all_read = anyio.Event()
        first_round_wins = 0
        successes = 0
        conflicts = 0

        async def increment() -> None:
            nonlocal arrived, first_round_wins, successes, conflicts
            first_round = True
            while True:
                # head before get: if the value changes in between, the etag
                # is the older one and the put below fails, as it should
                info = await backend.head("cas/counter")
                assert info is not None
                value = int(await backend.get("cas/counter"))
                if first_round:
                    # everybody reads the same version before anybody writes
                    arrived += 1
                    if arrived == tasks:
                        all_read.set()
                    await all_read.wait()
                else:
                    await anyio.lowlevel.checkpoint()
                try:
                    await backend.put("cas/counter", b"%d" % (value + 1), if_match=info.etag)
                except PreconditionFailed:
                    conflicts += 1
                    first_round = False
                    continue
                successes += 1
                if first_round:
                    first_round_wins += 1
                return

        with anyio.fail_after(self.race_timeout):
            async with anyio.create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(increment)
        assert first_round_wins == 1, "several CAS writes with the same etag succeeded"
        assert successes == tasks
        assert conflicts >= tasks - 1
        assert await backend.get("cas/counter") == b"%d" % tasks

    async def test_put_concurrent_with_sibling_delete(self, backend: Backend) -> None:
        # Deleting the last key of a folder must not break a put into that
        # folder running at the same time (a backend that prunes empty
        # folders has to cope with the folder vanishing under a writer).
        failures: list[str] = []

        async def churn(name: str) -> None:
            key = f"churn/inner/{name}"
            for round_ in range(self.churn_rounds):
                value = f"{name}-{round_}".encode()
                try:
                    await backend.put(key, value)
                    got = await backend.get(key)
                except Exception as exc:
                    failures.append(f"{key} round {round_}: {exc!r}")
                    continue
                if got != value:
                    failures.append(f"{key} round {round_}: read {got!r}")
                await backend.delete([key])

        with anyio.fail_after(self.race_timeout):
            async with anyio.create_task_group() as tg:
                for name in ("a", "b", "c", "d"):
                    tg.start_soon(churn, name)
        assert failures == [], f"{len(failures)} failed puts, first: {failures[:3]}"
        assert await collect(backend, "churn/") == ({}, set())
