"""The local cache in front of remote backends: what each verify level sees,
how many requests a load costs, and recovery from damaged or stale copies.
A MemoryBackend wrapped as "remote" stands in for S3/GCS here; the S3 and GCS
suites run the same registry code against real servers."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry, MemoryBackend, RegistryIntegrityError
from registry.core.layout import objects_folder
from registry.testing.counting import CountingBackend

pytestmark = pytest.mark.anyio

BIG = os.urandom(300_000)  # above the inline limit: lives in a uuid folder


def remote(store: MemoryBackend) -> CountingBackend:
    return CountingBackend(store, remote=True)


async def test_save_writes_through_so_load_needs_no_download(tmp_path: Path) -> None:
    backend = remote(MemoryBackend())
    async with AsyncRegistry(backend, version_objects=True, cache_dir=tmp_path) as reg:
        await reg.save("m", BIG, version="2")  # "2": "1" would raise no head
        backend.reset()
        assert await reg.load("m", version="2") == BIG
        assert backend.counts == {}  # metadata and files both from the cache
        assert await reg.load("m") == BIG
        # "latest" must ask the backend: the name's head, then a probe above it
        # and the metadata, overlapped (the same at any number of versions)
        assert dict(backend.counts) == {"get": 2, "head": 1}


async def test_cold_cache_costs_one_metadata_read_and_one_per_file(tmp_path: Path) -> None:
    store = MemoryBackend()
    async with AsyncRegistry(remote(store), version_objects=True, cache_dir=tmp_path / "a") as w:
        await w.save("m", BIG, version="1")
        await w.save("small", b"tiny", version="1")
    backend = remote(store)
    async with AsyncRegistry(backend, cache_dir=tmp_path / "b") as reader:
        backend.reset()  # opening read the settings once
        assert await reader.load("m", version="1") == BIG
        assert dict(backend.counts) == {"get": 1, "get_file": 1}
        backend.reset()
        assert await reader.load("small", version="1") == b"tiny"
        assert dict(backend.counts) == {"get": 1}  # inlined: one read in all
        backend.reset()
        await reader.load("m", version="1")
        assert backend.counts == {}


async def test_verify_levels_on_a_stale_cache(tmp_path: Path) -> None:
    store = MemoryBackend()
    host_a = AsyncRegistry(
        remote(store), mutable=True, version_objects=True, cache_dir=tmp_path / "a"
    )
    host_b = AsyncRegistry(remote(store), cache_dir=tmp_path / "b")
    await host_a.save("m", BIG, version="1")
    assert await host_a.load("m", version="1") == BIG
    await host_b.save("m", b"new" + BIG, version="1", on_conflict="overwrite")
    # "none" and "integrity" trust host A's cached metadata: documented staleness
    assert await host_a.load("m", version="1", verify="none") == BIG
    assert await host_a.load("m", version="1", verify="integrity") == BIG
    # "full" re-reads the metadata and sees the overwrite
    assert await host_a.load("m", version="1", verify="full") == b"new" + BIG
    assert await host_a.load("m", version="1") == b"new" + BIG  # and the cache follows


async def test_damaged_cached_file_is_fetched_again(tmp_path: Path) -> None:
    backend = remote(MemoryBackend())
    async with AsyncRegistry(backend, version_objects=True, cache_dir=tmp_path) as reg:
        await reg.save("m", BIG, version="1")
        info = await reg.info("m", "1")
        cached = list(tmp_path.rglob(f"objects/m/{info['uuid']}/*"))
        assert len(cached) == 1
        cached[0].write_bytes(b"garbage")
        backend.reset()
        assert await reg.load("m", version="1") == BIG
        assert backend.counts["get_file"] == 1
        # with verify="none" the damage is not looked for: that is the contract
        cached[0].write_bytes(b"x" * len(BIG))
        assert await reg.load("m", version="1", verify="none") != BIG


async def test_damaged_remote_copy_raises_integrity_error(tmp_path: Path) -> None:
    store = MemoryBackend()
    async with AsyncRegistry(remote(store), version_objects=True, cache_dir=tmp_path / "w") as w:
        await w.save("m", BIG, version="1")
        uuid = (await w.info("m", "1"))["uuid"]
    await store.put(f"{objects_folder('m', uuid)}/data.bin", BIG[:-1] + b"!")
    async with AsyncRegistry(remote(store), cache_dir=tmp_path / "r") as reader:
        with pytest.raises(RegistryIntegrityError):
            await reader.load("m", version="1")
        assert not list((tmp_path / "r").rglob(f"objects/m/{uuid}"))  # never cached


async def test_clear_cache_and_lru_eviction(tmp_path: Path) -> None:
    backend = remote(MemoryBackend())
    reg = AsyncRegistry(backend, version_objects=True, cache_dir=tmp_path, cache_max_bytes=700_000)
    for i in range(4):
        await reg.save(f"m{i}", os.urandom(300_000))
    folders = list(tmp_path.rglob("objects/*/*"))
    assert 1 <= len(folders) <= 2  # 4 x 300 KB under a 700 KB cap
    assert (tmp_path / next(tmp_path.iterdir()).name / "objects" / "m3").exists()  # newest kept
    await reg.clear_cache()
    assert not list(tmp_path.rglob("objects/*/*"))
    backend.reset()
    assert len(await reg.load("m0")) == 300_000
    assert backend.counts["get_file"] == 1


async def test_crashed_download_leftovers_are_swept(tmp_path: Path) -> None:
    reg = AsyncRegistry(remote(MemoryBackend()), version_objects=True, cache_dir=tmp_path)
    await reg.save("m", b"x")  # creates the cache root
    root = next(tmp_path.iterdir())
    stale = root / "tmp" / "leftover"
    stale.mkdir(parents=True)
    (stale / "part").write_bytes(b"half a file")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = AsyncRegistry(remote(MemoryBackend()), version_objects=True, cache_dir=tmp_path)
    fresh.backend.uri = reg.backend.uri  # same store identity -> same cache root
    fresh._cache = reg._cache.__class__(tmp_path, reg.backend.uri)
    await fresh.save("n", BIG)
    assert not stale.exists()


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[AsyncRegistry]:
    """A cached remote registry holding m0..m3 (BIG plus one byte each),
    saved in that order, so m0 is the least recently used."""
    async with AsyncRegistry(
        remote(MemoryBackend()), version_objects=True, cache_dir=tmp_path
    ) as reg:
        for i in range(4):
            await reg.save(f"m{i}", BIG + bytes([i]))
        yield reg


async def test_cache_info_lists_entries_least_recently_used_first(
    filled: AsyncRegistry, tmp_path: Path
) -> None:
    await filled.load("m0")  # m0 becomes the most recently used
    info = await filled.cache_info()
    assert [e.name for e in info.entries] == ["m1", "m2", "m3", "m0"]
    assert [e.versions for e in info.entries] == [("1",)] * 4
    assert info.total_bytes == 4 * (len(BIG) + 1)
    assert info.root is not None and info.root.is_relative_to(tmp_path)


async def test_prune_cache_by_age_then_size(filled: AsyncRegistry) -> None:
    entries = (await filled.cache_info()).entries
    old = time.time() - 40 * 86400
    os.utime(_folder(filled, entries[0]), (old, old))
    pruned = await filled.prune_cache(older_than=30 * 86400)
    assert [e.name for e in pruned.removed] == ["m0"]
    pruned = await filled.prune_cache(max_bytes=len(BIG) + 1)
    assert [e.name for e in pruned.removed] == ["m1", "m2"]
    assert pruned.bytes == 2 * (len(BIG) + 1)
    assert [e.name for e in (await filled.cache_info()).entries] == ["m3"]
    assert await filled.load("m0") == BIG + b"\0"  # fetched again


def _folder(reg: AsyncRegistry, entry: Any) -> Path:
    assert reg._cache is not None
    return reg._cache.folder(entry.name, entry.uuid)


async def test_a_registry_without_cache_reports_an_empty_one(tmp_path: Path) -> None:
    async with AsyncRegistry(tmp_path / "local") as reg:
        info = await reg.cache_info()
        assert info.root is None and info.entries == [] and info.total_bytes == 0
        assert (await reg.prune_cache(max_bytes=0)).removed == []
