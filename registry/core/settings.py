"""``_registry.json``: the settings a registry is created with, and its
materializer table.

Created on first use with create-if-absent (two processes opening a new
registry agree on one file), compared with what the caller asked for, and
changed only by compare-and-swap, so ``register_materializer`` needs no lock.
"""

from __future__ import annotations

import msgspec

from registry.backends.base import Backend
from registry.core.cache import Cache
from registry.core.layout import SETTINGS_KEY
from registry.core.types import RegistrySettings, settings_decoder
from registry.exceptions import (
    ObjectNotFound,
    PreconditionFailed,
    RegistryConfigError,
    RegistryCorruptMetadata,
)


class StoredSettings:
    """One registry's settings file, read once and cached in memory."""

    def __init__(
        self,
        backend: Backend,
        *,
        mutable: bool | None,
        version_objects: bool | None,
        cache: Cache | None = None,
        offline: bool = False,
    ) -> None:
        self.backend = backend
        self._requested = {"mutable": mutable, "version_objects": version_objects}
        self._cache = cache  # keeps a copy for offline use
        self._offline = offline
        self._kept: bytes | None = None  # the copy last written to the cache
        self.current: RegistrySettings | None = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["current"] = None  # another process reads it again
        state["_kept"] = None
        return state

    async def open(self) -> RegistrySettings:
        """The settings, creating the file if the registry is new."""
        if self.current is not None:
            return self.current
        if self._offline:
            self.current = self._cached() or RegistrySettings()
            return self.current
        settings = await self.read()
        if settings is None:
            fresh = RegistrySettings(
                mutable=bool(self._requested["mutable"]),
                version_objects=bool(self._requested["version_objects"]),
                heads=True,
            )
            try:
                encoded = msgspec.json.encode(fresh)
                await self.backend.put(SETTINGS_KEY, encoded, mode="create")
                self._keep_copy(encoded)
                settings = fresh
            except PreconditionFailed:  # another process created it first
                settings = await self.read()
                assert settings is not None
        for field, wanted in self._requested.items():
            stored = getattr(settings, field)
            if wanted is not None and wanted != stored:
                raise RegistryConfigError(
                    f"registry at {self.backend.uri} was created with {field}={stored}; "
                    f"it cannot be reopened with {field}={wanted} (omit the argument to "
                    "use the stored value)"
                )
        self.current = settings
        return settings

    async def refresh(self) -> RegistrySettings:
        """Read the file again (another process may have registered materializers)."""
        fresh = await self.read()
        if fresh is not None:
            self.current = fresh
        return await self.open()

    def _keep_copy(self, data: bytes) -> None:
        """Keep the file in the cache for offline use; rewritten only when it
        changed (refresh() runs on saves that found no materializer)."""
        if self._cache is not None and data != self._kept:
            self._cache.write_settings(data)
            self._kept = data

    def _cached(self) -> RegistrySettings | None:
        """The copy kept by the cache (None: never opened online, or damaged)."""
        data = self._cache.read_settings() if self._cache is not None else None
        if data is None:
            return None
        try:
            return settings_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def read(self) -> RegistrySettings | None:
        if self._offline:
            return self._cached()
        try:
            data = await self.backend.get(SETTINGS_KEY)
        except ObjectNotFound:
            return None
        self._keep_copy(data)
        try:
            return settings_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RegistryCorruptMetadata(
                f"{self.backend.uri}/{SETTINGS_KEY} is corrupt ({exc}); restore it from a backup"
            ) from None

    async def register_materializer(self, class_path: str, materializer_path: str) -> None:
        """Add ``class_path -> materializer_path`` to the table, merging with
        concurrent registrations (compare-and-swap on the file's etag)."""
        await self.open()
        while True:
            head = await self.backend.head(SETTINGS_KEY)
            current = await self.read()
            if head is None or current is None:
                raise RegistryCorruptMetadata(f"{self.backend.uri}/{SETTINGS_KEY} disappeared")
            table = dict(current.materializers)
            table[class_path] = materializer_path
            updated = msgspec.structs.replace(current, materializers=table)
            try:
                await self.backend.put(
                    SETTINGS_KEY, msgspec.json.encode(updated), if_match=head.etag
                )
            except PreconditionFailed:
                continue  # someone else changed the table: merge again
            self.current = updated
            self._keep_copy(msgspec.json.encode(updated))
            return
