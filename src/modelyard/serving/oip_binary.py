"""Tensor data in Triton's binary tensor data extension.

Each binary tensor is little-endian, row-major and unpadded, in the native size of its
datatype; ``BOOL`` is one byte (0 or 1) per element and ``BYTES`` is, per element, a 4-byte
little-endian length followed by that many bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.serving.oip_json import element_count_error

_LENGTH = struct.Struct("<I")


def decode_binary(
    name: str, datatype: str, dtype: np.dtype[Any], shape: list[int], raw: memoryview
) -> npt.NDArray[Any]:
    """Turn the binary data of input ``name`` into an array of ``shape`` and ``dtype``.

    Fixed-size datatypes come back as read-only views into ``raw`` (no copy; they may be
    unaligned, which numpy handles). ``BF16`` is widened into a new float32 array and
    ``BYTES`` into a new object array of ``bytes``. Raises InvalidInput when the byte count
    does not fit the shape, a ``BOOL`` byte is neither 0 nor 1, or ``BYTES`` framing is broken.
    """
    where = f"input {name!r}"
    if datatype == "BYTES":
        return _decode_bytes(where, shape, raw)
    count = math.prod(shape)
    itemsize = 2 if datatype == "BF16" else dtype.itemsize
    if len(raw) != count * itemsize:
        raise InvalidInput(
            f"{where}: binary_data_size is {len(raw)} bytes, but shape {shape} of {datatype} "
            f"needs {count * itemsize}"
        )
    if datatype == "BF16":
        widened = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        return widened.view("<f4").reshape(shape)
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if count and octets.max() > 1:
            raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1, found {octets.max()}")
        return octets.view(np.bool_).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _decode_bytes(where: str, shape: list[int], raw: memoryview) -> npt.NDArray[Any]:
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if end - offset < _LENGTH.size:
            raise InvalidInput(
                f"{where}: BYTES data ends inside the length prefix of element {len(items)}"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if length > end - offset:
            raise InvalidInput(
                f"{where}: BYTES element {len(items)} declares {length} bytes, "
                f"but only {end - offset} remain"
            )
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if len(items) != math.prod(shape):
        raise element_count_error(where, shape, len(items))
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def encode_binary(name: str, datatype: str, array: npt.NDArray[Any]) -> bytes | memoryview:
    """The binary data of output ``name``: a buffer to append after the JSON header.

    Fixed-size datatypes are exposed without a copy when the array is already C-contiguous
    and little-endian. ``BYTES`` elements may be ``bytes`` or ``str`` (sent as UTF-8).
    """
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = element_bytes(name, item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.byteorder == ">":
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    return flat.view(np.uint8).data


def element_bytes(name: str, item: object) -> bytes:
    """One element of a BYTES output as bytes (a ``str`` is UTF-8 encoded)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise ModelyardError(
        f"output {name!r}: BYTES elements must be bytes or str, got {type(item).__name__}"
    )
