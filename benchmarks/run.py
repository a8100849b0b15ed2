"""Run the benchmarks, aggregate them and write the report: ``python -m benchmarks.run``.

Each group runs ``--procs`` times (default 3), each time in a fresh worker
process (``--worker GROUP``), which measures the registry and its raw
baseline alternately and hands back its rounds as JSON; the parent takes the
median across processes with its spread (benchmarks/aggregate.py), prints a
summary, writes ``<date>-<host>.json`` and renders ``latest.md`` and PNG
charts (benchmarks/report.py). Slow shared setup happens once, in the
parent (benchmarks/shared.py): a SeaweedFS server for ``scale`` and
``concurrency``, and the scale group's registries (up to 100k objects).

Where the report goes: a full run of the default groups writes into
benchmarks/results/ (the files README embeds); ``--quick`` or ``--only``
write into benchmarks/results/partial/ (ignored by git) so they never
replace the full report, unless ``--out DIR`` says otherwise.

Options: ``--quick`` (fewer rounds, smaller sizes, a representative subset
of groups: under two minutes), ``--only GROUP`` (repeatable or
comma-separated; see ``--list``), ``--procs K``, ``--repeats N`` (rounds
per process), ``--tmpdir DIR`` (where the scratch folder goes), ``--out
DIR``, ``--json FILE`` (also write the aggregated results there),
``--render FILE.json`` (redraw the markdown and charts of an earlier run,
running nothing), ``--merge-into FILE.json`` (put the groups run now into an
earlier run's JSON in place of its figures for them, e.g. a group that
failed, and redraw that report; its header notes it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.aggregate import aggregate
from benchmarks.cache import bench_cache
from benchmarks.common import Config, Result, machine_header
from benchmarks.concurrency import bench_concurrency
from benchmarks.dataloader import bench_dataloader
from benchmarks.frameworks import bench_pandas, bench_torch
from benchmarks.imports import bench_imports
from benchmarks.local import bench_async, bench_batch, bench_file, bench_numpy, bench_single
from benchmarks.onnx_model import bench_onnx
from benchmarks.remote import bench_gcs, bench_s3
from benchmarks.requests import bench_requests
from benchmarks.scale import bench_scale
from benchmarks.shared import seaweedfs

GROUPS: dict[str, tuple[Callable[[Config], list[Result]], str]] = {
    "single": (bench_single, "small objects one at a time, sync facade"),
    "batch": (bench_batch, "batch save/load of small objects, sync facade"),
    "async": (bench_async, "small objects one at a time on AsyncRegistry"),
    "concurrency": (bench_concurrency, "batch of 500 small at concurrency 1-64, local, SeaweedFS"),
    "scale": (bench_scale, "latency against registry size (1k-100k), a name of 10k versions"),
    "file": (bench_file, "large file save/load with peak memory"),
    "numpy": (bench_numpy, "large numpy array save/load with peak memory"),
    "import": (bench_imports, "import time in a fresh interpreter"),
    "requests": (bench_requests, "backend requests per operation, counted on every backend"),
    "cache": (bench_cache, "cached loads of a remote registry vs local disk, per verify level"),
    "s3": (bench_s3, "moto and SeaweedFS on 127.0.0.1 vs raw aioboto3"),
    "gcs": (bench_gcs, "fake-gcs-server on 127.0.0.1 vs raw gcloud-aio-storage"),
    "torch": (bench_torch, "256 MiB tensor vs safetensors save_file/load_file, peak memory"),
    "pandas": (bench_pandas, "256 MiB DataFrame vs to_parquet/read_parquet, peak memory"),
    "onnx": (bench_onnx, "a 2.2 GB ONNX model (external data) vs onnx.save_model/load_model"),
    "dataloader": (bench_dataloader, "DataLoader, 4 workers, small objects on SeaweedFS vs raw"),
}
# --quick without --only: batch small objects, the concurrency sweep and scale, local disk
QUICK_GROUPS = ("batch", "concurrency", "scale")
# counted, not timed (requests), or fresh interpreters already (import): one process
ONE_PROCESS = frozenset({"requests", "import"})
# large objects and their own servers: minutes per process, so two processes
# (each already several alternating rounds) keep a full run near an hour
HEAVY = frozenset({"file", "numpy", "torch", "pandas", "onnx", "s3", "gcs", "dataloader", "cache"})
DEFAULT_PROCS = 3
RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="registry benchmarks and their report"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer rounds")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GROUP",
        help="run only these groups (repeatable, or comma-separated)",
    )
    parser.add_argument("--procs", type=int, default=DEFAULT_PROCS, help="processes per group")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per benchmark")
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the scratch folder")
    parser.add_argument("--out", type=Path, default=None, help="folder of the report")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--render", type=Path, default=None, metavar="FILE.json")
    parser.add_argument(
        "--merge-into",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="put the groups run now into an earlier run's JSON (replacing theirs) and redraw",
    )
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    # internal: one group in this process, results to --json (run.py starts these)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--context", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    only = [g.strip() for item in args.only for g in item.split(",") if g.strip()]
    unknown = [g for g in [*only, args.worker or "single"] if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.partial = bool(only) or args.quick
    args.only = only or list(QUICK_GROUPS if args.quick else GROUPS)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.procs < 1:
        parser.error("--procs must be at least 1")
    if args.worker and args.json is None:
        parser.error("--worker needs --json")
    return args


def facade_overhead(entries: Sequence[dict[str, Any]]) -> None:
    """Compare each sync facade figure with its AsyncRegistry twin, if both ran."""
    by_name = {e["name"]: e for e in entries}
    lines = []
    for name, sync in by_name.items():
        if not name.endswith(" (sync)"):
            continue
        twin = by_name.get(name.removesuffix(" (sync)") + " (async)")
        if twin is not None and twin["median"] > 0:
            lines.append(
                f"  {name.removesuffix(' (sync)')}: sync {sync['median']:,.0f} vs async "
                f"{twin['median']:,.0f} {sync['unit']} ({sync['median'] / twin['median'] * 100:.0f}%)"
            )
    if lines:
        print("\nSync facade vs AsyncRegistry (medians):")
        print("\n".join(lines))


# -- worker: one group in this process ---------------------------------------------------


def _backend_of(result: Result, group: str) -> str:
    if result.backend:
        return result.backend
    if group == "dataloader":
        return "seaweedfs"
    prefix, colon, _ = result.name.partition(":")
    return prefix.strip() if colon and " " not in prefix.strip() else "local"


def run_worker(args: argparse.Namespace) -> int:
    context = json.loads(args.context.read_text()) if args.context else {}
    root = Path(tempfile.mkdtemp(prefix=f"worker-{args.worker}-", dir=args.tmpdir))
    config = Config.make(quick=args.quick, root=root, repeats=args.repeats, context=context)
    # Temporary folders the registry makes (loaded copies of files) go in the
    # scratch folder too, so nothing is left behind.
    own_tmp = root / "tmp"
    own_tmp.mkdir()
    tempfile.tempdir = str(own_tmp)
    try:
        results = GROUPS[args.worker][0](config)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for result in results:
        result.group = args.worker
        result.backend = _backend_of(result, args.worker)
    args.json.write_text(json.dumps([r.to_dict() for r in results]))
    return 0


# -- parent: workers, aggregation, report ------------------------------------------------


def run_group(
    name: str, procs: int, args: argparse.Namespace, root: Path, context_file: Path
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """Run ``name`` in ``procs`` fresh processes; their result lists and failures."""
    runs, failures = [], []
    for index in range(procs):
        out = root / f"{name}-{index}.json"
        command = [
            sys.executable, "-m", "benchmarks.run", "--worker", name, "--json", str(out),
            "--context", str(context_file), "--tmpdir", str(root),
        ]  # fmt: skip
        if args.quick:
            command.append("--quick")
        if args.repeats:
            command += ["--repeats", str(args.repeats)]
        print(f"\n[{name}] process {index + 1} of {procs}: {GROUPS[name][1]}", flush=True)
        done = subprocess.run(command, cwd=REPO, check=False)
        if done.returncode != 0 or not out.exists():
            failures.append(f"{name}, process {index + 1}: exit status {done.returncode}")
            print(f"  failed: exit status {done.returncode}", flush=True)
            continue
        runs.append(json.loads(out.read_text()))
    return runs, failures


def _prepare(
    groups: Sequence[str], config: Config, context: dict[str, Any]
) -> list[dict[str, Any]]:
    """Shared setup the workers read from the context; results it measured."""
    if "scale" not in groups:
        return []
    from benchmarks.scale import prepare

    print("\n[scale] building the registries once for every worker process", flush=True)
    context["scale"], built = prepare(config, context)
    for result in built:
        result.group, result.backend = "scale", result.backend or "local"
    return aggregate([[r.to_dict() for r in built]])


def processes(group: str, procs: int) -> int:
    """Fresh processes ``group`` runs in (see ONE_PROCESS, HEAVY)."""
    if group in ONE_PROCESS:
        return 1
    return min(procs, 2) if group in HEAVY else procs


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.tmpdir))
    config = Config.make(quick=args.quick, root=root, repeats=args.repeats)
    started = time.perf_counter()
    entries: list[dict[str, Any]] = []
    failures: list[str] = []
    group_seconds: dict[str, float] = {}
    group_procs: dict[str, int] = {}
    machine = list(machine_header(config))
    print("\n".join(machine), flush=True)
    try:
        with seaweedfs(args.only, args.quick) as context:
            began = time.perf_counter()
            entries += _prepare(args.only, config, context)
            if entries:
                group_seconds["scale build"] = time.perf_counter() - began
            context_file = root / "context.json"
            context_file.write_text(json.dumps(context))
            for name in args.only:
                began = time.perf_counter()
                procs = processes(name, args.procs)
                group_procs[name] = procs
                runs, failed = run_group(name, procs, args, root, context_file)
                failures += failed
                entries += aggregate(runs)
                group_seconds[name] = time.perf_counter() - began
                print(f"  ({name}: {group_seconds[name]:.0f} s)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    now = datetime.datetime.now()
    mode = "quick" if args.quick else "full"
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if args.partial and set(args.only) != set(QUICK_GROUPS if args.quick else GROUPS):
        command += " --only " + ",".join(args.only)
    return {
        "meta": {
            "date": now.strftime("%Y-%m-%d"),
            "time": now.strftime("%H:%M"),
            "host": socket.gethostname(),
            "mode": mode,
            "processes": args.procs,
            "groups": args.only,
            "command": command,
            "wall_seconds": time.perf_counter() - started,
            "group_seconds": group_seconds,
            "group_processes": group_procs,
            "machine": machine,
            "commit": _commit(),
            "failures": failures,
        },
        "results": entries,
    }


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return ""
    return done.stdout.strip()


def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the groups ``new`` ran replaced by ``new``'s results (a
    group re-run after it failed); the report's header says so."""
    groups = set(new["meta"]["groups"])
    kept = [e for e in base["results"] if e["group"] not in groups]
    order = {name: index for index, name in enumerate(GROUPS)}
    results = sorted(kept + new["results"], key=lambda e: order.get(e["group"], len(order)))
    meta = dict(base["meta"])
    for key in ("group_seconds", "group_processes"):
        meta[key] = {**meta.get(key, {}), **new["meta"].get(key, {})}
    failures = [f for f in meta.get("failures", []) if f.split(",")[0] not in groups]
    meta["failures"] = failures + new["meta"]["failures"]
    when = f"{new['meta']['date']} {new['meta'].get('time', '')}".strip()
    note = f"{', '.join(sorted(groups))}: from a later run, {when} (`{new['meta']['command']}`)"
    meta["notes"] = [*meta.get("notes", []), note]
    return {"meta": meta, "results": results}


