"""Benchmarks of the registry on S3-compatible servers, each against raw aioboto3.

Group ``s3`` (``--only s3``). moto and then SeaweedFS are started on
127.0.0.1, one at a time, with the helpers of ``tests/s3_servers.py``, each
in a fresh bucket, and stopped (data removed) when its part ends, on error
too. On each, the registry (``AsyncRegistry`` on an ``S3Backend`` with its
default concurrency, 32) and raw aioboto3 calls on a client set up like the
backend's (connection pool = that concurrency, checksums only when required,
path-style addressing) do the same transfers at the same concurrency, in
alternating rounds on one event loop:

- batch save of N small objects: 1 KiB ``bytes`` each, explicit version "1";
  small objects are inlined in the metadata, so a save is one conditional
  PUT. Raw: ``put_object(IfNoneMatch="*")`` of N keys by 32 workers.
- batch load of them with version "1" on a cold cache (a fresh ``cache_dir``
  every round: one GET each) and on a warm one (the registry that saved them,
  whose cache holds their metadata: no request). Raw: ``get_object`` of N keys
  by 32 workers.
- one large file given as a ``pathlib.Path``: save, then load on a cold cache
  (the registry downloads, checks sha256 and returns a copy in a new temporary
  folder). Raw: a hand-written multipart upload and concurrent ranged GETs at
  the backend's part size and parts in flight (8 MiB x 8); that is as fast as
  aioboto3's managed ``upload_file`` / ``download_file`` at the same settings
  or faster, so a fair ceiling.

Small-object figures are ops/s (the notes give the MB/s of payload), large
ones MB/s. Peak RSS of the large transfers is measured in this process, so it
includes memory the allocator kept from earlier rounds; it is there to show
that memory stays bounded (part size x parts in flight), not as a figure.
Rounds are capped (``--repeats`` above 2 is ignored here) to keep the group
near three minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

from benchmarks.common import Config, MiB, PeakRSS, Result, fmt, print_line
from benchmarks.local import make_big_file

if TYPE_CHECKING:
    from registry import AsyncRegistry
    from registry.backends.s3 import S3Backend
    from tests.s3_servers import S3Server

SMALL_BYTES = 1024
TARGET = 0.7  # of raw, for batch small-object loads and the large file
WARMUP = "warmup"


@dataclass(frozen=True)
class Sizes:
    small_count: int
    small_rounds: int
    big_mib: int
    big_rounds: int

    @classmethod
    def of(cls, config: Config) -> Sizes:
        if config.quick:
            return cls(
                small_count=200, small_rounds=min(config.repeats, 2), big_mib=64, big_rounds=1
            )
        return cls(
            small_count=1000,
            small_rounds=min(config.repeats, 2),
            big_mib=256,
            big_rounds=min(config.big_repeats, 2),
        )


# -- helpers -----------------------------------------------------------------------------


async def alternate_async(
    runs: Sequence[Callable[[int], Awaitable[float]]], repeats: int
) -> tuple[list[float], ...]:
    """``benchmarks.common.alternate`` for coroutines: rotate who goes first."""
    out: tuple[list[float], ...] = tuple([] for _ in runs)
    order = list(range(len(runs)))
    for round_ in range(repeats):
        shift = round_ % len(runs)
        for index in order[shift:] + order[:shift]:
            out[index].append(await runs[index](round_))
    return out


async def pool(count: int, width: int, job: Callable[[int], Awaitable[object]]) -> None:
    """``job(0..count-1)`` by ``width`` workers pulling the next index, the shape
    of the registry's own batch fan-out; the first failure propagates."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await job(index)

    await asyncio.gather(*(worker() for _ in range(min(width, count))))


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def raw_client(server: S3Server, concurrency: int) -> Any:
    """An aioboto3 client set up as the backend sets up its own (an async
    context manager)."""
    import aioboto3  # type: ignore[import-untyped, unused-ignore]
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]

    config = AioConfig(
        max_pool_connections=concurrency,
        connect_timeout=5.0,
        read_timeout=60.0,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return aioboto3.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=config,
    )


