"""registry: an async-first, versioned object registry.

from registry import Registry
reg = Registry()                 # local disk by default
reg.save("my:model", model)      # -> "1"
model = reg.load("my:model")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from registry import exceptions as _exceptions  # tiny, and imports nothing

# Public name -> defining module. Imported on first access (PEP 562), so
# `import registry` stays cheap and never pulls in asyncio, boto or numpy.
_EXPORTS = {
    "Registry": "registry._sync",
    "Store": "registry.store.sync",
    "AsyncStore": "registry.store.core",
    "AsyncRegistry": "registry._async",
    "Backend": "registry.backends.base",
    "FileInfo": "registry.backends.base",
    "LocalBackend": "registry.backends.local",
    "MemoryBackend": "registry.backends.memory",
    "S3Backend": "registry.backends.s3",
    "GCSBackend": "registry.backends.gcs",
    "BatchResult": "registry.core.types",
    "Found": "registry.core.search",
    "JanitorReport": "registry.core.janitor",
    "CacheInfo": "registry.core.cache",
    "CacheEntry": "registry.core.cache",
    "PruneReport": "registry.core.cache",
    "Materializer": "registry.materializers.base",
    "BlobMaterializer": "registry.materializers.base",
    "MaterializerProtocol": "registry.materializers.base",
    **dict.fromkeys(_exceptions.__all__, "registry.exceptions"),
    **{
        name: "registry.store.errors"
        for name in (
            "StoreAmbiguousObjectError",
            "StoreConfigError",
            "StoreKeyFormatError",
            "StoreLocationNotFound",
            "StoreReadOnlyError",
        )
    },
}
_ALIASES = {
    "LocalRegistryBackend": "LocalBackend",
    "MemoryRegistryBackend": "MemoryBackend",
    "S3RegistryBackend": "S3Backend",
    "MinioRegistryBackend": "S3Backend",
    "GCPRegistryBackend": "GCSBackend",
    "GCSRegistryBackend": "GCSBackend",
}

__all__ = sorted([*_EXPORTS, *_ALIASES, "__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = _package_version()
        return globals()[name]
    target = _ALIASES.get(name, name)
    module = _EXPORTS.get(target)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    value = getattr(import_module(module), target)
    globals()[name] = value
    return value


def _package_version() -> str:
    # importlib.metadata costs milliseconds: read only when asked for
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("versioned-registry")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # `X as X`: re-exported for type checkers (__all__ is computed)
    from registry._async import AsyncRegistry as AsyncRegistry
    from registry._sync import Registry as Registry
    from registry.backends.base import Backend as Backend
    from registry.backends.base import FileInfo as FileInfo
    from registry.backends.gcs import GCSBackend as GCSBackend
    from registry.backends.local import LocalBackend as LocalBackend
    from registry.backends.memory import MemoryBackend as MemoryBackend
    from registry.backends.s3 import S3Backend as S3Backend
    from registry.core.cache import CacheEntry as CacheEntry
    from registry.core.cache import CacheInfo as CacheInfo
    from registry.core.cache import PruneReport as PruneReport
    from registry.core.janitor import JanitorReport as JanitorReport
    from registry.core.search import Found as Found
    from registry.core.types import BatchResult as BatchResult
    from registry.exceptions import *  # noqa: F403
    from registry.materializers.base import BlobMaterializer as BlobMaterializer
    from registry.materializers.base import Materializer as Materializer
    from registry.materializers.base import MaterializerProtocol as MaterializerProtocol
    from registry.store.core import AsyncStore as AsyncStore
    from registry.store.errors import *  # noqa: F403
    from registry.store.sync import Store as Store

    __version__: str
    # the replaced library's names for the backends
    LocalRegistryBackend = LocalBackend
    MemoryRegistryBackend = MemoryBackend
    S3RegistryBackend = S3Backend
    MinioRegistryBackend = S3Backend
    GCPRegistryBackend = GCSBackend
    GCSRegistryBackend = GCSBackend
