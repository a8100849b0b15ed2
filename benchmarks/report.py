"""Render a benchmark run (the JSON run.py writes) as markdown and PNG charts.

``render(doc, folder)`` writes ``latest.md`` and the charts it embeds:
``throughput.png`` (throughput by object size and backend, the raw ceiling
beside each bar), ``scale.png`` (latency against registry size) and
``concurrency.png`` (batch throughput against concurrency); a chart with no
data is left out. matplotlib (a dev dependency) is imported here only, with
the Agg backend, so the benchmarks themselves never need it.

Figures are medians across fresh processes (benchmarks/aggregate.py); the
spread shown is min..max of the per-process medians.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.aggregate import LOWER_IS_BETTER
from benchmarks.common import fmt

Entry = dict[str, Any]
MD_NAME = "latest.md"
PNG_DPI = 90


# -- text ----------------------------------------------------------------------------


def ratio_text(ratio: float | None, unit: str) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if unit in LOWER_IS_BETTER else f"{ratio * 100:.0f}%"


def value_text(entry: Entry) -> str:
    return f"{fmt(entry['median'])} {entry['unit']}"


def spread_text(entry: Entry) -> str:
    low, high = entry["spread"]["min"], entry["spread"]["max"]
    return "" if entry["processes"] < 2 else f"{fmt(low)}..{fmt(high)}"


def ratio_cell(entry: Entry) -> str:
    text = ratio_text(entry["ratio"], entry["unit"])
    spread = entry.get("ratio_spread")
    if spread and entry["processes"] > 1:
        low, high = (
            ratio_text(spread["min"], entry["unit"]),
            ratio_text(spread["max"], entry["unit"]),
        )
        text += f" ({low}..{high})"
    return text


def status(entry: Entry) -> str:
    if entry["passed"] is None:
        return ""
    return "PASS" if entry["passed"] else "MISS"


def baseline_text(entry: Entry) -> str:
    base = entry["baseline_median"]
    if base is None:
        return "-"
    return f"{fmt(base)} {entry['unit']} ({entry['baseline']})"


SUMMARY_HEADERS = ("benchmark", "median", "spread", "raw baseline", "vs raw", "target", "status")


def summary_rows(entries: Iterable[Entry]) -> list[tuple[str, ...]]:
    return [
        (
            e["name"].strip(),
            value_text(e),
            spread_text(e),
            baseline_text(e),
            ratio_cell(e),
            e["target"] or "",
            status(e),
        )
        for e in entries
    ]


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def size_label(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else f"{size:,}"


def bytes_label(count: int) -> str:
    for unit, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= step:
            return f"{count / step:.0f} {unit}"
    return f"{count} B"


def _groups(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for e in entries:
        out.setdefault(e["group"] or "other", []).append(e)
    return out


def scale_sections(entries: Sequence[Entry]) -> list[str]:
    """Latency per op against registry size, the deep name, whole-registry
    reads and the build rates."""
    lines: list[str] = []
    flat = [e for e in entries if e["unit"] == "ms" and "registry_size" in e["params"]]
    if flat:
        sizes = sorted({e["params"]["registry_size"] for e in flat})
        rows = []
        for backend in dict.fromkeys(e["backend"] for e in flat):
            ops = dict.fromkeys(e["params"]["op"] for e in flat if e["backend"] == backend)
            for op in ops:
                cells = {
                    e["params"]["registry_size"]: e
                    for e in flat
                    if e["backend"] == backend and e["params"]["op"] == op
                }
                largest = cells[max(cells)]
                rows.append(
                    (
                        backend,
                        op,
                        *(fmt(cells[s]["median"]) if s in cells else "" for s in sizes),
                        ratio_cell(largest),
                        {True: "yes", False: "**no**", None: "-"}[largest["passed"]],
                    )
                )
        lines += ["### Latency against registry size (ms per operation, median)", ""]
        headers = ("backend", "operation", *(size_label(s) for s in sizes))
        lines += md_table((*headers, "largest / smallest", "within 1.5x"), rows)
        lines += [
            "",
            "The ratio is the median of the per-process ratios (each process measures every "
            "size, alternately), so under noise it can differ from the ratio of the medians "
            "shown.",
            "",
        ]
    deep = [e for e in entries if "versions" in e["params"]]
    if deep:
        rows = []
        for op in dict.fromkeys(e["params"]["op"] for e in deep):
            one = next(e for e in deep if e["params"]["op"] == op and e["params"]["versions"] == 1)
            many = next(e for e in deep if e["params"]["op"] == op and e["params"]["versions"] > 1)
            yes = {True: "yes", False: "**no**", None: "-"}[many["passed"]]
            rows.append((op, fmt(one["median"]), fmt(many["median"]), ratio_cell(many), yes))
        count = max(e["params"]["versions"] for e in deep)
        lines += [f"### One name with {count:,} versions vs names with one (local, ms)", ""]
        headers = ("operation", "1 version", f"{count:,} versions", "ratio", "within 1.5x")
        lines += md_table(headers, rows)
        lines.append("")
    whole = [e for e in entries if e["params"].get("whole")]
    if whole:
        rows = [
            (
                e["backend"],
                e["params"]["op"],
                size_label(e["params"]["registry_size"]),
                f"{fmt(e['median'])} s",
                spread_text(e),
                e["note"],
            )
            for e in whole
        ]
        lines += ["### Whole-registry reads (seconds, once per process)", ""]
        lines += md_table(("backend", "call", "names", "time", "spread", "rate"), rows)
        lines.append("")
    built = [e for e in entries if e["params"].get("op") == "build"]
    if built:
        rows = [
            (e["name"].split(": ", 1)[-1], f"{fmt(e['median'])} objects/s", e["note"])
            for e in built
        ]
        lines += ["### Building the registries (parent process, once per run)", ""]
        lines += md_table(("registry", "rate", "total"), rows)
        lines.append("")
    return lines


def concurrency_section(entries: Sequence[Entry]) -> list[str]:
    conc = [e for e in entries if "concurrency" in e["params"]]
    if not conc:
        return []
    levels = sorted({e["params"]["concurrency"] for e in conc})
    rows = []
    for backend in dict.fromkeys(e["backend"] for e in conc):
        for op in ("save", "load"):
            cells = {
                e["params"]["concurrency"]: e
                for e in conc
                if e["backend"] == backend and e["params"]["op"] == op
            }
            if not cells:
                continue
            rows.append(
                (
                    backend,
                    f"batch {op}",
                    *(
                        f"{fmt(cells[c]['median'])} ({ratio_text(cells[c]['ratio'], 'ops/s')})"
                        if c in cells
                        else ""
                        for c in levels
                    ),
                )
            )
    lines = [
        f"Batch of {_batch_count(conc[0])} small objects, ops/s (ratio to the raw baseline "
        "at the same concurrency)",
        "",
    ]
    lines += md_table(("backend", "operation", *(f"concurrency {c}" for c in levels)), rows)
    return [*lines, ""]


def requests_section(entries: Sequence[Entry]) -> list[str]:
    counted = [e for e in entries if e["unit"] == "requests"]
    if not counted:
        return []
    backends = list(dict.fromkeys(e["backend"] for e in counted))
    cells = {(e["params"]["op"], e["backend"]): e for e in counted}
    rows = []
    for op in dict.fromkeys(e["params"]["op"] for e in counted):
        row = [op]
        for backend in backends:
            e = cells.get((op, backend))
            row.append(
                "" if e is None else f"{e['median']:.0f}" + (f" ({e['note']})" if e["note"] else "")
            )
        rows.append(row)
    lines = [
        "Backend calls per operation, counted (on S3 and GCS one call is one HTTP request, "
        "except multipart uploads and ranged downloads of large files)",
        "",
    ]
    return [*lines, *md_table(("operation", *backends), rows), ""]


# groups rendered by their own section instead of the summary table
OWN_SECTION = {"scale", "concurrency", "requests"}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def _took(meta: dict[str, Any], group: str) -> str:
    """ " (42 s, 3 processes)" for a group's heading, from the run's meta."""
    parts = []
    seconds = meta.get("group_seconds", {}).get(group)
    if seconds is not None:
        parts.append(_duration(seconds))
    procs = meta.get("group_processes", {}).get(group)
    if procs is not None:
        parts.append(f"{procs} process" + ("es" if procs > 1 else ""))
    return f" ({', '.join(parts)})" if parts else ""


def markdown(doc: dict[str, Any], charts: Sequence[str]) -> str:
    meta, entries = doc["meta"], doc["results"]
    lines = [
        "# Benchmark report",
        "",
        f"{meta['date']} on `{meta['host']}`: {meta['mode']} run (`{meta['command']}`), each "
        f"group in up to {meta['processes']} fresh processes (each heading says how many), "
        f"{_duration(meta['wall_seconds'])} wall time.",
        "",
        "Every figure is the median over the processes of each process's median over its "
        "rounds; *spread* is min..max of those per-process medians. *vs raw* is the median of "
        "the per-process ratios to a raw baseline measured alternately with the registry in "
        "the same process (a time or memory reads as a multiple, lower is better). Generated "
        "by `python -m benchmarks.run` (`--render FILE.json` redraws it).",
        "",
        "```",
        *meta.get("machine", []),
        "```",
        "",
    ]
    for chart in charts:
        lines += [f"![{chart.removesuffix('.png')}]({chart})", ""]
    verdicts = [e["passed"] for e in entries if e["passed"] is not None]
    if verdicts:
        lines += [f"**{sum(verdicts)} of {len(verdicts)} targets met.**", ""]
    groups = _groups(entries)
    for group, members in groups.items():
        if group in OWN_SECTION:
            continue
        lines += [f"## {group}{_took(meta, group)}", ""]
        lines += md_table(SUMMARY_HEADERS, summary_rows(members))
        notes = [(e["name"].strip(), e["note"]) for e in members if e["note"]]
        if notes:
            lines += ["", *(f"- {name}: {note}" for name, note in notes)]
        lines.append("")
    for group, title, section in (
        ("scale", "Scale: cost against registry size", scale_sections),
        ("concurrency", "Batch throughput against concurrency", concurrency_section),
        ("requests", "Backend requests per operation", requests_section),
    ):
        if group in groups:
            lines += [f"## {title}{_took(meta, group)}", "", *section(groups[group])]
    if meta.get("notes"):
        lines += ["## Notes", "", *(f"- {n}" for n in meta["notes"]), ""]
    if meta.get("failures"):
        lines += ["## Failures", "", *(f"- {f}" for f in meta["failures"]), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- charts --------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _errors(entries: Sequence[Entry], scale: Sequence[float]) -> list[list[float]]:
    """Asymmetric error bars (below, above) from each entry's min..max."""
    low = [
        max(0.0, (e["median"] - e["spread"]["min"]) * s)
        for e, s in zip(entries, scale, strict=True)
    ]
    high = [
        max(0.0, (e["spread"]["max"] - e["median"]) * s)
        for e, s in zip(entries, scale, strict=True)
    ]
    return [low, high]


