"""RegistryCore: versions, conflicts, batches and queries over one backend.

The public ``AsyncRegistry`` (registry/_async.py) is this class with a
constructor that also opens location strings; the Store and the sync facade
build on it. Helpers live beside it: the settings file (settings.py), where a
version's metadata is found (metadata.py), saving (artifacts.py), loading
(loading.py), the commit protocol (mvcc.py) and batch plumbing (batches.py,
fanout.py); aliases, retention and find come from the Lifecycle mixin
(lifecycle.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import msgspec

from registry.backends.base import Backend
from registry.core import mvcc
from registry.core.aliases import is_alias
from registry.core.batches import InFlight, per_item, skip_existing
from registry.core.cache import Cache, default_cache_root
from registry.core.cache_control import CacheControl
from registry.core.fanout import Progress, fanout
from registry.core.janitor import DEFAULT_GRACE, JanitorReport, run_janitor
from registry.core.lifecycle import Lifecycle
from registry.core.loading import read_artifacts
from registry.core.metadata import explicit_version, find_meta
from registry.core.names import parse_key, split_key, validate_name
from registry.core.offline import (
    cached_meta,
    offline_from_environment,
    refuse,
)
from registry.core.queries import Queries
from registry.core.retention import Policies
from registry.core.saving import save_version
from registry.core.settings import StoredSettings
from registry.core.types import (
    BatchResult,
    ObjectMeta,
    RegistryOptions,
    RegistrySettings,
    Verify,
    check_verify,
)
from registry.core.versions import LATEST, Version
from registry.exceptions import (
    RegistryConfigError,
    RegistryIntegrityError,
    RegistryObjectNotFound,
)
from registry.materializers.base import MaterializerProtocol
from registry.materializers.lookup import (
    candidates,
    class_path,
    materializer_path,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)
R = TypeVar("R")

OnConflict = Literal["skip", "overwrite"]
MaterializerArg = str | type | MaterializerProtocol


class RegistryCore(Queries, CacheControl, Lifecycle):
    """A versioned object registry on one backend (see ``AsyncRegistry``).

    ``mutable`` and ``version_objects`` are stored with the registry when it is
    created; passing a value that contradicts the stored one raises. Remote
    backends keep a local cache (unless ``use_cache=False``), capped at
    ``cache_max_bytes`` and ``cache_max_entries`` (least recently used first).
    """

    def __init__(self, backend: Backend, options: RegistryOptions | None = None) -> None:
        if not isinstance(backend, Backend):
            raise TypeError(f"backend must be a registry Backend, got {type(backend).__name__}")
        options = options or RegistryOptions()
        self.backend = backend
        self.allow_pickle = options.allow_pickle
        self.verify: Verify = options.verify
        self.inline_limit = options.inline_limit
        # A local backend is read in place: a cache would only copy it.
        self._cache = (
            Cache(
                Path(options.cache_dir) if options.cache_dir is not None else default_cache_root(),
                backend.identity,
                max_bytes=options.cache_max_bytes,
                max_entries=options.cache_max_entries,
            )
            if backend.is_remote and options.use_cache is not False
            else None
        )
        wanted = options.offline if options.offline is not None else offline_from_environment()
        # Offline only means something where requests would leave the machine.
        self.offline = bool(wanted) and backend.is_remote
        if self.offline and self._cache is None:
            raise RegistryConfigError(
                "offline=True answers from the local cache, and use_cache=False keeps none; "
                "drop one of the two"
            )
        self._stored = StoredSettings(
            backend,
            mutable=options.mutable,
            version_objects=options.version_objects,
            cache=self._cache,
            offline=self.offline,
        )
        self._policies = Policies(backend)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend.uri!r})"

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> RegistryCore:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend's clients; the registry may be reopened by using it."""
        if self._cache is not None:
            self._cache.leases.release_all()
        if not self.offline:  # offline, the backend was never opened
            await self.backend.aclose()

    def _batch(self) -> contextlib.AbstractContextManager[None]:
        """The metadata a batch caches lands in one file (core/cache_packs.py)."""
        return self._cache.batch() if self._cache is not None else contextlib.nullcontext()

    async def _open(self) -> RegistrySettings:
        return await self._stored.open()

    @property
    def mutable(self) -> bool | None:
        """Stored setting (None until the registry has been opened)."""
        current = self._stored.current
        return current.mutable if current else None

    @property
    def version_objects(self) -> bool | None:
        current = self._stored.current
        return current.version_objects if current else None

    # -- save ------------------------------------------------------------------

    @overload
    async def save(
        self,
        name: str,
        obj: Any,
        *,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> str: ...

    @overload
    async def save(
        self,
        name: list[str],
        obj: Sequence[Any],
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
        progress: Progress | None = None,
    ) -> BatchResult[str]: ...

    async def save(
        self,
        name: str | list[str],
        obj: Any,
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
        progress: Progress | None = None,
    ) -> str | BatchResult[str]:
        """Save ``obj`` under ``name``; returns the version saved.

        A list of names saves a batch (``obj`` a list of the same length) and
        returns a BatchResult of versions, one per input, never raising for a
        per-item failure; ``progress(done, total)`` is called as items finish.
        """
        if on_conflict not in ("skip", "overwrite"):
            raise ValueError(f"on_conflict must be 'skip' or 'overwrite', got {on_conflict!r}")
        if self.offline:
            raise refuse("save")
        settings = await self._open()
        if on_conflict == "overwrite" and not settings.mutable:
            raise RegistryConfigError(
                "on_conflict='overwrite' needs a mutable registry; this one was created "
                "immutable (versions are write-once). Save under a new version instead."
            )
        mat = materializer_path(materializer) if materializer is not None else None
        if isinstance(name, list):
            if not isinstance(obj, list | tuple) or len(obj) != len(name):
                raise ValueError("a batch save needs a list of objects, one per name")
            versions = per_item(version, len(name), "version")
            metas = per_item(metadata, len(name), "metadata")
            items = list(zip(name, obj, versions, metas, strict=True))

            async def one(item: tuple[str, Any, str | None, Mapping[str, Any] | None]) -> str:
                return await self._save_one(item[0], item[1], item[2], item[3], mat, on_conflict)

            with self._batch():
                saved = await fanout(one, items, limit=self.backend.concurrency, progress=progress)
            return skip_existing(saved) if on_conflict == "skip" else saved
        if isinstance(version, list | tuple):
            raise TypeError("version must be a str for a single save (lists are for batches)")
        return await self._save_one(name, obj, version, metadata, mat, on_conflict)  # type: ignore[arg-type]

    async def _save_one(
        self,
        name: str,
        obj: Any,
        version: str | None,
        metadata: Mapping[str, Any] | None,
        materializer: str | None,
        on_conflict: OnConflict,
    ) -> str:
        validate_name(name)
        settings = await self._open()
        explicit = explicit_version(version, settings)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        try:  # fail before any upload, not at the commit
            msgspec.json.encode(metadata)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
        if materializer is None:
            choices = candidates(obj, settings.materializers)
            if len(choices) == 1:  # only pickle left: maybe another process registered one
                settings = await self._stored.refresh()
                choices = candidates(obj, settings.materializers)
        else:
            choices = [materializer]
        saved = await save_version(
            self.backend,
            self._cache,
            name,
            obj,
            choices,
            explicit=explicit,
            metadata=metadata,
            inline_limit=self.inline_limit,
            overwrite=on_conflict == "overwrite",
            unversioned=not settings.version_objects,
            headed=settings.heads,
        )
        await self._retain_after_save(name)
        return saved

    async def _each(
        self,
        names: list[str],
        version: Any,
        one: Callable[[str, Any], Awaitable[R]],
        progress: Progress | None = None,
    ) -> BatchResult[R]:
        """Run ``one(name, version)`` for a batch, ``version`` broadcast or one
        per name, at most the backend's concurrency at once; the metadata it
        caches lands in one file."""
        items = list(zip(names, per_item(version, len(names), "version"), strict=True))

        async def run(item: tuple[str, Any]) -> R:
            return await one(*item)

        with self._batch():
            return await fanout(run, items, limit=self.backend.concurrency, progress=progress)

    # -- load ------------------------------------------------------------------

    @overload
    async def load(
        self,
        name: str,
        *,
        version: str = LATEST,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any: ...

    @overload
    async def load(
        self,
        name: list[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        progress: Progress | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BatchResult[Any]: ...

    async def load(
        self,
        name: str | list[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        progress: Progress | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Load a version (default: the latest). A list of names loads a batch.

        ``verify``: "none" trusts stored bytes, "integrity" (default) checks
        every file's sha256 against the metadata, "full" also re-reads remote
        metadata past any cache (the same as "integrity" on local disk).
        ``options`` go to the materializer's load, e.g. ``{"map_location":
        "cuda:0"}`` for torch tensors (a TypeError names the ones it takes).
        """
        level = check_verify(verify or self.verify)
        if isinstance(name, list):
            return await self._each(
                name,
                version,
                lambda n, v: self._load_one(n, v or LATEST, level, options),
                progress,
            )
        if not isinstance(version, str):
            raise TypeError("version must be a str for a single load (lists are for batches)")
        return await self._load_one(name, version, level, options)

    async def _load_one(
        self,
        name: str,
        version: str,
        verify: Verify,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        started = time.perf_counter()
        name, version = split_key(name, version)
        meta = await self._meta(name, version, verify)
        try:
            obj = await self._read(meta, verify, options)
        except RegistryIntegrityError as exc:
            if self._cache is None or self.offline or verify == "full":
                raise
            # The cached metadata may be the damaged part: read it again from
            # the backend, and load once more with that.
            logger.warning("%s@%s: cached metadata dropped and read again (%s)", name, version, exc)
            self._cache.drop_meta(name, Version(meta.version).key)
            meta = await self._meta(name, version, "full")
            obj = await self._read(meta, verify, options)
        if logger.isEnabledFor(logging.DEBUG):
            log_loaded(logger, name, version, meta, verify, self.backend.uri, started)
        return obj

    async def _read(
        self, meta: ObjectMeta, verify: Verify, options: Mapping[str, Any] | None = None
    ) -> Any:
        settings = await self._open()
        return await read_artifacts(
            self.backend,
            meta,
            verify=verify,
            allow_pickle=self.allow_pickle,
            cache=self._cache,
            trusted_materializers=settings.materializers.values(),
            registered_classes=settings.materializers.keys(),
            options=options,
            offline=self.offline,
        )

    async def iter_load(
        self,
        names: Sequence[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        limit: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Yield ``(name, obj)`` as each load finishes (not in input order).

        At most ``limit`` loads are in flight (default: the backend's
        concurrency), so memory stays bounded however many names are given.
        The first failure is raised after cancelling the loads in flight.
        """
        level = check_verify(verify or self.verify)
        versions = per_item(version, len(names), "version")

        async def one(item_name: str, item_version: str | None) -> tuple[str, Any]:
            loaded = await self._load_one(item_name, item_version or LATEST, level, options)
            return item_name, loaded

        pairs = zip(names, versions, strict=True)
        width = max(1, limit or self.backend.concurrency)
        stream = InFlight(one, pairs, width)
        try:
            async for pair in stream:
                yield pair
        finally:  # a consumer that stops early (or a failure) cancels the loads in flight
            await stream.aclose()

    async def _meta(self, name: str, version: str, verify: Verify | None = None) -> ObjectMeta:
        """Committed metadata of a version ("latest" resolved by listing)."""
        validate_name(name)
        settings = await self._open()
        if is_alias(version):
            return await self._alias_meta(name, version, verify)
        if self.offline:
            assert self._cache is not None
            return cached_meta(self._cache, settings, name, version)
        return await find_meta(
            self.backend, self._cache, settings, name, version, verify or self.verify
        )

    # -- delete ----------------------------------------------------------------

    async def delete(
        self,
        name: str | list[str],
        *,
        version: str | Sequence[str | None] | None = None,
    ) -> BatchResult[None] | None:
        """Delete one version, or every version when ``version`` is None.

        The version's metadata becomes a tombstone (its number is never reused
        by auto-increment) and its files are removed by the janitor after the
        grace period, so readers already loading it still finish.
        """
        await self._open()
        if isinstance(name, list):
            return await self._each(name, version, self._delete_one)
        if isinstance(version, list | tuple):
            raise TypeError("version must be a str or None for a single delete")
        await self._delete_one(name, version)  # type: ignore[arg-type]
        return None

    async def _delete_one(self, name: str, version: str | None) -> None:
        validate_name(name)
        if self.offline:
            raise refuse("delete")
        if version is None:
            live = await mvcc.live_versions(self.backend, name)
            if not live:
                raise RegistryObjectNotFound(f"no object named {name!r} in {self.backend.uri}")
            targets = [v for v, _ in live]
        else:
            targets = [Version((await self._meta(name, version, "full")).version)]
        await self._refuse_if_aliased(name, targets)
        for target in targets:
            await mvcc.tombstone(self.backend, name, target)
            if self._cache is not None:
                self._cache.drop_meta(name, target.key)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("deleted %s@%s from %s", name, [str(t) for t in targets], self.backend.uri)

    # -- dict-like helpers --------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """``load`` by ``"name"`` or ``"name@version"``; ``default`` if missing."""
        name, version = parse_key(key)
        try:
            return await self.load(name, version=version)
        except RegistryObjectNotFound:
            return default

    async def keys(self) -> list[str]:
        return await self.list_objects()

    # -- materializers and maintenance -------------------------------------------

    async def register_materializer(
        self, object_class: str | type, materializer: MaterializerArg
    ) -> None:
        """Use ``materializer`` for ``object_class`` (and its subclasses), in
        every process: the pair is stored in the registry with compare-and-swap.
        """
        cls_path = object_class if isinstance(object_class, str) else class_path(object_class)
        if not isinstance(cls_path, str) or "." not in cls_path:
            raise ValueError(
                f"object_class must be a class or its import path 'module.Class', got {object_class!r}"
            )
        if self.offline:
            raise refuse("register_materializer")
        await self._stored.register_materializer(cls_path, materializer_path(materializer))

    async def registered_materializers(self) -> dict[str, str]:
        """The stored class -> materializer table (built-ins not included)."""
        return dict((await self._stored.refresh()).materializers)

    async def janitor(self, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> JanitorReport:
        """Remove uuid folders that no version references (see core.janitor)."""
        if self.offline:
            raise refuse("janitor")
        await self._open()
        return await run_janitor(self.backend, grace=grace, dry_run=dry_run)


def log_loaded(
    log: logging.Logger,
    name: str,
    version: str,
    meta: ObjectMeta,
    verify: Verify,
    source: str,
    started: float,
) -> None:
    """The DEBUG line of a finished load (``started``: its perf_counter)."""
    log.debug(
        "loaded %s@%s (asked for %s): %d bytes, verify=%s, from %s in %.1f ms",
        name,
        meta.version,
        version,
        meta.size,
        verify,
        source,
        (time.perf_counter() - started) * 1000,
    )
