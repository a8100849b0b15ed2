"""Aliases: names such as "production" that point to one version of a name.

An alias is one small object, ``aliases/<name>/<alias>.json``, holding the
version it points to. It is created with create-if-absent and moved with
compare-and-swap on the etag read just before (the same conditional writes
as the commit protocol), so two processes moving it at once give one winner.
Removing an alias is a compare-and-swap too: it writes a record whose
version is None rather than deleting the object, because backends delete
unconditionally. Every write is conditional, even without ``expected=``: on
local disk compare-and-swap is read-compare-replace under a lock file, and
an unconditional replace landing inside it would be silently lost.

Every record carries a random nonce: S3's etag is the content's MD5, so two
writes of the same bytes would look unchanged to a compare-and-swap that
read the first and raced the second.

A record also keeps the uuid of the version's metadata at the time it was
set. A deleted version may be saved again explicitly; in an immutable
registry the alias then refuses to load the newcomer instead of silently
loading another object.
"""

from __future__ import annotations

import time
import uuid as uuidlib

import msgspec

from registry.backends.base import Backend, FileInfo
from registry.core.fanout import fanout
from registry.core.layout import META_SUFFIX, alias_key, alias_prefix
from registry.core.names import NAME_RULE, validate_name
from registry.core.types import ObjectMeta
from registry.core.versions import LATEST, VERSION_RULE, Version, version_from_key
from registry.exceptions import (
    ObjectNotFound,
    PreconditionFailed,
    RegistryAliasConflict,
    RegistryCorruptMetadata,
    RegistryObjectNotFound,
)

ALIAS_RULE = (
    f"alias names follow the name rules ({NAME_RULE}), must not be a version "
    "(such as '3' or '1.0.0-rc.1'), and 'latest' is reserved"
)


class AliasRecord(msgspec.Struct, kw_only=True):
    """``aliases/<name>/<alias>.json``; ``version`` None: the alias was removed."""

    version: str | None
    uuid: str = ""
    set_at: float = 0.0
    nonce: str = ""


_decoder = msgspec.json.Decoder(AliasRecord)


def is_alias(version: str) -> bool:
    """Whether a ``version=`` argument names an alias rather than a version."""
    return version != LATEST and version_from_key(version) is None


def validate_alias(alias: object) -> str:
    """Return ``alias`` if it can name an alias, else raise ValueError."""
    if not isinstance(alias, str):
        raise TypeError(f"alias must be a str, got {type(alias).__name__}: {alias!r}")
    try:
        validate_name(alias)
    except ValueError:
        raise ValueError(f"invalid alias {alias!r}: {ALIAS_RULE}") from None
    if not is_alias(alias):
        raise ValueError(f"invalid alias {alias!r}: {ALIAS_RULE}")
    return alias


def check_version_or_alias(version: str) -> None:
    """ValueError naming both rules for what is neither a version nor an alias."""
    try:
        validate_name(version)
    except ValueError:
        raise ValueError(
            f"invalid version or alias {version!r}, it is neither: {VERSION_RULE}; {ALIAS_RULE}"
        ) from None


def encode(meta: ObjectMeta | None) -> bytes:
    record = AliasRecord(
        version=None if meta is None else meta.version,
        uuid="" if meta is None else meta.uuid,
        set_at=time.time(),
        nonce=uuidlib.uuid4().hex,
    )
    return msgspec.json.encode(record)


def decode(data: bytes, where: str) -> AliasRecord:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RegistryCorruptMetadata(
            f"alias record {where} is corrupt ({exc}); set the alias again with set_alias()"
        ) from None


async def read_current(backend: Backend, name: str, alias: str) -> bytes | None:
    """The alias's stored record (one GET), or None if it was never set."""
    try:
        return await backend.get(alias_key(name, alias))
    except ObjectNotFound:
        return None


async def move(
    backend: Backend,
    name: str,
    alias: str,
    target: ObjectMeta | None,
    *,
    expected: str | None,
    check_expected: bool,
) -> bytes:
    """Point the alias at ``target`` (None: remove it) by compare-and-swap;
    returns the record written.

    With ``check_expected`` the alias must point to ``expected`` (None: not
    exist) or RegistryAliasConflict names where it points; a lost swap is
    read again, so losing to a different value is a conflict too. Without it
    a lost swap is simply retried.
    """
    key = alias_key(name, alias)
    wanted = None if expected is None else Version(expected)
    while True:
        # The etag first, then the content: a swap on that etag that wins
        # proves nothing was written in between, so the content read is what
        # was replaced.
        head = await backend.head(key)
        current: str | None = None
        if head is not None:
            try:
                current = decode(await backend.get(key), f"{backend.uri}/{key}").version
            except ObjectNotFound:
                continue
        if check_expected and (
            (current is None) != (wanted is None)
            or (current is not None and wanted is not None and Version(current) != wanted)
        ):
            where = "does not exist" if current is None else f"points to version {current!r}"
            raise RegistryAliasConflict(
                f"alias {alias!r} of {name!r} {where}, not {expected!r} as expected; "
                "read it again (aliases(), `registry alias ls`) and retry with that value",
                name=name,
                alias=alias,
                current=current,
            )
        if target is None and current is None and not check_expected:
            raise RegistryObjectNotFound(f"{name!r} has no alias {alias!r} in {backend.uri}")
        data = encode(target)
        try:
            if head is None:
                await backend.put(key, data, mode="create")
            else:
                await backend.put(key, data, if_match=head.etag)
        except PreconditionFailed:
            continue
        return data


async def read_all(backend: Backend, name: str) -> dict[str, bytes]:
    """alias -> stored record of every alias ``name`` ever had (removed ones
    too): one listing and one GET per alias, concurrently."""
    keys = [
        entry.key
        async for entry in backend.list(alias_prefix(name), delimiter="/")
        if isinstance(entry, FileInfo) and entry.key.endswith(META_SUFFIX)
    ]

    async def read(key: str) -> bytes | None:
        try:
            return await backend.get(key)
        except ObjectNotFound:
            return None

    found = await fanout(read, keys, limit=backend.concurrency)
    found.raise_first()
    return {
        key.rsplit("/", 1)[1][: -len(META_SUFFIX)]: data
        for key, data in zip(keys, found.results, strict=True)
        if data is not None
    }


def live(records: dict[str, bytes], where: str) -> dict[str, AliasRecord]:
    """The records of aliases that exist (removed ones left out), by alias."""
    decoded = {alias: decode(data, f"{where}/{alias}") for alias, data in records.items()}
    return {
        alias: record
        for alias, record in sorted(decoded.items())
        if record.version is not None and is_alias(alias)
    }


def aliases_by_version(records: dict[str, AliasRecord]) -> dict[str, list[str]]:
    """version key -> the aliases pointing to it, sorted."""
    found: dict[str, list[str]] = {}
    for alias, record in records.items():
        assert record.version is not None
        found.setdefault(Version(record.version).key, []).append(alias)
    return found


def check_target(name: str, alias: str, record: AliasRecord, meta: ObjectMeta) -> None:
    """Refuse a version that was deleted and saved again after the alias was
    set (immutable registries: there a version's uuid never changes)."""
    if record.uuid and meta.uuid != record.uuid:
        raise RegistryObjectNotFound(
            f"alias {alias!r} of {name!r} points to version {record.version!r}, which was "
            "deleted and saved again since the alias was set; the alias will not load "
            "another object: move it with set_alias() or remove it with delete_alias()"
        )
