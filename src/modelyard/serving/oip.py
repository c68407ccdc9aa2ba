"""The KServe / Triton Open Inference Protocol (v2) over HTTP/REST: request and response bodies.

Pure protocol code: request bytes in, numpy arrays out, and numpy outputs back to response
bytes. Supports tensor data as JSON and Triton's binary tensor data extension, where the
body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the binary
tensors in order. The HTTP layer reads that header, calls :func:`decode_request`, runs the
model and sends what :func:`encode_response` returns::

    request = decode_request(body, header_length=None)
    outputs = model({tensor.name: tensor.array for tensor in request.inputs})
    body, headers = encode_response(
        model_name="resnet", model_version="3", request_id=request.id, outputs=outputs,
        requested=request.outputs, binary_default=request.binary_default,
    )

Shared-memory tensors are refused. ``BF16`` tensors are decoded into float32 arrays, since
numpy has no bfloat16 type of its own.

JSON is read and written by pydantic's Rust parser and serializer (``pydantic_core``), several
times faster than the standard library on tensors of numbers; a document it refuses is read
again by the standard library, whose message (and leniency: lone surrogates, deeper nesting)
the protocol keeps.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pydantic_core

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.serving.oip_binary import decode_binary, encode_binary
from modelyard.serving.oip_json import decode_json_data, encode_json_data

OIP_TO_NUMPY: dict[str, np.dtype[Any]] = {
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
"""The numpy dtype each protocol datatype decodes to.

``BYTES`` becomes an object array of ``bytes``; ``BF16`` becomes float32 (exactly: every
bfloat16 value is a float32 value).
"""

_NUMPY_TO_OIP = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}


@dataclass
class InferInput:
    """One decoded input tensor.

    ``array`` has dtype ``OIP_TO_NUMPY[datatype]`` and shape ``shape``. Arrays decoded from
    binary data are read-only views into the request body; copy them to write.
    """

    name: str
    datatype: str
    shape: list[int]
    array: npt.NDArray[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """An output the client asked for; ``binary`` says whether to send it as binary data."""

    name: str
    binary: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    """A decoded inference request.

    ``outputs`` is None when the client named no outputs (send all of them);
    ``binary_default`` is the request's ``binary_data_output`` parameter, the format for
    outputs that were not requested by name.
    """

    id: str | None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_default: bool = False


def numpy_to_oip(dtype: npt.DTypeLike) -> str:
    """The protocol datatype for a numpy dtype, e.g. ``numpy_to_oip(np.float32) == "FP32"``.

    Object, bytes and str arrays are ``BYTES``; ``ml_dtypes.bfloat16`` is ``BF16``. Raises
    ModelyardError for dtypes the protocol cannot carry (complex, datetime, float128, ...).
    """
    return _datatype(np.dtype(dtype))


@functools.cache
def _datatype(dtype: np.dtype[Any]) -> str:
    # Cached: every answer names the datatype of every output, and a server sees a few.
    if dtype.name == "bfloat16":
        return "BF16"
    if dtype.kind in "OSU":
        return "BYTES"
    datatype = _NUMPY_TO_OIP.get((dtype.kind, dtype.itemsize))
    if datatype is None:
        raise ModelyardError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return datatype


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an inference request body.

    ``header_length`` is the ``Inference-Header-Content-Length`` header: the size of the JSON
    header when binary tensor data follows it, or None when the whole body is JSON. Inputs
    with a ``binary_data_size`` parameter take that many bytes from after the header, in
    input order; the others take their elements from ``"data"``.

    Raises InvalidInput, naming the input and the problem, for malformed JSON, a missing or
    malformed field, an unknown datatype, a negative dimension, data that does not fit the
    shape or datatype, binary data of the wrong size, or bytes no input claims.
    """
    if header_length is None:
        header_length = len(body)
        framed = False
    elif not 0 <= header_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {header_length}, "
            f"but the body has {len(body)} bytes"
        )
    else:
        framed = True
    document = _parse_json(body if header_length == len(body) else body[:header_length])
    if not isinstance(document, dict):
        raise InvalidInput("the request must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('request "id" must be a string')
    parameters = _parameters(document, "the request")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise InvalidInput('request parameter "binary_data_output" must be true or false')
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput('the request must have "inputs", a JSON array')

    binary = memoryview(body)[header_length:]
    used = 0
    inputs: dict[str, InferInput] = {}
    for index, raw in enumerate(raw_inputs):
        tensor, used = _decode_input(index, raw, binary, used, framed)
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} appears more than once")
        inputs[tensor.name] = tensor
    if used != len(binary):
        raise InvalidInput(
            f"{len(binary) - used} trailing bytes after the JSON header and binary inputs"
        )
    return InferRequest(
        id=request_id,
        inputs=list(inputs.values()),
        outputs=_requested_outputs(document.get("outputs"), binary_default),
        parameters=parameters,
        binary_default=binary_default,
    )


