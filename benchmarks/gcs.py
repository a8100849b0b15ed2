"""Benchmarks of the registry on fake-gcs-server, each against raw gcloud-aio-storage.

Group ``gcs`` (``--only gcs``). fake-gcs-server (memory backend) is started on
127.0.0.1 with the helpers of ``tests/gcs_servers.py`` and stopped by PID (its
data dies with it) when the group ends, on error too. Every timed round writes
into a fresh bucket of its own (see :class:`Bench` for why). The
registry (``AsyncRegistry`` on a ``GCSBackend`` with its default concurrency,
32) and raw gcloud-aio-storage calls on a ``Storage`` client set up like the
backend's (its own aiohttp session, connection pool = that concurrency,
anonymous as against any emulator) do the same transfers at the same
concurrency, in alternating rounds on one event loop:

- batch save of N small objects: 1 KiB ``bytes`` each, explicit version "1";
  small objects are inlined in the metadata, so a save is one conditional
  multipart upload. Raw: ``Storage.upload(..., parameters={"ifGenerationMatch":
  "0"}, metadata=..., force_resumable_upload=False)`` of N keys by 32 workers
  (the same conditional multipart request).
- batch load of them with version "1" on a cold cache (a fresh ``cache_dir``
  every round: one GET each) and on a warm one (the registry that saved them,
  whose cache holds their metadata: no request). Raw: ``Storage.download`` of
  N keys by 32 workers.
- one large file given as a ``pathlib.Path``: save, then load on a cold cache
  (the registry downloads, checks sha256 and returns a copy in a new temporary
  folder). Raw save: gcloud-aio's own resumable upload of the open file
  (``force_resumable_upload=True``: one session, the file streamed in one
  PUT); the registry sends the same session in 8 MiB chunks, one after the
  other. fake-gcs-server does work proportional to what it already holds on
  every chunk (measured at 256 MiB: 70 ms for the first chunk, ~600 ms for the
  last ones, 2 s to finalize), so on it the chunked upload falls further
  behind the single stream the larger the file; real GCS has no such cost,
  only one round trip per chunk. Raw load:
  concurrent ranged GETs through ``Storage.download_stream`` at the backend's
  range size and ranges in flight (8 MiB x 8), written with pwrite — the
  registry's own transfer shape (gcloud-aio's ``download_to_filename`` would
  hold the whole object in memory).

Small-object figures are ops/s (the notes give the MB/s of payload), large
ones MB/s. Peak RSS of the large transfers is measured in this process, so it
includes memory the allocator kept from earlier rounds; it shows that memory
stays bounded, not a figure to compare. Rounds are capped to keep the group
well under three minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

from benchmarks.common import Config, MiB, PeakRSS, Result, fmt, print_line
from benchmarks.local import make_big_file
from benchmarks.s3 import alternate_async, pool

if TYPE_CHECKING:
    from registry import AsyncRegistry
    from registry.backends.gcs import GCSBackend
    from tests.gcs_servers import GCSServer

SMALL_BYTES = 1024
TARGET = 0.7  # of raw, for batch small-object loads and the large file
WARMUP = "warmup"
CONTENT_TYPE = "application/octet-stream"
READ_CHUNK = 1 * MiB


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
            small_rounds=min(config.repeats, 3),
            big_mib=256,
            big_rounds=min(config.big_repeats, 2),
        )


# -- raw gcloud-aio-storage ----------------------------------------------------------------


class _NoToken:
    """What gcloud-aio gets as its token against an emulator (it never asks)."""

    async def get(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def raw_storage(server: GCSServer, concurrency: int) -> Any:
    """A gcloud-aio ``Storage`` on its own aiohttp session, pool sized as the backend's."""
    import aiohttp
    from gcloud.aio.storage import Storage

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=60.0),
    )
    try:
        yield Storage(session=session, token=_NoToken(), api_root=server.endpoint)  # type: ignore[arg-type]
    finally:
        await session.close()


