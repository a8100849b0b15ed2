"""The GCS client of one event loop: an aiohttp session and a gcloud-aio
``Storage`` on it, the bucket checked once, every request sent through
:meth:`GCSBucket.call` or :meth:`GCSBucket.retrying`.

Nothing of gcloud or aiohttp is imported until the first request. The
session's connection pool is sized to the backend's concurrency. gcloud-aio
never fetches tokens itself: it is given an explicit ``api_root`` (so it sends
no ``Authorization`` header) and every call here passes the backend's own
(``auth.py``).

Opening lists at most one name in the bucket (``storage.objects.list`` is in
every object role, while reading the bucket's metadata needs
``storage.buckets.get``, which least-privilege accounts often lack), so a
missing bucket, bad credentials or an unreachable endpoint fail at once with
a clear error; it creates the bucket when asked to.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from registry.backends.gcs.auth import Anonymous, TokenSource, token_source
from registry.backends.gcs.errors import (
    GCSBackendError,
    GCSBucketNotFound,
    http_status,
    is_transient,
    translate,
)
from registry.backends.remote import BucketClient

if TYPE_CHECKING:
    from registry.backends.gcs.backend import GCSBackend

logger = logging.getLogger("registry.backends.gcs")
_INSTALL_HINT = "pip install 'versioned-registry[gcs]'"


def _imports() -> tuple[Any, Any]:
    """aiohttp and gcloud-aio's ``Storage``, imported on first use."""
    try:
        import aiohttp
        from gcloud.aio.storage import Storage
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the GCS backend needs gcloud-aio-storage: {_INSTALL_HINT}") from exc
    return aiohttp, Storage


class GCSBucket(BucketClient):
    """One loop's aiohttp session and gcloud-aio ``Storage`` on the backend's bucket."""

    def __init__(
        self, storage: Any, session: Any, token: TokenSource, timeout: Any, backend: GCSBackend
    ) -> None:
        super().__init__(
            backend,
            where=backend.endpoint or "Google Cloud Storage",
            logger=logger,
            classify=is_transient,
            translate=translate,
        )
        self.storage = storage
        self.session = session
        # gcloud-aio's wrapper of the session: raises on error statuses, as its
        # own calls do, so requests made here are retried and translated alike
        self.http = storage.session
        self.token = token
        self.timeout = timeout
        self.api_root = backend.api_root

    def object_url(self, name: str, *, upload: bool = False) -> str:
        bucket = quote(self.bucket, safe="")
        if upload:
            return f"{self.api_root}/upload/storage/v1/b/{bucket}/o"
        return f"{self.api_root}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    async def auth_headers(self) -> dict[str, str]:
        value = await self.token.get()
        return {"Authorization": f"Bearer {value}"} if value else {}

    async def call(
        self,
        method: Callable[..., Awaitable[Any]],
        operation: str,
        key: str | None,
        *args: Any,
        size: Callable[[Any], int] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One gcloud-aio call (a ``Storage`` method and its arguments).
        (``key`` None: a 404 can only mean the bucket is gone.)"""

        async def attempt() -> Any:
            headers = await self.auth_headers()
            async with self.limiter:
                return await method(*args, headers=headers, timeout=self.timeout, **kwargs)

        return await self.retrying(attempt, operation, key, size=size)

    async def close(self) -> None:
        await self.token.close()
        await self.session.close()


async def open_bucket(backend: GCSBackend) -> GCSBucket:
    """A session and client for the running loop, the bucket checked (and
    created if asked)."""
    session: Any = None
    try:
        aiohttp, storage_cls = _imports()
        # connect and each read are bounded, a whole transfer is not (a large
        # object takes as long as it takes)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=backend.connect_timeout, sock_read=backend.read_timeout
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=backend.concurrency), timeout=timeout
        )
        token = token_source(
            session,
            anonymous=backend.anonymous,
            credentials_path=backend.credentials_path,
            admin=backend.create_bucket,
            policy=backend.retry_policy,
            timeout=max(1, int(backend.connect_timeout + backend.read_timeout)),
        )
        storage = storage_cls(session=session, token=Anonymous(), api_root=backend.api_root)
        bucket = GCSBucket(storage, session, token, timeout, backend)
        try:
            await _probe(bucket)
        except GCSBucketNotFound:
            if not backend.create_bucket:
                raise
            await _create_bucket(bucket, backend.project_id, backend.anonymous)
    except BaseException:
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()
        raise
    return bucket


async def _probe(bucket: GCSBucket) -> None:
    params = {"prefix": bucket.root, "maxResults": "1", "fields": "nextPageToken"}
    await bucket.call(bucket.storage.list_objects, "list", None, bucket.bucket, params=params)


async def _create_bucket(bucket: GCSBucket, project: str | None, anonymous: bool) -> None:
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project and anonymous:
        project = "registry"  # emulators take any project
    if not project:
        raise GCSBackendError(
            f"create_bucket=True needs project_id= to create gs://{bucket.bucket}"
        )
    body = json.dumps({"name": bucket.bucket})

    async def attempt() -> None:
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        headers.update(await bucket.auth_headers())
        async with bucket.limiter:
            response = await bucket.http.request(
                "POST",
                f"{bucket.api_root}/storage/v1/b",
                headers,
                params={"project": project},
                data=body,
                timeout=bucket.timeout,
            )
            response.release()

    try:
        await bucket.retrying(attempt, "create bucket", None)
        logger.info("created GCS bucket %r at %s", bucket.bucket, bucket.where)
    except GCSBackendError as exc:
        cause = exc.__cause__
        if cause is None or http_status(cause) != 409:  # 409: it exists already
            raise
    await _probe(bucket)  # confirm, as a plain first use does
