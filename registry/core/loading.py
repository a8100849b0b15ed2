"""Stored artifacts back into objects, with integrity checks.

Inlined objects decode straight from the metadata. Uuid folders are read in
place on a local disk, from the cache (or downloaded into it) for remote
backends, and through a temporary folder otherwise. Large objects whose
materializer reads untrusted bytes safely are hashed while they load.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import anyio.to_thread

from registry._runner import on_own_loop
from registry.backends.base import Backend
from registry.core.artifacts import ON_LOOP_BYTES
from registry.core.cache import Cache
from registry.core.fetching import check_entry, download, fetch_into_cache
from registry.core.layout import objects_folder
from registry.core.types import ObjectMeta, Verify
from registry.core.verified import hash_checked
from registry.exceptions import (
    PickleRefused,
    RegistryCorruptMetadata,
    RegistryIntegrityError,
)
from registry.materializers.base import (
    BlobMaterializer,
    MaterializerProtocol,
    check_load_options,
    entry_for,
    loads_untrusted_safely,
    needs_pickle,
)
from registry.materializers.lookup import (
    get_materializer,
    import_path,
    is_trusted_materializer,
    known_class,
    safe_class,
)

logger = logging.getLogger(__name__)


@cache
def _import_class(path: str) -> type | None:
    try:
        cls = import_path(path)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) else None


def object_class(meta: ObjectMeta, allow_pickle: bool, registered: Collection[str]) -> type | None:
    """The stored object's class for the materializer. With allow_pickle=False
    the metadata is not trusted to choose code to import (a module's top
    level runs on import): see ``safe_class``."""
    if allow_pickle:
        return known_class(meta.object_class) or _import_class(meta.object_class)
    return safe_class(meta.object_class, registered)


def _verify_folder(meta: ObjectMeta, folder: Path, where: str, verify: Verify) -> None:
    """Hash the folder's files against ``meta``; under "integrity" a file this
    process hashed before and that is unchanged since is not read again
    (core/verified.py); "full" always reads."""
    remember = verify != "full"
    for rel in meta.files:
        path = folder / rel
        try:
            actual = hash_checked(path, remember=remember)
        except FileNotFoundError:
            raise RegistryIntegrityError(
                f"{where}: artifact {rel} is missing; restore it or save the object again"
            ) from None
        check_entry(meta, rel, actual, where)


_UUID_RE = re.compile(r"[0-9a-f]{32}")
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


def check_paths(meta: ObjectMeta, where: str) -> None:
    """Metadata names files and folders on disk: refuse anything that could
    point outside the version's folder (a tampered or hostile metadata file)."""
    problem = None
    if not _UUID_RE.fullmatch(meta.uuid):
        problem = f"uuid {meta.uuid!r} is not 32 hex digits"
    for rel in meta.files:
        parts = rel.split("/")
        if "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
            problem = f"file path {rel!r} is not a plain relative path"
    if problem is not None:
        raise RegistryCorruptMetadata(f"{where}: {problem}; the metadata file was tampered with")


async def read_artifacts(
    backend: Backend,
    meta: ObjectMeta,
    *,
    verify: Verify,
    allow_pickle: bool,
    cache: Cache | None = None,
    trusted_materializers: Collection[str] = (),
    registered_classes: Collection[str] = (),
    options: Mapping[str, Any] | None = None,
    offline: bool = False,
) -> Any:
    """Load the object ``meta`` describes.

    With ``allow_pickle=False`` the metadata is not trusted to name code: only
    built-in materializers, ``trusted_materializers`` (the registered ones) and
    classes handed over in this process are imported, and the object's class
    only as ``object_class`` allows. ``options`` go to the materializer's load
    as keywords (``map_location=...``); it must list them in ``load_options``.
    ``offline``: use only what the cache holds (RegistryObjectNotFound for the rest).
    """
    where = f"{meta.name}@{meta.version}"
    materializer, options, cls = _prepare(
        meta, where, allow_pickle, trusted_materializers, registered_classes, options
    )
    if meta.inline is not None:
        if len(meta.inline) <= ON_LOOP_BYTES:
            return _load_inline(materializer, meta, cls, options, verify, where)
        return await anyio.to_thread.run_sync(
            _load_inline, materializer, meta, cls, options, verify, where
        )

    reading = _Reading(
        materializer, _with_options(materializer, options), meta, cls, where, options
    )
    prefix = objects_folder(meta.name, meta.uuid)
    in_place = backend.local_path(prefix)
    if in_place is not None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: read in place from %s", where, in_place)
        if _small_blob(reading) and getattr(backend, "inline_reads", False):
            return _load_small_blob(reading, in_place, verify)
        return await _load_verified(reading, in_place, verify)
    if cache is not None:
        return await _load_cached(backend, cache, reading, verify, offline)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s: no cache, downloading %d files from %s", where, len(meta.files), backend.uri
        )
    folder = await anyio.to_thread.run_sync(lambda: Path(tempfile.mkdtemp()))
    try:
        # checked as it downloads (each file hashed as it is written)
        await download(backend, meta, folder, where, check=verify != "none")
        return await _load_verified(reading, folder, "none")
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


