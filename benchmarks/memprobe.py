"""Peak memory of one large save or load, measured in a fresh interpreter.

``python -m benchmarks.memprobe OP REGISTRY_ROOT SOURCE`` prints one JSON
line ``{"peak_mib": ..., "seconds": ...}``. A fresh process matters: in a
long-running one the allocator keeps freed memory from earlier work, so a
later operation can reuse it without its resident size growing.

OP is file-save (SOURCE: the file), file-load (loads "big"), array-save
(SOURCE: an .npy file, loaded before measuring) or array-load (loads "array");
or, for benchmarks/frameworks.py, tensor-save / tensor-load (SOURCE: a
safetensors file; loads "tensor") and frame-save / frame-load (SOURCE: a
Parquet file; loads "frame"), each also with a ``-raw`` suffix: the library's
own call on SOURCE (saving to a new file beside it).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import PeakRSS

FRAMEWORK_OPS = tuple(
    f"{kind}-{what}{raw}"
    for kind in ("tensor", "frame")
    for what in ("save", "load")
    for raw in ("", "-raw")
)
OPS = ("file-save", "file-load", "array-save", "array-load", *FRAMEWORK_OPS)


def framework_action(op: str, reg: Any, source: Path) -> Callable[[], Any]:
    """The measured call of a framework op; the object to save is read first."""
    kind, what, *raw = op.split("-")
    out = source.with_name("probe-out" + source.suffix)
    tag = uuid.uuid4().hex[:8]  # the registry keeps one version per name: fresh names
    if kind == "tensor":
        import safetensors.torch
        import torch

        reg.save(f"probe-warmup-{tag}", torch.zeros(4))
        reg.load(f"probe-warmup-{tag}")
        if what == "save":
            # a copy in memory: load_file maps the file, and pages of the
            # mapping read during the save would count as the save's memory
            obj = safetensors.torch.load_file(source)["t"].clone()
            if raw:
                return lambda: safetensors.torch.save_file({"t": obj}, out)
            return lambda: reg.save(f"probe-tensor-{tag}", obj)
        # Both loads map the file; touching every value makes its pages count.
        if raw:
            return lambda: safetensors.torch.load_file(source)["t"].sum()
        return lambda: reg.load("tensor").sum()
    import pandas as pd

    reg.save(f"probe-warmup-{tag}", pd.DataFrame({"a": [1]}))
    reg.load(f"probe-warmup-{tag}")
    if what == "save":
        frame = pd.read_parquet(source)
        if raw:
            return lambda: frame.to_parquet(out, engine="pyarrow")
        return lambda: reg.save(f"probe-frame-{tag}", frame)
    if raw:
        return lambda: pd.read_parquet(source)
    return lambda: reg.load("frame")


def probe(op: str, registry_root: Path, source: Path) -> dict[str, float]:
    from registry import Registry

    if op in FRAMEWORK_OPS:
        reg = Registry(registry_root)
        try:
            action = framework_action(op, reg, source)
            gc.collect()
            with PeakRSS() as rss:
                start = time.perf_counter()
                result = action()
                elapsed = time.perf_counter() - start
            del result
        finally:
            reg.close()
        return {"peak_mib": rss.above_mib, "seconds": elapsed}

    reg = Registry(registry_root, version_objects=True)
    try:
        reg.save("probe-warmup", b"x")  # imports, runner thread, registry settings
        reg.load("probe-warmup")
        action: Callable[[], Any]
        if op == "file-save":

            def action() -> Any:
                return reg.save("probe-file", source)

        elif op == "file-load":

            def action() -> Any:
                return reg.load("big")

        elif op in ("array-save", "array-load"):
            import numpy as np  # imported before measuring, as a user's script would

            reg.save("probe-warmup-array", np.arange(4))
            reg.load("probe-warmup-array")
            if op == "array-save":
                array = np.load(source, allow_pickle=False)

                def action() -> Any:
                    return reg.save("probe-array", array)

            else:

                def action() -> Any:
                    return reg.load("array")

        else:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        gc.collect()
        with PeakRSS() as rss:
            start = time.perf_counter()
            result = action()
            elapsed = time.perf_counter() - start
        if op == "file-load":
            shutil.rmtree(Path(result).parent, ignore_errors=True)
        del result
    finally:
        reg.close()
    return {"peak_mib": rss.above_mib, "seconds": elapsed}


def run_probe(op: str, registry_root: Path, source: Path, tmpdir: Path) -> dict[str, float]:
    """Run ``probe`` in a fresh interpreter (temporary files go to ``tmpdir``)."""
    env = dict(os.environ, TMPDIR=str(tmpdir))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memprobe", op, str(registry_root), str(source)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {op} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in OPS:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(probe(args[0], Path(args[1]), Path(args[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
