"""Writing and reading safetensors files of torch tensors, with bounded memory.

The writer streams each tensor's bytes straight from its memory into the
file (no serialized copy of the whole dict, as ``safetensors.torch.save_file``
builds) while a second thread hashes them. Tensors that are one and the same
(tied weights) are stored once and recorded as aliases; non-contiguous ones
are written contiguous. Reading is safetensors' own ``load_file``: it parses
a JSON header and copies raw bytes, never running code.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from registry.materializers.base import FileEntry, ParallelHashingWriter, Unsupported

ALIASES = "registry.aliases"  # {alias: stored name}, JSON in the header's metadata


def torch_module() -> Any:
    try:
        import safetensors.torch  # noqa: F401 - checked here, used by read()
        import torch
    except ImportError as exc:
        raise ImportError(
            "torch objects need torch and safetensors: pip install 'versioned-registry[torch]'"
        ) from exc
    return torch


@cache
def _dtype_names() -> dict[Any, str]:
    torch = torch_module()
    names = {
        "float64": "F64",
        "float32": "F32",
        "float16": "F16",
        "bfloat16": "BF16",
        "int64": "I64",
        "int32": "I32",
        "int16": "I16",
        "int8": "I8",
        "uint8": "U8",
        "uint16": "U16",
        "uint32": "U32",
        "uint64": "U64",
        "bool": "BOOL",
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
        "complex64": "C64",
    }
    return {getattr(torch, attr): code for attr, code in names.items() if hasattr(torch, attr)}


def _same_view(a: Any, b: Any) -> bool:
    return bool(
        a.data_ptr() == b.data_ptr()
        and a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
    )


def check_tensor(tensor: Any, name: str) -> None:
    torch = torch_module()
    if tensor.layout != torch.strided:
        raise Unsupported(f"tensor {name!r} is {tensor.layout}: safetensors holds dense tensors")
    if tensor.dtype not in _dtype_names():
        raise Unsupported(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors lacks")
    if tensor.is_quantized or getattr(tensor, "is_nested", False):
        raise Unsupported(f"tensor {name!r} is quantized or nested")


def dedupe(tensors: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors to store (one per distinct view) and ``{alias: stored}``."""
    stored: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    by_ptr: dict[int, list[str]] = {}
    for name, tensor in tensors.items():
        check_tensor(tensor, name)
        same = (
            next(
                (n for n in by_ptr.get(tensor.data_ptr(), []) if _same_view(stored[n], tensor)),
                None,
            )
            if tensor.numel()
            else None
        )
        if same is not None:
            aliases[name] = same
            continue
        stored[name] = tensor
        by_ptr.setdefault(tensor.data_ptr(), []).append(name)
    return stored, aliases


def _raw(tensor: Any) -> Any:
    """The tensor's bytes as a CPU uint8 numpy view (a copy only when the
    tensor is on another device or not contiguous)."""
    torch = torch_module()
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)  # same bytes: bool is one byte of 0 or 1
    return flat.view(torch.uint8).numpy()


def header(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> tuple[bytes, list[str]]:
    names = sorted(tensors)
    entries: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in names:
        tensor = tensors[name]
        size = tensor.numel() * tensor.element_size()
        entries[name] = {
            "dtype": _dtype_names()[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text, names


def write(path: Path, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> FileEntry:
    """Write ``tensors`` (already deduplicated) to ``path``, hashed in passing."""
    head, names = header(tensors, metadata)
    with ParallelHashingWriter(path) as out:
        out.write(head)
        for name in names:
            out.write(_raw(tensors[name]))
        return out.close()


def dumps(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    head, names = header(tensors, metadata)
    return b"".join([head, *(_raw(tensors[name]).tobytes() for name in names)])


def metadata_of(path_or_data: Path | bytes) -> dict[str, str]:
    if isinstance(path_or_data, Path):
        with open(path_or_data, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            raw = f.read(size)
    else:
        (size,) = struct.unpack("<Q", path_or_data[:8])
        raw = path_or_data[8 : 8 + size]
    found = json.loads(raw).get("__metadata__") or {}
    return {str(k): str(v) for k, v in found.items()}


def read(path_or_data: Path | bytes, device: Any = None) -> dict[str, Any]:
    """All tensors, aliases restored as the same tensor object."""
    torch_module()
    import safetensors.torch

    if isinstance(path_or_data, Path):
        tensors: dict[str, Any] = safetensors.torch.load_file(path_or_data, device=device or "cpu")
    else:
        tensors = safetensors.torch.load(path_or_data)
        if device is not None:
            tensors = {k: v.to(device) for k, v in tensors.items()}
    aliases = json.loads(metadata_of(path_or_data).get(ALIASES, "{}"))
    for alias, name in aliases.items():
        tensors[alias] = tensors[name]
    return tensors
