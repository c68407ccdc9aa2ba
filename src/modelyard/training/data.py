"""Reading the canonical data set forms, and checking that a spec fits the data.

The intake code stores a table as a Parquet file ``data.parquet`` and arrays as ``.npy``
files. Arrays are memory-mapped; of a table only the needed columns are read, batch by
batch, into one float32 matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec, parse_spec
from modelyard.training.config import TrainConfig, parse_config
from modelyard.training.objective import Objective
from modelyard.training.preprocess import row_shape_fits

ArrayLike = np.ndarray | torch.Tensor
_BATCH_ROWS = 65536


def load_xy(
    files: Mapping[str, Path],
    kind: Literal["table", "arrays"],
    label: str | None,
    features: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X`` (``[N, ...]``) and labels ``y`` (``[N]`` or ``[N, k]``) of a data set.

    ``files`` maps names to paths. For ``arrays``, ``label`` names the label array
    (default ``y``) and ``features`` at most one feature array (default ``x``); both come
    back memory-mapped. For ``table``, ``label`` names the label column and ``features``
    the feature columns (default: every other column).
    """
    if kind == "arrays":
        return _load_arrays(files, label, features)
    if kind == "table":
        return _load_table(files, label, features)
    raise InvalidInput(f"kind: must be 'table' or 'arrays', not {kind!r}")


