"""IDX intake: the format of MNIST and its kin, an images file and an optional labels file.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian. Either file
may be gzip-compressed. The images become the array ``x`` and the labels ``y``, each kept
in the file's type (stored in native byte order).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.datasets.formats.canonical import (
    ArrayHeader,
    ParsedDataset,
    Readable,
    arrays_result,
    check_declared_arrays,
    check_label,
    check_same_rows,
    copy_array,
    read_exact,
)
from modelyard.datasets.formats.compression import GZIP_ERRORS, is_gzip, open_binary
from modelyard.datasets.formats.limits import IntakeGuard
from modelyard.errors import InvalidInput

# Type codes of the IDX format and the (big-endian) values they stand for.
IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_ROLES = (("x", "images file"), ("y", "labels file"))


def looks_like_idx(head: bytes) -> bool:
    """Whether ``head`` starts with a well-formed IDX magic."""
    return len(head) >= 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPES and head[3] > 0


def ingest_idx(
    sources: Sequence[Path], out_dir: Path, label: str | None, guard: IntakeGuard
) -> ParsedDataset:
    """Parse IDX ``sources`` (images, then optional labels) into ``x.npy`` and ``y.npy``.

    What the headers declare is checked against ``guard`` before any data is read.
    """
    if not 1 <= len(sources) <= 2:
        raise InvalidInput(f"IDX takes an images file and a labels file, got {len(sources)} files")
    roles = _ROLES[: len(sources)]
    headers = [
        _read_header(path, name, what) for path, (name, what) in zip(sources, roles, strict=True)
    ]
    if len(headers) == 2 and headers[0].shape[0] != headers[1].shape[0]:
        raise InvalidInput(
            f"the images file holds {headers[0].shape[0]} items "
            f"but the labels file holds {headers[1].shape[0]}"
        )
    check_same_rows(headers, "IDX array")
    if label is None and len(headers) == 2:
        label = "y"
    check_label(label, [h.name for h in headers], "array")
    check_declared_arrays(headers, guard, "IDX data set")
    for path, header, (_, what) in zip(sources, headers, roles, strict=True):
        _copy(path, header, out_dir / f"{header.name}.npy", what, guard)
    return arrays_result("idx", headers, out_dir, label)


def _read_header(path: Path, name: str, what: str) -> ArrayHeader:
    with _reading(what), open_binary(path) as stream:
        header, header_bytes = _parse_header(stream, name, what)
    # An uncompressed file's length can be checked before any data is copied.
    if not is_gzip(path):
        held = path.stat().st_size - header_bytes
        if held != header.nbytes:
            raise InvalidInput(
                f"the {what} holds {held} data bytes but its header declares "
                f"{header.nbytes} (shape {header.shape}, {header.dtype.name})"
            )
    return header


def _parse_header(stream: Readable, name: str, what: str) -> tuple[ArrayHeader, int]:
    magic = read_exact(stream, 4)
    if not magic:
        raise InvalidInput(f"the {what} is empty")
    if not looks_like_idx(magic):
        seen = f"0x{magic.hex().upper()}" if len(magic) == 4 else f"only {len(magic)} bytes"
        raise InvalidInput(
            f"the {what} is not an IDX file: magic {seen}; expected 0x0000TTDD "
            "(TT a type code 08, 09, 0B, 0C, 0D or 0E, DD the number of dimensions)"
        )
    ndims = magic[3]
    dims = read_exact(stream, 4 * ndims)
    if len(dims) < 4 * ndims:
        raise InvalidInput(f"the {what} ends inside its header ({ndims} dimensions declared)")
    shape = struct.unpack(f">{ndims}I", dims)
    return ArrayHeader(name=name, dtype=IDX_TYPES[magic[2]], shape=shape), 4 + 4 * ndims


def _copy(path: Path, header: ArrayHeader, target: Path, what: str, guard: IntakeGuard) -> None:
    with _reading(what), open_binary(path) as stream:
        _parse_header(stream, header.name, what)
        copy_array(stream, header, target, f"the {what}", guard)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn a damaged gzip stream into InvalidInput naming the file."""
    try:
        yield
    except (*GZIP_ERRORS, OSError) as exc:
        raise InvalidInput(f"cannot read the {what} (corrupt gzip?): {exc}") from None
