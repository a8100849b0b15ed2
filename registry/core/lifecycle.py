"""The model-lifecycle half of the registry API: aliases, retention, find.

Mixed into RegistryCore (registry.py), which supplies the backend, the
cache and version resolution; the protocols live in aliases.py,
retention.py and search.py. Here are the public methods and the glue that
keeps them consistent with the rest of the registry:

- ``load(name, version="production")`` and ``load("name@production")``
  resolve the alias with one GET of its record (never cached: every host sees
  a move at once), then load that version as usual. Offline, the copy of the
  record cached by earlier online use is used, and a log line says so.
- Deleting a version an alias points to is refused (RegistryAliasConflict):
  move or remove the alias first. A delete racing a ``set_alias`` can still
  leave an alias on a deleted version; resolving it then raises
  RegistryObjectNotFound saying so, and since version numbers are never
  handed out again it can never load another object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from registry.backends.base import Backend
from registry.core import aliases as alias_store
from registry.core.batches import per_item
from registry.core.cache import Cache
from registry.core.fanout import fanout
from registry.core.layout import alias_key
from registry.core.names import validate_name
from registry.core.offline import cached_meta, cached_names, cached_versions, refuse
from registry.core.retention import Policies, RetentionPolicy, apply_policy, make_policy
from registry.core.search import Found, Time, matcher, name_filter, ordered
from registry.core.search import find_online as _find_online
from registry.core.types import BatchResult, ObjectMeta, RegistrySettings, Verify
from registry.core.versions import Version
from registry.exceptions import RegistryAliasConflict, RegistryObjectNotFound

logger = logging.getLogger(__name__)


class Lifecycle:
    """Aliases, retention and find (see the module docstring)."""

    backend: Backend
    offline: bool
    _cache: Cache | None
    _policies: Policies

    if TYPE_CHECKING:

        async def _open(self) -> RegistrySettings: ...

        async def _meta(
            self, name: str, version: str, verify: Verify | None = None
        ) -> ObjectMeta: ...

    # -- aliases ---------------------------------------------------------------------

    @overload
    async def set_alias(
        self, name: str, alias: str, version: str, *, expected: str | None = None
    ) -> str: ...

    @overload
    async def set_alias(
        self,
        name: list[str],
        alias: str | Sequence[str],
        version: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[str]: ...

    async def set_alias(
        self,
        name: str | list[str],
        alias: str | Sequence[str],
        version: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> str | BatchResult[str]:
        """Point ``alias`` of ``name`` at ``version`` (created or moved); returns
        the version as first spelled. ``version`` may be "latest" or another
        alias (promote "staging" to "production"); it must exist.

        ``expected``: compare-and-swap; the alias must point to that version
        now, else RegistryAliasConflict names where it points. Without it
        the move always lands (a lost race is retried). A list of names sets
        a batch (the other arguments one per name, or shared).
        """
        if isinstance(name, list):
            items = list(
                zip(
                    name,
                    per_item(alias, len(name), "alias"),
                    per_item(version, len(name), "version"),
                    per_item(expected, len(name), "expected"),
                    strict=True,
                )
            )

            async def one(item: tuple[str, str, str, str | None]) -> str:
                return await self._set_alias_one(*item)

            return await fanout(one, items, limit=self.backend.concurrency)
        if not isinstance(alias, str) or not isinstance(version, str):
            raise TypeError("alias and version must be str for a single set_alias")
        if expected is not None and not isinstance(expected, str):
            raise TypeError("expected must be a str or None for a single set_alias")
        return await self._set_alias_one(name, alias, version, expected)

    async def _set_alias_one(
        self, name: str, alias: str, version: str, expected: str | None
    ) -> str:
        validate_name(name)
        alias_store.validate_alias(alias)
        if expected is not None:
            Version(expected)  # a concrete version, or ValueError with the rule
        if self.offline:
            raise refuse("set_alias")
        target = await self._meta(name, version, "full")
        data = await alias_store.move(
            self.backend,
            name,
            alias,
            target,
            expected=expected,
            check_expected=expected is not None,
        )
        if self._cache is not None:
            self._cache.write_alias(name, alias, data)
        logger.debug("alias %s@%s -> %s on %s", name, alias, target.version, self.backend.uri)
        return target.version

    @overload
    async def delete_alias(self, name: str, alias: str, *, expected: str | None = None) -> None: ...

    @overload
    async def delete_alias(
        self,
        name: list[str],
        alias: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[None]: ...

    async def delete_alias(
        self,
        name: str | list[str],
        alias: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[None] | None:
        """Remove an alias (the version stays). RegistryObjectNotFound if there
        is no such alias; with ``expected``, RegistryAliasConflict unless it
        points to that version. A list of names removes a batch."""
        if isinstance(name, list):
            items = list(
                zip(
                    name,
                    per_item(alias, len(name), "alias"),
                    per_item(expected, len(name), "expected"),
                    strict=True,
                )
            )

            async def one(item: tuple[str, str, str | None]) -> None:
                await self._delete_alias_one(*item)

            return await fanout(one, items, limit=self.backend.concurrency)
        if not isinstance(alias, str):
            raise TypeError("alias must be a str for a single delete_alias")
        if expected is not None and not isinstance(expected, str):
            raise TypeError("expected must be a str or None for a single delete_alias")
        await self._delete_alias_one(name, alias, expected)
        return None

    async def _delete_alias_one(self, name: str, alias: str, expected: str | None) -> None:
        validate_name(name)
        alias_store.validate_alias(alias)
        if expected is not None:
            Version(expected)
        if self.offline:
            raise refuse("delete_alias")
        await self._open()
        data = await alias_store.move(
            self.backend, name, alias, None, expected=expected, check_expected=expected is not None
        )
        if self._cache is not None:
            self._cache.write_alias(name, alias, data)

    @overload
    async def aliases(self, name: str) -> dict[str, str]: ...

    @overload
    async def aliases(self, name: list[str]) -> BatchResult[dict[str, str]]: ...

    async def aliases(self, name: str | list[str]) -> dict[str, str] | BatchResult[dict[str, str]]:
        """``{alias: version}`` of a name, sorted by alias ({} when it has none).
        Costs one listing and one GET per alias. A list of names: a batch."""
        if isinstance(name, list):
            return await fanout(self._aliases_one, name, limit=self.backend.concurrency)
        return await self._aliases_one(name)

    async def _aliases_one(self, name: str) -> dict[str, str]:
        records = await self._alias_records(name)
        return {alias: r.version for alias, r in records.items() if r.version is not None}

    async def _alias_records(self, name: str) -> dict[str, alias_store.AliasRecord]:
        """The aliases of ``name`` that exist, by alias (offline: as cached)."""
        validate_name(name)
        await self._open()
        where = f"{self.backend.uri}/aliases/{name}"
        if self.offline:
            assert self._cache is not None
            return alias_store.live(self._cache.cached_aliases(name), where)
        stored = await alias_store.read_all(self.backend, name)
        if self._cache is not None:
            for alias, data in stored.items():
                self._cache.write_alias(name, alias, data)
        return alias_store.live(stored, where)

    async def _aliases_by_version(self, name: str) -> dict[str, list[str]]:
        return alias_store.aliases_by_version(await self._alias_records(name))

    async def _alias_meta(self, name: str, alias: str, verify: Verify | None) -> ObjectMeta:
        """The metadata of the version ``alias`` points to (one GET for the alias)."""
        alias_store.check_version_or_alias(alias)
        settings = await self._open()
        where = f"{self.backend.uri}/{alias_key(name, alias)}"
        if self.offline:
            assert self._cache is not None
            data = self._cache.read_alias(name, alias)
            if data is None:
                raise RegistryObjectNotFound(
                    f"alias {alias!r} of {name!r} is not in the offline cache at "
                    f"{self._cache.root} (this registry is offline); load it by that alias "
                    "or call aliases() while online"
                )
        else:
            data = await alias_store.read_current(self.backend, name, alias)
            cache = self._cache
            if data is not None and cache is not None and cache.read_alias(name, alias) != data:
                cache.write_alias(name, alias, data)  # written only when changed: a read is cheaper
        record = None if data is None else alias_store.decode(data, where)
        if record is None or record.version is None:
            raise RegistryObjectNotFound(
                f"{name!r} has no alias {alias!r} in {self.backend.uri}; "
                "set it with set_alias(name, alias, version)"
            )
        if self.offline:
            logger.info(
                "%s@%s resolved offline from the cached alias to version %s "
                "(it may have moved since)",
                name,
                alias,
                record.version,
            )
        try:
            meta = await self._meta(name, record.version, verify)
        except RegistryObjectNotFound:
            raise RegistryObjectNotFound(
                f"alias {alias!r} of {name!r} points to version {record.version!r}, which "
                "does not exist (it was deleted while the alias was set); move the alias "
                "with set_alias() or remove it with delete_alias()"
            ) from None
        if not settings.mutable:
            alias_store.check_target(name, alias, record, meta)
        return meta

    async def _refuse_if_aliased(self, name: str, targets: Sequence[Version]) -> None:
        """Deleting what an alias points to is refused: move or remove it first."""
        pointed = await self._aliases_by_version(name)
        for target in targets:
            held = pointed.get(target.key)
            if held:
                raise RegistryAliasConflict(
                    f"cannot delete {name}@{target}: alias {', '.join(map(repr, held))} "
                    "points to it; move it (set_alias(), `registry alias set`) or remove "
                    "it (delete_alias(), `registry alias rm`) first",
                    name=name,
                    alias=held[0],
                    current=str(target),
                )

    # -- retention -------------------------------------------------------------------

    async def set_retention(
        self,
        name: str | None,
        *,
        keep_last: int | None = None,
        keep_newer_than: float | None = None,
    ) -> None:
        """Keep only the ``keep_last`` greatest versions and/or those committed
        less than ``keep_newer_than`` seconds ago; a version goes only when no
        rule keeps it, and the greatest and every aliased version always stay.

        ``name`` None sets the registry-wide policy (names without their own).
        Both None removes the policy. Stored with the registry; applied at
        once to ``name``, then after each save of it (by the saver, within
        ``POLICY_TTL`` seconds of a change made elsewhere) and by
        ``janitor()``; a registry-wide policy by those saves and the janitor. A retired version is
        deleted like ``delete`` (a tombstone: its number is never reused).
        """
        if name is not None:
            validate_name(name)
        policy = make_policy(keep_last, keep_newer_than)
        if self.offline:
            raise refuse("set_retention")
        await self._open()
        await self._policies.store(name, policy)
        if name is not None and policy is not None:
            await self._retain(name, policy)

    async def retention(self, name: str | None = None) -> dict[str, Any] | None:
        """The policy stored for ``name`` (None: the registry-wide one), as a
        dict, or None if there is none. Read from storage, never cached."""
        if name is not None:
            validate_name(name)
        if self.offline:
            raise refuse("retention")
        await self._open()
        table = await self._policies.table(fresh=True)
        policy = table.get(name)
        return (
            None
            if policy is None
            else {
                "keep_last": policy.keep_last,
                "keep_newer_than": policy.keep_newer_than,
            }
        )

    async def _retain_after_save(self, name: str) -> None:
        """Apply ``name``'s policy after a save of it. The save has committed:
        a failure here is logged, and the janitor applies the policy later."""
        try:
            if not (await self._open()).version_objects:
                return  # one version per name: nothing to retire, nothing to read
            policy = await self._policies.policy_for(name)
            if policy is not None:
                await self._retain(name, policy)
        except Exception as exc:
            logger.warning("retention of %r after a save failed (the save stands): %s", name, exc)

    async def _retain(self, name: str, policy: RetentionPolicy) -> list[str]:
        retired = await apply_policy(self.backend, name, policy, None, dry_run=False)
        if self._cache is not None:
            for version in retired:
                self._cache.drop_meta(name, Version(version).key)
        if retired:
            logger.debug("retention retired %s@%s on %s", name, retired, self.backend.uri)
        return retired

    # -- find ------------------------------------------------------------------------

    async def find(
        self,
        name: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        created_after: Time = None,
        created_before: Time = None,
    ) -> list[Found]:
        """Live versions whose name matches the glob ``name`` (e.g. "my:*"),
        whose metadata has every key of ``metadata`` with an equal value, and
        that were created strictly between the given times (datetimes or
        seconds since the epoch); ``(name, version, info)`` tuples sorted by
        name, then version.

        Cost: one listing of every metadata key plus one GET per live version
        of the matched names, concurrently (no index to keep consistent).
        Offline: what the cache holds.
        """
        wanted = name_filter(name)
        matches = matcher(metadata, created_after, created_before)
        settings = await self._open()
        if not self.offline:
            return await _find_online(self.backend, wanted, matches)
        assert self._cache is not None
        cache = self._cache
        metas = [
            cached_meta(cache, settings, n, v.key)
            for n in cached_names(cache)
            if wanted(n)
            for v in cached_versions(cache, n)
        ]
        return ordered([m for m in metas if matches(m)])
