"""AsyncStore: several registries behind one API, addressed by keys.

A key is ``[<mount>/]<name>[@<version>]``:

- ``"models/resnet@2"``: version 2 of ``resnet`` in the ``models`` mount;
- ``"models/resnet"``: its latest version (for a write: the next version);
- ``"resnet"``: unqualified. A read looks in every mount at once and needs
  exactly one hit (none: RegistryObjectNotFound, several:
  StoreAmbiguousObjectError). A save goes to the default mount. A delete is
  resolved like a read, so ``delete(k)`` removes what ``load(k)`` returns.

Every store has a ``temp`` mount: a versioned local registry in a temporary
folder that is removed by ``aclose()`` or when the store is garbage collected.
The store uses only the public AsyncRegistry API, so every backend works;
which mount a key goes to is decided by the mount table (routing.py).
Aliases, retention and find come from the StoreLifecycle mixin (lifecycle.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import anyio.to_thread

from registry._async import AsyncRegistry
from registry.backends.local import LocalBackend
from registry.core.batches import per_item
from registry.core.fanout import fanout
from registry.core.registry import MaterializerArg, OnConflict
from registry.core.types import BatchResult, Verify
from registry.core.versions import LATEST
from registry.exceptions import RegistryObjectNotFound
from registry.store.config import read_config_file, store_arguments
from registry.store.errors import (
    StoreKeyFormatError,
    StoreLocationNotFound,
    StoreReadOnlyError,
)
from registry.store.keys import (
    KEY_FORMAT,
    TEMP_MOUNT,
    StoreKey,
    parse_store_key,
    validate_mount_name,
    with_version,
)
from registry.store.lifecycle import StoreLifecycle
from registry.store.routing import (
    Mount,
    MountTable,
    Route,
    Routed,
    attempt,
    unqualified_keys,
)
from registry.store.transfer import StoreTransfer

__all__ = ["AsyncStore"]

R = TypeVar("R")
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------


def _tag(info: dict[str, Any], mount: str, one_version: bool) -> dict[str, Any]:
    """Add the mount to info dicts (one version's, or {version: info})."""
    if one_version:
        return {**info, "mount": mount}
    return {version: {**entry, "mount": mount} for version, entry in info.items()}


def _remove_temp(folder: Path, owner_pid: int) -> None:
    """The temp mount's folder belongs to the process that made it: a forked
    child dropping its copy of the store must not delete the parent's data."""
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)


# -- the store -------------------------------------------------------------------------


