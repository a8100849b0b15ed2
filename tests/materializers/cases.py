"""One case per stored type: how to build a small object, how to tell it came
back exactly, and the format the metadata must record. Everything is built
here from configs and seeds: nothing is downloaded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], Any]
    same: Callable[[Any, Any], bool]
    format: str
    materializer: str  # the module.Class under registry.materializers


def _torch() -> Any:
    import torch

    torch.manual_seed(0)
    return torch


def tensor() -> Any:
    torch = _torch()
    return torch.arange(24, dtype=torch.float32).reshape(4, 6).t()  # not contiguous


def small_tensors() -> Any:
    torch = _torch()
    return {
        "bf16": torch.randn(3, 2).to(torch.bfloat16),
        "flags": torch.tensor([True, False]),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(7, dtype=torch.int64),
    }


def state_dict() -> Any:
    torch = _torch()
    sd = torch.nn.Linear(8, 4).state_dict()
    sd["tied"] = sd["weight"]  # shared: stored once, comes back as one tensor
    sd["strided"] = torch.randn(6, 6)[::2, 1::2]  # non-contiguous
    return sd


def same_tensors(a: Any, b: Any) -> bool:
    torch = _torch()
    if isinstance(a, torch.Tensor):
        return bool(
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.requires_grad == b.requires_grad
            and torch.equal(a, b)
        )
    return (
        type(a) is type(b)
        and list(a) == list(b)
        and all(same_tensors(a[k], b[k]) for k in a)
        and all((a[x] is a[y]) == (b[x] is b[y]) for x in a for y in a)
    )


def parameter() -> Any:
    torch = _torch()
    return torch.nn.Parameter(torch.randn(3, 3))


class ConfigNet:  # built lazily: torch is imported only by the tests that use it
    cls: Any = None


def config_net_class() -> Any:
    if ConfigNet.cls is None:
        torch = _torch()

        class TinyNet(torch.nn.Module):
            """A module that exposes its constructor config, with tied weights."""

            def __init__(self, width: int = 4, classes: int = 3) -> None:
                super().__init__()
                self.width, self.classes = width, classes
                self.embed = torch.nn.Embedding(classes, width)
                self.body = torch.nn.Linear(width, width)
                self.head = torch.nn.Linear(width, classes, bias=False)
                self.head.weight = self.embed.weight
                self.register_buffer("scale", torch.full((width,), 0.5))

            def get_config(self) -> dict[str, int]:
                return {"width": self.width, "classes": self.classes}

        TinyNet.__qualname__ = "ConfigNet.TinyNet"
        TinyNet.__module__ = __name__
        ConfigNet.cls = ConfigNet.TinyNet = TinyNet  # type: ignore[attr-defined]
    return ConfigNet.cls


def config_net() -> Any:
    return config_net_class()(width=5, classes=7).eval()


def same_modules(a: Any, b: Any) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return (
        type(a) is type(b)
        and a.training == b.training
        and same_tensors(OrderedDict(ours), OrderedDict(theirs))
    )


class HubNet:  # built lazily, like ConfigNet
    cls: Any = None


def hub_net() -> Any:
    if HubNet.cls is None:
        torch = _torch()
        from huggingface_hub import PyTorchModelHubMixin

        class MixinNet(torch.nn.Module, PyTorchModelHubMixin):  # type: ignore[misc]
            """A module rebuilt by the hub mixin from the kwargs it was made with."""

            def __init__(self, width: int = 3, depth: int = 1) -> None:
                super().__init__()
                self.layers = torch.nn.Sequential(
                    *(torch.nn.Linear(width, width) for _ in range(depth))
                )

        MixinNet.__qualname__ = "HubNet.MixinNet"
        MixinNet.__module__ = __name__
        HubNet.cls = HubNet.MixinNet = MixinNet  # type: ignore[attr-defined]
    return HubNet.cls(width=4, depth=2).eval()


def script_module() -> Any:
    torch = _torch()
    return torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()))


def same_script(a: Any, b: Any) -> bool:
    torch = _torch()
    x = torch.randn(2, 3)
    return same_modules(a, b) and torch.equal(a(x), b(x)) and str(a.code) == str(b.code)


def frame() -> Any:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "u8": np.array([1, 2, 3, 255], dtype=np.uint8),
            "cat": pd.Categorical(["a", "b", "a", None], categories=["b", "a", "z"], ordered=True),
            "when": pd.date_range("2024-03-30", periods=4, freq="h", tz="Europe/Paris"),
            "text": ["x", None, "z", "é"],
            "f": [1.5, np.nan, -0.0, 2.0],
            "flag": [True, False, True, True],
        },
        index=pd.Index([10, 20, 30, 40], name="id"),
    )


def range_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"v": [0.5, 1.5, 2.5]}, index=pd.RangeIndex(5, 11, 2, name="r"))


def array_frame() -> Any:
    """DataFrame(array): its columns are 0, 1, 2 (a RangeIndex), not strings."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame(np.arange(12, dtype=np.int32).reshape(4, 3))


