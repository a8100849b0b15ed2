"""The ``scale`` group: does an operation cost more in a bigger registry?

Registries of 1k, 10k and 100k small objects on local disk (1k and 10k on the
run's SeaweedFS server; ``--quick``: 1k and 10k on local disk only), built
once per run by batch save in the parent process (:func:`prepare`, which
reports the build rate) and measured by each fresh worker process
(:func:`bench_scale`). Each registry is versioned (``version_objects=True``)
and holds names ``obj-0 .. obj-(n-1)``, one version each, a dict of a few
keys (inlined in its metadata).

Per-operation latency is the median over a random sample of names, in rounds
that rotate which registry goes first; the figure of a bigger registry is
held to at most 1.5x that of the smallest, measured in the same process.
Also: one name with 10,000 versions beside names with one (local disk), and
``list_objects()`` / ``info()`` over the whole registry, which must read
every name (reported, no target). SeaweedFS registries run with
``use_cache=False``: every call goes to the server, which is the cost that
could grow with the registry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from statistics import median
from typing import TYPE_CHECKING, Any

from benchmarks.common import Config, Result, clock, emit, rotation
from benchmarks.shared import s3_backend

if TYPE_CHECKING:
    from registry import Registry

LOCAL_SIZES = (1_000, 10_000, 100_000)
REMOTE_SIZES = (1_000, 10_000)
QUICK_SIZES = (1_000, 10_000)
DEEP_VERSIONS = 10_000  # versions of the one deep name
SHALLOW_NAMES = 100  # names with one version beside it
BUILD_CHUNK = 5_000  # objects per batch save while building
REMOTE_INFO_MAX = 1_000  # largest SeaweedFS registry info() reads whole
FLAT = 1.5  # the target: largest / smallest registry
TARGET = f"≤ {FLAT}x of smallest"

Op = Callable[["Registry", str], object]

# (label, call) on one name of a registry whose names all have version "1"
OPS: list[tuple[str, Op]] = [
    ("load, version='1'", lambda r, n: r.load(n, version="1")),
    ("load latest", lambda r, n: r.load(n)),
    ("has_object(name)", lambda r, n: r.has_object(n)),
    ("list_versions(name)", lambda r, n: r.list_versions(n)),
    ("info(name)", lambda r, n: r.info(n)),
    ("save, auto version", lambda r, n: r.save(n, {"id": n, "more": True})),
]
# the deep name: the same questions of a name with 10,000 versions
DEEP_OPS: list[tuple[str, Op]] = [
    ("load latest", lambda r, n: r.load(n)),
    ("load, explicit version", lambda r, n: r.load(n, version="1")),
    ("has_object(name)", lambda r, n: r.has_object(n)),
    ("info(name, 'latest')", lambda r, n: r.info(n, "latest")),
    ("save, auto version", lambda r, n: r.save(n, {"id": n, "more": True})),
]


def label(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def small(i: int) -> dict[str, Any]:
    """A few keys: inlined in the metadata, as most small objects are."""
    return {"id": i, "name": f"obj-{i}", "lr": 0.001 * (i % 7), "tags": ["a", "b"]}


def _open(where: dict[str, Any], context: dict[str, Any], *, fsync: bool = True) -> Registry:
    """The registry ``where`` describes: a folder, or a prefix on SeaweedFS."""
    from registry import Registry
    from registry.backends.local import LocalBackend

    if "path" in where:
        return Registry(LocalBackend(where["path"], fsync=fsync), version_objects=True)
    return Registry(
        backend=s3_backend(context, where["prefix"]), version_objects=True, use_cache=False
    )


# -- building (parent process) -------------------------------------------------------


def _build(reg: Registry, names: Sequence[str], versions: Sequence[str] | None = None) -> float:
    """Batch-save one small object per name; seconds taken."""
    took = clock()
    for start in range(0, len(names), BUILD_CHUNK):
        chunk = list(names[start : start + BUILD_CHUNK])
        objs = [small(start + i) for i in range(len(chunk))]
        version = list(versions[start : start + len(chunk)]) if versions else "1"
        reg.save(chunk, objs, version=version).raise_first()
    return took()


def _build_result(backend: str, what: str, count: int, seconds: float, size: int) -> Result:
    return Result(
        f"{backend}: build {what} (batch save)",
        "objects/s",
        [count / seconds],
        note=f"{count:,} objects in {seconds:.1f} s",
        group="scale",
        backend=backend,
        params={"op": "build", "registry_size": size, "seconds": seconds},
    )


def prepare(config: Config, context: dict[str, Any]) -> tuple[dict[str, Any], list[Result]]:
    """Build every registry the workers measure, once per run: where they are
    (JSON-ready) and the build rates."""
    plans: list[tuple[str, int, dict[str, Any]]] = []
    for size in QUICK_SIZES if config.quick else LOCAL_SIZES:
        plans.append(("local", size, {"path": str(config.scratch(f"scale-{label(size)}"))}))
    if "seaweedfs" in context and not config.quick:
        for size in REMOTE_SIZES:
            plans.append(("seaweedfs", size, {"prefix": f"scale-{label(size)}"}))
    built: dict[str, Any] = {"registries": []}
    results: list[Result] = []
    for backend, size, where in plans:
        # --quick builds without fsync (the same files, in a quarter of the
        # time); what is measured on them later is durable as always
        reg = _open(where, context, fsync=not config.quick)
        try:
            seconds = _build(reg, [f"obj-{i}" for i in range(size)])
        finally:
            reg.close()
        what = f"{label(size)} registry" + (", no fsync (--quick)" if config.quick else "")
        result = _build_result(backend, what, size, seconds, size)
        emit(results, result)
        built["registries"].append({"backend": backend, "size": size, **where})
    if not config.quick:
        where = {"path": str(config.scratch("scale-deep"))}
        reg = _open(where, context)
        try:
            seconds = _build(
                reg, ["deep"] * DEEP_VERSIONS, [str(v + 1) for v in range(DEEP_VERSIONS)]
            )
            seconds += _build(reg, [f"obj-{i}" for i in range(SHALLOW_NAMES)])
        finally:
            reg.close()
        count = DEEP_VERSIONS + SHALLOW_NAMES
        emit(results, _build_result("local", "1 name x 10,000 versions", count, seconds, count))
        built["deep"] = where
    return built, results


# -- measuring (worker processes) ------------------------------------------------------


def _latency_ms(reg: Registry, op: Op, names: Sequence[str]) -> float:
    """Median milliseconds of ``op`` over ``names``, one call each."""
    times = []
    for name in names:
        start = time.perf_counter()
        op(reg, name)
        times.append(time.perf_counter() - start)
    return median(times) * 1000


def _flat_results(
    backend: str,
    suffix: Callable[[int], str],
    by_size: dict[int, dict[str, list[float]]],
    params: Callable[[int], dict[str, Any]],
    baseline: str,
) -> list[Result]:
    """One result per (op, size), each held to 1.5x of the smallest size's."""
    smallest = min(by_size)
    results = []
    for op in by_size[smallest]:
        for size, ops in by_size.items():
            base = [] if size == smallest else by_size[smallest][op]
            ratio = median(ops[op]) / median(base) if base else None
            results.append(
                Result(
                    f"{backend} {op}, {suffix(size)}",
                    "ms",
                    ops[op],
                    baseline if base else "",
                    base,
                    TARGET if base else "",
                    ratio <= FLAT if ratio is not None else None,
                    backend=backend,
                    params={"op": op, **params(size)},
                )
            )
    return results


