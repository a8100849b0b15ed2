"""Cached metadata written a batch at a time: one file per batch, not per version.

A batch of remote loads or saves writes the metadata of every version it
touched into the cache. One file each was the bound of cold batch loads of
small objects: creating a file (allocating its inode) was measured at
0.3-0.8 ms of kernel CPU on a loaded VM's ext4, as much as the GET it
caches, while writing into an existing file or linking one costs ~0.02 ms. So a batch's metadata lands in one *pack*:

    meta-packs/<time_ns>-<pid>-<token>.pack
        b"RGPK1\\n", the records, their table (JSON: [[name, version key,
        offset, length], ...]), the table's length (8 bytes, big-endian)

written completely and renamed into place (readers see all of it or none).
``meta/<name>@<key>.json`` files still hold single writes and win over packs
(a pack's flush removes the per-version files it supersedes; a later single
write replaces it in turn); among packs the newest name wins.

Several processes share the folder without locks. Each keeps an index of the
packs it read and, on every read, stats the folder: when its mtime moved (or
is too recent to tell a later change in the same clock tick apart) it lists
the folder again and reads the tables of new packs, so a pack another process
wrote is seen at once. A pack is never changed in place: dropping a version
writes a new pack without it and removes the old one, so an index naming a
pack no longer there is stale, and reading it again finds the record or not.

Like the per-version files, a pack is a cache: a process that supersedes a
version's file while another packs it may leave the older copy in place,
which is what ``verify="full"`` exists for (the cache section of README.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

_MAGIC = b"RGPK1\n"
#: a folder mtime closer than this to our look may hide a change in the same tick
_RACY_SECONDS = 0.05

Key = tuple[str, str]  # (name, version key)
Where = tuple[str, int, int]  # (pack file name, offset, length)
_table = msgspec.json.Decoder(list[tuple[str, str, int, int]])


def encode_pack(records: dict[Key, bytes]) -> bytes:
    table: list[tuple[str, str, int, int]] = []
    offset = len(_MAGIC)
    for (name, key), data in records.items():
        table.append((name, key, offset, len(data)))
        offset += len(data)
    encoded = msgspec.json.encode(table)
    return b"".join([_MAGIC, *records.values(), encoded, len(encoded).to_bytes(8, "big")])


def read_table(path: Path) -> list[tuple[str, str, int, int]] | None:
    """The pack's table, or None if it is not a whole pack (gone, or damaged)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size < len(_MAGIC) + 8 or os.pread(fd, len(_MAGIC), 0) != _MAGIC:
            return None
        length = int.from_bytes(os.pread(fd, 8, size - 8), "big")
        if length > size - 8 - len(_MAGIC):
            return None
        encoded = os.pread(fd, length, size - 8 - length)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        table = _table.decode(encoded)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    end = size - 8 - length
    if any(offset < len(_MAGIC) or offset + n > end for _, _, offset, n in table):
        return None
    return table


