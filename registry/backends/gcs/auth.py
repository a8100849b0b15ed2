"""GCS credentials: where the access token comes from, one token at a time.

gcloud-aio's ``Token`` reads the key (or the default credentials) and signs
the grant, but it is asked for tokens only through its single-attempt
``refresh``, under the backend's retry policy: its own ``Token.get`` would
retry any failure five times with up to a minute between attempts, where here
a rejected key is reported at once and a dead token endpoint within the
policy's bounds. A key file that is not JSON is an error (gcloud-aio would
quietly fall back to the GCE metadata server). Talking to an emulator is
anonymous: no token at all.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Protocol

import anyio

from registry.backends.gcs.errors import GCSAccessDenied, is_transient
from registry.backends.retry import RetryPolicy, retry_call

SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
ADMIN_SCOPES = ["https://www.googleapis.com/auth/devstorage.full_control"]  # create_bucket


class TokenSource(Protocol):
    async def get(self) -> str | None: ...

    async def close(self) -> None: ...


class Anonymous:
    """No token: what gcloud-aio is handed (it never asks, with an explicit
    api_root), and the backend's own source when talking to an emulator."""

    async def get(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class RefreshedToken:
    """Access tokens from a gcloud-aio ``Token``, fetched with the backend's retry
    policy and reused until shortly before they expire."""

    def __init__(self, token: Any, source: str, policy: RetryPolicy, timeout: int) -> None:
        self._token = token
        self._source = source
        self._policy = policy
        self._timeout = timeout
        self._value: str | None = None
        self._expires = 0.0
        self._lock = anyio.Lock()

    async def get(self) -> str | None:
        if self._value is not None and time.monotonic() < self._expires:
            return self._value
        async with self._lock:
            if self._value is not None and time.monotonic() < self._expires:
                return self._value

            async def attempt() -> Any:
                return await self._token.refresh(timeout=self._timeout)

            try:
                response = await retry_call(
                    attempt, classify=is_transient, policy=self._policy, what="GCS token refresh"
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


def token_source(
    session: Any,
    *,
    anonymous: bool,
    credentials_path: str | None,
    admin: bool,
    policy: RetryPolicy,
    timeout: int,
) -> TokenSource:
    """Where this backend's tokens come from: nowhere (anonymous), the key file
    (``credentials_path`` or ``GOOGLE_APPLICATION_CREDENTIALS``), or the default
    credentials. ``admin`` asks for the scope that can create buckets."""
    if anonymous:
        return Anonymous()
    path = credentials_path or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        read_credentials(path)
        source = f"the credentials file {path!r}"
    else:
        source = "the default credentials (gcloud's application-default file or GCE metadata)"
    try:
        from gcloud.aio.auth import Token

        token = Token(service_file=path, session=session, scopes=ADMIN_SCOPES if admin else SCOPES)
    except Exception as exc:
        raise GCSAccessDenied(f"unusable GCS credentials in {source}: {exc!r}") from exc
    return RefreshedToken(token, source, policy, timeout)


def read_credentials(path: str) -> dict[str, Any]:
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
