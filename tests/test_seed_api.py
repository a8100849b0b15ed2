"""The API the seed README promises, beyond its examples: the cache switch and
caps, materializers as a protocol, batch skips, Store ``version=``, logging,
and a package that type checkers read."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import registry
from registry import AsyncRegistry, AsyncStore, BatchResult, MemoryBackend, Registry
from registry.backends.local import LocalBackend
from registry.exceptions import MaterializerError, RegistryObjectNotFound
from tests.child import load_in_child
from tests.seed_module import MyClass, MyMaterializer

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[1]
REMOTE = ["moto", "seaweedfs", "gcs"]


def cache_files(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.rglob("*") if p.is_file()] if cache_dir.exists() else []


# -- use_cache ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", REMOTE)
def test_use_cache_false_sees_other_hosts_overwrites_and_keeps_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = request.getfixturevalue(f"{kind}_target")
    prefix = f"nocache-{uuid.uuid4().hex}"
    cache_dir = tmp_path / "cache"
    big = os.urandom(100_000)  # a file, not inlined: the files are re-read too
    with (
        Registry(backend=target.backend(prefix=prefix), mutable=True, use_cache=False) as a,
        Registry(backend=target.backend(prefix=prefix), use_cache=False, cache_dir=cache_dir) as b,
    ):
        a.save("m", big)
        assert b.load("m", verify="none") == big
        a.save("m", big[::-1], on_conflict="overwrite")
        for level in ("none", "integrity", "full"):
            assert b.load("m", verify=level) == big[::-1]
        a.delete("m")
        with pytest.raises(RegistryObjectNotFound):
            b.load("m", verify="none")
    assert cache_files(cache_dir) == []


@pytest.mark.parametrize("kind", REMOTE)
def test_use_cache_false_still_verifies_downloaded_bytes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue(f"{kind}_target")
    backend = target.backend()
    with Registry(backend=backend, use_cache=False) as reg:
        reg.save("m", os.urandom(100_000))
        (key,) = [k for k in _keys(reg) if k.startswith("objects/")]
        registry_sync_put(reg, key, b"tampered")
        with pytest.raises(registry.RegistryIntegrityError):
            reg.load("m")
        assert len(reg.load("m", verify="none")) == len(b"tampered")


def _keys(reg: Registry) -> list[str]:
    async def listing() -> list[str]:
        return [e.key async for e in reg.backend.list("") if not isinstance(e, str)]

    from registry._runner import get_runner

    return get_runner().run(listing())


def registry_sync_put(reg: Registry, key: str, data: bytes) -> None:
    from registry._runner import get_runner

    get_runner().run(reg.backend.put(key, data))


def test_use_cache_defaults_on_for_remote_and_off_for_local(
    moto_target: Any, tmp_path: Path
) -> None:
    assert AsyncRegistry(backend=moto_target.backend())._cache is not None
    assert AsyncRegistry(backend=moto_target.backend(), use_cache=True)._cache is not None
    assert AsyncRegistry(backend=moto_target.backend(), use_cache=False)._cache is None
    assert AsyncRegistry(tmp_path / "local", use_cache=True)._cache is None  # read in place


def test_store_config_accepts_cache_settings(tmp_path: Path) -> None:
    store = AsyncStore.from_config(
        {
            "mounts": {
                "m": {
                    "backend": "local",
                    "path": str(tmp_path / "m"),
                    "use_cache": "false",
                    "cache_max_entries": 10,
                }
            }
        }
    )
    assert store.get_mount("m")._cache is None


# -- cache_max_entries -------------------------------------------------------------------------


def test_cache_max_entries_evicts_least_recently_used(moto_target: Any, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with Registry(backend=moto_target.backend(), cache_dir=cache_dir, cache_max_entries=3) as reg:
        blobs = {f"o{i}": os.urandom(80_000) for i in range(5)}
        for name, data in blobs.items():
            reg.save(name, data)
        cache = reg.async_registry._cache
        assert cache is not None

        def cached() -> list[str]:
            return sorted(
                p.parent.parent.name for p in (cache.root / "objects").glob("*/*/data.bin")
            )

        assert cached() == ["o2", "o3", "o4"]
        assert reg.load("o2") == blobs["o2"]  # a hit refreshes o2
        assert reg.load("o0") == blobs["o0"]  # a miss: downloaded, then o3 (oldest) goes
        assert cached() == ["o0", "o2", "o4"]


def test_cache_caps_must_be_whole_numbers(moto_target: Any) -> None:
    with pytest.raises(ValueError, match="cache_max_entries"):
        AsyncRegistry(backend=moto_target.backend(), cache_max_entries=-1)


# -- materializers as a protocol -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["import path", "class"])
def test_plain_materializer_registered_round_trips_across_processes(
    how: str, tmp_path: Path
) -> None:
    """tests.seed_module imports nothing from registry."""
    source = Path(sys.modules[MyClass.__module__].__file__ or "").read_text()
    assert "import registry" not in source and "from registry" not in source
    with Registry(tmp_path / "reg") as reg:
        if how == "class":
            reg.register_materializer(MyClass, MyMaterializer)
        else:
            reg.register_materializer(
                "tests.seed_module.MyClass", "tests.seed_module.MyMaterializer"
            )
        assert reg.async_registry.backend is not None
        reg.save("obj", MyClass({"n": 1}))
        assert reg.info("obj", "1")["materializer"] == "tests.seed_module.MyMaterializer"
        assert load_in_child(reg, "obj") == "tests.seed_module MyClass {'n': 1}"


def test_materializer_missing_a_method_is_named(tmp_path: Path) -> None:
    from tests.seed_module import HalfMaterializer

    with Registry(tmp_path / "reg") as reg:
        with pytest.raises(TypeError, match=r"HalfMaterializer has no load\(folder, cls\) method"):
            reg.register_materializer(MyClass, HalfMaterializer)
        with pytest.raises(MaterializerError, match=r"has no load\(folder, cls\) method"):
            reg.register_materializer(MyClass, "tests.seed_module.HalfMaterializer")
        with pytest.raises(MaterializerError, match="is not a class"):
            reg.register_materializer(MyClass, "tests.seed_module.FILENAME")
        with pytest.raises(TypeError, match=r"no save\(obj, folder\) or load"):
            reg.register_materializer(MyClass, 42)  # type: ignore[arg-type]
        assert reg.registered_materializers() == {}


def test_materializer_instances_and_classes_both_work(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as reg:
        reg.save("a", MyClass({"a": 1}), materializer=MyMaterializer())
        reg.save("b", MyClass({"b": 2}), materializer=MyMaterializer)
        assert reg.load("a") == MyClass({"a": 1}) and reg.load("b") == MyClass({"b": 2})


# -- batch skips -------------------------------------------------------------------------------


async def test_batch_skip_tells_skipped_failed_and_succeeded_apart(tmp_path: Path) -> None:
    async with AsyncRegistry(tmp_path / "reg", version_objects=True) as reg:
        await reg.save("m", 1, version="1.0")
        result = await reg.save(
            ["m", "bad name!", "n", "m"], [2, 3, 4, 5], version=["1", "1", "1", "2"]
        )
        assert result.skipped == [0] and result.results[0] == "1"
        assert result.failed == [1] and isinstance(result.errors[1], ValueError)
        assert result.succeeded == [2, 3] and result.results[2:] == ["1", "2"]
        assert (result.success_count, result.skipped_count, result.failure_count) == (2, 1, 1)
        assert not result.all_succeeded
        assert repr(result) == "BatchResult(2 succeeded, 1 failed, 1 skipped)"
        assert await reg.load("m", version="1") == 1  # the skipped item wrote nothing


async def test_batch_overwrite_never_skips(tmp_path: Path) -> None:
    async with AsyncRegistry(tmp_path / "reg", mutable=True) as reg:
        await reg.save("m", 1)
        result = await reg.save(["m"], [2], on_conflict="overwrite")
        assert result.succeeded == [0] and result.skipped == []
        assert await reg.load("m") == 2


def test_single_save_under_skip_still_raises(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as reg:
        reg.save("m", 1)
        with pytest.raises(registry.RegistryVersionConflict, match="one version per name"):
            reg.save("m", 2, on_conflict="skip")


# -- Store version= --------------------------------------------------------------------------


async def test_store_keyword_versions() -> None:
    async with AsyncStore({"m": AsyncRegistry(MemoryBackend(), version_objects=True)}) as store:
        assert await store.save("m/x", "a", version="2") == "2"
        assert await store.save("m/x", "b") == "3"
        assert await store.load("m/x", version="2") == "a"
        assert await store.load("m/x@2", version="2.0") == "a"  # the same version by value
        assert await store.has_object("m/x", "2") is True
        assert await store.has_object("m/x", "9") is False
        assert (await store.info("m/x", "2"))["version"] == "2"
        batch = await store.load(["m/x", "m/x"], version=["2", "3"])
        assert isinstance(batch, BatchResult) and batch.results == ["a", "b"]
        await store.delete("m/x", version="2")
        assert await store.list_versions("m/x") == ["3"]
        with pytest.raises(ValueError, match="names version '3' but version='2'"):
            await store.load("m/x@3", version="2")
        with pytest.raises(ValueError, match="one per key"):
            await store.load(["m/x"], version=["1", "2"])


# -- logging ---------------------------------------------------------------------------------


def test_debug_logging_names_the_object(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="registry")
    with Registry(tmp_path / "reg") as reg:
        reg.save("my:model", b"w" * 100_000)
        reg.load("my:model")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("registry.")]
    assert any(m.startswith("saved my:model@1: 100000 bytes") for m in messages), messages
    assert any(m.startswith("loaded my:model@1") for m in messages), messages
    assert any("read in place" in m for m in messages), messages


def test_a_clean_run_is_silent_at_warning(
    tmp_path: Path, moto_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for reg in (Registry(tmp_path / "reg", version_objects=True), Registry(moto_target.backend())):
        with reg:
            reg.save("a", {"x": 1})
            reg.save(["b", "c"], [b"1" * 100_000, "two"])
            assert reg.load(["a", "b", "c"]).ok
            reg.delete("a")
            reg.janitor(grace=0)
    assert [r for r in caplog.records if r.name.startswith("registry")] == []


def test_pickle_fallback_and_cache_repair_warn(
    moto_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="registry")
    with Registry(moto_target.backend()) as reg:
        reg.save("obj", Path)  # a class: only pickle can store it
        reg.save("big", b"b" * 100_000)
        cache = reg.async_registry._cache
        assert cache is not None
        (cached,) = (cache.root / "objects" / "big").glob("*/data.bin")
        cached.write_bytes(b"x" * 100_000)
        assert reg.load("big") == b"b" * 100_000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("obj saved with pickle") for w in warnings), warnings
    assert any("big@1: cached copy dropped and fetched again" in w for w in warnings), warnings


def test_janitor_runs_are_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="registry")
    with Registry(tmp_path / "reg") as reg:
        reg.janitor(grace=0, dry_run=True)
    assert any("janitor on" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


# -- packaging -------------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    assert registry.__version__ == version("versioned-registry")
    assert "__version__" in dir(registry)


@pytest.mark.slow
def test_mypy_in_another_project_sees_the_signatures(tmp_path: Path) -> None:
    """py.typed: a user's mypy reads our annotations instead of treating the
    package as untyped."""
    assert (REPO / "registry" / "py.typed").is_file()
    user = tmp_path / "user_project"
    user.mkdir()
    (user / "app.py").write_text(
        textwrap.dedent(
            """
            from registry import Registry

            reveal_type(Registry.load)
            Registry().load(123)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--strict", "app.py"],
        cwd=user,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert "missing library stubs or py.typed marker" not in out, out
    assert 'Revealed type is "Overload(def (self: registry._sync.Registry, name: str' in out, out
    assert 'No overload variant of "load" of "Registry" matches argument type "int"' in out, out


def test_local_registry_does_not_use_a_cache_folder(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with Registry(LocalBackend(tmp_path / "reg"), cache_dir=cache_dir, use_cache=True) as reg:
        reg.save("a", b"x" * 100_000)
        assert reg.load("a") == b"x" * 100_000
    assert cache_files(cache_dir) == []
