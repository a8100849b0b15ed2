"""A damaged cache heals itself: each kind of damage to a cached entry or its
cached metadata, at each verify level, on real servers."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from registry import AsyncRegistry

pytestmark = pytest.mark.anyio
BIG = os.urandom(150_000)
Damage = Literal["truncated", "altered", "missing", "meta-garbled", "meta-altered"]
DAMAGES: list[Damage] = ["truncated", "altered", "missing", "meta-garbled", "meta-altered"]


def damage_cache(reg: AsyncRegistry, name: str, how: Damage) -> None:
    cache = reg._cache
    assert cache is not None
    (meta_file,) = (cache.root / "meta").glob(f"{name}@*.json")
    if how == "meta-garbled":
        meta_file.write_bytes(meta_file.read_bytes()[:40])  # cut mid-JSON
        return
    if how == "meta-altered":  # valid JSON that no longer matches the files
        record = msgspec.json.decode(meta_file.read_bytes())
        for entry in record["files"].values():
            entry["sha256"] = "0" * 64
        meta_file.write_bytes(msgspec.json.encode(record))
        return
    (data,) = (cache.root / "objects" / name).glob("*/data.bin")
    if how == "missing":
        data.unlink()
    elif how == "truncated":
        data.write_bytes(data.read_bytes()[: len(BIG) // 2])
    else:
        data.write_bytes(b"x" * len(BIG))


@pytest.mark.parametrize("verify", ["integrity", "full"])
@pytest.mark.parametrize("how", DAMAGES)
async def test_damage_is_repaired_and_logged(
    moto_target: Any, tmp_path: Path, how: Damage, verify: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncRegistry(backend=moto_target.backend(), cache_dir=tmp_path) as reg:
        await reg.save("m", BIG)  # write-through: cached
        damage_cache(reg, "m", how)
        caplog.set_level(logging.WARNING, logger="registry")
        assert await reg.load("m", verify=verify) == BIG  # type: ignore[arg-type]
        assert await reg.load("m", verify="none") == BIG  # the cache holds a good copy again
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if verify == "full" and how.startswith("meta"):
        assert warned == []  # "full" reads the backend's metadata: the cached one is unused
    else:
        assert any("dropped" in w for w in warned), warned


@pytest.mark.parametrize("how", DAMAGES)
async def test_verify_none_does_not_look_for_damage(
    moto_target: Any, tmp_path: Path, how: Damage
) -> None:
    """Documented: "none" trusts the cache. Damage it cannot help seeing (a
    missing file, metadata that does not decode) is still repaired."""
    async with AsyncRegistry(backend=moto_target.backend(), cache_dir=tmp_path) as reg:
        await reg.save("m", BIG)
        damage_cache(reg, "m", how)
        loaded = await reg.load("m", verify="none")
    if how in ("truncated", "altered"):
        assert loaded != BIG and len(loaded) in (len(BIG), len(BIG) // 2)
    else:
        assert loaded == BIG


async def test_damaged_inline_value_in_cached_metadata_is_repaired(
    gcs_target: Any, tmp_path: Path
) -> None:
    async with AsyncRegistry(backend=gcs_target.backend(), cache_dir=tmp_path) as reg:
        await reg.save("cfg", {"lr": 0.1})  # small: inlined in its metadata
        cache = reg._cache
        assert cache is not None
        (meta_file,) = (cache.root / "meta").glob("cfg@*.json")
        record = msgspec.json.decode(meta_file.read_bytes())
        record["inline"] = msgspec.json.decode(msgspec.json.encode(b'{"lr":0.2}'))
        meta_file.write_bytes(msgspec.json.encode(record))
        assert await reg.load("cfg") == {"lr": 0.1}
        assert meta_file.read_bytes() != msgspec.json.encode(record)  # replaced
