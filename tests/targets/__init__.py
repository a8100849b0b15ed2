"""Targets the remote suites and benchmarks run on: moto, SeaweedFS, fake-gcs.

:func:`started` runs a target's server (tests/servers/) for as long as the
``with`` lasts, with a self-checked bucket and the server's quirks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests.servers import (
    FakeGCSServer,
    MotoServer,
    SeaweedFSServer,
    ServerProcess,
    prepare_bucket,
    running,
)
from tests.targets.base import Damage, HttpLog, Quirks, Sent, Target
from tests.targets.gcs import GCSTarget
from tests.targets.s3 import S3Target

__all__ = [
    "KINDS",
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

# the targets the remote suite runs on: fixtures ``<name>_target``
REMOTE = ["moto", "seaweedfs", "gcs"]


def _fake_gcs_on_disk() -> FakeGCSServer:
    return FakeGCSServer("filesystem")


@dataclass(frozen=True)
class Kind:
    """How to start a target: its server, its client library's target class,
    and its quirks."""

    server: Callable[[], ServerProcess]
    target: type[S3Target] | type[GCSTarget]
    quirks: Quirks


KINDS = {
    "moto": Kind(MotoServer, S3Target, Quirks(dead_server_bound=20.0, own_server=MotoServer)),
    "seaweedfs": Kind(
        SeaweedFSServer,
        S3Target,
        Quirks(
            auto_saves=10, explicit_writers=4, dead_server_bound=20.0, own_server=SeaweedFSServer
        ),
    ),
    # fake-gcs honours preconditions on multipart uploads only, which is what
    # the commit write is (tests/servers/buckets.py checks that it holds); its
    # own server for fault tests keeps its data on disk across a restart
    "gcs": Kind(FakeGCSServer, GCSTarget, Quirks(own_server=_fake_gcs_on_disk)),
    "gcs_fs": Kind(_fake_gcs_on_disk, GCSTarget, Quirks(own_server=_fake_gcs_on_disk)),
}
QUIRKS = {name: kind.quirks for name, kind in KINDS.items()}


@contextlib.contextmanager
def started(name: str) -> Iterator[Target]:
    """The target ``name`` (a key of :data:`KINDS`) with its server running and
    a self-checked bucket, until the ``with`` ends."""
    kind = KINDS[name]
    with running(kind.server()) as server:
        yield kind.target(server, prepare_bucket(server), kind.quirks)
