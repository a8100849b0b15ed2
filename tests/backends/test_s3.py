"""The S3 backend on real servers: moto and SeaweedFS, started by the test session.

The whole backend contract runs on both (``BackendTests``), scaled down where
a server is slow at something the contract does many times. What S3 shares
with GCS is tested in ``test_remote.py``; the tests below cover what only S3
has: multipart uploads and their clean-up, credentials, configuration
parsing, and checksum modes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from registry.backends.base import Backend
from registry.backends.s3 import S3AccessDenied, S3Backend, S3BackendError
from registry.backends.s3.uploads import part_size_for
from registry.exceptions import PreconditionFailed
from registry.testing import BackendTests
from registry.testing.backend_tests import collect
from tests.backends.conftest import S3Target
from tests.backends.remotes import ERROR_BOUND, MiB, client_error, random_file

# -- the contract ------------------------------------------------------------------------


class TestS3Backend(BackendTests):
    # (churn, overwrite) rounds: moto answers one request at a time and closes
    # every connection; racers on one key wait in ~1 s steps on SeaweedFS
    rounds: ClassVar[dict[str, tuple[int, int]]] = {"moto": (30, 25), "seaweedfs": (40, 30)}

    @pytest.fixture
    async def backend(self, s3_target: S3Target) -> AsyncIterator[Backend]:
        self.churn_rounds, self.overwrite_rounds = self.rounds[s3_target.name]  # type: ignore[misc]
        backend = s3_target.backend()
        yield backend
        await backend.aclose()


async def assert_no_uploads_left(backend: S3Backend) -> None:
    """No multipart upload is left open under the backend's prefix."""
    client = await backend._client()
    uploads = await client.list_multipart_uploads(
        Bucket=backend.bucket, Prefix=backend.prefix + "/"
    )
    assert uploads.get("Uploads", []) == []


# -- multipart -----------------------------------------------------------------------------


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
        await assert_no_uploads_left(backend)  # the losing upload was aborted
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_ambiguous_multipart_create_that_landed_is_a_success(
    s3_target: S3Target, tmp_path: Path
) -> None:
    """The complete of a conditional multipart upload lands but its answer is
    lost; its retry fails (412 or NoSuchUpload), and the parts, read again for
    their MD5s, show the stored object is ours."""
    from botocore.exceptions import ConnectionClosedError

    from tests.backends.remotes import replace

    backend = s3_target.backend(part_size=5 * MiB)
    try:
        src = tmp_path / "mp.bin"
        data = random_file(src, 11 * MiB, 3)
        calls = 0

        def lose_first_answer(original: Any) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                response = await original(*args, **kwargs)
                if calls == 1:
                    raise ConnectionClosedError(endpoint_url="http://test")
                return response

            return call

        await replace(backend, "complete_multipart_upload", lose_first_answer)
        info = await backend.put_file("mp/amb", src, mode="create")
        assert calls == 2
        stored = await backend.head("mp/amb")
        assert stored is not None and (stored.etag, stored.size) == (info.etag, len(data))
        assert await backend.get("mp/amb") == data
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_failed_multipart_upload_is_aborted(s3_target: S3Target, tmp_path: Path) -> None:
    backend = s3_target.backend(part_size=5 * MiB)
    try:
        src = tmp_path / "src.bin"
        random_file(src, 16 * MiB, 5)
        client = await backend._client()
        original = client.upload_part

        async def third_part_refused(**params: Any) -> Any:
            if params["PartNumber"] == 3:
                raise client_error(400, "InvalidPart")
            return await original(**params)

        client.upload_part = third_part_refused
        with pytest.raises(S3BackendError, match="InvalidPart"):
            await backend.put_file("mp/broken", src)
        assert await backend.head("mp/broken") is None
        await assert_no_uploads_left(backend)
    finally:
        await backend.aclose()


def test_part_size_adapts_to_the_10000_part_limit() -> None:
    assert part_size_for(20 * MiB, 5 * MiB) == 5 * MiB
    huge = 200 * 1024 * MiB  # 200 GiB would need 40,960 parts of 5 MiB
    part = part_size_for(huge, 5 * MiB)
    assert part % MiB == 0 and -(-huge // part) <= 10_000
    with pytest.raises(ValueError):
        S3Backend("bucket", part_size=MiB)  # S3's minimum part is 5 MiB


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
