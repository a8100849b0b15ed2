"""Crash safety (DESIGN §4, §5; issue 2 "Tests that must exist").

A writer process is killed with SIGKILL, at random moments and at chosen
points of a save; afterwards the registry must hold only complete versions
(every listed version loads with verify="integrity", no metadata without its
files, no torn metadata), and the janitor must clear every leftover: orphan
uuid folders and temp files, only once they are older than the grace period.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry import AsyncRegistry
from registry.backends.local import LocalBackend
from registry.core.types import ObjectMeta, meta_decoder
from registry.exceptions import RegistryObjectNotFound
from registry.materializers.base import hash_file
from tests import race_checks as rc
from tests import race_workers as rw

T = TypeVar("T")
KILL_ROUNDS = 5
SIGKILLED = -signal.SIGKILL


def run(main: Callable[[AsyncRegistry], Awaitable[T]], root: Path, **settings: Any) -> T:
    return rc.run(main, LocalBackend(root), **settings)


def committed_metas(root: Path, name: str) -> list[ObjectMeta]:
    """Read every metadata file of ``name`` straight from disk and check that
    each one is complete and has all its files, with the recorded size and hash."""
    metas: list[ObjectMeta] = []
    folder = root / "meta" / name
    if not folder.is_dir():
        return metas
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):  # temp files: invisible to readers
            continue
        data = path.read_bytes()
        assert data, f"{path} is empty: a torn metadata write (nothing in this test deletes)"
        meta = meta_decoder.decode(data)  # raises on a torn or corrupt file
        if meta.inline is None:
            for rel, entry in meta.files.items():
                artifact = root / "objects" / name / meta.uuid / rel
                assert artifact.is_file(), f"{path} is committed but {artifact} is missing"
                assert hash_file(artifact) == entry, f"{artifact} does not match {path}"
        metas.append(meta)
    return metas


def start(target: Callable[..., None], *args: Any) -> Any:
    proc = rw.spawn_context().Process(target=target, args=args, name=target.__name__)
    proc.start()
    return proc


def wait_for_lines(proc: Any, progress: Path, lines: int, timeout: float = 30.0) -> None:
    """Wait until the writer reported ``lines`` finished saves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress.exists() and progress.read_text().count("\n") >= lines:
            return
        if not proc.is_alive():
            raise AssertionError(f"writer died on its own (exit code {proc.exitcode})")
        time.sleep(0.01)
    proc.kill()
    proc.join(5)
    raise AssertionError(f"writer reported fewer than {lines} saves in {timeout}s: a hang")


def kill(proc: Any) -> None:
    proc.kill()
    proc.join(10)
    assert proc.exitcode == SIGKILLED, f"expected death by SIGKILL, got {proc.exitcode}"


