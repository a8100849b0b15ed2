"""DataLoader workers over registry datasets on S3 (moto): every object once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Registry
from tests.conftest import Target

torch = pytest.importorskip("torch")
data = pytest.importorskip("torch.utils.data")

from registry.integrations.torch import RegistryDataset, RegistryIterableDataset  # noqa: E402

COUNT = 40


@pytest.fixture
def stored(moto_target: Target, tmp_path: Path) -> Iterator[tuple[Registry, list[str]]]:
    prefix = f"ds-{tmp_path.name}"
    reg = Registry(backend=moto_target.backend(prefix=prefix), cache_dir=tmp_path / "cache")
    names = [f"sample-{i:03d}" for i in range(COUNT)]
    reg.save(names, [torch.tensor([i, i * i]) for i in range(COUNT)]).raise_first()
    # a registry that refuses pickle, as a training job reading shared data would
    reader = Registry(
        backend=moto_target.backend(prefix=prefix), allow_pickle=False, cache_dir=tmp_path / "c2"
    )
    yield reader, names
    reader.close()
    reg.close()


def _seen(batches: Iterator[torch.Tensor]) -> Counter[int]:
    return Counter(int(row[0]) for batch in batches for row in batch)


def test_map_style_dataset_with_two_workers_yields_each_object_once(
    stored: tuple[Registry, list[str]],
) -> None:
    reader, names = stored
    dataset = RegistryDataset(reader, names, transform=lambda t: t * 1)
    assert len(dataset) == COUNT and torch.equal(dataset[3], torch.tensor([3, 9]))
    loader = data.DataLoader(dataset, batch_size=4, num_workers=2)
    assert _seen(iter(loader)) == Counter(range(COUNT))


def test_iterable_dataset_shards_names_across_workers(
    stored: tuple[Registry, list[str]],
) -> None:
    reader, names = stored
    dataset = RegistryIterableDataset(reader, names, prefetch=8)
    loader = data.DataLoader(dataset, batch_size=5, num_workers=2)
    assert _seen(iter(loader)) == Counter(range(COUNT))
    # outside a DataLoader it streams everything, pairs when asked
    pairs = dict(RegistryIterableDataset(reader, names[:5], with_names=True))
    assert {n: int(t[0]) for n, t in pairs.items()} == {n: i for i, n in enumerate(names[:5])}


def test_prefetch_must_be_positive(stored: tuple[Registry, list[str]]) -> None:
    reader, names = stored
    with pytest.raises(ValueError, match="prefetch"):
        RegistryIterableDataset(reader, names, prefetch=0)
