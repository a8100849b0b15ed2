"""Benchmarks of the registry on remote servers, each against its raw client library.

Groups ``s3`` (moto, then SeaweedFS) and ``gcs`` (fake-gcs-server on its
memory backend). Each server is started on 127.0.0.1 with the test session's
helpers (tests/targets/, tests/servers/), measured, and stopped by PID (its
data removed) when its part ends, on error too. The registry
(``AsyncRegistry`` on the server's backend with its default concurrency, 32)
and the raw baseline (benchmarks/raw_s3.py, benchmarks/raw_gcs.py: the client
library set up like the backend's) do the same transfers at the same
concurrency, in alternating rounds on one event loop:

- batch save of N small objects: 1 KiB ``bytes`` each, explicit version "1";
  small objects are inlined in the metadata, so a save is one conditional
  upload. Raw: the same conditional request for N keys by 32 workers.
- batch load of them with version "1" on a cold cache (a fresh ``cache_dir``
  every round: one GET each) and on a warm one (the registry that saved them,
  whose cache holds their metadata: no request). Raw: N GETs by 32 workers.
- one large file given as a ``pathlib.Path``: save, then load on a cold cache
  (the registry downloads, hashing each piece with sha256 as it writes it, and
  returns a copy in a new temporary folder). Raw: see the baseline modules.

Every timed round of either side writes into a bucket of its own, and both
sides read buckets of the same size: fake-gcs-server's memory backend scans a
bucket's objects on each request (measured: conditional PUTs fall from ~940/s
in an empty bucket to ~190/s at 2,000 objects) and moto keeps every object in
memory, so otherwise whichever side ran later would pay for what the other
one stored. Creating and warming up a bucket is never timed.

Small-object figures are ops/s (the notes give the MB/s of payload), large
ones MB/s. Peak RSS of the large transfers is measured in this process, so it
includes memory the allocator kept from earlier rounds; it shows that memory
stays bounded (part size x parts in flight), not a figure to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any, Protocol

from benchmarks.common import (
    Config,
    MiB,
    PeakRSS,
    Result,
    alternate_async,
    clock,
    emit,
    fmt,
    pool,
)
from benchmarks.local import make_big_file

if TYPE_CHECKING:
    from registry import AsyncRegistry
    from registry.backends.base import Backend
    from registry.core.types import Verify
    from tests.targets import Target

SMALL_BYTES = 1024
TARGET = 0.7  # of raw, for batch small-object loads and the large file
WARMUP = "warmup"
GROUPS = {"s3": ("moto", "seaweedfs"), "gcs": ("gcs",)}


class Raw(Protocol):
    """A raw baseline (benchmarks/raw_*.py): the requests without the registry."""

    small_rounds: int
    width: int
    small_save: str  # labels of the baselines
    small_load: str
    commit: str  # what one small save sends
    big_save: str
    big_load: str
    big_save_how: str  # how the registry uploads a large file

    async def put_small(self, bucket: str, key: str, data: bytes) -> None: ...
    async def get_small(self, bucket: str, key: str) -> bytes: ...
    async def delete_prefix(self, bucket: str, prefix: str) -> None: ...
    async def upload_big(self, bucket: str, key: str, src: Path) -> None: ...
    async def download_big(self, bucket: str, key: str, dest: Path) -> int: ...


@contextlib.asynccontextmanager
async def open_raw(target: Target, backend: Backend) -> AsyncIterator[Raw]:
    """The raw baseline of ``target``'s client library, set up like ``backend``."""
    from registry.backends.s3 import S3Backend
    from tests.servers import FakeGCSServer, S3Server

    if isinstance(backend, S3Backend):
        from benchmarks.raw_s3 import RawS3

        assert isinstance(target.server, S3Server)
        async with RawS3.open(target.server, backend) as raw:
            yield raw
    else:
        from benchmarks.raw_gcs import RawGCS
        from registry.backends.gcs import GCSBackend

        assert isinstance(target.server, FakeGCSServer) and isinstance(backend, GCSBackend)
        async with RawGCS.open(target.server, backend) as gcs:
            yield gcs


@dataclass(frozen=True)
class Sizes:
    small_count: int
    small_rounds: int
    big_mib: int
    big_rounds: int

    @classmethod
    def of(cls, config: Config, raw: Raw) -> Sizes:
        rounds = min(config.repeats, raw.small_rounds)
        if config.quick:
            return cls(small_count=200, small_rounds=rounds, big_mib=64, big_rounds=1)
        return cls(1000, rounds, 256, min(config.big_repeats, 2))


