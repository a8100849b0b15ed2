"""Pillow images: PNG where the mode allows, TIFF otherwise (and for images
of several frames: a multi-page TIFF), exact or not at all.

The encoded file is decoded once before it is kept: mode, size, pixels and
palette must come back identical, else a single-frame image falls back to
the next candidate and a multi-frame one is refused (pickle would keep only
its current frame). Frame durations and loop counts of animations are not
kept. The format the image was opened from (``img.format``: JPEG, ...) is
recorded in the metadata; the pixels are stored lossless whatever it was.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.exceptions import MaterializerError
from registry.materializers.base import BlobMaterializer, Unsupported

PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("images need Pillow: pip install 'versioned-registry[images]'") from exc
    return Image


def _same_frame(a: Any, b: Any) -> bool:
    return bool(
        a.mode == b.mode
        and a.size == b.size
        and _same_palette(a.getpalette(), b.getpalette())
        and a.tobytes() == b.tobytes()
    )


def _same_palette(a: list[int] | None, b: list[int] | None) -> bool:
    """``b`` gives every colour ``a`` does. An empty palette comes back as
    PNG's minimal one, and TIFF pads a short one (a GIF's 4 colours) to 256
    entries: the pixels index the same colours either way."""
    if not a:
        return True
    return b is not None and b[: len(a)] == a


def _frames(image: Any) -> int:
    return int(getattr(image, "n_frames", 1))


def _same(a: Any, b: Any) -> bool:
    """Every frame identical (each image is left on the frame it was on)."""
    count = _frames(a)
    if count != _frames(b):
        return False
    if count == 1:
        return _same_frame(a, b)
    where = a.tell()
    try:
        for frame in range(count):
            a.seek(frame)
            b.seek(frame)
            if not _same_frame(a, b):
                return False
    finally:
        a.seek(where)
        b.seek(0)
    return True


class ImageMaterializer(BlobMaterializer):
    filename = "image"  # the metadata records PNG or TIFF
    loads_untrusted_safely = True

    def _format(self, obj: Any) -> str:
        # multi-frame images (animated GIFs, TIFF stacks) as multi-page TIFF
        return "PNG" if obj.mode in PNG_MODES and _frames(obj) == 1 else "TIFF"

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {
            "format": self._format(obj).lower(),
            "source_format": obj.format,
            "mode": obj.mode,
            "size": list(obj.size),
            "frames": _frames(obj),
        }

    def estimate_size(self, obj: Any) -> int | None:
        width, height = obj.size
        return int(width * height * len(obj.getbands())) + 1024

    def dumps(self, obj: Any) -> bytes:
        image = _pil()
        if not isinstance(obj, image.Image):
            raise Unsupported("not a Pillow image")
        if _frames(obj) > 1:
            return self._dumps_frames(obj)
        buffer = io.BytesIO()
        try:
            obj.save(buffer, format=self._format(obj))
        except (OSError, ValueError, KeyError) as exc:
            raise Unsupported(f"{obj.mode} images do not encode losslessly: {exc}") from exc
        data = buffer.getvalue()
        if not _same(obj, self.loads(data, None)):
            raise Unsupported(f"a {obj.mode} image does not come back identical from PNG/TIFF")
        return data

    def _dumps_frames(self, obj: Any) -> bytes:
        """All frames as one multi-page TIFF; refused rather than left to
        pickle, which would keep only the current frame."""
        refusal = (
            f"a {_frames(obj)}-frame {obj.mode} image does not come back identical from a "
            "multi-page TIFF, and pickle would keep only its current frame: save its frames "
            "as a list of images (PIL.ImageSequence.all_frames(image))"
        )
        buffer = io.BytesIO()
        where = obj.tell()
        try:
            obj.seek(0)  # save_all writes from the first frame on
            obj.save(buffer, format="TIFF", save_all=True)
        except (OSError, ValueError, KeyError) as exc:
            raise MaterializerError(f"{refusal} ({exc})") from exc
        finally:
            obj.seek(where)
        data = buffer.getvalue()
        if not _same(obj, self.loads(data, None)):
            raise MaterializerError(refusal)
        return data

    def loads(self, data: bytes, cls: type | None) -> Any:
        image = _pil().open(io.BytesIO(data))
        image.load()  # decode now: the bytes are not kept open
        return image

    def load(self, folder: Path, cls: type | None) -> Any:
        with open(folder / self.filename, "rb") as f:
            return self.loads(f.read(), cls)
