"""From what the user typed to open registries: a URI with the endpoint and
credential flags, or a Store config whose keys are ``mount/name@version``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from registry._async import AsyncRegistry
from registry.backends.base import Backend
from registry.cli.exits import NOT_FOUND, USAGE, CLIError
from registry.cli.options import Settings
from registry.core.layout import SETTINGS_KEY
from registry.core.names import validate_name
from registry.core.versions import LATEST
from registry.locations import backend_for, default_root
from registry.store.core import AsyncStore
from registry.store.errors import StoreAmbiguousObjectError
from registry.store.keys import TEMP_MOUNT, parse_store_key


def scheme_of(uri: str) -> str:
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else ""


def s3_endpoint(settings: Settings) -> str | None:
    """``--endpoint``, else the variables newer AWS tools read too. Passed on
    explicitly: the backend then uses path-style addressing, which
    S3-compatible stores expect."""
    return (
        settings.endpoint
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def backend_from(uri: str, settings: Settings, **options: Any) -> Backend:
    """The backend ``uri`` names, configured from the flags."""
    scheme = scheme_of(uri)
    if scheme == "memory":
        raise CLIError(
            "memory:// registries live inside one Python process, so a command cannot "
            "reach one; use a folder, s3://bucket/prefix or gs://bucket/prefix",
            USAGE,
        )
    if scheme == "s3":
        from registry.backends.s3 import S3Backend

        return S3Backend(
            uri=uri,
            endpoint=s3_endpoint(settings),
            region=settings.region,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            **options,
        )
    if scheme == "gs":
        from registry.backends.gcs import GCSBackend

        return GCSBackend(
            uri=uri, endpoint=settings.endpoint, credentials_path=settings.credentials, **options
        )
    if scheme not in ("", "file"):
        raise CLIError(
            f"unsupported location {uri!r}: use a folder path, file://, s3://bucket/prefix "
            "or gs://bucket/prefix",
            USAGE,
        )
    return backend_for(uri)


def location_of(settings: Settings) -> str:
    return settings.registry or str(default_root())


async def open_registry(
    uri: str,
    settings: Settings,
    *,
    create: bool = False,
    versioned: bool = True,
    wrap: Callable[[Backend], Backend] | None = None,
) -> AsyncRegistry:
    """The registry at ``uri``. A missing one is an error unless ``create``;
    a created one keeps versions (``versioned``) like a model store should.
    ``wrap`` may put a wrapper around the backend (progress counting)."""
    backend = backend_from(uri, settings)
    if wrap is not None:
        backend = wrap(backend)
    try:
        exists = await backend.head(SETTINGS_KEY) is not None
    except BaseException:
        await backend.aclose()
        raise
    if not exists and not create:
        await backend.aclose()
        raise CLIError(
            f"no registry at {backend.uri} (it has no {SETTINGS_KEY}); check the URI "
            "(-r or REGISTRY_URI), or create one with `registry put`",
            NOT_FOUND,
        )
    return AsyncRegistry(
        backend=backend,
        version_objects=None if exists else versioned,
        cache_dir=settings.cache_dir,
    )


def split_key(key: str) -> tuple[str, str | None]:
    """``name[@version]`` -> (name, version or None), the name checked."""
    name, at, version = key.partition("@")
    validate_name(name)
    if at and not version:
        raise ValueError(f"{key!r} ends with '@': write name@version, or just name for the latest")
    return name, (version if at else None)


@dataclass
class Target:
    """One registry a command works on, and how its names are shown."""

    registry: AsyncRegistry
    label: str  # prefix of the names it prints: "" or "mount/"

    @property
    def uri(self) -> str:
        return self.registry.backend.uri


@dataclass
class Scope:
    """The registry (or a Store's mounts) a command sees."""

    targets: list[Target]
    store: AsyncStore | None = None
    opened: list[AsyncRegistry] = field(default_factory=list)

    async def resolve(self, key: str, *, write: bool = False) -> tuple[Target, str, str | None]:
        """(target, name, version or None) of a key typed on the command line."""
        if self.store is None:
            name, version = split_key(key)
            return self.targets[0], name, version
        parsed = parse_store_key(key)
        if parsed.mount is not None or write:
            mount = parsed.mount or self.store.default_mount
            return self._mount(mount), parsed.name, parsed.version
        holders = [
            t
            for t in self.targets
            if await t.registry.has_object(parsed.name, parsed.version or LATEST)
        ]
        if not holders:
            raise CLIError(
                f"no object {key!r} in any mount of the store ({self.mount_names()})", NOT_FOUND
            )
        if len(holders) > 1:
            mounts = [t.label.rstrip("/") for t in holders]
            choices = " or ".join(f"{m}/{key}" for m in mounts)
            raise StoreAmbiguousObjectError(
                f"{key!r} is in several mounts ({', '.join(mounts)}); name one: {choices}", mounts
            )
        return holders[0], parsed.name, parsed.version

    def _mount(self, mount: str) -> Target:
        for target in self.targets:
            if target.label == f"{mount}/":
                return target
        assert self.store is not None
        return Target(self.store.get_mount(mount), f"{mount}/")  # raises if not mounted

    def mount_names(self) -> str:
        return ", ".join(t.label.rstrip("/") for t in self.targets)

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
        for registry in self.opened:
            await registry.aclose()


async def open_scope(
    settings: Settings, *, create: bool = False, versioned: bool = True, check: bool = True
) -> Scope:
    """The registry of -r / REGISTRY_URI, or the mounts of --store.

    ``check=False`` skips the request that checks the registry exists (the
    cache commands work offline)."""
    if settings.store is not None:
        if settings.registry is not None and "REGISTRY_URI" not in os.environ:
            raise CLIError("pass either --store or -r/--registry, not both", USAGE)
        store = AsyncStore.from_file(settings.store)
        targets = [
            Target(store.get_mount(m), f"{m}/") for m in store.list_mounts() if m != TEMP_MOUNT
        ]
        return Scope(targets, store)
    uri = location_of(settings)
    if check:
        registry = await open_registry(uri, settings, create=create, versioned=versioned)
    else:
        registry = AsyncRegistry(backend=backend_from(uri, settings), cache_dir=settings.cache_dir)
    return Scope([Target(registry, "")], opened=[registry])


@asynccontextmanager
async def scoped(
    settings: Settings, *, create: bool = False, versioned: bool = True, check: bool = True
) -> AsyncIterator[Scope]:
    """``open_scope`` for an ``async with``: the scope is closed however the block ends."""
    scope = await open_scope(settings, create=create, versioned=versioned, check=check)
    try:
        yield scope
    finally:
        await scope.aclose()