def vs_raw(
    name: str,
    unit: str,
    samples: list[float],
    baseline: str,
    raw: list[float],
    note: str,
    params: dict[str, Any] | None = None,
) -> Result:
    """A figure held to the target: at least TARGET of the raw baseline."""
    passed = median(samples) >= TARGET * median(raw)
    return Result(
        name,
        unit,
        samples,
        baseline,
        raw,
        f"≥ {TARGET:.0%} of raw",
        passed,
        note=note,
        params=params or {},
    )


def _mbs(ops: Sequence[float]) -> str:
    """Median ops/s of small objects as MB/s of payload."""
    return fmt(median(ops) * SMALL_BYTES / 1e6)


@contextlib.contextmanager
def _peak(into: list[float]) -> Iterator[None]:
    with PeakRSS() as rss:
        yield
    into.append(rss.above_mib)


@dataclass
class Bench:
    """Everything one server's benchmarks share."""

    config: Config
    sizes: Sizes
    target: Target
    raw: Raw
    backends: list[Backend] = field(default_factory=list)  # closed at the end

    @property
    def width(self) -> int:
        return self.raw.width

    async def bucket(self, label: str) -> str:
        from tests.servers import prepare_bucket

        name = f"{label}-{uuid.uuid4().hex[:8]}"
        return await asyncio.to_thread(prepare_bucket, self.target.server, name)

    async def raw_bucket(self, label: str) -> str:
        """A fresh bucket holding ``width`` warm-up objects, as the registry's do;
        writing them also keeps the raw connection pool warm."""
        bucket = await self.bucket(label)
        await pool(
            self.width, self.width, lambda i: self.raw.put_small(bucket, f"warmup/{i}", b"w")
        )
        return bucket

    async def registry(self, label: str) -> tuple[AsyncRegistry, Path]:
        """A registry on a fresh bucket (a new backend: its own client and
        connection pool), opened and warmed up outside any timing, and its
        cache folder (the caller removes it)."""
        from registry import AsyncRegistry

        backend = self.target.server.backend(await self.bucket(label), prefix="bench")
        self.backends.append(backend)
        cache_dir = self.config.scratch(f"{label}-cache")
        areg = AsyncRegistry(backend=backend, version_objects=True, cache_dir=cache_dir)
        try:
            warm = await areg.save(
                [f"{WARMUP}-{i}" for i in range(self.width)], [b"w"] * self.width, version="1"
            )
            warm.raise_first()
            await areg.save(WARMUP, b"w", version="1")
        except BaseException:
            shutil.rmtree(cache_dir, ignore_errors=True)
            raise
        return areg, cache_dir

    async def cold_registry(self, saver: AsyncRegistry) -> tuple[AsyncRegistry, Path]:
        """Another registry on ``saver``'s backend (same client) with a fresh cache,
        opened outside any timing: the settings read is one GET, and the warm-up
        object is not a timed one."""
        from registry import AsyncRegistry

        cache_dir = self.config.scratch("cold-cache")
        areg = AsyncRegistry(backend=saver.backend, cache_dir=cache_dir)
        try:
            assert await areg.load(WARMUP, version="1") == b"w"
        except BaseException:
            shutil.rmtree(cache_dir, ignore_errors=True)
            raise
        return areg, cache_dir

    def emit(self, results: list[Result], result: Result) -> None:
        result.name = f"{self.target.name}: {result.name}"
        result.backend = self.target.name
        emit(results, result)


