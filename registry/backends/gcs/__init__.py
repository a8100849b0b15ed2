"""Google Cloud Storage backend on gcloud-aio-storage: GCS itself, or fake-gcs-server.

What is where:

- ``backend.py``: ``GCSBackend``, its configuration and the ``Backend`` calls.
- ``client.py``: the aiohttp session and gcloud-aio client of each event loop
  (lazy imports, the bucket check or creation) and how a request is sent.
- ``auth.py``: credentials and access tokens.
- ``uploads.py``: conditional writes, always multipart uploads (why: there).
- ``resumable.py``: the resumable protocol for large unconditional uploads.
- ``downloads.py``: GET, metadata and ranged downloads into files.
- ``listing.py``: listings and deletes.
- ``errors.py``: the error classes, what is retried, how failures are translated.
- ``objects.py``: generations, times, MD5s and ``FileInfo`` from GCS's answers.

Retries, request logging and the per-loop connection are shared with the S3
backend (``registry.backends.calls``, ``retry``, ``remote``, ``transfer``).
Importing this package imports nothing of gcloud or aiohttp.
"""

from registry.backends.gcs.backend import (
    CHUNK_QUANTUM,
    DEFAULT_CHUNK_SIZE,
    GOOGLE_API_ROOT,
    GCPRegistryBackend,
    GCSBackend,
    GCSRegistryBackend,
)
from registry.backends.gcs.errors import (
    GCSAccessDenied,
    GCSBackendError,
    GCSBucketNotFound,
    GCSEndpointUnreachable,
)
from registry.backends.gcs.listing import LIST_PAGE_SIZE
from registry.backends.transfer import MAX_RANGES_IN_FLIGHT

__all__ = [
    "CHUNK_QUANTUM",
    "DEFAULT_CHUNK_SIZE",
    "GOOGLE_API_ROOT",
    "LIST_PAGE_SIZE",
    "MAX_RANGES_IN_FLIGHT",
    "GCPRegistryBackend",
    "GCSAccessDenied",
    "GCSBackend",
    "GCSBackendError",
    "GCSBucketNotFound",
    "GCSEndpointUnreachable",
    "GCSRegistryBackend",
]
