"""Local filesystem backend: lock-free atomic writes with link/rename.

Every write goes to a hidden temp file in the destination folder, is fsynced,
then published in one atomic step: ``os.link`` for create-if-absent (fails if
the key exists) or ``os.replace`` for overwrite, followed by an fsync of the
folder. Compare-and-swap (``if_match``) is the one place a lock is used: a
short-lived ``O_CREAT|O_EXCL`` lock file around read-compare-replace, broken
when older than ``STALE_LOCK_SECONDS`` (its holder died). Those file
primitives live in ``local_files``, folder listings and memos in
``local_folders``; this module maps keys to files.

Blocking file work runs as whole functions in worker threads, one hop per call.
With DEBUG on for ``registry.backends.local``, each read, write and delete is
logged with its key, bytes and milliseconds (nothing is timed otherwise).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.lowlevel
import anyio.to_thread

from registry._runner import on_own_loop
from registry.backends import local_folders
from registry.backends.base import DEFAULT_CONCURRENCY, Backend, FileInfo, PutMode
from registry.backends.local_files import (
    LOCK_SUFFIX,
    STALE_LOCK_SECONDS,
    TEMP_MARKER,
    FileLock,
    file_info,
    fsync_dir,
    is_temp_name,
    stat_etag,
    temp_name,
)
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed

__all__ = [
    "LOCK_SUFFIX",
    "STALE_LOCK_SECONDS",
    "TEMP_MARKER",
    "LocalBackend",
    "fsync_dir",
    "is_temp_name",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")
_COPY_CHUNK = 8 * 1024 * 1024
INLINE_READ_BYTES = 256 * 1024
HEAD_SLACK = 8
# inline reads between yields to the event loop: at most ~0.5 ms without one
YIELD_EVERY = 16


def _debug_start() -> float | None:
    """A start time when DEBUG is on for this module, else None (costs one check)."""
    return time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else None


def _debug_done(operation: str, key: str, nbytes: int, started: float) -> None:
    elapsed = (time.perf_counter() - started) * 1000
    logger.debug("%s %s: %d bytes, %.1f ms", operation, key, nbytes, elapsed)


async def _debug_timed(operation: str, key: str, work: Awaitable[FileInfo]) -> FileInfo:
    """Await a call that moves a file's bytes (a thread hop: the check is free)."""
    started = _debug_start()
    info = await work
    if started is not None:
        _debug_done(operation, key, info.size, started)
    return info


def _check_key(key: str) -> None:
    """Refuse a key with an empty, "." or ".." part (or none at all): the
    parts are what lies between the slashes of "/key/", so three substring
    searches tell (a split and a loop over the parts cost more on every read)."""
    framed = f"/{key}/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        raise ValueError(f"invalid backend key {key!r}")


