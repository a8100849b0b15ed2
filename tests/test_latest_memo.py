"""The memo of each name's latest version (core/mvcc.py ``_latest``): a
repeated "latest" of a settled name on local disk reads only the metadata,
and any change to the name's versions, by this process or another, is seen."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from registry import AsyncRegistry
from registry.backends.local import LocalBackend
from registry.testing.counting import CountingBackend
from tests import race_checks as rc
from tests import race_workers as rw

SETTLE = 1.1  # a folder unchanged this long has a stamp (local_folders.SETTLED_NS)


def test_a_settled_name_costs_one_read_and_every_change_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    counting = CountingBackend(LocalBackend(root))

    async def main(reg: AsyncRegistry) -> None:
        async with AsyncRegistry(root, version_objects=True) as other:
            for name in ("saved", "deleted", "raised", "kept"):
                await reg.save(name, f"{name}-1")
                await reg.save(name, f"{name}-2")
            await asyncio.sleep(SETTLE)
            for name in ("saved", "deleted", "raised", "kept"):
                assert await reg.load(name) == f"{name}-2"  # remembered now
            counting.reset()
            assert await reg.load("kept") == "kept-2"
            assert dict(counting.counts) == {"get": 1}  # the metadata: no head, no probe

            # Changes by another registry (its own backend object), then quiet
            # again, so that the folders have settled stamps once more.
            assert await other.save("saved", "saved-3") == "3"
            await other.delete("deleted", version="2")
            assert await other.save("raised", "raised-10", version="10") == "10"
            await asyncio.sleep(SETTLE)
            assert await reg.load("saved") == "saved-3"
            assert await reg.load("deleted") == "deleted-1"
            assert await reg.load("raised") == "raised-10"
            assert await reg.load("kept") == "kept-2"

    rc.run(main, counting, version_objects=True)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_reader_never_returns_a_version_older_than_a_finished_save(tmp_path: Path) -> None:
    """A writer process saves every 1.2 s (so the name's folder settles and the
    reader's memo is in use between saves) while a reader process loads the
    latest back to back: no load that started after a save returned gives an
    older value."""
    root = tmp_path / "registry"
    rc.run(lambda reg: reg.save("race:spaced", -1), LocalBackend(root), version_objects=True)
    ctx = rw.spawn_context()
    barrier, stop = ctx.Barrier(2), ctx.Event()
    writer_out, reader_out = str(tmp_path / "writer.json"), str(tmp_path / "reader.json")
    saves = 3
    writer = ctx.Process(
        target=rw.spaced_saver, args=(rw.local(root), saves, 1.2, barrier, writer_out)
    )
    reader = ctx.Process(target=rw.latest_reader, args=(rw.local(root), barrier, stop, reader_out))
    rc.start_all([writer, reader])
    try:
        rw.join_all([writer])
        time.sleep(0.2)  # the reader sees the last value for a while too
    finally:
        stop.set()
    rw.join_all([reader])
    saved = {int(i): when for i, when in rw.read_report(writer_out)}
    seen = {int(value): last for value, last in rw.read_report(reader_out).items()}
    assert set(saved) == set(range(saves))
    assert saves - 1 in seen, seen
    for value, last_start in seen.items():
        newer = [i for i, when in saved.items() if i > value and when < last_start]
        assert not newer, f"a load started after save {newer} returned gave {value}"
