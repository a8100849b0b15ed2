"""The registry API on every backend: versions, conflicts, batches, integrity."""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pydantic
import pytest

from registry import (
    AsyncRegistry,
    BatchResult,
    PickleRefused,
    RegistryConfigError,
    RegistryCorruptMetadata,
    RegistryError,
    RegistryIntegrityError,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)
from registry.backends.base import Backend
from registry.core.layout import meta_key, objects_folder

pytestmark = pytest.mark.anyio

BIG = bytes(range(256)) * 1024  # 256 KiB: above the inline limit, goes to a uuid folder


class Opaque:
    """No materializer handles it: stored with pickle."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value


async def uuid_folders(backend: Backend, name: str) -> set[str]:
    folders = set()
    async for entry in backend.list(f"objects/{name}/"):
        assert not isinstance(entry, str)
        folders.add(entry.key.split("/")[2])
    return folders


# -- save / load -------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        b"bytes",
        "text with unicode \u2603",
        42,
        3.5,
        True,
        None,
        [1, "a", None],
        {"lr": 0.1, "layers": [1, 2]},
        {1: "int keys", (2, 3): "tuple keys"},
        (1, 2, (3,)),
        {1, 2, 3},
        frozenset({"a"}),
        float("nan"),
        Opaque(7),
        BIG,
    ],
    ids=repr,
)
async def test_round_trip_keeps_value_and_type(areg: AsyncRegistry, obj: Any) -> None:
    await areg.save("obj", obj)
    loaded = await areg.load("obj")
    assert type(loaded) is type(obj)
    if isinstance(obj, float) and obj != obj:
        assert loaded != loaded
    else:
        assert loaded == obj


async def test_auto_versions_count_up_and_latest_is_greatest(areg: AsyncRegistry) -> None:
    assert [await areg.save("m", i) for i in range(3)] == ["1", "2", "3"]
    assert await areg.load("m") == 2
    assert await areg.load("m", version="1") == 0
    assert await areg.list_versions("m") == ["1", "2", "3"]


async def test_explicit_versions_compare_by_value(areg: AsyncRegistry) -> None:
    for version in ["1.9", "1.10", "1.0.0-rc.1", "1.0.0", "2"]:
        assert await areg.save("m", version, version=version) == version
    assert await areg.load("m") == "2"
    assert await areg.list_versions("m") == ["1.0.0-rc.1", "1.0.0", "1.9", "1.10", "2"]
    assert await areg.load("m", version="1") == "1.0.0"  # same value, other spelling
    assert await areg.load("m", version="1.10.0") == "1.10"
    assert await areg.save("m", "next") == "3"  # auto continues after the greatest major


async def test_same_value_other_spelling_is_a_conflict(areg: AsyncRegistry) -> None:
    await areg.save("m", 1, version="1.0.0")
    with pytest.raises(RegistryVersionConflict, match="already exists"):
        await areg.save("m", 2, version="1.0")
    assert await areg.load("m", version="1.0.0") == 1


async def test_immutable_registry_refuses_overwrite(areg: AsyncRegistry) -> None:
    await areg.save("m", 1, version="1")
    with pytest.raises(RegistryConfigError, match="mutable"):
        await areg.save("m", 2, version="1", on_conflict="overwrite")
    with pytest.raises(ValueError, match="on_conflict"):
        await areg.save("m", 2, version="1", on_conflict="replace")  # type: ignore[arg-type]


async def test_mutable_overwrite_keeps_old_folder_for_the_janitor(
    backend_factory: Callable[[], Backend],
) -> None:
    async with AsyncRegistry(backend_factory(), mutable=True, version_objects=True) as reg:
        await reg.save("m", BIG + b"1", version="1")
        first = await uuid_folders(reg.backend, "m")
        await reg.save("m", BIG + b"2", version="1", on_conflict="overwrite")
        assert await reg.load("m", version="1") == BIG + b"2"
        both = await uuid_folders(reg.backend, "m")
        assert first < both and len(both) == 2  # old folder still there for readers
        report = await reg.janitor(grace=3600)
        assert report.removed == [] and report.kept_recent == 1
        report = await reg.janitor(grace=0)
        assert report.removed == [f"objects/m/{next(iter(first))}"]
        assert await uuid_folders(reg.backend, "m") == both - first
        assert await reg.load("m", version="1") == BIG + b"2"


async def test_unversioned_registry_keeps_one_version(
    backend_factory: Callable[[], Backend],
) -> None:
    async with AsyncRegistry(backend_factory()) as reg:
        assert await reg.save("cfg", {"a": 1}) == "1"
        with pytest.raises(RegistryVersionConflict):
            await reg.save("cfg", {"a": 2})
        # Any version spelling addresses the one version (as the seed does).
        assert await reg.save("other", 1, version="2.0.0") == "1"
        assert await reg.load("other", version="7") == 1
        assert await reg.has_object("other", "1.0.0") is True
        assert (await reg.info("other", "3"))["version"] == "1"
        with pytest.raises(RegistryVersionConflict, match="one version per name"):
            await reg.save("other", 2, version="1")
        with pytest.raises(ValueError, match="invalid version"):
            await reg.load("other", version="not a version")
        await reg.delete("other", version="5")
        assert await reg.has_object("other") is False
        await reg.delete("cfg")
        assert await reg.save("cfg", {"a": 3}) == "1"  # re-save after delete
        assert await reg.load("cfg") == {"a": 3}


async def test_settings_are_stored_and_checked_on_reopen(
    backend_factory: Callable[[], Backend],
) -> None:
    async with AsyncRegistry(backend_factory(), mutable=True) as reg:
        assert reg.mutable is True and reg.version_objects is False
    async with AsyncRegistry(backend_factory()) as reg:
        assert reg.mutable is True  # stored value wins when not given
    reopened = AsyncRegistry(backend_factory(), mutable=False)
    with pytest.raises(ValueError, match="created with mutable=True"):
        await reopened.save("x", 1)


# -- delete and tombstones ------------------------------------------------------------


async def test_delete_version_and_all(areg: AsyncRegistry) -> None:
    for i in range(3):
        await areg.save("m", i)
    await areg.delete("m", version="3")
    assert await areg.list_versions("m") == ["1", "2"]
    assert await areg.save("m", "new") == "4"  # 3 is never handed out again
    with pytest.raises(RegistryObjectNotFound):
        await areg.load("m", version="3")
    await areg.delete("m")
    assert await areg.list_objects() == []
    assert not await areg.has_object("m")
    assert await areg.save("m", "after") == "5"
    assert await areg.save("m", "explicit", version="3") == "3"  # explicit re-save is allowed


async def test_missing_objects_raise_not_found(areg: AsyncRegistry) -> None:
    with pytest.raises(RegistryObjectNotFound, match="nope"):
        await areg.load("nope")
    with pytest.raises(KeyError):
        await areg.load("nope", version="2")
    with pytest.raises(RegistryObjectNotFound):
        await areg.delete("nope")
    with pytest.raises(RegistryObjectNotFound):
        await areg.info("nope")
    assert await areg.get("nope", "default") == "default"


# -- queries ----------------------------------------------------------------------------


async def test_info_forms(areg: AsyncRegistry) -> None:
    await areg.save("a", {"x": 1}, metadata={"team": "cv"})
    await areg.save("a", BIG, version="2.1")
    await areg.save("b", "text")
    one = await areg.info("a", "1")
    assert isinstance(one, dict)
    assert one["metadata"] == {"team": "cv"} and one["class"] == "builtins.dict"
    assert one["inline"] is True
    big = await areg.info("a", "latest")
    assert isinstance(big, dict)
    assert big["version"] == "2.1" and big["size"] == len(BIG) and big["inline"] is False
    per_name = await areg.info("a")
    assert isinstance(per_name, dict) and list(per_name) == ["1", "2.1"]
    everything = await areg.info()
    assert isinstance(everything, dict) and sorted(everything) == ["a", "b"]
    assert await areg.list_objects() == ["a", "b"]
    assert await areg.keys() == ["a", "b"]
    assert await areg.has_object("a", "2.1.0") is True
    assert await areg.has_object("a", "3") is False


# -- batches ----------------------------------------------------------------------------


async def test_batch_results_align_with_input_including_duplicates(areg: AsyncRegistry) -> None:
    saved = await areg.save(["a", "b", "a", "bad/name"], [1, 2, 3, 4])
    assert isinstance(saved, BatchResult)
    assert saved.failed == [3] and saved.succeeded == [0, 1, 2]
    assert isinstance(saved.errors[3], ValueError)
    assert sorted([saved.results[0], saved.results[2]]) == ["1", "2"]  # type: ignore[type-var]
    loaded = await areg.load(["a", "b", "missing", "a"], version=["1", "latest", "latest", "2"])
    assert isinstance(loaded, BatchResult)
    assert loaded.failed == [2] and isinstance(loaded.errors[2], RegistryObjectNotFound)
    assert {loaded.results[0], loaded.results[3]} == {1, 3} and loaded.results[1] == 2
    with pytest.raises(RegistryObjectNotFound):
        loaded.raise_first()
    has = await areg.has_object(["a", "zz"])
    assert isinstance(has, BatchResult) and has.results == [True, False]
    infos = await areg.info(["a", "zz"], version="1")
    assert isinstance(infos, BatchResult) and infos.failed == [1]
    deleted = await areg.delete(["b", "zz"])
    assert isinstance(deleted, BatchResult) and deleted.failed == [1]
    assert await areg.list_objects() == ["a"]


async def test_batch_explicit_version_conflict_is_per_item(areg: AsyncRegistry) -> None:
    result = await areg.save(["x", "x", "x"], [BIG, BIG + b"1", BIG + b"2"], version="1.0")
    # on_conflict="skip" (the default): the losers are skipped, not failed
    assert len(result.succeeded) == 1 and len(result.skipped) == 2 and not result.failed
    assert result.results == ["1.0", "1.0", "1.0"]
    # the losers removed their own uuid folders
    assert len(await uuid_folders(areg.backend, "x")) == 1


async def test_batch_argument_lengths_are_checked(areg: AsyncRegistry) -> None:
    with pytest.raises(ValueError, match="one per name"):
        await areg.save(["a", "b"], [1])
    with pytest.raises(ValueError, match="one per name"):
        await areg.load(["a", "b"], version=["1"])


async def test_iter_load_yields_everything_with_bounded_concurrency(areg: AsyncRegistry) -> None:
    names = [f"n{i}" for i in range(40)]
    await areg.save(names, list(range(40)))
    got = {name: obj async for name, obj in areg.iter_load(names, limit=4)}
    assert got == {f"n{i}": i for i in range(40)}
    with pytest.raises(RegistryObjectNotFound):
        async for _ in areg.iter_load(["n1", "missing"], limit=1):
            pass


# -- materializers -------------------------------------------------------------------------


class OpaqueChild(Opaque):
    pass


class Color(enum.StrEnum):
    RED = "red"


class Model(pydantic.BaseModel):
    a: int
    b: list[str]


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


class Meters(float):
    pass


class UpperMaterializer(__import__("registry").BlobMaterializer):  # type: ignore[misc]
    filename = "upper.txt"

    def dumps(self, obj: Any) -> bytes:
        return str(obj).upper().encode()

    def loads(self, data: bytes, cls: type | None) -> Any:
        return data.decode().lower()


async def test_dataclass_and_numpy_and_pydantic(areg: AsyncRegistry) -> None:
    await areg.save("p", Point(1, [2, 3]))
    assert await areg.load("p") == Point(1, [2, 3])
    assert (await areg.info("p", "1"))["materializer"].endswith("DataclassMaterializer")  # type: ignore[index]
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    await areg.save("arr", arr)
    big = np.random.default_rng(0).random((1024, 1024))  # 8 MiB: streamed to a file
    await areg.save("big", big)
    np.testing.assert_array_equal(await areg.load("arr"), arr)
    np.testing.assert_array_equal(await areg.load("big"), big)
    await areg.save("model", Model(a=1, b=["x"]))
    assert await areg.load("model") == Model(a=1, b=["x"])


async def test_subclass_uses_parent_materializer_and_override(areg: AsyncRegistry) -> None:
    await areg.save("d", Meters(2.5))
    info = await areg.info("d", "1")
    assert isinstance(info, dict)
    assert info["materializer"].endswith("PickleMaterializer")  # float subclass: exact type kept
    await areg.save("u", "hello", materializer=UpperMaterializer)
    assert (await areg.backend.get(meta_key("u", "1"))).count(b"HELLO") == 0  # base64 inline
    assert await areg.load("u") == "hello"


async def test_register_materializer_persists_across_instances(
    backend_factory: Callable[[], Backend],
) -> None:
    async with AsyncRegistry(backend_factory()) as reg:
        await reg.register_materializer(Opaque, UpperMaterializer)
        await reg.register_materializer("some.module.Other", UpperMaterializer)
    async with AsyncRegistry(backend_factory()) as other:
        table = await other.registered_materializers()
        assert table[f"{__name__}.Opaque"].endswith("UpperMaterializer")
        assert "some.module.Other" in table
        await other.save("o", Opaque(3))
        info = await other.info("o", "1")
        assert isinstance(info, dict) and info["materializer"].endswith("UpperMaterializer")
        await other.save("child", OpaqueChild(4))  # a subclass uses its parent's materializer
        info = await other.info("child", "1")
        assert isinstance(info, dict) and info["materializer"].endswith("UpperMaterializer")


async def test_allow_pickle_false_refuses_pickles(backend_factory: Callable[[], Backend]) -> None:
    async with AsyncRegistry(backend_factory()) as reg:
        await reg.save("o", Opaque(1))
        await reg.save("safe", {1: (2, 3)})  # builtin containers never need real pickle
    async with AsyncRegistry(backend_factory(), allow_pickle=False) as strict:
        with pytest.raises(PickleRefused, match="allow_pickle"):
            await strict.load("o")
        assert await strict.load("safe") == {1: (2, 3)}


async def test_paths_round_trip(areg: AsyncRegistry, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.bin").write_bytes(BIG)
    await areg.save("folder", src)
    await areg.save("file", src / "a.txt")
    folder = await areg.load("folder")
    assert (folder / "a.txt").read_text() == "a" and (folder / "sub" / "b.bin").read_bytes() == BIG
    assert (await areg.load("file")).read_text() == "a"


# -- integrity and bad input -------------------------------------------------------------------


async def replace_artifact(areg: AsyncRegistry, name: str, data: bytes) -> str:
    """Overwrite the one artifact of ``name`` version 1 on the backend with
    ``data``, behind the registry's back; returns its key."""
    info = await areg.info(name, "1")
    assert isinstance(info, dict)
    (filename,) = info["files"]
    key = f"{objects_folder(name, info['uuid'])}/{filename}"
    await areg.backend.put(key, data)
    await areg.clear_cache()  # remote: drop the good cached copy
    return key


