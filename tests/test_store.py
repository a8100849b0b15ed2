"""The Store (issue 5): mounts, key routing, batches, copy/move, temp mount,
configuration, and the sync facade. Mounts are on local and memory backends."""

from __future__ import annotations

import gc
import inspect
import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from registry import (
    AsyncRegistry,
    BatchResult,
    LocalBackend,
    MemoryBackend,
    Registry,
    RegistryConfigError,
    RegistryError,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)
from registry.backends.base import FileInfo
from registry.store import keys as store_keys
from registry.store.core import AsyncStore
from registry.store.errors import (
    StoreAmbiguousObjectError,
    StoreConfigError,
    StoreKeyFormatError,
    StoreLocationNotFound,
    StoreReadOnlyError,
)
from registry.store.sync import Store
from tests.facade_checks import check_mirror

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def local(path: Path, **settings: Any) -> AsyncRegistry:
    settings.setdefault("version_objects", True)
    return AsyncRegistry(LocalBackend(path, fsync=False), **settings)


def memory(**settings: Any) -> AsyncRegistry:
    settings.setdefault("version_objects", True)
    return AsyncRegistry(MemoryBackend(), **settings)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    """temp + a memory mount + a local-disk mount, all versioned."""
    async with AsyncStore({"mem": memory(), "disk": local(tmp_path / "disk")}) as s:
        yield s


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder moved into tmp_path, so leaks can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# -- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("x", store_keys.StoreKey(None, "x", None)),
        ("x@2", store_keys.StoreKey(None, "x", "2")),
        ("models/x", store_keys.StoreKey("models", "x", None)),
        (
            "models/my:model.v1@1.0.0-rc.1",
            store_keys.StoreKey("models", "my:model.v1", "1.0.0-rc.1"),
        ),
        ("m/x@latest", store_keys.StoreKey("m", "x", "latest")),
    ],
)
def test_keys_parse(key: str, expected: store_keys.StoreKey) -> None:
    assert store_keys.parse_store_key(key) == expected
    assert str(expected) == key


@pytest.mark.parametrize(
    "key", ["", "/x", "m/", "a/b/c", "x@", "x@1@2", "m/x@", "bad name", "m/a b", "@1", "m/@1"]
)
def test_bad_keys_raise_a_format_error_that_explains_the_format(key: str) -> None:
    with pytest.raises(StoreKeyFormatError) as info:
        store_keys.parse_store_key(key)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RegistryError)
    assert store_keys.KEY_FORMAT in str(info.value)


def test_non_string_keys_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="mount"):
        store_keys.parse_store_key(3)


async def test_bad_keys_fail_every_operation(store: AsyncStore) -> None:
    for call in (
        lambda: store.save("a/b/c", 1),
        lambda: store.load("x@"),
        lambda: store.delete("m/"),
        lambda: store.has_object("bad name"),
        lambda: store.info("a/b/c"),
        lambda: store.copy("x@1@2", "mem/x"),
    ):
        with pytest.raises(StoreKeyFormatError):
            await call()


@pytest.mark.parametrize("name", ["", "a.b", "a:b", "a/b", "a@b", "a b", "x" * 201])
def test_mount_names_follow_the_name_rules_without_dots_and_colons(name: str) -> None:
    with pytest.raises(ValueError, match="mount name"):
        store_keys.validate_mount_name(name)
    with pytest.raises(ValueError, match="mount name"):
        AsyncStore({name: memory()})


# -- mounts and the default mount ----------------------------------------------------------


async def test_a_new_store_has_only_the_temp_mount_as_default() -> None:
    async with AsyncStore() as store:
        assert store.list_mounts() == [store_keys.TEMP_MOUNT]
        assert store.default_mount == store_keys.TEMP_MOUNT
        assert await store.save("x", b"one") == "1"
        assert await store.save("x", b"two") == "2"  # temp keeps versions
        assert await store.load("temp/x@1") == b"one"
        assert await store.list_objects() == ["temp/x"]


async def test_add_get_remove_mounts(store: AsyncStore) -> None:
    extra = memory()
    store.add_mount("extra-1", extra)
    assert store.list_mounts() == ["temp", "mem", "disk", "extra-1"]
    assert store.get_mount("extra-1") is extra
    with pytest.raises(ValueError, match="exists"):
        store.add_mount("extra-1", memory())
    with pytest.raises(TypeError, match="async_registry"):
        store.add_mount("sync", Registry(backend=MemoryBackend()))  # type: ignore[arg-type]
    store.remove_mount("extra-1")
    assert "extra-1" not in store.list_mounts()
    with pytest.raises(StoreLocationNotFound, match="extra-1"):
        store.get_mount("extra-1")
    with pytest.raises(StoreLocationNotFound):
        store.remove_mount("extra-1")
    with pytest.raises(ValueError, match="temp"):
        store.remove_mount(store_keys.TEMP_MOUNT)