# -- random kills --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_writer_killed_at_random_moments_leaves_registry_consistent(tmp_path: Path) -> None:
    """SIGKILL a writer looping over auto-increment saves (inlined, 200 KiB and
    9 MiB objects) at random moments, several times over one registry."""
    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True)
    rng = random.Random()
    delays: list[float] = []
    reported: dict[str, str] = {}  # version -> tag, for saves that returned
    for round_ in range(KILL_ROUNDS):
        progress = tmp_path / f"progress-{round_}.txt"
        proc = start(rw.crash_writer, str(root), round_, str(progress))
        wait_for_lines(proc, progress, 1)
        delays.append(round(rng.uniform(0.0, 0.4), 3))
        time.sleep(delays[-1])
        kill(proc)
        for line in progress.read_text().splitlines():
            version, tag = line.split()
            assert version not in reported, f"version {version} handed out twice"
            reported[version] = tag
        metas = committed_metas(root, "crash:auto")
        assert len(metas) >= len(reported), f"kill delays {delays}"

    metas = committed_metas(root, "crash:auto")
    by_version = {meta.version: meta for meta in metas}
    # One writer at a time: versions are 1..N with no gap, and every save that
    # returned is there with its own payload (a save is durable when it returns).
    assert sorted(by_version, key=int) == [str(n) for n in range(1, len(metas) + 1)], delays
    for version, tag in reported.items():
        assert by_version[version].metadata == {"tag": tag}, (version, delays)

    async def check(reg: AsyncRegistry) -> tuple[Any, Any, set[str], str]:
        versions = await reg.list_versions("crash:auto")
        assert versions == sorted(by_version, key=int)
        for version in versions:
            obj = await reg.load("crash:auto", version=version, verify="integrity")
            assert rw.check_payload(obj) == by_version[version].metadata["tag"]
        dry = await reg.janitor(grace=0, dry_run=True)
        report = await reg.janitor(grace=0)
        after = {m.uuid for m in committed_metas(root, "crash:auto") if m.inline is None}
        # The registry still works, and takes the next number.
        next_version = await reg.save("crash:auto", b"after the crashes")
        return dry, report, after, next_version

    dry, report, referenced, next_version = run(check, root)
    assert dry.removed == report.removed, delays
    assert rc.temp_files(root, locks=True) == [], delays
    assert rc.folders_on_disk(root, "crash:auto") == referenced, (
        f"unreferenced uuid folders survived the janitor (kill delays {delays})"
    )
    assert next_version == str(len(metas) + 1)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_overwriter_killed_leaves_old_or_new_value(tmp_path: Path) -> None:
    """SIGKILL a writer overwriting a mutable version: the version then holds
    the last returned value or the one in flight, complete, never anything else."""
    root = tmp_path / "registry"

    async def seed(reg: AsyncRegistry) -> str:
        return await reg.save("crash:mutable", rw.overwrite_payload(0))

    run(seed, root, mutable=True)
    rng = random.Random()
    delays: list[float] = []
    done = 0  # greatest counter whose save returned
    for round_ in range(KILL_ROUNDS):
        progress = tmp_path / f"progress-{round_}.txt"
        proc = start(rw.crash_overwriter, str(root), done + 1, str(progress))
        wait_for_lines(proc, progress, 1)
        delays.append(round(rng.uniform(0.0, 0.3), 3))
        time.sleep(delays[-1])
        kill(proc)
        done = max([done, *(int(line) for line in progress.read_text().split())])

        async def current(reg: AsyncRegistry) -> int:
            return int(rw.check_payload(await reg.load("crash:mutable", verify="integrity")))

        value = run(current, root)
        assert value in (done, done + 1), f"holds {value}, last returned {done}; {delays}"
        (meta,) = committed_metas(root, "crash:mutable")
        done = value

    async def clean(reg: AsyncRegistry) -> Any:
        return await reg.janitor(grace=0)

    run(clean, root)
    assert rc.temp_files(root, locks=True) == [], delays
    assert rc.folders_on_disk(root, "crash:mutable") == (
        {meta.uuid} if meta.inline is None else set()
    )


# -- chosen crash points ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", rw.CRASH_POINTS)
def test_crash_at_a_chosen_point_leaves_nothing_visible(tmp_path: Path, point: str) -> None:
    """Kill a save at a precise point; nothing is visible, the janitor keeps the
    leftovers while young, reports them in a dry run and removes them at grace=0."""
    root = tmp_path / "registry"
    name = "crash:point"

    async def setup(reg: AsyncRegistry) -> str:
        return await reg.save("keep", rw.make_payload("keep", 200 * rw.KIB))

    run(setup, root, version_objects=True)
    proc = start(rw.die_at, str(root), point, name, 200 * rw.KIB)
    proc.join(rw.PROCESS_TIMEOUT)
    if proc.is_alive():
        kill(proc)
        raise AssertionError(f"the save did not reach crash point {point}")
    assert proc.exitcode == SIGKILLED, f"expected death by SIGKILL, got {proc.exitcode}"

    leftovers = rc.folders_on_disk(root, name)
    assert len(leftovers) == 1, leftovers  # the artifacts were being written
    (leftover,) = leftovers
    temps = rc.temp_files(root, locks=True)
    if point == "before-commit":
        assert temps == []
        assert (root / "objects" / name / leftover / "data.bin").is_file()
    else:
        assert len(temps) == 1, temps
        folder = "meta" if point == "during-meta-write" else "objects"
        assert Path(temps[0]).relative_to(root).parts[0] == folder

    async def check(reg: AsyncRegistry) -> list[Any]:
        assert await reg.list_objects() == ["keep"]
        assert not await reg.has_object(name)
        assert await reg.list_versions(name) == []
        with pytest.raises(RegistryObjectNotFound):
            await reg.load(name)
        return [
            await reg.janitor(grace=3600),
            await reg.janitor(grace=0, dry_run=True),
        ]

    young, dry = run(check, root)
    assert young.removed == [] and young.temp_files == 0
    assert rc.folders_on_disk(root, name) == {leftover}
    assert rc.temp_files(root, locks=True) == temps
    folder_key = f"objects/{name}/{leftover}"
    if point == "during-artifact-write":
        # The folder holds only a temp file: whether the janitor reports the
        # folder itself or only the temp file is its choice.
        allowed: list[list[str]] = [[], [folder_key]]
    else:
        allowed = [[folder_key]]
        assert young.kept_recent == 1
    assert dry.dry_run and dry.removed in allowed and dry.temp_files == len(temps)
    assert rc.folders_on_disk(root, name) == {leftover}  # a dry run removes nothing
    assert rc.temp_files(root, locks=True) == temps

    async def clean(reg: AsyncRegistry) -> tuple[Any, str, bytes]:
        report = await reg.janitor(grace=0)
        # Nothing was committed, so the number is still free.
        version = await reg.save(name, b"second try")
        return report, version, await reg.load("keep")

    report, version, kept = run(clean, root)
    assert report.removed in allowed and report.temp_files == len(temps)
    assert rc.temp_files(root, locks=True) == []
    assert rw.check_payload(kept) == "keep"
    assert version == "1"
    assert rc.folders_on_disk(root, name) == set(), (
        f"uuid folder left behind after a crash at {point}"
    )


