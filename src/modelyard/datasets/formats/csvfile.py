"""CSV intake: a header row, then rows; optionally gzip-compressed.

The file is streamed twice with pyarrow's CSV reader, every column read as text. The first
pass checks the shape of every row and finds each column's type (int64, float64, bool, or
string when none fits every value); the second converts and writes. One pass would have
to fix the types from the first block, and a column of integers that holds ``1.5`` a
million rows later would then fail or be misread.

The header's fields are counted before pyarrow sees it (pyarrow sets up every column of
its first block at once, about 20 KB each). The first pass counts the decompressed bytes
and the rows against the intake's limits as it reads, and follows the quoting, so a file
that ends inside a quoted field is refused instead of read as one long last value.
"""

from __future__ import annotations

import csv
import io
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
from modelyard.datasets.formats.compression import GZIP_ERRORS, open_binary
from modelyard.datasets.formats.csvquotes import QuoteTracker
from modelyard.datasets.formats.limits import IntakeGuard, Observer, guarded
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

_WHAT = "the CSV file"
# Bytes pyarrow parses at a time; no row may be longer. Memory grows with the block, not
# with the file: pyarrow reads up to 32 blocks ahead, and parsing a block of one-byte rows
# takes about 15 times the block.
_BLOCK_BYTES = 1024 * 1024


def ingest_csv(path: Path, out_dir: Path, label: str | None, guard: IntakeGuard) -> ParsedDataset:
    """Parse the CSV at ``path`` into ``out_dir/data.parquet``."""
    import pyarrow as pa

    guard.check_columns(_header_fields(path), _WHAT)
    names = _read_names(path, guard)
    check_unique(names, "column")
    check_label(label, names, "column")
    types = _infer_types(path, names, guard)
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
    with (
        TableSink(out_dir, schema) as sink,
        _reading(path, guard) as ragged,
        _batches(path, names, guard, ragged, count=False) as batches,
    ):
        for batch in batches:
            sink.write(_convert(batch, schema))
    return table_result("csv", sink, label)


def _header_fields(path: Path) -> int:
    """How many fields the header row has, read from at most one block of the file."""
    with _reading_bytes(), open_binary(path) as f:
        head = f.read(_BLOCK_BYTES)
    try:
        text = head.decode("utf-8-sig", errors="replace")
        return len(next(csv.reader(io.StringIO(text, newline="")), []))
    except csv.Error:
        # A field too long for the csv module: every comma of the first line may be a
        # delimiter, which bounds the count from above.
        return head.split(b"\n", 1)[0].count(b",") + 1


@contextmanager
def _batches(
    path: Path,
    names: list[str] | None,
    guard: IntakeGuard,
    ragged: list[tuple[int, int]],
    *,
    count: bool,
    observe: Observer | None = None,
) -> Iterator[Any]:
    """A streaming pyarrow reader over ``path``, read under ``guard``.

    With ``names``, every column is read as text. With ``count``, the decompressed bytes
    are counted against the size limits. A row with the wrong number of fields stops the
    reader, and its (expected, actual) field counts are appended to ``ragged``.
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
    with guarded(
        open_binary(path), guard, _WHAT, count=count, observe=observe, buffer_size=_BLOCK_BYTES
    ) as stream:
        reader = pacsv.open_csv(
            stream,
            # One block parsed at a time, so memory does not grow with the machine's cores.
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
            # Quoted fields may span lines; without this a quoted newline would split a row.
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=refuse),
            convert_options=convert,
        )
        try:
            yield reader
        finally:
            reader.close()


@contextmanager
def _reading(path: Path, guard: IntakeGuard) -> Iterator[list[tuple[int, int]]]:
    """Turn reader failures inside the block into InvalidInput with a precise message.

    Yields the list that :func:`_batches` notes ragged rows in.
    """
    import pyarrow as pa

    ragged: list[tuple[int, int]] = []
    try:
        with _reading_bytes():
            yield ragged
    except pa.ArrowInvalid as exc:
        if ragged:
            raise _ragged_error(path, guard, *ragged[0]) from None
        message = str(exc)
        if message.startswith("Empty CSV file"):
            raise InvalidInput("the CSV file is empty") from None
        if "straddling object straddles two block boundaries" in message:
            raise InvalidInput(
                f"a CSV row is longer than {_BLOCK_BYTES} bytes, the most this server reads "
                "(or a quote opens a field that runs on for that long)"
            ) from None
        raise InvalidInput(f"invalid CSV: {message}") from None


@contextmanager
def _reading_bytes() -> Iterator[None]:
    """Turn a damaged compressed stream into InvalidInput."""
    try:
        yield
    except (*GZIP_ERRORS, OSError) as exc:
        raise InvalidInput(f"cannot read the CSV file (corrupt compression?): {exc}") from None


def _read_names(path: Path, guard: IntakeGuard) -> list[str]:
    with _reading(path, guard) as ragged, _batches(path, None, guard, ragged, count=False) as r:
        names: list[str] = r.schema.names
    return names


def _infer_types(path: Path, names: list[str], guard: IntakeGuard) -> list[pa.DataType]:
    """Each column's narrowest type that every one of its values converts to.

    This pass reads every byte once: it is the one that counts bytes and rows against
    ``guard`` and follows the quoting.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    order = (pa.int64(), pa.float64(), pa.bool_())
    candidates = [list(order) for _ in names]
    has_value = [False] * len(names)
    quotes = QuoteTracker()
    rows = 0
    with (
        _reading(path, guard) as ragged,
        _batches(path, names, guard, ragged, count=True, observe=quotes) as batches,
    ):
        for batch in batches:
            rows += batch.num_rows
            guard.check_rows(rows, _WHAT)
            for i, column in enumerate(batch.columns):
                if column.null_count == len(column) or not candidates[i]:
                    continue
                has_value[i] = True
                trimmed = pc.utf8_trim_whitespace(column)
                candidates[i] = [t for t in candidates[i] if _converts(trimmed, t)]
    quotes.finish()
    if quotes.quoted:
        raise InvalidInput(
            f"CSV line {quotes.open_line} opens a quoted field that is never closed: "
            "the file ends inside the quotes"
        )
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


def _ragged_error(path: Path, guard: IntakeGuard, expected: int, actual: int) -> InvalidInput:
    """Name the first ragged row by its line number, found with a second, exact scan.

    pyarrow does not know line numbers when it reads in parallel, and counts rows, not
    lines, when a quoted field spans lines; the stdlib reader tracks lines exactly.
    """
    found = _find_ragged_line(path, guard)
    if found is None:
        return InvalidInput(f"a CSV row has {_columns(actual)}, expected {expected}")
    line, actual, expected = found
    return InvalidInput(f"CSV line {line} has {_columns(actual)}, expected {expected}")


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


def _find_ragged_line(path: Path, guard: IntakeGuard) -> tuple[int, int, int] | None:
    with (
        guarded(open_binary(path), guard, _WHAT, count=False) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text,
    ):
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
