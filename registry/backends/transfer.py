"""Helpers the remote backends share: key checks, positional file I/O,
request bodies streamed from files, concurrent jobs, and ranged downloads
into a file with bounded memory."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from registry.backends.base import FileInfo

DOWNLOAD_ATTEMPTS = 3  # restarts when the object changes mid-download
MAX_RANGES_IN_FLIGHT = 8  # per download: memory is this x the write buffer
R = TypeVar("R")


class Signal(Exception):
    """Internal control flow between a backend's request helpers; never escapes."""


class EmptyObject(Signal):
    """A ranged GET of an empty object (HTTP 416): fetch it without a range."""


class ChangedWhileReading(Signal):
    """The object changed (new ETag / generation) between two ranged GETs."""


def check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid backend key {key!r}")


def check_prefix(prefix: str, backend: str) -> None:
    if prefix == "":
        return
    if not prefix.endswith("/"):
        raise ValueError(f"{backend} lists folder prefixes ending in '/', got {prefix!r}")
    check_key(prefix[:-1])


#: Told the size of each piece of a file read for upload, as it is read: a
#: caller that wants a progress bar within one large upload (the command
#: line's put) sets it around ``put_file``. Worker threads and child tasks
#: see it, since they copy the caller's context.
upload_progress: ContextVar[Callable[[int], None] | None] = ContextVar(
    "registry_upload_progress", default=None
)


class DownloadWatch(Protocol):
    """Told what a download writes into its file, as it writes it (see
    ``download_watch``)."""

    def wrote(self, offset: int, buffers: Sequence[bytes]) -> None:
        """``buffers`` were just written back to back at ``offset`` of the file.
        Called in the worker thread that wrote them, right after the write;
        may be called from several threads at once."""

    def restarted(self) -> None:
        """The file was truncated and the download starts over (called on the
        event loop, with no write in flight)."""


#: Told what a file download writes, as it writes it: the cache sets it around
#: ``get_file`` to hash each piece while it is still in memory, in the thread
#: that wrote it, instead of reading the file again afterwards. Child tasks see
#: it, since they copy the caller's context.
download_watch: ContextVar[DownloadWatch | None] = ContextVar(
    "registry_download_watch", default=None
)


class GrowingFile:
    """A file one thread is still writing, front to back, while an upload of it
    has started (see ``upload_source``): the upload's reads wait until the
    writer has written past them. ``size`` is the size the writer expects; a
    writer that ends short makes the reads come back short (the upload then
    fails as for a file that shrank), and one that fails makes them raise."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._written = 0
        self._ended = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    def wrote(self, end: int) -> None:
        """Writer: bytes [0, end) are in the file, never to be written again."""
        with self._changed:
            self._written = end
            self._changed.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        """Writer: done (always called, with the error if it failed)."""
        with self._changed:
            self._ended, self._error = True, error
            self._changed.notify_all()

    def wait_for(self, end: int) -> None:
        """Reader (a worker thread): block until bytes [0, end) are written or
        the writer ended."""
        with self._changed:
            while self._written < end and not self._ended:
                self._changed.wait()
            if self._error is not None:
                raise OSError(f"the file being uploaded was not written: {self._error!r}")


#: Set around ``put_file`` for a file another thread is still writing: the
#: upload takes its size from here and waits for each byte before reading it.
upload_source: ContextVar[GrowingFile | None] = ContextVar("registry_upload_source", default=None)


def upload_size(src: Path) -> int:
    """The size to upload of ``src``: the writer's if it is still growing."""
    growing = upload_source.get()
    return growing.size if growing is not None else os.stat(src).st_size


def upload_ready() -> None:
    """Block until the file being uploaded is written whole (a no-op for a
    file that is not growing)."""
    growing = upload_source.get()
    if growing is not None:
        growing.wait_for(growing.size)


def read_upload(src: Path) -> bytes:
    """All of ``src`` (a small upload in one request), once its writer is done."""
    upload_ready()
    return src.read_bytes()


def pread_exact(
    fd: int, length: int, offset: int, shrank: Callable[[], Exception], *, progress: bool = True
) -> bytes:
    """``length`` bytes at ``offset`` of a file being uploaded; ``shrank()`` is
    raised if the file ends early. ``upload_progress`` is told, unless not
    ``progress`` (a read that is no upload). A file still being written
    (``upload_source``) is read only where its writer has been."""
    growing = upload_source.get()
    if growing is not None:
        growing.wait_for(offset + length)
    chunks: list[bytes] = []
    remaining = length
    while remaining:
        chunk = os.pread(fd, remaining, offset + length - remaining)
        if not chunk:
            raise shrank()
        chunks.append(chunk)
        remaining -= len(chunk)
    report = upload_progress.get() if progress else None
    if report is not None:
        report(length)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def file_body(
    fd: int, offset: int, length: int, shrank: Callable[[], Exception], piece: int = 1 << 20
) -> AsyncIterator[bytes]:
    """Bytes [offset, offset+length) of an open file, read ``piece`` by ``piece``
    in a worker thread: a request body that never holds more than one piece."""
    end = offset + length
    while offset < end:
        size = min(piece, end - offset)
        yield await anyio.to_thread.run_sync(pread_exact, fd, size, offset, shrank)
        offset += size


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def pwrite_buffers(fd: int, buffers: Sequence[bytes], offset: int) -> None:
    """Write ``buffers`` back to back at ``offset`` without joining them."""
    if hasattr(os, "pwritev"):
        views = [memoryview(b) for b in buffers if b]
        while views:
            written = os.pwritev(fd, views, offset)
            offset += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        return
    for chunk in buffers:  # pragma: no cover - platforms without pwritev
        pwrite_all(fd, chunk, offset)
        offset += len(chunk)