async def delete_prefix(client: Any, bucket: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (outside any timing)."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            params["ContinuationToken"] = token
        page = await client.list_objects_v2(**params)
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents") or ()]
        if keys:
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


async def raw_multipart_upload(
    client: Any, bucket: str, key: str, src: Path, part_size: int, width: int
) -> None:
    """What ``put_file`` does, by hand: ``width`` parts in flight, each read
    with pread in a thread and sent with ``upload_part``."""
    size = src.stat().st_size
    count = -(-size // part_size)
    created = await client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = created["UploadId"]
    parts: list[dict[str, Any]] = [{} for _ in range(count)]
    fd = os.open(src, os.O_RDONLY)
    try:

        async def one(index: int) -> None:
            offset = index * part_size
            length = min(part_size, size - offset)
            body = await asyncio.to_thread(os.pread, fd, length, offset)
            assert len(body) == length
            response = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=index + 1, Body=body
            )
            parts[index] = {"PartNumber": index + 1, "ETag": response["ETag"]}

        await pool(count, width, one)
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    finally:
        os.close(fd)


async def raw_ranged_download(
    client: Any, bucket: str, key: str, dest: Path, part_size: int, width: int
) -> int:
    """What ``get_file`` does, by hand: a first ranged GET gives the size, then
    ``width`` ranged GETs in flight, each written with pwrite in a thread."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        async def fetch(start: int, length: int) -> tuple[dict[str, Any], int]:
            response = await client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            data: bytes = await response["Body"].read()
            await asyncio.to_thread(_pwrite_all, fd, data, start)
            return response, len(data)

        first, received = await fetch(0, part_size)
        total = int(str(first["ContentRange"]).rsplit("/", 1)[1])
        ranges = [(at, min(part_size, total - at)) for at in range(received, total, part_size)]
        await pool(len(ranges), width, lambda i: fetch(*ranges[i]))
    finally:
        os.close(fd)
    return total


def _mbs(ops: Sequence[float]) -> str:
    """Median ops/s of small objects as MB/s of payload."""
    return fmt(median(ops) * SMALL_BYTES / 1e6)


@contextlib.contextmanager
def _peak(into: list[float]) -> Iterator[None]:
    with PeakRSS() as rss:
        yield
    into.append(rss.above_mib)


# -- one server ---------------------------------------------------------------------------


@dataclass
class Bench:
    """Everything one server's benchmarks share."""

    config: Config
    sizes: Sizes
    server: S3Server
    bucket: str
    backend: S3Backend
    client: Any
    reg_prefix: str  # the registry's prefix in the bucket, with a trailing '/'
    raw_prefix: str

    @property
    def width(self) -> int:
        return self.backend.concurrency

    def registry(self, cache_label: str) -> tuple[AsyncRegistry, Path]:
        """A registry on the shared backend (one client, one connection pool)
        and its fresh cache folder (the caller removes it)."""
        from registry import AsyncRegistry

        cache_dir = self.config.scratch(cache_label)
        areg = AsyncRegistry(backend=self.backend, version_objects=True, cache_dir=cache_dir)
        return areg, cache_dir

    def label(self, what: str) -> str:
        return f"{self.server.name}: {what}"

    def emit(self, results: list[Result], result: Result) -> None:
        results.append(result)
        print_line(result)


async def _opened(bench: Bench, cache_label: str) -> tuple[AsyncRegistry, Path]:
    """A registry with a fresh (cold) cache, opened outside any timing: the
    settings read is one GET, and the warm-up object is not a timed one."""
    areg, cache_dir = bench.registry(cache_label)
    try:
        assert await areg.load(WARMUP, version="1") == b"w"
    except BaseException:
        shutil.rmtree(cache_dir, ignore_errors=True)
        raise
    return areg, cache_dir


async def bench_small(bench: Bench) -> list[Result]:
    n, rounds = bench.sizes.small_count, bench.sizes.small_rounds
    bucket, client, width = bench.bucket, bench.client, bench.width
    payloads = [os.urandom(SMALL_BYTES) for _ in range(n)]
    results: list[Result] = []
    saver, saver_cache = bench.registry("s3-save-cache")
    try:
        # Warm-up, not timed: both connection pools, the registry settings.
        await pool(
            width,
            width,
            lambda i: client.put_object(
                Bucket=bucket, Key=f"{bench.raw_prefix}warmup/{i}", Body=b"w"
            ),
        )
        warm = await saver.save(
            [f"{WARMUP}-{i}" for i in range(width)], [b"w"] * width, version="1"
        )
        warm.raise_first()
        await saver.save(WARMUP, b"w", version="1")

        async def reg_save(round_: int) -> float:
            names = [f"small-{round_}-{i}" for i in range(n)]
            gc.collect()
            start = time.perf_counter()
            saved = await saver.save(names, payloads, version="1")
            elapsed = time.perf_counter() - start
            saved.raise_first()
            return n / elapsed

        async def raw_save(round_: int) -> float:
            keys = [f"{bench.raw_prefix}small/{round_}/{i}" for i in range(n)]

            async def put(i: int) -> None:
                await client.put_object(
                    Bucket=bucket, Key=keys[i], Body=payloads[i], IfNoneMatch="*"
                )

            gc.collect()
            start = time.perf_counter()
            await pool(n, width, put)
            return n / (time.perf_counter() - start)

        saves, raw = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            Result(
                bench.label(f"batch save {n} small"),
                "ops/s",
                saves,
                f"put_object If-None-Match x{width}",
                raw,
                note=(
                    f"{SMALL_BYTES // 1024} KiB bytes each, version='1': one conditional PUT "
                    f"of the metadata with the object inlined; {_mbs(saves)} vs raw "
                    f"{_mbs(raw)} MB/s of payload"
                ),
            ),
        )

        names = [f"small-0-{i}" for i in range(n)]
        keys = [f"{bench.raw_prefix}small/0/{i}" for i in range(n)]

        async def reg_load_cold(round_: int) -> float:
            areg, cache_dir = await _opened(bench, "s3-cold-cache")
            try:
                gc.collect()
                start = time.perf_counter()
                loaded = await areg.load(names, version="1")
                elapsed = time.perf_counter() - start
                loaded.raise_first()
                if round_ == 0:
                    assert loaded.results == payloads
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
            return n / elapsed

        async def reg_load_warm(round_: int) -> float:
            # the registry that saved them: its cache holds their metadata
            gc.collect()
            start = time.perf_counter()
            loaded = await saver.load(names, version="1")
            elapsed = time.perf_counter() - start
            loaded.raise_first()
            return n / elapsed

        async def raw_load(round_: int) -> float:
            out: list[bytes] = [b""] * n

            async def get(i: int) -> None:
                response = await client.get_object(Bucket=bucket, Key=keys[i])
                out[i] = await response["Body"].read()

            gc.collect()
            start = time.perf_counter()
            await pool(n, width, get)
            elapsed = time.perf_counter() - start
            if round_ == 0:
                assert out == payloads
            return n / elapsed

        cold, warm_loads, raw = await alternate_async(
            [reg_load_cold, reg_load_warm, raw_load], rounds
        )
    finally:
        shutil.rmtree(saver_cache, ignore_errors=True)
    for what, samples, how in (
        ("cold", cold, "fresh cache_dir: one GET each"),
        ("warm", warm_loads, "metadata cached: no request"),
    ):
        bench.emit(
            results,
            Result(
                bench.label(f"batch load {n} small, {what}"),
                "ops/s",
                samples,
                f"get_object x{width}",
                raw,
                f"≥ {TARGET:.0%} of raw",
                median(samples) >= TARGET * median(raw),
                note=f"version='1', {how}; {_mbs(samples)} vs raw {_mbs(raw)} MB/s of payload",
            ),
        )
    return results


