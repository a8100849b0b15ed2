"""ONNX models as ``.onnx`` protobuf files; tensors in an external data file
for models past protobuf's 2 GB limit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.materializers.base import FileEntry, Materializer, Unsupported

MODEL = "model.onnx"
EXTERNAL = "model.onnx.data"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX models need onnx: pip install 'versioned-registry[onnx]'") from exc
    return onnx


class OnnxMaterializer(Materializer):
    format = "onnx"
    loads_untrusted_safely = True
    #: above this the tensors go to model.onnx.data (protobuf stops at 2 GiB)
    external_data_bytes: ClassVar[int] = 1024**3

    def _external(self, obj: Any) -> bool:
        # Not obj.ByteSize(): protobuf's upb serializes the whole model to
        # count it (0.5 s per 130 MB) and raises past 2 GiB.
        return tensor_bytes(obj.graph) > self.external_data_bytes

    def describe(self, obj: Any) -> Mapping[str, Any]:
        return {"format": "onnx", "external_data": self._external(obj)}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        onnx = _onnx()
        if not isinstance(obj, onnx.ModelProto):
            raise Unsupported("not an onnx ModelProto")
        if not self._external(obj):
            onnx.save_model(obj, folder / MODEL)
            return None
        # save_model moves the tensors out of the caller's proto: save a copy
        # of the graph's structure, not of the caller's object.
        copy = onnx.ModelProto()
        copy.CopyFrom(obj)
        onnx.save_model(
            copy,
            folder / MODEL,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL,
        )
        return None

    def load(self, folder: Path, cls: type | None) -> Any:
        model = _onnx().load_model(folder / MODEL, load_external_data=True)
        _clear_default_locations(model.graph)
        return model


def _graph_tensors(graph: Any) -> list[Any]:
    """Every TensorProto in ``graph``: initializers, node attributes, subgraphs."""
    tensors = list(graph.initializer)
    tensors.extend(sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            tensors.extend([attribute.t, *attribute.tensors])
            for subgraph in [attribute.g, *attribute.graphs]:
                tensors.extend(_graph_tensors(subgraph))
    return tensors


def tensor_bytes(graph: Any) -> int:
    """The tensors' data size, from their shapes and types (reading
    ``raw_data`` would copy it)."""
    helper = _onnx().helper
    total = 0
    for tensor in _graph_tensors(graph):
        if tensor.data_type == _onnx().TensorProto.STRING:
            total += sum(len(s) for s in tensor.string_data)
            continue
        if not tensor.data_type:  # an unset attribute tensor
            continue
        count = 1
        for dim in tensor.dims:
            count *= dim
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        total += count * itemsize
    return total


def _clear_default_locations(graph: Any) -> None:
    """Loading external data leaves ``data_location`` set to its default on
    each tensor it filled in; clear it so the model equals the one saved."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            tensors.extend([attribute.t, *attribute.tensors])
            for subgraph in [attribute.g, *attribute.graphs]:
                _clear_default_locations(subgraph)
    for tensor in tensors:
        if tensor.HasField("data_location") and tensor.data_location == 0:
            tensor.ClearField("data_location")