def _pwrite_watched(
    fd: int, buffers: Sequence[bytes], offset: int, watch: DownloadWatch | None
) -> None:
    pwrite_buffers(fd, buffers, offset)
    if watch is not None:
        watch.wrote(offset, buffers)


async def write_chunks(fd: int, chunks: AsyncIterator[bytes], offset: int, buffered: int) -> int:
    """Write a response body to ``fd`` from ``offset``, one worker-thread hop per
    ``buffered`` bytes (memory stays bounded by it); returns the bytes written.
    The ``download_watch`` of the caller's context sees each write."""
    watch = download_watch.get()
    start = offset
    buffer: list[bytes] = []
    held = 0
    async for chunk in chunks:
        buffer.append(chunk)
        held += len(chunk)
        if held >= buffered:
            await anyio.to_thread.run_sync(_pwrite_watched, fd, buffer, offset, watch)
            offset += held
            buffer, held = [], 0
    if held:
        await anyio.to_thread.run_sync(_pwrite_watched, fd, buffer, offset, watch)
        offset += held
    return offset - start


async def stream_chunks(content: Any, size: int) -> AsyncIterator[bytes]:
    """The body of an aiohttp response (its ``StreamReader``) as the chunks the
    socket delivered, without joining them into ``size``-byte blocks (a copy
    of every byte, as ``iter_chunked`` makes); ``size`` still sets how much
    aiohttp buffers before it stops reading the socket."""
    set_size = getattr(content, "set_read_chunk_size", None)
    if set_size is not None:
        set_size(size)
    while True:
        chunk, http_chunk_end = await content.readchunk()
        if chunk:
            yield chunk
        elif not http_chunk_end:  # (b"", True) only ends a chunk of a chunked body
            return


def total_from_content_range(content_range: str | None, received: int) -> int:
    """Object size from a ``Content-Range: bytes a-b/total`` header."""
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    return received


async def run_all(jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run ``jobs`` concurrently; the first failure cancels the others and is
    raised as itself (not wrapped in an ExceptionGroup, so callers can catch
    ``PreconditionFailed`` and friends)."""
    failure: Exception | None = None

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        nonlocal failure
        try:
            await job()
        except Exception as exc:
            if failure is None:
                failure = exc
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)
    if failure is not None:
        raise failure


async def ranged_download(
    dest: Path,
    key: str,
    span: int,
    concurrency: int,
    get_range: Callable[[int, int, int | None, str | None], Awaitable[tuple[R, int]]],
    identify: Callable[[R, int], Awaitable[tuple[str | None, FileInfo]]],
    error: Callable[[str], Exception],
) -> FileInfo:
    """Download ``key`` into the file ``dest`` with bounded memory: a first range
    of ``span`` bytes (without a range if the object is empty), then the rest in
    ``span``-sized ranges, a few at a time (at most ``concurrency``), all of the
    version the first range saw. An object replaced mid-way restarts the download (truncated); a
    failed download leaves no partial file.

    ``get_range(fd, start, length, pin)`` writes bytes [start, start+length)
    (everything when ``length`` is None) at their offset in ``fd`` and returns
    its response and the bytes written; it raises ``EmptyObject`` for a range
    of an empty object and ``ChangedWhileReading`` when the object is no longer
    the version ``pin``. ``identify(first, received)`` gives the version to pin
    (None: do not pin) and the object's ``FileInfo``, whose size is the total.
    ``error(message)`` makes the backend's exception.
    """

    async def download(fd: int) -> FileInfo:
        try:
            first, received = await get_range(fd, 0, span, None)
        except EmptyObject:
            first, received = await get_range(fd, 0, None, None)
        pin, info = await identify(first, received)
        starts = range(received, info.size, span)
        pending = iter(starts)

        async def worker() -> None:
            for start in pending:
                length = min(span, info.size - start)
                _, got = await get_range(fd, start, length, pin)
                if got != length:
                    raise error(f"{key}: short ranged read at {start} ({got} of {length})")

        await run_all([worker] * max(1, min(MAX_RANGES_IN_FLIGHT, concurrency, len(starts))))
        return info

    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = await anyio.to_thread.run_sync(os.open, dest, flags, 0o644)
    try:
        for _ in range(DOWNLOAD_ATTEMPTS):
            try:
                info = await download(fd)
            except ChangedWhileReading:
                await anyio.to_thread.run_sync(os.ftruncate, fd, 0)
                watch = download_watch.get()
                if watch is not None:
                    watch.restarted()
                continue
            break
        else:
            raise error(f"{key} kept changing while it was being downloaded")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    os.close(fd)
    return info
