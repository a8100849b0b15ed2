"""Getting a version's folder into the local cache of a remote registry.

Many processes may want the same uncached entry at once (eight DataLoader
workers starting on one node): the first takes a claim file and downloads,
the others wait until the entry appears (or until the claim stops being
renewed, when one of them takes over), so an entry is downloaded once, not
once per process. The download goes to a temp folder that is renamed into
place complete, so a reader never sees half an entry.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import anyio
import anyio.to_thread

from registry.backends.base import Backend
from registry.core.cache import CLAIM_RENEW_SECONDS, Cache
from registry.core.fanout import fanout
from registry.core.layout import objects_folder
from registry.core.types import ObjectMeta
from registry.exceptions import ObjectNotFound, RegistryIntegrityError, RegistryObjectNotFound

logger = logging.getLogger(__name__)

_FIRST_POLL = 0.01
_MAX_POLL = 0.2


async def fetch_into_cache(
    backend: Backend, cache: Cache, meta: ObjectMeta, where: str, *, offline: bool
) -> tuple[Path, bool]:
    """The entry's cached folder, and whether this call downloaded it."""
    poll = _FIRST_POLL
    while True:
        cached = await anyio.to_thread.run_sync(cache.lookup, meta.name, meta.uuid)
        if cached is not None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: cache hit (%s)", where, cached)
            return cached, False
        if offline:
            raise RegistryObjectNotFound(
                f"{where}: its files are not in the offline cache at {cache.root}; load or "
                "prefetch() it while online, or turn offline mode off"
            )
        claim = await anyio.to_thread.run_sync(cache.claim_download, meta.name, meta.uuid)
        if claim is None:  # another process is downloading it: wait for the entry
            await anyio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL)
            continue
        try:
            cached = await anyio.to_thread.run_sync(cache.lookup, meta.name, meta.uuid)
            if cached is not None:  # it landed between our look and our claim
                return cached, False
            return await _download_claimed(backend, cache, meta, where, claim), True
        finally:
            await anyio.to_thread.run_sync(_release, claim)


async def _download_claimed(
    backend: Backend, cache: Cache, meta: ObjectMeta, where: str, claim: Path
) -> Path:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s: cache miss, downloading %d files (%d bytes) from %s",
            where,
            len(meta.files),
            meta.size,
            backend.uri,
        )
    folder = await anyio.to_thread.run_sync(cache.new_tmp)
    try:
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_renew, claim)
            try:
                await download(backend, meta, folder, where)
            except Exception as exc:  # raised as itself, not in a task group's wrapper
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return await anyio.to_thread.run_sync(cache.adopt, meta.name, meta.uuid, folder)
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


def _release(claim: Path) -> None:
    claim.unlink(missing_ok=True)


async def _renew(claim: Path) -> None:
    """Keep the claim fresh while downloading, so waiters know we are alive."""
    while True:
        await anyio.sleep(CLAIM_RENEW_SECONDS)
        with contextlib.suppress(OSError):  # the cache was cleared meanwhile
            await anyio.to_thread.run_sync(lambda: claim.touch(exist_ok=True))


async def download(backend: Backend, meta: ObjectMeta, folder: Path, where: str) -> None:
    """Every file of the version into ``folder``, concurrently."""
    prefix = objects_folder(meta.name, meta.uuid)

    async def one(rel: str) -> None:
        dest = folder / rel
        await anyio.to_thread.run_sync(lambda: dest.parent.mkdir(parents=True, exist_ok=True))
        await backend.get_file(f"{prefix}/{rel}", dest)

    downloaded = await fanout(one, list(meta.files), limit=backend.concurrency)
    for index in downloaded.failed:
        error = downloaded.errors[index]
        if isinstance(error, ObjectNotFound):
            raise RegistryIntegrityError(
                f"{where}: artifact {error} is missing on {backend.uri}; restore it or save "
                "the object again"
            ) from error
        raise error
