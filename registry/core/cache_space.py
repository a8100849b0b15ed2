"""The cache's space: what it holds, its caps, eviction, pruning.

Eviction is housekeeping shared by every process using the cache folder, so
it never fails the operation that triggered it: a folder another process
removed first is skipped, and an entry a reader holds (a fresh lease file,
see ``Cache.reading``) is never removed. Each process keeps a running
estimate of the cache's size and rescans the folder when the estimate nears
a cap or is a few seconds old, so the caps hold with several writers too.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from registry.core.cache_leases import LEASE_SECONDS

logger = logging.getLogger(__name__)

#: rescan when this process last looked longer ago than this
RESCAN_SECONDS = 2.0
#: ... or when its estimate passes this share of a cap
NEAR_CAP = 0.8


@dataclass(frozen=True)
class CacheEntry:
    """One cached version's files (``versions``: the cached metadata naming
    its uuid; empty when only the files are left)."""

    name: str
    uuid: str
    versions: tuple[str, ...]
    size: int
    last_used: float


@dataclass(frozen=True)
class CacheInfo:
    """What a registry's cache holds, least recently used first."""

    root: Path | None  # None: this registry keeps no cache (local, or use_cache=False)
    entries: list[CacheEntry]
    max_bytes: int | None
    max_entries: int | None

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed."""

    removed: list[CacheEntry]

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.removed)


@dataclass(frozen=True)
class _Folder:
    last_used: float
    size: int
    path: Path


class Space:
    """Size accounting and eviction for one cache root."""

    def __init__(
        self,
        root: Path,
        max_bytes: int | None,
        max_entries: int | None,
        remove: Callable[[Path], None],
    ) -> None:
        for what, cap in (("cache_max_bytes", max_bytes), ("cache_max_entries", max_entries)):
            if cap is not None and (not isinstance(cap, int) or cap < 0):
                raise ValueError(f"{what} must be a whole number >= 0 or None, got {cap!r}")
        self.root = root
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._remove = remove
        # this process's estimate: (bytes, entries, when last scanned)
        self._estimate: tuple[int, int, float] | None = None
        self._sizes: dict[Path, int] = {}  # uuid folders never change: sizes are memoized

    @property
    def capped(self) -> bool:
        return self.max_bytes is not None or self.max_entries is not None

    def added(self, size: int) -> None:
        """A folder of ``size`` bytes was adopted: evict if a cap is passed.
        Never raises: a failure here is logged and left for the next time."""
        if not self.capped:
            return
        try:
            self._account(size)
        except OSError as exc:
            logger.warning("cache eviction in %s failed and was skipped: %s", self.root, exc)

    def _account(self, size: int) -> None:
        now = time.monotonic()
        estimate = self._estimate
        if estimate is None or self._near(estimate) or now - estimate[2] > RESCAN_SECONDS:
            self.evict()
            return
        estimate = (estimate[0] + size, estimate[1] + 1, estimate[2])
        self._estimate = estimate
        if self._over(estimate[0], estimate[1]):
            self.evict()

    def _near(self, estimate: tuple[int, int, float]) -> bool:
        return (self.max_bytes is not None and estimate[0] >= NEAR_CAP * self.max_bytes) or (
            self.max_entries is not None and estimate[1] >= NEAR_CAP * self.max_entries
        )

    def _over(self, total: int, entries: int) -> bool:
        return (self.max_bytes is not None and total > self.max_bytes) or (
            self.max_entries is not None and entries > self.max_entries
        )

    def scan(self) -> list[_Folder]:
        """Every cached folder, least recently used first. Other processes
        evict concurrently, so a folder that vanishes mid-scan is skipped."""
        found = []
        sizes: dict[Path, int] = {}
        for name_dir in _subdirs(self.root / "objects"):
            for path in _subdirs(name_dir):
                try:
                    used = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                size = self._sizes.get(path)
                if size is None:
                    size = folder_size(path)
                sizes[path] = size
                found.append(_Folder(used, size, path))
        self._sizes = sizes
        return sorted(found, key=lambda f: (f.last_used, str(f.path)))

    def evict(self) -> int:
        """Remove least recently used folders until under both caps; entries
        a reader holds are kept. Returns how many were removed."""
        folders = self.scan()
        total = sum(f.size for f in folders)
        entries = len(folders)
        removed = 0
        if self.capped and self._over(total, entries):
            held = self._held()
            for folder in folders:
                if not self._over(total, entries):
                    break
                if (folder.path.parent.name, folder.path.name) in held:
                    continue
                self._remove(folder.path)
                self._sizes.pop(folder.path, None)
                total -= folder.size
                entries -= 1
                removed += 1
        self._estimate = (total, entries, time.monotonic())
        return removed

    def _held(self) -> set[tuple[str, str]]:
        """(name, uuid) of the entries with a fresh reader lease."""
        cutoff = time.time() - LEASE_SECONDS
        held = set()
        for path in _files(self.root / "leases"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= cutoff:
                    name, _, rest = path.name.partition("@")
                    held.add((name, rest.split(".", 1)[0]))
        return held

    def info(self, packed: Iterable[bytes] = ()) -> CacheInfo:
        """Every cached entry, least recently used first, with its versions
        (from the metadata files, and the ``packed`` metadata records)."""
        versions: dict[tuple[str, str], set[str]] = {}
        for data in itertools.chain(_metadata_files(self.root / "meta"), packed):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = msgspec.json.decode(data)
                versions.setdefault((record["name"], record["uuid"]), set()).add(record["version"])
        entries = [
            CacheEntry(
                name=f.path.parent.name,
                uuid=f.path.name,
                versions=tuple(sorted(versions.get((f.path.parent.name, f.path.name), ()))),
                size=f.size,
                last_used=f.last_used,
            )
            for f in self.scan()
        ]
        return CacheInfo(self.root, entries, self.max_bytes, self.max_entries)

    def prune(self, *, max_bytes: int | None, older_than: float | None) -> PruneReport:
        """Remove entries unused for ``older_than`` seconds, then least recently
        used ones until at most ``max_bytes`` remain (held entries are kept)."""
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if older_than is not None and older_than < 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than}")
        entries = self.info().entries
        held = self._held()
        total = sum(e.size for e in entries)
        cutoff = time.time() - older_than if older_than is not None else None
        removed = []
        for entry in entries:
            stale = cutoff is not None and entry.last_used < cutoff
            over = max_bytes is not None and total > max_bytes
            if not (stale or over) or (entry.name, entry.uuid) in held:
                continue
            self._remove(self.root / "objects" / entry.name / entry.uuid)
            total -= entry.size
            removed.append(entry)
        self._estimate = None
        return PruneReport(removed)

    def forget(self) -> None:
        self._estimate = None
        self._sizes.clear()


def _metadata_files(folder: Path) -> Iterator[bytes]:
    for path in _files(folder):
        if not path.name.startswith(".") and path.name.endswith(".json"):
            with contextlib.suppress(OSError):
                yield path.read_bytes()


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for filename in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(dirpath, filename)).st_size
    return total
