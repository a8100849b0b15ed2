"""Loads from the local cache of a remote registry, at each verify level, as
a ratio to the same load from a local-disk registry (read in place).

The "remote" is an in-memory store the registry treats as remote, so the
figures measure the cache, not a network: ``"none"`` and ``"integrity"``
make no request for a cached version, ``"full"`` reads the metadata again
(here an in-process read; on S3 or GCS one small GET).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from benchmarks.common import Config, MiB, Result, alternate, emit, timed
from registry import MemoryBackend, Registry
from registry.core.types import Verify
from registry.testing.counting import CountingBackend

SMALL = 150 * 1024  # above the inline limit: a cached file, not inlined metadata


def bench_cache(config: Config) -> list[Result]:
    results: list[Result] = []
    big_mib = 64 if config.quick else 256
    objects: dict[str, object] = {
        "small": os.urandom(SMALL),
        "big": np.random.default_rng(0).integers(0, 255, big_mib * MiB, dtype=np.uint8),
    }
    local = Registry(config.scratch("cache-local"))
    remote = Registry(
        backend=CountingBackend(MemoryBackend(), remote=True),
        cache_dir=config.scratch("cache-dir"),
    )
    try:
        for name, obj in objects.items():
            local.save(name, obj)
            remote.save(name, obj)  # write-through: cached
        for name, rounds, ops in (
            ("small", config.repeats, config.single_ops),
            ("big", config.big_repeats + 1, 1),
        ):
            for verify in ("none", "integrity", "full"):
                cached, read_in_place = alternate(
                    [_loads(remote, name, verify, ops), _loads(local, name, verify, ops)],
                    rounds,
                )
                label = f"{big_mib} MiB array" if name == "big" else "150 KiB bytes"
                aim = "≥ 83% of local" if verify == "none" else ""
                passed = (
                    sorted(cached)[len(cached) // 2]
                    >= 0.83 * sorted(read_in_place)[len(cached) // 2]
                    if verify == "none"
                    else None
                )
                emit(
                    results,
                    Result(
                        f"cached load, {label}, verify={verify!r}",
                        "ops/s",
                        cached,
                        "the same load from local disk",
                        read_in_place,
                        aim,
                        passed,
                    ),
                )
    finally:
        local.close()
        remote.close()
    return results


def _loads(reg: Registry, name: str, verify: Verify, ops: int) -> Callable[[int], float]:
    def run(round_: int) -> float:
        elapsed = timed(lambda: [reg.load(name, verify=verify) for _ in range(ops)])
        return ops / elapsed

    return run
