"""The one process-wide event-loop thread the sync facades run on.

Started lazily under a lock; every ``Registry`` call is submitted to it, so
clients and connection pools are created once and reused. A forked child gets
a fresh runner (``generation`` changes, facades rebuild their async object);
at exit, registered closers run on the loop before it stops.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
_SHUTDOWN_TIMEOUT = 10.0


class Runner:
    def __init__(self, generation: int = 0) -> None:
        self.generation = generation
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._stop: asyncio.Event | None = None

    def _start(self) -> asyncio.AbstractEventLoop:
        import asyncio  # deferred: it costs more to import than the rest of registry

        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                stop = asyncio.Event()

                async def serve() -> None:
                    # One long-lived root task: anyio ties its worker threads
                    # to the root task, so with run_forever() every call was
                    # its own root and started and joined a fresh thread.
                    ready.set()
                    await stop.wait()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.run_until_complete(serve())

                thread = threading.Thread(target=main, name="registry-runner", daemon=True)
                thread.start()
                ready.wait()
                self._thread, self._loop, self._stop = thread, loop, stop
            return self._loop

    def in_runner_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runner loop and wait for it in this thread."""
        if self.in_runner_thread():
            coro.close()
            raise RuntimeError(
                "a sync Registry method was called from the registry's own event-loop "
                "thread (inside a materializer or callback run by the registry); this "
                "would deadlock: use AsyncRegistry and await it there instead"
            )
        if sys.is_finalizing():
            # After the atexit shutdown a new loop thread can never start.
            coro.close()
            raise RuntimeError("the registry runner has shut down (the interpreter is exiting)")

        loop = self._start()
        done = threading.Event()
        box: dict[str, asyncio.Task[T]] = {}

        def submit() -> None:
            task = box["task"] = loop.create_task(coro)
            task.add_done_callback(lambda _: done.set())

        loop.call_soon_threadsafe(submit)
        try:
            done.wait()
        except KeyboardInterrupt:
            # Ctrl-C while waiting: cancel the operation and wait until it
            # has really stopped, then let the interrupt propagate.
            loop.call_soon_threadsafe(lambda: box["task"].cancel())
            done.wait(_SHUTDOWN_TIMEOUT)
            raise
        return box["task"].result()

    def register_closer(self, owner: Any) -> None:
        """``owner.aclose()`` is awaited on the loop at interpreter exit."""
        self._closers.add(owner)

    def shutdown(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        import asyncio

        closers: list[Callable[[], Awaitable[Any]]] = [c.aclose for c in list(self._closers)]

        async def close_all() -> None:
            await asyncio.gather(*(close() for close in closers), return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(_SHUTDOWN_TIMEOUT)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(
                _SHUTDOWN_TIMEOUT
            )
        if self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        thread.join(_SHUTDOWN_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None


_runner = Runner()


def get_runner() -> Runner:
    return _runner


def _reset_after_fork() -> None:
    # The parent's loop thread does not exist in the child: start afresh.
    global _runner
    _runner = Runner(_runner.generation + 1)


def _shutdown_at_exit() -> None:
    _runner.shutdown()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_shutdown_at_exit)
