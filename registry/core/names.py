"""Rules for object names. Names become path segments on every backend."""

from __future__ import annotations

import re

from registry.core.versions import LATEST

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
