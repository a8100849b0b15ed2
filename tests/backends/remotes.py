"""S3 and GCS side by side, for the tests they share (``test_remote.py``).

A :class:`Remote` wraps a session's server target and knows what differs
between the two stores: their error classes, which client method a request
goes through (to inject a failure there), what a throttling error or a lost
answer looks like, and how to make listings page early.
"""

from __future__ import annotations

import base64
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from registry.backends.base import FileInfo
from registry.backends.gcs import (
    GCSAccessDenied,
    GCSBackend,
    GCSBackendError,
    GCSBucketNotFound,
    GCSEndpointUnreachable,
)
from registry.backends.gcs.downloads import stat
from registry.backends.remote import RemoteBackend
from registry.backends.s3 import (
    BucketNotFound,
    EndpointUnreachable,
    S3AccessDenied,
    S3Backend,
    S3BackendError,
)
from registry.exceptions import BackendError
from tests.backends.conftest import S3Target
from tests.conftest import GCSTarget

MiB = 1024 * 1024
ERROR_BOUND = 8.0  # seconds within which a misconfiguration must be reported
REMOTES = ["moto", "seaweedfs", "gcs"]

Wrap = Callable[[Any], Any]  # the client's method -> its replacement


def random_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


async def replace(backend: RemoteBackend[Any], method: str, wrap: Wrap) -> None:
    """Replace a method of the backend's own client (of this loop) by ``wrap(it)``."""
    client = await backend._client()  # type: ignore[attr-defined]
    setattr(client, method, wrap(getattr(client, method)))