def labelled_frame() -> Any:
    """Column labels of mixed types, named, and a categorical among them."""
    import pandas as pd

    columns = pd.Index([3, "b", 2.5], dtype=object, name="feature")
    return pd.DataFrame([[1, pd.NA, 0.5], [2, "x", 1.5]], columns=columns).astype(
        {3: "int64", "b": "category", 2.5: "float64"}
    )


def empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


def series() -> Any:
    import pandas as pd

    return pd.Series(
        pd.array([True, None, False], dtype="boolean"), index=["a", "b", "c"], name="s"
    )


def same_pandas(a: Any, b: Any) -> bool:
    import pandas as pd

    try:
        if isinstance(a, pd.Series):
            pd.testing.assert_series_equal(a, b, check_exact=True)
        else:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
            assert type(a.index) is type(b.index)
    except AssertionError:
        return False
    return True


def arrow_table() -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([1, None, 3], pa.int32()),
            "tag": pa.array(["p", "q", "p"]).dictionary_encode(),
            "vec": pa.array([[1.0], [], [2.0, 3.0]], pa.list_(pa.float64())),
        }
    )


def record_batch() -> Any:
    return arrow_table().to_batches()[0]


def same_arrow(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a.schema == b.schema and bool(a.equals(b))


def polars_frame() -> Any:
    import datetime

    import polars as pl

    return pl.DataFrame(
        {
            "n": [1, None, 3],
            "s": ["a", "b", None],
            "c": pl.Series(["x", "y", "x"], dtype=pl.Categorical),
            "t": [datetime.datetime(2024, 1, 1), None, datetime.datetime(2024, 1, 2)],
        }
    )


def same_polars(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a.schema == b.schema and bool(a.equals(b))


def rgb_jpeg() -> Any:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((32, 24)).save(buffer, format="JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    return image


def float_image() -> Any:
    from PIL import Image

    image = Image.new("F", (7, 5), 0.25)
    image.putpixel((3, 2), -1.5)
    return image


def animated_gif() -> Any:
    """Three frames: a palette first frame, then RGB ones (as Pillow decodes GIFs)."""
    import io

    from PIL import Image

    frames = [Image.new("P", (9, 7), colour) for colour in range(3)]
    for frame in frames:
        frame.putpalette([(i * 7) % 256 for i in range(768)])
        frame.putpixel((4, 3), 5)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return Image.open(io.BytesIO(buffer.getvalue()))


def same_image(a: Any, b: Any) -> bool:
    from PIL import ImageSequence

    pairs = zip(ImageSequence.all_frames(a), ImageSequence.all_frames(b), strict=False)
    return getattr(a, "n_frames", 1) == getattr(b, "n_frames", 1) and all(
        x.mode == y.mode and x.size == y.size and x.tobytes() == y.tobytes() for x, y in pairs
    )


def sparse_matrix() -> Any:
    import scipy.sparse

    return scipy.sparse.random(40, 30, density=0.1, format="csr", random_state=0, dtype="float32")


def sparse_array() -> Any:
    import scipy.sparse

    return scipy.sparse.random_array((6, 9), density=0.3, format="coo", rng=0, dtype="int64")


def same_sparse(a: Any, b: Any) -> bool:
    return bool(
        type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and (a != b).nnz == 0
    )


def onnx_model() -> Any:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(600, dtype=np.float32).reshape(20, 30), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 20])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 30])],
        initializer=[weights],
    )
    return helper.make_model(graph)


def same_proto(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def sk_pipeline() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _sk_data()
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y.astype(np.int64))


def _sk_data() -> tuple[Any, Any]:
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 3))
    return x, (x[:, 0] > 0)


def same_estimator(a: Any, b: Any) -> bool:
    import numpy as np

    x, _ = _sk_data()
    return (
        type(a) is type(b)
        and repr(a.get_params()) == repr(b.get_params())
        and bool(np.array_equal(a.predict_proba(x), b.predict_proba(x)))
    )


def bert() -> Any:
    import transformers

    _torch()
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return transformers.BertForMaskedLM(config).eval()


