"""A backend wrapper that reports the bytes of each upload as they are read
(pieces of large files; small files when done), so ``put`` can drive a byte
progress bar that moves within one large file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import anyio.to_thread

from registry.backends.base import Backend, FileInfo, PutMode
from registry.backends.transfer import upload_progress


class UploadCounter(Backend):
    """Delegates everything to ``inner``; calls ``on_bytes(count)`` as uploads go."""

    def __init__(self, inner: Backend, on_bytes: Callable[[int], None]) -> None:
        super().__init__(concurrency=inner.concurrency)
        self.inner = inner
        self.on_bytes = on_bytes
        self.uri = inner.uri
        self.is_remote = inner.is_remote

    @property
    def identity(self) -> str:
        return self.inner.identity  # the same store: the same local cache

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        return await self.inner.get_file(key, dest)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        return await self.inner.get_tagged(key)

    async def put_hint(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        return await self.inner.put_hint(key, data, mode=mode, if_match=if_match)

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        info = await self.inner.put(key, data, mode=mode, if_match=if_match)
        if key.startswith("objects/"):  # artifacts, not metadata
            self.on_bytes(len(data))
        return info

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        size = (await anyio.to_thread.run_sync(os.stat, src)).st_size
        heard = 0

        def read(count: int) -> None:  # pieces of a large file, as they are read
            nonlocal heard
            count = min(count, size - heard)  # a retried piece is read twice
            if count > 0:
                heard += count
                self.on_bytes(count)

        token = upload_progress.set(read)
        try:
            info = await self.inner.put_file(key, src, mode=mode)
        finally:
            upload_progress.reset(token)
        self.on_bytes(max(0, info.size - heard))  # small files are read in one go
        return info

    async def head(self, key: str) -> FileInfo | None:
        return await self.inner.head(key)

    async def delete(self, keys: Sequence[str]) -> None:
        await self.inner.delete(keys)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        async for entry in self.inner.list(prefix, delimiter=delimiter):
            yield entry

    async def list_children(self, prefix: str) -> Sequence[str]:
        return await self.inner.list_children(prefix)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    async def flush(self, keys: Sequence[str]) -> None:
        await self.inner.flush(keys)

    async def remove_stale_temp(self, *, older_than: float, dry_run: bool = False) -> int:
        return await self.inner.remove_stale_temp(older_than=older_than, dry_run=dry_run)
