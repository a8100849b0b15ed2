"""Writes to S3: a conditional PUT for values, multipart uploads for large files.

``mode="create"`` sends ``If-None-Match: *`` and ``if_match`` sends
``If-Match: "<etag>"``; a lost condition (HTTP 412, or 404 for ``If-Match``
on a key that is gone) raises ``PreconditionFailed``. When an attempt of a
conditional write failed after it was sent and a retry then loses its
condition, the stored ETag is compared with the MD5 of what was sent: the
first attempt may have landed, and then the write succeeded.

Large files go up as multipart uploads: the part size adapts to the file
(at most 10,000 parts), a few parts are in flight, and memory is part size x
parts in flight. A failed upload is aborted so no parts are left behind.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from registry.backends.base import FileInfo, PutMode
from registry.backends.calls import Ambiguity
from registry.backends.s3.client import S3Bucket
from registry.backends.s3.downloads import head
from registry.backends.s3.errors import S3BackendError, may_have_landed
from registry.backends.s3.objects import file_info, md5, multipart_etag, quote_etag
from registry.backends.transfer import pread_exact, read_upload, run_all, upload_size
from registry.exceptions import ObjectNotFound, PreconditionFailed

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
MAX_BUFFERED_BYTES = 256 * MiB  # cap on part bytes held in memory by one transfer
MAX_PARTS_IN_FLIGHT = 8

_CHECKSUM_FIELDS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


async def put(
    bucket: S3Bucket, key: str, data: bytes, mode: PutMode, if_match: str | None
) -> FileInfo:
    params: dict[str, Any] = {"Key": bucket.full(key), "Body": data}
    if if_match is not None:
        params["IfMatch"] = quote_etag(if_match)
    elif mode == "create":
        params["IfNoneMatch"] = "*"
    ambiguity = Ambiguity(may_have_landed)
    try:
        response = await bucket.call(
            "put_object", key, on_retry=ambiguity.note, conditional=len(params) > 2, **params
        )
    except PreconditionFailed:
        if ambiguity.possible:
            landed = await _landed(bucket, key, md5(data).hex())
            if landed is not None:
                return landed
        raise
    return file_info(key, response, size=len(data))


async def _landed(bucket: S3Bucket, key: str, expected_etag: str) -> FileInfo | None:
    """After an ambiguous write: the stored object if it is ours (same ETag)."""
    info = await head(bucket, key)
    return info if info is not None and info.etag == expected_etag else None


async def put_file(
    bucket: S3Bucket, key: str, src: Path, mode: PutMode, part_size: int
) -> FileInfo:
    """One PUT up to ``part_size`` bytes, a multipart upload above it."""
    bucket.full(key)
    size = await anyio.to_thread.run_sync(upload_size, src)
    if size <= part_size:
        data = await anyio.to_thread.run_sync(read_upload, src)
        return await put(bucket, key, data, mode, None)
    return await _put_multipart(bucket, key, src, size, mode, part_size_for(size, part_size))


def part_size_for(size: int, part_size: int) -> int:
    """``part_size``, grown (in whole MiB) when the file would need more than 10,000 parts."""
    if math.ceil(size / part_size) > MAX_PARTS:
        part_size = math.ceil(size / MAX_PARTS / MiB) * MiB
    return part_size


async def _put_multipart(
    bucket: S3Bucket, key: str, src: Path, size: int, mode: PutMode, part_size: int
) -> FileInfo:
    full = bucket.full(key)
    count = math.ceil(size / part_size)
    in_flight = max(
        1, min(MAX_PARTS_IN_FLIGHT, bucket.concurrency, count, MAX_BUFFERED_BYTES // part_size)
    )
    created = await bucket.call("create_multipart_upload", key, Key=full)
    upload_id = created["UploadId"]
    parts: list[dict[str, Any]] = [{} for _ in range(count)]
    fd = await anyio.to_thread.run_sync(os.open, src, os.O_RDONLY)
    try:
        pending = iter(range(count))

        def shrank() -> Exception:
            return S3BackendError(f"{src} shrank while it was being uploaded")

        def read_part(index: int, progress: bool = True) -> bytes:
            offset = index * part_size
            length = min(part_size, size - offset)
            return pread_exact(fd, length, offset, shrank, progress=progress)

        def part_digests() -> list[bytes]:
            # only after an ambiguous complete (rare): the parts are read again
            # rather than hashed (MD5, slower than the upload) on every upload
            return [md5(read_part(index, progress=False)) for index in range(count)]

        async def worker() -> None:
            for index in pending:
                body = await anyio.to_thread.run_sync(read_part, index)
                response = await bucket.call(
                    "upload_part",
                    key,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=body,
                )
                entry = {"PartNumber": index + 1, "ETag": response["ETag"]}
                entry.update({f: response[f] for f in _CHECKSUM_FIELDS if response.get(f)})
                parts[index] = entry

        await run_all([worker] * in_flight)

        params: dict[str, Any] = {
            "Key": full,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if mode == "create":
            params["IfNoneMatch"] = "*"
        ambiguity = Ambiguity(may_have_landed)
        try:
            response = await bucket.call(
                "complete_multipart_upload", key, on_retry=ambiguity.note, **params
            )
        except (PreconditionFailed, ObjectNotFound):
            # ObjectNotFound here is NoSuchUpload: a retried complete whose
            # first attempt had already completed the upload
            if ambiguity.possible:
                digests = await anyio.to_thread.run_sync(part_digests)
                landed = await _landed(bucket, key, multipart_etag(digests))
                if landed is not None:
                    return landed
            raise
    except BaseException:
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(10),
            contextlib.suppress(Exception),
        ):
            await bucket.call("abort_multipart_upload", key, Key=full, UploadId=upload_id)
        raise
    finally:
        os.close(fd)
    return file_info(key, response, size=size)
