"""The file operations the local backend is built on: temp-file names,
directory fsync, etags from stat, and the lock file that makes its
compare-and-swap atomic (the one lock in the project, held for microseconds
and broken when its holder died)."""

from __future__ import annotations

import errno
import itertools
import os
import time
import uuid
from pathlib import Path

from registry.backends.base import FileInfo
from registry.exceptions import BackendError, PreconditionFailed

TEMP_MARKER = ".tmp-"
LOCK_SUFFIX = ".lock"
STALE_LOCK_SECONDS = 10.0


def temp_name(filename: str) -> str:
    """A hidden temp-file name beside ``filename``, unique across threads and
    processes without a random read per call: a random token per process
    (renewed in a forked child) and a counter."""
    return f".{filename}{TEMP_MARKER}{_token}{next(_counter):x}"


def _renew_token() -> None:
    global _token, _counter
    _token = uuid.uuid4().hex
    _counter = itertools.count()


_token = ""
_counter = itertools.count()
_renew_token()
os.register_at_fork(after_in_child=_renew_token)


def is_temp_name(filename: str) -> bool:
    """Temp and lock files are internal: never listed, cleaned by the janitor."""
    return filename.startswith(".") and (TEMP_MARKER in filename or filename.endswith(LOCK_SUFFIX))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stat_etag(st: os.stat_result) -> str:
    # The inode changes on every publish (a new temp file is linked in), so
    # the etag changes even when size and mtime happen to match.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def file_info(key: str, st: os.stat_result) -> FileInfo:
    # ctime too: a materializer that copies with copy2/copytree keeps the
    # source's old mtime, and the janitor must not take a file written a
    # second ago for an hours-old orphan. ctime can't be set back.
    return FileInfo(
        key=key, size=st.st_size, etag=stat_etag(st), mtime=max(st.st_mtime, st.st_ctime)
    )


class FileLock:
    """``O_CREAT|O_EXCL`` lock file with a stale timeout (local CAS only)."""

    def __init__(self, path: Path, timeout: float = 30.0, *, wait: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self.wait = wait  # False: a busy lock is a lost race (PreconditionFailed)

    def __enter__(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        tries = 0
        while True:
            tries += 1
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._break_if_stale()
                if not self.wait and tries > 1:  # one retry, after breaking a stale lock
                    raise PreconditionFailed(
                        f"{self.path.name} is held by another writer"
                    ) from None
                if not self.wait:
                    continue
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"could not lock {self.path} within {self.timeout}s; "
                        "delete it if no registry process is running"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            os.close(fd)
            return

    def _break_if_stale(self) -> None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if age > STALE_LOCK_SECONDS:
            # Rename first so two breakers cannot both delete a fresh lock.
            victim = self.path.with_name(f"{self.path.name}{TEMP_MARKER}{uuid.uuid4().hex}")
            try:
                os.rename(self.path, victim)
                victim.unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
