"""Hugging Face objects as the folders their libraries write, loaded locally.

transformers models, tokenizers, processors and configs: ``save_pretrained``
(weights as safetensors) and the recorded class's ``from_pretrained`` on the
folder, with ``local_files_only`` so nothing is fetched from the hub.
``tokenizers.Tokenizer``: its JSON file. ``datasets`` Dataset and
DatasetDict: ``save_to_disk`` (Arrow files written shard by shard) and
``load_from_disk``, which memory-maps them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.exceptions import MaterializerError
from registry.materializers.base import FileEntry, Materializer, Unsupported

TOKENIZER = "tokenizer.json"
ORIGIN = "registry-origin.json"


def _needs_class(what: str) -> MaterializerError:
    return MaterializerError(
        f"loading a {what} needs its class, which could not be imported; install the "
        "library that defines it (transformers), or import its module first"
    )


def _pickled_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl"))


class PretrainedMaterializer(Materializer):
    format = "save_pretrained"
    load_options: ClassVar[frozenset[str]] = frozenset({"map_location"})

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {"format": "save_pretrained", "weights": "safetensors"}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        if not callable(getattr(obj, "save_pretrained", None)):
            raise Unsupported("no save_pretrained method")
        obj.save_pretrained(folder)
        origin = {"name_or_path": getattr(obj, "name_or_path", None)}
        (folder / ORIGIN).write_text(json.dumps(origin))
        if pickled := _pickled_files(folder):  # an older layout: weights that need pickle
            raise Unsupported(f"save_pretrained wrote pickled files {pickled}")
        return None

    def load(self, folder: Path, cls: type | None, *, map_location: Any = None) -> Any:
        if pickled := _pickled_files(folder):
            # this format is recorded as pickle-free: from_pretrained must not fall back to them
            raise MaterializerError(
                f"the stored folder holds pickled files {pickled}, which this format never "
                "writes; it was altered: save the object again"
            )
        if cls is None:
            raise _needs_class("transformers object")
        loaded = cls.from_pretrained(folder, local_files_only=True)  # type: ignore[attr-defined]
        # from_pretrained names the folder it read (a cache path here): give back the saved name
        origin = json.loads((folder / ORIGIN).read_text())
        named_things: tuple[Any, ...] = (loaded, getattr(loaded, "config", None))
        for named in named_things:
            if origin["name_or_path"] is not None and hasattr(named, "name_or_path"):
                named.name_or_path = origin["name_or_path"]
        if map_location is not None and callable(getattr(loaded, "to", None)):
            loaded = loaded.to(map_location)
        return loaded


class TokenizerMaterializer(Materializer):
    format = "tokenizer-json"
    loads_untrusted_safely = True

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        obj.save(str(folder / TOKENIZER))
        return None

    def load(self, folder: Path, cls: type | None) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / TOKENIZER))


class DatasetMaterializer(Materializer):
    format = "arrow-dataset"

    def describe(self, obj: Any) -> Mapping[str, Any]:
        kind = "dataset_dict" if type(obj).__name__ == "DatasetDict" else "dataset"
        return {"format": "arrow-dataset", "kind": kind}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        obj.save_to_disk(str(folder))
        return None

    def load(self, folder: Path, cls: type | None) -> Any:
        import datasets

        return datasets.load_from_disk(str(folder))
