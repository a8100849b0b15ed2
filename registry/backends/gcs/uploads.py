"""Writes to GCS: every conditional write is one multipart upload.

``mode="create"`` sends ``ifGenerationMatch=0`` and ``if_match`` sends
``ifGenerationMatch=<generation>``; a lost condition (HTTP 412) raises
``PreconditionFailed``.

A *multipart* upload (``uploadType=multipart``: one request carrying the
object resource and the bytes) is what gcloud-aio sends for ``upload(...,
metadata={...}, force_resumable_upload=False)``, and it is the one upload type
on which fake-gcs-server (1.54) honours ``ifGenerationMatch``: it silently
ignores the condition on simple media and resumable uploads (measured: every
racer "won"). Real GCS honours all three. So small values, and conditional
creates of files of any size, go up as one multipart request (a large file's
body is streamed from disk, never held in memory); unconditional uploads of
files above ``chunk_size`` use the resumable protocol (``resumable.py``).

When an attempt of a conditional write failed after it was sent and a retry
then loses its condition, the stored object's MD5 is compared with what was
sent: the first attempt may have landed, and then the write succeeded.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from registry.backends.base import FileInfo, PutMode
from registry.backends.calls import Ambiguity
from registry.backends.gcs import resumable
from registry.backends.gcs.client import GCSBucket
from registry.backends.gcs.downloads import stat
from registry.backends.gcs.errors import GCSBackendError, may_have_landed
from registry.backends.gcs.objects import (
    CONTENT_TYPE,
    file_info,
    file_md5_b64,
    is_generation,
    md5_b64,
)
from registry.backends.transfer import file_body, read_upload, upload_ready, upload_size
from registry.exceptions import PreconditionFailed

# Non-empty metadata makes gcloud-aio send a multipart upload (see above);
# gcloud-aio turns "Content-Type" into the resource's contentType.
_COMMIT_METADATA = {"Content-Type": CONTENT_TYPE}


def conditions(uri: str, key: str, mode: PutMode, if_match: str | None) -> dict[str, str]:
    """The query parameters that make a write conditional."""
    if if_match is not None:
        if not is_generation(if_match):
            # not a generation this store ever handed out: cannot match
            raise PreconditionFailed(f"{key}: {if_match!r} is not a generation of {uri}")
        return {"ifGenerationMatch": if_match}
    if mode == "create":
        return {"ifGenerationMatch": "0"}
    if mode != "overwrite":
        raise ValueError(f"mode must be 'overwrite' or 'create', got {mode!r}")
    return {}


async def put(bucket: GCSBucket, key: str, data: bytes, when: Mapping[str, str]) -> FileInfo:
    """Store ``data`` under the ``when`` conditions (see :func:`conditions`)."""
    name = bucket.full(key)

    async def attempt() -> Any:
        headers = await bucket.auth_headers()
        async with bucket.limiter:
            return await bucket.storage.upload(
                bucket.bucket,
                name,
                data,
                content_type=CONTENT_TYPE,
                parameters=dict(when),
                headers=headers,
                metadata=dict(_COMMIT_METADATA),
                force_resumable_upload=False,
                timeout=bucket.timeout,
            )

    resource = await _conditional_write(
        bucket, key, attempt, when, len(data), lambda: anyio.to_thread.run_sync(md5_b64, data)
    )
    return file_info(key, resource, size=len(data))


async def put_file(
    bucket: GCSBucket,
    key: str,
    src: Path,
    when: Mapping[str, str],
    chunk_size: int,
    upload_chunk: int | None,
) -> FileInfo:
    """Up to ``chunk_size`` bytes: one multipart request. Above: a multipart
    request streamed from the file when conditional, else a resumable upload."""
    name = bucket.full(key)
    size = await anyio.to_thread.run_sync(upload_size, src)
    if size <= chunk_size:
        data = await anyio.to_thread.run_sync(read_upload, src)
        return await put(bucket, key, data, when)
    if when:
        resource = await _put_streamed_multipart(bucket, key, name, src, size, when)
    else:
        resource = await resumable.upload(bucket, key, name, src, size, upload_chunk)
    return file_info(key, resource, size=size)


async def _conditional_write(
    bucket: GCSBucket,
    key: str,
    attempt: Callable[[], Awaitable[Any]],
    when: Mapping[str, str],
    size: int,
    md5: Callable[[], Awaitable[str]],
) -> dict[str, Any]:
    """Run an upload; when a retry of a conditional write loses its condition
    after an attempt whose outcome is unknown, report success if the stored
    object is ours (same MD5)."""
    ambiguity = Ambiguity(may_have_landed)
    try:
        resource: dict[str, Any] = await bucket.retrying(
            attempt,
            "upload",
            key,
            on_retry=ambiguity.note,
            conditional=bool(when),
            size=size,
        )
    except PreconditionFailed:
        if ambiguity.possible:
            stored = await stat(bucket, key)
            if stored is not None and stored.get("md5Hash") == await md5():
                return stored
        raise
    return resource


async def _put_streamed_multipart(
    bucket: GCSBucket, key: str, name: str, src: Path, size: int, when: Mapping[str, str]
) -> dict[str, Any]:
    """One multipart upload whose body streams from the file (bounded memory):
    the conditional upload every server honours (see the module docstring)."""
    boundary = os.urandom(16).hex()
    resource = json.dumps({"name": name, "contentType": CONTENT_TYPE}).encode()
    head = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
        + resource
        + f"\r\n--{boundary}\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n".encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    url = bucket.object_url(name, upload=True)
    params = {"uploadType": "multipart", **when}

    def shrank() -> Exception:
        return GCSBackendError(f"{src} shrank while it was being uploaded")

    async def attempt() -> Any:
        fd = await anyio.to_thread.run_sync(os.open, src, os.O_RDONLY)
        try:

            async def body() -> AsyncIterator[bytes]:
                yield head
                async for piece in file_body(fd, 0, size, shrank):
                    yield piece
                yield tail

            headers = {
                "Content-Type": f"multipart/related; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
                "Accept": "application/json",
            }
            headers.update(await bucket.auth_headers())
            async with bucket.limiter:
                response = await bucket.http.request(
                    "POST", url, headers, params=params, data=body(), timeout=bucket.timeout
                )
                return await response.json(content_type=None)
        finally:
            os.close(fd)

    def md5_written() -> str:
        upload_ready()
        return file_md5_b64(src)

    return await _conditional_write(
        bucket, key, attempt, when, size, lambda: anyio.to_thread.run_sync(md5_written)
    )
