"""The backend contract: move bytes and files by key, plus one conditional put.

Keys are '/'-separated strings relative to the backend root. ``mode="create"``
is first-write-wins and ``if_match`` is compare-and-swap on the token that
``head`` / ``put`` return as ``etag``; a lost condition raises
``PreconditionFailed``. Everything MVCC, versions and caching need is built on
these few calls in ``registry.core``.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec

from registry.exceptions import ObjectNotFound

PutMode = Literal["overwrite", "create"]
DEFAULT_CONCURRENCY = 32


class FileInfo(msgspec.Struct, frozen=True):
    """What a backend knows about one stored key."""

    key: str
    size: int
    etag: str
    mtime: float


class Backend(ABC):
    """Abstract byte store. ``__init__`` only stores configuration.

    Runtime state (clients, limiters) is created lazily on the loop that uses
    it and kept in ``_runtime``, which is dropped when the backend is pickled.
    """

    uri: str
    #: Remote backends get a local cache in front of them (DESIGN §7).
    is_remote: bool = False
    #: How many auto-increment numbers a name's head may fall behind before
    #: a saver or reader writes it again (core/heads.py). 1: after every
    #: save. More where probing a number costs far less than writing a file.
    head_slack: int = 1

    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self._runtime: dict[str, Any] = {}

    def loop_state(self) -> dict[str, Any]:
        """Runtime state of the running event loop (clients, limiter).

        A backend used from a second loop (a new ``asyncio.run``, another
        thread) gets fresh state there instead of objects bound to a loop
        that may be gone.
        """
        import asyncio  # already imported whenever a loop is running

        loop = asyncio.get_running_loop()
        owner = self._runtime.get("loop")
        if owner is None or owner() is not loop:
            self._runtime = {"loop": weakref.ref(loop)}
        return self._runtime

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Bounds requests in flight on this backend (created on first use)."""
        state = self.loop_state()
        limiter = state.get("limiter")
        if limiter is None:
            limiter = state["limiter"] = anyio.CapacityLimiter(self.concurrency)
        return limiter

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runtime"] = {}
        if "_children_cache" in state:
            state["_children_cache"] = {}
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r})"

    @property
    def identity(self) -> str:
        """What makes two backends the same store (keys the local cache).

        The uri by default; backends whose uri does not name the server
        (an S3 bucket on a custom endpoint) add it.
        """
        return self.uri

    # -- the contract --------------------------------------------------------

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """Whole content of ``key``; ``ObjectNotFound`` if missing."""

    @abstractmethod
    async def get_file(self, key: str, dest: Path) -> FileInfo:
        """Stream ``key`` into the file ``dest`` (bounded memory)."""

    @abstractmethod
    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        """Store ``data``; atomic: readers see the old or the new content."""

    @abstractmethod
    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        """Stream the file ``src`` to ``key`` (bounded memory)."""

    @abstractmethod
    async def head(self, key: str) -> FileInfo | None:
        """Size and etag of ``key``, or None if missing."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Delete keys; missing keys are not errors."""

    @abstractmethod
    def list(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[FileInfo | str]:
        """Keys under ``prefix`` (a folder-like prefix ending in '/', or '').

        Without a delimiter: every key below, as FileInfo. With ``"/"``: the
        direct children only; sub-folders come as their prefix string
        (ending in '/').
        """

    async def list_children(self, prefix: str) -> Sequence[str]:
        """Keys of the files directly under a folder prefix, without sizes.

        Backends that can list names faster than full FileInfo override it.
        """
        return [e.key async for e in self.list(prefix, delimiter="/") if not isinstance(e, str)]

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        """Content of ``key`` and the etag of that content, for a later
        ``if_match``; ``ObjectNotFound`` if missing.

        The etag is read first: if the key changes in between, the etag is
        the older one and a compare-and-swap on it fails, never succeeds on
        content it did not see. Backends that get both in one call override.
        """
        info = await self.head(key)
        if info is None:
            raise ObjectNotFound(key)
        return await self.get(key), info.etag

    async def put_hint(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        """``put`` for data the registry can rebuild, so it may be lost in a
        power cut: local disk skips the fsyncs; elsewhere it is ``put``."""
        return await self.put(key, data, mode=mode, if_match=if_match)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""

    # -- optional capabilities ----------------------------------------------

    def local_path(self, key: str) -> Path | None:
        """A filesystem path where ``key`` lives, if the backend is a local disk.

        The core then writes artifacts in place and reads them without copying.
        """
        return None

    def folder_stamp(self, prefix: str) -> Hashable | None:
        """A value that changes whenever a file directly under the folder
        ``prefix`` is created, replaced or removed, read without waiting
        (no request); None when the backend cannot tell cheaply, or not yet.
        Lets a reader reuse what it worked out from the folder's files."""
        return None

    async def flush(self, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Make keys written in place through ``local_path`` durable."""

    async def remove_stale_temp(self, *, older_than: float, dry_run: bool = False) -> int:
        """Remove temp files a crashed writer left behind; returns how many."""
        return 0