async def bench_big(bench: Bench) -> list[Result]:
    from registry.backends.s3 import DEFAULT_PART_SIZE, DOWNLOAD_RANGE_SIZE, MAX_PARTS_IN_FLIGHT

    mib, rounds = bench.sizes.big_mib, bench.sizes.big_rounds
    size_mb = mib * MiB / 1e6
    bucket, client = bench.bucket, bench.client
    part = bench.backend.part_size or DEFAULT_PART_SIZE
    span = bench.backend.part_size or DOWNLOAD_RANGE_SIZE
    width = max(1, min(MAX_PARTS_IN_FLIGHT, bench.backend.concurrency))
    keep = f"big-{rounds - 1}"  # the version the loads read; earlier ones are deleted
    raw_key = f"{bench.raw_prefix}big/0"
    reg_peaks: list[float] = []
    raw_peaks: list[float] = []
    results: list[Result] = []
    work = bench.config.scratch("s3-big")
    saver, saver_cache = bench.registry("s3-big-save-cache")
    try:
        src = work / "big.bin"
        make_big_file(src, mib)

        async def reg_save(round_: int) -> float:
            gc.collect()
            with _peak(reg_peaks):
                start = time.perf_counter()
                await saver.save(f"big-{round_}", src, version="1")
                elapsed = time.perf_counter() - start
            await saver.clear_cache()  # its cached copy: disk space, not timed
            if f"big-{round_}" != keep:  # server memory (moto keeps objects in RAM)
                for folder in ("meta", "objects"):
                    await delete_prefix(client, bucket, f"{bench.reg_prefix}{folder}/big-{round_}/")
            return size_mb / elapsed

        async def raw_save(round_: int) -> float:
            key = f"{bench.raw_prefix}big/{round_}"
            gc.collect()
            with _peak(raw_peaks):
                start = time.perf_counter()
                await raw_multipart_upload(client, bucket, key, src, part, width)
                elapsed = time.perf_counter() - start
            if key != raw_key:
                await client.delete_object(Bucket=bucket, Key=key)
            return size_mb / elapsed

        saves, raw = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            Result(
                bench.label(f"save {mib} MiB file"),
                "MB/s",
                saves,
                f"multipart {part // MiB} MiB x{width}",
                raw,
                f"≥ {TARGET:.0%} of raw",
                median(saves) >= TARGET * median(raw),
                note=(
                    f"pathlib.Path, version='1'; in-process peak RSS +{max(reg_peaks):.0f} MiB "
                    f"(raw +{max(raw_peaks):.0f} MiB)"
                ),
            ),
        )
        reg_peaks.clear()
        raw_peaks.clear()

        async def reg_load(round_: int) -> float:
            areg, cache_dir = await _opened(bench, "s3-big-load-cache")
            try:
                gc.collect()
                with _peak(reg_peaks):
                    start = time.perf_counter()
                    out = await areg.load(keep, version="1")
                    elapsed = time.perf_counter() - start
                assert isinstance(out, Path) and out.stat().st_size == mib * MiB
                shutil.rmtree(out.parent, ignore_errors=True)
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
            return size_mb / elapsed

        async def raw_load(round_: int) -> float:
            dest = work / f"raw-load-{round_}.bin"
            gc.collect()
            with _peak(raw_peaks):
                start = time.perf_counter()
                total = await raw_ranged_download(client, bucket, raw_key, dest, span, width)
                elapsed = time.perf_counter() - start
            assert total == mib * MiB
            dest.unlink()
            return size_mb / elapsed

        loads, raw = await alternate_async([reg_load, raw_load], rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(saver_cache, ignore_errors=True)
    bench.emit(
        results,
        Result(
            bench.label(f"load {mib} MiB file, cold"),
            "MB/s",
            loads,
            f"ranged GET {span // MiB} MiB x{width}",
            raw,
            f"≥ {TARGET:.0%} of raw",
            median(loads) >= TARGET * median(raw),
            note=(
                "fresh cache_dir; download, sha256 check, copy out; in-process peak RSS "
                f"+{max(reg_peaks):.0f} MiB (raw +{max(raw_peaks):.0f} MiB)"
            ),
        ),
    )
    return results


async def bench_server(config: Config, server: S3Server, bucket: str) -> list[Result]:
    # Nothing is deleted at the end: the bucket dies with the server.
    tag = uuid.uuid4().hex[:8]
    backend = server.backend(bucket, prefix=f"bench-{tag}")
    try:
        async with raw_client(server, backend.concurrency) as client:
            bench = Bench(
                config=config,
                sizes=Sizes.of(config),
                server=server,
                bucket=bucket,
                backend=backend,
                client=client,
                reg_prefix=f"bench-{tag}/",
                raw_prefix=f"raw-{tag}/",
            )
            return await bench_small(bench) + await bench_big(bench)
    finally:
        await backend.aclose()


def bench_s3(config: Config) -> list[Result]:
    """moto, then SeaweedFS: each started, measured and stopped in turn."""
    from tests.s3_servers import ServerStartError, moto_server, prepare_bucket, seaweedfs_server

    sizes = Sizes.of(config)
    print(
        f"  {sizes.small_count} x {SMALL_BYTES // 1024} KiB objects x {sizes.small_rounds} "
        f"rounds, {sizes.big_mib} MiB file x {sizes.big_rounds}",
        flush=True,
    )
    results: list[Result] = []
    for factory in (moto_server, seaweedfs_server):
        started = time.perf_counter()
        try:
            with factory() as server:
                bucket = prepare_bucket(server)
                print(
                    f"  {server.name} at {server.endpoint} (pid {server.pid}, up in "
                    f"{time.perf_counter() - started:.1f} s)",
                    flush=True,
                )
                results.extend(asyncio.run(bench_server(config, server, bucket)))
        except ServerStartError as exc:
            print(f"  {factory.__name__}: could not start, skipped: {exc}", flush=True)
            continue
        print(f"  ({factory.__name__}: {time.perf_counter() - started:.0f} s)", flush=True)
    return results
