"""put's byte bar moves within one large upload: the backends report each
piece of a file as they read it for upload, on S3 and GCS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from registry.cli.counting import UploadCounter

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


# small parts / chunks, so 12 MiB goes up in several pieces
OPTIONS = {"moto": {"part_size": 5 * MIB}, "gcs": {"chunk_size": 1 * MIB}}


@pytest.fixture(params=sorted(OPTIONS))
def remote(request: pytest.FixtureRequest) -> tuple[Any, dict[str, Any]]:
    return request.getfixturevalue(f"{request.param}_target"), OPTIONS[request.param]


async def test_a_large_upload_reports_its_pieces(
    remote: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    target, options = remote
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * MIB))
    heard: list[int] = []
    backend = UploadCounter(target.backend(**options), heard.append)
    try:
        info = await backend.put_file("objects/big/0/big.bin", src)
        small = tmp_path / "small.bin"
        small.write_bytes(b"x" * 1000)
        await backend.put_file("objects/small/0/small.bin", small)
    finally:
        await backend.aclose()
    assert info.size == 12 * MIB
    assert len(heard) >= 3, heard  # several pieces, not one jump at the end
    assert sum(heard) == 12 * MIB + 1000  # every byte once, retries or not
