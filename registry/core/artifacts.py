"""Turning objects into stored artifacts and back, with integrity checks.

Small single-blob objects are inlined in the metadata (one write per save,
one read per load). Everything else goes to the version's uuid folder: on a
local disk the materializer writes there in place and reads from there
without a copy; other backends go through a temporary folder.
"""

from __future__ import annotations

import hmac
import os
import shutil
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread

from registry.backends.base import Backend
from registry.core.cache import Cache
from registry.core.exceptions import (
    MaterializerError,
    ObjectNotFound,
    PickleRefused,
    RegistryIntegrityError,
)
from registry.core.fanout import fanout
from registry.core.layout import objects_folder
from registry.core.types import FileEntry, ObjectMeta
from registry.materializers.base import (
    BlobMaterializer,
    Materializer,
    Unsupported,
    entry_for,
    hash_file,
)
from registry.materializers.lookup import get_materializer, import_path

Verify = Literal["none", "integrity", "full"]
VERIFY_LEVELS = ("none", "integrity", "full")

ON_LOOP_BYTES = 256 * 1024  # below this, encode/decode on the loop: a thread hop costs more
STREAM_BYTES = 8 * 1024 * 1024  # above this, blob materializers stream to a file


class Artifacts:
    """What ``write_artifacts`` produced for one save."""

    __slots__ = ("files", "inline", "materializer")

    def __init__(self, materializer: str, files: dict[str, FileEntry], inline: bytes | None):
        self.materializer = materializer
        self.files = files
        self.inline = inline


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
            await delete_folder(backend, name, uuid, files=None)
            continue
        return Artifacts(path, files, inline)
    raise MaterializerError(f"no materializer accepted {type(obj).__qualname__}: {last}")


async def _write_with(
    backend: Backend,
    name: str,
    uuid: str,
    obj: Any,
    materializer: Materializer,
    inline_limit: int,
    cache: Cache | None,
) -> tuple[dict[str, FileEntry], bytes | None]:
    if isinstance(materializer, BlobMaterializer):
        estimate = materializer.estimate_size(obj)
        if estimate is None or estimate <= STREAM_BYTES:
            if estimate is not None and estimate <= ON_LOOP_BYTES:
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


def _materialize(materializer: Materializer, obj: Any, folder: Path) -> dict[str, FileEntry]:
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
    materializer: Materializer,
    cache: Cache | None,
) -> dict[str, FileEntry]:
    prefix = objects_folder(name, uuid)
    in_place = backend.local_path(prefix)
    if in_place is not None:
        files = await anyio.to_thread.run_sync(_materialize, materializer, obj, in_place)
        await backend.flush([f"{prefix}/{rel}" for rel in files])
        return files
    # Materialize into the cache's temp area (or a temp folder), upload from
    # there, then keep it as the cached copy of the new uuid folder.
    make_tmp = cache.new_tmp if cache is not None else lambda: Path(tempfile.mkdtemp())
    folder = await anyio.to_thread.run_sync(make_tmp)
    adopted = False
    try:
        files = await anyio.to_thread.run_sync(_materialize, materializer, obj, folder)

        async def upload(rel: str) -> None:
            await backend.put_file(f"{prefix}/{rel}", folder / rel)

        uploaded = await fanout(upload, list(files), limit=backend.concurrency)
        uploaded.raise_first()
        if cache is not None:
            await anyio.to_thread.run_sync(cache.adopt, name, uuid, folder)
            adopted = True
        return files
    finally:
        if not adopted:
            await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


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


# -- loading ---------------------------------------------------------------------


@cache
def _import_class(path: str) -> type | None:
    try:
        cls = import_path(path)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) else None


def _check(meta: ObjectMeta, rel: str, actual: FileEntry, where: str) -> None:
    expected = meta.files.get(rel)
    if expected is None:
        raise RegistryIntegrityError(f"{where}: {rel} is not recorded in the metadata")
    if actual.size != expected.size or not hmac.compare_digest(actual.sha256, expected.sha256):
        raise RegistryIntegrityError(
            f"{where}: {rel} does not match its metadata (size {actual.size} vs "
            f"{expected.size} recorded, sha256 differs); the stored copy is damaged: "
            "restore it or save the object again"
        )


def _verify_folder(meta: ObjectMeta, folder: Path, where: str) -> None:
    for rel in meta.files:
        path = folder / rel
        try:
            actual = hash_file(path)
        except FileNotFoundError:
            raise RegistryIntegrityError(
                f"{where}: artifact {rel} is missing; restore it or save the object again"
            ) from None
        _check(meta, rel, actual, where)