async def test_default_mount_is_always_a_mounted_name(store: AsyncStore) -> None:
    store.set_default_mount("disk")
    assert await store.save("x", 1) == "1"
    assert await store.list_objects() == ["disk/x"]
    with pytest.raises(StoreLocationNotFound):
        store.set_default_mount("nope")
    assert store.default_mount == "disk"
    store.remove_mount("disk")  # removing the default resets it to temp
    assert store.default_mount == store_keys.TEMP_MOUNT
    await store.save("y", 2)
    assert await store.list_objects() == ["temp/y"]


async def test_constructor_takes_mounts_default_and_read_only(tmp_path: Path) -> None:
    ro = memory()
    await ro.save("shared", 1)
    async with AsyncStore(
        {"disk": local(tmp_path), "ro": ro}, default_mount="disk", read_only=["ro"]
    ) as store:
        assert store.default_mount == "disk"
        assert store.is_read_only("ro") and not store.is_read_only("disk")
        assert await store.load("shared") == 1
    with pytest.raises(StoreLocationNotFound):
        AsyncStore({"disk": local(tmp_path)}, read_only=["nope"])
    with pytest.raises(StoreReadOnlyError):
        AsyncStore({"ro": memory()}, default_mount="ro", read_only=["ro"])


async def test_unknown_mount_raises_location_not_found(store: AsyncStore) -> None:
    # (get too: a missing mount is not a missing object)
    calls = [(method, "nope/x") for method in ("load", "get", "has_object", "delete")]
    calls += [("save", "nope/x", 1), ("list_objects", "nope"), ("copy", "mem/x", "nope/x")]
    for method, *args in calls:
        with pytest.raises(StoreLocationNotFound) as info:
            await getattr(store, method)(*args)
        assert "'nope'" in str(info.value) and "mem" in str(info.value)
        assert isinstance(info.value, KeyError) and isinstance(info.value, RegistryError)


# -- qualified and unqualified keys ---------------------------------------------------------


async def test_qualified_keys_go_to_their_mount(store: AsyncStore) -> None:
    assert await store.save("mem/x", "m1") == "1"
    assert await store.save("mem/x", "m2") == "2"
    assert await store.save("disk/x@5", "d5") == "5"
    assert await store.load("mem/x") == "m2"
    assert await store.load("mem/x@1") == "m1"
    assert await store.load("disk/x@5") == "d5"
    assert await store.list_objects() == ["disk/x", "mem/x"]
    assert await store.list_objects("mem") == ["mem/x"]
    assert await store.keys() == ["disk/x", "mem/x"]
    assert await store.list_versions("mem/x") == ["1", "2"]


async def test_unqualified_read_finds_the_single_mount(store: AsyncStore) -> None:
    await store.save("disk/only-here", {"a": 1})
    await store.save("disk/only-here", {"a": 2})
    assert await store.load("only-here") == {"a": 2}
    assert await store.load("only-here@1") == {"a": 1}
    assert await store.has_object("only-here")
    assert await store.list_versions("only-here") == ["1", "2"]
    assert (await store.info("only-here@1"))["mount"] == "disk"


async def test_unqualified_read_of_a_missing_object(store: AsyncStore) -> None:
    with pytest.raises(RegistryObjectNotFound, match="any mount"):
        await store.load("ghost")
    await store.save("mem/ghost", 1)
    with pytest.raises(RegistryObjectNotFound):
        await store.load("ghost@2")  # the name exists, the version does not
    assert await store.get("ghost@2", "fallback") == "fallback"
    assert await store.get("nothing") is None
    assert not await store.has_object("nothing")


async def test_unqualified_read_in_several_mounts_is_ambiguous(store: AsyncStore) -> None:
    await store.save("mem/twin", 1)
    await store.save("disk/twin", 2)
    calls = [(method, "twin") for method in ("load", "info", "list_versions", "delete")]
    calls += [("get", "twin", None), ("copy", "twin", "temp/twin")]
    for method, *args in calls:
        with pytest.raises(StoreAmbiguousObjectError) as info:
            await getattr(store, method)(*args)
        assert info.value.mounts == ["mem", "disk"]
        assert "mem" in str(info.value) and "disk" in str(info.value)
        assert isinstance(info.value, RegistryError)
    assert await store.has_object("twin")  # "exists anywhere" is not ambiguous
    # a version only one of them has is not ambiguous
    await store.save("disk/twin", 3)
    assert await store.load("twin@2") == 3


