"""Stored records (msgspec Structs) and the batch result type."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec

from registry.materializers.base import FileEntry

__all__ = [
    "VERIFY_LEVELS",
    "BatchResult",
    "FileEntry",
    "ObjectMeta",
    "RegistryOptions",
    "RegistrySettings",
    "Verify",
    "check_verify",
]

FORMAT_VERSION = 1


class ObjectMeta(msgspec.Struct, kw_only=True):
    """``meta/<name>/<version>.json``: the commit point of one version.

    ``inline`` holds the bytes of small single-file objects, so that a small
    save is one write and a small load one read; ``uuid`` then names no folder.
    """

    name: str
    version: str
    uuid: str
    materializer: str
    object_class: str
    files: dict[str, FileEntry]
    size: int
    created_at: float
    metadata: dict[str, Any] = {}
    inline: bytes | None = None
    format: int = FORMAT_VERSION
    #: what the materializer says of the stored form: {"format": "parquet", ...}
    stored_as: dict[str, Any] = {}

    def to_info(self) -> dict[str, Any]:
        """The public ``info()`` view: everything except the inlined bytes."""
        return {
            "name": self.name,
            "version": self.version,
            "uuid": self.uuid,
            "materializer": self.materializer,
            "class": self.object_class,
            "files": {k: {"size": v.size, "sha256": v.sha256} for k, v in self.files.items()},
            "size": self.size,
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
            "inline": self.inline is not None,
            "stored_as": dict(self.stored_as),
        }


class RegistrySettings(msgspec.Struct, kw_only=True):
    """``_registry.json``: settings fixed at creation plus the materializer table."""

    mutable: bool = False
    version_objects: bool = False
    materializers: dict[str, str] = {}
    format: int = FORMAT_VERSION
    #: every version was saved with its name's head kept (core/heads.py), so a
    #: name without a head has no explicit versions: nothing to list. False
    #: for registries written before heads existed.
    heads: bool = False


#: what a load checks: "none", "integrity" (sha256 of every file, not read
#: again while unchanged: core.verified), "full" (hash every time and re-read
#: remote metadata past the cache); see core.loading
Verify = Literal["none", "integrity", "full"]
VERIFY_LEVELS = ("none", "integrity", "full")
DEFAULT_INLINE_LIMIT = 64 * 1024
DEFAULT_CACHE_MAX_BYTES = 20 * 1024**3


@dataclass(frozen=True)
class RegistryOptions:
    """How one process uses a registry (the stored settings are ``mutable`` and
    ``version_objects``: None means "as stored", or False for a new one)."""

    mutable: bool | None = None
    version_objects: bool | None = None
    allow_pickle: bool = True
    verify: Verify = "integrity"
    inline_limit: int = DEFAULT_INLINE_LIMIT
    use_cache: bool | None = None
    cache_dir: str | os.PathLike[str] | None = None
    cache_max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES
    cache_max_entries: int | None = None
    offline: bool | None = None  # None: the REGISTRY_OFFLINE environment variable

    def __post_init__(self) -> None:
        check_verify(self.verify)


def check_verify(verify: str) -> Verify:
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
    return verify  # type: ignore[return-value]


meta_encoder = msgspec.json.Encoder()
meta_decoder = msgspec.json.Decoder(ObjectMeta)
settings_decoder = msgspec.json.Decoder(RegistrySettings)

T = TypeVar("T")


@dataclass
class BatchResult(Generic[T]):
    """Outcome of a batch call, aligned with its input.

    ``results[i]`` is the value for input item ``i`` (None where it failed),
    ``errors`` maps failed indices to their exception, and ``succeeded`` /
    ``failed`` / ``skipped`` list input indices in order. ``skipped`` is for
    batch saves with ``on_conflict="skip"``: the item's version already
    existed, so nothing was written and ``results[i]`` is that version; a
    skipped item is neither succeeded nor failed. Duplicated inputs keep
    their own entries. A batch never raises for a per-item failure;
    ``raise_first()`` turns the first one into an exception when wanted.
    """

    results: list[T | None]
    errors: dict[int, BaseException] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)

    @property
    def succeeded(self) -> list[int]:
        skipped = set(self.skipped)
        return [i for i in range(len(self.results)) if i not in self.errors and i not in skipped]

    @property
    def failed(self) -> list[int]:
        return sorted(self.errors)

    @property
    def ok(self) -> bool:
        """No item failed (skipped items are not failures)."""
        return not self.errors

    @property
    def all_succeeded(self) -> bool:
        """The same as ``ok``: no item failed (skipped items are not failures)."""
        return not self.errors

    @property
    def success_count(self) -> int:
        return len(self.results) - len(self.errors) - len(self.skipped)

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    @property
    def failure_count(self) -> int:
        return len(self.errors)

    def raise_first(self) -> None:
        if self.errors:
            index = self.failed[0]
            raise self.errors[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[T | None]:
        return iter(self.results)

    def __getitem__(self, index: int) -> T | None:
        return self.results[index]

    def __repr__(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"BatchResult({self.success_count} succeeded, {len(self.errors)} failed{skipped})"
