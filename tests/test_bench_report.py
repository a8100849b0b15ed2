"""The benchmark report: aggregation across processes and rendering, on a
tiny synthetic run (no benchmark runs, no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.aggregate import aggregate, judge
from benchmarks.report import render
from benchmarks.run import merge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def item(name: str, samples: list[float], base: list[float], **extra: Any) -> dict[str, Any]:
    """One result as a worker process hands it back (Result.to_dict)."""
    return {
        "name": name,
        "unit": "ops/s",
        "samples": samples,
        "baseline_name": "raw" if base else "",
        "baseline_samples": base,
        "target": "",
        "passed": None,
        "note": "",
        "group": "batch",
        "backend": "local",
        "params": {},
        **extra,
    }


def test_aggregate_medians_and_spread_across_processes() -> None:
    runs = [
        [item("save", [10, 11, 12], [20, 20, 20], target="≥ 60% of raw")],
        [item("save", [30, 31, 32], [40, 40, 40], target="≥ 60% of raw")],
        [item("save", [20, 21, 22], [20, 20, 20], target="≥ 60% of raw")],
    ]
    (entry,) = aggregate(runs)
    assert entry["samples"] == [11, 31, 21]  # each process's median of its rounds
    assert entry["median"] == 21
    assert entry["spread"] == {"min": 11, "max": 31, "q1": 16, "q3": 26}
    assert entry["baseline_median"] == 20
    # the ratio is the median of per-process ratios (0.55, 0.775, 1.05)
    assert entry["ratio"] == pytest.approx(31 / 40)
    assert entry["ratio_spread"]["min"] == pytest.approx(0.55)
    assert entry["passed"] is True and entry["processes"] == 3


def test_aggregate_keeps_order_and_results_without_baseline() -> None:
    runs = [[item("a", [1.0], []), item("b", [5.0], [10.0])], [item("a", [3.0], [])]]
    a, b = aggregate(runs)
    assert (a["name"], a["median"], a["ratio"], a["processes"]) == ("a", 2.0, None, 2)
    assert (b["name"], b["ratio"], b["spread"]["min"]) == ("b", 0.5, 5.0)


def test_targets_as_spelled() -> None:
    assert judge("≥ 700 ops/s", 701, None) is True
    assert judge("≥ 2,000 ops/s", 1999, None) is False
    assert judge("≥ 70% of raw", 1, 0.69) is False
    assert judge("< 100 MiB", 99, None) is True
    assert judge("≤ 1.5x of smallest", 99, 1.4) is True
    assert judge("≤ 1.5x of smallest", 1, 1.6) is False
    assert judge("≥ 83% of local", 5000, 0.8) is False
    assert judge("< 2x the object (512 MiB)", 100, 3.0) is None  # left to the processes' votes
    assert judge("whatever", 1, 1) is None


def synthetic_doc() -> dict[str, Any]:
    """A run with one result of each kind the report draws."""
    one = [
        item("batch save 500 small (sync)", [300, 310], [600, 620],
             params={"op": "save", "bytes": 300}, target="≥ 60% of raw"),
        item("seaweedfs: load 64 MiB file, cold", [500.0], [700.0], unit="MB/s",
             backend="seaweedfs", group="s3", params={"op": "load", "bytes": 64 << 20}),
        item("local load latest, 1k registry", [0.2], [], unit="ms", group="scale",
             params={"op": "load latest", "registry_size": 1000}),
        item("local load latest, 10k registry", [0.25], [0.2], unit="ms", group="scale",
             target="≤ 1.5x of smallest", params={"op": "load latest", "registry_size": 10000}),
        item("local load latest, 1 version", [0.2], [], unit="ms", group="scale",
             params={"op": "load latest", "versions": 1}),
        item("local load latest, 10,000 versions", [0.5], [0.2], unit="ms", group="scale",
             target="≤ 1.5x of smallest", params={"op": "load latest", "versions": 10000}),
        item("local list_objects() over 10k", [1.2], [], unit="s", group="scale",
             note="8,000 names/s", params={"op": "list_objects()", "registry_size": 10000, "whole": True}),
        item("local: batch save 500 small, concurrency 4", [600], [1200], group="concurrency",
             params={"op": "save", "concurrency": 4, "bytes": 300}),
        item("local: batch load 500 small, concurrency 4", [6000], [12000], group="concurrency",
             params={"op": "load", "concurrency": 4, "bytes": 300}),
        item("moto: load latest, warm cache", [1.0], [], unit="requests", group="requests",
             backend="moto", note="get 1", params={"op": "load latest, warm cache"}),
    ]  # fmt: skip
    return {
        "meta": {
            "date": "2026-01-01",
            "host": "test",
            "mode": "quick",
            "processes": 2,
            "command": "python -m benchmarks.run --quick",
            "wall_seconds": 60.0,
            "group_seconds": {"batch": 20.0},
            "machine": ["machine : test"],
            "failures": [],
        },
        "results": aggregate([one]),
    }


def test_render_writes_tables_and_valid_pngs(tmp_path: Path) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(synthetic_doc()))
    written = render(json.loads(source.read_text()), tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["concurrency.png", "latest.md", "scale.png", "throughput.png"]
    for png in (tmp_path / "out").glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    md = (tmp_path / "out" / "latest.md").read_text()
    assert "![throughput](throughput.png)" in md
    assert (
        "| batch save 500 small (sync) | 305 ops/s |  | 610 ops/s (raw) | 50% | ≥ 60% of raw | MISS |"
        in md
    )
    assert "| local | load latest | 0.20 | 0.25 | 1.25x | yes |" in md
    assert "| load latest | 0.20 | 0.50 | 2.50x | **no** |" in md
    assert "| local | batch save | 600 (50%) |" in md
    assert "| load latest, warm cache | 1 (get 1) |" in md
    assert "| local | list_objects() | 10k | 1.20 s |" in md


def test_render_leaves_out_charts_without_data(tmp_path: Path) -> None:
    doc = synthetic_doc()
    doc["results"] = [e for e in doc["results"] if e["group"] == "requests"]
    (tmp_path / "scale.png").write_bytes(b"stale")
    written = render(doc, tmp_path)
    assert [p.name for p in written] == ["latest.md"]
    assert not (tmp_path / "scale.png").exists()
    assert ".png" not in (tmp_path / "latest.md").read_text()


def test_merge_replaces_the_groups_run_again() -> None:
    base = synthetic_doc()
    base["meta"]["failures"] = ["batch, process 1: exit status 1"]
    again = {
        "meta": {**base["meta"], "groups": ["batch"], "failures": [], "time": "12:00"},
        "results": aggregate([[item("batch save 500 small (sync)", [900], [1000])]]),
    }
    merged = merge(base, again)
    batch = [e for e in merged["results"] if e["group"] == "batch"]
    assert [(e["name"], e["median"]) for e in batch] == [("batch save 500 small (sync)", 900)]
    assert len(merged["results"]) == len(base["results"])
    assert merged["meta"]["failures"] == []
    assert merged["meta"]["notes"][0].startswith("batch: from a later run")
