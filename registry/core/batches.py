"""Arguments and results of batch calls (lists of names)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from registry.core.types import BatchResult
from registry.exceptions import RegistryVersionConflict

T = TypeVar("T")


def per_item(value: Any, n: int, what: str, unit: str = "names") -> list[Any]:
    """Broadcast a scalar batch argument, or check a list has one per item."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            one = unit.removesuffix("s")
            raise ValueError(f"{what} has {len(value)} entries for {n} {unit}; give one per {one}")
        return list(value)
    return [value] * n


def skip_existing(saved: BatchResult[str]) -> BatchResult[str]:
    """Under on_conflict="skip" a batch item whose version exists is skipped,
    not failed: its result is that version and its index is in ``skipped``."""
    for index, error in list(saved.errors.items()):
        if isinstance(error, RegistryVersionConflict) and error.version is not None:
            del saved.errors[index]
            saved.results[index] = error.version
            saved.skipped.append(index)
    saved.skipped.sort()
    return saved


async def as_completed(
    func: Callable[..., Awaitable[T]], items: Iterable[tuple[Any, ...]], width: int
) -> AsyncGenerator[T, None]:
    """Yield ``func(*item)`` results as they finish (not in input order), at
    most ``width`` in flight, so memory stays bounded however many items come.
    The first failure is raised after cancelling the calls in flight."""
    import asyncio  # deferred: costly import; streaming loads are its one direct use

    pending: set[asyncio.Task[T]] = set()
    queue = iter(items)
    try:
        while True:
            while len(pending) < width:
                item = next(queue, None)
                if item is None:
                    break
                pending.add(asyncio.ensure_future(func(*item)))
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
