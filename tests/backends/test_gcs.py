"""The GCS backend on fake-gcs-server, started by the test session.

The whole backend contract runs on the memory-backed server (default
settings) and on the filesystem-backed one (1 MiB chunks, so the contract's
large file goes through the resumable upload and ranged downloads). What GCS
shares with S3 is tested in ``test_remote.py``; the tests below cover what
only GCS has: generation preconditions that really fail, multipart commits,
large streamed transfers with bounded memory, resumable uploads, credentials
and tokens, configuration, and request counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from registry.backends.base import Backend
from registry.backends.gcs import (
    CHUNK_QUANTUM,
    GCPRegistryBackend,
    GCSAccessDenied,
    GCSBackend,
    GCSRegistryBackend,
)
from registry.exceptions import PreconditionFailed
from registry.testing import BackendTests
from tests.backends.remotes import ERROR_BOUND, MiB, random_file
from tests.conftest import GCSTarget
from tests.servers import free_port
from tests.targets.gcs import write_service_account

# -- the contract ------------------------------------------------------------------------


class TestGCSBackendFakeGCS(BackendTests):
    @pytest.fixture
    async def backend(self, gcs_target: GCSTarget) -> AsyncIterator[Backend]:
        backend = gcs_target.backend()
        yield backend
        await backend.aclose()


class TestGCSBackendFakeGCSFilesystem(BackendTests):
    # small chunks: the contract's 5 MiB file is a resumable upload and 6 ranged GETs
    churn_rounds: ClassVar[int] = 50

    @pytest.fixture
    async def backend(self, gcs_fs_target: GCSTarget) -> AsyncIterator[Backend]:
        backend = gcs_fs_target.backend(chunk_size=1 * MiB)
        yield backend
        await backend.aclose()


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def gcs(gcs_target: GCSTarget) -> AsyncIterator[GCSBackend]:
    backend = gcs_target.backend()
    yield backend
    await backend.aclose()


def small_chunks(gcs: GCSBackend, **options: Any) -> GCSBackend:
    """Another backend on ``gcs``'s prefix, whose files stream above 256 KiB."""
    return GCSBackend(
        bucket_name=gcs.bucket,
        prefix=gcs.prefix,
        endpoint=gcs.endpoint,
        **{"chunk_size": CHUNK_QUANTUM, **options},
    )


class HttpLog:
    """Counts the HTTP requests one backend's aiohttp session sends, by
    (method, uploadType) — uploadType shows which upload protocol was used."""

    def __init__(self, backend: GCSBackend) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        session = backend.loop_state()["session"]
        original = session._request

        def request(method: str, url: Any, **kwargs: Any) -> Any:
            params = dict(kwargs.get("params") or {})
            self.requests.append((method, str(url), params, dict(kwargs.get("headers") or {})))
            return original(method, url, **kwargs)

        session._request = request

    def take(self) -> Counter[tuple[str, str]]:
        counts = Counter((m, str(p.get("uploadType", ""))) for m, _, p, _ in self.requests)
        self.requests.clear()
        return counts


# -- preconditions really fail ---------------------------------------------------------------


@pytest.mark.anyio
async def test_stale_generation_really_fails(gcs: GCSBackend) -> None:
    """A compare-and-swap on an overwritten generation fails on the server, so a
    precondition the server ignored would show up here as a lost update."""
    first = await gcs.put("cas/key", b"v1")
    second = await gcs.put("cas/key", b"v2")
    assert int(second.etag) != int(first.etag)
    with pytest.raises(PreconditionFailed):
        await gcs.put("cas/key", b"lost update", if_match=first.etag)
    assert await gcs.get("cas/key") == b"v2"
    # the same stale condition sent straight through gcloud-aio: the server's 412
    storage = await gcs._client()
    import aiohttp

    with pytest.raises(aiohttp.ClientResponseError) as caught:
        await storage.upload(
            gcs.bucket,
            (await gcs._connection()).full("cas/key"),
            b"raw lost update",
            parameters={"ifGenerationMatch": first.etag},
            metadata={"Content-Type": "application/octet-stream"},
            force_resumable_upload=False,
        )
    assert caught.value.status == 412
    assert await gcs.get("cas/key") == b"v2"
    head = await gcs.head("cas/key")
    assert head is not None and head.etag == second.etag
    # a generation that never existed, and an etag this store never issues
    with pytest.raises(PreconditionFailed):
        await gcs.put("cas/key", b"x", if_match=str(int(second.etag) + 1))
    with pytest.raises(PreconditionFailed):
        await gcs.put("cas/key", b"x", if_match="0")
    assert await gcs.get("cas/key") == b"v2"


