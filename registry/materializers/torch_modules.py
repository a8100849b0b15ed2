"""torch ``nn.Module``: weights as safetensors, the module rebuilt from data.

``ModuleMaterializer`` takes a module whose class can be rebuilt without
pickle: a ``huggingface_hub.PyTorchModelHubMixin`` (its own
``save_pretrained`` folder, loaded with ``from_pretrained`` locally), or a
class exposing its constructor config as ``get_config()`` (a JSON-native
dict; rebuilt with ``cls.from_config(config)`` or ``cls(**config)``).
Transformers models have their own materializer (``hf``).

Any other module falls back to ``SkeletonModuleMaterializer``: the weights
still in safetensors, the rest of the module (its structure, without the
tensors) pickled, so it is recorded as needing pickle. Under
``allow_pickle=False`` its weights alone load with
``options={"weights_only": True}``.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from registry.exceptions import MaterializerError
from registry.materializers import safetensors_io as st
from registry.materializers.base import FileEntry, Materializer, Unsupported, write_bytes

WEIGHTS = "model.safetensors"
RECIPE = "module.json"
SKELETON = "skeleton.pkl"
KEYS = "registry.keys"


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _hub_mixin(obj: Any) -> bool:
    # A hub-mixin module means huggingface_hub is imported already.
    hub = sys.modules.get("huggingface_hub")
    return hub is not None and isinstance(obj, hub.PyTorchModelHubMixin)


def _config(obj: Any) -> dict[str, Any] | None:
    get_config = getattr(obj, "get_config", None)
    if not callable(get_config):
        return None
    config = get_config()
    try:
        if not isinstance(config, dict) or json.loads(json.dumps(config)) != config:
            raise TypeError("not a JSON-native dict")
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"{_class_path(obj)}.get_config() is {exc}") from exc
    return config


def state_tensors(module: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The module's state dict, each shared tensor once, plus the aliases."""
    state = module.state_dict(keep_vars=True)
    stored, aliases = st.dedupe(state)
    meta = {KEYS: json.dumps(list(state))}
    if aliases:
        meta[st.ALIASES] = json.dumps(aliases)
    return stored, meta


def _weights_only(folder: Path, map_location: Any) -> OrderedDict[str, Any]:
    """The state dict, in the module's order, tied entries one tensor."""
    path = folder / WEIGHTS
    tensors = st.read(path, map_location)
    order = json.loads(st.metadata_of(path).get(KEYS, "null")) or sorted(tensors)
    return OrderedDict((key, tensors[key]) for key in order)


def _needs_class(recipe: Mapping[str, Any]) -> MaterializerError:
    return MaterializerError(
        f"rebuilding {recipe.get('class')} needs its class, which was not imported: with "
        "allow_pickle=False the registry imports only framework classes, registered ones and "
        "classes already imported in this process. Import the module that defines it before "
        "loading, or load the weights alone with options={'weights_only': True}"
    )


class ModuleMaterializer(Materializer):
    format = "safetensors"
    loads_untrusted_safely = True
    load_options: ClassVar[frozenset[str]] = frozenset({"map_location", "weights_only"})

    def describe(self, obj: Any) -> Mapping[str, Any]:
        how = "hub_mixin" if _hub_mixin(obj) else "get_config"
        return {"format": "safetensors", "rebuilt_from": how}

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        st.torch_module()
        recipe: dict[str, Any] = {"class": _class_path(obj), "training": bool(obj.training)}
        if _hub_mixin(obj):
            obj.save_pretrained(folder)
            recipe["rebuilt_from"] = "hub_mixin"
            return {RECIPE: write_bytes(folder / RECIPE, json.dumps(recipe).encode())}
        config = _config(obj)
        if config is None:
            raise Unsupported(
                f"{_class_path(obj)} has no get_config() and is not a PyTorchModelHubMixin, "
                "so it cannot be rebuilt from data"
            )
        recipe.update(rebuilt_from="get_config", config=config)
        tensors, meta = state_tensors(obj)
        return {
            WEIGHTS: st.write(folder / WEIGHTS, tensors, meta),
            RECIPE: write_bytes(folder / RECIPE, json.dumps(recipe).encode()),
        }

    def load(
        self,
        folder: Path,
        cls: type | None,
        *,
        map_location: Any = None,
        weights_only: bool = False,
    ) -> Any:
        recipe = json.loads((folder / RECIPE).read_text())
        if recipe["rebuilt_from"] == "hub_mixin":
            if weights_only:
                import safetensors.torch

                return safetensors.torch.load_file(folder / WEIGHTS, device=map_location or "cpu")
            if cls is None:
                raise _needs_class(recipe)
            model = cls.from_pretrained(  # type: ignore[attr-defined]
                folder, map_location=map_location or "cpu", local_files_only=True
            )
        else:
            if weights_only:
                return _weights_only(folder, map_location)
            if cls is None:
                raise _needs_class(recipe)
            config = recipe["config"]
            factory = getattr(cls, "from_config", None)
            model = factory(config) if callable(factory) else cls(**config)
            # assign=True adopts the loaded tensors: no second copy of the weights
            model.load_state_dict(_weights_only(folder, map_location), strict=True, assign=True)
            _retie(model, st.metadata_of(folder / WEIGHTS))
        return model.train(recipe["training"])


