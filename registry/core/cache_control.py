"""The local-cache half of the registry API: prefetch, inspect, trim, clear.

Mixed into RegistryCore (registry.py), which supplies the backend, the cache
(None for local registries and ``use_cache=False``: then these are no-ops)
and version resolution. The cache itself is cache.py and its neighbours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.to_thread

from registry.backends.base import Backend
from registry.core.cache import Cache, CacheInfo, PruneReport
from registry.core.fanout import Progress
from registry.core.loading import prefetch_files
from registry.core.offline import refuse
from registry.core.types import BatchResult, ObjectMeta, Verify
from registry.core.versions import LATEST

R = TypeVar("R")


class CacheControl:
    """prefetch, cache_info, prune_cache and clear_cache (see the module docstring)."""

    backend: Backend
    offline: bool
    verify: Verify
    _cache: Cache | None

    if TYPE_CHECKING:

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

    @overload
    async def prefetch(self, name: str, *, version: str = LATEST) -> str: ...

    @overload
    async def prefetch(
        self,
        name: list[str],
        *,
        version: str | Sequence[str] = LATEST,
        progress: Progress | None = None,
    ) -> BatchResult[str]: ...

    async def prefetch(
        self,
        name: str | list[str],
        *,
        version: str | Sequence[str] = LATEST,
        progress: Progress | None = None,
    ) -> str | BatchResult[str]:
        """Fill the local cache without building the objects, so a job can warm
        a node before it goes offline; returns the version fetched (a list of
        names: a BatchResult). Files are checked as ``verify`` says. A no-op
        without a cache (local registries are read in place)."""
        if self.offline:
            raise refuse("prefetch")
        if isinstance(name, list):
            return await self._each(
                name, version, lambda n, v: self._prefetch_one(n, v or LATEST), progress
            )
        if not isinstance(version, str):
            raise TypeError("version must be a str for a single prefetch (lists are for batches)")
        return await self._prefetch_one(name, version)

    async def _prefetch_one(self, name: str, version: str) -> str:
        meta = await self._meta(name, version, "full")  # the current metadata, now cached
        if self._cache is not None and meta.inline is None:
            await prefetch_files(self.backend, self._cache, meta, self.verify)
        return meta.version

    async def clear_cache(self) -> None:
        """Empty this registry's local cache (remote backends only; else a no-op)."""
        if self._cache is not None:
            await anyio.to_thread.run_sync(self._cache.clear)

    async def cache_info(self) -> CacheInfo:
        """What the local cache holds (entries least recently used first)."""
        if self._cache is None:
            return CacheInfo(None, [], None, None)
        return await anyio.to_thread.run_sync(self._cache.info)

    async def prune_cache(
        self, max_bytes: int | None = None, older_than: float | None = None
    ) -> PruneReport:
        """Drop cache entries unused for ``older_than`` seconds, then the least
        recently used until at most ``max_bytes`` remain."""
        if self._cache is None:
            return PruneReport([])
        cache = self._cache
        return await anyio.to_thread.run_sync(
            lambda: cache.prune(max_bytes=max_bytes, older_than=older_than)
        )