async def read_artifacts(
    backend: Backend,
    meta: ObjectMeta,
    *,
    verify: Verify,
    allow_pickle: bool,
    cache: Cache | None = None,
) -> Any:
    where = f"{meta.name}@{meta.version}"
    materializer = get_materializer(meta.materializer)
    if materializer.uses_pickle and not allow_pickle:
        raise PickleRefused(
            f"{where} was stored with pickle ({meta.object_class}) and this registry has "
            "allow_pickle=False; open it with allow_pickle=True if you trust its writers"
        )
    cls = _import_class(meta.object_class)
    if meta.inline is not None:
        data = meta.inline
        if verify != "none":
            (rel,) = meta.files
            _check(meta, rel, entry_for(data), where)
        assert isinstance(materializer, BlobMaterializer)
        if len(data) <= ON_LOOP_BYTES:
            return materializer.loads(data, cls)
        return await anyio.to_thread.run_sync(materializer.loads, data, cls)

    prefix = objects_folder(meta.name, meta.uuid)
    in_place = backend.local_path(prefix)
    if in_place is not None:
        return await _load_verified(materializer, meta, in_place, cls, verify, where)
    if cache is not None:
        cached = await anyio.to_thread.run_sync(cache.lookup, meta.name, meta.uuid)
        if cached is not None:
            try:
                return await _load_verified(materializer, meta, cached, cls, verify, where)
            except RegistryIntegrityError:
                # Damaged or evicted under us: drop the copy and fetch again.
                await anyio.to_thread.run_sync(cache.discard, meta.name, meta.uuid)
    make_tmp = cache.new_tmp if cache is not None else lambda: Path(tempfile.mkdtemp())
    folder = await anyio.to_thread.run_sync(make_tmp)
    try:
        await _download(backend, meta, folder, where)
        if cache is None:
            return await _load_verified(materializer, meta, folder, cls, verify, where)
        final = await anyio.to_thread.run_sync(cache.adopt, meta.name, meta.uuid, folder)
        try:
            # Verified while loading (large, safe materializers) or before.
            return await _load_verified(materializer, meta, final, cls, verify, where)
        except RegistryIntegrityError:
            await anyio.to_thread.run_sync(cache.discard, meta.name, meta.uuid)
            raise
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


async def _download(backend: Backend, meta: ObjectMeta, folder: Path, where: str) -> None:
    prefix = objects_folder(meta.name, meta.uuid)

    async def download(rel: str) -> None:
        dest = folder / rel
        await anyio.to_thread.run_sync(lambda: dest.parent.mkdir(parents=True, exist_ok=True))
        await backend.get_file(f"{prefix}/{rel}", dest)

    downloaded = await fanout(download, list(meta.files), limit=backend.concurrency)
    for index in downloaded.failed:
        error = downloaded.errors[index]
        if isinstance(error, ObjectNotFound):
            raise RegistryIntegrityError(
                f"{where}: artifact {error} is missing on {backend.uri}; restore it or save "
                "the object again"
            ) from error
        raise error


PARALLEL_VERIFY_BYTES = 8 * 1024 * 1024


async def _load_verified(
    materializer: Materializer,
    meta: ObjectMeta,
    folder: Path,
    cls: type | None,
    verify: Verify,
    where: str,
) -> Any:
    """Load from ``folder``, verifying first, or, for large objects whose
    materializer reads untrusted bytes safely, in a parallel thread (hashing
    releases the GIL, so both passes run at once on two cores)."""
    if (
        verify == "none"
        or meta.size < PARALLEL_VERIFY_BYTES
        or not materializer.loads_untrusted_safely
    ):
        return await anyio.to_thread.run_sync(
            _load_folder, materializer, meta, folder, cls, verify, where
        )
    verify_error: RegistryIntegrityError | None = None

    async def check() -> None:
        nonlocal verify_error
        try:
            await anyio.to_thread.run_sync(_verify_folder, meta, folder, where)
        except RegistryIntegrityError as exc:
            verify_error = exc

    load_error: Exception | None = None
    result: Any = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(check)
        try:
            result = await anyio.to_thread.run_sync(
                _load_folder, materializer, meta, folder, cls, "none", where
            )
        except Exception as exc:
            load_error = exc
    if verify_error is not None:  # explains a load error too: report it first
        raise verify_error
    if load_error is not None:
        raise load_error
    return result


def _load_folder(
    materializer: Materializer,
    meta: ObjectMeta,
    folder: Path,
    cls: type | None,
    verify: Verify,
    where: str,
) -> Any:
    if verify != "none":
        _verify_folder(meta, folder, where)
    try:
        return materializer.load(folder, cls)
    except FileNotFoundError as exc:
        raise RegistryIntegrityError(f"{where}: artifact missing ({exc})") from None