async def bench_small(bench: Bench) -> list[Result]:
    n, rounds = bench.sizes.small_count, bench.sizes.small_rounds
    raw, width = bench.raw, bench.width
    payloads = [os.urandom(SMALL_BYTES) for _ in range(n)]
    names = [f"small-{i}" for i in range(n)]
    results: list[Result] = []
    savers: list[tuple[AsyncRegistry, Path]] = []
    raw_buckets: list[str] = []
    try:

        async def reg_save(round_: int) -> float:
            saver, cache_dir = await bench.registry(f"reg-small-{round_}")
            savers.append((saver, cache_dir))
            took = clock()
            saved = await saver.save(names, payloads, version="1")
            elapsed = took()
            saved.raise_first()
            return n / elapsed

        async def raw_save(round_: int) -> float:
            bucket = await bench.raw_bucket(f"raw-small-{round_}")
            raw_buckets.append(bucket)
            took = clock()
            await pool(n, width, lambda i: raw.put_small(bucket, names[i], payloads[i]))
            return n / took()

        saves, raw_saves = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            Result(
                f"batch save {n} small",
                "ops/s",
                saves,
                raw.small_save,
                raw_saves,
                note=(
                    f"{SMALL_BYTES // 1024} KiB bytes each, version='1': {raw.commit} of the "
                    f"metadata with the object inlined; {_mbs(saves)} vs raw "
                    f"{_mbs(raw_saves)} MB/s of payload"
                ),
                params={"op": "save", "bytes": SMALL_BYTES},
            ),
        )

        saver = savers[0][0]  # its bucket and raw_buckets[0] hold the same objects
        raw_bucket = raw_buckets[0]

        cpu: dict[str, list[float]] = {"cold": [], "raw": []}  # process CPU us per op

        async def reg_load_cold(round_: int) -> float:
            areg, cache_dir = await bench.cold_registry(saver)
            try:
                took = clock()
                spent = time.process_time()
                loaded = await areg.load(names, version="1")
                elapsed = took()
                cpu["cold"].append((time.process_time() - spent) / n * 1e6)
                loaded.raise_first()
                if round_ == 0:
                    assert loaded.results == payloads
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
            return n / elapsed

        async def reg_load_warm(round_: int) -> float:
            # the registry that saved them: its cache holds their metadata
            took = clock()
            loaded = await saver.load(names, version="1")
            elapsed = took()
            loaded.raise_first()
            return n / elapsed

        async def raw_load(round_: int) -> float:
            out: list[bytes] = [b""] * n

            async def get(i: int) -> None:
                out[i] = await raw.get_small(raw_bucket, names[i])

            took = clock()
            spent = time.process_time()
            await pool(n, width, get)
            elapsed = took()
            cpu["raw"].append((time.process_time() - spent) / n * 1e6)
            if round_ == 0:
                assert out == payloads
            return n / elapsed

        cold, warm_loads, raw_loads = await alternate_async(
            [reg_load_cold, reg_load_warm, raw_load], rounds
        )
    finally:
        for _, cache_dir in savers:
            shutil.rmtree(cache_dir, ignore_errors=True)
    # What bounds a cold load: this process's CPU per object (the server
    # needs the other core), beside the same figure for the raw GETs.
    bound = (
        f"CPU {median(cpu['cold']):.0f} vs raw {median(cpu['raw']):.0f} us per object "
        "in this process"
    )
    for what, samples, how in (
        ("cold", cold, f"fresh cache_dir: one GET each, metadata cached in one file; {bound}"),
        ("warm", warm_loads, "metadata cached: no request"),
    ):
        bench.emit(
            results,
            vs_raw(
                f"batch load {n} small, {what}",
                "ops/s",
                samples,
                raw.small_load,
                raw_loads,
                f"version='1', {how}; {_mbs(samples)} vs raw {_mbs(raw_loads)} MB/s of payload",
                # the cold load is the one the chart plots: it pays for the request
                {"op": "load", "bytes": SMALL_BYTES} if what == "cold" else None,
            ),
        )
    return results


def _mb(samples: Sequence[float]) -> str:
    return fmt(median(samples))


def _peaks(reg: list[float], raw: list[float]) -> str:
    return f"in-process peak RSS +{max(reg):.0f} MiB (raw +{max(raw):.0f} MiB)"


