"""The Open Inference Protocol codec, checked against the real Triton HTTP client."""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.serving.oip import (
    OIP_TO_NUMPY,
    RequestedOutput,
    decode_request,
    encode_response,
    error_body,
    model_metadata,
    numpy_to_oip,
    server_metadata,
)

Client = triton.InferenceServerClient


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


ALL_DATATYPES = [name for name in OIP_TO_NUMPY if name != "BF16"]


def client_request(
    inputs: list[triton.InferInput],
    outputs: list[triton.InferRequestedOutput] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    body, json_size = Client.generate_request_body(inputs, outputs=outputs, **kwargs)
    return bytes(body), json_size


def client_input(name: str, array: npt.NDArray[Any], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), numpy_to_oip(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def raw_request(inputs: list[dict[str, Any]], **document: Any) -> bytes:
    return json.dumps({"inputs": inputs, **document}).encode()


def parse(body: bytes, headers: dict[str, str]) -> Any:
    length = headers.get("Inference-Header-Content-Length")
    return Client.parse_response_body(body, header_length=None if length is None else int(length))


# Requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_decodes_every_datatype_the_client_sends(datatype: str, binary: bool) -> None:
    array = sample(datatype)
    body, json_size = client_request([client_input("x", array, binary)])

    request = decode_request(body, json_size)

    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, [2, 3])
    assert tensor.array.dtype == OIP_TO_NUMPY[datatype]
    assert tensor.array.shape == (2, 3)
    assert tensor.array.tolist() == array.tolist()


def test_binary_bytes_keep_arbitrary_octets() -> None:
    array = np.array([b"\xff\xfe", b"", b"\x00\x01"], dtype=object)
    body, json_size = client_request([client_input("blob", array, binary=True)])

    decoded = decode_request(body, json_size).inputs[0].array

    assert decoded.tolist() == [b"\xff\xfe", b"", b"\x00\x01"]


def test_binary_bf16_decodes_to_float32() -> None:
    array = np.array([[1.5, -2.0], [0.0078125, 3.0e38]], dtype=ml_dtypes.bfloat16)
    tensor = triton.InferInput("h", [2, 2], "BF16")
    tensor.set_data_from_numpy(array, binary_data=True)
    body, json_size = client_request([tensor])

    decoded = decode_request(body, json_size).inputs[0]

    assert decoded.datatype == "BF16"
    assert decoded.array.dtype == np.float32
    np.testing.assert_array_equal(decoded.array, array.astype(np.float32))


def test_binary_fixed_size_input_is_a_view_into_the_body() -> None:
    array = np.arange(4096, dtype=np.float32).reshape(64, 64)
    body, json_size = client_request([client_input("x", array, binary=True)])

    decoded = decode_request(body, json_size).inputs[0].array

    assert np.shares_memory(decoded, np.frombuffer(body, dtype=np.uint8))
    assert not decoded.flags.writeable
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_decodes_empty_tensors(binary: bool) -> None:
    array = np.zeros((0, 3), dtype=np.int32)
    body, json_size = client_request([client_input("x", array, binary)])

    decoded = decode_request(body, json_size).inputs[0].array

    assert decoded.shape == (0, 3)
    assert decoded.dtype == np.int32


def test_mixed_inputs_ids_parameters_and_requested_outputs() -> None:
    image = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    labels = np.array([b"cat", b"dog"], dtype=object)
    flags = np.array([True, False])
    body, json_size = client_request(
        [
            client_input("image", image, binary=True),
            client_input("labels", labels, binary=False),
            client_input("flags", flags, binary=True),
        ],
        outputs=[
            triton.InferRequestedOutput("scores", binary_data=True, class_count=3),
            triton.InferRequestedOutput("names", binary_data=False),
        ],
        request_id="req-7",
        parameters={"temperature": 0.5},
    )

    request = decode_request(body, json_size)

    assert request.id == "req-7"
    assert request.parameters == {"temperature": 0.5}
    assert request.binary_default is False
    arrays = {tensor.name: tensor.array for tensor in request.inputs}
    np.testing.assert_array_equal(arrays["image"], image)
    assert arrays["labels"].tolist() == [b"cat", b"dog"]
    assert arrays["flags"].tolist() == [True, False]
    assert request.outputs == [
        RequestedOutput("scores", True, {"classification": 3, "binary_data": True}),
        RequestedOutput("names", False, {"binary_data": False}),
    ]


def test_no_requested_outputs_means_all_outputs_in_binary() -> None:
    body, json_size = client_request([client_input("x", np.ones(3, np.float32), binary=False)])

    request = decode_request(body, json_size)

    assert json_size is None
    assert request.id is None
    assert request.outputs is None
    assert request.binary_default is True


def test_json_data_may_be_nested_row_major() -> None:
    body = raw_request(
        [{"name": "x", "shape": [2, 3], "datatype": "INT16", "data": [[1, 2, 3], [4, 5, 6]]}]
    )

    decoded = decode_request(body, None).inputs[0].array

    assert decoded.dtype == np.int16
    assert decoded.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_json_integers_are_accepted_for_floats() -> None:
    body = raw_request([{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2.5, -3]}])

    assert decode_request(body, None).inputs[0].array.tolist() == [1.0, 2.5, -3.0]


