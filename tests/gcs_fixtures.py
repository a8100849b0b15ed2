"""Session fixtures for fake-gcs-server (tests/gcs_servers.py).

``gcs_target`` is the memory-backed server the registry suite runs on
(``backend_factory`` calls ``gcs_target.backend(prefix=...)``, like the S3
targets); ``gcs_fs_target`` is a second server on the filesystem backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from registry.backends.gcs import GCSBackend
from tests.gcs_servers import GCSServer, fake_gcs_server, prepare_bucket


@dataclass(frozen=True)
class GCSTarget:
    """A running fake-gcs-server and the session's bucket on it."""

    server: GCSServer
    bucket: str

    @property
    def name(self) -> str:
        return self.server.name

    def backend(self, prefix: str | None = None, **options: Any) -> GCSBackend:
        """A backend on a fresh prefix (or the given one) in the session bucket."""
        if prefix is None:
            prefix = f"t-{uuid.uuid4().hex}"
        return self.server.backend(self.bucket, prefix=prefix, **options)


@pytest.fixture(scope="session")
def gcs_target() -> Iterator[GCSTarget]:
    with fake_gcs_server("memory") as server:
        yield GCSTarget(server, prepare_bucket(server))


@pytest.fixture(scope="session")
def gcs_fs_target() -> Iterator[GCSTarget]:
    with fake_gcs_server("filesystem") as server:
        yield GCSTarget(server, prepare_bucket(server))
