"""Saving one version: materialize into a fresh uuid folder, then commit.

The files go first (``artifacts.py``), the metadata write is the commit
(``mvcc.py``). A save that loses the race for an explicit version removes
its own folder; after any other failure the commit may have landed, so the
folder is left for the janitor to judge.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from registry.backends.base import Backend
from registry.core import mvcc
from registry.core.artifacts import delete_folder, write_artifacts
from registry.core.cache import Cache
from registry.core.metadata import encode_meta
from registry.core.types import ObjectMeta
from registry.core.versions import Version
from registry.exceptions import RegistryVersionConflict
from registry.materializers.lookup import class_path, remember_class

logger = logging.getLogger(__name__)


async def save_version(
    backend: Backend,
    cache: Cache | None,
    name: str,
    obj: Any,
    choices: list[str],
    *,
    explicit: Version | None,
    metadata: Mapping[str, Any] | None,
    inline_limit: int,
    overwrite: bool,
    unversioned: bool,
    headed: bool = False,
) -> str:
    """Save ``obj`` with the first materializer in ``choices`` that takes it,
    as ``explicit`` (None: the next auto-increment number); returns the
    version saved."""
    started = time.perf_counter()
    uid = uuidlib.uuid4().hex
    artifacts = await write_artifacts(backend, name, uid, obj, choices, inline_limit, cache)
    remember_class(type(obj))  # this process may import it again under allow_pickle=False
    meta = ObjectMeta(
        name=name,
        version="",
        uuid=uid,
        materializer=artifacts.materializer,
        object_class=class_path(type(obj)),
        files=artifacts.files,
        size=sum(f.size for f in artifacts.files.values()),
        created_at=time.time(),
        metadata=dict(metadata or {}),
        inline=artifacts.inline,
        stored_as=artifacts.stored_as,
    )
    try:
        if explicit is None:

            def encode(v: str) -> bytes:
                return encode_meta(meta, v)

            saved = await mvcc.commit_auto(backend, name, encode, headed=headed)
            meta_bytes = encode(saved)
        else:
            meta_bytes = encode_meta(meta, explicit.spelling)
            await mvcc.commit_explicit(
                backend,
                name,
                explicit,
                meta_bytes,
                overwrite=overwrite,
                track_head=not unversioned,
                headed=headed,
            )
            saved = explicit.spelling
    except RegistryVersionConflict as conflict:
        # Only a lost race is known not to have committed.
        if artifacts.inline is None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await delete_folder(backend, name, uid, artifacts.files)
                if cache is not None:
                    await anyio.to_thread.run_sync(cache.discard, name, uid)
        if not unversioned:
            raise
        raise RegistryVersionConflict(
            f"{name!r} already exists and this registry keeps one version per name "
            "(version_objects=False); delete it first, or open the registry with "
            "mutable=True and pass on_conflict='overwrite' to replace it",
            name=name,
            version=conflict.version,
        ) from None
    if cache is not None:
        cache.write_meta(name, Version(saved).key, meta_bytes)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "saved %s@%s: %d bytes in %d files%s via %s to %s in %.1f ms",
            name,
            saved,
            meta.size,
            len(meta.files),
            " (inline)" if meta.inline is not None else "",
            meta.materializer,
            backend.uri,
            (time.perf_counter() - started) * 1000,
        )
    return saved
