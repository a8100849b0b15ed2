"""Where the command-line tests put registries: a local folder, a prefix on
moto (S3) or on fake-gcs-server, each with the environment a user would set."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

import pytest

from tests.cli.runner import Place
from tests.servers import S3Server
from tests.targets import GCSTarget, S3Target


def s3_env(target: S3Target) -> dict[str, str]:
    server = cast(S3Server, target.server)
    return {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_ENDPOINT_URL": server.endpoint,
    }


def make_place(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    prefix = f"cli-{uuid.uuid4().hex[:12]}"
    if kind == "local":
        return Place(kind, str(tmp_path / "registry"))
    if kind == "s3":
        s3: S3Target = request.getfixturevalue("moto_target")
        return Place(kind, f"s3://{s3.bucket}/{prefix}", s3_env(s3))
    gcs: GCSTarget = request.getfixturevalue("gcs_target")
    return Place(
        kind, f"gs://{gcs.bucket}/{prefix}", {"STORAGE_EMULATOR_HOST": gcs.server.endpoint}
    )
