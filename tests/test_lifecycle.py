"""Aliases, retention and find (issue 14), on every backend.

Races across processes are in tests/test_lifecycle_races.py; here are the
behaviours, the rules, the request counts and the races between tasks.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry, Registry, Store
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend
from registry.core import mvcc
from registry.core.versions import Version
from registry.exceptions import (
    RegistryAliasConflict,
    RegistryObjectNotFound,
    RegistryOfflineError,
)
from registry.store.errors import StoreKeyFormatError, StoreReadOnlyError
from registry.testing.counting import CountingBackend
from tests.conftest import Target
from tests.test_cache_offline import Unreachable

pytestmark = pytest.mark.anyio
BIG = b"x" * 100_000  # its own uuid folder, not inlined


async def seed(reg: AsyncRegistry, name: str, n: int) -> list[str]:
    return [await reg.save(name, f"{name}-v{i}") for i in range(1, n + 1)]


# -- aliases -------------------------------------------------------------------------------


async def test_alias_create_load_move_remove(areg: AsyncRegistry) -> None:
    await seed(areg, "my:model", 4)
    assert await areg.aliases("my:model") == {}
    assert await areg.set_alias("my:model", "production", "3") == "3"
    assert await areg.set_alias("my:model", "staging", "latest") == "4"
    assert await areg.aliases("my:model") == {"production": "3", "staging": "4"}

    # both spellings load the aliased version; so do get(), has_object and info
    assert await areg.load("my:model@production") == "my:model-v3"
    assert await areg.load("my:model", version="production") == "my:model-v3"
    assert await areg.load("my:model@production", version="production") == "my:model-v3"
    assert await areg.load("my:model@3") == "my:model-v3"
    assert await areg.get("my:model@staging") == "my:model-v4"
    assert await areg.has_object("my:model", "production")
    assert not await areg.has_object("my:model", "canary")
    batch = await areg.load(["my:model", "my:model@staging"], version=["production", "latest"])
    assert batch.results == ["my:model-v3", "my:model-v4"]
    with pytest.raises(ValueError, match="give the version once"):
        await areg.load("my:model@production", version="2")

    # info shows aliases next to versions; list_versions does not change
    infos = await areg.info("my:model")
    assert {v: i["aliases"] for v, i in infos.items()} == {
        "1": [],
        "2": [],
        "3": ["production"],
        "4": ["staging"],
    }
    one = await areg.info("my:model", "production")
    assert (one["version"], one["aliases"]) == ("3", ["production"])
    assert await areg.list_versions("my:model") == ["1", "2", "3", "4"]

    # compare-and-swap: moves when it points where expected, else names the value
    assert await areg.set_alias("my:model", "production", "4", expected="3.0") == "4"
    with pytest.raises(RegistryAliasConflict, match="points to version '4', not '3'") as caught:
        await areg.set_alias("my:model", "production", "2", expected="3")
    assert (caught.value.name, caught.value.alias, caught.value.current) == (
        "my:model",
        "production",
        "4",
    )
    # promote one alias to another's version; an unconditional move always lands
    assert await areg.set_alias("my:model", "staging", "production") == "4"
    assert await areg.set_alias("my:model", "production", "1") == "1"
    assert await areg.load("my:model@production") == "my:model-v1"

    await areg.delete_alias("my:model", "staging", expected="4")
    with pytest.raises(RegistryObjectNotFound, match="has no alias 'staging'"):
        await areg.load("my:model@staging")
    with pytest.raises(RegistryObjectNotFound, match="has no alias 'staging'"):
        await areg.delete_alias("my:model", "staging")
    with pytest.raises(RegistryAliasConflict, match="does not exist, not '4'"):
        await areg.delete_alias("my:model", "staging", expected="4")
    # a removed alias can be set again
    assert await areg.set_alias("my:model", "staging", "2") == "2"
    assert await areg.aliases("my:model") == {"production": "1", "staging": "2"}


async def test_alias_rules(areg: AsyncRegistry) -> None:
    await seed(areg, "rules", 2)
    for bad in ("3", "1.0.0", "1.0.0-rc.1", "latest", "", "has space", "a/b", "a@b", ".."):
        with pytest.raises(ValueError, match="invalid alias"):
            await areg.set_alias("rules", bad, "1")
    with pytest.raises(ValueError, match="invalid version or alias"):
        await areg.load("rules", version="has space")
    with pytest.raises(RegistryObjectNotFound, match="no object rules@7"):
        await areg.set_alias("rules", "prod", "7")
    with pytest.raises(RegistryObjectNotFound, match="has no alias 'nope'"):
        await areg.set_alias("rules", "prod", "nope")
    with pytest.raises(ValueError, match="invalid version"):
        await areg.set_alias("rules", "prod", "1", expected="prod")
    assert await areg.aliases("rules") == {}
    # aliases of one name are not aliases of another
    await seed(areg, "other", 1)
    await areg.set_alias("rules", "prod", "2")
    with pytest.raises(RegistryObjectNotFound):
        await areg.load("other@prod")
    # the canonical spelling first saved is what the alias records
    assert await areg.save("rules", "v2.1", version="2.1.0") == "2.1.0"
    assert await areg.set_alias("rules", "prod", "2.1") == "2.1.0"
    assert await areg.aliases("rules") == {"prod": "2.1.0"}


async def test_aliases_batch_forms(areg: AsyncRegistry) -> None:
    for name in ("a", "b", "c"):
        await seed(areg, name, 2)
    moved = await areg.set_alias(["a", "b", "c"], "production", ["1", "2", "9"])
    assert moved.results[:2] == ["1", "2"]
    assert list(moved.errors) == [2] and isinstance(moved.errors[2], RegistryObjectNotFound)
    found = await areg.aliases(["a", "b", "c"])
    assert found.results == [{"production": "1"}, {"production": "2"}, {}]
    swapped = await areg.set_alias(["a", "b"], "production", "latest", expected=["1", "1"])
    assert swapped.results[0] == "2" and isinstance(swapped.errors[1], RegistryAliasConflict)
    removed = await areg.delete_alias(["a", "b", "c"], "production")
    assert removed.failed == [2]
    assert (await areg.aliases(["a", "b"])).results == [{}, {}]


async def test_deleting_an_aliased_version_is_refused(areg: AsyncRegistry) -> None:
    """Refuse, never a dangling alias: the alias must be moved or removed first."""
    await seed(areg, "del", 3)
    await areg.set_alias("del", "production", "2")
    with pytest.raises(RegistryAliasConflict, match="alias 'production' points to it") as caught:
        await areg.delete("del", version="2")
    assert caught.value.current == "2"
    with pytest.raises(RegistryAliasConflict, match="cannot delete del@2"):
        await areg.delete("del")  # every version
    with pytest.raises(RegistryAliasConflict):
        await areg.delete("del", version="production")
    assert await areg.list_versions("del") == ["1", "2", "3"]
    await areg.delete("del", version="3")  # not aliased: fine
    await areg.set_alias("del", "production", "1")
    await areg.delete("del", version="2")
    await areg.delete_alias("del", "production")
    await areg.delete("del")
    assert await areg.list_versions("del") == []
    assert await areg.save("del", "again") == "4"  # numbers never reused


async def test_alias_to_a_deleted_version_says_so(areg: AsyncRegistry) -> None:
    """What a delete racing set_alias can leave: resolving the alias fails,
    saying why, and even a re-save of that version number is never loaded."""
    await seed(areg, "gone", 2)
    await areg.save("gone", BIG, version="5")
    await areg.set_alias("gone", "production", "5")
    await mvcc.tombstone(areg.backend, "gone", Version("5"))  # the delete that raced
    with pytest.raises(RegistryObjectNotFound, match="points to version '5', which does not"):
        await areg.load("gone@production", verify="full")
    assert not await areg.has_object("gone", "production")
    # version 5 saved again explicitly: another object, which the alias refuses
    await areg.save("gone", b"impostor", version="5")
    with pytest.raises(RegistryObjectNotFound, match="deleted and saved again"):
        await areg.load("gone@production", verify="full")
    await areg.set_alias("gone", "production", "5")
    assert await areg.load("gone@production") == b"impostor"


async def test_alias_moves_between_tasks_have_one_winner_each(areg: AsyncRegistry) -> None:
    """Tasks (on two registries) move one alias with expected=: the successful
    moves chain from the first value to the last, none lost."""
    versions = await seed(areg, "tasks", 7)
    await areg.set_alias("tasks", "prod", "1")
    async with AsyncRegistry(backend=areg.backend) as other:

        async def move(i: int) -> tuple[str, str] | None:
            reg = other if i % 2 else areg
            current = (await reg.aliases("tasks"))["prod"]
            try:
                await reg.set_alias("tasks", "prod", versions[i + 1], expected=current)
            except RegistryAliasConflict:
                return None
            return current, versions[i + 1]

        results = await asyncio.gather(*(move(i) for i in range(6)))
    wins = dict(r for r in results if r is not None)
    assert wins, "no move won"
    chain, value = [], "1"
    while value in wins:
        value = wins[value]
        chain.append(value)
    assert len(chain) == len(wins)  # every winner saw the value it expected
    assert (await areg.aliases("tasks"))["prod"] == value


async def test_load_by_alias_costs_one_small_get(tmp_path: Path) -> None:
    """One GET of the alias record over a load by version (local disk, and a
    remote stand-in with a warm cache); moving is one conditional write."""
    for inner, remote in ((LocalBackend(tmp_path / "local"), False), (MemoryBackend(), True)):
        counting = CountingBackend(inner, remote=remote)
        async with AsyncRegistry(
            backend=counting, version_objects=True, cache_dir=tmp_path / "cache"
        ) as reg:
            await reg.save("m", BIG)
            await reg.save("m", BIG + b"2")
            await reg.set_alias("m", "prod", "1")
            by: dict[str, Counter[str]] = {}
            for version in ("1", "prod"):
                assert await reg.load("m", version=version) == BIG
                counting.reset()
                assert await reg.load("m", version=version) == BIG
                by[version] = Counter(counting.counts)
            assert by["prod"] - by["1"] == Counter({"get": 1}), by
            assert by["1"] - by["prod"] == Counter()
            counting.reset()
            await reg.set_alias("m", "prod", "2", expected="1")
            # target metadata (one GET), alias head + GET, one conditional put
            assert counting.counts == Counter({"get": 2, "head": 1, "put": 1})


async def test_alias_request_counts_over_http(target_kind: str, request: Any) -> None:
    """On a real server: a warm load by alias is exactly one HTTP GET more."""
    target: Target = request.getfixturevalue(f"{target_kind}_target")
    remote = target.backend(prefix=f"alias-{uuid.uuid4().hex}")
    async with AsyncRegistry(backend=remote, version_objects=True) as reg:
        await reg.save("m", BIG)
        await reg.set_alias("m", "prod", "1")
        await reg.load("m@prod")  # warm the cache
        http = await target.http_log(remote)
        http.take()
        assert await reg.load("m", version="1") == BIG
        assert http.take() == Counter()
        assert await reg.load("m@prod") == BIG
        assert http.take() == Counter({"get": 1})


@pytest.fixture(params=["moto", "gcs"])
def target_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_offline_resolves_from_the_cached_alias(
    target_kind: str, request: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target: Target = request.getfixturevalue(f"{target_kind}_target")
    backend = target.backend(prefix=f"offline-{uuid.uuid4().hex}")
    cache = tmp_path / "cache"
    async with AsyncRegistry(backend=backend, version_objects=True, cache_dir=cache) as reg:
        await reg.save("m", BIG)
        await reg.save("m", b"two")
        await reg.set_alias("m", "prod", "1")
        await reg.set_alias("m", "canary", "2")
        assert await reg.load("m@prod") == BIG
    offline = AsyncRegistry(backend=Unreachable(backend), cache_dir=cache, offline=True)
    async with offline:
        with caplog.at_level(logging.INFO, logger="registry"):
            assert await offline.load("m@prod") == BIG
        assert "resolved offline from the cached alias to version 1" in caplog.text
        assert await offline.aliases("m") == {"canary": "2", "prod": "1"}
        assert (await offline.info("m", "1"))["aliases"] == ["prod"]
        with pytest.raises(RegistryObjectNotFound, match="not in the offline cache"):
            await offline.load("m@staging")
        with pytest.raises(RegistryOfflineError):
            await offline.set_alias("m", "prod", "2")


def test_sync_facade_and_store_route_aliases(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models", version_objects=True)
    try:
        reg.save("resnet", "one")
        reg.save("resnet", "two")
        assert reg.set_alias("resnet", "production", "1") == "1"
        assert reg["resnet@production"] == "one"
        assert "resnet@production" in reg
        assert reg.aliases("resnet") == {"production": "1"}
        reg.delete_alias("resnet", "production")
        assert "resnet@production" not in reg
        reg.set_alias("resnet", "production", "2")
    finally:
        reg.close()
    frozen = Registry(tmp_path / "frozen", version_objects=True)
    frozen.save("x", 1)
    frozen.close()
    store = Store(
        {"models": Registry(tmp_path / "models"), "frozen": Registry(tmp_path / "frozen")},
        read_only=["frozen"],
    )
    try:
        assert store.load("models/resnet@production") == "two"
        assert store["resnet@production"] == "two"  # unqualified: found in its mount
        assert store.set_alias("resnet", "staging", "1") == "1"
        assert store.aliases("models/resnet") == {"production": "2", "staging": "1"}
        store.delete_alias("models/resnet", "staging", expected="1")
        with pytest.raises(StoreKeyFormatError):
            store.set_alias("models/resnet@2", "staging", "1")
        store.save("models/ckpt", "a")
        store.set_retention("models/ckpt", keep_last=1)
        store.save("models/ckpt", "b")
        assert store.list_versions("models/ckpt") == ["2"]
        found = store.find("models/res*")
        assert [(f.name, f.version, f.info["mount"]) for f in found] == [
            ("models/resnet", "1", "models"),
            ("models/resnet", "2", "models"),
        ]
        assert [f.name for f in store.find()] == [
            "models/ckpt",
            "models/resnet",
            "models/resnet",
            "frozen/x",
        ]
        assert [f.name for f in store.find("*/x")] == ["frozen/x"]
        with pytest.raises(StoreReadOnlyError):
            store.set_alias("frozen/x", "production", "1")
    finally:
        store.close()


# -- retention -------------------------------------------------------------------------------


async def test_retention_keep_last(areg: AsyncRegistry) -> None:
    await seed(areg, "ckpt", 3)
    await areg.set_alias("ckpt", "best", "1")
    await areg.set_retention("ckpt", keep_last=2)
    assert await areg.retention("ckpt") == {"keep_last": 2, "keep_newer_than": None}
    assert await areg.retention() is None
    assert await areg.list_versions("ckpt") == ["1", "2", "3"]  # 1 is aliased
    for i in range(4, 8):
        assert await areg.save("ckpt", f"ckpt-v{i}") == str(i)
        assert await areg.list_versions("ckpt") == ["1", str(i - 1), str(i)]
    # retired like a delete: gone, tombstoned, its number never handed out again
    assert not await areg.has_object("ckpt", "3")
    with pytest.raises(RegistryObjectNotFound):
        await areg.load("ckpt", version="3", verify="full")
    await areg.delete_alias("ckpt", "best")
    report = await areg.janitor()
    assert report.retired == ["ckpt@1"]
    assert await areg.list_versions("ckpt") == ["6", "7"]
    await areg.set_retention("ckpt")  # no policy: keep everything
    assert await areg.retention("ckpt") is None
    assert [await areg.save("ckpt", "x") for _ in range(2)] == ["8", "9"]
    assert await areg.list_versions("ckpt") == ["6", "7", "8", "9"]


async def test_retention_registry_wide_and_by_age(tmp_path: Path) -> None:
    async with AsyncRegistry(tmp_path / "reg", version_objects=True) as reg:
        await seed(reg, "a", 3)
        await asyncio.sleep(1.2)  # the age is the metadata's commit time, from the listing
        await seed(reg, "b", 2)
        await reg.set_retention(None, keep_newer_than=1.0)
        await reg.set_retention("b", keep_last=5)
        assert await reg.retention() == {"keep_last": None, "keep_newer_than": 1.0}
        dry = await reg.janitor(dry_run=True)
        assert dry.retired == ["a@1", "a@2"]  # the greatest always stays
        assert await reg.list_versions("a") == ["1", "2", "3"]
        assert (await reg.janitor()).retired == ["a@1", "a@2"]
        assert await reg.list_versions("a") == ["3"]
        assert await reg.list_versions("b") == ["1", "2"]  # its own policy wins
        for bad in ({"keep_last": 0}, {"keep_last": 1.5}, {"keep_newer_than": -1}):
            with pytest.raises(ValueError):
                await reg.set_retention("a", **bad)


async def test_retention_failure_does_not_fail_the_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class NoTombstones(LocalBackend):
        async def put(self, key: str, data: bytes, **kw: Any) -> Any:
            if data == b"" and key.startswith("meta/"):
                raise OSError("disk says no")
            return await super().put(key, data, **kw)

    async with AsyncRegistry(backend=NoTombstones(tmp_path / "r"), version_objects=True) as reg:
        await reg.set_retention("n", keep_last=1)
        await reg.save("n", 1)
        with caplog.at_level(logging.WARNING, logger="registry"):
            assert await reg.save("n", 2) == "2"
        assert "retention of 'n' after a save failed" in caplog.text
        assert await reg.list_versions("n") == ["1", "2"]


# -- find ------------------------------------------------------------------------------------


async def test_find(areg: AsyncRegistry) -> None:
    before = time.time()
    await areg.save("my:cls", "a", metadata={"team": "cv", "acc": 0.9})
    await areg.save("my:cls", "b", metadata={"team": "nlp"})
    await areg.save("my:det", "c", metadata={"team": "cv", "acc": 0.8})
    await areg.save("your:cls", "d", metadata={"team": "cv"})
    await areg.delete("my:det")
    found = await areg.find(metadata={"team": "cv"}, name="my:*")
    assert [(f.name, f.version) for f in found] == [("my:cls", "1")]
    assert found[0].info["metadata"] == {"team": "cv", "acc": 0.9}
    name, version, info = found[0]  # a plain tuple too
    assert (name, version, info["version"]) == ("my:cls", "1", "1")
    assert [(f.name, f.version) for f in await areg.find(metadata={"team": "cv"})] == [
        ("my:cls", "1"),
        ("your:cls", "1"),
    ]
    assert len(await areg.find()) == 3
    assert await areg.find(name="*:cls", metadata={"acc": 0.8}) == []
    assert len(await areg.find(created_after=before)) == 3
    when = datetime.datetime.fromtimestamp(before)
    assert await areg.find(created_before=when) == []
    assert await areg.find(created_after=time.time() + 60) == []


async def test_find_on_2000_versions_across_200_names(tmp_path: Path) -> None:
    backend: Backend = LocalBackend(tmp_path / "r", fsync=False)
    async with AsyncRegistry(backend=backend, version_objects=True) as reg:
        names = [f"team{n % 4}:model{n:03d}" for n in range(200)]
        items = [(names[i % 200], i) for i in range(2000)]
        saved = await reg.save(
            [n for n, _ in items],
            [f"v{i}" for _, i in items],
            metadata=[{"team": n.split(":")[0], "i": i, "good": i % 10 == 0} for n, i in items],
        )
        assert saved.ok, saved.errors
        started = time.perf_counter()
        good = await reg.find(metadata={"good": True})
        elapsed = time.perf_counter() - started
        assert len(good) == 200
        assert {f.info["metadata"]["i"] for f in good} == set(range(0, 2000, 10))
        team2 = await reg.find("team2:*", metadata={"good": True})
        expected = sorted(i for n, i in items if i % 10 == 0 and n.startswith("team2:"))
        assert sorted(f.info["metadata"]["i"] for f in team2) == expected and len(expected) == 100
        assert len(await reg.find("team2:model00?")) == 2 * 10  # models 002 and 006, 10 each
        one = await reg.find("team0:model000")
        assert [f.version for f in one] == [str(v) for v in range(1, 11)]
        print(f"find over 2,000 versions: {elapsed * 1000:.0f} ms")


async def test_what_retention_costs_a_save(tmp_path: Path) -> None:
    """Without a policy a saver lists ``retention/`` once per POLICY_TTL; with
    one, a save lists the name's versions, and when it retires something its
    aliases too, and writes one tombstone per retired version."""
    counting = CountingBackend(MemoryBackend(), remote=True)
    async with AsyncRegistry(
        backend=counting, version_objects=True, cache_dir=tmp_path / "cache"
    ) as reg:
        # a version above the head also reads and raises it (tests/test_heads.py)
        head = Counter({"get": 1, "put": 1})
        counting.reset()
        await reg.save("n", "a", version="1")
        # the policies, once; "1" needs no head (mvcc.commit_explicit)
        assert counting.counts == Counter({"list": 1, "put": 1})
        counting.reset()
        await reg.save("n", "b", version="2")
        # the name's head created before the commit
        assert counting.counts == Counter({"put": 2})
        await reg.set_retention("n", keep_last=2)
        counting.reset()
        # the policies are read again after a change: a listing and the new one
        await reg.save("n", "c", version="3")
        assert counting.counts == Counter({"list": 3, "get": 1, "put": 2}) + head
        counting.reset()
        await reg.save("n", "d", version="4")
        assert counting.counts == Counter({"list": 2, "put": 2}) + head
        assert await reg.list_versions("n") == ["3", "4"]


async def test_a_batch_reads_the_policies_once(moto_target: Target, tmp_path: Path) -> None:
    """The first saves of a batch all need the policies: one listing serves them."""
    counting = CountingBackend(moto_target.backend())
    async with AsyncRegistry(
        backend=counting, version_objects=True, cache_dir=tmp_path / "cache"
    ) as reg:
        counting.reset()
        saved = await reg.save(["n"] * 20, list(range(20)), version=[str(v) for v in range(1, 21)])
        assert saved.ok
        # the name's head: created for the first save, raised once for the rest
        # (they line up behind it; tests/test_heads.py)
        assert counting.counts["list"] == 1
        assert counting.counts["put"] <= 20 + 2 and counting.counts["get"] <= 1, counting.counts


async def test_unversioned_saves_pay_nothing_for_retention(tmp_path: Path) -> None:
    """One version per name: nothing to retire, so no policy is ever read."""
    counting = CountingBackend(MemoryBackend(), remote=True)
    async with AsyncRegistry(backend=counting, cache_dir=tmp_path / "cache") as reg:
        await reg.set_retention(None, keep_last=1)
        counting.reset()
        await reg.save("cfg", {"a": 1})
        assert counting.counts == Counter({"put": 1})