async def test_unqualified_write_goes_to_the_default_mount(store: AsyncStore) -> None:
    await store.save("mem/x", 1)
    store.set_default_mount("disk")
    assert await store.save("x", 2) == "1"
    assert await store.load("disk/x") == 2
    assert await store.load("mem/x") == 1


async def test_unqualified_delete_removes_what_a_read_would_return(store: AsyncStore) -> None:
    await store.save("disk/x", 1)
    await store.save("disk/x", 2)
    await store.delete("x@1")
    assert await store.list_versions("disk/x") == ["2"]
    await store.delete("x")
    assert not await store.has_object("disk/x")
    with pytest.raises(RegistryObjectNotFound):
        await store.delete("x")


async def test_info_carries_the_mount(store: AsyncStore) -> None:
    await store.save("mem/x", 1, metadata={"owner": "ana"})
    await store.save("mem/x", 2)
    await store.save("disk/y", 3)
    one = await store.info("mem/x@1")
    assert one["mount"] == "mem" and one["version"] == "1" and one["metadata"] == {"owner": "ana"}
    every = await store.info("mem/x")
    assert sorted(every) == ["1", "2"] and every["2"]["mount"] == "mem"
    everything = await store.info()
    assert sorted(everything) == ["disk/y", "mem/x"]
    assert everything["disk/y"]["1"]["mount"] == "disk"


async def test_dropping_a_mount_does_not_close_or_forget_its_registry(store: AsyncStore) -> None:
    await store.save("mem/x", 1)
    registry = store.get_mount("mem")
    store.remove_mount("mem")
    assert await registry.load("x") == 1
    store.add_mount("again", registry)
    assert await store.load("again/x") == 1


# -- read-only mounts ------------------------------------------------------------------------


async def test_read_only_mounts_refuse_writes_naming_the_mount(store: AsyncStore) -> None:
    shared = memory()
    await shared.save("model", "v1")
    store.add_mount("shared", shared, read_only=True)
    assert await store.load("shared/model") == "v1"
    assert await store.load("model") == "v1"
    await store.save("mem/other", 1)
    for call in (
        lambda: store.save("shared/x", 1),
        lambda: store.delete("shared/model"),
        lambda: store.delete("model"),  # resolved to the read-only mount
        lambda: store.move("shared/model", "mem/model"),
        lambda: store.copy("mem/other", "shared/other"),
        lambda: store.move("mem/other", "shared/other"),
    ):
        with pytest.raises(StoreReadOnlyError) as info:
            await call()
        assert isinstance(info.value, PermissionError) and isinstance(info.value, RegistryError)
        assert info.value.mount == "shared" and "'shared'" in str(info.value)
    with pytest.raises(PermissionError, match="shared"):
        store.set_default_mount("shared")
    # nothing moved or was half-copied
    assert await shared.list_objects() == ["model"]
    assert await store.list_objects("mem") == ["mem/other"]
    # a copy out of a read-only mount is fine
    assert await store.copy("shared/model", "mem/model") == "1"


# -- batches ----------------------------------------------------------------------------------


async def test_batch_save_and_load_across_mounts_with_per_item_errors(store: AsyncStore) -> None:
    store.add_mount("ro", memory(), read_only=True)
    keys = ["mem/a", "disk/b@1", "c", "nope/d", "bad key", "ro/e", "disk/b@2", "mem/a@1"]
    saved = await store.save(keys, [1, 2, 3, 4, 5, 6, 7, 8], metadata={"batch": True})
    assert isinstance(saved, BatchResult) and len(saved) == len(keys)
    assert saved.results[:3] == ["1", "1", "1"] and saved.results[6] == "2"
    assert saved.failed == [3, 4, 5]
    assert isinstance(saved.errors[3], StoreLocationNotFound)
    assert isinstance(saved.errors[4], StoreKeyFormatError)
    assert isinstance(saved.errors[5], StoreReadOnlyError)
    # mem/a@1 was just saved by the first item: skipped (the default on_conflict)
    assert saved.skipped == [7] and saved.results[7] == "1"

    loaded = await store.load(["disk/b@2", "a", "c", "zz", "disk/b@9", "nope/x", "mem/a", "b@1"])
    assert loaded.results == [7, 1, 3, None, None, None, 1, 2]
    assert loaded.failed == [3, 4, 5]
    assert isinstance(loaded.errors[3], RegistryObjectNotFound)
    assert isinstance(loaded.errors[4], RegistryObjectNotFound)
    assert isinstance(loaded.errors[5], StoreLocationNotFound)
    assert (await store.info("mem/a@1"))["metadata"] == {"batch": True}


