"""Worker processes that share one cache folder (tests/test_cache_processes.py).

Each gets its registry as pickled configuration and waits for a common start
time, so they really hit the cache at once."""

from __future__ import annotations

import hashlib
import pickle
import time
from typing import Any

from registry import Registry


def _wait(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def load_counting_downloads(config: bytes, name: str, start_at: float) -> tuple[str, int]:
    """Load ``name``; return the sha256 of what came back and how many times
    this process downloaded the entry."""
    from registry.core import fetching

    downloads = 0
    original = fetching.download

    async def counted(*args: Any) -> None:
        nonlocal downloads
        downloads += 1
        await original(*args)

    fetching.download = counted  # type: ignore[assignment]
    reg: Registry = pickle.loads(config)
    reg.list_objects()  # connect before the start line: the race is the load itself
    _wait(start_at)
    data = reg.load(name)
    reg.close()
    return hashlib.sha256(data).hexdigest(), downloads


def save_many(config: bytes, tag: str, count: int, size: int, start_at: float) -> int:
    """Save ``count`` objects of ``size`` bytes in batches; return the failures."""
    reg: Registry = pickle.loads(config)
    reg.list_objects()
    _wait(start_at)
    failures = 0
    for batch in range(0, count, 4):
        names = [f"{tag}-{i}" for i in range(batch, min(batch + 4, count))]
        result = reg.save(names, [bytes([i % 256]) * size for i in range(len(names))])
        failures += len(result.failed)
    reg.close()
    return failures
