"""Intake under limits: bombs, wide and long tables, deep JSON, slow parses are refused
while the upload is read, with an error naming the limit and its setting."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.datasets.conftest import MiB, gzip_of

from modelyard.config import Settings
from modelyard.datasets.formats import ingest
from modelyard.datasets.formats.limits import IntakeLimits
from modelyard.errors import InvalidInput, PayloadTooLarge


def refused(sources: list[Path], out_dir: Path, error: type[Exception], **kwargs: Any) -> str:
    """Ingest ``sources`` expecting ``error``; check ``out_dir`` is left empty; the message."""
    with pytest.raises(error) as info:
        ingest(sources, out_dir, **kwargs)
    assert type(info.value) is error
    assert list(out_dir.iterdir()) == []
    return str(info.value)


def server_limits(**overrides: Any) -> IntakeLimits:
    """The limits a server with default settings holds uploads to."""
    return IntakeLimits.from_settings(Settings(**overrides))


# Decompression bombs ------------------------------------------------------------------


def test_a_gigabyte_jsonl_line_in_a_megabyte_of_gzip_is_refused_at_the_line_limit(
    files: Any, out_dir: Path
) -> None:
    bomb = files.raw("bomb.jsonl.gz", gzip_of((b'{"a": "', 1), (b"x", 1024 * MiB), (b'"}\n', 1)))
    assert bomb.stat().st_size < 2 * MiB

    message = refused([bomb], out_dir, PayloadTooLarge, limits=server_limits())

    assert message == (
        f"JSONL line 1 is longer than {8 * MiB} bytes, the most this server accepts "
        "(MODELYARD_MAX_DATASET_LINE_BYTES)"
    )


def test_jsonl_lines_up_to_the_limit_go_in(files: Any, out_dir: Path) -> None:
    line = b'{"a": "' + b"x" * 93 + b'"}\n'
    assert len(line) == 103
    source = files.raw("rows.jsonl", b'{"a": "short"}\n' + line)
    limits = IntakeLimits(max_line_bytes=103)
    assert ingest([source], out_dir, limits=limits).num_rows == 2

    source = files.raw("long.jsonl", b'{"a": "short"}\n' + line.replace(b"x", b"xx", 1))
    message = refused([source], out_dir / "again", PayloadTooLarge, limits=limits)
    assert message.startswith("JSONL line 2 is longer than 103 bytes")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_that_expands_too_far_is_refused_while_it_is_read(
    files: Any, out_dir: Path, fmt: str
) -> None:
    # Megabytes of rows from a few KB: a thousand times its size.
    if fmt == "csv":
        rows = 2 * MiB
        bomb = files.raw("bomb.csv.gz", gzip_of((b"a,b\n", 1), (b"1,2\n", rows)))
    else:
        rows = MiB // 8
        bomb = files.raw("bomb.jsonl.gz", gzip_of((b'{"a":1, "b":22}\n', rows)))
    what = f"the {fmt.upper()} file"

    ratio = IntakeLimits(max_expansion=100, expansion_grace_bytes=MiB)
    message = refused([bomb], out_dir, PayloadTooLarge, limits=ratio)
    assert message.startswith(f"{what} expands to at least ")
    assert message.endswith(
        f"from a {bomb.stat().st_size}-byte upload, more than the 100 times its size this "
        "server accepts (MODELYARD_MAX_DATASET_EXPANSION)"
    )

    size = IntakeLimits(max_bytes=MiB)
    message = refused([bomb], out_dir, PayloadTooLarge, limits=size)
    assert message.startswith(f"{what} expands to at least ")
    assert message.endswith(
        f"more than the {MiB} this server accepts (MODELYARD_MAX_DATASET_BYTES)"
    )

    # Within the grace a dense file goes in: small uploads are not bombs.
    grace = IntakeLimits(max_expansion=100, expansion_grace_bytes=16 * MiB)
    assert ingest([bomb], out_dir, limits=grace).num_rows == rows


def test_npz_that_expands_too_far_is_refused_before_any_array_is_written(
    files: Any, out_dir: Path
) -> None:
    bomb = files.npz("bomb.npz", compressed=True, x=np.zeros((16, MiB // 2), np.float32))
    assert bomb.stat().st_size < 64 * 1024

    limits = IntakeLimits(max_expansion=200, expansion_grace_bytes=MiB)
    message = refused([bomb], out_dir, PayloadTooLarge, limits=limits)

    assert message == (
        f"the NPZ archive expands to {32 * MiB} bytes from a {bomb.stat().st_size}-byte "
        "upload, more than the 200 times its size this server accepts "
        "(MODELYARD_MAX_DATASET_EXPANSION)"
    )


def test_gzip_idx_that_expands_too_far_is_refused(files: Any, out_dir: Path) -> None:
    images = files.idx("images-idx3-ubyte.gz", np.zeros((4096, 64, 64), np.uint8), gz=True)
    limits = IntakeLimits(max_expansion=200, expansion_grace_bytes=MiB)
    message = refused([images], out_dir, PayloadTooLarge, limits=limits)
    assert message.startswith(f"the IDX data set expands to {16 * MiB} bytes from a ")


def _constant_parquet(path: Path, rows: int, columns: int = 1) -> Path:
    """A Parquet file of ``rows`` equal values per column: run-length encoded, a few KB."""
    schema = pa.schema([pa.field(f"c{i}", pa.int64()) for i in range(columns)])
    chunk = pa.table({f"c{i}": np.full(min(rows, MiB), 7, np.int64) for i in range(columns)})
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, MiB):
            writer.write_table(chunk.slice(0, min(MiB, rows - start)))
    return path


def test_parquet_that_decodes_too_far_is_refused_while_it_is_read(
    tmp_path: Path, out_dir: Path
) -> None:
    bomb = _constant_parquet(tmp_path / "bomb.parquet", rows=8 * MiB)
    assert bomb.stat().st_size < 64 * 1024

    limits = IntakeLimits(max_expansion=200, expansion_grace_bytes=4 * MiB)
    message = refused([bomb], out_dir, PayloadTooLarge, limits=limits)

    assert message.startswith("the Parquet file expands to at least ")
    assert message.endswith("(MODELYARD_MAX_DATASET_EXPANSION)")


# Rows and columns ---------------------------------------------------------------------


def _table_source(fmt: str, files: Any, tmp_path: Path, rows: int, columns: int) -> Path:
    names = [f"c{i}" for i in range(columns)]
    if fmt == "csv":
        text = (
            ",".join(names) + "\n" + "".join(",".join(["1"] * columns) + "\n" for _ in range(rows))
        )
        return files.raw("table.csv", text.encode())
    if fmt == "jsonl":
        return files.jsonl("table.jsonl", [dict.fromkeys(names, 1) for _ in range(rows)])
    if fmt == "parquet":
        path = tmp_path / "table.parquet"
        pq.write_table(pa.table({n: np.ones(rows, np.int64) for n in names}), path)
        return path
    if fmt == "npz":
        arrays = {n: np.ones(rows, np.int64) for n in names}
        return files.npz("table.npz", **arrays)
    return files.idx("images-idx1-ubyte", np.ones(rows, np.uint8))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "npz", "idx"])
def test_rows_beyond_the_limit_are_refused(
    files: Any, tmp_path: Path, out_dir: Path, fmt: str
) -> None:
    source = _table_source(fmt, files, tmp_path, rows=100, columns=2)

    message = refused([source], out_dir, PayloadTooLarge, limits=IntakeLimits(max_rows=99))

    assert message.endswith(
        "holds more than 99 rows, the most this server accepts (MODELYARD_MAX_DATASET_ROWS)"
    )
    assert ingest([source], out_dir, limits=IntakeLimits(max_rows=100)).num_rows == 100


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "npz"])
def test_columns_beyond_the_limit_are_refused(
    files: Any, tmp_path: Path, out_dir: Path, fmt: str
) -> None:
    source = _table_source(fmt, files, tmp_path, rows=3, columns=21)
    noun = "arrays" if fmt == "npz" else "columns"

    message = refused([source], out_dir, PayloadTooLarge, limits=IntakeLimits(max_columns=20))

    assert message.endswith(
        f"has more than 20 {noun}, the most this server accepts (MODELYARD_MAX_DATASET_COLUMNS)"
    )
    assert ingest([source], out_dir, limits=IntakeLimits(max_columns=21)).num_rows == 3


def test_a_csv_of_a_hundred_thousand_columns_is_refused_at_its_header(
    files: Any, out_dir: Path
) -> None:
    header = ",".join(f"c{i}" for i in range(100_000))
    source = files.raw("wide.csv", (header + "\n" + ",".join(["0"] * 100_000) + "\n").encode())
    message = refused([source], out_dir, PayloadTooLarge, limits=server_limits())
    assert message == (
        "the CSV file has more than 10000 columns, the most this server accepts "
        "(MODELYARD_MAX_DATASET_COLUMNS)"
    )


def test_columns_are_counted_in_a_header_with_quoted_delimiters(files: Any, out_dir: Path) -> None:
    source = files.raw("quoted.csv", b'"a,b","c,d",e\n1,2,3\n')
    parsed = ingest([source], out_dir, limits=IntakeLimits(max_columns=3))
    assert [c["name"] for c in parsed.schema["columns"]] == ["a,b", "c,d", "e"]


def test_npz_declaring_more_arrays_than_the_limit_is_refused_from_its_end_record(
    files: Any, out_dir: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(30):
            archive.writestr(f"a{i}.npy", b"")
    # A damaged directory: zipfile would refuse it, but the end record is read first.
    data = buffer.getvalue().replace(b"PK\x01\x02", b"XX\x01\x02", 1)
    source = files.raw("many.npz", data)

    message = refused([source], out_dir, PayloadTooLarge, limits=IntakeLimits(max_columns=20))

    assert message == (
        "the NPZ archive has more than 20 arrays, the most this server accepts "
        "(MODELYARD_MAX_DATASET_COLUMNS)"
    )


# JSON nesting -------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    """An object holding arrays nested so that the line is ``depth`` levels deep."""
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}\n"


def test_jsonl_nested_200000_deep_is_invalid_input_naming_the_line(
    files: Any, out_dir: Path
) -> None:
    source = files.raw("deep.jsonl", b'{"a": 1}\n' + _nested(200_000))
    message = refused([source], out_dir, InvalidInput, limits=server_limits())
    assert message == (
        "JSONL line 2: values nest more than 64 deep, the most this server accepts "
        "(MODELYARD_MAX_DATASET_JSON_DEPTH)"
    )


def test_jsonl_nested_deep_is_invalid_input_even_without_a_depth_limit(
    files: Any, out_dir: Path
) -> None:
    source = files.raw("deep.jsonl", _nested(200_000))
    message = refused([source], out_dir, InvalidInput)
    assert message == "JSONL line 1: values nest too deep to parse"


def test_jsonl_depth_counts_brackets_outside_strings_only(files: Any, out_dir: Path) -> None:
    limits = IntakeLimits(max_json_depth=8)
    in_strings = b'{"a": "' + b"[{" * 50 + b'", "b": "\\"[[[[[[[[[[["}\n'
    source = files.raw("ok.jsonl", _nested(8) + in_strings + b'{"c": [[1], [2], [3], [4]]}\n' * 9)
    assert ingest([source], out_dir, limits=limits).num_rows == 11

    source = files.raw("deep.jsonl", in_strings + _nested(9))
    message = refused([source], out_dir / "again", InvalidInput, limits=limits)
    assert message.startswith("JSONL line 2: values nest more than 8 deep")


def test_jsonl_number_too_long_to_convert_is_invalid_input(files: Any, out_dir: Path) -> None:
    source = files.raw("long.jsonl", b'{"a": ' + b"1" * 5000 + b"}\n")
    message = refused([source], out_dir, InvalidInput)
    assert message.startswith("JSONL line 1: a number has more than ")


# CSV quoting --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_csv_with_an_unterminated_quote_is_refused_naming_its_line(
    files: Any, out_dir: Path, gz: bool
) -> None:
    data = b'a,b\n1,"one\ntwo"\n2,"x ""y"""\n3,"never closed\n4,5\n6,7\n'
    source = files.raw("open.csv", gzip.compress(data) if gz else data)
    message = refused([source], out_dir, InvalidInput)
    assert message == (
        "CSV line 5 opens a quoted field that is never closed: the file ends inside the quotes"
    )


