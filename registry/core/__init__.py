"""The backend-independent core: one registry on one Backend.

- ``registry.py``  RegistryCore: open, save, load, delete, batches; it mixes in
                   ``queries.py`` (has_object, info, list_*), ``cache_control.py``
                   (prefetch, cache_info, prune_cache) and ``lifecycle.py``
                   (aliases, retention, find over aliases.py, retention.py, search.py)
- ``saving.py``    one version: materialize, then commit
- ``mvcc.py``      the commit protocol: one conditional metadata write per version
- ``metadata.py``  where a version's metadata is found (latest, cache, unversioned)
- ``artifacts.py`` saving: objects into files through materializers, uploads
- ``loading.py``   loading: downloads, the cache, integrity checks
- ``cache.py``     the local cache of remote registries, with ``cache_space.py``
                   (caps, eviction), ``cache_leases.py`` (readers' leases),
                   ``fetching.py`` (one download per entry) and ``offline.py``
- ``settings.py``  ``_registry.json``: stored settings and the materializer table
- ``janitor.py``   removes orphaned uuid folders after a grace period
- ``fanout.py``, ``batches.py``  bounded concurrent batches, per-item results
- ``types.py``, ``versions.py``, ``names.py``, ``layout.py``  records and rules

Location strings, the public AsyncRegistry constructor and the Store live
above this package; backends and materializers below it.
"""
