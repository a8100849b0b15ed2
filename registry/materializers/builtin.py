"""Materializers for Python's own types, and pickle as the last resort."""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar

import msgspec

from registry.materializers.base import BlobMaterializer, Unsupported

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class BytesMaterializer(BlobMaterializer):
    loads_untrusted_safely = True
    filename = "data.bin"

    def dumps(self, obj: Any) -> bytes:
        if type(obj) not in (bytes, bytearray):
            raise Unsupported("bytes subclasses keep their type only through pickle")
        return bytes(obj)

    def loads(self, data: bytes, cls: type | None) -> Any:
        return bytearray(data) if cls is bytearray else data

    def estimate_size(self, obj: Any) -> int | None:
        return len(obj)


class StrMaterializer(BlobMaterializer):
    loads_untrusted_safely = True
    filename = "data.txt"

    def dumps(self, obj: Any) -> bytes:
        if type(obj) is not str:  # StrEnum and friends would come back as str
            raise Unsupported("str subclasses keep their type only through pickle")
        return obj.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes, cls: type | None) -> Any:
        return data.decode("utf-8", "surrogatepass")

    def estimate_size(self, obj: Any) -> int | None:
        return len(obj)


_JSON_SCALARS = (str, int, bool, type(None))
_SAFE_SCALARS = (str, int, float, bool, type(None), bytes, bytearray, complex)
_SAFE_CONTAINERS = (list, tuple, set, frozenset, dict)


def _classify(obj: Any) -> str:
    """'json' if JSON round-trips it exactly, 'builtins' if it is made of
    builtin types only, else 'other'. Types are checked exactly, so a dict
    subclass or an int-keyed dict is not mistaken for JSON."""
    kind = "json"
    stack = [obj]
    while stack:
        item = stack.pop()
        t = type(item)
        if t in _JSON_SCALARS:
            continue
        if t is float:
            if item != item or item in (float("inf"), float("-inf")):
                kind = "builtins"
            continue
        if t is list:
            stack.extend(item)
        elif t is dict:
            for key, value in item.items():
                if type(key) is not str:
                    kind = "builtins"
                    if type(key) not in _SAFE_SCALARS and type(key) not in (tuple, frozenset):
                        return "other"
                    stack.append(key)
                stack.append(value)
        elif t in (tuple, set, frozenset):
            kind = "builtins"
            stack.extend(item)
        elif t in _SAFE_SCALARS:
            kind = "builtins"
        else:
            return "other"
    return kind


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    """Loads pickles of builtin containers and scalars; refuses every global,
    so it cannot run code and needs no ``allow_pickle``."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in ("complex", "bytearray", "set", "frozenset"):
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


class BuiltinsMaterializer(BlobMaterializer):
    """Numbers, None, lists, dicts, tuples, sets.

    JSON (via msgspec, readable on disk) when it round-trips exactly; otherwise
    a restricted pickle of builtin types only (tuples, sets, int keys, NaN)
    that is lossless and safe to load. Anything else is Unsupported.
    """

    filename = "data"

    def dumps(self, obj: Any) -> bytes:
        kind = _classify(obj)
        if kind == "json":
            try:
                return _json_encode(obj)
            except (UnicodeEncodeError, msgspec.EncodeError):
                kind = "builtins"  # e.g. a lone surrogate: JSON can't, pickle can
        if kind == "builtins":
            return pickle.dumps(obj, protocol=5)
        raise Unsupported(type(obj))

    def loads(self, data: bytes, cls: type | None) -> Any:
        if data[:1] == b"\x80":  # pickle protocol marker; JSON never starts so
            return _BuiltinsOnlyUnpickler(io.BytesIO(data)).load()
        return _json_decode(data)

    def estimate_size(self, obj: Any) -> int | None:
        if isinstance(obj, (int, float, bool, type(None))):
            return 32
        if isinstance(obj, (list, dict, tuple, set, frozenset)) and len(obj) <= 64:
            return 64 * 64  # small containers: cheap enough for the loop
        return None


class PickleMaterializer(BlobMaterializer):
    """The last resort. Loading runs code: refused when allow_pickle=False."""

    uses_pickle: ClassVar[bool] = True
    filename = "data.pkl"

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=5)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"cannot save {type(obj).__qualname__}: no materializer handles it and "
                f"pickle failed ({exc}); register a materializer for the type"
            ) from exc

    def loads(self, data: bytes, cls: type | None) -> Any:
        return pickle.loads(data)