def same_hf_model(a: Any, b: Any) -> bool:
    tied = a.cls.predictions.decoder.weight is a.bert.embeddings.word_embeddings.weight
    tied_back = b.cls.predictions.decoder.weight is b.bert.embeddings.word_embeddings.weight
    return same_modules(a, b) and a.config.to_dict() == b.config.to_dict() and tied == tied_back


def raw_tokenizer() -> Any:
    import tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3, "!": 4}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return tok


def same_raw_tokenizer(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a.to_str() == b.to_str()


def fast_tokenizer() -> Any:
    import transformers

    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw_tokenizer(), unk_token="[UNK]", pad_token="[PAD]"
    )


def same_fast_tokenizer(a: Any, b: Any) -> bool:
    text = "hello world ! unknown"
    return bool(
        type(a) is type(b)
        and a.get_vocab() == b.get_vocab()
        and a(text)["input_ids"] == b(text)["input_ids"]
        and a.special_tokens_map == b.special_tokens_map
    )


def image_processor() -> Any:
    import transformers

    return transformers.ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.1] * 3)


def same_processor(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a.to_dict() == b.to_dict()


def dataset() -> Any:
    import datasets

    return datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})


def dataset_dict() -> Any:
    import datasets

    ds = dataset()
    return datasets.DatasetDict(train=ds, test=ds.select([2]))


def same_dataset(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if hasattr(a, "keys"):
        return list(a) == list(b) and all(same_dataset(a[k], b[k]) for k in a)
    return bool(a.features == b.features and a.to_dict() == b.to_dict())


CASES = [
    Case("tensor", tensor, same_tensors, "safetensors", "torch_tensors.TensorMaterializer"),
    Case("parameter", parameter, same_tensors, "safetensors", "torch_tensors.TensorMaterializer"),
    Case("tensors", small_tensors, same_tensors, "safetensors", "torch_tensors.TensorMaterializer"),
    Case("state-dict", state_dict, same_tensors, "safetensors", "torch_tensors.TensorMaterializer"),
    Case("module", config_net, same_modules, "safetensors", "torch_modules.ModuleMaterializer"),
    Case("hub-mixin", hub_net, same_modules, "safetensors", "torch_modules.ModuleMaterializer"),
    Case(
        "torchscript",
        script_module,
        same_script,
        "torchscript",
        "torch_script.TorchScriptMaterializer",
    ),
    Case("dataframe", frame, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("range-frame", range_frame, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("array-frame", array_frame, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("labelled-frame", labelled_frame, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("empty-frame", empty_frame, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("series", series, same_pandas, "parquet", "pandas.PandasMaterializer"),
    Case("arrow-table", arrow_table, same_arrow, "arrow-ipc", "arrow.ArrowMaterializer"),
    Case("record-batch", record_batch, same_arrow, "arrow-ipc", "arrow.ArrowMaterializer"),
    Case("polars", polars_frame, same_polars, "arrow-ipc", "polars.PolarsMaterializer"),
    Case("jpeg-image", rgb_jpeg, same_image, "png", "images.ImageMaterializer"),
    Case("float-image", float_image, same_image, "tiff", "images.ImageMaterializer"),
    Case("animated-gif", animated_gif, same_image, "tiff", "images.ImageMaterializer"),
    Case("sparse-matrix", sparse_matrix, same_sparse, "npz", "sparse.SparseMaterializer"),
    Case("sparse-array", sparse_array, same_sparse, "npz", "sparse.SparseMaterializer"),
    Case("onnx", onnx_model, same_proto, "onnx", "onnx.OnnxMaterializer"),
    Case("sklearn", sk_pipeline, same_estimator, "skops", "sklearn.SkopsMaterializer"),
    Case("transformers", bert, same_hf_model, "save_pretrained", "hf.PretrainedMaterializer"),
    Case(
        "tokenizer", raw_tokenizer, same_raw_tokenizer, "tokenizer-json", "hf.TokenizerMaterializer"
    ),
    Case(
        "fast-tokenizer",
        fast_tokenizer,
        same_fast_tokenizer,
        "save_pretrained",
        "hf.PretrainedMaterializer",
    ),
    Case(
        "image-processor",
        image_processor,
        same_processor,
        "save_pretrained",
        "hf.PretrainedMaterializer",
    ),
    Case("dataset", dataset, same_dataset, "arrow-dataset", "hf.DatasetMaterializer"),
    Case("dataset-dict", dataset_dict, same_dataset, "arrow-dataset", "hf.DatasetMaterializer"),
]