async def bench_big(bench: Bench) -> list[Result]:
    mib, rounds = bench.sizes.big_mib, bench.sizes.big_rounds
    size_mb = mib * MiB / 1e6
    raw = bench.raw
    keep = f"big-{rounds - 1}"  # the version the loads read; earlier ones are deleted
    reg_peaks: list[float] = []
    raw_peaks: list[float] = []
    results: list[Result] = []
    work = bench.config.scratch("remote-big")
    saver, saver_cache = await bench.registry("reg-big")
    reg_bucket = saver.backend.uri.split("/")[2]  # s3://bucket/bench, gs://bucket/bench
    raw_bucket = await bench.raw_bucket("raw-big")
    raw_key = "big/0"
    try:
        src = work / "big.bin"
        make_big_file(src, mib)

        async def reg_save(round_: int) -> float:
            gc.collect()
            with _peak(reg_peaks):
                took = clock(collect=False)
                await saver.save(f"big-{round_}", src, version="1")
                elapsed = took()
            await saver.clear_cache()  # its cached copy: disk space, not timed
            if f"big-{round_}" != keep:  # server memory (moto, fake-gcs keep objects in RAM)
                for folder in ("meta", "objects"):
                    await raw.delete_prefix(reg_bucket, f"bench/{folder}/big-{round_}/")
            return size_mb / elapsed

        async def raw_save(round_: int) -> float:
            key = f"big/{round_}"
            gc.collect()
            with _peak(raw_peaks):
                took = clock(collect=False)
                await raw.upload_big(raw_bucket, key, src)
                elapsed = took()
            if key != raw_key:
                await raw.delete_prefix(raw_bucket, key)
            return size_mb / elapsed

        saves, raw_saves = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            vs_raw(
                f"save {mib} MiB file",
                "MB/s",
                saves,
                raw.big_save,
                raw_saves,
                "pathlib.Path, version='1': copied into the cache with sha256 in one pass, "
                f"{raw.big_save_how}; {_peaks(reg_peaks, raw_peaks)}",
                {"op": "save", "bytes": mib * MiB},
            ),
        )
        reg_peaks.clear()
        raw_peaks.clear()

        def loader(verify: Verify, peaks: list[float]) -> Callable[[int], Awaitable[float]]:
            async def reg_load(round_: int) -> float:
                areg, cache_dir = await bench.cold_registry(saver)
                try:
                    gc.collect()
                    with _peak(peaks):
                        took = clock(collect=False)
                        out = await areg.load(keep, version="1", verify=verify)
                        elapsed = took()
                    assert isinstance(out, Path) and out.stat().st_size == mib * MiB
                    shutil.rmtree(out.parent, ignore_errors=True)
                finally:
                    shutil.rmtree(cache_dir, ignore_errors=True)
                return size_mb / elapsed

            return reg_load

        async def copy_out(round_: int) -> float:
            """What a load adds after the download: the Path materializer's copy."""
            from registry.materializers.base import kernel_copy

            dest = work / f"copy-out-{round_}.bin"
            took = clock()
            await asyncio.to_thread(kernel_copy, src, dest)
            elapsed = took()
            dest.unlink()
            return size_mb / elapsed

        async def raw_load(round_: int) -> float:
            dest = work / f"raw-load-{round_}.bin"
            gc.collect()
            with _peak(raw_peaks):
                took = clock(collect=False)
                total = await raw.download_big(raw_bucket, raw_key, dest)
                elapsed = took()
            assert total == mib * MiB
            dest.unlink()
            return size_mb / elapsed

        loads, raw_loads, trusted, copies = await alternate_async(
            [loader("integrity", reg_peaks), raw_load, loader("none", []), copy_out], rounds
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(saver_cache, ignore_errors=True)
    bench.emit(
        results,
        vs_raw(
            f"load {mib} MiB file, cold",
            "MB/s",
            loads,
            raw.big_load,
            raw_loads,
            f"fresh cache_dir; download hashed as it lands, copy out; {_peaks(reg_peaks, raw_peaks)}; "
            f"what bounds it: verify='none' (no hash) {_mb(trusted)} MB/s "
            f"({median(trusted) / median(raw_loads):.0%} of raw), the copy out alone "
            f"{_mb(copies)} MB/s ({size_mb / median(copies):.2f} s)",
            {"op": "load", "bytes": mib * MiB},
        ),
    )
    return results


async def bench_target(config: Config, target: Target) -> list[Result]:
    # Nothing is deleted at the end: the buckets die with the server.
    shape = target.backend(prefix="bench")  # the settings the raw side copies
    bench: Bench | None = None
    try:
        async with open_raw(target, shape) as raw:
            sizes = Sizes.of(config, raw)
            print(
                f"  {sizes.small_count} x {SMALL_BYTES // 1024} KiB objects x "
                f"{sizes.small_rounds} rounds, {sizes.big_mib} MiB file x {sizes.big_rounds}",
                flush=True,
            )
            bench = Bench(config=config, sizes=sizes, target=target, raw=raw)
            return await bench_small(bench) + await bench_big(bench)
    finally:
        for backend in [shape, *(bench.backends if bench else [])]:
            await backend.aclose()


def bench_remote(config: Config, group: str) -> list[Result]:
    """Each server of ``group`` (a key of GROUPS): started, measured and stopped in turn."""
    from tests.servers import ServerStartError
    from tests.targets import started

    results: list[Result] = []
    for kind in GROUPS[group]:
        began = time.perf_counter()
        try:
            with started(kind) as target:  # stopped by PID on exit, on error too
                print(
                    f"  {target.name} at {target.server.endpoint} (pid {target.server.pid}, "
                    f"up in {time.perf_counter() - began:.1f} s)",
                    flush=True,
                )
                results.extend(asyncio.run(bench_target(config, target)))
        except ServerStartError as exc:
            print(f"  {kind}: could not start, skipped: {exc}", flush=True)
            continue
        print(f"  ({kind}: {time.perf_counter() - began:.0f} s)", flush=True)
    return results


def bench_s3(config: Config) -> list[Result]:
    return bench_remote(config, "s3")


def bench_gcs(config: Config) -> list[Result]:
    return bench_remote(config, "gcs")


__all__ = ["GROUPS", "bench_gcs", "bench_remote", "bench_s3"]