async def delete_prefix(storage: Any, bucket: str, prefix: str) -> None:
    """Remove every object under ``prefix`` (outside any timing)."""
    names: list[str] = []
    params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
    while True:
        page = await storage.list_objects(bucket, params=dict(params))
        names += [str(item["name"]) for item in page.get("items") or ()]
        token = page.get("nextPageToken")
        if not token:
            break
        params["pageToken"] = str(token)
    await pool(len(names), 32, lambda i: storage.delete(bucket, names[i]))


async def raw_ranged_download(
    storage: Any, bucket: str, name: str, dest: Path, span: int, width: int
) -> int:
    """What ``get_file`` does, by hand: a first ranged GET gives the size, then
    ``width`` ranged GETs in flight, each streamed and written with pwritev in a
    thread about 1 MiB at a time."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        async def fetch(start: int, length: int) -> tuple[str, int]:
            headers = {"Range": f"bytes={start}-{start + length - 1}"}
            stream = await storage.download_stream(bucket, name, headers=headers, timeout=600)
            async with stream as response:
                offset = start
                buffer: list[bytes] = []
                buffered = 0
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    buffer.append(chunk)
                    buffered += len(chunk)
                    if buffered >= READ_CHUNK:
                        await asyncio.to_thread(_pwrite_buffers, fd, buffer, offset)
                        offset += buffered
                        buffer, buffered = [], 0
                if buffered:
                    await asyncio.to_thread(_pwrite_buffers, fd, buffer, offset)
                    offset += buffered
                content_range = str(response.headers.get("Content-Range", ""))
            return content_range, offset - start

        content_range, received = await fetch(0, span)
        total = int(content_range.rsplit("/", 1)[1])
        ranges = [(at, min(span, total - at)) for at in range(received, total, span)]
        await pool(len(ranges), width, lambda i: fetch(*ranges[i]))
    finally:
        os.close(fd)
    return total


def _pwrite_buffers(fd: int, buffers: list[bytes], offset: int) -> None:
    """Write ``buffers`` back to back at ``offset`` (one pwritev when it all fits)."""
    views = [memoryview(b) for b in buffers if b]
    while views:
        written = os.pwritev(fd, views, offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _mbs(ops: Sequence[float]) -> str:
    """Median ops/s of small objects as MB/s of payload."""
    return fmt(median(ops) * SMALL_BYTES / 1e6)


@contextlib.contextmanager
def _peak(into: list[float]) -> Iterator[None]:
    with PeakRSS() as rss:
        yield
    into.append(rss.above_mib)


# -- the benchmarks --------------------------------------------------------------------------


@dataclass
class Bench:
    """Everything the benchmarks share.

    fake-gcs-server's memory backend scans a bucket's objects on each request
    (measured: conditional PUTs fall from ~940/s in an empty bucket to ~190/s
    at 2,000 objects, GETs from ~2,300/s to ~670/s), so every timed round of
    either side writes into a bucket of its own, and both sides read buckets
    of the same size; otherwise whichever side ran later would pay for the
    objects the other one stored.
    """

    config: Config
    sizes: Sizes
    server: GCSServer
    storage: Any  # raw gcloud-aio Storage, shared by every raw round
    backends: list[GCSBackend]  # every backend made, closed at the end

    @property
    def width(self) -> int:
        from registry.backends.base import DEFAULT_CONCURRENCY

        return DEFAULT_CONCURRENCY

    async def bucket(self, label: str) -> str:
        from tests.gcs_servers import create_bucket

        name = f"{label}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(create_bucket, self.server, name)
        return name

    async def raw_bucket(self, label: str) -> str:
        """A fresh bucket holding ``width`` warm-up objects, as the registry's do;
        writing them also keeps the raw connection pool warm."""
        bucket = await self.bucket(label)
        await pool(
            self.width, self.width, lambda i: raw_put(self.storage, bucket, f"warmup/{i}", b"w")
        )
        return bucket

    async def registry(self, label: str) -> tuple[AsyncRegistry, Path]:
        """A registry on a fresh bucket (a new backend: its own client and
        connection pool), opened and warmed up outside any timing, and its
        cache folder (the caller removes it)."""
        from registry import AsyncRegistry

        backend = self.server.backend(await self.bucket(label), prefix="bench")
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

    def label(self, what: str) -> str:
        return f"{self.server.name}: {what}"

    def emit(self, results: list[Result], result: Result) -> None:
        results.append(result)
        print_line(result)


async def raw_put(storage: Any, bucket: str, key: str, data: bytes) -> None:
    """The registry's commit request: a conditional multipart upload."""
    await storage.upload(
        bucket,
        key,
        data,
        content_type=CONTENT_TYPE,
        parameters={"ifGenerationMatch": "0"},
        metadata={"Content-Type": CONTENT_TYPE},
        force_resumable_upload=False,
    )


