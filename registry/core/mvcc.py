"""The commit protocol: one conditional metadata write per version.

Artifacts are uploaded to a fresh uuid folder first; the version exists from
the moment its metadata file is written, and not before. Immutable saves use
create-if-absent (first writer wins), overwrites a plain atomic replace, and
auto-increment claims its number with the same create-if-absent write: a
writer that loses takes the next number. No cached version list ever drives
allocation, so concurrent processes never hand out a number twice.

Which number to try first, and which version is "latest", come from the
name's head (core/heads.py) in O(1) requests; a listing of the name's folder
(O(versions)) is only the fallback when the head is missing or points at a
version in flight or deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio
import msgspec

from registry.backends.base import Backend, FileInfo
from registry.core import heads
from registry.core.layout import META_SUFFIX, meta_key, meta_prefix
from registry.core.types import ObjectMeta, meta_decoder
from registry.core.versions import Version, version_from_key
from registry.exceptions import (
    BackendError,
    ObjectNotFound,
    PreconditionFailed,
    RegistryCorruptMetadata,
    RegistryVersionConflict,
)

TOMBSTONE = b""
FIRST = Version("1")  # the first auto-increment number: needs no head (commit_explicit)
A = TypeVar("A")
B = TypeVar("B")
_RELIST_EVERY = 4  # after this many lost claims in a row, re-read the head to jump ahead


async def list_versions(backend: Backend, name: str) -> list[tuple[Version, FileInfo]]:
    """Every version key stored for ``name``, tombstones included."""
    found: list[tuple[Version, FileInfo]] = []
    async for entry in backend.list(meta_prefix(name), delimiter="/"):
        if isinstance(entry, str) or not entry.key.endswith(".json"):
            continue
        version = version_from_key(entry.key.rsplit("/", 1)[1][: -len(".json")])
        if version is not None:
            found.append((version, entry))
    return found


async def live_versions(backend: Backend, name: str) -> list[tuple[Version, FileInfo]]:
    """Committed, not deleted versions of ``name``, ascending."""
    return sorted(
        ((v, info) for v, info in await list_versions(backend, name) if info.size > 0),
        key=lambda pair: pair[0],
    )


def decode_meta(data: bytes, where: str) -> ObjectMeta:
    try:
        return meta_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RegistryCorruptMetadata(
            f"metadata file {where} is corrupt ({exc}); restore it, or delete that "
            "version with registry.delete(name, version) to drop it"
        ) from None


async def read_meta_bytes(backend: Backend, name: str, version_key: str) -> bytes | None:
    """The committed metadata file, or None if the version is missing or deleted."""
    try:
        data = await backend.get(meta_key(name, version_key))
    except ObjectNotFound:
        return None
    return None if data == TOMBSTONE else data


async def read_meta(backend: Backend, name: str, version_key: str) -> ObjectMeta | None:
    """The committed metadata, or None if the version is missing or deleted."""
    data = await read_meta_bytes(backend, name, version_key)
    if data is None:
        return None
    return decode_meta(data, f"{backend.uri}/{meta_key(name, version_key)}")


async def commit_explicit(
    backend: Backend,
    name: str,
    version: Version,
    data: bytes,
    *,
    overwrite: bool,
    track_head: bool = True,
    headed: bool = False,
) -> None:
    """Write the metadata of an explicit version.

    ``track_head``: raise the name's head first (versioned registries; an
    unversioned one has the single version "1" and no use for a head).

    Version "1" of a registry that kept heads from its creation commits
    without raising the head (one request, not two, for the usual first
    save of a new name). The head's invariant still holds: every version
    above the head is in the unbroken run of integers from the first one
    above it (heads.py). Here the head is missing (read as "run from 1"),
    unreadable (readers list), at least "1" (nothing to raise), or below
    "1": then its major is 0 and the run starts at 1 too. The commit is
    create-if-absent (or replaces a tombstone, or overwrites), so "1" was
    either not stored (the run from 1 was empty and is now {1}) or already
    counted in it; readers cannot tell an explicit "1" from an
    auto-increment 1, nor need to. A reader of "latest" finds it by probing
    from 1 and writes the head for the next one.

    ``overwrite``: last writer wins. Otherwise the first writer wins and the
    others get RegistryVersionConflict; a tombstone (deleted version) may be
    replaced, with compare-and-swap so that only one re-creator wins.
    """
    key = meta_key(name, version.key)
    if track_head and not (headed and version == FIRST):
        await raise_head(backend, name, version, headed=headed)
    if overwrite:
        await backend.put(key, data)
        return
    try:
        await backend.put(key, data, mode="create")
        return
    except PreconditionFailed:
        pass
    existing = await backend.head(key)
    if existing is not None and existing.size == 0:
        try:
            await backend.put(key, data, if_match=existing.etag)
            return
        except PreconditionFailed:
            pass
    raise RegistryVersionConflict(
        f"{name}@{version} already exists; save under another version, or open the "
        "registry with mutable=True and pass on_conflict='overwrite' to replace it",
        name=name,
        version=version.spelling,
    )


def _major(stem: str) -> int | None:
    """Leading number of a version key, without a full parse (hot path)."""
    head = stem.split(".", 1)[0].split("-", 1)[0]
    return int(head) if head.isdigit() else None


# (backend uri, name) -> (listing, groups): backends that return the very same
# listing object for an unchanged folder (local) skip the re-grouping too.
_grouped: dict[tuple[str, str], tuple[Sequence[str], dict[int, list[str]]]] = {}


async def _stems_by_major(backend: Backend, name: str) -> dict[int, list[str]]:
    """Version keys stored for ``name`` (tombstones included), by major number."""
    keys = await backend.list_children(meta_prefix(name))
    memo = _grouped.get((backend.uri, name))
    if memo is not None and memo[0] is keys:
        return memo[1]
    groups: dict[int, list[str]] = {}
    for key in keys:
        if key.endswith(META_SUFFIX):
            stem = key.rsplit("/", 1)[1][: -len(META_SUFFIX)]
            major = _major(stem)
            if major is not None:
                groups.setdefault(major, []).append(stem)
    if isinstance(keys, tuple):  # immutable: safe to remember by identity
        if len(_grouped) > 4096:
            _grouped.clear()
        _grouped[(backend.uri, name)] = (keys, groups)
    return groups


async def top_by_listing(backend: Backend, name: str) -> Version | None:
    """The greatest version key stored for ``name``, tombstones included."""
    return _top(await _stems_by_major(backend, name))


def _top(groups: dict[int, list[str]]) -> Version | None:
    if not groups:
        return None
    return max(
        (v for v in map(version_from_key, groups[max(groups)]) if v is not None), default=None
    )


async def latest_by_listing(
    backend: Backend, name: str, groups: dict[int, list[str]] | None = None
) -> tuple[Version, bytes] | None:
    """The greatest live version and its metadata file, reading from the top
    down past tombstones (usually one read). Only the top major's keys are
    fully parsed. ``groups``: the name's listing, if already made."""
    if groups is None:
        groups = await _stems_by_major(backend, name)
    for major in sorted(groups, reverse=True):
        versions = [v for v in map(version_from_key, groups[major]) if v is not None]
        for version in sorted(versions, reverse=True):
            data = await read_meta_bytes(backend, name, version.key)
            if data is not None:
                return version, data
    return None


