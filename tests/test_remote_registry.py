"""The registry on every remote target (moto, SeaweedFS, fake-gcs): races, faults,
stale etags, request counts.

The scenarios of tests/test_races.py across processes that share nothing but
a bucket (each builds its backend from plain configuration and has its own
cache folder); a server killed in the middle of a batch and restarted;
damaged objects on the server; registry-level compare-and-swaps that lose to
a stale etag or generation, so a server that ignored the precondition would
be caught; and the number of backend calls (and of HTTP requests) a save and
a load cost. What differs between servers is in their target's quirks
(tests/targets/); what only one server has is in tests/test_remote_<server>.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend, FileInfo, PutMode
from registry.core.layout import SETTINGS_KEY, meta_key
from registry.core.versions import Version
from registry.exceptions import (
    BackendError,
    PreconditionFailed,
    RegistryCorruptMetadata,
    RegistryIntegrityError,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)
from registry.testing.counting import CountingBackend
from tests import race_checks as rc
from tests import race_workers as rw
from tests.servers import ServerProcess, prepare_bucket
from tests.targets import QUIRKS, REMOTE, Damage, HttpLog, Quirks, Target

KIB = 1024
MIB = 1024 * KIB
# every worker process is joined within this, or killed and the test failed (a
# quiet 2-core machine needs ~12 s for the slowest race, moto's 4 x 25)
PROCESS_TIMEOUT = 60.0
PICKLE_MATERIALIZER = "registry.materializers.builtin.PickleMaterializer"


@pytest.fixture(scope="module", params=REMOTE)
def target(request: pytest.FixtureRequest) -> Target:
    """Each session server in turn, with a bucket of this module's own (listings
    here would otherwise slow down with everything the suite stored before)."""
    session: Target = request.getfixturevalue(f"{request.param}_target")
    return session.with_own_bucket()


# -- races across processes ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_auto_increment_across_processes(target: Target, tmp_path: Path) -> None:
    """N processes x M auto-increment saves of one name (moto and fake-gcs 4 x 25,
    SeaweedFS 4 x 10): N*M distinct versions, each holding the payload its save
    reported, none uploaded twice."""
    procs_n, saves = target.quirks.auto_procs, target.quirks.auto_saves
    prefix = f"race-auto-{uuid.uuid4().hex}"
    where = [target.worker_config(prefix, str(tmp_path / f"cache-{p}")) for p in range(procs_n)]
    backend = rw.make_backend(where[0])
    # the backend pickles as its configuration: nothing of a client crosses processes
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.identity, clone._runtime) == (backend.identity, {})
    rc.run(lambda reg: reg.list_objects(), backend, version_objects=True, cache_dir=tmp_path / "c")

    args = [(where[p], p, saves) for p in range(procs_n)]
    outs = rc.race(rw.worker_context(), rw.auto_saver, args, tmp_path, "saver", PROCESS_TIMEOUT)
    returned = rc.versions_handed_out(outs, procs_n, saves, min_switches=procs_n)

    async def check(reg: AsyncRegistry) -> None:
        referenced = await rc.check_auto_versions(reg, returned)
        # a lost claim re-writes only the metadata: no folder was uploaded twice
        assert await rc.stored_uuid_folders(reg.backend, "race:auto") == referenced

    # a cold cache: everything comes from the server
    rc.run(check, target.backend(prefix), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_same_explicit_version_one_winner(target: Target, tmp_path: Path) -> None:
    """N processes (8; SeaweedFS 4) save version "1.0.0" of an immutable registry
    with a 200 KiB payload (a uuid folder each): one winner, N-1 conflicts, the
    winner's bytes stored, and only the winner's folder left after janitor(grace=0)."""
    writers, size = target.quirks.explicit_writers, 200 * KIB
    prefix = f"race-explicit-{uuid.uuid4().hex}"
    rc.run(
        lambda reg: reg.list_objects(),
        target.backend(prefix),
        version_objects=True,
        mutable=False,
        cache_dir=tmp_path / "c",
    )
    args = [
        (target.worker_config(prefix, str(tmp_path / f"cache-{p}")), p, size)
        for p in range(writers)
    ]
    outs = rc.race(
        rw.worker_context(), rw.explicit_saver, args, tmp_path, "writer", PROCESS_TIMEOUT
    )
    winner = rc.one_winner(outs, writers)
    expected = rw.make_payload(f"writer-{winner}", size)

    async def check(reg: AsyncRegistry) -> None:
        uid = await rc.check_explicit_winner(reg, expected)
        # the losers deleted their own folders already; the janitor finds nothing
        assert await rc.stored_uuid_folders(reg.backend, "race:explicit") == {uid}
        report = await reg.janitor(grace=0)
        assert report.removed == []
        assert await rc.stored_uuid_folders(reg.backend, "race:explicit") == {uid}
        assert await reg.load("race:explicit", version="1", verify="full") == expected

    rc.run(check, target.backend(prefix), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_reader_never_sees_a_torn_overwrite(target: Target, tmp_path: Path) -> None:
    """A reader process loops over load(verify="full") while a writer process
    overwrites a mutable version 30 times (100-300 KiB values with uuid folders
    and inlined small ones): every read is a complete old or new value, never
    older than the previous read, and nothing errors."""
    overwrites = 30
    prefix = f"race-mutable-{uuid.uuid4().hex}"

    async def seed(reg: AsyncRegistry) -> str:
        return await reg.save("race:mutable", rw.overwrite_payload(0))

    seeded = rc.run(seed, target.backend(prefix), mutable=True, cache_dir=tmp_path / "c")
    assert seeded == "1"
    writer_out, reader_out, _ = rc.overwrite_while_reading(
        rw.worker_context(),
        target.worker_config(prefix, str(tmp_path / "writer-cache")),
        target.worker_config(prefix, str(tmp_path / "reader-cache")),
        overwrites,
        tmp_path,
        verify="full",
        timeout=PROCESS_TIMEOUT,
        stop_within=20.0,
    )
    # measured: 33-52 loads, 23-31 distinct values per run
    rc.check_reads(writer_out, reader_out, overwrites, min_loads=12, min_distinct=6)

    async def finish(reg: AsyncRegistry) -> None:
        await rc.check_last_overwrite(reg, overwrites)

    rc.run(finish, target.backend(prefix), cache_dir=tmp_path / "check-cache")


# -- faults: a server killed in the middle of a batch --------------------------------------


@dataclass(frozen=True)
class OwnServer:
    server: ServerProcess
    quirks: Quirks


@pytest.fixture(params=REMOTE)
def own_server(request: pytest.FixtureRequest) -> Iterator[OwnServer]:
    """A server of this test alone, like the target's, to kill and restart on
    the same ports (and data folder: fake-gcs here runs on its filesystem
    backend; moto keeps data in memory only, so it comes back empty)."""
    quirks = QUIRKS[request.param]
    assert quirks.own_server is not None
    server = quirks.own_server()
    try:
        yield OwnServer(server, quirks)
    finally:
        server.close(grace=0.5)  # a throwaway server: no need to wait


class KillMidBatch(CountingBackend):
    """Passes calls through; once ``after`` saves have committed, kills the server
    right after the next artifact upload completes. That save's folder is then on
    the server but its commit can never happen (``orphan``), and the other saves
    of the batch are caught mid-upload or mid-commit."""

    def __init__(self, inner: Backend, server: ServerProcess, after: int) -> None:
        super().__init__(inner)
        self.server = server
        self.after = after
        self.commits = 0
        self.orphan: tuple[str, str] | None = None  # (name, uuid)

    def _written(self, key: str, mode: PutMode) -> None:
        if key.startswith("meta/") and mode == "create":
            self.commits += 1
        elif key.startswith("objects/") and self.commits >= self.after and self.orphan is None:
            _, name, uid, _ = key.split("/", 3)
            self.orphan = (name, uid)
            self.server.kill()

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        info = await super().put(key, data, mode=mode, if_match=if_match)
        self._written(key, mode)
        return info

    async def put_file(self, key: str, src: Path, *, mode: PutMode = "overwrite") -> FileInfo:
        info = await super().put_file(key, src, mode=mode)
        self._written(key, mode)
        return info


def fault_payload(i: int) -> bytes:
    """Every fourth item is small (inlined in its metadata), the rest 100 KiB."""
    return rw.make_payload(f"item-{i}", 300 + i if i % 4 == 3 else 100 * KIB)


async def check_consistent_after_restart(
    reg: AsyncRegistry,
    names: list[str],
    payloads: list[bytes],
    succeeded: set[int],
    orphan: tuple[str, str],
) -> set[str]:
    """On a server that kept its data: every save the client saw succeed is
    there; a failed one is absent, or complete if its commit landed just before
    the server died (an ambiguous write); the janitor removes exactly the
    uncommitted folders. Returns the names visible."""
    visible = set(await reg.list_objects())
    assert {names[i] for i in succeeded} <= visible
    assert visible <= set(names)
    for i, name in enumerate(names):
        if name in visible:
            assert await reg.load(name, verify="full") == payloads[i]
        else:
            assert not await reg.has_object(name)
            with pytest.raises(RegistryObjectNotFound):
                await reg.load(name, version="1", verify="full")
    referenced: set[tuple[str, str]] = set()
    stored: set[tuple[str, str]] = set()
    for name in names:
        referenced |= {(name, u) for u in await rc.referenced_uuids(reg, name)}
        stored |= {(name, u) for u in await rc.stored_uuid_folders(reg.backend, name)}
    assert referenced <= stored
    assert orphan in stored - referenced
    report = await reg.janitor(grace=0)
    assert sorted(report.removed) == sorted(
        f"objects/{name}/{uid}" for name, uid in stored - referenced
    )
    after: set[tuple[str, str]] = set()
    for name in names:
        after |= {(name, u) for u in await rc.stored_uuid_folders(reg.backend, name)}
    assert after == referenced
    assert (await reg.janitor(grace=0)).removed == []
    return visible


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_server_killed_mid_batch(own_server: OwnServer, tmp_path: Path) -> None:
    """The server is SIGKILLed once 8 of 24 saves of a batch have committed (right
    after another save uploaded its artifact): the batch returns promptly with a
    per-item error for every save that did not finish; after a restart nothing
    half-committed is readable, the registry is consistent and usable, and the
    janitor removes the uncommitted folders."""
    server, n, kill_after = own_server.server, 24, 8
    bound = own_server.quirks.dead_server_bound
    bucket, prefix = f"fault-{uuid.uuid4().hex[:12]}", "reg"
    server.start()
    prepare_bucket(server, bucket)
    names = [f"fault-{i}" for i in range(n)]
    payloads = [fault_payload(i) for i in range(n)]
    cache_dir = tmp_path / "cache"

    def backend() -> Backend:
        return server.backend(bucket, prefix=prefix, concurrency=8)

    async def batch() -> tuple[Any, float, tuple[str, str] | None]:
        wrapped = KillMidBatch(backend(), server, kill_after)
        async with AsyncRegistry(backend=wrapped, version_objects=True, cache_dir=cache_dir) as reg:
            started = time.monotonic()
            with anyio.fail_after(30):  # a hang fails here
                result = await reg.save(names, payloads)
            return result, time.monotonic() - started, wrapped.orphan

    result, elapsed, orphan = asyncio.run(batch())
    assert orphan is not None and not server.alive(), "the server was not killed"
    assert elapsed < bound, f"the batch took {elapsed:.1f}s after the server died"
    succeeded, failed = set(result.succeeded), set(result.failed)
    assert len(succeeded) >= kill_after
    assert len(failed) >= n - kill_after - 8, result  # at most 8 saves were in flight
    assert names.index(orphan[0]) in failed
    assert succeeded | failed == set(range(n))
    for index, error in result.errors.items():
        assert isinstance(error, BackendError), (index, repr(error))
        assert not isinstance(error, PreconditionFailed | RegistryVersionConflict), error
        assert result.results[index] is None
    assert all(result.results[i] == "1" for i in succeeded)

    server.start()  # same ports, same data folder
    prepare_bucket(server, bucket)  # (moto: again; it lost everything)

    async def after_restart() -> None:
        async with AsyncRegistry(
            backend=backend(), version_objects=True, cache_dir=cache_dir
        ) as reg:
            if server.keeps_data:
                visible = await check_consistent_after_restart(
                    reg, names, payloads, succeeded, orphan
                )
            else:
                # all was lost with the server's memory: what must hold is that
                # nothing, not even a save the client saw succeed, is served
                # past the cache when asked to check the server
                visible = set(await reg.list_objects())
                assert visible == set()
                for name in names:
                    with pytest.raises(RegistryObjectNotFound):
                        await reg.load(name, version="1", verify="full")
                assert (await reg.janitor(grace=0)).removed == []

            # the registry is usable: save what is missing, then everything loads
            missing = [i for i, name in enumerate(names) if name not in visible]
            again = await reg.save([names[i] for i in missing], [payloads[i] for i in missing])
            assert again.ok, again.errors
        async with AsyncRegistry(
            backend=backend(), version_objects=True, cache_dir=tmp_path / "cold"
        ) as cold:
            loaded = await cold.load(names)
            assert loaded.ok, loaded.errors
            assert loaded.results == payloads

    asyncio.run(after_restart())


# -- faults: damaged objects on the server -------------------------------------------------


async def artifact_key(reg: AsyncRegistry, name: str, version: str) -> str:
    info = await reg.info(name, version)
    assert isinstance(info, dict)
    assert not info["inline"]
    (rel,) = info["files"]
    return f"objects/{name}/{info['uuid']}/{rel}"


@pytest.mark.anyio
@pytest.mark.parametrize("damage", get_args(Damage))
async def test_damaged_object_is_an_integrity_error(
    target: Target, tmp_path: Path, damage: Damage
) -> None:
    """An artifact cut short, with a flipped byte (also in the last of several
    ranged GETs, where the backend takes ranges that small), or gone on the
    server, or an inlined value altered inside valid metadata ->
    RegistryIntegrityError when loaded on a cold cache, every time: the damaged
    copy is never cached."""
    prefix = f"damage-{uuid.uuid4().hex}"
    size = {"inline-corrupted": 300, "corrupted-late-range": 1 * MIB + 123}.get(damage, 200 * KIB)
    payload = rw.make_payload("intact", size)
    writer_backend = target.backend(prefix=prefix)
    async with AsyncRegistry(
        backend=writer_backend, version_objects=True, cache_dir=tmp_path / "writer"
    ) as writer:
        assert await writer.save("dmg", payload, version="1") == "1"
        if damage == "inline-corrupted":
            key = meta_key("dmg", Version("1").key)
        else:
            key = await artifact_key(writer, "dmg", "1")
            assert await writer_backend.get(key) == payload
        await target.damage(writer_backend, key, damage)

    reader_cache = tmp_path / "reader"
    reader_backend = target.backend(prefix=prefix, **target.small_ranges())
    async with AsyncRegistry(backend=reader_backend, cache_dir=reader_cache) as reader:
        for version in ("1", "latest", "1"):
            with pytest.raises(RegistryIntegrityError, match="dmg@1"):
                await reader.load("dmg", version=version)
        with pytest.raises(RegistryIntegrityError):
            await reader.load("dmg", verify="full")
        # nothing of the damaged download was kept
        assert not [p for p in reader_cache.rglob("*") if p.is_file() and "objects" in p.parts]
        if damage == "deleted":
            with pytest.raises(RegistryIntegrityError, match="missing"):
                await reader.load("dmg", verify="none")
        else:
            assert await reader.load("dmg", verify="none") != payload  # damaged indeed


@pytest.mark.anyio
async def test_corrupt_metadata_names_the_key(target: Target, tmp_path: Path) -> None:
    """A metadata file that is not valid metadata -> RegistryCorruptMetadata
    naming the key; the janitor refuses to run rather than delete the folder
    that file may reference. A corrupt settings file is reported the same way."""
    prefix = f"badmeta-{uuid.uuid4().hex}"
    backend = target.backend(prefix=prefix)
    key = meta_key("bad:meta", Version("1").key)
    async with AsyncRegistry(
        backend=backend, version_objects=True, cache_dir=tmp_path / "writer"
    ) as writer:
        await writer.save("bad:meta", rw.make_payload("big", 200 * KIB), version="1")
        stored = await backend.get(key)
        (folder,) = await rc.stored_uuid_folders(backend, "bad:meta")
        await backend.put(key, stored[: len(stored) // 2])  # cut mid-JSON

    async with AsyncRegistry(backend=target.backend(prefix=prefix), cache_dir=tmp_path / "r") as r:
        for version in ("1", "latest"):
            with pytest.raises(RegistryCorruptMetadata) as caught:
                await r.load("bad:meta", version=version)
            assert f"{backend.uri}/{key}" in str(caught.value)
        with pytest.raises(RegistryCorruptMetadata, match=key):
            await r.info("bad:meta", "1")
        with pytest.raises(RegistryCorruptMetadata, match=key):
            await r.janitor(grace=0)
        assert await rc.stored_uuid_folders(backend, "bad:meta") == {folder}
        await backend.put(SETTINGS_KEY, b'{"mutable": tru')  # cut mid-JSON as well

    settings = AsyncRegistry(backend=target.backend(prefix=prefix), cache_dir=tmp_path / "s")
    try:
        with pytest.raises(RegistryCorruptMetadata, match=SETTINGS_KEY):
            await settings.list_objects()
    finally:
        await settings.aclose()
        await backend.aclose()


# -- a stale etag / generation really fails at the registry level ---------------------------


class Gate:
    """Holds each arriving task until ``parties`` tasks have arrived."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.open = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.open.set()
        with anyio.fail_after(10):
            await self.open.wait()


