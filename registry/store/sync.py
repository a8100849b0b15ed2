"""Store: the sync facade over AsyncStore. Each method runs the AsyncStore
method of the same name on the process-wide runner thread; no logic lives here."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from registry._async import AsyncRegistry
from registry._runner import get_runner
from registry._sync import Registry
from registry.core.registry import MaterializerArg, OnConflict
from registry.core.search import Found, Time
from registry.core.types import BatchResult, Verify
from registry.store.config import read_config_file, store_arguments
from registry.store.core import AsyncStore
from registry.store.keys import TEMP_MOUNT


def _unwrap(registry: Registry | AsyncRegistry) -> AsyncRegistry:
    return registry.async_registry if isinstance(registry, Registry) else registry


class Store:
    """Synchronous store, for scripts and notebooks. See AsyncStore.

    Mounts may be sync ``Registry`` or ``AsyncRegistry`` objects. Also a
    mapping: ``store["models/x"] = obj``, ``store["models/x@2"]``,
    ``del store["x"]``, ``"x" in store``, ``len(store)``, ``list(store)``;
    list keys work as batches.
    """

    def __init__(
        self,
        mounts: Mapping[str, Registry | AsyncRegistry] | None = None,
        *,
        default_mount: str = TEMP_MOUNT,
        read_only: Iterable[str] = (),
    ) -> None:
        unwrapped = {name: _unwrap(reg) for name, reg in (mounts or {}).items()}
        self._astore = AsyncStore(unwrapped, default_mount=default_mount, read_only=read_only)
        get_runner().register_closer(self._astore)  # closed (temp removed) at exit

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Store:
        return cls(**store_arguments(config))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Store:
        return cls.from_config(read_config_file(path))

    @property
    def async_store(self) -> AsyncStore:
        """The AsyncStore behind this facade."""
        return self._astore

    def __repr__(self) -> str:
        return f"Store(mounts={self.list_mounts()}, default={self.default_mount!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        get_runner().run(self._astore.aclose())

    @property
    def closed(self) -> bool:
        return self._astore.closed

    @property
    def temp_dir(self) -> Path:
        return self._astore.temp_dir

    # -- mounts ----------------------------------------------------------------------

    @property
    def default_mount(self) -> str:
        return self._astore.default_mount

    def list_mounts(self) -> list[str]:
        return self._astore.list_mounts()

    def get_mount(self, name: str) -> AsyncRegistry:
        return self._astore.get_mount(name)

    def is_read_only(self, name: str) -> bool:
        return self._astore.is_read_only(name)

    def add_mount(
        self, name: str, registry: Registry | AsyncRegistry, read_only: bool = False
    ) -> None:
        return self._astore.add_mount(name, _unwrap(registry), read_only)

    def remove_mount(self, name: str) -> None:
        return self._astore.remove_mount(name)

    def set_default_mount(self, name: str) -> None:
        return self._astore.set_default_mount(name)

    # -- the API: one line each ---------------------------------------------------------

    @overload
    def save(
        self,
        key: str,
        obj: Any,
        *,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> str: ...

    @overload
    def save(
        self,
        key: list[str],
        obj: Sequence[Any],
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> BatchResult[str]: ...

    def save(
        self,
        key: str | list[str],
        obj: Any,
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
    ) -> str | BatchResult[str]:
        astore: Any = self._astore  # the overloads are checked on AsyncStore
        result: str | BatchResult[str] = get_runner().run(
            astore.save(
                key,
                obj,
                version=version,
                metadata=metadata,
                materializer=materializer,
                on_conflict=on_conflict,
            )
        )
        return result

    @overload
    def load(
        self,
        key: str,
        *,
        version: str | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any: ...

    @overload
    def load(
        self,
        key: list[str],
        *,
        version: str | Sequence[str | None] | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BatchResult[Any]: ...

    def load(
        self,
        key: str | list[str],
        *,
        version: str | Sequence[str | None] | None = None,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        astore: Any = self._astore  # the overloads are checked on AsyncStore
        return get_runner().run(astore.load(key, version=version, verify=verify, options=options))

    def get(self, key: str, default: Any = None) -> Any:
        return get_runner().run(self._astore.get(key, default))

    def delete(
        self, key: str | list[str], *, version: str | Sequence[str | None] | None = None
    ) -> BatchResult[None] | None:
        return get_runner().run(self._astore.delete(key, version=version))

    def has_object(
        self, key: str | list[str], version: str | Sequence[str | None] | None = None
    ) -> bool | BatchResult[bool]:
        return get_runner().run(self._astore.has_object(key, version))

    @overload
    def info(self, key: str | None = None, version: str | None = None) -> dict[str, Any]: ...

    @overload
    def info(
        self, key: list[str], version: str | Sequence[str | None] | None = None
    ) -> BatchResult[dict[str, Any]]: ...

    def info(
        self,
        key: str | list[str] | None = None,
        version: str | Sequence[str | None] | None = None,
    ) -> dict[str, Any] | BatchResult[dict[str, Any]]:
        astore: Any = self._astore  # the overloads are checked on AsyncStore
        result: dict[str, Any] | BatchResult[dict[str, Any]] = get_runner().run(
            astore.info(key, version)
        )
        return result

    def list_objects(self, mount: str | None = None) -> list[str]:
        return get_runner().run(self._astore.list_objects(mount))

    def list_versions(self, key: str) -> list[str]:
        return get_runner().run(self._astore.list_versions(key))

    def keys(self) -> list[str]:
        return get_runner().run(self._astore.keys())

    @overload
    def copy(self, src: str, dst: str) -> str: ...

    @overload
    def copy(self, src: list[str], dst: list[str]) -> BatchResult[str]: ...

    def copy(self, src: str | list[str], dst: str | list[str]) -> str | BatchResult[str]:
        return get_runner().run(self._astore.copy(src, dst))  # type: ignore[arg-type]

    @overload
    def move(self, src: str, dst: str) -> str: ...

    @overload
    def move(self, src: list[str], dst: list[str]) -> BatchResult[str]: ...

    def move(self, src: str | list[str], dst: str | list[str]) -> str | BatchResult[str]:
        return get_runner().run(self._astore.move(src, dst))  # type: ignore[arg-type]

    # -- aliases, retention, find (store/lifecycle.py) ---------------------------------

    def set_alias(self, key: str, alias: str, version: str, *, expected: str | None = None) -> str:
        return get_runner().run(self._astore.set_alias(key, alias, version, expected=expected))

    def delete_alias(self, key: str, alias: str, *, expected: str | None = None) -> None:
        return get_runner().run(self._astore.delete_alias(key, alias, expected=expected))

    def aliases(self, key: str) -> dict[str, str]:
        return get_runner().run(self._astore.aliases(key))

    def set_retention(
        self,
        key: str,
        *,
        keep_last: int | None = None,
        keep_newer_than: float | None = None,
    ) -> None:
        return get_runner().run(
            self._astore.set_retention(key, keep_last=keep_last, keep_newer_than=keep_newer_than)
        )

    def find(
        self,
        name: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        created_after: Time = None,
        created_before: Time = None,
    ) -> list[Found]:
        return get_runner().run(
            self._astore.find(
                name,
                metadata=metadata,
                created_after=created_after,
                created_before=created_before,
            )
        )

    # -- mapping interface -----------------------------------------------------------

    def __getitem__(self, key: str | list[str]) -> Any:
        return self.load(key)

    def __setitem__(self, key: str | list[str], value: Any) -> None:
        if isinstance(key, list):
            self.save(key, value).raise_first()
        else:
            self.save(key, value)

    def __delitem__(self, key: str | list[str]) -> None:
        result = self.delete(key)
        if result is not None:
            result.raise_first()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.has_object(key))

    def __len__(self) -> int:
        return len(self.list_objects())

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_objects())