async def latest_meta_bytes(
    backend: Backend, name: str, *, headed: bool = False
) -> tuple[Version, bytes] | None:
    """The greatest live version of ``name`` and its metadata file; None if
    it has none. O(1) requests from the head; a listing when the head is
    damaged, or missing in a registry written before heads (rebuilt then),
    or when its version is in flight or deleted.

    ``headed``: the registry kept heads from its creation, so a name without
    one has no explicit versions, only auto-increment numbers from 1.
    """
    # Stamp first, then resolve: a change after the stamp moves the stamp,
    # so the memo below can never pair a stamp with an older answer.
    stamp = backend.folder_stamp(meta_prefix(name))
    if stamp is not None:
        memo = _latest.get((backend.uri, name))
        if memo is not None and memo[0] == stamp:
            # No version file of the name was created, replaced or removed
            # since ``memo[1]`` was found to be its greatest live version.
            data = await read_meta_bytes(backend, name, memo[1].key)
            if data is not None:
                return memo[1], data
    found = await _latest_meta_bytes(backend, name, headed)
    if stamp is not None and found is not None:
        if len(_latest) >= _LATEST_LIMIT:
            _latest.clear()
        _latest[(backend.uri, name)] = (stamp, found[0])
    return found


# (backend uri, name) -> (folder stamp of meta/<name>/, greatest live version
# then): a repeated "latest" of a settled name costs one stat, not the head
# read and the probe above it.
_latest: dict[tuple[str, str], tuple[Hashable, Version]] = {}
_LATEST_LIMIT = 65_536


