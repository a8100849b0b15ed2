"""torch tensors and dicts of tensors (state dicts) as safetensors.

Small ones are inlined in the metadata like any blob; large ones stream from
the tensors' memory into the file. Loading parses a header and copies bytes
(no pickle), onto the CPU unless ``map_location`` says otherwise.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.materializers import safetensors_io as st
from registry.materializers.base import BlobMaterializer, FileEntry, Unsupported

_KIND = "registry.kind"  # "tensor", "parameter", "dict" or "ordered_dict"
_KEYS = "registry.keys"  # the dict's keys in their order (the file sorts them)
_GRAD = "registry.requires_grad"


def _split(obj: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors to store and the header metadata that rebuilds ``obj``."""
    torch = st.torch_module()
    if isinstance(obj, torch.Tensor):
        if type(obj) not in (torch.Tensor, torch.nn.Parameter):
            raise Unsupported(f"{type(obj).__qualname__} keeps its type only through pickle")
        kind = "parameter" if isinstance(obj, torch.nn.Parameter) else "tensor"
        st.check_tensor(obj, "tensor")
        return {"tensor": obj}, {_KIND: kind, _GRAD: json.dumps(obj.requires_grad)}
    if type(obj) not in (dict, OrderedDict) or not all(isinstance(k, str) for k in obj):
        raise Unsupported("only dicts with str keys of tensors are stored as safetensors")
    if not all(type(v) in (torch.Tensor, torch.nn.Parameter) for v in obj.values()):
        raise Unsupported("a dict stored as safetensors holds tensors only")
    stored, aliases = st.dedupe(obj)
    meta = {
        _KIND: "ordered_dict" if type(obj) is OrderedDict else "dict",
        _KEYS: json.dumps(list(obj)),
        _GRAD: json.dumps(sorted(k for k, v in obj.items() if v.requires_grad)),
    }
    if aliases:
        meta[st.ALIASES] = json.dumps(aliases)
    return stored, meta


def _join(tensors: dict[str, Any], meta: Mapping[str, str]) -> Any:
    torch = st.torch_module()
    kind = meta.get(_KIND, "dict")
    if kind in ("tensor", "parameter"):
        tensor = tensors["tensor"]
        grad = bool(json.loads(meta.get(_GRAD, "false")))
        if kind == "parameter":
            return torch.nn.Parameter(tensor, requires_grad=grad)
        return tensor.requires_grad_(grad) if grad else tensor
    for name in json.loads(meta.get(_GRAD, "[]")):
        tensors[name].requires_grad_(True)
    keys = json.loads(meta.get(_KEYS, "null")) or sorted(tensors)
    return (OrderedDict if kind == "ordered_dict" else dict)((k, tensors[k]) for k in keys)


class TensorMaterializer(BlobMaterializer):
    """``Tensor``, ``Parameter`` and ``dict[str, Tensor]`` as one safetensors file."""

    format = "safetensors"
    filename = "tensors.safetensors"
    loads_untrusted_safely = True
    load_options: ClassVar[frozenset[str]] = frozenset({"map_location"})

    def estimate_size(self, obj: Any) -> int | None:
        torch = st.torch_module()
        values = [obj] if isinstance(obj, torch.Tensor) else list(obj.values())
        return sum(int(v.numel() * v.element_size()) for v in values) + 256 * len(values)

    def describe(self, obj: Any) -> Mapping[str, Any]:
        torch = st.torch_module()
        if isinstance(obj, torch.Tensor):
            return {"format": "safetensors", "dtype": str(obj.dtype), "shape": list(obj.shape)}
        return {"format": "safetensors", "kind": "state_dict", "tensors": len(obj)}

    def dumps(self, obj: Any) -> bytes:
        return st.dumps(*_split(obj))

    def loads(self, data: bytes, cls: type | None, *, map_location: Any = None) -> Any:
        return _join(st.read(data, map_location), st.metadata_of(data))

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry]:
        tensors, meta = _split(obj)
        return {self.filename: st.write(folder / self.filename, tensors, meta)}

    def load(self, folder: Path, cls: type | None, *, map_location: Any = None) -> Any:
        path = folder / self.filename
        return _join(st.read(path, map_location), st.metadata_of(path))