async def test_tampered_artifact_is_detected(areg: AsyncRegistry) -> None:
    await areg.save("x", BIG)
    key = await replace_artifact(areg, "x", BIG[:-1] + b"!")
    with pytest.raises(RegistryIntegrityError, match="does not match"):
        await areg.load("x")
    assert await areg.load("x", verify="none") == BIG[:-1] + b"!"
    await areg.backend.put(key, BIG[:1000])  # truncated
    with pytest.raises(RegistryIntegrityError):
        await areg.load("x")
    await areg.backend.delete([key])
    await areg.clear_cache()  # remote: drop the good cached copy
    with pytest.raises(RegistryIntegrityError, match="missing"):
        await areg.load("x")


async def test_tampered_inline_object_is_detected(areg: AsyncRegistry) -> None:
    await areg.save("x", b"small")
    meta = msgspec.json.decode(await areg.backend.get(meta_key("x", "1")))
    meta["inline"] = msgspec.json.decode(msgspec.json.encode(b"other"))
    await areg.backend.put(meta_key("x", "1"), msgspec.json.encode(meta))
    await areg.clear_cache()  # remote: drop the good cached copy
    with pytest.raises(RegistryIntegrityError):
        await areg.load("x")


@pytest.mark.parametrize("garbage", [b"{", b"not json", b'{"name": 1}', b"\xff\xfe"])
async def test_corrupt_metadata_is_a_clear_error(areg: AsyncRegistry, garbage: bytes) -> None:
    await areg.save("x", 1)
    await areg.save("y", 2)
    await areg.backend.put(meta_key("x", "1"), garbage)
    await areg.clear_cache()  # remote: drop the good cached copy
    with pytest.raises(RegistryCorruptMetadata, match=r"meta/x/1\.json"):
        await areg.load("x")
    assert await areg.load("y") == 2  # nothing else damaged