async def test_batch_forms_of_every_operation(store: AsyncStore) -> None:
    await store.save(["mem/a", "mem/a", "disk/b", "disk/twin", "mem/twin"], [1, 2, 3, 4, 5])
    found = await store.has_object(["mem/a@2", "a", "nope/x", "twin", "ghost", "x@", "disk/b@7"])
    assert isinstance(found, BatchResult)
    assert found.results == [True, True, None, True, False, None, False]
    assert found.failed == [2, 5]

    infos = await store.info(["mem/a@1", "b", "twin", "ghost"])
    assert infos.results[0] is not None and infos.results[0]["mount"] == "mem"
    assert infos.results[1] is not None and infos.results[1]["1"]["mount"] == "disk"
    assert isinstance(infos.errors[2], StoreAmbiguousObjectError)
    assert isinstance(infos.errors[3], RegistryObjectNotFound)

    deleted = await store.delete(["mem/a@1", "b", "twin", "ghost", "disk/twin"])
    assert deleted is not None and deleted.failed == [2, 3]
    assert await store.list_objects() == ["mem/a", "mem/twin"]
    assert await store.list_versions("mem/a") == ["2"]

    with pytest.raises(ValueError, match="one per key"):
        await store.save(["mem/x", "mem/y"], [1])
    with pytest.raises(ValueError, match="one per key"):
        await store.save(["mem/x", "mem/y"], [1, 2], metadata=[{}])
    assert (await store.load([])).results == []


async def test_a_batch_error_for_a_whole_mount_lands_on_its_items(tmp_path: Path) -> None:
    async with AsyncStore({"mutable": local(tmp_path, mutable=True), "frozen": memory()}) as store:
        result = await store.save(
            ["mutable/a@1", "frozen/a@1", "mutable/b@1"], [1, 2, 3], on_conflict="overwrite"
        )
        assert result.results == ["1", None, "1"]
        assert isinstance(result.errors[1], RegistryConfigError)  # frozen is immutable


class SlowBackend(MemoryBackend):
    """Every read waits ``delay``: shows whether mounts are used concurrently."""

    delay = 0.3

    async def get(self, key: str) -> bytes:
        await anyio.sleep(self.delay)
        return await super().get(key)

    async def head(self, key: str) -> FileInfo | None:
        await anyio.sleep(self.delay)
        return await super().head(key)


async def test_mounts_are_searched_and_batched_concurrently() -> None:
    slow = {f"s{i}": AsyncRegistry(SlowBackend(), version_objects=True) for i in range(3)}
    async with AsyncStore(slow) as store:
        await store.save(["s0/x@1", "s1/y@1", "s2/z@1"], [0, 1, 2])
        started = time.monotonic()
        assert await store.load("x@1") == 0  # 4 probes (temp, s0-s2), then one read
        searched = time.monotonic() - started
        started = time.monotonic()
        batch = await store.load(["s0/x@1", "s1/y@1", "s2/z@1"])
        batched = time.monotonic() - started
    assert batch.results == [0, 1, 2]
    assert searched < 3 * SlowBackend.delay, f"mounts searched one by one ({searched:.2f}s)"
    assert batched < 2 * SlowBackend.delay, f"mounts batched one by one ({batched:.2f}s)"


# -- copy and move -----------------------------------------------------------------------------


async def test_copy_keeps_metadata_and_materializer(store: AsyncStore) -> None:
    await store.save("mem/x", {"w": [1, 2]}, metadata={"acc": 0.9})
    await store.save("mem/x", {"w": [3]})
    assert await store.copy("mem/x@1", "disk/x") == "1"
    assert await store.copy("mem/x", "disk/x") == "2"  # latest, to the next version
    assert await store.copy("mem/x@1", "disk/renamed@7") == "7"
    assert await store.load("disk/x@1") == {"w": [1, 2]}
    assert await store.load("disk/x@2") == {"w": [3]}
    src, dst = await store.info("mem/x@1"), await store.info("disk/renamed@7")
    assert dst["metadata"] == {"acc": 0.9} and dst["materializer"] == src["materializer"]
    assert await store.list_versions("mem/x") == ["1", "2"]  # copy leaves the source
    with pytest.raises(RegistryVersionConflict):
        await store.copy("mem/x@2", "disk/x@1")
    with pytest.raises(RegistryObjectNotFound):
        await store.copy("mem/ghost", "disk/ghost")
    await store.save("disk/solo", b"s")
    assert await store.copy("solo", "mem/solo") == "1"  # unqualified source


