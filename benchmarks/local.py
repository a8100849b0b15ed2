"""Benchmarks of the registry on local disk, each against a raw baseline.

Groups (``--only`` takes these names):

- ``single``: small objects one at a time through the sync facade
- ``batch``: batch save and load of small objects through the sync facade
- ``async``: the same small saves and loads on ``AsyncRegistry`` directly
- ``file``: a large file (``pathlib.Path``) saved and loaded, with peak memory
- ``numpy``: a large numpy array saved and loaded, with peak memory
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

import msgspec

from benchmarks.common import (
    Config,
    MiB,
    Result,
    alternate,
    alternate_async,
    clock,
    durable_copy,
    durable_write,
    emit,
    fmt,
    fsync_dir,
    rss_available,
    settle,
    timed,
)
from registry.core import verified

if TYPE_CHECKING:
    from registry import AsyncRegistry, Registry
    from registry.core.artifacts import Verify

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# Threads the raw batch baseline writes with: the local backend's default
# concurrency, so both sides may have as many writes in flight.
RAW_THREADS = 32


def small_object(i: int) -> dict[str, Any]:
    """A typical small object: a config-like dict, about 300 bytes as JSON."""
    return {
        "id": i,
        "name": f"object-{i}",
        "owner": "benchmarks",
        "tags": ["alpha", "beta", "gamma"],
        "values": [i * 0.5 + k for k in range(16)],
        "enabled": i % 2 == 0,
        "limits": {"cpu": 2, "memory_mib": 512},
    }


# bytes of one small object as JSON: the object size the report's chart plots
SMALL_JSON_BYTES = len(_encode(small_object(0)))


def _registry(root: Path) -> Registry:
    from registry import Registry

    return Registry(root, version_objects=True)


def _at_least(value: float, target: float) -> bool:
    return value >= target


# -- raw baselines for small objects ----------------------------------------------------


def raw_save_loop(folder: Path, objs: Sequence[Any]) -> float:
    """Durable writes of the JSON of ``objs``, one after another; ops/s."""
    folder.mkdir()
    took = clock()
    for i, obj in enumerate(objs):
        durable_write(folder, f"{i}.json", _encode(obj))
    return len(objs) / took()


def raw_save_new_folders(folder: Path, objs: Sequence[Any]) -> float:
    """Like ``raw_save_loop`` but each file in a new folder (mkdir, fsync the
    parent), as the registry's layout needs for a new name; ops/s."""
    folder.mkdir()
    took = clock()
    for i, obj in enumerate(objs):
        sub = folder / str(i)
        sub.mkdir()
        fsync_dir(folder)
        durable_write(sub, "1.json", _encode(obj))
    return len(objs) / took()


def raw_save_pool(folder: Path, objs: Sequence[Any], pool: ThreadPoolExecutor) -> float:
    """The same durable writes from a thread pool; ops/s."""
    folder.mkdir()

    def write(i: int) -> None:
        durable_write(folder, f"{i}.json", _encode(objs[i]))

    took = clock()
    list(pool.map(write, range(len(objs))))
    return len(objs) / took()


def raw_save_pool_new_folders(folder: Path, objs: Sequence[Any], pool: ThreadPoolExecutor) -> float:
    """``raw_save_pool`` with each file in a new folder (mkdir, fsync the
    parent), as a batch of new names needs; ops/s."""
    folder.mkdir()

    def write(i: int) -> None:
        sub = folder / str(i)
        sub.mkdir()
        fsync_dir(folder)
        durable_write(sub, "1.json", _encode(objs[i]))

    took = clock()
    list(pool.map(write, range(len(objs))))
    return len(objs) / took()


def raw_load_loop(paths: Sequence[Path]) -> float:
    """Read and decode each file, one after another; ops/s."""
    took = clock(collect=False)
    for path in paths:
        with open(path, "rb") as f:
            _decode(f.read())
    return len(paths) / took()


def write_plain_files(folder: Path, objs: Sequence[Any]) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, obj in enumerate(objs):
        path = folder / f"{i}.json"
        path.write_bytes(_encode(obj))
        paths.append(path)
    return paths


