"""Metadata a batch caches lands in one pack file (core/cache_packs.py): it
is found by single loads, offline use, cache_info and other processes' views
of the folder, a single write or a drop supersedes it, and damage heals."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from registry import MemoryBackend, Registry, RegistryObjectNotFound
from registry.core.cache import PACK_MIN, Cache
from registry.core.cache_packs import Packs, read_table
from registry.testing.counting import CountingBackend

NAMES = [f"obj-{i}" for i in range(2 * PACK_MIN)]


def _packs(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("meta-packs/*.pack"))


def _meta_files(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.rglob("meta/*.json")]


def _cold(backend: CountingBackend, cache_dir: Path, **options: object) -> Registry:
    return Registry(backend=backend, cache_dir=cache_dir, **options)  # type: ignore[arg-type]


@pytest.fixture
def saved(tmp_path: Path) -> CountingBackend:
    backend = CountingBackend(MemoryBackend(), remote=True)
    with Registry(backend=backend, version_objects=True, cache_dir=tmp_path / "saver") as reg:
        reg.save(NAMES, [name.encode() for name in NAMES], version="1").raise_first()
        reg.save("big", os.urandom(200_000), version="1")  # files, not inlined
    return backend


def test_a_batch_load_writes_one_pack_that_later_loads_use(
    saved: CountingBackend, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    reg = _cold(saved, cache_dir)
    assert reg.load(NAMES, version="1").results == [n.encode() for n in NAMES]
    assert len(_packs(cache_dir)) == 1 and _meta_files(cache_dir) == []
    saved.reset()
    assert reg.load(NAMES[3], version="1") == NAMES[3].encode()
    assert reg.load(NAMES, version="1").results == [n.encode() for n in NAMES]
    assert not saved.counts  # every one a hit
    # another view of the folder (another process's) finds them too, offline
    offline = _cold(saved, cache_dir, offline=True)
    assert offline.load(NAMES[0], version="1") == NAMES[0].encode()
    assert offline.list_versions(NAMES[0]) == ["1"]
    assert set(NAMES) <= set(offline.list_objects())
    assert not saved.counts


def test_a_small_batch_writes_files_not_a_pack(saved: CountingBackend, tmp_path: Path) -> None:
    reg = _cold(saved, tmp_path / "cache")
    reg.load(NAMES[: PACK_MIN - 1], version="1").raise_first()
    assert _packs(tmp_path / "cache") == []
    assert len(_meta_files(tmp_path / "cache")) == PACK_MIN - 1


def test_a_batch_save_packs_its_write_through(tmp_path: Path) -> None:
    backend = CountingBackend(MemoryBackend(), remote=True)
    reg = Registry(backend=backend, version_objects=True, cache_dir=tmp_path / "cache")
    reg.save(NAMES, [b"x"] * len(NAMES), version="1").raise_first()
    assert len(_packs(tmp_path / "cache")) == 1
    backend.reset()
    assert reg.load(NAMES, version="1").results == [b"x"] * len(NAMES)
    assert not backend.counts  # save-then-load downloads nothing


def test_cache_info_names_packed_versions(saved: CountingBackend, tmp_path: Path) -> None:
    reg = _cold(saved, tmp_path / "cache")
    reg.load([*NAMES, "big"], version="1").raise_first()
    (entry,) = reg.cache_info().entries
    assert (entry.name, entry.versions) == ("big", ("1",))


def test_a_delete_drops_the_packed_copy_for_every_view(
    saved: CountingBackend, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    reg = _cold(saved, cache_dir)
    reg.load(NAMES, version="1").raise_first()
    offline = _cold(saved, cache_dir, offline=True)
    assert offline.load(NAMES[1], version="1") == NAMES[1].encode()  # its index is built
    reg.delete(NAMES[1])
    with pytest.raises(RegistryObjectNotFound):
        offline.load(NAMES[1], version="1")
    assert offline.load(NAMES[2], version="1") == NAMES[2].encode()  # the rest is kept
    (pack,) = _packs(cache_dir)
    table = read_table(pack)
    assert table is not None and len(table) == len(NAMES) - 1


def test_damaged_packed_metadata_is_read_again(
    saved: CountingBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    reg = _cold(saved, cache_dir)
    reg.load(NAMES, version="1").raise_first()
    (pack,) = _packs(cache_dir)
    table = read_table(pack)
    assert table is not None
    (offset, length) = next((o, n) for name, _, o, n in table if name == NAMES[4])
    data = bytearray(pack.read_bytes())
    data[offset : offset + length] = b"{" * length  # not JSON any more
    pack.write_bytes(bytes(data))
    fresh = _cold(saved, cache_dir)
    with caplog.at_level(logging.WARNING):
        assert fresh.load(NAMES[4], version="1") == NAMES[4].encode()
    assert "cached metadata dropped and read again" in caplog.text
    saved.reset()
    assert fresh.load(NAMES[4], version="1") == NAMES[4].encode()
    assert not saved.counts  # the copy read again was cached


def test_views_see_packs_written_and_dropped_after_they_looked(tmp_path: Path) -> None:
    writes = 0

    def write(path: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    mine, theirs = Packs(tmp_path, write), Packs(tmp_path, write)
    assert theirs.get("a", "1") is None  # looked at an empty folder
    mine.write({("a", "1"): b"one", ("b", "1"): b"bee"})
    # at once, in the same clock tick as the look: the folder is read again
    assert theirs.get("a", "1") == b"one"
    mine.write({("a", "1"): b"uno"})  # the newest pack wins
    assert theirs.get("a", "1") == b"uno" and mine.get("a", "1") == b"uno"
    theirs.drop("a", "1")
    assert mine.get("a", "1") is None and theirs.get("a", "1") is None
    assert mine.get("b", "1") == b"bee" and sorted(mine.keys()) == [("b", "1")]


def test_a_single_write_after_a_pack_wins_and_a_pack_after_a_file(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket/packs")
    with cache.batch():
        for i in range(PACK_MIN):
            cache.write_meta("m", str(i), b"packed")
        assert cache.read_meta("m", "0") == b"packed"  # seen before the batch ends
    cache.write_meta("m", "0", b"single")
    assert cache.read_meta("m", "0") == b"single"
    assert cache.read_meta("m", "1") == b"packed"
    with cache.batch():
        for i in range(PACK_MIN):
            cache.write_meta("m", str(i), b"again")
    assert cache.read_meta("m", "0") == b"again"
    assert cache.cached_versions() == {"m": [str(i) for i in range(PACK_MIN)]}


def test_a_batch_prefetch_packs_too(saved: CountingBackend, tmp_path: Path) -> None:
    reg = _cold(saved, tmp_path / "cache")
    assert reg.prefetch(NAMES, version="1").results == ["1"] * len(NAMES)
    assert len(_packs(tmp_path / "cache")) == 1 and _meta_files(tmp_path / "cache") == []
    offline = _cold(saved, tmp_path / "cache", offline=True)
    assert offline.load(NAMES, version="1").results == [n.encode() for n in NAMES]


def test_a_pack_cut_short_is_ignored(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket/cut")
    with cache.batch():
        for i in range(PACK_MIN):
            cache.write_meta("m", str(i), b"packed")
    (pack,) = _packs(tmp_path)
    pack.write_bytes(pack.read_bytes()[:-5])  # its table's end is gone
    fresh = Cache(tmp_path, "s3://bucket/cut")  # another process's view
    assert fresh.read_meta("m", "0") is None and fresh.cached_versions() == {}
    fresh.drop_meta("m", "0")  # nothing to drop: returns
    assert pack.exists()