def test_json_integers_beyond_int64_decode_exactly() -> None:
    body = raw_request(
        [
            {"name": "u", "shape": [3], "datatype": "UINT64", "data": [0, 2**64 - 1, 2**63]},
            {"name": "f", "shape": [2], "datatype": "FP64", "data": [2**70, 0.5]},
        ]
    )

    unsigned, floats = (tensor.array for tensor in decode_request(body, None).inputs)

    assert unsigned.tolist() == [0, 2**64 - 1, 2**63]
    assert floats.tolist() == [2.0**70, 0.5]


def test_header_length_covering_the_whole_body_is_plain_json() -> None:
    body = raw_request([{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.25]}])

    assert decode_request(body, len(body)).inputs[0].array.tolist() == [0.25]


# Request errors -----------------------------------------------------------------------------


def fp32(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2, 3], "datatype": "FP32", **fields}


def binary_body(inputs: list[dict[str, Any]], payload: bytes) -> tuple[bytes, int]:
    header = raw_request(inputs)
    return header + payload, len(header)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', r"malformed request JSON: .*line 1 column 13 \(char 12\)"),
        (b'{"id": "\xff"}', r"not valid UTF-8 \(byte 8\)"),
        (b"[1, 2]", "the request must be a JSON object"),
        (b'{"id": "a"}', 'must have "inputs"'),
        (b'{"inputs": [{"shape": [1]}]}', r'inputs\[0\] needs a "name"'),
        (raw_request([fp32(datatype="FP8", data=[1])]), r"input 'x': unknown datatype 'FP8'"),
        (raw_request([fp32(data=[1.0] * 5)]), r"input 'x': shape \[2, 3\] needs 6 elements, got 5"),
        (raw_request([fp32(shape=[2, -3], data=[])]), r"input 'x': shape \[2, -3\] has a negative"),
        (
            raw_request([fp32(shape=[2, "3"], data=[])]),
            r"input 'x': \"shape\" must be a JSON array",
        ),
        (raw_request([fp32(data=["a"] * 6)]), "input 'x': \"data\" holds strings, but FP32 needs"),
        (raw_request([fp32(data=[True] * 6)]), "input 'x': \"data\" holds booleans, but FP32"),
        (raw_request([fp32(data=[1, None] * 3)]), "input 'x': \"data\" holds nulls"),
        (raw_request([fp32(data=[[1, 2], [3]])]), "input 'x': \"data\" is neither a flat list"),
        (raw_request([fp32(data=5)]), "input 'x': \"data\" must be a JSON array, got int"),
        (raw_request([fp32()]), "input 'x': has neither \"data\" nor a binary_data_size"),
        (
            raw_request([fp32(datatype="INT32", data=[1.5] * 6)]),
            "input 'x': \"data\" holds non-integer numbers, but INT32 needs integers",
        ),
        (
            raw_request([fp32(datatype="UINT8", data=[1, 2, 3, 4, 5, 256])]),
            r"input 'x': values out of range for UINT8 \[0, 255\]",
        ),
        (
            raw_request([fp32(datatype="INT64", data=[-1, 2**63, 0, 0, 0, 0])]),
            r"input 'x': values out of range for INT64 \[-9223372036854775808, ",
        ),
        (
            raw_request([fp32(datatype="FP64", data=[10**400, 0, 0, 0, 0, 0])]),
            "input 'x': values out of range for FP64",
        ),
        (
            raw_request([fp32(datatype="INT8", data=[1, 2, 3, 4, 5, None])]),
            "input 'x': \"data\" holds nulls, but INT8 needs integers",
        ),
        (
            raw_request([fp32(datatype="BOOL", data=[True, False, True, {}, True, False])]),
            "input 'x': \"data\" holds objects, but BOOL needs true/false",
        ),
        (
            raw_request([fp32(datatype="BOOL", data=[1, 0, 1, 0, 1, 0])]),
            "input 'x': \"data\" holds integers, but BOOL needs true/false",
        ),
        (
            raw_request([fp32(datatype="BYTES", data=["a", 1, "b", "c", "d", "e"])]),
            "input 'x': \"data\" holds integers, but BYTES needs strings",
        ),
        (
            raw_request([fp32(shape=[1], data=[1]), fp32(shape=[1], data=[2])]),
            "input 'x' appears more than once",
        ),
        (
            raw_request([fp32(data=[0] * 6, parameters={"binary_data_size": 24})]),
            'has both "data" and a binary_data_size',
        ),
        (
            raw_request([fp32(parameters={"binary_data_size": 24})]),
            "has binary data, but the request has no Inference-Header-Content-Length",
        ),
        (
            raw_request([fp32(parameters={"shared_memory_region": "r"})]),
            "input 'x': shared-memory tensors are not supported",
        ),
        (
            raw_request(
                [fp32(data=[0] * 6)], outputs=[{"name": "y", "parameters": {"binary_data": 1}}]
            ),
            "output 'y': parameter \"binary_data\" must be true or false",
        ),
    ],
)
def test_json_request_errors_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(body, None)