def _measure_sizes(
    config: Config, backend: str, registries: list[dict[str, Any]], sample: int
) -> list[Result]:
    regs = {r["size"]: _open(r, dict(config.context)) for r in registries}
    rng = random.Random(0)
    by_size: dict[int, dict[str, list[float]]] = {size: {} for size in regs}
    whole: dict[int, dict[str, list[float]]] = {size: {} for size in regs}
    sizes = sorted(regs)
    try:
        for reg in regs.values():  # opens each (settings read) outside the timing
            reg.has_object("obj-0")
        for round_, index in rotation(len(sizes), config.repeats):
            size = sizes[index]
            reg = regs[size]
            for op_label, op in OPS:
                names = [f"obj-{rng.randrange(size)}" for _ in range(sample)]
                by_size[size].setdefault(op_label, []).append(_latency_ms(reg, op, names))
            if round_:  # reading every name once per process is enough (100k: ~20 s)
                continue
            whole_calls = [("list_objects()", reg.list_objects), ("info()", reg.info)]
            if backend != "local" and size > REMOTE_INFO_MAX:
                whole_calls.pop()  # info() on SeaweedFS: ~50 names/s, 10k would be minutes
            for op_label, call in whole_calls:
                took = clock()
                found = call()
                whole[size].setdefault(op_label, []).append(took())
                assert len(found) >= size, (op_label, len(found), size)
    finally:
        for reg in regs.values():
            reg.close()
    results = _flat_results(
        backend,
        lambda s: f"{label(s)} registry",
        by_size,
        lambda s: {"registry_size": s},
        f"same op, {label(sizes[0])} registry",
    )
    for size in sizes:
        for op_label, seconds in whole[size].items():
            results.append(
                Result(
                    f"{backend} {op_label} over {label(size)}",
                    "s",
                    seconds,
                    note=f"{size / median(seconds):,.0f} names/s",
                    backend=backend,
                    params={"op": op_label, "registry_size": size, "whole": True},
                )
            )
    return results


def _measure_deep(config: Config, where: dict[str, Any], sample: int) -> list[Result]:
    reg = _open(where, dict(config.context))
    rng = random.Random(1)
    by_depth: dict[int, dict[str, list[float]]] = {1: {}, DEEP_VERSIONS: {}}
    try:
        reg.has_object("deep")
        for _, index in rotation(2, config.repeats):
            depth = (1, DEEP_VERSIONS)[index]
            for op_label, op in DEEP_OPS:
                if depth == 1:
                    names = [f"obj-{rng.randrange(SHALLOW_NAMES)}" for _ in range(sample)]
                else:
                    names = ["deep"] * sample
                by_depth[depth].setdefault(op_label, []).append(_latency_ms(reg, op, names))
    finally:
        reg.close()
    return _flat_results(
        "local",
        lambda d: "1 version" if d == 1 else f"{d:,} versions",
        by_depth,
        lambda d: {"versions": d},
        "same op, a name with 1 version",
    )


def bench_scale(config: Config) -> list[Result]:
    built = config.context.get("scale")
    if not built:
        print("  no prebuilt registries (run through benchmarks.run, not --worker alone)")
        return []
    results: list[Result] = []
    for backend in ("local", "seaweedfs"):
        registries = [r for r in built["registries"] if r["backend"] == backend]
        if registries:
            sample = 30 if backend != "local" else 50 if config.quick else 100
            for result in _measure_sizes(config, backend, registries, sample):
                emit(results, result)
    if "deep" in built:
        for result in _measure_deep(config, built["deep"], 20):
            emit(results, result)
    return results
