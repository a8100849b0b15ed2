"""TorchScript modules as the archive ``torch.jit.save`` writes.

The archive holds the module's compiled code and tensors; ``torch.jit.load``
reads it with TorchScript's own restricted unpickler, which builds tensors
and TorchScript objects only (no Python class of the metadata's choosing).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.materializers import safetensors_io as st
from registry.materializers.base import FileEntry, Materializer, hash_file

ARCHIVE = "module.pt"


class TorchScriptMaterializer(Materializer):
    format = "torchscript"
    load_options: ClassVar[frozenset[str]] = frozenset({"map_location"})

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        torch = st.torch_module()
        torch.jit.save(obj, str(folder / ARCHIVE))
        return {ARCHIVE: hash_file(folder / ARCHIVE)}

    def load(self, folder: Path, cls: type | None, *, map_location: Any = None) -> Any:
        torch = st.torch_module()
        return torch.jit.load(str(folder / ARCHIVE), map_location=map_location or "cpu")
