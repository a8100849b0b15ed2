"""The S3 backend on real servers: moto and SeaweedFS, started by the test session.

The whole backend contract runs on both (``BackendTests``), scaled down where
a server is slow at something the contract does many times. The tests below
it cover what only S3 has: multipart transfers, conditional races between
separate clients, the clear errors for a missing bucket, bad credentials and
an unreachable endpoint, configuration parsing, and the retry policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from registry.backends.base import Backend, FileInfo
from registry.backends.retry import RetryPolicy, retry_call
from registry.backends.s3 import (
    BucketNotFound,
    EndpointUnreachable,
    S3AccessDenied,
    S3Backend,
    S3BackendError,
)
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed
from registry.testing import BackendTests
from registry.testing.backend_tests import collect
from tests.backends.conftest import S3Target
from tests.servers import free_port

MiB = 1024 * 1024
ERROR_BOUND = 8.0  # seconds within which a misconfiguration must be reported


# -- the contract ------------------------------------------------------------------------


class TestS3BackendMoto(BackendTests):
    # moto answers one request at a time and closes every connection
    churn_rounds: ClassVar[int] = 30
    overwrite_rounds: ClassVar[int] = 25

    @pytest.fixture
    async def backend(self, moto_target: S3Target) -> AsyncIterator[Backend]:
        backend = moto_target.backend()
        yield backend
        await backend.aclose()


class TestS3BackendSeaweedFS(BackendTests):
    # racers on one key wait in ~1 s steps on SeaweedFS: keep contended rounds few
    churn_rounds: ClassVar[int] = 40
    overwrite_rounds: ClassVar[int] = 30

    @pytest.fixture
    async def backend(self, seaweedfs_target: S3Target) -> AsyncIterator[Backend]:
        backend = seaweedfs_target.backend()
        yield backend
        await backend.aclose()


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def s3(s3_target: S3Target) -> AsyncIterator[S3Backend]:
    backend = s3_target.backend()
    yield backend
    await backend.aclose()


async def raw_client(backend: S3Backend) -> Any:
    """The backend's own aiobotocore client (for checks the contract has no call for)."""
    return await backend._client()


def random_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


# -- multipart -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_multipart_round_trip(s3_target: S3Target, tmp_path: Path) -> None:
    backend = s3_target.backend(part_size=5 * MiB)
    try:
        size = 20 * MiB + 12345
        src = tmp_path / "big.bin"
        data = random_file(src, size, 7)
        info = await backend.put_file("big/file.bin", src)
        assert info.size == size
        # 5 parts of 5 MiB: the ETag of a multipart upload ends in -<parts>
        assert info.etag.endswith("-5"), info.etag
        head = await backend.head("big/file.bin")
        assert head is not None and head.size == size and head.etag == info.etag

        dest = tmp_path / "out.bin"
        dest.write_bytes(b"old content, longer than nothing")
        got = await backend.get_file("big/file.bin", dest)
        assert got.size == size and got.etag == info.etag
        assert dest.stat().st_size == size
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()

        # compare-and-swap accepts a multipart ETag
        await backend.put("big/file.bin", b"small now", if_match=info.etag)
        assert await backend.get("big/file.bin") == b"small now"
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_multipart_create_loses_and_cleans_up(s3_target: S3Target, tmp_path: Path) -> None:
    backend = s3_target.backend(part_size=5 * MiB)
    try:
        first = tmp_path / "first.bin"
        first_data = random_file(first, 11 * MiB, 1)
        second = tmp_path / "second.bin"
        random_file(second, 11 * MiB, 2)
        info = await backend.put_file("mp/once", first, mode="create")
        with pytest.raises(PreconditionFailed):
            await backend.put_file("mp/once", second, mode="create")
        stored = await backend.head("mp/once")
        # SeaweedFS may round the completion time to another second than the
        # reply reported: compare what identifies the object.
        assert stored is not None and (stored.etag, stored.size) == (info.etag, info.size)
        assert await backend.get("mp/once") == first_data
        # the losing upload was aborted: no multipart upload left behind
        client = await raw_client(backend)
        uploads = await client.list_multipart_uploads(
            Bucket=backend.bucket, Prefix=backend.prefix + "/"
        )
        assert uploads.get("Uploads", []) == []
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_ranged_download_restarts_when_the_object_changes(
    s3_target: S3Target, tmp_path: Path
) -> None:
    """Ranges are pinned to the first range's ETag: a mid-download overwrite
    restarts the download instead of mixing two versions."""
    backend = s3_target.backend(part_size=5 * MiB)
    writer = s3_target.backend(prefix=backend.prefix)  # another client, as another host
    try:
        old = random.Random(1).randbytes(12 * MiB)
        new = random.Random(2).randbytes(11 * MiB)
        await backend.put("rng/key", old)
        client = await raw_client(backend)
        original = client.get_object
        calls = 0

        async def overwrite_after_first(**params: Any) -> Any:
            nonlocal calls
            calls += 1
            response = await original(**params)
            if calls == 1:
                await writer.put("rng/key", new)
            return response

        client.get_object = overwrite_after_first
        dest = tmp_path / "dest.bin"
        info = await backend.get_file("rng/key", dest)
        assert dest.read_bytes() == new
        assert info.size == len(new)
        assert calls >= 4  # 1 first range + a 412 + 3 ranges of the new object
    finally:
        await backend.aclose()
        await writer.aclose()


