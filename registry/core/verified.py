"""Files this process has already hashed, remembered by their stat identity.

A version's files never change after its commit (a new save writes a new
uuid folder), so once a file has been hashed, a later ``verify="integrity"``
load can trust the earlier digest as long as the file is provably the same
file with the same bytes: same device, inode, size, mtime and ctime. Any
write, truncation, rename over it or ``utime`` changes the ctime, which no
user call can set back. That is the check git's index makes.

One gap remains: timestamps are coarse (a clock tick, or seconds on some
filesystems), so a file written again within the tick it was last written
in keeps its ctime. A digest is therefore remembered only for files whose
ctime is older than ``SETTLED_NS`` when the hash starts ("racily clean"
files are hashed every time, as git does). ``verify="full"`` never uses the
memo. The memo lives in this process only: a new process hashes once more.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from registry.materializers.base import FileEntry, hash_open_file

SETTLED_NS = 2_000_000_000  # FAT's 2 s mtime granularity is the coarsest in use
MAX_ENTRIES = 16_384  # about 3 MiB of keys and digests

_Identity = tuple[int, int, int, int, int]
_memo: OrderedDict[str, tuple[_Identity, FileEntry]] = OrderedDict()
_lock = threading.Lock()


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def hash_checked(path: Path | str, *, remember: bool = True) -> FileEntry:
    """The file's size and sha256, from the memo when the file is unchanged
    since this process hashed it, else by reading it (then remembered when
    ``remember`` and the file is settled). ``FileNotFoundError`` if missing."""
    key = os.fspath(path)
    with open(key, "rb", buffering=0) as f:
        before = os.fstat(f.fileno())
        identity = _identity(before)
        if remember:
            with _lock:
                known = _memo.get(key)
                if known is not None and known[0] == identity:
                    _memo.move_to_end(key)
                    return known[1]
        settled = before.st_ctime_ns <= time.time_ns() - SETTLED_NS
        entry = hash_open_file(f)
        # A write during the hash changes the identity: the digest may mix
        # old and new bytes, so it is returned (it will not match) but not kept.
        unchanged = _identity(os.fstat(f.fileno())) == identity
    if remember and settled and unchanged and entry.size == before.st_size:
        with _lock:
            _memo[key] = (identity, entry)
            _memo.move_to_end(key)
            while len(_memo) > MAX_ENTRIES:
                _memo.popitem(last=False)
    return entry


def forget() -> None:
    """Drop every remembered digest (tests and benchmarks measuring a first load)."""
    with _lock:
        _memo.clear()
