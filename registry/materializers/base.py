"""The materializer protocol and helpers that hash while writing.

A materializer turns objects into files in a folder and back: any class with
``save(obj, folder)`` and ``load(folder, cls)`` (``MaterializerProtocol``).
The base classes below add conveniences, in two shapes:

- ``Materializer``: ``save(obj, folder)`` / ``load(folder, cls)`` for anything
  that is naturally a set of files (folders, checkpoints).
- ``BlobMaterializer``: one file, with in-memory ``dumps`` / ``loads``. The
  core keeps small blobs inside the metadata (one write per save, one read
  per load) and falls back to a file in the folder for large ones.

``save`` may return the files it wrote with their sha256 (use the helpers
below to hash in the same pass as the write); files it does not report are
hashed by the core afterwards. Materializers are created without arguments
and must be importable by their import path, which the metadata records.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol

import msgspec

from registry.backends.transfer import GrowingFile

CHUNK = 8 * 1024 * 1024


class FileEntry(msgspec.Struct, frozen=True):
    """One artifact file as recorded at save time (in the version's metadata)."""

    size: int
    sha256: str


class Unsupported(Exception):
    """Raised by a materializer's save when this object needs another one.

    The core then falls back to the next candidate (in the end: pickle).
    """


class MaterializerProtocol(Protocol):
    """What the registry needs of a materializer: any class with these two
    methods, created without arguments, works, so a library can ship one for
    its own types without depending on this package. Subclassing
    :class:`Materializer` or :class:`BlobMaterializer` adds the extras
    (``uses_pickle``, inline blobs, streaming, ...)."""

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        """Write ``obj`` as files into ``folder`` (optionally return their entries)."""

    def load(self, folder: Path, cls: type | None) -> Any:
        """Rebuild the object from the files in ``folder``."""


_REQUIRED = {"save": "save(obj, folder)", "load": "load(folder, cls)"}


def check_materializer_class(cls: object, where: str) -> type[MaterializerProtocol]:
    """``cls`` if it is a class with callable save and load; else a TypeError
    that names what is missing."""
    if not isinstance(cls, type):
        raise TypeError(
            f"{where} is not a class (got {type(cls).__name__}); a materializer is a class "
            "with save(obj, folder) and load(folder, cls) methods"
        )
    missing = [sig for attr, sig in _REQUIRED.items() if not callable(getattr(cls, attr, None))]
    if missing:
        raise TypeError(
            f"{where} has no {' or '.join(missing)} method; a materializer needs both "
            "save(obj, folder) and load(folder, cls)"
        )
    return cls


def uses_pickle(materializer: MaterializerProtocol) -> bool:
    """Whether loading runs arbitrary code (refused with allow_pickle=False)."""
    return bool(getattr(materializer, "uses_pickle", False))


def loads_untrusted_safely(materializer: MaterializerProtocol) -> bool:
    """Whether ``load`` is harmless on damaged bytes (see Materializer)."""
    return bool(getattr(materializer, "loads_untrusted_safely", False))


def needs_pickle(materializer: MaterializerProtocol, options: Mapping[str, Any]) -> bool:
    """Whether this load runs pickle: ``uses_pickle`` unless one of the load
    options the materializer names in ``pickle_free_with`` is set (a module
    saved with a pickled skeleton still loads its weights alone safely)."""
    if not uses_pickle(materializer):
        return False
    free: Collection[str] = getattr(materializer, "pickle_free_with", ())
    return not any(options.get(option) for option in free)


def describe(materializer: MaterializerProtocol, obj: Any) -> dict[str, Any]:
    """What the version's metadata records about the stored form of ``obj``
    (``info()["stored_as"]``): at least its format, where the materializer
    tells one."""
    method = getattr(materializer, "describe", None)
    if callable(method):
        return dict(method(obj))
    return {}


def check_load_options(
    materializer: MaterializerProtocol, path: str, options: Mapping[str, Any]
) -> None:
    """A TypeError naming the options this materializer takes, for others."""
    accepted: Collection[str] = getattr(materializer, "load_options", ())
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(sorted(accepted)) if accepted else "none"
        raise TypeError(
            f"load options {unknown} are not understood by {path} (it takes: {takes}); "
            "drop them or load an object stored by a materializer that takes them"
        )


class Materializer:
    """Folder-shaped materializer. Subclass and implement save and load."""

    #: True when loading runs arbitrary code (refused with allow_pickle=False).
    uses_pickle: ClassVar[bool] = False
    #: True when ``load`` is harmless on damaged or hostile bytes (it only
    #: copies or parses them strictly). Large objects are then verified in a
    #: second thread while they load, instead of before: one pass, not two.
    loads_untrusted_safely: ClassVar[bool] = False
    #: The format on disk, recorded in the metadata (``info()["stored_as"]``).
    format: ClassVar[str | None] = None
    #: Keyword options ``load`` accepts (``reg.load(name, options={...})``).
    load_options: ClassVar[frozenset[str]] = frozenset()
    #: Load options under which a ``uses_pickle`` materializer runs no pickle.
    pickle_free_with: ClassVar[frozenset[str]] = frozenset()
    #: Said when allow_pickle=False refuses a load: what to do instead.
    pickle_refused_hint: ClassVar[str] = ""

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        raise NotImplementedError

    def load(self, folder: Path, cls: type | None) -> Any:
        raise NotImplementedError

    def describe(self, obj: Any) -> Mapping[str, Any]:
        """Recorded in the metadata after a save; override to add details."""
        return {"format": self.format} if self.format else {}


class BlobMaterializer(Materializer):
    """Single-file materializer with in-memory encode and decode."""

    filename: ClassVar[str] = "data"

    def dumps(self, obj: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes, cls: type | None) -> Any:
        raise NotImplementedError

    def estimate_size(self, obj: Any) -> int | None:
        """Bytes ``dumps`` will produce, if cheap to tell (None: unknown).

        Small known sizes are encoded on the event loop without a thread hop.
        """
        return None

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        return {self.filename: write_bytes(folder / self.filename, self.dumps(obj))}

    def load(self, folder: Path, cls: type | None) -> Any:
        return self.loads((folder / self.filename).read_bytes(), cls)


def entry_for(data: bytes | memoryview) -> FileEntry:
    return FileEntry(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def write_bytes(path: Path, data: bytes) -> FileEntry:
    """Write ``data`` to ``path`` and return its entry (hashed in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return entry_for(data)


class HashingWriter(io.RawIOBase):
    """A write-only binary file that hashes what passes through it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._file.write(view)
        self.size += len(view)
        return len(view)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()

    def entry(self) -> FileEntry:
        return FileEntry(size=self.size, sha256=self._hash.hexdigest())


PARALLEL_COPY_BYTES = 16 * 1024 * 1024

#: Set by the core around a remote save's materialize: told of each large file
#: ``copy_file`` starts writing (its path and a ``GrowingFile`` it advances),
#: so its upload can start before the copy ends.
announce_copy: ContextVar[Callable[[Path, GrowingFile], None] | None] = ContextVar(
    "registry_announce_copy", default=None
)


#: Set by the core while a materializer writes files it will fsync (a local
#: save in place): writers that hash in a second thread (``copy_file``,
#: ``ParallelHashingWriter``, ``FollowingHasher``) then start that fsync
#: themselves while the hash finishes, so the disk and the hash work at once.
durable_writes: ContextVar[bool] = ContextVar("registry_durable_writes", default=False)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(src: Path, dest: Path) -> FileEntry:
    """Copy ``src`` to ``dest`` with bounded memory and return its entry.

    Small files stream through one hashing pass. Large ones are copied by the
    kernel (``kernel_copy``) while a second thread hashes the source
    (sha256 releases the GIL), about twice as fast on two cores. If the
    source changed meanwhile (size or mtime moved), the copy is hashed instead.
    """
    before = os.stat(src)
    if before.st_size < PARALLEL_COPY_BYTES:
        buffer = bytearray(min(CHUNK, max(before.st_size, 1)))
        view = memoryview(buffer)
        with open(src, "rb", buffering=0) as source, HashingWriter(dest) as out:
            while n := source.readinto(buffer):
                out.write(view[:n])
        return out.entry()
    dest.parent.mkdir(parents=True, exist_ok=True)
    announce = announce_copy.get()
    if announce is not None:
        return _copy_announced(src, dest, before.st_size, announce)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-hash") as pool:
        hashed = pool.submit(hash_file, src)
        kernel_copy(src, dest)
        if durable_writes.get():
            # The hash takes longer than the copy: the disk writes start now,
            # beside it, and the caller's fsync finds little left to write.
            _fsync_path(dest)
        entry = hashed.result()
    after = os.stat(src)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or (
        entry.size != os.stat(dest).st_size
    ):
        return hash_file(dest)
    return entry


def _copy_announced(
    src: Path, dest: Path, size: int, announce: Callable[[Path, GrowingFile], None]
) -> FileEntry:
    """One pass, front to back, for a copy whose upload starts before it ends:
    each buffer read from ``src`` is written to ``dest`` and hashed (in a
    second thread: sha256 releases the GIL), and the reader is told once it
    is written. The entry is the hash of exactly the bytes written, however
    ``src`` changes meanwhile, and no region of ``dest`` is written twice, so
    an upload that read ``dest`` whole holds the bytes this entry describes."""
    growing = GrowingFile(size)
    digest = hashlib.sha256()
    buffers = [bytearray(CHUNK), bytearray(CHUNK)]
    written = 0
    try:
        with (
            open(src, "rb", buffering=0) as source,
            open(dest, "wb", buffering=0) as out,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-hash") as pool,
        ):
            announce(dest, growing)
            hashing: Future[None] | None = None
            for turn in itertools.count():
                buffer = buffers[turn % 2]  # its last hash was awaited a turn ago
                n = source.readinto(buffer)
                if not n:
                    break
                view = memoryview(buffer)[:n]
                while view:
                    view = view[out.write(view) or 0 :]
                written += n
                growing.wrote(written)
                if hashing is not None:
                    hashing.result()
                hashing = pool.submit(digest.update, memoryview(buffer)[:n])
            if hashing is not None:
                hashing.result()
    except BaseException as exc:
        growing.end(exc)
        raise
    growing.end()
    return FileEntry(size=written, sha256=digest.hexdigest())


HASH_BUFFER = 4 * 1024 * 1024


def hash_file(path: Path) -> FileEntry:
    """The file's size and sha256, read into one buffer reused for the whole
    file: a fresh multi-MiB ``bytes`` per read costs a mapping and its page
    faults every time (measured on a 1 GiB file: 1.75 s of system time with
    ``read``, 0.20 s with ``readinto``; the hash itself is ~0.7 s)."""
    with open(path, "rb", buffering=0) as f:
        return hash_open_file(f)


def hash_open_file(f: io.RawIOBase) -> FileEntry:
    """``hash_file`` of a file opened unbuffered, from its current position."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(min(HASH_BUFFER, max(os.fstat(f.fileno()).st_size, 1)))
    view = memoryview(buffer)
    while n := f.readinto(buffer):
        digest.update(view[:n])
        size += n
    return FileEntry(size=size, sha256=digest.hexdigest())


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
_KERNEL_COPY_STEP = 64 * 1024 * 1024  # per call: keeps Ctrl-C responsive


def kernel_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` (created or truncated) without the bytes
    passing through Python: ``copy_file_range``, which on filesystems that
    share extents (XFS, btrfs) clones instead of copying, and elsewhere copies
    inside the kernel; ``shutil.copyfile`` where it is missing or refused
    (another OS, another filesystem on older kernels)."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        with open(src, "rb") as source, open(dest, "wb") as out:
            try:
                while copy_range(source.fileno(), out.fileno(), _KERNEL_COPY_STEP):
                    pass
                return
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
    shutil.copyfile(src, dest)  # truncates what a refused copy_file_range began


class ParallelHashingWriter:
    """Writes buffers to a file while a second thread hashes them.

    sha256 releases the GIL on large buffers, so a big object is written and
    hashed at once on two cores, with no copy: the caller keeps each buffer
    unchanged until ``close()`` (the worker reads it in place, in order).
    ``backlog``: at most this many buffers wait for the hash (``write`` waits
    for the oldest): for callers writing fresh chunks (``np.save``'s 16 MiB
    copies), so memory stays bounded when the hash is slower than the disk.
    """

    def __init__(self, path: Path, backlog: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-hash")
        self._pending: deque[Any] = deque()
        self._backlog = backlog
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        pending = self._pending
        pending.append(self._pool.submit(self._hash.update, view))
        self._file.write(view)
        self.size += len(view)
        while pending and pending[0].done():  # hashed: its buffer can go
            pending.popleft().result()
        if self._backlog is not None:
            while len(pending) > self._backlog:
                pending.popleft().result()
        return len(view)

    def close(self) -> FileEntry:
        try:
            if durable_writes.get():  # the disk writes while the hash catches up
                self._file.flush()
                os.fsync(self._file.fileno())
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown()
            self._file.close()
        return FileEntry(size=self.size, sha256=self._hash.hexdigest())

    def __enter__(self) -> ParallelHashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self.close()


class FollowingHasher:
    """Hashes a file in a second thread while another appends to it.

    For writers that only append through their own handle (Parquet, Arrow
    IPC): the thread reads what has been written so far, from the page
    cache, so the hash is ready soon after the last write instead of taking
    a second pass over the file. The file must exist before this starts.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: io.BufferedReader = open(path, "rb")  # noqa: SIM115 - closed by the thread
        self._buffer = bytearray(HASH_BUFFER)
        self._view = memoryview(self._buffer)
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="registry-hash", daemon=True)
        self._thread.start()

    def _drain(self) -> bool:
        n = self._file.readinto(self._buffer)  # one buffer reused: see hash_file
        if n:
            self._hash.update(self._view[:n])
            self._size += n
        return bool(n)

    def _run(self) -> None:
        try:
            while True:
                if self._drain():
                    continue
                if self._done.is_set():
                    while self._drain():  # what was written before finish()
                        pass
                    return
                self._done.wait(0.002)
        except BaseException as exc:  # reported by finish()
            self._error = exc
        finally:
            self._file.close()

    def finish(self) -> FileEntry:
        """Call once the writer has closed the file: its entry."""
        self._done.set()
        if durable_writes.get():
            _fsync_path(self._path)  # the thread owns (and closes) _file
        self._thread.join()
        if self._error is not None:
            raise self._error
        return FileEntry(size=self._size, sha256=self._hash.hexdigest())
