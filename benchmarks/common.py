"""Shared pieces of the benchmarks: timing, peak memory, raw baselines, tables.

Every benchmark runs the registry and a raw baseline alternately (registry
first on even rounds, raw first on odd ones) so both see the same noise on a
busy machine; the figure printed is the median over rounds, and the ratio is
median(registry) / median(raw).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.backends.local import fsync_dir

MiB = 1024 * 1024


# -- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes for one run of the suite (``--quick`` shrinks them)."""

    quick: bool
    repeats: int  # rounds per small-object benchmark
    single_ops: int  # one-at-a-time operations per round
    batch_size: int  # objects per batch call
    big_file_mib: int  # the large file benchmark
    big_repeats: int
    array_mib: int  # the numpy benchmark
    import_runs: int
    root: Path  # scratch folder, removed at the end
    # what the parent process prepared for its workers (benchmarks/shared.py):
    # a SeaweedFS server's address, the scale group's prebuilt registries
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        *,
        quick: bool,
        root: Path,
        repeats: int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Config:
        # quick, full: (repeats, single_ops, big_file_mib, big_repeats, array_mib)
        rounds, single_ops, big_file_mib, big_repeats, array_mib = (
            (3, 150, 256, 2, 64) if quick else (5, 400, 1024, 3, 256)
        )
        return cls(
            quick=quick,
            repeats=repeats or rounds,
            single_ops=single_ops,
            batch_size=500,
            big_file_mib=big_file_mib,
            big_repeats=min(repeats or big_repeats, big_repeats),
            array_mib=array_mib,
            import_runs=5,
            root=root,
            context=context or {},
        )

    def scratch(self, label: str) -> Path:
        """A fresh folder below the scratch root."""
        path = self.root / f"{label}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path


# -- results ---------------------------------------------------------------------------


@dataclass
class Result:
    """One line of the summary table."""

    name: str
    unit: str  # "ops/s", "MB/s" or "ms"
    samples: list[float]
    baseline_name: str = ""
    baseline_samples: list[float] = field(default_factory=list)
    target: str = ""  # human-readable target, "" for none
    passed: bool | None = None  # None: no target
    note: str = ""
    # for the report (benchmarks/report.py): which group ran it, on which
    # backend, and what the charts plot it against ("op", "bytes",
    # "registry_size", "concurrency"); run.py fills in the group and backend
    group: str = ""
    backend: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Everything a worker process hands back to run.py (JSON-ready)."""
        # plain floats and bools: a figure may be a numpy scalar (pandas, torch)
        return {
            "name": self.name,
            "unit": self.unit,
            "samples": [float(s) for s in self.samples],
            "baseline_name": self.baseline_name,
            "baseline_samples": [float(s) for s in self.baseline_samples],
            "target": self.target,
            "passed": None if self.passed is None else bool(self.passed),
            "note": self.note,
            "group": self.group,
            "backend": self.backend,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def value(self) -> float:
        return statistics.median(self.samples)

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline
        if base is None or base == 0:
            return None
        return self.value / base

    def ratio_text(self) -> str:
        ratio = self.ratio
        if ratio is None:
            return "-"
        if self.unit == "ms":  # a time: lower is better, say how many times the baseline
            return f"{ratio:.2f}x"
        return f"{ratio * 100:.0f}%"

    def value_text(self) -> str:
        return f"{fmt(self.value)} {self.unit}"

    def spread_text(self) -> str:
        if len(self.samples) < 2:
            return ""
        return f"[{fmt(min(self.samples))}..{fmt(max(self.samples))}]"

    def baseline_text(self) -> str:
        base = self.baseline
        if base is None:
            return "-"
        return f"{fmt(base)} {self.unit} ({self.baseline_name})"

    def status(self) -> str:
        if self.passed is None:
            return ""
        return "PASS" if self.passed else "MISS"


def fmt(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_line(result: Result) -> None:
    """Progress line printed as soon as a benchmark finishes."""
    extra = f"  {result.note}" if result.note else ""
    print(
        f"  {result.name:<38} {result.value_text():>14} {result.spread_text():<22}"
        f" raw {result.baseline_text():<34} ratio {result.ratio_text():>6}{extra}",
        flush=True,
    )


def emit(results: list[Result], result: Result) -> None:
    """Keep ``result`` for the summary and print its line now."""
    results.append(result)
    print_line(result)


def print_table(results: Sequence[Result]) -> None:
    headers = ("benchmark", "median", "raw baseline", "vs raw", "target", "status")
    rows = [
        (
            r.name,
            r.value_text(),
            r.baseline_text(),
            r.ratio_text(),
            r.target or "-",
            r.status(),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    aligns = ("<", ">", "<", ">", "<", "<")

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True))

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row).rstrip())
    notes = [(r.name.strip(), r.note) for r in results if r.note]
    if notes:
        print()
        for name, note in notes:
            print(f"  {name}: {note}")
    verdicts = [r.passed for r in results if r.passed is not None]
    print()
    print(f"{sum(verdicts)} of {len(verdicts)} targets met")


# -- measuring -------------------------------------------------------------------------


def clock(*, collect: bool = True) -> Callable[[], float]:
    """Start a clock (after collecting garbage, so that a collection left over
    from setup does not land in the timing); call it for the seconds since."""
    if collect:
        gc.collect()
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


def timed(func: Callable[[], Any]) -> float:
    """Seconds taken by one call of ``func``."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def rotation(count: int, repeats: int) -> Iterator[tuple[int, int]]:
    """(round, run index) in the order runs go: each once per round, rotating
    who goes first so that every run sees the same noise."""
    order = list(range(count))
    for round_ in range(repeats):
        shift = round_ % count
        for index in order[shift:] + order[:shift]:
            yield round_, index


