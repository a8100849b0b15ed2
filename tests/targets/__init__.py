"""Targets the remote suites and benchmarks run on: moto, SeaweedFS, fake-gcs.

:func:`started` runs a target's server (tests/servers/) for as long as the
``with`` lasts, with a self-checked bucket and the server's quirks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.servers import (
    FakeGCSServer,
    MotoServer,
    SeaweedFSServer,
    prepare_bucket,
    running,
)
from tests.targets.base import Damage, HttpLog, Quirks, Sent, Target
from tests.targets.gcs import GCSTarget
from tests.targets.s3 import S3Target

__all__ = [
    "QUIRKS",
    "REMOTE",
    "Damage",
    "GCSTarget",
    "HttpLog",
    "Quirks",
    "S3Target",
    "Sent",
    "Target",
    "started",
]

# fixture name -> target; "gcs_fs" is fake-gcs on its filesystem backend
REMOTE = ["moto", "seaweedfs", "gcs"]

QUIRKS = {
    "moto": Quirks(dead_server_bound=20.0, own_server=MotoServer),
    "seaweedfs": Quirks(
        auto_saves=10, explicit_writers=4, dead_server_bound=20.0, own_server=SeaweedFSServer
    ),
    # fake-gcs honours preconditions on multipart uploads only, which is what
    # the commit write is: the self-check in tests/servers/buckets.py holds it to that
    "gcs": Quirks(own_server=lambda: FakeGCSServer("filesystem")),
    "gcs_fs": Quirks(own_server=lambda: FakeGCSServer("filesystem")),
}


@contextlib.contextmanager
def started(kind: str) -> Iterator[Target]:
    """The target ``kind`` (a key of :data:`QUIRKS`) with its server running."""
    quirks = QUIRKS[kind]
    if kind in ("moto", "seaweedfs"):
        s3 = MotoServer() if kind == "moto" else SeaweedFSServer()
        with running(s3) as server:
            yield S3Target(server, prepare_bucket(server), quirks)
    else:
        gcs = FakeGCSServer("filesystem" if kind == "gcs_fs" else "memory")
        with running(gcs) as server:
            yield GCSTarget(server, prepare_bucket(server), quirks)
