"""Registry: the sync facade. Each method runs the AsyncRegistry method of
the same name on the process-wide runner thread, or, for reads on a backend
that keeps nothing bound to a loop (local disk), on an event loop owned by
the calling thread (no thread hop); no logic lives here."""

from __future__ import annotations

import copy
import os
import sys
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from registry._async import AsyncRegistry
from registry._runner import can_run_here, get_runner
from registry.backends.base import Backend
from registry.core.cache import CacheInfo, PruneReport
from registry.core.cached_loads import MISS, load_now
from registry.core.fanout import Progress
from registry.core.janitor import DEFAULT_GRACE, JanitorReport
from registry.core.names import parse_key
from registry.core.registry import MaterializerArg, OnConflict
from registry.core.search import Found, Time
from registry.core.types import (
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_INLINE_LIMIT,
    BatchResult,
    Verify,
    check_verify,
)
from registry.core.versions import LATEST

T = TypeVar("T")


def _loop_free(areg: AsyncRegistry) -> bool:
    """Whether calls may run on any thread's own loop: the backend holds no
    clients bound to a loop, and there is no cache whose leases a loop holds."""
    return bool(getattr(areg.backend, "loop_free", False)) and areg._cache is None


async def _anext(agen: Any) -> Any:
    # __anext__ runs on the runner loop, so the loop's async-generator hooks
    # track agen (shutdown_asyncgens closes it; gc finalizes it on the loop).
    return await agen.__anext__()


