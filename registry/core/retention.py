"""Retention: how many versions of a name to keep, stored with the registry.

A policy lives in ``retention/<name>.json`` (or ``retention/@registry.json``
for every name without its own) and says ``keep_last=N`` and/or
``keep_newer_than=`` seconds. A version is retired only when no rule keeps
it: with both rules, the N greatest versions *and* every version committed
within the period stay. The greatest version and every aliased version
always stay, so retention never empties a name or breaks an alias.

Retiring a version writes its tombstone, like ``delete``, so its number is
never handed out again. The tombstone is a compare-and-swap on the etag the
listing showed: a version changed since (re-saved, overwritten) is left alone.
Ages come from the listing (the metadata file's commit time), so applying a
policy costs one listing of the name, one of its aliases, and one write per
retired version; no metadata is read.

Policies are read with one listing of ``retention/`` (and a GET per policy
that changed), remembered for ``POLICY_TTL`` seconds, so a save does not pay
for them each time; a policy set elsewhere applies here within that time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import msgspec

from registry.backends.base import Backend, FileInfo
from registry.core import aliases, mvcc
from registry.core.fanout import fanout
from registry.core.layout import (
    META_SUFFIX,
    RETENTION_DEFAULT,
    RETENTION_ROOT,
    meta_key,
    retention_key,
)
from registry.core.mvcc import TOMBSTONE
from registry.core.versions import Version
from registry.exceptions import ObjectNotFound, PreconditionFailed, RegistryCorruptMetadata

POLICY_TTL = 30.0


class RetentionPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """``keep_last``: the N greatest versions; ``keep_newer_than``: seconds."""

    keep_last: int | None = None
    keep_newer_than: float | None = None


_decoder = msgspec.json.Decoder(RetentionPolicy)


def make_policy(keep_last: int | None, keep_newer_than: float | None) -> RetentionPolicy | None:
    """The policy asked for; None (no policy) when both are None."""
    if keep_last is not None and (
        isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1
    ):
        raise ValueError(f"keep_last must be an int >= 1 (versions to keep), got {keep_last!r}")
    if keep_newer_than is not None and (
        isinstance(keep_newer_than, bool)
        or not isinstance(keep_newer_than, int | float)
        or not keep_newer_than > 0
    ):
        raise ValueError(f"keep_newer_than must be seconds > 0, got {keep_newer_than!r}")
    if keep_last is None and keep_newer_than is None:
        return None
    return RetentionPolicy(
        keep_last=keep_last,
        keep_newer_than=None if keep_newer_than is None else float(keep_newer_than),
    )


def to_retire(
    live: Sequence[tuple[Version, FileInfo]],
    policy: RetentionPolicy,
    protected: set[str],
    now: float,
) -> list[tuple[Version, FileInfo]]:
    """The versions ``policy`` removes from ``live`` (ascending); ``protected``
    holds version keys that stay whatever the policy says (aliased ones)."""
    if policy.keep_last is None and policy.keep_newer_than is None:
        return []
    ordered = sorted(live, key=lambda pair: pair[0])
    keep = set(protected)
    if ordered:
        keep.add(ordered[-1][0].key)  # never empty a name
    if policy.keep_last is not None:
        keep.update(v.key for v, _ in ordered[-policy.keep_last :])
    if policy.keep_newer_than is not None:
        keep.update(v.key for v, info in ordered if now - info.mtime < policy.keep_newer_than)
    return [(v, info) for v, info in ordered if v.key not in keep]


async def retire(backend: Backend, key: str, info: FileInfo) -> bool:
    """Tombstone one metadata file if it is still what the listing showed."""
    try:
        await backend.put(key, TOMBSTONE, if_match=info.etag)
    except PreconditionFailed:
        return False  # deleted, re-saved or overwritten since: not ours to retire
    return True


async def apply_policy(
    backend: Backend,
    name: str,
    policy: RetentionPolicy,
    live: Sequence[tuple[Version, FileInfo]] | None,
    *,
    dry_run: bool,
) -> list[str]:
    """Retire what ``policy`` removes of ``name``; returns their version keys.

    ``live``: the name's live versions if already listed. Aliases are read
    only when something would be retired.
    """
    if live is None:
        live = await mvcc.live_versions(backend, name)
    now = time.time()
    if not to_retire(live, policy, set(), now):
        return []
    records = aliases.live(await aliases.read_all(backend, name), f"{backend.uri}/{name}")
    protected = set(aliases.aliases_by_version(records))
    victims = to_retire(live, policy, protected, now)
    if dry_run:
        return [v.key for v, _ in victims]

    async def one(victim: tuple[Version, FileInfo]) -> bool:
        return await retire(backend, meta_key(name, victim[0].key), victim[1])

    done = await fanout(one, victims, limit=backend.concurrency)
    done.raise_first()
    return [v.key for (v, _), ok in zip(victims, done.results, strict=True) if ok]


class Policies:
    """The stored policies of one registry, remembered for ``POLICY_TTL``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._table: dict[str | None, RetentionPolicy] | None = None
        self._etags: dict[str, tuple[str, RetentionPolicy]] = {}
        self._read_at = 0.0

    async def table(self, *, fresh: bool = False) -> dict[str | None, RetentionPolicy]:
        """name (None: registry-wide) -> policy."""
        if not fresh and self._table is not None and time.monotonic() - self._read_at < POLICY_TTL:
            return self._table
        # The first saves of a batch all find the table missing: one reads it,
        # the others wait for that read (state per event loop, like clients).
        state = self.backend.loop_state()
        slot = f"retention-policies-{id(self)}"
        running: anyio.Event | None = state.get(slot)
        if running is not None and not fresh:
            await running.wait()
            if self._table is not None:
                return self._table
        done = state[slot] = anyio.Event()
        try:
            return await self._read()
        finally:
            done.set()
            if state.get(slot) is done:
                del state[slot]

    async def _read(self) -> dict[str | None, RetentionPolicy]:
        now = time.monotonic()
        table: dict[str | None, RetentionPolicy] = {}
        etags: dict[str, tuple[str, RetentionPolicy]] = {}
        async for entry in self.backend.list(RETENTION_ROOT, delimiter="/"):
            if not isinstance(entry, FileInfo) or not entry.key.endswith(META_SUFFIX):
                continue
            known = self._etags.get(entry.key)
            if known is not None and known[0] == entry.etag and entry.etag:
                policy = known[1]
            else:
                try:
                    data = await self.backend.get(entry.key)
                except ObjectNotFound:
                    continue
                policy = decode(data, f"{self.backend.uri}/{entry.key}")
            etags[entry.key] = (entry.etag, policy)
            stem = entry.key[len(RETENTION_ROOT) : -len(META_SUFFIX)]
            table[None if stem == RETENTION_DEFAULT else stem] = policy
        self._table, self._etags, self._read_at = table, etags, now
        return table

    async def policy_for(self, name: str, *, fresh: bool = False) -> RetentionPolicy | None:
        table = await self.table(fresh=fresh)
        return table.get(name) or table.get(None)

    async def store(self, name: str | None, policy: RetentionPolicy | None) -> None:
        key = retention_key(name)
        if policy is None:
            await self.backend.delete([key])
        else:
            await self.backend.put(key, msgspec.json.encode(policy))
        self._table = None  # this process sees its own change at once


def decode(data: bytes, where: str) -> RetentionPolicy:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RegistryCorruptMetadata(
            f"retention policy {where} is corrupt ({exc}); set it again with set_retention()"
        ) from None