@pytest.mark.parametrize(
    ("inputs", "payload", "message"),
    [
        (
            [fp32(parameters={"binary_data_size": 20})],
            bytes(20),
            r"input 'x': binary_data_size is 20 bytes, but shape \[2, 3\] of FP32 needs 24",
        ),
        (
            [fp32(parameters={"binary_data_size": 24})],
            bytes(10),
            "input 'x': binary_data_size is 24 bytes, but only 10 bytes of binary data are left",
        ),
        (
            [fp32(parameters={"binary_data_size": 24})],
            bytes(30),
            "6 trailing bytes after the JSON header and binary inputs",
        ),
        (
            [fp32(parameters={"binary_data_size": -1})],
            b"",
            "input 'x': binary_data_size must be a non-negative integer",
        ),
        (
            [fp32(datatype="BOOL", parameters={"binary_data_size": 6})],
            bytes([0, 1, 2, 0, 1, 0]),
            "input 'x': BOOL bytes must be 0 or 1, found 2",
        ),
        (
            [fp32(datatype="BYTES", shape=[2], parameters={"binary_data_size": 7})],
            struct.pack("<I", 1) + b"a" + struct.pack("<I", 9)[:2],
            "input 'x': BYTES data ends inside the length prefix of element 1",
        ),
        (
            [fp32(datatype="BYTES", shape=[1], parameters={"binary_data_size": 7})],
            struct.pack("<I", 5) + b"abc",
            "input 'x': BYTES element 0 declares 5 bytes, but only 3 remain",
        ),
        (
            [fp32(datatype="BYTES", shape=[2], parameters={"binary_data_size": 5})],
            struct.pack("<I", 1) + b"a",
            r"input 'x': shape \[2\] needs 2 elements, got 1",
        ),
    ],
)
def test_binary_request_errors_name_the_problem(
    inputs: list[dict[str, Any]], payload: bytes, message: str
) -> None:
    body, header_length = binary_body(inputs, payload)

    with pytest.raises(InvalidInput, match=message):
        decode_request(body, header_length)


def test_deeply_nested_json_is_refused() -> None:
    body = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    with pytest.raises(InvalidInput, match="nests arrays or objects too deeply"):
        decode_request(body, None)


def test_nested_strings_flatten_row_major() -> None:
    data = [[["a", "b"], ["c", "d"]], [["e", "f"], ["g", "h"]]]
    body = raw_request([{"name": "s", "shape": [8], "datatype": "BYTES", "data": data}])

    assert decode_request(body, None).inputs[0].array.tolist() == [c.encode() for c in "abcdefgh"]


def test_header_length_beyond_the_body_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length is 99, but the body"):
        decode_request(b'{"inputs": []}', 99)


def test_trailing_bytes_after_a_json_only_request_are_refused() -> None:
    body, header_length = binary_body([fp32(data=[0] * 6)], b"junk")

    with pytest.raises(InvalidInput, match="4 trailing bytes"):
        decode_request(body, header_length)


# Responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_client_reads_every_datatype_we_send(datatype: str, binary: bool) -> None:
    array = sample(datatype)

    body, headers = encode_response(
        model_name="m",
        model_version="2",
        request_id="r1",
        outputs={"y": array},
        requested=[RequestedOutput("y", binary)],
        binary_default=False,
    )

    result = parse(body, headers)
    received = result.as_numpy("y")
    assert result.get_output("y")["datatype"] == datatype
    assert received.shape == (2, 3)
    if datatype == "BYTES" and not binary:
        assert received.tolist() == [[item.decode() for item in row] for row in array.tolist()]
    else:
        assert received.dtype == array.dtype
        assert received.tolist() == array.tolist()


def test_json_only_response_is_plain_json() -> None:
    body, headers = encode_response(
        model_name="m",
        model_version="1",
        request_id="abc",
        outputs={"y": np.arange(3, dtype=np.int64)},
        requested=None,
        binary_default=False,
        parameters={"cached": True},
    )

    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "id": "abc",
        "parameters": {"cached": True},
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [3], "data": [0, 1, 2]}],
    }