class Registry:
    """Synchronous registry, for scripts and notebooks. See AsyncRegistry.

    Also a mapping: ``reg["cfg"] = {...}``, ``reg["cfg@2"]``, ``del reg["cfg"]``,
    ``"cfg" in reg``, ``len(reg)``, ``list(reg)``; list keys work as batches.
    """

    def __init__(
        self,
        location: Backend | str | os.PathLike[str] | None = None,
        *,
        backend: Backend | None = None,
        mutable: bool | None = None,
        version_objects: bool | None = None,
        allow_pickle: bool = True,
        verify: Verify = "integrity",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        use_cache: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_max_bytes: int | None = DEFAULT_CACHE_MAX_BYTES,
        cache_max_entries: int | None = None,
        offline: bool | None = None,
    ) -> None:
        self._config: dict[str, Any] = {
            "location": location,
            "backend": backend,
            "mutable": mutable,
            "version_objects": version_objects,
            "allow_pickle": allow_pickle,
            "verify": verify,
            "inline_limit": inline_limit,
            "use_cache": use_cache,
            "cache_dir": cache_dir,
            "cache_max_bytes": cache_max_bytes,
            "cache_max_entries": cache_max_entries,
            "offline": offline,
        }
        self._lock = threading.Lock()
        self._generation = get_runner().generation
        self._areg = AsyncRegistry(**self._config)  # validates arguments now
        self._here = _loop_free(self._areg)
        get_runner().register_closer(self._areg)

    @property
    def async_registry(self) -> AsyncRegistry:
        """The AsyncRegistry behind this facade (rebuilt in a forked child)."""
        runner = get_runner()
        if self._generation != runner.generation:
            with self._lock:
                if self._generation != runner.generation:
                    config = dict(self._config)
                    for key in ("location", "backend"):  # drop the parent's clients
                        if isinstance(config[key], Backend):
                            config[key] = copy.copy(config[key])
                    self._areg = AsyncRegistry(**config)
                    self._here = _loop_free(self._areg)
                    runner.register_closer(self._areg)
                    self._generation = runner.generation
        return self._areg

    @property
    def backend(self) -> Backend:
        return self.async_registry.backend

    def __repr__(self) -> str:
        return f"Registry({self.backend.uri!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"_config": self._config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["_config"])  # type: ignore[misc]

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T], batch: bool = False) -> T:
        """Run a single call for this thread: on a loop of its own when the
        backend allows and no loop runs here, else on the runner. Batches
        always go to the runner, whose worker threads (fsync, parallel loads)
        stay warm: on a loop that lives for one call, anyio would start a
        thread each time. A single call on the own loop does its blocking
        work inline (``on_own_loop``): this thread waits for it anyway, so a
        small save or load costs no thread wake-up."""
        if self._here and not batch and can_run_here():
            return get_runner().run_here(coro)
        return get_runner().run(coro)

    def _cached_here(self) -> bool:
        """Whether a load may try the cache in this thread first
        (core/cached_loads.py); not in the runner thread, where a sync call
        must fail as every other one does."""
        return self.async_registry._cache is not None and not get_runner().in_runner_thread()

    def close(self) -> None:
        get_runner().run(self.async_registry.aclose())

    # -- the API: one line each ---------------------------------------------------

    @overload
    def save(
        self,
        name: str,
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
        name: list[str],
        obj: Sequence[Any],
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
        progress: Progress | None = None,
    ) -> BatchResult[str]: ...

    def save(
        self,
        name: str | list[str],
        obj: Any,
        *,
        version: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        materializer: MaterializerArg | None = None,
        on_conflict: OnConflict = "skip",
        progress: Progress | None = None,
    ) -> str | BatchResult[str]:
        areg: Any = self.async_registry  # the overloads are checked on AsyncRegistry
        result: str | BatchResult[str] = self._run(
            areg.save(
                name,
                obj,
                version=version,
                metadata=metadata,
                materializer=materializer,
                on_conflict=on_conflict,
                progress=progress,
            ),
            isinstance(name, list),
        )
        return result

    @overload
    def load(
        self,
        name: str,
        *,
        version: str = LATEST,
        verify: Verify | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any: ...

    @overload
    def load(
        self,
        name: list[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        progress: Progress | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BatchResult[Any]: ...

    def load(
        self,
        name: str | list[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        progress: Progress | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        areg: Any = self.async_registry  # the overloads are checked on AsyncRegistry
        if isinstance(name, str) and isinstance(version, str) and self._cached_here():
            # A cache hit needs no client: served here, no hop to the runner.
            found = load_now(areg, name, version, check_verify(verify or areg.verify), options)
            if found is not MISS:
                return found
        return self._run(
            areg.load(name, version=version, verify=verify, progress=progress, options=options),
            isinstance(name, list),
        )

    def iter_load(
        self,
        names: Sequence[str],
        *,
        version: str | Sequence[str] = LATEST,
        verify: Verify | None = None,
        limit: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[str, Any]]:
        # Always on the runner loop: loads stay in flight between two items.
        agen = self.async_registry.iter_load(
            names, version=version, verify=verify, limit=limit, options=options
        )
        try:
            while True:
                try:
                    yield get_runner().run(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            if not sys.is_finalizing():  # at exit the runner already closed agen
                get_runner().run(agen.aclose())

    def delete(
        self, name: str | list[str], *, version: str | Sequence[str | None] | None = None
    ) -> BatchResult[None] | None:
        return get_runner().run(self.async_registry.delete(name, version=version))

    def has_object(
        self, name: str | list[str], version: str | Sequence[str] = LATEST
    ) -> bool | BatchResult[bool]:
        return self._run(self.async_registry.has_object(name, version), isinstance(name, list))

    @overload
    def info(self, name: str | None = None, version: str | None = None) -> dict[str, Any]: ...

    @overload
    def info(
        self, name: list[str], version: str | Sequence[str] | None = None
    ) -> BatchResult[dict[str, Any]]: ...

    def info(
        self, name: str | list[str] | None = None, version: str | Sequence[str] | None = None
    ) -> dict[str, Any] | BatchResult[dict[str, Any]]:
        areg: Any = self.async_registry  # the overloads are checked on AsyncRegistry
        result: dict[str, Any] | BatchResult[dict[str, Any]] = self._run(
            areg.info(name, version),
            not isinstance(name, str),  # None: every name
        )
        return result

    def list_objects(self) -> list[str]:
        return self._run(self.async_registry.list_objects())

    def list_versions(self, name: str) -> list[str]:
        return self._run(self.async_registry.list_versions(name))

    def get(self, key: str, default: Any = None) -> Any:
        return self._run(self.async_registry.get(key, default))

    def keys(self) -> list[str]:
        return self._run(self.async_registry.keys())

    def register_materializer(
        self, object_class: str | type, materializer: MaterializerArg
    ) -> None:
        return get_runner().run(
            self.async_registry.register_materializer(object_class, materializer)
        )

    def registered_materializers(self) -> dict[str, str]:
        return self._run(self.async_registry.registered_materializers())

    @overload
    def prefetch(self, name: str, *, version: str = LATEST) -> str: ...

    @overload
    def prefetch(
        self,
        name: list[str],
        *,
        version: str | Sequence[str] = LATEST,
        progress: Progress | None = None,
    ) -> BatchResult[str]: ...

    def prefetch(
        self,
        name: str | list[str],
        *,
        version: str | Sequence[str] = LATEST,
        progress: Progress | None = None,
    ) -> str | BatchResult[str]:
        areg: Any = self.async_registry  # the overloads are checked on AsyncRegistry
        result: str | BatchResult[str] = get_runner().run(
            areg.prefetch(name, version=version, progress=progress)
        )
        return result

    def clear_cache(self) -> None:
        return get_runner().run(self.async_registry.clear_cache())

    def cache_info(self) -> CacheInfo:
        return self._run(self.async_registry.cache_info())

    def prune_cache(
        self, max_bytes: int | None = None, older_than: float | None = None
    ) -> PruneReport:
        return get_runner().run(self.async_registry.prune_cache(max_bytes, older_than))

    def janitor(self, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> JanitorReport:
        return get_runner().run(self.async_registry.janitor(grace, dry_run))

    # -- aliases, retention, find (core/lifecycle.py) ----------------------------------

    @overload
    def set_alias(
        self, name: str, alias: str, version: str, *, expected: str | None = None
    ) -> str: ...

    @overload
    def set_alias(
        self,
        name: list[str],
        alias: str | Sequence[str],
        version: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[str]: ...

    def set_alias(
        self,
        name: str | list[str],
        alias: str | Sequence[str],
        version: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> str | BatchResult[str]:
        areg: Any = self.async_registry  # the overloads are checked on AsyncRegistry
        result: str | BatchResult[str] = get_runner().run(
            areg.set_alias(name, alias, version, expected=expected)
        )
        return result

    @overload
    def delete_alias(self, name: str, alias: str, *, expected: str | None = None) -> None: ...

    @overload
    def delete_alias(
        self,
        name: list[str],
        alias: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[None]: ...

    def delete_alias(
        self,
        name: str | list[str],
        alias: str | Sequence[str],
        *,
        expected: str | Sequence[str | None] | None = None,
    ) -> BatchResult[None] | None:
        areg: Any = self.async_registry
        result: BatchResult[None] | None = get_runner().run(
            areg.delete_alias(name, alias, expected=expected)
        )
        return result

    @overload
    def aliases(self, name: str) -> dict[str, str]: ...

    @overload
    def aliases(self, name: list[str]) -> BatchResult[dict[str, str]]: ...

    def aliases(self, name: str | list[str]) -> dict[str, str] | BatchResult[dict[str, str]]:
        areg: Any = self.async_registry
        result: dict[str, str] | BatchResult[dict[str, str]] = self._run(
            areg.aliases(name), isinstance(name, list)
        )
        return result

    def set_retention(
        self,
        name: str | None,
        *,
        keep_last: int | None = None,
        keep_newer_than: float | None = None,
    ) -> None:
        return get_runner().run(
            self.async_registry.set_retention(
                name, keep_last=keep_last, keep_newer_than=keep_newer_than
            )
        )

    def retention(self, name: str | None = None) -> dict[str, Any] | None:
        return self._run(self.async_registry.retention(name))

    def find(
        self,
        name: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        created_after: Time = None,
        created_before: Time = None,
    ) -> list[Found]:
        return self._run(
            self.async_registry.find(
                name,
                metadata=metadata,
                created_after=created_after,
                created_before=created_before,
            ),
            batch=True,  # reads many versions at once
        )

    @property
    def allow_pickle(self) -> bool:
        return self.async_registry.allow_pickle

    @property
    def offline(self) -> bool:
        return self.async_registry.offline

    @property
    def verify(self) -> Verify:
        return self.async_registry.verify

    @property
    def inline_limit(self) -> int:
        return self.async_registry.inline_limit

    @property
    def mutable(self) -> bool | None:
        return self.async_registry.mutable

    @property
    def version_objects(self) -> bool | None:
        return self.async_registry.version_objects

    # -- mapping interface -----------------------------------------------------------

    def __getitem__(self, key: str | list[str]) -> Any:
        if isinstance(key, list):
            names, versions = zip(*map(parse_key, key), strict=True) if key else ((), ())
            return self.load(list(names), version=list(versions))
        name, version = parse_key(key)
        return self.load(name, version=version)

    def __setitem__(self, key: str | list[str], value: Any) -> None:
        if isinstance(key, list):
            names, versions = zip(*map(parse_key, key), strict=True) if key else ((), ())
            explicit = [None if v == LATEST else v for v in versions]
            self.save(list(names), value, version=explicit).raise_first()
            return
        name, version = parse_key(key)
        self.save(name, value, version=None if version == LATEST else version)

    def __delitem__(self, key: str | list[str]) -> None:
        if isinstance(key, list):
            names, versions = zip(*map(parse_key, key), strict=True) if key else ((), ())
            result = self.delete(
                list(names), version=[None if v == LATEST else v for v in versions]
            )
            if result is not None:
                result.raise_first()
            return
        name, version = parse_key(key)
        self.delete(name, version=None if version == LATEST else version)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name, version = parse_key(key)
        return bool(self.has_object(name, version))

    def __len__(self) -> int:
        return len(self.list_objects())

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_objects())
