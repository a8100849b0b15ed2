"""A large file saved to a remote store is uploaded while it is copied into
the cache (core/artifacts.py's _materialize_uploading): the committed sha256
must describe the stored bytes even when the source changes mid-copy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from registry import AsyncRegistry
from registry.backends import transfer
from registry.backends.transfer import GrowingFile
from tests.targets import REMOTE, Target

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
SIZE = 40 * MIB  # five 8 MiB buffers of the one-pass copy, above PARALLEL_COPY_BYTES


@pytest.fixture(scope="module", params=REMOTE)
def target(request: pytest.FixtureRequest) -> Target:
    session: Target = request.getfixturevalue(f"{request.param}_target")
    return session.with_own_bucket()


def change_source_once(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> list[int]:
    """Run ``change`` (a real write to the source file) right after the copy
    wrote its first buffer, while the upload of it is under way."""
    seen: list[int] = []
    wrote = GrowingFile.wrote

    def wrote_then_change(self: GrowingFile, end: int) -> None:
        wrote(self, end)
        seen.append(end)
        if len(seen) == 1:
            change()

    monkeypatch.setattr(GrowingFile, "wrote", wrote_then_change)
    return seen


async def saved_and_reloaded(target: Target, tmp_path: Path, src: Path) -> tuple[bytes, dict]:
    """Save ``src``, then load it on a fresh cache (from the store, checked)."""
    prefix = f"large-{os.urandom(4).hex()}"
    async with AsyncRegistry(backend=target.backend(prefix=prefix), cache_dir=tmp_path / "a") as r:
        await r.save("f", src)
        (entry,) = (await r.info("f", "1"))["files"].values()
    async with AsyncRegistry(backend=target.backend(prefix=prefix), cache_dir=tmp_path / "b") as r:
        out = await r.load("f", verify="integrity")
        return out.read_bytes(), entry


@pytest.mark.parametrize("change", ["grow", "shrink", "rewrite"])
async def test_source_changed_mid_save_commits_the_stored_bytes(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    original = os.urandom(MIB) * (SIZE // MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(original)
    uploads: list[bool] = []
    put_file = type(target.backend(prefix="x")).put_file

    async def noting_put_file(self: object, key: str, path: Path, **kw: object) -> object:
        uploads.append(transfer.upload_source.get() is not None)
        return await put_file(self, key, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(type(target.backend(prefix="x")), "put_file", noting_put_file)

    def apply() -> None:
        if change == "grow":
            with open(src, "ab") as f:
                f.write(b"appended")
        elif change == "shrink":
            os.truncate(src, SIZE // 2 + 5)
        else:  # same size, other bytes further on
            with open(src, "r+b") as f:
                f.seek(SIZE - MIB)
                f.write(b"\0" * MIB)

    seen = change_source_once(monkeypatch, apply)
    data, entry = await saved_and_reloaded(target, tmp_path, src)
    assert seen and uploads[0] is True  # the upload started while the copy ran
    # what was committed is what is stored, and it is what the copy read
    assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if change == "grow":
        assert data == original + b"appended" and uploads == [True, False]  # sent again
    elif change == "shrink":
        assert data == original[: SIZE // 2 + 5] and uploads == [True, False]
    else:
        assert data == original[: SIZE - MIB] + b"\0" * MIB and uploads == [True]


async def test_large_save_uploads_while_copying(target: Target, tmp_path: Path) -> None:
    data = os.urandom(MIB) * (SIZE // MIB) + b"tail"
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    got, entry = await saved_and_reloaded(target, tmp_path, src)
    assert got == data
    assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