class Packs:
    """This process's view of one cache's metadata packs (thread-safe)."""

    def __init__(self, folder: Path, write_atomic: Callable[[Path, bytes], None]) -> None:
        self.folder = folder
        self._write_atomic = write_atomic
        self._lock = threading.Lock()
        self._index: dict[Key, Where] = {}
        self._holders: dict[Key, list[str]] = {}  # every pack holding a version
        self._tables: dict[str, list[tuple[str, str, int, int]]] = {}
        self._seen: tuple[int, float] | None = None  # folder mtime_ns, when we looked

    # -- reading ----------------------------------------------------------------

    def get(self, name: str, key: str) -> bytes | None:
        """The packed record of ``name@key``, or None."""
        for _ in range(3):  # a pack that vanished under us: read the folder again
            with self._lock:
                self._refresh()  # one stat: a newer pack may hold a newer record
                where = self._index.get((name, key))
            if where is None:
                return None
            found = _read_at(self.folder / where[0], where[1], where[2])
            if found is not None:
                return found
            with self._lock:
                self._seen = None
        return None

    def keys(self) -> list[Key]:
        with self._lock:
            self._refresh()
            return list(self._index)

    def records(self) -> Iterator[bytes]:
        """Every version's packed record (the newest of each), one open per pack."""
        by_pack: dict[str, list[tuple[int, int]]] = {}
        with self._lock:
            self._refresh()
            for pack, offset, length in self._index.values():
                by_pack.setdefault(pack, []).append((offset, length))
        for pack, spans in by_pack.items():
            try:
                fd = os.open(self.folder / pack, os.O_RDONLY)
            except OSError:
                continue  # rewritten meanwhile: its records are elsewhere, or dropped
            try:
                for offset, length in spans:
                    data = os.pread(fd, length, offset)
                    if len(data) == length:
                        yield data
            finally:
                os.close(fd)

    def _refresh(self) -> bool:
        """Read the folder again if it changed; whether it did. Caller holds the lock."""
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            mtime = -1
        now = time.time()
        # unchanged, and looked at late enough to have seen the last change
        if (
            self._seen is not None
            and self._seen[0] == mtime
            and self._seen[1] - mtime / 1e9 > _RACY_SECONDS
        ):
            return False
        self._seen = (mtime, now)
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".pack"))
        except OSError:
            names = []
        if names == sorted(self._tables):
            return False
        tables = {n: self._tables[n] for n in names if n in self._tables}
        for n in names:
            if n not in tables:
                table = read_table(self.folder / n)
                if table is not None:
                    tables[n] = table
        index: dict[Key, Where] = {}
        holders: dict[Key, list[str]] = {}
        for n in sorted(tables):  # the newest pack wins
            for name, key, offset, length in tables[n]:
                index[(name, key)] = (n, offset, length)
                holders.setdefault((name, key), []).append(n)
        self._tables, self._index, self._holders = tables, index, holders
        return True

    # -- writing ----------------------------------------------------------------

    def write(self, records: dict[Key, bytes]) -> None:
        """One new pack holding ``records`` (they win over every older pack)."""
        if not records:
            return
        pack = f"{time.time_ns():020d}-{os.getpid()}-{uuidlib.uuid4().hex[:8]}.pack"
        data = encode_pack(records)
        self._write_atomic(self.folder / pack, data)
        table = read_table(self.folder / pack)
        with self._lock:
            if table is not None and (not self._tables or pack > max(self._tables)):
                self._tables[pack] = table  # ours is the newest: no need to look again
                for name, key, offset, length in table:
                    self._index[(name, key)] = (pack, offset, length)
                    self._holders.setdefault((name, key), []).append(pack)

    def drop(self, name: str, key: str) -> None:
        """Remove ``name@key`` from every pack: each pack holding it is written
        again without it (under a new name), then removed."""
        for _ in range(3):  # packs another process rewrote meanwhile: look again
            with self._lock:
                self._refresh()
                holders = list(self._holders.get((name, key), ()))
            if not holders:
                return
            for pack in holders:
                self._rewrite_without(pack, (name, key))
            with self._lock:
                self._seen = None

    def _rewrite_without(self, pack: str, dropped: Key) -> None:
        path = self.folder / pack
        table = read_table(path)
        if table is None:
            return  # another process removed it first
        kept: dict[Key, bytes] = {}
        for name, key, offset, length in table:
            if (name, key) != dropped:
                data = _read_at(path, offset, length)
                if data is not None:  # else cut short: that record is lost (a cache)
                    kept[(name, key)] = data
        if kept:
            # keeps its place among the packs: same time prefix, a new token
            stem = pack.rsplit("-", 1)[0]
            self._write_atomic(
                self.folder / f"{stem}-{uuidlib.uuid4().hex[:8]}.pack", encode_pack(kept)
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def forget(self) -> None:
        with self._lock:
            self._index, self._holders, self._tables, self._seen = {}, {}, {}, None


def _read_at(path: Path, offset: int, length: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    return data if len(data) == length else None