def _prepare(
    meta: ObjectMeta,
    where: str,
    allow_pickle: bool,
    trusted_materializers: Collection[str],
    registered_classes: Collection[str],
    options: Mapping[str, Any] | None,
) -> tuple[MaterializerProtocol, Mapping[str, Any], type | None]:
    """The materializer, the load options and the class for ``meta``, once
    the metadata passed the checks that keep it from naming untrusted code
    or paths outside its folder."""
    check_paths(meta, where)
    if not allow_pickle and not is_trusted_materializer(meta.materializer, trusted_materializers):
        raise PickleRefused(
            f"{where} names materializer {meta.materializer!r}, which is neither built in nor "
            "registered; with allow_pickle=False the registry does not import code named by "
            "metadata: register it with register_materializer() or open with allow_pickle=True"
        )
    materializer = get_materializer(meta.materializer)
    options = dict(options) if options else _NO_OPTIONS
    if options:
        check_load_options(materializer, meta.materializer, options)
    if needs_pickle(materializer, options) and not allow_pickle:
        hint = getattr(materializer, "pickle_refused_hint", "")
        raise PickleRefused(
            f"{where} was stored with pickle ({meta.object_class}) and this registry has "
            "allow_pickle=False; open it with allow_pickle=True if you trust its writers"
            + (f"; {hint}" if hint else "")
        )
    cls = object_class(meta, allow_pickle, registered_classes)
    return materializer, options, cls


def _load_inline(
    materializer: MaterializerProtocol,
    meta: ObjectMeta,
    cls: type | None,
    options: Mapping[str, Any],
    verify: Verify,
    where: str,
) -> Any:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s: inline in its metadata (no file to read)", where)
    data = meta.inline
    assert data is not None and isinstance(materializer, BlobMaterializer)
    if verify != "none":
        (rel,) = meta.files
        check_entry(meta, rel, entry_for(data), where)
    return materializer.loads(data, cls, **options)


def read_cached_now(
    meta: ObjectMeta,
    cache: Cache,
    *,
    verify: Verify,
    allow_pickle: bool,
    trusted_materializers: Collection[str] = (),
    registered_classes: Collection[str] = (),
    options: Mapping[str, Any] | None = None,
) -> tuple[bool, Any]:
    """``read_artifacts`` for a remote registry's cache hit, in the calling
    thread with no event loop: (True, the object) when it is inlined in
    ``meta`` or its files are cached and sound; (False, None) when the async
    load must run (files not cached, or damaged: then dropped with a warning,
    as that load does, or large and checked beside the load in two threads).
    Never sends a request, so it needs none of the clients bound to a loop."""
    where = f"{meta.name}@{meta.version}"
    materializer, options, cls = _prepare(
        meta, where, allow_pickle, trusted_materializers, registered_classes, options
    )
    if meta.inline is not None:
        return True, _load_inline(materializer, meta, cls, options, verify, where)
    reading = _Reading(
        materializer, _with_options(materializer, options), meta, cls, where, options
    )
    if _parallel(reading, verify):
        return False, None
    return _load_hit(cache, reading, verify)


async def prefetch_files(backend: Backend, cache: Cache, meta: ObjectMeta, verify: Verify) -> None:
    """The version's files into the cache, checked unless ``verify`` is "none"."""
    where = f"{meta.name}@{meta.version}"
    check_paths(meta, where)
    check = verify != "none"
    with cache.reading(meta.name, meta.uuid):
        folder, fresh = await fetch_into_cache(
            backend, cache, meta, where, offline=False, check=check
        )
        if not check or fresh:  # a fresh download was checked as it landed
            return
        try:
            await anyio.to_thread.run_sync(_verify_folder, meta, folder, where, verify)
        except RegistryIntegrityError:
            await anyio.to_thread.run_sync(cache.discard, meta.name, meta.uuid)
            logger.warning("%s: cached copy was damaged; fetched again", where)
            folder, fresh = await fetch_into_cache(
                backend, cache, meta, where, offline=False, check=True
            )
            if not fresh:
                await anyio.to_thread.run_sync(_verify_folder, meta, folder, where, verify)


