"""find(): versions whose name and metadata match, read straight from storage.

There is no index to keep in step with saves (an index would need a lock or
its own conflict protocol): find lists ``meta/`` once and reads the metadata
of every live version of every name the glob matches, concurrently. Its cost
is one listing of the whole ``meta/`` folder plus one GET per live version
of the matched names, so narrow ``name=`` when the registry is large.
"""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from registry.backends.base import Backend, FileInfo
from registry.core import mvcc
from registry.core.fanout import fanout
from registry.core.layout import META_ROOT, split_meta_key
from registry.core.types import ObjectMeta
from registry.core.versions import Version, version_from_key

Time = float | datetime.datetime | None
_MISSING = object()


class Found(NamedTuple):
    """One match of ``find``: a name, one of its versions, and its ``info``."""

    name: str
    version: str
    info: dict[str, Any]


def _seconds(value: Time, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()  # naive datetimes are local time, as everywhere in Python
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a datetime or seconds since the epoch, got {value!r}")
    return float(value)


def matcher(
    metadata: Mapping[str, Any] | None, created_after: Time, created_before: Time
) -> Callable[[ObjectMeta], bool]:
    """Whether a version's metadata has every given key with an equal value,
    and it was created strictly between the given times."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of values to match, got {metadata!r}")
    wanted = dict(metadata or {})
    after = _seconds(created_after, "created_after")
    before = _seconds(created_before, "created_before")

    def matches(meta: ObjectMeta) -> bool:
        if after is not None and not meta.created_at > after:
            return False
        if before is not None and not meta.created_at < before:
            return False
        return all(meta.metadata.get(k, _MISSING) == v for k, v in wanted.items())

    return matches


def name_filter(pattern: str | None) -> Callable[[str], bool]:
    """Shell-style glob (``*``, ``?``, ``[...]``) on the whole name, case-sensitive."""
    if pattern is None:
        return lambda name: True
    if not isinstance(pattern, str):
        raise TypeError(f"name must be a glob pattern str, got {pattern!r}")
    return lambda name: fnmatch.fnmatchcase(name, pattern)


async def live_keys(backend: Backend, wanted: Callable[[str], bool]) -> list[tuple[str, Version]]:
    """(name, version) of every live version of the wanted names: one listing."""
    found: list[tuple[str, Version]] = []
    async for entry in backend.list(META_ROOT):
        if not isinstance(entry, FileInfo) or entry.size == 0:
            continue
        parsed = split_meta_key(entry.key)
        if parsed is None or not wanted(parsed[0]):
            continue
        version = version_from_key(parsed[1])
        if version is not None:
            found.append((parsed[0], version))
    return found


async def find_online(
    backend: Backend, wanted: Callable[[str], bool], matches: Callable[[ObjectMeta], bool]
) -> list[Found]:
    keys = await live_keys(backend, wanted)

    async def read(item: tuple[str, Version]) -> ObjectMeta | None:
        return await mvcc.read_meta(backend, item[0], item[1].key)

    metas = await fanout(read, keys, limit=backend.concurrency)
    metas.raise_first()
    hits = [m for m in metas.results if m is not None and matches(m)]
    return ordered(hits)


def ordered(metas: list[ObjectMeta]) -> list[Found]:
    metas.sort(key=lambda m: (m.name, Version(m.version)))
    return [Found(m.name, m.version, m.to_info()) for m in metas]
