"""Google Cloud Storage backend (being split into modules: see backend.py)."""

from registry.backends.gcs.backend import (
    CHUNK_QUANTUM,
    LIST_PAGE_SIZE,
    MAX_RANGES_IN_FLIGHT,
    GCPRegistryBackend,
    GCSAccessDenied,
    GCSBackend,
    GCSBackendError,
    GCSBucketNotFound,
    GCSEndpointUnreachable,
    GCSRegistryBackend,
)

__all__ = [
    "CHUNK_QUANTUM",
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
