"""Pluggable serialization: one materializer per type, chosen along the MRO."""

from registry.materializers.base import (
    BlobMaterializer,
    HashingWriter,
    Materializer,
    Unsupported,
    copy_file,
    write_bytes,
)

__all__ = [
    "BlobMaterializer",
    "HashingWriter",
    "Materializer",
    "Unsupported",
    "copy_file",
    "write_bytes",
]