@pytest.mark.anyio
async def test_conditional_writes_are_multipart_uploads(gcs: GCSBackend, tmp_path: Path) -> None:
    """fake-gcs-server honours ifGenerationMatch only on multipart uploads (the
    module docstring): every conditional write must be one, large files too."""
    backend = small_chunks(gcs)
    try:
        await backend.head("warm-up")
        log = HttpLog(backend)
        info = await backend.put("m/small", b"x", mode="create")
        await backend.put("m/small", b"y", if_match=info.etag)
        big = tmp_path / "big.bin"
        random_file(big, 3 * CHUNK_QUANTUM + 5, 1)
        await backend.put_file("m/big", big, mode="create")
        with pytest.raises(PreconditionFailed):
            await backend.put_file("m/big", big, mode="create")
        assert log.take() == Counter({("POST", "multipart"): 4})
        # unconditional large files are resumable: 1 start + 1 streamed PUT
        await backend.put_file("m/big2", big)
        assert log.take() == Counter({("POST", "resumable"): 1, ("PUT", ""): 1})
        assert await backend.get("m/big2") == big.read_bytes()
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_large_file_create_race_has_one_winner(gcs: GCSBackend, tmp_path: Path) -> None:
    """Streamed (multipart) conditional creates of large files: one winner."""
    backend = small_chunks(gcs)
    try:
        sources = []
        for index in range(4):
            path = tmp_path / f"src{index}"
            sources.append(random_file(path, 2 * MiB + index, index))
        won: list[int] = []
        lost: list[int] = []

        async def race(index: int) -> None:
            try:
                await backend.put_file("big/once", tmp_path / f"src{index}", mode="create")
                won.append(index)
            except PreconditionFailed:
                lost.append(index)

        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(race, index)
        assert len(won) == 1 and len(lost) == 3
        assert await backend.get("big/once") == sources[won[0]]
    finally:
        await backend.aclose()


