"""Arguments and results of batch calls (lists of names)."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from registry.core.types import BatchResult
from registry.exceptions import RegistryVersionConflict

if TYPE_CHECKING:
    import asyncio

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


class InFlight(Generic[T]):
    """The results of ``func(*item)`` as they finish (not in input order), at
    most ``width`` calls in flight, so memory stays bounded however many items
    come. A plain async iterator, not an async generator: the generator that
    consumes it closes it, and the loop's shutdown must not close it twice."""

    def __init__(
        self, func: Callable[..., Awaitable[T]], items: Iterable[tuple[Any, ...]], width: int
    ) -> None:
        import asyncio  # deferred: costly import; streaming loads are its one direct use

        self._asyncio = asyncio
        self._func = func
        self._queue = iter(items)
        self._width = width
        self._pending: set[asyncio.Future[T]] = set()
        self._ready: deque[asyncio.Future[T]] = deque()

    def __aiter__(self) -> InFlight[T]:
        return self

    async def __anext__(self) -> T:
        asyncio = self._asyncio
        while not self._ready:
            while len(self._pending) < self._width:
                item = next(self._queue, None)
                if item is None:
                    break
                self._pending.add(asyncio.ensure_future(self._func(*item)))
            if not self._pending:
                raise StopAsyncIteration
            done, self._pending = await asyncio.wait(
                self._pending, return_when=asyncio.FIRST_COMPLETED
            )
            self._ready.extend(done)
        return self._ready.popleft().result()

    async def aclose(self) -> None:
        """Cancel the calls in flight and wait until they have stopped."""
        pending, self._pending = self._pending, set()
        for task in pending:
            task.cancel()
        if pending:
            await self._asyncio.wait(pending)