class AsyncStore(StoreTransfer, StoreLifecycle):
    """Registries mounted under names, addressed by ``[<mount>/]<name>[@<version>]``.

    ``mounts`` maps names to AsyncRegistry objects; those listed in
    ``read_only`` refuse writes. ``default_mount`` receives unqualified saves.
    """

    def __init__(
        self,
        mounts: Mapping[str, AsyncRegistry] | None = None,
        *,
        default_mount: str = TEMP_MOUNT,
        read_only: Iterable[str] = (),
    ) -> None:
        self._temp_dir = Path(tempfile.mkdtemp(prefix="registry-store-"))
        # The finalizer holds the path, not the store: gc removes the folder.
        self._finalizer = weakref.finalize(self, _remove_temp, self._temp_dir, os.getpid())
        try:
            temp = AsyncRegistry(LocalBackend(self._temp_dir, fsync=False), version_objects=True)
            self._table = MountTable(temp)
            read_only = set(read_only)
            for name, registry in (mounts or {}).items():
                self.add_mount(name, registry, read_only=name in read_only)
            if unknown := read_only - set(self._table.mounts):
                raise StoreLocationNotFound(f"read_only names unknown mounts: {sorted(unknown)}")
            self.set_default_mount(default_mount)
        except BaseException:
            self._finalizer()
            raise

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mounts={self.list_mounts()}, default={self._table.default!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "a store holds live registries and its own temp folder, so it cannot be "
            "pickled; build one in the other process (e.g. with from_config)"
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AsyncStore:
        """Build a store from a mapping (see ``store_arguments`` for the format)."""
        return cls(**store_arguments(config))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AsyncStore:
        """Build a store from a ``.toml`` or ``.json`` configuration file."""
        return cls.from_config(read_config_file(path))

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every mounted registry and remove the temp mount's folder."""
        if self._table.closed:
            return
        self._table.closed = True
        try:

            async def close(mount: Mount) -> None:
                await mount.registry.aclose()

            closed = await fanout(
                close, list(self._table.mounts.values()), limit=len(self._table.mounts)
            )
            closed.raise_first()
        finally:
            await anyio.to_thread.run_sync(self._finalizer)

    @property
    def closed(self) -> bool:
        return self._table.closed

    @property
    def temp_dir(self) -> Path:
        """The temp mount's folder (gone once the store is closed)."""
        return self._temp_dir

    # -- mounts ----------------------------------------------------------------------

    @property
    def default_mount(self) -> str:
        """The mount unqualified saves go to (always a mounted name)."""
        return self._table.default

    def list_mounts(self) -> list[str]:
        """Mounted names, ``temp`` first, then in the order they were added."""
        return list(self._table.mounts)

    def get_mount(self, name: str) -> AsyncRegistry:
        return self._table.mount(name).registry

    def is_read_only(self, name: str) -> bool:
        return self._table.mount(name).read_only

    def add_mount(self, name: str, registry: AsyncRegistry, read_only: bool = False) -> None:
        """Mount ``registry`` as ``name`` (letters, digits, '_' and '-')."""
        self._table.check_open()
        validate_mount_name(name)
        if not isinstance(registry, AsyncRegistry):
            raise TypeError(
                f"add_mount needs an AsyncRegistry, got {type(registry).__name__} "
                "(for a sync Registry pass registry.async_registry, or use Store)"
            )
        if name in self._table.mounts:
            raise ValueError(f"mount {name!r} exists; remove_mount({name!r}) first")
        self._table.mounts[name] = Mount(registry, bool(read_only))

    def remove_mount(self, name: str) -> None:
        """Unmount ``name`` (the registry is not closed). ``temp`` stays."""
        if name == TEMP_MOUNT:
            raise ValueError("the temp mount cannot be removed")
        self._table.mount(name)
        del self._table.mounts[name]
        if self._table.default == name:
            self._table.default = TEMP_MOUNT

    def set_default_mount(self, name: str) -> None:
        """Send unqualified saves to ``name`` (a writable mount)."""
        if self._table.mount(name).read_only:
            raise StoreReadOnlyError(
                f"mount {name!r} is read-only and cannot be the default mount", mount=name
            )
        self._table.default = name

    # -- save ------------------------------------------------------------------------

    @overload
    async def save(
        self,
        key: str,
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
        key: list[str],
        obj: Sequence[Any],
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> BatchResult[str]: ...

    async def save(
        self,
        key: str | list[str],
        obj: Any,
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> str | BatchResult[str]:
        """Save ``obj`` at ``key``; returns the version saved.

        The version given in the key (``"m/x@2"``) or as ``version=`` is used,
        else the mount's next version. An unqualified key saves to the default
        mount. A list of keys saves a batch (``obj`` a list, one per key),
        fanned out across mounts.
        """
        key = with_version(key, version)
        if isinstance(key, list):
            return await self._save_many(key, obj, metadata, materializer, on_conflict)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a dict for a single save (lists are for batches)")
        route = self._table.write_route(key, "save")
        return await route.registry.save(
            route.key.name,
            obj,
            version=route.key.version,
            metadata=metadata,
            materializer=materializer,
            on_conflict=on_conflict,
        )

    async def _save_many(
        self,
        keys: list[str],
        objs: Any,
        metadata: Any,
        materializer: MaterializerArg | None,
        on_conflict: OnConflict,
    ) -> BatchResult[str]:
        if not isinstance(objs, list | tuple) or len(objs) != len(keys):
            raise ValueError("a batch save needs a list of objects, one per key")
        metas = per_item(metadata, len(keys), "metadata", unit="keys")
        routes: list[Routed] = [attempt(self._table.write_route, k, "save") for k in keys]

        async def call(reg: AsyncRegistry, idx: list[int], pks: list[StoreKey]) -> BatchResult[str]:
            return await reg.save(
                [k.name for k in pks],
                [objs[i] for i in idx],
                version=[k.version for k in pks],
                metadata=[metas[i] for i in idx],
                materializer=materializer,
                on_conflict=on_conflict,
            )

        return await self._table.dispatch(routes, call)

    # -- load ------------------------------------------------------------------------

    @overload
    async def load(
        self,
        key: str,
        *,
        version: str | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any: ...

    @overload
    async def load(
        self,
        key: list[str],
        *,
        version: str | Sequence[str | None] | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BatchResult[Any]: ...

    async def load(
        self,
        key: str | list[str],
        *,
        version: str | Sequence[str | None] | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Load the object at ``key`` (no version: the latest). A list loads a batch.

        ``options`` go to the materializer's load, as in AsyncRegistry.load."""
        key = with_version(key, version)
        if isinstance(key, list):

            async def call(
                reg: AsyncRegistry, _: list[int], pks: list[StoreKey]
            ) -> BatchResult[Any]:
                versions = [k.version or LATEST for k in pks]
                return await reg.load(
                    [k.name for k in pks], version=versions, verify=verify, options=options
                )

            return await self._table.dispatch(await self._table.read_routes(key), call)
        route = await self._table.read_route(key)
        return await route.registry.load(
            route.key.name, version=route.key.version or LATEST, verify=verify, options=options
        )

    async def get(self, key: str, default: Any = None) -> Any:
        """``load(key)``, or ``default`` when no mount has it."""
        try:
            return await self.load(key)
        except RegistryObjectNotFound:
            return default

    # -- delete ----------------------------------------------------------------------

    async def delete(
        self, key: str | list[str], *, version: str | Sequence[str | None] | None = None
    ) -> BatchResult[None] | None:
        """Delete the key's version, or every version when it names none.

        An unqualified key is resolved like a read (the one mount holding it).
        """
        key = with_version(key, version)
        if isinstance(key, list):
            routes = [
                r if isinstance(r, BaseException) else attempt(self._table.writable, r, "delete")
                for r in await self._table.read_routes(key)
            ]

            async def call(
                reg: AsyncRegistry, _: list[int], pks: list[StoreKey]
            ) -> BatchResult[None]:
                result = await reg.delete([k.name for k in pks], version=[k.version for k in pks])
                assert result is not None
                return result

            return await self._table.dispatch(routes, call)
        route = self._table.writable(await self._table.read_route(key), "delete")
        await route.registry.delete(route.key.name, version=route.key.version)
        return None

    # -- queries ---------------------------------------------------------------------

    async def has_object(
        self, key: str | list[str], version: str | Sequence[str | None] | None = None
    ) -> bool | BatchResult[bool]:
        """Whether the key exists; unqualified: in any mount. A list checks a batch."""
        key = with_version(key, version)
        if isinstance(key, list):
            return await self._has_many(key)
        parsed = parse_store_key(key)
        if parsed.mount is None:
            (hits,) = await self._table.search([parsed], dict(self._table.mounts))
            if isinstance(hits, BaseException):
                raise hits
            return bool(hits)
        registry = self._table.mount(parsed.mount).registry
        return bool(await registry.has_object(parsed.name, parsed.version or LATEST))

    async def _has_many(self, keys: list[str]) -> BatchResult[bool]:
        parsed = [attempt(parse_store_key, k) for k in keys]
        unqualified = unqualified_keys(parsed)
        qualified = [i for i in range(len(keys)) if i not in dict(unqualified)]
        routes = [self._table.route_parsed(parsed[i]) for i in qualified]

        async def call(reg: AsyncRegistry, _: list[int], pks: list[StoreKey]) -> BatchResult[bool]:
            found = await reg.has_object([k.name for k in pks], [k.version or LATEST for k in pks])
            assert isinstance(found, BatchResult)
            return found

        direct = await self._table.dispatch(routes, call)
        searched = await self._table.search([k for _, k in unqualified], dict(self._table.mounts))
        results: list[bool | None] = [None] * len(keys)
        errors: dict[int, BaseException] = {}
        for pos, i in enumerate(qualified):
            results[i] = direct.results[pos]
            if pos in direct.errors:
                errors[i] = direct.errors[pos]
        for (i, _), hits in zip(unqualified, searched, strict=True):
            if isinstance(hits, BaseException):
                errors[i] = hits
            else:
                results[i] = bool(hits)
        return BatchResult(results, dict(sorted(errors.items())))

    @overload
    async def info(self, key: str | None = None, version: str | None = None) -> dict[str, Any]: ...

    @overload
    async def info(
        self, key: list[str], version: str | Sequence[str | None] | None = None
    ) -> BatchResult[dict[str, Any]]: ...

    async def info(
        self,
        key: str | list[str] | None = None,
        version: str | Sequence[str | None] | None = None,
    ) -> dict[str, Any] | BatchResult[dict[str, Any]]:
        """Metadata as dicts, each with its ``mount``.

        ``info("m/x@2")``: that version; ``info("m/x")``: {version: info};
        ``info()``: {"mount/name": {version: info}} over every mount.
        """
        if key is None:
            if version is not None:
                raise ValueError("info(version=...) needs a key")
            return await self._info_all()
        key = with_version(key, version)
        if isinstance(key, list):
            routes = await self._table.read_routes(key)

            async def call(
                reg: AsyncRegistry, _: list[int], pks: list[StoreKey]
            ) -> BatchResult[dict[str, Any]]:
                versions: Any = [k.version for k in pks]
                return await reg.info([k.name for k in pks], versions)

            batch = await self._table.dispatch(routes, call)
            for i, (route, found) in enumerate(zip(routes, batch.results, strict=True)):
                if found is not None and isinstance(route, Route):
                    batch.results[i] = _tag(found, route.mount, route.key.version is not None)
            return batch
        route = await self._table.read_route(key)
        found = await route.registry.info(route.key.name, route.key.version)
        return _tag(found, route.mount, route.key.version is not None)

    async def _info_all(self) -> dict[str, Any]:
        mounts = list(self._table.mounts.items())

        async def one(item: tuple[str, Mount]) -> dict[str, Any]:
            return await item[1].registry.info()

        per_mount = await fanout(one, mounts, limit=len(mounts))
        per_mount.raise_first()
        out: dict[str, Any] = {}
        for (mount, _), found in zip(mounts, per_mount.results, strict=True):
            for name, versions in (found or {}).items():
                out[f"{mount}/{name}"] = _tag(versions, mount, one_version=False)
        return dict(sorted(out.items()))

    async def list_objects(self, mount: str | None = None) -> list[str]:
        """``"mount/name"`` of every object (or of one mount's), sorted."""
        names = [mount] if mount is not None else list(self._table.mounts)
        registries = [self._table.mount(n).registry for n in names]

        async def one(registry: AsyncRegistry) -> list[str]:
            return await registry.list_objects()

        found = await fanout(one, registries, limit=len(registries))
        found.raise_first()
        return sorted(
            f"{n}/{obj}" for n, objs in zip(names, found.results, strict=True) for obj in objs or ()
        )

    async def list_versions(self, key: str) -> list[str]:
        """Live versions of the object at ``key`` (a key without '@version')."""
        route = await self._table.read_route(key)
        if route.key.version is not None:
            raise StoreKeyFormatError(
                f"list_versions takes a key without '@version', got {key!r}; {KEY_FORMAT}"
            )
        return await route.registry.list_versions(route.key.name)

    async def keys(self) -> list[str]:
        return await self.list_objects()
