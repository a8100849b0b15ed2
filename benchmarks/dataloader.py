"""A training loop's reads: a DataLoader with 4 workers over small objects on
SeaweedFS, against raw aioboto3 GETs at the same concurrency.

10,000 small tensors (64 float32, inlined in their metadata: one GET each)
are saved once, outside any timing. The registry side iterates a
``torch.utils.data.DataLoader(RegistryIterableDataset(...), num_workers=4,
batch_size=64)`` whose workers each stream their quarter of the names with
``prefetch`` loads in flight (allow_pickle=False, no cache: every load is a
request). The raw side forks 4 processes, each with its own aioboto3 client,
GETting its quarter of the same metadata keys ``prefetch`` at a time; they
only count bytes (no decoding, no batches sent back). Both include starting
their worker processes and clients. The note adds a stricter ceiling: the
same GETs from one event loop at 4 x prefetch in flight, on a client opened
before timing. Figures are objects per second.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from statistics import median
from typing import Any

from benchmarks.common import Config, Result, alternate, emit, fmt, pool

WORKERS = 4
PREFETCH = 16
TARGET = 0.7


def _names(count: int) -> list[str]:
    return [f"sample-{i:05d}" for i in range(count)]


def _raw_client(endpoint: str, access: str, secret: str, connections: int) -> Any:
    """A bare aioboto3 S3 client (an async context manager) holding ``connections``
    at once, path-style and without the checksums a plain GET does not need."""
    import aioboto3  # type: ignore[import-untyped, unused-ignore]
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]

    config = AioConfig(
        max_pool_connections=connections,
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return aioboto3.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=config,
    )


async def _raw_share(endpoint: str, keys: list[str], bucket: str, access: str, secret: str) -> int:
    total = 0
    async with _raw_client(endpoint, access, secret, PREFETCH) as client:

        async def get(index: int) -> None:
            nonlocal total
            response = await client.get_object(Bucket=bucket, Key=keys[index])
            total += len(await response["Body"].read())

        await pool(len(keys), PREFETCH, get)
    return total


def _raw_worker(args: tuple[str, list[str], str, str, str]) -> int:
    return asyncio.run(_raw_share(*args))


async def _raw_one_loop(
    endpoint: str, keys: list[str], bucket: str, access: str, secret: str, rounds: int
) -> list[float]:
    """Every GET from one event loop, WORKERS x PREFETCH in flight, the
    client opened before the clock starts: the plain ceiling of the link."""
    width = WORKERS * PREFETCH
    figures = []
    async with _raw_client(endpoint, access, secret, width) as client:

        async def get(index: int) -> None:
            response = await client.get_object(Bucket=bucket, Key=keys[index])
            await response["Body"].read()

        await pool(width, width, get)  # warm the connection pool
        for _ in range(rounds):
            start = time.perf_counter()
            await pool(len(keys), width, get)
            figures.append(len(keys) / (time.perf_counter() - start))
    return figures


def bench_dataloader(config: Config) -> list[Result]:
    try:
        import torch
        import torch.utils.data as data
    except ImportError:
        print("  torch is not installed: skipped")
        return []
    from registry import Registry
    from registry.core.layout import meta_key
    from registry.core.metadata import UNVERSIONED
    from registry.integrations.torch import RegistryIterableDataset
    from tests.servers import S3Server, ServerStartError
    from tests.targets import started

    count = 2_000 if config.quick else 10_000
    rounds = 2 if config.quick else 3
    results: list[Result] = []
    try:
        with started("seaweedfs") as target:
            server = target.server
            assert isinstance(server, S3Server)
            prefix = "loader"
            began = time.perf_counter()
            writer = Registry(backend=target.backend(prefix=prefix), use_cache=False)
            names = _names(count)
            for start in range(0, count, 1000):
                chunk = names[start : start + 1000]
                tensors = [torch.full((64,), float(start + i)) for i in range(len(chunk))]
                writer.save(chunk, tensors).raise_first()
            writer.close()
            print(f"  {count} objects saved in {time.perf_counter() - began:.1f} s", flush=True)
            keys = [f"{prefix}/{meta_key(name, UNVERSIONED.key)}" for name in names]
            reader = Registry(
                backend=target.backend(prefix=prefix), use_cache=False, allow_pickle=False
            )

            def ours(round_: int) -> float:
                dataset = RegistryIterableDataset(reader, names, prefetch=PREFETCH)
                loader = data.DataLoader(dataset, batch_size=64, num_workers=WORKERS)
                start = time.perf_counter()
                seen = sum(len(batch) for batch in loader)
                elapsed = time.perf_counter() - start
                assert seen == count, seen
                return count / elapsed

            def raw(round_: int) -> float:
                shares = [
                    (
                        server.endpoint,
                        keys[w::WORKERS],
                        target.bucket,
                        server.access_key,
                        server.secret_key,
                    )
                    for w in range(WORKERS)
                ]
                start = time.perf_counter()
                with multiprocessing.get_context("fork").Pool(WORKERS) as workers:
                    got = workers.map(_raw_worker, shares)
                elapsed = time.perf_counter() - start
                assert all(got), got
                return count / elapsed

            mine, theirs = alternate([ours, raw], rounds)
            reader.close()
            one_loop = asyncio.run(
                _raw_one_loop(
                    server.endpoint,
                    keys,
                    target.bucket,
                    server.access_key,
                    server.secret_key,
                    rounds,
                )
            )
            ceiling = median(one_loop)
            emit(
                results,
                Result(
                    f"DataLoader x{WORKERS} over {count:,} objects",
                    "ops/s",
                    mine,
                    f"get_object x{PREFETCH} in {WORKERS} processes",
                    theirs,
                    f"≥ {TARGET:.0%} of raw",
                    median(mine) >= TARGET * median(theirs),
                    note=(
                        f"SeaweedFS; {WORKERS} workers x prefetch {PREFETCH}; 64 float32 "
                        "tensors inlined in metadata, allow_pickle=False, no cache; both "
                        "sides start their processes and clients in the timing. One event "
                        f"loop of x{WORKERS * PREFETCH} GETs on a warm client: "
                        f"{fmt(ceiling)} ops/s ({median(mine) / ceiling * 100:.0f}%)"
                    ),
                ),
            )
    except ServerStartError as exc:
        print(f"  seaweedfs could not start, skipped: {exc}")
    return results
