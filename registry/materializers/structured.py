"""Typed records: pydantic models and dataclasses, stored as JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from registry.materializers.base import BlobMaterializer, Unsupported


class PydanticMaterializer(BlobMaterializer):
    filename = "model.json"

    def dumps(self, obj: Any) -> bytes:
        data: bytes = obj.model_dump_json().encode()
        if type(obj).model_validate_json(data) != obj:
            raise Unsupported("model does not round-trip through JSON")
        return data

    def loads(self, data: bytes, cls: type | None) -> Any:
        if cls is None:
            raise TypeError("loading a pydantic model needs its class to be importable")
        return cls.model_validate_json(data)  # type: ignore[attr-defined]


class DataclassMaterializer(BlobMaterializer):
    """Dataclass instances via msgspec; falls back to pickle when the JSON
    form does not give back an equal object (untyped fields, eq=False, ...)."""

    filename = "dataclass.json"

    def dumps(self, obj: Any) -> bytes:
        try:
            data = msgspec.json.encode(obj)
            if msgspec.json.decode(data, type=type(obj)) != obj:
                raise Unsupported("dataclass does not round-trip through JSON")
        except (msgspec.ValidationError, TypeError, NameError) as exc:
            # NameError: annotations naming a type not importable here
            raise Unsupported(str(exc)) from exc
        return data

    def loads(self, data: bytes, cls: type | None) -> Any:
        if cls is None or not dataclasses.is_dataclass(cls):
            raise TypeError("loading a dataclass needs its class to be importable")
        return msgspec.json.decode(data, type=cls)
