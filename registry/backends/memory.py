"""In-process backend: a dict of bytes. For tests and ephemeral registries."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio

from registry.backends.base import Backend, FileInfo, PutMode
from registry.exceptions import ObjectNotFound, PreconditionFailed

_instance_ids = itertools.count()


class MemoryBackend(Backend):
    """Keys live in a dict; every conditional write is atomic on the event loop."""

    def __init__(self, *, concurrency: int = 32) -> None:
        super().__init__(concurrency=concurrency)
        self.uri = f"memory://{next(_instance_ids)}"
        self._data: dict[str, tuple[bytes, FileInfo]] = {}
        self._etags = itertools.count(1)

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state.pop("_etags")
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._etags = itertools.count(len(self._data) + 10_000)

    async def get(self, key: str) -> bytes:
        try:
            return self._data[key][0]
        except KeyError:
            raise ObjectNotFound(key) from None

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        data = await self.get(key)
        info = self._data[key][1]
        await anyio.Path(dest).write_bytes(data)
        return info

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        current = self._data.get(key)
        if mode == "create" and current is not None:
            raise PreconditionFailed(f"{key} already exists")
        if if_match is not None and (current is None or current[1].etag != if_match):
            raise PreconditionFailed(f"{key} changed (expected etag {if_match})")
        info = FileInfo(key=key, size=len(data), etag=str(next(self._etags)), mtime=time.time())
        self._data[key] = (bytes(data), info)
        return info

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        data = await anyio.Path(src).read_bytes()
        return await self.put(key, data, mode=mode)

    async def head(self, key: str) -> FileInfo | None:
        entry = self._data.get(key)
        return entry[1] if entry else None

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        folders: set[str] = set()
        for key in sorted(self._data):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter, 1)[0] + delimiter
                if folder not in folders:
                    folders.add(folder)
                    yield folder
                continue
            yield self._data[key][1]
