"""Large framework objects on local disk against their library's own call.

Groups ``torch`` (a 256 MiB float32 tensor: ``safetensors.torch.save_file``
and ``load_file``) and ``pandas`` (a 256 MiB DataFrame of 8 numeric columns:
``to_parquet`` and ``read_parquet``, pyarrow engine). The registry saves
durably (it fsyncs before the commit), so the save baseline the target is
held to is the library call followed by an fsync (as benchmarks/local.py
does for numpy); the note gives the plain call's figure too.
``load_file`` maps the file and reads pages only when touched, so its
baseline is ``load_file`` plus one pass over the tensor (a sum), and the
note gives ``load_file`` alone.
Loads use the default ``verify="integrity"``: every byte is hashed on the
first load in a process (in a thread beside the load), later loads trust that
hash while the file's stat identity is unchanged (core/verified.py); the
torch group measures both, the first against the library call plus one
sha256 pass (its ceiling: sha256 runs at about 1 GB/s here). Peak RSS is measured in a fresh interpreter for both sides
(benchmarks/memprobe.py) and compared with the object's own size.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.common import (
    Config,
    MiB,
    Result,
    alternate,
    emit,
    fmt,
    rss_available,
    settle,
    timed,
)
from registry.core import verified
from registry.materializers.base import hash_file

TARGET = 0.7


def _fsynced(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_tensor(mib: int) -> Any:
    import torch

    return torch.randn(mib * MiB // 4, generator=torch.Generator().manual_seed(0))


def make_frame(mib: int) -> Any:
    import numpy as np
    import pandas as pd

    rows = mib * MiB // 64  # 8 columns of 8 bytes
    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {f"f{i}": rng.random(rows) for i in range(7)}
    columns["id"] = np.arange(rows, dtype=np.int64)
    return pd.DataFrame(columns)


def _pair(
    label: str,
    ours: Callable[[int], float],
    raw: Callable[[int], float],
    baseline: str,
    repeats: int,
    note: str,
    also: tuple[str, Callable[[int], float]] | None = None,
) -> Result:
    """Ours against ``raw`` (the target's baseline), alternating rounds;
    ``also`` is a second baseline reported in the note."""
    runs = [ours, raw] + ([also[1]] if also else [])
    figures = alternate(runs, repeats)
    mine, theirs = figures[0], figures[1]
    if also is not None:
        other = median(figures[2])
        note += f"; {also[0]}: {fmt(other)} MB/s ({other / median(theirs) * 100:.0f}% of raw)"
    return Result(
        label,
        "MB/s",
        mine,
        baseline,
        theirs,
        f"≥ {TARGET:.0%} of raw",
        median(mine) >= TARGET * median(theirs),
        note=note,
    )


def _memory(
    label: str, op: str, root: Path, source: Path, config: Config, size_mib: float
) -> Result:
    from benchmarks.memprobe import run_probe

    ours = run_probe(op, root, source, config.root / "tmp")
    raw = run_probe(op + "-raw", root, source, config.root / "tmp")
    return Result(
        label,
        "MiB",
        [ours["peak_mib"]],
        "library call",
        [raw["peak_mib"]],
        f"< 2x the object ({2 * size_mib:.0f} MiB)",
        ours["peak_mib"] < 2 * size_mib,
        note="above the level before the call, each in a fresh process",
    )


def _seconds(size_mb: float, func: Callable[[], Any]) -> float:
    # Start each run with no dirty pages left by the one before: a write that
    # was not fsynced would otherwise be flushed during the next run's timing.
    os.sync()
    gc.collect()
    return size_mb / timed(func)


def _load_seconds(size_mb: float, load: Callable[[], Any]) -> float:
    """``_seconds`` of a load whose result is kept until the clock stops, so that
    freeing it is not timed with it."""
    out: list[Any] = []
    speed = _seconds(size_mb, lambda: out.append(load()))
    out.clear()
    return speed


def bench_torch(config: Config) -> list[Result]:
    try:
        import safetensors.torch
        import torch
    except ImportError:
        print("  torch or safetensors is not installed: skipped")
        return []
    from registry import Registry

    mib = 64 if config.quick else 256
    tensor = make_tensor(mib)
    size_mb = tensor.numel() * 4 / 1e6
    root = config.scratch("reg-torch")
    raw_dir = config.scratch("raw-torch")
    raw_path = raw_dir / "tensor.safetensors"
    reg = Registry(root)
    results: list[Result] = []
    repeats = max(5, config.big_repeats)  # a second per round: more rounds, steadier medians
    try:
        reg.save("warmup", torch.zeros(4))

        def save(round_: int) -> float:
            speed = _seconds(size_mb, lambda: reg.save("tensor", tensor))
            if round_ < repeats - 1:
                reg.delete("tensor")
                reg.janitor(grace=0)
            return speed

        def raw_save(round_: int) -> float:
            return _seconds(size_mb, lambda: safetensors.torch.save_file({"t": tensor}, raw_path))

        def raw_save_durable(round_: int) -> float:
            def run() -> None:
                safetensors.torch.save_file({"t": tensor}, raw_path)
                _fsynced(raw_path)

            return _seconds(size_mb, run)

        emit(
            results,
            _pair(
                f"save {mib} MiB torch tensor",
                save,
                raw_save_durable,
                "save_file+fsync",
                repeats,
                "safetensors streamed and hashed in one pass, fsynced as every save is",
                also=("save_file without fsync", raw_save),
            ),
        )
        assert torch.equal(reg.load("tensor"), tensor)

        settle()

        # Each side reads the tensor once (a sum): load_file and the
        # registry both map the file, and a mapping alone reads nothing.
        def load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: reg.load("tensor").sum())

        def first_load(round_: int) -> float:
            verified.forget()  # as in a new process: every byte hashed
            return _load_seconds(size_mb, lambda: reg.load("tensor").sum())

        def raw_load(round_: int) -> float:
            # load_file maps the file and reads pages when first touched:
            # one pass over the data makes it a load.
            return _load_seconds(size_mb, lambda: safetensors.torch.load_file(raw_path)["t"].sum())

        def raw_hashed_load(round_: int) -> float:
            def run() -> Any:
                hash_file(raw_path)
                return safetensors.torch.load_file(raw_path)["t"].sum()

            return _load_seconds(size_mb, run)

        def lazy_load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: safetensors.torch.load_file(raw_path))

        def unchecked_load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: reg.load("tensor", verify="none"))

        result = _pair(
            f"load {mib} MiB torch tensor",
            load,
            raw_load,
            "load_file+sum",
            repeats,
            "default verify='integrity', a version saved earlier: this process hashed its "
            "file on the first load and trusts that while the file's stat is unchanged",
        )
        lazy, unchecked = alternate([lazy_load, unchecked_load], repeats)
        result.note += (
            f"; load_file alone (pages not yet read) {fmt(median(lazy))} MB/s, the registry "
            f"with verify='none' (the same mapping) {fmt(median(unchecked))} MB/s"
        )
        emit(results, result)
        emit(
            results,
            _pair(
                f"load {mib} MiB torch tensor, first in a process",
                first_load,
                raw_hashed_load,
                "sha256 pass + load_file+sum",
                repeats,
                "verify='integrity' reads and hashes every byte once per process; its ceiling "
                "is the library call plus one sha256 pass over the file",
                also=("load_file+sum without the hash", raw_load),
            ),
        )
    finally:
        reg.close()
    if rss_available():
        for op, what in (("tensor-save", "save"), ("tensor-load", "load")):
            emit(
                results,
                _memory(f"  peak RSS, {mib} MiB tensor {what}", op, root, raw_path, config, mib),
            )
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(raw_dir, ignore_errors=True)
    return results


def bench_pandas(config: Config) -> list[Result]:
    try:
        import pandas as pd
    except ImportError:
        print("  pandas is not installed: skipped")
        return []
    from registry import Registry

    mib = 64 if config.quick else 256
    frame = make_frame(mib)
    size_mb = frame.memory_usage(index=False).sum() / 1e6
    root = config.scratch("reg-pandas")
    raw_dir = config.scratch("raw-pandas")
    raw_path = raw_dir / "frame.parquet"
    reg = Registry(root)
    results: list[Result] = []
    repeats = max(5, config.big_repeats)
    try:
        reg.save("warmup", frame.iloc[:10])

        def save(round_: int) -> float:
            speed = _seconds(size_mb, lambda: reg.save("frame", frame))
            if round_ < repeats - 1:
                reg.delete("frame")
                reg.janitor(grace=0)
            return speed

        def raw_save(round_: int) -> float:
            return _seconds(size_mb, lambda: frame.to_parquet(raw_path, engine="pyarrow"))

        def raw_save_durable(round_: int) -> float:
            def run() -> None:
                frame.to_parquet(raw_path, engine="pyarrow")
                _fsynced(raw_path)

            return _seconds(size_mb, run)

        emit(
            results,
            _pair(
                f"save {mib} MiB DataFrame",
                save,
                raw_save_durable,
                "to_parquet+fsync",
                repeats,
                "Parquet in row groups of 1 Mi rows, hashed as written (second thread), fsynced",
                also=("to_parquet without fsync", raw_save),
            ),
        )
        pd.testing.assert_frame_equal(reg.load("frame"), frame)

        def load(round_: int) -> float:
            verified.forget()  # every byte hashed, as in a first load in a process
            return _load_seconds(size_mb, lambda: reg.load("frame"))

        def raw_load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: pd.read_parquet(raw_path))

        def unchecked_load(round_: int) -> float:
            return _load_seconds(size_mb, lambda: reg.load("frame", verify="none"))

        result = _pair(
            f"load {mib} MiB DataFrame",
            load,
            raw_load,
            "read_parquet",
            repeats,
            "default verify='integrity', first load in a process (every byte hashed)",
            also=("the registry with verify='none'", unchecked_load),
        )
        emit(results, result)
    finally:
        reg.close()
    if rss_available():
        for op, what in (("frame-save", "save"), ("frame-load", "load")):
            emit(
                results,
                _memory(f"  peak RSS, {mib} MiB frame {what}", op, root, raw_path, config, mib),
            )
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(raw_dir, ignore_errors=True)
    return results
