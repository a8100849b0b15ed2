"""Listing keys on S3, and deleting them in batches: the calls over many keys.

Listings are ListObjectsV2 pages, sorted per page, with "folder marker"
objects skipped. On stores whose delimited listings come from a real
directory tree (SeaweedFS), a folder emptied by deletes stays listed until a
background sweep removes it; there each folder reported is checked with a
one-key listing. Deletes go in DeleteObjects batches, run concurrently.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from registry.backends.base import FileInfo
from registry.backends.s3.client import S3Bucket
from registry.backends.s3.errors import S3BackendError
from registry.backends.s3.objects import file_info
from registry.backends.transfer import check_prefix, run_all

DELETE_BATCH = 1000


async def entries(
    bucket: S3Bucket, prefix: str, delimiter: str | None, *, folders: bool
) -> AsyncIterator[FileInfo | str]:
    """What ``Backend.list`` yields; ``folders=False`` leaves sub-folders out
    (and so never probes them)."""
    check_prefix(prefix, "S3Backend")
    root = bucket.root
    params: dict[str, Any] = {"Prefix": root + prefix}
    if delimiter is not None:
        params["Delimiter"] = delimiter
    while True:
        page = await bucket.call("list_objects_v2", prefix or "/", **params)
        found: dict[str, FileInfo | str] = {}
        if folders:
            names: Sequence[str] = [
                str(common["Prefix"])[len(root) :] for common in page.get("CommonPrefixes") or ()
            ]
            names = [folder for folder in names if folder and folder != prefix]
            if bucket.verify_folders and names:
                names = await _non_empty(bucket, names)
            for folder in names:
                found[folder] = folder
        for obj in page.get("Contents") or ():
            name = str(obj["Key"])[len(root) :]
            if not name or name.endswith("/"):
                continue  # "folder marker" objects made by consoles are not keys
            found[name] = file_info(name, obj)
        for name in sorted(found):
            yield found[name]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        params["ContinuationToken"] = token


async def _non_empty(bucket: S3Bucket, folders: Sequence[str]) -> Sequence[str]:
    """The folders that still hold at least one key (one tiny listing each)."""
    keep = [False] * len(folders)

    async def probe(index: int) -> None:
        page = await bucket.call(
            "list_objects_v2", folders[index], Prefix=bucket.root + folders[index], MaxKeys=1
        )
        keep[index] = bool(page.get("Contents"))

    await run_all([functools.partial(probe, index) for index in range(len(folders))])
    return [folder for folder, kept in zip(folders, keep, strict=True) if kept]


async def delete(bucket: S3Bucket, keys: Sequence[str]) -> None:
    full_keys = [bucket.full(key) for key in keys]
    if not full_keys:
        return
    if len(full_keys) == 1:
        await bucket.call("delete_object", keys[0], Key=full_keys[0])
        return
    unique = sorted(set(full_keys))
    batches = [unique[i : i + DELETE_BATCH] for i in range(0, len(unique), DELETE_BATCH)]
    failures: list[str] = []

    async def delete_batch(batch: Sequence[str]) -> None:
        response = await bucket.call(
            "delete_objects",
            None,
            Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
        )
        for error in response.get("Errors", []):
            if error.get("Code") != "NoSuchKey":
                failures.append(f"{error.get('Key')}: {error.get('Code')} {error.get('Message')}")

    await run_all([functools.partial(delete_batch, batch) for batch in batches])
    if failures:
        raise S3BackendError(
            f"S3 could not delete {len(failures)} key(s) in bucket {bucket.bucket!r}: "
            + "; ".join(failures[:5])
        )
