"""What GCS says about an object, read into a ``FileInfo`` (the etag is the
object's generation, a decimal string), and the MD5s GCS reports."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from registry.backends.base import FileInfo

CONTENT_TYPE = "application/octet-stream"  # of every object the backend writes
_READ_CHUNK = 1024 * 1024


def parse_time(value: Any) -> float:
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).timestamp()
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(value).timestamp()
    return time.time()


def file_info(key: str, resource: Mapping[str, Any], size: int | None = None) -> FileInfo:
    """An object resource (JSON API) as a ``FileInfo``."""
    return FileInfo(
        key=key,
        size=int(resource.get("size", 0)) if size is None else size,
        etag=str(resource.get("generation", "")),
        mtime=parse_time(resource.get("updated")),
    )


def name_only(key: str) -> FileInfo:
    """A listed key whose size and generation were not asked for."""
    return FileInfo(key=key, size=-1, etag="", mtime=0.0)


def is_generation(token: str) -> bool:
    return token.isascii() and token.isdigit() and int(token) > 0


def md5_b64(data: bytes) -> str:
    """The ``md5Hash`` GCS reports for ``data``."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def file_md5_b64(path: Path) -> str:
    """The ``md5Hash`` GCS reports for the file's content."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()