class LocalBackend(Backend):
    """Stores each key as a file below ``root``.

    ``fsync=False`` skips the fsyncs (bulk imports that can be redone);
    by default a write is durable when it returns.

    ``inline_reads=True`` reads small files (metadata) and lists single
    folders directly on the event loop: on a local disk that takes ~10 us,
    while a hop to a worker thread costs ~10x more. Turn it off for network
    filesystems, whose reads can stall. Writes (fsync) always use threads.

    It holds no client bound to an event loop (``loop_free``), so the sync
    ``Registry`` runs its calls on a loop owned by the calling thread.
    """

    #: No state bound to one event loop: any thread's loop may drive it.
    loop_free = True
    _root_str = ""  # str(root), set in __init__ (absent from older pickles)
    _inline_since_yield = 0  # inline reads since this backend last yielded

    async def _yield_now_and_then(self) -> None:
        """Let other tasks run (and cancellation in) at least every
        ``YIELD_EVERY`` inline reads: a read on a local disk takes ~10 us, a
        trip round the event loop ~5 us, so yielding on every read made a
        small load ~15% slower for no task's benefit (Tokio's co-operative
        budget, in small). On the calling thread's own loop nothing else
        runs: no yield at all."""
        if on_own_loop():
            return
        self._inline_since_yield += 1
        if self._inline_since_yield >= YIELD_EVERY:
            self._inline_since_yield = 0
            await anyio.lowlevel.checkpoint()

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        fsync: bool = True,
        inline_reads: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        super().__init__(concurrency=concurrency)
        text = os.fspath(uri)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if not text:
            raise ValueError("LocalBackend needs a folder path, got an empty string")
        self.root = Path(text).expanduser().absolute()
        self._root_str = str(self.root)
        self.uri = f"file://{self.root}"
        self.fsync = fsync
        self.inline_reads = inline_reads
        # folder -> (mtime_ns, keys): skips re-scanning settled version folders
        self._children_cache: local_folders.ChildrenMemo = {}

    @property
    def head_slack(self) -> int:  # type: ignore[override]
        """With inline reads a probe is a stat (~2 us) while a head write
        creates, locks and renames files (~0.5 ms): let heads lag by up to
        8 auto-increment numbers, which readers and savers probe past."""
        return HEAD_SLACK if self.inline_reads else 1

    def loop_state(self) -> dict[str, Any]:
        """Runtime state of the running loop, kept per loop: threads that
        each drive this backend from a loop of their own (the sync facade)
        do not keep replacing each other's limiter."""
        import asyncio

        loop = asyncio.get_running_loop()
        states: weakref.WeakKeyDictionary[Any, dict[str, Any]] | None = self._runtime.get("loops")
        if states is None:
            states = self._runtime["loops"] = weakref.WeakKeyDictionary()
        state = states.get(loop)
        if state is None:
            state = states[loop] = {"loop": weakref.ref(loop)}
        return state

    # -- helpers (run in worker threads) -------------------------------------

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root.joinpath(*key.split("/"))

    def _fspath(self, key: str) -> str:
        """``str(self._path(key))`` without building a Path (hot reads: a
        small load spent more time joining Paths than reading the file)."""
        _check_key(key)
        root = self._root_str or str(self.root)
        return f"{root}/{key}" if os.sep == "/" else os.path.join(root, *key.split("/"))

    def _ensure_parent(self, path: Path, created: list[Path]) -> None:
        """Create the missing folders above ``path`` top-down, adding each
        one this call created to ``created`` (the caller fsyncs their parents)."""
        parent = path.parent
        if parent.is_dir():
            return
        missing: list[Path] = []
        while not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            # FileNotFoundError (an ancestor pruned meanwhile) propagates:
            # _open_temp retries the whole walk.
            created.append(folder)

    def _open_temp(self, path: Path, created: list[Path]) -> tuple[Path, int]:
        tmp = path.with_name(temp_name(path.name))
        for _attempt in range(100):
            try:
                self._ensure_parent(path, created)
                return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                # A concurrent delete removed the folder once it looked empty;
                # recreate it. With our temp file inside, it can't vanish again.
                continue
        raise BackendError(f"folder {path.parent} keeps disappearing while writing {path.name}")

    def _write_temp(
        self, path: Path, data: bytes | None, src: Path | None, durable: bool = True
    ) -> tuple[Path, list[Path], os.stat_result]:
        """The content in a temp file beside ``path``, fsynced unless not
        ``durable``, the folders created for it (``_publish`` syncs them
        into their parents) and its stat (a link or rename keeps its inode,
        size and mtime: the etag of the published key)."""
        created: list[Path] = []
        tmp, fd = self._open_temp(path, created)
        try:
            if data is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            elif src is not None:
                with open(src, "rb") as source:
                    while chunk := source.read(_COPY_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
            if self.fsync and durable:
                os.fsync(fd)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp, created, st

    def _publish(
        self,
        key: str,
        path: Path,
        tmp: Path,
        mode: PutMode,
        created: list[Path],
        st: os.stat_result,
        durable: bool = True,
    ) -> FileInfo:
        try:
            if mode == "create":
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise PreconditionFailed(f"{key} already exists") from None
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync and durable:
            # The folders made for this key (a new name's) are synced into
            # their parents here, after the link, top-down, and the key's own
            # folder last: on a journaling filesystem (ext4, xfs) the first of
            # these commits the mkdir and the link together and the last then
            # has nothing left to wait for, so a new name costs two journal
            # commits, not three. The put returns only once all are durable.
            for folder in dict.fromkeys(created):
                fsync_dir(folder.parent)
            fsync_dir(path.parent)
        return file_info(key, st)

    def _put_sync(
        self,
        key: str,
        data: bytes | None,
        src: Path | None,
        mode: PutMode,
        if_match: str | None,
        durable: bool = True,
    ) -> FileInfo:
        path = self._path(key)
        tmp, created, st = self._write_temp(path, data, src, durable)
        if if_match is None:
            return self._publish(key, path, tmp, mode, created, st, durable)
        try:
            # A hint write never waits: someone else is updating it.
            with FileLock(path.with_name(f".{path.name}{LOCK_SUFFIX}"), wait=durable):
                try:
                    current = stat_etag(path.stat())
                except FileNotFoundError:
                    current = None
                if current != if_match:
                    raise PreconditionFailed(f"{key} changed (expected etag {if_match})")
                return self._publish(key, path, tmp, "overwrite", created, st, durable)
        finally:
            tmp.unlink(missing_ok=True)

    def _get_sync(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def _get_small_sync(self, key: str) -> bytes | None:
        """The content if the file is at most INLINE_READ_BYTES, else None."""
        try:
            fd = os.open(self._fspath(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        try:
            size = os.fstat(fd).st_size
            if size > INLINE_READ_BYTES:
                return None
            data = os.read(fd, size)
            if len(data) < size or not size:
                # short read, or an empty (or special) file: read to the end
                chunks = [data]
                while chunk := os.read(fd, max(size, 4096)):
                    chunks.append(chunk)
                data = b"".join(chunks)
            return data
        except IsADirectoryError:
            raise ObjectNotFound(key) from None
        finally:
            os.close(fd)

    def _get_tagged_sync(self, key: str) -> tuple[bytes, str]:
        # Files are replaced by rename, so the open file is one version and
        # its fstat is that version's etag.
        try:
            with open(self._path(key), "rb") as f:
                return f.read(), stat_etag(os.fstat(f.fileno()))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def _get_file_sync(self, key: str, dest: Path) -> FileInfo:
        path = self._path(key)
        try:
            shutil.copyfile(path, dest)
            return file_info(key, path.stat())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if not path.is_file():
                raise ObjectNotFound(key) from None
            raise

    def _head_sync(self, key: str) -> FileInfo | None:
        try:
            st = os.stat(self._fspath(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return file_info(key, st)

    def _delete_sync(self, keys: Sequence[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
                if path.is_dir() or not path.exists():
                    continue  # a folder is not a key; a missing key is not an error
                raise
            parents.add(path.parent)
        # Remove folders left empty, deepest first, never the root itself.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            folder = parent
            while folder != self.root and self.root in folder.parents:
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    def _list_sync(self, prefix: str, delimiter: str | None) -> list[FileInfo | str]:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"LocalBackend lists folder prefixes ending in '/', got {prefix!r}")
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        return local_folders.listing(self.root, base, prefix, delimiter)

    def _flush_sync(self, keys: Sequence[str]) -> None:
        if not self.fsync:
            return
        folders: set[Path] = set()
        for key in keys:
            path = self._path(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            folder = path.parent
            while folder not in folders and folder != self.root.parent:
                folders.add(folder)
                folder = folder.parent
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)

    async def _blocking(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread; inline in a call on the calling
        thread's own loop (``on_own_loop``: the sync facade's single calls),
        whose thread waits for it anyway: a save then costs no thread wake-up
        at all, as a plain durable write."""
        if on_own_loop():
            return func(*args)
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)

    # -- the contract ----------------------------------------------------------

    async def get(self, key: str) -> bytes:
        started = _debug_start()
        data: bytes | None = None
        if self.inline_reads:
            await self._yield_now_and_then()
            data = self._get_small_sync(key)
        if data is None:
            data = await anyio.to_thread.run_sync(self._get_sync, key, limiter=self.limiter)
        if started is not None:
            _debug_done("get", key, len(data), started)
        return data

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        work = anyio.to_thread.run_sync(self._get_file_sync, key, dest, limiter=self.limiter)
        return await _debug_timed("get_file", key, work)

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        work = self._blocking(self._put_sync, key, data, None, mode, if_match)
        return await _debug_timed("put", key, work)

    async def put_hint(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        # Not fsynced, but still a file created and renamed: on a busy disk
        # that blocks for a millisecond, which a batch's other saves would
        # wait out on the event loop. So a worker thread, like put (inline on
        # the caller's own loop, where nothing else waits).
        work = self._blocking(
            partial(self._put_sync, key, data, None, mode, if_match, durable=False)
        )
        return await _debug_timed("put", key, work)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        await self._yield_now_and_then()
        return self._get_tagged_sync(key)

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        work = self._blocking(self._put_sync, key, None, src, mode, None)
        return await _debug_timed("put_file", key, work)

    async def head(self, key: str) -> FileInfo | None:
        if self.inline_reads:
            return self._head_sync(key)
        return await anyio.to_thread.run_sync(self._head_sync, key, limiter=self.limiter)

    async def delete(self, keys: Sequence[str]) -> None:
        started = _debug_start()
        await self._blocking(self._delete_sync, list(keys))
        if started is not None:
            elapsed = (time.perf_counter() - started) * 1000
            logger.debug("delete %s: %.1f ms", ", ".join(keys), elapsed)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        if self.inline_reads and delimiter is not None:  # one folder: cheap
            entries = self._list_sync(prefix, delimiter)
        else:
            entries = await anyio.to_thread.run_sync(
                self._list_sync, prefix, delimiter, limiter=self.limiter
            )
        for entry in entries:
            yield entry

    def _list_children_sync(self, prefix: str) -> Sequence[str]:
        base = self._fspath(prefix.rstrip("/"))
        return local_folders.children(self._children_cache, base, prefix)

    def folder_stamp(self, prefix: str) -> tuple[int, int, int] | None:
        """The folder's stamp once settled (``local_folders.stamp``); None
        without ``inline_reads`` (a stat could stall)."""
        if not self.inline_reads:
            return None
        return local_folders.stamp(self._fspath(prefix.rstrip("/")))

    async def list_children(self, prefix: str) -> Sequence[str]:
        if self.inline_reads:
            return self._list_children_sync(prefix)
        return await anyio.to_thread.run_sync(
            self._list_children_sync, prefix, limiter=self.limiter
        )

    def local_path(self, key: str) -> Path:
        return self._path(key)

    async def flush(self, keys: Sequence[str]) -> None:
        await self._blocking(self._flush_sync, list(keys))

    async def remove_stale_temp(self, *, older_than: float, dry_run: bool = False) -> int:
        return await anyio.to_thread.run_sync(
            local_folders.remove_stale_temp, self.root, older_than, dry_run, limiter=self.limiter
        )
