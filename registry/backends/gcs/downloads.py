"""Reads from GCS: whole values, object metadata, and files fetched as ranged
GETs (``chunk_size`` each, a few in flight, written at their offsets).

Memory is bounded by the ranges in flight (~1 MiB each), whatever the
object's size. Every range is checked against the generation of the first
one (``X-Goog-Generation``): an object overwritten mid-download restarts the
download instead of mixing two versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.backends import transfer
from registry.backends.base import FileInfo
from registry.backends.gcs.client import GCSBucket
from registry.backends.gcs.errors import GCSBackendError, http_status
from registry.backends.gcs.objects import file_info, parse_time
from registry.exceptions import ObjectNotFound

MiB = 1024 * 1024
_READ_CHUNK = 1 * MiB
_WRITE_BUFFER = 1 * MiB  # per range in flight: what get_file holds in memory


async def get(bucket: GCSBucket, key: str) -> bytes:
    name = bucket.full(key)
    data: bytes = await bucket.call(
        bucket.storage.download, "download", key, bucket.bucket, name, size=len
    )
    return data


async def stat(bucket: GCSBucket, key: str) -> dict[str, Any] | None:
    """The object's resource (size, generation, md5Hash, ...), or None if missing."""
    name = bucket.full(key)
    try:
        resource: dict[str, Any] = await bucket.call(
            bucket.storage.download_metadata, "get metadata", key, bucket.bucket, name
        )
    except ObjectNotFound:
        return None
    return resource


async def head(bucket: GCSBucket, key: str) -> FileInfo | None:
    resource = await stat(bucket, key)
    return None if resource is None else file_info(key, resource)


async def get_file(bucket: GCSBucket, key: str, dest: Path, span: int) -> FileInfo:
    """``key`` into ``dest`` in ranges of ``span`` bytes of one generation."""
    name = bucket.full(key)

    async def get_range(
        fd: int, start: int, length: int | None, generation: str | None
    ) -> tuple[Mapping[str, str], int]:
        return await _get_range(bucket, key, name, fd, start, length, generation)

    async def identify(headers: Mapping[str, str], received: int) -> tuple[str | None, FileInfo]:
        total = transfer.total_from_content_range(headers.get("Content-Range"), received)
        generation = headers.get("X-Goog-Generation")
        if generation:
            mtime = parse_time(headers.get("Last-Modified"))
            return generation, FileInfo(key=key, size=total, etag=generation, mtime=mtime)
        # a server that does not say: ask (and do not pin the ranges)
        resource = await stat(bucket, key)
        if resource is None:
            raise ObjectNotFound(key)
        return None, file_info(key, resource, size=total)

    return await transfer.ranged_download(
        dest, key, span, bucket.concurrency, get_range, identify, GCSBackendError
    )


async def _get_range(
    bucket: GCSBucket,
    key: str,
    name: str,
    fd: int,
    start: int,
    length: int | None,
    generation: str | None,
) -> tuple[Mapping[str, str], int]:
    """GET bytes [start, start+length) (or everything) into ``fd`` at their offset."""

    async def attempt() -> tuple[Mapping[str, str], int]:
        headers = await bucket.auth_headers()
        if length is not None:
            headers["Range"] = f"bytes={start}-{start + length - 1}"
        async with bucket.limiter:
            try:
                stream = await bucket.storage.download_stream(
                    bucket.bucket, name, headers=headers, timeout=bucket.timeout
                )
            except Exception as exc:
                status = http_status(exc)
                if start > 0 and status in (404, 416):
                    raise transfer.ChangedWhileReading from exc  # replaced (shorter) or deleted
                if status == 416:
                    raise transfer.EmptyObject from exc
                raise
            async with stream as response:
                got = response.headers.get("X-Goog-Generation")
                if generation is not None and got and got != generation:
                    raise transfer.ChangedWhileReading
                chunks = transfer.stream_chunks(response.content, _READ_CHUNK)
                written = await transfer.write_chunks(fd, chunks, start, _WRITE_BUFFER)
                return response.headers, written

    return await bucket.retrying(attempt, "download range", key, size=lambda r: r[1])