def chart_throughput(entries: Sequence[Entry], path: Path) -> bool:
    """Registry vs raw MB/s per (backend, object size), one panel per op."""
    picked = [
        e
        for e in entries
        if "bytes" in e["params"]
        and "concurrency" not in e["params"]
        and e["unit"] in ("ops/s", "MB/s")
        and e["baseline_median"]
    ]
    if not picked:
        return False
    plt = _pyplot()
    ops = [op for op in ("save", "load") if any(e["params"]["op"] == op for e in picked)]
    fig, axes = plt.subplots(1, len(ops), figsize=(11, 4.2), squeeze=False)
    for ax, op in zip(axes[0], ops, strict=True):
        mine = sorted(
            (e for e in picked if e["params"]["op"] == op),
            key=lambda e: (e["params"]["bytes"], e["backend"]),
        )
        # small objects are counted in ops/s: plot everything as MB/s of payload
        per = [e["params"]["bytes"] / 1e6 if e["unit"] == "ops/s" else 1.0 for e in mine]
        xs = list(range(len(mine)))
        reg = [e["median"] * s for e, s in zip(mine, per, strict=True)]
        raw = [e["baseline_median"] * s for e, s in zip(mine, per, strict=True)]
        width = 0.38
        ax.bar(
            [x - width / 2 for x in xs],
            reg,
            width,
            yerr=_errors(mine, per),
            label="registry",
            color="#3b6ea5",
            capsize=2,
        )
        ax.bar(
            [x + width / 2 for x in xs],
            raw,
            width,
            label="raw ceiling",
            color="#c9c9c9",
            edgecolor="#777",
        )
        tops = [v + high for v, high in zip(reg, _errors(mine, per)[1], strict=True)]
        for x, value, e in zip(xs, tops, mine, strict=True):
            ax.annotate(
                ratio_text(e["ratio"], e["unit"]),
                (x - width / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        ax.set_xticks(
            xs, [f"{e['backend']}\n{bytes_label(e['params']['bytes'])}" for e in mine], fontsize=7
        )
        ax.set_yscale("log")
        ax.set_ylabel("MB/s of payload (log)")
        ax.set_title(f"{op}: registry vs raw, ratio above the bar", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=PNG_DPI)
    plt.close(fig)
    return True


def chart_scale(entries: Sequence[Entry], path: Path) -> bool:
    """Latency per op against registry size, one panel per backend."""
    flat = [e for e in entries if e["unit"] == "ms" and "registry_size" in e["params"]]
    if not flat:
        return False
    plt = _pyplot()
    backends = list(dict.fromkeys(e["backend"] for e in flat))
    fig, axes = plt.subplots(1, len(backends), figsize=(5.5 * len(backends), 4.2), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        mine = [e for e in flat if e["backend"] == backend]
        for op in dict.fromkeys(e["params"]["op"] for e in mine):
            line = sorted(
                (e for e in mine if e["params"]["op"] == op),
                key=lambda e: e["params"]["registry_size"],
            )
            xs = [e["params"]["registry_size"] for e in line]
            ax.errorbar(
                xs,
                [e["median"] for e in line],
                yerr=_errors(line, [1.0] * len(line)),
                marker="o",
                capsize=3,
                label=op,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("objects in the registry (log)")
        ax.set_ylabel("ms per operation, median (log)")
        ax.set_title(f"{backend}: flat lines = cost independent of registry size", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=PNG_DPI)
    plt.close(fig)
    return True


def _batch_count(entry: Entry) -> str:
    """The batch size, as the name spells it ("batch save 500 small ...")."""
    found = re.search(r"batch \w+ (\d+) small", entry["name"])
    return found.group(1) if found else "a"


def chart_concurrency(entries: Sequence[Entry], path: Path) -> bool:
    """Batch ops/s against concurrency, registry (solid) and raw (dashed)."""
    conc = [e for e in entries if "concurrency" in e["params"]]
    if not conc:
        return False
    plt = _pyplot()
    backends = list(dict.fromkeys(e["backend"] for e in conc))
    fig, axes = plt.subplots(1, len(backends), figsize=(5.5 * len(backends), 4.2), squeeze=False)
    colors = {"save": "#b5523b", "load": "#3b6ea5"}
    for ax, backend in zip(axes[0], backends, strict=True):
        for op, color in colors.items():
            line = sorted(
                (e for e in conc if e["backend"] == backend and e["params"]["op"] == op),
                key=lambda e: e["params"]["concurrency"],
            )
            if not line:
                continue
            xs = [e["params"]["concurrency"] for e in line]
            ax.errorbar(
                xs,
                [e["median"] for e in line],
                yerr=_errors(line, [1.0] * len(line)),
                marker="o",
                capsize=3,
                color=color,
                label=f"registry {op}",
            )
            ax.plot(
                xs,
                [e["baseline_median"] for e in line],
                "--",
                marker="x",
                color=color,
                alpha=0.6,
                label=f"raw {op}",
            )
        levels = sorted({e["params"]["concurrency"] for e in conc if e["backend"] == backend})
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_yscale("log")
        ax.set_xlabel("calls in flight (backend concurrency)")
        ax.set_ylabel("objects/s (log)")
        count = _batch_count(next(e for e in conc if e["backend"] == backend))
        ax.set_title(f"{backend}: batch of {count} small objects", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=PNG_DPI)
    plt.close(fig)
    return True


CHARTS = (
    ("throughput.png", chart_throughput),
    ("scale.png", chart_scale),
    ("concurrency.png", chart_concurrency),
)


def render(doc: dict[str, Any], folder: Path) -> list[Path]:
    """Write latest.md and its charts into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written, charts = [], []
    for name, draw in CHARTS:
        path = folder / name
        if draw(doc["results"], path):
            written.append(path)
            charts.append(name)
        else:
            path.unlink(missing_ok=True)  # a stale chart from another run would mislead
    md = folder / MD_NAME
    md.write_text(markdown(doc, charts))
    return [md, *written]


def console(doc: dict[str, Any]) -> str:
    """The summary table for the terminal (same cells as the markdown)."""
    entries = [e for e in doc["results"] if e["unit"] != "requests"]
    rows = summary_rows(entries)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(SUMMARY_HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(SUMMARY_HEADERS), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    verdicts = [e["passed"] for e in entries if e["passed"] is not None]
    out += ["", f"{sum(verdicts)} of {len(verdicts)} targets met"]
    return "\n".join(out)