async def test_move_deletes_only_the_moved_version(store: AsyncStore) -> None:
    await store.save("mem/x", 1)
    await store.save("mem/x", 2)
    assert await store.move("mem/x@1", "disk/x") == "1"
    assert await store.list_versions("mem/x") == ["2"]
    assert await store.move("mem/x", "temp/x") == "1"
    assert not await store.has_object("mem/x")
    assert await store.load("temp/x") == 2
    with pytest.raises(RegistryVersionConflict):  # destination taken: source stays
        await store.move("temp/x", "disk/x@1")
    assert await store.load("temp/x") == 2


async def test_batch_copy_and_move(store: AsyncStore) -> None:
    await store.save(["mem/a", "mem/b"], [1, 2])
    copied = await store.copy(["mem/a", "mem/ghost", "mem/b"], ["disk/a", "disk/g", "nope/b"])
    assert copied.results == ["1", None, None]
    assert isinstance(copied.errors[1], RegistryObjectNotFound)
    assert isinstance(copied.errors[2], StoreLocationNotFound)
    moved = await store.move(["mem/a", "mem/b"], ["temp/a", "temp/b"])
    assert moved.ok and await store.list_objects() == ["disk/a", "temp/a", "temp/b"]
    with pytest.raises(ValueError, match="destinations"):
        await store.copy(["mem/a"], ["disk/a", "disk/b"])
    with pytest.raises(TypeError):
        await store.copy(["mem/a"], "disk/a")  # type: ignore[call-overload]


class SpyRegistry(AsyncRegistry):
    """Runs ``before_delete`` just before each delete reaches the registry."""

    before_delete: Callable[[], Awaitable[None]] | None = None

    async def delete(
        self, name: str | list[str], *, version: str | Sequence[str | None] | None = None
    ) -> BatchResult[None] | None:
        if self.before_delete is not None:
            await self.before_delete()
        return await super().delete(name, version=version)


async def test_move_commits_the_destination_before_the_source_goes(tmp_path: Path) -> None:
    source = SpyRegistry(MemoryBackend(), version_objects=True)
    async with AsyncStore({"src": source, "dst": local(tmp_path)}) as store:
        await store.save("src/model", {"weights": [1, 2, 3]})
        seen: list[tuple[bool, bool, Any]] = []

        async def check() -> None:
            seen.append(
                (
                    bool(await store.has_object("dst/model")),
                    bool(await store.has_object("src/model")),
                    await store.load("model"),  # mid-move: the destination, not ambiguity
                )
            )

        source.before_delete = check
        assert await store.move("src/model", "dst/model") == "1"
        assert seen == [(True, True, {"weights": [1, 2, 3]})]
        assert not await store.has_object("src/model")
        assert await store.load("model") == {"weights": [1, 2, 3]}
        # once the move is over, two copies are ambiguous again
        source.before_delete = None
        await store.copy("dst/model", "src/model")
        with pytest.raises(StoreAmbiguousObjectError):
            await store.load("model")


