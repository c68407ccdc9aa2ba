"""The gRPC messages and their tensor codec, checked against tritonclient.grpc's own messages
(without a server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as tgrpc
from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2 as triton_pb

from modelyard.api.grpc import GrpcServer, codec
from modelyard.api.grpc import grpc_service_pb2 as pb
from modelyard.api.grpc.server import address
from modelyard.api.grpc.service import bearer_key
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.platform import Platform
from modelyard.serving.oip import OIP_TO_NUMPY

RAW_DATATYPES = [name for name in OIP_TO_NUMPY if name != "BF16"]
TYPED_DATATYPES = list(codec.CONTENTS_FIELD)


def sample(datatype: str) -> npt.NDArray[Any]:
    """A 2x3 array of ``datatype`` that includes the extremes of its range."""
    if datatype == "BYTES":
        values = [b"", b"hello", "héllo ✓".encode(), b"a,b", b"x" * 300, b"\x00end"]
        return np.array(values, dtype=object).reshape(2, 3)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    dtype = OIP_TO_NUMPY[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max, 0], [1, 7, info.max - 1]], dtype=dtype)
    return np.array([[-1.5, 0.0, 3.25], [1e-3, 65504.0, -2.0]], dtype=dtype)


def as_ours(message: Any) -> pb.ModelInferRequest:
    """A request tritonclient built, as the server receives it: bytes on the wire."""
    return pb.ModelInferRequest.FromString(message.SerializeToString())


def client_request(*inputs: tuple[str, npt.NDArray[Any], str]) -> pb.ModelInferRequest:
    """The request ``tritonclient.grpc`` sends for these inputs (raw contents)."""
    tensors = []
    for name, array, datatype in inputs:
        tensor = tgrpc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    request = triton_pb.ModelInferRequest(model_name="m")
    request.inputs.extend(t._get_tensor() for t in tensors)
    request.raw_input_contents.extend(t._get_content() for t in tensors)
    return as_ours(request)


def typed_request(name: str, datatype: str, shape: list[int], **contents: Any) -> Any:
    request = triton_pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return as_ours(request)


def invalid(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value.detail


# -- the wire contract --------------------------------------------------------------------------


def _fields(descriptor: Any) -> dict[str, tuple[int, int, str]]:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return {f.name: (f.number, f.type, f.type_name) for f in proto.field}


def _messages(descriptor: Any, prefix: str = "") -> dict[str, Any]:
    found = {}
    for name, message in descriptor.message_types_by_name.items():
        found[prefix + name] = message
        for nested in message.nested_types:
            found[f"{prefix}{name}.{nested.name}"] = nested
            for inner in nested.nested_types:
                found[f"{prefix}{name}.{nested.name}.{inner.name}"] = inner
    return found


def test_messages_and_service_match_tritonclients_on_the_wire() -> None:
    ours, theirs = _messages(pb.DESCRIPTOR), _messages(triton_pb.DESCRIPTOR)
    assert pb.DESCRIPTOR.package == "inference"
    for name, message in ours.items():
        assert message.full_name == theirs[name].full_name
        assert _fields(message) == _fields(theirs[name]), name
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    triton_service = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        other = triton_service.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", RAW_DATATYPES)
def test_decodes_the_raw_contents_tritonclient_sends(datatype: str) -> None:
    array = sample(datatype)
    decoded = codec.decode_inputs(client_request(("x", array, datatype)))
    assert list(decoded) == ["x"]
    assert decoded["x"].dtype == OIP_TO_NUMPY[datatype] and decoded["x"].shape == (2, 3)
    np.testing.assert_array_equal(decoded["x"], array)


def test_decodes_raw_bf16_into_float32() -> None:
    array = np.array([[1.5, -2.0, 0.0]], dtype=ml_dtypes.bfloat16)
    request = typed_request("x", "BF16", [1, 3])
    request.raw_input_contents.append(array.tobytes())
    decoded = codec.decode_inputs(request)["x"]
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, array.astype(np.float32))


@pytest.mark.parametrize("datatype", TYPED_DATATYPES)
def test_decodes_typed_contents(datatype: str) -> None:
    array = sample(datatype)
    field = codec.CONTENTS_FIELD[datatype]
    request = typed_request("x", datatype, [2, 3], **{field: array.ravel().tolist()})
    decoded = codec.decode_inputs(request)["x"]
    assert decoded.dtype == OIP_TO_NUMPY[datatype]
    np.testing.assert_array_equal(decoded, array)


def test_several_inputs_keep_their_order_and_data() -> None:
    a, b = sample("FP32"), sample("INT64")
    decoded = codec.decode_inputs(client_request(("a", a, "FP32"), ("b", b, "INT64")))
    assert list(decoded) == ["a", "b"]
    np.testing.assert_array_equal(decoded["b"], b)


def test_refuses_malformed_tensors_naming_the_problem() -> None:
    x = np.zeros((1, 4), dtype=np.float32)
    one = client_request(("x", x, "FP32"))

    wrong_size = client_request(("x", x, "FP32"))
    wrong_size.raw_input_contents[0] = b"\0" * 12
    assert invalid(lambda: codec.decode_inputs(wrong_size)) == (
        "input 'x': raw_input_contents[0] has 12 bytes, but shape [1, 4] of FP32 needs 16"
    )
    two = client_request(("x", x, "FP32"), ("y", x, "FP32"))
    del two.raw_input_contents[1]
    assert "raw_input_contents has 1 entries, but the request has 2 inputs" in invalid(
        lambda: codec.decode_inputs(two)
    )
    both = pb.ModelInferRequest()
    both.CopyFrom(one)
    both.inputs[0].contents.fp32_contents.extend([0.0] * 4)
    assert "both contents and raw_input_contents" in invalid(lambda: codec.decode_inputs(both))
    twice = client_request(("x", x, "FP32"), ("x", x, "FP32"))
    assert invalid(lambda: codec.decode_inputs(twice)) == "input 'x' appears more than once"
    nameless = client_request(("", x, "FP32"))
    assert invalid(lambda: codec.decode_inputs(nameless)) == 'inputs[0] needs a "name"'

    unknown = typed_request("x", "FP8", [1])
    assert "unknown datatype 'FP8'" in invalid(lambda: codec.decode_inputs(unknown))
    negative = typed_request("x", "FP32", [-1, 4], fp32_contents=[0.0] * 4)
    assert "has a negative dimension" in invalid(lambda: codec.decode_inputs(negative))
    short = typed_request("x", "FP32", [1, 4], fp32_contents=[0.0] * 3)
    assert invalid(lambda: codec.decode_inputs(short)) == (
        "input 'x': shape [1, 4] needs 4 elements, got 3"
    )
    misplaced = typed_request("x", "FP32", [1, 2], fp64_contents=[0.0, 1.0])
    assert invalid(lambda: codec.decode_inputs(misplaced)) == (
        "input 'x': FP32 elements go in contents.fp32_contents, but contents.fp64_contents is set"
    )
    half = typed_request("x", "FP16", [1], fp32_contents=[1.0])
    assert "send it in raw_input_contents" in invalid(lambda: codec.decode_inputs(half))
    too_big = typed_request("x", "INT8", [2], int_contents=[1, 300])
    assert invalid(lambda: codec.decode_inputs(too_big)) == (
        "input 'x': values out of range for INT8 [-128, 127]"
    )
    bools = client_request(("x", np.array([True, False]), "BOOL"))
    bools.raw_input_contents[0] = b"\x00\x02"
    assert "BOOL bytes must be 0 or 1" in invalid(lambda: codec.decode_inputs(bools))
    framed = client_request(("x", np.array([b"ab"], dtype=object), "BYTES"))
    framed.raw_input_contents[0] = framed.raw_input_contents[0][:-1]
    assert "declares 2 bytes, but only 1 remain" in invalid(lambda: codec.decode_inputs(framed))
    shared = typed_request("x", "FP32", [1], fp32_contents=[0.0])
    shared.inputs[0].parameters["shared_memory_region"].string_param = "region"
    assert "shared-memory" in invalid(lambda: codec.decode_inputs(shared))


# -- responses ------------------------------------------------------------------------------------


def parsed(response: pb.ModelInferResponse) -> tgrpc.InferResult:
    """The response as tritonclient reads it off the wire."""
    return tgrpc.InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))


@pytest.mark.parametrize("datatype", RAW_DATATYPES)
def test_raw_outputs_read_back_in_tritonclient(datatype: str) -> None:
    array = sample(datatype)
    request = client_request(("x", np.zeros(1, dtype=np.float32), "FP32"))
    response = codec.encode_response(request, "m", "3", {"y": array}, None)
    result = parsed(response)
    assert result.get_output("y").datatype == datatype
    assert (response.model_name, response.model_version) == ("m", "3")
    np.testing.assert_array_equal(result.as_numpy("y"), array)


@pytest.mark.parametrize("datatype", TYPED_DATATYPES)
def test_typed_requests_get_typed_outputs(datatype: str) -> None:
    array = sample(datatype)
    request = typed_request("x", "FP32", [1], fp32_contents=[0.0])
    response = codec.encode_response(request, "m", None, {"y": array}, None)
    assert not response.raw_output_contents
    (output,) = response.outputs
    assert (output.datatype, list(output.shape)) == (datatype, [2, 3])
    values = list(getattr(output.contents, codec.CONTENTS_FIELD[datatype]))
    np.testing.assert_array_equal(np.array(values, dtype=array.dtype).reshape(2, 3), array)


def test_typed_requests_get_raw_outputs_when_a_datatype_has_no_typed_field() -> None:
    request = typed_request("x", "FP32", [1], fp32_contents=[0.0])
    outputs = {"a": np.ones(2, dtype=np.float32), "b": np.ones(2, dtype=np.float16)}
    result = parsed(codec.encode_response(request, "m", None, outputs, None))
    assert len(result.get_response().raw_output_contents) == 2
    np.testing.assert_array_equal(result.as_numpy("b"), outputs["b"])


def test_requested_outputs_are_sent_in_their_order() -> None:
    request = client_request(("x", np.zeros(1, dtype=np.float32), "FP32"))
    request.outputs.add(name="b")
    request.outputs.add(name="a")
    wanted = codec.requested_outputs(request)
    outputs = {"a": np.zeros(1, dtype=np.int64), "b": np.ones(2, dtype=np.float32)}
    response = codec.encode_response(request, "m", None, outputs, wanted)
    assert [o.name for o in response.outputs] == ["b", "a"]
    np.testing.assert_array_equal(parsed(response).as_numpy("a"), outputs["a"])
    assert invalid(lambda: codec.encode_response(request, "m", None, {"a": outputs["a"]}, wanted))
    request.outputs.add(name="a")
    assert invalid(lambda: codec.requested_outputs(request)) == (
        "output 'a' is requested more than once"
    )


# -- keys and the server ---------------------------------------------------------------------


def test_bearer_key_reads_the_authorization_metadata() -> None:
    assert bearer_key([("authorization", "Bearer my_key")]) == "my_key"
    assert bearer_key([("x-other", "1"), ("authorization", "bearer  my_key ")]) == "my_key"
    assert bearer_key([("authorization", "Basic abc")]) is None
    assert bearer_key([("authorization", "Bearer ")]) is None
    assert bearer_key(None) is None


def test_addresses_and_a_taken_port(make_settings: Callable[..., Any], tmp_path: Path) -> None:
    assert address("127.0.0.1", 8001) == "127.0.0.1:8001"
    assert address("::", 8001) == "[::]:8001"
    platforms = [Platform.build(make_settings(data_dir=tmp_path / name)) for name in "ab"]

    async def start_twice() -> None:
        first = GrpcServer(platforms[0], "127.0.0.1", 0)
        port = await first.start()
        try:
            # Another server, in this process or another, does not share the port.
            second = GrpcServer(platforms[1], "127.0.0.1", port)
            try:
                with pytest.raises(
                    ModelyardError, match=f"cannot listen for gRPC on 127.0.0.1:{port}"
                ):
                    await second.start()
            finally:
                await second.stop(grace=0)
        finally:
            await first.stop(grace=0)

    try:
        asyncio.run(start_twice())
    finally:
        for platform in platforms:
            platform.close()
