"""The S3 client of one event loop: built lazily, credentials and all, the
bucket checked once, every request sent through :meth:`S3Bucket.call` (or ``retrying``).

The client is aiobotocore's (the engine of aioboto3, which the ``s3`` extra
installs); nothing of boto is imported until the first request. Credentials
are the ``access_key`` / ``secret_key`` / ``session_token`` given to the
backend, or else botocore's usual chain (environment, profile, instance role).
Its connection pool is sized to the backend's concurrency, and botocore's own
retries are off: :func:`registry.backends.calls.request` retries, under one
policy and one bound.

Opening checks the bucket with one ListObjectsV2 of at most one key, so a
missing bucket, bad credentials or an unreachable endpoint fail at once with a
clear error (a HEAD's 404 has no body and could not tell a missing bucket
from a missing key). The same listing's ``Server`` header says whether the
store keeps emptied folders listed for a while (SeaweedFS), which ``listing.py``
then works around.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from registry.backends.remote import BucketClient
from registry.backends.s3.errors import (
    BucketNotFound,
    S3BackendError,
    client_error_info,
    is_transient,
    translate,
)

if TYPE_CHECKING:
    from registry.backends.s3.backend import S3Backend

logger = logging.getLogger("registry.backends.s3")
_INSTALL_HINT = "pip install 'versioned-registry[s3]'"
# Stores whose delimited listings come from a real directory tree, where a
# folder emptied by deletes stays listed until a background sweep removes it
# (SeaweedFS: 5-15 s per level, see its empty_folder_cleanup).
_FOLDER_TREE_SERVERS = ("SeaweedFS",)

_shared_loader: Any = None
_shared_loader_lock = threading.Lock()


def _new_session() -> tuple[Any, Any]:
    """A fresh aiobotocore session (what aioboto3 builds its clients on) and AioConfig.

    Every session shares one botocore data loader: loading the S3 service
    model costs ~0.2 s per session otherwise, paid again by every backend on
    every event loop. The loader only caches parsed JSON, so sharing it
    across loops and threads is safe.
    """
    global _shared_loader
    try:
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
        from aiobotocore.session import (  # type: ignore[import-untyped, unused-ignore]
            get_session,
        )
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the S3 backend needs aioboto3: {_INSTALL_HINT}") from exc
    session = get_session()
    with _shared_loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    return session, AioConfig


def new_client(backend: S3Backend) -> Any:
    """An aiobotocore client for ``backend``'s endpoint (an async context manager)."""
    session, aio_config = _new_session()
    style = backend.addressing_style
    if style == "auto" and backend.endpoint_url is not None:
        style = "path"
    config = aio_config(
        max_pool_connections=backend.concurrency,
        connect_timeout=backend.connect_timeout,
        read_timeout=backend.read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # calls.request retries
        s3={"addressing_style": style},
        request_checksum_calculation=backend.checksums,
        response_checksum_validation=backend.checksums,
    )
    region = backend.region
    if region is None and backend.endpoint_url is not None:
        region = "us-east-1"  # S3-compatible stores ignore it, SigV4 needs one
    plain_http = bool(backend.endpoint_url and backend.endpoint_url.startswith("http:"))
    return session.create_client(
        "s3",
        endpoint_url=backend.endpoint_url,
        region_name=region,
        config=config,
        aws_access_key_id=backend.access_key,
        aws_secret_access_key=backend.secret_key,
        aws_session_token=backend.session_token,
        verify=False if plain_http else None,  # skip building a TLS context (~50 ms)
    )


class S3Bucket(BucketClient):
    """One loop's open aiobotocore client on the backend's bucket."""

    def __init__(self, client: Any, stack: contextlib.AsyncExitStack, backend: S3Backend) -> None:
        super().__init__(
            backend,
            where=backend.endpoint_url or "AWS S3",
            logger=logger,
            classify=is_transient,
            translate=translate,
        )
        self.client = client
        self.verify_folders = False
        self._stack = stack

    async def call(
        self,
        operation: str,
        key: str | None,
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
        conditional: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """One S3 request (a client method and its parameters, bucket added)."""
        method = getattr(self.client, operation)
        params["Bucket"] = self.bucket

        async def attempt() -> dict[str, Any]:
            async with self.limiter:
                result: dict[str, Any] = await method(**params)
                return result

        body = params.get("Body")
        size = len(body) if isinstance(body, bytes) else None
        return await self.retrying(
            attempt, operation, key, on_retry=on_retry, conditional=conditional, size=size
        )

    async def close(self) -> None:
        await self._stack.aclose()


async def open_bucket(backend: S3Backend) -> S3Bucket:
    """A client for the running loop, the bucket checked (and created if asked)."""
    stack = contextlib.AsyncExitStack()
    try:
        client = await stack.enter_async_context(new_client(backend))
        bucket = S3Bucket(client, stack, backend)
        probe = await _check_bucket(bucket, backend.create_bucket, backend.region)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stack.aclose()
        raise
    if backend.verify_folders is not None:
        bucket.verify_folders = backend.verify_folders
    else:
        headers = probe.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        server = str(headers.get("server", ""))
        bucket.verify_folders = any(name in server for name in _FOLDER_TREE_SERVERS)
    return bucket


async def _check_bucket(bucket: S3Bucket, create: bool, region: str | None) -> dict[str, Any]:
    """One cheap request proving bucket, credentials and endpoint; creates the
    bucket when asked to. Returns the listing's response."""
    try:
        return await _probe(bucket)
    except BucketNotFound:
        if not create:
            raise
    params: dict[str, Any] = {}
    if region and region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await bucket.call("create_bucket", None, **params)
        logger.info("created S3 bucket %r at %s", bucket.bucket, bucket.where)
    except S3BackendError as exc:
        info = client_error_info(exc.__cause__) if exc.__cause__ else None
        if info is None or info[1] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return await _probe(bucket)  # confirm, as a plain first use does


async def _probe(bucket: S3Bucket) -> dict[str, Any]:
    return await bucket.call("list_objects_v2", None, Prefix=bucket.root, MaxKeys=1)
