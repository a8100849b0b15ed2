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

import hashlib
import io
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol

import msgspec

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


class Materializer:
    """Folder-shaped materializer. Subclass and implement save and load."""

    #: True when loading runs arbitrary code (refused with allow_pickle=False).
    uses_pickle: ClassVar[bool] = False
    #: True when ``load`` is harmless on damaged or hostile bytes (it only
    #: copies or parses them strictly). Large objects are then verified in a
    #: second thread while they load, instead of before: one pass, not two.
    loads_untrusted_safely: ClassVar[bool] = False

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        raise NotImplementedError

    def load(self, folder: Path, cls: type | None) -> Any:
        raise NotImplementedError


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


def copy_file(src: Path, dest: Path) -> FileEntry:
    """Copy ``src`` to ``dest`` with bounded memory and return its entry.

    Small files stream through one hashing pass. Large ones are copied by the
    kernel (``shutil.copyfile``) while a second thread hashes the source
    (sha256 releases the GIL), about twice as fast on two cores. If the
    source changed meanwhile (size or mtime moved), the copy is hashed instead.
    """
    before = os.stat(src)
    if before.st_size < PARALLEL_COPY_BYTES:
        with open(src, "rb") as source, HashingWriter(dest) as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
        return out.entry()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-hash") as pool:
        hashed = pool.submit(hash_file, src)
        shutil.copyfile(src, dest)
        entry = hashed.result()
    after = os.stat(src)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or (
        entry.size != os.stat(dest).st_size
    ):
        return hash_file(dest)
    return entry


def hash_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(size=size, sha256=digest.hexdigest())
