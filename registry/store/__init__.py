"""The Store: several registries mounted under names, one API over them.

- ``core.py``     AsyncStore: lifecycle, mounts, save, load, delete, queries
- ``transfer.py`` copy and move between mounts (mixed into AsyncStore)
- ``lifecycle.py`` aliases, retention and find routed by key (mixed in too)
- ``routing.py``  the mount table: which registry a key goes to, batches
                  split per mount, unqualified reads searched across mounts
- ``keys.py``     ``[<mount>/]<name>[@<version>]`` and mount names
- ``config.py``   stores from a mapping, TOML or JSON (``${VAR}`` expanded)
- ``errors.py``   StoreKeyFormatError, StoreLocationNotFound, ...
- ``sync.py``     Store: the sync facade, one line per method
"""

from registry.store import errors
from registry.store.core import AsyncStore
from registry.store.errors import *  # noqa: F403
from registry.store.sync import Store

__all__ = ["AsyncStore", "Store", *errors.__all__]
