"""A backend wrapper that counts requests, for request-count tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path

from registry.backends.base import Backend, FileInfo, PutMode


class CountingBackend(Backend):
    """Delegates to ``inner`` and counts each call by method name.

    ``remote=True`` makes the registry treat it as remote (with a cache), so
    an in-memory store can stand in for S3 when counting cache behaviour.
    """

    def __init__(self, inner: Backend, *, remote: bool | None = None) -> None:
        super().__init__(concurrency=inner.concurrency)
        self.inner = inner
        self.uri = f"counting+{inner.uri}"
        self.is_remote = inner.is_remote if remote is None else remote
        self.counts: Counter[str] = Counter()

    @property
    def identity(self) -> str:
        return f"counting+{self.inner.identity}"

    def reset(self) -> None:
        self.counts.clear()

    async def get(self, key: str) -> bytes:
        self.counts["get"] += 1
        return await self.inner.get(key)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        self.counts["get_file"] += 1
        return await self.inner.get_file(key, dest)

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        self.counts["put"] += 1
        return await self.inner.put(key, data, mode=mode, if_match=if_match)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        self.counts["get"] += 1  # one GET where the store returns the etag with the body
        return await self.inner.get_tagged(key)

    async def put_hint(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        self.counts["put"] += 1
        return await self.inner.put_hint(key, data, mode=mode, if_match=if_match)

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        self.counts["put_file"] += 1
        return await self.inner.put_file(key, src, mode=mode)

    async def head(self, key: str) -> FileInfo | None:
        self.counts["head"] += 1
        return await self.inner.head(key)

    async def delete(self, keys: Sequence[str]) -> None:
        self.counts["delete"] += 1
        await self.inner.delete(keys)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        self.counts["list"] += 1
        async for entry in self.inner.list(prefix, delimiter=delimiter):
            yield entry

    async def list_children(self, prefix: str) -> Sequence[str]:
        self.counts["list"] += 1
        return await self.inner.list_children(prefix)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def folder_stamp(self, prefix: str) -> Hashable | None:
        return self.inner.folder_stamp(prefix)  # a stat, not a request: not counted

    def local_path(self, key: str) -> Path | None:
        # A local store is read in place, as the registry would read it; one
        # counted as remote goes through the cache like a real remote one.
        return None if self.is_remote else self.inner.local_path(key)

    async def flush(self, keys: Sequence[str]) -> None:
        await self.inner.flush(keys)

    async def remove_stale_temp(self, *, older_than: float, dry_run: bool = False) -> int:
        return await self.inner.remove_stale_temp(older_than=older_than, dry_run=dry_run)
