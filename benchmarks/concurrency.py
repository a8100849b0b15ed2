"""The ``concurrency`` group: batch throughput against the backend's concurrency.

A batch save and a batch load of 500 small objects through a registry whose
backend allows 1, 4, 16 or 64 calls in flight (``LocalBackend(...,
concurrency=c)``, ``S3Backend(..., concurrency=c)``: the registry's batch
fan-out uses the backend's concurrency), against the raw baseline at the same
concurrency, in alternating rounds:

- local disk: durable writes (temp file, fsync, link, fsync folder) and
  read+decode of the JSON, each by a pool of ``c`` threads;
- SeaweedFS (the run's shared server; skipped by ``--quick``): 1 KiB
  ``bytes`` saved with version "1" (one conditional PUT each) and loaded
  with ``use_cache=False`` (one GET each), against aioboto3 at the same
  connection-pool size and ``c`` workers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.common import Config, Result, alternate, alternate_async, clock, emit, pool
from benchmarks.local import SMALL_JSON_BYTES, raw_save_pool, small_object, write_plain_files
from benchmarks.shared import s3_backend

LEVELS = (1, 4, 16, 64)
COUNT = 500
QUICK_COUNT = 100  # --quick: a save at concurrency 1 is one fsync'd write after another
REMOTE_BYTES = 1024
_decode = msgspec.json.Decoder().decode


def _result(
    backend: str,
    op: str,
    c: int,
    samples: list[float],
    baseline: str,
    raw: list[float],
    size: int,
    count: int = COUNT,
) -> Result:
    return Result(
        f"{backend}: batch {op} {count} small, concurrency {c}",
        "ops/s",
        samples,
        baseline,
        raw,
        backend=backend,
        params={"op": op, "concurrency": c, "bytes": size},
    )


# -- local disk ----------------------------------------------------------------------


def _raw_load_pool(paths: list[Path], threads: ThreadPoolExecutor) -> float:
    def read(path: Path) -> object:
        with open(path, "rb") as f:
            return _decode(f.read())

    took = clock()
    list(threads.map(read, paths))
    return len(paths) / took()


def _local_level(config: Config, c: int) -> list[Result]:
    from registry import Registry
    from registry.backends.local import LocalBackend

    count = QUICK_COUNT if config.quick else COUNT
    rounds = 2 if config.quick else config.repeats
    objs = [small_object(i) for i in range(count)]
    raw_root = config.scratch(f"raw-conc-{c}")
    reg = Registry(
        LocalBackend(config.scratch(f"reg-conc-{c}"), concurrency=c), version_objects=True
    )
    threads = ThreadPoolExecutor(max_workers=c, thread_name_prefix=f"raw-{c}")
    try:
        reg.save(["warmup"], [objs[0]]).raise_first()

        def save(round_: int) -> float:
            names = [f"c{c}-{round_}-{i}" for i in range(count)]
            took = clock()
            saved = reg.save(names, objs, version="1")
            elapsed = took()
            saved.raise_first()
            return count / elapsed

        def raw_save(round_: int) -> float:
            return raw_save_pool(raw_root / f"save-{round_}", objs, threads)

        saves, raw_saves = alternate([save, raw_save], rounds)
        names = [f"c{c}-0-{i}" for i in range(count)]
        paths = write_plain_files(raw_root / "load", objs)

        def load(round_: int) -> float:
            took = clock()
            loaded = reg.load(names, version="1")
            elapsed = took()
            loaded.raise_first()
            return count / elapsed

        def raw_load(round_: int) -> float:
            gc.collect()
            return _raw_load_pool(paths, threads)

        loads, raw_loads = alternate([load, raw_load], rounds)
    finally:
        threads.shutdown()
        reg.close()
    return [
        _result(
            "local",
            "save",
            c,
            saves,
            f"durable write x{c} threads",
            raw_saves,
            SMALL_JSON_BYTES,
            count,
        ),
        _result(
            "local",
            "load",
            c,
            loads,
            f"read+decode x{c} threads",
            raw_loads,
            SMALL_JSON_BYTES,
            count,
        ),
    ]


# -- SeaweedFS ---------------------------------------------------------------------------


class _Address:
    """What RawS3.open reads of a server: its endpoint and credentials."""

    def __init__(self, address: dict[str, Any]) -> None:
        self.endpoint = address["endpoint"]
        self.access_key = address["access_key"]
        self.secret_key = address["secret_key"]


async def _remote_level(config: Config, c: int) -> list[Result]:
    from benchmarks.raw_s3 import RawS3
    from registry import AsyncRegistry

    context = dict(config.context)
    bucket = context["seaweedfs"]["bucket"]
    payloads = [os.urandom(REMOTE_BYTES) for _ in range(COUNT)]
    rounds = min(config.repeats, 2)  # c=1 is 500 requests one after another
    run = uuid.uuid4().hex[:8]  # each worker process writes its own keys
    backend = s3_backend(context, f"conc-{run}-{c}", concurrency=c)
    reader_backend = s3_backend(context, f"conc-{run}-{c}", concurrency=c)
    # the registries close their backends on exit
    async with (
        RawS3.open(_Address(context["seaweedfs"]), backend) as raw,  # type: ignore[arg-type]
        AsyncRegistry(backend, version_objects=True, use_cache=False) as areg,
        AsyncRegistry(reader_backend, use_cache=False) as reader,
    ):
        await areg.save(["warmup"], [b"w"], version="1")
        await pool(c, c, lambda i: raw.put_small(bucket, f"raw-{run}-{c}/warm-{i}", b"w"))

        async def save(round_: int) -> float:
            names = [f"s{round_}-{i}" for i in range(COUNT)]
            took = clock()
            saved = await areg.save(names, payloads, version="1")
            elapsed = took()
            saved.raise_first()
            return COUNT / elapsed

        async def raw_save(round_: int) -> float:
            prefix = f"raw-{run}-{c}/s{round_}"
            took = clock()
            await pool(COUNT, c, lambda i: raw.put_small(bucket, f"{prefix}-{i}", payloads[i]))
            return COUNT / took()

        saves, raw_saves = await alternate_async([save, raw_save], rounds)
        names = [f"s0-{i}" for i in range(COUNT)]

        async def load(round_: int) -> float:
            took = clock()
            loaded = await reader.load(names, version="1")
            elapsed = took()
            loaded.raise_first()
            return COUNT / elapsed

        async def raw_load(round_: int) -> float:
            prefix = f"raw-{run}-{c}/s0"
            took = clock()
            await pool(COUNT, c, lambda i: raw.get_small(bucket, f"{prefix}-{i}"))
            return COUNT / took()

        loads, raw_loads = await alternate_async([load, raw_load], rounds)
    return [
        _result(
            "seaweedfs", "save", c, saves, f"put_object If-None-Match x{c}", raw_saves, REMOTE_BYTES
        ),
        _result("seaweedfs", "load", c, loads, f"get_object x{c}", raw_loads, REMOTE_BYTES),
    ]


def bench_concurrency(config: Config) -> list[Result]:
    results: list[Result] = []
    levels: list[tuple[str, Callable[[int], list[Result]]]] = [
        ("local", lambda c: _local_level(config, c))
    ]
    if "seaweedfs" in config.context:

        def remote(c: int) -> list[Result]:
            return asyncio.run(_remote_level(config, c))

        levels.append(("seaweedfs", remote))
    for _, measure in levels:
        for c in LEVELS:
            for result in measure(c):
                emit(results, result)
    return results
