"""The per-name head (core/heads.py): "latest" and auto-increment in O(1)
requests, and always right when the head lags, is missing, is damaged or
points at a version that never committed."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry import AsyncRegistry
from registry.backends import local
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend
from registry.core.layout import head_key
from registry.core.versions import Version
from registry.exceptions import ObjectNotFound
from registry.testing.counting import CountingBackend
from tests import race_checks as rc
from tests import race_workers as rw

T = TypeVar("T")
SIGKILLED = -9


def run(backend: Backend, main: Callable[[AsyncRegistry], Awaitable[T]]) -> T:
    return rc.run(main, backend, version_objects=True)


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return LocalBackend(tmp_path / "registry")
    return MemoryBackend()


async def head_top(backend: Backend, name: str) -> str:
    return str(json.loads(await backend.get(head_key(name)))["top"])


async def set_head(backend: Backend, name: str, top: str) -> None:
    await backend.put(head_key(name), json.dumps({"top": top}).encode())


async def make_legacy(backend: Backend) -> None:
    """Mark the registry as written before heads existed (no ``heads`` flag)."""
    settings = json.loads(await backend.get("_registry.json"))
    settings.pop("heads", None)
    await backend.put("_registry.json", json.dumps(settings).encode())


async def save_auto(reg: AsyncRegistry, name: str, n: int) -> list[str]:
    return [await reg.save(name, f"v{i}") for i in range(n)]


async def assert_head_near(backend: Backend, name: str, latest: str) -> None:
    """The head is at ``latest``, or behind it by fewer auto-increment numbers
    than the backend's slack (1 on memory: exactly there; missing counts as 0)."""
    try:
        top: Version | None = Version(await head_top(backend, name))
    except ObjectNotFound:
        top = None
    assert top is None or top <= Version(latest), (top, latest)
    behind = Version(latest).major - (0 if top is None else top.major)
    assert behind < backend.head_slack, f"head {top} is {behind} behind {latest}"


