"""Backend requests per registry operation, counted on every backend.

Each registry runs on a ``CountingBackend`` that wraps the real backend (a
folder, moto, SeaweedFS, fake-gcs-server started on 127.0.0.1), and each
operation's count is the number of backend calls it made, read after the
registry was opened (the settings file is read once per process). On S3 and
GCS a backend call is one HTTP request, except that a large ``put_file`` /
``get_file`` may be several (multipart parts, ranged GETs).

``python -m benchmarks.run --only requests`` prints the table and hands each
cell back as a Result (unit "requests", the per-call detail in its note) for
the report's table; the figures are counts, so they do not vary from run to
run and one process measures them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.common import Config, Result
from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.testing.counting import CountingBackend

SMALL = b"x" * 1024  # inlined in its metadata
FILE = os.urandom(200 * 1024)  # a file in its uuid folder
SERVERS = ("moto", "seaweedfs", "gcs")

Operation = Callable[[AsyncRegistry, AsyncRegistry], Awaitable[object]]

# (label, operation on (the registry that saved, a fresh one on a cold cache))
OPERATIONS: list[tuple[str, Operation]] = [
    ("save small, explicit version", lambda r, _: r.save("small", SMALL, version="1")),
    ("save 200 KiB, explicit version", lambda r, _: r.save("file", FILE, version="1")),
    ("save small, auto version", lambda r, _: r.save("small", SMALL)),
    ("load small, cold cache", lambda _, c: c.load("small", version="1")),
    ("load 200 KiB, cold cache", lambda _, c: c.load("file", version="1")),
    ("load 200 KiB, warm cache", lambda _, c: c.load("file", version="1")),
    ("load latest, warm cache", lambda _, c: c.load("small")),
    ("load 200 KiB, verify='full'", lambda _, c: c.load("file", version="1", verify="full")),
    ("has_object(name, version)", lambda _, c: c.has_object("file", "1")),
    ("info(name, version), warm", lambda _, c: c.info("file", "1")),
    ("list_versions(name)", lambda _, c: c.list_versions("small")),
    ("set_alias", lambda r, _: r.set_alias("file", "production", "1")),
    ("load by alias, warm cache", lambda _, c: c.load("file", version="production")),
    ("delete(name, version)", lambda r, _: r.delete("small", version="2")),
]


async def count_requests(make: Callable[[], Backend], scratch: Path) -> list[str]:
    """The backend calls each operation makes, as "N (get 1, put 1)" cells."""
    saver_backend = CountingBackend(make())
    saver_backend.is_remote = saver_backend.inner.is_remote
    reader_backend = CountingBackend(make())
    reader_backend.is_remote = reader_backend.inner.is_remote
    cells = []
    async with (
        AsyncRegistry(saver_backend, version_objects=True, cache_dir=scratch / "a") as saver,
        AsyncRegistry(reader_backend, cache_dir=scratch / "b") as reader,
    ):
        for _, operation in OPERATIONS:
            saver_backend.reset()
            reader_backend.reset()
            await operation(saver, reader)
            counts = saver_backend.counts + reader_backend.counts
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            cells.append(f"{sum(counts.values())} ({detail})" if counts else "0")
    return cells


def bench_requests(config: Config) -> list[Result]:
    from tests.servers import ServerStartError
    from tests.targets import started

    columns: dict[str, list[str]] = {}
    scratch = config.scratch("requests")
    columns["local"] = asyncio.run(
        count_requests(lambda: LocalBackend(scratch / "local-registry"), scratch / "local")
    )
    for kind in SERVERS:
        try:
            with started(kind) as target:
                columns[kind] = asyncio.run(
                    count_requests(lambda t=target: t.backend(prefix="requests"), scratch / kind)
                )
        except ServerStartError as exc:
            print(f"  {kind}: could not start, skipped: {exc}", flush=True)
    print_requests(columns)
    return [
        Result(
            f"{backend}: {label}",
            "requests",
            [float(cell.split()[0])],
            note=cell.partition(" ")[2].strip("()"),
            backend=backend,
            params={"op": label},
        )
        for backend, cells in columns.items()
        for (label, _), cell in zip(OPERATIONS, cells, strict=True)
    ]


def print_requests(columns: dict[str, list[str]]) -> None:
    """A markdown table: one row per operation, one column per backend."""
    names = list(columns)
    print()
    print("| operation | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row, (label, _) in enumerate(OPERATIONS):
        print(f"| {label} | " + " | ".join(columns[n][row] for n in names) + " |")
    print()
