"""Pluggable serialization: one materializer per type, chosen along the MRO.

- ``base.py``     the protocol (any class with save/load), the Materializer and
                  BlobMaterializer base classes, hashing writers
- ``lookup.py``   class import path -> materializer import path, nothing imported
                  until an object of that type is saved or loaded
- ``builtin.py``, ``numpy.py``, ``path.py``, ``structured.py``: the built-ins
"""

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
