"""Shared fixtures. Async tests use the anyio plugin on asyncio (the runtime
the registry is built for: aioboto3 and gcloud-aio are asyncio-only)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend
from registry.backends.s3 import S3Backend
from tests.gcs_fixtures import GCSTarget, gcs_fs_target, gcs_target  # noqa: F401
from tests.s3_servers import S3Server, moto_server, prepare_bucket, seaweedfs_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default registry and cache locations point into the test's tmp_path."""
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "home-registry"))
    monkeypatch.setenv("REGISTRY_CACHE", str(tmp_path / "cache"))


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


# Every registry-level test runs on each of these; the remote kinds use real
# servers started once per session (tests/s3_servers.py, tests/gcs_servers.py).
BACKEND_KINDS = ["memory", "local", "moto", "seaweedfs", "gcs"]


@pytest.fixture(params=BACKEND_KINDS)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    """Builds a backend of the parametrized kind; every call sees the same store
    (for memory: the same instance), like a second process opening it."""
    kind: str = request.param
    if kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if kind == "local":
        return lambda: LocalBackend(tmp_path / "registry")
    target: S3Target | GCSTarget = request.getfixturevalue(f"{kind}_target")
    prefix = f"r-{uuid.uuid4().hex}"
    return lambda: target.backend(prefix=prefix)


@pytest.fixture
async def areg(backend_factory: Callable[[], Backend]) -> AsyncIterator[AsyncRegistry]:
    """A versioned, immutable registry on each backend."""
    async with AsyncRegistry(backend=backend_factory(), version_objects=True) as reg:
        yield reg
