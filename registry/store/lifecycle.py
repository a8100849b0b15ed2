"""Aliases, retention and find on a Store, routed by key (mixed into AsyncStore).

Loading by alias needs nothing here: ``load("models/resnet@production")``
passes the alias as the version. Alias changes go to the one mount that holds
the name (unqualified keys are searched like reads) and are refused on
read-only mounts; a retention policy goes where a save of the key would go;
``find`` asks every mount at once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from registry.core.fanout import fanout
from registry.core.search import Found, Time
from registry.store.errors import StoreKeyFormatError
from registry.store.keys import KEY_FORMAT
from registry.store.routing import MountTable, Route


class StoreLifecycle:
    """The Store's alias, retention and find methods (see the module docstring)."""

    _table: MountTable

    async def _name_route(self, key: str, action: str | None) -> Route:
        """The mount holding ``key`` (a key without '@version'); writable if
        ``action`` says what will be written."""
        route = await self._table.read_route(key)
        if route.key.version is not None:
            raise StoreKeyFormatError(f"{key!r}: give the name without '@version'; {KEY_FORMAT}")
        return route if action is None else self._table.writable(route, action)

    async def set_alias(
        self, key: str, alias: str, version: str, *, expected: str | None = None
    ) -> str:
        """``set_alias`` of the mount holding ``key`` (see AsyncRegistry.set_alias)."""
        route = await self._name_route(key, f"set alias {alias!r} of")
        return await route.registry.set_alias(route.key.name, alias, version, expected=expected)

    async def delete_alias(self, key: str, alias: str, *, expected: str | None = None) -> None:
        route = await self._name_route(key, f"delete alias {alias!r} of")
        await route.registry.delete_alias(route.key.name, alias, expected=expected)

    async def aliases(self, key: str) -> dict[str, str]:
        route = await self._name_route(key, None)
        return await route.registry.aliases(route.key.name)

    async def set_retention(
        self,
        key: str,
        *,
        keep_last: int | None = None,
        keep_newer_than: float | None = None,
    ) -> None:
        """The policy of the name at ``key``, in the mount a save of it goes to
        (a mount's registry-wide policy: ``get_mount(m).set_retention(None, ...)``)."""
        route = self._table.write_route(key, "set the retention of")
        if route.key.version is not None:
            raise StoreKeyFormatError(f"{key!r}: give the name without '@version'; {KEY_FORMAT}")
        await route.registry.set_retention(
            route.key.name, keep_last=keep_last, keep_newer_than=keep_newer_than
        )

    async def find(
        self,
        name: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        created_after: Time = None,
        created_before: Time = None,
    ) -> list[Found]:
        """``find`` in every mount at once (``name`` may start with ``"mount/"``);
        names come back as ``"mount/name"`` and each info names its mount."""
        self._table.check_open()
        mount_glob, slash, name_glob = (name or "").rpartition("/")
        mounts = list(self._table.mounts)
        if slash:
            mounts = [m for m in mounts if fnmatch.fnmatchcase(m, mount_glob)]

        async def one(mount: str) -> list[Found]:
            return await self._table.mount(mount).registry.find(
                name_glob if name is not None else None,
                metadata=metadata,
                created_after=created_after,
                created_before=created_before,
            )

        found = await fanout(one, mounts, limit=max(1, len(mounts)))
        found.raise_first()
        return [
            Found(f"{mount}/{hit.name}", hit.version, {**hit.info, "mount": mount})
            for mount, hits in zip(mounts, found.results, strict=True)
            for hit in hits or ()
        ]