async def test_bad_input_is_rejected_before_anything_is_written(areg: AsyncRegistry) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        await areg.save("a/b", 1)
    with pytest.raises(ValueError, match="letters, digits"):
        await areg.save("a@1", 1)
    with pytest.raises(TypeError, match="name must be a str"):
        await areg.save(7, 1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="version"):
        await areg.save("a", 1, version="latest")
    with pytest.raises(ValueError, match="version"):
        await areg.save("a", 1, version="one")
    with pytest.raises(TypeError, match="metadata"):
        await areg.save("a", 1, metadata={"f": object()})
    with pytest.raises(ValueError, match="verify"):
        await areg.load("a", verify="sometimes")  # type: ignore[call-overload]
    assert await areg.list_objects() == []
    assert await uuid_folders(areg.backend, "a") == set()


def test_every_error_shares_one_base() -> None:
    for exc in (
        RegistryObjectNotFound,
        RegistryVersionConflict,
        RegistryIntegrityError,
        RegistryCorruptMetadata,
        RegistryConfigError,
        PickleRefused,
    ):
        assert issubclass(exc, RegistryError)


async def test_tampered_large_object_is_detected_while_loading(areg: AsyncRegistry) -> None:
    huge = bytes(range(256)) * (9 * 4096)  # 9 MiB: verified in parallel with the load
    await areg.save("x", huge)
    await replace_artifact(areg, "x", huge[:-1] + b"!")
    with pytest.raises(RegistryIntegrityError, match="does not match"):
        await areg.load("x")
    await replace_artifact(areg, "x", huge)
    assert await areg.load("x") == huge


