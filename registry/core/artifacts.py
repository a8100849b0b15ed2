"""Turning objects into stored artifacts (the loading side is core.loading).

Small single-blob objects are inlined in the metadata (one write per save,
one read per load). Everything else goes to the version's uuid folder: on a
local disk the materializer writes there in place; remote backends get it
from the cache's temp area (kept afterwards as the cached copy); others go
through a temporary folder. Files are hashed in the same pass as the write
where the materializer allows.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup

from registry._runner import on_own_loop
from registry.backends.base import Backend
from registry.backends.transfer import GrowingFile, upload_source
from registry.core.cache import Cache
from registry.core.fanout import fanout
from registry.core.layout import objects_folder
from registry.core.types import FileEntry
from registry.exceptions import MaterializerError
from registry.materializers.base import (
    BlobMaterializer,
    MaterializerProtocol,
    Unsupported,
    announce_copy,
    describe,
    durable_writes,
    entry_for,
    hash_file,
    uses_pickle,
)
from registry.materializers.lookup import get_materializer

logger = logging.getLogger(__name__)


ON_LOOP_BYTES = 256 * 1024  # below this, encode/decode on the loop: a thread hop costs more
STREAM_BYTES = 8 * 1024 * 1024  # above this, blob materializers stream to a file


class Artifacts:
    """What ``write_artifacts`` produced for one save."""

    __slots__ = ("files", "inline", "materializer", "stored_as")

    def __init__(
        self,
        materializer: str,
        files: dict[str, FileEntry],
        inline: bytes | None,
        stored_as: dict[str, Any] | None = None,
    ):
        self.materializer = materializer
        self.files = files
        self.inline = inline
        self.stored_as = stored_as or {}


async def write_artifacts(
    backend: Backend,
    name: str,
    uuid: str,
    obj: Any,
    candidates: list[str],
    inline_limit: int,
    cache: Cache | None = None,
) -> Artifacts:
    """Materialize ``obj`` with the first candidate that accepts it."""
    last: Exception | None = None
    for path in candidates:
        materializer = get_materializer(path)
        try:
            files, inline = await _write_with(
                backend, name, uuid, obj, materializer, inline_limit, cache
            )
        except Unsupported as exc:
            last = exc
            if not isinstance(materializer, BlobMaterializer):
                # A folder materializer may have written part of its files;
                # blob ones refuse in dumps/_check, before writing anything,
                # so they cost no listing (a request on remote stores).
                await delete_folder(backend, name, uuid, files=None)
            continue
        if uses_pickle(materializer):
            logger.warning(
                "%s saved with pickle: %s; loading it needs allow_pickle=True (register a "
                "materializer for %s to avoid pickle)",
                name,
                f"no materializer accepted it ({last})" if last else "no materializer for its type",
                type(obj).__qualname__,
            )
        return Artifacts(path, files, inline, describe(materializer, obj))
    raise MaterializerError(f"no materializer accepted {type(obj).__qualname__}: {last}")


async def _write_with(
    backend: Backend,
    name: str,
    uuid: str,
    obj: Any,
    materializer: MaterializerProtocol,
    inline_limit: int,
    cache: Cache | None,
) -> tuple[dict[str, FileEntry], bytes | None]:
    if isinstance(materializer, BlobMaterializer):
        estimate = materializer.estimate_size(obj)
        if estimate is None or estimate <= STREAM_BYTES:
            if (estimate is not None and estimate <= ON_LOOP_BYTES) or on_own_loop():
                data = materializer.dumps(obj)
            else:
                data = await anyio.to_thread.run_sync(materializer.dumps, obj)
            filename = materializer.filename
            if len(data) <= inline_limit:
                return {filename: entry_for(data)}, data
            await backend.put(f"{objects_folder(name, uuid)}/{filename}", data)
            if cache is not None:  # write through: a save-then-load does not download
                await anyio.to_thread.run_sync(_cache_blob, cache, name, uuid, filename, data)
            return {filename: entry_for(data)}, None
    return await _write_folder(backend, name, uuid, obj, materializer, cache), None


def _cache_blob(cache: Cache, name: str, uuid: str, filename: str, data: bytes) -> None:
    tmp = cache.new_tmp()
    (tmp / filename).write_bytes(data)
    cache.adopt(name, uuid, tmp)


def _materialize(
    materializer: MaterializerProtocol, obj: Any, folder: Path
) -> dict[str, FileEntry]:
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(materializer.save(obj, folder) or {})
    for dirpath, _dirs, filenames in os.walk(folder):
        for filename in filenames:
            path = Path(dirpath) / filename
            rel = path.relative_to(folder).as_posix()
            if rel not in files:
                files[rel] = hash_file(path)
    return files


async def _write_folder(
    backend: Backend,
    name: str,
    uuid: str,
    obj: Any,
    materializer: MaterializerProtocol,
    cache: Cache | None,
) -> dict[str, FileEntry]:
    prefix = objects_folder(name, uuid)
    in_place = backend.local_path(prefix)
    if in_place is not None:
        # flushed below: large writes start their disk writes beside their hash
        token = durable_writes.set(bool(getattr(backend, "fsync", False)))
        try:
            if on_own_loop():  # the caller's thread waits for this call alone: no hop
                files = _materialize(materializer, obj, in_place)
            else:
                files = await anyio.to_thread.run_sync(_materialize, materializer, obj, in_place)
        finally:
            durable_writes.reset(token)
        await backend.flush([f"{prefix}/{rel}" for rel in files])
        return files
    # Materialize into the cache's temp area (or a temp folder), upload from
    # there, then keep it as the cached copy of the new uuid folder.
    make_tmp = cache.new_tmp if cache is not None else lambda: Path(tempfile.mkdtemp())
    folder = await anyio.to_thread.run_sync(make_tmp)
    adopted = False
    try:
        if getattr(backend, "uploads_growing_files", False):
            files, early = await _materialize_uploading(backend, prefix, materializer, obj, folder)
        else:
            files = await anyio.to_thread.run_sync(_materialize, materializer, obj, folder)
            early = {}

        async def upload(rel: str) -> None:
            await backend.put_file(f"{prefix}/{rel}", folder / rel)

        # A file uploaded while it was written counts only if the upload holds
        # all of it (see _materialize_uploading); any other is sent now.
        rest = [rel for rel in files if early.get(rel) != files[rel].size]
        uploaded = await fanout(upload, rest, limit=backend.concurrency)
        uploaded.raise_first()
        if cache is not None:
            await anyio.to_thread.run_sync(cache.adopt, name, uuid, folder)
            adopted = True
        return files
    finally:
        if not adopted:
            await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


async def _materialize_uploading(
    backend: Backend, prefix: str, materializer: MaterializerProtocol, obj: Any, folder: Path
) -> tuple[dict[str, FileEntry], dict[str, int]]:
    """Materialize into ``folder`` while uploading the large files the
    materializer copies (``copy_file``) as they are written, instead of after:
    the copy and hash then overlap the upload. Returns the entries and, for
    each file uploaded early, the bytes its upload holds.

    Why the entry then describes the uploaded object: such a file is written
    once, front to back, and hashed from the very buffers written; the upload
    reads only bytes already written, which never change again. So an upload
    that holds as many bytes as the entry records holds exactly the bytes it
    hashes, whatever happened to the source meanwhile. Any other outcome (the
    source grew or shrank, the upload failed) leaves the file to the normal
    upload of the finished copy, which the caller does for every file whose
    early size differs from its entry. A failed early upload is not an error."""
    early: dict[str, int] = {}

    async def upload_early(rel: str, growing: GrowingFile) -> None:
        token = upload_source.set(growing)
        try:
            info = await backend.put_file(f"{prefix}/{rel}", folder / rel)
        except Exception as exc:  # sent again once written (the caller's upload)
            logger.debug("%s/%s: upload while written failed: %r", prefix, rel, exc)
        else:
            early[rel] = info.size
        finally:
            upload_source.reset(token)

    def run(tg: TaskGroup) -> dict[str, FileEntry]:
        def announce(path: Path, growing: GrowingFile) -> None:
            rel = path.relative_to(folder).as_posix()
            anyio.from_thread.run_sync(tg.start_soon, upload_early, rel, growing)

        token = announce_copy.set(announce)
        try:
            return _materialize(materializer, obj, folder)
        finally:
            announce_copy.reset(token)

    files: dict[str, FileEntry] = {}
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            files = await anyio.to_thread.run_sync(run, tg)
        except Exception as exc:  # raised as itself (Unsupported), not in a group
            failure = exc
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return files, early


async def delete_folder(
    backend: Backend, name: str, uuid: str, files: Mapping[str, FileEntry] | None
) -> None:
    """Remove a uuid folder that lost its commit (or never got one)."""
    prefix = objects_folder(name, uuid)
    if files is None:
        keys = [e.key async for e in backend.list(prefix + "/") if not isinstance(e, str)]
    else:
        keys = [f"{prefix}/{rel}" for rel in files]
    if keys:
        await backend.delete(keys)
