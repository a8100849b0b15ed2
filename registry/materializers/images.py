"""Pillow images: PNG where the mode allows, TIFF otherwise, exact or not at all.

The encoded file is decoded once before it is kept: mode, size, pixels and
palette must come back identical, else the image falls back to the next
candidate. The format the image was opened from (``img.format``: JPEG, ...)
is recorded in the metadata; the pixels are stored lossless whatever it was.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.materializers.base import BlobMaterializer, Unsupported

PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("images need Pillow: pip install 'versioned-registry[images]'") from exc
    return Image


def _same(a: Any, b: Any) -> bool:
    return bool(
        a.mode == b.mode
        and a.size == b.size
        # an empty palette comes back as PNG's minimal one: same pixels
        and (a.getpalette() == b.getpalette() or not a.getpalette())
        and a.tobytes() == b.tobytes()
    )


class ImageMaterializer(BlobMaterializer):
    filename = "image"  # the metadata records PNG or TIFF
    loads_untrusted_safely = True

    def _format(self, obj: Any) -> str:
        return "PNG" if obj.mode in PNG_MODES else "TIFF"

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {
            "format": self._format(obj).lower(),
            "source_format": obj.format,
            "mode": obj.mode,
            "size": list(obj.size),
        }

    def estimate_size(self, obj: Any) -> int | None:
        width, height = obj.size
        return int(width * height * len(obj.getbands())) + 1024

    def dumps(self, obj: Any) -> bytes:
        image = _pil()
        if not isinstance(obj, image.Image):
            raise Unsupported("not a Pillow image")
        if getattr(obj, "n_frames", 1) > 1:
            raise Unsupported("a multi-frame image keeps all its frames only through pickle")
        buffer = io.BytesIO()
        try:
            obj.save(buffer, format=self._format(obj))
        except (OSError, ValueError, KeyError) as exc:
            raise Unsupported(f"{obj.mode} images do not encode losslessly: {exc}") from exc
        data = buffer.getvalue()
        if not _same(obj, self.loads(data, None)):
            raise Unsupported(f"a {obj.mode} image does not come back identical from PNG/TIFF")
        return data

    def loads(self, data: bytes, cls: type | None) -> Any:
        image = _pil().open(io.BytesIO(data))
        image.load()  # decode now: the bytes are not kept open
        return image

    def load(self, folder: Path, cls: type | None) -> Any:
        with open(folder / self.filename, "rb") as f:
            return self.loads(f.read(), cls)
