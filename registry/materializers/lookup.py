"""Choosing a materializer for an object, by import path along its MRO.

Tables map class import paths to materializer import paths, so nothing is
imported to look a type up: numpy or pydantic are only imported when an
object of theirs is saved or loaded.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import sys
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

from registry.exceptions import MaterializerError
from registry.materializers.base import MaterializerProtocol, check_materializer_class

_M = "registry.materializers."
PICKLE = _M + "builtin.PickleMaterializer"
DATACLASS = _M + "structured.DataclassMaterializer"
_BUILTINS = _M + "builtin.BuiltinsMaterializer"

BUILTIN_TABLE: dict[str, str] = {
    "builtins.bytes": _M + "builtin.BytesMaterializer",
    "builtins.bytearray": _M + "builtin.BytesMaterializer",
    "builtins.str": _M + "builtin.StrMaterializer",
    **{
        f"builtins.{t}": _BUILTINS
        for t in ("int", "float", "bool", "NoneType", "list", "dict", "tuple", "set", "frozenset")
    },
    "pathlib.PurePath": _M + "path.PathMaterializer",
    "pathlib._local.PurePath": _M + "path.PathMaterializer",  # Python >= 3.13
    "numpy.ndarray": _M + "numpy.NumpyMaterializer",
    "pydantic.main.BaseModel": _M + "structured.PydanticMaterializer",
    # torch: a module rebuilt from data where it can be, else weights + skeleton
    "torch.Tensor": _M + "torch_tensors.TensorMaterializer",
    "torch.nn.parameter.Parameter": _M + "torch_tensors.TensorMaterializer",
    "torch.nn.modules.module.Module": _M + "torch_modules.ModuleMaterializer",
    "torch.jit._script.RecursiveScriptModule": _M + "torch_script.TorchScriptMaterializer",
    "torch.jit._script.ScriptModule": _M + "torch_script.TorchScriptMaterializer",
    # tables
    "pandas.DataFrame": _M + "pandas.PandasMaterializer",
    "pandas.core.frame.DataFrame": _M + "pandas.PandasMaterializer",
    "pandas.Series": _M + "pandas.PandasMaterializer",
    "pandas.core.series.Series": _M + "pandas.PandasMaterializer",
    "pyarrow.lib.Table": _M + "arrow.ArrowMaterializer",
    "pyarrow.lib.RecordBatch": _M + "arrow.ArrowMaterializer",
    "polars.dataframe.frame.DataFrame": _M + "polars.PolarsMaterializer",
    # images, sparse matrices, ONNX, scikit-learn
    "PIL.Image.Image": _M + "images.ImageMaterializer",
    "scipy.sparse._base._spbase": _M + "sparse.SparseMaterializer",
    "onnx.onnx_ml_pb2.ModelProto": _M + "onnx.OnnxMaterializer",
    "onnx.onnx_pb.ModelProto": _M + "onnx.OnnxMaterializer",
    "sklearn.base.BaseEstimator": _M + "sklearn.SkopsMaterializer",
    # Hugging Face: save_pretrained / save_to_disk folders, loaded locally
    "transformers.modeling_utils.PreTrainedModel": _M + "hf.PretrainedMaterializer",
    "transformers.tokenization_utils_base.PreTrainedTokenizerBase": _M
    + "hf.PretrainedMaterializer",
    "transformers.processing_utils.ProcessorMixin": _M + "hf.PretrainedMaterializer",
    "transformers.feature_extraction_utils.FeatureExtractionMixin": _M
    + "hf.PretrainedMaterializer",
    "transformers.image_processing_base.ImageProcessingMixin": _M + "hf.PretrainedMaterializer",
    "transformers.configuration_utils.PretrainedConfig": _M + "hf.PretrainedMaterializer",
    "transformers.configuration_utils.PreTrainedConfig": _M + "hf.PretrainedMaterializer",
    "tokenizers.Tokenizer": _M + "hf.TokenizerMaterializer",
    "datasets.arrow_dataset.Dataset": _M + "hf.DatasetMaterializer",
    "datasets.dataset_dict.DatasetDict": _M + "hf.DatasetMaterializer",
}

# Tried after the table's choice and before plain pickle: both need pickle,
# but keep what they can in a safe format (weights in safetensors).
FALLBACKS: dict[str, str] = {
    _M + "torch_modules.ModuleMaterializer": _M + "torch_modules.SkeletonModuleMaterializer",
    _M + "sklearn.SkopsMaterializer": _M + "sklearn.JoblibMaterializer",
}

# Top-level packages whose classes loading may import with allow_pickle=False:
# the frameworks the built-in materializers are written for.
FRAMEWORKS = frozenset(
    path.split(".")[0] for path in BUILTIN_TABLE if not path.startswith("builtins.")
)


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def candidates(obj: Any, registered: Mapping[str, str]) -> list[str]:
    """Materializer import paths to try for ``obj``, best first; pickle last.

    The most specific class in the MRO wins; at one class, a registration
    made by the user wins over a built-in. A plain dict of torch tensors (a
    state dict) is stored as safetensors.
    """
    if _is_tensor_dict(obj) and class_path(type(obj)) not in registered:
        return [TENSORS, PICKLE]
    for cls in type(obj).__mro__:
        path = class_path(cls)
        found = registered.get(path) or BUILTIN_TABLE.get(path)
        if found:
            if found == PICKLE:
                return [PICKLE]
            fallback = FALLBACKS.get(found)
            return [found, fallback, PICKLE] if fallback else [found, PICKLE]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [DATACLASS, PICKLE]
    return [PICKLE]


def safe_class(path: str, registered: Collection[str]) -> type | None:
    """The class ``path`` names, if getting it imports no code the metadata
    chose: a class of a framework the built-in materializers serve, one
    registered with the registry or handed over in this process, or one whose
    module is already imported. Else None (the materializer then works
    without it, or says to import its module first)."""
    module_name = path.rpartition(".")[0]
    top = path.split(".")[0]
    allowed = (
        top in FRAMEWORKS
        or top == "builtins"
        or path in registered
        or path in _known_object_classes
    )
    if not allowed:
        loaded = sys.modules.get(module_name)
        if loaded is None:
            return None
    try:
        found = _known_object_classes.get(path) or import_path(path)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


# Classes of objects saved in this process: loading them imports nothing new.
_known_object_classes: dict[str, type] = {}


def known_class(path: str) -> type | None:
    return _known_object_classes.get(path)


def remember_class(cls: type) -> None:
    _known_object_classes.setdefault(class_path(cls), cls)


TENSORS = _M + "torch_tensors.TensorMaterializer"


def _is_tensor_dict(obj: Any) -> bool:
    # An object holding tensors means torch is imported already: never import it here.
    torch = sys.modules.get("torch")
    return (
        torch is not None
        and type(obj) in (dict, collections.OrderedDict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def import_path(path: str) -> Any:
    """Import ``pkg.module.Attr`` (the attribute may be nested: ``mod.Outer.Inner``)."""
    module_name, _, attr = path.rpartition(".")
    parts = [attr]
    while module_name:
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, outer = module_name.rpartition(".")
            parts.insert(0, outer)
            continue
        for part in parts:
            target = getattr(target, part)
        return target
    raise ImportError(f"cannot import {path!r}")


# Classes handed over as objects (``materializer=MyMaterializer``), so this
# process can use them even when their import path is not importable.
_known_classes: dict[str, type] = {}


@cache
def get_materializer(path: str) -> MaterializerProtocol:
    try:
        cls = _known_classes.get(path) or import_path(path)
    except (ImportError, AttributeError) as exc:
        raise MaterializerError(
            f"cannot import materializer {path!r} ({exc}); install or import the module "
            "that defines it"
        ) from exc
    try:
        checked = check_materializer_class(cls, repr(path))
        return checked()
    except TypeError as exc:
        raise MaterializerError(str(exc)) from None


def is_trusted_materializer(path: str, registered: Collection[str]) -> bool:
    """Built in, registered with the registry, or handed over in this process."""
    return path.startswith(_M) or path in registered or path in _known_classes


def materializer_path(materializer: str | type | MaterializerProtocol) -> str:
    """Normalise a ``materializer=`` argument (import path, class or instance)
    to its import path, checking that it is a usable materializer."""
    if isinstance(materializer, str):
        get_materializer(materializer)  # fail early with a clear error
        return materializer
    cls = materializer if isinstance(materializer, type) else type(materializer)
    check_materializer_class(cls, class_path(cls))
    path = class_path(cls)
    _known_classes[path] = cls
    return path
