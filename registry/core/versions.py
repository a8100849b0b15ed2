"""Version strings: parsing, value comparison and the canonical storage key.

Versions compare by value: numeric components as numbers, missing components
are zero ("1" == "1.0" == "1.0.0"), and a pre-release ("1.0.0-rc.1") sorts
before its release. Equal versions share one canonical key, so storage can
enforce "one object per version" with a single conditional write.
"""

from __future__ import annotations

import re
from functools import total_ordering

LATEST = "latest"
MAX_VERSION_LENGTH = 64
_VERSION_RE = re.compile(r"(\d+(?:\.\d+)*)(?:-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?")
VERSION_RULE = (
    "versions are dot-separated numbers with an optional pre-release tag, "
    "e.g. '3', '2.1', '1.0.0', '1.0.0-rc.1' ('latest' means the greatest version)"
)


@total_ordering
class Version:
    """A parsed version; ``str()`` gives the spelling it was created from."""

    __slots__ = ("_key", "_numbers", "_pre", "spelling")

    def __init__(self, spelling: str) -> None:
        if not isinstance(spelling, str):
            raise TypeError(f"version must be a str, got {type(spelling).__name__}: {spelling!r}")
        match = _VERSION_RE.fullmatch(spelling)
        if match is None or len(spelling) > MAX_VERSION_LENGTH:
            raise ValueError(f"invalid version {spelling!r}: {VERSION_RULE}")
        numbers = [int(part) for part in match.group(1).split(".")]
        while len(numbers) > 1 and numbers[-1] == 0:
            numbers.pop()
        self.spelling = spelling
        self._numbers = tuple(numbers)
        self._pre = match.group(2)
        canonical = ".".join(map(str, self._numbers))
        self._key = f"{canonical}-{self._pre}" if self._pre else canonical

    @property
    def key(self) -> str:
        """Canonical form: equal versions have equal keys ("1.0.0" -> "1")."""
        return self._key

    @property
    def major(self) -> int:
        return self._numbers[0]

    def _sort_key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]:
        if self._pre is None:
            return (self._numbers, 1, ())
        parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self._pre.split("."))
        return (self._numbers, 0, parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __lt__(self, other: Version) -> bool:
        return self._sort_key() < other._sort_key()

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.spelling

    def __repr__(self) -> str:
        return f"Version({self.spelling!r})"


def parse_version(version: str) -> Version:
    """Parse a user-given explicit version; "latest" is not a concrete version."""
    if version == LATEST:
        raise ValueError(f"'latest' is reserved and cannot be saved: {VERSION_RULE}")
    return Version(version)


def version_from_key(key: str) -> Version | None:
    """Parse a stored canonical key; None for foreign files in the folder."""
    try:
        return Version(key)
    except (ValueError, TypeError):
        return None