def alternate(runs: Sequence[Callable[[int], float]], repeats: int) -> tuple[list[float], ...]:
    """Call each ``run(round)`` once per round, rotating who goes first.

    Each run returns its own figure (a rate); the result is one list of
    figures per run, in the order given.
    """
    out: tuple[list[float], ...] = tuple([] for _ in runs)
    for round_, index in rotation(len(runs), repeats):
        out[index].append(runs[index](round_))
    return out


async def alternate_async(
    runs: Sequence[Callable[[int], Awaitable[float]]], repeats: int
) -> tuple[list[float], ...]:
    """:func:`alternate` for coroutines."""
    out: tuple[list[float], ...] = tuple([] for _ in runs)
    for round_, index in rotation(len(runs), repeats):
        out[index].append(await runs[index](round_))
    return out


async def pool(count: int, width: int, job: Callable[[int], Awaitable[object]]) -> None:
    """``job(0..count-1)`` by ``width`` workers pulling the next index, the shape
    of the registry's own batch fan-out; the first failure propagates."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await job(index)

    await asyncio.gather(*(worker() for _ in range(min(width, count))))


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _reset_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakRSS:
    """Peak resident memory above the level at entry, in MiB.

    Uses the kernel's high-water mark (reset at entry) when possible and a
    sampling thread (every 2 ms) in any case; the larger of the two wins.
    """

    def __init__(self) -> None:
        self.baseline_kib = 0
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))

    def __enter__(self) -> PeakRSS:
        self._hwm = _reset_peak()
        self.baseline_kib = self.peak_kib = _status_kib("VmRSS")
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))
        if self._hwm:
            self.peak_kib = max(self.peak_kib, _status_kib("VmHWM"))

    @property
    def above_mib(self) -> float:
        return max(0, self.peak_kib - self.baseline_kib) / 1024


def rss_available() -> bool:
    try:
        _status_kib("VmRSS")
    except (OSError, KeyError):
        return False
    return True


# -- raw baselines -------------------------------------------------------------------


def durable_write(folder: Path, name: str, data: bytes) -> None:
    """What a durable save must do at least: temp file, fsync, link, fsync dir."""
    final = folder / name
    tmp = folder / f".{name}.tmp-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, final)
    os.unlink(tmp)
    fsync_dir(folder)


def durable_copy(src: Path, dest: Path) -> None:
    """shutil.copyfile, then fsync the copy and its folder."""
    import shutil

    shutil.copyfile(src, dest)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(dest.parent)


# -- machine header ------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _filesystem(path: Path) -> str:
    """Type of the filesystem holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        resolved = str(path.resolve())
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, f"{parts[2]} on {parts[0]}"
    return kind


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / MiB:.1f} GiB"
    return "unknown"


def machine_header(config: Config) -> Iterator[str]:
    """Lines describing where and how the suite runs."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    try:
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "n/a"
    try:
        from importlib.metadata import version

        registry_version = version("versioned-registry")
    except Exception:
        registry_version = "unknown"
    yield (
        f"machine : {os.cpu_count()} cores ({usable} usable), {_cpu_model()}, "
        f"RAM {_memory_gib()}, load avg {load}"
    )
    yield f"python  : {platform.python_implementation()} {sys.version.split()[0]} on {platform.platform()}"
    yield f"registry: {registry_version}; scratch {config.root} ({_filesystem(config.root)})"
    mode = "quick" if config.quick else "full"
    yield (
        f"mode    : {mode}: {config.repeats} rounds x {config.single_ops} single ops, "
        f"batches of {config.batch_size}, {config.big_file_mib} MiB file x {config.big_repeats}, "
        f"{config.array_mib} MiB array"
    )
    yield "figures : median of the rounds [min..max]; ratio = median / median of the raw baseline"


def settle() -> None:
    """Wait until the last save's files are old enough for the memo of
    verified files (registry/core/verified.py): loads after this measure a
    version loaded some time after its save, as models usually are."""
    from registry.core import verified

    time.sleep(verified.SETTLED_NS / 1e9)
