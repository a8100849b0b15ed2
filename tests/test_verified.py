"""The per-process memo of hashed files (core/verified.py): an unchanged
settled file is not read again, and any change to it is still caught."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Registry, RegistryIntegrityError
from registry.core import verified
from registry.core.layout import objects_folder

# Longer than any filesystem's timestamp tick used here (ext4/tmpfs: one
# clock tick), so that a write after a sleep of TICK gets a new ctime.
TICK = 0.05


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    verified.forget()
    # Files here are seconds old at most: count them settled after TICK.
    monkeypatch.setattr(verified, "SETTLED_NS", int(TICK * 1e9 / 2))
    yield
    verified.forget()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the memo actually read."""
    seen: list[str] = []
    real = verified.hash_open_file

    def counting(f):  # type: ignore[no-untyped-def]
        seen.append(f.name)
        return real(f)

    monkeypatch.setattr(verified, "hash_open_file", counting)
    return seen


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    time.sleep(TICK)  # settle it


def test_an_unchanged_settled_file_is_read_once(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "f"
    _write(path, b"abc" * 1000)
    first = verified.hash_checked(path)
    second = verified.hash_checked(path)
    assert first == second
    assert first.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert reads == [str(path)]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.write_bytes(b"abd" * 1000), id="same size, other bytes"),
        pytest.param(lambda p: os.truncate(p, 10), id="truncated"),
        pytest.param(
            lambda p: os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns)),
            id="mtime set back",
        ),
        pytest.param(lambda p: os.replace(_other(p), p), id="replaced by a rename"),
    ],
)
def test_any_change_is_hashed_again(tmp_path: Path, reads: list[str], change: object) -> None:
    path = tmp_path / "f"
    _write(path, b"abc" * 1000)
    before = verified.hash_checked(path)
    time.sleep(TICK)
    change(path)  # type: ignore[operator]
    after = verified.hash_checked(path)
    assert len(reads) == 2
    assert after == verified.hash_checked(path, remember=False)
    if path.read_bytes() != b"abc" * 1000:
        assert after != before


def _other(path: Path) -> Path:
    other = path.with_name("other")
    other.write_bytes(b"xyz" * 1000)
    return other


def test_a_file_written_just_now_is_not_remembered(tmp_path: Path, reads: list[str]) -> None:
    """Racily clean: a write in the same timestamp tick would keep its ctime."""
    path = tmp_path / "f"
    path.write_bytes(b"new")
    verified.hash_checked(path)
    verified.hash_checked(path)
    assert len(reads) == 2


def test_remember_false_always_reads(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "f"
    _write(path, b"abc")
    verified.hash_checked(path)
    verified.hash_checked(path, remember=False)
    verified.hash_checked(path, remember=False)
    assert len(reads) == 3


def test_the_memo_is_bounded(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verified, "MAX_ENTRIES", 3)
    paths = [tmp_path / str(i) for i in range(5)]
    for path in paths:
        path.write_bytes(b"x")
    time.sleep(TICK)
    for path in paths:
        verified.hash_checked(path)
    assert len(verified._memo) == 3
    verified.hash_checked(paths[0])  # evicted first: read again
    verified.hash_checked(paths[4])  # kept
    assert reads.count(str(paths[0])) == 2
    assert reads.count(str(paths[4])) == 1


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verified.hash_checked(tmp_path / "nothing")


def _artifact(reg: Registry, name: str) -> Path:
    info = reg.info(name, "1")
    (rel,) = info["files"]
    root = Path(reg.backend.uri.removeprefix("file://"))
    return root / objects_folder(name, info["uuid"]) / rel


@pytest.mark.parametrize("size", [1 << 20, 9 << 20], ids=["1 MiB", "9 MiB, checked in parallel"])
def test_a_registry_load_after_damage_still_fails(
    tmp_path: Path, reads: list[str], size: int
) -> None:
    data = os.urandom(size)
    with Registry(tmp_path / "reg") as reg:
        reg.save("x", data)
        time.sleep(TICK)
        assert reg.load("x") == data
        assert reg.load("x") == data
        assert len(reads) == 1  # the second integrity load trusted the first hash
        path = _artifact(reg, "x")
        time.sleep(TICK)
        with open(path, "r+b") as f:  # one byte flipped in place, size unchanged
            f.seek(size // 2)
            f.write(bytes([data[size // 2] ^ 1]))
        with pytest.raises(RegistryIntegrityError, match="does not match"):
            reg.load("x")
        assert reg.load("x", verify="none") != data


def test_full_hashes_every_load(tmp_path: Path, reads: list[str]) -> None:
    with Registry(tmp_path / "reg") as reg:
        reg.save("x", os.urandom(1 << 20))
        time.sleep(TICK)
        for _ in range(3):
            reg.load("x", verify="full")
        assert len(reads) == 3
