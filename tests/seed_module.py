"""Stands in for the seed README's ``my_module``: a class and its materializer.

It deliberately imports nothing from ``registry``: a library can ship a
materializer for its own types without depending on this package (any class
with ``save(obj, folder)`` and ``load(folder, cls)`` works).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILENAME = "my_class.json"


class MyClass:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MyClass) and other.payload == self.payload

    def __hash__(self) -> int:
        return hash(json.dumps(self.payload, sort_keys=True))


class MyMaterializer:
    def save(self, obj: MyClass, folder: Path) -> None:
        (folder / FILENAME).write_text(json.dumps(obj.payload), encoding="utf-8")

    def load(self, folder: Path, cls: type | None) -> MyClass:
        return MyClass(json.loads((folder / FILENAME).read_text(encoding="utf-8")))


class HalfMaterializer:
    """Has save but no load: registering it must say what is missing."""

    def save(self, obj: Any, folder: Path) -> None:
        (folder / "x").write_text("x")
