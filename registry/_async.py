"""AsyncRegistry: the registry's async API. It is the core's RegistryCore
with a constructor that also opens location strings (registry/locations.py),
so the core itself only ever sees a Backend."""

from __future__ import annotations

import os

from registry.backends.base import Backend
from registry.core.registry import RegistryCore
from registry.core.types import (
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_INLINE_LIMIT,
    RegistryOptions,
    Verify,
)
from registry.locations import Location, resolve_backend


class AsyncRegistry(RegistryCore):
    """A versioned object registry on one backend.

    ``AsyncRegistry()`` uses local disk at ``default_root()``;
    ``AsyncRegistry("/some/folder")`` a local folder, ``"s3://bucket/prefix"``
    or ``"gs://bucket/prefix"`` a remote store; ``backend=`` any Backend.
    ``mutable`` and ``version_objects`` are stored with the registry when it is
    created; passing a value that contradicts the stored one raises.

    Remote backends keep a local cache (``use_cache`` None or True; False
    keeps no copy: every load reads the backend), capped at
    ``cache_max_bytes`` and ``cache_max_entries`` (least recently used first).
    ``offline=True`` (or ``REGISTRY_OFFLINE=1``) sends no request at all and
    answers from that cache.
    """

    def __init__(
        self,
        location: Location | None = None,
        *,
        backend: Backend | None = None,
        mutable: bool | None = None,
        version_objects: bool | None = None,
        allow_pickle: bool = True,
        verify: Verify = "integrity",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        use_cache: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES,
        cache_max_entries: int | None = None,
        offline: bool | None = None,
    ) -> None:
        # positional, in RegistryOptions' field order (the same as above)
        options = RegistryOptions(
            mutable, version_objects, allow_pickle, verify, inline_limit,
            use_cache, cache_dir, cache_max_bytes, cache_max_entries, offline,
        )  # fmt: skip
        super().__init__(resolve_backend(location, backend), options)

    async def __aenter__(self) -> AsyncRegistry:
        await self._open()
        return self
