"""Worker functions for the multi-process S3 race tests (tests/test_s3_registry.py).

Like ``tests/race_workers.py`` (whose payload and reporting helpers they reuse),
they run in fresh interpreters (multiprocessing "spawn") and report through
small JSON files. Each worker builds its own ``S3Backend`` from plain
configuration (endpoint, keys, bucket, prefix: a dict of strings) and gets its
own cache folder, so processes share nothing but the bucket, as separate
machines would.

They start through a multiprocessing "forkserver" rather than "spawn": the
server process imports this module once and loads botocore's S3 models (what
makes the first S3 client of a fresh interpreter cost ~1.5 s of CPU), and each
worker is a fork of that clean server, never of the test process. Eight
workers on a 2-core machine then start in well under a second instead of
~10 s, so the races themselves dominate the run time.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any

from registry import AsyncRegistry
from registry.backends.s3 import S3Backend
from registry.exceptions import RegistryVersionConflict
from tests.race_workers import (
    BARRIER_TIMEOUT,
    check_payload,
    make_payload,
    overwrite_payload,
    run_reporting,
)

KIB = 1024
S3Config = dict[str, str]


def s3_backend(config: S3Config, **options: Any) -> S3Backend:
    """An S3Backend from plain configuration (what a worker receives)."""
    return S3Backend(
        config["bucket"],
        endpoint=config["endpoint"],
        access_key=config["access_key"],
        secret_key=config["secret_key"],
        prefix=config["prefix"],
        **options,
    )


def open_s3_registry(config: S3Config, cache_dir: str, **settings: Any) -> AsyncRegistry:
    return AsyncRegistry(backend=s3_backend(config), cache_dir=cache_dir, **settings)


# -- races ---------------------------------------------------------------------------


def auto_saver(
    config: S3Config, cache_dir: str, proc: int, count: int, barrier: Any, out: str
) -> None:
    """``count`` auto-increment saves of "race:auto"; reports [[tag, version], ...]."""

    async def main() -> list[list[str]]:
        saved: list[list[str]] = []
        async with open_s3_registry(config, cache_dir, version_objects=True) as reg:
            await reg.list_versions("race:auto")  # client and bucket check before the start
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                tag = f"{proc}-{i}"
                # every fifth payload gets a uuid folder (> 64 KiB), the rest are inlined
                obj: Any = make_payload(tag, 100 * KIB) if i % 5 == 0 else tag
                version = await reg.save("race:auto", obj, metadata={"tag": tag})
                saved.append([tag, version])
        return saved

    run_reporting(out, main)


def explicit_saver(
    config: S3Config, cache_dir: str, proc: int, size: int, barrier: Any, out: str
) -> None:
    """Save "race:explicit" version "1.0.0"; reports "won:<version>" or "conflict"."""

    async def main() -> str:
        payload = make_payload(f"writer-{proc}", size)
        async with open_s3_registry(config, cache_dir) as reg:
            await reg.has_object("race:explicit")
            barrier.wait(BARRIER_TIMEOUT)
            try:
                version = await reg.save("race:explicit", payload, version="1.0.0")
            except RegistryVersionConflict:
                return "conflict"
            return f"won:{version}"

    run_reporting(out, main)


def overwriter(
    config: S3Config, cache_dir: str, first: int, last: int, barrier: Any, out: str
) -> None:
    """Overwrite "race:mutable" with the payloads of counters first..last."""

    async def main() -> int:
        async with open_s3_registry(config, cache_dir, mutable=True) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            for counter in range(first, last + 1):
                await reg.save("race:mutable", overwrite_payload(counter), on_conflict="overwrite")
        return last

    run_reporting(out, main)


def reader(config: S3Config, cache_dir: str, barrier: Any, stop: Any, out: str) -> None:
    """``load(verify="full")`` of "race:mutable" until ``stop`` is set; reports the
    counters seen and every error."""

    async def main() -> dict[str, Any]:
        counters: list[int] = []
        errors: list[str] = []
        async with open_s3_registry(config, cache_dir) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            while not stop.is_set() or not counters:
                try:
                    value = await reg.load("race:mutable", verify="full")
                    counters.append(int(check_payload(value)))
                except Exception as exc:  # recorded, asserted on by the test
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        break
        return {"counters": counters, "errors": errors}

    run_reporting(out, main)


# -- process start -----------------------------------------------------------------


def worker_context() -> Any:
    """The multiprocessing context the S3 race tests start their workers with.

    "__main__" is preloaded too, so a worker does not re-import the test
    runner's main script (pytest) on its own.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


def _warm_up() -> None:
    """Import aiobotocore and load the S3 service model and endpoint rules into
    the botocore loader the S3 backend shares between sessions (one client,
    opened and closed without a request)."""
    import asyncio

    backend = S3Backend("warm-up", endpoint="http://127.0.0.1:9", access_key="-", secret_key="-")

    async def make_client() -> None:
        async with backend._new_client():
            pass

    asyncio.run(make_client())


def _in_fork_server() -> bool:
    # the fork server runs as ``python -c "from multiprocessing.forkserver import main; ..."``
    return sys.argv == ["-c"] and "multiprocessing.forkserver" in sys.modules


if _in_fork_server():
    _warm_up()