class HeldSwap(CountingBackend):
    """Holds the first compare-and-swap of ``key`` at ``gate``, so that both racers
    have read the same etag before either writes; records every compare-and-swap
    of ``key``: (etag sent, "won" | "lost", etag written)."""

    def __init__(self, inner: Backend, gate: Gate, key: str) -> None:
        super().__init__(inner)
        self.gate = gate
        self.key = key
        self.swaps: list[tuple[str, str, str | None]] = []

    async def put(
        self, key: str, data: bytes, *, mode: PutMode = "overwrite", if_match: str | None = None
    ) -> FileInfo:
        if key != self.key or if_match is None:
            return await super().put(key, data, mode=mode, if_match=if_match)
        if not self.swaps:
            await self.gate.wait()
        try:
            info = await super().put(key, data, mode=mode, if_match=if_match)
        except PreconditionFailed:
            self.swaps.append((if_match, "lost", None))
            raise
        self.swaps.append((if_match, "won", info.etag))
        return info


def first_swaps(racers: list[HeldSwap], etag: str) -> tuple[HeldSwap, HeldSwap]:
    """(winner, loser) of two racers whose first compare-and-swap both sent
    ``etag``: exactly one of them may win it."""
    firsts = sorted(r.swaps[0][:2] for r in racers)
    assert firsts == [(etag, "lost"), (etag, "won")], (
        f"two compare-and-swaps on etag {etag} must not both win: {firsts}"
    )
    winner, loser = racers if racers[0].swaps[0][1] == "won" else racers[::-1]
    return winner, loser