def _retie(model: Any, meta: Mapping[str, str]) -> None:
    """assign=True gives each state-dict key its own Parameter: make tied
    entries (tied embeddings) one object again, as the saved module had."""
    for alias, name in json.loads(meta.get(st.ALIASES, "{}")).items():
        owner_path, _, attr = alias.rpartition(".")
        source_path, _, source_attr = name.rpartition(".")
        source = getattr(model.get_submodule(source_path), source_attr)
        setattr(model.get_submodule(owner_path), attr, source)


class _SkeletonPickler(pickle.Pickler):
    """Pickles a module with its state tensors left out (named, not copied)."""

    def __init__(self, file: io.BytesIO, names: Mapping[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = names

    def persistent_id(self, obj: Any) -> Any:
        name = self._names.get(id(obj))
        if name is None:
            return None
        torch = st.torch_module()
        if isinstance(obj, torch.nn.Parameter):
            return ("parameter", name, obj.requires_grad)
        return ("tensor", name, obj.requires_grad)


class _SkeletonUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, tensors: Mapping[str, Any]) -> None:
        super().__init__(file)
        self._tensors = tensors
        self._made: dict[tuple[Any, ...], Any] = {}  # a tied parameter is one object

    def persistent_load(self, pid: Any) -> Any:
        key = tuple(pid)
        if key not in self._made:
            kind, name, requires_grad = key
            tensor = self._tensors[name]
            if kind == "parameter":
                torch = st.torch_module()
                tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
            elif requires_grad:
                tensor.requires_grad_(True)
            self._made[key] = tensor
        return self._made[key]


class SkeletonModuleMaterializer(Materializer):
    """Weights in safetensors plus the module pickled without them."""

    format = "safetensors+pickle"
    uses_pickle = True
    load_options: ClassVar[frozenset[str]] = frozenset({"map_location", "weights_only"})
    pickle_free_with: ClassVar[frozenset[str]] = frozenset({"weights_only"})
    pickle_refused_hint = (
        "its weights alone are safetensors and load without pickle: "
        "load(name, options={'weights_only': True}) returns the state dict to pass to "
        "load_state_dict() of a model you build"
    )

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        torch = st.torch_module()
        if not isinstance(obj, torch.nn.Module):
            raise Unsupported("not a torch module")
        state = obj.state_dict(keep_vars=True)
        tensors, meta = state_tensors(obj)
        stored_names = {id(t): n for n, t in tensors.items()}
        # Aliased entries share the stored tensor's id, so they map to it too.
        names = {id(t): stored_names[id(t)] for t in state.values() if id(t) in stored_names}
        buffer = io.BytesIO()
        try:
            _SkeletonPickler(buffer, names).dump(obj)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise Unsupported(f"the module cannot be pickled: {exc}") from exc
        return {
            WEIGHTS: st.write(folder / WEIGHTS, tensors, meta),
            SKELETON: write_bytes(folder / SKELETON, buffer.getvalue()),
        }

    def load(
        self,
        folder: Path,
        cls: type | None,
        *,
        map_location: Any = None,
        weights_only: bool = False,
    ) -> Any:
        tensors = _weights_only(folder, map_location)
        if weights_only:
            return tensors
        with open(folder / SKELETON, "rb") as f:
            return _SkeletonUnpickler(io.BytesIO(f.read()), tensors).load()
