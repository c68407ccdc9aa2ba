"""Parquet intake: read batch by batch, with number types widened to int64 / float64.

Widening gives every table data set the same number types whatever wrote it (pandas,
Spark, polars), so training code has one case to handle. Dictionary-encoded and large
strings become plain strings; other types (timestamps, lists, ...) are kept as they are.

Parquet compresses, and its run-length encoding can make a few bytes stand for millions of
values, so the footer's rows, columns and uncompressed sizes are checked before any data
is read, and the decoded batches are counted against the limits as they come.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.datasets.formats.canonical import (
    ParsedDataset,
    TableSink,
    batch_rows,
    check_label,
    check_unique,
    table_result,
)
from modelyard.datasets.formats.limits import IntakeGuard
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

_WHAT = "the Parquet file"
# Bytes read at a time from a column chunk, instead of the whole chunk at once.
_READ_BUFFER_BYTES = 8 * 1024 * 1024


def ingest_parquet(
    path: Path, out_dir: Path, label: str | None, guard: IntakeGuard
) -> ParsedDataset:
    """Copy the Parquet file at ``path`` into ``out_dir/data.parquet`` in canonical form."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Opened here and handed over as a file object, so pyarrow's messages cannot name it.
    with path.open("rb") as f:
        try:
            source = pq.ParquetFile(f, buffer_size=_READ_BUFFER_BYTES)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"not a readable Parquet file: {exc}") from None
        with source:
            _check_footer(source.metadata, guard)
            names = source.schema_arrow.names
            check_unique(names, "column")
            check_label(label, names, "column")
            schema = pa.schema(
                [pa.field(f.name, _canonical_type(f.type)) for f in source.schema_arrow]
            )
            with TableSink(out_dir, schema) as sink:
                try:
                    for batch in source.iter_batches(batch_size=batch_rows(len(names))):
                        converted = _convert(batch, schema)
                        # Every value counts at least a byte: null columns take none.
                        cells = converted.num_rows * converted.num_columns
                        guard.expand(max(converted.nbytes, cells), _WHAT)
                        sink.write(converted)
                except (pa.ArrowException, OSError) as exc:
                    raise InvalidInput(f"corrupt Parquet file: {exc}") from None
    return table_result("parquet", sink, label)


def _check_footer(metadata: pq.FileMetaData, guard: IntakeGuard) -> None:
    """Refuse what the footer declares beyond the limits, before any data is read."""
    guard.check_columns(metadata.num_columns, _WHAT)
    guard.check_rows(metadata.num_rows, _WHAT)
    groups = (metadata.row_group(i) for i in range(metadata.num_row_groups))
    guard.check_declared(sum(group.total_byte_size for group in groups), _WHAT)


def _canonical_type(data_type: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_integer(data_type):
        return pa.int64()
    if pa.types.is_floating(data_type):
        return pa.float64()
    if pa.types.is_dictionary(data_type):
        return _canonical_type(data_type.value_type)
    if pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type):
        return pa.string()
    return data_type


def _convert(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except pa.ArrowInvalid as exc:
                # uint64 values above the int64 range are the one lossy case; refuse them.
                raise InvalidInput(f"Parquet column {field.name!r}: {exc}") from None
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)
