"""Races for real (DESIGN §4, §6, §11; issue 2 "Tests that must exist").

Several processes (multiprocessing "spawn": fresh interpreters, nothing shared
but the folder) hammer one LocalBackend registry at once, lined up by a barrier
so that their saves really overlap; the in-process variants race asyncio tasks.
Every test asserts exact outcomes: how many versions, which payload each holds,
which uuid folders are left on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry import AsyncRegistry
from registry.backends.local import LocalBackend
from registry.exceptions import RegistryObjectNotFound
from tests import race_checks as rc
from tests import race_workers as rw

T = TypeVar("T")


def run(main: Callable[[AsyncRegistry], Awaitable[T]], root: Path, **settings: Any) -> T:
    """Run ``main(registry)`` on a fresh event loop with a registry on ``root``."""
    return rc.run(main, LocalBackend(root), **settings)


# -- processes ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_auto_increment_across_processes(tmp_path: Path) -> None:
    """4 processes x 25 auto-increment saves of one name: 100 distinct versions."""
    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True)
    procs_n, saves = 4, 25
    args = [(rw.local(root), p, saves) for p in range(procs_n)]
    outs = rc.race(rw.spawn_context(), rw.auto_saver, args, tmp_path, "saver")
    # the processes really raced: their versions interleave, not one block each
    returned = rc.versions_handed_out(outs, procs_n, saves, min_switches=2 * procs_n)

    referenced = run(lambda reg: rc.check_auto_versions(reg, returned), root)
    # losing a claim re-encodes only the metadata: no folder is uploaded twice
    rc.check_disk(root, "race:auto", referenced)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_same_explicit_version_one_winner(tmp_path: Path) -> None:
    """8 processes save "1.0.0" of an immutable registry: one winner, 7 conflicts."""
    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True, mutable=False)
    procs_n, size = 8, 200 * rw.KIB
    args = [(rw.local(root), p, size) for p in range(procs_n)]
    outs = rc.race(rw.spawn_context(), rw.explicit_saver, args, tmp_path, "writer")
    winner = rc.one_winner(outs, procs_n)

    async def check(reg: AsyncRegistry) -> tuple[str, Any]:
        uid = await rc.check_explicit_winner(reg, rw.make_payload(f"writer-{winner}", size))
        return uid, await reg.janitor(grace=0)

    winner_uuid, report = run(check, root)
    # the losers removed their own folders; the janitor finds nothing else
    assert report.removed == []
    rc.check_disk(root, "race:explicit", {winner_uuid})
    assert {p.name for p in (root / "objects" / "race:explicit" / winner_uuid).iterdir()} == {
        "data.bin"
    }


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_reader_never_sees_a_torn_overwrite(tmp_path: Path) -> None:
    """A reader looping over load while a writer overwrites a mutable version 100
    times (big and inlined values) and two janitors run: every read is a complete
    old or new value, in commit order, and nothing errors."""
    root = tmp_path / "registry"
    overwrites = 100

    async def seed(reg: AsyncRegistry) -> str:
        return await reg.save("race:mutable", rw.overwrite_payload(0))

    assert run(seed, root, mutable=True) == "1"
    where = rw.local(root)
    writer_out, reader_out, janitor_outs = rc.overwrite_while_reading(
        rw.spawn_context(), where, where, overwrites, tmp_path, janitors=[where, where]
    )
    rc.check_reads(writer_out, reader_out, overwrites, min_loads=20, min_distinct=10)
    for out in janitor_outs:
        janitor = rw.read_report(out)
        assert janitor["runs"] >= 1
        assert janitor["removed"] == []  # the grace period protects every old folder

    # 100 overwrites: two thirds of the values had a uuid folder, all but the
    # current one are now orphans, and grace=0 removes exactly those
    referenced = run(lambda reg: rc.check_last_overwrite(reg, overwrites), root)
    rc.check_disk(root, "race:mutable", referenced)


# -- tasks in one process ----------------------------------------------------------------


@pytest.mark.anyio
async def test_auto_increment_batch_of_same_name(areg: AsyncRegistry) -> None:
    """50 concurrent auto-increment saves of one name in one batch: 50 versions."""
    n = 50
    payloads: list[Any] = [
        rw.make_payload(f"task-{i}", 80 * rw.KIB) if i % 4 == 0 else f"task-{i}" for i in range(n)
    ]
    result = await areg.save(["race:batch"] * n, payloads)
    assert result.ok, result.errors
    versions = [v for v in result.results if v is not None]
    assert len(versions) == n
    assert sorted(versions, key=int) == [str(v) for v in range(1, n + 1)]
    assert sorted(await areg.list_versions("race:batch"), key=int) == sorted(versions, key=int)
    loaded = await areg.load(["race:batch"] * n, version=versions)
    assert loaded.ok, loaded.errors
    assert loaded.results == payloads  # result i is the version of input i


@pytest.mark.anyio
async def test_auto_increment_races_two_registries_in_one_process(tmp_path: Path) -> None:
    """Two AsyncRegistry instances on one folder, 2 x 25 concurrent tasks."""
    root = tmp_path / "registry"
    async with (
        AsyncRegistry(backend=LocalBackend(root), version_objects=True) as one,
        AsyncRegistry(backend=LocalBackend(root), version_objects=True) as two,
    ):
        tasks = [
            (one if i % 2 else two).save("race:tasks", f"t{i}", metadata={"i": i})
            for i in range(50)
        ]
        versions = await asyncio.gather(*tasks)
        assert sorted(versions, key=int) == [str(v) for v in range(1, 51)]
        for i, version in enumerate(versions):
            assert await one.load("race:tasks", version=version) == f"t{i}"


@pytest.mark.anyio
async def test_version_numbers_never_reused_after_delete(areg: AsyncRegistry) -> None:
    assert [await areg.save("v:del", f"obj{i}") for i in (1, 2, 3)] == ["1", "2", "3"]
    await areg.delete("v:del", version="3")
    assert await areg.list_versions("v:del") == ["1", "2"]
    assert await areg.load("v:del") == "obj2"  # latest skips the deleted one
    assert not await areg.has_object("v:del", "3")
    with pytest.raises(RegistryObjectNotFound):
        await areg.load("v:del", version="3")

    assert await areg.save("v:del", "obj4") == "4"
    await areg.delete("v:del")  # every version
    assert await areg.list_versions("v:del") == []
    assert "v:del" not in await areg.list_objects()
    assert not await areg.has_object("v:del")
    assert await areg.save("v:del", "obj5") == "5"

    # An explicit re-save of a deleted version is allowed, exactly once.
    assert await areg.save("v:del", "obj3-again", version="3") == "3"
    assert await areg.load("v:del", version="3") == "obj3-again"
    assert await areg.list_versions("v:del") == ["3", "5"]
    assert await areg.save("v:del", "obj6") == "6"
    await areg.delete("v:del", version="6")
    assert await areg.save("v:del", "obj7") == "7"


@pytest.mark.anyio
async def test_concurrent_resave_of_deleted_version_has_one_winner(
    areg: AsyncRegistry,
) -> None:
    """Re-creating a deleted explicit version is itself a race with one winner."""
    await areg.save("v:tomb", "first", version="2.0")
    await areg.delete("v:tomb", version="2")
    result = await areg.save(["v:tomb"] * 10, [f"again-{i}" for i in range(10)], version="2.0")
    assert len(result.succeeded) == 1, result
    # on_conflict="skip": the losers are skipped, not failed
    assert len(result.skipped) == 9 and not result.failed
    assert result.results == ["2.0"] * 10
    (winner,) = result.succeeded
    assert await areg.load("v:tomb", version="2") == f"again-{winner}"
