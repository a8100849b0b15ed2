"""S3-compatible backend on aioboto3: AWS S3, MinIO, SeaweedFS, Ceph, R2, moto.

What is where:

- ``backend.py``: ``S3Backend``, its configuration and the ``Backend`` calls.
- ``client.py``: the client of each event loop (lazy import of aiobotocore,
  credentials, connection pool, the bucket check) and how a request is sent.
- ``uploads.py``: conditional PUTs and multipart uploads.
- ``downloads.py``: GET, HEAD and ranged downloads into files.
- ``listing.py``: listings (and the folder check some stores need), batch deletes.
- ``errors.py``: the error classes, what is retried, how failures are translated.
- ``objects.py``: ETags, times and ``FileInfo`` from S3's answers.

Retries, request logging and the per-loop connection are shared with the GCS
backend (``registry.backends.calls``, ``retry``, ``remote``, ``transfer``).
Importing this package imports nothing of boto.
"""

from registry.backends.s3.backend import AddressingStyle, ChecksumMode, S3Backend
from registry.backends.s3.downloads import DOWNLOAD_RANGE_SIZE
from registry.backends.s3.errors import (
    BucketNotFound,
    EndpointUnreachable,
    S3AccessDenied,
    S3BackendError,
)
from registry.backends.s3.listing import DELETE_BATCH
from registry.backends.s3.uploads import (
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_PARTS_IN_FLIGHT,
    MIN_PART_SIZE,
)

__all__ = [
    "DEFAULT_PART_SIZE",
    "DELETE_BATCH",
    "DOWNLOAD_RANGE_SIZE",
    "MAX_PARTS",
    "MAX_PARTS_IN_FLIGHT",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "AddressingStyle",
    "BucketNotFound",
    "ChecksumMode",
    "EndpointUnreachable",
    "S3AccessDenied",
    "S3Backend",
    "S3BackendError",
]
