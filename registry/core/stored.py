"""A version's stored files as they are, never decoded into an object.

``export_files`` streams them to a folder, ``check_files`` re-hashes them
where they are stored, and ``copy_version`` copies them to another registry
and commits there with the same conditional metadata write as a save. Every
byte is checked against the sha256 recorded at save time, so damage is
reported and never copied on. The command line's get, verify and cp use these.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import shutil
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from registry.backends.base import Backend
from registry.core import mvcc
from registry.core.artifacts import delete_folder
from registry.core.fanout import fanout
from registry.core.layout import objects_folder
from registry.core.loading import check_paths
from registry.core.metadata import encode_meta, explicit_version
from registry.core.names import validate_name
from registry.core.registry import RegistryCore
from registry.core.types import FileEntry, ObjectMeta
from registry.exceptions import ObjectNotFound, RegistryIntegrityError, RegistryVersionConflict
from registry.materializers.base import copy_file, entry_for, hash_file

__all__ = [
    "Damage",
    "OnBytes",
    "check_files",
    "copy_version",
    "export_files",
    "stored_meta",
    "stored_metas",
]

#: called with a number of bytes each time that many more were moved or hashed
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class Damage:
    """One stored file that does not match its metadata."""

    name: str
    version: str
    file: str
    problem: str


async def stored_meta(registry: RegistryCore, name: str, version: str) -> ObjectMeta:
    """The committed metadata of ``name@version`` as stored (never a cached copy)."""
    return await registry._meta(name, version, "full")


async def stored_metas(registry: RegistryCore, name: str) -> list[ObjectMeta]:
    """The committed metadata of every live version of ``name``, ascending."""
    await registry._open()
    return await registry._live_metas(name)


def _mismatch(expected: FileEntry, actual: FileEntry) -> str | None:
    if actual.size != expected.size:
        return f"size {actual.size} bytes, {expected.size} recorded"
    if not hmac.compare_digest(actual.sha256, expected.sha256):
        return "sha256 differs from the one recorded (same size: bytes changed)"
    return None


async def _fetch_checked(backend: Backend, meta: ObjectMeta, rel: str, dest: Path) -> None:
    """Stored file ``rel`` of ``meta`` into ``dest``, checked against its sha256."""
    key = f"{objects_folder(meta.name, meta.uuid)}/{rel}"
    in_place = backend.local_path(key)
    await anyio.to_thread.run_sync(lambda: dest.parent.mkdir(parents=True, exist_ok=True))
    try:
        if in_place is not None:
            entry = await anyio.to_thread.run_sync(copy_file, in_place, dest)
        else:
            await backend.get_file(key, dest)
            entry = await anyio.to_thread.run_sync(hash_file, dest)
    except (ObjectNotFound, FileNotFoundError):
        raise RegistryIntegrityError(
            f"{meta.name}@{meta.version}: artifact {rel} is missing on {backend.uri}; "
            "restore it or save the object again"
        ) from None
    problem = _mismatch(meta.files[rel], entry)
    if problem is not None:
        raise RegistryIntegrityError(
            f"{meta.name}@{meta.version}: artifact {rel} is damaged on {backend.uri} "
            f"({problem}); restore it or save the object again"
        )


async def export_files(
    registry: RegistryCore, meta: ObjectMeta, dest: Path, on_bytes: OnBytes | None = None
) -> None:
    """Write the files of ``meta`` under the folder ``dest``, by their stored
    relative paths, streamed and checked (RegistryIntegrityError if damaged)."""
    where = f"{meta.name}@{meta.version}"
    check_paths(meta, where)
    if meta.inline is not None:
        (rel,) = meta.files
        problem = _mismatch(meta.files[rel], entry_for(meta.inline))
        if problem is not None:
            raise RegistryIntegrityError(f"{where}: inlined {rel} is damaged ({problem})")
        target = dest / rel
        data = meta.inline
        await anyio.to_thread.run_sync(lambda: _write(target, data))
        if on_bytes is not None:
            on_bytes(len(data))
        return

    async def one(rel: str) -> None:
        if on_bytes is None:
            await _fetch_checked(registry.backend, meta, rel, dest / rel)
            return
        size = meta.files[rel].size
        reported = 0

        def report(done: int) -> None:
            nonlocal reported
            if done > reported:
                on_bytes(done - reported)
                reported = done

        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_growth, dest / rel, size, report)
            await _fetch_checked(registry.backend, meta, rel, dest / rel)
            tg.cancel_scope.cancel()
        report(size)

    (await fanout(one, list(meta.files), limit=registry.backend.concurrency)).raise_first()


async def _watch_growth(path: Path, size: int, report: Callable[[int], None]) -> None:
    """Report how much of ``path`` is written while a download fills it, so a
    progress bar moves within one large file. Allocated blocks, not the
    length: ranged downloads may set the length before the bytes arrive."""
    while True:
        await anyio.sleep(0.25)
        with contextlib.suppress(OSError):
            report(min(size, os.stat(path).st_blocks * 512))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def check_files(
    registry: RegistryCore, metas: Sequence[ObjectMeta], on_bytes: OnBytes | None = None
) -> list[Damage]:
    """Re-hash every stored file of ``metas`` (all at once, bounded by the
    backend's concurrency); one Damage per missing or mismatching file."""
    backend = registry.backend
    items = [(m, rel) for m in metas for rel in m.files]
    scratch = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="registry-")))

    async def one(item: tuple[ObjectMeta, str]) -> Damage | None:
        meta, rel = item
        expected = meta.files[rel]
        try:
            check_paths(meta, f"{meta.name}@{meta.version}")
            if meta.inline is not None:
                actual = entry_for(meta.inline)
            else:
                key = f"{objects_folder(meta.name, meta.uuid)}/{rel}"
                in_place = backend.local_path(key)
                if in_place is not None:
                    actual = await anyio.to_thread.run_sync(hash_file, in_place)
                else:  # streamed to a scratch file: bounded memory for any size
                    tmp = scratch / uuidlib.uuid4().hex
                    try:
                        await backend.get_file(key, tmp)
                        actual = await anyio.to_thread.run_sync(hash_file, tmp)
                    finally:
                        await anyio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        except (ObjectNotFound, FileNotFoundError):
            return Damage(meta.name, meta.version, rel, "missing")
        except RegistryIntegrityError as exc:
            return Damage(meta.name, meta.version, rel, str(exc))
        finally:
            if on_bytes is not None:
                on_bytes(expected.size)
        problem = _mismatch(expected, actual)
        return None if problem is None else Damage(meta.name, meta.version, rel, problem)

    try:
        checked = await fanout(one, items, limit=backend.concurrency)
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
    checked.raise_first()  # a failure to read at all (unreachable store) is not damage
    return [d for d in checked.results if d is not None]


