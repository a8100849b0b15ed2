"""Many processes on one cache folder: one download per entry, eviction that
never fails an operation nor removes what a reader holds, caps that hold with
several writers, and no HTTP session left unclosed by a dropped registry."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from registry import Registry
from registry.core.cache import Cache
from tests import cache_workers
from tests.child import REPO

MIB = 1024 * 1024


def leftovers(cache_root: Path) -> list[Path]:
    """Temp files, claims and leases a clean run must not leave behind."""
    return [
        p
        for sub in ("tmp", "leases")
        for p in (cache_root / sub).rglob("*")
        if (cache_root / sub).exists()
    ]


@pytest.mark.slow
def test_eight_processes_load_one_uncached_object(moto_target: Any, tmp_path: Path) -> None:
    payload = os.urandom(64 * MIB)
    backend = moto_target.backend()
    with Registry(backend=backend, use_cache=False) as writer:
        writer.save("big", payload)
    cache_dir = tmp_path / "shared-cache"
    config = pickle.dumps(Registry(backend=backend, cache_dir=cache_dir))
    start_at = time.time() + 3.0  # after every worker has started and connected
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        results = pool.starmap(
            cache_workers.load_counting_downloads, [(config, "big", start_at)] * 8
        )
    expected = hashlib.sha256(payload).hexdigest()
    assert [digest for digest, _ in results] == [expected] * 8
    downloads = sum(count for _, count in results)
    assert 1 <= downloads <= 2, results  # one claims it, the others wait for it
    with Registry(backend=backend, cache_dir=cache_dir) as reg:
        info = reg.cache_info()
        assert [(e.name, e.size) for e in info.entries] == [("big", len(payload))]
        assert info.root is not None and leftovers(info.root) == []


@pytest.mark.slow
def test_writers_in_four_processes_under_small_caps(moto_target: Any, tmp_path: Path) -> None:
    cap = 3 * MIB
    cache_dir = tmp_path / "shared-cache"
    config = pickle.dumps(
        Registry(
            backend=moto_target.backend(),
            cache_dir=cache_dir,
            cache_max_bytes=cap,
            cache_max_entries=10,
        )
    )
    start_at = time.time() + 3.0
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        failures = pool.starmap(
            cache_workers.save_many,
            [(config, f"w{n}", 12, 256 * 1024, start_at) for n in range(4)],
        )
    assert failures == [0, 0, 0, 0]
    reg: Registry = pickle.loads(config)
    with reg:
        info = reg.cache_info()
        assert 0 < info.total_bytes <= cap, info.total_bytes
        assert 0 < len(info.entries) <= 10, len(info.entries)
        assert info.root is not None and leftovers(info.root) == []


def test_batch_saves_under_a_small_cap_never_fail(moto_target: Any, tmp_path: Path) -> None:
    """The bug report: three batch saves of 40 objects of 256 KiB through one
    registry with cache_max_bytes=3 MiB failed with FileNotFoundError."""
    with Registry(
        backend=moto_target.backend(), cache_dir=tmp_path, cache_max_bytes=3 * MIB
    ) as reg:
        for round_ in range(3):
            names = [f"r{round_}-{i}" for i in range(40)]
            result = reg.save(names, [os.urandom(256 * 1024) for _ in names])
            assert result.failed == [], result.errors
        assert reg.cache_info().total_bytes <= 3 * MIB


def test_eviction_skips_an_entry_a_reader_holds(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket", max_bytes=0)
    tmp = cache.new_tmp()
    (tmp / "data").write_bytes(b"x" * 100)
    with cache.reading("held", "1" * 32):
        cache.adopt("held", "1" * 32, tmp)  # a cap of 0: evicted at once unless held
        assert cache.evict() == 0 and cache.lookup("held", "1" * 32) is not None
        other = Cache(tmp_path, "s3://bucket", max_bytes=0)  # another process's view
        assert other.evict() == 0 and other.lookup("held", "1" * 32) is not None
    cache.leases.release_all()  # the last reader let go (and the linger is over)
    assert cache.evict() == 1 and cache.lookup("held", "1" * 32) is None
    assert leftovers(cache.root) == []


def test_eviction_tolerates_folders_removed_under_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path, "s3://bucket", max_bytes=150)
    for i in range(3):
        tmp = cache.new_tmp()
        (tmp / "data").write_bytes(b"x" * 100)
        cache.adopt(f"n{i}", "0" * 32, tmp)
    folders = cache.space.scan()
    for folder in folders:  # another process evicts everything meanwhile
        cache.discard(folder.path.parent.name, folder.path.name)
    cache.space._sizes.clear()
    assert cache.evict() == 0


def test_dropped_registries_leave_no_unclosed_sessions(moto_target: Any, gcs_target: Any) -> None:
    """Registries made in a function and never closed (notebooks, scripts):
    their HTTP sessions are closed on their loop when collected."""
    code = (
        "import gc, pickle, sys, warnings\n"
        "warnings.simplefilter('error', ResourceWarning)\n"
        "from registry import Registry\n"
        "backends = pickle.loads(sys.stdin.buffer.read())\n"
        "def use(backend, i):\n"
        "    reg = Registry(backend=backend)\n"
        "    reg.save(f'x{i}', b'hello')\n"
        "    assert reg.load(f'x{i}') == b'hello'\n"
        "for i in range(20):\n"
        "    use(pickle.loads(pickle.dumps(backends[i % 2])), i)\n"
        "    gc.collect()\n"
        "import time; time.sleep(0.5); gc.collect()\n"
        "print('ok')\n"
    )
    backends = [moto_target.backend(), gcs_target.backend()]
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", code],
        input=pickle.dumps(backends),
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0 and done.stdout.decode().strip() == "ok", stderr
    assert "Unclosed" not in stderr and "ResourceWarning" not in stderr, stderr
