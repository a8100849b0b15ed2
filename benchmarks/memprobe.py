"""Peak memory of one large save or load, measured in a fresh interpreter.

``python -m benchmarks.memprobe OP REGISTRY_ROOT SOURCE`` prints one JSON
line ``{"peak_mib": ..., "seconds": ...}``. A fresh process matters: in a
long-running one the allocator keeps freed memory from earlier work, so a
later operation can reuse it without its resident size growing.

OP is file-save (SOURCE: the file), file-load (loads "big"), array-save
(SOURCE: an .npy file, loaded before measuring) or array-load (loads "array").
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import PeakRSS

OPS = ("file-save", "file-load", "array-save", "array-load")


def probe(op: str, registry_root: Path, source: Path) -> dict[str, float]:
    from registry import Registry

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
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
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
