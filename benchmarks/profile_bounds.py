"""What bounds small loads and batch saves: per-call floors beside them.

``python -m benchmarks.profile_bounds`` times, alternately in one process,
the raw read+decode of a small JSON file, the registry's small loads (async,
and sync on the caller's own loop and across to the runner thread), and the
empty calls underneath them: an empty coroutine run on a thread's own loop
and across to the runner thread, and one yield to the loop (a checkpoint). For batch saves of new names, per
item: the raw durable writes from 32 threads (the batch group's baseline),
the registry's batch save, and the same with ``fsync=False`` (no disk
waits: what the registry's own work costs per item).
Each figure is the median over rounds of microseconds per call, in wall time
and in CPU time of the whole process (steadier on a busy machine: time spent
waiting for a core does not count).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from benchmarks.local import RAW_THREADS, raw_save_pool, small_object


def _measure(step: Callable[[], None], n: int) -> tuple[float, float]:
    """(wall, cpu) microseconds per call of ``step`` over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_bounds", description=__doc__
    )
    parser.add_argument("-n", type=int, default=500, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    from registry import Registry
    from registry._runner import get_runner
    from registry.backends.local import LocalBackend

    root = Path(tempfile.mkdtemp(prefix="registry-bounds-"))
    n = args.n
    try:
        reg = Registry(root / "reg", version_objects=True)
        names = [f"obj-{i}" for i in range(n)]
        objs = [small_object(i) for i in range(n)]
        assert not reg.save(names, objs).failed
        raw = root / "raw"
        raw.mkdir()
        for i, obj in enumerate(objs):
            (raw / f"{i}.json").write_bytes(msgspec.json.encode(obj))
        paths = [raw / f"{i}.json" for i in range(n)]
        time.sleep(1.1)  # settled folders, as a registry saved earlier
        areg = reg.async_registry
        no_fsync = Registry(backend=LocalBackend(root / "no-fsync", fsync=False))
        pool = ThreadPoolExecutor(max_workers=RAW_THREADS)
        batches = {"i": 0}

        def fresh(tag: str) -> list[str]:
            batches["i"] += 1
            return [f"{tag}-{batches['i']}-{i}" for i in range(n)]

        def raw_pool() -> None:
            raw_save_pool(root / "pool" / str(batches["i"]), objs, pool)
            batches["i"] += 1

        (root / "pool").mkdir()
        runner = get_runner()
        own = asyncio.new_event_loop()
        decode = msgspec.json.Decoder().decode
        cursor = {"i": 0}

        def next_index() -> int:
            cursor["i"] = (cursor["i"] + 1) % n
            return cursor["i"]

        def raw_load() -> None:
            with open(paths[next_index()], "rb") as f:
                decode(f.read())

        async def empty() -> None:
            return None

        async def one_yield() -> None:
            await asyncio.sleep(0)

        def nothing() -> None:
            return None

        async def hops() -> None:
            # n worker-thread hops, RAW_THREADS at once: a batch save's one
            # hop per item (its durable put), without the work
            import anyio
            import anyio.to_thread

            limiter = anyio.CapacityLimiter(RAW_THREADS)

            async def hopper(count: int) -> None:
                for _ in range(count):
                    await anyio.to_thread.run_sync(nothing, limiter=limiter)

            async with anyio.create_task_group() as tg:
                for k in range(RAW_THREADS):
                    tg.start_soon(hopper, n // RAW_THREADS + (k < n % RAW_THREADS))

        async def async_loop(version: str) -> None:
            for name in names:
                await areg.load(name, version=version)

        def async_batch(version: str) -> Callable[[], None]:
            def run() -> None:
                own.run_until_complete(async_loop(version))

            return run

        cases: dict[str, tuple[Callable[[], None], int]] = {
            "raw read+decode": (raw_load, n),
            "async load, version='1'": (async_batch("1"), 1),
            "async load, latest": (async_batch("latest"), 1),
            "sync load, version='1' (own loop)": (
                lambda: reg.load(names[next_index()], version="1"),
                n,
            ),
            "sync load, latest (own loop)": (lambda: reg.load(names[next_index()]), n),
            "sync load, version='1' (runner thread)": (
                lambda: runner.run(areg.load(names[next_index()], version="1")),
                n,
            ),
            "batch load of all (sync)": (lambda: reg.load(names), 1),
            f"raw durable write, {RAW_THREADS} threads": (raw_pool, 1),
            "batch save, new names (sync)": (lambda: reg.save(fresh("b"), objs), 1),
            "batch save, new names, fsync=False": (
                lambda: no_fsync.save(fresh("f"), objs),
                1,
            ),
            "empty call, own loop": (lambda: own.run_until_complete(empty()), n),
            "empty call, runner thread": (lambda: runner.run(empty()), n),
            "one yield (checkpoint), own loop": (lambda: own.run_until_complete(one_yield()), n),
            f"worker-thread hop, {RAW_THREADS} at once": (
                lambda: own.run_until_complete(hops()),
                1,
            ),
        }
        per_op = {
            "async load, version='1'",
            "async load, latest",
            "batch load of all (sync)",
            f"raw durable write, {RAW_THREADS} threads",
            "batch save, new names (sync)",
            "batch save, new names, fsync=False",
            f"worker-thread hop, {RAW_THREADS} at once",
        }
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
        for round_ in range(args.rounds):
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for label in order:
                step, calls = cases[label]
                wall, cpu = _measure(step, calls)
                if label in per_op:  # one call did n loads
                    wall, cpu = wall / n, cpu / n
                samples[label].append((wall, cpu))
        raw_write = f"raw durable write, {RAW_THREADS} threads"
        saves = {
            raw_write,
            "batch save, new names (sync)",
            "batch save, new names, fsync=False",
            f"worker-thread hop, {RAW_THREADS} at once",
        }
        print(f"{'per call (median of ' + str(args.rounds) + ' rounds)':<42} {'wall us':>8} "
              f"{'cpu us':>8}  {'raw/this wall':>13} {'cpu':>5}")  # fmt: skip
        for label, pairs in samples.items():
            # loads against the raw read, batch saves against the raw durable writes
            raw = samples[raw_write if label in saves else "raw read+decode"]
            raw_wall = statistics.median(w for w, _ in raw)
            raw_cpu = statistics.median(c for _, c in raw)
            wall = statistics.median(w for w, _ in pairs)
            cpu = statistics.median(c for _, c in pairs)
            print(
                f"{label:<42} {wall:8.1f} {cpu:8.1f}  {raw_wall / wall * 100:12.0f}% "
                f"{raw_cpu / cpu * 100:4.0f}%"
            )
        own.close()
        pool.shutdown()
        no_fsync.close()
        reg.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
