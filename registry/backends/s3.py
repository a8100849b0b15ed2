"""S3-compatible backend on aioboto3: AWS S3, MinIO, SeaweedFS, Ceph, R2, moto.

The commit point is a conditional PUT: ``mode="create"`` sends
``If-None-Match: *`` and ``if_match`` sends ``If-Match: "<etag>"``; a lost
condition (HTTP 412, or 404 for ``If-Match`` on a key that is gone) raises
``PreconditionFailed``. Etags are the S3 ETag without its quotes.

Runtime state lives in ``loop_state()``: one S3 client per event loop (an
aiobotocore client, the engine of aioboto3, which the ``s3`` extra installs),
created on first use, kept open by an ``AsyncExitStack`` and closed by
``aclose()``. Its connection pool is sized to the backend's concurrency. The first use also checks the bucket once (one ListObjectsV2 of
at most one key), so a missing bucket, bad credentials or an unreachable
endpoint fail at once with a clear :class:`S3BackendError` — a missing bucket
is otherwise invisible to HEAD, whose 404 has no body.

Every request holds the backend's limiter (the HTTP pool is sized to match)
and is retried by :func:`registry.backends.retry.retry_call` on transient
failures; botocore's own retries are turned off so there is one retry policy
and one bound. When a conditional write had an ambiguous attempt (the
connection died after the request was sent) and a retry then loses its
condition, the backend compares the stored ETag with the MD5 of what it sent
and reports success when the first attempt had in fact landed.

Large files go up as multipart uploads (part size adapted to the file size,
at most 10,000 parts, a few parts in flight: memory is part size x parts in
flight) and come down as concurrent ranged GETs pinned to one ETag with
``If-Match``. Nothing of boto is imported until the first request.

On stores whose delimited listings come from a real directory tree
(SeaweedFS, detected from the ``Server`` header), a folder emptied by deletes
stays listed until a background sweep removes it; there ``list`` checks each
folder it reports with a one-key listing (``verify_folders=`` overrides the
detection).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from registry.backends.base import DEFAULT_CONCURRENCY, Backend, FileInfo, PutMode
from registry.backends.retry import RetryPolicy, retry_call
from registry.backends.transfer import (
    ChangedWhileReading,
    EmptyObject,
    Signal,
    check_key,
    check_prefix,
    download_to_file,
    fetch_remaining,
    pread_exact,
    pwrite_all,
    run_all,
    total_from_content_range,
)
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed

__all__ = [
    "BucketNotFound",
    "EndpointUnreachable",
    "S3AccessDenied",
    "S3Backend",
    "S3BackendError",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
DOWNLOAD_RANGE_SIZE = 8 * MiB
DELETE_BATCH = 1000
MAX_BUFFERED_BYTES = 256 * MiB  # cap on part bytes held in memory by one transfer
MAX_PARTS_IN_FLIGHT = 8
_READ_CHUNK = 1 * MiB
_WRITE_BUFFER = 4 * MiB
_INSTALL_HINT = "pip install 'versioned-registry[s3]'"

AddressingStyle = Literal["auto", "path", "virtual"]
ChecksumMode = Literal["when_required", "when_supported"]

_CHECKSUM_FIELDS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)
# Stores whose delimited listings come from a real directory tree, where a
# folder emptied by deletes stays listed until a background sweep removes it
# (SeaweedFS: 5-15 s per level, see its empty_folder_cleanup).
_FOLDER_TREE_SERVERS = ("SeaweedFS",)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # 409: a concurrent conditional write, retry
        "OperationAborted",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
        "InvalidSecurity",
    }
)


class S3BackendError(BackendError):
    """The S3 backend failed for a reason other than not-found or a lost condition."""


class BucketNotFound(S3BackendError):
    """The configured bucket does not exist (and ``create_bucket`` was not set)."""


class S3AccessDenied(S3BackendError):
    """Bad or missing credentials, or no permission on the bucket."""


class EndpointUnreachable(S3BackendError):
    """The S3 endpoint did not answer (connection refused, DNS, timeouts)."""


# -- lazy imports and error classification ------------------------------------------


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


def _botocore_exceptions() -> Any:
    from botocore import exceptions  # type: ignore[import-untyped, unused-ignore]

    return exceptions


def _client_error_info(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, error code) of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict) or "Error" not in response:
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(response.get("Error", {}).get("Code", ""))
    try:
        return int(status or 0), code
    except (TypeError, ValueError):
        return 0, code


def _is_connection_error(exc: BaseException) -> bool:
    """Could not reach the endpoint at all (nothing was sent)."""
    bex = _botocore_exceptions()

    return isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError) and not (
        isinstance(exc, bex.SSLError)
    )


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, 5xx, 409 conflicts, connection trouble, timeouts."""
    info = _client_error_info(exc)
    if info is not None:
        status, code = info
        if status in (404, 412) or code in ("NoSuchKey", "NoSuchBucket", "PreconditionFailed"):
            return False
        return code in _TRANSIENT_CODES or status >= 500 or status == 429
    import aiohttp

    bex = _botocore_exceptions()

    if isinstance(exc, bex.SSLError | bex.NoCredentialsError | bex.PartialCredentialsError):
        return False
    return isinstance(
        exc,
        bex.HTTPClientError  # connection closed, read timeout, streaming errors
        | bex.ConnectionError  # endpoint connection, connect timeout
        | bex.IncompleteReadError
        | aiohttp.ClientError
        | ConnectionError
        | TimeoutError,
    )