async def test_latest_sees_new_versions_after_the_folder_listing_was_cached(
    tmp_path: Path,
) -> None:
    """The local backend remembers settled version folders by mtime; a new
    version must still show up at once (another process's save included)."""
    import anyio

    async with AsyncRegistry(tmp_path / "r", version_objects=True) as reg:
        await reg.save("m", "one")
        await anyio.sleep(1.1)  # let the folder settle so its listing is cached
        assert await reg.load("m") == "one"
        assert await reg.load("m") == "one"  # served from the cached listing
        async with AsyncRegistry(tmp_path / "r") as other:  # another writer
            assert await other.save("m", "two") == "2"
        assert await reg.load("m") == "two"
        assert await reg.save("m", "three") == "3"
        await reg.delete("m", version="3")
        assert await reg.load("m") == "two"


def test_location_strings_pick_the_backend(tmp_path: Path) -> None:
    from registry import LocalBackend, MemoryBackend, S3Backend

    assert isinstance(AsyncRegistry(tmp_path / "r").backend, LocalBackend)
    assert isinstance(AsyncRegistry(f"file://{tmp_path}/r").backend, LocalBackend)
    assert isinstance(AsyncRegistry("memory://").backend, MemoryBackend)
    s3 = AsyncRegistry("s3://bucket/team-a").backend
    assert isinstance(s3, S3Backend) and s3.uri == "s3://bucket/team-a"
    from registry import GCSBackend

    gcs = AsyncRegistry("gs://bucket/team-a").backend
    assert isinstance(gcs, GCSBackend) and gcs.uri == "gs://bucket/team-a"
    with pytest.raises(ValueError, match="unsupported location"):
        AsyncRegistry("ftp://host/x")


