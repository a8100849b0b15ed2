"""Local cache of remote registries (DESIGN §7).

Layout under ``<cache root>/<hash of the backend uri>/``:

    meta/<name>@<version key>.json     metadata as last read or written (one flat
                                       folder: no folder to create per name)
    meta-packs/<...>.pack              the metadata a batch wrote, in one file
                                       (cache_packs.py; a meta/ file wins)
    objects/<name>/<uuid>/<files...>   artifact folders, complete or absent
    tmp/                               downloads and saves in progress

A uuid folder never changes after its commit, so a cached folder is valid
forever for its uuid; only the version -> uuid mapping (the metadata) can go
stale, on mutable registries. Folders appear in one atomic rename of a
completely written temp folder, so concurrent processes need no locks: the
loser of a rename race just drops its copy, and a claim file makes one
process download an entry while the others wait for it. Least recently used
folders are evicted above ``max_bytes`` or ``max_entries`` (use refreshes a
folder's mtime), except those a reader holds (cache_space.py).

    leases/<name>@<uuid>.<owner>       readers holding an entry
    aliases/<name>@<alias>.json        alias records as last read or written
                                       (offline, an alias resolves from here)
    settings.json                      the registry's settings, for offline use
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import hashlib
import os
import shutil
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from registry.core.cache_leases import Leases
from registry.core.cache_packs import Packs
from registry.core.cache_space import CacheEntry, CacheInfo, PruneReport, Space, folder_size
from registry.core.types import DEFAULT_CACHE_MAX_BYTES

__all__ = ["Cache", "CacheEntry", "CacheInfo", "PruneReport", "default_cache_root"]

STALE_TMP_SECONDS = 3600.0
#: a download claim not renewed for this long is taken over by another process
CLAIM_STALE_SECONDS = 30.0
#: how often the downloading process renews its claim
CLAIM_RENEW_SECONDS = 5.0
#: a batch that wrote fewer metadata files than this writes them one by one
PACK_MIN = 8

# The cache whose metadata writes this task's batch collects, and what it collected.
_collecting: ContextVar[tuple[Cache, dict[tuple[str, str], bytes]] | None] = ContextVar(
    "registry_cache_batch", default=None
)


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
        digest = hashlib.sha256(uri.encode()).hexdigest()[:24]
        self.root = root / digest
        self.space = Space(self.root, max_bytes, max_entries, self._remove)
        self.leases = Leases(self.root / "leases")
        self.packs = Packs(self.root / "meta-packs", self._write_small)
        self._meta_folder = str(self.root / "meta")
        self._tmp_swept = False

    @property
    def max_bytes(self) -> int | None:
        return self.space.max_bytes

    @property
    def max_entries(self) -> int | None:
        return self.space.max_entries

    # -- metadata and settings ----------------------------------------------------

    def _meta_path(self, name: str, version_key: str) -> Path:
        return Path(self._meta_file(name, version_key))

    def _meta_file(self, name: str, version_key: str) -> str:
        # Names never contain '@' or '/', so "<name>@<key>" is unambiguous. A
        # str: building a Path costs more than the read on the hot path.
        return f"{self._meta_folder}/{name}@{version_key}.json"

    def read_meta(self, name: str, version_key: str) -> bytes | None:
        pending = self._pending()
        if pending is not None and (name, version_key) in pending:
            return pending[(name, version_key)]
        found = _read(self._meta_file(name, version_key))
        return found if found is not None else self.packs.get(name, version_key)

    def write_meta(self, name: str, version_key: str, data: bytes) -> None:
        pending = self._pending()
        if pending is not None:
            pending[(name, version_key)] = data
            return
        self._write_small(self._meta_path(name, version_key), data)

    def drop_meta(self, name: str, version_key: str) -> None:
        pending = self._pending()
        if pending is not None:
            pending.pop((name, version_key), None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._meta_file(name, version_key))
        self.packs.drop(name, version_key)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the metadata writes of this task (and the tasks it starts)
        and write them as one pack when the batch ends, however it ends: one
        file per batch, not per version (see cache_packs.py)."""
        pending: dict[tuple[str, str], bytes] = {}
        token = _collecting.set((self, pending))
        try:
            yield
        finally:
            _collecting.reset(token)
            self._flush(pending)

    def _pending(self) -> dict[tuple[str, str], bytes] | None:
        collecting = _collecting.get()
        return collecting[1] if collecting is not None and collecting[0] is self else None

    def _flush(self, pending: dict[tuple[str, str], bytes]) -> None:
        if len(pending) < PACK_MIN:
            for (name, key), data in pending.items():
                self._write_small(self._meta_path(name, key), data)
            return
        self.packs.write(pending)
        for name, key in pending:  # a single write from before would win over the pack
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._meta_file(name, key))

    def _write_small(self, path: Path, data: bytes) -> None:
        _write_atomic(path, data, self.root / "spares")

    def _alias_path(self, name: str, alias: str) -> Path:
        return self.root / "aliases" / f"{name}@{alias}.json"

    def read_alias(self, name: str, alias: str) -> bytes | None:
        return _read(self._alias_path(name, alias))

    def write_alias(self, name: str, alias: str, data: bytes) -> None:
        self._write_small(self._alias_path(name, alias), data)

    def cached_aliases(self, name: str) -> dict[str, bytes]:
        """alias -> cached record of ``name``'s aliases."""
        found: dict[str, bytes] = {}
        try:
            filenames = os.listdir(self.root / "aliases")
        except (FileNotFoundError, NotADirectoryError):
            return found
        for filename in filenames:
            owner, at, alias = filename.removesuffix(".json").partition("@")
            if at and owner == name and filename.endswith(".json"):
                data = self.read_alias(name, alias)
                if data is not None:
                    found[alias] = data
        return found

    def read_settings(self) -> bytes | None:
        """The registry's settings file as last read online (for offline use)."""
        return _read(self.root / "settings.json")

    def write_settings(self, data: bytes) -> None:
        self._write_small(self.root / "settings.json", data)

    def cached_versions(self) -> dict[str, list[str]]:
        """name -> version keys with cached metadata (what offline use can see)."""
        keys: set[tuple[str, str]] = set(self.packs.keys())
        try:
            names = os.listdir(self.root / "meta")
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for filename in names:
            if filename.startswith(".") or not filename.endswith(".json"):
                continue
            name, at, key = filename[: -len(".json")].partition("@")
            if at:
                keys.add((name, key))
        keys.update(self._pending() or ())
        found: dict[str, list[str]] = {}
        for name, key in sorted(keys):
            found.setdefault(name, []).append(key)
        return found

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

    def reading(self, name: str, uuid: str) -> contextlib.AbstractContextManager[None]:
        """Hold the entry while it is read: eviction (by any process) skips
        entries with a fresh lease (see cache_leases.py)."""
        return self.leases.holding(name, uuid)

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
        if self.space.capped:
            self.space.added(folder_size(final))
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

    # -- one download per entry, whatever the number of processes -----------------

    def claim_download(self, name: str, uuid: str) -> Path | None:
        """The claim file if this process should download the entry; None if
        another process holds a live claim (then wait for ``lookup``)."""
        claim = self._claim_path(name, uuid)
        for _ in range(3):
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileNotFoundError:
                claim.parent.mkdir(parents=True, exist_ok=True)
                continue
            except FileExistsError:
                if self.claim_is_live(name, uuid):
                    return None
                claim.unlink(missing_ok=True)  # its owner stopped renewing it
                continue
            os.close(fd)
            return claim
        return None  # contended: wait like any other non-owner, then try again

    def claim_is_live(self, name: str, uuid: str) -> bool:
        claim = self._claim_path(name, uuid)
        try:
            return time.time() - claim.stat().st_mtime < CLAIM_STALE_SECONDS
        except FileNotFoundError:
            return False

    def _claim_path(self, name: str, uuid: str) -> Path:
        return self.root / "tmp" / f"{name}@{uuid}.downloading"

    # -- housekeeping -----------------------------------------------------------

    def evict(self) -> int:
        return self.space.evict()

    def info(self) -> CacheInfo:
        return self.space.info(self.packs.records())

    def prune(
        self, *, max_bytes: int | None = None, older_than: float | None = None
    ) -> PruneReport:
        return self.space.prune(max_bytes=max_bytes, older_than=older_than)

    def clear(self) -> None:
        self._remove(self.root)
        self.space.forget()
        self.leases.forget()
        self.packs.forget()

    def _sweep_tmp(self) -> None:
        """Remove temp folders a crashed process left behind."""
        cutoff = time.time() - STALE_TMP_SECONDS
        try:
            paths = list((self.root / "tmp").iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return
        for path in paths:
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= cutoff:
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()  # a crashed downloader's claim


def _read(path: Path | str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_atomic(path: Path, data: bytes, spares_in: Path | None = None) -> None:
    # One temp file and an atomic replace: concurrent readers see the old or
    # the new file, never a partial one. The temp file is an empty one made
    # ahead of time in ``spares_in`` (same file system) when there is one.
    if spares_in is not None:
        spare = _spares.take(spares_in)
        if spare is not None:
            try:
                fd = os.open(spare, os.O_WRONLY)  # empty, and ours alone
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                os.replace(spare, path)
                return
            except OSError:  # swept, cleared, or no folder yet: the plain way
                with contextlib.suppress(OSError):
                    spare.unlink()
    tmp = path.with_name(f".{path.name}.{uuidlib.uuid4().hex}")
    try:
        tmp.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
    os.replace(tmp, path)


class _Spares:
    """Empty files made ahead of need, by a background thread, for the small
    files the cache writes on the event loop (metadata, aliases, settings).

    Creating a file is the one costly step of such a write: measured at
    0.6-1.7 ms on a loaded VM's ext4 (0.5 ms of it CPU in the kernel), more
    than a whole GET of a small object from a local server, while opening an
    existing empty file, writing it and renaming it costs ~0.15 ms. So a
    write takes a spare file (made in the cache's ``spares/`` on first use,
    then kept in stock) and falls back to creating one when none is left.
    A spare belongs to this process alone (a forked child forgets the
    parent's stock); those left at exit are removed, and those of a process
    that died are removed by the next one to use the folder, once they are
    older than ``STALE_TMP_SECONDS``.
    """

    STOCK = 64  # spares kept per folder, at most
    FIRST = 8  # ... at first: doubled each time writes find none left
    # (a registry that writes a few files, then batches, makes 8 or 16, not
    # 64 that cost the CPU its batch needs; a stream of single writes soon
    # makes the whole stock). Refilled below half of it.

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stock: dict[Path, collections.deque[Path]] = {}
        self._target: dict[Path, int] = {}
        self._wanted: set[Path] = set()
        self._swept: set[Path] = set()
        self._thread: threading.Thread | None = None

    def take(self, folder: Path) -> Path | None:
        with self._cond:
            stock = self._stock.setdefault(folder, collections.deque())
            spare = stock.popleft() if stock else None
            target = self._target.get(folder, self.FIRST)
            if spare is None:
                target = self._target[folder] = min(self.STOCK, 2 * target)
            if len(stock) < target // 2 and folder not in self._wanted:
                self._wanted.add(folder)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="registry-cache-spares", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
            return spare

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._wanted))
                folder = next(iter(self._wanted))
                stock = self._stock.setdefault(folder, collections.deque())
                missing = self._target.get(folder, self.FIRST) - len(stock)
            made: list[Path] = []
            try:
                if folder not in self._swept:
                    self._swept.add(folder)
                    _sweep_spares(folder)
                folder.mkdir(parents=True, exist_ok=True)
                for _ in range(max(0, missing)):
                    spare = folder / f".spare-{uuidlib.uuid4().hex}"
                    os.close(os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                    made.append(spare)
                    if len(made) % 8 == 0:  # hand them out as they come
                        with self._cond:
                            stock.extend(made)
                        made = []
            except OSError:
                pass  # the cache went away: writes fall back to the plain way
            finally:
                with self._cond:
                    stock.extend(made)
                    self._wanted.discard(folder)

    def target(self, folder: Path) -> int:
        """How many spares ``folder`` is stocked up to now."""
        with self._cond:
            return self._target.get(folder, self.FIRST)

    def remove_all(self) -> None:
        with self._cond:
            spares = [spare for stock in self._stock.values() for spare in stock]
            for stock in self._stock.values():
                stock.clear()
        for spare in spares:
            with contextlib.suppress(OSError):
                spare.unlink()

    def _forget(self) -> None:
        # a forked child must not write into the parent's spares
        self._cond = threading.Condition()
        self._stock = {}
        self._target = {}
        self._wanted = set()
        self._swept = set()
        self._thread = None


def _sweep_spares(folder: Path) -> None:
    """Remove the spares of processes that died (old ones: a live process
    may hold a spare for as long as it runs, and then only loses it)."""
    cutoff = time.time() - STALE_TMP_SECONDS
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.name.startswith(".spare-") and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)


_spares = _Spares()
atexit.register(_spares.remove_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_spares._forget)
