"""Loop one small-object operation for a sampling profiler (py-spy, pyinstrument).

``python -m benchmarks.profile_loop load-latest --seconds 10`` repeats the
operation for that long after a warm-up and prints its rate; wrap it in
``py-spy record -o flame.svg -- python -m benchmarks.profile_loop ...`` to
get a flame graph of every thread (the sync facade works on the runner
thread). ``py-spy record --pid`` after the "ready" line leaves the setup
out. Unlike ``benchmarks.profile`` (cProfile, deterministic, slows small
calls a lot), sampling leaves the timing of each call nearly as it is.

Workloads: load-latest, load-pinned (sync); async-latest, async-pinned;
batch-load, batch-save (500 small objects per call, sync).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.local import small_object

WORKLOADS = (
    "load-latest",
    "load-pinned",
    "async-latest",
    "async-pinned",
    "batch-load",
    "batch-save",
)


def _ready() -> None:
    """Tell a profiler waiting to attach (``py-spy record --pid``) that the
    setup is over: it prints a line and gives it a moment."""
    print(f"ready {os.getpid()}", flush=True)
    time.sleep(0.5)


def _loop(step: Callable[[int], int], seconds: float) -> tuple[int, float]:
    """Call ``step(round)`` (it returns the ops it did) until ``seconds`` pass."""
    _ready()
    ops, round_ = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ops += step(round_)
        round_ += 1
    return ops, time.perf_counter() - start


def run_sync(workload: str, root: Path, n: int, seconds: float) -> tuple[int, float]:
    from registry import Registry

    reg = Registry(root, version_objects=True)
    objs = [small_object(i) for i in range(n)]
    names = [f"obj-{i}" for i in range(n)]
    try:
        assert not reg.save(names, objs).failed

        def step(round_: int) -> int:
            if workload == "load-latest":
                for name in names:
                    reg.load(name)
            elif workload == "load-pinned":
                for name in names:
                    reg.load(name, version="1")
            elif workload == "batch-load":
                assert not reg.load(names).failed
            elif workload == "batch-save":
                assert not reg.save([f"r{round_}-{name}" for name in names], objs).failed
            return n

        time.sleep(1.1)  # let the folders settle, as a registry saved earlier would be
        step(-1)  # warm-up
        return _loop(step, seconds)
    finally:
        reg.close()


def run_async(workload: str, root: Path, n: int, seconds: float) -> tuple[int, float]:
    from registry import AsyncRegistry

    async def main() -> tuple[int, float]:
        async with AsyncRegistry(root, version_objects=True) as areg:
            objs = [small_object(i) for i in range(n)]
            names = [f"obj-{i}" for i in range(n)]
            assert not (await areg.save(names, objs)).failed
            await asyncio.sleep(1.1)
            version = "latest" if workload == "async-latest" else "1"
            for name in names:
                await areg.load(name, version=version)
            _ready()
            ops = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                for name in names:
                    await areg.load(name, version=version)
                ops += n
            return ops, time.perf_counter() - start

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_loop", description=__doc__)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("-n", type=int, default=500, help="objects")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to loop")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="registry-profile-"))
    try:
        run = run_async if args.workload.startswith("async") else run_sync
        ops, elapsed = run(args.workload, root, args.n, args.seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.workload}: {ops} ops in {elapsed:.1f} s ({ops / elapsed:,.0f} ops/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
