"""Worker functions for the alias and retention races (tests/test_lifecycle_races.py).

Like tests/race_workers.py (whose plumbing they use): fresh interpreters,
picklable arguments, results reported through small JSON files.
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry.exceptions import RegistryAliasConflict
from tests import race_workers as rw

NAME = "race:alias"
ALIAS = "production"


def target_of(proc: int, attempt: int, attempts: int) -> str:
    """The version mover ``proc`` moves the alias to on ``attempt``: each one
    unique, so the winning moves can be chained back from the final value."""
    return str(2 + proc * attempts + attempt)


def alias_mover(where: rw.Where, proc: int, attempts: int, barrier: Any, out: str) -> None:
    """``attempts`` compare-and-swaps of the alias, each from the value just
    read; reports [[expected, moved_to] of each win, conflicts]."""

    async def main() -> dict[str, Any]:
        wins: list[list[str]] = []
        conflicts = 0
        async with rw.open_registry(where) as reg:
            await reg.aliases(NAME)
            barrier.wait(rw.BARRIER_TIMEOUT)
            for attempt in range(attempts):
                current = (await reg.aliases(NAME))[ALIAS]
                to = target_of(proc, attempt, attempts)
                try:
                    await reg.set_alias(NAME, ALIAS, to, expected=current)
                except RegistryAliasConflict as exc:
                    assert exc.current != current, "a conflict must name another value"
                    conflicts += 1
                    continue
                wins.append([current, to])
        return {"wins": wins, "conflicts": conflicts}

    rw.run_reporting(out, main)


def alias_reader(where: rw.Where, barrier: Any, stop: Any, out: str) -> None:
    """Load ``NAME@ALIAS`` until ``stop`` is set; report the versions read
    (each payload names its version) and any errors."""

    async def main() -> dict[str, Any]:
        seen: list[str] = []
        errors: list[str] = []
        async with rw.open_registry(where) as reg:
            await reg.aliases(NAME)
            barrier.wait(rw.BARRIER_TIMEOUT)
            while not stop.is_set() or not seen:
                try:
                    seen.append(rw.check_payload(await reg.load(f"{NAME}@{ALIAS}")))
                except Exception as exc:  # recorded, asserted on by the test
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        break
                await asyncio.sleep(0)
        return {"seen": seen, "errors": errors}

    rw.run_reporting(out, main)


def retained_saver(where: rw.Where, proc: int, saves: int, barrier: Any, out: str) -> None:
    """``saves`` auto-increment saves of "race:ckpt" (a retention policy
    applies after each); reports the versions handed out."""

    async def main() -> list[str]:
        versions: list[str] = []
        async with rw.open_registry(where) as reg:
            await reg.list_versions("race:ckpt")
            barrier.wait(rw.BARRIER_TIMEOUT)
            for i in range(saves):
                versions.append(await reg.save("race:ckpt", f"{proc}-{i}"))
        return versions

    rw.run_reporting(out, main)