async def test_batches_report_progress(areg: AsyncRegistry) -> None:
    seen: list[tuple[int, int]] = []
    names = [f"p{i}" for i in range(10)] + ["bad/name"]
    await areg.save(names, list(range(11)), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 11) for i in range(1, 12)]  # failed items count too
    seen.clear()
    await areg.load(names[:10], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10) and len(seen) == 10


async def test_large_file_is_hashed_while_copied(areg: AsyncRegistry, tmp_path: Path) -> None:
    """Files above the parallel-copy size are copied by the kernel while a
    second thread hashes them; the recorded sha256 must still be exact."""
    import hashlib

    src = tmp_path / "big.bin"
    data = os.urandom(1024 * 1024) * 17  # 17 MiB
    src.write_bytes(data)
    await areg.save("big-file", src)
    info = await areg.info("big-file", "1")
    (entry,) = info["files"].values()
    assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert (await areg.load("big-file")).read_bytes() == data


@pytest.mark.parametrize(
    "evil",
    ["../../../../../../tmp/registry-pwned.txt", "/tmp/registry-pwned.txt", "a/../../x", "./x"],
)
async def test_tampered_metadata_cannot_write_outside_its_folder(
    areg: AsyncRegistry, evil: str
) -> None:
    """File paths in metadata are checked before any path is built from them."""
    await areg.save("cfg", BIG)
    meta = msgspec.json.decode(await areg.backend.get(meta_key("cfg", "1")))
    (entry,) = meta["files"].values()
    meta["files"] = {evil: entry}
    await areg.backend.put(meta_key("cfg", "1"), msgspec.json.encode(meta))
    await areg.clear_cache()
    with pytest.raises(RegistryCorruptMetadata, match="tampered"):
        await areg.load("cfg")
    assert not Path("/tmp/registry-pwned.txt").exists()
    meta["files"] = {"data.bin": entry}
    meta["uuid"] = "../../../etc"
    await areg.backend.put(meta_key("cfg", "1"), msgspec.json.encode(meta))
    await areg.clear_cache()
    with pytest.raises(RegistryCorruptMetadata, match="uuid"):
        await areg.load("cfg")


