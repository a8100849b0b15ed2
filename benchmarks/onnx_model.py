"""An ONNX model past protobuf's 2 GiB limit, against onnx's own calls.

Group ``onnx``: two initializers of 1.02 GiB each (the quick run uses 64 MiB
ones and lowers the materializer's threshold, so the same external-data path
runs). The registry's save copies the model (onnx's writer moves tensors out
of the proto it is given, and the caller's model must stay whole), writes the
tensors to ``model.onnx.data``, hashes and fsyncs; the baseline is
``onnx.save_model(save_as_external_data=True)`` followed by an fsync. Loads
compare with ``onnx.load_model`` of the same files. About 5 GiB of memory at
the peak in the full run: the model, its copy, and a tensor in flight.
"""

from __future__ import annotations

import shutil
from typing import Any

from benchmarks.common import Config, Result, alternate, emit
from benchmarks.frameworks import _fsynced, _load_seconds, _seconds
from registry.core import verified


def make_model(tensor_bytes: int) -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "big",
        [],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [tensor_bytes])],
    )
    model = helper.make_model(graph)
    for name, fill in (("a", 1), ("b", 2)):
        # filled in place: make_graph(initializer=...) would copy each tensor
        tensor = model.graph.initializer.add()
        tensor.name, tensor.data_type = name, TensorProto.UINT8
        tensor.dims.append(tensor_bytes)
        tensor.raw_data = bytes([fill]) * tensor_bytes
    return model


def bench_onnx(config: Config) -> list[Result]:
    try:
        import onnx
    except ImportError:
        print("  onnx is not installed: skipped")
        return []
    from registry import Registry
    from registry.materializers.onnx import OnnxMaterializer

    tensor_bytes = (64 << 20) if config.quick else (1 << 30) + (16 << 20)
    threshold = OnnxMaterializer.external_data_bytes
    if config.quick:  # the same path at a size that runs in seconds
        OnnxMaterializer.external_data_bytes = tensor_bytes
    model = make_model(tensor_bytes)
    size_mb = 2 * tensor_bytes / 1e6
    root = config.scratch("reg-onnx")
    raw_dir = config.scratch("raw-onnx")
    raw_path = raw_dir / "model.onnx"
    reg = Registry(root)
    results: list[Result] = []
    rounds = 1 if not config.quick else 2  # a full round moves 4 GiB through the disk
    try:

        def save(round_: int) -> float:
            speed = _seconds(size_mb, lambda: reg.save("model", model))
            if round_ < rounds - 1:
                reg.delete("model")
                reg.janitor(grace=0)
            return speed

        def raw_save(round_: int) -> float:
            def run() -> None:
                copy = onnx.ModelProto()
                copy.CopyFrom(model)  # as the registry must: save_model empties what it writes
                onnx.save_model(
                    copy,
                    raw_path,
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location="model.onnx.data",
                )
                _fsynced(raw_path.with_name("model.onnx.data"))
                _fsynced(raw_path)

            return _seconds(size_mb, run)

        ours, theirs = alternate([save, raw_save], rounds)
        label = f"{size_mb / 1e3:.1f} GB ONNX model (external data)"
        emit(
            results,
            Result(
                f"save {label}",
                "MB/s",
                ours,
                "copy + save_model(external)+fsync",
                theirs,
                note="past protobuf's 2 GiB: a proto of this size cannot be serialized whole",
            ),
        )
        back = reg.load("model")
        assert back.graph.initializer[1].raw_data == model.graph.initializer[1].raw_data
        del back

        def load(round_: int) -> float:
            verified.forget()  # hashed as a first load in a process is
            return _load_seconds(size_mb, lambda: reg.load("model"))

        def raw_load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: onnx.load_model(raw_path))

        ours, theirs = alternate([load, raw_load], rounds)
        emit(
            results,
            Result(
                f"load {label}",
                "MB/s",
                ours,
                "load_model",
                theirs,
                note="default verify='integrity', first load (every byte hashed beside the load)",
            ),
        )
    finally:
        OnnxMaterializer.external_data_bytes = threshold
        reg.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(raw_dir, ignore_errors=True)
    return results
