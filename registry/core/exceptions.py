"""Kept importable for code written against the replaced library's README
(``from mindtrace.registry.core.exceptions import ...``); the hierarchy lives
in :mod:`registry.exceptions`, at the bottom of the package."""

from registry.exceptions import (
    BackendError,
    MaterializerError,
    ObjectNotFound,
    PickleRefused,
    PreconditionFailed,
    RegistryConfigError,
    RegistryCorruptMetadata,
    RegistryError,
    RegistryIntegrityError,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)

__all__ = [
    "BackendError",
    "MaterializerError",
    "ObjectNotFound",
    "PickleRefused",
    "PreconditionFailed",
    "RegistryConfigError",
    "RegistryCorruptMetadata",
    "RegistryError",
    "RegistryIntegrityError",
    "RegistryObjectNotFound",
    "RegistryVersionConflict",
]