async def copy_version(
    source: RegistryCore,
    meta: ObjectMeta,
    target: RegistryCore,
    name: str,
    version: str | None = None,
    on_bytes: OnBytes | None = None,
) -> str:
    """Copy the stored files of ``meta`` byte for byte to ``target`` as
    ``name`` (``version``, or the next number), then commit its metadata there
    with a create-if-absent write: an existing version is never replaced
    (RegistryVersionConflict). Returns the version written."""
    validate_name(name)
    check_paths(meta, f"{meta.name}@{meta.version}")
    settings = await target._open()
    explicit = explicit_version(version, settings)
    uid = uuidlib.uuid4().hex
    if meta.inline is None:
        await _copy_files(source.backend, meta, target.backend, name, uid, on_bytes)
    elif on_bytes is not None:
        on_bytes(len(meta.inline))
    copied = msgspec.structs.replace(meta, name=name, uuid=uid, created_at=time.time())
    try:
        if explicit is None:
            return await mvcc.commit_auto(
                target.backend, name, lambda v: encode_meta(copied, v), headed=settings.heads
            )
        await mvcc.commit_explicit(
            target.backend,
            name,
            explicit,
            encode_meta(copied, explicit.spelling),
            overwrite=False,
            track_head=settings.version_objects,
            headed=settings.heads,
        )
        return explicit.spelling
    except RegistryVersionConflict:
        # Only a lost race is known not to have committed (as in a save);
        # after any other failure the janitor decides later.
        if meta.inline is None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await delete_folder(target.backend, name, uid, meta.files)
        raise


async def _copy_files(
    source: Backend,
    meta: ObjectMeta,
    target: Backend,
    name: str,
    uid: str,
    on_bytes: OnBytes | None,
) -> None:
    prefix = objects_folder(name, uid)
    scratch = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="registry-")))

    async def one(rel: str) -> None:
        src_key = f"{objects_folder(meta.name, meta.uuid)}/{rel}"
        in_place = source.local_path(src_key)
        if in_place is not None:  # check, then upload straight from the source folder
            actual = await anyio.to_thread.run_sync(hash_file, in_place)
            problem = _mismatch(meta.files[rel], actual)
            if problem is not None:
                raise RegistryIntegrityError(
                    f"{meta.name}@{meta.version}: artifact {rel} is damaged on "
                    f"{source.uri} ({problem}); not copied"
                )
            await target.put_file(f"{prefix}/{rel}", in_place)
        else:
            tmp = scratch / uuidlib.uuid4().hex
            try:
                await _fetch_checked(source, meta, rel, tmp)
                await target.put_file(f"{prefix}/{rel}", tmp)
            finally:
                await anyio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        if on_bytes is not None:
            on_bytes(meta.files[rel].size)

    try:
        copied = await fanout(
            one, list(meta.files), limit=min(source.concurrency, target.concurrency)
        )
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
    if copied.errors:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await delete_folder(target, name, uid, meta.files)
        copied.raise_first()
