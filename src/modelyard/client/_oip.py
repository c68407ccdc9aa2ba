"""The Open Inference Protocol (v2) inference body, with the binary tensor data extension.

A request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the
input tensors' bytes, in input order, each input declaring its share in
``parameters.binary_data_size``; the ``binary_data_output`` parameter asks for the outputs
the same way. Binary tensors are little-endian, row-major and unpadded; ``BOOL`` is one byte
per element and ``BYTES`` is, per element, a 4-byte little-endian length and the bytes.
An answer may mix binary outputs and outputs with JSON ``data``; both are decoded here.

This module needs numpy, so the SDK imports it only when a prediction is made.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.client._exceptions import ModelyardError

HEADER_LENGTH = "Inference-Header-Content-Length"

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<f4"),
    "BYTES": np.dtype(object),
}
"""The numpy dtype of each protocol datatype (``BF16`` arrives widened to float32)."""

_DATATYPES = {
    (dtype.kind, dtype.itemsize): name
    for name, dtype in NUMPY_DTYPES.items()
    if name not in ("BF16", "BYTES")
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class InferAnswer:
    """A decoded inference answer: the version that computed it and its outputs by name."""

    model_version: str | None
    outputs: dict[str, npt.NDArray[Any]]


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype of a numpy dtype: ``float32`` → ``FP32``, ``str`` → ``BYTES``."""
    if dtype.kind in "OSU":
        return "BYTES"
    datatype = _DATATYPES.get((dtype.kind, dtype.itemsize))
    if datatype is None:
        raise ValueError(f"arrays of {dtype} cannot be sent; convert them to a numeric dtype")
    return datatype


def encode_request(inputs: Mapping[str, npt.NDArray[Any]]) -> tuple[bytes, dict[str, str]]:
    """A binary inference request for ``inputs`` asking for binary outputs: body, headers."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in inputs.items():
        datatype = datatype_of(array.dtype)
        blob = _to_bytes(array, datatype)
        tensors.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    document = {"inputs": tensors, "parameters": {"binary_data_output": True}}
    header = json.dumps(document, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *blobs]), headers


def _to_bytes(array: npt.NDArray[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = item.encode() if isinstance(item, str) else bytes(item)
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def decode_response(body: bytes, header_length: int | None) -> InferAnswer:
    """Decode an inference answer; ``header_length`` is its ``Inference-Header-Content-Length``.

    Raises ModelyardError when the answer does not follow the protocol.
    """
    if header_length is None:
        header_length = len(body)
    if not 0 <= header_length <= len(body):
        raise _malformed(f"{HEADER_LENGTH} is {header_length} for a body of {len(body)} bytes")
    try:
        document = json.loads(body[:header_length])
    except ValueError as exc:
        raise _malformed(f"its JSON header does not parse ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("outputs"), list):
        raise _malformed('it has no "outputs" list')
    version = document.get("model_version")
    binary = memoryview(body)[header_length:]
    outputs: dict[str, npt.NDArray[Any]] = {}
    used = 0
    for tensor in document["outputs"]:
        name, array, size = _decode_output(tensor, binary[used:])
        outputs[name] = array
        used += size
    if used != len(binary):
        raise _malformed(f"{len(binary) - used} bytes follow the last output")
    return InferAnswer(None if version is None else str(version), outputs)


def _decode_output(tensor: Any, rest: memoryview) -> tuple[str, npt.NDArray[Any], int]:
    """One output: its name, its array and how many binary bytes it took."""
    try:
        name = str(tensor["name"])
        datatype = str(tensor["datatype"])
        shape = [int(d) for d in tensor["shape"]]
        dtype = NUMPY_DTYPES[datatype]
    except (KeyError, TypeError, ValueError):
        raise _malformed(
            f"output {tensor!r:.200} lacks a name, a known datatype or a shape"
        ) from None
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        data = tensor.get("data")
        try:
            if datatype == "BYTES":
                items = [i.encode() if isinstance(i, str) else i for i in _flat(data)]
                array = np.empty(len(items), dtype=object)
                array[:] = items
            else:
                array = np.asarray(data, dtype=dtype).reshape(-1)
        except (TypeError, ValueError):
            raise _malformed(f"output {name!r} has data that is not {datatype}") from None
        if array.size != math.prod(shape):
            raise _malformed(f"output {name!r} has {array.size} values for shape {shape}")
        return name, array.reshape(shape), 0
    if not isinstance(size, int) or not 0 <= size <= len(rest):
        raise _malformed(f"output {name!r} declares {size} bytes, {len(rest)} are left")
    raw = rest[:size]
    if datatype == "BYTES":
        return name, _bytes_array(name, raw, shape), size
    itemsize = 2 if datatype == "BF16" else dtype.itemsize
    if size != math.prod(shape) * itemsize:
        raise _malformed(f"output {name!r} has {size} bytes for shape {shape} of {datatype}")
    if datatype == "BF16":
        widened = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        return name, widened.view("<f4").reshape(shape), size
    # A copy: the caller owns a writable array, not a view into the response body.
    return name, np.frombuffer(raw, dtype=dtype).reshape(shape).copy(), size


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [item for part in data for item in _flat(part)]


def _bytes_array(name: str, raw: memoryview, shape: list[int]) -> npt.NDArray[Any]:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < _LENGTH.size:
            raise _malformed(f"output {name!r}: BYTES data ends inside a length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if length > len(raw) - offset:
            raise _malformed(f"output {name!r}: a BYTES element runs past its data")
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if len(items) != math.prod(shape):
        raise _malformed(f"output {name!r} has {len(items)} elements for shape {shape}")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _malformed(reason: str) -> ModelyardError:
    return ModelyardError(f"the server's inference answer is malformed: {reason}")
