"""Transparent gzip: text and IDX files may arrive compressed (``.csv.gz``, MNIST's ``.gz``)."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
# What reading a damaged gzip stream raises, besides OSError.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def is_gzip(path: Path) -> bool:
    """Whether the file at ``path`` starts with the gzip magic bytes."""
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed on the fly when it is gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")
    return path.open("rb")


def gunzip_prefix(head: bytes, size: int = 64) -> bytes:
    """The first ``size`` decompressed bytes of a gzip prefix, or b"" if it is not one."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, size)
    except zlib.error:
        return b""