async def cold_registry(saver: AsyncRegistry, config: Config) -> tuple[AsyncRegistry, Path]:
    """Another registry on ``saver``'s backend (same client) with a fresh cache,
    opened outside any timing: the settings read is one GET, and the warm-up
    object is not a timed one."""
    from registry import AsyncRegistry

    cache_dir = config.scratch("gcs-cold-cache")
    areg = AsyncRegistry(backend=saver.backend, cache_dir=cache_dir)
    try:
        assert await areg.load(WARMUP, version="1") == b"w"
    except BaseException:
        shutil.rmtree(cache_dir, ignore_errors=True)
        raise
    return areg, cache_dir


async def bench_small(bench: Bench) -> list[Result]:
    n, rounds = bench.sizes.small_count, bench.sizes.small_rounds
    storage, width = bench.storage, bench.width
    payloads = [os.urandom(SMALL_BYTES) for _ in range(n)]
    names = [f"small-{i}" for i in range(n)]
    results: list[Result] = []
    savers: list[tuple[AsyncRegistry, Path]] = []
    raw_buckets: list[str] = []
    try:

        async def reg_save(round_: int) -> float:
            saver, cache_dir = await bench.registry(f"reg-small-{round_}")
            savers.append((saver, cache_dir))
            gc.collect()
            start = time.perf_counter()
            saved = await saver.save(names, payloads, version="1")
            elapsed = time.perf_counter() - start
            saved.raise_first()
            return n / elapsed

        async def raw_save(round_: int) -> float:
            bucket = await bench.raw_bucket(f"raw-small-{round_}")
            raw_buckets.append(bucket)
            gc.collect()
            start = time.perf_counter()
            await pool(n, width, lambda i: raw_put(storage, bucket, names[i], payloads[i]))
            return n / (time.perf_counter() - start)

        saves, raw = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            Result(
                bench.label(f"batch save {n} small"),
                "ops/s",
                saves,
                f"multipart ifGenerationMatch=0 x{width}",
                raw,
                note=(
                    f"{SMALL_BYTES // 1024} KiB bytes each, version='1': one conditional "
                    f"multipart upload of the metadata with the object inlined; {_mbs(saves)} "
                    f"vs raw {_mbs(raw)} MB/s of payload"
                ),
            ),
        )

        saver = savers[0][0]  # its bucket and raw_buckets[0] hold the same objects
        raw_bucket = raw_buckets[0]

        async def reg_load_cold(round_: int) -> float:
            areg, cache_dir = await cold_registry(saver, bench.config)
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
                out[i] = await storage.download(raw_bucket, names[i])

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
        for _, cache_dir in savers:
            shutil.rmtree(cache_dir, ignore_errors=True)
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
                f"download x{width}",
                raw,
                f"≥ {TARGET:.0%} of raw",
                median(samples) >= TARGET * median(raw),
                note=f"version='1', {how}; {_mbs(samples)} vs raw {_mbs(raw)} MB/s of payload",
            ),
        )
    return results