def _small_setup(config: Config, n: int, label: str) -> tuple[list[Any], Path, Registry]:
    """``n`` small objects, a scratch folder for the raw side and a registry."""
    objs = [small_object(i) for i in range(n)]
    return objs, config.scratch(f"raw-{label}"), _registry(config.scratch(f"reg-{label}"))


# -- single: one at a time through the sync facade ---------------------------------------


def bench_single(config: Config) -> list[Result]:
    n = config.single_ops
    objs, raw_root, reg = _small_setup(config, n, "single")
    results: list[Result] = []
    try:
        reg.save("warmup", objs[0])  # opens the registry, starts the runner thread
        assert reg.load("warmup") == objs[0]

        def save_new_names(round_: int) -> float:
            names = [f"single-{round_}-{i}" for i in range(n)]
            took = clock()
            for name, obj in zip(names, objs, strict=True):
                reg.save(name, obj)
            return n / took()

        def save_auto_versions(round_: int) -> float:
            name = f"auto-{round_}"
            took = clock()
            for obj in objs:
                version = reg.save(name, obj)
            elapsed = took()
            assert version == str(n), version
            return n / elapsed

        def raw_save(round_: int) -> float:
            return raw_save_loop(raw_root / f"save-{round_}", objs)

        def raw_save_folders(round_: int) -> float:
            return raw_save_new_folders(raw_root / f"save-dirs-{round_}", objs)

        new, auto, raw, raw_dirs = alternate(
            [save_new_names, save_auto_versions, raw_save, raw_save_folders], config.repeats
        )
        target = "≥ 700 ops/s"
        like_for_like = (
            f"vs durable write into a new folder (mkdir+fsync parent, 3 fsyncs like a new "
            f"name): {fmt(median(raw_dirs))} ops/s, {median(new) / median(raw_dirs) * 100:.0f}%"
        )
        for label, samples, note in (
            ("save small, new names (sync)", new, like_for_like),
            ("save small, auto version (sync)", auto, ""),
        ):
            emit(
                results,
                Result(
                    label,
                    "ops/s",
                    samples,
                    "durable write",
                    raw,
                    target,
                    _at_least(median(samples), 700),
                    note=note,
                ),
            )

        # Loads: the names saved above (latest version, default verify).
        names = [f"single-0-{i}" for i in range(n)]
        paths = write_plain_files(raw_root / "load", objs)
        assert reg.load(names[-1]) == objs[-1]

        def load_latest(round_: int) -> float:
            took = clock()
            for name in names:
                reg.load(name)
            return n / took()

        def load_pinned(round_: int) -> float:
            took = clock()
            for name in names:
                reg.load(name, version="1")
            return n / took()

        def raw_load(round_: int) -> float:
            gc.collect()
            return raw_load_loop(paths)

        latest, pinned, raw = alternate([load_latest, load_pinned, raw_load], config.repeats)
        emit(
            results,
            Result(
                "load small, latest (sync)",
                "ops/s",
                latest,
                "read+decode",
                raw,
                "≥ 3,000 ops/s",
                _at_least(median(latest), 3000),
            ),
        )
        emit(results, Result("load small, version='1' (sync)", "ops/s", pinned, "read+decode", raw))
    finally:
        reg.close()
    return results


# -- batch: lists through the sync facade --------------------------------------------------