@pytest.mark.anyio
async def test_stale_etag_fails_and_registrations_merge(target: Target, tmp_path: Path) -> None:
    """Two registries (separate clients) read the settings file at the same
    etag and both compare-and-swap their materializer registration onto it:
    the server refuses the second (a stale etag), that registry reads again and
    retries, and both registrations are kept. A server that ignored the
    precondition would let the second write erase the first one's entry."""
    prefix = f"cas-{uuid.uuid4().hex}"
    backend = target.backend(prefix=prefix)
    try:
        async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "0"):
            created = await backend.head(SETTINGS_KEY)  # the registry made its settings file
        assert created is not None
        first = created.etag

        gate = Gate(2)
        racers = [HeldSwap(target.backend(prefix=prefix), gate, SETTINGS_KEY) for _ in range(2)]
        classes = ["racers.one.Model", "racers.two.Model"]
        async with (
            AsyncRegistry(backend=racers[0], cache_dir=tmp_path / "a") as one,
            AsyncRegistry(backend=racers[1], cache_dir=tmp_path / "b") as two,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(one.register_materializer, classes[0], PICKLE_MATERIALIZER)
            tg.start_soon(two.register_materializer, classes[1], PICKLE_MATERIALIZER)

        # both first attempts carried the etag both had read; one lost
        winner, loser = first_swaps(racers, first)
        assert len(winner.swaps) == 1, winner.swaps
        second = winner.swaps[0][2]
        assert second is not None and second != first
        # the loser read the settings again and swapped onto the winner's etag
        assert len(loser.swaps) == 2 and loser.swaps[1][:2] == (second, "won"), loser.swaps
        assert (winner.counts["head"], loser.counts["head"]) == (1, 2)

        async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "c") as fresh:
            assert set(await fresh.registered_materializers()) == set(classes)
            # a stale etag still fails, and changes nothing
            current = await backend.head(SETTINGS_KEY)
            assert current is not None and current.etag == loser.swaps[1][2]
            before = await backend.get(SETTINGS_KEY)
            for stale in (first, second):
                with pytest.raises(PreconditionFailed):
                    await backend.put(SETTINGS_KEY, b"{}", if_match=stale)
            assert await backend.get(SETTINGS_KEY) == before
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_stale_etag_on_a_tombstone_has_one_winner(target: Target, tmp_path: Path) -> None:
    """A deleted explicit version leaves a tombstone that a new save may replace,
    by compare-and-swap on its etag: two registries that both read the
    tombstone and both swap onto it -> one winner, one RegistryVersionConflict
    (its folder removed), the winner's value stored."""
    prefix = f"tomb-{uuid.uuid4().hex}"
    key = meta_key("tomb", Version("2.0").key)
    backend = target.backend(prefix=prefix)
    try:
        async with AsyncRegistry(
            backend=backend, version_objects=True, cache_dir=tmp_path / "0"
        ) as reg:
            await reg.save("tomb", b"old", version="2.0")
            await reg.delete("tomb", version="2.0")
            tombstone = await backend.head(key)
            assert tombstone is not None and tombstone.size == 0

        gate = Gate(2)
        racers = [HeldSwap(target.backend(prefix=prefix), gate, key) for _ in range(2)]
        payloads = [rw.make_payload(f"racer-{i}", 100 * KIB) for i in range(2)]
        outcomes: list[str] = ["", ""]

        async def save(i: int, reg: AsyncRegistry) -> None:
            try:
                outcomes[i] = await reg.save("tomb", payloads[i], version="2.0")
            except RegistryVersionConflict:
                outcomes[i] = "conflict"

        async with (
            AsyncRegistry(backend=racers[0], cache_dir=tmp_path / "a") as one,
            AsyncRegistry(backend=racers[1], cache_dir=tmp_path / "b") as two,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(save, 0, one)
            tg.start_soon(save, 1, two)

        winner, loser = first_swaps(racers, tombstone.etag)
        assert len(winner.swaps) == len(loser.swaps) == 1
        assert sorted(outcomes) == ["2.0", "conflict"], outcomes
        expected = payloads[outcomes.index("2.0")]
        async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "c") as fresh:
            assert await fresh.load("tomb", version="2", verify="full") == expected
            info = await fresh.info("tomb", "2.0")
            assert isinstance(info, dict)
            assert await rc.stored_uuid_folders(backend, "tomb") == {info["uuid"]}
    finally:
        await backend.aclose()


