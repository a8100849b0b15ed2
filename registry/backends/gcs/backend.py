"""Google Cloud Storage backend on gcloud-aio-storage: GCS itself, or fake-gcs-server.

The commit point is a conditional upload: ``mode="create"`` sends
``ifGenerationMatch=0`` and ``if_match`` sends ``ifGenerationMatch=<generation>``;
a lost condition (HTTP 412) raises ``PreconditionFailed``. ``FileInfo.etag`` is
the object's generation as a decimal string.

Every conditional write is a *multipart* upload (``uploadType=multipart``: one
request carrying the object resource and the bytes). That is what gcloud-aio
sends for ``upload(..., metadata={...}, force_resumable_upload=False)``, and it
is the one upload type on which fake-gcs-server (1.54) honours
``ifGenerationMatch``: it silently ignores the condition on simple media and
resumable uploads (measured: every racer "won"). Real GCS honours all three.
So small values, and conditional creates of files of any size, go up as one
multipart request (a large file's body is streamed from disk, never held in
memory); unconditional uploads of files above ``chunk_size`` use the resumable
protocol, by default as one PUT streamed from the file (``upload_chunk=`` sends
chunks of that size, a multiple of 256 KiB, for links that drop long requests). After a transient failure the upload asks the session how much it
holds and goes on from there; fake-gcs-server answers that status query by
committing the bytes it has, so a session that comes back short is abandoned
and the file sent again in a new one.

Downloads into files are ranged GETs (``chunk_size`` each, a few in flight,
written at their offsets): memory is bounded by the ranges in flight (~1 MiB
each), whatever the object's size. Every range is checked against the generation of the first one
(``X-Goog-Generation``); an object overwritten mid-download restarts the
download instead of mixing two versions.

Runtime state lives in ``loop_state()``: one gcloud-aio ``Storage`` client and
one aiohttp session per event loop, whose connection pool is sized to the
backend's concurrency, created on first use and closed by ``aclose()``. The
first use also lists at most one name in the bucket, so a missing bucket, bad
credentials or an unreachable endpoint fail at once with a clear
:class:`GCSBackendError` subclass. Every request holds the backend's limiter
and is retried by :func:`registry.backends.retry.retry_call` on 408/429/5xx and
connection failures, never on 404/412.

Credentials: gcloud-aio's ``Token`` reads the key (or the default credentials)
and signs the grant, but the backend asks it for one token at a time through
its single-attempt ``refresh`` and sends the ``Authorization`` header itself,
on gcloud-aio's calls and its own alike. gcloud-aio's ``Token.get`` would retry
any failure five times with up to a minute between attempts; here a rejected
key is reported at once and a dead token endpoint within the retry policy's
bounds. A key file that is not JSON is an error (gcloud-aio would quietly fall
back to the GCE metadata server).

The endpoint: ``endpoint=`` if given, else ``STORAGE_EMULATOR_HOST`` as
gcloud-aio reads it (``host:port`` gets ``http://``), read when the backend is
constructed, else Google's API. Talking to an emulator is anonymous (no token,
as in gcloud-aio); ``anonymous=`` overrides that. Nothing of gcloud or aiohttp
is imported until the first request.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
    "GCPRegistryBackend",
    "GCSAccessDenied",
    "GCSBackend",
    "GCSBackendError",
    "GCSBucketNotFound",
    "GCSEndpointUnreachable",
    "GCSRegistryBackend",
]

KiB = 1024
MiB = 1024 * KiB
CHUNK_QUANTUM = 256 * KiB  # resumable chunks must be multiples of this
DEFAULT_CHUNK_SIZE = 8 * MiB
MAX_RANGES_IN_FLIGHT = 8
LIST_PAGE_SIZE = 1000
GOOGLE_API_ROOT = "https://www.googleapis.com"  # gcloud-aio's default
_READ_CHUNK = 1 * MiB
_WRITE_BUFFER = 1 * MiB  # per range in flight: what get_file holds in memory
_CONTENT_TYPE = "application/octet-stream"
# Non-empty metadata makes gcloud-aio send a multipart upload (see the module
# docstring); gcloud-aio turns "Content-Type" into the resource's contentType.
_COMMIT_METADATA = {"Content-Type": _CONTENT_TYPE}
_LIST_FIELDS = "items(name,size,generation,updated),prefixes,nextPageToken"
_NAMES_FIELDS = "items(name),nextPageToken"
_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
_ADMIN_SCOPES = ["https://www.googleapis.com/auth/devstorage.full_control"]  # create_bucket
_INSTALL_HINT = "pip install 'versioned-registry[gcs]'"


class GCSBackendError(BackendError):
    """The GCS backend failed for a reason other than not-found or a lost condition."""


class GCSBucketNotFound(GCSBackendError):
    """The configured bucket does not exist (and ``create_bucket`` was not set)."""


class GCSAccessDenied(GCSBackendError):
    """Bad, missing or unusable credentials, or no permission on the bucket."""


class GCSEndpointUnreachable(GCSBackendError):
    """The storage endpoint did not answer (connection refused, DNS, timeouts)."""


# -- lazy imports and error classification ------------------------------------------


def _aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the GCS backend needs gcloud-aio-storage: {_INSTALL_HINT}") from exc
    return aiohttp


def _storage_class() -> Any:
    try:
        from gcloud.aio.storage import Storage
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the GCS backend needs gcloud-aio-storage: {_INSTALL_HINT}") from exc
    return Storage


def _token_class() -> Any:
    from gcloud.aio.auth import Token

    return Token


def _status(exc: BaseException) -> int | None:
    """The HTTP status of an error response (aiohttp's ClientResponseError), else None."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        return int(exc.status)
    return None


def _is_connection_error(exc: BaseException) -> bool:
    """Could not reach the endpoint at all (nothing was sent)."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return False
    if isinstance(exc, aiohttp.ClientSSLError):
        return False
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ClientConnectorError)
    return isinstance(exc, aiohttp.ClientConnectorError | connect_timeout)


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: 408, 429, 5xx, connection trouble, timeouts."""
    if isinstance(exc, BackendError | Signal):
        return False
    status = _status(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientSSLError):
        return False
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    if aiohttp is not None:
        transient += (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    return isinstance(exc, transient)


def _may_have_landed(exc: BaseException) -> bool:
    """After this failure, the write may have been applied on the server."""
    return not _is_connection_error(exc)


def _error_message(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)


def _is_bucket_missing(exc: BaseException) -> bool:
    message = _error_message(exc).lower()
    return "bucket" in message and ("does not exist" in message or "not found" in message)


# -- small helpers ---------------------------------------------------------------------


def _parse_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "gs" or not parts.netloc:
        raise ValueError(f"expected a gs://bucket/prefix URI, got {uri!r}")
    return parts.netloc, parts.path.strip("/")


def _normalize_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    if not endpoint:
        raise ValueError("endpoint must not be empty")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # what gcloud-aio does with STORAGE_EMULATOR_HOST
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"endpoint must be http(s)://host:port or host:port, got {endpoint!r}")
    return endpoint


def _parse_time(value: Any) -> float:
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).timestamp()
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(value).timestamp()
    return time.time()


