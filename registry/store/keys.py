"""Store keys: ``[<mount>/]<name>[@<version>]`` and mount names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from registry.core.names import MAX_NAME_LENGTH, validate_name
from registry.core.versions import LATEST, Version
from registry.store.errors import StoreKeyFormatError

TEMP_MOUNT = "temp"
KEY_FORMAT = (
    "store keys are '[<mount>/]<name>[@<version>]', e.g. 'models/resnet@2', "
    "'models/resnet' or 'resnet'"
)
MOUNT_RULE = (
    "mount names use letters, digits, '_' and '-' only and are 1 to "
    f"{MAX_NAME_LENGTH} characters long"
)
_MOUNT_RE = re.compile(r"[A-Za-z0-9_\-]+")


@dataclass(frozen=True, slots=True)
class StoreKey:
    """A parsed key. ``mount`` is None when unqualified, ``version`` when not given."""

    mount: str | None
    name: str
    version: str | None

    def __str__(self) -> str:
        text = self.name if self.mount is None else f"{self.mount}/{self.name}"
        return text if self.version is None else f"{text}@{self.version}"


def parse_store_key(key: object) -> StoreKey:
    """Split ``[<mount>/]<name>[@<version>]``; StoreKeyFormatError if it does not parse.

    Whether the mount exists is checked when the key is used (StoreLocationNotFound).
    """
    if not isinstance(key, str):
        raise TypeError(f"{KEY_FORMAT}; got {type(key).__name__}: {key!r}")
    mount: str | None
    mount, slash, rest = key.partition("/")
    if not slash:
        mount, rest = None, key
    name, at, version = rest.partition("@")
    problem = _key_problem(mount, rest, name, at, version)
    if problem is None:
        try:
            validate_name(name)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        raise StoreKeyFormatError(f"invalid store key {key!r}: {problem}; {KEY_FORMAT}")
    return StoreKey(mount, name, version if at else None)


def with_version(
    key: str | list[str], version: str | Sequence[str | None] | None
) -> str | list[str]:
    """Fold a ``version=`` argument into the key(s): ``("m/x", "2")`` -> ``"m/x@2"``.

    A key that names a version of its own must agree with ``version=``
    (ValueError otherwise). Keys that do not parse are returned as they are,
    so the usual per-key error reports them.
    """
    if isinstance(key, list):
        if isinstance(version, list | tuple):
            if len(version) != len(key):
                raise ValueError(
                    f"version has {len(version)} entries for {len(key)} keys; give one per key"
                )
            return [_with_one(k, v) for k, v in zip(key, version, strict=True)]
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a str or a list of them, got {version!r}")
        return [_with_one(k, version) for k in key]
    if version is not None and not isinstance(version, str):
        raise TypeError("version must be a str for a single key (lists are for batches)")
    return _with_one(key, version)


def _with_one(key: str, version: str | None) -> str:
    if version is None:
        return key
    try:
        parsed = parse_store_key(key)
    except (StoreKeyFormatError, TypeError):
        return key
    if parsed.version is not None and not _same_version(parsed.version, version):
        raise ValueError(
            f"key {key!r} names version {parsed.version!r} but version={version!r} was "
            "passed; give the version once, in the key or as version="
        )
    return str(StoreKey(parsed.mount, parsed.name, version))


def _same_version(a: str, b: str) -> bool:
    if LATEST in (a, b):
        return a == b
    try:
        return Version(a) == Version(b)
    except ValueError:
        return a == b


def _key_problem(mount: str | None, rest: str, name: str, at: str, version: str) -> str | None:
    if mount == "":
        return "nothing before '/' (the mount name)"
    if "/" in rest:
        return "more than one '/'"
    if not name:
        return "no object name"
    if at and not version:
        return "nothing after '@' (the version)"
    if "@" in version:
        return "more than one '@'"
    return None


def validate_mount_name(name: object) -> str:
    """Return ``name`` if it can be a mount name, else raise ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"mount name must be a str, got {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME_LENGTH or not _MOUNT_RE.fullmatch(name):
        raise ValueError(f"invalid mount name {name!r}: {MOUNT_RULE}")
    return name
