"""Files and folders given as ``pathlib.Path``: streamed, never read whole.

Saved as ``file/<name>`` or ``dir/<name>/...``. Loading copies them out to a
new temporary folder and returns the path there, so the caller may change
the copy without touching the stored version. The copy is ``copy_file_range``:
on XFS or btrfs a copy-on-write clone (instant, and still independent of the
stored file), elsewhere a copy inside the kernel. Not a hard link: a caller
writing to the file it got (root ignores a read-only mode) would damage the
stored version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.materializers.base import FileEntry, Materializer, copy_file, kernel_copy


class PathMaterializer(Materializer):
    loads_untrusted_safely = True

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        src = Path(obj)
        if src.is_file():
            return {f"file/{src.name}": copy_file(src, folder / "file" / src.name)}
        if src.is_dir():
            name = src.name or "root"
            entries: dict[str, FileEntry] = {}
            (folder / "dir" / name).mkdir(parents=True, exist_ok=True)
            for dirpath, _dirs, filenames in os.walk(src):
                rel_dir = Path(dirpath).relative_to(src)
                (folder / "dir" / name / rel_dir).mkdir(parents=True, exist_ok=True)
                for filename in filenames:
                    rel = (Path("dir") / name / rel_dir / filename).as_posix()
                    entries[rel] = copy_file(Path(dirpath) / filename, folder / rel)
            return entries
        raise FileNotFoundError(f"cannot save path {src}: it is neither a file nor a folder")

    def load(self, folder: Path, cls: type | None) -> Any:
        out = Path(tempfile.mkdtemp(prefix="registry-"))
        for kind in ("file", "dir"):
            base = folder / kind
            if not base.is_dir():
                continue
            (child,) = list(base.iterdir())
            # The stored copy is verified apart from this (before or beside
            # it): plain kernel copies here, clones where the filesystem can.
            if kind == "file":
                kernel_copy(child, out / child.name)
            else:
                for dirpath, _dirs, filenames in os.walk(child):
                    target = out / child.name / Path(dirpath).relative_to(child)
                    target.mkdir(parents=True, exist_ok=True)
                    for filename in filenames:
                        kernel_copy(Path(dirpath) / filename, target / filename)
            result = out / child.name
            return cls(result) if isinstance(cls, type) and issubclass(cls, Path) else result
        raise FileNotFoundError(f"stored path object in {folder} has no file/ or dir/ entry")
