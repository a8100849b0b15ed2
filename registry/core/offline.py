"""Answers from the local cache alone, for a registry that is offline.

Offline (``offline=True`` or ``REGISTRY_OFFLINE=1``), nothing is asked of the
backend: metadata, versions and files come from the cache of earlier online
use (or ``prefetch``). So ``"latest"`` is the greatest *cached* version, and
anything that needs the backend (saves, deletes, registrations, the janitor)
raises RegistryOfflineError.
"""

from __future__ import annotations

import os

from registry.core.cache import Cache
from registry.core.metadata import decode_for, version_key
from registry.core.types import ObjectMeta, RegistrySettings
from registry.core.versions import LATEST, Version, version_from_key
from registry.exceptions import RegistryObjectNotFound, RegistryOfflineError

_TRUE = {"1", "true", "yes", "on"}


def offline_from_environment() -> bool:
    return os.environ.get("REGISTRY_OFFLINE", "").strip().lower() in _TRUE


def refuse(operation: str) -> RegistryOfflineError:
    return RegistryOfflineError(
        f"{operation} needs the backend, but this registry is offline (offline=True or "
        "REGISTRY_OFFLINE=1): only cached versions can be read; go online to "
        f"{operation}"
    )


def cached_versions(cache: Cache, name: str) -> list[Version]:
    """Versions of ``name`` whose metadata is cached, ascending."""
    keys = cache.cached_versions().get(name, [])
    return sorted(v for v in map(version_from_key, keys) if v is not None)


def cached_names(cache: Cache) -> list[str]:
    return sorted(cache.cached_versions())


def cached_meta(cache: Cache, settings: RegistrySettings, name: str, version: str) -> ObjectMeta:
    """``name@version`` from the cache ("latest": the greatest cached version)."""
    if version == LATEST and settings.version_objects:
        found = cached_versions(cache, name)
        key = found[-1].key if found else None
    else:
        key = version_key(version, settings)
    data = cache.read_meta(name, key) if key is not None else None
    if data is None:
        what = f"{name!r}" if version == LATEST else f"{name}@{version}"
        raise RegistryObjectNotFound(
            f"{what} is not in the offline cache at {cache.root} (this registry is offline: "
            "offline=True or REGISTRY_OFFLINE=1); load or prefetch() it while online"
        )
    return decode_for(name, data, f"{cache.root}/meta/{name}@{key}.json")
