"""Copy and move between mounts: a version loaded once from its source mount
and saved to the destination with its metadata and materializer; a move
deletes the source only after the destination has committed.

Mixed into AsyncStore (core.py), which supplies the mount table.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, overload

import anyio.to_thread

from registry.core.fanout import fanout
from registry.core.types import BatchResult
from registry.core.versions import LATEST
from registry.store.routing import MountTable, Route

# copy/move hold one loaded object each: keep few in flight
TRANSFER_CONCURRENCY = 4
_PATH_MATERIALIZER = "registry.materializers.path.PathMaterializer"


def _discard_loaded(obj: Any, materializer: str) -> None:
    """Remove the temporary copy a path object was loaded into (copy/move)."""
    if materializer != _PATH_MATERIALIZER or not isinstance(obj, Path):
        return
    folder = obj.parent
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("registry-"):
        shutil.rmtree(folder, ignore_errors=True)


class StoreTransfer:
    """copy and move (see the module docstring)."""

    _table: MountTable

    @overload
    async def copy(self, src: str, dst: str) -> str: ...

    @overload
    async def copy(self, src: list[str], dst: list[str]) -> BatchResult[str]: ...

    async def copy(self, src: str | list[str], dst: str | list[str]) -> str | BatchResult[str]:
        """Copy one version (default: the latest) to ``dst``; returns the new version.

        ``dst`` gets its own version if the key names one, else the next one.
        Metadata and materializer are kept. Path objects stream file by file;
        other objects are loaded once, then saved.
        """
        return await self._transfer(src, dst, move=False)

    @overload
    async def move(self, src: str, dst: str) -> str: ...

    @overload
    async def move(self, src: list[str], dst: list[str]) -> BatchResult[str]: ...

    async def move(self, src: str | list[str], dst: str | list[str]) -> str | BatchResult[str]:
        """``copy``, then delete the source version once the copy is committed.

        While both exist, unqualified reads through this store see only the
        destination, so they never fail as ambiguous mid-move.
        """
        return await self._transfer(src, dst, move=True)

    async def _transfer(
        self, src: str | list[str], dst: str | list[str], *, move: bool
    ) -> str | BatchResult[str]:
        if isinstance(src, list) != isinstance(dst, list):
            raise TypeError("src and dst must both be keys or both be lists of keys")
        if isinstance(src, list) and isinstance(dst, list):
            if len(src) != len(dst):
                raise ValueError(f"{len(src)} sources for {len(dst)} destinations; give one each")

            async def one(pair: tuple[str, str]) -> str:
                return await self._transfer_one(pair[0], pair[1], move)

            return await fanout(one, list(zip(src, dst, strict=True)), limit=TRANSFER_CONCURRENCY)
        assert isinstance(src, str) and isinstance(dst, str)
        return await self._transfer_one(src, dst, move)

    async def _transfer_one(self, src: str, dst: str, move: bool) -> str:
        action = "move" if move else "copy"
        source = await self._table.read_route(src)
        if move:
            self._table.writable(source, "move from")
        target = self._table.write_route(dst, f"{action} to")
        info = await source.registry.info(source.key.name, source.key.version or LATEST)
        version: str = info["version"]
        # Registered before the destination commits: from then on unqualified
        # reads of this name prefer the destination (see MountTable.pick).
        moving = (source.mount, target.mount, source.key.name)
        registered = move and source.key.name == target.key.name
        if registered:
            self._table.moving[moving] += 1
        try:
            saved = await self._copy_version(source, target, version, info)
            if move:
                await source.registry.delete(source.key.name, version=version)
        finally:
            if registered:
                self._table.moving[moving] -= 1
                if not self._table.moving[moving]:
                    del self._table.moving[moving]
        return saved

    async def _copy_version(
        self, source: Route, target: Route, version: str, info: dict[str, Any]
    ) -> str:
        obj = await source.registry.load(source.key.name, version=version)
        try:
            return await target.registry.save(
                target.key.name,
                obj,
                version=target.key.version,
                metadata=info["metadata"],
                materializer=info["materializer"],
            )
        finally:
            await anyio.to_thread.run_sync(_discard_loaded, obj, info["materializer"])
