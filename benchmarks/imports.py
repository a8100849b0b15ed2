"""Import time of the package, each in a fresh interpreter (group ``import``).

Only the import statement is timed (interpreter start-up is not); the
baseline is ``import asyncio`` measured the same way, alternately.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import median

from benchmarks.common import Config, Result, alternate, print_line

HEAVY = ("numpy", "boto3", "botocore", "aioboto3", "google", "gcloud", "asyncio")

_PROBE = """\
import sys, time
start = time.perf_counter()
{statement}
elapsed = time.perf_counter() - start
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(elapsed * 1000, ",".join(heavy))
"""

_REPO = Path(__file__).resolve().parent.parent


def import_once(statement: str) -> tuple[float, list[str]]:
    """Milliseconds one fresh interpreter takes to run ``statement``, and
    which heavy modules it left imported."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        cwd=_REPO,
    ).stdout.split()
    return float(out[0]), (out[1].split(",") if len(out) > 1 else [])


def bench_imports(config: Config) -> list[Result]:
    statements = ["import registry", "from registry import Registry", "import asyncio"]
    pulled: dict[str, set[str]] = {s: set() for s in statements}
    for statement in statements:  # compile .pyc files and warm the disk cache
        import_once(statement)

    def runner(statement: str) -> Callable[[int], float]:
        def run(round_: int) -> float:
            ms, heavy = import_once(statement)
            pulled[statement].update(heavy)
            return ms

        return run

    reg, facade, base = alternate([runner(s) for s in statements], config.import_runs)
    results: list[Result] = []

    def note(statement: str) -> str:
        heavy = sorted(pulled[statement])
        return f"imports {', '.join(heavy)}" if heavy else "imports none of " + "/".join(HEAVY)

    result = Result(
        "import registry",
        "ms",
        reg,
        "import asyncio",
        base,
        "< 100 ms",
        median(reg) < 100,
        note=note("import registry"),
    )
    results.append(result)
    print_line(result)
    result = Result(
        "from registry import Registry",
        "ms",
        facade,
        "import asyncio",
        base,
        note=note("from registry import Registry"),
    )
    results.append(result)
    print_line(result)
    return results
