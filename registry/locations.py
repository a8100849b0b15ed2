"""Location strings -> backends: a folder path, ``file://``, ``s3://``,
``gs://`` or ``memory://``.

This sits above the core: the core works on a Backend and never parses a
location. Remote backends are imported only when a location names them.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.backends.base import Backend
from registry.backends.local import LocalBackend

Location = Backend | str | os.PathLike[str]


def default_root() -> Path:
    """``$REGISTRY_HOME``, else ``$XDG_DATA_HOME/registry`` (``~/.local/share/registry``)."""
    if home := os.environ.get("REGISTRY_HOME"):
        return Path(home).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "registry"


def backend_for(location: str | os.PathLike[str]) -> Backend:
    """A backend from a location string or path."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    if not sep or scheme == "file":
        return LocalBackend(text)
    if scheme == "s3":
        from registry.backends.s3 import S3Backend

        return S3Backend(uri=text)
    if scheme == "gs":
        from registry.backends.gcs import GCSBackend

        return GCSBackend(uri=text)
    if scheme == "memory":
        from registry.backends.memory import MemoryBackend

        return MemoryBackend()
    raise ValueError(
        f"unsupported location {text!r}: use a folder path, file://, s3://, gs:// or memory://, "
        "or pass backend= with a Backend instance"
    )


def resolve_backend(location: Location | None, backend: Backend | None) -> Backend:
    """The backend a registry opens: ``backend=``, or a location (a Backend,
    a path or a URI), or local disk at ``default_root()``."""
    if backend is not None and location is not None:
        raise ValueError("pass either a location or backend=, not both")
    if isinstance(location, Backend):
        return location
    if backend is not None:
        return backend
    return backend_for(location if location is not None else default_root())
