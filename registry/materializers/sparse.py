"""scipy.sparse matrices and arrays as ``.npz`` (``save_npz``, no pickle)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.materializers.base import FileEntry, Materializer, Unsupported, hash_file

DATA = "matrix.npz"


def _sparse() -> Any:
    try:
        import scipy.sparse
    except ImportError as exc:
        raise ImportError(
            "sparse matrices need scipy: pip install 'versioned-registry[scipy]'"
        ) from exc
    return scipy.sparse


class SparseMaterializer(Materializer):
    format = "npz"
    loads_untrusted_safely = True

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {"format": "npz", "layout": obj.format, "shape": list(obj.shape)}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        sparse = _sparse()
        if obj.dtype.hasobject:
            raise Unsupported("object-dtype sparse matrices need pickle")
        try:
            sparse.save_npz(folder / DATA, obj, compressed=False)
        except (NotImplementedError, ValueError) as exc:  # lil, dok: no npz layout
            raise Unsupported(f"{obj.format} matrices have no .npz layout: {exc}") from exc
        return {DATA: hash_file(folder / DATA)}

    def load(self, folder: Path, cls: type | None) -> Any:
        return _sparse().load_npz(folder / DATA)
