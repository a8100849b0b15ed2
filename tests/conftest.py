"""Shared fixtures. Async tests use the anyio plugin on asyncio (the runtime
the registry is built for: aioboto3 and gcloud-aio are asyncio-only)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend
from tests.targets import GCSTarget, S3Target, Target, started

__all__ = ["GCSTarget", "S3Target", "Target"]  # what test modules import from here


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default registry and cache locations point into the test's tmp_path."""
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "home-registry"))
    monkeypatch.setenv("REGISTRY_CACHE", str(tmp_path / "cache"))


# Real servers, started once per session (tests/servers/, tests/targets/):
# moto_target, seaweedfs_target (S3Target); gcs_target (fake-gcs-server on its
# memory backend) and gcs_fs_target (a second one on its filesystem backend),
# both GCSTarget.


def _session_target(kind: str) -> Any:
    def target() -> Iterator[Target]:
        with started(kind) as running:
            yield running

    return pytest.fixture(scope="session", name=f"{kind}_target")(target)


moto_target = _session_target("moto")
seaweedfs_target = _session_target("seaweedfs")
gcs_target = _session_target("gcs")
gcs_fs_target = _session_target("gcs_fs")


# Every registry-level test runs on each of these.
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
    target: Target = request.getfixturevalue(f"{kind}_target")
    prefix = f"r-{uuid.uuid4().hex}"
    return lambda: target.backend(prefix=prefix)


@pytest.fixture
async def areg(backend_factory: Callable[[], Backend]) -> AsyncIterator[AsyncRegistry]:
    """A versioned, immutable registry on each backend."""
    async with AsyncRegistry(backend=backend_factory(), version_objects=True) as reg:
        yield reg
