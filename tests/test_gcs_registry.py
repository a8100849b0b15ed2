"""The registry on fake-gcs-server: races, faults, stale generations, request counts.

Issue 4, "Tests": the scenarios of tests/test_races.py across processes that
share nothing but a bucket (each builds its GCSBackend from plain
configuration and has its own cache folder); a server stopped in the middle
of a batch (a private fake-gcs-server on the filesystem backend, restarted on
the same data), a registry that outlives a server restart, damaged objects on
the server and misconfigurations, all seen through a registry; registry-level
compare-and-swaps (the settings file's materializer table, a tombstone's
re-creation) that lose to a stale generation, so a server that ignored the
precondition would be caught; and the number of backend calls (and of HTTP
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
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import pytest

from registry import AsyncRegistry, GCPRegistryBackend, Registry
from registry.backends.base import Backend, FileInfo, PutMode
from registry.backends.gcs import (
    CHUNK_QUANTUM,
    GCSAccessDenied,
    GCSBackend,
    GCSBucketNotFound,
    GCSEndpointUnreachable,
)
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
from tests import gcs_race_workers as gw
from tests import race_workers as rw
from tests.gcs_fixtures import GCSTarget
from tests.gcs_servers import (
    HOST,
    GCSServer,
    _clean_env,
    _die_with_parent,
    _wait_ready,
    fake_gcs_binary,
    fake_gcs_command,
    prepare_bucket,
)
from tests.s3_servers import free_port, stop_process

T = TypeVar("T")
KIB = 1024
MIB = 1024 * KIB
# every worker process is joined within this, or killed and the test failed
PROCESS_TIMEOUT = 60.0
ERROR_BOUND = 8.0  # seconds within which a misconfiguration must be reported
PICKLE_MATERIALIZER = "registry.materializers.builtin.PickleMaterializer"


@pytest.fixture(scope="module")
def target(gcs_target: GCSTarget) -> GCSTarget:
    """The session's fake-gcs-server with a bucket of this module's own, so its
    listings do not grow with everything the rest of the suite stored."""
    return GCSTarget(gcs_target.server, prepare_bucket(gcs_target.server))


# -- helpers -------------------------------------------------------------------------------


def plain_config(target: GCSTarget, prefix: str) -> gw.GCSConfig:
    """What a worker process gets: strings only, from which it builds its backend."""
    return {"endpoint": target.server.endpoint, "bucket": target.bucket, "prefix": prefix}


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
@pytest.mark.timeout(120)
def test_auto_increment_across_processes(target: GCSTarget, tmp_path: Path) -> None:
    """4 processes x 25 auto-increment saves of one name: 100 distinct versions,
    each holding the payload its save reported, none uploaded twice."""
    procs_n, saves = 4, 25
    total = procs_n * saves
    config = plain_config(target, f"race-auto-{uuid.uuid4().hex}")
    backend = gw.gcs_backend(config)
    # the backend pickles as its configuration: nothing of a client crosses processes
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.identity, clone._runtime) == (backend.identity, {})
    run(lambda reg: reg.list_objects(), backend, version_objects=True, cache_dir=tmp_path / "c")

    ctx = rw.spawn_context()
    barrier = ctx.Barrier(procs_n)
    outs = [str(tmp_path / f"auto-{p}.json") for p in range(procs_n)]
    procs = [
        ctx.Process(
            target=gw.auto_saver,
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
    run(check, gw.gcs_backend(config), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_same_explicit_version_one_winner(target: GCSTarget, tmp_path: Path) -> None:
    """8 processes save version "1.0.0" of an immutable registry with a 200 KiB
    payload (a uuid folder each, not inlined): one winner, 7 conflicts, the
    winner's bytes stored, and only the winner's folder left after janitor(grace=0)."""
    writers, size = 8, 200 * KIB
    config = plain_config(target, f"race-explicit-{uuid.uuid4().hex}")
    run(
        lambda reg: reg.list_objects(),
        gw.gcs_backend(config),
        version_objects=True,
        mutable=False,
        cache_dir=tmp_path / "c",
    )
    ctx = rw.spawn_context()
    barrier = ctx.Barrier(writers)
    outs = [str(tmp_path / f"explicit-{p}.json") for p in range(writers)]
    procs = [
        ctx.Process(
            target=gw.explicit_saver,
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
        # the losers deleted their own folders already; the janitor finds nothing
        assert await uuid_folders(reg.backend, "race:explicit") == {info["uuid"]}
        report = await reg.janitor(grace=0)
        assert report.removed == []
        assert await uuid_folders(reg.backend, "race:explicit") == {info["uuid"]}
        assert await reg.load("race:explicit", version="1", verify="full") == expected

    run(check, gw.gcs_backend(config), cache_dir=tmp_path / "check-cache")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_reader_never_sees_a_torn_overwrite(target: GCSTarget, tmp_path: Path) -> None:
    """A reader process loops over load(verify="full") while a writer process
    overwrites a mutable version 30 times (100-300 KiB values with uuid folders
    and inlined small ones): every read is a complete old or new value, never
    older than the previous read, and nothing errors."""
    overwrites = 30
    config = plain_config(target, f"race-mutable-{uuid.uuid4().hex}")

    async def seed(reg: AsyncRegistry) -> str:
        return await reg.save("race:mutable", rw.overwrite_payload(0))

    assert run(seed, gw.gcs_backend(config), mutable=True, cache_dir=tmp_path / "c") == "1"
    ctx = rw.spawn_context()
    barrier = ctx.Barrier(2)
    stop = ctx.Event()
    writer_out, reader_out = str(tmp_path / "writer.json"), str(tmp_path / "reader.json")
    writer = ctx.Process(
        target=gw.overwriter,
        args=(config, str(tmp_path / "writer-cache"), 1, overwrites, barrier, writer_out),
        name="writer",
    )
    reader = ctx.Process(
        target=gw.reader,
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

    run(finish, gw.gcs_backend(config), cache_dir=tmp_path / "check-cache")


# -- faults: the server stopped in the middle of a batch -----------------------------------


class OwnServer:
    """A fake-gcs-server of this test alone, on the filesystem backend, to kill
    and restart on the same port and the same data folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "data"
        self.log = workdir / "fake-gcs.log"
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, bucket: str) -> None:
        """Start (or restart); returns once ``bucket`` exists and takes conditional writes."""
        command = fake_gcs_command(fake_gcs_binary(), self.port, "filesystem", self.root)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_clean_env(),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        _wait_ready(self.endpoint, self.proc, self.log, 30.0)
        prepare_bucket(self.as_server(), bucket)  # an existing bucket is fine

    def as_server(self) -> GCSServer:
        assert self.proc is not None
        return GCSServer(
            name="fake-gcs-own",
            endpoint=self.endpoint,
            pid=self.proc.pid,
            start_seconds=0.0,
            log=self.log,
            storage="filesystem",
            workdir=self.workdir,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as in a crash or power loss."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=0.5)


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    workdir = Path(tempfile.mkdtemp(prefix="registry-gcs-fault-"))
    server = OwnServer(workdir)
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
@pytest.mark.timeout(90)
def test_server_killed_mid_batch(own_server: OwnServer, tmp_path: Path) -> None:
    """fake-gcs-server is SIGKILLed once 8 of 24 saves of a batch have committed
    (right after another save uploaded its artifact): the batch returns promptly
    with a per-item error for every save that did not finish; after a restart on
    the same data nothing half-committed is readable, every save the client saw
    succeed is there, the janitor removes exactly the uncommitted folders, and
    the registry is usable."""
    server, n, kill_after = own_server, 24, 8
    bucket, prefix = f"fault-{uuid.uuid4().hex[:12]}", "reg"
    server.start(bucket)
    names = [f"fault-{i}" for i in range(n)]
    payloads = [fault_payload(i) for i in range(n)]
    cache_dir = tmp_path / "cache"

    def backend() -> GCSBackend:
        return server.as_server().backend(bucket, prefix=prefix, concurrency=8)

    async def batch() -> tuple[Any, float, tuple[str, str] | None]:
        wrapped = KillMidBatch(backend(), server, kill_after)
        async with AsyncRegistry(backend=wrapped, version_objects=True, cache_dir=cache_dir) as reg:
            started = time.monotonic()
            with anyio.fail_after(30):  # a hang fails here
                result = await reg.save(names, payloads)
            return result, time.monotonic() - started, wrapped.orphan

    result, elapsed, orphan = asyncio.run(batch())
    assert orphan is not None and not server.alive(), "the server was not killed"
    assert elapsed < 15, f"the batch took {elapsed:.1f}s after the server died"
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

    server.start(bucket)  # same port, same data folder

    async def after_restart() -> None:
        async with AsyncRegistry(
            backend=backend(), version_objects=True, cache_dir=cache_dir
        ) as reg:
            visible = set(await reg.list_objects())
            # every save the client saw succeed is there; a failed one is absent,
            # or complete if its commit landed just before the server died
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


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_registry_recovers_when_the_server_returns(own_server: OwnServer, tmp_path: Path) -> None:
    """One long-lived sync Registry (one client, one connection pool): while the
    server is down every call fails fast with GCSEndpointUnreachable; once it is
    back on the same data the same Registry works again (its pooled connections
    to the dead process are not reused as if alive), with nothing lost."""
    server = own_server
    bucket = f"recover-{uuid.uuid4().hex[:12]}"
    server.start(bucket)
    big = rw.make_payload("big", 200 * KIB)
    backend = server.as_server().backend(bucket, prefix="reg")
    with Registry(backend=backend, version_objects=True, cache_dir=tmp_path / "c") as reg:
        assert reg.save("before", big) == "1"
        server.kill()
        for call in (
            lambda: reg.save("during", b"small"),
            lambda: reg.load("before", verify="full"),
            lambda: reg.list_objects(),
        ):
            start = time.monotonic()
            with pytest.raises(GCSEndpointUnreachable):
                call()
            assert time.monotonic() - start < ERROR_BOUND
        server.start(bucket)
        assert reg.save("after", big) == "1"
        assert reg.load("before", verify="full") == big
        assert reg.load("after", verify="full") == big
        assert sorted(reg.list_objects()) == ["after", "before"]
        assert "during" not in reg


# -- faults: damaged objects on the server -------------------------------------------------


async def artifact_key(reg: AsyncRegistry, name: str, version: str) -> str:
    info = await reg.info(name, version)
    assert isinstance(info, dict)
    assert not info["inline"]
    (rel,) = info["files"]
    return f"objects/{name}/{info['uuid']}/{rel}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "damage", ["truncated", "corrupted", "corrupted-late-range", "deleted", "inline-corrupted"]
)
async def test_damaged_object_is_an_integrity_error(
    target: GCSTarget, tmp_path: Path, damage: str
) -> None:
    """An artifact cut short, with a flipped byte (also in the last of several
    ranged GETs), or gone on the server, or an inlined value altered inside
    valid metadata -> RegistryIntegrityError when loaded on a cold cache, every
    time: the damaged copy is never cached."""
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
            if damage == "deleted":
                await writer_backend.delete([key])
            else:
                if damage == "truncated":
                    bad = stored[: len(stored) // 2]
                else:
                    flipped = bytearray(stored)
                    at = (
                        len(flipped) - 10 if damage == "corrupted-late-range" else len(flipped) // 2
                    )
                    flipped[at] ^= 0xFF
                    bad = bytes(flipped)
                await writer_backend.put(key, bad)

    reader_cache = tmp_path / "reader"
    # 256 KiB ranges: the 1 MiB artifact comes in 5 ranged GETs, 4 of them concurrent
    reader_backend = target.backend(prefix=prefix, chunk_size=CHUNK_QUANTUM)
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
async def test_corrupt_metadata_names_the_key(target: GCSTarget, tmp_path: Path) -> None:
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
        await backend.put(SETTINGS_KEY, b'{"mutable": tru')  # cut mid-JSON as well

    settings = AsyncRegistry(backend=target.backend(prefix=prefix), cache_dir=tmp_path / "s")
    try:
        with pytest.raises(RegistryCorruptMetadata, match=SETTINGS_KEY):
            await settings.list_objects()
    finally:
        await settings.aclose()
        await backend.aclose()


# -- misconfiguration, through a Registry ----------------------------------------------------


def _service_account(path: Path, token_uri: str) -> None:
    """A well-formed service-account key (a fresh RSA key) whose token endpoint
    is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "registry-tests",
                "private_key_id": "0",
                "private_key": pem,
                "client_email": "tests@registry-tests.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": token_uri,
            }
        )
    )


def test_emulator_host_and_the_issue_api(
    target: GCSTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The constructor of the issue, pointed at the emulator by STORAGE_EMULATOR_HOST
    (as ``host:port``, the way gcloud-aio reads it), runs a sync Registry."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", target.server.endpoint.removeprefix("http://"))
    prefix = f"api-{uuid.uuid4().hex[:8]}"
    gcs = GCPRegistryBackend(
        uri=f"gs://{target.bucket}/{prefix}",
        project_id="my-project",
        bucket_name=target.bucket,
    )
    assert gcs.endpoint == target.server.endpoint and gcs.anonymous
    with Registry(backend=gcs, version_objects=True, cache_dir=tmp_path / "c") as reg:
        reg["cfg"] = {"lr": 0.1}
        assert reg.save("cfg", {"lr": 0.2}) == "2"
        assert reg["cfg@1"] == {"lr": 0.1}
        assert reg.load("cfg") == {"lr": 0.2}
        assert reg.list_versions("cfg") == ["1", "2"]
    with pytest.raises(ValueError, match="contradicts"):
        GCPRegistryBackend(uri=f"gs://{target.bucket}/{prefix}", bucket_name="another-bucket")


def test_misconfiguration_is_a_clear_error_through_a_registry(
    target: GCSTarget, tmp_path: Path
) -> None:
    """A missing bucket, bad credentials (no file, not JSON, a key the token
    endpoint refuses) and an unreachable endpoint: every Registry call reports
    its GCSBackendError subclass, with the cause in the message, within seconds;
    a failed first use is not cached as a broken registry (the next call tries again)."""
    endpoint = target.server.endpoint
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    refused = tmp_path / "refused.json"  # a real key; fake-gcs answers 404 at /token
    _service_account(refused, f"{endpoint}/token")
    missing_bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    cases: list[tuple[GCSBackend, type[Exception], str]] = [
        (
            GCSBackend(uri=f"gs://{missing_bucket}/p", endpoint=endpoint),
            GCSBucketNotFound,
            missing_bucket,
        ),
        (
            GCSBackend(
                uri=f"gs://{target.bucket}/p",
                endpoint=endpoint,
                anonymous=False,
                credentials_path=tmp_path / "missing.json",
            ),
            GCSAccessDenied,
            "cannot read",
        ),
        (
            GCSBackend(
                uri=f"gs://{target.bucket}/p",
                endpoint=endpoint,
                anonymous=False,
                credentials_path=garbage,
            ),
            GCSAccessDenied,
            "not valid JSON",
        ),
        (
            GCSBackend(
                uri=f"gs://{target.bucket}/p",
                endpoint=endpoint,
                anonymous=False,
                credentials_path=refused,
            ),
            GCSAccessDenied,
            "access token",
        ),
        (GCSBackend(uri="gs://bucket/p", endpoint=dead), GCSEndpointUnreachable, dead),
    ]
    for backend, error, message in cases:
        start = time.monotonic()
        with Registry(backend=backend, cache_dir=tmp_path / "cache") as reg:
            with pytest.raises(error, match=message) as caught:
                reg.save("x", b"value")
            assert isinstance(caught.value, BackendError)
            if error is GCSBucketNotFound:
                assert "create_bucket=True" in str(caught.value)
            with pytest.raises(error, match=message):
                reg.load("x")
            with pytest.raises(error, match=message):
                reg.list_objects()
        assert time.monotonic() - start < ERROR_BOUND, (backend, error)


# -- a stale generation really fails at the registry level ---------------------------------


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
    have read the same generation before either writes; records every
    compare-and-swap of ``key``: (generation sent, "won" | "lost", generation
    written)."""

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


def first_swaps(racers: list[HeldSwap], generation: str) -> tuple[HeldSwap, HeldSwap]:
    """(winner, loser) of two racers whose first compare-and-swap both sent
    ``generation``: exactly one of them may win it."""
    firsts = sorted(r.swaps[0][:2] for r in racers)
    assert firsts == [(generation, "lost"), (generation, "won")], (
        f"two compare-and-swaps on generation {generation} must not both win: {firsts}"
    )
    winner, loser = racers if racers[0].swaps[0][1] == "won" else racers[::-1]
    return winner, loser


@pytest.mark.anyio
async def test_stale_generation_fails_and_registrations_merge(
    target: GCSTarget, tmp_path: Path
) -> None:
    """Two registries (separate clients) read the settings file at the same
    generation and both compare-and-swap their materializer registration onto
    it: the server refuses the second (a stale generation), that registry reads
    again and retries, and both registrations are kept. A server that ignored
    the precondition would let the second write erase the first one's entry."""
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

        # both first attempts carried the generation both had read; one lost
        winner, loser = first_swaps(racers, first)
        assert len(winner.swaps) == 1, winner.swaps
        second = winner.swaps[0][2]
        assert second is not None and second != first
        # the loser read the settings again and swapped onto the winner's generation
        assert len(loser.swaps) == 2 and loser.swaps[1][:2] == (second, "won"), loser.swaps
        assert (winner.counts["head"], loser.counts["head"]) == (1, 2)

        async with AsyncRegistry(backend=backend, cache_dir=tmp_path / "c") as fresh:
            assert set(await fresh.registered_materializers()) == set(classes)
            # a stale generation still fails, and changes nothing
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
async def test_stale_generation_on_a_tombstone_has_one_winner(
    target: GCSTarget, tmp_path: Path
) -> None:
    """A deleted explicit version leaves a tombstone that a new save may replace,
    by compare-and-swap on its generation: two registries that both read the
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
            assert await uuid_folders(backend, "tomb") == {info["uuid"]}
    finally:
        await backend.aclose()


# -- request counts ------------------------------------------------------------------------


def counts(backend: CountingBackend) -> dict[str, int]:
    return {op: n for op, n in backend.counts.items() if n}


class HttpLog:
    """Every HTTP request the GCS backend's aiohttp session sends (retries
    included), as (method, kind): "upload:<uploadType>", "media" (object bytes),
    "meta" (object resource) or "list"; ``conditions`` keeps each upload's
    ifGenerationMatch (None when unconditional)."""

    def __init__(self, backend: GCSBackend) -> None:
        self.sent: list[tuple[str, str, str | None]] = []
        session = backend.loop_state()["session"]
        original = session._request

        def request(method: str, url: Any, **kwargs: Any) -> Any:
            params = dict(kwargs.get("params") or {})
            path = str(url).split("?", 1)[0]
            if "uploadType" in params:
                kind = f"upload:{params['uploadType']}"
            elif path.endswith("/o"):
                kind = "list"
            else:
                kind = "media" if params.get("alt") == "media" else "meta"
            self.sent.append((method, kind, params.get("ifGenerationMatch")))
            return original(method, url, **kwargs)

        session._request = request
        self.last: list[tuple[str, str, str | None]] = []

    def take(self) -> Counter[tuple[str, str]]:
        """(method, kind) counts of the requests since the last take."""
        self.last, self.sent = self.sent, []
        return Counter((method, kind) for method, kind, _ in self.last)


@pytest.mark.anyio
async def test_request_counts_save(target: GCSTarget, tmp_path: Path) -> None:
    """save, explicit version: a large object = 1 artifact put + 1 conditional meta
    put; a small one is inlined = 1 put. At the HTTP level: as many multipart
    uploads, the commit carrying ifGenerationMatch=0."""
    gcs = target.backend()
    counting = CountingBackend(gcs)
    async with AsyncRegistry(backend=counting, version_objects=True, cache_dir=tmp_path) as reg:
        http = HttpLog(gcs)  # the registry is open: its client exists
        counting.reset()

        await reg.save("big", rw.make_payload("big", 200 * KIB), version="1")
        big = counts(counting)
        assert sum(n for op, n in big.items() if op in ("put", "put_file")) == 2, big
        assert set(big) <= {"put", "put_file"}, big
        assert http.take() == Counter({("POST", "upload:multipart"): 2})
        # the artifact goes first, unconditionally; then the conditional commit
        assert [condition for _, _, condition in http.last] == [None, "0"]

        counting.reset()
        await reg.save("small", b"tiny", version="1")
        assert counts(counting) == {"put": 1}
        assert http.take() == Counter({("POST", "upload:multipart"): 1})
        assert http.last[0][2] == "0"

        # auto-increment adds the one listing that finds the next number
        counting.reset()
        await reg.save("small", b"tiny again")
        assert counts(counting) == {"list": 1, "put": 1}
        assert http.take() == Counter({("GET", "list"): 1, ("POST", "upload:multipart"): 1})


@pytest.mark.anyio
async def test_request_counts_load(target: GCSTarget, tmp_path: Path) -> None:
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

    gcs = target.backend(prefix=prefix)
    counting = CountingBackend(gcs)
    async with AsyncRegistry(backend=counting, cache_dir=tmp_path / "cold") as reg:
        http = HttpLog(gcs)
        counting.reset()

        async def load(
            name: str, version: str, verify: Any
        ) -> tuple[dict[str, int], Counter[tuple[str, str]]]:
            counting.reset()
            assert await reg.load(name, version=version, verify=verify) == (
                big if name == "big" else small
            )
            return counts(counting), http.take()

        media = ("GET", "media")
        # cold cache, explicit version
        assert await load("big", "1", "integrity") == (
            {"get": 1, "get_file": 1},
            Counter({media: 2}),
        )
        assert await load("small", "1", "integrity") == ({"get": 1}, Counter({media: 1}))
        # warm cache
        assert await load("big", "1", "integrity") == ({}, Counter())
        assert await load("big", "1", "none") == ({}, Counter())
        assert await load("big", "1", "full") == ({"get": 1}, Counter({media: 1}))
        assert await load("small", "1", "integrity") == ({}, Counter())
        # "latest": one listing more
        listing = ("GET", "list")
        assert await load("big", "latest", "integrity") == ({"list": 1}, Counter({listing: 1}))
        assert await load("big", "latest", "full") == (
            {"list": 1, "get": 1},
            Counter({listing: 1, media: 1}),
        )

    # "latest" on a cold cache: list + meta get + artifact get_file
    gcs = target.backend(prefix=prefix)
    counting = CountingBackend(gcs)
    async with AsyncRegistry(backend=counting, cache_dir=tmp_path / "cold2") as reg:
        http = HttpLog(gcs)
        counting.reset()
        assert await reg.load("big") == big
        assert counts(counting) == {"list": 1, "get": 1, "get_file": 1}
        assert http.take() == Counter({listing: 1, media: 2})