async def peak_memory_of(work: Awaitable[Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        await work
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_move_of_a_large_object_keeps_memory_bounded(tmp_path: Path) -> None:
    size = 64 * MIB
    source = SpyRegistry(LocalBackend(tmp_path / "a", fsync=False), version_objects=True)
    async with AsyncStore({"a": source, "b": local(tmp_path / "b")}) as store:
        await store.save("a/big", b"\x5a" * size)
        committed: list[bool] = []

        async def check() -> None:
            committed.append(bool(await store.has_object("b/big")))

        source.before_delete = check
        peak = await peak_memory_of(store.move("a/big", "b/big"))
        assert committed == [True]
        assert peak < 2 * size, f"peak {peak / MIB:.0f} MiB for a {size / MIB:.0f} MiB object"
        assert not await store.has_object("a/big")
        info = await store.info("b/big@1")
        assert info["size"] == size and info["class"] == "builtins.bytes"


async def test_move_of_a_large_file_streams(tmp_path: Path, private_tmp: Path) -> None:
    size = 64 * MIB
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:
        for i in range(size // MIB):
            f.write(bytes([i]) * MIB)
    async with AsyncStore({"a": local(tmp_path / "a"), "b": local(tmp_path / "b")}) as store:
        await store.save("a/weights", big)
        before = sorted(os.listdir(private_tmp))
        peak = await peak_memory_of(store.move("a/weights", "b/weights"))
        assert peak < size // 2, f"peak {peak / MIB:.0f} MiB: the file was not streamed"
        assert sorted(os.listdir(private_tmp)) == before  # the loaded copy was removed
        out = await store.load("weights")
        assert isinstance(out, Path) and out.stat().st_size == size
        assert out.read_bytes()[MIB * 63 : MIB * 63 + 4] == bytes([63]) * 4


# -- the temp mount's folder ------------------------------------------------------------------


async def test_temp_folder_is_removed_on_close() -> None:
    store = AsyncStore()
    await store.save("x", b"\0" * 200_000)  # big enough for a file under temp_dir
    folder = store.temp_dir
    assert folder.is_dir() and any(folder.rglob("*.bin"))
    await store.aclose()
    assert not folder.exists()
    assert store.closed
    await store.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await store.load("x")
    with pytest.raises(RuntimeError, match="closed"):
        store.add_mount("m", memory())


async def test_temp_folder_is_removed_on_garbage_collection(private_tmp: Path) -> None:
    folders = []
    for _ in range(5):
        store = AsyncStore({"mem": memory()})
        await store.save("x", b"\0" * 200_000)
        folders.append(store.temp_dir)
        del store
    gc.collect()
    assert not any(f.exists() for f in folders)
    assert os.listdir(private_tmp) == []  # one folder per store, none leaked


def test_a_failed_constructor_leaves_no_folder(private_tmp: Path) -> None:
    with pytest.raises(StoreLocationNotFound):
        AsyncStore(default_mount="nope")
    with pytest.raises(ValueError):
        Store({"a.b": memory()})
    gc.collect()
    assert os.listdir(private_tmp) == []


def test_sync_store_removes_its_folder_on_close_and_on_gc(private_tmp: Path) -> None:
    with Store() as store:
        store["x"] = b"\0" * 200_000
        folder = store.temp_dir
        assert folder.is_dir()
    assert not folder.exists()
    store = Store()
    store["x"] = 1
    folder = store.temp_dir
    del store
    gc.collect()
    assert not folder.exists()
    assert os.listdir(private_tmp) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_removes_the_parents_temp_folder() -> None:
    store = AsyncStore()
    folder = store.temp_dir
    pid = os.fork()
    if pid == 0:  # child: drop its copy of the store, then exit at once
        try:
            del store
            gc.collect()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert folder.is_dir()
    del store
    gc.collect()
    assert not folder.exists()


def test_stores_do_not_pickle_but_say_why() -> None:
    with pytest.raises(TypeError, match="from_config"):
        pickle.dumps(AsyncStore())
    with pytest.raises(TypeError, match="from_config"):
        pickle.dumps(Store())


def test_temp_folder_is_removed_when_a_script_exits_without_closing(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from registry.store.sync import Store
        store = Store()
        store["x"] = b"0" * 200_000
        print(store.temp_dir, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    folder = Path(proc.stdout.strip())
    assert folder.parent == tmp_path and not folder.exists()


# -- the sync facade ---------------------------------------------------------------------------


def test_sync_store_mapping_interface(tmp_path: Path) -> None:
    disk = Registry(tmp_path / "disk", version_objects=True)
    with Store({"disk": disk}) as store:
        store["disk/x"] = 1
        store["disk/x"] = 2
        store["y"] = "why"
        assert store["disk/x"] == 2 and store["disk/x@1"] == 1 and store["y"] == "why"
        assert "disk/x" in store and "x@1" in store
        assert "nothing" not in store and 3 not in store
        assert len(store) == 2 and list(store) == ["disk/x", "temp/y"]
        store[["disk/a", "b"]] = [10, 20]
        assert store[["disk/a", "b", "ghost"]].results == [10, 20, None]
        del store["disk/x@1"]
        assert store.list_versions("x") == ["2"]
        del store[["disk/a", "b"]]
        del store["y"]
        with pytest.raises(RegistryObjectNotFound):
            store["y"]
        with pytest.raises(RegistryObjectNotFound):
            del store[["disk/a"]]
        assert store.get_mount("disk") is disk.async_registry
        assert disk.load("x") == 2  # the same registry, seen directly


def test_sync_store_runs_every_operation(tmp_path: Path) -> None:
    with Store() as store:
        store.add_mount("mem", Registry(backend=MemoryBackend(), version_objects=True))
        store.add_mount("disk", local(tmp_path), read_only=False)
        store.add_mount("ro", memory(), read_only=True)
        assert store.list_mounts() == ["temp", "mem", "disk", "ro"] and store.is_read_only("ro")
        store.set_default_mount("mem")
        assert store.default_mount == "mem"
        assert store.save("x", [1], metadata={"k": 1}) == "1"
        assert store.save(["disk/y", "ro/z"], [2, 3]).failed == [1]
        assert store.load("x") == [1] and store.get("ghost", 0) == 0
        assert store.has_object("disk/y") is True
        assert store.info("mem/x@1")["metadata"] == {"k": 1}
        assert store.copy("x", "disk/x") == "1"
        assert store.move("disk/y", "temp/y") == "1"
        assert store.keys() == store.list_objects() == ["disk/x", "mem/x", "temp/y"]
        with pytest.raises(StoreAmbiguousObjectError):
            store.load("x")
        with pytest.raises(StoreReadOnlyError):
            store["ro/z"] = 1
        store.remove_mount("mem")
        assert store.default_mount == store_keys.TEMP_MOUNT
        assert isinstance(store.async_store, AsyncStore) and "Store(" in repr(store)


def test_sync_store_exposes_the_same_methods_and_signatures() -> None:
    aio = check_mirror(Store, AsyncStore, only_async={"aclose"}, only_sync={"close", "async_store"})
    # the I/O methods are coroutines on AsyncStore; mount bookkeeping is not
    io = {"save", "load", "get", "delete", "has_object", "info", "list_objects"}
    io |= {"list_versions", "keys", "copy", "move"}
    io |= {"set_alias", "delete_alias", "aliases", "set_retention", "find"}
    assert {n for n in aio if inspect.iscoroutinefunction(aio[n])} == io | {"aclose"}


# -- configuration -----------------------------------------------------------------------------


def config_for(tmp_path: Path) -> dict[str, Any]:
    return {
        "default": "models",
        "mounts": {
            "models": {
                "backend": "local",
                "path": "${STORE_TEST_ROOT}/models",
                "version_objects": True,
                "fsync": False,
            },
            "scratch": {"backend": "memory", "mutable": "${STORE_TEST_MUTABLE:-true}"},
            "shared": {"backend": "local", "path": str(tmp_path / "shared"), "read_only": True},
        },
    }


async def test_from_config_builds_the_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_TEST_ROOT", str(tmp_path))
    monkeypatch.delenv("STORE_TEST_MUTABLE", raising=False)
    seeded = local(tmp_path / "shared")
    await seeded.save("dataset", [1, 2])
    async with AsyncStore.from_config(config_for(tmp_path)) as store:
        assert store.list_mounts() == ["temp", "models", "scratch", "shared"]
        assert store.default_mount == "models" and store.is_read_only("shared")
        models = store.get_mount("models")
        assert isinstance(models.backend, LocalBackend)
        assert models.backend.root == tmp_path / "models" and models.backend.fsync is False
        assert isinstance(store.get_mount("scratch").backend, MemoryBackend)
        assert await store.save("m", 1) == "1" and await store.save("m", 2) == "2"
        assert store.get_mount("models").version_objects is True
        await store.save("scratch/s", 1)
        assert store.get_mount("scratch").mutable is True  # from the ${VAR:-fallback}
        assert await store.load("dataset") == [1, 2]
        with pytest.raises(StoreReadOnlyError):
            await store.save("shared/x", 1)


def test_from_file_reads_toml_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_TEST_ROOT", str(tmp_path))
    monkeypatch.setenv("STORE_TEST_MUTABLE", "false")
    toml = tmp_path / "store.toml"
    toml.write_text(
        textwrap.dedent(
            f"""
            default = "models"
            [mounts.models]
            backend = "local"
            path = "${{STORE_TEST_ROOT}}/models"
            version_objects = true
            [mounts.scratch]
            backend = "memory"
            mutable = "${{STORE_TEST_MUTABLE:-true}}"
            [mounts.shared]
            backend = "local"
            path = "{tmp_path / "shared"}"
            read_only = true
            """
        )
    )
    as_json = tmp_path / "store.json"
    as_json.write_text(json.dumps(config_for(tmp_path)))
    for path in (toml, as_json):
        with Store.from_file(path) as store:
            assert isinstance(store, Store)
            assert store.list_mounts() == ["temp", "models", "scratch", "shared"]
            assert store.default_mount == "models" and store.is_read_only("shared")
            store["scratch/x"] = 1
            assert store.get_mount("scratch").mutable is False  # the variable wins
    with pytest.raises(StoreConfigError, match=r"\.toml or \.json"):
        AsyncStore.from_file(tmp_path / "store.yaml")
    broken = tmp_path / "broken.toml"
    broken.write_text("default = \n")
    with pytest.raises(StoreConfigError, match=r"broken\.toml"):
        AsyncStore.from_file(broken)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mounts": {}, "extra": 1}, "unknown store configuration key"),
        ({"mounts": ["a"]}, "'mounts' must map"),
        ({"mounts": {"m": "memory"}}, "table of settings"),
        ({"mounts": {"m": {}}}, "needs a 'backend'"),
        ({"mounts": {"m": {"backend": "ftp"}}}, "unknown backend 'ftp'"),
        ({"mounts": {"m": {"backend": "local"}}}, "needs 'path'"),
        ({"mounts": {"m": {"backend": "memory", "colour": "red"}}}, r"unknown setting\(s\)"),
        ({"mounts": {"temp": {"backend": "memory"}}}, "always mounted"),
        ({"mounts": {"a.b": {"backend": "memory"}}}, "invalid mount name"),
        ({"default": "nope", "mounts": {}}, "not a configured mount"),
        ({"default": "m", "mounts": {"m": {"backend": "memory", "read_only": True}}}, "read-only"),
        ({"mounts": {"m": {"backend": "memory", "version_objects": "maybe"}}}, "must be bool"),
        ({"mounts": {"m": {"backend": "memory", "inline_limit": "lots"}}}, "must be int"),
        ({"mounts": {"m": {"backend": "memory", "verify": "paranoid"}}}, "verify must be"),
        ({"mounts": {"m": {"backend": "memory", "concurrency": 0}}}, "concurrency"),
        (
            {"mounts": {"m": {"backend": "local", "path": "${STORE_TEST_UNSET}/x"}}},
            "STORE_TEST_UNSET is not set",
        ),
    ],
)
def test_bad_configurations_raise_clear_errors(
    config: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORE_TEST_UNSET", raising=False)
    with pytest.raises(StoreConfigError, match=message) as info:
        AsyncStore.from_config(config)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RegistryError)


def test_unknown_backend_setting_lists_the_accepted_ones() -> None:
    with pytest.raises(StoreConfigError) as info:
        AsyncStore.from_config({"mounts": {"m": {"backend": "local", "path": "x", "size": 1}}})
    assert "path" in str(info.value) and "fsync" in str(info.value)
    assert "version_objects" in str(info.value)


def test_remote_backends_are_built_lazily_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.backends.s3 import S3Backend

    monkeypatch.setenv("STORE_TEST_BUCKET", "team-bucket")
    config = {
        "mounts": {
            "s3": {
                "backend": "s3",
                "bucket": "${STORE_TEST_BUCKET}",
                "endpoint": "127.0.0.1:9",
                "secure": False,
                "access_key": "k",
                "secret_key": "s",
                "version_objects": True,
            }
        }
    }
    store = AsyncStore.from_config(config)  # builds only: no connection is made
    backend = store.get_mount("s3").backend
    assert isinstance(backend, S3Backend) and backend.bucket == "team-bucket"
    monkeypatch.setitem(sys.modules, "registry.backends.gcs", None)  # as if not shipped
    with pytest.raises(StoreConfigError, match="'gcs' is not available"):
        AsyncStore.from_config({"mounts": {"g": {"backend": "gcs", "bucket": "b"}}})


def test_a_config_error_is_also_a_registry_config_error() -> None:
    assert issubclass(StoreConfigError, RegistryConfigError)


@pytest.fixture(params=["moto_target", "gcs_target"])
def remote_target(request: pytest.FixtureRequest) -> Any:
    """A real remote server: moto for S3, fake-gcs-server for GCS."""
    return request.getfixturevalue(request.param)


@pytest.mark.anyio
async def test_mounts_on_local_and_a_remote_store_work_together(
    tmp_path: Path, remote_target: Any
) -> None:
    """A remote store as one mount, local disk as another."""
    remote = AsyncRegistry(remote_target.backend(), version_objects=True, cache_dir=tmp_path / "c")
    local = AsyncRegistry(tmp_path / "local", version_objects=True)
    async with AsyncStore() as store:
        store.add_mount("remote", remote)
        store.add_mount("disk", local)
        big = os.urandom(300_000)  # not inlined: a uuid folder on the remote store
        assert await store.save("remote/model", big) == "1"
        assert await store.copy("remote/model", "disk/model") == "1"
        assert await store.load("disk/model@1") == big
        with pytest.raises(StoreAmbiguousObjectError, match=r"disk.*remote|remote.*disk"):
            await store.load("model")
        await store.move("disk/model", "remote/model")
        assert await store.list_versions("remote/model") == ["1", "2"]
        assert await store.load("model") == big  # only one mount has it now
        batch = await store.load(["remote/model@1", "disk/model", "remote/model@2"])
        assert batch.failed == [1] and batch.results[0] == batch.results[2] == big
