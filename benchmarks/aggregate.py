"""Fresh-process aggregation: one figure per benchmark from several worker runs.

Each worker process (``python -m benchmarks.run --worker GROUP``) measures the
registry and its raw baseline alternately and hands back its rounds. Here a
process counts as one sample: its median of rounds, its baseline's median and
their ratio (both from the same process, so under the same noise). The
figure reported is the median across processes, with min/max and quartiles
as its spread; the ratio is the median of the per-process ratios.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

# units where a smaller figure is better (a time, memory): the ratio reads "x"
LOWER_IS_BETTER = frozenset({"ms", "s", "MiB"})


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, max and the quartiles (the median itself for fewer than two values)."""
    if len(values) < 2:
        only = values[0]
        return {"min": only, "max": only, "q1": only, "q3": only}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": min(values), "max": max(values), "q1": q1, "q3": q3}


_PERCENT = re.compile(r"^\s*[≥>]=?\s*([\d.]+)\s*%")  # "≥ 70% of raw": a ratio
_BOUND = re.compile(r"^\s*(≥|>=|>|≤|<=|<)\s*([\d,.]+)\s*")


def judge(target: str, median: float, ratio: float | None) -> bool | None:
    """Whether ``median`` / ``ratio`` meets ``target`` as the benchmarks spell
    it ("≥ 700 ops/s", "≥ 70% of raw", "< 100 MiB", "≤ 1.5x of smallest");
    None when the text is not one of those shapes (e.g. "< 2x the object")."""
    found = _PERCENT.match(target)
    if found:
        return ratio is not None and ratio >= float(found.group(1)) / 100
    found = _BOUND.match(target)
    if not found:
        return None
    sign, number = found.groups()
    rest = target[found.end() :]
    if rest.startswith("x"):  # a multiple: only "Nx of <baseline>" is one of the ratio
        if not rest.startswith("x of "):
            return None
        value = ratio
    else:
        value = median
    if value is None:
        return None
    bound = float(number.replace(",", ""))
    if sign in ("≥", ">="):
        return value >= bound
    if sign == ">":
        return value > bound
    if sign in ("≤", "<="):
        return value <= bound
    return value < bound


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def aggregate(runs: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per benchmark name (first-seen order) from the result lists
    of several processes (``Result.to_dict`` each)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for item in run:
            if item["samples"]:
                by_name.setdefault(item["name"], []).append(item)
    out = []
    for name, items in by_name.items():
        first = items[0]
        medians = [statistics.median(i["samples"]) for i in items]
        bases = [statistics.median(i["baseline_samples"]) for i in items if i["baseline_samples"]]
        ratios = [
            statistics.median(i["samples"]) / statistics.median(i["baseline_samples"])
            for i in items
            if i["baseline_samples"] and statistics.median(i["baseline_samples"])
        ]
        median = statistics.median(medians)
        ratio = _median(ratios)
        passed = judge(first["target"], median, ratio)
        if passed is None and first["target"]:  # a target we cannot read: most processes
            votes = [i["passed"] for i in items if i["passed"] is not None]
            passed = sum(votes) * 2 > len(votes) if votes else None
        out.append(
            {
                "name": name,
                "group": first.get("group", ""),
                "backend": first.get("backend", ""),
                "unit": first["unit"],
                "median": median,
                "spread": spread(medians),
                "samples": medians,  # one per process
                "processes": len(items),
                "rounds": [i["samples"] for i in items],
                "baseline": first["baseline_name"],
                "baseline_median": _median(bases),
                "baseline_samples": bases,
                "ratio": ratio,
                "ratio_spread": spread(ratios) if ratios else None,
                "target": first["target"],
                "passed": passed,
                "note": first["note"],
                "params": first.get("params", {}),
            }
        )
    return out