class Calls:
    """Counts the calls through a client method it wraps, and runs ``after_first``
    once the first call has returned (to change the store, or to lose the answer)."""

    def __init__(self, after_first: Callable[[], Awaitable[None]] | None = None) -> None:
        self.count = 0
        self._after_first = after_first

    def wrap(self, original: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            response = await original(*args, **kwargs)
            if self.count == 1 and self._after_first is not None:
                await self._after_first()
            return response

        return call


class Remote(ABC):
    """A store family on one running server."""

    family: str
    base_error: type[BackendError]
    bucket_missing: type[BackendError]
    unreachable_error: type[BackendError]
    denied: type[BackendError]
    #: client method behind a request: put, get, a ranged download GET, a listing
    methods: ClassVar[dict[str, str]]
    #: options for a backend that downloads in small ranges, and that range size
    range_options: ClassVar[dict[str, Any]]
    range_size: int
    #: options for the 20 MiB round trip (S3: five parts of 5 MiB)
    large_options: ClassVar[dict[str, Any]]
    #: the backend class and the optional modules its import must not load
    backend_class: type[RemoteBackend[Any]]
    lazy_modules: tuple[str, ...]

    def __init__(self, target: S3Target | GCSTarget) -> None:
        self.target = target
        self.name = target.name

    def backend(self, prefix: str | None = None, **options: Any) -> RemoteBackend[Any]:
        """A backend on a fresh prefix (or the given one) in the session bucket."""
        return self.target.backend(prefix, **options)

    def on_bucket(self, name: str, **options: Any) -> RemoteBackend[Any]:
        """A backend on another bucket of the same server."""
        return self.target.server.backend(name, **options)

    async def replace(self, backend: RemoteBackend[Any], request: str, wrap: Wrap) -> None:
        await replace(backend, self.methods[request], wrap)

    @staticmethod
    @abstractmethod
    def unreachable(port: int) -> RemoteBackend[Any]:
        """A backend whose endpoint is a port nothing listens on."""

    @abstractmethod
    def throttled(self) -> list[Exception]:
        """Two transient errors, as the client raises them."""

    @abstractmethod
    def lost_answer(self) -> Exception:
        """The connection dropped after the request was sent."""

    @abstractmethod
    async def stored_md5(self, backend: RemoteBackend[Any], key: str) -> str:
        """The MD5 (hex) the store reports for a small object."""

    @abstractmethod
    async def small_pages(self, backend: RemoteBackend[Any], mp: pytest.MonkeyPatch) -> None:
        """Make listings come in pages of two."""

    def small_delete_batches(self, mp: pytest.MonkeyPatch) -> None:  # noqa: B027 - optional
        """Make deletes of many keys go in several batches (where there are batches)."""

    def check_large_upload(self, info: FileInfo) -> None:  # noqa: B027 - optional
        """What is particular to the ``FileInfo`` of the 20 MiB upload."""


class S3Remote(Remote):
    family = "s3"
    base_error = S3BackendError
    bucket_missing = BucketNotFound
    unreachable_error = EndpointUnreachable
    denied = S3AccessDenied
    methods: ClassVar[dict[str, str]] = {
        "put": "put_object",
        "get": "get_object",
        "download": "get_object",
        "list": "list_objects_v2",
    }
    range_options: ClassVar[dict[str, Any]] = {"part_size": 5 * MiB}  # S3's smallest part
    range_size = 5 * MiB
    large_options = range_options
    backend_class = S3Backend
    lazy_modules = ("boto", "aioboto", "aiohttp")

    @staticmethod
    def unreachable(port: int) -> RemoteBackend[Any]:
        return S3Backend(
            "bucket", endpoint=f"127.0.0.1:{port}", secure=False, access_key="a", secret_key="b"
        )

    def throttled(self) -> list[Exception]:
        return [client_error(503, "SlowDown"), client_error(500, "InternalError")]

    def lost_answer(self) -> Exception:
        from botocore.exceptions import ConnectionClosedError

        return ConnectionClosedError(endpoint_url="http://test")

    async def stored_md5(self, backend: RemoteBackend[Any], key: str) -> str:
        head = await backend.head(key)
        assert head is not None
        return head.etag  # the ETag of a single-part object is its MD5

    async def small_pages(self, backend: RemoteBackend[Any], mp: pytest.MonkeyPatch) -> None:
        def two_per_page(original: Any) -> Any:
            async def call(**params: Any) -> Any:
                params.setdefault("MaxKeys", 2)
                return await original(**params)

            return call

        await self.replace(backend, "list", two_per_page)

    def small_delete_batches(self, mp: pytest.MonkeyPatch) -> None:
        mp.setattr("registry.backends.s3.listing.DELETE_BATCH", 3)

    def check_large_upload(self, info: FileInfo) -> None:
        # 5 parts of 5 MiB: the ETag of a multipart upload ends in -<parts>
        assert info.etag.endswith("-5"), info.etag


class GCSRemote(Remote):
    family = "gcs"
    base_error = GCSBackendError
    bucket_missing = GCSBucketNotFound
    unreachable_error = GCSEndpointUnreachable
    denied = GCSAccessDenied
    methods: ClassVar[dict[str, str]] = {
        "put": "upload",
        "get": "download",
        "download": "download_stream",
        "list": "list_objects",
    }
    range_options: ClassVar[dict[str, Any]] = {"chunk_size": 1 * MiB}
    range_size = 1 * MiB
    # the default 8 MiB chunks: 3 ranged GETs
    large_options: ClassVar[dict[str, Any]] = {}
    backend_class = GCSBackend
    lazy_modules = ("gcloud", "aiohttp", "jwt")

    @staticmethod
    def unreachable(port: int) -> RemoteBackend[Any]:
        return GCSBackend(uri="gs://bucket/p", endpoint=f"127.0.0.1:{port}")

    def throttled(self) -> list[Exception]:
        return [http_error(503), http_error(429)]

    def lost_answer(self) -> Exception:
        import aiohttp

        return aiohttp.ServerDisconnectedError()

    async def stored_md5(self, backend: RemoteBackend[Any], key: str) -> str:
        resource = await stat(await backend._connection(), key)
        assert resource is not None
        return base64.b64decode(resource["md5Hash"]).hex()

    async def small_pages(self, backend: RemoteBackend[Any], mp: pytest.MonkeyPatch) -> None:
        mp.setattr("registry.backends.gcs.listing.LIST_PAGE_SIZE", 2)


def remote_for(request: pytest.FixtureRequest, name: str) -> Remote:
    """The :class:`Remote` of a server name in ``REMOTES``."""
    if name == "gcs":
        return GCSRemote(request.getfixturevalue("gcs_target"))
    return S3Remote(request.getfixturevalue(f"{name}_target"))


def client_error(status: int, code: str) -> Exception:
    """A botocore ClientError as S3 would cause it."""
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


def http_error(status: int) -> Exception:
    """An aiohttp error response, as gcloud-aio raises it."""
    import aiohttp

    return aiohttp.ClientResponseError(None, (), status=status, message=f"HTTP {status}")  # type: ignore[arg-type]
