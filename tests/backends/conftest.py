"""Session-wide S3 servers (moto and SeaweedFS) for the S3 backend tests.

Each server is started once per test session, on first use, with one bucket
that is self-checked (a second create of a key must fail) before any test
runs on it. Tests get a fresh uuid prefix in that bucket, so they never see
each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from registry.backends.s3 import S3Backend
from tests.s3_servers import S3Server, moto_server, prepare_bucket, seaweedfs_server


@dataclass(frozen=True)
class S3Target:
    """A running server and the session's bucket on it."""

    server: S3Server
    bucket: str

    @property
    def name(self) -> str:
        return self.server.name

    def backend(self, prefix: str | None = None, **options: Any) -> S3Backend:
        """A backend on a fresh prefix (or the given one) in the session bucket."""
        if prefix is None:
            prefix = f"t-{uuid.uuid4().hex}"
        return self.server.backend(self.bucket, prefix=prefix, **options)


@pytest.fixture(scope="session")
def moto_target() -> Iterator[S3Target]:
    with moto_server() as server:
        yield S3Target(server, prepare_bucket(server))


@pytest.fixture(scope="session")
def seaweedfs_target() -> Iterator[S3Target]:
    with seaweedfs_server() as server:
        yield S3Target(server, prepare_bucket(server))


S3_SERVERS = ["moto", "seaweedfs"]


@pytest.fixture(params=S3_SERVERS)
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """Each S3 server in turn."""
    target: S3Target = request.getfixturevalue(f"{request.param}_target")
    return target