async def _load_cached(
    backend: Backend, cache: Cache, reading: _Reading, verify: Verify, offline: bool
) -> Any:
    """Load through the cache, holding the entry against eviction. A cached
    copy that fails its check is dropped and fetched again (the damage is only
    looked for when ``verify`` is not "none"); a fresh copy that fails raises."""
    meta, where = reading.meta, reading.where
    if not _parallel(reading, verify):
        # The common case in one thread hop: hold, look up, check and load.
        hit, obj = await anyio.to_thread.run_sync(_load_hit, cache, reading, verify)
        if hit:
            return obj
    with cache.reading(meta.name, meta.uuid):
        while True:
            folder, fresh = await fetch_into_cache(
                backend, cache, meta, where, offline=offline, check=verify != "none"
            )
            try:
                # A fresh download was checked as it landed; a cached copy is
                # verified while loading (large, safe materializers) or before.
                return await _load_verified(reading, folder, "none" if fresh else verify)
            except RegistryIntegrityError as exc:
                await anyio.to_thread.run_sync(cache.discard, meta.name, meta.uuid)
                if fresh or offline:
                    raise
                logger.warning("%s: cached copy dropped and fetched again (%s)", where, exc)


PARALLEL_VERIFY_BYTES = 8 * 1024 * 1024


Loader = Callable[[Path, "type | None"], Any]


def _with_options(materializer: MaterializerProtocol, options: Mapping[str, Any]) -> Loader:
    if not options:
        return materializer.load
    return functools.partial(materializer.load, **options)


@dataclass(frozen=True, slots=True)
class _Reading:
    """One version being loaded: how (the materializer, and its load with the
    caller's options), what, into which class, named how in errors."""

    materializer: MaterializerProtocol
    load: Loader
    meta: ObjectMeta
    cls: type | None
    where: str
    options: Mapping[str, Any]


def _parallel(reading: _Reading, verify: Verify) -> bool:
    """Whether the check runs beside the load (large, safely loaded objects)."""
    return (
        verify != "none"
        and reading.meta.size >= PARALLEL_VERIFY_BYTES
        and loads_untrusted_safely(reading.materializer)
    )


def _load_hit(cache: Cache, reading: _Reading, verify: Verify) -> tuple[bool, Any]:
    """(True, the object) from a sound cached copy; (False, None) when there
    is none (a damaged one is dropped and the caller fetches it again)."""
    meta = reading.meta
    with cache.reading(meta.name, meta.uuid):
        folder = cache.lookup(meta.name, meta.uuid)
        if folder is None:
            return False, None
        try:
            return True, _load_folder(reading, folder, verify)
        except RegistryIntegrityError as exc:
            logger.warning("%s: cached copy dropped and fetched again (%s)", reading.where, exc)
            cache.discard(meta.name, meta.uuid)
            return False, None


async def _load_verified(reading: _Reading, folder: Path, verify: Verify) -> Any:
    """Load from ``folder``, verifying first, or, for large objects whose
    materializer reads untrusted bytes safely, in a parallel thread (hashing
    releases the GIL, so both passes run at once on two cores)."""
    if not _parallel(reading, verify):
        if on_own_loop():  # the caller's thread waits for this call alone: no hop
            return _load_folder(reading, folder, verify)
        return await anyio.to_thread.run_sync(_load_folder, reading, folder, verify)
    verify_error: RegistryIntegrityError | None = None

    async def check() -> None:
        nonlocal verify_error
        try:
            await anyio.to_thread.run_sync(
                _verify_folder, reading.meta, folder, reading.where, verify
            )
        except RegistryIntegrityError as exc:
            verify_error = exc

    load_error: Exception | None = None
    result: Any = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(check)
        try:
            result = await anyio.to_thread.run_sync(_load_folder, reading, folder, "none")
        except Exception as exc:
            load_error = exc
    if verify_error is not None:  # explains a load error too: report it first
        raise verify_error
    if load_error is not None:
        raise load_error
    return result


def _small_blob(reading: _Reading) -> bool:
    """A one-file blob small enough to read, check and decode on the event
    loop: a hop to a worker thread costs more than that on a local disk."""
    materializer = reading.materializer
    return (
        reading.meta.size <= ON_LOOP_BYTES
        and isinstance(materializer, BlobMaterializer)
        and type(materializer).load is BlobMaterializer.load  # reads the one file, no more
        and len(reading.meta.files) == 1
    )


def _load_small_blob(reading: _Reading, folder: Path, verify: Verify) -> Any:
    """Read the blob once: its bytes are checked and decoded (no second read)."""
    meta, where = reading.meta, reading.where
    (rel,) = meta.files
    try:
        with open(folder / rel, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        raise RegistryIntegrityError(
            f"{where}: artifact {rel} is missing; restore it or save the object again"
        ) from None
    if verify != "none":
        check_entry(meta, rel, entry_for(data), where)
    materializer = reading.materializer
    assert isinstance(materializer, BlobMaterializer)
    return materializer.loads(data, reading.cls, **reading.options)


def _load_folder(reading: _Reading, folder: Path, verify: Verify) -> Any:
    if verify != "none":
        _verify_folder(reading.meta, folder, reading.where, verify)
    try:
        return reading.load(folder, reading.cls)
    except FileNotFoundError as exc:
        raise RegistryIntegrityError(f"{reading.where}: artifact missing ({exc})") from None
