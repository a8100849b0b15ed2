"""The small files a remote registry's cache writes on the event loop go into
empty files made ahead of need (core/cache.py's _Spares): same content and
atomic replace as before, whatever happens to the spares."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from registry.core import cache as cache_module
from registry.core.cache import Cache


def _stocked(folder: Path, at_least: int) -> list[Path]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spares = sorted(folder.glob(".spare-*")) if folder.exists() else []
        if len(spares) >= at_least:
            return spares
        time.sleep(0.01)
    raise AssertionError(f"no spares appeared in {folder}")


def test_writes_land_whole_and_use_the_spares(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket/a")
    cache.write_meta("m", "1", b"first")  # no spare yet: created the plain way
    spares = _stocked(cache.root / "spares", 8)
    for i in range(20):
        cache.write_meta("m", str(i), f"value {i}".encode())
    for i in range(20):
        assert cache.read_meta("m", str(i)) == f"value {i}".encode()
    used = [p for p in spares if not p.exists()]
    assert used, "the writes took no spare"
    assert not list((cache.root / "meta").glob(".*"))  # no temp file left beside them
    cache.write_alias("m", "prod", b"alias")
    cache.write_settings(b"settings")
    assert cache.read_alias("m", "prod") == b"alias"
    assert cache.read_settings() == b"settings"


def test_spares_that_vanished_fall_back_to_a_new_file(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket/b")
    cache.write_meta("m", "1", b"one")
    spares = cache.root / "spares"
    _stocked(spares, cache_module._spares.target(spares))  # the refill is over
    shutil.rmtree(cache.root)  # cleared by another process, spares and all
    cache.write_meta("m", "2", b"two")
    assert cache.read_meta("m", "2") == b"two"
    cache.clear()
    cache.write_meta("m", "3", b"three")
    assert cache.read_meta("m", "3") == b"three"


def test_old_spares_of_dead_processes_are_swept(tmp_path: Path) -> None:
    folder = tmp_path / "spares"
    folder.mkdir()
    old = folder / ".spare-dead"
    old.touch()
    past = time.time() - cache_module.STALE_TMP_SECONDS - 10
    os.utime(old, (past, past))
    fresh = folder / ".spare-alive"
    fresh.touch()
    cache_module._sweep_spares(folder)
    assert not old.exists() and fresh.exists()
