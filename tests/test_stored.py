"""registry.core.stored on every backend: a version's files exported, re-hashed
and copied to another registry as they are, damage reported, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import AsyncRegistry, RegistryIntegrityError, RegistryVersionConflict
from registry.backends.local import LocalBackend
from registry.core.layout import objects_folder
from registry.core.stored import (
    Damage,
    check_files,
    copy_version,
    export_files,
    stored_meta,
    stored_metas,
)

pytestmark = pytest.mark.anyio

BIG = bytes(range(256)) * 1024  # above the inline limit: stored in a uuid folder


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(BIG)
    (src / "sub" / "b.txt").write_text("b")
    return src


async def test_export_writes_the_stored_files_checked(areg: AsyncRegistry, tmp_path: Path) -> None:
    await areg.save("folder", _folder(tmp_path))
    await areg.save("small", {"inline": True})
    moved: list[int] = []
    meta = await stored_meta(areg, "folder", "latest")
    await export_files(areg, meta, tmp_path / "out", moved.append)
    assert (tmp_path / "out" / "dir" / "src" / "a.bin").read_bytes() == BIG
    assert (tmp_path / "out" / "dir" / "src" / "sub" / "b.txt").read_text() == "b"
    assert sum(moved) == meta.size
    small = await stored_meta(areg, "small", "1")
    await export_files(areg, small, tmp_path / "small")
    (stored,) = small.files
    assert (tmp_path / "small" / stored).read_bytes() == small.inline


async def test_check_finds_damaged_and_missing_files(areg: AsyncRegistry, tmp_path: Path) -> None:
    await areg.save("folder", _folder(tmp_path))
    await areg.save("blob", BIG)
    await areg.save("small", "inline")
    metas = [m for n in ("folder", "blob", "small") for m in await stored_metas(areg, n)]
    assert await check_files(areg, metas) == []
    folder = await stored_meta(areg, "folder", "1")
    blob = await stored_meta(areg, "blob", "1")
    damaged = bytearray(BIG)
    damaged[10] ^= 0xFF
    await areg.backend.put(
        f"{objects_folder('blob', blob.uuid)}/{next(iter(blob.files))}", bytes(damaged)
    )
    await areg.backend.delete([f"{objects_folder('folder', folder.uuid)}/dir/src/sub/b.txt"])
    found = sorted(await check_files(areg, metas), key=lambda d: d.name)
    assert [(d.name, d.file) for d in found] == [
        ("blob", next(iter(blob.files))),
        ("folder", "dir/src/sub/b.txt"),
    ]
    assert "sha256 differs" in found[0].problem
    assert found[1] == Damage("folder", "1", "dir/src/sub/b.txt", "missing")
    with pytest.raises(RegistryIntegrityError, match="damaged"):
        await export_files(areg, blob, tmp_path / "out")


async def test_copy_is_byte_for_byte_and_write_once(areg: AsyncRegistry, tmp_path: Path) -> None:
    await areg.save("folder", _folder(tmp_path), metadata={"epochs": 3})
    await areg.save("small", [1, 2, 3])
    async with AsyncRegistry(LocalBackend(tmp_path / "other"), version_objects=True) as other:
        meta = await stored_meta(areg, "folder", "1")
        assert await copy_version(areg, meta, other, "folder") == "1"
        assert await copy_version(areg, meta, other, "renamed", "7") == "7"
        small = await stored_meta(areg, "small", "1")
        assert await copy_version(areg, small, other, "small") == "1"
        loaded = await other.load("renamed", version="7")
        assert (loaded / "a.bin").read_bytes() == BIG
        assert await other.load("small") == [1, 2, 3]
        info = await other.info("renamed", "7")
        assert info["files"] == (await areg.info("folder", "1"))["files"]
        assert info["metadata"] == {"epochs": 3}
        with pytest.raises(RegistryVersionConflict):
            await copy_version(areg, meta, other, "renamed", "7")
        # the losing copy's folder is gone at once: only the committed ones stay
        assert len(list((tmp_path / "other" / "objects" / "renamed").iterdir())) == 1


async def test_copy_refuses_damaged_source(areg: AsyncRegistry, tmp_path: Path) -> None:
    await areg.save("blob", BIG)
    meta = await stored_meta(areg, "blob", "1")
    await areg.backend.put(f"{objects_folder('blob', meta.uuid)}/{next(iter(meta.files))}", b"x")
    async with AsyncRegistry(LocalBackend(tmp_path / "other"), version_objects=True) as other:
        with pytest.raises(RegistryIntegrityError, match="damaged"):
            await copy_version(areg, meta, other, "blob")
        assert await other.list_objects() == []
        assert not (tmp_path / "other" / "objects" / "blob").exists() or not any(
            (tmp_path / "other" / "objects" / "blob").iterdir()
        )


async def test_progress_moves_within_one_large_file(tmp_path: Path) -> None:
    """A download is watched while it fills its file, so a single large file
    does not show 0% until it is done."""
    import anyio

    from registry.core.stored import _watch_growth

    path = tmp_path / "growing"
    path.write_bytes(b"")
    seen: list[int] = []

    async def grow() -> None:
        for _ in range(4):
            with open(path, "ab") as f:
                f.write(b"x" * 1_000_000)
            await anyio.sleep(0.3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_growth, path, 4_000_000, seen.append)
        await grow()
        tg.cancel_scope.cancel()
    assert len(set(seen)) >= 3 and max(seen) <= 4_000_000
    assert seen == sorted(seen)
