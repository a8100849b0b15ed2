"""The registry on real S3 servers (moto and SeaweedFS): races, faults, request counts.

Issue 3, "Tests": the scenarios of tests/test_races.py across processes that
share nothing but a bucket (each builds its S3Backend from plain configuration
and has its own cache folder); a server stopped in the middle of a batch and
damaged objects on the server; and the number of backend calls (and of HTTP
requests) a save and a load cost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import msgspec
import pytest

from registry import AsyncRegistry
from registry.backends.base import Backend, FileInfo, PutMode
from registry.backends.s3 import S3Backend
from registry.core.layout import meta_key
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
from tests import race_workers as rw
from tests import s3_race_workers as s3w
from tests.conftest import S3Target
from tests.s3_servers import (
    HOST,
    S3Server,
    _spawn,
    _wait_http,
    _write_identities,
    free_port,
    free_ports_with_grpc,
    moto_server_command,
    prepare_bucket,
    seaweedfs_command,
    stop_process,
    weed_binary,
)

T = TypeVar("T")
KIB = 1024
S3_SERVERS = ["moto", "seaweedfs"]
# every worker process is joined within this, or killed and the test failed (a
# quiet 2-core machine needs ~12 s for the slowest race, moto's 4 x 25)
PROCESS_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scale:
    """How hard each server is raced.

    SeaweedFS makes the losers of a conditional write on one key wait in ~1 s
    steps (DESIGN §12), so it is raced less: measured here, 8 writers on one
    explicit version take ~3 s there (1.3 s with 4), and 4 x 25 auto-increment
    saves ~7 s with single saves stalling up to 1.5 s. It runs the same 4
    processes with 10 saves each (~2.6 lost claims per save, as on moto) and 4
    writers on the explicit version; moto gets the full 4 x 25 and 8.
    """

    auto_procs: int
    auto_saves: int
    explicit_writers: int


SCALES = {
    "moto": Scale(auto_procs=4, auto_saves=25, explicit_writers=8),
    "seaweedfs": Scale(auto_procs=4, auto_saves=10, explicit_writers=4),
}


@pytest.fixture(scope="module")
def moto_module_target(moto_target: S3Target) -> S3Target:
    """The session's moto server with a bucket of this module's own: moto lists a
    prefix by scanning every key of the bucket, so in the session bucket these
    tests would slow down with everything the suite stored before them."""
    return S3Target(moto_target.server, prepare_bucket(moto_target.server))


@pytest.fixture(params=S3_SERVERS)
def target(request: pytest.FixtureRequest) -> S3Target:
    """Each session server in turn (started once by tests/conftest.py)."""
    name = "moto_module_target" if request.param == "moto" else "seaweedfs_target"
    found: S3Target = request.getfixturevalue(name)
    return found


# -- helpers -------------------------------------------------------------------------------


def plain_config(target: S3Target, prefix: str) -> s3w.S3Config:
    """What a worker process gets: strings only, from which it builds its backend."""
    endpoint, access_key, secret_key = target.server
    return {
        "endpoint": endpoint,
        "access_key": access_key,
        "secret_key": secret_key,
        "bucket": target.bucket,
        "prefix": prefix,
    }


def run(main: Callable[[AsyncRegistry], Awaitable[T]], backend: Backend, **settings: Any) -> T:
    """Run ``main(registry)`` on a fresh event loop (the caller passes cache_dir=)."""

    async def wrapper() -> T:
        async with AsyncRegistry(backend=backend, **settings) as reg:
            return await main(reg)

    return asyncio.run(wrapper())


async def uuid_folders(backend: Backend, name: str) -> set[str]:
    """uuid folders stored for ``name`` (any folder holding at least one key)."""
    folders: set[str] = set()
    async for entry in backend.list(f"objects/{name}/"):
        if isinstance(entry, FileInfo):
            folders.add(entry.key.split("/")[2])
    return folders


async def referenced_uuids(reg: AsyncRegistry, name: str) -> set[str]:
    try:
        infos = await reg.info(name)
    except RegistryObjectNotFound:
        return set()
    assert isinstance(infos, dict)
    return {info["uuid"] for info in infos.values() if not info["inline"]}


def start_all(procs: list[Any]) -> None:
    for proc in procs:
        proc.start()


# -- races across processes ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_auto_increment_across_processes(target: S3Target, tmp_path: Path) -> None:
    """N processes x M auto-increment saves of one name: N*M distinct versions,
    each holding the payload its save reported (moto 4 x 25, SeaweedFS 4 x 10)."""
    scale = SCALES[target.name]
    procs_n, saves = scale.auto_procs, scale.auto_saves
    total = procs_n * saves
    config = plain_config(target, f"race-auto-{uuid.uuid4().hex}")
    backend = s3w.s3_backend(config)
    # the backend pickles as its configuration: nothing of a client crosses processes
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.identity, clone._runtime) == (backend.identity, {})
    run(lambda reg: reg.list_objects(), backend, version_objects=True, cache_dir=tmp_path / "c")

    ctx = s3w.worker_context()
    barrier = ctx.Barrier(procs_n)
    outs = [str(tmp_path / f"auto-{p}.json") for p in range(procs_n)]
    procs = [
        ctx.Process(
            target=s3w.auto_saver,
            args=(config, str(tmp_path / f"cache-{p}"), p, saves, barrier, outs[p]),
            name=f"saver-{p}",
        )
        for p in range(procs_n)
    ]
    start_all(procs)
    rw.join_all(procs, PROCESS_TIMEOUT)

    returned: dict[str, str] = {}  # version -> tag of the save that got it
    for out in outs:
        for tag, version in rw.read_report(out):
            assert version not in returned, (
                f"version {version} handed out twice: to {returned[version]} and to {tag}"
            )
            returned[version] = tag
    assert set(returned) == {str(n) for n in range(1, total + 1)}
    owners = [returned[str(n)].split("-")[0] for n in range(1, total + 1)]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    assert switches >= procs_n, f"the saves barely overlapped: {owners}"

    async def check(reg: AsyncRegistry) -> None:
        infos = await reg.info("race:auto")  # every live version's metadata
        assert isinstance(infos, dict)
        versions = sorted(infos, key=int)
        assert versions == [str(n) for n in range(1, total + 1)]
        loaded = await reg.load(["race:auto"] * total, version=versions)
        assert loaded.ok, loaded.errors
        tags = []
        for version, obj in zip(versions, loaded.results, strict=True):
            tag = obj if isinstance(obj, str) else rw.check_payload(obj)
            assert tag == returned[version], f"version {version} holds {tag!r}"
            assert infos[version]["metadata"] == {"tag": tag}
            tags.append(tag)
        assert sorted(tags) == sorted(f"{p}-{i}" for p in range(procs_n) for i in range(saves))
        assert await reg.load("race:auto") == returned[str(total)]  # latest
        referenced = {info["uuid"] for info in infos.values() if not info["inline"]}
        assert len(referenced) == len([i for i in range(saves) if i % 5 == 0]) * procs_n
        # a lost claim re-writes only the metadata: no folder was uploaded twice
        assert await uuid_folders(reg.backend, "race:auto") == referenced

    # a cold cache: everything comes from the server
    run(check, s3w.s3_backend(config), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_same_explicit_version_one_winner(target: S3Target, tmp_path: Path) -> None:
    """N processes save version "1.0.0" of an immutable registry with a 200 KiB
    payload (a uuid folder each): one winner, N-1 conflicts, the winner's bytes
    stored, and only the winner's folder left after janitor(grace=0)."""
    writers, size = SCALES[target.name].explicit_writers, 200 * KIB
    config = plain_config(target, f"race-explicit-{uuid.uuid4().hex}")
    run(
        lambda reg: reg.list_objects(),
        s3w.s3_backend(config),
        version_objects=True,
        mutable=False,
        cache_dir=tmp_path / "c",
    )
    ctx = s3w.worker_context()
    barrier = ctx.Barrier(writers)
    outs = [str(tmp_path / f"explicit-{p}.json") for p in range(writers)]
    procs = [
        ctx.Process(
            target=s3w.explicit_saver,
            args=(config, str(tmp_path / f"cache-{p}"), p, size, barrier, outs[p]),
            name=f"writer-{p}",
        )
        for p in range(writers)
    ]
    start_all(procs)
    rw.join_all(procs, PROCESS_TIMEOUT)

    results = [rw.read_report(out) for out in outs]
    winners = [p for p, result in enumerate(results) if result.startswith("won:")]
    assert len(winners) == 1, results
    assert results.count("conflict") == writers - 1, results
    (winner,) = winners
    assert results[winner] == "won:1.0.0"
    expected = rw.make_payload(f"writer-{winner}", size)

    async def check(reg: AsyncRegistry) -> None:
        assert await reg.list_versions("race:explicit") == ["1.0.0"]
        for spelling in ("1.0.0", "1", "latest"):
            assert await reg.load("race:explicit", version=spelling) == expected
        info = await reg.info("race:explicit", "1.0.0")
        assert isinstance(info, dict)
        assert not info["inline"]
        # the losers deleted their own folders already
        assert await uuid_folders(reg.backend, "race:explicit") == {info["uuid"]}
        report = await reg.janitor(grace=0)
        assert report.removed == []
        assert await uuid_folders(reg.backend, "race:explicit") == {info["uuid"]}
        assert await reg.load("race:explicit", version="1", verify="full") == expected

    run(check, s3w.s3_backend(config), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_reader_never_sees_a_torn_overwrite(target: S3Target, tmp_path: Path) -> None:
    """A reader process loops over load(verify="full") while a writer process
    overwrites a mutable version 30 times (100-300 KiB values with uuid folders
    and inlined small ones): every read is a complete old or new value, never
    older than the previous read, and nothing errors."""
    overwrites = 30
    config = plain_config(target, f"race-mutable-{uuid.uuid4().hex}")

    async def seed(reg: AsyncRegistry) -> str:
        return await reg.save("race:mutable", rw.overwrite_payload(0))

    assert run(seed, s3w.s3_backend(config), mutable=True, cache_dir=tmp_path / "c") == "1"
    ctx = s3w.worker_context()
    barrier = ctx.Barrier(2)
    stop = ctx.Event()
    writer_out, reader_out = str(tmp_path / "writer.json"), str(tmp_path / "reader.json")
    writer = ctx.Process(
        target=s3w.overwriter,
        args=(config, str(tmp_path / "writer-cache"), 1, overwrites, barrier, writer_out),
        name="writer",
    )
    reader = ctx.Process(
        target=s3w.reader,
        args=(config, str(tmp_path / "reader-cache"), barrier, stop, reader_out),
        name="reader",
    )
    start_all([writer, reader])
    try:
        rw.join_all([writer], PROCESS_TIMEOUT)
    finally:
        stop.set()
    rw.join_all([reader], 20.0)  # it stops after its current load

    assert rw.read_report(writer_out) == overwrites
    reads = rw.read_report(reader_out)
    assert reads["errors"] == []
    counters: list[int] = reads["counters"]
    # measured: 33-52 loads, 23-31 distinct values per run
    assert len(counters) >= 12, f"the reader only managed {len(counters)} loads"
    assert counters == sorted(counters), "a read went back to an older value"
    assert set(counters) <= set(range(overwrites + 1))
    assert len(set(counters)) >= 6, f"the reader barely overlapped the writer: {counters}"

    async def finish(reg: AsyncRegistry) -> None:
        assert rw.check_payload(await reg.load("race:mutable")) == str(overwrites)
        assert await reg.list_versions("race:mutable") == ["1"]
        report = await reg.janitor(grace=0)
        referenced = await referenced_uuids(reg, "race:mutable")
        big = [c for c in range(overwrites + 1) if c % 3 != 0]  # values with a uuid folder
        assert len(report.removed) == len(big) - len(referenced)
        assert await uuid_folders(reg.backend, "race:mutable") == referenced

    run(finish, s3w.s3_backend(config), cache_dir=tmp_path / "check-cache")


# -- faults: a server stopped in the middle of a batch -------------------------------------


class OwnServer:
    """A moto or SeaweedFS process of this test alone, to kill and restart on the
    same port (SeaweedFS also on the same data folder; moto keeps data in memory
    only, so it comes back empty)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.proc: Any = None
        if kind == "moto":
            self.ports = {"s3": free_port()}
            self.access_key, self.secret_key = "moto-access-key", "moto-secret-key"
        else:
            names = ("master", "volume", "filer", "s3", "admin")
            self.ports = dict(zip(names, free_ports_with_grpc(len(names)), strict=True))
            self.access_key, self.secret_key = "fault-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
            _write_identities(workdir / "s3.json", self.access_key, self.secret_key)
        self.endpoint = f"http://{HOST}:{self.ports['s3']}"

    def start(self, bucket: str) -> None:
        """Start (or restart) on the same ports; returns once ``bucket`` takes writes."""
        if self.kind == "moto":
            command = moto_server_command(self.ports["s3"])
            ready = f"{self.endpoint}/moto-api/"
        else:
            command = seaweedfs_command(weed_binary(), self.workdir, self.ports)
            ready = f"{self.endpoint}/"
        self.proc = _spawn(command, self.log, self.workdir)
        _wait_http(ready, self.proc, self.log, 60.0)
        # creates the bucket if needed and checks conditional writes work again
        prepare_bucket(self.as_server(), bucket)

    def as_server(self) -> S3Server:
        return S3Server(
            name=self.kind,
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            pid=self.proc.pid,
            start_seconds=0.0,
            log=self.log,
        )

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as in a crash or power loss."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=0.5)  # a throwaway server: no need to wait


@pytest.fixture(params=S3_SERVERS)
def own_server(request: pytest.FixtureRequest) -> Iterator[OwnServer]:
    workdir = Path(tempfile.mkdtemp(prefix="rsf-"))  # short: SeaweedFS unix socket paths
    server = OwnServer(request.param, workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class KillMidBatch(CountingBackend):
    """Passes calls through; once ``after`` saves have committed, kills the server
    right after the next artifact upload completes. That save's folder is then on
    the server but its commit can never happen (``orphan``), and the other saves
    of the batch are caught mid-upload or mid-commit."""

    def __init__(self, inner: Backend, server: OwnServer, after: int) -> None:
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


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_server_killed_mid_batch(own_server: OwnServer, tmp_path: Path) -> None:
    """The server is SIGKILLed once 8 of 24 saves of a batch have committed (right
    after another save uploaded its artifact): the batch returns promptly with a
    per-item error for every save that did not finish; after a restart nothing
    half-committed is readable, the registry is consistent and usable, and the
    janitor removes the uncommitted folders."""
    server, n, kill_after = own_server, 24, 8
    bucket, prefix = f"fault-{uuid.uuid4().hex[:12]}", "reg"
    server.start(bucket)
    names = [f"fault-{i}" for i in range(n)]
    payloads = [fault_payload(i) for i in range(n)]
    cache_dir = tmp_path / "cache"

    def backend() -> S3Backend:
        return server.as_server().backend(bucket, prefix=prefix, concurrency=8)

    async def batch() -> tuple[Any, float, tuple[str, str] | None]:
        wrapped = KillMidBatch(backend(), server, kill_after)
        async with AsyncRegistry(backend=wrapped, version_objects=True, cache_dir=cache_dir) as reg:
            started = time.monotonic()
            with anyio.fail_after(30):  # a hang fails here
                result = await reg.save(names, payloads)
            return result, time.monotonic() - started, wrapped.orphan

    result, elapsed, orphan = asyncio.run(batch())
    assert orphan is not None and server.proc.poll() is not None, "the server was not killed"
    assert elapsed < 20, f"the batch took {elapsed:.1f}s after the server died"
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

    server.start(bucket)  # same port (SeaweedFS: same data folder)

    async def after_restart() -> None:
        async with AsyncRegistry(
            backend=backend(), version_objects=True, cache_dir=cache_dir
        ) as reg:
            visible = set(await reg.list_objects())
            if server.kind == "moto":
                # moto lost everything with its memory: what must hold is that
                # nothing, not even a save the client saw succeed, is served
                # past the cache when asked to check the server
                assert visible == set()
                for name in names:
                    with pytest.raises(RegistryObjectNotFound):
                        await reg.load(name, version="1", verify="full")
                assert (await reg.janitor(grace=0)).removed == []
            else:
                # SeaweedFS kept its data: every save the client saw succeed is
                # there; a failed one is absent, or complete if its commit
                # landed just before the connection died (an ambiguous write)
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
                    referenced |= {(name, u) for u in await referenced_uuids(reg, name)}
                    stored |= {(name, u) for u in await uuid_folders(reg.backend, name)}
                assert referenced <= stored
                assert orphan in stored - referenced
                report = await reg.janitor(grace=0)
                assert sorted(report.removed) == sorted(
                    f"objects/{name}/{uid}" for name, uid in stored - referenced
                )
                after: set[tuple[str, str]] = set()
                for name in names:
                    after |= {(name, u) for u in await uuid_folders(reg.backend, name)}
                assert after == referenced
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
@pytest.mark.parametrize("damage", ["truncated", "corrupted", "inline-corrupted"])
async def test_damaged_object_is_an_integrity_error(
    target: S3Target, tmp_path: Path, damage: str
) -> None:
    """An artifact cut short or with a flipped byte on the server (or an inlined
    value altered inside valid metadata) -> RegistryIntegrityError when loaded
    on a cold cache, every time: the damaged copy is never cached."""
    prefix = f"damage-{uuid.uuid4().hex}"
    payload = rw.make_payload("intact", 300 if damage == "inline-corrupted" else 200 * KIB)
    writer_backend = target.backend(prefix=prefix)
    async with AsyncRegistry(
        backend=writer_backend, version_objects=True, cache_dir=tmp_path / "writer"
    ) as writer:
        assert await writer.save("dmg", payload, version="1") == "1"
        if damage == "inline-corrupted":
            key = meta_key("dmg", Version("1").key)
            meta = json.loads(await writer_backend.get(key))
            assert meta["inline"] is not None
            altered = bytearray(payload)
            altered[len(altered) // 2] ^= 0xFF
            meta["inline"] = msgspec.json.decode(msgspec.json.encode(bytes(altered)))
            await writer_backend.put(key, json.dumps(meta).encode())
        else:
            key = await artifact_key(writer, "dmg", "1")
            stored = await writer_backend.get(key)
            assert stored == payload
            if damage == "truncated":
                bad = stored[: len(stored) // 2]
            else:
                flipped = bytearray(stored)
                flipped[len(flipped) // 2] ^= 0xFF
                bad = bytes(flipped)
            await writer_backend.put(key, bad)

    reader_cache = tmp_path / "reader"
    async with AsyncRegistry(
        backend=target.backend(prefix=prefix), cache_dir=reader_cache
    ) as reader:
        for version in ("1", "latest", "1"):
            with pytest.raises(RegistryIntegrityError, match="dmg@1"):
                await reader.load("dmg", version=version)
        with pytest.raises(RegistryIntegrityError):
            await reader.load("dmg", verify="full")
        # nothing of the damaged download was kept
        assert not [p for p in reader_cache.rglob("*") if p.is_file() and "objects" in p.parts]
        assert await reader.load("dmg", verify="none") != payload  # it is damaged indeed


@pytest.mark.anyio
async def test_corrupt_metadata_names_the_key(target: S3Target, tmp_path: Path) -> None:
    """A metadata file that is not valid metadata -> RegistryCorruptMetadata
    naming the key; the janitor refuses to run rather than delete the folder
    that file may reference."""
    prefix = f"badmeta-{uuid.uuid4().hex}"
    backend = target.backend(prefix=prefix)
    key = meta_key("bad:meta", Version("1").key)
    async with AsyncRegistry(
        backend=backend, version_objects=True, cache_dir=tmp_path / "writer"
    ) as writer:
        await writer.save("bad:meta", rw.make_payload("big", 200 * KIB), version="1")
        stored = await backend.get(key)
        (folder,) = await uuid_folders(backend, "bad:meta")
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
        assert await uuid_folders(backend, "bad:meta") == {folder}


# -- request counts ------------------------------------------------------------------------


def counts(backend: CountingBackend) -> dict[str, int]:
    return {op: n for op, n in backend.counts.items() if n}


@dataclass(frozen=True)
class Sent:
    method: str
    operation: str
    path: str
    if_none_match: str | None


class HttpLog:
    """Every HTTP request the backend's botocore client sends (its 'before-send'
    event: one per attempt, retries included)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.last: list[Sent] = []

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        path = urlsplit(request.url).path
        condition = request.headers.get("If-None-Match")
        if isinstance(condition, bytes):
            condition = condition.decode()
        self.sent.append(Sent(request.method, operation, path, condition))

    def take(self) -> Counter[tuple[str, str]]:
        """(method, operation) counts of the requests since the last take."""
        self.last, self.sent = self.sent, []
        return Counter((sent.method, sent.operation) for sent in self.last)


