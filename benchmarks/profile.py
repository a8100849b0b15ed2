"""Profile one workload across every thread: ``python -m benchmarks.profile save``.

cProfile only sees the thread that enabled it, while the sync facade does its
work on the runner thread and in worker threads. Here each thread started
after the hook is installed gets its own profiler (``threading.setprofile``),
the main thread too, and the stats are merged. ``--cpu`` measures CPU time per
thread instead of wall time (steadier on a busy machine; idle waits vanish).

Workloads: save, save-auto, load, load-pinned, batch-save, batch-load,
file-save, file-load.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.local import make_big_file, small_object

WORKLOADS = (
    "save",
    "save-auto",
    "load",
    "load-pinned",
    "batch-save",
    "batch-load",
    "file-save",
    "file-load",
)


class AllThreads:
    """One cProfile.Profile per thread, merged at the end."""

    def __init__(self, timer: Callable[[], float] | None) -> None:
        self.timer = timer
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _new(self) -> cProfile.Profile:
        profile = cProfile.Profile(self.timer) if self.timer else cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        return profile

    def _boot(self, frame: Any, event: str, arg: Any) -> None:
        # First event in a new thread: replace this hook by a real profiler.
        sys.setprofile(None)
        self._new().enable()

    def install(self) -> None:
        threading.setprofile(self._boot)
        self._main = self._new()
        self._main.enable()

    def clear(self) -> None:
        """Forget what was recorded so far (warm-up), keep profiling."""
        with self._lock:
            for profile in self.profiles:
                profile.clear()

    def stop(self) -> pstats.Stats | None:
        threading.setprofile(None)
        self._main.disable()
        merged: pstats.Stats | None = None
        for profile in self.profiles:
            profile.create_stats()
            if not profile.stats:
                continue  # a thread that did nothing after the warm-up
            if merged is None:
                merged = pstats.Stats(profile, stream=sys.stdout)
            else:
                merged.add(profile)
        return merged


def run_workload(name: str, root: Path, n: int, file_mib: int, profiler: AllThreads) -> str:
    """Run ``name`` once untimed (warm-up), then profiled; returns a summary line."""
    from registry import Registry

    reg = Registry(root / "registry", version_objects=True)
    objs = [small_object(i) for i in range(n)]
    big = root / "big.bin"
    try:
        if name.startswith("file"):
            make_big_file(big, file_mib)
        if name in ("load", "load-pinned", "batch-load"):
            saved = reg.save([f"obj-{i}" for i in range(n)], objs)
            assert not saved.failed, saved.errors
        if name == "file-load":
            reg.save("big", big)

        def once(tag: str) -> None:
            if name == "save":
                for i, obj in enumerate(objs):
                    reg.save(f"{tag}-{i}", obj)
            elif name == "save-auto":
                for obj in objs:
                    reg.save(f"auto-{tag}", obj)
            elif name == "load":
                for i in range(n):
                    reg.load(f"obj-{i}")
            elif name == "load-pinned":
                for i in range(n):
                    reg.load(f"obj-{i}", version="1")
            elif name == "batch-save":
                assert not reg.save([f"{tag}-{i}" for i in range(n)], objs).failed
            elif name == "batch-load":
                assert not reg.load([f"obj-{i}" for i in range(n)]).failed
            elif name == "file-save":
                reg.save("big", big)
            elif name == "file-load":
                shutil.rmtree(reg.load("big").parent)

        once("warmup")
        profiler.clear()
        start = time.perf_counter()
        once("profiled")
        elapsed = time.perf_counter() - start
    finally:
        reg.close()
    if name.startswith("file"):
        return (
            f"{name}: {file_mib} MiB in {elapsed:.2f} s ({file_mib * 1.048576 / elapsed:.0f} MB/s)"
        )
    count = n
    return f"{name}: {count} ops in {elapsed:.2f} s ({count / elapsed:,.0f} ops/s, profiled)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("-n", type=int, default=500, help="objects (small workloads)")
    parser.add_argument("--mib", type=int, default=256, help="file size (file workloads)")
    parser.add_argument("--cpu", action="store_true", help="CPU time per thread, not wall")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    parser.add_argument("--top", type=int, default=30, help="rows to print")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="registry-profile-"))
    profiler = AllThreads(time.thread_time if args.cpu else None)
    profiler.install()
    try:
        summary = run_workload(args.workload, root, args.n, args.mib, profiler)
    finally:
        stats = profiler.stop()
        shutil.rmtree(root, ignore_errors=True)
    clock = "CPU time per thread" if args.cpu else "wall time"
    if stats is None:
        print(f"{summary}; nothing recorded")
        return 1
    raw_stats: dict[Any, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(max(0.0, entry[2]) for entry in raw_stats.values())
    print(
        f"{summary}\n{len(profiler.profiles)} threads profiled ({clock}, warm-up included in "
        f"the count), {total:.3f} s of own time in all, merged:"
    )
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
