"""torch datasets over registry objects, for DataLoader training loops.

``RegistryDataset`` is map-style: ``dataset[i]`` loads ``names[i]``, and a
batch of indices (``__getitems__``, which DataLoader calls with automatic
batching) loads as one concurrent batch. ``RegistryIterableDataset`` streams
its names through ``iter_load`` with at most ``prefetch`` loads in flight,
each DataLoader worker taking its own share of the names.

Both hold a sync ``Registry``: it pickles as its configuration and rebuilds
its clients and event loop in a forked or spawned worker, so each worker
has its own connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from registry._sync import Registry
from registry.core.versions import LATEST

try:
    import torch.utils.data as torch_data
except ImportError as exc:  # pragma: no cover - torch is a dev dependency
    raise ImportError(
        "registry.integrations.torch needs torch: pip install 'versioned-registry[torch]'"
    ) from exc

Transform = Callable[[Any], Any]


class RegistryDataset(torch_data.Dataset[Any]):
    """``dataset[i]`` is ``transform(registry.load(names[i]))``."""

    def __init__(
        self,
        registry: Registry,
        names: Sequence[str],
        transform: Transform | None = None,
        *,
        version: str = LATEST,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.names = list(names)
        self.transform = transform
        self.version = version
        self.options = dict(options or {})

    def __len__(self) -> int:
        return len(self.names)

    def _ready(self, obj: Any) -> Any:
        return self.transform(obj) if self.transform is not None else obj

    def __getitem__(self, index: int) -> Any:
        obj = self.registry.load(self.names[index], version=self.version, options=self.options)
        return self._ready(obj)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """A whole batch at once: the loads run concurrently."""
        loaded = self.registry.load(
            [self.names[i] for i in indices], version=self.version, options=self.options
        )
        loaded.raise_first()
        return [self._ready(obj) for obj in loaded.results]


def shard(names: Sequence[str]) -> Sequence[str]:
    """This DataLoader worker's share of ``names`` (all of them outside one)."""
    worker = torch_data.get_worker_info()
    if worker is None:
        return names
    return names[worker.id :: worker.num_workers]


class RegistryIterableDataset(torch_data.IterableDataset[Any]):
    """Streams ``names`` (in completion order, not list order), at most
    ``prefetch`` loads in flight per worker; ``with_names`` yields
    ``(name, obj)`` pairs."""

    def __init__(
        self,
        registry: Registry,
        names: Sequence[str],
        transform: Transform | None = None,
        *,
        prefetch: int = 64,
        version: str = LATEST,
        options: Mapping[str, Any] | None = None,
        with_names: bool = False,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self.registry = registry
        self.names = list(names)
        self.transform = transform
        self.prefetch = prefetch
        self.version = version
        self.options = dict(options or {})
        self.with_names = with_names

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Any]:
        stream = self.registry.iter_load(
            shard(self.names), version=self.version, limit=self.prefetch, options=self.options
        )
        for name, obj in stream:
            ready = self.transform(obj) if self.transform is not None else obj
            yield (name, ready) if self.with_names else ready
