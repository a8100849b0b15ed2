"""Races for real (DESIGN §4, §6, §11; issue 2 "Tests that must exist").

Several processes (multiprocessing "spawn": fresh interpreters, nothing shared
but the folder) hammer one LocalBackend registry at once, lined up by a barrier
so that their saves really overlap; the in-process variants race asyncio tasks.
Every test asserts exact outcomes: how many versions, which payload each holds,
which uuid folders are left on disk.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry import AsyncRegistry
from registry.backends.local import TEMP_MARKER, LocalBackend
from registry.exceptions import RegistryObjectNotFound
from tests import race_workers as rw

T = TypeVar("T")


def run(main: Callable[[AsyncRegistry], Awaitable[T]], root: Path, **settings: Any) -> T:
    """Run ``main(registry)`` on a fresh event loop with a registry on ``root``."""

    async def wrapper() -> T:
        async with AsyncRegistry(backend=LocalBackend(root), **settings) as reg:
            return await main(reg)

    return asyncio.run(wrapper())


def uuid_folders(root: Path, name: str) -> set[str]:
    """The uuid folders on disk for ``name`` (whatever their content)."""
    folder = root / "objects" / name
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


def temp_files(root: Path) -> list[str]:
    return [
        os.path.join(dirpath, filename)
        for dirpath, _dirs, filenames in os.walk(root)
        for filename in filenames
        if TEMP_MARKER in filename
    ]


async def referenced_uuids(reg: AsyncRegistry, name: str) -> set[str]:
    """uuid folders that committed versions of ``name`` point to (inline ones have none)."""
    try:
        infos = await reg.info(name)
    except RegistryObjectNotFound:
        return set()
    assert isinstance(infos, dict)
    return {info["uuid"] for info in infos.values() if not info["inline"]}


# -- processes ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_auto_increment_across_processes(tmp_path: Path) -> None:
    """4 processes x 25 auto-increment saves of one name: 100 distinct versions."""
    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True)
    procs_n, saves = 4, 25
    ctx = rw.spawn_context()
    barrier = ctx.Barrier(procs_n)
    outs = [str(tmp_path / f"auto-{p}.json") for p in range(procs_n)]
    procs = [
        ctx.Process(
            target=rw.auto_saver, args=(str(root), p, saves, barrier, outs[p]), name=f"saver-{p}"
        )
        for p in range(procs_n)
    ]
    for proc in procs:
        proc.start()
    rw.join_all(procs)

    returned: dict[str, str] = {}  # version -> tag of the save that got it
    for out in outs:
        for tag, version in rw.read_report(out):
            assert version not in returned, (
                f"version {version} handed out twice: to {returned[version]} and to {tag}"
            )
            returned[version] = tag
    expected_versions = {str(n) for n in range(1, procs_n * saves + 1)}
    assert set(returned) == expected_versions
    # The processes really raced: their versions interleave, not one block each.
    owners = [returned[str(n)].split("-")[0] for n in range(1, len(returned) + 1)]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    assert switches >= 2 * procs_n, f"saves barely overlapped: {owners}"
    assert sorted(returned.values()) == sorted(
        f"{p}-{i}" for p in range(procs_n) for i in range(saves)
    )

    async def check(reg: AsyncRegistry) -> set[str]:
        versions = await reg.list_versions("race:auto")
        assert sorted(versions, key=int) == [str(n) for n in range(1, procs_n * saves + 1)]
        loaded = await reg.load(["race:auto"] * len(versions), version=versions)
        assert loaded.ok, loaded.errors
        seen: list[str] = []
        for version, obj in zip(versions, loaded.results, strict=True):
            tag = obj if isinstance(obj, str) else rw.check_payload(obj)
            assert tag == returned[version], f"version {version} holds {tag!r}"
            info = await reg.info("race:auto", version)
            assert isinstance(info, dict)
            assert info["metadata"] == {"tag": tag}
            seen.append(tag)
        assert len(seen) == len(set(seen)) == procs_n * saves  # each payload exactly once
        assert await reg.load("race:auto") == returned["100"]  # latest
        return await referenced_uuids(reg, "race:auto")

    referenced = run(check, root)
    assert len(referenced) == procs_n * saves // 5  # the uuid-folder payloads
    # Losing a claim re-encodes only the metadata: no folder is uploaded twice.
    assert uuid_folders(root, "race:auto") == referenced
    assert temp_files(root) == []


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_same_explicit_version_one_winner(tmp_path: Path) -> None:
    """8 processes save "1.0.0" of an immutable registry: one winner, 7 conflicts."""
    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True, mutable=False)
    procs_n, size = 8, 200 * rw.KIB
    ctx = rw.spawn_context()
    barrier = ctx.Barrier(procs_n)
    outs = [str(tmp_path / f"explicit-{p}.json") for p in range(procs_n)]
    procs = [
        ctx.Process(
            target=rw.explicit_saver, args=(str(root), p, size, barrier, outs[p]), name=f"w-{p}"
        )
        for p in range(procs_n)
    ]
    for proc in procs:
        proc.start()
    rw.join_all(procs)

    results = [rw.read_report(out) for out in outs]
    winners = [p for p, result in enumerate(results) if result.startswith("won:")]
    assert len(winners) == 1, results
    assert results.count("conflict") == procs_n - 1, results
    (winner,) = winners
    assert results[winner] == "won:1.0.0"

    async def check(reg: AsyncRegistry) -> tuple[str, Any]:
        assert await reg.list_versions("race:explicit") == ["1.0.0"]
        for spelling in ("1.0.0", "1.0", "1", "latest"):
            assert await reg.load("race:explicit", version=spelling) == rw.make_payload(
                f"writer-{winner}", size
            )
        info = await reg.info("race:explicit", "1.0.0")
        assert isinstance(info, dict)
        assert not info["inline"]
        report = await reg.janitor(grace=0)
        return info["uuid"], report

    winner_uuid, report = run(check, root)
    # The losers removed their own folders; the janitor finds nothing else.
    assert report.removed == []
    assert uuid_folders(root, "race:explicit") == {winner_uuid}
    assert temp_files(root) == []
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
    ctx = rw.spawn_context()
    barrier = ctx.Barrier(4)
    stop = ctx.Event()
    writer_out, reader_out = str(tmp_path / "writer.json"), str(tmp_path / "reader.json")
    janitor_outs = [str(tmp_path / f"janitor-{j}.json") for j in range(2)]
    writer = ctx.Process(
        target=rw.overwriter, args=(str(root), 1, overwrites, barrier, writer_out), name="writer"
    )
    others = [
        ctx.Process(target=rw.reader, args=(str(root), barrier, stop, reader_out), name="reader"),
        *(
            ctx.Process(
                target=rw.janitor_loop,
                args=(str(root), 30.0, barrier, stop, janitor_outs[j]),
                name=f"janitor-{j}",
            )
            for j in range(2)
        ),
    ]
    for proc in [writer, *others]:
        proc.start()
    try:
        rw.join_all([writer])
    finally:
        stop.set()
    rw.join_all(others)

    assert rw.read_report(writer_out) == overwrites
    reads = rw.read_report(reader_out)
    assert reads["errors"] == []
    counters: list[int] = reads["counters"]
    assert len(counters) >= 20, f"the reader only managed {len(counters)} loads"
    # Each load sees the latest commit at its start or a later one: never older.
    assert counters == sorted(counters), "a read went back to an older value"
    assert set(counters) <= set(range(overwrites + 1))
    assert len(set(counters)) >= 10, f"the reader barely overlapped the writer: {counters}"
    for out in janitor_outs:
        janitor = rw.read_report(out)
        assert janitor["runs"] >= 1
        assert janitor["removed"] == []  # the grace period protects every old folder

    async def finish(reg: AsyncRegistry) -> tuple[Any, set[str]]:
        assert rw.check_payload(await reg.load("race:mutable")) == str(overwrites)
        assert await reg.list_versions("race:mutable") == ["1"]
        report = await reg.janitor(grace=0)
        return report, await referenced_uuids(reg, "race:mutable")

    report, referenced = run(finish, root)
    # 100 overwrites: two thirds of the values had a uuid folder, all but the
    # current one are now orphans, and grace=0 removes exactly those.
    big = [c for c in range(overwrites + 1) if c % 3 != 0]
    assert len(report.removed) == len(big) - len(referenced)
    assert uuid_folders(root, "race:mutable") == referenced
    assert len(referenced) == (1 if overwrites % 3 else 0)
    assert temp_files(root) == []


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
