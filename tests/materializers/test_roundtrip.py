"""Every type round-trips exactly on local disk, S3 (moto) and GCS
(fake-gcs), records its format, and loads from a registry that refuses pickle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from tests.conftest import Target
from tests.materializers.cases import CASES, Case

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", "moto", "gcs"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    if request.param == "local":
        return lambda: LocalBackend(tmp_path / "registry")
    target: Target = request.getfixturevalue(f"{request.param}_target")
    prefix = f"m-{tmp_path.name}"
    return lambda: target.backend(prefix=prefix)


@pytest.fixture
async def writer(make_backend: Callable[[], Backend]) -> AsyncIterator[AsyncRegistry]:
    async with AsyncRegistry(backend=make_backend()) as reg:
        yield reg


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_round_trip_is_exact_and_safe(
    case: Case, writer: AsyncRegistry, make_backend: Callable[[], Backend]
) -> None:
    obj = case.make()
    await writer.save("obj", obj)
    info = await writer.info("obj", "latest")
    assert info["materializer"] == f"registry.materializers.{case.materializer}"
    assert info["stored_as"]["format"] == case.format
    assert case.same(obj, await writer.load("obj"))
    # A second registry on the same store, as another process that refuses
    # pickle would open it (no cache shared with the writer).
    async with AsyncRegistry(backend=make_backend(), allow_pickle=False, use_cache=False) as safe:
        assert case.same(obj, await safe.load("obj"))
