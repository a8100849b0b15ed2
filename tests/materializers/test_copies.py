"""The file helpers under the Path materializer: hashing with a reused
buffer and the kernel copy with its fallback."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from registry.materializers import base
from registry.materializers.base import HASH_BUFFER, hash_file, kernel_copy


@pytest.mark.parametrize("size", [0, 1, HASH_BUFFER - 1, HASH_BUFFER, 2 * HASH_BUFFER + 7])
def test_hash_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    entry = hash_file(path)
    assert (entry.size, entry.sha256) == (size, hashlib.sha256(data).hexdigest())


def test_kernel_copy_replaces_a_longer_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "dest").write_bytes(b"x" * (len(data) + 100))
    kernel_copy(tmp_path / "src", tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == data


def test_kernel_copy_falls_back_after_a_refusal_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range refused after it copied part of the file (EXDEV on
    older kernels across filesystems): the fallback starts over."""
    data = os.urandom(1024 * 1024)
    (tmp_path / "src").write_bytes(data)
    real = os.copy_file_range
    calls = []

    def refuse_second(src: int, dst: int, count: int, *args: object) -> int:
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EXDEV, "cross-device")
        return real(src, dst, 1000)

    monkeypatch.setattr(base.os, "copy_file_range", refuse_second)
    kernel_copy(tmp_path / "src", tmp_path / "dest")
    assert len(calls) == 2
    assert (tmp_path / "dest").read_bytes() == data


def test_kernel_copy_raises_other_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        kernel_copy(tmp_path / "missing", tmp_path / "dest")
