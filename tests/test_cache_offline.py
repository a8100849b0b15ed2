"""Offline mode and prefetch: a registry that answers from its local cache
alone, proven by a backend that fails every call, on moto and fake-gcs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry, Registry, RegistryObjectNotFound, RegistryOfflineError
from registry.backends.base import Backend, FileInfo, PutMode
from registry.exceptions import RegistryConfigError
from tests.child import REPO

pytestmark = pytest.mark.anyio
BIG = os.urandom(150_000)  # a file in its own folder, not inlined


class Unreachable(Backend):
    """Stands for a remote store on a plane: any call fails the test."""

    is_remote = True

    def __init__(self, like: Backend) -> None:
        super().__init__()
        self.uri = like.uri
        self._identity = like.identity  # the same cache folder as ``like``

    @property
    def identity(self) -> str:
        return self._identity

    def _asked(self, what: str) -> AssertionError:
        return AssertionError(f"an offline registry called the backend: {what}")

    async def get(self, key: str) -> bytes:
        raise self._asked(f"get {key}")

    async def get_file(self, key: str, dest: Path) -> FileInfo:
        raise self._asked(f"get_file {key}")

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        raise self._asked(f"put {key}")

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        raise self._asked(f"put_file {key}")

    async def head(self, key: str) -> FileInfo | None:
        raise self._asked(f"head {key}")

    async def delete(self, keys: Sequence[str]) -> None:
        raise self._asked(f"delete {keys}")

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[FileInfo | str]:
        raise self._asked(f"list {prefix}")
        yield prefix  # an async generator

    async def list_children(self, prefix: str) -> Sequence[str]:
        raise self._asked(f"list_children {prefix}")

    async def aclose(self) -> None:
        raise self._asked("aclose")


@pytest.fixture(params=["moto", "gcs"])
def remote(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_target")


@pytest.fixture
async def warmed(remote: Any, tmp_path: Path) -> AsyncIterator[tuple[Backend, Path]]:
    """Host A saves versions 1..3 of "m" and "small"; host B (its own cache,
    ``tmp_path / "b"``) loads only versions 1 and 2 of "m" and "small"."""
    prefix = f"offline-{uuid.uuid4().hex}"
    async with AsyncRegistry(
        backend=remote.backend(prefix=prefix), version_objects=True, cache_dir=tmp_path / "a"
    ) as host_a:
        for i in (1, 2, 3):
            await host_a.save("m", BIG + bytes([i]))
        await host_a.save("small", {"lr": 0.1}, metadata={"team": "cv"})
        await host_a.save("never-loaded", b"x")
    backend = remote.backend(prefix=prefix)
    async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "b") as host_b:
        assert await host_b.load("m", version="1") == BIG + b"\x01"
        assert await host_b.load("m", version="2") == BIG + b"\x02"
        assert await host_b.load("small") == {"lr": 0.1}
    yield backend, tmp_path / "b"


async def test_offline_reads_come_from_the_cache_alone(warmed: tuple[Backend, Path]) -> None:
    backend, cache_dir = warmed
    offline = AsyncRegistry(backend=Unreachable(backend), cache_dir=cache_dir, offline=True)
    async with offline as reg:
        assert reg.offline
        assert await reg.load("m") == BIG + b"\x02"  # latest = the greatest *cached* version
        assert await reg.load("m", version="1") == BIG + b"\x01"
        assert await reg.load("small") == {"lr": 0.1}
        assert await reg.list_versions("m") == ["1", "2"]
        assert await reg.list_objects() == ["m", "small"]
        assert await reg.has_object("m", "2") is True
        assert await reg.has_object("m", "3") is False
        assert await reg.has_object("never-loaded") is False
        info = await reg.info("small", "1")
        assert info["metadata"] == {"team": "cv"}
        assert set(await reg.info("m")) == {"1", "2"}
        batch = await reg.load(["m", "never-loaded"])
        assert batch.failed == [1] and batch.results[0] == BIG + b"\x02"


async def test_offline_misses_and_writes_fail_clearly(warmed: tuple[Backend, Path]) -> None:
    backend, cache_dir = warmed
    async with AsyncRegistry(
        backend=Unreachable(backend), cache_dir=cache_dir, offline=True
    ) as reg:
        with pytest.raises(RegistryObjectNotFound, match="not in the offline cache"):
            await reg.load("m", version="3")
        with pytest.raises(RegistryObjectNotFound, match="not in the offline cache"):
            await reg.load("never-loaded")
        refused = {
            "save": reg.save("n", 1),
            "delete": reg.delete("m", version="1"),
            "register_materializer": reg.register_materializer("a.B", "registry.materializers"),
            "janitor": reg.janitor(),
            "prefetch": reg.prefetch("m"),
        }
        for operation, call in refused.items():
            with pytest.raises(RegistryOfflineError, match=f"^{operation} needs the backend"):
                await call


async def test_files_evicted_from_the_cache_are_a_clear_miss(
    warmed: tuple[Backend, Path],
) -> None:
    backend, cache_dir = warmed
    async with AsyncRegistry(backend=backend, cache_dir=cache_dir) as online:
        await online.prune_cache(max_bytes=0)  # metadata stays, the files go
    async with AsyncRegistry(
        backend=Unreachable(backend), cache_dir=cache_dir, offline=True
    ) as reg:
        assert await reg.has_object("m", "1")
        with pytest.raises(RegistryObjectNotFound, match="files are not in the offline cache"):
            await reg.load("m", version="1")


async def test_prefetch_then_offline(remote: Any, tmp_path: Path) -> None:
    backend = remote.backend()
    async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "a") as writer:
        await writer.save(["p1", "p2", "p3"], [BIG + b"1", BIG + b"2", {"x": 3}])
    warm = AsyncRegistry(backend=remote.backend(prefix=backend.prefix), cache_dir=tmp_path / "b")
    async with warm as reg:
        seen: list[tuple[int, int]] = []
        fetched = await reg.prefetch(["p1", "p2", "p3"], progress=lambda d, t: seen.append((d, t)))
        assert fetched.results == ["1", "1", "1"] and seen[-1] == (3, 3)
        assert await reg.prefetch("p1", version="1") == "1"  # already there: no error
        info = await reg.cache_info()
        assert sorted(e.name for e in info.entries) == ["p1", "p2"]  # p3 is inline
    async with AsyncRegistry(
        backend=Unreachable(backend), cache_dir=tmp_path / "b", offline=True
    ) as reg:
        loaded = await reg.load(["p1", "p2", "p3"])
        assert loaded.results == [BIG + b"1", BIG + b"2", {"x": 3}]


def test_the_environment_variable_turns_offline_on(moto_target: Any, tmp_path: Path) -> None:
    """A training script that never passes offline=: REGISTRY_OFFLINE=1 is
    enough, and the backend is not touched (its connection refuses to open)."""
    cache_dir = tmp_path / "cache"
    with Registry(backend=moto_target.backend(), cache_dir=cache_dir) as online:
        online.save("weights", BIG)
        config = pickle.dumps(Registry(backend=online.backend, cache_dir=cache_dir))
    code = (
        "import pickle, sys\n"
        "from registry.backends.remote import RemoteBackend\n"
        "async def refuse(self): raise AssertionError('a request left the machine')\n"
        "RemoteBackend._connection = refuse\n"
        "reg = pickle.loads(sys.stdin.buffer.read())\n"
        "assert reg.offline\n"
        "print(len(reg.load('weights')), reg.list_versions('weights'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=config,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "REGISTRY_OFFLINE": "1"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == [str(len(BIG)), "['1']"]


def test_offline_needs_the_cache(moto_target: Any, tmp_path: Path) -> None:
    with pytest.raises(RegistryConfigError, match="use_cache=False"):
        AsyncRegistry(backend=moto_target.backend(), use_cache=False, offline=True)
    assert not AsyncRegistry(tmp_path / "local", offline=True).offline  # local: no requests
