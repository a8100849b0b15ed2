"""A target: a running server, a bucket on it, and what the tests must know of
that server (its quirks) and of its client library (how a worker process
builds a backend, how to watch the HTTP requests)."""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

import msgspec

from registry.backends.base import Backend
from tests.servers import ServerProcess, prepare_bucket

B = TypeVar("B", bound=Backend)
Damage = Literal["truncated", "corrupted", "corrupted-late-range", "deleted", "inline-corrupted"]


@dataclass(frozen=True)
class Quirks:
    """What differs between servers, for the tests that must allow for it."""

    # how hard multi-process races go: SeaweedFS makes the losers of a
    # conditional write on one key wait in ~1 s steps (DESIGN §12), so it is
    # raced less (measured: 8 writers on one explicit version ~3 s there, 1.3 s
    # with 4; 4 x 25 auto-increment saves ~7 s, single saves stalling 1.5 s);
    # 4 x 10 saves still make ~2.6 lost claims per save, as 4 x 25 on moto
    auto_procs: int = 4
    auto_saves: int = 25
    explicit_writers: int = 8
    # seconds a batch may run on once its server was killed under it
    dead_server_bound: float = 15.0
    # a private server for fault tests, to kill and restart (keeps_data says
    # whether it comes back with what it held: moto keeps nothing)
    own_server: Callable[[], ServerProcess] | None = None


@dataclass(frozen=True)
class Sent:
    """One HTTP request, in words both client libraries share: ``kind`` is
    "put" (an object upload), "get" (object bytes), "list", or the library's
    own name for anything else; ``condition`` is "create" for a write that
    must not replace anything."""

    kind: str
    key: str | None  # the object key, without the bucket
    condition: str | None


class HttpLog:
    """Every HTTP request a backend's client sends (retries included)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.last: list[Sent] = []

    def take(self) -> Counter[str]:
        """Counts by kind of the requests since the last take."""
        self.last, self.sent = self.sent, []
        return Counter(sent.kind for sent in self.last)


@dataclass(frozen=True)
class Target(ABC, Generic[B]):
    """A running server and a bucket on it; ``B``: the backend class it makes."""

    server: ServerProcess
    bucket: str
    quirks: Quirks = field(default_factory=Quirks)

    @property
    def name(self) -> str:
        return self.server.name

    def backend(self, prefix: str | None = None, **options: Any) -> B:
        """A backend on a fresh prefix (or the given one) in the target's bucket."""
        if prefix is None:
            prefix = f"t-{uuid.uuid4().hex}"
        return cast(B, self.server.backend(self.bucket, prefix=prefix, **options))

    def with_own_bucket(self) -> Self:
        """The same server with a fresh bucket: listings on moto and fake-gcs scan
        every key of a bucket, so a module that lists a lot gets its own."""
        return replace(self, bucket=prepare_bucket(self.server))

    kind: ClassVar[str]  # what tests/race_workers.py ``make_backend`` builds from a config

    def worker_config(self, prefix: str, cache_dir: str) -> dict[str, str]:
        """What a worker process gets (strings only) to build its own registry
        (tests/race_workers.py ``open_registry``)."""
        config = {"kind": self.kind, "endpoint": self.server.endpoint, "bucket": self.bucket}
        return {**config, **self.credentials(), "prefix": prefix, "cache_dir": cache_dir}

    def credentials(self) -> dict[str, str]:
        """What a client needs besides the endpoint (none against an emulator)."""
        return {}

    @abstractmethod
    async def http_log(self, backend: Backend) -> HttpLog:
        """Start logging the requests of ``backend``'s client on this loop."""

    def small_ranges(self) -> dict[str, Any]:
        """Backend options that make a 1 MiB download several ranged GETs, where
        the backend allows ranges that small."""
        return {}

    async def damage(self, backend: Backend, key: str, how: Damage) -> None:
        """Damage what is stored at ``key``: an artifact cut short, with a flipped
        byte (mid-way, or near the end: in the last of several ranged GETs), or
        removed; or, for a metadata key, its inlined value altered inside valid
        JSON."""
        if how == "deleted":
            await backend.delete([key])
            return
        stored = bytearray(await backend.get(key))
        if how == "inline-corrupted":
            meta = json.loads(stored)
            assert meta["inline"] is not None
            value = bytearray(msgspec.json.decode(json.dumps(meta["inline"]).encode(), type=bytes))
            value[len(value) // 2] ^= 0xFF
            meta["inline"] = msgspec.json.decode(msgspec.json.encode(bytes(value)))
            await backend.put(key, json.dumps(meta).encode())
            return
        if how == "truncated":
            bad = bytes(stored[: len(stored) // 2])
        else:
            stored[len(stored) - 10 if how == "corrupted-late-range" else len(stored) // 2] ^= 0xFF
            bad = bytes(stored)
        await backend.put(key, bad)
