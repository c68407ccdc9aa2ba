"""Reading prediction inputs from files and writing outputs to them (needs numpy)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import typer

Array = npt.NDArray[Any]

INPUT_SUFFIXES = (".npy", ".npz", ".json", ".csv")
OUTPUT_SUFFIXES = (".npy", ".npz", ".json")


def load_inputs(path: Path) -> Array | dict[str, Array]:
    """One array, or arrays by input name, from ``path``.

    ``.npy``: one array. ``.npz``: each array an input by its name (a file of one unnamed
    array, as ``np.savez(f, x)`` writes, is that array). ``.json``: ``{"inputs": ...}``
    with a nested list or an object of them by name, or a bare nested list. ``.csv``: rows
    of numbers, after an optional header row.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array: Array = np.load(path, allow_pickle=False)
            return array
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays: dict[str, Array] = {name: npz[name] for name in npz.files}
            if list(arrays) == ["arr_0"]:
                return arrays["arr_0"]
            if not arrays:
                raise ValueError("the file holds no arrays")
            return arrays
        if suffix == ".json":
            document: Any = json.loads(path.read_text(encoding="utf-8"))
            return _from_json(document)
        if suffix == ".csv":
            return _from_csv(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--input") from None
    raise typer.BadParameter(
        f"{path}: expected one of {', '.join(INPUT_SUFFIXES)}", param_hint="--input"
    )


def _from_json(document: Any) -> Array | dict[str, Array]:
    inputs = document.get("inputs") if isinstance(document, Mapping) else document
    if isinstance(inputs, Mapping) and inputs:
        return {str(name): _regular(value, str(name)) for name, value in inputs.items()}
    if isinstance(inputs, list):
        return _regular(inputs, "inputs")
    raise ValueError('expected {"inputs": [[...], ...]}, {"inputs": {"name": [...]}} or a list')


def _regular(value: Any, where: str) -> Array:
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(f"{where}: the rows are not all the same length") from None
    if array.dtype == object:
        raise ValueError(f"{where}: the rows are not all the same length")
    return array


def _from_csv(path: Path) -> Array:
    with path.open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.reader(file) if row]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise ValueError("no rows of numbers")
    for number, row in enumerate(rows, start=1):
        if not _numeric(row):
            raise ValueError(f"row {number} holds something that is not a number: {row}")
    return _regular([[float(cell) for cell in row] for row in rows], "rows")


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def check_output_path(path: Path) -> None:
    """Fail before predicting if ``path`` is not a file type outputs can be saved to."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise typer.BadParameter(
            f"{path}: expected one of {', '.join(OUTPUT_SUFFIXES)}", param_hint="--output"
        )


def save_outputs(path: Path, outputs: Mapping[str, Array]) -> None:
    """Write ``outputs`` to ``path``: ``.npy`` (one output), ``.npz`` or ``.json``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(outputs) != 1:
            raise typer.BadParameter(
                f"the deployment gave {len(outputs)} outputs ({', '.join(outputs)}); "
                "a .npy file holds one: save to .npz or .json",
                param_hint="--output",
            )
        np.save(path, next(iter(outputs.values())), allow_pickle=False)
    elif suffix == ".npz":
        np.savez(path, allow_pickle=False, **dict(outputs))
    else:
        document = {"outputs": {name: as_json(array) for name, array in outputs.items()}}
        path.write_text(json.dumps(document) + "\n", encoding="utf-8")


def as_json(array: Array) -> Any:
    """An array as nested lists JSON can hold (bytes elements as text)."""
    if array.dtype == object:
        flat = np.empty(array.size, dtype=object)
        flat[:] = [_text(item) for item in array.reshape(-1)]
        return flat.reshape(array.shape).tolist()
    return array.tolist()


def _text(item: Any) -> Any:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