def bench_batch(config: Config) -> list[Result]:
    n = config.batch_size
    objs, raw_root, reg = _small_setup(config, n, "batch")
    results: list[Result] = []
    pool = ThreadPoolExecutor(max_workers=RAW_THREADS, thread_name_prefix="raw-batch")
    try:
        warm = reg.save([f"warmup-{i}" for i in range(8)], objs[:8])
        assert not warm.failed, warm.errors

        def batch_save(round_: int) -> float:
            names = [f"batch-{round_}-{i}" for i in range(n)]
            took = clock()
            saved = reg.save(names, objs)
            elapsed = took()
            assert not saved.failed, saved.errors
            return n / elapsed

        def raw_batch_save(round_: int) -> float:
            return raw_save_pool(raw_root / f"save-{round_}", objs, pool)

        def raw_batch_save_folders(round_: int) -> float:
            return raw_save_pool_new_folders(raw_root / f"save-dirs-{round_}", objs, pool)

        saves, raw, raw_dirs = alternate(
            [batch_save, raw_batch_save, raw_batch_save_folders], config.repeats
        )
        emit(
            results,
            Result(
                f"batch save {n} small (sync)",
                "ops/s",
                saves,
                f"durable write, {RAW_THREADS} threads",
                raw,
                "≥ 2,000 ops/s",
                _at_least(median(saves), 2000),
                note=(
                    f"vs durable writes into new folders, {RAW_THREADS} threads (mkdir+fsync "
                    f"parent, 3 fsyncs like a new name): {fmt(median(raw_dirs))} ops/s, "
                    f"{median(saves) / median(raw_dirs) * 100:.0f}%"
                ),
                params={"op": "save", "bytes": SMALL_JSON_BYTES},
            ),
        )

        names = [f"batch-0-{i}" for i in range(n)]
        paths = write_plain_files(raw_root / "load", objs)
        check = reg.load(names)
        assert not check.failed and check.results == objs

        def batch_load(round_: int) -> float:
            took = clock()
            loaded = reg.load(names)
            elapsed = took()
            assert not loaded.failed, loaded.errors
            return n / elapsed

        def raw_load(round_: int) -> float:
            gc.collect()
            return raw_load_loop(paths)

        loads, raw = alternate([batch_load, raw_load], config.repeats)
        emit(
            results,
            Result(
                f"batch load {n} small (sync)",
                "ops/s",
                loads,
                "read+decode, 1 thread",
                raw,
                "≥ 5,000 ops/s",
                _at_least(median(loads), 5000),
                params={"op": "load", "bytes": SMALL_JSON_BYTES},
            ),
        )
    finally:
        pool.shutdown()
        reg.close()
    return results


# -- async: AsyncRegistry directly ---------------------------------------------------------


async def _async_group(config: Config, areg: AsyncRegistry, raw_root: Path) -> list[Result]:
    n = config.single_ops
    objs = [small_object(i) for i in range(n)]
    results: list[Result] = []
    await areg.save("warmup", objs[0])

    async def save_new_names(round_: int) -> float:
        names = [f"async-{round_}-{i}" for i in range(n)]
        took = clock()
        for name, obj in zip(names, objs, strict=True):
            await areg.save(name, obj)
        return n / took()

    async def save_auto_versions(round_: int) -> float:
        name = f"auto-{round_}"
        took = clock()
        for obj in objs:
            await areg.save(name, obj)
        return n / took()

    async def raw_save(round_: int) -> float:
        return raw_save_loop(raw_root / f"save-{round_}", objs)

    new, auto, raw = await alternate_async(
        [save_new_names, save_auto_versions, raw_save], config.repeats
    )
    for label, samples in (
        ("save small, new names (async)", new),
        ("save small, auto version (async)", auto),
    ):
        emit(results, Result(label, "ops/s", samples, "durable write", raw))

    names = [f"async-0-{i}" for i in range(n)]
    paths = write_plain_files(raw_root / "load", objs)
    assert await areg.load(names[-1]) == objs[-1]

    async def load_latest(round_: int) -> float:
        took = clock()
        for name in names:
            await areg.load(name)
        return n / took()

    async def raw_load(round_: int) -> float:
        gc.collect()
        return raw_load_loop(paths)

    loads, raw = await alternate_async([load_latest, raw_load], config.repeats)
    emit(results, Result("load small, latest (async)", "ops/s", loads, "read+decode", raw))
    return results


def bench_async(config: Config) -> list[Result]:
    from registry import AsyncRegistry

    raw_root = config.scratch("raw-async")
    reg_root = config.scratch("reg-async")

    async def main() -> list[Result]:
        async with AsyncRegistry(reg_root, version_objects=True) as areg:
            return await _async_group(config, areg, raw_root)

    return asyncio.run(main())


# -- file: a large pathlib.Path ------------------------------------------------------------


def make_big_file(path: Path, mib: int) -> None:
    """``mib`` MiB of incompressible bytes (a random 16 MiB block, repeated)."""
    block = os.urandom(16 * MiB)
    with open(path, "wb") as f:
        written = 0
        while written < mib * MiB:
            chunk = block[: mib * MiB - written]
            f.write(chunk)
            written += len(chunk)


def _remove_loaded(path: Path, scratch_root: Path) -> None:
    """Remove the folder a load copied its file into (it is ours to delete)."""
    folder = path.parent
    if scratch_root in folder.parents or folder.name.startswith("registry-"):
        shutil.rmtree(folder, ignore_errors=True)


