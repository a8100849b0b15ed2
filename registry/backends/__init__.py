"""Byte-level storage backends. They know nothing of versions or objects:
they move bytes and files by key and offer one concurrency primitive, a
conditional put (create-if-absent, compare-and-swap).

- ``base.py``    the Backend contract (DESIGN §3) and FileInfo
- ``local.py``   a folder on disk (temp + fsync + link/rename); ``memory.py``
- ``s3/``, ``gcs/``  one package per remote store, a module per job
- ``remote.py``  what bucket stores share: location, per-loop connection,
                 listing and delete; ``calls.py`` + ``retry.py``: requests with
                 jittered retries, translated errors, DEBUG logs;
                 ``transfer.py``: ranged downloads and positional writes
"""

from registry.backends.base import Backend, FileInfo
from registry.backends.local import LocalBackend
from registry.backends.memory import MemoryBackend

__all__ = ["Backend", "FileInfo", "LocalBackend", "MemoryBackend"]
