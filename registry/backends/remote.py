"""What the bucket stores (S3, GCS) share: where the keys live, and one
connection per event loop through which every request goes.

A remote backend is a bucket plus a key prefix, named by a
``<scheme>://bucket/prefix`` uri. Its connection (a :class:`BucketClient`:
client, HTTP pool) is opened on first use on the running loop, under a lock,
and a failed open is reported to every task that waited for it instead of
being repeated by each of them. ``aclose`` closes the connection on the loop
that owns it.
"""

from __future__ import annotations

import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import anyio

from registry.backends.base import DEFAULT_CONCURRENCY, Backend, FileInfo
from registry.backends.calls import request
from registry.backends.retry import policy_for
from registry.backends.transfer import check_key
from registry.exceptions import BackendError

__all__ = ["BucketClient", "RemoteBackend", "endpoint_url", "parse_location"]

T = TypeVar("T")
#: (exception, operation, key or None, conditional write?, the client) -> what to raise
Translate = Callable[[Exception, str, "str | None", bool, "BucketClient"], BackendError]


def parse_location(
    scheme: str, uri: str | None, bucket: str | None, prefix: str, *, bucket_arg: str, owner: str
) -> tuple[str, str]:
    """(bucket, prefix) from a ``scheme://bucket/prefix`` uri and/or the
    ``bucket_arg=`` and ``prefix=`` arguments, which must agree with it."""
    if uri is not None:
        parts = urlsplit(uri)
        if parts.scheme != scheme or not parts.netloc:
            raise ValueError(f"expected a {scheme}://bucket/prefix URI, got {uri!r}")
        uri_bucket, uri_prefix = parts.netloc, parts.path.strip("/")
        if bucket is not None and bucket != uri_bucket:
            raise ValueError(
                f"{bucket_arg}={bucket!r} contradicts uri={uri!r} "
                f"(whose bucket is {uri_bucket!r}); pass one, or make them agree"
            )
        if prefix.strip("/") and uri_prefix and prefix.strip("/") != uri_prefix:
            raise ValueError(f"prefix={prefix!r} contradicts uri={uri!r}")
        bucket = uri_bucket
        prefix = uri_prefix or prefix
    if not bucket or "/" in bucket:
        raise ValueError(
            f"{owner} needs a bucket: uri='{scheme}://bucket/prefix' or {bucket_arg}=, "
            f"got {bucket!r}"
        )
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return bucket, prefix


def endpoint_url(endpoint: str, default_scheme: str) -> str:
    """``http(s)://host:port`` from a full URL or a bare ``host:port``."""
    endpoint = endpoint.strip().rstrip("/")
    if not endpoint:
        raise ValueError("endpoint must not be empty")
    if "://" not in endpoint:
        endpoint = f"{default_scheme}://{endpoint}"
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"endpoint must be http(s)://host:port or host:port, got {endpoint!r}")
    return endpoint


class BucketClient(ABC):
    """One loop's open connection to the bucket of a backend, and how a request
    on it is sent: under the limiter (taken by each attempt), retried when
    ``classify`` says transient, its failure translated by ``translate``,
    logged on ``logger`` (the backend's)."""

    def __init__(
        self,
        backend: RemoteBackend[Any],
        *,
        where: str,
        logger: logging.Logger,
        classify: Callable[[BaseException], bool],
        translate: Translate,
    ) -> None:
        self.bucket = backend.bucket
        self.root = backend._root
        self.where = where  # the endpoint, for messages
        self.policy = backend.retry_policy
        # At most ``concurrency`` requests in flight. An asyncio.Semaphore, not
        # the backend's anyio CapacityLimiter: that one yields to the loop even
        # when a slot is free (measured: 11 us of CPU per uncontended acquire
        # vs 1 us, on every small request). Clients are per loop, so is this.
        import asyncio  # deferred: remote clients already run on asyncio

        self.limiter = asyncio.Semaphore(backend.concurrency)
        self.concurrency = backend.concurrency
        self.logger = logger
        self.is_transient = classify
        self._translate = translate

    def full(self, key: str) -> str:
        """The object name of ``key`` (checked) in the bucket."""
        check_key(key)
        return self.root + key

    def translate(
        self, exc: Exception, operation: str, key: str | None, conditional: bool = False
    ) -> BackendError:
        """The registry exception for a request that failed for good."""
        return self._translate(exc, operation, key, conditional, self)

    @abstractmethod
    async def close(self) -> None:
        """Close the client and its connection pool."""

    async def retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        operation: str,
        key: str | None,
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
        conditional: bool = False,
        size: int | Callable[[T], int] | None = None,
    ) -> T:
        """``attempt`` (which takes the limiter itself) through ``calls.request``."""
        return await request(
            attempt,
            operation=operation,
            key=key,
            policy=self.policy,
            classify=self.is_transient,
            translate=lambda exc: self.translate(exc, operation, key, conditional),
            logger=self.logger,
            on_retry=on_retry,
            size=size,
        )


