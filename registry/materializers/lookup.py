"""Choosing a materializer for an object, by import path along its MRO.

Tables map class import paths to materializer import paths, so nothing is
imported to look a type up: numpy or pydantic are only imported when an
object of theirs is saved or loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

from registry.exceptions import MaterializerError
from registry.materializers.base import MaterializerProtocol, check_materializer_class

_M = "registry.materializers."
PICKLE = _M + "builtin.PickleMaterializer"
DATACLASS = _M + "structured.DataclassMaterializer"
_BUILTINS = _M + "builtin.BuiltinsMaterializer"

BUILTIN_TABLE: dict[str, str] = {
    "builtins.bytes": _M + "builtin.BytesMaterializer",
    "builtins.bytearray": _M + "builtin.BytesMaterializer",
    "builtins.str": _M + "builtin.StrMaterializer",
    **{
        f"builtins.{t}": _BUILTINS
        for t in ("int", "float", "bool", "NoneType", "list", "dict", "tuple", "set", "frozenset")
    },
    "pathlib.PurePath": _M + "path.PathMaterializer",
    "pathlib._local.PurePath": _M + "path.PathMaterializer",  # Python >= 3.13
    "numpy.ndarray": _M + "numpy.NumpyMaterializer",
    "pydantic.main.BaseModel": _M + "structured.PydanticMaterializer",
}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def candidates(obj: Any, registered: Mapping[str, str]) -> list[str]:
    """Materializer import paths to try for ``obj``, best first; pickle last.

    The most specific class in the MRO wins; at one class, a registration
    made by the user wins over a built-in.
    """
    for cls in type(obj).__mro__:
        path = class_path(cls)
        found = registered.get(path) or BUILTIN_TABLE.get(path)
        if found:
            return [found, PICKLE] if found != PICKLE else [PICKLE]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [DATACLASS, PICKLE]
    return [PICKLE]


def import_path(path: str) -> Any:
    """Import ``pkg.module.Attr`` (the attribute may be nested: ``mod.Outer.Inner``)."""
    module_name, _, attr = path.rpartition(".")
    parts = [attr]
    while module_name:
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, outer = module_name.rpartition(".")
            parts.insert(0, outer)
            continue
        for part in parts:
            target = getattr(target, part)
        return target
    raise ImportError(f"cannot import {path!r}")


# Classes handed over as objects (``materializer=MyMaterializer``), so this
# process can use them even when their import path is not importable.
_known_classes: dict[str, type] = {}


@cache
def get_materializer(path: str) -> MaterializerProtocol:
    try:
        cls = _known_classes.get(path) or import_path(path)
    except (ImportError, AttributeError) as exc:
        raise MaterializerError(
            f"cannot import materializer {path!r} ({exc}); install or import the module "
            "that defines it"
        ) from exc
    try:
        checked = check_materializer_class(cls, repr(path))
        return checked()
    except TypeError as exc:
        raise MaterializerError(str(exc)) from None


def is_trusted_materializer(path: str, registered: Collection[str]) -> bool:
    """Built in, registered with the registry, or handed over in this process."""
    return path.startswith(_M) or path in registered or path in _known_classes


def materializer_path(materializer: str | type | MaterializerProtocol) -> str:
    """Normalise a ``materializer=`` argument (import path, class or instance)
    to its import path, checking that it is a usable materializer."""
    if isinstance(materializer, str):
        get_materializer(materializer)  # fail early with a clear error
        return materializer
    cls = materializer if isinstance(materializer, type) else type(materializer)
    check_materializer_class(cls, class_path(cls))
    path = class_path(cls)
    _known_classes[path] = cls
    return path
