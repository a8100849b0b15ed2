"""What the S3 and GCS backends share, on each real server in turn: moto and
SeaweedFS for S3, fake-gcs-server for GCS (``remotes.py`` holds what differs).

Races between separate clients, large round trips and ranged downloads that
restart when the object changes, the clear errors for a missing bucket and an
unreachable endpoint, prefixes, listings and deletes, event loops, retries,
ambiguous writes, and lazy imports.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from registry.backends.base import FileInfo
from registry.backends.remote import RemoteBackend
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed
from registry.testing.backend_tests import collect
from tests.backends.remotes import (
    ERROR_BOUND,
    REMOTES,
    Calls,
    GCSRemote,
    MiB,
    Remote,
    S3Remote,
    random_file,
    remote_for,
)
from tests.servers import free_port


@pytest.fixture(params=REMOTES)
def remote(request: pytest.FixtureRequest) -> Remote:
    return remote_for(request, request.param)


@pytest.fixture
async def backend(remote: Remote) -> AsyncIterator[RemoteBackend[Any]]:
    backend = remote.backend()
    yield backend
    await backend.aclose()


# -- races between separate clients ----------------------------------------------------------


@pytest.mark.anyio
async def test_create_race_between_clients_has_one_winner(remote: Remote) -> None:
    """Separate backends (own clients, own connection pools), one key, one winner.

    20 racers; 8 on SeaweedFS, whose losers wait in 1 s steps (the contract's
    20-writer race runs there too, through one client).
    """
    prefix = f"race-{os.urandom(6).hex()}"
    count = 8 if remote.name == "seaweedfs" else 20
    racers = [remote.backend(prefix=prefix) for _ in range(count)]
    try:
        for racer in racers:  # connect and check the bucket before the start line
            await racer.head("warm-up")
        go = anyio.Event()
        won: dict[int, FileInfo] = {}
        lost: list[int] = []

        async def race(index: int) -> None:
            await go.wait()
            try:
                won[index] = await racers[index].put("key", b"racer %d" % index, mode="create")
            except PreconditionFailed:
                lost.append(index)

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                for index in range(len(racers)):
                    tg.start_soon(race, index)
                await anyio.sleep(0.05)
                go.set()
        assert len(won) == 1, f"{len(won)} winners: {sorted(won)}"
        assert len(lost) == len(racers) - 1
        (winner, info), *_ = won.items()
        assert await racers[0].get("key") == b"racer %d" % winner
        head = await racers[-1].head("key")
        assert head is not None and head.etag == info.etag
    finally:
        for racer in racers:
            await racer.aclose()


# -- large objects ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_large_round_trip_is_byte_identical(remote: Remote, tmp_path: Path) -> None:
    backend = remote.backend(**remote.large_options)
    try:
        size = 20 * MiB + 12345
        src = tmp_path / "big.bin"
        data = random_file(src, size, 7)
        info = await backend.put_file("big/file.bin", src)
        assert info.size == size
        remote.check_large_upload(info)
        head = await backend.head("big/file.bin")
        assert head is not None and head.size == size and head.etag == info.etag

        dest = tmp_path / "out.bin"
        dest.write_bytes(b"old content, longer than nothing")
        got = await backend.get_file("big/file.bin", dest)
        assert got.size == size and got.etag == info.etag
        assert dest.stat().st_size == size
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()

        # compare-and-swap on the large upload's etag
        await backend.put("big/file.bin", b"small now", if_match=info.etag)
        assert await backend.get("big/file.bin") == b"small now"
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_ranged_download_restarts_when_the_object_changes(
    remote: Remote, tmp_path: Path
) -> None:
    """Ranges are pinned to the first range's ETag / generation: a mid-download
    overwrite restarts the download instead of mixing two versions."""
    backend = remote.backend(**remote.range_options)
    writer = remote.backend(prefix=backend.prefix)  # another client, as another host
    span = remote.range_size
    try:
        old = random.Random(1).randbytes(2 * span + span // 2)
        new = random.Random(2).randbytes(2 * span + span // 4)
        await backend.put("rng/key", old)

        async def overwrite() -> None:
            await writer.put("rng/key", new)

        calls = Calls(after_first=overwrite)
        await remote.replace(backend, "download", calls.wrap)
        dest = tmp_path / "dest.bin"
        info = await backend.get_file("rng/key", dest)
        assert dest.read_bytes() == new
        assert info.size == len(new)
        head = await writer.head("rng/key")
        assert head is not None and info.etag == head.etag
        assert calls.count >= 4  # 1 range of the old object (+ a refusal), 3 of the new one
    finally:
        await backend.aclose()
        await writer.aclose()


# -- clear errors, quickly -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_missing_bucket_is_a_clear_error(remote: Remote) -> None:
    name = f"no-such-bucket-{os.urandom(4).hex()}"
    backend = remote.on_bucket(name)
    start = time.monotonic()
    try:
        with pytest.raises(remote.bucket_missing, match=name) as caught:
            await backend.get("any/key")
        assert "create_bucket=True" in str(caught.value)
        assert isinstance(caught.value, BackendError)
        # HEAD alone would see a bodiless 404: the bucket check still names it
        with pytest.raises(remote.bucket_missing):
            await backend.head("any/key")
    finally:
        await backend.aclose()
    assert time.monotonic() - start < ERROR_BOUND


@pytest.mark.anyio
async def test_create_bucket_creates_it(remote: Remote, caplog: pytest.LogCaptureFixture) -> None:
    name = f"created-{os.urandom(4).hex()}"
    backend = remote.on_bucket(name, create_bucket=True)
    try:
        with caplog.at_level(logging.INFO, logger="registry.backends"):
            await backend.put("k", b"v")
        assert any(r.levelno == logging.INFO and name in r.getMessage() for r in caplog.records)
        assert await backend.get("k") == b"v"
    finally:
        await backend.aclose()
    again = remote.on_bucket(name, create_bucket=True)  # already there: fine
    try:
        assert await again.get("k") == b"v"
    finally:
        await again.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("family", [S3Remote, GCSRemote], ids=["s3", "gcs"])
async def test_unreachable_endpoint_is_a_clear_error(family: type[Remote]) -> None:
    port = free_port()  # nothing listens there
    backend = family.unreachable(port)
    error = family.unreachable_error
    start = time.monotonic()
    try:
        with pytest.raises(error, match=str(port)):
            await backend.put("k", b"v")
        assert time.monotonic() - start < ERROR_BOUND
        # many callers at once: one bounded attempt, not one per caller in turn
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await backend.head("k")
            except error as exc:
                errors.append(exc)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(call)
        assert len(errors) == 32
    finally:
        await backend.aclose()
    assert time.monotonic() - start < ERROR_BOUND


@pytest.mark.parametrize("family", [S3Remote, GCSRemote], ids=["s3", "gcs"])
def test_error_classes(family: type[Remote]) -> None:
    for cls in (family.bucket_missing, family.denied, family.unreachable_error):
        assert issubclass(cls, family.base_error) and issubclass(cls, BackendError)


@pytest.mark.parametrize("family", [S3Remote, GCSRemote], ids=["s3", "gcs"])
def test_import_loads_nothing_optional_and_constructor_stores_configuration(
    family: type[Remote],
) -> None:
    cls = family.backend_class
    uri = f"{cls.scheme}://bucket/prefix"
    code = (
        "import sys\n"
        f"from {cls.__module__.rpartition('.')[0]} import {cls.__name__}\n"
        f"b = {cls.__name__}(uri={uri!r}, endpoint='127.0.0.1:1')\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({family.lazy_modules!r}))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    backend = cls(uri=uri, endpoint="127.0.0.1:1")  # type: ignore[call-arg]
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.uri == backend.uri and clone.identity == backend.identity
    assert clone._runtime == {}


# -- prefixes, listing, deleting -----------------------------------------------------------------


@pytest.mark.anyio
async def test_prefixes_isolate_backends(remote: Remote) -> None:
    root = f"iso-{os.urandom(4).hex()}"
    one = remote.backend(prefix=f"{root}/one")
    two = remote.backend(prefix=f"{root}/two")
    outer = remote.backend(prefix=root)
    try:
        await one.put("k", b"1")
        await two.put("k", b"2")
        assert (await one.get("k"), await two.get("k")) == (b"1", b"2")
        files, _ = await collect(one, "")
        assert set(files) == {"k"}
        files, folders = await collect(outer, "", delimiter="/")
        assert files == {} and folders == {"one/", "two/"}
        files, _ = await collect(outer, "")
        assert set(files) == {"one/k", "two/k"}
    finally:
        for backend in (one, two, outer):
            await backend.aclose()


@pytest.mark.anyio
async def test_list_paginates(
    remote: Remote, backend: RemoteBackend[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await remote.small_pages(backend, monkeypatch)
    keys = {f"pg/{i}" for i in range(5)} | {f"pg/sub{i}/x" for i in range(3)}
    for key in keys:
        await backend.put(key, b"v")
    files, folders = await collect(backend, "pg/")
    assert set(files) == keys and folders == set()
    files, folders = await collect(backend, "pg/", delimiter="/")
    assert set(files) == {f"pg/{i}" for i in range(5)}
    assert folders == {f"pg/sub{i}/" for i in range(3)}
    assert sorted(await backend.list_children("pg/")) == sorted(f"pg/{i}" for i in range(5))
    assert await backend.list_children("pg/sub0/") == ["pg/sub0/x"]


@pytest.mark.anyio
async def test_list_children_skips_folders(backend: RemoteBackend[Any]) -> None:
    for key in ("m/a.json", "m/b.json", "m/sub/c.json", "m/sub/deeper/d"):
        await backend.put(key, b"{}")
    assert sorted(await backend.list_children("m/")) == ["m/a.json", "m/b.json"]
    assert await backend.list_children("m/sub/deeper/") == ["m/sub/deeper/d"]
    assert await backend.list_children("absent/") == []


@pytest.mark.anyio
async def test_delete_many_keys(
    remote: Remote, backend: RemoteBackend[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many keys at once (S3: in batches of 3), missing and repeated keys included."""
    remote.small_delete_batches(monkeypatch)
    keys = [f"del/{i:03d}" for i in range(40)]
    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(backend.put, key, b"x")
    await backend.put("keep", b"x")
    await backend.delete([*keys, "del/missing", keys[0]])
    files, _ = await collect(backend, "")
    assert set(files) == {"keep"}


