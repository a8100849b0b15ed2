"""A bucket for the tests on a running server, after a self-check.

A server that lets a second create win, or a stale etag / generation replace
a value, makes every MVCC test meaningless (DESIGN §12), so the check fails
loudly instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable

from registry.backends.base import Backend
from registry.exceptions import PreconditionFailed
from tests.servers.process import ServerProcess, ServerStartError

READY_WITHIN = 30.0  # SeaweedFS's filer and volume servers register after its S3 gateway


async def _first_write(backend: Backend) -> str:
    """Create the probe, retrying while the server is still getting ready; its etag."""
    deadline = time.monotonic() + READY_WITHIN
    while True:
        try:
            return (await backend.put("probe", b"first", mode="create")).etag
        except PreconditionFailed:
            info = await backend.head("probe")  # an earlier attempt landed after all
            assert info is not None
            return info.etag
        except Exception:
            if time.monotonic() > deadline:
                raise
            await backend.aclose()
            await asyncio.sleep(0.2)


async def _refused(write: Awaitable[object], what: str) -> None:
    """``write`` must fail its precondition; that it succeeded is ``what``."""
    try:
        await write
    except PreconditionFailed:
        return
    raise ServerStartError(f"{what}; MVCC tests on it would be meaningless")


async def _self_check(server: ServerProcess, bucket: str) -> None:
    where = f"{server.name} at {server.endpoint}"
    backend = server.backend(bucket, create_bucket=True, prefix=f"self-check-{uuid.uuid4().hex}")
    try:
        first = await _first_write(backend)
        await _refused(
            backend.put("probe", b"second", mode="create"),
            f"{where} ignores a create precondition: a second create of the same key succeeded",
        )
        if await backend.get("probe") != b"first":
            raise ServerStartError(f"{where}: a lost create replaced the value")
        current = await backend.put("probe", b"third", if_match=first)
        await _refused(
            backend.put("probe", b"stale", if_match=first),
            f"{where} ignores a match precondition: a compare-and-swap on a stale etag succeeded",
        )
        if await backend.get("probe") != b"third":
            raise ServerStartError(f"{where}: a lost compare-and-swap replaced the value")
        head = await backend.head("probe")
        if head is None or head.etag != current.etag:
            raise ServerStartError(f"{where}: head does not report the etag written")
        await backend.delete(["probe"])
    finally:
        await backend.aclose()


def prepare_bucket(server: ServerProcess, bucket: str | None = None) -> str:
    """Create a bucket (an existing one is fine) and self-check conditional
    writes on it; returns its name."""
    bucket = bucket or f"registry-tests-{uuid.uuid4().hex[:12]}"
    asyncio.run(_self_check(server, bucket))
    return bucket
