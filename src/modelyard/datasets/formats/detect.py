"""Telling a data set's format from its file name and first bytes."""

from __future__ import annotations

import re

from modelyard.datasets.formats.compression import GZIP_MAGIC, gunzip_prefix
from modelyard.datasets.formats.idx import looks_like_idx

HEAD_BYTES = 512
_SUFFIXES = (
    (".csv", "csv"),
    (".npz", "npz"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
)
# MNIST-style names: train-images-idx3-ubyte, t10k-labels.idx1-ubyte, images.idx3, x.idx
_IDX_NAME = re.compile(r"([.-]ubyte|\.idx\d*)$")


def detect_format(filename: str | None, head: bytes) -> str | None:
    """The format of a file named ``filename`` starting with ``head``, or None if unknown.

    Binary signatures decide first (zip → ``npz``, ``PAR1`` → ``parquet``, an IDX magic →
    ``idx``, also inside gzip), then the file name's extension (``.gz`` is looked through),
    then a first ``{`` → ``jsonl``.

    >>> detect_format("train-images-idx3-ubyte.gz", b"")
    'idx'
    >>> detect_format(None, b"PAR1...")
    'parquet'
    """
    content = gunzip_prefix(head) if head.startswith(GZIP_MAGIC) else head
    by_magic = _from_magic(content)
    if by_magic is not None:
        return by_magic
    if filename:
        by_name = _from_name(filename)
        if by_name is not None:
            return by_name
    if content.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
        return "jsonl"
    return None


def _from_magic(head: bytes) -> str | None:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if looks_like_idx(head):
        return "idx"
    return None


def _from_name(filename: str) -> str | None:
    name = filename.strip().lower().removesuffix(".gz")
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    if _IDX_NAME.search(name):
        return "idx"
    return None