def _load_npy(path: Path, name: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{name}: cannot be read as a numeric .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{name}: is not a single .npy array")
    return array


def _load_arrays(
    files: Mapping[str, Path], label: str | None, features: list[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    arrays = {Path(key).name.removesuffix(".npy"): Path(path) for key, path in files.items()}
    arrays = {name: path for name, path in arrays.items() if path.suffix == ".npy"}
    if not arrays:
        raise InvalidInput("data: the data set holds no .npy arrays")
    names = ", ".join(sorted(arrays))
    label_name = label if label is not None else ("y" if "y" in arrays else None)
    if label_name is None or label_name not in arrays:
        raise InvalidInput(f"label: name the label array, one of {names}")
    if features is not None and len(features) != 1:
        raise InvalidInput("features: name exactly one feature array")
    others = sorted(name for name in arrays if name != label_name)
    if features is not None:
        feature_name = features[0]
    elif "x" in arrays and label_name != "x":
        feature_name = "x"
    elif len(others) == 1:
        feature_name = others[0]
    else:
        raise InvalidInput(f"features: name the feature array, one of {names}")
    if feature_name not in arrays or feature_name == label_name:
        raise InvalidInput(f"features[0]: {feature_name!r} is not a feature array of {names}")
    x = _load_npy(arrays[feature_name], "features")
    y = _load_npy(arrays[label_name], "label")
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    return x, y


def _load_table(
    files: Mapping[str, Path], label: str | None, features: list[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _parquet_path(files)
    handle = pq.ParquetFile(path)
    schema = handle.schema_arrow
    columns = list(schema.names)
    if label is None or label not in columns:
        raise InvalidInput(f"label: name the label column, one of {', '.join(columns)}")
    chosen = features if features is not None else [c for c in columns if c != label]
    if not chosen:
        raise InvalidInput("features: the table has no feature columns besides the label")
    for index, name in enumerate(chosen):
        if name not in columns:
            raise InvalidInput(f"features[{index}]: column {name!r} is not in the table")
        if name == label:
            raise InvalidInput(f"features[{index}]: {name!r} is the label column")
        kind = schema.field(name).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise InvalidInput(
                f"features[{index}]: column {name!r} has type {kind}; features must be numeric"
            )
    x = np.empty((handle.metadata.num_rows, len(chosen)), dtype=np.float32)
    labels: list[np.ndarray] = []
    offset = 0
    for batch in handle.iter_batches(batch_size=_BATCH_ROWS, columns=[*chosen, label]):
        size = batch.num_rows
        for index, name in enumerate(chosen):
            column = batch.column(index)
            if column.null_count:
                raise InvalidInput(f"features[{index}]: column {name!r} has missing values")
            x[offset : offset + size, index] = column.to_numpy(zero_copy_only=False)
        labels.append(_label_values(batch.column(len(chosen)), label))
        offset += size
    y = np.concatenate(labels) if labels else np.empty(0)
    return x, y


def _parquet_path(files: Mapping[str, Path]) -> Path:
    for key in ("data.parquet", "data"):
        if key in files:
            return Path(files[key])
    found = [Path(p) for p in files.values() if Path(p).suffix == ".parquet"]
    if len(found) != 1:
        raise InvalidInput("data: expected one Parquet file, data.parquet")
    return found[0]


def _label_values(column: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    if column.null_count:
        raise InvalidInput(f"label: column {name!r} has missing values")
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    values: np.ndarray = column.to_numpy(zero_copy_only=False)
    return values


def _numpy_dtype(dtype: np.dtype[Any] | torch.dtype | str) -> np.dtype[Any]:
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype
    return np.dtype(dtype)


def check_fit(
    spec: ArchSpec | Mapping[str, Any],
    config: TrainConfig | Mapping[str, Any],
    x_shape: Sequence[int],
    x_dtype: np.dtype[Any] | torch.dtype | str,
    y: ArrayLike,
    *,
    split: str = "training",
) -> None:
    """Raise InvalidInput naming the field when ``spec`` and ``config`` do not fit the data.

    Checks the input shape (flat rows may be reshaped: ``[64]`` fits ``[1, 8, 8]``), the
    feature dtype, the label count, and labels against the task and ``num_outputs``.
    """
    parsed = parse_spec(spec)
    objective = Objective.resolve(parsed, parse_config(config))
    labels = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rows = int(x_shape[0]) if len(x_shape) else 0
    if rows == 0:
        raise InvalidInput(f"data: the {split} set has no rows")
    if len(labels) != rows:
        raise InvalidInput(f"label: the {split} set has {len(labels)} labels for {rows} rows")
    row = [int(d) for d in x_shape[1:]]
    if not row_shape_fits(row, parsed.input_shape):
        raise InvalidInput(
            f"spec.input_shape: {parsed.input_shape} does not fit the {split} data, "
            f"whose rows have shape {row}"
        )
    if _numpy_dtype(x_dtype).kind not in "biuf":
        raise InvalidInput(f"features: must be numeric, got dtype {_numpy_dtype(x_dtype)}")
    if objective.task == "regression":
        _check_targets(parsed, labels)
    else:
        _check_classes(parsed, labels)


def _check_targets(spec: ArchSpec, labels: np.ndarray) -> None:
    if labels.dtype.kind not in "biuf":
        raise InvalidInput(f"label: regression needs numeric targets, got dtype {labels.dtype}")
    if labels.ndim > 2:
        raise InvalidInput("label: must be one value or one row of values per example")
    columns = 1 if labels.ndim == 1 else labels.shape[1]
    if columns != spec.num_outputs:
        raise InvalidInput(
            f"spec.num_outputs: the label has {columns} column(s) but the spec has "
            f"{spec.num_outputs} output(s)"
        )
    if not np.isfinite(labels).all():
        raise InvalidInput("label: contains NaN or infinite values")


def _check_classes(spec: ArchSpec, labels: np.ndarray) -> None:
    outputs = spec.num_outputs
    if labels.ndim == 2:
        if labels.shape[1] != outputs or labels.dtype.kind not in "biuf":
            raise InvalidInput(
                f"spec.num_outputs: multi-label targets need {outputs} numeric column(s), "
                f"got {labels.shape[1]} of dtype {labels.dtype}"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise InvalidInput("label: multi-label targets must lie in [0, 1]")
        return
    if labels.ndim != 1:
        raise InvalidInput("label: classification needs one class per example")
    if labels.dtype.kind in "OUS":
        classes = sorted({str(v) for v in labels})
        limit = 2 if outputs == 1 else outputs
        if len(classes) > limit:
            raise InvalidInput(
                f"spec.num_outputs: the label has {len(classes)} classes "
                f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) "
                f"but the spec has {outputs} output(s)"
            )
        return
    if labels.dtype.kind not in "biuf":
        raise InvalidInput(f"label: class labels must be ids or names, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise InvalidInput("label: contains NaN or infinite values")
        fractional = labels[labels != np.round(labels)]
        if fractional.size:
            raise InvalidInput(
                f"spec.task: the labels have fractional values (e.g. {fractional[0]:g}); "
                "classification needs class ids, set task to regression for numeric targets"
            )
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise InvalidInput(f"label: class ids must be >= 0, found {low}")
    if outputs == 1 and high > 1:
        raise InvalidInput(
            f"spec.num_outputs: one output takes labels 0 and 1, found {high}; "
            "set num_outputs to the number of classes"
        )
    if outputs > 1 and high >= outputs:
        raise InvalidInput(
            f"spec.num_outputs: the labels go up to {high}, which needs {high + 1} outputs, "
            f"but the spec has {outputs}"
        )
