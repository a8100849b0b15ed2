"""What the outcome of a multi-process race must be, on any backend.

The race tests on a local folder (tests/test_races.py) and on remote targets
(tests/test_remote_registry.py) start their workers differently and race
them at different scales; these checks are the part they share.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from registry import AsyncRegistry
from registry.backends.base import Backend, FileInfo
from registry.backends.local import TEMP_MARKER
from registry.exceptions import RegistryObjectNotFound
from tests import race_workers as rw

T = TypeVar("T")


def run(main: Callable[[AsyncRegistry], Awaitable[T]], backend: Backend, **settings: Any) -> T:
    """Run ``main(registry)`` on a fresh event loop."""

    async def wrapper() -> T:
        async with AsyncRegistry(backend=backend, **settings) as reg:
            return await main(reg)

    return asyncio.run(wrapper())


def start_all(procs: list[Any]) -> None:
    for proc in procs:
        proc.start()


def race(
    ctx: Any,
    worker: Callable[..., None],
    args: list[tuple[Any, ...]],
    out_dir: Path,
    label: str,
    timeout: float = rw.PROCESS_TIMEOUT,
) -> list[str]:
    """One ``worker`` process per ``args``, lined up by a barrier so that they
    really race; returns their report files once all have finished (see
    ``rw.join_all``)."""
    # held here until the end: a started process no longer refers to its args,
    # and a child that unpickles a collected barrier finds its semaphore gone
    barrier = ctx.Barrier(len(args))
    outs = [str(out_dir / f"{label}-{p}.json") for p in range(len(args))]
    procs = [
        ctx.Process(target=worker, args=(*a, barrier, out), name=f"{label}-{p}")
        for p, (a, out) in enumerate(zip(args, outs, strict=True))
    ]
    start_all(procs)
    rw.join_all(procs, timeout)
    return outs


async def stored_uuid_folders(backend: Backend, name: str) -> set[str]:
    """uuid folders stored for ``name`` (any folder holding at least one key)."""
    folders: set[str] = set()
    async for entry in backend.list(f"objects/{name}/"):
        if isinstance(entry, FileInfo):
            folders.add(entry.key.split("/")[2])
    return folders


async def referenced_uuids(reg: AsyncRegistry, name: str) -> set[str]:
    """uuid folders that committed versions of ``name`` point to (inline ones have none)."""
    try:
        infos = await reg.info(name)
    except RegistryObjectNotFound:
        return set()
    assert isinstance(infos, dict)
    return {info["uuid"] for info in infos.values() if not info["inline"]}


# -- N processes x M auto-increment saves of "race:auto" ---------------------------------


def versions_handed_out(
    outs: list[str], procs_n: int, saves: int, min_switches: int
) -> dict[str, str]:
    """version -> tag of the save that got it, from the savers' reports: every
    version 1..N*M handed out exactly once, and the savers really interleaved."""
    returned: dict[str, str] = {}
    for out in outs:
        for tag, version in rw.read_report(out):
            assert version not in returned, (
                f"version {version} handed out twice: to {returned[version]} and to {tag}"
            )
            returned[version] = tag
    total = procs_n * saves
    assert set(returned) == {str(n) for n in range(1, total + 1)}
    owners = [returned[str(n)].split("-")[0] for n in range(1, total + 1)]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    assert switches >= min_switches, f"the saves barely overlapped: {owners}"
    assert sorted(returned.values()) == sorted(
        f"{p}-{i}" for p in range(procs_n) for i in range(saves)
    )
    return returned


async def check_auto_versions(reg: AsyncRegistry, returned: dict[str, str]) -> set[str]:
    """Every version holds the payload and metadata its save reported; returns
    the uuid folders they reference (one per big payload: no folder was
    uploaded twice by a save that lost a claim)."""
    total = len(returned)
    infos = await reg.info("race:auto")  # every live version's metadata
    assert isinstance(infos, dict)
    versions = sorted(infos, key=int)
    assert versions == [str(n) for n in range(1, total + 1)]
    loaded = await reg.load(["race:auto"] * total, version=versions)
    assert loaded.ok, loaded.errors
    seen: list[str] = []
    for version, obj in zip(versions, loaded.results, strict=True):
        tag = obj if isinstance(obj, str) else rw.check_payload(obj)
        assert tag == returned[version], f"version {version} holds {tag!r}"
        assert infos[version]["metadata"] == {"tag": tag}
        seen.append(tag)
    assert len(seen) == len(set(seen)) == total  # each payload exactly once
    assert await reg.load("race:auto") == returned[str(total)]  # latest
    referenced = {info["uuid"] for info in infos.values() if not info["inline"]}
    big = [tag for tag in seen if int(tag.split("-")[1]) % 5 == 0]  # see rw.auto_saver
    assert len(referenced) == len(big)
    return referenced


# -- N processes save one explicit version of "race:explicit" -------------------------------


def one_winner(outs: list[str], writers: int) -> int:
    """The writer that won; every other one saw a conflict."""
    results = [rw.read_report(out) for out in outs]
    winners = [p for p, result in enumerate(results) if result.startswith("won:")]
    assert len(winners) == 1, results
    assert results.count("conflict") == writers - 1, results
    (winner,) = winners
    assert results[winner] == "won:1.0.0"
    return winner


async def check_explicit_winner(reg: AsyncRegistry, expected: bytes) -> str:
    """The winner's bytes under every spelling of the version; its uuid folder."""
    assert await reg.list_versions("race:explicit") == ["1.0.0"]
    for spelling in ("1.0.0", "1.0", "1", "latest"):
        assert await reg.load("race:explicit", version=spelling) == expected
    info = await reg.info("race:explicit", "1.0.0")
    assert isinstance(info, dict)
    assert not info["inline"]
    uid: str = info["uuid"]
    return uid


