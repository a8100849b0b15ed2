"""GCS failures sorted: worth a retry (408, 429, 5xx, connection trouble) or
not (404, 412, ...), and the registry exception a final failure becomes.

aiohttp is looked up in ``sys.modules`` rather than imported: an error can
only be aiohttp's once the backend has imported it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from registry.backends.transfer import Signal
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed

if TYPE_CHECKING:
    from registry.backends.remote import BucketClient

__all__ = [
    "GCSAccessDenied",
    "GCSBackendError",
    "GCSBucketNotFound",
    "GCSEndpointUnreachable",
    "http_status",
    "is_transient",
    "may_have_landed",
    "translate",
]


class GCSBackendError(BackendError):
    """The GCS backend failed for a reason other than not-found or a lost condition."""


class GCSBucketNotFound(GCSBackendError):
    """The configured bucket does not exist (and ``create_bucket`` was not set)."""


class GCSAccessDenied(GCSBackendError):
    """Bad, missing or unusable credentials, or no permission on the bucket."""


class GCSEndpointUnreachable(GCSBackendError):
    """The storage endpoint did not answer (connection refused, DNS, timeouts)."""


def http_status(exc: BaseException) -> int | None:
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


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: 408, 429, 5xx, connection trouble, timeouts."""
    if isinstance(exc, BackendError | Signal):
        return False
    status = http_status(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientSSLError):
        return False
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    if aiohttp is not None:
        transient += (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    return isinstance(exc, transient)


def may_have_landed(exc: BaseException) -> bool:
    """After this failure, the write may have been applied on the server."""
    return not _is_connection_error(exc)


def _error_message(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)


def _is_bucket_missing(exc: BaseException) -> bool:
    message = _error_message(exc).lower()
    return "bucket" in message and ("does not exist" in message or "not found" in message)


def translate(
    exc: Exception, operation: str, key: str | None, conditional: bool, on: BucketClient
) -> BackendError:
    """The registry exception for a request on ``on`` that failed for good. A
    404 on a conditional write means the object to compare with is gone; on a
    call without a key it can only mean the bucket is."""
    bucket, where, attempts = on.bucket, on.where, on.policy.max_attempts
    what = f"{operation} of {key!r}" if key is not None else operation
    place = f"bucket {bucket!r} at {where}"
    status = http_status(exc)
    if status is not None:
        if status == 412:
            return PreconditionFailed(f"{key}: precondition failed ({operation})")
        if status == 404:
            if key is None or _is_bucket_missing(exc):
                return GCSBucketNotFound(
                    f"GCS bucket {bucket!r} does not exist at {where}; "
                    "create it or pass create_bucket=True"
                )
            if conditional:
                return PreconditionFailed(f"{key}: no such object to compare-and-swap")
            return ObjectNotFound(key)
        if status in (401, 403):
            return GCSAccessDenied(
                f"GCS denied {what} on {place} (HTTP {status}): check credentials_path "
                f"(or the default credentials) and the bucket's permissions: "
                f"{_error_message(exc)[:300]}"
            )
        return GCSBackendError(
            f"GCS {what} on {place} failed (HTTP {status}): {_error_message(exc)[:500]}"
        )
    if _is_connection_error(exc):
        return GCSEndpointUnreachable(
            f"cannot reach the GCS endpoint {where} (bucket {bucket!r}) for "
            f"{what} after {attempts} attempts: {exc!r}"
        )
    if is_transient(exc):
        return GCSBackendError(
            f"GCS {what} on {place} kept failing (connection lost or timed out) "
            f"after {attempts} attempts: {exc!r}"
        )
    return GCSBackendError(f"GCS {what} on {place} failed: {exc!r}")
