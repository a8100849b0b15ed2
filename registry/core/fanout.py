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


async def fanout(
    func: Callable[[T], Awaitable[R]], items: Sequence[T], *, limit: int
) -> BatchResult[R]:
    results: list[R | None] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(items):
            index = next_index
            next_index += 1
            try:
                results[index] = await func(items[index])
            except Exception as exc:
                errors[index] = exc

    workers = min(max(limit, 1), len(items))
    if workers == 1:
        await worker()  # no task group for a single item: the common case
    elif workers:
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
    return BatchResult(results, errors)