def _may_have_landed(exc: BaseException) -> bool:
    """After this failure, the write may have been applied on the server."""
    return not _is_connection_error(exc)


def _strip_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _quote_etag(etag: str) -> str:
    return f'"{_strip_etag(etag)}"'


def _response_mtime(response: dict[str, Any]) -> float:
    modified = response.get("LastModified")
    if modified is not None:
        return float(modified.timestamp())
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(date).timestamp()
    return time.time()


def _parse_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    return parts.netloc, parts.path.strip("/")


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _multipart_etag(part_digests: Sequence[bytes]) -> str:
    return f"{hashlib.md5(b''.join(part_digests), usedforsecurity=False).hexdigest()}-{len(part_digests)}"


class S3Backend(Backend):
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
    10,000 parts.
    """

    is_remote = True

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
        super().__init__(concurrency=concurrency)
        if uri is not None:
            uri_bucket, uri_prefix = _parse_uri(uri)
            if bucket is not None and bucket != uri_bucket:
                raise ValueError(f"bucket={bucket!r} contradicts uri={uri!r}")
            if prefix.strip("/") and uri_prefix and prefix.strip("/") != uri_prefix:
                raise ValueError(f"prefix={prefix!r} contradicts uri={uri!r}")
            bucket = uri_bucket
            prefix = uri_prefix or prefix
        if not bucket or "/" in bucket:
            raise ValueError(
                f"S3Backend needs a bucket name (or uri='s3://bucket/prefix'), got {bucket!r}"
            )
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
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
        if part_size is not None and not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB, got {part_size}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be > 0")

        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = _endpoint_url(endpoint, secure)
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.addressing_style: AddressingStyle = addressing_style
        self.create_bucket = create_bucket
        self.checksums: ChecksumMode = checksums
        self.part_size = part_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.verify_folders = verify_folders
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts,
            # never spend more than a few connect timeouts on one request
            deadline=max(10.0, 3 * connect_timeout) + read_timeout,
        )
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._root = f"{prefix}/" if prefix else ""

    @property
    def identity(self) -> str:
        # Two servers can hold a bucket of the same name: keep their caches apart.
        return f"{self.uri}@{self.endpoint_url or 'aws'}"

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Backend(uri={self.uri!r}{where})"

    # -- client lifecycle ---------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self.endpoint_url or "AWS S3"

    async def _client(self) -> Any:
        """The client of the running loop, created (and the bucket checked) on first use."""
        state = self.loop_state()
        client = state.get("client")
        if client is not None:
            return client
        lock: anyio.Lock | None = state.get("client_lock")
        if lock is None:
            lock = state["client_lock"] = anyio.Lock()
        arrived = time.monotonic()
        async with lock:
            client = state.get("client")
            if client is not None:
                return client
            failed = state.get("client_failure")
            if failed is not None and failed[0] >= arrived:
                # the attempt this task waited for just failed: don't make every
                # waiter repeat it (N tasks x the retry bound would be no bound)
                raise failed[1]
            stack = contextlib.AsyncExitStack()
            try:
                client = await stack.enter_async_context(self._new_client())
                probe = await self._check_bucket(client)
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await stack.aclose()
                if isinstance(exc, Exception):
                    state["client_failure"] = (time.monotonic(), exc)
                raise
            state["verify_folders"] = self._should_verify_folders(probe)
            state["stack"] = stack
            state["client"] = client
            return client

    def _should_verify_folders(self, probe: dict[str, Any]) -> bool:
        if self.verify_folders is not None:
            return self.verify_folders
        headers = probe.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        server = str(headers.get("server", ""))
        return any(name in server for name in _FOLDER_TREE_SERVERS)

    def _new_client(self) -> Any:
        session, aio_config = _new_session()
        style = self.addressing_style
        if style == "auto" and self.endpoint_url is not None:
            style = "path"
        config = aio_config(
            max_pool_connections=self.concurrency,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # retry.py retries
            s3={"addressing_style": style},
            request_checksum_calculation=self.checksums,
            response_checksum_validation=self.checksums,
        )
        region = self.region
        if region is None and self.endpoint_url is not None:
            region = "us-east-1"  # S3-compatible stores ignore it, SigV4 needs one
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=region,
            config=config,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            # plain http: skip building a TLS context (~50 ms per client)
            verify=False if self.endpoint_url and self.endpoint_url.startswith("http:") else None,
        )

    async def _check_bucket(self, client: Any) -> dict[str, Any]:
        """One cheap request proving bucket, credentials and endpoint; creates the
        bucket when asked to. Returns the listing's response."""
        try:
            return await self._call(client, "list_objects_v2", None, Prefix=self._root, MaxKeys=1)
        except BucketNotFound:
            if not self.create_bucket:
                raise
        params: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call(client, "create_bucket", None, **params)
        except S3BackendError as exc:
            info = _client_error_info(exc.__cause__) if exc.__cause__ else None
            if info is None or info[1] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return await self._call(client, "list_objects_v2", None, Prefix=self._root, MaxKeys=1)

    async def aclose(self) -> None:
        """Close the client (and its connection pool) of this backend.

        A client belongs to the loop that made it. Called from another loop,
        ``aclose`` hands the close to that loop if it still runs (without
        waiting for it), and otherwise just forgets the client. Using the
        backend from a new loop never touches the old client: ``loop_state``
        gives the new loop its own.
        """
        import asyncio

        stack: contextlib.AsyncExitStack | None = self._runtime.pop("stack", None)
        self._runtime.pop("client", None)
        if stack is None:
            return
        owner_ref = self._runtime.get("loop")
        owner = owner_ref() if owner_ref is not None else None
        if owner is asyncio.get_running_loop():
            with anyio.CancelScope(shield=True):
                await stack.aclose()
        elif owner is not None and owner.is_running() and not owner.is_closed():
            asyncio.run_coroutine_threadsafe(stack.aclose(), owner)

    # -- requests -----------------------------------------------------------------------

    async def _call(
        self,
        client: Any,
        operation: str,
        key: str | None,
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """One S3 request under the limiter, retried when transient, errors translated."""
        method = getattr(client, operation)
        params["Bucket"] = self.bucket

        async def attempt() -> dict[str, Any]:
            async with self.limiter:
                result: dict[str, Any] = await method(**params)
                return result

        result: dict[str, Any] = await self._retrying(attempt, operation, key, on_retry=on_retry)
        return result

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[Any]],
        operation: str,
        key: str | None,
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> Any:
        try:
            return await retry_call(
                attempt, classify=_is_transient, policy=self.retry_policy, on_retry=on_retry
            )
        except (BackendError, ValueError, Signal):
            raise
        except Exception as exc:
            raise self._translate(exc, operation, key) from exc

    def _translate(self, exc: Exception, operation: str, key: str | None) -> BackendError:
        what = f"{operation} of {key!r}" if key is not None else operation
        where = f"bucket {self.bucket!r} at {self._where}"
        info = _client_error_info(exc)
        if info is not None:
            status, code = info
            if code == "NoSuchBucket":
                return BucketNotFound(
                    f"S3 bucket {self.bucket!r} does not exist at {self._where}; "
                    "create it or pass create_bucket=True"
                )
            if status == 412 or code == "PreconditionFailed":
                return PreconditionFailed(f"{key}: precondition failed ({operation})")
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFound(key if key is not None else operation)
            if status == 403 or code in _DENIED_CODES:
                return S3AccessDenied(
                    f"S3 denied {what} on {where} ({code or status}): check access_key / "
                    "secret_key (or the AWS credential chain) and the bucket's permissions"
                )
            return S3BackendError(f"S3 {what} on {where} failed: {exc}")
        bex = _botocore_exceptions()

        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return S3AccessDenied(
                f"no S3 credentials for {where}: pass access_key= and secret_key=, or set up "
                f"the AWS credential chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile): {exc}"
            )
        if _is_connection_error(exc):
            return EndpointUnreachable(
                f"cannot reach the S3 endpoint {self._where} (bucket {self.bucket!r}) after "
                f"{self.retry_policy.max_attempts} attempts: {exc}"
            )
        return S3BackendError(f"S3 {what} on {where} failed: {exc!r}")

    def _full(self, key: str) -> str:
        check_key(key)
        return self._root + key

    def _info(self, key: str, response: dict[str, Any], size: int | None = None) -> FileInfo:
        return FileInfo(
            key=key,
            size=int(response["ContentLength"]) if size is None else size,
            etag=_strip_etag(str(response.get("ETag", ""))),
            mtime=_response_mtime(response),
        )

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        full = self._full(key)
        client = await self._client()

        async def attempt() -> bytes:
            async with self.limiter:
                response = await client.get_object(Bucket=self.bucket, Key=full)
                body = response["Body"]
                try:
                    data: bytes = await body.read()
                except BaseException:
                    body.close()
                    raise
                return data

        result: bytes = await self._retrying(attempt, "get_object", key)
        return result

    async def head(self, key: str) -> FileInfo | None:
        full = self._full(key)
        client = await self._client()
        try:
            response = await self._call(client, "head_object", key, Key=full)
        except ObjectNotFound:
            return None
        return self._info(key, response)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        full = self._full(key)
        client = await self._client()

        def gave_up() -> Exception:
            return S3BackendError(f"{key} kept changing while it was being downloaded")

        return await download_to_file(
            Path(dest), lambda fd: self._download(client, key, full, fd), gave_up
        )

    async def _download(self, client: Any, key: str, full: str, fd: int) -> FileInfo:
        span = self.part_size or DOWNLOAD_RANGE_SIZE
        try:
            first, received = await self._get_range(client, key, full, fd, 0, span, None)
        except EmptyObject:
            first, received = await self._get_range(client, key, full, fd, 0, None, None)
        total = total_from_content_range(first.get("ContentRange"), received)
        etag = _strip_etag(str(first.get("ETag", "")))

        async def get_range(start: int, length: int) -> int:
            return (await self._get_range(client, key, full, fd, start, length, etag))[1]

        def short_read(start: int, got: int, length: int) -> Exception:
            return S3BackendError(f"{key}: short ranged read at {start} ({got} of {length})")

        in_flight = min(MAX_PARTS_IN_FLIGHT, self.concurrency)
        await fetch_remaining(total, received, span, in_flight, get_range, short_read)
        return FileInfo(key=key, size=total, etag=etag, mtime=_response_mtime(first))

    async def _get_range(
        self,
        client: Any,
        key: str,
        full: str,
        fd: int,
        start: int,
        length: int | None,
        etag: str | None,
    ) -> tuple[dict[str, Any], int]:
        """GET bytes [start, start+length) (or everything) into ``fd`` at their offset."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if length is not None:
            params["Range"] = f"bytes={start}-{start + length - 1}"
        if etag is not None:
            params["IfMatch"] = _quote_etag(etag)

        async def attempt() -> tuple[dict[str, Any], int]:
            async with self.limiter:
                try:
                    response = await client.get_object(**params)
                except Exception as exc:
                    info = _client_error_info(exc)
                    if info is not None and (info[0] == 416 or info[1] == "InvalidRange"):
                        raise EmptyObject from exc
                    if etag is not None and info is not None and info[0] == 412:
                        raise ChangedWhileReading from exc
                    raise
                body = response["Body"]
                offset = start
                buffer: list[bytes] = []
                buffered = 0
                try:
                    while chunk := await body.read(_READ_CHUNK):
                        buffer.append(chunk)
                        buffered += len(chunk)
                        if buffered >= _WRITE_BUFFER:
                            data = b"".join(buffer)
                            await anyio.to_thread.run_sync(pwrite_all, fd, data, offset)
                            offset += buffered
                            buffer, buffered = [], 0
                except BaseException:
                    body.close()
                    raise
                if buffered:
                    await anyio.to_thread.run_sync(pwrite_all, fd, b"".join(buffer), offset)
                    offset += buffered
                return response, offset - start

        result: tuple[dict[str, Any], int] = await self._retrying(attempt, "get_object", key)
        return result

    # -- writes -------------------------------------------------------------------------

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        full = self._full(key)
        client = await self._client()
        params: dict[str, Any] = {"Key": full, "Body": data}
        if if_match is not None:
            params["IfMatch"] = _quote_etag(if_match)
        elif mode == "create":
            params["IfNoneMatch"] = "*"
        conditional = len(params) > 2
        ambiguous = False

        def note(exc: BaseException, failures: int) -> None:
            nonlocal ambiguous
            ambiguous = ambiguous or _may_have_landed(exc)

        try:
            response = await self._call(client, "put_object", key, on_retry=note, **params)
        except (PreconditionFailed, ObjectNotFound) as exc:
            if not conditional:
                raise
            if ambiguous:
                landed = await self._landed(client, key, _md5(data).hex())
                if landed is not None:
                    return landed
            if isinstance(exc, PreconditionFailed):
                raise
            # If-Match on a key that does not exist: S3 answers 404
            raise PreconditionFailed(f"{key}: no such key to compare-and-swap") from exc
        return self._info(key, response, size=len(data))

    async def _landed(self, client: Any, key: str, expected_etag: str) -> FileInfo | None:
        """After an ambiguous write: the stored object if it is ours (same ETag)."""
        info = await self.head(key)
        if info is not None and info.etag == expected_etag:
            return info
        return None

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        self._full(key)
        src = Path(src)
        size = (await anyio.to_thread.run_sync(os.stat, src)).st_size
        threshold = self.part_size or DEFAULT_PART_SIZE
        if size <= threshold:
            data = await anyio.to_thread.run_sync(src.read_bytes)
            return await self.put(key, data, mode=mode)
        return await self._put_multipart(key, src, size, mode)

    def _part_size_for(self, size: int) -> int:
        part = self.part_size or DEFAULT_PART_SIZE
        if math.ceil(size / part) > MAX_PARTS:
            part = math.ceil(size / MAX_PARTS / MiB) * MiB
        return part

    async def _put_multipart(self, key: str, src: Path, size: int, mode: PutMode) -> FileInfo:
        full = self._full(key)
        client = await self._client()
        part_size = self._part_size_for(size)
        count = math.ceil(size / part_size)
        in_flight = max(
            1, min(MAX_PARTS_IN_FLIGHT, self.concurrency, count, MAX_BUFFERED_BYTES // part_size)
        )
        created = await self._call(client, "create_multipart_upload", key, Key=full)
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = [{} for _ in range(count)]
        digests: list[bytes] = [b""] * count
        fd = await anyio.to_thread.run_sync(os.open, src, os.O_RDONLY)
        try:
            pending = iter(range(count))

            def shrank() -> Exception:
                return S3BackendError(f"{src} shrank while it was being uploaded")

            def read_part(index: int) -> tuple[bytes, bytes]:
                offset = index * part_size
                body = pread_exact(fd, min(part_size, size - offset), offset, shrank)
                return body, _md5(body)

            async def worker() -> None:
                for index in pending:
                    body, digests[index] = await anyio.to_thread.run_sync(read_part, index)
                    response = await self._call(
                        client,
                        "upload_part",
                        key,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=index + 1,
                        Body=body,
                    )
                    entry = {"PartNumber": index + 1, "ETag": response["ETag"]}
                    entry.update({f: response[f] for f in _CHECKSUM_FIELDS if response.get(f)})
                    parts[index] = entry

            await run_all([worker] * in_flight)

            params: dict[str, Any] = {
                "Key": full,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if mode == "create":
                params["IfNoneMatch"] = "*"
            ambiguous = False

            def note(exc: BaseException, failures: int) -> None:
                nonlocal ambiguous
                ambiguous = ambiguous or _may_have_landed(exc)

            try:
                response = await self._call(
                    client, "complete_multipart_upload", key, on_retry=note, **params
                )
            except (PreconditionFailed, ObjectNotFound):
                # ObjectNotFound here is NoSuchUpload: a retried complete whose
                # first attempt had already completed the upload
                if ambiguous:
                    landed = await self._landed(client, key, _multipart_etag(digests))
                    if landed is not None:
                        return landed
                raise
        except BaseException:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(10),
                contextlib.suppress(Exception),
            ):
                await self._call(
                    client, "abort_multipart_upload", key, Key=full, UploadId=upload_id
                )
            raise
        finally:
            os.close(fd)
        return FileInfo(
            key=key,
            size=size,
            etag=_strip_etag(str(response.get("ETag", ""))),
            mtime=_response_mtime(response),
        )

    async def delete(self, keys: Sequence[str]) -> None:
        full_keys = [self._full(key) for key in keys]
        if not full_keys:
            return
        client = await self._client()
        if len(full_keys) == 1:
            await self._call(client, "delete_object", keys[0], Key=full_keys[0])
            return
        unique = sorted(set(full_keys))
        batches = [unique[i : i + DELETE_BATCH] for i in range(0, len(unique), DELETE_BATCH)]
        failures: list[str] = []

        async def delete_batch(batch: Sequence[str]) -> None:
            response = await self._call(
                client,
                "delete_objects",
                None,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            for error in response.get("Errors", []):
                if error.get("Code") != "NoSuchKey":
                    failures.append(
                        f"{error.get('Key')}: {error.get('Code')} {error.get('Message')}"
                    )

        await run_all([functools.partial(delete_batch, batch) for batch in batches])
        if failures:
            raise S3BackendError(
                f"S3 could not delete {len(failures)} key(s) in bucket {self.bucket!r}: "
                + "; ".join(failures[:5])
            )

    # -- listing ------------------------------------------------------------------------

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        async for entry in self._list(prefix, delimiter, folders=True):
            yield entry

    async def list_children(self, prefix: str) -> Sequence[str]:
        """Keys directly under ``prefix``: one delimited listing, folders skipped
        (so no folder is probed on stores that need it)."""
        return [
            entry.key
            async for entry in self._list(prefix, "/", folders=False)
            if isinstance(entry, FileInfo)
        ]

    async def _list(
        self, prefix: str, delimiter: str | None, *, folders: bool
    ) -> AsyncIterator[FileInfo | str]:
        check_prefix(prefix, "S3Backend")
        client = await self._client()
        verify = bool(self.loop_state().get("verify_folders"))
        root = self._root
        params: dict[str, Any] = {"Prefix": root + prefix}
        if delimiter is not None:
            params["Delimiter"] = delimiter
        while True:
            page = await self._call(client, "list_objects_v2", prefix or "/", **params)
            entries: dict[str, FileInfo | str] = {}
            if folders:
                found: Sequence[str] = [
                    str(common["Prefix"])[len(root) :]
                    for common in page.get("CommonPrefixes") or ()
                ]
                found = [folder for folder in found if folder and folder != prefix]
                if verify and found:
                    found = await self._non_empty(client, found)
                for folder in found:
                    entries[folder] = folder
            for obj in page.get("Contents") or ():
                name = str(obj["Key"])[len(root) :]
                if not name or name.endswith("/"):
                    continue  # "folder marker" objects made by consoles are not keys
                entries[name] = FileInfo(
                    key=name,
                    size=int(obj.get("Size", 0)),
                    etag=_strip_etag(str(obj.get("ETag", ""))),
                    mtime=_response_mtime(obj),
                )
            for name in sorted(entries):
                yield entries[name]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    async def _non_empty(self, client: Any, folders: Sequence[str]) -> Sequence[str]:
        """The folders that still hold at least one key (one tiny listing each)."""
        keep = [False] * len(folders)

        async def probe(index: int) -> None:
            page = await self._call(
                client,
                "list_objects_v2",
                folders[index],
                Prefix=self._root + folders[index],
                MaxKeys=1,
            )
            keep[index] = bool(page.get("Contents"))

        await run_all([functools.partial(probe, index) for index in range(len(folders))])
        return [folder for folder, kept in zip(folders, keep, strict=True) if kept]


def _endpoint_url(endpoint: str | None, secure: bool) -> str | None:
    if endpoint is None:
        return None
    endpoint = endpoint.strip().rstrip("/")
    if not endpoint:
        raise ValueError("endpoint must not be empty")
    if "://" in endpoint:
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be http(s)://host:port or host:port, got {endpoint!r}")
        return endpoint
    return f"{'https' if secure else 'http'}://{endpoint}"
