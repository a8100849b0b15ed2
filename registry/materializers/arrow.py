"""pyarrow Tables and RecordBatches as Arrow IPC files.

The IPC file format is Arrow's own memory layout on disk: loading maps the
file into memory (``load(..., options={"memory_map": True})``) or reads it
in one copy; either way no code runs, only buffers are laid out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.materializers.base import FileEntry, Materializer, Unsupported, hash_file

DATA = "data.arrow"


def pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError as exc:
        raise ImportError(
            "Arrow tables need pyarrow: pip install 'versioned-registry[arrow]'"
        ) from exc
    return pyarrow


def write_ipc(table: Any, path: Path) -> FileEntry:
    pa = pyarrow()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        if isinstance(table, pa.RecordBatch):
            writer.write_batch(table)
        else:
            writer.write_table(table)
    return hash_file(path)


def read_ipc(path: Path, memory_map: bool, batch: bool = False) -> Any:
    """The file's table (or its one batch): zero-copy over a memory map, or
    read into memory (the default: a cached file may be evicted while the
    table lives). A mapping stays open as long as buffers use it."""
    pa = pyarrow()
    source = pa.memory_map(str(path)) if memory_map else pa.OSFile(str(path))
    reader = pa.ipc.open_file(source)
    if batch and reader.num_record_batches == 1:
        return reader.get_batch(0)
    return reader.read_all()


class ArrowMaterializer(Materializer):
    format = "arrow-ipc"
    loads_untrusted_safely = True
    load_options: ClassVar[frozenset[str]] = frozenset({"memory_map"})

    def describe(self, obj: Any) -> Mapping[str, Any]:
        kind = "record_batch" if type(obj).__name__ == "RecordBatch" else "table"
        return {"format": "arrow-ipc", "kind": kind, "rows": obj.num_rows}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        pa = pyarrow()
        if not isinstance(obj, pa.Table | pa.RecordBatch):
            raise Unsupported("not a pyarrow Table or RecordBatch")
        return {DATA: write_ipc(obj, folder / DATA)}

    def load(self, folder: Path, cls: type | None, *, memory_map: bool = False) -> Any:
        pa = pyarrow()
        batch = cls is not None and issubclass(cls, pa.RecordBatch)
        return read_ipc(folder / DATA, memory_map, batch=batch)
