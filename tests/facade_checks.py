"""That a sync facade mirrors its async class (DESIGN §8): the same public
methods with the same signatures, each one sync where the async one is a
coroutine. Registry/AsyncRegistry and Store/AsyncStore are checked with it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Set
from typing import Any, cast


def public_members(cls: type) -> dict[str, Any]:
    return {n: inspect.getattr_static(cls, n) for n in dir(cls) if not n.startswith("_")}


def parameters(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def check_mirror(
    sync_cls: type,
    async_cls: type,
    *,
    only_async: Set[str],
    only_sync: Set[str],
    attributes: Set[str] = frozenset(),
    all_async: bool = False,
) -> dict[str, Any]:
    """Assert that ``sync_cls`` mirrors ``async_cls``; returns the async class's
    public members. ``attributes``: public instance attributes of the async
    class, which the facade may offer as properties. ``all_async``: every
    method of the async class must be a coroutine (or async generator)."""
    s_name, a_name = sync_cls.__name__, async_cls.__name__
    sync, aio = public_members(sync_cls), public_members(async_cls)
    assert set(aio) - only_async - set(sync) == set(), f"methods missing from {s_name}"
    assert set(sync) - only_sync - set(aio) - attributes == set(), f"methods only in {s_name}"
    for name in attributes & set(sync):
        assert isinstance(sync[name], property), f"{s_name}.{name} should be a property"
    for name in sorted(set(aio) - only_async):
        a, s = aio[name], sync[name]
        if isinstance(a, property):
            assert isinstance(s, property), f"{s_name}.{name} should be a property"
            continue
        if isinstance(a, classmethod):
            assert isinstance(s, classmethod), f"{s_name}.{name} should be a classmethod"
            assert parameters(s.__func__) == parameters(a.__func__), name
            continue
        assert inspect.isfunction(a) and inspect.isfunction(s), name
        assert parameters(s) == parameters(a), f"{s_name}.{name} differs from {a_name}"
        if inspect.isasyncgenfunction(a):
            assert inspect.isgeneratorfunction(s), f"{s_name}.{name} must be a generator"
        else:
            assert not all_async or inspect.iscoroutinefunction(a), f"{a_name}.{name} not async"
            assert not inspect.iscoroutinefunction(s), f"{s_name}.{name} must be sync"
        a_overloads, s_overloads = typing.get_overloads(a), typing.get_overloads(s)
        assert [parameters(f) for f in s_overloads] == [parameters(f) for f in a_overloads], (
            f"{s_name}.{name} overloads differ from {a_name}'s"
        )
    sync_any, async_any = cast(Any, sync_cls), cast(Any, async_cls)
    assert parameters(sync_any.__init__) == parameters(async_any.__init__)
    assert parameters(sync_any.close) == parameters(async_any.aclose)
    assert inspect.iscoroutinefunction(async_any.aclose)
    assert not inspect.iscoroutinefunction(sync_any.close)
    return aio
