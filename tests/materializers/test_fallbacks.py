"""What each format cannot hold falls back (recorded as pickle); safe formats
refuse what they do not trust; loading options of the table formats."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from registry import AsyncRegistry
from registry.exceptions import MaterializerError, PickleRefused
from tests.materializers.cases import onnx_model, same_arrow, same_proto

pytestmark = pytest.mark.anyio


async def _stored(reg: AsyncRegistry, name: str) -> dict[str, Any]:
    return await reg.info(name, "latest")


async def test_frame_of_python_objects_falls_back_to_pickle(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"obj": [{"a": 1}, [1, 2]], "n": [1, 2]})
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("frame", frame)
        assert (await _stored(reg, "frame"))["materializer"].endswith("PickleMaterializer")
        pd.testing.assert_frame_equal(await reg.load("frame"), frame)
    async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as safe:
        with pytest.raises(PickleRefused):
            await safe.load("frame")


async def test_large_frame_is_written_in_row_groups(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    from registry.materializers import pandas as pandas_materializer

    rows = 2 * 4096 + 17
    frame = pd.DataFrame(
        {
            "x": np.arange(rows, dtype=np.float64),
            "c": pd.Categorical(np.where(np.arange(rows) % 3 == 0, "a", "b")),
        },
        index=pd.RangeIndex(rows, 0, -1),
    )
    limit = pandas_materializer.ROWS_PER_GROUP
    pandas_materializer.ROWS_PER_GROUP = 4096  # as a frame of millions of rows would be cut
    try:
        async with AsyncRegistry(tmp_path / "r") as reg:
            await reg.save("frame", frame)
            pd.testing.assert_frame_equal(await reg.load("frame"), frame, check_exact=True)
    finally:
        pandas_materializer.ROWS_PER_GROUP = limit
    (written,) = (tmp_path / "r").rglob("data.parquet")
    assert pq.ParquetFile(written).metadata.num_row_groups == 3


async def test_skops_refuses_untrusted_types_with_their_names(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from tests.materializers.estimators import Shifted

    model = Shifted(LinearRegression(), shift=2.0).fit(np.eye(3), np.arange(3.0))
    async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as reg:
        await reg.save("model", model)
        assert (await _stored(reg, "model"))["stored_as"] == {"format": "skops"}
        with pytest.raises(MaterializerError, match=r"estimators\.Shifted"):
            await reg.load("model")
        trusted = ["tests.materializers.estimators.Shifted"]
        back = await reg.load("model", options={"trusted": trusted})
        assert np.array_equal(back.predict(np.eye(3)), model.predict(np.eye(3)))


async def test_what_skops_cannot_walk_goes_to_joblib_as_pickle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("skops")
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(kw_args={"scale": complex(1, 2)})  # skops has no complex
    async with AsyncRegistry(tmp_path / "r") as reg:
        with caplog.at_level(logging.WARNING):
            await reg.save("model", model)
        info = await _stored(reg, "model")
        assert info["materializer"].endswith("sklearn.JoblibMaterializer")
        assert info["stored_as"] == {"format": "joblib"}
        assert "saved with pickle" in caplog.text
        assert (await reg.load("model")).kw_args == {"scale": complex(1, 2)}
    async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as safe:
        with pytest.raises(PickleRefused):
            await safe.load("model")


async def test_what_skops_writes_but_cannot_load_goes_to_joblib(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    import re

    import numpy as np
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.eye(3), np.arange(3.0))
    model.pattern_ = re.compile("a+")  # skops writes a compiled regex, then refuses to build it
    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("model", model)
        info = await _stored(reg, "model")
        assert info["stored_as"] == {"format": "joblib"}
        assert (await reg.load("model")).pattern_ == model.pattern_


async def test_arrow_loads_memory_mapped(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": list(range(1000)), "s": ["v"] * 1000})
    async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as reg:
        await reg.save("t", table)
        mapped = await reg.load("t", options={"memory_map": True})
        assert same_arrow(table, mapped)


async def test_onnx_past_the_threshold_keeps_tensors_in_external_data(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from registry.materializers.onnx import OnnxMaterializer

    model = onnx_model()
    before = model.SerializeToString()
    limit = OnnxMaterializer.external_data_bytes
    OnnxMaterializer.external_data_bytes = 100  # as if the model were past 1 GiB
    try:
        async with AsyncRegistry(tmp_path / "r", allow_pickle=False) as reg:
            await reg.save("m", model)
            info = await _stored(reg, "m")
            assert info["stored_as"] == {"format": "onnx", "external_data": True}
            assert sorted(info["files"]) == ["model.onnx", "model.onnx.data"]
            assert same_proto(model, await reg.load("m"))
    finally:
        OnnxMaterializer.external_data_bytes = limit
    assert model.SerializeToString() == before  # the caller's proto is left alone


async def test_image_records_its_source_format(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from tests.materializers.cases import rgb_jpeg

    async with AsyncRegistry(tmp_path / "r") as reg:
        await reg.save("img", rgb_jpeg())
        stored = (await _stored(reg, "img"))["stored_as"]
        assert stored == {
            "format": "png",
            "source_format": "JPEG",
            "mode": "RGB",
            "size": [32, 24],
            "frames": 1,
        }
