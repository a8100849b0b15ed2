"""Finds and removes uuid folders no committed metadata points to.

Orphans come from saves that lost a race or crashed before their commit, and
from overwrites and deletes (the old folder stays so readers holding the old
metadata can finish). A folder is removed only when it is unreferenced and
both its newest file and the newest metadata change of its name are older
than the grace period: a writer still uploading, or a reader that read the
metadata just before an overwrite, is never raced.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import msgspec

from registry.backends.base import Backend
from registry.core.fanout import fanout
from registry.core.layout import META_ROOT, OBJECTS_ROOT, split_meta_key
from registry.core.mvcc import TOMBSTONE, decode_meta

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


async def run_janitor(backend: Backend, *, grace: float, dry_run: bool) -> JanitorReport:
    if grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace}")
    now = time.time()
    referenced: set[tuple[str, str]] = set()
    last_meta_change: dict[str, float] = defaultdict(float)
    meta_keys = []
    async for entry in backend.list(META_ROOT):
        if isinstance(entry, str):
            continue
        parsed = split_meta_key(entry.key)
        if parsed is None:
            continue
        last_meta_change[parsed[0]] = max(last_meta_change[parsed[0]], entry.mtime)
        if entry.size > 0:
            meta_keys.append(entry.key)

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
    )
