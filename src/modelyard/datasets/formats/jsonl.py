"""JSON Lines intake: one JSON object per line; optionally gzip-compressed.

Lines are parsed one at a time, twice: the first pass checks every line and finds the
columns (in order of first appearance) and their types; the second builds bounded batches
and writes them. Keys missing from a row are null. A column whose values mix kinds that
have no common number type (say numbers and strings) is kept as strings; nested objects and
arrays are kept as their JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.datasets.formats.canonical import (
    ParsedDataset,
    TableSink,
    check_label,
    require_rows,
    table_result,
)
from modelyard.datasets.formats.compression import GZIP_ERRORS, open_binary
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

# Python objects held per batch (rows times columns): bounds memory on wide rows too.
_VALUES_PER_BATCH = 1_000_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def ingest_jsonl(path: Path, out_dir: Path, label: str | None) -> ParsedDataset:
    """Parse the JSON Lines file at ``path`` into ``out_dir/data.parquet``."""
    import pyarrow as pa

    kinds: dict[str, str] = {}
    rows = 0
    for row in _rows(path):
        rows += 1
        for key, value in row.items():
            kinds[key] = _join(kinds.get(key, "null"), _kind(value))
    require_rows(rows, "the JSONL file")
    names = list(kinds)
    if not names:
        raise InvalidInput("every object in the JSONL file is empty: there are no columns")
    check_label(label, names, "column")
    schema = pa.schema([pa.field(n, _arrow_type(kinds[n])) for n in names])
    batch_rows = max(1, _VALUES_PER_BATCH // max(1, len(names)))
    with TableSink(out_dir, schema) as sink:
        batch: list[dict[str, Any]] = []
        for row in _rows(path):
            batch.append(row)
            if len(batch) == batch_rows:
                sink.write(_to_batch(batch, schema, kinds))
                batch = []
        if batch:
            sink.write(_to_batch(batch, schema, kinds))
    return table_result("jsonl", sink, label)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """The object on each non-blank line; InvalidInput naming the first bad line."""
    number = 0
    try:
        with open_binary(path) as f:
            for number, raw in enumerate(f, start=1):
                line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                if not line.strip():
                    continue
                try:
                    value = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError:
                    raise InvalidInput(f"JSONL line {number} is not valid UTF-8") from None
                except json.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"JSONL line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
                    ) from None
                if not isinstance(value, dict):
                    raise InvalidInput(
                        f"JSONL line {number}: expected a JSON object, got {_json_type(value)}"
                    )
                yield value
    except (*GZIP_ERRORS, OSError) as exc:
        raise InvalidInput(
            f"cannot read the JSONL file after line {number} (corrupt compression?): {exc}"
        ) from None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        # Beyond int64 a number cannot be stored exactly as a number column.
        return "int" if _INT64_MIN <= value <= _INT64_MAX else "string"
    if isinstance(value, float):
        return "float"
    return "string"


def _join(a: str, b: str) -> str:
    """The kind of a column holding values of kinds ``a`` and ``b``."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "string"


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    # An all-null column has no type to find; it is kept as strings.
    types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
    return types.get(kind, pa.string())


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _to_batch(
    rows: list[dict[str, Any]], schema: pa.Schema, kinds: dict[str, str]
) -> pa.RecordBatch:
    import pyarrow as pa

    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if kinds[field.name] in ("string", "null"):
            values = [_as_text(v) for v in values]
        columns.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
