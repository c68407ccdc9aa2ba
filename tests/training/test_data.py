"""Loading the canonical data set forms, and checking that a spec fits the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import InvalidInput
from modelyard.training import check_fit, load_xy


def write_table(path: Path, columns: dict[str, Any]) -> Path:
    target = path / "data.parquet"
    # Small row groups, so the reader has to stitch batches together.
    pq.write_table(pa.table(columns), target, row_group_size=7)
    return target


def test_arrays_are_memory_mapped(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    np.save(tmp_path / "y.npy", np.arange(6))
    x, y = load_xy({"x.npy": tmp_path / "x.npy", "y.npy": tmp_path / "y.npy"}, "arrays", None)
    assert isinstance(x, np.memmap)
    assert isinstance(y, np.memmap)
    assert x.shape == (6, 2)
    assert y.tolist() == list(range(6))


def test_arrays_by_name(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(4, dtype=np.int64))
    files = {"images": tmp_path / "images.npy", "labels": tmp_path / "labels.npy"}
    x, _y = load_xy(files, "arrays", "labels")
    assert x.shape == (4, 8, 8)
    with pytest.raises(InvalidInput, match=r"label: name the label array, one of images, labels"):
        load_xy(files, "arrays", None)


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(1))
    with pytest.raises(InvalidInput, match=r"features: cannot be read"):
        load_xy({"x": tmp_path / "x.npy", "y": tmp_path / "y.npy"}, "arrays", "y")


def test_table_reads_only_the_named_columns(tmp_path: Path) -> None:
    path = write_table(
        tmp_path,
        {
            "a": list(range(20)),
            "b": [float(i) / 2 for i in range(20)],
            "note": ["text"] * 20,
            "species": ["x" if i % 2 else "y" for i in range(20)],
        },
    )
    x, y = load_xy({"data.parquet": path}, "table", "species", ["b", "a"])
    assert x.dtype == np.float32
    assert x.shape == (20, 2)
    assert x[3].tolist() == [1.5, 3.0]
    assert y.tolist()[:2] == ["y", "x"]


def test_table_errors_name_the_column(tmp_path: Path) -> None:
    path = write_table(tmp_path, {"a": [1.0, None], "note": ["p", "q"], "t": [0, 1]})
    files = {"data.parquet": path}
    with pytest.raises(InvalidInput, match=r"label: name the label column, one of a, note, t"):
        load_xy(files, "table", "target")
    with pytest.raises(InvalidInput, match=r"features\[0\]: column 'note' has type string"):
        load_xy(files, "table", "t", ["note"])
    with pytest.raises(InvalidInput, match=r"features\[0\]: column 'a' has missing values"):
        load_xy(files, "table", "t", ["a"])
    with pytest.raises(InvalidInput, match=r"features\[0\]: column 'zz' is not in the table"):
        load_xy(files, "table", "t", ["zz"])


MLP = {"arch": "mlp", "input_shape": [4], "num_outputs": 3}


@pytest.mark.parametrize(
    ("spec", "config", "x_shape", "y", "message"),
    [
        (
            MLP,
            {},
            (3, 5),
            [0, 1, 2],
            "spec.input_shape: [4] does not fit the training data, whose rows have shape [5]",
        ),
        (MLP, {}, (3, 4), [0, 1], "label: the training set has 2 labels for 3 rows"),
        (MLP, {}, (3, 4), [0, 1, 3], "spec.num_outputs: the labels go up to 3"),
        (MLP, {}, (3, 4), [0, -1, 2], "label: class ids must be >= 0"),
        (MLP, {}, (3, 4), [0.5, 1.0, 2.0], "spec.task: the labels have fractional values"),
        (MLP, {}, (3, 4), ["a", "b", "c"], None),
        (MLP, {}, (4, 4), ["a", "b", "c", "d"], "spec.num_outputs: the label has 4 classes"),
        (
            {**MLP, "num_outputs": 1},
            {},
            (3, 4),
            [0, 1, 2],
            "spec.num_outputs: one output takes labels 0 and 1",
        ),
        (
            {**MLP, "num_outputs": 2, "task": "regression"},
            {},
            (3, 4),
            [0.1, 1.0, 2.0],
            "spec.num_outputs: the label has 1 column(s)",
        ),
        (
            {**MLP, "task": "regression", "num_outputs": 1},
            {},
            (3, 4),
            ["a", "b", "c"],
            "label: regression needs numeric",
        ),
        ({"arch": "cnn", "input_shape": [1, 8, 8], "num_outputs": 3}, {}, (3, 64), [0, 1, 2], None),
        (
            {"arch": "cnn", "input_shape": [1, 8, 8], "num_outputs": 3},
            {},
            (3, 8, 8),
            [0, 1, 2],
            None,
        ),
        (MLP, {}, (0, 4), [], "data: the training set has no rows"),
    ],
)
def test_check_fit(
    spec: dict[str, Any],
    config: dict[str, Any],
    x_shape: tuple[int, ...],
    y: list[Any],
    message: str | None,
) -> None:
    labels = np.array(y)
    if message is None:
        check_fit(spec, config, x_shape, np.float32, labels)
        return
    with pytest.raises(InvalidInput) as caught:
        check_fit(spec, config, x_shape, np.float32, labels)
    assert caught.value.detail.startswith(message)


def test_check_fit_refuses_non_numeric_features() -> None:
    with pytest.raises(InvalidInput, match=r"features: must be numeric"):
        check_fit(MLP, {}, (2, 4), np.dtype(object), np.array([0, 1]))