@pytest.mark.parametrize("shape", ["complete", "partial", "empty"])
def test_hand_written_orphan_folder(tmp_path: Path, shape: str) -> None:
    """A uuid folder written without metadata (a crash between artifacts and
    commit) is invisible and is removed only once older than the grace period."""
    root = tmp_path / "registry"

    async def setup(reg: AsyncRegistry) -> str:
        return await reg.save("keep", rw.make_payload("keep", 200 * rw.KIB))

    run(setup, root, version_objects=True)
    orphans = {
        "ghost": uuidlib.uuid4().hex,  # a name with no version at all
        "keep": uuidlib.uuid4().hex,  # an extra folder next to a committed version
    }
    for name, uid in orphans.items():
        folder = root / "objects" / name / uid
        folder.mkdir(parents=True)
        if shape == "complete":
            (folder / "data.bin").write_bytes(rw.make_payload(name, 100 * rw.KIB))
        elif shape == "partial":
            (folder / "data.bin").write_bytes(rw.make_payload(name, 100 * rw.KIB)[:5000])
    expected = sorted(f"objects/{name}/{uid}" for name, uid in orphans.items())

    async def check(reg: AsyncRegistry) -> list[Any]:
        assert await reg.list_objects() == ["keep"]
        assert not await reg.has_object("ghost")
        assert "ghost" not in (await reg.info())
        assert rw.check_payload(await reg.load("keep")) == "keep"

        def all_there() -> bool:
            return all(uid in rc.folders_on_disk(root, name) for name, uid in orphans.items())

        young = await reg.janitor(grace=3600)
        assert all_there(), "the janitor removed a folder younger than the grace period"
        dry = await reg.janitor(grace=0, dry_run=True)
        assert all_there(), "a dry run removed a folder"
        return [young, dry, await reg.janitor(grace=0)]

    young, dry, report = run(check, root)
    assert young.removed == []
    assert dry.dry_run and not report.dry_run
    if shape == "empty":
        # No file to list: the janitor may or may not name the folder.
        assert dry.removed in ([], expected) and report.removed in ([], expected)
    else:
        assert young.kept_recent == len(orphans)
        assert dry.removed == expected and report.removed == expected
    for name, uid in orphans.items():
        assert uid not in rc.folders_on_disk(root, name), f"{shape} orphan folder {name}/{uid} left"
    assert len(rc.folders_on_disk(root, "keep")) == 1  # the committed one

    async def still_fine(reg: AsyncRegistry) -> bytes:
        return await reg.load("keep", verify="integrity")

    assert rw.check_payload(run(still_fine, root)) == "keep"


def test_old_orphan_is_removed_by_the_default_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Age is when a file was last written (mtime or ctime): a materializer
    that copies with copy2 keeps the source's old mtime, but its folder is
    young and must survive; an orphan older than the grace goes."""
    import registry.core.janitor as janitor_module

    root = tmp_path / "registry"
    run(lambda reg: reg.list_objects(), root, version_objects=True)
    old = root / "objects" / "ghost" / uuidlib.uuid4().hex
    young = root / "objects" / "ghost" / uuidlib.uuid4().hex
    old.mkdir(parents=True)
    (old / "data.bin").write_bytes(b"x" * 1000)
    time.sleep(1.2)
    young.mkdir(parents=True)
    (young / "data.bin").write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(young / "data.bin", (two_hours_ago, two_hours_ago))  # like shutil.copy2

    # An hour (minus 0.6 s) later: `old` is past the default grace, `young` not.
    later = time.time() + 3600 - 0.6
    monkeypatch.setattr(janitor_module.time, "time", lambda: later)

    async def clean(reg: AsyncRegistry) -> Any:
        return await reg.janitor()

    report = run(clean, root)
    assert report.removed == [f"objects/ghost/{old.name}"]
    assert report.kept_recent == 1
    assert rc.folders_on_disk(root, "ghost") == {young.name}
