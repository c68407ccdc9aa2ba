"""Intake of malformed data: a precise InvalidInput, and nothing left in the output directory."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.datasets.formats import ingest
from modelyard.datasets.formats.limits import IntakeLimits
from modelyard.errors import (
    InvalidInput,
    ModelyardError,
    PayloadTooLarge,
    UnsafeArtifact,
    UnsupportedFormat,
)


def refused(
    sources: Sequence[Path], out_dir: Path, error: type[Exception] = InvalidInput, **kwargs: Any
) -> str:
    """Ingest ``sources`` expecting ``error``; check ``out_dir`` is left empty; the message."""
    with pytest.raises(error) as info:
        ingest(sources, out_dir, **kwargs)
    assert list(out_dir.iterdir()) == []
    return str(info.value)


# CSV ----------------------------------------------------------------------------------


def test_ragged_csv_names_the_line(files: Any, out_dir: Path) -> None:
    source = files.raw("bad.csv", b'a,b,c\n1,2,3\n"multi\nline",5,6\n\n7,8\n9,10,11\n')
    message = refused([source], out_dir)
    assert "CSV line 6 has 2 columns, expected 3" in message


def test_ragged_csv_row_deep_in_a_large_file(files: Any, out_dir: Path) -> None:
    # About 8 MB, so the bad row is read in a later block, by a parallel reader.
    lines = ["x,y,note"] + [
        f"{i},{i * 2},row {i:08d} of a large file to read" for i in range(150_000)
    ]
    lines.insert(140_001, "1,2")
    source = files.raw("big.csv.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    message = refused([source], out_dir)
    assert "CSV line 140002 has 2 columns, expected 3" in message


def test_csv_with_header_only(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("empty.csv", b"a,b,c\n")], out_dir)
    assert "holds no rows" in message


def test_csv_with_duplicate_column(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("dup.csv", b"a,b,a\n1,2,3\n")], out_dir)
    assert "duplicate column name 'a'" in message


def test_csv_with_invalid_utf8(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("bad.csv", b"name\nok\n\xff\xfe\n")], out_dir)
    assert "UTF8" in message


# JSON Lines ---------------------------------------------------------------------------


def test_bad_jsonl_line_names_the_line(files: Any, out_dir: Path) -> None:
    source = files.raw("bad.jsonl", b'{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n')
    message = refused([source], out_dir)
    assert message.startswith("JSONL line 3: invalid JSON")


def test_jsonl_line_that_is_not_an_object(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("bad.jsonl", b'{"a": 1}\n[1, 2]\n')], out_dir)
    assert message == "JSONL line 2: expected a JSON object, got an array"


def test_jsonl_line_that_is_not_utf8(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("bad.jsonl", b'{"a": 1}\n{"a": "\xff"}\n')], out_dir)
    assert message == "JSONL line 2 is not valid UTF-8"


def test_truncated_gzip_jsonl(files: Any, out_dir: Path) -> None:
    data = gzip.compress(b"".join(b'{"a": %d}\n' % i for i in range(1000)))
    message = refused([files.raw("rows.jsonl.gz", data[: len(data) // 2])], out_dir)
    assert "cannot read the JSONL file" in message


# NPZ ----------------------------------------------------------------------------------


def test_truncated_npz(digits: Any, files: Any, out_dir: Path) -> None:
    source = files.npz("digits.npz", x=digits.images, y=digits.target)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    message = refused([source], out_dir)
    assert message.startswith("truncated or corrupt NPZ")


def test_corrupt_npz_member_is_named_and_earlier_arrays_are_removed(
    digits: Any, files: Any, out_dir: Path
) -> None:
    source = files.npz("digits.npz", x=digits.target, y=digits.images)
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        offset = archive.getinfo("y.npy").header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    data[offset + 30 + name_len + extra_len + 1000] ^= 0xFF
    source.write_bytes(bytes(data))

    message = refused([source], out_dir)

    assert message.startswith("truncated or corrupt NPZ: array 'y'")
    assert "CRC" in message


def test_npz_with_object_array_is_refused_unread(files: Any, out_dir: Path) -> None:
    source = files.npz(
        "objects.npz", x=np.zeros((2, 3)), meta=np.array([{"a": 1}, None], dtype=object)
    )
    message = refused([source], out_dir, UnsafeArtifact)
    assert "'meta'" in message
    assert "object" in message


def test_npz_arrays_with_different_lengths(files: Any, out_dir: Path) -> None:
    source = files.npz("mismatch.npz", x=np.zeros((10, 3)), y=np.zeros(9))
    message = refused([source], out_dir)
    assert "first dimension" in message
    assert "'x' has 10" in message
    assert "'y' has 9" in message


def test_npz_with_a_scalar(files: Any, out_dir: Path) -> None:
    message = refused([files.npz("scalar.npz", x=np.zeros(3), n=np.float64(3))], out_dir)
    assert "'n' is a scalar" in message


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npz_member_with_a_path_is_unsafe(files: Any, out_dir: Path) -> None:
    source = files.raw("evil.npz", _zip({"../evil.npy": _npy(np.zeros(3))}))
    message = refused([source], out_dir, UnsafeArtifact)
    assert "'../evil'" in message


def test_npz_member_that_is_not_an_array(files: Any, out_dir: Path) -> None:
    source = files.raw("odd.npz", _zip({"x.npy": _npy(np.zeros(3)), "notes.txt": b"hi"}))
    message = refused([source], out_dir)
    assert "'notes.txt' is not a .npy array" in message


def test_npz_header_that_overstates_the_data(files: Any, out_dir: Path) -> None:
    npy = _npy(np.zeros(4, dtype=np.uint8)).replace(b"(4,)", b"(9,)")
    message = refused([files.raw("short.npz", _zip({"x.npy": npy}))], out_dir)
    assert "array 'x'" in message
    assert "(9,)" in message


def test_npz_that_is_not_a_zip(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("data.npz", b"hello world")], out_dir)
    assert "not an NPZ (zip) archive" in message


# IDX ----------------------------------------------------------------------------------


def test_idx_with_wrong_magic(files: Any, out_dir: Path) -> None:
    source = files.raw("images.idx3-ubyte", b"\x00\x00\x07\x03" + b"\x00" * 32)
    message = refused([source], out_dir, fmt="idx")
    assert "magic 0x00000703" in message
    assert "images file" in message


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("change", [-5, 5])
@pytest.mark.parametrize("bad", ["images", "labels"])
def test_idx_data_length_must_match_the_header(
    digits: Any, files: Any, out_dir: Path, gz: bool, change: int, bad: str
) -> None:
    arrays = {
        "images": digits.images[:10].astype(np.uint8),
        "labels": digits.target[:10].astype(np.uint8),
    }
    sources = []
    for role, array in arrays.items():
        data = files.idx_bytes(array)
        if role == bad:
            data = data[:change] if change < 0 else data + bytes(change)
        sources.append(files.raw(f"{role}-idx-ubyte", gzip.compress(data) if gz else data))
    declared = arrays[bad].nbytes

    # With gzip the length is only known once the data has been read: for a bad labels
    # file, x.npy is written first and must be removed.
    message = refused(sources, out_dir)

    assert f"the {bad} file" in message
    if not gz:
        assert f"holds {declared + change} data bytes but its header declares {declared}" in message
    elif change < 0:
        assert f"ends early: {declared + change} of the {declared} data bytes" in message
    else:
        assert f"has bytes beyond the {declared} data bytes" in message


def test_idx_images_and_labels_counts_must_match(digits: Any, files: Any, out_dir: Path) -> None:
    sources = [
        files.idx("images-idx3-ubyte", digits.images[:10].astype(np.uint8)),
        files.idx("labels-idx1-ubyte", digits.target[:9].astype(np.uint8)),
    ]
    message = refused(sources, out_dir)
    assert message == "the images file holds 10 items but the labels file holds 9"


def test_idx_header_cut_short(files: Any, out_dir: Path) -> None:
    message = refused([files.raw("x-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00")], out_dir)
    assert "ends inside its header" in message


def test_idx_takes_at_most_two_files(digits: Any, files: Any, out_dir: Path) -> None:
    path = files.idx("labels-idx1-ubyte", digits.target.astype(np.uint8))
    message = refused([path, path, path], out_dir, fmt="idx")
    assert "got 3 files" in message


# Any format ---------------------------------------------------------------------------


def test_unknown_format(files: Any, out_dir: Path) -> None:
    message = refused(
        [files.raw("upload", b"hello world")], out_dir, UnsupportedFormat, filename="notes.txt"
    )
    assert "'notes.txt'" in message
    assert "b'hello wo'" in message
    assert "csv, npz, parquet, jsonl, idx" in message


def test_format_named_explicitly_must_be_known(iris: pa.Table, files: Any, out_dir: Path) -> None:
    message = refused([files.csv("iris.csv", iris)], out_dir, UnsupportedFormat, fmt="xlsx")
    assert "'xlsx'" in message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("csv", "label column 'kind' not found; columns: 'sepal length (cm)', "),
        ("parquet", "label column 'kind' not found; columns: 'sepal length (cm)', "),
        ("jsonl", "label column 'kind' not found; columns: 'sepal length (cm)', "),
        ("npz", "label array 'kind' not found; arrays: 'x', 'y'"),
        ("idx", "label array 'kind' not found; arrays: 'x'"),
    ],
)
def test_missing_label_names_what_exists(
    iris: pa.Table, files: Any, out_dir: Path, tmp_path: Path, make: str, expected: str
) -> None:
    if make == "csv":
        source = files.csv("iris.csv", iris)
    elif make == "parquet":
        source = tmp_path / "iris.parquet"
        pq.write_table(iris, source)
    elif make == "jsonl":
        source = files.jsonl("iris.jsonl", iris.to_pylist())
    elif make == "npz":
        source = files.npz("iris.npz", x=np.zeros((3, 2)), y=np.zeros(3))
    else:
        source = files.idx("images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    message = refused([source], out_dir, label="kind")
    assert message.startswith(expected)


def test_long_column_lists_are_shortened(files: Any, out_dir: Path) -> None:
    header = ",".join(f"pixel_{i}" for i in range(64)).encode()
    source = files.raw("wide.csv", header + b"\n" + b",".join([b"0"] * 64) + b"\n")
    message = refused([source], out_dir, label="target")
    assert "'pixel_11', … (52 more)" in message


@pytest.mark.parametrize(
    ("name", "data", "kwargs", "expected"),
    [
        ("a.csv", b"", {}, "the file is empty"),
        ("a.csv", b"", {"fmt": "csv"}, "the file is empty"),
        ("a.csv.gz", gzip.compress(b"", mtime=0), {}, "the CSV file is empty"),
        ("a.jsonl", b"\n\n", {}, "the JSONL file holds no rows"),
        ("a.npz", _zip({}), {}, "the NPZ archive holds no arrays"),
    ],
)
def test_empty_files(
    files: Any, out_dir: Path, name: str, data: bytes, kwargs: dict[str, Any], expected: str
) -> None:
    assert refused([files.raw(name, data)], out_dir, **kwargs) == expected


def test_empty_labels_file(digits: Any, files: Any, out_dir: Path) -> None:
    sources = [
        files.idx("images-idx3-ubyte", digits.images.astype(np.uint8)),
        files.raw("labels-idx1-ubyte", b""),
    ]
    assert refused(sources, out_dir) == "the labels file is empty"


def test_truncated_parquet(iris: pa.Table, tmp_path: Path, out_dir: Path) -> None:
    source = tmp_path / "iris.parquet"
    pq.write_table(iris, source)
    source.write_bytes(source.read_bytes()[:-100])
    message = refused([source], out_dir)
    assert "Parquet" in message


def test_one_file_formats_take_one_file(iris: pa.Table, files: Any, out_dir: Path) -> None:
    path = files.csv("iris.csv", iris)
    assert refused([path, path], out_dir, fmt="csv") == "CSV takes one file, got 2"


def test_output_directory_must_start_empty(iris: pa.Table, files: Any, out_dir: Path) -> None:
    keep = out_dir / "keep.txt"
    keep.write_text("mine")
    with pytest.raises(ModelyardError) as info:
        ingest([files.raw("bad.csv", b"a,b\n1\n")], out_dir)
    assert not isinstance(info.value, InvalidInput)
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]
    assert keep.read_text() == "mine"


# Size caps --------------------------------------------------------------------------------


def test_arrays_that_expand_beyond_the_cap_are_refused_before_any_is_written(
    files: Any, out_dir: Path
) -> None:
    zeros = np.zeros((1000, 256), np.float32)  # 1 MB of data, a few KB compressed
    npz = files.npz("bomb.npz", compressed=True, x=zeros, y=np.zeros(1000, np.int64))
    assert npz.stat().st_size < 50_000
    capped = IntakeLimits(max_bytes=500_000)
    message = refused([npz], out_dir, PayloadTooLarge, label="y", limits=capped)
    assert "NPZ archive expands to 1032000 bytes" in message
    idx = files.idx("images-idx3-ubyte.gz", np.zeros((1000, 28, 28), np.uint8), gz=True)
    message = refused([idx], out_dir, PayloadTooLarge, fmt="idx", limits=capped)
    assert "IDX data set expands to 784000 bytes" in message
    # Under the cap the same files go in.
    roomy = IntakeLimits(max_bytes=2_000_000)
    assert ingest([npz], out_dir, label="y", limits=roomy).num_rows == 1000
