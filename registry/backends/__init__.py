"""Byte-level storage backends. They know nothing of versions or objects."""

from registry.backends.base import Backend, FileInfo
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend

__all__ = ["Backend", "FileInfo", "LocalBackend", "MemoryBackend"]