async def test_metadata_moved_under_another_name_is_refused(areg: AsyncRegistry) -> None:
    await areg.save("a", 1)
    await areg.backend.put(meta_key("b", "1"), await areg.backend.get(meta_key("a", "1")))
    with pytest.raises(RegistryCorruptMetadata, match="names object 'a'"):
        await areg.load("b", version="1")


async def test_subclasses_of_builtin_types_keep_their_type(areg: AsyncRegistry) -> None:
    await areg.save("color", Color.RED)
    assert await areg.load("color") is Color.RED
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    await areg.save("masked", masked)
    loaded = await areg.load("masked")
    assert isinstance(loaded, np.ma.MaskedArray) and loaded.mask.tolist() == [False, True, False]
    await areg.save("surrogate", ["\ud800", {"k": "\udfff"}])
    assert await areg.load("surrogate") == ["\ud800", {"k": "\udfff"}]


async def test_untrusting_registry_imports_no_code_named_by_metadata(
    backend_factory: Callable[[], Backend],
) -> None:
    async with AsyncRegistry(backend_factory()) as reg:
        await reg.save("u", "hello", materializer=UpperMaterializer)
        meta = msgspec.json.decode(await reg.backend.get(meta_key("u", "1")))
        meta["materializer"] = "antigravity.Anything"  # importing it would run code
        await reg.backend.put(meta_key("v", "1"), msgspec.json.encode({**meta, "name": "v"}))
    async with AsyncRegistry(backend_factory(), allow_pickle=False) as strict:
        with pytest.raises(PickleRefused, match="neither built in nor registered"):
            await strict.load("v")
        assert await strict.load("u") == "hello"  # handed over in this process
    import sys

    assert "antigravity" not in sys.modules
