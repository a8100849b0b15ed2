"""The query half of the registry API: has_object, info, list_objects,
list_versions.

Mixed into RegistryCore (registry.py), which supplies the backend, the
settings, version resolution (``_meta``) and batch fan-out (``_each``);
aliases come from Lifecycle (lifecycle.py). Online, queries list and read
the name's metadata folder (O(versions of that name), never of the
registry); offline they answer from the cache (offline.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from registry.backends.base import Backend
from registry.core import mvcc
from registry.core.aliases import is_alias
from registry.core.cache import Cache
from registry.core.fanout import Progress, fanout
from registry.core.layout import META_ROOT, meta_key, split_meta_key
from registry.core.metadata import version_key
from registry.core.names import validate_name
from registry.core.offline import cached_meta, cached_names, cached_versions
from registry.core.types import BatchResult, ObjectMeta, RegistrySettings, Verify
from registry.core.versions import LATEST, Version
from registry.exceptions import RegistryObjectNotFound

R = TypeVar("R")


class Queries:
    """What a registry holds (see the module docstring)."""

    backend: Backend
    offline: bool
    _cache: Cache | None

    if TYPE_CHECKING:

        async def _open(self) -> RegistrySettings: ...

        async def _meta(
            self, name: str, version: str, verify: Verify | None = None
        ) -> ObjectMeta: ...

        async def _each(
            self,
            names: list[str],
            version: Any,
            one: Callable[[str, Any], Awaitable[R]],
            progress: Progress | None = None,
        ) -> BatchResult[R]: ...

        async def _aliases_by_version(self, name: str) -> dict[str, list[str]]: ...

    async def has_object(
        self, name: str | list[str], version: str | Sequence[str] = LATEST
    ) -> bool | BatchResult[bool]:
        """Whether the version (default: any) exists. A list checks a batch."""
        await self._open()
        if isinstance(name, list):
            return await self._each(name, version, lambda n, v: self._has_one(n, v or LATEST))
        if not isinstance(version, str):
            raise TypeError("version must be a str for a single has_object")
        return await self._has_one(name, version)

    async def _has_one(self, name: str, version: str) -> bool:
        validate_name(name)
        settings = await self._open()
        if self.offline or is_alias(version):
            try:
                await self._meta(name, version)
            except RegistryObjectNotFound:
                return False
            return True
        if version == LATEST and settings.version_objects:
            found = await mvcc.latest_meta_bytes(self.backend, name, headed=settings.heads)
            return found is not None
        key = version_key(version, settings)
        info = await self.backend.head(meta_key(name, key))
        return info is not None and info.size > 0

    @overload
    async def info(self, name: str | None = None, version: str | None = None) -> dict[str, Any]: ...

    @overload
    async def info(
        self, name: list[str], version: str | Sequence[str] | None = None
    ) -> BatchResult[dict[str, Any]]: ...

    async def info(
        self,
        name: str | list[str] | None = None,
        version: str | Sequence[str] | None = None,
    ) -> dict[str, Any] | BatchResult[dict[str, Any]]:
        """Metadata as plain dicts.

        ``info(name, version)``: one version; ``info(name)``: {version: info}
        for every version of the name; ``info()``: {name: {version: info}}.
        """
        await self._open()
        if name is None:
            if version is not None:
                raise ValueError("info(version=...) needs a name")
            names = await self.list_objects()
            per_name = await fanout(self._info_all, names, limit=self.backend.concurrency)
            per_name.raise_first()
            return {n: v for n, v in zip(names, per_name.results, strict=True) if v}
        if isinstance(name, list):
            return await self._each(name, version, self._info_one)
        if isinstance(version, list | tuple):
            raise TypeError("version must be a str or None for a single info")
        return await self._info_one(name, version)  # type: ignore[arg-type]

    async def _info_one(self, name: str, version: str | None) -> dict[str, Any]:
        if version is None:
            found = await self._info_all(name)
            if not found:
                raise RegistryObjectNotFound(f"no object named {name!r} in {self.backend.uri}")
            return found
        info = (await self._meta(name, version)).to_info()
        pointed = await self._aliases_by_version(name)
        return {**info, "aliases": pointed.get(Version(info["version"]).key, [])}

    async def _info_all(self, name: str) -> dict[str, Any]:
        metas = await self._live_metas(name)
        pointed = await self._aliases_by_version(name) if metas else {}
        return {
            m.version: {**m.to_info(), "aliases": pointed.get(Version(m.version).key, [])}
            for m in metas
        }

    async def _live_metas(self, name: str) -> list[ObjectMeta]:
        validate_name(name)
        if self.offline:
            assert self._cache is not None
            settings = await self._open()
            found = cached_versions(self._cache, name)
            return [cached_meta(self._cache, settings, name, v.key) for v in found]
        live = await mvcc.live_versions(self.backend, name)

        async def read(version: Version) -> ObjectMeta | None:
            return await mvcc.read_meta(self.backend, name, version.key)

        metas = await fanout(read, [v for v, _ in live], limit=self.backend.concurrency)
        metas.raise_first()
        return [m for m in metas.results if m is not None]

    async def list_objects(self) -> list[str]:
        """Names with at least one live version, sorted."""
        await self._open()
        if self.offline:
            assert self._cache is not None
            return cached_names(self._cache)
        names: set[str] = set()
        async for entry in self.backend.list(META_ROOT):
            if isinstance(entry, str) or entry.size == 0:
                continue
            parsed = split_meta_key(entry.key)
            if parsed is not None:
                names.add(parsed[0])
        return sorted(names)

    async def list_versions(self, name: str) -> list[str]:
        """Live versions of ``name`` as first spelled, ascending by value."""
        await self._open()
        return [m.version for m in await self._live_metas(name)]