def _parse_json(raw: bytes) -> Any:
    try:
        return pydantic_core.from_json(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the request JSON is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed request JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the request JSON nests arrays or objects too deeply") from None


def _parameters(tensor: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f'{where}: "parameters" must be a JSON object')
    return parameters


def _decode_input(
    index: int, raw: Any, binary: memoryview, used: int, framed: bool
) -> tuple[InferInput, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f'inputs[{index}] needs a "name" string')
    where = f"input {name!r}"
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in OIP_TO_NUMPY:
        raise InvalidInput(
            f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(OIP_TO_NUMPY)}"
        )
    dtype = OIP_TO_NUMPY[datatype]
    shape = _shape(where, raw.get("shape"))
    parameters = _parameters(raw, where)
    if "shared_memory_region" in parameters:
        raise InvalidInput(f"{where}: shared-memory tensors are not supported")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise InvalidInput(f'{where}: has neither "data" nor a binary_data_size parameter')
        array = decode_json_data(name, datatype, dtype, shape, raw["data"])
        return InferInput(name, datatype, shape, array, parameters), used
    if "data" in raw:
        raise InvalidInput(f'{where}: has both "data" and a binary_data_size parameter')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
    if not framed:
        raise InvalidInput(
            f"{where}: has binary data, but the request has no "
            "Inference-Header-Content-Length header"
        )
    if size > len(binary) - used:
        raise InvalidInput(
            f"{where}: binary_data_size is {size} bytes, but only {len(binary) - used} "
            "bytes of binary data are left after the JSON header"
        )
    array = decode_binary(name, datatype, dtype, shape, binary[used : used + size])
    return InferInput(name, datatype, shape, array, parameters), used + size


def _shape(where: str, raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) for dim in raw
    ):
        raise InvalidInput(f'{where}: "shape" must be a JSON array of integers')
    if any(dim < 0 for dim in raw):
        raise InvalidInput(f"{where}: shape {raw} has a negative dimension")
    return raw


def _requested_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidInput('request "outputs" must be a JSON array')
    requested: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f'outputs[{index}] must be a JSON object with a "name" string')
        name = item["name"]
        parameters = _parameters(item, f"output {name!r}")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInput(f'output {name!r}: parameter "binary_data" must be true or false')
        if any(seen.name == name for seen in requested):
            raise InvalidInput(f"output {name!r} is requested more than once")
        requested.append(RequestedOutput(name, binary, parameters))
    return requested


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, npt.NDArray[Any]],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encode the model's ``outputs`` as a response body; returns ``(body, headers)``.

    With ``requested`` None every output is sent, as binary data if ``binary_default``;
    otherwise only the requested outputs, in that order and format. Each output's datatype
    follows its numpy dtype (see :func:`numpy_to_oip`). Without binary outputs the body is
    JSON (``Content-Type: application/json``); with any, it is the JSON header followed by
    the binary tensors, each output carrying ``parameters.binary_data_size``, and the headers
    add ``Inference-Header-Content-Length`` (``Content-Type: application/octet-stream``).

    The classification extension's ``classification`` parameter is ignored: outputs are
    sent as tensors, never as top-k labels. Raises InvalidInput if an output is requested
    that the model did not produce, or a ``BYTES`` output that is not UTF-8 is requested as
    JSON.
    """
    if requested is None:
        chosen = [(name, binary_default) for name in outputs]
    else:
        for output in requested:
            if output.name not in outputs:
                raise InvalidInput(
                    f"output {output.name!r} was requested, but the model produces only "
                    f"{', '.join(map(repr, outputs)) or 'no outputs'}"
                )
        chosen = [(output.name, output.binary) for output in requested]

    tensors: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for name, binary in chosen:
        array = np.asarray(outputs[name])
        datatype = numpy_to_oip(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = encode_binary(name, datatype, array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = encode_json_data(name, datatype, array)
        tensors.append(tensor)

    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = parameters
    document["outputs"] = tensors
    header = pydantic_core.to_json(document)
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *blobs]), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def model_metadata(
    name: str,
    versions: list[str],
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The body of ``GET /v2/models/{name}``.

    ``inputs`` and ``outputs`` hold ``{"name", "datatype", "shape"}`` dicts, with -1 for a
    variable dimension, e.g. ``{"name": "x", "datatype": "FP32", "shape": [-1, 3]}``; other
    keys pass through. ValueError if one lacks a key or has an unknown datatype;
    InvalidInput (422) if its datatype is None, not recorded by the model's format.
    """
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_metadata_tensor(tensor) for tensor in inputs],
        "outputs": [_metadata_tensor(tensor) for tensor in outputs],
    }


def _metadata_tensor(tensor: dict[str, Any]) -> dict[str, Any]:
    missing = {"name", "datatype", "shape"} - tensor.keys()
    if missing:
        raise ValueError(f"tensor metadata {tensor!r} lacks {', '.join(sorted(missing))}")
    if tensor["datatype"] is None:
        # The protocol has no "any type"; what is missing is the model's description.
        raise InvalidInput(
            f"the model does not record the datatype and shape of tensor {tensor['name']!r} "
            "(TorchScript records none), so its metadata cannot be given; push the version "
            'with a signature that describes its tensors ({"inputs": [{"name", "datatype", '
            '"shape"}], "outputs": [...]})'
        )
    if tensor["datatype"] not in OIP_TO_NUMPY:
        raise ValueError(f"tensor metadata {tensor!r} has an unknown datatype")
    return {**tensor, "shape": [int(dim) for dim in tensor["shape"]]}


def server_metadata(name: str, version: str, extensions: list[str]) -> dict[str, Any]:
    """The body of ``GET /v2``: server name, version and the protocol extensions it supports.

    >>> server_metadata("modelyard", "0.1.0", ["binary_tensor_data"])
    {'name': 'modelyard', 'version': '0.1.0', 'extensions': ['binary_tensor_data']}
    """
    return {"name": name, "version": version, "extensions": list(extensions)}


def error_body(message: str) -> dict[str, str]:
    """The body of a failed protocol call: ``{"error": message}``."""
    return {"error": message}


__all__ = [
    "OIP_TO_NUMPY",
    "InferInput",
    "InferRequest",
    "RequestedOutput",
    "decode_request",
    "encode_response",
    "error_body",
    "model_metadata",
    "numpy_to_oip",
    "server_metadata",
]
