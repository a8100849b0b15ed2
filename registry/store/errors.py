"""Errors raised by the Store (kept apart so they can be re-exported cheaply).

Each one is a RegistryError and, like the core errors, also the builtin it
resembles, so ``except ValueError`` / ``except PermissionError`` keep working.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry.exceptions import RegistryConfigError, RegistryError

__all__ = [
    "StoreAmbiguousObjectError",
    "StoreConfigError",
    "StoreKeyFormatError",
    "StoreLocationNotFound",
    "StoreReadOnlyError",
]


class StoreKeyFormatError(RegistryError, ValueError):
    """A store key does not parse as ``[<mount>/]<name>[@<version>]``."""


class StoreLocationNotFound(RegistryError, KeyError):
    """The mount named by a key (or an argument) is not mounted."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class StoreAmbiguousObjectError(RegistryError, LookupError):
    """An unqualified key matches objects in several mounts."""

    def __init__(self, message: str, mounts: Sequence[str] = ()) -> None:
        super().__init__(message)
        #: The mounts that hold a matching object, in mount order.
        self.mounts: list[str] = list(mounts)


class StoreReadOnlyError(RegistryError, PermissionError):
    """A write was routed to a mount that was added with ``read_only=True``."""

    def __init__(self, message: str, mount: str = "") -> None:
        super().__init__(message)
        #: The read-only mount the write was refused on.
        self.mount = mount


class StoreConfigError(RegistryConfigError):
    """A store configuration (mapping, TOML or JSON file) is invalid."""
