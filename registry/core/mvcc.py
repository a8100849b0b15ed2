"""The commit protocol: one conditional metadata write per version.

Artifacts are uploaded to a fresh uuid folder first; the version exists from
the moment its metadata file is written, and not before. Immutable saves use
create-if-absent (first writer wins), overwrites a plain atomic replace, and
auto-increment claims its number with the same create-if-absent write: a
writer that loses takes the next number. No cached version list ever drives
allocation, so concurrent processes never hand out a number twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from registry.backends.base import Backend, FileInfo
from registry.core.layout import META_SUFFIX, meta_key, meta_prefix
from registry.core.types import ObjectMeta, meta_decoder
from registry.core.versions import Version, version_from_key
from registry.exceptions import (
    ObjectNotFound,
    PreconditionFailed,
    RegistryCorruptMetadata,
    RegistryVersionConflict,
)

TOMBSTONE = b""
_RELIST_EVERY = 4  # after this many lost claims in a row, re-list to jump ahead


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
    backend: Backend, name: str, version: Version, data: bytes, *, overwrite: bool
) -> None:
    """Write the metadata of an explicit version.

    ``overwrite``: last writer wins. Otherwise the first writer wins and the
    others get RegistryVersionConflict; a tombstone (deleted version) may be
    replaced, with compare-and-swap so that only one re-creator wins.
    """
    key = meta_key(name, version.key)
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


async def next_free_number(backend: Backend, name: str) -> int:
    # Tombstones count: a deleted number is never handed out again.
    return max(await _stems_by_major(backend, name), default=0) + 1


async def latest_meta_bytes(backend: Backend, name: str) -> tuple[Version, bytes] | None:
    """The greatest live version and its metadata file, reading from the top
    down past tombstones (usually one read). Only the top major's keys are
    fully parsed, so the cost barely grows with the number of versions."""
    groups = await _stems_by_major(backend, name)
    for major in sorted(groups, reverse=True):
        versions = [v for v in map(version_from_key, groups[major]) if v is not None]
        for version in sorted(versions, reverse=True):
            data = await read_meta_bytes(backend, name, version.key)
            if data is not None:
                return version, data
    return None


async def commit_auto(backend: Backend, name: str, encode: Callable[[str], bytes]) -> str:
    """Claim the next auto-increment number for ``name`` and commit to it.

    ``encode(version)`` builds the metadata for a candidate number, so a
    writer that loses a race re-encodes only the metadata, never re-uploads.
    """
    number = await next_free_number(backend, name)
    lost = 0
    while True:
        version = str(number)
        try:
            await backend.put(meta_key(name, version), encode(version), mode="create")
            return version
        except PreconditionFailed:
            lost += 1
            number += 1
            if lost % _RELIST_EVERY == 0:
                number = max(number, await next_free_number(backend, name))


async def tombstone(backend: Backend, name: str, version: Version) -> None:
    await backend.put(meta_key(name, version.key), TOMBSTONE)