async def _latest_meta_bytes(
    backend: Backend, name: str, headed: bool
) -> tuple[Version, bytes] | None:
    exists, top = await heads.read(backend, name)
    if top is None and headed and not exists:
        last = await heads.top_of_run(backend, name, 1)
        if last is None:
            return None
        top = Version(str(last))
        if heads.lags(backend, None, top):  # not created yet (slack), or its saver died
            await _advance_head(backend, name, top)
        data = await read_meta_bytes(backend, name, top.key)
        return (top, data) if data is not None else await latest_by_listing(backend, name)
    if top is None:
        groups = await _stems_by_major(backend, name)  # one listing for both
        found = await latest_by_listing(backend, name, groups)
        stored = _top(groups)  # tombstones count: not ``found``
        if stored is not None:
            await _advance_head(backend, name, stored)
        return found
    if backend.is_remote:  # one round trip for the probe and the read, not two
        above, data = await _together(
            heads.probe_above(backend, name, top), read_meta_bytes(backend, name, top.key)
        )
        if above != top:
            data = await read_meta_bytes(backend, name, above.key)
    else:
        above = await heads.probe_above(backend, name, top)
        data = await read_meta_bytes(backend, name, above.key)
    if above != top and heads.lags(backend, top, above):
        # the head lags (slack, a crash, lost swaps): bring it up for the next reader
        await _advance_head(backend, name, above)
    if data is not None:
        return above, data
    return await latest_by_listing(backend, name)


async def _advance_head(backend: Backend, name: str, top: Version) -> None:
    """Move a missing, unreadable or lagging head up to ``top`` (a hint: one
    try, and a failure does not fail the read that found it)."""
    try:
        head = await heads.read_tagged(backend, name)
    except BackendError:
        return
    if head is None or head.top is None or head.top < top:
        await heads.write(backend, name, top, over=head, durable=False)


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    results: list[Any] = [None, None]

    async def run(index: int, work: Awaitable[Any]) -> None:
        results[index] = await work

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return results[0], results[1]


async def raise_head(backend: Backend, name: str, version: Version, *, headed: bool) -> None:
    """Make the head at least ``version``, durably, before it is committed."""
    await heads.raise_to(backend, name, version, partial(_raise_head, backend, name, headed))


async def _raise_head(backend: Backend, name: str, headed: bool, version: Version) -> None:
    # A name this process has not seen is most likely new: try creating its
    # head first (one request) before reading it.
    blind = headed and not heads.seen(backend, name)
    while True:
        if blind:
            blind = False
            if await heads.write(backend, name, version, over=None, durable=True):
                return
            continue
        head = await heads.read_tagged(backend, name)
        top = head.top if head is not None else None
        if top is None and not (headed and head is None):
            # unreadable, or missing in an older registry: what is stored decides
            top = await top_by_listing(backend, name)
        if head is not None and head.top is not None and head.top >= version:
            return
        target = version if top is None or version > top else top
        if await heads.write(backend, name, target, over=head, durable=True):
            return


async def commit_auto(
    backend: Backend, name: str, encode: Callable[[str], bytes], *, headed: bool = False
) -> str:
    """Claim the next auto-increment number for ``name`` and commit to it.

    ``encode(version)`` builds the metadata for a candidate number, so a
    writer that loses a race re-encodes only the metadata, never re-uploads.
    """
    head = await heads.read_tagged(backend, name)
    if head is not None and head.top is not None:
        number = heads.next_number(head.top)
    elif head is None and headed:  # no explicit versions: 1, or past the stored run
        number = 1
    else:
        number = heads.next_number(await top_by_listing(backend, name))
    if backend.head_slack > 1:  # the head may lag: probe past the run (cheap) before claiming
        number = (await heads.top_of_run(backend, name, number) or number - 1) + 1
    lost = 0
    while True:
        version = str(number)
        try:
            await backend.put(meta_key(name, version), encode(version), mode="create")
            break
        except PreconditionFailed:
            lost += 1
            number += 1
            if lost % _RELIST_EVERY == 0:  # far behind: jump to the top of the run
                head = await heads.read_tagged(backend, name)
                if head is not None and head.top is not None:
                    top = await heads.probe_above(backend, name, head.top)
                    number = max(number, heads.next_number(top))
                elif head is None and headed:
                    number = max(number, (await heads.top_of_run(backend, name, 1) or 0) + 1)
    # The head follows as a hint, once it lags by the backend's slack (and
    # always when missing in an older registry or unreadable: a repair);
    # losing this swap to another writer is fine.
    claimed = Version(version)
    known = head.top if head is not None else None
    if (known is None and not (head is None and headed)) or heads.lags(backend, known, claimed):
        await heads.write(backend, name, claimed, over=head, durable=False)
    return version


async def tombstone(backend: Backend, name: str, version: Version) -> None:
    await backend.put(meta_key(name, version.key), TOMBSTONE)
