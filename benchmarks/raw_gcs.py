"""The raw baseline on fake-gcs-server: gcloud-aio-storage calls on a
``Storage`` client set up like the backend's (its own aiohttp session,
connection pool = its concurrency, anonymous as against any emulator).

Large files: gcloud-aio's own resumable upload of the open file
(``force_resumable_upload=True``: one session, the file streamed in one PUT),
which is what the registry's ``put_file`` sends too (``upload_chunk=None``,
the default). The upload is bound by fake-gcs-server's CPU (it used 5-8 s of
CPU per three 256 MiB uploads, the client under 1 s), so what separates the
registry's save from this baseline is the copy of the file into the cache
with its sha256, before the upload. Loads: concurrent ranged GETs through
``Storage.download_stream`` at the backend's range size and ranges in flight
(8 MiB x 8), written with pwrite — the registry's own transfer shape
(gcloud-aio's ``download_to_filename`` would hold the whole object in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import MiB, pool
from registry.backends.gcs import MAX_RANGES_IN_FLIGHT, GCSBackend
from registry.backends.transfer import pwrite_all
from tests.servers import FakeGCSServer

CONTENT_TYPE = "application/octet-stream"
READ_CHUNK = 1 * MiB


class _NoToken:
    """What gcloud-aio gets as its token against an emulator (it never asks)."""

    async def get(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class _Spooler:
    """Writes a streamed range at its offset, about 1 MiB per thread hop."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset
        self.pending: list[bytes] = []
        self.size = 0

    async def add(self, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.size += len(chunk)
        if self.size >= READ_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        chunks, at = self.pending, self.offset
        self.offset += self.size
        self.pending, self.size = [], 0
        await asyncio.to_thread(self._write, chunks, at)

    def _write(self, chunks: Sequence[bytes], offset: int) -> None:
        for chunk in chunks:
            pwrite_all(self.fd, chunk, offset)
            offset += len(chunk)


class RawGCS:
    """What the registry's GCS requests cost without the registry."""

    small_rounds = 3  # rounds are capped to keep the group well under three minutes

    def __init__(self, storage: Any, backend: GCSBackend) -> None:
        self.storage = storage
        self.width = backend.concurrency
        self.span = backend.chunk_size
        self.big_width = max(1, min(MAX_RANGES_IN_FLIGHT, backend.concurrency))
        self.small_save = f"multipart ifGenerationMatch=0 x{self.width}"
        self.small_load = f"download x{self.width}"
        self.commit = "one conditional multipart upload"
        self.big_save = "resumable upload, 1 stream"
        self.big_load = f"ranged GET {self.span // MiB} MiB x{self.big_width}"
        self.big_save_how = (
            "a resumable upload (one streamed PUT) reading the copy as it is written"
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, server: FakeGCSServer, backend: GCSBackend) -> AsyncIterator[RawGCS]:
        import aiohttp
        from gcloud.aio.storage import Storage

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=backend.concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=60.0),
        )
        try:
            token: Any = _NoToken()
            yield cls(Storage(session=session, token=token, api_root=server.endpoint), backend)
        finally:
            await session.close()

    async def put_small(self, bucket: str, key: str, data: bytes) -> None:
        """The registry's commit request: a conditional multipart upload."""
        await self.storage.upload(
            bucket,
            key,
            data,
            content_type=CONTENT_TYPE,
            parameters={"ifGenerationMatch": "0"},
            metadata={"Content-Type": CONTENT_TYPE},
            force_resumable_upload=False,
        )

    async def get_small(self, bucket: str, key: str) -> bytes:
        data: bytes = await self.storage.download(bucket, key)
        return data

    async def delete_prefix(self, bucket: str, prefix: str) -> None:
        """Remove every object under ``prefix`` (outside any timing)."""
        names: list[str] = []
        params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
        while True:
            page = await self.storage.list_objects(bucket, params=dict(params))
            names += [str(item["name"]) for item in page.get("items") or ()]
            token = page.get("nextPageToken")
            if not token:
                break
            params["pageToken"] = str(token)
        await pool(len(names), self.width, lambda i: self.storage.delete(bucket, names[i]))

    async def upload_big(self, bucket: str, key: str, src: Path) -> None:
        with open(src, "rb") as handle:
            await self.storage.upload(
                bucket,
                key,
                handle,
                content_type=CONTENT_TYPE,
                force_resumable_upload=True,
                timeout=600,
            )

    async def download_big(self, bucket: str, key: str, dest: Path) -> int:
        """What ``get_file`` does, by hand: a first ranged GET gives the size, then
        ranged GETs in flight, each streamed and written in a thread about 1 MiB
        at a time."""
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:

            async def fetch(start: int, length: int) -> tuple[str, int]:
                headers = {"Range": f"bytes={start}-{start + length - 1}"}
                stream = await self.storage.download_stream(
                    bucket, key, headers=headers, timeout=600
                )
                spool = _Spooler(fd, start)
                async with stream as response:
                    async for chunk in response.content.iter_chunked(READ_CHUNK):
                        await spool.add(chunk)
                    await spool.flush()
                    content_range = str(response.headers.get("Content-Range", ""))
                return content_range, spool.offset - start

            span = self.span
            content_range, received = await fetch(0, span)
            total = int(content_range.rsplit("/", 1)[1])
            ranges = [(at, min(span, total - at)) for at in range(received, total, span)]
            await pool(len(ranges), self.big_width, lambda i: fetch(*ranges[i]))
        finally:
            os.close(fd)
        return total
