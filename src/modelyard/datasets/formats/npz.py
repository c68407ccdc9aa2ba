"""NPZ intake: a zip of ``.npy`` arrays (``np.savez`` / ``np.savez_compressed``).

The zip's end record is read first, so an archive declaring more arrays than the server
accepts is refused before its directory is loaded. Every member's ``.npy`` header is then
read before any data: an object array (which only unpickling could read) is refused
without touching its data, arrays must share their first dimension, and what the headers
declare is checked against the intake's limits. Each array is then copied chunk by chunk
into its canonical ``.npy``, so intake holds no whole array in memory.
"""

from __future__ import annotations

import os
import struct
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
    check_declared_arrays,
    check_label,
    check_same_rows,
    check_unique,
    copy_array,
)
from modelyard.datasets.formats.limits import IntakeGuard
from modelyard.errors import InvalidInput, PayloadTooLarge, UnsafeArtifact

_CORRUPT = "truncated or corrupt NPZ"
# What reading a damaged zip member raises; RuntimeError is also an encrypted member and
# (as NotImplementedError) a compression method zipfile does not read.
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError)
_WHAT = "the NPZ archive"
# The zip's end records: the classic one (entries and directory size are 16 and 32 bits,
# all ones when the zip64 record holds them), the zip64 locator, the zip64 record.
_END = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
# Directory bytes allowed per array the server accepts: names of up to 128 characters
# and the usual extra fields take far less.
_DIRECTORY_BYTES_PER_ARRAY = 1024


def ingest_npz(path: Path, out_dir: Path, label: str | None, guard: IntakeGuard) -> ParsedDataset:
    """Validate the NPZ at ``path`` and write each array to ``out_dir/<name>.npy``."""
    with path.open("rb") as f:
        magic = f.read(4)
        if not magic.startswith(b"PK"):
            raise InvalidInput(f"not an NPZ (zip) archive: it starts with {magic!r}")
        _check_directory(f, guard)
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise InvalidInput(f"{_CORRUPT}: {exc}") from None
        with archive:
            members = _members(archive, guard)
            headers = [_read_header(archive, info, name) for name, info in members]
            check_same_rows(headers, "NPZ array")
            check_label(label, [h.name for h in headers], "array")
            check_declared_arrays(headers, guard, "NPZ archive")
            for header, (_, info) in zip(headers, members, strict=True):
                _copy(archive, info, header, out_dir / f"{header.name}.npy", guard)
    return arrays_result("npz", headers, out_dir, label)


def _check_directory(f: IO[bytes], guard: IntakeGuard) -> None:
    """Refuse an archive whose end record declares too many members or too large a
    directory, before zipfile loads that directory into memory.

    An end record that cannot be read is left to zipfile, which says what is wrong.
    """
    limit = guard.limits.max_columns
    declared = _declared_directory(f)
    if limit is None or declared is None:
        return
    entries, directory_bytes = declared
    guard.check_columns(entries, _WHAT, "arrays")
    if directory_bytes > limit * _DIRECTORY_BYTES_PER_ARRAY:
        raise PayloadTooLarge(
            f"{_WHAT} has a {directory_bytes}-byte directory, more than the "
            f"{limit * _DIRECTORY_BYTES_PER_ARRAY} bytes this server reads for its limit of "
            f"{limit} arrays (MODELYARD_MAX_DATASET_COLUMNS)"
        )


def _declared_directory(f: IO[bytes]) -> tuple[int, int] | None:
    """(members, directory bytes) as the zip's end records declare them, or None."""
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - _END.size - 0xFFFF)
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END.size:
        return None
    _, _, _, _, entries, directory_bytes, _, _ = _END.unpack_from(tail, at)
    if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF:
        return entries, directory_bytes
    locator_at = tail_start + at - _ZIP64_LOCATOR.size
    if locator_at < 0:
        return None
    f.seek(locator_at)
    locator = f.read(_ZIP64_LOCATOR.size)
    if len(locator) < _ZIP64_LOCATOR.size or not locator.startswith(b"PK\x06\x07"):
        return None
    f.seek(_ZIP64_LOCATOR.unpack(locator)[2])
    record = f.read(_ZIP64_END.size)
    if len(record) < _ZIP64_END.size or not record.startswith(b"PK\x06\x06"):
        return None
    fields = _ZIP64_END.unpack(record)
    return fields[7], fields[8]


def _members(archive: zipfile.ZipFile, guard: IntakeGuard) -> list[tuple[str, zipfile.ZipInfo]]:
    """(array name, member) for each member; every member must be a plain ``.npy``."""
    guard.check_columns(len(archive.infolist()), _WHAT, "arrays")
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
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: ArrayHeader,
    path: Path,
    guard: IntakeGuard,
) -> None:
    try:
        with archive.open(info) as stream:
            _, fortran, _ = _npy_header(stream)
            copy_array(stream, header, path, f"array {header.name!r}", guard, fortran=fortran)
    except InvalidInput as exc:
        raise InvalidInput(f"{_CORRUPT}: {exc.detail}") from None
    except (*_MEMBER_ERRORS, ValueError) as exc:
        raise InvalidInput(f"{_CORRUPT}: array {header.name!r}: {exc}") from None
