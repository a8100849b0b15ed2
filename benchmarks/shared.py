"""What the parent process of a run sets up once for all its worker processes.

Workers are fresh interpreters (one per repetition of a group), so anything
slow to make is made here and handed over as plain data in a JSON file (the
``context``): a SeaweedFS server on 127.0.0.1 for the groups that need one
(``scale``, ``concurrency``), and the scale group's prebuilt registries.
The server is stopped by PID and its data removed when the run ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.backends.s3 import S3Backend

# groups that measure on the run's shared SeaweedFS server (full runs only)
NEEDS_SEAWEEDFS = frozenset({"scale", "concurrency"})


@contextlib.contextmanager
def seaweedfs(groups: Sequence[str], quick: bool) -> Iterator[dict[str, Any]]:
    """{"seaweedfs": address} while a server runs, or {} when no group needs
    one (``--quick`` stays on local disk) or it could not start."""
    if quick or not NEEDS_SEAWEEDFS & set(groups):
        yield {}
        return
    from tests.servers import SeaweedFSServer, ServerStartError, prepare_bucket

    began = time.perf_counter()
    server = SeaweedFSServer()
    try:
        try:
            server.start()
            bucket = prepare_bucket(server)
        except ServerStartError as exc:
            print(f"SeaweedFS could not start, its figures are skipped: {exc}", flush=True)
            yield {}
            return
        print(
            f"shared SeaweedFS at {server.endpoint} (pid {server.pid}, "
            f"up in {time.perf_counter() - began:.1f} s)",
            flush=True,
        )
        yield {
            "seaweedfs": {
                "endpoint": server.endpoint,
                "access_key": server.access_key,
                "secret_key": server.secret_key,
                "bucket": bucket,
            }
        }
    finally:
        server.close()  # by PID; removes its data folder


def s3_backend(context: dict[str, Any], prefix: str, concurrency: int | None = None) -> S3Backend:
    """A backend on the shared SeaweedFS server (``context["seaweedfs"]``)."""
    from registry.backends.s3 import S3Backend

    address = context["seaweedfs"]
    options: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    return S3Backend(
        address["bucket"],
        endpoint=address["endpoint"],
        access_key=address["access_key"],
        secret_key=address["secret_key"],
        prefix=prefix,
        **options,
    )
