"""Reader leases: how a process tells every other process that it is reading
a cache entry, so their eviction leaves the entry alone.

A lease is a file ``leases/<name>@<uuid>.<pid>-<token>`` whose mtime says it
is alive. Files, not ``flock``: network filesystems ignore locks, and the
lease of a crashed process simply ages out. Creating and removing a file per
load would double the cost of a small cached load, so a process keeps one
lease per entry while any of its readers holds it, lets it linger a few
seconds after the last one (a hot entry is read again and again), renews it
when it grows old, and removes what it holds when the registry is closed or
the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import uuid as uuidlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: a lease younger than this protects its entry from eviction (any process)
LEASE_SECONDS = 300.0
#: a held lease older than this is renewed on its next use
RENEW_SECONDS = 60.0
#: an unheld lease is removed this long after its last reader let go
LINGER_SECONDS = 2.0


@dataclass
class _Lease:
    path: Path
    readers: int
    touched: float  # time.time() of its file's last write
    released: float  # time.monotonic() when the last reader let go


class Leases:
    """This process's leases in one cache folder (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: dict[tuple[str, str], _Lease] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        _all.add(self)

    @contextlib.contextmanager
    def holding(self, name: str, uuid: str) -> Iterator[None]:
        self._acquire(name, uuid)
        try:
            yield
        finally:
            self._release(name, uuid)

    def _acquire(self, name: str, uuid: str) -> None:
        key = (name, uuid)
        now = time.time()
        with self._lock:
            lease = self._held.get(key)
            if lease is None:
                path = self.folder / f"{name}@{uuid}.{os.getpid()}-{uuidlib.uuid4().hex[:8]}"
                _touch(path)
                self._held[key] = _Lease(path, 1, now, 0.0)
                return
            lease.readers += 1
            if now - lease.touched > RENEW_SECONDS:
                _touch(lease.path)
                lease.touched = now

    def _release(self, name: str, uuid: str) -> None:
        now = time.monotonic()
        with self._lock:
            lease = self._held[(name, uuid)]
            lease.readers -= 1
            lease.released = now
            if now >= self._next_sweep:
                self._next_sweep = now + LINGER_SECONDS
                self._sweep(now - LINGER_SECONDS)

    def _sweep(self, released_before: float) -> None:
        for key, lease in list(self._held.items()):
            if lease.readers == 0 and lease.released <= released_before:
                del self._held[key]
                lease.path.unlink(missing_ok=True)

    def release_all(self) -> None:
        """Remove every lease no reader holds (closing the registry, exiting)."""
        with self._lock:
            self._sweep(float("inf"))

    def forget(self) -> None:
        """The folder was wiped (``clear_cache``): no lease file is left."""
        with self._lock:
            self._held.clear()

    def holds(self, name: str, uuid: str) -> bool:
        with self._lock:
            return (name, uuid) in self._held


def _touch(path: Path) -> None:
    try:
        path.touch()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


_all: weakref.WeakSet[Leases] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    for leases in list(_all):
        with contextlib.suppress(OSError):
            leases.release_all()


def _reset_after_fork() -> None:
    # A forked child holds none of its parent's leases (the files are the parent's).
    for leases in list(_all):
        leases._held = {}
        leases._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
