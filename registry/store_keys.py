"""Store keys: ``[<mount>/]<name>[@<version>]`` and mount names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.core.names import MAX_NAME_LENGTH, validate_name
from registry.store_errors import StoreKeyFormatError

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
