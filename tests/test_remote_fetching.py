"""The hash a download computes as it writes (core/fetching.py's FollowingHash):
whatever the order and overlap of the pieces, it is the sha256 of the file."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from registry.core import fetching
from registry.core.fetching import FollowingHash


def _write(path: Path, hasher: FollowingHash, data: bytes, start: int, end: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data[start:end], start)
    finally:
        os.close(fd)
    hasher.wrote(start, [data[start:end]])


def _entry(hasher: FollowingHash, size: int) -> tuple[int, str]:
    entry = hasher.entry(size) or hasher.finish()
    return entry.size, entry.sha256


def test_in_order_pieces_are_hashed_in_memory(tmp_path: Path) -> None:
    data = os.urandom(5 << 20)
    path = tmp_path / "f"
    hasher = FollowingHash(path)
    for start in range(0, len(data), 1 << 20):
        _write(path, hasher, data, start, min(start + (1 << 20), len(data)))
    entry = hasher.entry(len(data))
    assert entry is not None  # nothing left to read back
    assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_out_of_order_pieces_from_threads(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(b"")
    hasher = FollowingHash(path)
    pieces = [(s, min(s + 65536, len(data))) for s in range(0, len(data), 65536)]
    random.Random(7).shuffle(pieces)
    groups = [pieces[i::4] for i in range(4)]
    threads = [
        threading.Thread(target=lambda g=g: [_write(path, hasher, data, *p) for p in g])
        for g in groups
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _entry(hasher, len(data)) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_rewritten_prefix_hashes_the_final_file(tmp_path: Path) -> None:
    first, final = os.urandom(1 << 20), os.urandom(1 << 20)
    path = tmp_path / "f"
    hasher = FollowingHash(path)
    _write(path, hasher, first, 0, 4096)  # an attempt that failed part-way
    _write(path, hasher, final, 0, len(final))  # its retry saw other bytes
    assert hasher.entry(len(final)) is None
    assert _entry(hasher, len(final)) == (len(final), hashlib.sha256(final).hexdigest())


def test_restart_forgets_everything(tmp_path: Path) -> None:
    old, new = os.urandom(300_000), os.urandom(200_000)
    path = tmp_path / "f"
    hasher = FollowingHash(path)
    _write(path, hasher, old, 0, len(old))
    os.truncate(path, 0)
    hasher.restarted()
    _write(path, hasher, new, 100_000, len(new))
    _write(path, hasher, new, 0, 100_000)
    assert _entry(hasher, len(new)) == (len(new), hashlib.sha256(new).hexdigest())


def test_unseen_writes_are_read_back(tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    path = tmp_path / "f"
    path.write_bytes(data)  # a backend that does not report its writes
    hasher = FollowingHash(path)
    assert hasher.entry(len(data)) is None
    assert _entry(hasher, len(data)) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_restart_while_a_helper_reads_back_keeps_the_new_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper thread that hashes pieces written ahead of the prefix is
    held inside its read back while the download restarts and writes other
    bytes: released, it must leave the new digest alone."""
    old, new = os.urandom(2 << 20), os.urandom(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(b"")
    hasher = FollowingHash(path)
    reading, release = threading.Event(), threading.Event()
    preadv = os.preadv

    def held_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if not release.is_set():
            reading.set()
            release.wait(10)
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(fetching.os, "preadv", held_preadv)
    _write(path, hasher, old, 1 << 20, 2 << 20)  # ahead of the prefix: noted
    _write(path, hasher, old, 0, 1 << 20)  # extends it: a helper reads the rest back
    assert reading.wait(10)
    os.truncate(path, 0)
    hasher.restarted()
    _write(path, hasher, new, 0, len(new))
    release.set()
    for thread in threading.enumerate():  # let the old helper finish its turn
        if thread.name == "registry-hash":
            thread.join(10)
    assert _entry(hasher, len(new)) == (len(new), hashlib.sha256(new).hexdigest())
