"""NPZ intake: a zip of ``.npy`` arrays (``np.savez`` / ``np.savez_compressed``).

The archive is opened with ``np.load(..., allow_pickle=False)`` and every member's
``.npy`` header is read before any data: an object array (which only unpickling could
read) is refused without touching its data, and arrays must share their first dimension.
Each array is then copied chunk by chunk into its canonical ``.npy``, so intake holds no
whole array in memory.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from modelyard.datasets.formats.canonical import (
    ArrayHeader,
    ParsedDataset,
    arrays_result,
    check_array_name,
    check_expanded,
    check_label,
    check_same_rows,
    check_unique,
    copy_array,
)
from modelyard.errors import InvalidInput, UnsafeArtifact

_CORRUPT = "truncated or corrupt NPZ"
# What reading a damaged zip member raises.
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def ingest_npz(
    path: Path, out_dir: Path, label: str | None, max_bytes: int | None = None
) -> ParsedDataset:
    """Validate the NPZ at ``path`` and write each array to ``out_dir/<name>.npy``."""
    with path.open("rb") as f:
        magic = f.read(4)
    if not magic.startswith(b"PK"):
        raise InvalidInput(f"not an NPZ (zip) archive: it starts with {magic!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{_CORRUPT}: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile) or archive.zip is None:
        raise InvalidInput(f"{_CORRUPT}: not a zip of .npy arrays")
    with archive:
        members = _members(archive.zip)
        headers = [_read_header(archive.zip, info, name) for name, info in members]
        check_same_rows(headers, "NPZ array")
        check_label(label, [h.name for h in headers], "array")
        check_expanded(headers, max_bytes, "NPZ archive")
        for header in headers:
            _copy(archive, archive.zip, header, out_dir / f"{header.name}.npy")
    return arrays_result("npz", headers, out_dir, label)


def _members(archive: zipfile.ZipFile) -> list[tuple[str, zipfile.ZipInfo]]:
    """(array name, member) for each member; every member must be a plain ``.npy``."""
    members = []
    for info in archive.infolist():
        if info.is_dir() or not info.filename.endswith(".npy"):
            raise InvalidInput(f"NPZ member {info.filename!r} is not a .npy array")
        members.append((info.filename.removesuffix(".npy"), info))
    if not members:
        raise InvalidInput("the NPZ archive holds no arrays")
    for name, _ in members:
        check_array_name(name, "NPZ array")
    check_unique([name for name, _ in members], "NPZ array")
    return members


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> ArrayHeader:
    try:
        with archive.open(info) as stream:
            shape, _, dtype = _npy_header(stream)
            header_bytes = stream.tell()
    except _MEMBER_ERRORS as exc:
        raise InvalidInput(f"{_CORRUPT}: array {name!r}: {exc}") from None
    except ValueError as exc:
        raise InvalidInput(f"{_CORRUPT}: array {name!r}: bad .npy header: {exc}") from None
    if dtype.hasobject:
        raise UnsafeArtifact(
            f"NPZ array {name!r} has dtype object, which only unpickling could read; "
            "store numbers, booleans or fixed-width strings"
        )
    header = ArrayHeader(name=name, dtype=dtype, shape=shape)
    # Checked before any space is set aside for the array, so a forged shape costs nothing.
    if info.file_size - header_bytes != header.nbytes:
        raise InvalidInput(
            f"{_CORRUPT}: array {name!r}: its header declares shape {shape} "
            f"({header.nbytes} data bytes) but the member holds {info.file_size - header_bytes}"
        )
    return header


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _copy(
    archive: np.lib.npyio.NpzFile[Any], members: zipfile.ZipFile, header: ArrayHeader, path: Path
) -> None:
    try:
        with members.open(f"{header.name}.npy") as stream:
            _, fortran, _ = _npy_header(stream)
            if not fortran:
                copy_array(stream, header, path, f"array {header.name!r}")
                return
        # Fortran-ordered data cannot be copied in C order chunk by chunk; such arrays are
        # rare and are loaded whole (still without pickle) and rewritten in C order.
        native = np.ascontiguousarray(archive[header.name], dtype=header.dtype.newbyteorder("="))
        np.save(path, native, allow_pickle=False)
    except InvalidInput as exc:
        raise InvalidInput(f"{_CORRUPT}: {exc.detail}") from None
    except (*_MEMBER_ERRORS, ValueError) as exc:
        raise InvalidInput(f"{_CORRUPT}: array {header.name!r}: {exc}") from None
