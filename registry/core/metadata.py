"""Finding a version's committed metadata, and the version keys it lives under.

A name's versions live at ``meta/<name>/<canonical key>.json``. An
unversioned registry keeps exactly one version per name, ``"1"``, so every
spelling a caller passes addresses it. ``"latest"`` is resolved from the
name's head (core/heads.py) in O(1) requests, and always read from the
backend: another process may have saved or deleted since.
Remote registries keep the last metadata they read or wrote in their cache;
``verify="full"`` always reads the backend instead.
"""

from __future__ import annotations

import logging

import msgspec

from registry.backends.base import Backend
from registry.core import mvcc
from registry.core.cache import Cache
from registry.core.layout import meta_key
from registry.core.types import ObjectMeta, RegistrySettings, Verify, meta_encoder
from registry.core.versions import LATEST, Version, parse_version
from registry.exceptions import RegistryCorruptMetadata, RegistryObjectNotFound

logger = logging.getLogger(__name__)

#: the one version of every name in a registry with version_objects=False
UNVERSIONED = Version("1")


def explicit_version(version: str | None, settings: RegistrySettings) -> Version | None:
    """The version a save writes (None: the next auto-increment number)."""
    if not settings.version_objects:
        if version is not None:
            parse_version(version)  # any valid spelling addresses the one version
        return UNVERSIONED
    return None if version is None else parse_version(version)


def version_key(version: str, settings: RegistrySettings) -> str:
    """Storage key of a concrete version (or of "latest" when unversioned)."""
    if not settings.version_objects:
        if version != LATEST:
            Version(version)  # still refuse what is not a version at all
        return UNVERSIONED.key
    return Version(version).key


async def find_meta(
    backend: Backend,
    cache: Cache | None,
    settings: RegistrySettings,
    name: str,
    version: str,
    verify: Verify,
) -> ObjectMeta:
    """Committed metadata of ``name@version``; RegistryObjectNotFound if none."""
    if version == LATEST and settings.version_objects:
        found = await mvcc.latest_meta_bytes(backend, name, headed=settings.heads)
        if found is None:
            raise RegistryObjectNotFound(f"no object named {name!r} in {backend.uri}")
        top, latest = found
        meta = decode_for(name, latest, f"{backend.uri}/{meta_key(name, top.key)}")
        if cache is not None and cache.read_meta(name, top.key) != latest:
            cache.write_meta(name, top.key, latest)
        return meta
    key = version_key(version, settings)
    where = f"{backend.uri}/{meta_key(name, key)}"
    if cache is not None and verify != "full":
        cached = cache.read_meta(name, key)
        if cached is not None:
            try:
                return decode_for(name, cached, where)
            except RegistryCorruptMetadata as exc:  # damaged in the cache: read it again
                logger.warning("%s: cached metadata dropped and read again (%s)", where, exc)
                cache.drop_meta(name, key)
    data = await mvcc.read_meta_bytes(backend, name, key)
    if data is None:
        if cache is not None:
            cache.drop_meta(name, key)
        what = f"{name!r}" if version == LATEST else f"{name}@{version}"
        raise RegistryObjectNotFound(f"no object {what} in {backend.uri}")
    meta = decode_for(name, data, where)
    # Below "full" the cached copy was just found missing: write it. At "full",
    # only if it changed (a read is cheaper than a write).
    if cache is not None and (verify != "full" or cache.read_meta(name, key) != data):
        cache.write_meta(name, key, data)
    return meta


def decode_for(name: str, data: bytes, where: str) -> ObjectMeta:
    """Decode metadata read for ``name``, refusing a file moved from another name."""
    meta = mvcc.decode_meta(data, where)
    if meta.name != name:
        raise RegistryCorruptMetadata(
            f"{where} names object {meta.name!r}, not {name!r}; the metadata file was "
            "moved or tampered with"
        )
    return meta


def encode_meta(meta: ObjectMeta, version: str) -> bytes:
    meta.version = version
    try:
        return meta_encoder.encode(meta)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