def _drop_versions(reg: Registry, name: str) -> None:
    """Delete every version of ``name`` and its files (outside any timing)."""
    reg.delete(name)
    reg.janitor(grace=0)


def _memory_result(label: str, op: str, root: Path, source: Path, config: Config) -> Result:
    """Peak RSS of one operation, measured in a fresh interpreter (see memprobe)."""
    from benchmarks.memprobe import run_probe

    probe = run_probe(op, root, source, config.root / "tmp")
    peak = probe["peak_mib"]
    result = Result(
        label,
        "MiB",
        [peak],
        target="< 100 MiB",
        passed=peak < 100,
        note=f"above the level before the call, in a fresh process ({probe['seconds']:.1f} s)",
    )
    return result


def bench_file(config: Config) -> list[Result]:
    mib = config.big_file_mib
    size_mb = mib * MiB / 1e6
    src_dir = config.scratch("file-src")
    src = src_dir / "big.bin"
    make_big_file(src, mib)
    raw_dir = config.scratch("raw-file")
    reg_root = config.scratch("reg-file")
    reg = _registry(reg_root)
    results: list[Result] = []
    label = f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"
    try:
        reg.save("warmup", b"x")

        def save(round_: int) -> float:
            gc.collect()
            elapsed = timed(lambda: reg.save("big", src))
            if round_ < config.big_repeats - 1:  # keep the last one for the loads
                _drop_versions(reg, "big")
            return size_mb / elapsed

        def raw_copier(copy: Callable[[Path, Path], object], stem: str) -> Callable[[int], float]:
            def run(round_: int) -> float:
                dest = raw_dir / f"{stem}-{round_}.bin"
                gc.collect()
                elapsed = timed(lambda: copy(src, dest))
                dest.unlink()
                return size_mb / elapsed

            return run

        def hash_only(round_: int) -> float:
            """sha256 of the file alone: what every save and every checked load
            does besides copying (the registry's own helper)."""
            from registry.materializers.base import hash_file

            gc.collect()
            return size_mb / timed(lambda: hash_file(src))

        saves, raw, hashes = alternate(
            [save, raw_copier(durable_copy, "copy"), hash_only], config.big_repeats
        )
        bound = (
            f"what bounds it: sha256 of the file alone {fmt(median(hashes))} MB/s "
            f"({median(hashes) / median(raw) * 100:.0f}% of raw), beside the copy"
        )
        emit(
            results,
            Result(
                f"save {label} file (sync)",
                "MB/s",
                saves,
                "copyfile+fsync",
                raw,
                "≥ 60% of raw",
                median(saves) >= 0.6 * median(raw),
                note=f"the copy is fsynced while its hash finishes; {bound}",
                params={"op": "save", "bytes": mib * MiB},
            ),
        )

        settle()  # a version loaded some time after its save, as usual

        def loader(verify: Verify, first: bool = True) -> Callable[[int], float]:
            def load(round_: int) -> float:
                if first:
                    verified.forget()  # as in a new process: every byte hashed
                gc.collect()
                out: list[Path] = []
                elapsed = timed(lambda: out.append(reg.load("big", verify=verify)))
                if round_ == 0:
                    assert out[0].stat().st_size == mib * MiB
                _remove_loaded(out[0], config.root)
                return size_mb / elapsed

            return load

        checked, again, trusted, raw, raw_durable, hashes = alternate(
            [
                loader("integrity"),
                loader("integrity", first=False),
                loader("none"),
                raw_copier(shutil.copyfile, "load"),
                raw_copier(durable_copy, "load-fsync"),
                hash_only,
            ],
            config.big_repeats,
        )
        vs_durable = median(checked) / median(raw_durable) * 100
        result = Result(
            f"load {label} file (sync)",
            "MB/s",
            checked,
            "copyfile",
            raw,
            "≥ 60% of raw",
            median(checked) >= 0.6 * median(raw),
            note=(
                "default verify='integrity', first load in a process (every byte hashed); "
                "the copy it returns is not fsynced, so the "
                f"baseline is a plain copyfile (vs copyfile+fsync "
                f"{fmt(median(raw_durable))} MB/s: {vs_durable:.0f}%); what bounds it: "
                f"sha256 of the file alone {fmt(median(hashes))} MB/s "
                f"({median(hashes) / median(raw) * 100:.0f}% of raw), beside the copy out"
            ),
            params={"op": "load", "bytes": mib * MiB},
        )
        emit(results, result)
        emit(
            results,
            Result(
                f"load {label} file again (sync)",
                "MB/s",
                again,
                "copyfile",
                raw,
                "≥ 60% of raw",
                median(again) >= 0.6 * median(raw),
                note="verify='integrity', loaded before in this process: the file's stat "
                "is unchanged, so its hash is not recomputed (core/verified.py)",
            ),
        )
        emit(results, Result(f"load {label} file, verify='none'", "MB/s", trusted, "copyfile", raw))
    finally:
        reg.close()
    try:
        if rss_available():
            for op, what in (("file-save", "save"), ("file-load", "load")):
                mem = _memory_result(f"  peak RSS, {label} {what}", op, reg_root, src, config)
                emit(results, mem)
    finally:
        shutil.rmtree(src_dir, ignore_errors=True)
        shutil.rmtree(reg_root, ignore_errors=True)
    return results