@pytest.mark.anyio
async def test_failed_multipart_upload_is_aborted(s3_target: S3Target, tmp_path: Path) -> None:
    backend = s3_target.backend(part_size=5 * MiB)
    try:
        src = tmp_path / "src.bin"
        random_file(src, 16 * MiB, 5)
        client = await raw_client(backend)
        original = client.upload_part

        async def third_part_refused(**params: Any) -> Any:
            if params["PartNumber"] == 3:
                raise _client_error(400, "InvalidPart")
            return await original(**params)

        client.upload_part = third_part_refused
        with pytest.raises(S3BackendError, match="InvalidPart"):
            await backend.put_file("mp/broken", src)
        assert await backend.head("mp/broken") is None
        uploads = await client.list_multipart_uploads(
            Bucket=backend.bucket, Prefix=backend.prefix + "/"
        )
        assert uploads.get("Uploads", []) == []
    finally:
        await backend.aclose()


def test_part_size_adapts_to_the_10000_part_limit() -> None:
    backend = S3Backend("bucket", part_size=5 * MiB)
    assert backend._part_size_for(20 * MiB) == 5 * MiB
    huge = 200 * 1024 * MiB  # 200 GiB would need 40,960 parts of 5 MiB
    part = backend._part_size_for(huge)
    assert part % MiB == 0 and -(-huge // part) <= 10_000
    with pytest.raises(ValueError):
        S3Backend("bucket", part_size=MiB)  # S3's minimum part is 5 MiB


# -- races between separate clients -----------------------------------------------------------


@pytest.mark.anyio
async def test_create_race_between_clients_has_one_winner(s3_target: S3Target) -> None:
    """Separate backends (own clients, own connection pools), one key, one winner.

    20 on moto; 8 on SeaweedFS, whose losers wait in 1 s steps (the contract's
    20-writer race runs there too, through one client).
    """
    prefix = f"race-{os.urandom(6).hex()}"
    count = 20 if s3_target.name == "moto" else 8
    racers = [s3_target.backend(prefix=prefix) for _ in range(count)]
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


# -- clear errors, quickly -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_missing_bucket_is_a_clear_error(s3_target: S3Target) -> None:
    name = f"no-such-bucket-{os.urandom(4).hex()}"
    backend = s3_target.server.backend(name)
    start = time.monotonic()
    try:
        with pytest.raises(BucketNotFound, match=name) as caught:
            await backend.get("any/key")
        assert "create_bucket=True" in str(caught.value)
        assert isinstance(caught.value, BackendError)
        # HEAD alone would see a bodiless 404: the bucket check still names it
        with pytest.raises(BucketNotFound):
            await backend.head("any/key")
    finally:
        await backend.aclose()
    assert time.monotonic() - start < ERROR_BOUND


@pytest.mark.anyio
async def test_create_bucket_creates_it(s3_target: S3Target) -> None:
    name = f"created-{os.urandom(4).hex()}"
    backend = s3_target.server.backend(name, create_bucket=True)
    try:
        await backend.put("k", b"v")
        assert await backend.get("k") == b"v"
    finally:
        await backend.aclose()
    again = s3_target.server.backend(name, create_bucket=True)  # already there: fine
    try:
        assert await again.get("k") == b"v"
    finally:
        await again.aclose()


@pytest.mark.anyio
async def test_wrong_credentials_are_a_clear_error(seaweedfs_target: S3Target) -> None:
    # (moto accepts any credentials, so this runs on SeaweedFS only)
    server = seaweedfs_target.server
    backend = S3Backend(
        seaweedfs_target.bucket,
        endpoint=server.endpoint,
        access_key=server.access_key,
        secret_key="not-the-secret",
    )
    start = time.monotonic()
    try:
        with pytest.raises(S3AccessDenied, match="secret_key"):
            await backend.get("any/key")
    finally:
        await backend.aclose()
    unknown = S3Backend(
        seaweedfs_target.bucket, endpoint=server.endpoint, access_key="nobody", secret_key="x"
    )
    try:
        with pytest.raises(S3AccessDenied):
            await unknown.put("k", b"v")
    finally:
        await unknown.aclose()
    assert time.monotonic() - start < ERROR_BOUND


@pytest.mark.anyio
async def test_unreachable_endpoint_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    backend = S3Backend(
        "bucket", endpoint=f"127.0.0.1:{port}", secure=False, access_key="a", secret_key="b"
    )
    start = time.monotonic()
    try:
        with pytest.raises(EndpointUnreachable, match=str(port)):
            await backend.put("k", b"v")
        assert time.monotonic() - start < ERROR_BOUND
        # many callers at once: one bounded attempt, not one per caller in turn
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await backend.head("k")
            except EndpointUnreachable as exc:
                errors.append(exc)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(call)
        assert len(errors) == 32
    finally:
        await backend.aclose()
    assert time.monotonic() - start < ERROR_BOUND


# -- configuration -------------------------------------------------------------------------------


def test_uri_form_parses_bucket_and_prefix() -> None:
    backend = S3Backend(uri="s3://my-bucket/team-a/models/", endpoint="localhost:9000")
    assert backend.bucket == "my-bucket"
    assert backend.prefix == "team-a/models"
    assert backend.uri == "s3://my-bucket/team-a/models"
    assert backend.endpoint_url == "https://localhost:9000"
    bare = S3Backend(uri="s3://my-bucket", endpoint="http://127.0.0.1:9000", secure=True)
    assert (bare.bucket, bare.prefix, bare.uri) == ("my-bucket", "", "s3://my-bucket")
    assert bare.endpoint_url == "http://127.0.0.1:9000"  # an explicit scheme wins
    plain = S3Backend("b", prefix="/p/q/", endpoint="host:1", secure=False)
    assert (plain.uri, plain.endpoint_url) == ("s3://b/p/q", "http://host:1")
    assert S3Backend(uri="s3://my-bucket/x", bucket="my-bucket").prefix == "x"
    for bad in (
        {"uri": "gs://bucket/x"},
        {"uri": "s3:///nobucket"},
        {"uri": "s3://a/x", "bucket": "b"},
        {"uri": "s3://a/x", "prefix": "y"},
        {},
        {"bucket": "b", "access_key": "only-one"},
        {"bucket": "b", "checksums": "always"},
        {"bucket": "b", "addressing_style": "sideways"},
        {"bucket": "b", "prefix": "a/../b"},
        {"bucket": "b", "concurrency": 0},
    ):
        with pytest.raises(ValueError):
            S3Backend(**bad)


def test_constructor_stores_configuration_only_and_pickles() -> None:
    code = (
        "import sys\n"
        "from registry.backends.s3 import S3Backend\n"
        "b = S3Backend(uri='s3://bucket/prefix', endpoint='127.0.0.1:1', secure=False)\n"
        "loaded = sorted(m for m in sys.modules if 'boto' in m or m.startswith('aiohttp'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    backend = S3Backend(uri="s3://bucket/prefix", endpoint="127.0.0.1:1", secure=False)
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.uri == backend.uri and clone.endpoint_url == backend.endpoint_url


@pytest.mark.anyio
async def test_prefixes_isolate_backends(s3_target: S3Target) -> None:
    root = f"iso-{os.urandom(4).hex()}"
    one = s3_target.backend(prefix=f"{root}/one")
    two = s3_target.backend(prefix=f"{root}/two")
    outer = s3_target.backend(prefix=root)
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
@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
async def test_checksum_modes_work(s3_target: S3Target, checksums: str, tmp_path: Path) -> None:
    backend = s3_target.backend(checksums=checksums, part_size=5 * MiB)
    try:
        await backend.put("c/small", b"x" * 1000)
        src = tmp_path / "mp.bin"
        data = random_file(src, 6 * MiB, 3)
        await backend.put_file("c/multi", src)
        assert await backend.get("c/multi") == data
        await backend.put("c/small", b"y", mode="overwrite")
        await backend.delete(["c/small", "c/multi", "c/none"])  # DeleteObjects
        assert await collect(backend, "c/") == ({}, set())
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_delete_in_batches(s3_target: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("registry.backends.s3.DELETE_BATCH", 3)
    backend = s3_target.backend()
    try:
        keys = [f"del/{i:02d}" for i in range(8)]
        for key in keys:
            await backend.put(key, b"x")
        await backend.put("keep", b"x")
        await backend.delete([*keys, "del/missing", keys[0]])
        files, _ = await collect(backend, "")
        assert set(files) == {"keep"}
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_list_paginates(s3_target: S3Target) -> None:
    backend = s3_target.backend()
    client = await raw_client(backend)
    original = client.list_objects_v2

    async def small_pages(**params: Any) -> Any:
        params.setdefault("MaxKeys", 2)
        return await original(**params)

    client.list_objects_v2 = small_pages
    try:
        keys = {f"pg/{i}" for i in range(5)} | {f"pg/sub{i}/x" for i in range(3)}
        for key in keys:
            await backend.put(key, b"v")
        files, folders = await collect(backend, "pg/")
        assert set(files) == keys and folders == set()
        files, folders = await collect(backend, "pg/", delimiter="/")
        assert set(files) == {f"pg/{i}" for i in range(5)}
        assert folders == {f"pg/sub{i}/" for i in range(3)}
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_list_children_skips_folders(s3_target: S3Target) -> None:
    backend = s3_target.backend()
    try:
        for key in ("m/a.json", "m/b.json", "m/sub/c.json", "m/sub/deeper/d"):
            await backend.put(key, b"{}")
        assert sorted(await backend.list_children("m/")) == ["m/a.json", "m/b.json"]
        assert await backend.list_children("m/sub/deeper/") == ["m/sub/deeper/d"]
        assert await backend.list_children("absent/") == []
    finally:
        await backend.aclose()


# -- event loops ---------------------------------------------------------------------------------


def test_backend_works_from_successive_event_loops(moto_target: S3Target) -> None:
    backend = moto_target.backend()

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


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.anyio
async def test_transient_errors_are_retried(s3: S3Backend) -> None:
    client = await raw_client(s3)
    original = client.put_object
    failures = [_client_error(503, "SlowDown"), _client_error(500, "InternalError")]
    calls = 0

    async def flaky(**params: Any) -> Any:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return await original(**params)

    client.put_object = flaky
    await s3.put("r/key", b"value")
    assert calls == 3
    assert await s3.get("r/key") == b"value"


@pytest.mark.anyio
async def test_412_and_404_are_not_retried(s3: S3Backend) -> None:
    await s3.put("r/key", b"value")
    client = await raw_client(s3)
    original = client.put_object
    calls = 0

    async def counting(**params: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(**params)

    client.put_object = counting
    with pytest.raises(PreconditionFailed):
        await s3.put("r/key", b"again", mode="create")
    assert calls == 1
    with pytest.raises(PreconditionFailed):
        await s3.put("r/absent", b"cas", if_match="0123")
    assert calls == 2
    with pytest.raises(ObjectNotFound):
        await s3.get("r/absent")


@pytest.mark.anyio
async def test_ambiguous_create_that_landed_is_a_success(s3: S3Backend) -> None:
    """The first attempt lands but its answer is lost; the retry then gets 412."""
    from botocore.exceptions import ConnectionClosedError

    client = await raw_client(s3)
    original = client.put_object
    calls = 0

    async def lose_first_answer(**params: Any) -> Any:
        nonlocal calls
        calls += 1
        response = await original(**params)
        if calls == 1:
            raise ConnectionClosedError(endpoint_url="http://test")
        return response

    client.put_object = lose_first_answer
    info = await s3.put("amb/key", b"mine", mode="create")
    assert calls == 2
    assert info.etag == hashlib.md5(b"mine").hexdigest()
    assert await s3.get("amb/key") == b"mine"
    # and someone else's value is still a lost race
    calls = 0
    with pytest.raises(PreconditionFailed):
        await s3.put("amb/key", b"other", mode="create")


@pytest.mark.anyio
async def test_retry_policy_is_bounded() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        await retry_call(always_fails, classify=lambda e: True, policy=policy)
    assert calls == 4

    calls = 0

    async def permanent() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        await retry_call(permanent, classify=lambda e: False, policy=policy)
    assert calls == 1

    slow = RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.05, deadline=0.3)
    calls = 0
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await retry_call(always_fails, classify=lambda e: True, policy=slow)
    assert time.monotonic() - start < 1.0 and 1 < calls < 100
    assert all(0 <= policy.delay(n) <= 0.01 for n in range(1, 20))


def test_error_classes() -> None:
    for cls in (BucketNotFound, S3AccessDenied, EndpointUnreachable):
        assert issubclass(cls, S3BackendError) and issubclass(cls, BackendError)
