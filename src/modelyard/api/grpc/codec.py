"""Tensors of the Open Inference Protocol's gRPC messages to numpy arrays and back.

A request carries each input's elements either in its typed ``contents`` (``fp32_contents``,
``int64_contents``, ``bytes_contents``, ...) or, for every input at once, in
``raw_input_contents``: one buffer per input in Triton's binary tensor layout, decoded by
the same code as the HTTP binary tensor extension. The answer comes back the way the inputs
came: raw when they were raw (what tritonclient sends and Triton answers), typed contents
when they were typed, unless an output's datatype has no typed field (FP16, BF16), in which
case every output is raw. Errors name the tensor and the problem, in the words the HTTP
route uses where the problem is the same::

    inputs = decode_inputs(request)
    outputs = model(inputs)
    response = encode_response(request, "mlp", "1", outputs, requested_outputs(request))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.api.grpc import grpc_service_pb2 as pb
from modelyard.errors import InvalidInput
from modelyard.serving.oip import OIP_TO_NUMPY, numpy_to_oip
from modelyard.serving.oip_binary import decode_binary, element_bytes, encode_binary
from modelyard.serving.oip_json import element_count_error

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The field of ``InferTensorContents`` that holds each datatype's elements (FP16 and BF16
have none: they travel raw only)."""

_ALL_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, npt.NDArray[Any]]:
    """The request's input tensors by name, as arrays of their datatype and shape.

    Raw arrays are read-only views of the request's buffers. Raises InvalidInput for a
    nameless or repeated input, an unknown datatype, a negative dimension, a shared-memory
    input, raw contents that do not pair one to one with the inputs, data of the wrong size
    or in the wrong field, or integers out of their datatype's range.
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries, but the request has "
            f"{len(request.inputs)} inputs: send every input's data there, in order, or none"
        )
    inputs: dict[str, npt.NDArray[Any]] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f'inputs[{index}] needs a "name"')
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears more than once")
        inputs[name] = _decode_input(tensor, raw[index] if raw else None, index)
    return inputs


def _decode_input(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, index: int
) -> npt.NDArray[Any]:
    where = f"input {tensor.name!r}"
    datatype = tensor.datatype
    if datatype not in OIP_TO_NUMPY:
        raise InvalidInput(
            f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(OIP_TO_NUMPY)}"
        )
    shape = list(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"{where}: shape {shape} has a negative dimension")
    if "shared_memory_region" in tensor.parameters:
        raise InvalidInput(f"{where}: shared-memory tensors are not supported")
    dtype = OIP_TO_NUMPY[datatype]
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidInput(f"{where}: has both contents and raw_input_contents")
        if datatype != "BYTES":
            needed = math.prod(shape) * (2 if datatype == "BF16" else dtype.itemsize)
            if len(raw) != needed:
                raise InvalidInput(
                    f"{where}: raw_input_contents[{index}] has {len(raw)} bytes, but shape "
                    f"{shape} of {datatype} needs {needed}"
                )
        return decode_binary(tensor.name, datatype, dtype, shape, memoryview(raw))
    return _decode_contents(where, datatype, dtype, shape, tensor.contents)


def _decode_contents(
    where: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: list[int],
    contents: pb.InferTensorContents,
) -> npt.NDArray[Any]:
    field = CONTENTS_FIELD.get(datatype)
    others = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if field is None:
        raise InvalidInput(
            f"{where}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    if others:
        raise InvalidInput(
            f"{where}: {datatype} elements go in contents.{field}, but contents.{others[0]} is set"
        )
    values: Sequence[Any] = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise element_count_error(where, shape, len(values))
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.array(values, dtype=_FIELD_DTYPE[field])
    if dtype.kind in "iu" and dtype.itemsize < wide.dtype.itemsize and count:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInput(
                f"{where}: values out of range for {datatype} [{info.min}, {info.max}]"
            )
    return wide.astype(dtype, copy=False).reshape(shape)


_FIELD_DTYPE: dict[str, npt.DTypeLike] = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def requested_outputs(request: pb.ModelInferRequest) -> list[str] | None:
    """The names of the outputs asked for, in order; None when none are named (send all)."""
    names: list[str] = []
    for index, output in enumerate(request.outputs):
        if not output.name:
            raise InvalidInput(f'outputs[{index}] needs a "name"')
        if output.name in names:
            raise InvalidInput(f"output {output.name!r} is requested more than once")
        names.append(output.name)
    return names or None


def encode_response(
    request: pb.ModelInferRequest,
    model_name: str,
    model_version: str | None,
    outputs: Mapping[str, npt.NDArray[Any]],
    wanted: list[str] | None,
) -> pb.ModelInferResponse:
    """The response to ``request``: the ``wanted`` outputs (what :func:`requested_outputs`
    found; None: all of them), each with its datatype (following its numpy dtype) and shape.

    Raises InvalidInput when an output is asked for that the model does not produce.
    """
    if wanted is None:
        wanted = list(outputs)
    else:
        for name in wanted:
            if name not in outputs:
                raise InvalidInput(
                    f"output {name!r} was requested, but the model produces only "
                    f"{', '.join(map(repr, outputs)) or 'no outputs'}"
                )
    arrays = [(name, np.asarray(outputs[name])) for name in wanted]
    datatypes = [numpy_to_oip(array.dtype) for _, array in arrays]
    raw = bool(request.raw_input_contents) or any(d not in CONTENTS_FIELD for d in datatypes)
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version or "", id=request.id
    )
    for (name, array), datatype in zip(arrays, datatypes, strict=True):
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(bytes(encode_binary(name, datatype, array)))
        elif datatype == "BYTES":
            elements = (element_bytes(name, item) for item in array.reshape(-1))
            tensor.contents.bytes_contents.extend(elements)
        else:
            values: list[Any] = array.reshape(-1).tolist()
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)
    return response
