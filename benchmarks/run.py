"""Run the benchmarks and print a summary table: ``python -m benchmarks.run``.

Options: ``--quick`` (smaller sizes, fewer rounds: under a minute),
``--only GROUP`` (repeatable or comma-separated; see ``--list``),
``--repeats N``, ``--tmpdir DIR`` (where the scratch folder goes),
``--json FILE`` (also write the results as JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.cache import bench_cache
from benchmarks.common import Config, Result, machine_header, print_table
from benchmarks.dataloader import bench_dataloader
from benchmarks.frameworks import bench_pandas, bench_torch
from benchmarks.imports import bench_imports
from benchmarks.local import bench_async, bench_batch, bench_file, bench_numpy, bench_single
from benchmarks.remote import bench_gcs, bench_s3
from benchmarks.requests import bench_requests

GROUPS: dict[str, tuple[Callable[[Config], list[Result]], str]] = {
    "single": (bench_single, "small objects one at a time, sync facade"),
    "batch": (bench_batch, "batch save/load of small objects, sync facade"),
    "async": (bench_async, "small objects one at a time on AsyncRegistry"),
    "file": (bench_file, "large file save/load with peak memory"),
    "numpy": (bench_numpy, "large numpy array save/load with peak memory"),
    "import": (bench_imports, "import time in a fresh interpreter"),
    "requests": (bench_requests, "backend requests per operation, counted on every backend"),
    "cache": (bench_cache, "cached loads of a remote registry vs local disk, per verify level"),
    "s3": (bench_s3, "moto and SeaweedFS on 127.0.0.1 vs raw aioboto3"),
    "gcs": (bench_gcs, "fake-gcs-server on 127.0.0.1 vs raw gcloud-aio-storage"),
    "torch": (bench_torch, "256 MiB tensor vs safetensors save_file/load_file, peak memory"),
    "pandas": (bench_pandas, "256 MiB DataFrame vs to_parquet/read_parquet, peak memory"),
    "dataloader": (bench_dataloader, "DataLoader, 4 workers, small objects on SeaweedFS vs raw"),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="registry benchmarks (local disk, S3)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer rounds")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GROUP",
        help="run only these groups (repeatable, or comma-separated)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="rounds per benchmark")
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the scratch folder")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    args = parser.parse_args(argv)
    only = [g.strip() for item in args.only for g in item.split(",") if g.strip()]
    unknown = [g for g in only if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.only = only or list(GROUPS)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def facade_overhead(results: Sequence[Result]) -> None:
    """Compare each sync facade figure with its AsyncRegistry twin, if both ran."""
    by_name = {r.name: r for r in results}
    lines = []
    for name, sync in by_name.items():
        if not name.endswith(" (sync)"):
            continue
        twin = by_name.get(name.removesuffix(" (sync)") + " (async)")
        if twin is not None and twin.value > 0:
            lines.append(
                f"  {name.removesuffix(' (sync)')}: sync {sync.value:,.0f} vs async "
                f"{twin.value:,.0f} {sync.unit} ({sync.value / twin.value * 100:.0f}%)"
            )
    if lines:
        print("\nSync facade vs AsyncRegistry (medians, different rounds):")
        print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, (_, description) in GROUPS.items():
            print(f"{name:<8} {description}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.tmpdir))
    config = Config.make(quick=args.quick, root=root, repeats=args.repeats)
    # Temporary folders the registry makes (loaded copies of files) go in the
    # scratch folder too, so nothing is left behind.
    own_tmp = root / "tmp"
    own_tmp.mkdir()
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = str(own_tmp)
    results: list[Result] = []
    started = time.perf_counter()
    try:
        for line in machine_header(config):
            print(line)
        for name in args.only:
            func, description = GROUPS[name]
            print(f"\n[{name}] {description}", flush=True)
            group_start = time.perf_counter()
            results.extend(func(config))
            print(f"  ({time.perf_counter() - group_start:.1f} s)", flush=True)
    finally:
        tempfile.tempdir = saved_tempdir
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nSummary ({time.perf_counter() - started:.0f} s)\n")
    if results:  # a group may print its own table instead (requests)
        print_table(results)
    facade_overhead(results)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "unit": r.unit,
                        "median": r.value,
                        "samples": r.samples,
                        "baseline": r.baseline_name,
                        "baseline_median": r.baseline,
                        "ratio": r.ratio,
                        "target": r.target,
                        "passed": r.passed,
                        "note": r.note,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
