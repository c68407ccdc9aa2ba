"""CSV intake: a header row, then rows; optionally gzip-compressed.

The file is streamed twice with pyarrow's CSV reader, every column read as text. The first
pass checks the shape of every row and finds each column's type (int64, float64, bool, or
string when none fits every value); the second converts and writes. One pass would have
to fix the types from the first block, and a column of integers that holds ``1.5`` a
million rows later would then fail or be misread.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.datasets.formats.canonical import (
    ParsedDataset,
    TableSink,
    check_label,
    check_unique,
    table_result,
)
from modelyard.datasets.formats.compression import is_gzip, open_text
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

_BLOCK_BYTES = 4 * 1024 * 1024


def ingest_csv(path: Path, out_dir: Path, label: str | None) -> ParsedDataset:
    """Parse the CSV at ``path`` into ``out_dir/data.parquet``."""
    import pyarrow as pa

    names = _read_names(path)
    check_unique(names, "column")
    check_label(label, names, "column")
    types = _infer_types(path, names)
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
    with TableSink(out_dir, schema) as sink, _reading(path) as ragged:
        for batch in _open(path, names, ragged):
            sink.write(_convert(batch, schema))
    return table_result("csv", sink, label)


def _open(path: Path, names: list[str] | None, ragged: list[tuple[int, int]]) -> Any:
    """A streaming reader over ``path``; with ``names``, every column is read as text.

    A row with the wrong number of fields stops the reader, and its (expected, actual)
    field counts are appended to ``ragged``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # pyarrow ignores exceptions raised in the handler, so the row is noted and refused.
    def refuse(row: Any) -> str:
        ragged.append((row.expected_columns, row.actual_columns))
        return "error"

    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()) if names else None,
        strings_can_be_null=True,
    )
    stream = pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        # Quoted fields may span lines; without this a quoted newline would split a row.
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=refuse),
        convert_options=convert,
    )


@contextmanager
def _reading(path: Path) -> Iterator[list[tuple[int, int]]]:
    """Turn reader failures inside the block into InvalidInput with a precise message.

    Yields the list that :func:`_open` notes ragged rows in.
    """
    import pyarrow as pa

    ragged: list[tuple[int, int]] = []
    try:
        yield ragged
    except pa.ArrowInvalid as exc:
        if ragged:
            raise _ragged_error(path, *ragged[0]) from None
        if str(exc).startswith("Empty CSV file"):
            raise InvalidInput("the CSV file is empty") from None
        raise InvalidInput(f"invalid CSV: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read the CSV file (corrupt compression?): {exc}") from None


def _read_names(path: Path) -> list[str]:
    with _reading(path) as ragged:
        reader = _open(path, None, ragged)
        names: list[str] = reader.schema.names
        reader.close()
    return names


def _infer_types(path: Path, names: list[str]) -> list[pa.DataType]:
    """Each column's narrowest type that every one of its values converts to."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = (pa.int64(), pa.float64(), pa.bool_())
    candidates = [list(order) for _ in names]
    has_value = [False] * len(names)
    with _reading(path) as ragged:
        for batch in _open(path, names, ragged):
            for i, column in enumerate(batch.columns):
                if column.null_count == len(column) or not candidates[i]:
                    continue
                has_value[i] = True
                trimmed = pc.utf8_trim_whitespace(column)
                candidates[i] = [t for t in candidates[i] if _converts(trimmed, t)]
    return [
        c[0] if c and seen else pa.string() for c, seen in zip(candidates, has_value, strict=True)
    ]


def _converts(column: pa.Array, data_type: pa.DataType) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(column, data_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _convert(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [
        column
        if field.type == pa.string()
        else pc.cast(pc.utf8_trim_whitespace(column), field.type)
        for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _ragged_error(path: Path, expected: int, actual: int) -> InvalidInput:
    """Name the first ragged row by its line number, found with a second, exact scan.

    pyarrow does not know line numbers when it reads in parallel, and counts rows, not
    lines, when a quoted field spans lines; the stdlib reader tracks lines exactly.
    """
    found = _find_ragged_line(path)
    if found is None:
        return InvalidInput(f"a CSV row has {_columns(actual)}, expected {expected}")
    line, actual, expected = found
    return InvalidInput(f"CSV line {line} has {_columns(actual)}, expected {expected}")


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


def _find_ragged_line(path: Path) -> tuple[int, int, int] | None:
    with open_text(path) as text:
        reader = csv.reader(text)
        expected: int | None = None
        start = 1
        try:
            for record in reader:
                if record:
                    if expected is None:
                        expected = len(record)
                    elif len(record) != expected:
                        return start, len(record), expected
                start = reader.line_num + 1
        except csv.Error:
            return None
    return None
