"""What only fake-gcs-server (and GCS) has, through a registry: the
issue's constructor pointed at the emulator by STORAGE_EMULATOR_HOST,
misconfigurations reported as clear errors, and one long-lived Registry that
outlives a server restart. Everything every remote target shares is in
tests/test_remote_registry.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import GCPRegistryBackend, Registry
from registry.backends.gcs import (
    GCSAccessDenied,
    GCSBackend,
    GCSBucketNotFound,
    GCSEndpointUnreachable,
)
from registry.exceptions import BackendError
from tests import race_workers as rw
from tests.conftest import GCSTarget
from tests.servers import FakeGCSServer, free_port, prepare_bucket
from tests.targets.gcs import write_service_account

KIB = 1024
ERROR_BOUND = 8.0  # seconds within which a misconfiguration must be reported


@pytest.fixture(scope="module")
def target(gcs_target: GCSTarget) -> GCSTarget:
    """The session's fake-gcs-server with a bucket of this module's own."""
    return gcs_target.with_own_bucket()


@pytest.fixture
def own_server() -> Iterator[FakeGCSServer]:
    """A fake-gcs-server of this test alone, on the filesystem backend, to kill
    and restart on the same port and the same data folder."""
    server = FakeGCSServer("filesystem")
    try:
        yield server
    finally:
        server.close(grace=0.5)


# -- a registry that outlives its server -----------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_registry_recovers_when_the_server_returns(
    own_server: FakeGCSServer, tmp_path: Path
) -> None:
    """One long-lived sync Registry (one client, one connection pool): while the
    server is down every call fails fast with GCSEndpointUnreachable; once it is
    back on the same data the same Registry works again (its pooled connections
    to the dead process are not reused as if alive), with nothing lost."""
    server = own_server
    bucket = f"recover-{uuid.uuid4().hex[:12]}"
    server.start()
    prepare_bucket(server, bucket)
    big = rw.make_payload("big", 200 * KIB)
    backend = server.backend(bucket, prefix="reg")
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
        server.start()  # same port, same data folder
        assert reg.save("after", big) == "1"
        assert reg.load("before", verify="full") == big
        assert reg.load("after", verify="full") == big
        assert sorted(reg.list_objects()) == ["after", "before"]
        assert "during" not in reg


# -- misconfiguration, through a Registry ----------------------------------------------------


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
    write_service_account(refused, f"{endpoint}/token")
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