# -- event loops ---------------------------------------------------------------------------------


def test_backend_works_from_successive_event_loops(remote: Remote) -> None:
    backend = remote.backend()

    async def use(value: bytes) -> bytes:
        await backend.put("loop/key", value)
        return await backend.get("loop/key")

    # a new asyncio.run each time: the client of a closed loop is never reused
    assert asyncio.run(use(b"one")) == b"one"
    assert asyncio.run(use(b"two")) == b"two"

    async def close() -> None:
        await backend.aclose()

    asyncio.run(close())


# -- retries and ambiguous writes ---------------------------------------------------------------


@pytest.mark.anyio
async def test_transient_errors_are_retried_with_a_warning(
    remote: Remote, backend: RemoteBackend[Any], caplog: pytest.LogCaptureFixture
) -> None:
    failures = remote.throttled()
    calls = 0

    def flaky(original: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if failures:
                raise failures.pop(0)
            return await original(*args, **kwargs)

        return call

    await remote.replace(backend, "put", flaky)
    with caplog.at_level(logging.WARNING, logger="registry.backends"):
        await backend.put("r/key", b"value")
    assert calls == 3
    assert await backend.get("r/key") == b"value"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("r/key" in r.getMessage() for r in warnings)
    assert "attempt 1 of 5" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_412_and_404_are_not_retried(remote: Remote, backend: RemoteBackend[Any]) -> None:
    await backend.put("r/key", b"value")
    puts, gets = Calls(), Calls()
    await remote.replace(backend, "put", puts.wrap)
    await remote.replace(backend, "get", gets.wrap)
    with pytest.raises(PreconditionFailed):
        await backend.put("r/key", b"again", mode="create")
    assert puts.count == 1
    with pytest.raises(PreconditionFailed):
        await backend.put("r/absent", b"cas", if_match="1234")
    assert puts.count == 2
    with pytest.raises(ObjectNotFound):
        await backend.get("r/absent")
    assert gets.count == 1


@pytest.mark.anyio
async def test_ambiguous_create_that_landed_is_a_success(
    remote: Remote, backend: RemoteBackend[Any]
) -> None:
    """The first attempt lands but its answer is lost; the retry then gets 412."""

    async def lose_the_answer() -> None:
        raise remote.lost_answer()

    calls = Calls(after_first=lose_the_answer)
    await remote.replace(backend, "put", calls.wrap)
    info = await backend.put("amb/key", b"mine", mode="create")
    assert calls.count == 2
    assert await backend.get("amb/key") == b"mine"
    head = await backend.head("amb/key")
    assert head is not None and head.etag == info.etag
    assert await remote.stored_md5(backend, "amb/key") == hashlib.md5(b"mine").hexdigest()
    # and someone else's value is still a lost race
    with pytest.raises(PreconditionFailed):
        await backend.put("amb/key", b"other", mode="create")