# -- request counts ------------------------------------------------------------------------


def counts(backend: CountingBackend) -> dict[str, int]:
    return {op: n for op, n in backend.counts.items() if n}


@contextlib.asynccontextmanager
async def counted(
    target: Target, prefix: str | None = None, **settings: Any
) -> AsyncIterator[tuple[AsyncRegistry, CountingBackend, HttpLog]]:
    """A registry on ``target`` whose backend calls and HTTP requests are
    counted from zero once it is open."""
    remote = target.backend(prefix=prefix)
    counting = CountingBackend(remote)
    async with AsyncRegistry(backend=counting, **settings) as reg:
        http = await target.http_log(remote)
        counting.reset()
        http.take()
        yield reg, counting, http


def folders(http: HttpLog) -> list[tuple[str | None, str | None]]:
    """(top folder under the prefix, condition) of each request of the last take."""
    return [(s.key.split("/")[1] if s.key else None, s.condition) for s in http.last]


@pytest.mark.anyio
async def test_request_counts_save(target: Target, tmp_path: Path) -> None:
    """save, explicit version of a new name: its head is created (blind: the
    registry keeps heads, so a missing one means a new name), then 1 artifact
    put + 1 conditional meta put; a small object is inlined; version "1"
    needs no head. A later explicit version reads and raises the head; auto-increment reads it, commits, and
    moves it after. None of these counts grows with the number of versions
    (tests/test_heads.py)."""
    async with counted(target, version_objects=True, cache_dir=tmp_path) as (reg, counting, http):
        # a saver lists the retention policies once per POLICY_TTL (tests/test_lifecycle.py)
        await reg.retention()
        counting.reset()
        http.take()
        await reg.save("big", rw.make_payload("big", 200 * KIB), version="2")
        big = counts(counting)
        assert sum(n for op, n in big.items() if op in ("put", "put_file")) == 3, big
        assert set(big) <= {"put", "put_file"}, big
        # the artifact goes first, unconditionally; the head before the commit
        http.take()
        assert folders(http) == [("objects", None), ("heads", "create"), ("meta", "create")]

        counting.reset()
        await reg.save("small", b"tiny", version="1")  # no head: the first number
        assert counts(counting) == {"put": 1}

        counting.reset()
        await reg.save("small", b"tiny 2", version="2")  # a new head, blind
        assert counts(counting) == {"put": 2}

        counting.reset()
        http.take()
        await reg.save("small", b"tiny 3", version="3")  # raises the head: a swap
        assert counts(counting) == {"get": 1, "put": 2}
        http.take()
        # the head read (on GCS its metadata and body) and swapped, then the commit
        *head, commit = folders(http)
        assert {f[0] for f in head} == {"heads"} and len(head) in (2, 3), folders(http)
        assert commit == ("meta", "create")

        counting.reset()
        await reg.save("small", b"tiny 1.5", version="1.5")  # below it: the head is known
        assert counts(counting) == {"put": 1}

        counting.reset()
        await reg.save("small", b"tiny again")  # auto-increment
        assert counts(counting) == {"get": 1, "put": 2}


