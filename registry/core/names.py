"""Rules for object names. Names become path segments on every backend."""

from __future__ import annotations

import re

from registry.core.versions import LATEST, version_from_key

MAX_NAME_LENGTH = 200
_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]+")
NAME_RULE = (
    "names use letters, digits and '_ - . :' only (no '/', no '@', no spaces), "
    f"are 1 to {MAX_NAME_LENGTH} characters long and are not made of dots alone"
)


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid object name, else raise ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"object name must be a str, got {type(name).__name__}: {name!r}")
    if (
        not name
        or len(name) > MAX_NAME_LENGTH
        or not _NAME_RE.fullmatch(name)
        or name.strip(".") == ""
    ):
        raise ValueError(f"invalid object name {name!r}: {NAME_RULE}")
    return name


def parse_key(key: str) -> tuple[str, str]:
    """``"name@version"`` -> (name, version); a bare name means "latest"."""
    if not isinstance(key, str):
        raise TypeError(f"registry keys are str ('name' or 'name@version'), got {key!r}")
    name, _, version = key.partition("@")
    return name, (version or LATEST)


def split_key(name: str, version: str) -> tuple[str, str]:
    """A name given as ``"name@version"`` (or ``"name@alias"``) is a key: split
    it. ``version`` must then be the default or say the same."""
    if not isinstance(name, str) or "@" not in name:
        return name, version
    bare, in_key = parse_key(name)
    if version != LATEST and not _same(version, in_key):
        raise ValueError(
            f"{name!r} names version {in_key!r} but version={version!r} was passed; "
            "give the version once, in the name or as version="
        )
    return bare, in_key


def _same(a: str, b: str) -> bool:
    va, vb = version_from_key(a), version_from_key(b)
    return a == b if va is None or vb is None else va == vb