# -- numpy: a large array ------------------------------------------------------------------


def bench_numpy(config: Config) -> list[Result]:
    try:
        import numpy as np
    except ImportError:
        print("  numpy is not installed: skipped")
        return []
    mib = config.array_mib
    array = np.random.default_rng(0).random(mib * MiB // 8)
    size_mb = array.nbytes / 1e6
    raw_dir = config.scratch("raw-numpy")
    reg_root = config.scratch("reg-numpy")
    reg = _registry(reg_root)
    results: list[Result] = []
    raw_path = raw_dir / "array.npy"
    try:
        reg.save("warmup", np.arange(4))

        def save(round_: int) -> float:
            gc.collect()
            elapsed = timed(lambda: reg.save("array", array))
            if round_ < config.big_repeats - 1:
                _drop_versions(reg, "array")
            return size_mb / elapsed

        def raw_save(round_: int) -> float:
            path = raw_dir / f"array-{round_}.npy"

            def write() -> None:
                with open(path, "wb") as f:
                    np.save(f, array, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())

            gc.collect()
            elapsed = timed(write)
            path.replace(raw_path)
            return size_mb / elapsed

        saves, raw = alternate([save, raw_save], config.big_repeats)
        emit(
            results,
            Result(f"save {mib} MiB numpy array (sync)", "MB/s", saves, "np.save+fsync", raw),
        )

        loaded = reg.load("array")
        assert np.array_equal(loaded, array)
        del loaded

        settle()

        def loader(first: bool) -> Callable[[int], float]:
            def load(round_: int) -> float:
                if first:
                    verified.forget()  # as in a new process: every byte hashed
                gc.collect()
                out: list[Any] = []
                elapsed = timed(lambda: out.append(reg.load("array")))
                out.clear()
                return size_mb / elapsed

            return load

        def raw_load(round_: int) -> float:
            gc.collect()
            out: list[Any] = []
            elapsed = timed(lambda: out.append(np.load(raw_path, allow_pickle=False)))
            out.clear()
            return size_mb / elapsed

        loads, again, raw = alternate([loader(True), loader(False), raw_load], config.big_repeats)
        emit(
            results,
            Result(
                f"load {mib} MiB numpy array (sync)",
                "MB/s",
                loads,
                "np.load",
                raw,
                note="default verify='integrity', first load in a process (every byte hashed "
                "beside the load)",
            ),
        )
        emit(
            results,
            Result(
                f"load {mib} MiB numpy array again (sync)",
                "MB/s",
                again,
                "np.load",
                raw,
                note="verify='integrity', loaded before in this process: its hash is not "
                "recomputed while the file's stat is unchanged",
            ),
        )
    finally:
        reg.close()
    if rss_available():
        for op, what in (("array-save", "save"), ("array-load", "load")):
            mem = _memory_result(
                f"  peak RSS, {mib} MiB array {what}", op, reg_root, raw_path, config
            )
            if op == "array-load":  # the result itself is that big: no fixed target
                mem.target, mem.passed = "", None
                mem.note += f"; the loaded array itself is {mib} MiB"
            emit(results, mem)
    return results
