"""Tensor data as JSON in the Open Inference Protocol: the ``"data"`` member of a tensor.

Elements come row-major, either as one flat JSON array or nested in the tensor's natural
shape. Numbers for the numeric datatypes, ``true``/``false`` for ``BOOL`` and strings for
``BYTES`` (sent as their UTF-8 bytes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInput, ModelyardError

_FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64", "BF16"})

_KIND_NAMES = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "non-integer numbers",
    "U": "strings",
}


def element_count_error(where: str, shape: list[int], got: int) -> InvalidInput:
    """The error for data whose element count does not fit the declared shape."""
    return InvalidInput(f"{where}: shape {shape} needs {math.prod(shape)} elements, got {got}")


def decode_json_data(
    name: str, datatype: str, dtype: np.dtype[Any], shape: list[int], data: Any
) -> npt.NDArray[Any]:
    """Turn the JSON ``data`` of input ``name`` into an array of ``shape`` and ``dtype``.

    Raises InvalidInput when the data is not an array, is ragged, holds the wrong kind of
    values for ``datatype`` (strings for ``FP32``, floats for ``INT32``, numbers for ``BOOL``),
    holds integers outside the datatype's range, or has the wrong number of elements.
    """
    where = f"input {name!r}"
    if not isinstance(data, list):
        raise InvalidInput(f'{where}: "data" must be a JSON array, got {type(data).__name__}')
    if datatype == "BYTES":
        return _decode_strings(where, shape, data)
    try:
        array = np.array(data)
    except ValueError:
        raise InvalidInput(
            f'{where}: "data" is neither a flat list nor a regular nested list'
        ) from None
    if array.size != math.prod(shape):
        raise element_count_error(where, shape, array.size)
    if array.size == 0:
        return np.empty(shape, dtype=dtype)
    # numpy infers the common type of the elements in C; only mixtures it cannot type
    # exactly (nulls, huge integers, int64 next to uint64 values) need a look at each one.
    kinds, wanted = _accepted(datatype)
    kind = array.dtype.kind
    if kind == "O" or (kinds == "iu" and kind == "f"):
        array = np.array(data, dtype=object)
        for value in array.flat:
            if _kind_of(value) not in kinds:
                raise _kind_error(where, datatype, _kind_of(value), wanted)
    elif kind not in kinds:
        raise _kind_error(where, datatype, kind, wanted)
    if kinds == "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(
                f"{where}: values out of range for {datatype} [{info.min}, {info.max}]"
            )
    try:
        return array.astype(dtype, copy=False).reshape(shape)
    except OverflowError:
        raise InvalidInput(f"{where}: values out of range for {datatype}") from None


def _accepted(datatype: str) -> tuple[str, str]:
    """The numpy kinds of JSON values ``datatype`` accepts, and their name for errors."""
    if datatype == "BOOL":
        return "b", "true/false"
    if datatype in _FLOAT_DATATYPES:
        return "iuf", "numbers"
    return "iu", "integers"


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "i"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "U"
    return "null" if value is None else "object"


def _kind_error(where: str, datatype: str, kind: str, wanted: str) -> InvalidInput:
    found = _KIND_NAMES.get(kind, f"{kind}s")
    return InvalidInput(f'{where}: "data" holds {found}, but {datatype} needs {wanted}')


def _decode_strings(where: str, shape: list[int], data: list[Any]) -> npt.NDArray[Any]:
    flat: list[bytes] = []
    pending = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, str):
                flat.append(item.encode("utf-8"))
            elif isinstance(item, list):
                pending.append(iter(item))
                break
            else:
                raise _kind_error(where, "BYTES", _kind_of(item), "strings")
        else:
            pending.pop()
    if len(flat) != math.prod(shape):
        raise element_count_error(where, shape, len(flat))
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def encode_json_data(name: str, datatype: str, array: npt.NDArray[Any]) -> list[Any]:
    """The flat, row-major JSON ``data`` list of output ``name``.

    ``BYTES`` elements are sent as strings, so they must be valid UTF-8; InvalidInput says
    to ask for the output as binary data otherwise. ``BF16`` values are sent as floats.
    """
    if datatype == "BYTES":
        return [_as_text(name, index, item) for index, item in enumerate(array.reshape(-1))]
    if datatype == "BF16":
        array = array.astype(np.float32)
    return array.reshape(-1).tolist()


def _as_text(name: str, index: int, item: object) -> str:
    if isinstance(item, str):
        return str(item)
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output {name!r}: element {index} is not valid UTF-8, so it cannot be sent "
                'as JSON; request the output with "binary_data": true'
            ) from None
    raise ModelyardError(
        f"output {name!r}: BYTES elements must be bytes or str, got {type(item).__name__}"
    )