# -- large objects ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_large_transfers_use_bounded_memory(gcs: GCSBackend, tmp_path: Path) -> None:
    """A 24 MiB file goes up and down through less than half its size in memory
    (uploads stream from the file; downloads hold ~1 MiB per range in flight)."""
    backend = small_chunks(gcs, chunk_size=1 * MiB)
    src = tmp_path / "big.bin"
    data = random_file(src, 24 * MiB, 11)
    digest = hashlib.sha256(data).digest()
    del data
    try:
        await backend.head("warm-up")
        tracemalloc.start()
        try:
            await backend.put_file("mem/up", src)
            _, up_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            await backend.put_file("mem/create", src, mode="create")
            _, create_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            dest = tmp_path / "down.bin"
            await backend.get_file("mem/up", dest)
            _, down_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert hashlib.sha256(dest.read_bytes()).digest() == digest
        assert await backend.get("mem/create") == src.read_bytes()
        for name, peak in (("resumable", up_peak), ("multipart", create_peak), ("get", down_peak)):
            assert peak < 12 * MiB, f"{name} peaked at {peak / MiB:.1f} MiB"
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_resumable_upload_recovers_from_a_failed_chunk(
    gcs: GCSBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk whose answer is lost: the backend asks the session what it holds and
    goes on (on fake-gcs, which commits a short object when asked, it starts a
    new session) — the stored bytes are the file's either way. The retry is
    logged as a WARNING."""
    import aiohttp

    backend = small_chunks(gcs, upload_chunk=CHUNK_QUANTUM)
    src = tmp_path / "src.bin"
    data = random_file(src, 5 * CHUNK_QUANTUM + 99, 3)
    try:
        await backend.head("warm-up")
        session = backend.loop_state()["session"]
        original = session._request
        chunk_puts = 0

        def flaky(method: str, url: Any, **kwargs: Any) -> Any:
            nonlocal chunk_puts
            headers = kwargs.get("headers") or {}
            if method == "PUT" and "*" not in headers.get("Content-Range", "*"):
                chunk_puts += 1
                if chunk_puts == 3:

                    async def fail() -> Any:
                        raise aiohttp.ServerDisconnectedError()

                    return fail()
            return original(method, url, **kwargs)

        session._request = flaky
        with caplog.at_level(logging.WARNING, logger="registry.backends.gcs"):
            info = await backend.put_file("res/key", src)
        assert info.size == len(data)
        assert await backend.get("res/key") == data
        assert chunk_puts > 6  # the failure really happened mid-upload
        assert any("res/key" in r.getMessage() for r in caplog.records)
    finally:
        await backend.aclose()


# -- credentials ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bad_credentials_are_a_clear_error(gcs_target: GCSTarget, tmp_path: Path) -> None:
    """Every case reports GCSAccessDenied within seconds (gcloud-aio's own token
    retry would wait up to minutes), and never reaches for the GCE metadata server."""
    endpoint = gcs_target.server.endpoint
    missing = tmp_path / "missing.json"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad_key = tmp_path / "bad-key.json"
    write_service_account(bad_key, f"{endpoint}/token", private_key="not a key")
    refused = tmp_path / "refused.json"  # a real key; the token endpoint says 404
    write_service_account(refused, f"{endpoint}/token")
    cases = [(missing, "cannot read"), (garbage, "not valid JSON"), (bad_key, "access token")]
    cases.append((refused, "access token"))
    for path, message in cases:
        backend = GCSBackend(
            bucket_name=gcs_target.bucket,
            endpoint=endpoint,
            anonymous=False,
            credentials_path=path,
        )
        start = time.monotonic()
        try:
            with pytest.raises(GCSAccessDenied, match=message):
                await backend.get("any/key")
        finally:
            await backend.aclose()
        assert time.monotonic() - start < ERROR_BOUND, path.name


@pytest.mark.anyio
async def test_service_account_token_is_sent_and_reused(
    gcs_target: GCSTarget, tmp_path: Path
) -> None:
    """With credentials, every request (gcloud-aio's and the backend's own) carries
    the bearer token from the key's token_uri, fetched once and reused."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    grants: list[str] = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            grants.append(body.decode())
            answer = json.dumps({"access_token": "tok-123", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = tmp_path / "sa.json"
    write_service_account(key, f"http://127.0.0.1:{server.server_address[1]}/token")
    backend = GCSBackend(
        bucket_name=gcs_target.bucket,
        prefix=f"auth-{os.urandom(4).hex()}",
        endpoint=gcs_target.server.endpoint,
        anonymous=False,
        credentials_path=key,
        chunk_size=CHUNK_QUANTUM,
        upload_chunk=CHUNK_QUANTUM,
    )
    try:
        await backend.head("warm-up")
        log = HttpLog(backend)
        src = tmp_path / "big.bin"
        data = random_file(src, 2 * CHUNK_QUANTUM + 1, 5)
        await backend.put("a/k", b"v", mode="create")
        await backend.put_file("a/big", src)
        await backend.put_file("a/big-create", src, mode="create")
        await backend.get_file("a/big", tmp_path / "down.bin")
        assert (tmp_path / "down.bin").read_bytes() == data
        assert [e async for e in backend.list("a/")]
        await backend.delete(["a/k"])
        assert len(log.requests) >= 10
        for method, url, _, headers in log.requests:
            assert headers.get("Authorization") == "Bearer tok-123", (method, url)
        assert len(grants) == 1 and "jwt-bearer" in grants[0]
    finally:
        await backend.aclose()
        server.shutdown()
        server.server_close()


def test_no_default_credentials_is_a_clear_error(tmp_path: Path) -> None:
    """No key file, no gcloud login, no metadata server (pointed at a dead
    loopback port): a clear GCSAccessDenied within the bound."""
    code = (
        "import anyio, time\n"
        "from registry.backends.gcs import GCSBackend, GCSAccessDenied\n"
        "b = GCSBackend(uri='gs://bucket', endpoint='127.0.0.1:1', anonymous=False,"
        " max_attempts=2)\n"
        "async def main():\n"
        "    try:\n"
        "        await b.get('k')\n"
        "    except GCSAccessDenied as exc:\n"
        "        print('denied:', exc)\n"
        "    finally:\n"
        "        await b.aclose()\n"
        "anyio.run(main)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "STORAGE_EMULATOR", "GCE_"))
    }
    env.update(HOME=str(tmp_path), GCE_METADATA_HOST=f"127.0.0.1:{free_port()}")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "denied:" in result.stdout and "default credentials" in result.stdout
    assert time.monotonic() - start < ERROR_BOUND + 5  # + the interpreter's start


# -- configuration -------------------------------------------------------------------------------


def test_uri_and_bucket_name_must_agree() -> None:
    backend = GCSBackend(uri="gs://my-bucket/team-a/models/", project_id="p")
    assert (backend.bucket, backend.prefix) == ("my-bucket", "team-a/models")
    assert backend.uri == "gs://my-bucket/team-a/models"
    both = GCSBackend(uri="gs://my-bucket/x", bucket_name="my-bucket")
    assert (both.bucket, both.prefix) == ("my-bucket", "x")
    plain = GCSBackend(bucket_name="b", prefix="/p/q/")
    assert plain.uri == "gs://b/p/q"
    with pytest.raises(ValueError, match="contradicts") as caught:
        GCSBackend(uri="gs://bucket-a/x", bucket_name="bucket-b")
    assert "bucket-a" in str(caught.value) and "bucket-b" in str(caught.value)
    for bad in (
        {"uri": "s3://bucket/x"},
        {"uri": "gs:///nobucket"},
        {"uri": "gs://a/x", "prefix": "y"},
        {},
        {"bucket_name": ""},
        {"bucket_name": "b", "prefix": "a/../b"},
        {"bucket_name": "b", "chunk_size": 1000},
        {"bucket_name": "b", "concurrency": 0},
        {"bucket_name": "b", "read_timeout": 0},
        {"bucket_name": "b", "endpoint": "ftp://host"},
    ):
        with pytest.raises(ValueError):
            GCSBackend(**bad)
    assert GCPRegistryBackend is GCSBackend and GCSRegistryBackend is GCSBackend


def test_emulator_host_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    real = GCSBackend(uri="gs://bucket/p")
    assert real.endpoint is None and not real.anonymous
    assert real.identity == "gs://bucket/p"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")  # gcloud-aio adds http://
    emulated = GCSBackend(uri="gs://bucket/p")
    assert emulated.endpoint == "http://127.0.0.1:4443" and emulated.anonymous
    assert emulated.identity == "gs://bucket/p@http://127.0.0.1:4443"
    explicit = GCSBackend(uri="gs://bucket/p", endpoint="https://gcs.internal:8443/")
    assert explicit.endpoint == "https://gcs.internal:8443"
    assert "gcs.internal" in explicit.identity and "gcs.internal" in repr(explicit)


@pytest.mark.anyio
async def test_storage_emulator_host_is_honoured(
    gcs_target: GCSTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_target.server.endpoint)
    backend = GCSBackend(uri=f"gs://{gcs_target.bucket}/env-{os.urandom(4).hex()}")
    try:
        await backend.put("k", b"through the emulator")
        assert await backend.get("k") == b"through the emulator"
    finally:
        await backend.aclose()


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_request_counts(gcs_target: GCSTarget, tmp_path: Path) -> None:
    backend = gcs_target.backend()
    try:
        await backend.head("warm-up")  # first use: + one bucket check
        log = HttpLog(backend)
        await backend.put("k", b"v", mode="create")
        assert len(log.requests) == 1
        log.take()
        assert await backend.get("k") == b"v"
        assert (await backend.head("k")) is not None
        await backend.get_file("k", tmp_path / "k")
        assert len(log.requests) == 3
        log.take()
        await backend.delete(["k"])
        assert len(log.requests) == 1
    finally:
        await backend.aclose()
