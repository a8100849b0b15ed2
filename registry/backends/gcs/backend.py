"""``GCSBackend``: its configuration, and the ``Backend`` calls, each handed to
the module that does it (``uploads``, ``downloads``, ``listing``) with the
running loop's client (``client.GCSBucket``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from registry.backends.base import DEFAULT_CONCURRENCY, FileInfo, PutMode
from registry.backends.gcs import downloads, uploads
from registry.backends.gcs import listing as gcs_listing
from registry.backends.gcs.client import GCSBucket, open_bucket
from registry.backends.remote import Listing, RemoteBackend, endpoint_url

KiB = 1024
MiB = 1024 * KiB
CHUNK_QUANTUM = 256 * KiB  # resumable chunks must be multiples of this
DEFAULT_CHUNK_SIZE = 8 * MiB
GOOGLE_API_ROOT = "https://www.googleapis.com"  # gcloud-aio's default


class GCSBackend(RemoteBackend[GCSBucket]):
    """Keys stored as objects in a GCS bucket under ``prefix``.

    ``uri="gs://bucket/prefix"`` or ``bucket_name=`` (+ ``prefix=``); when both
    are given they must agree. ``credentials_path`` is a service-account (or
    authorized-user) JSON key; without it the usual default credentials apply
    (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default file, the
    GCE metadata server). ``project_id`` is needed only to create the bucket
    (``create_bucket=True``) on real GCS.

    The endpoint: ``endpoint=`` if given, else ``STORAGE_EMULATOR_HOST`` as
    gcloud-aio reads it (``host:port`` gets ``http://``), read when the backend
    is constructed, else Google's API. Talking to an emulator is anonymous (no
    token, as in gcloud-aio); ``anonymous=`` overrides that.

    ``chunk_size`` (a multiple of 256 KiB) is the size above which ``put_file``
    streams (resumable, or a streamed multipart upload for ``mode="create"``)
    and the range size of ``get_file``; ``upload_chunk`` splits a resumable
    upload into requests of that size (one streamed PUT by default).
    ``connect_timeout`` bounds each connection attempt, ``read_timeout`` each
    wait for data; ``max_attempts`` counts tries of one request (1 = no retry).
    """

    scheme = "gs"
    listing: ClassVar[Listing] = gcs_listing  # list, list_children, delete: see RemoteBackend
    #: ``put_file`` honours ``transfer.upload_source``: it may start on a file
    #: that is still being written (the core overlaps a large save's copy
    #: into the cache with its upload).
    uploads_growing_files: ClassVar[bool] = True

    def __init__(
        self,
        uri: str | None = None,
        *,
        project_id: str | None = None,
        bucket_name: str | None = None,
        credentials_path: str | os.PathLike[str] | None = None,
        prefix: str = "",
        concurrency: int = DEFAULT_CONCURRENCY,
        create_bucket: bool = False,
        endpoint: str | None = None,
        anonymous: bool | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        upload_chunk: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        super().__init__(
            uri=uri,
            bucket=bucket_name,
            bucket_arg="bucket_name",
            prefix=prefix,
            concurrency=concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        for name, size in (("chunk_size", chunk_size), ("upload_chunk", upload_chunk)):
            if size is not None and (size < CHUNK_QUANTUM or size % CHUNK_QUANTUM):
                raise ValueError(f"{name} must be a positive multiple of 256 KiB, got {size}")
        emulator = endpoint if endpoint is not None else os.environ.get("STORAGE_EMULATOR_HOST")
        self.endpoint: str | None = endpoint_url(emulator, "http") if emulator else None
        self.anonymous = (self.endpoint is not None) if anonymous is None else anonymous
        self.api_root = self.endpoint or GOOGLE_API_ROOT
        self.project_id = project_id
        self.credentials_path = os.fspath(credentials_path) if credentials_path else None
        self.create_bucket = create_bucket
        self.chunk_size = chunk_size
        self.upload_chunk = upload_chunk

    @property
    def identity(self) -> str:
        # An emulator's bucket is not the GCS bucket of the same name.
        return f"{self.uri}@{self.endpoint}" if self.endpoint else self.uri

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"GCSBackend(uri={self.uri!r}{where})"

    # -- the client of the running loop ----------------------------------------------

    async def _open(self) -> GCSBucket:
        bucket = await open_bucket(self)
        self.loop_state()["session"] = bucket.session  # for tools that watch requests
        return bucket

    def _forget_connection(self) -> Any:
        self._runtime.pop("session", None)
        return super()._forget_connection()

    async def _client(self) -> Any:
        """The running loop's gcloud-aio ``Storage`` (opened on first use)."""
        return (await self._connection()).storage

    # -- the contract ------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        return await downloads.get(await self._connection(), key)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        bucket = await self._connection()
        return await downloads.get_file(bucket, key, Path(dest), self.chunk_size)

    async def head(self, key: str) -> FileInfo | None:
        return await downloads.head(await self._connection(), key)

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        when = uploads.conditions(self.uri, key, mode, if_match)
        return await uploads.put(await self._connection(), key, data, when)

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        when = uploads.conditions(self.uri, key, mode, None)
        bucket = await self._connection()
        return await uploads.put_file(
            bucket, key, Path(src), when, self.chunk_size, self.upload_chunk
        )


#: The names the registry exports for this backend.
GCPRegistryBackend = GCSBackend
GCSRegistryBackend = GCSBackend