def _is_generation(token: str) -> bool:
    return token.isascii() and token.isdigit() and int(token) > 0


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _file_md5_b64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


async def _file_body(fd: int, src: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    """Bytes [offset, offset+length) of an open file, read piece by piece in a
    worker thread: a request body that never holds more than one piece."""

    def shrank() -> Exception:
        return GCSBackendError(f"{src} shrank while it was being uploaded")

    end = offset + length
    while offset < end:
        piece = min(_READ_CHUNK, end - offset)
        yield await anyio.to_thread.run_sync(pread_exact, fd, piece, offset, shrank)
        offset += piece


def _pwrite_buffers(fd: int, buffers: Sequence[bytes], offset: int) -> None:
    """Write ``buffers`` back to back at ``offset`` without joining them."""
    if hasattr(os, "pwritev"):
        views = [memoryview(b) for b in buffers if b]
        while views:
            written = os.pwritev(fd, views, offset)
            offset += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        return
    for chunk in buffers:  # pragma: no cover - platforms without pwritev
        pwrite_all(fd, chunk, offset)
        offset += len(chunk)


def _persisted_end(range_header: str | None) -> int:
    """Bytes the server holds after a 308 ("bytes=0-N" -> N + 1; no header -> 0)."""
    if not range_header or "-" not in range_header:
        return 0
    last = range_header.rsplit("-", 1)[1].strip()
    return int(last) + 1 if last.isdigit() else 0


def _read_credentials(path: str) -> dict[str, Any]:
    """The parsed credentials file, or a clear error (gcloud-aio would fall back to
    the GCE metadata server on a file it cannot parse)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise GCSAccessDenied(f"cannot read the GCS credentials file {path!r}: {exc}") from exc
    except ValueError as exc:
        raise GCSAccessDenied(
            f"the GCS credentials file {path!r} is not valid JSON: {exc}"
        ) from exc
    if not isinstance(data, dict) or not data.get("type"):
        raise GCSAccessDenied(
            f"the GCS credentials file {path!r} has no 'type' (expected a service account "
            "or authorized-user JSON key)"
        )
    return data


class _SessionLost(Signal):
    """A resumable upload session is gone (expired, or finalized short by an
    emulator that answers a status query by committing what it has)."""


class _Anonymous:
    """The token handed to gcloud-aio, which never asks for one (explicit api_root);
    also the backend's own token source when talking to an emulator."""

    async def get(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class _TokenSource:
    """Access tokens for the Storage client, fetched with the backend's retry policy.

    gcloud-aio's ``Token.get`` retries any failure five times with up to a
    minute between attempts; this calls its single-attempt ``refresh`` instead,
    so a rejected key is reported at once and a dead token endpoint within the
    backend's bounds.
    """

    def __init__(self, backend: GCSBackend, token: Any, source: str) -> None:
        self._backend = backend
        self._token = token
        self._source = source
        self._value: str | None = None
        self._expires = 0.0
        self._lock = anyio.Lock()

    async def get(self) -> str | None:
        if self._value is not None and time.monotonic() < self._expires:
            return self._value
        async with self._lock:
            if self._value is not None and time.monotonic() < self._expires:
                return self._value
            timeout = max(1, int(self._backend.connect_timeout + self._backend.read_timeout))

            async def attempt() -> Any:
                return await self._token.refresh(timeout=timeout)

            try:
                response = await retry_call(
                    attempt, classify=_is_transient, policy=self._backend.retry_policy
                )
            except Exception as exc:
                raise GCSAccessDenied(
                    f"could not get a GCS access token from {self._source} "
                    f"({getattr(self._token, 'token_uri', '?')}): {exc!r}"
                ) from exc
            value = getattr(response, "value", None)
            if not value:
                raise GCSAccessDenied(f"{self._source} returned no access token")
            lifetime = float(getattr(response, "expires_in", 0) or 3600)
            self._value = str(value)
            self._expires = time.monotonic() + max(30.0, lifetime * 0.8)
            return self._value

    async def close(self) -> None:
        return None


class GCSBackend(Backend):
    """Keys stored as objects in a GCS bucket under ``prefix``.

    ``uri="gs://bucket/prefix"`` or ``bucket_name=`` (+ ``prefix=``); when both
    are given they must agree. ``credentials_path`` is a service-account (or
    authorized-user) JSON key; without it the usual default credentials apply
    (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default file, the
    GCE metadata server). ``project_id`` is needed only to create the bucket
    (``create_bucket=True``) on real GCS.

    ``chunk_size`` (a multiple of 256 KiB) is the resumable upload's chunk, the
    size above which ``put_file`` streams (resumable, or a streamed multipart
    upload for ``mode="create"``) and the range size of ``get_file``.
    ``connect_timeout`` bounds each connection attempt, ``read_timeout`` each
    wait for data; ``max_attempts`` counts tries of one request (1 = no retry).
    """

    is_remote = True

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
        super().__init__(concurrency=concurrency)
        bucket = bucket_name
        if uri is not None:
            uri_bucket, uri_prefix = _parse_uri(uri)
            if bucket_name is not None and bucket_name != uri_bucket:
                raise ValueError(
                    f"bucket_name={bucket_name!r} contradicts uri={uri!r} "
                    f"(whose bucket is {uri_bucket!r}); pass one, or make them agree"
                )
            if prefix.strip("/") and uri_prefix and prefix.strip("/") != uri_prefix:
                raise ValueError(f"prefix={prefix!r} contradicts uri={uri!r}")
            bucket = uri_bucket
            prefix = uri_prefix or prefix
        if not bucket or "/" in bucket:
            raise ValueError(
                "GCSBackend needs a bucket: uri='gs://bucket/prefix' or bucket_name=, "
                f"got {bucket!r}"
            )
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        if chunk_size < CHUNK_QUANTUM or chunk_size % CHUNK_QUANTUM:
            raise ValueError(f"chunk_size must be a positive multiple of 256 KiB, got {chunk_size}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be > 0")

        emulator = endpoint if endpoint is not None else os.environ.get("STORAGE_EMULATOR_HOST")
        self.bucket = bucket
        self.prefix = prefix
        self.project_id = project_id
        self.credentials_path = os.fspath(credentials_path) if credentials_path else None
        self.create_bucket = create_bucket
        self.endpoint: str | None = _normalize_endpoint(emulator) if emulator else None
        self.anonymous = (self.endpoint is not None) if anonymous is None else anonymous
        self.api_root = self.endpoint or GOOGLE_API_ROOT
        self.chunk_size = chunk_size
        if upload_chunk is not None and (
            upload_chunk < CHUNK_QUANTUM or upload_chunk % CHUNK_QUANTUM
        ):
            raise ValueError(
                f"upload_chunk must be a positive multiple of 256 KiB, got {upload_chunk}"
            )
        self.upload_chunk = upload_chunk
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts,
            # never spend more than a few connect timeouts on one request
            deadline=max(10.0, 3 * connect_timeout) + read_timeout,
        )
        self.uri = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
        self._root = f"{prefix}/" if prefix else ""

    @property
    def identity(self) -> str:
        # An emulator's bucket is not the GCS bucket of the same name.
        return f"{self.uri}@{self.endpoint}" if self.endpoint else self.uri

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"GCSBackend(uri={self.uri!r}{where})"

    @property
    def _where(self) -> str:
        return self.endpoint or "Google Cloud Storage"

    # -- client lifecycle ---------------------------------------------------------------

    async def _client(self) -> Any:
        """The Storage client of the running loop, created (and the bucket checked)
        on first use."""
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
            session: Any = None
            try:
                aiohttp = _aiohttp()
                storage_cls = _storage_class()
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.concurrency),
                    timeout=self._timeout(),
                )
                state["token"] = self._new_token(session)
                # gcloud-aio never fetches tokens itself: with an explicit api_root
                # it sends no Authorization header, and every call here passes the
                # backend's own (see _auth_headers)
                storage = storage_cls(session=session, token=_Anonymous(), api_root=self.api_root)
                await self._check_bucket(storage)
            except BaseException as exc:
                state.pop("token", None)
                if session is not None:
                    with anyio.CancelScope(shield=True):
                        await session.close()
                if isinstance(exc, Exception):
                    state["client_failure"] = (time.monotonic(), exc)
                raise
            state["session"] = session
            state["client"] = storage
            return storage

    def _new_token(self, session: Any) -> Any:
        if self.anonymous:
            return _Anonymous()
        path = self.credentials_path or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            _read_credentials(path)
            source = f"the credentials file {path!r}"
        else:
            source = "the default credentials (gcloud's application-default file or GCE metadata)"
        try:
            scopes = _ADMIN_SCOPES if self.create_bucket else _SCOPES
            token = _token_class()(service_file=path, session=session, scopes=scopes)
        except Exception as exc:
            raise GCSAccessDenied(f"unusable GCS credentials in {source}: {exc!r}") from exc
        return _TokenSource(self, token, source)

    def _timeout(self) -> Any:
        """Per-request timeouts: connect and each read are bounded, a whole
        transfer is not (a large object takes as long as it takes)."""
        return _aiohttp().ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
        )

    async def _auth_headers(self) -> dict[str, str]:
        token = self.loop_state().get("token")
        value = await token.get() if token is not None else None
        return {"Authorization": f"Bearer {value}"} if value else {}

    async def _check_bucket(self, storage: Any) -> None:
        """One cheap request proving bucket, credentials and endpoint (a listing of
        at most one name: ``storage.objects.list`` is in every object role, while
        reading the bucket's metadata needs ``storage.buckets.get``, which
        least-privilege accounts often lack); creates the bucket when asked to."""
        try:
            await self._probe(storage)
            return
        except GCSBucketNotFound:
            if not self.create_bucket:
                raise
        await self._create_bucket(storage)

    async def _probe(self, storage: Any) -> None:
        params = {"prefix": self._root, "maxResults": "1", "fields": "nextPageToken"}
        await self._call(storage.list_objects, "list", None, self.bucket, params=params)

    async def _create_bucket(self, storage: Any) -> None:
        project = self.project_id or os.environ.get("GOOGLE_CLOUD_PROJECT")
        if not project and self.anonymous:
            project = "registry"  # emulators take any project
        if not project:
            raise GCSBackendError(
                f"create_bucket=True needs project_id= to create gs://{self.bucket}"
            )
        body = json.dumps({"name": self.bucket})

        async def attempt() -> None:
            headers = {"Content-Type": "application/json; charset=UTF-8"}
            headers.update(await self._auth_headers())
            async with self.limiter:
                response = await storage.session.request(
                    "POST",
                    f"{self.api_root}/storage/v1/b",
                    headers,
                    params={"project": project},
                    data=body,
                    timeout=self._timeout(),
                )
                response.release()

        try:
            await self._retrying(attempt, "create bucket", None)
        except GCSBackendError as exc:
            cause = exc.__cause__
            if cause is None or _status(cause) != 409:  # 409: it exists already
                raise
        await self._probe(storage)  # confirm, as a plain first use does

    async def aclose(self) -> None:
        """Close the client (and its aiohttp session) of this backend.

        A client belongs to the loop that made it. Called from another loop,
        ``aclose`` hands the close to that loop if it still runs (without
        waiting), and otherwise just forgets the client.
        """
        import asyncio

        session = self._runtime.pop("session", None)
        self._runtime.pop("client", None)
        self._runtime.pop("token", None)
        if session is None:
            return
        owner_ref = self._runtime.get("loop")
        owner = owner_ref() if owner_ref is not None else None
        if owner is asyncio.get_running_loop():
            with anyio.CancelScope(shield=True):
                await session.close()
        elif owner is not None and owner.is_running() and not owner.is_closed():
            asyncio.run_coroutine_threadsafe(session.close(), owner)

    # -- requests -----------------------------------------------------------------------

    async def _call(
        self,
        method: Callable[..., Awaitable[Any]],
        operation: str,
        key: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """One gcloud-aio call under the limiter, retried when transient, errors
        translated."""

        async def attempt() -> Any:
            headers = await self._auth_headers()
            async with self.limiter:
                return await method(*args, headers=headers, timeout=self._timeout(), **kwargs)

        return await self._retrying(attempt, operation, key)

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[Any]],
        operation: str,
        key: str | None,
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
        conditional: bool = False,
    ) -> Any:
        try:
            return await retry_call(
                attempt, classify=_is_transient, policy=self.retry_policy, on_retry=on_retry
            )
        except (BackendError, ValueError, Signal):
            raise
        except Exception as exc:
            raise self._translate(exc, operation, key, conditional) from exc

    def _translate(
        self, exc: Exception, operation: str, key: str | None, conditional: bool = False
    ) -> BackendError:
        what = f"{operation} of {key!r}" if key is not None else operation
        where = f"bucket {self.bucket!r} at {self._where}"
        status = _status(exc)
        if status is not None:
            if status == 412:
                return PreconditionFailed(f"{key}: precondition failed ({operation})")
            if status == 404:
                if key is None or _is_bucket_missing(exc):
                    return GCSBucketNotFound(
                        f"GCS bucket {self.bucket!r} does not exist at {self._where}; "
                        "create it or pass create_bucket=True"
                    )
                if conditional:
                    return PreconditionFailed(f"{key}: no such object to compare-and-swap")
                return ObjectNotFound(key)
            if status in (401, 403):
                return GCSAccessDenied(
                    f"GCS denied {what} on {where} (HTTP {status}): check credentials_path "
                    f"(or the default credentials) and the bucket's permissions: "
                    f"{_error_message(exc)[:300]}"
                )
            return GCSBackendError(
                f"GCS {what} on {where} failed (HTTP {status}): {_error_message(exc)[:500]}"
            )
        if _is_connection_error(exc):
            return GCSEndpointUnreachable(
                f"cannot reach the GCS endpoint {self._where} (bucket {self.bucket!r}) for "
                f"{what} after {self.retry_policy.max_attempts} attempts: {exc!r}"
            )
        if _is_transient(exc):
            return GCSBackendError(
                f"GCS {what} on {where} kept failing (connection lost or timed out) "
                f"after {self.retry_policy.max_attempts} attempts: {exc!r}"
            )
        return GCSBackendError(f"GCS {what} on {where} failed: {exc!r}")

    def _full(self, key: str) -> str:
        check_key(key)
        return self._root + key

    def _info(self, key: str, resource: Mapping[str, Any], size: int | None = None) -> FileInfo:
        return FileInfo(
            key=key,
            size=int(resource.get("size", 0)) if size is None else size,
            etag=str(resource.get("generation", "")),
            mtime=_parse_time(resource.get("updated")),
        )

    def _object_url(self, name: str, *, upload: bool = False) -> str:
        bucket = quote(self.bucket, safe="")
        if upload:
            return f"{self.api_root}/upload/storage/v1/b/{bucket}/o"
        return f"{self.api_root}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        name = self._full(key)
        storage = await self._client()
        data: bytes = await self._call(storage.download, "download", key, self.bucket, name)
        return data

    async def _stat(self, key: str) -> dict[str, Any] | None:
        name = self._full(key)
        storage = await self._client()
        try:
            resource: dict[str, Any] = await self._call(
                storage.download_metadata, "get metadata", key, self.bucket, name
            )
        except ObjectNotFound:
            return None
        return resource

    async def head(self, key: str) -> FileInfo | None:
        resource = await self._stat(key)
        return None if resource is None else self._info(key, resource)

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        name = self._full(key)
        storage = await self._client()

        def gave_up() -> Exception:
            return GCSBackendError(f"{key} kept changing while it was being downloaded")

        return await download_to_file(
            Path(dest), lambda fd: self._download(storage, key, name, fd), gave_up
        )

    async def _download(self, storage: Any, key: str, name: str, fd: int) -> FileInfo:
        span = self.chunk_size
        try:
            headers, received = await self._get_range(storage, key, name, fd, 0, span, None)
        except EmptyObject:
            headers, received = await self._get_range(storage, key, name, fd, 0, None, None)
        total = total_from_content_range(headers.get("Content-Range"), received)
        generation = headers.get("X-Goog-Generation")
        if generation:
            info = FileInfo(
                key=key,
                size=total,
                etag=generation,
                mtime=_parse_time(headers.get("Last-Modified")),
            )
        else:  # a server that does not say: ask (and do not pin the ranges)
            stat = await self._stat(key)
            if stat is None:
                raise ObjectNotFound(key)
            info = self._info(key, stat, size=total)

        async def get_range(start: int, length: int) -> int:
            return (await self._get_range(storage, key, name, fd, start, length, generation))[1]

        def short_read(start: int, got: int, length: int) -> Exception:
            return GCSBackendError(f"{key}: short ranged read at {start} ({got} of {length})")

        in_flight = min(MAX_RANGES_IN_FLIGHT, self.concurrency)
        await fetch_remaining(total, received, span, in_flight, get_range, short_read)
        return info

    async def _get_range(
        self,
        storage: Any,
        key: str,
        name: str,
        fd: int,
        start: int,
        length: int | None,
        generation: str | None,
    ) -> tuple[Mapping[str, str], int]:
        """GET bytes [start, start+length) (or everything) into ``fd`` at their offset."""

        async def attempt() -> tuple[Mapping[str, str], int]:
            headers = await self._auth_headers()
            if length is not None:
                headers["Range"] = f"bytes={start}-{start + length - 1}"
            async with self.limiter:
                try:
                    stream = await storage.download_stream(
                        self.bucket, name, headers=headers, timeout=self._timeout()
                    )
                except Exception as exc:
                    status = _status(exc)
                    if start > 0 and status in (404, 416):
                        raise ChangedWhileReading from exc  # replaced (shorter) or deleted
                    if status == 416:
                        raise EmptyObject from exc
                    raise
                async with stream as response:
                    got = response.headers.get("X-Goog-Generation")
                    if generation is not None and got and got != generation:
                        raise ChangedWhileReading
                    offset = start
                    buffer: list[bytes] = []
                    buffered = 0
                    async for chunk in response.content.iter_chunked(_READ_CHUNK):
                        buffer.append(chunk)
                        buffered += len(chunk)
                        if buffered >= _WRITE_BUFFER:
                            await anyio.to_thread.run_sync(_pwrite_buffers, fd, buffer, offset)
                            offset += buffered
                            buffer, buffered = [], 0
                    if buffered:
                        await anyio.to_thread.run_sync(_pwrite_buffers, fd, buffer, offset)
                        offset += buffered
                    return response.headers, offset - start

        result: tuple[Mapping[str, str], int] = await self._retrying(attempt, "download", key)
        return result

    # -- writes -------------------------------------------------------------------------

    def _conditions(self, key: str, mode: PutMode, if_match: str | None) -> dict[str, str]:
        if if_match is not None:
            if not _is_generation(if_match):
                # not a generation this store ever handed out: cannot match
                raise PreconditionFailed(f"{key}: {if_match!r} is not a generation of {self.uri}")
            return {"ifGenerationMatch": if_match}
        if mode == "create":
            return {"ifGenerationMatch": "0"}
        if mode != "overwrite":
            raise ValueError(f"mode must be 'overwrite' or 'create', got {mode!r}")
        return {}

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        name = self._full(key)
        conditions = self._conditions(key, mode, if_match)
        storage = await self._client()

        async def attempt() -> Any:
            headers = await self._auth_headers()
            async with self.limiter:
                return await storage.upload(
                    self.bucket,
                    name,
                    data,
                    content_type=_CONTENT_TYPE,
                    parameters=dict(conditions),
                    headers=headers,
                    metadata=dict(_COMMIT_METADATA),
                    force_resumable_upload=False,
                    timeout=self._timeout(),
                )

        resource = await self._conditional_write(
            key, attempt, conditions, lambda: anyio.to_thread.run_sync(_md5_b64, data)
        )
        return self._info(key, resource, size=len(data))

    async def _conditional_write(
        self,
        key: str,
        attempt: Callable[[], Awaitable[Any]],
        conditions: Mapping[str, str],
        md5: Callable[[], Awaitable[str]],
    ) -> dict[str, Any]:
        """Run an upload; when a retry of a conditional write loses its condition
        after an attempt whose outcome is unknown, report success if the stored
        object is ours (same MD5)."""
        ambiguous = False

        def note(exc: BaseException, failures: int) -> None:
            nonlocal ambiguous
            ambiguous = ambiguous or _may_have_landed(exc)

        try:
            resource: dict[str, Any] = await self._retrying(
                attempt, "upload", key, on_retry=note, conditional=bool(conditions)
            )
        except PreconditionFailed:
            if ambiguous:
                stat = await self._stat(key)
                if stat is not None and stat.get("md5Hash") == await md5():
                    return stat
            raise
        return resource

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        name = self._full(key)
        conditions = self._conditions(key, mode, None)
        src = Path(src)
        size = (await anyio.to_thread.run_sync(os.stat, src)).st_size
        if size <= self.chunk_size:
            data = await anyio.to_thread.run_sync(src.read_bytes)
            return await self.put(key, data, mode=mode)
        storage = await self._client()
        if conditions:
            resource = await self._put_streamed_multipart(storage, key, name, src, size, conditions)
        else:
            resource = await self._put_resumable(storage, key, name, src, size)
        return self._info(key, resource, size=size)

    async def _put_streamed_multipart(
        self,
        storage: Any,
        key: str,
        name: str,
        src: Path,
        size: int,
        conditions: Mapping[str, str],
    ) -> dict[str, Any]:
        """One multipart upload whose body streams from the file (bounded memory):
        the conditional upload every server honours (see the module docstring)."""
        boundary = os.urandom(16).hex()
        resource = json.dumps({"name": name, "contentType": _CONTENT_TYPE}).encode()
        head = (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
            + resource
            + f"\r\n--{boundary}\r\nContent-Type: {_CONTENT_TYPE}\r\n\r\n".encode()
        )
        tail = f"\r\n--{boundary}--\r\n".encode()
        url = self._object_url(name, upload=True)
        params = {"uploadType": "multipart", **conditions}

        async def attempt() -> Any:
            fd = await anyio.to_thread.run_sync(os.open, src, os.O_RDONLY)
            try:

                async def body() -> AsyncIterator[bytes]:
                    yield head
                    async for piece in _file_body(fd, src, 0, size):
                        yield piece
                    yield tail

                headers = {
                    "Content-Type": f"multipart/related; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                    "Accept": "application/json",
                }
                headers.update(await self._auth_headers())
                async with self.limiter:
                    response = await storage.session.request(
                        "POST",
                        url,
                        headers,
                        params=params,
                        data=body(),
                        timeout=self._timeout(),
                    )
                    return await response.json(content_type=None)
            finally:
                os.close(fd)

        return await self._conditional_write(
            key, attempt, conditions, lambda: anyio.to_thread.run_sync(_file_md5_b64, src)
        )

    async def _put_resumable(
        self, storage: Any, key: str, name: str, src: Path, size: int
    ) -> dict[str, Any]:
        """Unconditional chunked resumable upload; a new session if one is lost."""
        fd = await anyio.to_thread.run_sync(os.open, src, os.O_RDONLY)
        try:
            for session_attempt in range(1, self.retry_policy.max_attempts + 1):
                session_uri = await self._start_resumable(storage, key, name, size)
                try:
                    return await self._send_chunks(storage, key, session_uri, fd, src, size)
                except _SessionLost as lost:
                    if session_attempt == self.retry_policy.max_attempts:
                        raise GCSBackendError(
                            f"resumable upload of {key!r} lost its session "
                            f"{session_attempt} times: {lost}"
                        ) from None
                    await anyio.sleep(self.retry_policy.delay(session_attempt))
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            os.close(fd)

    async def _start_resumable(self, storage: Any, key: str, name: str, size: int) -> str:
        body = json.dumps({"name": name, "contentType": _CONTENT_TYPE})

        async def attempt() -> str:
            headers = {
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Type": _CONTENT_TYPE,
                "X-Upload-Content-Length": str(size),
            }
            headers.update(await self._auth_headers())
            async with self.limiter:
                response = await storage.session.request(
                    "POST",
                    self._object_url(name, upload=True),
                    headers,
                    params={"uploadType": "resumable", "name": name},
                    data=body,
                    timeout=self._timeout(),
                )
                location = response.headers.get("Location")
                response.release()
            if not location:
                raise GCSBackendError(f"{key}: the resumable upload got no session URI")
            return str(location)

        result: str = await self._retrying(attempt, "start resumable upload", key)
        return result

    async def _send_chunks(
        self, storage: Any, key: str, session_uri: str, fd: int, src: Path, size: int
    ) -> dict[str, Any]:
        offset = 0
        failures = 0
        while True:
            # By default the whole rest of the file goes in one streamed PUT
            # (bounded memory); after a failure the session's persisted offset
            # says where to resume. Per-chunk round trips cost far more than
            # they save (measured: 8 MiB chunks ran at 19-34% of one PUT).
            length = (
                size - offset
                if self.upload_chunk is None
                else min(self.upload_chunk, size - offset)
            )
            content_range = f"bytes {offset}-{offset + length - 1}/{size}"
            try:
                status, headers, body = await self._session_put(
                    storage, session_uri, content_range, _file_body(fd, src, offset, length), length
                )
            except Exception as exc:
                if not _is_transient(exc):
                    if _status(exc) in (404, 410):
                        raise _SessionLost(repr(exc)) from exc
                    raise self._translate(exc, "resumable upload", key) from exc
                failures += 1
                if failures >= self.retry_policy.max_attempts:
                    raise self._translate(exc, "resumable upload", key) from exc
                await anyio.sleep(self.retry_policy.delay(failures))
                status, headers, body = await self._query_session(storage, key, session_uri, size)
            if status in (200, 201):
                resource = json.loads(body)
                if int(resource.get("size", -1)) != size:
                    # fake-gcs-server answers a status query by committing what it
                    # has: that object is short, so upload it all again
                    raise _SessionLost(
                        f"the server committed {resource.get('size')} of {size} bytes"
                    )
                return dict(resource)
            if status != 308:
                raise GCSBackendError(f"{key}: resumable upload answered HTTP {status}")
            persisted = _persisted_end(headers.get("Range"))
            if not 0 <= persisted <= size:
                raise _SessionLost(f"server reports {persisted} of {size} bytes")
            offset = persisted
            if offset == size:  # all there but not finalized: ask once more
                status, headers, body = await self._query_session(storage, key, session_uri, size)
                if status in (200, 201):
                    return dict(json.loads(body))
                raise _SessionLost(f"all {size} bytes sent but the upload did not complete")

    async def _session_put(
        self,
        storage: Any,
        session_uri: str,
        content_range: str,
        data: AsyncIterator[bytes] | bytes,
        length: int = 0,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Content-Range": content_range, "Content-Length": str(length)}
        headers.update(await self._auth_headers())
        async with self.limiter:
            response = await storage.session.request(
                "PUT",
                session_uri,
                headers,
                data=data,
                allow_redirects=False,  # 308 means "resume incomplete" here
                timeout=self._timeout(),
            )
            body = await response.read()
            return response.status, response.headers, body

    async def _query_session(
        self, storage: Any, key: str, session_uri: str, size: int
    ) -> tuple[int, Mapping[str, str], bytes]:
        """What the server holds of a resumable upload (empty PUT, ``bytes */size``)."""

        async def attempt() -> tuple[int, Mapping[str, str], bytes]:
            try:
                return await self._session_put(storage, session_uri, f"bytes */{size}", b"")
            except Exception as exc:
                if _status(exc) in (404, 410):
                    raise _SessionLost(repr(exc)) from exc
                raise

        result: tuple[int, Mapping[str, str], bytes] = await self._retrying(
            attempt, "resumable upload status", key
        )
        return result

    async def delete(self, keys: Sequence[str]) -> None:
        names = sorted({self._full(key) for key in keys})
        if not names:
            return
        storage = await self._client()
        pending = iter(names)

        async def worker() -> None:
            for name in pending:
                key = name[len(self._root) :]
                with contextlib.suppress(ObjectNotFound):
                    await self._call(storage.delete, "delete", key, self.bucket, name)

        await run_all([worker] * max(1, min(self.concurrency, len(names))))

    # -- listing ------------------------------------------------------------------------

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        async for entry in self._list(prefix, delimiter, folders=True):
            yield entry

    async def list_children(self, prefix: str) -> Sequence[str]:
        """Keys directly under ``prefix``: one delimited listing of names only."""
        return [
            entry.key
            async for entry in self._list(prefix, "/", folders=False)
            if isinstance(entry, FileInfo)
        ]

    async def _list(
        self, prefix: str, delimiter: str | None, *, folders: bool
    ) -> AsyncIterator[FileInfo | str]:
        check_prefix(prefix, "GCSBackend")
        storage = await self._client()
        root = self._root
        params: dict[str, str] = {
            "prefix": root + prefix,
            "maxResults": str(LIST_PAGE_SIZE),
            "fields": _LIST_FIELDS if folders else _NAMES_FIELDS,
        }
        if delimiter is not None:
            params["delimiter"] = delimiter
        seen_folders: set[str] = set()  # fake-gcs repeats every prefix on every page
        while True:
            # (key None: a 404 on a listing can only mean the bucket is gone)
            page: dict[str, Any] = await self._call(
                storage.list_objects, "list", None, self.bucket, params=dict(params)
            )
            entries: dict[str, FileInfo | str] = {}
            if folders:
                for common in page.get("prefixes") or ():
                    folder = str(common)[len(root) :]
                    if folder and folder != prefix and folder not in seen_folders:
                        seen_folders.add(folder)
                        entries[folder] = folder
            for item in page.get("items") or ():
                name = str(item["name"])[len(root) :]
                if not name or name.endswith("/"):
                    continue  # "folder" placeholder objects made by consoles are not keys
                entries[name] = self._info(name, item) if folders else _name_only(name)
            for entry_name in sorted(entries):
                yield entries[entry_name]
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)


def _name_only(key: str) -> FileInfo:
    return FileInfo(key=key, size=-1, etag="", mtime=0.0)


#: The names the registry exports for this backend.
GCPRegistryBackend = GCSBackend
GCSRegistryBackend = GCSBackend
