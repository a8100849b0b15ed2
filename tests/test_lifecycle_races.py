"""Aliases and retention raced by processes, on local disk, moto and fake-gcs.

- 8 processes move one alias with ``expected=`` while a reader loads through
  it: the successful compare-and-swaps chain from the first value to the
  final one (each winner saw the value it expected, none was lost), and
  every read is a complete version the alias pointed to, never an error.
- Processes save one name under ``keep_last=N`` while the test watches:
  never more than N + the aliased + the saves in flight left, exactly N + the
  aliased at the end, and no version number handed out twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry
from registry.core import mvcc
from tests import lifecycle_workers as lw
from tests import race_checks as rc
from tests import race_workers as rw
from tests.conftest import Target

KINDS = ["local", "moto", "gcs"]
PROCESS_TIMEOUT = 90.0


def where_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[rw.Where]:
    """One config per process (each its own cache folder), all on one store."""
    if kind == "local":
        return [rw.local(tmp_path / "registry")] * 12
    target: Target = request.getfixturevalue(f"{kind}_target")
    prefix = f"life-{uuid.uuid4().hex}"
    return [target.worker_config(prefix, str(tmp_path / f"cache-{p}")) for p in range(12)]


def context(kind: str) -> Any:
    return rw.spawn_context() if kind == "local" else rw.worker_context()


def payload(version: str) -> bytes:
    # every third version in its own uuid folder, the others inlined
    return rw.make_payload(version, 70 * rw.KIB if int(version) % 3 == 0 else 200)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", KINDS)
def test_eight_processes_move_one_alias(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    movers, attempts = 8, 4
    where = where_for(kind, request, tmp_path)
    versions = [str(v) for v in range(1, 2 + movers * attempts)]

    async def setup(reg: AsyncRegistry) -> None:
        saved = await reg.save(
            [lw.NAME] * len(versions), [payload(v) for v in versions], version=versions
        )
        assert saved.ok, saved.errors
        await reg.set_alias(lw.NAME, lw.ALIAS, "1")

    rc.run(setup, rw.make_backend(where[0]), version_objects=True, cache_dir=tmp_path / "setup")

    ctx = context(kind)
    barrier, stop = ctx.Barrier(movers + 1), ctx.Event()
    outs = [str(tmp_path / f"mover-{p}.json") for p in range(movers)]
    reader_out = str(tmp_path / "reader.json")
    procs = [
        ctx.Process(
            target=lw.alias_mover, args=(where[p], p, attempts, barrier, outs[p]), name=f"mover-{p}"
        )
        for p in range(movers)
    ]
    reader = ctx.Process(
        target=lw.alias_reader, args=(where[movers], barrier, stop, reader_out), name="reader"
    )
    rc.start_all([*procs, reader])
    try:
        rw.join_all(procs, PROCESS_TIMEOUT)
    finally:
        stop.set()
    rw.join_all([reader], PROCESS_TIMEOUT)

    reports = [rw.read_report(out) for out in outs]
    wins = [tuple(w) for r in reports for w in r["wins"]]
    assert sum(len(r["wins"]) + r["conflicts"] for r in reports) == movers * attempts
    assert sum(r["conflicts"] for r in reports) > 0, "the movers never raced"
    # each target is unique, so the winning moves must chain from "1" to the end
    after = dict(wins)
    assert len(after) == len(wins), f"two moves won from one value: {wins}"
    chain, value = ["1"], "1"
    while value in after:
        value = after[value]
        chain.append(value)
    assert len(chain) == len(wins) + 1, f"a winning move was lost: chain {chain}, wins {wins}"

    async def final(reg: AsyncRegistry) -> dict[str, str]:
        return await reg.aliases(lw.NAME)

    backend = rw.make_backend(where[0])
    assert rc.run(final, backend, cache_dir=tmp_path / "check") == {lw.ALIAS: chain[-1]}

    read = rw.read_report(reader_out)
    assert read["errors"] == []
    assert read["seen"] and set(read["seen"]) <= set(chain)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", KINDS)
def test_retention_under_concurrent_saves(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    keep, procs_n = 3, 4
    saves = 10 if kind == "local" else 6
    where = where_for(kind, request, tmp_path)

    async def setup(reg: AsyncRegistry) -> None:
        assert await reg.save("race:ckpt", "pinned") == "1"
        await reg.set_alias("race:ckpt", "best", "1")
        await reg.set_retention("race:ckpt", keep_last=keep)

    rc.run(setup, rw.make_backend(where[0]), version_objects=True, cache_dir=tmp_path / "setup")

    ctx = context(kind)
    barrier = ctx.Barrier(procs_n)
    outs = [str(tmp_path / f"saver-{p}.json") for p in range(procs_n)]
    procs = [
        ctx.Process(
            target=lw.retained_saver,
            args=(where[p], p, saves, barrier, outs[p]),
            name=f"saver-{p}",
        )
        for p in range(procs_n)
    ]
    rc.start_all(procs)

    async def watch() -> list[int]:
        """Live versions counted while the savers run (never more than N +
        the aliased one + one save in flight per process)."""
        backend = rw.make_backend(where[0])
        seen: list[int] = []
        try:
            deadline = time.monotonic() + PROCESS_TIMEOUT
            while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
                seen.append(len(await mvcc.live_versions(backend, "race:ckpt")))
                await asyncio.sleep(0.005)
        finally:
            await backend.aclose()
        return seen

    counts = asyncio.run(watch())
    rw.join_all(procs, PROCESS_TIMEOUT)
    assert counts and max(counts) <= keep + 1 + procs_n, counts

    handed_out = [v for out in outs for v in rw.read_report(out)]
    total = procs_n * saves
    assert len(set(handed_out)) == len(handed_out) == total  # no number twice
    assert {int(v) for v in handed_out} == set(range(2, total + 2))

    async def check(reg: AsyncRegistry) -> None:
        newest = [str(v) for v in range(total + 2 - keep, total + 2)]
        assert await reg.list_versions("race:ckpt") == ["1", *newest]  # aliased kept
        assert await reg.load("race:ckpt@best") == "pinned"
        # retired versions are tombstones: their numbers stay taken
        assert await reg.save("race:ckpt", "after") == str(total + 2)

    rc.run(check, rw.make_backend(where[0]), cache_dir=tmp_path / "check")