# -- a reader while a writer overwrites "race:mutable" --------------------------------------


def overwrite_while_reading(
    ctx: Any,
    writer: rw.Where,
    reader: rw.Where,
    overwrites: int,
    out_dir: Path,
    *,
    verify: rw.Verify = "integrity",
    janitors: Sequence[rw.Where] = (),
    timeout: float = rw.PROCESS_TIMEOUT,
    stop_within: float = rw.PROCESS_TIMEOUT,
) -> tuple[str, str, list[str]]:
    """A writer process overwrites "race:mutable" with counters 1..overwrites
    while a reader process (and janitor processes, grace 30 s) loop until it is
    done; returns the report files: writer's, reader's, janitors'."""
    barrier = ctx.Barrier(2 + len(janitors))
    stop = ctx.Event()
    writer_out, reader_out = str(out_dir / "writer.json"), str(out_dir / "reader.json")
    janitor_outs = [str(out_dir / f"janitor-{j}.json") for j in range(len(janitors))]
    writing = ctx.Process(
        target=rw.overwriter, args=(writer, 1, overwrites, barrier, writer_out), name="writer"
    )
    others = [
        ctx.Process(
            target=rw.reader, args=(reader, barrier, stop, reader_out, verify), name="reader"
        ),
        *(
            ctx.Process(
                target=rw.janitor_loop, args=(where, 30.0, barrier, stop, out), name=f"janitor-{j}"
            )
            for j, (where, out) in enumerate(zip(janitors, janitor_outs, strict=True))
        ),
    ]
    start_all([writing, *others])
    try:
        rw.join_all([writing], timeout)
    finally:
        stop.set()
    rw.join_all(others, stop_within)  # they stop after their current call
    return writer_out, reader_out, janitor_outs


def check_reads(
    writer_out: str, reader_out: str, overwrites: int, min_loads: int, min_distinct: int
) -> None:
    """Every read was a complete value, never older than the one before."""
    assert rw.read_report(writer_out) == overwrites
    reads = rw.read_report(reader_out)
    assert reads["errors"] == []
    counters: list[int] = reads["counters"]
    assert len(counters) >= min_loads, f"the reader only managed {len(counters)} loads"
    # each load sees the latest commit at its start or a later one: never older
    assert counters == sorted(counters), "a read went back to an older value"
    assert set(counters) <= set(range(overwrites + 1))
    assert len(set(counters)) >= min_distinct, f"the reader barely overlapped: {counters}"


async def check_last_overwrite(reg: AsyncRegistry, overwrites: int) -> set[str]:
    """The last value is there, and janitor(grace=0) removes exactly the
    folders of the values overwritten; returns the folders still referenced."""
    assert rw.check_payload(await reg.load("race:mutable")) == str(overwrites)
    assert await reg.list_versions("race:mutable") == ["1"]
    report = await reg.janitor(grace=0)
    referenced = await referenced_uuids(reg, "race:mutable")
    big = [c for c in range(overwrites + 1) if c % 3 != 0]  # see rw.overwrite_payload
    assert len(report.removed) == len(big) - len(referenced)
    assert len(referenced) == (1 if overwrites % 3 else 0)
    assert await stored_uuid_folders(reg.backend, "race:mutable") == referenced
    return referenced


# -- on a local folder: what the disk holds --------------------------------------------------


def folders_on_disk(root: Path, name: str) -> set[str]:
    """The uuid folders on disk for ``name`` (whatever their content, empty too)."""
    folder = root / "objects" / name
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


def check_disk(root: Path, name: str, folders: set[str]) -> None:
    """Exactly ``folders`` on disk for ``name``, and no temp file anywhere."""
    assert folders_on_disk(root, name) == folders
    assert temp_files(root) == []


def temp_files(root: Path, *, locks: bool = False) -> list[str]:
    """Temp files (and with ``locks``, lock files) anywhere under ``root``."""
    return [
        os.path.join(dirpath, filename)
        for dirpath, _dirs, filenames in os.walk(root)
        for filename in filenames
        if TEMP_MARKER in filename or (locks and filename.endswith(".lock"))
    ]
