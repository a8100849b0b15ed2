"""One exception hierarchy: every error the registry raises is a RegistryError.

Errors that users match on also subclass the builtin they resemble, so
``except KeyError`` and ``except ValueError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "MaterializerError",
    "ObjectNotFound",
    "PickleRefused",
    "PreconditionFailed",
    "RegistryAliasConflict",
    "RegistryConfigError",
    "RegistryCorruptMetadata",
    "RegistryError",
    "RegistryIntegrityError",
    "RegistryObjectNotFound",
    "RegistryOfflineError",
    "RegistryVersionConflict",
]


class RegistryError(Exception):
    """Base class of every error raised by the registry."""


class RegistryObjectNotFound(RegistryError, KeyError):
    """The requested name or version does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class RegistryVersionConflict(RegistryError):
    """The version already exists and the save may not replace it.

    ``name`` and ``version`` say which one (None when not known).
    """

    def __init__(self, message: str, *, name: str | None = None, version: str | None = None):
        super().__init__(message)
        self.name = name
        self.version = version


class RegistryAliasConflict(RegistryError):
    """An alias is not where the caller expected it (``set_alias(expected=)``),
    or a version cannot be deleted because an alias points to it.

    ``name`` and ``alias`` say which alias; ``current`` is the version it
    points to (None when it does not exist).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        alias: str | None = None,
        current: str | None = None,
    ):
        super().__init__(message)
        self.name = name
        self.alias = alias
        self.current = current


class RegistryOfflineError(RegistryError):
    """The registry is offline and the operation needs the backend."""


class RegistryIntegrityError(RegistryError):
    """Stored bytes do not match the size or sha256 recorded at save time."""


class RegistryCorruptMetadata(RegistryError):
    """A metadata file cannot be decoded."""


class RegistryConfigError(RegistryError, ValueError):
    """The registry was opened with settings that contradict the stored ones."""


class MaterializerError(RegistryError):
    """No materializer can handle the object, or it failed to load or save."""


class PickleRefused(MaterializerError):
    """The object was stored with pickle and ``allow_pickle=False``."""


class BackendError(RegistryError):
    """A storage backend failed in a way that is not one of the above."""


class ObjectNotFound(BackendError, KeyError):
    """Backend level: no object stored under the key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PreconditionFailed(BackendError):
    """Backend level: a conditional write lost (the key exists, or its etag changed)."""
