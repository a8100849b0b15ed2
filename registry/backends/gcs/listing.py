"""Listing keys on GCS, and deleting them (one request per key, many in
flight): the calls over many keys.

Listings are pages of the JSON API's ``objects.list``, sorted per page, with
"folder" placeholder objects skipped. fake-gcs-server repeats every prefix on
every page, so folders already reported are not reported again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from registry.backends.base import FileInfo
from registry.backends.gcs.client import GCSBucket
from registry.backends.gcs.objects import file_info, name_only
from registry.backends.transfer import check_prefix, run_all
from registry.exceptions import ObjectNotFound

LIST_PAGE_SIZE = 1000
_LIST_FIELDS = "items(name,size,generation,updated),prefixes,nextPageToken"
_NAMES_FIELDS = "items(name),nextPageToken"


async def entries(
    bucket: GCSBucket, prefix: str, delimiter: str | None, *, folders: bool
) -> AsyncIterator[FileInfo | str]:
    """What ``Backend.list`` yields; ``folders=False`` lists names only (sizes
    and generations not asked for) and leaves sub-folders out."""
    check_prefix(prefix, "GCSBackend")
    root = bucket.root
    params: dict[str, str] = {
        "prefix": root + prefix,
        "maxResults": str(LIST_PAGE_SIZE),
        "fields": _LIST_FIELDS if folders else _NAMES_FIELDS,
    }
    if delimiter is not None:
        params["delimiter"] = delimiter
    seen_folders: set[str] = set()
    while True:
        page: dict[str, Any] = await bucket.call(
            bucket.storage.list_objects, "list", None, bucket.bucket, params=dict(params)
        )
        found: dict[str, FileInfo | str] = {}
        if folders:
            for common in page.get("prefixes") or ():
                folder = str(common)[len(root) :]
                if folder and folder != prefix and folder not in seen_folders:
                    seen_folders.add(folder)
                    found[folder] = folder
        for item in page.get("items") or ():
            name = str(item["name"])[len(root) :]
            if not name or name.endswith("/"):
                continue  # "folder" placeholder objects made by consoles are not keys
            found[name] = file_info(name, item) if folders else name_only(name)
        for entry_name in sorted(found):
            yield found[entry_name]
        token = page.get("nextPageToken")
        if not token:
            return
        params["pageToken"] = str(token)


async def delete(bucket: GCSBucket, keys: Sequence[str]) -> None:
    names = sorted({bucket.full(key) for key in keys})
    if not names:
        return
    pending = iter(names)

    async def worker() -> None:
        for name in pending:
            key = name[len(bucket.root) :]
            with contextlib.suppress(ObjectNotFound):
                await bucket.call(bucket.storage.delete, "delete", key, bucket.bucket, name)

    await run_all([worker] * max(1, min(bucket.concurrency, len(names))))
