"""``S3Backend``: its configuration, and the ``Backend`` calls, each handed to
the module that does it (``uploads``, ``downloads``, ``listing``) with the
running loop's client (``client.S3Bucket``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from registry.backends.base import DEFAULT_CONCURRENCY, FileInfo, PutMode
from registry.backends.remote import Listing, RemoteBackend, endpoint_url
from registry.backends.s3 import downloads, uploads
from registry.backends.s3 import listing as s3_listing
from registry.backends.s3.client import S3Bucket, new_client, open_bucket

AddressingStyle = Literal["auto", "path", "virtual"]
ChecksumMode = Literal["when_required", "when_supported"]


class S3Backend(RemoteBackend[S3Bucket]):
    """Keys stored as objects in ``bucket`` under ``prefix``.

    ``endpoint`` is ``"host:port"`` (scheme from ``secure``) or a full URL;
    leave it out for AWS. Keys default to the standard AWS credential chain.
    ``addressing_style="auto"`` means path-style for a custom endpoint (what
    S3-compatible stores expect; ``localhost`` has no bucket subdomains) and
    botocore's choice on AWS.

    ``checksums="when_required"`` (default) sends checksums only where S3
    demands them: botocore >= 1.36 otherwise adds CRC32 headers to every
    upload, which several S3-compatible stores reject. The registry hashes
    every artifact with sha256 itself. ``"when_supported"`` restores
    botocore's default.

    ``part_size`` (>= 5 MiB) is both the multipart threshold and the starting
    part size of ``put_file``; it grows for files that would need more than
    10,000 parts. ``verify_folders`` overrides the detection of stores that
    list emptied folders for a while (see ``listing``).
    """

    scheme = "s3"
    listing: ClassVar[Listing] = s3_listing  # list, list_children, delete: see RemoteBackend
    #: ``put_file`` honours ``transfer.upload_source``: it may start on a file
    #: that is still being written (the core overlaps a large save's copy
    #: into the cache with its upload).
    uploads_growing_files: ClassVar[bool] = True

    def __init__(
        self,
        bucket: str | None = None,
        *,
        uri: str | None = None,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        secure: bool = True,
        prefix: str = "",
        region: str | None = None,
        addressing_style: AddressingStyle = "auto",
        create_bucket: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        checksums: ChecksumMode = "when_required",
        part_size: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        verify_folders: bool | None = None,
    ) -> None:
        super().__init__(
            uri=uri,
            bucket=bucket,
            bucket_arg="bucket",
            prefix=prefix,
            concurrency=concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        if (access_key is None) != (secret_key is None):
            raise ValueError(
                "pass both access_key and secret_key, or neither (AWS credential chain)"
            )
        if addressing_style not in ("auto", "path", "virtual"):
            raise ValueError(
                f"addressing_style must be auto, path or virtual, got {addressing_style!r}"
            )
        if checksums not in ("when_required", "when_supported"):
            raise ValueError(
                f"checksums must be when_required or when_supported, got {checksums!r}"
            )
        if part_size is not None and not (
            uploads.MIN_PART_SIZE <= part_size <= uploads.MAX_PART_SIZE
        ):
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB, got {part_size}")
        scheme = "https" if secure else "http"
        self.endpoint_url = endpoint_url(endpoint, scheme) if endpoint is not None else None
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.addressing_style: AddressingStyle = addressing_style
        self.create_bucket = create_bucket
        self.checksums: ChecksumMode = checksums
        self.part_size = part_size
        self.verify_folders = verify_folders

    @property
    def identity(self) -> str:
        # Two servers can hold a bucket of the same name: keep their caches apart.
        return f"{self.uri}@{self.endpoint_url or 'aws'}"

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Backend(uri={self.uri!r}{where})"

    # -- the client of the running loop ----------------------------------------------

    async def _open(self) -> S3Bucket:
        return await open_bucket(self)

    async def _client(self) -> Any:
        """The running loop's aiobotocore client (opened on first use)."""
        return (await self._connection()).client

    def _new_client(self) -> Any:
        """A new aiobotocore client for this backend (an async context manager)."""
        return new_client(self)

    # -- the contract ------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        return await downloads.get(await self._connection(), key)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        return await downloads.get_tagged(await self._connection(), key)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        span = self.part_size or downloads.DOWNLOAD_RANGE_SIZE
        return await downloads.get_file(await self._connection(), key, Path(dest), span)

    async def head(self, key: str) -> FileInfo | None:
        return await downloads.head(await self._connection(), key)

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        return await uploads.put(await self._connection(), key, data, mode, if_match)

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        part_size = self.part_size or uploads.DEFAULT_PART_SIZE
        return await uploads.put_file(await self._connection(), key, Path(src), mode, part_size)