@pytest.mark.anyio
async def test_request_counts_load(target: Target, tmp_path: Path) -> None:
    """load, explicit version: cold cache = 1 meta get + 1 artifact get_file; warm
    cache = nothing with verify="integrity", 1 meta get with "full"; "latest"
    reads the name's head, probes above it and reads the metadata. At the HTTP
    level: as many GETs."""
    prefix = f"counts-{uuid.uuid4().hex}"
    big, small = rw.make_payload("big", 200 * KIB), b"tiny"
    async with AsyncRegistry(
        backend=target.backend(prefix=prefix), version_objects=True, cache_dir=tmp_path / "w"
    ) as writer:
        await writer.save("big", big, version="1")
        await writer.save("small", small, version="1")
        # "1" raises no head (mvcc.commit_explicit): the first "latest" writes it
        assert await writer.load("big") == big and await writer.load("small") == small

    async with counted(target, prefix, cache_dir=tmp_path / "cold") as (reg, counting, http):

        async def load(name: str, version: str, verify: Any) -> tuple[dict[str, int], Counter[str]]:
            counting.reset()
            assert await reg.load(name, version=version, verify=verify) == (
                big if name == "big" else small
            )
            return counts(counting), http.take()

        # cold cache, explicit version
        assert await load("big", "1", "integrity") == ({"get": 1, "get_file": 1}, {"get": 2})
        assert await load("small", "1", "integrity") == ({"get": 1}, {"get": 1})
        # warm cache
        assert await load("big", "1", "integrity") == ({}, Counter())
        assert await load("big", "1", "none") == ({}, Counter())
        assert await load("big", "1", "full") == ({"get": 1}, {"get": 1})
        assert await load("small", "1", "integrity") == ({}, Counter())
        # "latest": the head, then a probe above it and the metadata, overlapped
        for verify in ("integrity", "full"):
            calls, _ = await load("big", "latest", verify)
            assert calls == {"get": 2, "head": 1}

    # "latest" on a cold cache: the same, and the artifact
    async with counted(target, prefix, cache_dir=tmp_path / "cold2") as (reg, counting, http):
        assert await reg.load("big") == big
        assert counts(counting) == {"get": 2, "head": 1, "get_file": 1}
