"""Arguments and results of batch calls (lists of names)."""

from __future__ import annotations

from typing import Any

from registry.core.types import BatchResult
from registry.exceptions import RegistryVersionConflict


def per_item(value: Any, n: int, what: str, unit: str = "names") -> list[Any]:
    """Broadcast a scalar batch argument, or check a list has one per item."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            one = unit.removesuffix("s")
            raise ValueError(f"{what} has {len(value)} entries for {n} {unit}; give one per {one}")
        return list(value)
    return [value] * n


def skip_existing(saved: BatchResult[str]) -> BatchResult[str]:
    """Under on_conflict="skip" a batch item whose version exists is skipped,
    not failed: its result is that version and its index is in ``skipped``."""
    for index, error in list(saved.errors.items()):
        if isinstance(error, RegistryVersionConflict) and error.version is not None:
            del saved.errors[index]
            saved.results[index] = error.version
            saved.skipped.append(index)
    saved.skipped.sort()
    return saved
