"""Frames between the HTTP processes and the model process of a split server
(:mod:`modelyard.serving.split`): a small JSON header and the tensors' raw bytes.

A frame is two little-endian ``u32`` (the header's length, the payload's length), the header
(a JSON object) and the payload: the bytes of each tensor the header lists under
``"tensors"`` as ``[name, numpy dtype string, shape]``, one after another, C order. Nothing is
pickled: a tensor is rebuilt with :func:`numpy.frombuffer` from a dtype that holds numbers or
booleans only.

>>> import asyncio
>>> parts = encode({"op": "infer"}, {"x": np.arange(3, dtype=np.float32)})
>>> header, arrays = asyncio.run(_read_bytes(b"".join(parts)))
>>> header["op"], arrays["x"].tolist()
('infer', [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import pydantic_core

from modelyard.errors import InvalidInput

PREFIX = struct.Struct("<II")
# Kinds of numpy dtypes a frame may carry: booleans, integers, floats and complex numbers.
_KINDS = frozenset("biufc")
# A frame larger than this is refused: it is not a tensor request the server accepted.
MAX_FRAME_BYTES = 1 << 31

Header = dict[str, Any]
Arrays = dict[str, np.ndarray]


def encode(header: Header, arrays: Mapping[str, np.ndarray] | None = None) -> list[bytes]:
    """The parts of one frame, to be written in one go (``writer.writelines``)."""
    buffers: list[bytes] = []
    listed: list[list[Any]] = []
    for name, array in (arrays or {}).items():
        if array.dtype.kind not in _KINDS:
            raise InvalidInput(
                f"tensor '{name}': {array.dtype} tensors are not served by a separate model "
                "process; run the server without MODELYARD_SERVING_SPLIT"
            )
        contiguous = np.ascontiguousarray(array)
        listed.append([name, contiguous.dtype.str, list(contiguous.shape)])
        buffers.append(contiguous.tobytes())
    if listed:
        header = {**header, "tensors": listed}
    head = pydantic_core.to_json(header)
    payload = sum(len(b) for b in buffers)
    return [PREFIX.pack(len(head), payload), head, *buffers]


def decode(head: bytes, payload: bytearray) -> tuple[Header, Arrays]:
    """The header and the tensors of one frame's two parts."""
    header = pydantic_core.from_json(head)
    if not isinstance(header, dict):
        raise ValueError("a frame's header is not a JSON object")
    arrays: Arrays = {}
    offset = 0
    for name, dtype_str, shape in header.pop("tensors", ()):
        dtype = np.dtype(str(dtype_str))
        if dtype.kind not in _KINDS:
            raise ValueError(f"a frame carries a {dtype} tensor")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        arrays[str(name)] = array.reshape([int(d) for d in shape])
        offset += count * dtype.itemsize
    if offset != len(payload):
        raise ValueError("a frame's payload does not match its tensors")
    return header, arrays


async def read(reader: asyncio.StreamReader) -> tuple[Header, Arrays]:
    """The next frame; raises :class:`asyncio.IncompleteReadError` at the end of the stream."""
    head_len, payload_len = PREFIX.unpack(await reader.readexactly(PREFIX.size))
    if head_len + payload_len > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {head_len + payload_len} bytes")
    # One read for both parts, copied into a bytearray so that the tensors built on it are
    # writable (torch.from_numpy wants that).
    body = await reader.readexactly(head_len + payload_len)
    return decode(body[:head_len], bytearray(memoryview(body)[head_len:]))


async def _read_bytes(data: bytes) -> tuple[Header, Arrays]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read(reader)


__all__ = ["MAX_FRAME_BYTES", "decode", "encode", "read"]
