"""polars DataFrames as Arrow IPC files (polars' native columnar layout)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.materializers.arrow import read_ipc
from registry.materializers.base import FileEntry, Materializer, Unsupported, hash_file

DATA = "data.arrow"


def _polars() -> Any:
    try:
        import polars
    except ImportError as exc:
        raise ImportError(
            "polars frames need polars: pip install 'versioned-registry[polars]'"
        ) from exc
    return polars


class PolarsMaterializer(Materializer):
    format = "arrow-ipc"
    loads_untrusted_safely = True
    load_options: ClassVar[frozenset[str]] = frozenset({"memory_map"})

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {"format": "arrow-ipc", "kind": "polars", "rows": obj.height}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        pl = _polars()
        if type(obj) is not pl.DataFrame:
            raise Unsupported(f"{type(obj).__qualname__} keeps its type only through pickle")
        if any(dtype == pl.Object for dtype in obj.dtypes):
            raise Unsupported("Object columns hold Python objects: only pickle keeps them")
        obj.write_ipc(folder / DATA, compression="uncompressed")
        return {DATA: hash_file(folder / DATA)}

    def load(self, folder: Path, cls: type | None, *, memory_map: bool = False) -> Any:
        pl = _polars()
        if memory_map:  # zero-copy through pyarrow's mapping of the same file
            return pl.from_arrow(read_ipc(folder / DATA, memory_map=True))
        return pl.read_ipc(folder / DATA)
