"""numpy arrays as ``.npy`` (never pickled object arrays; those fall back)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.materializers.base import (
    BlobMaterializer,
    FileEntry,
    ParallelHashingWriter,
    Unsupported,
)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is a dev dependency
        raise ImportError(
            "numpy arrays need numpy: pip install 'versioned-registry[numpy]'"
        ) from exc
    return numpy


class NumpyMaterializer(BlobMaterializer):
    loads_untrusted_safely = True
    filename = "array.npy"

    def _check(self, obj: Any) -> None:
        if type(obj) is not _numpy().ndarray:
            # .npy keeps only the data: a masked array would lose its mask
            raise Unsupported("ndarray subclasses keep their type only through pickle")
        if obj.dtype.hasobject:
            raise Unsupported("object arrays need pickle")

    def dumps(self, obj: Any) -> bytes:
        self._check(obj)
        buffer = io.BytesIO()
        _numpy().save(buffer, obj, allow_pickle=False)
        return buffer.getvalue()

    def loads(self, data: bytes, cls: type | None) -> Any:
        return _numpy().load(io.BytesIO(data), allow_pickle=False)

    def estimate_size(self, obj: Any) -> int | None:
        return int(obj.nbytes) + 128

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        # Stream straight into the file (no second copy of a large array),
        # hashed on the other core; np.save writes fresh 16 MiB chunks, so at
        # most two wait for the hash.
        self._check(obj)
        with ParallelHashingWriter(folder / self.filename, backlog=2) as out:
            _numpy().save(out, obj, allow_pickle=False)
            entry = out.close()
        return {self.filename: entry}

    def load(self, folder: Path, cls: type | None) -> Any:
        return _numpy().load(folder / self.filename, allow_pickle=False)