async def http_log(backend: S3Backend) -> HttpLog:
    log = HttpLog()
    client = await backend._client()  # this loop's client (created on first use)
    client.meta.events.register("before-send.s3", log)
    return log


@pytest.mark.anyio
async def test_request_counts_save(target: S3Target, tmp_path: Path) -> None:
    """save, explicit version: a large object = 1 artifact put + 1 conditional meta
    put; a small one is inlined = 1 put. At the HTTP level: as many PUTs."""
    s3 = target.backend()
    counting = CountingBackend(s3)
    async with AsyncRegistry(backend=counting, version_objects=True, cache_dir=tmp_path) as reg:
        http = await http_log(s3)
        counting.reset()
        http.take()

        await reg.save("big", rw.make_payload("big", 200 * KIB), version="1")
        big = counts(counting)
        assert sum(n for op, n in big.items() if op in ("put", "put_file")) == 2, big
        assert set(big) <= {"put", "put_file"}, big
        assert http.take() == Counter({("PUT", "PutObject"): 2})
        # the artifact goes first, unconditionally; then the conditional commit
        assert [(s.path.split("/")[3], s.if_none_match) for s in http.last] == [
            ("objects", None),
            ("meta", "*"),
        ]

        counting.reset()
        await reg.save("small", b"tiny", version="1")
        assert counts(counting) == {"put": 1}
        assert http.take() == Counter({("PUT", "PutObject"): 1})
        assert http.last[0].if_none_match == "*"

        # auto-increment adds the one listing that finds the next number
        counting.reset()
        await reg.save("small", b"tiny again")
        assert counts(counting) == {"list": 1, "put": 1}
        assert http.take() == Counter({("GET", "ListObjectsV2"): 1, ("PUT", "PutObject"): 1})