async def bench_big(bench: Bench) -> list[Result]:
    from registry.backends.gcs import MAX_RANGES_IN_FLIGHT

    mib, rounds = bench.sizes.big_mib, bench.sizes.big_rounds
    size_mb = mib * MiB / 1e6
    storage = bench.storage
    keep = f"big-{rounds - 1}"  # the version the loads read; earlier ones are deleted
    reg_peaks: list[float] = []
    raw_peaks: list[float] = []
    results: list[Result] = []
    work = bench.config.scratch("gcs-big")
    saver, saver_cache = await bench.registry("reg-big")
    backend: GCSBackend = saver.backend  # type: ignore[assignment]
    span = backend.chunk_size
    width = max(1, min(MAX_RANGES_IN_FLIGHT, backend.concurrency))
    raw_bucket = await bench.raw_bucket("raw-big")
    raw_key = "big/0"
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
            if f"big-{round_}" != keep:  # server memory (fake-gcs keeps objects in RAM)
                for folder in ("meta", "objects"):
                    await delete_prefix(storage, backend.bucket, f"bench/{folder}/big-{round_}/")
            return size_mb / elapsed

        async def raw_save(round_: int) -> float:
            key = f"big/{round_}"
            gc.collect()
            with _peak(raw_peaks), open(src, "rb") as handle:
                start = time.perf_counter()
                await storage.upload(
                    raw_bucket,
                    key,
                    handle,
                    content_type=CONTENT_TYPE,
                    force_resumable_upload=True,
                    timeout=600,
                )
                elapsed = time.perf_counter() - start
            if key != raw_key:
                await storage.delete(raw_bucket, key)
            return size_mb / elapsed

        saves, raw = await alternate_async([reg_save, raw_save], rounds)
        bench.emit(
            results,
            Result(
                bench.label(f"save {mib} MiB file"),
                "MB/s",
                saves,
                "resumable upload, 1 stream",
                raw,
                f"≥ {TARGET:.0%} of raw",
                median(saves) >= TARGET * median(raw),
                note=(
                    f"pathlib.Path, version='1': copied into the cache with sha256, then a "
                    f"resumable upload in {span // MiB} MiB chunks (fake-gcs slows down with "
                    "every chunk); "
                    f"in-process peak RSS +{max(reg_peaks):.0f} MiB "
                    f"(raw +{max(raw_peaks):.0f} MiB)"
                ),
            ),
        )
        reg_peaks.clear()
        raw_peaks.clear()

        async def reg_load(round_: int) -> float:
            areg, cache_dir = await cold_registry(saver, bench.config)
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
                total = await raw_ranged_download(storage, raw_bucket, raw_key, dest, span, width)
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


async def bench_server(config: Config, server: GCSServer) -> list[Result]:
    from registry.backends.base import DEFAULT_CONCURRENCY

    # Nothing is deleted at the end: the buckets die with the server.
    backends: list[GCSBackend] = []
    try:
        async with raw_storage(server, DEFAULT_CONCURRENCY) as storage:
            bench = Bench(
                config=config,
                sizes=Sizes.of(config),
                server=server,
                storage=storage,
                backends=backends,
            )
            return await bench_small(bench) + await bench_big(bench)
    finally:
        for backend in backends:
            await backend.aclose()


def bench_gcs(config: Config) -> list[Result]:
    """fake-gcs-server (memory backend): started, measured and stopped."""
    from tests.gcs_servers import ServerStartError, fake_gcs_server, prepare_bucket

    sizes = Sizes.of(config)
    print(
        f"  {sizes.small_count} x {SMALL_BYTES // 1024} KiB objects x {sizes.small_rounds} "
        f"rounds, {sizes.big_mib} MiB file x {sizes.big_rounds}",
        flush=True,
    )
    started = time.perf_counter()
    try:
        with fake_gcs_server("memory") as server:  # stopped by PID on exit, on error too
            prepare_bucket(server)  # self-check: the server enforces preconditions
            print(
                f"  {server.name} at {server.endpoint} (pid {server.pid}, up in "
                f"{time.perf_counter() - started:.1f} s)",
                flush=True,
            )
            return asyncio.run(bench_server(config, server))
    except ServerStartError as exc:
        print(f"  fake-gcs-server could not start, skipped: {exc}", flush=True)
        return []