@pytest.fixture
def eager_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local disk writes the head after every auto-increment save, as remote
    stores do: for the tests of what happens around that write."""
    monkeypatch.setattr(local, "HEAD_SLACK", 1)


def test_saves_keep_the_head_at_the_greatest_version(backend: Backend) -> None:
    async def main(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 3)
        await assert_head_near(backend, "m", "3")
        await reg.save("m", "x", version="3.5")  # explicit, above: raises the head
        assert await head_top(backend, "m") == "3.5"
        await reg.save("m", "y", version="2.1")  # below: leaves it
        assert await head_top(backend, "m") == "3.5"
        assert await reg.save("m", "z") == "4"  # major of the head, plus one
        await assert_head_near(backend, "m", "4")
        assert await reg.load("m") == "z"

    run(backend, main)


@pytest.mark.parametrize("behind", [1, 2, 5, 37, 100])
def test_a_head_that_lags_is_probed_past(backend: Backend, behind: int) -> None:
    """A head left behind by auto-increment saves (a crash, a lost hint swap)
    still gives the true latest and the next free number."""

    async def main(reg: AsyncRegistry) -> None:
        saved = await save_auto(reg, "m", behind + 3)
        await set_head(backend, "m", saved[2])
        assert (await reg.info("m", "latest"))["version"] == saved[-1]
        assert await reg.load("m") == f"v{len(saved) - 1}"
        assert await reg.has_object("m")
        assert await reg.save("m", "next") == str(len(saved) + 1)
        assert await reg.load("m") == "next"

    run(backend, main)


@pytest.mark.parametrize("damage", ["missing", "unreadable", "empty"])
def test_a_missing_or_damaged_head_is_rebuilt_from_a_listing(backend: Backend, damage: str) -> None:
    """Registries written before heads existed, or copied without them."""

    async def setup(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 4)
        await reg.save("m", "pinned", version="4.2")
        await reg.delete("m", version="4.2")  # a tombstone above: its number stays taken
        if damage == "missing":
            await backend.delete([head_key("m")])
            await make_legacy(backend)
        else:
            await backend.put(head_key("m"), b"{not json" if damage == "unreadable" else b"")

    async def main(reg: AsyncRegistry) -> None:
        assert await reg.load("m") == "v3"
        assert await head_top(backend, "m") == "4.2"  # rebuilt, tombstones included
        assert await reg.save("m", "five") == "5"

    run(backend, setup)
    run(backend, main)


def test_a_registry_with_heads_never_lists_for_a_missing_one(tmp_path: Path) -> None:
    """Created with heads: a name without one has only auto-increment numbers
    (an explicit save creates the head before it commits), found by probing."""
    counting = CountingBackend(LocalBackend(tmp_path / "registry"))

    async def main(reg: AsyncRegistry) -> None:
        assert not await reg.has_object("new")
        await reg.save("new", "a", version="1.5")  # a new name: the head created blind
        await save_auto(reg, "auto", 3)
        await counting.delete([head_key("auto")])  # as if its saver died before creating it
        assert await reg.load("auto") == "v2"
        assert await head_top(counting, "auto") == "3"  # created by the read
        assert await reg.load("new") == "a"
        assert counting.counts["list"] == 1  # the retention policies, once: no name listed

    rc.run(main, counting, version_objects=True)


def test_auto_increment_on_a_missing_head_counts_what_is_stored(backend: Backend) -> None:
    async def main(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 3)
        await backend.delete([head_key("m")])
        assert await reg.save("m", "four") == "4"
        await assert_head_near(backend, "m", "4")

    run(backend, main)


def test_explicit_save_on_a_missing_head_never_lowers_it(backend: Backend) -> None:
    async def setup(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 6)
        await backend.delete([head_key("m")])
        await make_legacy(backend)

    async def main(reg: AsyncRegistry) -> None:  # a new loop: nothing known of the head
        await reg.save("m", "old", version="2.5")
        assert await head_top(backend, "m") == "6"
        assert await reg.load("m") == "v5"

    run(backend, setup)
    run(backend, main)


def test_explicit_saves_of_one_name_in_a_batch_raise_the_head_once(tmp_path: Path) -> None:
    counting = CountingBackend(MemoryBackend(), remote=True)

    async def main(reg: AsyncRegistry) -> None:
        await reg.save("m", "first", version="1")
        counting.reset()
        versions = [f"2.{i}" for i in range(1, 21)]
        saved = await reg.save(["m"] * 20, [f"v{v}" for v in versions], version=versions)
        assert saved.ok, saved.errors
        assert counting.counts["put"] == 20 + 1  # the commits, and the head once
        assert await head_top(counting, "m") == "2.20"
        assert await reg.load("m") == "v2.20"

    rc.run(main, counting, version_objects=True, cache_dir=tmp_path / "cache")


def test_a_head_pointing_at_a_version_that_never_committed(backend: Backend) -> None:
    """An explicit save raises the head before its commit; if it dies between
    the two, readers fall back to the listing and numbers stay unique."""

    async def main(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 3)
        await set_head(backend, "m", "9")  # the save of "9" never committed
        assert await reg.load("m") == "v2"
        assert (await reg.info("m", "latest"))["version"] == "3"
        assert await reg.save("m", "ten") == "10"
        assert await reg.load("m") == "ten"

    run(backend, main)


def test_deleting_the_latest_falls_back_to_the_one_below(backend: Backend) -> None:
    async def main(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 3)
        await reg.delete("m", version="3")
        assert await reg.load("m") == "v1"
        assert await reg.has_object("m")
        assert await reg.save("m", "four") == "4"  # the deleted number is not reused
        await reg.delete("m")
        assert not await reg.has_object("m")

    run(backend, main)


def test_a_release_saved_from_an_older_head_beats_its_prerelease(backend: Backend) -> None:
    """Head "2-rc.1": a writer that read head "1" claims "2", which sorts above."""

    async def main(reg: AsyncRegistry) -> None:
        await save_auto(reg, "m", 1)
        await reg.save("m", "rc", version="2-rc.1")
        await reg.save("m", "two", version="2")  # what that writer committed
        await set_head(backend, "m", "2-rc.1")
        assert await reg.load("m") == "two"

    run(backend, main)


def test_latest_and_auto_increment_cost_the_same_at_any_number_of_versions(
    tmp_path: Path,
) -> None:
    """Counted backend calls: a name with 1,500 versions costs what a name with
    one does (the listing they replace grew with the versions)."""
    counting = CountingBackend(LocalBackend(tmp_path / "registry"))
    # Resolve from the head every time: a name whose folder has been quiet
    # for a second is remembered (test_latest_memo.py), and "one" may be.
    counting.folder_stamp = lambda prefix: None  # type: ignore[method-assign]

    async def main(reg: AsyncRegistry) -> dict[str, list[int]]:
        await reg.save("one", "only")
        many = await reg.save(["many"] * 1500, [f"v{i}" for i in range(1500)])
        assert many.ok, many.errors
        await reg.load("many")  # the batch's racing saves left the head behind: a read fixes it
        costs: dict[str, list[int]] = {}
        operations: dict[str, Callable[[str], Awaitable[Any]]] = {
            "load latest": lambda n: reg.load(n),
            "has_object": lambda n: reg.has_object(n),
            "info latest": lambda n: reg.info(n, "latest"),
            "auto save": lambda n: reg.save(n, "more"),
        }
        for label, operation in operations.items():
            for name in ("one", "many"):
                counting.reset()
                await operation(name)
                costs.setdefault(label, []).append(sum(counting.counts.values()))
        return costs

    costs = run(counting, main)
    for label, (one, many) in costs.items():
        assert many == one, f"{label}: {one} calls for 1 version, {many} for 1,501"
        assert one <= 5, f"{label}: {one} calls"


@pytest.mark.usefixtures("eager_heads")  # and the worker writes it eagerly too
def test_an_auto_save_killed_before_its_head_moves(tmp_path: Path) -> None:
    """SIGKILL after the commit, before the head follows: the version is
    there, it is the latest, and the next number comes after it."""
    root = tmp_path / "registry"
    backend = LocalBackend(root)
    run(backend, lambda reg: save_auto(reg, "m", 2))
    proc = rw.spawn_context().Process(target=rw.die_before_head, args=(str(root), "m"))
    proc.start()
    proc.join(rw.PROCESS_TIMEOUT)
    assert proc.exitcode == SIGKILLED, proc.exitcode

    async def check(reg: AsyncRegistry) -> None:
        assert await head_top(backend, "m") == "2"  # behind: the process died first
        assert await reg.load("m") == "committed, head behind"
        assert await reg.save("m", "four") == "4"
        assert await head_top(backend, "m") == "4"

    run(backend, check)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_auto_and_explicit_saves_racing_across_processes(tmp_path: Path) -> None:
    """4 processes, two auto-incrementing and two saving explicit versions
    above the latest they read: after every save the latest is at least the
    version saved, and at the end it is the greatest of all."""
    root = tmp_path / "registry"
    backend = LocalBackend(root)
    run(backend, lambda reg: reg.list_objects())
    procs_n, saves = 4, 15
    args = [(rw.local(root), p, saves) for p in range(procs_n)]
    outs = rc.race(rw.spawn_context(), rw.head_racer, args, tmp_path, "racer")
    saved = [version for out in outs for version, _ in rw.read_report(out)]
    assert len(saved) == len(set(saved)) == procs_n * saves
    autos = sorted(int(v) for v in saved if "." not in v)
    assert autos == list(range(1, len(autos) + 1))  # unique and unbroken

    async def check(reg: AsyncRegistry) -> None:
        stored = await reg.list_versions("race:head")
        assert sorted(stored, key=Version) == sorted(saved, key=Version)
        greatest = max(saved, key=Version)
        assert (await reg.info("race:head", "latest"))["version"] == greatest

    run(backend, check)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_first_saves_of_new_names_racing_across_processes(tmp_path: Path) -> None:
    """Version "1" commits without a head (mvcc.commit_explicit): 6 processes
    race the first saves of 20 new names, explicit "1", auto-increment and
    explicit "0.5" (which creates the head below "1"). One save gets 1, the
    auto numbers are unbroken, every saver then reads a latest at least its
    version, and at the end latest is the greatest stored."""
    root = tmp_path / "registry"
    backend = LocalBackend(root)
    run(backend, lambda reg: reg.list_objects())
    procs_n, names = 6, 20
    args = [(rw.local(root), p, names) for p in range(procs_n)]
    outs = rc.race(rw.spawn_context(), rw.first_racer, args, tmp_path, "first")
    by_name: dict[str, list[str]] = {}
    for proc, out in enumerate(outs):
        for name, version, _ in rw.read_report(out):
            by_name.setdefault(name, []).append(version)
            if version == "conflict":
                assert proc % 3 != 1  # auto-increment never conflicts
    assert len(by_name) == names
    for name, outcomes in by_name.items():
        saved = [v for v in outcomes if v != "conflict"]
        assert saved.count("1") == 1, (name, outcomes)  # explicit or auto, once
        assert saved.count("0.5") == 1, (name, outcomes)  # the other "0.5" conflicts
        autos = sorted(int(v) for v in saved if v != "0.5")
        assert autos == list(range(1, len(autos) + 1)), (name, outcomes)

        async def check(reg: AsyncRegistry, name: str = name, saved: list[str] = saved) -> None:
            assert sorted(await reg.list_versions(name), key=Version) == sorted(saved, key=Version)
            latest = (await reg.info(name, "latest"))["version"]
            assert latest == max(saved, key=Version)

        run(backend, check)


@pytest.mark.usefixtures("eager_heads")  # the reader writes the head at once
def test_version_1_raises_no_head_and_latest_finds_it(backend: Backend) -> None:
    counting = CountingBackend(backend)

    async def main(reg: AsyncRegistry) -> None:
        counting.reset()
        assert await reg.save("m", "one", version="1.0.0") == "1.0.0"
        assert counting.counts["put"] == 1  # the commit alone
        with pytest.raises(ObjectNotFound):
            await counting.get(head_key("m"))
        assert await reg.load("m") == "one"  # probed from 1; the head is written
        assert await head_top(counting, "m") == "1"
        assert await reg.save("m", "auto") == "2"
        assert await reg.save("n", "half", version="0.5") == "0.5"  # the head is created...
        assert await reg.save("n", "one", version="1") == "1"  # ...and stays below "1"
        assert await head_top(counting, "n") == "0.5"
        assert await reg.load("n") == "one"
        assert await reg.save("n", "auto") == "2"

    run(counting, main)


@pytest.mark.usefixtures("eager_heads")
def test_head_write_is_a_hint_on_local_disk(tmp_path: Path) -> None:
    """Auto-increment moves the head without an fsync; explicit saves raise it
    durably (it must be on disk before their commit)."""
    import os

    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    backend = LocalBackend(tmp_path / "registry")
    run(backend, lambda reg: save_auto(reg, "m", 2))

    async def main(reg: AsyncRegistry) -> tuple[int, int]:
        calls.clear()
        await reg.save("m", "auto")
        auto = len(calls)
        calls.clear()
        await reg.save("m", "explicit", version="7")
        return auto, len(calls)

    os.fsync = counting
    try:
        auto, explicit = run(backend, main)
    finally:
        os.fsync = real
    assert auto == 2  # the metadata file and its folder
    assert explicit == 4  # the head first, then the metadata


def test_concurrent_auto_saves_in_one_loop_leave_a_consistent_head() -> None:
    backend = MemoryBackend()

    async def main(reg: AsyncRegistry) -> None:
        result = await reg.save(["m"] * 40, [f"v{i}" for i in range(40)])
        assert result.ok
        assert await reg.save("m", "last") == "41"
        assert await head_top(backend, "m") == "41"  # a lone save brings it up to date
        assert await reg.load("m") == "last"

    run(backend, main)


def test_local_heads_are_written_once_they_lag_by_the_slack(tmp_path: Path) -> None:
    """On local disk an auto-increment save probes past the run (a stat per
    number) and writes the head only every HEAD_SLACK numbers; the versions
    handed out and the latest are the same as with a head kept current."""
    backend = LocalBackend(tmp_path / "registry")
    slack = local.HEAD_SLACK
    assert backend.head_slack == slack > 1

    async def main(reg: AsyncRegistry) -> None:
        for i in range(2 * slack + 1):
            assert await reg.save("m", f"v{i}") == str(i + 1)
            assert await reg.load("m") == f"v{i}"
            expected = (i + 1) // slack * slack  # the last multiple of the slack reached
            if expected == 0:
                assert not await backend.head(head_key("m")), "written before it lagged"
            else:
                assert await head_top(backend, "m") == str(expected)

    run(backend, main)


def test_a_reader_writes_a_local_head_only_once_it_lags_by_the_slack(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "registry")
    slack = local.HEAD_SLACK

    async def main(reg: AsyncRegistry) -> None:
        saved = await save_auto(reg, "m", slack + 3)
        assert await head_top(backend, "m") == str(slack)
        assert (await reg.info("m", "latest"))["version"] == saved[-1]
        assert await head_top(backend, "m") == str(slack)  # 3 behind: left alone
        await set_head(backend, "m", "1")  # now slack + 2 behind
        assert await reg.load("m") == f"v{slack + 2}"
        assert await head_top(backend, "m") == saved[-1]  # brought up by the reader

    run(backend, main)
