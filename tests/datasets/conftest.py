"""Real data (scikit-learn's iris and digits), writers for the formats intake accepts, bombs."""

from __future__ import annotations

import csv
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_digits, load_iris

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def iris() -> pa.Table:
    """Iris as a table: four float64 measurements, the int64 target and the species name."""
    data = load_iris()
    columns: dict[str, Any] = {
        name: pa.array(data.data[:, i], pa.float64()) for i, name in enumerate(data.feature_names)
    }
    columns["target"] = pa.array(data.target.astype(np.int64))
    columns["species"] = pa.array([str(data.target_names[t]) for t in data.target])
    return pa.table(columns)


@pytest.fixture(scope="session")
def digits() -> Any:
    """The 1,797 8x8 digit images (``images``, ``data``) and their ``target``."""
    return load_digits()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty directory for the canonical files."""
    path = tmp_path / "canonical"
    path.mkdir()
    return path


class DataFiles:
    """Writes inputs in each format into a test's temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def csv(self, name: str, table: pa.Table) -> Path:
        """``table`` as CSV with a header row; Python writes floats exactly (``repr``)."""
        path = self.root / name
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table.column_names)
            writer.writerows(
                zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True)
            )
        return path

    def jsonl(self, name: str, rows: list[dict[str, Any]]) -> Path:
        """``rows`` as JSON Lines."""
        path = self.root / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    def npz(self, name: str, *, compressed: bool = False, **arrays: Any) -> Path:
        """``arrays`` saved with ``np.savez`` (or ``np.savez_compressed``)."""
        path = self.root / name
        # Through a file object, so that numpy keeps the name as given.
        with path.open("wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        return path

    def idx(self, name: str, array: np.ndarray[Any, Any], *, gz: bool = False) -> Path:
        """``array`` as an IDX file, gzip-compressed when ``gz``."""
        data = idx_bytes(array)
        path = self.root / name
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    @staticmethod
    def idx_bytes(array: np.ndarray[Any, Any]) -> bytes:
        """``array`` in IDX, uncompressed."""
        return idx_bytes(array)

    def raw(self, name: str, data: bytes) -> Path:
        """``data`` as is."""
        path = self.root / name
        path.write_bytes(data)
        return path


def idx_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """``array`` in IDX: magic (zeros, type code, number of dimensions), dims, data."""
    magic = bytes([0, 0, IDX_CODES[array.dtype.str[1:]], array.ndim])
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return magic + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def files(tmp_path: Path) -> DataFiles:
    """Input files in every format, written under the test's temporary directory."""
    root = tmp_path / "inputs"
    root.mkdir()
    return DataFiles(root)


def gzip_of(*parts: tuple[bytes, int]) -> bytes:
    """A gzip stream of each ``unit`` repeated ``times``, built from repeated members.

    gzip readers take concatenated members as one stream, so a stream that expands to a
    GiB is built from one compressed MiB, at once and in little memory.
    """
    out = bytearray()
    for unit, times in parts:
        per_member = max(1, MiB // len(unit))
        members, rest = divmod(times, per_member)
        if members:
            out += gzip.compress(unit * per_member) * members
        if rest:
            out += gzip.compress(unit * rest)
    return bytes(out)
