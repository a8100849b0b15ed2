"""Reads from S3: whole values, HEADs, and files fetched as concurrent ranged
GETs pinned to the first range's ETag with ``If-Match`` (an object replaced
mid-download restarts the download instead of mixing two versions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from registry.backends import transfer
from registry.backends.base import FileInfo
from registry.backends.s3.client import S3Bucket
from registry.backends.s3.errors import S3BackendError, client_error_info
from registry.backends.s3.objects import file_info, quote_etag
from registry.exceptions import ObjectNotFound

MiB = 1024 * 1024
DOWNLOAD_RANGE_SIZE = 8 * MiB
_READ_CHUNK = 1 * MiB
_WRITE_BUFFER = 4 * MiB


async def get(bucket: S3Bucket, key: str) -> bytes:
    return (await get_tagged(bucket, key))[0]


async def get_tagged(bucket: S3Bucket, key: str) -> tuple[bytes, str]:
    """The object and its ETag, from the one GET."""
    full = bucket.full(key)

    async def attempt() -> tuple[bytes, str]:
        async with bucket.limiter:
            response = await bucket.client.get_object(Bucket=bucket.bucket, Key=full)
            body = response["Body"]
            try:
                data: bytes = await body.read()
            except BaseException:
                body.close()
                raise
            return data, file_info(key, response).etag

    return await bucket.retrying(attempt, "get_object", key, size=lambda got: len(got[0]))


async def head(bucket: S3Bucket, key: str) -> FileInfo | None:
    try:
        response = await bucket.call("head_object", key, Key=bucket.full(key))
    except ObjectNotFound:
        return None
    return file_info(key, response)


async def get_file(bucket: S3Bucket, key: str, dest: Path, span: int) -> FileInfo:
    """``key`` into ``dest`` in ranges of ``span`` bytes pinned to one ETag."""
    full = bucket.full(key)

    async def get_range(
        fd: int, start: int, length: int | None, etag: str | None
    ) -> tuple[dict[str, Any], int]:
        return await _get_range(bucket, key, full, fd, start, length, etag)

    async def identify(first: dict[str, Any], received: int) -> tuple[str, FileInfo]:
        total = transfer.total_from_content_range(first.get("ContentRange"), received)
        info = file_info(key, first, size=total)
        return info.etag, info

    return await transfer.ranged_download(
        dest, key, span, bucket.concurrency, get_range, identify, S3BackendError
    )


async def _get_range(
    bucket: S3Bucket,
    key: str,
    full: str,
    fd: int,
    start: int,
    length: int | None,
    etag: str | None,
) -> tuple[dict[str, Any], int]:
    """GET bytes [start, start+length) (or everything) into ``fd`` at their offset."""
    params: dict[str, Any] = {"Bucket": bucket.bucket, "Key": full}
    if length is not None:
        params["Range"] = f"bytes={start}-{start + length - 1}"
    if etag is not None:
        params["IfMatch"] = quote_etag(etag)

    async def attempt() -> tuple[dict[str, Any], int]:
        async with bucket.limiter:
            try:
                response = await bucket.client.get_object(**params)
            except Exception as exc:
                info = client_error_info(exc)
                if info is not None and (info[0] == 416 or info[1] == "InvalidRange"):
                    raise transfer.EmptyObject from exc
                if etag is not None and info is not None and info[0] == 412:
                    raise transfer.ChangedWhileReading from exc
                raise
            body = response["Body"]
            try:
                written = await transfer.write_chunks(fd, _chunks(body), start, _WRITE_BUFFER)
            except BaseException:
                body.close()
                raise
            return response, written

    return await bucket.retrying(attempt, "get_object range", key, size=lambda r: r[1])


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    while chunk := await body.read(_READ_CHUNK):
        yield chunk
