"""The mount table of a Store: which registry a key goes to.

Qualified keys go to their mount; unqualified writes to the default mount;
unqualified reads to the one mount that holds the key (every mount is asked
at once). Batches are split per mount, run concurrently, and put back in
input order. A move in flight is remembered here, so that unqualified reads
see only its destination while both copies exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

from registry._async import AsyncRegistry
from registry.core.fanout import fanout
from registry.core.types import BatchResult
from registry.core.versions import LATEST
from registry.exceptions import RegistryObjectNotFound
from registry.store.errors import (
    StoreAmbiguousObjectError,
    StoreLocationNotFound,
    StoreReadOnlyError,
)
from registry.store.keys import KEY_FORMAT, TEMP_MOUNT, StoreKey, parse_store_key

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Mount:
    registry: AsyncRegistry
    read_only: bool


class Route(NamedTuple):
    """Where one key goes: the mount (name and registry) and the parsed key."""

    mount: str
    registry: AsyncRegistry
    key: StoreKey


Routed = Route | BaseException
GroupCall = Callable[[AsyncRegistry, list[int], list[StoreKey]], Awaitable[BatchResult[R]]]


def attempt(func: Callable[..., T], *args: Any) -> T | Exception:
    """Run ``func``; return its exception instead of raising (batch items)."""
    try:
        return func(*args)
    except Exception as exc:
        return exc


def unqualified_keys(parsed: list[StoreKey | Exception]) -> list[tuple[int, StoreKey]]:
    """(index, key) of the keys that name no mount: those need a search."""
    return [(i, p) for i, p in enumerate(parsed) if isinstance(p, StoreKey) and p.mount is None]


class MountTable:
    """Mounted registries by name, the default mount, and the routing of keys."""

    def __init__(self, temp: AsyncRegistry) -> None:
        self.mounts: dict[str, Mount] = {TEMP_MOUNT: Mount(temp, read_only=False)}
        self.default = TEMP_MOUNT
        self.closed = False
        #: (source mount, destination mount, name) of moves in flight
        self.moving: Counter[tuple[str, str, str]] = Counter()

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this store is closed (its temp mount is gone)")

    def mount(self, name: str) -> Mount:
        self.check_open()
        mount = self.mounts.get(name)
        if mount is None:
            raise StoreLocationNotFound(
                f"no mount named {name!r} (mounted: {', '.join(self.mounts)}); {KEY_FORMAT}"
            )
        return mount

    def route(self, key: StoreKey) -> Route:
        name = key.mount or self.default
        return Route(name, self.mount(name).registry, key)

    def route_parsed(self, key: StoreKey | BaseException) -> Routed:
        """Batch form of ``route``: a parse error stays the item's error."""
        return key if isinstance(key, BaseException) else attempt(self.route, key)

    def writable(self, route: Route, action: str) -> Route:
        if self.mount(route.mount).read_only:
            raise StoreReadOnlyError(
                f"mount {route.mount!r} is read-only: cannot {action} "
                f"{str(replace(route.key, mount=route.mount))!r}",
                mount=route.mount,
            )
        return route

    def write_route(self, key: str, action: str) -> Route:
        """Qualified keys go to their mount, unqualified ones to the default mount."""
        return self.writable(self.route(parse_store_key(key)), action)

    async def read_route(self, key: str) -> Route:
        (route,) = await self.read_routes([key])
        if isinstance(route, BaseException):
            raise route
        return route

    async def read_routes(self, keys: Sequence[str]) -> list[Routed]:
        """Route reads: qualified keys to their mount, unqualified ones to the
        one mount that holds them (all mounts are searched concurrently)."""
        self.check_open()
        mounts = dict(self.mounts)  # one view of the mounts for the whole call
        parsed = [attempt(parse_store_key, k) for k in keys]
        unqualified = unqualified_keys(parsed)
        searched = await self.search([k for _, k in unqualified], mounts)
        hits_of = {i: hits for (i, _), hits in zip(unqualified, searched, strict=True)}
        routes: list[Routed] = []
        for i, key in enumerate(parsed):
            if i not in hits_of:
                routes.append(self.route_parsed(key))
            elif isinstance(hits := hits_of[i], BaseException):
                routes.append(hits)
            else:
                assert isinstance(key, StoreKey)
                routes.append(attempt(self.pick, key, hits, mounts))
        return routes

    async def search(
        self, keys: list[StoreKey], mounts: dict[str, Mount]
    ) -> list[list[str] | BaseException]:
        """For each key, the mounts holding it, in mount order.

        A mount that fails to answer fails the key (a hit there could make it
        ambiguous), with a note naming that mount.
        """
        if not keys:
            return []
        names = [k.name for k in keys]
        versions = [k.version or LATEST for k in keys]
        order = list(mounts)

        async def probe(mount: str) -> BatchResult[bool]:
            found = await mounts[mount].registry.has_object(names, versions)
            assert isinstance(found, BatchResult)
            return found

        probes = await fanout(probe, order, limit=len(order))
        for j, error in probes.errors.items():
            error.add_note(f"(while searching mount {order[j]!r})")
        out: list[list[str] | BaseException] = []
        for i in range(len(keys)):
            hits: list[str] = []
            failure: BaseException | None = None
            for j, mount in enumerate(order):
                batch = probes.results[j]
                failure = probes.errors.get(j) or (batch.errors.get(i) if batch else None)
                if failure is not None:
                    break
                if batch is not None and batch.results[i]:
                    hits.append(mount)
            out.append(failure if failure is not None else hits)
        return out

    def pick(self, key: StoreKey, hits: list[str], mounts: dict[str, Mount]) -> Route:
        """The one mount among ``hits``; not found or ambiguous otherwise."""
        if len(hits) > 1:  # a move in flight: its source no longer counts
            hits = [
                m for m in hits if not any(self.moving[(m, d, key.name)] for d in hits if d != m)
            ]
        if not hits:
            raise RegistryObjectNotFound(
                f"no object {str(key)!r} in any mount (searched {', '.join(mounts)})"
            )
        if len(hits) > 1:
            raise StoreAmbiguousObjectError(
                f"{str(key)!r} exists in several mounts ({', '.join(hits)}); qualify the "
                f"key with its mount, e.g. '{hits[0]}/{key}'",
                mounts=hits,
            )
        return Route(hits[0], mounts[hits[0]].registry, key)

    async def dispatch(self, routes: list[Routed], call: GroupCall[R]) -> BatchResult[R]:
        """Run ``call`` once per mount with that mount's items, all mounts
        concurrently, and put the results back in input order."""
        results: list[R | None] = [None] * len(routes)
        errors: dict[int, BaseException] = {}
        skipped: list[int] = []
        groups: dict[str, list[tuple[int, Route]]] = {}
        for i, route in enumerate(routes):
            if isinstance(route, BaseException):
                errors[i] = route
            else:
                groups.setdefault(route.mount, []).append((i, route))

        async def run(members: list[tuple[int, Route]]) -> BatchResult[R]:
            registry = members[0][1].registry
            return await call(registry, [i for i, _ in members], [r.key for _, r in members])

        order = list(groups.values())
        done = await fanout(run, order, limit=max(1, len(order)))
        for j, members in enumerate(order):
            batch, failure = done.results[j], done.errors.get(j)
            batch_skipped = set(batch.skipped) if batch is not None else set()
            for pos, (i, _) in enumerate(members):
                if failure is not None:
                    errors[i] = failure
                elif batch is not None and pos in batch.errors:
                    errors[i] = batch.errors[pos]
                elif batch is not None:
                    results[i] = batch.results[pos]
                    if pos in batch_skipped:
                        skipped.append(i)
        return BatchResult(results, dict(sorted(errors.items())), sorted(skipped))
