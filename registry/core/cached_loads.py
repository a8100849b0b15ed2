"""Loads a remote registry's cache can answer alone, in the calling thread.

A cache hit needs no client: the metadata and the files are on local disk.
The sync facade tries ``load_now`` first and crosses to the runner thread
(whose loop owns the backend's clients) only when it returns ``MISS``; a
hit costs no thread hop and no event loop at all.

What needs the backend is always a miss, decided before anything is read:
"latest" on a versioned registry (resolved on the backend at every level),
``verify="full"`` (reads the metadata past the cache), aliases, and a
registry whose settings were not read yet. So is anything the async load
repairs or reports (metadata or files not cached, metadata that does not
decode, files that fail their check): that load then runs from the start and
does what it always did (fetch, heal with a warning, or raise), so both paths
give the same answers and the same errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from registry.core.aliases import is_alias
from registry.core.layout import meta_key
from registry.core.loading import read_cached_now
from registry.core.metadata import decode_for, version_key
from registry.core.names import split_key, validate_name
from registry.core.offline import cached_meta
from registry.core.registry import RegistryCore, log_loaded
from registry.core.types import ObjectMeta, Verify
from registry.core.versions import LATEST
from registry.exceptions import RegistryError

logger = logging.getLogger(__name__)


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


#: ``load_now``'s answer when the load needs the async path
MISS: Final = _Miss()


def load_now(
    core: RegistryCore,
    name: str,
    version: str,
    verify: Verify,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """The object from the cache alone, or ``MISS``."""
    cache, settings = core._cache, core._stored.current
    if cache is None or settings is None or verify == "full":
        return MISS
    started = time.perf_counter()
    name, version = split_key(name, version)
    validate_name(name)
    if is_alias(version) or (version == LATEST and settings.version_objects and not core.offline):
        return MISS
    meta: ObjectMeta
    try:
        if core.offline:
            meta = cached_meta(cache, settings, name, version)
        else:
            key = version_key(version, settings)
            data = cache.read_meta(name, key)
            if data is None:
                return MISS
            meta = decode_for(name, data, f"{core.backend.uri}/{meta_key(name, key)}")
        hit, obj = read_cached_now(
            meta,
            cache,
            verify=verify,
            allow_pickle=core.allow_pickle,
            trusted_materializers=settings.materializers.values(),
            registered_classes=settings.materializers.keys(),
            options=options,
        )
    except RegistryError:
        return MISS  # the async load repairs it, or raises the same error
    if not hit:
        return MISS
    if logger.isEnabledFor(logging.DEBUG):
        source = f"the cache of {core.backend.uri}"
        log_loaded(logger, name, version, meta, verify, source, started)
    return obj
