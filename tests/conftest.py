"""Shared fixtures. Async tests use the anyio plugin on asyncio (the runtime
the registry is built for: aioboto3 and gcloud-aio are asyncio-only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BACKEND_KINDS = ["memory", "local"]


def make_backend(kind: str, tmp_path: Path) -> Backend:
    if kind == "memory":
        return MemoryBackend()
    if kind == "local":
        return LocalBackend(tmp_path / "registry")
    raise ValueError(kind)


@pytest.fixture(params=BACKEND_KINDS)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    """Builds a backend of the parametrized kind; every call sees the same store
    (for memory: the same instance), like a second process opening it."""
    kind: str = request.param
    if kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    return lambda: make_backend(kind, tmp_path)


@pytest.fixture
async def areg(backend_factory: Callable[[], Backend]) -> AsyncIterator[AsyncRegistry]:
    """A versioned, immutable registry on each backend."""
    async with AsyncRegistry(backend=backend_factory(), version_objects=True) as reg:
        yield reg