C = TypeVar("C", bound=BucketClient)


class Listing(Protocol):
    """What a store's ``listing`` module offers (each takes its connection)."""

    def entries(
        self, bucket: Any, prefix: str, delimiter: str | None, *, folders: bool
    ) -> AsyncIterator[FileInfo | str]: ...

    async def delete(self, bucket: Any, keys: Sequence[str]) -> None: ...


class RemoteBackend(Backend, Generic[C]):
    """A bucket store; subclasses open their connection in ``_open`` and name
    their ``listing`` module, to which the calls below hand the connection."""

    is_remote = True
    scheme: str
    listing: ClassVar[Listing]  # the store's listing module

    def __init__(
        self,
        *,
        uri: str | None,
        bucket: str | None,
        bucket_arg: str,
        prefix: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self.bucket, self.prefix = parse_location(
            self.scheme, uri, bucket, prefix, bucket_arg=bucket_arg, owner=type(self).__name__
        )
        self.retry_policy = policy_for(max_attempts, connect_timeout, read_timeout)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.uri = f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._root = f"{self.prefix}/" if self.prefix else ""

    @abstractmethod
    async def _open(self) -> C:
        """A new connection for the running loop, the bucket checked (or created)."""

    async def _connection(self) -> C:
        """The running loop's connection, opened on first use."""
        state = self.loop_state()
        connection: C | None = state.get("connection")
        if connection is not None:
            return connection
        lock: anyio.Lock | None = state.get("connection_lock")
        if lock is None:
            lock = state["connection_lock"] = anyio.Lock()
        arrived = time.monotonic()
        async with lock:
            opened: C | None = state.get("connection")
            if opened is not None:
                return opened
            failed: tuple[float, Exception] | None = state.get("connection_failure")
            if failed is not None and failed[0] >= arrived:
                # the attempt this task waited for just failed: don't make every
                # waiter repeat it (N tasks x the retry bound would be no bound)
                raise failed[1]
            try:
                connection = await self._open()
            except Exception as exc:
                state["connection_failure"] = (time.monotonic(), exc)
                raise
            state["connection"] = connection
            state["abandoned"] = _close_when_abandoned(self, connection)
            return connection

    async def delete(self, keys: Sequence[str]) -> None:
        await self.listing.delete(await self._connection(), keys)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        bucket = await self._connection()
        async for entry in self.listing.entries(bucket, prefix, delimiter, folders=True):
            yield entry

    async def list_children(self, prefix: str) -> Sequence[str]:
        """Keys directly under ``prefix``: one delimited listing of names, with
        sub-folders left out (so none is probed on stores that need it)."""
        entries = self.listing.entries(await self._connection(), prefix, "/", folders=False)
        return [entry.key async for entry in entries if isinstance(entry, FileInfo)]

    def _forget_connection(self) -> Any:
        """Drop the connection from the runtime state; returns it (or None)."""
        abandoned = self._runtime.pop("abandoned", None)
        if abandoned is not None:
            abandoned.detach()  # closed by its owner: nothing left to do at collection
        return self._runtime.pop("connection", None)

    async def aclose(self) -> None:
        """Close the connection (and its HTTP pool) of this backend.

        A connection belongs to the loop that opened it. Called from another
        loop, ``aclose`` hands the close to that loop if it still runs (without
        waiting for it), and otherwise just forgets it. Using the backend from a
        new loop never touches the old connection: ``loop_state`` gives the new
        loop its own.
        """
        import asyncio

        connection: C | None = self._forget_connection()
        if connection is None:
            return
        owner_ref = self._runtime.get("loop")
        owner = owner_ref() if owner_ref is not None else None
        if owner is asyncio.get_running_loop():
            with anyio.CancelScope(shield=True):
                await connection.close()
        elif owner is not None and owner.is_running() and not owner.is_closed():
            asyncio.run_coroutine_threadsafe(connection.close(), owner)


def _close_when_abandoned(backend: object, connection: BucketClient) -> weakref.finalize[Any, Any]:
    """Close ``connection`` on its loop if ``backend`` is garbage collected
    without ``aclose`` (a registry dropped in a notebook or a function):
    otherwise its HTTP session dies unclosed and warns."""
    import asyncio

    loop = weakref.ref(asyncio.get_running_loop())
    finalizer = weakref.finalize(backend, _close_on_loop, connection, loop)
    finalizer.atexit = False  # at exit the loop's owner closes what is still open
    return finalizer


def _close_on_loop(connection: BucketClient, loop_ref: weakref.ref[Any]) -> None:
    import asyncio

    loop: asyncio.AbstractEventLoop | None = loop_ref()
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # collected on the loop's own thread
        task = loop.create_task(connection.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    else:
        asyncio.run_coroutine_threadsafe(connection.close(), loop)


# tasks closing abandoned connections (the loop keeps only weak references)
_closing: set[Any] = set()
