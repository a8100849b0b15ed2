"""Real servers for the tests and benchmarks, as subprocesses on 127.0.0.1.

- ``process``: the shared part: free ports, spawn, wait ready, stop by PID
  (SIGTERM, then SIGKILL), restart on the same ports and data.
- ``moto``, ``seaweedfs`` (on ``s3``, what S3 servers share), ``fake_gcs``:
  one module per server kind.
- ``buckets``: a bucket after a self-check that preconditions really hold.
"""

from tests.servers.buckets import prepare_bucket
from tests.servers.fake_gcs import FakeGCSServer
from tests.servers.moto import MotoServer
from tests.servers.process import HOST, ServerProcess, ServerStartError, free_port, running
from tests.servers.s3 import S3Server
from tests.servers.seaweedfs import SeaweedFSServer

__all__ = [
    "HOST",
    "FakeGCSServer",
    "MotoServer",
    "S3Server",
    "SeaweedFSServer",
    "ServerProcess",
    "ServerStartError",
    "free_port",
    "prepare_bucket",
    "running",
]