def test_csv_quote_opened_late_in_a_large_file_is_found(files: Any, out_dir: Path) -> None:
    # About 8 MB: the quote opens in a later block than the first, and no quote follows.
    lines = [b"id,note"] + [b'%d,"row ""%d"" of many"' % (i, i) for i in range(300_000)]
    lines += [b'0,"opened here'] + [b"%d,plain" % i for i in range(20_000)]
    source = files.raw("late.csv", b"\n".join(lines) + b"\n")
    message = refused([source], out_dir, InvalidInput)
    assert message.startswith("CSV line 300002 opens a quoted field that is never closed")


def test_csv_quotes_that_close_go_in(files: Any, out_dir: Path) -> None:
    source = files.raw("quotes.csv", b'name,height\n"Ann ""A""",5\'11"\n"B\n""b""",6\'1"\n"",""\n')
    parsed = ingest([source], out_dir)
    table = pq.read_table(parsed.canonical["data.parquet"])
    assert table.to_pydict() == {
        "name": ['Ann "A"', 'B\n"b"', None],
        "height": ["5'11\"", "6'1\"", None],
    }


# Time budget --------------------------------------------------------------------------


class SteppingClock:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _long_source(fmt: str, files: Any, tmp_path: Path) -> tuple[Path, int]:
    """A file in ``fmt`` whose intake reads at least four chunks, and its rows."""
    if fmt == "npz":
        rows = 1_500_000  # two arrays of 12 MB, two chunks each
        return _table_source(fmt, files, tmp_path, rows=rows, columns=2), rows
    if fmt == "idx":
        rows = 32 * 1024  # 32 MiB of images, four chunks
        return files.idx("images-idx3-ubyte", np.zeros((rows, 32, 32), np.uint8)), rows
    rows = {"csv": 200_000, "jsonl": 60_000, "parquet": 300_000}[fmt]
    return _table_source(fmt, files, tmp_path, rows=rows, columns=2), rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "npz", "idx"])
