"""The one process-wide event-loop thread the sync facades run on.

Started lazily under a lock; every ``Registry`` call is submitted to it, so
clients and connection pools are created once and reused. A forked child gets
a fresh runner (``generation`` changes, facades rebuild their async object);
at exit, registered closers run on the loop before it stops.

Backends that keep nothing bound to a loop (local disk) need no shared loop:
``run_here`` runs a call on an event loop owned by the calling thread, which
saves the two thread wake-ups of a hop to the runner thread (about 3x on a
small load). A thread's loop is closed when the thread ends, the main
thread's at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
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

    def run_here(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on an event loop owned by the calling thread.

        Only for calls that hold nothing bound to a loop between calls; the
        caller checks that no loop is running in this thread (``can_run_here``).
        Ctrl-C cancels the operation and waits until it has stopped, as ``run``.
        """
        if sys.is_finalizing():
            coro.close()
            raise RuntimeError("the registry runner has shut down (the interpreter is exiting)")
        own = _own.loop
        if own is None or own.generation != self.generation:
            own = _own.loop = _OwnLoop(self.generation)
        loop = own.loop
        token = _on_own_loop.set(True)  # the task runs in a copy of this context
        try:
            task = loop.create_task(coro)
        finally:
            _on_own_loop.reset(token)
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():  # Ctrl-C while the loop ran: stop the operation first
                import asyncio

                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.wait({task}, timeout=_SHUTDOWN_TIMEOUT))
            raise

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


class _OwnLoop:
    """An event loop owned by one thread, closed when that thread ends (its
    thread-local reference goes) or at exit, whichever comes first."""

    def __init__(self, generation: int) -> None:
        import asyncio
        import selectors

        self.generation = generation
        # poll, not epoll: its registrations live in this process, so a forked
        # child closing its copy of the loop cannot unregister the parent's.
        selector = selectors.PollSelector() if hasattr(selectors, "PollSelector") else None
        self.loop = asyncio.SelectorEventLoop(selector)
        _own_loops.add(self)

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def __del__(self) -> None:
        self.close()


class _ThreadLoop(threading.local):
    loop: _OwnLoop | None = None


_own = _ThreadLoop()
_on_own_loop: ContextVar[bool] = ContextVar("registry_on_own_loop", default=False)


def on_own_loop() -> bool:
    """Whether this code runs in a call of ``run_here``: one task on the
    calling thread's own loop, which that thread waits for. Blocking work
    may then run inline: a worker thread would only make it wait longer
    (and on a loop that lives for one call, anyio starts a thread each time)."""
    return _on_own_loop.get()


_own_loops: weakref.WeakSet[_OwnLoop] = weakref.WeakSet()


def can_run_here() -> bool:
    """Whether this thread may run a call on a loop of its own: no event loop
    is running in it (inside one, a call must cross to the runner thread)."""
    from asyncio import events  # imported by whoever made a loop; cheap otherwise

    return events._get_running_loop() is None


_runner = Runner()


def get_runner() -> Runner:
    return _runner


def _reset_after_fork() -> None:
    # The parent's loop thread does not exist in the child: start afresh. The
    # threads' own loops are made anew too (the generation moves); closing
    # the inherited ones only closes the child's copies of their sockets.
    global _runner
    _runner = Runner(_runner.generation + 1)
    for own in list(_own_loops):
        own.close()
        _own_loops.discard(own)


def _shutdown_at_exit() -> None:
    _runner.shutdown()
    for own in list(_own_loops):  # the main thread's, and those of threads still alive
        own.close()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_shutdown_at_exit)
