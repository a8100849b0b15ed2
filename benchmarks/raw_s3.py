"""The raw baseline on S3 servers: aioboto3 calls on a client set up like the
backend's (connection pool = its concurrency, checksums only when required,
path-style addressing).

Large files: a hand-written multipart upload and concurrent ranged GETs at
the backend's part size and parts in flight (8 MiB x 8); that is as fast as
aioboto3's managed ``upload_file`` / ``download_file`` at the same settings
or faster, so a fair ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.common import MiB, pool
from registry.backends.s3 import (
    DEFAULT_PART_SIZE,
    DOWNLOAD_RANGE_SIZE,
    MAX_PARTS_IN_FLIGHT,
    S3Backend,
)
from registry.backends.transfer import pwrite_all
from tests.servers import S3Server


class RawS3:
    """What the registry's S3 requests cost without the registry."""

    small_rounds = 2  # rounds are capped to keep the group near three minutes

    def __init__(self, client: Any, backend: S3Backend) -> None:
        self.client = client
        self.width = backend.concurrency
        self.part = backend.part_size or DEFAULT_PART_SIZE
        self.span = backend.part_size or DOWNLOAD_RANGE_SIZE
        self.big_width = max(1, min(MAX_PARTS_IN_FLIGHT, backend.concurrency))
        self.small_save = f"put_object If-None-Match x{self.width}"
        self.small_load = f"get_object x{self.width}"
        self.commit = "one conditional PUT"
        self.big_save = f"multipart {self.part // MiB} MiB x{self.big_width}"
        self.big_load = f"ranged GET {self.span // MiB} MiB x{self.big_width}"
        self.big_save_how = "a multipart upload reading the copy as it is written"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, server: S3Server, backend: S3Backend) -> AsyncIterator[RawS3]:
        import aioboto3  # type: ignore[import-untyped, unused-ignore]
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]

        config = AioConfig(
            max_pool_connections=backend.concurrency,
            connect_timeout=5.0,
            read_timeout=60.0,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        async with aioboto3.Session().client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            config=config,
        ) as client:
            yield cls(client, backend)

    async def put_small(self, bucket: str, key: str, data: bytes) -> None:
        """The registry's commit request: a conditional PUT."""
        await self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")

    async def get_small(self, bucket: str, key: str) -> bytes:
        response = await self.client.get_object(Bucket=bucket, Key=key)
        data: bytes = await response["Body"].read()
        return data

    async def delete_prefix(self, bucket: str, prefix: str) -> None:
        """Remove every key under ``prefix`` (outside any timing)."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            page = await self.client.list_objects_v2(**params)
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents") or ()]
            if keys:
                await self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": keys, "Quiet": True}
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def upload_big(self, bucket: str, key: str, src: Path) -> None:
        """What ``put_file`` does, by hand: parts in flight, each read with
        pread in a thread and sent with ``upload_part``."""
        client, part_size = self.client, self.part
        size = src.stat().st_size
        count = -(-size // part_size)
        created = await client.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = [{} for _ in range(count)]
        fd = os.open(src, os.O_RDONLY)
        try:

            async def one(index: int) -> None:
                offset = index * part_size
                length = min(part_size, size - offset)
                body = await asyncio.to_thread(os.pread, fd, length, offset)
                assert len(body) == length
                response = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=index + 1, Body=body
                )
                parts[index] = {"PartNumber": index + 1, "ETag": response["ETag"]}

            await pool(count, self.big_width, one)
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        finally:
            os.close(fd)

    async def download_big(self, bucket: str, key: str, dest: Path) -> int:
        """What ``get_file`` does, by hand: a first ranged GET gives the size, then
        ranged GETs in flight, each written with pwrite in a thread."""
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:

            async def fetch(start: int, length: int) -> tuple[dict[str, Any], int]:
                response = await self.client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )
                data: bytes = await response["Body"].read()
                await asyncio.to_thread(pwrite_all, fd, data, start)
                return response, len(data)

            span = self.span
            first, received = await fetch(0, span)
            total = int(str(first["ContentRange"]).rsplit("/", 1)[1])
            ranges = [(at, min(span, total - at)) for at in range(received, total, span)]
            await pool(len(ranges), self.big_width, lambda i: fetch(*ranges[i]))
        finally:
            os.close(fd)
        return total
