"""S3 failures sorted: worth a retry or not, and the registry exception a
final failure becomes (with a message that says what to check)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed

if TYPE_CHECKING:
    from registry.backends.remote import BucketClient

__all__ = [
    "BucketNotFound",
    "EndpointUnreachable",
    "S3AccessDenied",
    "S3BackendError",
    "client_error_info",
    "is_transient",
    "may_have_landed",
    "translate",
]

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


def _botocore_exceptions() -> Any:
    from botocore import exceptions  # type: ignore[import-untyped, unused-ignore]

    return exceptions


def client_error_info(exc: BaseException) -> tuple[int, str] | None:
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


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, 5xx, 409 conflicts, connection trouble, timeouts."""
    info = client_error_info(exc)
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


def may_have_landed(exc: BaseException) -> bool:
    """After this failure, the write may have been applied on the server."""
    return not _is_connection_error(exc)


def translate(
    exc: Exception, operation: str, key: str | None, conditional: bool, on: BucketClient
) -> BackendError:
    """The registry exception for a request on ``on`` that failed for good. A
    404 on a conditional write means there is nothing to compare with."""
    bucket, where, attempts = on.bucket, on.where, on.policy.max_attempts
    what = f"{operation} of {key!r}" if key is not None else operation
    place = f"bucket {bucket!r} at {where}"
    info = client_error_info(exc)
    if info is not None:
        status, code = info
        if code == "NoSuchBucket":
            return BucketNotFound(
                f"S3 bucket {bucket!r} does not exist at {where}; "
                "create it or pass create_bucket=True"
            )
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(f"{key}: precondition failed ({operation})")
        if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
            if conditional:
                return PreconditionFailed(f"{key}: no such key to compare-and-swap")
            return ObjectNotFound(key if key is not None else operation)
        if status == 403 or code in _DENIED_CODES:
            return S3AccessDenied(
                f"S3 denied {what} on {place} ({code or status}): check access_key / "
                "secret_key (or the AWS credential chain) and the bucket's permissions"
            )
        return S3BackendError(f"S3 {what} on {place} failed: {exc}")
    bex = _botocore_exceptions()

    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return S3AccessDenied(
            f"no S3 credentials for {place}: pass access_key= and secret_key=, or set up "
            f"the AWS credential chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile): {exc}"
        )
    if _is_connection_error(exc):
        return EndpointUnreachable(
            f"cannot reach the S3 endpoint {where} (bucket {bucket!r}) after "
            f"{attempts} attempts: {exc}"
        )
    return S3BackendError(f"S3 {what} on {place} failed: {exc!r}")
