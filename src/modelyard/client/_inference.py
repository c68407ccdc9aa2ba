"""Predictions: NumPy arrays in, NumPy arrays out.

Small requests go to ``POST /api/v1/deployments/{name}/predict`` as nested JSON lists;
large ones (over :data:`BINARY_THRESHOLD` bytes of input), and any with values JSON cannot
carry (NaN, infinities, strings), go to the Open Inference Protocol's
``/v2/models/{name}/infer`` as binary tensors, which moves the bytes as they are. Inputs
are cast to the datatypes the served model declares, so ``float64`` or integer arrays reach
an ``FP32`` model as float32 either way; outputs come back with the model's datatypes.

This module needs numpy, so the SDK imports it only when a prediction is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from modelyard.client._exceptions import ModelyardError
from modelyard.client._http import HTTP, seg
from modelyard.client._oip import HEADER_LENGTH, NUMPY_DTYPES, decode_response, encode_request
from modelyard.client._types import ServedVersion, TensorInfo

BINARY_THRESHOLD = 64 * 1024
"""Inputs larger than this many bytes are sent as binary tensors rather than JSON."""

Array: TypeAlias = npt.NDArray[Any]
Prediction: TypeAlias = Array | dict[str, Array]


def predict(
    http: HTTP,
    name: str,
    served: Sequence[ServedVersion],
    x: npt.ArrayLike | Mapping[str, npt.ArrayLike],
    *,
    version: int | str | None,
    binary: bool | None,
) -> Prediction:
    """Run ``x`` through deployment ``name``; ``served`` is what it was last seen serving.

    A single array gives the single output as an array (a dict when there are several);
    a dict of named inputs gives a dict of named outputs.
    """
    pinned = None if version is None else str(version)
    known = _served(served, pinned)
    declared = {t.name: t for t in known.inputs} if known else {}
    inputs: dict[str, Array] | Array
    if isinstance(x, Mapping):
        named = {str(k): _conform(np.asarray(v), declared.get(str(k))) for k, v in x.items()}
        inputs, arrays = named, list(named.values())
    else:
        only = next(iter(declared.values())) if len(declared) == 1 else None
        single = _conform(np.asarray(x), only)
        inputs, arrays = single, [single]
    if binary is None:
        size = sum(a.nbytes for a in arrays)
        binary = size > BINARY_THRESHOLD or not all(_fits_json(a) for a in arrays)
    if binary:
        if not isinstance(inputs, dict):
            inputs = {_input_name(http, name, pinned, known): inputs}
        outputs = _infer_binary(http, name, pinned, inputs)
    else:
        outputs = _predict_json(http, name, pinned, inputs, served)
    if isinstance(x, Mapping) or len(outputs) != 1:
        return outputs
    return next(iter(outputs.values()))


def _served(served: Sequence[ServedVersion], pinned: str | None) -> ServedVersion | None:
    if pinned is not None:
        return next((s for s in served if str(s.version) == pinned), None)
    return served[0] if served else None


def _conform(array: Array, declared: TensorInfo | None) -> Array:
    """``array`` in the datatype the model declares for it (float32 when it declares none).

    Only casts within a kind or towards floats are made; floats meant for an integer
    input are sent as they are, for the server to refuse rather than to be truncated here.
    """
    if array.dtype.kind not in "biuf":
        return array
    target = NUMPY_DTYPES.get(declared.datatype or "") if declared else None
    if target is None or target.kind not in "biuf":
        return array.astype(np.float32) if array.dtype == np.float64 else array
    if not np.can_cast(array.dtype, target, casting="same_kind"):
        return array
    return array.astype(target, copy=False)


def _fits_json(array: Array) -> bool:
    if array.dtype.kind == "f":
        return bool(np.isfinite(array).all())
    return array.dtype.kind in "biu"


def _predict_json(
    http: HTTP,
    name: str,
    pinned: str | None,
    inputs: dict[str, Array] | Array,
    served: Sequence[ServedVersion],
) -> dict[str, Array]:
    body: dict[str, Any] = {
        "inputs": (
            {k: v.tolist() for k, v in inputs.items()}
            if isinstance(inputs, dict)
            else inputs.tolist()
        )
    }
    if pinned is not None:
        body["version"] = pinned
    answer = http.object("POST", f"/api/v1/deployments/{seg(name)}/predict", json=body)
    raw_outputs = answer.get("outputs")
    if not isinstance(raw_outputs, dict):
        raise ModelyardError(f"POST predict on '{name}': the answer has no 'outputs' object")
    # The version that answered (a canary split may pick any) declares the datatypes.
    number = answer.get("model_version")
    known = None if number is None else _served(served, str(number))
    declared = {t.name: t for t in known.outputs} if known else {}
    return {str(k): _from_json(str(k), v, declared.get(str(k))) for k, v in raw_outputs.items()}


def _from_json(name: str, value: Any, declared: TensorInfo | None) -> Array:
    """A nested JSON list as an array of the declared datatype (float32 for other floats)."""
    dtype = NUMPY_DTYPES.get(declared.datatype or "") if declared else None
    if dtype is not None and dtype.kind not in "biuf":
        dtype = None
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ModelyardError(f"output {name!r} is not a regular array: {exc}") from None
    if dtype is None and array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def _input_name(http: HTTP, name: str, pinned: str | None, known: ServedVersion | None) -> str:
    """The name of the deployment's one input, from what it serves or from its metadata."""
    if known is not None and known.inputs:
        names = [t.name for t in known.inputs]
    else:
        path = f"/v2/models/{seg(name)}" + (f"/versions/{seg(pinned)}" if pinned else "")
        metadata = http.object("GET", path)
        names = [str(t["name"]) for t in metadata.get("inputs") or ()]
    if len(names) != 1:
        raise ValueError(
            f"deployment '{name}' takes the inputs {names}; pass a dict of arrays by name"
        )
    return names[0]


def _infer_binary(
    http: HTTP, name: str, pinned: str | None, inputs: Mapping[str, Array]
) -> dict[str, Array]:
    path = f"/v2/models/{seg(name)}" + (f"/versions/{seg(pinned)}" if pinned else "") + "/infer"
    body, headers = encode_request(inputs)
    response = http.send("POST", path, content=body, headers=headers)
    length = response.headers.get(HEADER_LENGTH)
    header_length = int(length) if length is not None and length.isdigit() else None
    return decode_response(response.content, header_length).outputs
