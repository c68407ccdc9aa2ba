"""Parquet intake: read batch by batch, with number types widened to int64 / float64.

Widening gives every table data set the same number types whatever wrote it (pandas,
Spark, polars), so training code has one case to handle. Dictionary-encoded and large
strings become plain strings; other types (timestamps, lists, ...) are kept as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.datasets.formats.canonical import (
    ROW_GROUP_ROWS,
    ParsedDataset,
    TableSink,
    check_label,
    check_unique,
    table_result,
)
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa


def ingest_parquet(path: Path, out_dir: Path, label: str | None) -> ParsedDataset:
    """Copy the Parquet file at ``path`` into ``out_dir/data.parquet`` in canonical form."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"not a readable Parquet file: {exc}") from None
    with source:
        names = source.schema_arrow.names
        check_unique(names, "column")
        check_label(label, names, "column")
        schema = pa.schema([pa.field(f.name, _canonical_type(f.type)) for f in source.schema_arrow])
        with TableSink(out_dir, schema) as sink:
            try:
                for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
                    sink.write(_convert(batch, schema))
            except (pa.ArrowException, OSError) as exc:
                raise InvalidInput(f"corrupt Parquet file: {exc}") from None
    return table_result("parquet", sink, label)


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
