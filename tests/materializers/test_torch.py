"""torch specifics: modules that need their skeleton pickled, load options,
and large tensors streamed to a file rather than inlined."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import AsyncRegistry
from registry.exceptions import PickleRefused
from tests.materializers.cases import same_modules, same_tensors

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.anyio


class Plain(torch.nn.Module):  # no get_config: only its skeleton can say how to build it
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4)
        self.decoder = torch.nn.Linear(4, 4)
        self.decoder.weight = self.encoder.weight
        self.register_buffer("steps", torch.tensor(3))
        self.act = torch.nn.GELU()


async def test_module_without_config_keeps_weights_safe_and_skeleton_pickled(
    tmp_path: Path,
) -> None:
    module = Plain().train()
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("plain", module)
        info = await reg.info("plain", "latest")
        assert info["stored_as"] == {"format": "safetensors+pickle"}
        assert sorted(info["files"]) == ["model.safetensors", "skeleton.pkl"]
        back = await reg.load("plain")
        assert same_modules(module, back)
        assert back.decoder.weight is back.encoder.weight
    async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as safe:
        with pytest.raises(PickleRefused, match=r"options=\{'weights_only': True\}"):
            await safe.load("plain")
        weights = await safe.load("plain", options={"weights_only": True})
        state = module.state_dict()
        assert list(weights) == list(state)
        assert all(torch.equal(weights[k], state[k]) for k in state)
        assert weights["decoder.weight"] is weights["encoder.weight"]


async def test_map_location_and_unknown_options(tmp_path: Path) -> None:
    tensor = torch.randn(3, 3)
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("t", tensor)
        back = await reg.load("t", options={"map_location": torch.device("cpu")})
        assert back.device.type == "cpu" and torch.equal(back, tensor)
        with pytest.raises(TypeError, match=r"\['mmap'\].*it takes: map_location"):
            await reg.load("t", options={"mmap": True})
        await reg.save("cfg", {"a": 1})
        with pytest.raises(TypeError, match="it takes: none"):
            await reg.load("cfg", options={"map_location": "cpu"})


async def test_large_tensor_dict_streams_to_a_file(tmp_path: Path) -> None:
    big = {
        "w": torch.randn(1536, 1024),  # 6 MiB
        "view": torch.randn(2048, 512).t(),  # 4 MiB, not contiguous
    }
    big["alias"] = big["w"]
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("big", big)
        info = await reg.info("big", "latest")
        assert info["inline"] is False and list(info["files"]) == ["tensors.safetensors"]
        back = await reg.load("big")
        assert same_tensors(big, back)
        assert back["alias"] is back["w"]


async def test_state_dict_of_a_subclass_of_dict_is_not_taken_for_tensors(tmp_path: Path) -> None:
    mixed = {"t": torch.ones(2), "n": 3}
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("mixed", mixed)
        info = await reg.info("mixed", "latest")
        assert info["materializer"].endswith("PickleMaterializer")


async def test_store_passes_load_options_to_the_mount(tmp_path: Path) -> None:
    from registry import AsyncStore

    tensor = torch.randn(2, 2)
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("t", tensor)
        async with AsyncStore({"models": reg}) as store:
            back = await store.load("models/t", options={"map_location": "cpu"})
            assert torch.equal(back, tensor)
            batch = await store.load(["models/t"], options={"nope": 1})
            assert isinstance(batch.errors[0], TypeError)
            assert "it takes: map_location" in str(batch.errors[0])
