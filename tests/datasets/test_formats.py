"""Intake of well-formed data: every format round-trips into its canonical form."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.datasets import formats
from modelyard.datasets.formats import FORMATS, ParsedDataset, detect_format, ingest

IRIS_COLUMNS = [
    {"name": "sepal length (cm)", "dtype": "float64"},
    {"name": "sepal width (cm)", "dtype": "float64"},
    {"name": "petal length (cm)", "dtype": "float64"},
    {"name": "petal width (cm)", "dtype": "float64"},
    {"name": "target", "dtype": "int64"},
    {"name": "species", "dtype": "string"},
]


def read_table(parsed: ParsedDataset) -> pa.Table:
    return pq.read_table(parsed.canonical["data.parquet"])


def read_array(parsed: ParsedDataset, name: str) -> np.ndarray[Any, Any]:
    array: np.ndarray[Any, Any] = np.load(parsed.canonical[f"{name}.npy"], mmap_mode="r")
    assert array.flags.c_contiguous
    assert array.dtype.isnative
    return array


def digits_table(digits: Any, pixel_type: pa.DataType, target_type: pa.DataType) -> pa.Table:
    pixels = digits.data.astype(np.int64)
    columns = {f"pixel_{i}": pa.array(pixels[:, i]).cast(pixel_type) for i in range(64)}
    columns["target"] = pa.array(digits.target).cast(target_type)
    return pa.table(columns)


def test_public_api_is_exported() -> None:
    assert set(formats.__all__) == {
        "FORMATS",
        "IntakeLimits",
        "ParsedDataset",
        "detect_format",
        "ingest",
    }
    assert all(hasattr(formats, name) for name in formats.__all__)
    assert FORMATS == ("csv", "npz", "parquet", "jsonl", "idx")


def _gz(data: bytes) -> bytes:
    # No time stamp in the header: the bytes name a parametrized case, which must be the same
    # in every process that collects the tests (pytest-xdist compares them).
    return gzip.compress(data, mtime=0)


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("iris.csv", b"a,b\n1,2\n", "csv"),
        ("IRIS.CSV.GZ", _gz(b"a,b\n1,2\n"), "csv"),
        ("rows.jsonl", b'{"a": 1}\n', "jsonl"),
        ("rows.ndjson.gz", _gz(b'{"a": 1}\n'), "jsonl"),
        (None, b'\xef\xbb\xbf  {"a": 1}\n', "jsonl"),
        ("table.parquet", b"PAR1\x15\x04", "parquet"),
        (None, b"PAR1\x15\x04", "parquet"),
        (None, b"PK\x03\x04\x14\x00", "npz"),
        ("arrays.npz", b"PK\x05\x06", "npz"),
        ("train-images-idx3-ubyte.gz", b"", "idx"),
        ("t10k-labels.idx1-ubyte", b"", "idx"),
        (None, b"\x00\x00\x08\x03\x00\x00\x00\x0a", "idx"),
        (None, _gz(b"\x00\x00\x08\x01\x00\x00\x00\x0a"), "idx"),
        # Contents decide over a misleading name.
        ("data.csv", b"PAR1\x15\x04", "parquet"),
        ("notes.txt", b"hello", None),
        (None, b"a,b\n1,2\n", None),
        (None, b"\x00\x00\x0a\x03", None),
        (None, b"", None),
    ],
)
def test_detect_format(filename: str | None, head: bytes, expected: str | None) -> None:
    assert detect_format(filename, head) == expected


@pytest.mark.parametrize("gz", [False, True])
def test_csv_round_trip(iris: pa.Table, files: Any, out_dir: Path, gz: bool) -> None:
    source = files.csv("iris.csv", iris)
    if gz:
        source = files.raw("iris.csv.gz", gzip.compress(source.read_bytes()))

    parsed = ingest([source], out_dir, filename=source.name, label="target")

    assert parsed.format == "csv"
    assert parsed.kind == "table"
    assert parsed.schema == {"columns": IRIS_COLUMNS}
    assert parsed.num_rows == 150
    assert parsed.label == "target"
    assert parsed.canonical == {"data.parquet": out_dir / "data.parquet"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["data.parquet"]
    assert read_table(parsed).equals(iris)


def test_csv_integers_stay_integers(digits: Any, files: Any, out_dir: Path) -> None:
    table = digits_table(digits, pa.int64(), pa.int64())
    parsed = ingest([files.csv("digits.csv", table)], out_dir, label="target")

    assert parsed.num_rows == 1797
    assert {c["dtype"] for c in parsed.schema["columns"]} == {"int64"}
    assert read_table(parsed).equals(table)


def test_csv_quoted_fields_blanks_and_spaces(files: Any, out_dir: Path) -> None:
    source = files.raw(
        "notes.csv",
        b'\xef\xbb\xbfid,score,note,flag\n1, 2.5 ,"two\nlines",true\n\n2,,"a, b",false\n3,7,,\n',
    )
    parsed = ingest([source], out_dir)

    assert parsed.schema == {
        "columns": [
            {"name": "id", "dtype": "int64"},
            {"name": "score", "dtype": "float64"},
            {"name": "note", "dtype": "string"},
            {"name": "flag", "dtype": "bool"},
        ]
    }
    assert read_table(parsed).to_pydict() == {
        "id": [1, 2, 3],
        "score": [2.5, None, 7.0],
        "note": ["two\nlines", "a, b", None],
        "flag": [True, False, None],
    }


def test_large_csv_streams_with_types_from_every_row(files: Any, out_dir: Path) -> None:
    # About 8.5 MB: several reader blocks. The values that change a column's type come only
    # in the last row, so types guessed from the first block would be wrong.
    rows = 200_000
    lines = ["id,count,code,name"]
    lines += [f"{i},{i % 97},{i % 13},row {i:08d} of the large file" for i in range(rows - 1)]
    lines.append(f"{rows - 1},2.5,abc,last")
    source = files.raw("big.csv", ("\n".join(lines) + "\n").encode())
    assert source.stat().st_size > 8_000_000

    parsed = ingest([source], out_dir, label="count")

    assert parsed.num_rows == rows
    assert [c["dtype"] for c in parsed.schema["columns"]] == [
        "int64",
        "float64",
        "string",
        "string",
    ]
    metadata = pq.ParquetFile(parsed.canonical["data.parquet"]).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        65_536,
        65_536,
        65_536,
        3_392,
    ]
    table = read_table(parsed)
    assert table.column("id").to_pylist() == list(range(rows))
    assert table.column("count")[-1].as_py() == 2.5
    assert table.column("count")[1000].as_py() == 1000 % 97
    assert table.column("code")[14].as_py() == "1"
    assert table.column("code")[-1].as_py() == "abc"


def test_parquet_round_trip_widens_number_types(digits: Any, tmp_path: Path, out_dir: Path) -> None:
    narrow = digits_table(digits, pa.float32(), pa.int32())
    narrow = narrow.append_column(
        "name", pa.array([str(t) for t in digits.target]).dictionary_encode()
    )
    source = tmp_path / "digits.parquet"
    pq.write_table(narrow, source, row_group_size=500)

    parsed = ingest([source], out_dir, label="target")

    assert parsed.format == "parquet"
    assert parsed.num_rows == 1797
    columns = parsed.schema["columns"]
    assert columns[0] == {"name": "pixel_0", "dtype": "float64"}
    assert columns[64:] == [
        {"name": "target", "dtype": "int64"},
        {"name": "name", "dtype": "string"},
    ]
    expected = digits_table(digits, pa.float64(), pa.int64()).append_column(
        "name", pa.array([str(t) for t in digits.target])
    )
    assert read_table(parsed).equals(expected)


def test_jsonl_round_trip(iris: pa.Table, files: Any, out_dir: Path) -> None:
    source = files.jsonl("iris.jsonl", iris.to_pylist())

    parsed = ingest([source], out_dir, label="species")

    assert parsed.format == "jsonl"
    assert parsed.schema == {"columns": IRIS_COLUMNS}
    assert parsed.num_rows == 150
    assert parsed.label == "species"
    assert read_table(parsed).equals(iris)


def test_jsonl_missing_keys_mixed_numbers_and_nested_values(files: Any, out_dir: Path) -> None:
    source = files.raw(
        "rows.jsonl.gz",
        gzip.compress(
            b'{"a": 1, "b": "x"}\n'
            b'{"a": 2.5, "c": [1, 2]}\n'
            b"\n"
            b'{"a": null, "b": "y", "c": {"k": "\xc3\xa9"}, "d": 3}\n'
        ),
    )
    parsed = ingest([source], out_dir)

    assert parsed.schema == {
        "columns": [
            {"name": "a", "dtype": "float64"},
            {"name": "b", "dtype": "string"},
            {"name": "c", "dtype": "string"},
            {"name": "d", "dtype": "int64"},
        ]
    }
    assert read_table(parsed).to_pydict() == {
        "a": [1.0, 2.5, None],
        "b": ["x", None, "y"],
        "c": [None, "[1,2]", '{"k":"é"}'],
        "d": [None, None, 3],
    }


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(digits: Any, files: Any, out_dir: Path, compressed: bool) -> None:
    images = digits.images.astype(np.float32)
    target = digits.target.astype(np.int64)
    source = files.npz("digits.npz", compressed=compressed, x=images, y=target)

    parsed = ingest([source], out_dir, label="y")

    assert parsed.format == "npz"
    assert parsed.kind == "arrays"
    assert parsed.schema == {
        "arrays": {
            "x": {"dtype": "float32", "shape": [1797, 8, 8]},
            "y": {"dtype": "int64", "shape": [1797]},
        }
    }
    assert parsed.num_rows == 1797
    assert parsed.label == "y"
    assert parsed.canonical == {"x.npy": out_dir / "x.npy", "y.npy": out_dir / "y.npy"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.npy", "y.npy"]
    np.testing.assert_array_equal(read_array(parsed, "x"), images)
    np.testing.assert_array_equal(read_array(parsed, "y"), target)


def test_npz_fortran_and_big_endian_become_c_order_native(
    digits: Any, files: Any, out_dir: Path
) -> None:
    data = np.asfortranarray(digits.data.astype(">f8"))
    names = np.array([str(t) for t in digits.target])
    source = files.npz("mixed.npz", data=data, names=names, y=digits.target.astype(">i2"))

    parsed = ingest([source], out_dir)

    assert parsed.label is None
    assert parsed.schema["arrays"] == {
        "data": {"dtype": "float64", "shape": [1797, 64]},
        "names": {"dtype": "<U1", "shape": [1797]},
        "y": {"dtype": "int16", "shape": [1797]},
    }
    np.testing.assert_array_equal(read_array(parsed, "data"), digits.data)
    np.testing.assert_array_equal(read_array(parsed, "names"), names)
    np.testing.assert_array_equal(read_array(parsed, "y"), digits.target)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(digits: Any, files: Any, out_dir: Path, gz: bool) -> None:
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    suffix = ".gz" if gz else ""
    sources = [
        files.idx(f"train-images-idx3-ubyte{suffix}", images, gz=gz),
        files.idx(f"train-labels-idx1-ubyte{suffix}", labels, gz=gz),
    ]

    parsed = ingest(sources, out_dir, filename=sources[0].name)

    assert parsed.format == "idx"
    assert parsed.kind == "arrays"
    assert parsed.schema == {
        "arrays": {
            "x": {"dtype": "uint8", "shape": [1797, 8, 8]},
            "y": {"dtype": "uint8", "shape": [1797]},
        }
    }
    assert parsed.num_rows == 1797
    assert parsed.label == "y"
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.npy", "y.npy"]
    np.testing.assert_array_equal(read_array(parsed, "x"), images)
    np.testing.assert_array_equal(read_array(parsed, "y"), labels)


def test_idx_images_only_with_multibyte_values(digits: Any, files: Any, out_dir: Path) -> None:
    images = (digits.images / 16).astype(np.float32)
    source = files.idx("images.idx3", images)

    parsed = ingest([source], out_dir, fmt="idx")

    assert parsed.label is None
    assert parsed.canonical == {"x.npy": out_dir / "x.npy"}
    assert parsed.schema == {"arrays": {"x": {"dtype": "float32", "shape": [1797, 8, 8]}}}
    np.testing.assert_array_equal(read_array(parsed, "x"), images)


def test_format_comes_from_contents_without_a_name(digits: Any, files: Any, out_dir: Path) -> None:
    source = files.npz("upload.bin", x=digits.data)
    parsed = ingest([source], out_dir)
    assert parsed.format == "npz"
    assert zlib.crc32(read_array(parsed, "x").tobytes()) == zlib.crc32(digits.data.tobytes())


def test_output_directory_is_created(iris: pa.Table, files: Any, tmp_path: Path) -> None:
    out_dir = tmp_path / "new" / "canonical"
    parsed = ingest([files.csv("iris.csv", iris)], out_dir)
    assert parsed.canonical["data.parquet"].parent == out_dir
    assert read_table(parsed).num_rows == 150
