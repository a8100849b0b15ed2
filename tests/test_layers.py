"""Imports inside the package point one way, from the facades down to the
exceptions, so a reader can take in one layer without the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "registry"

# Lowest first. A module may import its own layer and the ones below it.
LAYERS = [
    "registry.exceptions",
    "registry._runner",  # the event-loop thread: imports nothing of ours
    "registry.backends",
    "registry.materializers",
    "registry.core",
    "registry.locations",
    "registry._async",
    "registry.testing",
    "registry.store",
    "registry._sync",
    "registry.store.sync",  # the Store facade accepts sync Registry mounts
    "registry.demo",
    "registry.cli",  # the `registry` command: above everything it drives
    "registry.__main__",
]


def layer_of(module: str) -> int:
    # The most specific entry wins ("registry.store.sync" over "registry.store").
    matches = [i for i, top in enumerate(LAYERS) if module == top or module.startswith(top + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return matches[-1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("registry."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("registry."):
            found.add(str(node.module))
    return found


def test_imports_point_down_the_layers() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if importer == "registry":  # the lazy public namespace re-exports every layer
            continue
        for imported in imported_modules(path):
            if imported.startswith(importer + "."):
                continue  # a package re-exporting its own modules
            if layer_of(imported) > layer_of(importer):
                upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        if (name := module_name(path)) != "registry":
            layer_of(name)
