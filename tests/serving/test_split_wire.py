"""Frames between HTTP processes and the model process: tensors arrive bit for bit, nothing
but numbers is carried, and errors cross as plain records that raise the same class."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelyard.errors import DeadlineExceeded, InvalidInput, ModelyardError, TooManyRequests
from modelyard.serving import wire
from modelyard.serving.split import error_record, raise_record


def roundtrip(
    header: wire.Header, arrays: dict[str, np.ndarray]
) -> tuple[wire.Header, wire.Arrays]:
    async def read() -> tuple[wire.Header, wire.Arrays]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(wire.encode(header, arrays)))
        reader.feed_eof()
        return await wire.read(reader)

    return asyncio.run(read())


def test_tensors_arrive_bit_for_bit_and_writable() -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((3, 4)).astype(np.float32),
        "ids": rng.integers(0, 1000, (3, 128)).astype(np.int64),
        "mask": rng.random((3, 1)) > 0.5,
        "strided": rng.standard_normal((4, 6))[:, ::2],
        "empty": np.zeros((0, 5), dtype=np.float16),
    }
    header, got = roundtrip({"op": "infer", "key": "k", "deadline": 12.5}, arrays)
    assert header == {"op": "infer", "key": "k", "deadline": 12.5}
    assert list(got) == list(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        assert np.array_equal(got[name], array)
        assert got[name].flags.writeable
    got["x"][0, 0] = 7.0  # the runtime may write into its inputs


def test_string_tensors_are_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="tensor 'text'"):
        wire.encode({"op": "infer"}, {"text": np.array(["a", "b"], dtype=object)})


def test_a_frame_with_an_object_dtype_or_a_short_payload_is_malformed() -> None:
    head = b'{"tensors": [["x", "|O", [1]]]}'
    with pytest.raises(ValueError, match="object"):
        wire.decode(head, bytearray(8))
    head = b'{"tensors": [["x", "<f4", [2]]]}'
    with pytest.raises(ValueError):
        wire.decode(head, bytearray(4))


@pytest.mark.parametrize(
    "error",
    [
        TooManyRequests("full; retry shortly", retry_after=1),
        DeadlineExceeded("the deadline passed"),
        InvalidInput("input 'x': dimension 1 is 3, expected 4"),
    ],
)
def test_errors_cross_as_records_of_the_same_class(error: ModelyardError) -> None:
    with pytest.raises(type(error)) as raised:
        raise_record(error_record(error))
    assert raised.value.detail == error.detail
    assert raised.value.status == error.status
    assert raised.value.extra == error.extra