def write_report(doc: dict[str, Any], folder: Path) -> list[Path]:
    from benchmarks.report import render

    return render(doc, folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, (_, description) in GROUPS.items():
            quick = " (quick)" if name in QUICK_GROUPS else ""
            print(f"{name:<12} {description}{quick}")
        return 0
    if args.worker:
        return run_worker(args)
    if args.render:
        doc = json.loads(args.render.read_text())
        for path in write_report(doc, args.out or args.render.parent):
            print(f"wrote {path}")
        return 0
    doc = run_all(args)
    from benchmarks.report import console

    meta = doc["meta"]
    print(f"\nSummary ({meta['wall_seconds']:.0f} s, medians of {args.procs} processes)\n")
    print(console(doc))
    facade_overhead(doc["results"])
    folder = args.out or (RESULTS / "partial" if args.partial else RESULTS)
    suffix = "-quick" if args.quick else ""
    data = folder / f"{meta['date']}-{meta['host']}{suffix}.json"
    if args.merge_into is not None:
        doc = merge(json.loads(args.merge_into.read_text()), doc)
        folder, data = args.out or args.merge_into.parent, args.merge_into
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1)
    data.write_text(text)
    if args.json is not None:
        args.json.write_text(text)
    print(f"\nwrote {data}")
    for path in write_report(doc, folder):
        print(f"wrote {path}")
    return 1 if doc["meta"]["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
