"""What S3 says about an object, read into a ``FileInfo``: the ETag without
its quotes, the modification time, and the ETags S3 computes from MD5s."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from registry.backends.base import FileInfo


def strip_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def quote_etag(etag: str) -> str:
    return f'"{strip_etag(etag)}"'


def response_mtime(response: dict[str, Any]) -> float:
    modified = response.get("LastModified")
    if modified is not None:
        return float(modified.timestamp())
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(date).timestamp()
    return time.time()


def file_info(key: str, response: dict[str, Any], size: int | None = None) -> FileInfo:
    """A HEAD / GET / PUT response (or a listed object) as a ``FileInfo``."""
    if size is None:
        size = int(response.get("ContentLength", response.get("Size", 0)))
    return FileInfo(
        key=key,
        size=size,
        etag=strip_etag(str(response.get("ETag", ""))),
        mtime=response_mtime(response),
    )


def md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def multipart_etag(part_digests: Sequence[bytes]) -> str:
    """The ETag S3 gives a multipart upload: the MD5 of the parts' MD5s, -count."""
    whole = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{whole}-{len(part_digests)}"
