"""S3 backend tests run on each server in turn (fixtures in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import S3Target

S3_SERVERS = ["moto", "seaweedfs"]


@pytest.fixture(params=S3_SERVERS)
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """Each S3 server in turn."""
    target: S3Target = request.getfixturevalue(f"{request.param}_target")
    return target