def test_binary_response_frames_header_and_blobs() -> None:
    scores = np.array([[0.5, 0.25]], dtype=np.float32)
    ids = np.array([7, 9], dtype=np.int64)

    body, headers = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs={"scores": scores, "ids": ids},
        requested=None,
        binary_default=True,
    )

    assert headers["Content-Type"] == "application/octet-stream"
    header_length = int(headers["Inference-Header-Content-Length"])
    document = json.loads(body[:header_length])
    assert "model_version" not in document
    assert "id" not in document
    assert [output["parameters"] for output in document["outputs"]] == [
        {"binary_data_size": 8},
        {"binary_data_size": 16},
    ]
    assert body[header_length:] == scores.tobytes() + ids.tobytes()
    result = parse(body, headers)
    np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    np.testing.assert_array_equal(result.as_numpy("ids"), ids)


def test_round_trip_through_decoded_request_options() -> None:
    body, json_size = client_request(
        [client_input("x", np.ones(2, np.float32), binary=True)],
        outputs=[
            triton.InferRequestedOutput("b", binary_data=False),
            triton.InferRequestedOutput("a", binary_data=True),
        ],
    )
    request = decode_request(body, json_size)
    outputs = {
        "a": np.array([1.0, 2.0], dtype=np.float16),
        "b": np.array([[True], [False]]),
        "unwanted": np.zeros(5, dtype=np.float32),
    }

    response, headers = encode_response(
        model_name="m",
        model_version="1",
        request_id=request.id,
        outputs=outputs,
        requested=request.outputs,
        binary_default=request.binary_default,
    )

    result = parse(response, headers)
    assert [output["name"] for output in result.get_response()["outputs"]] == ["b", "a"]
    assert "data" in result.get_output("b")
    assert result.get_output("a")["parameters"] == {"binary_data_size": 4}
    np.testing.assert_array_equal(result.as_numpy("a"), outputs["a"])
    np.testing.assert_array_equal(result.as_numpy("b"), outputs["b"])
    assert result.as_numpy("unwanted") is None


def test_bf16_and_big_endian_outputs_are_sent_little_endian() -> None:
    half = np.array([1.5, -0.5], dtype=ml_dtypes.bfloat16)
    big = np.array([1, 256, -2], dtype=">i4")

    body, headers = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs={"half": half, "big": big, "strided": np.arange(6, dtype=np.int8)[::2]},
        requested=None,
        binary_default=True,
    )

    result = parse(body, headers)
    assert result.get_output("half")["datatype"] == "BF16"
    np.testing.assert_array_equal(result.as_numpy("half"), half)
    assert result.as_numpy("big").tolist() == [1, 256, -2]
    assert result.as_numpy("strided").tolist() == [0, 2, 4]


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(InvalidInput, match="output 'nope' was requested, but the model produces"):
        encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs={"y": np.zeros(1)},
            requested=[RequestedOutput("nope", True)],
            binary_default=False,
        )


def test_non_utf8_bytes_cannot_be_sent_as_json() -> None:
    with pytest.raises(
        InvalidInput, match=r"output 'y': element 1 is not valid UTF-8.*binary_data"
    ):
        encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs={"y": np.array([b"ok", b"\xff"], dtype=object)},
            requested=None,
            binary_default=False,
        )


# Datatypes and metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_numpy_to_oip_inverts_the_datatype_table(datatype: str) -> None:
    assert numpy_to_oip(OIP_TO_NUMPY[datatype]) == datatype


def test_numpy_to_oip_maps_strings_bf16_and_refuses_the_rest() -> None:
    assert numpy_to_oip(np.dtype("U4")) == "BYTES"
    assert numpy_to_oip(np.dtype("S4")) == "BYTES"
    assert numpy_to_oip(">f8") == "FP64"
    assert numpy_to_oip(ml_dtypes.bfloat16) == "BF16"
    with pytest.raises(ModelyardError, match="complex128 has no Open Inference Protocol datatype"):
        numpy_to_oip(np.complex128)


def test_metadata_and_error_bodies() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [-1, 3]}

    assert model_metadata("m", ["1", "2"], "pytorch", [tensor], []) == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "pytorch",
        "inputs": [tensor],
        "outputs": [],
    }
    assert server_metadata("modelyard", "0.1.0", ["binary_tensor_data"]) == {
        "name": "modelyard",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    assert error_body("no such model") == {"error": "no such model"}


def test_model_metadata_refuses_malformed_tensors() -> None:
    with pytest.raises(ValueError, match="lacks datatype"):
        model_metadata("m", [], "onnx", [{"name": "x", "shape": [1]}], [])
    with pytest.raises(ValueError, match="unknown datatype"):
        model_metadata("m", [], "onnx", [], [{"name": "y", "datatype": "F32", "shape": [1]}])
