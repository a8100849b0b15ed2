"""Finds and removes uuid folders no committed metadata points to.

Orphans come from saves that lost a race or crashed before their commit, and
from overwrites and deletes (the old folder stays so readers holding the old
metadata can finish). A folder is removed only when it is unreferenced and
both its newest file and the newest metadata change of its name are older
than the grace period: a writer still uploading, or a reader that read the
metadata just before an overwrite, is never raced.

It first applies the stored retention policies (core/retention.py), so
versions that a policy retires become tombstones; their folders are then
orphans like any other, removed after the grace period.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import msgspec

from registry.backends.base import Backend, FileInfo
from registry.core.fanout import fanout
from registry.core.layout import META_ROOT, OBJECTS_ROOT, meta_key, split_meta_key
from registry.core.mvcc import TOMBSTONE, decode_meta
from registry.core.retention import Policies, apply_policy
from registry.core.versions import Version, version_from_key

DEFAULT_GRACE = 3600.0
logger = logging.getLogger(__name__)


class JanitorReport(msgspec.Struct):
    """What a janitor run removed (or, with dry_run, would remove)."""

    removed: list[str]  # uuid folders, as "objects/<name>/<uuid>"
    files: int
    bytes: int
    kept_recent: int  # unreferenced but younger than the grace period
    dry_run: bool
    temp_files: int = 0
    retired: list[str] = msgspec.field(default_factory=list)  # "name@version", by retention


async def run_janitor(backend: Backend, *, grace: float, dry_run: bool) -> JanitorReport:
    if grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace}")
    now = time.time()
    referenced: set[tuple[str, str]] = set()
    last_meta_change: dict[str, float] = defaultdict(float)
    meta_keys = []
    live: dict[str, list[tuple[Version, FileInfo]]] = defaultdict(list)
    async for entry in backend.list(META_ROOT):
        if isinstance(entry, str):
            continue
        parsed = split_meta_key(entry.key)
        if parsed is None:
            continue
        last_meta_change[parsed[0]] = max(last_meta_change[parsed[0]], entry.mtime)
        if entry.size > 0:
            meta_keys.append(entry.key)
            version = version_from_key(parsed[1])
            if version is not None:
                live[parsed[0]].append((version, entry))

    retired = await _apply_retention(backend, live, dry_run)
    if retired and not dry_run:
        gone = {meta_key(name, Version(v).key) for name, v in retired}
        meta_keys = [key for key in meta_keys if key not in gone]
        for name, _ in retired:  # just changed: their folders wait out the grace period
            last_meta_change[name] = now

    async def read(key: str) -> None:
        data = await backend.get(key)
        if data != TOMBSTONE:
            meta = decode_meta(data, f"{backend.uri}/{key}")
            referenced.add((meta.name, meta.uuid))

    # A metadata file that cannot be read makes its folder look orphaned:
    # stop rather than delete data that may still be referenced.
    (await fanout(read, meta_keys, limit=backend.concurrency)).raise_first()

    folders: dict[tuple[str, str], list[tuple[str, int, float]]] = defaultdict(list)
    async for entry in backend.list(OBJECTS_ROOT):
        if isinstance(entry, str):
            continue
        parts = entry.key.split("/", 3)
        if len(parts) < 4:
            continue
        folders[(parts[1], parts[2])].append((entry.key, entry.size, entry.mtime))

    removed: list[str] = []
    doomed: list[str] = []
    total_bytes = 0
    kept = 0
    for (name, uuid), files in sorted(folders.items()):
        if (name, uuid) in referenced:
            continue
        newest = max(max(mtime for _, _, mtime in files), last_meta_change.get(name, 0.0))
        if now - newest < grace:
            kept += 1
            continue
        removed.append(f"{OBJECTS_ROOT}{name}/{uuid}")
        doomed.extend(key for key, _, _ in files)
        total_bytes += sum(size for _, size, _ in files)
    if not dry_run and doomed:
        batches = [doomed[i : i + 1000] for i in range(0, len(doomed), 1000)]
        (await fanout(backend.delete, batches, limit=backend.concurrency)).raise_first()
    temp_files = await backend.remove_stale_temp(older_than=grace, dry_run=dry_run)
    logger.info(
        "janitor on %s%s: %s %d orphaned folders (%d files, %d bytes) and %d temp files; "
        "kept %d younger than %.0f s",
        backend.uri,
        " (dry run)" if dry_run else "",
        "would remove" if dry_run else "removed",
        len(removed),
        len(doomed),
        total_bytes,
        temp_files,
        kept,
        grace,
    )
    return JanitorReport(
        removed=removed,
        files=len(doomed),
        bytes=total_bytes,
        kept_recent=kept,
        dry_run=dry_run,
        temp_files=temp_files,
        retired=[f"{name}@{version}" for name, version in retired],
    )


async def _apply_retention(
    backend: Backend, live: dict[str, list[tuple[Version, FileInfo]]], dry_run: bool
) -> list[tuple[str, str]]:
    """(name, version key) of every version the stored policies retire."""
    table = await Policies(backend).table(fresh=True)
    if not table:
        return []
    todo = [(n, p) for n in sorted(live) if (p := table.get(n) or table.get(None)) is not None]

    async def one(item: tuple[str, Any]) -> list[str]:
        return await apply_policy(backend, item[0], item[1], live[item[0]], dry_run=dry_run)

    done = await fanout(one, todo, limit=backend.concurrency)
    done.raise_first()
    return [
        (n, v) for (n, _), versions in zip(todo, done.results, strict=True) for v in versions or []
    ]
