"""Local cache of remote registries (DESIGN §7).

Layout under ``<cache root>/<hash of the backend uri>/``:

    meta/<name>@<version key>.json     metadata as last read or written (one flat
                                       folder: no folder to create per name)
    objects/<name>/<uuid>/<files...>   artifact folders, complete or absent
    tmp/                               downloads and saves in progress

A uuid folder never changes after its commit, so a cached folder is valid
forever for its uuid; only the version -> uuid mapping (the metadata) can go
stale, on mutable registries. Folders appear in one atomic rename of a
completely written temp folder, so concurrent processes need no locks: the
loser of a rename race just drops its copy. Least recently used folders are
evicted above ``max_bytes`` or ``max_entries`` (use refreshes a folder's mtime).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from registry.core.types import DEFAULT_CACHE_MAX_BYTES

STALE_TMP_SECONDS = 3600.0


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


def default_cache_root() -> Path:
    """``$REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/registry`` (``~/.cache/registry``)."""
    if root := os.environ.get("REGISTRY_CACHE"):
        return Path(root).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "registry"


class Cache:
    """Blocking helpers. Folder work runs in worker threads; the metadata
    calls (one small unsynced file) run on the event loop, where they cost
    less than the hop to a thread would (cache files are not fsynced: a lost
    cache entry is fetched again)."""

    def __init__(
        self,
        root: Path,
        uri: str,
        *,
        max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES,
        max_entries: int | None = None,
    ):
        for what, cap in (("cache_max_bytes", max_bytes), ("cache_max_entries", max_entries)):
            if cap is not None and (not isinstance(cap, int) or cap < 0):
                raise ValueError(f"{what} must be a whole number >= 0 or None, got {cap!r}")
        digest = hashlib.sha256(uri.encode()).hexdigest()[:24]
        self.root = root / digest
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._tmp_swept = False
        # This process's running estimate of (bytes, entries); None: not scanned yet.
        self._approx: tuple[int, int] | None = None

    # -- metadata ---------------------------------------------------------------

    def _meta_path(self, name: str, version_key: str) -> Path:
        # Names never contain '@' or '/', so "<name>@<key>" is unambiguous.
        return self.root / "meta" / f"{name}@{version_key}.json"

    def read_meta(self, name: str, version_key: str) -> bytes | None:
        try:
            return self._meta_path(name, version_key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_meta(self, name: str, version_key: str, data: bytes) -> None:
        # One temp file beside the target and an atomic replace: concurrent
        # readers see the old or the new file, never a partial one.
        path = self._meta_path(name, version_key)
        tmp = path.with_name(f".{path.name}.{uuidlib.uuid4().hex}")
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
        os.replace(tmp, path)

    def drop_meta(self, name: str, version_key: str) -> None:
        self._meta_path(name, version_key).unlink(missing_ok=True)

    # -- artifact folders -------------------------------------------------------

    def folder(self, name: str, uuid: str) -> Path:
        return self.root / "objects" / name / uuid

    def lookup(self, name: str, uuid: str) -> Path | None:
        """The cached folder, marked as just used; None if not cached."""
        folder = self.folder(name, uuid)
        try:
            os.utime(folder)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return folder

    def new_tmp(self) -> Path:
        if not self._tmp_swept:
            self._tmp_swept = True
            self._sweep_tmp()
        path = self.root / "tmp" / uuidlib.uuid4().hex
        path.mkdir(parents=True)
        return path

    def adopt(self, name: str, uuid: str, tmp: Path) -> Path:
        """Move a complete temp folder into place (atomic); keep the first copy."""
        final = self.folder(name, uuid)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
            return final
        self._account(_folder_size(final))
        return final

    def discard(self, name: str, uuid: str) -> None:
        """Remove a cached folder (damaged, or its save lost the race)."""
        self._remove(self.folder(name, uuid))

    def _remove(self, folder: Path) -> None:
        # Rename first, so readers never see a half-deleted folder.
        trash_dir = self.root.parent if folder == self.root else self.root / "tmp"
        trash = trash_dir / f".trash-{uuidlib.uuid4().hex}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, trash)
        except (FileNotFoundError, NotADirectoryError):
            return
        shutil.rmtree(trash, ignore_errors=True)

    # -- housekeeping -----------------------------------------------------------

    def _over(self, total: int, entries: int) -> bool:
        return (self.max_bytes is not None and total > self.max_bytes) or (
            self.max_entries is not None and entries > self.max_entries
        )

    def _account(self, added: int) -> None:
        # A full scan only when the running estimate crosses a cap, so an
        # adopt costs O(1) until eviction is due.
        if self.max_bytes is None and self.max_entries is None:
            return
        if self._approx is None:
            folders = self._scan()
            self._approx = (sum(size for _, size, _ in folders), len(folders))
        else:
            self._approx = (self._approx[0] + added, self._approx[1] + 1)
        if self._over(*self._approx):
            self.evict()

    def _scan(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, folder) of every cached folder. Other processes
        evict concurrently, so a folder that vanishes mid-scan is skipped."""
        found = []
        for name_dir in _subdirs(self.root / "objects"):
            for folder in _subdirs(name_dir):
                try:
                    used = folder.stat().st_mtime
                except FileNotFoundError:
                    continue
                found.append((used, _folder_size(folder), folder))
        return found

    def evict(self) -> int:
        """Remove least recently used folders until under both caps.

        Housekeeping: it never raises for a folder another thread or process
        removed first.
        """
        if self.max_bytes is None and self.max_entries is None:
            return 0
        folders = sorted(self._scan())
        total = sum(size for _, size, _ in folders)
        entries = len(folders)
        removed = 0
        for _used, size, folder in folders:
            if not self._over(total, entries):
                break
            self._remove(folder)
            total -= size
            entries -= 1
            removed += 1
        self._approx = (total, entries)
        return removed

    def info(self) -> CacheInfo:
        """Every cached entry, least recently used first."""
        versions: dict[tuple[str, str], list[str]] = {}
        for path in _files(self.root / "meta"):
            if path.name.startswith(".") or not path.name.endswith(".json"):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                record = msgspec.json.decode(path.read_bytes())
                versions.setdefault((record["name"], record["uuid"]), []).append(record["version"])
        entries = [
            CacheEntry(
                name=folder.parent.name,
                uuid=folder.name,
                versions=tuple(sorted(versions.get((folder.parent.name, folder.name), ()))),
                size=size,
                last_used=used,
            )
            for used, size, folder in sorted(self._scan())
        ]
        return CacheInfo(self.root, entries, self.max_bytes, self.max_entries)

    def prune(
        self, *, max_bytes: int | None = None, older_than: float | None = None
    ) -> PruneReport:
        """Remove entries unused for ``older_than`` seconds, then least recently
        used ones until at most ``max_bytes`` remain."""
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if older_than is not None and older_than < 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than}")
        entries = self.info().entries
        total = sum(e.size for e in entries)
        cutoff = time.time() - older_than if older_than is not None else None
        removed = []
        for entry in entries:
            stale = cutoff is not None and entry.last_used < cutoff
            over = max_bytes is not None and total > max_bytes
            if not (stale or over):
                continue
            self._remove(self.folder(entry.name, entry.uuid))
            total -= entry.size
            removed.append(entry)
        self._approx = None
        return PruneReport(removed)

    def clear(self) -> None:
        self._remove(self.root)
        self._approx = None

    def _sweep_tmp(self) -> None:
        """Remove temp folders a crashed process left behind."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for path in _subdirs(self.root / "tmp"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)


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


def _folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for filename in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(dirpath, filename)).st_size
    return total
