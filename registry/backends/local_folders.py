"""Reading the local backend's folders: listings, memos of settled folders,
and the sweep of what crashed writers left behind.

A folder's timestamps move with every file created, replaced or removed in
it, but only to the kernel's coarse clock: a change in the same tick as a
scan could keep them. So a folder is trusted by its timestamps only once it
has been unchanged for ``SETTLED_NS`` (a later change then always shows as a
new time); ``children`` and ``stamp`` rely on that.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

from registry.backends.base import FileInfo
from registry.backends.local_files import file_info, is_temp_name

SETTLED_NS = 1_000_000_000
_CHILDREN_MEMO_LIMIT = 4096

#: folder path -> (mtime_ns, its file keys): the memo ``children`` keeps
ChildrenMemo = dict[str, tuple[int, tuple[str, ...]]]


def listing(root: Path, base: Path, prefix: str, delimiter: str | None) -> list[FileInfo | str]:
    """The keys under ``prefix`` (folder ``base`` of ``root``): one level with
    a delimiter (sub-folders as ``prefix/name/``), else every file below."""
    out: list[FileInfo | str] = []
    if delimiter is not None:
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return out
        for entry in entries:
            if is_temp_name(entry.name):
                continue
            try:
                if entry.is_dir():
                    out.append(f"{prefix}{entry.name}/")
                else:
                    out.append(file_info(prefix + entry.name, entry.stat()))
            except FileNotFoundError:
                continue  # removed while listing
        return out
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        rel_prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for filename in sorted(filenames):
            if is_temp_name(filename):
                continue
            try:
                st = os.stat(os.path.join(dirpath, filename))
            except FileNotFoundError:
                continue
            out.append(file_info(rel_prefix + filename, st))
    return out


def children(memo: ChildrenMemo, base: str, prefix: str) -> Sequence[str]:
    """The file keys directly in folder ``base`` (``prefix`` + name), from
    ``memo`` while the folder's mtime is the one it was scanned at."""
    try:
        mtime_ns = os.stat(base).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return ()
    cached = memo.get(base)
    if cached is not None and cached[0] == mtime_ns:
        return cached[1]
    try:
        # scandir's file type comes from the directory entry: no stat per file.
        with os.scandir(base) as entries:
            names = [e.name for e in entries if e.is_file() and not is_temp_name(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return ()
    keys = tuple(prefix + name for name in sorted(names))
    if time.time_ns() - mtime_ns > SETTLED_NS:  # only settled folders: see above
        if len(memo) > _CHILDREN_MEMO_LIMIT:
            memo.clear()
        memo[base] = (mtime_ns, keys)
    return keys


def stamp(folder: str) -> tuple[int, int, int] | None:
    """The folder's (inode, mtime, ctime) once settled; None before that or
    when it is missing. ctime moves with every change to the folder's
    entries and, unlike mtime, cannot be set back by hand."""
    try:
        st = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if time.time_ns() - st.st_ctime_ns <= SETTLED_NS:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def remove_stale_temp(root: Path, older_than: float, dry_run: bool) -> int:
    """Remove old temp/lock files under ``root``, then folders a crash left
    empty; the number of files (to be) removed.

    Bottom-up, and a folder's age is read before its temp files go, so a
    folder a writer has just created (young mtime) is never removed.
    """
    cutoff = time.time() - older_than
    count = 0
    for dirpath, _dirs, filenames in os.walk(root, topdown=False):
        folder = Path(dirpath)
        try:
            folder_mtime = folder.stat().st_mtime
        except FileNotFoundError:
            continue
        for filename in filenames:
            if not is_temp_name(filename):
                continue
            path = folder / filename
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
            count += 1
        if folder != root and folder_mtime < cutoff and not dry_run:
            with contextlib.suppress(OSError):
                folder.rmdir()  # fails harmlessly unless empty
    return count