def test_intake_stops_when_its_time_budget_is_spent(
    files: Any, tmp_path: Path, out_dir: Path, fmt: str
) -> None:
    source, rows = _long_source(fmt, files, tmp_path)
    limits = IntakeLimits(timeout_s=3)

    message = refused([source], out_dir, PayloadTooLarge, limits=limits, clock=SteppingClock())

    assert message == (
        "the upload could not be taken in within 3 s, the most this server spends on one "
        "data set (MODELYARD_DATASET_INTAKE_TIMEOUT_S)"
    )
    assert ingest([source], out_dir, limits=limits, clock=lambda: 0.0).num_rows == rows


# What errors say ----------------------------------------------------------------------


def _staged(tmp_path: Path, data: bytes) -> Path:
    """``data`` as a server stages it: a temporary name in a scratch folder."""
    folder = tmp_path / "data" / "tmp" / "proc-1234"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "upload-k3j4h5.part"
    path.write_bytes(data)
    return path


def _parquet_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), path)
    return path.read_bytes()


BAD_UPLOADS: list[tuple[str, dict[str, Any], Any]] = [
    ("unknown-format", {}, lambda _t: b"\x01\x02 nothing known"),
    ("truncated-parquet", {"fmt": "parquet"}, lambda t: _parquet_bytes(t)[:-30]),
    ("parquet-garbage", {"fmt": "parquet"}, lambda _t: b"PAR1" + b"\x00" * 64 + b"PAR1"),
    ("corrupt-gzip-csv", {"fmt": "csv"}, lambda _t: gzip.compress(b"a,b\n1,2\n" * 99)[:-20]),
    ("corrupt-gzip-jsonl", {"fmt": "jsonl"}, lambda _t: gzip.compress(b'{"a":1}\n' * 99)[:-6]),
    ("not-a-zip", {"fmt": "npz"}, lambda _t: b"PK\x03\x04 not really"),
    ("bad-csv", {"fmt": "csv"}, lambda _t: b'a,b\n1,"2\n'),
    ("bad-idx", {"fmt": "idx"}, lambda _t: gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09")),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "make"), BAD_UPLOADS, ids=[case for case, _, _ in BAD_UPLOADS]
)
def test_errors_speak_of_the_upload_not_of_server_paths(
    tmp_path: Path, case: str, kwargs: dict[str, Any], make: Any
) -> None:
    source = _staged(tmp_path, make(tmp_path))
    with pytest.raises(InvalidInput) as info:
        ingest([source], tmp_path / "data" / "tmp" / "work", **kwargs)
    message = str(info.value)
    for secret in (str(tmp_path), "upload-k3j4h5", ".part", "proc-1234"):
        assert secret not in message, message


def test_errors_name_the_users_file_when_there_is_one(tmp_path: Path) -> None:
    source = _staged(tmp_path, b"\x01\x02 nothing known")
    with pytest.raises(InvalidInput) as info:
        ingest([source], tmp_path / "out", filename="notes.bin")
    assert str(info.value).startswith("cannot tell the format of 'notes.bin' ")
    with pytest.raises(InvalidInput) as info:
        ingest([source], tmp_path / "out")
    assert str(info.value).startswith("cannot tell the format of the upload ")


# Fortran order ------------------------------------------------------------------------


def test_fortran_ordered_arrays_are_copied_without_loading_them(files: Any, out_dir: Path) -> None:
    data = np.asfortranarray(np.arange(3 * 5 * 7, dtype=">i4").reshape(3, 5, 7))
    source = files.npz("f.npz", x=data)
    parsed = ingest([source], out_dir)
    copied = np.load(parsed.canonical["x.npy"], mmap_mode="r")
    assert copied.flags.c_contiguous
    assert copied.dtype == np.dtype("=i4")
    np.testing.assert_array_equal(copied, data)
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.npy"]
