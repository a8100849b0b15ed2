"""Worker functions for the multi-process GCS race tests (tests/test_gcs_registry.py).

Like ``tests/race_workers.py`` (whose payload and reporting helpers they reuse),
they run in fresh interpreters (multiprocessing "spawn") and report through
small JSON files. Each worker builds its own ``GCSBackend`` from plain
configuration (endpoint, bucket, prefix: a dict of strings) and gets its own
cache folder, so processes share nothing but the bucket, as separate machines
would.
"""

from __future__ import annotations

from typing import Any

from registry import AsyncRegistry
from registry.backends.gcs import GCSBackend
from registry.exceptions import RegistryVersionConflict
from tests.race_workers import (
    BARRIER_TIMEOUT,
    check_payload,
    make_payload,
    overwrite_payload,
    run_reporting,
)

KIB = 1024
GCSConfig = dict[str, str]


def gcs_backend(config: GCSConfig, **options: Any) -> GCSBackend:
    """A GCSBackend from plain configuration (what a worker receives)."""
    return GCSBackend(
        bucket_name=config["bucket"],
        prefix=config["prefix"],
        endpoint=config["endpoint"],
        **options,
    )


def open_gcs_registry(config: GCSConfig, cache_dir: str, **settings: Any) -> AsyncRegistry:
    return AsyncRegistry(backend=gcs_backend(config), cache_dir=cache_dir, **settings)


def auto_saver(
    config: GCSConfig, cache_dir: str, proc: int, count: int, barrier: Any, out: str
) -> None:
    """``count`` auto-increment saves of "race:auto"; reports [[tag, version], ...]."""

    async def main() -> list[list[str]]:
        saved: list[list[str]] = []
        async with open_gcs_registry(config, cache_dir, version_objects=True) as reg:
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
    config: GCSConfig, cache_dir: str, proc: int, size: int, barrier: Any, out: str
) -> None:
    """Save "race:explicit" version "1.0.0"; reports "won:<version>" or "conflict"."""

    async def main() -> str:
        payload = make_payload(f"writer-{proc}", size)
        async with open_gcs_registry(config, cache_dir) as reg:
            await reg.has_object("race:explicit")
            barrier.wait(BARRIER_TIMEOUT)
            try:
                version = await reg.save("race:explicit", payload, version="1.0.0")
            except RegistryVersionConflict:
                return "conflict"
            return f"won:{version}"

    run_reporting(out, main)


def overwriter(
    config: GCSConfig, cache_dir: str, first: int, last: int, barrier: Any, out: str
) -> None:
    """Overwrite "race:mutable" with the payloads of counters first..last."""

    async def main() -> int:
        async with open_gcs_registry(config, cache_dir, mutable=True) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            for counter in range(first, last + 1):
                await reg.save("race:mutable", overwrite_payload(counter), on_conflict="overwrite")
        return last

    run_reporting(out, main)


def reader(config: GCSConfig, cache_dir: str, barrier: Any, stop: Any, out: str) -> None:
    """``load(verify="full")`` of "race:mutable" until ``stop`` is set; reports the
    counters seen and every error."""

    async def main() -> dict[str, Any]:
        counters: list[int] = []
        errors: list[str] = []
        async with open_gcs_registry(config, cache_dir) as reg:
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
