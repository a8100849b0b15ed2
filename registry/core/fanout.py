"""Bounded concurrent map with per-item results (DESIGN §10).

A pool of ``min(limit, n)`` workers pulls indices from a shared counter, so
a batch of thousands costs ``limit`` tasks, not one task per item parked on a
semaphore. Each worker records an ``Exception`` at its item's index and goes
on; cancellation (and other BaseExceptions) still propagate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from registry.core.types import BatchResult

T = TypeVar("T")
R = TypeVar("R")


Progress = Callable[[int, int], None]


async def fanout(
    func: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    *,
    limit: int,
    progress: Progress | None = None,
) -> BatchResult[R]:
    """Run ``func`` on every item, at most ``limit`` at once.

    ``progress(done, total)`` is called after each item, failed ones included
    (on the event loop: keep it quick, e.g. a progress bar's update).
    """
    results: list[R | None] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    next_index = 0
    done = 0

    async def worker() -> None:
        nonlocal next_index, done
        while next_index < len(items):
            index = next_index
            next_index += 1
            try:
                results[index] = await func(items[index])
            except Exception as exc:
                errors[index] = exc
            if progress is not None:
                done += 1
                progress(done, len(items))

    workers = min(max(limit, 1), len(items))
    if workers == 1:
        await worker()  # no task group for a single item: the common case
    elif workers:
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
    return BatchResult(results, errors)