@pytest.mark.anyio
async def test_request_counts_load(target: S3Target, tmp_path: Path) -> None:
    """load, explicit version: cold cache = 1 meta get + 1 artifact get_file; warm
    cache = nothing with verify="integrity", 1 meta get with "full"; "latest" adds
    exactly 1 list. At the HTTP level: as many GETs."""
    prefix = f"counts-{uuid.uuid4().hex}"
    big, small = rw.make_payload("big", 200 * KIB), b"tiny"
    async with AsyncRegistry(
        backend=target.backend(prefix=prefix), version_objects=True, cache_dir=tmp_path / "w"
    ) as writer:
        await writer.save("big", big, version="1")
        await writer.save("small", small, version="1")

    s3 = target.backend(prefix=prefix)
    counting = CountingBackend(s3)
    async with AsyncRegistry(backend=counting, cache_dir=tmp_path / "cold") as reg:
        http = await http_log(s3)
        counting.reset()
        http.take()

        async def load(
            name: str, version: str, verify: Any
        ) -> tuple[dict[str, int], Counter[tuple[str, str]]]:
            counting.reset()
            assert await reg.load(name, version=version, verify=verify) == (
                big if name == "big" else small
            )
            return counts(counting), http.take()

        get_object = ("GET", "GetObject")
        # cold cache, explicit version
        assert await load("big", "1", "integrity") == (
            {"get": 1, "get_file": 1},
            Counter({get_object: 2}),
        )
        assert await load("small", "1", "integrity") == ({"get": 1}, Counter({get_object: 1}))
        # warm cache
        assert await load("big", "1", "integrity") == ({}, Counter())
        assert await load("big", "1", "none") == ({}, Counter())
        assert await load("big", "1", "full") == ({"get": 1}, Counter({get_object: 1}))
        assert await load("small", "1", "integrity") == ({}, Counter())
        # "latest": one listing more
        listing = ("GET", "ListObjectsV2")
        assert await load("big", "latest", "integrity") == (
            {"list": 1},
            Counter({listing: 1}),
        )
        assert await load("big", "latest", "full") == (
            {"list": 1, "get": 1},
            Counter({listing: 1, get_object: 1}),
        )

    # "latest" on a cold cache: list + meta get + artifact get_file
    s3 = target.backend(prefix=prefix)
    counting = CountingBackend(s3)
    async with AsyncRegistry(backend=counting, cache_dir=tmp_path / "cold2") as reg:
        http = await http_log(s3)
        counting.reset()
        http.take()
        assert await reg.load("big") == big
        assert counts(counting) == {"list": 1, "get": 1, "get_file": 1}
        assert http.take() == Counter({("GET", "ListObjectsV2"): 1, ("GET", "GetObject"): 2})
