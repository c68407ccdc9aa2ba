"""JSON Lines intake: one JSON object per line; optionally gzip-compressed.

Lines are parsed one at a time, twice: the first pass checks every line and finds the
columns (in order of first appearance) and their types; the second builds bounded batches
and writes them. Keys missing from a row are null. A column whose values mix kinds that
have no common number type (say numbers and strings) is kept as strings; nested objects and
arrays are kept as their JSON text.

Lines are read with a bounded ``readline``, so a line longer than the limit is refused
without ever being held whole, and a line's nesting depth is checked before it is parsed
(json's parser recurses once per level).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.datasets.formats.canonical import (
    ParsedDataset,
    TableSink,
    check_label,
    require_rows,
    table_result,
)
from modelyard.datasets.formats.compression import GZIP_ERRORS, open_binary
from modelyard.datasets.formats.limits import IntakeGuard, guarded
from modelyard.errors import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    import pyarrow as pa

_WHAT = "the JSONL file"
# Python objects held per batch (rows times columns): bounds memory on wide rows too.
_VALUES_PER_BATCH = 1_000_000
# Line bytes held per batch: bounds memory on long rows.
_BYTES_PER_BATCH = 32 * 1024 * 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# A JSON string, escapes included; removed before brackets are counted.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENING = (ord("["), ord("{"))
_DEPTH_CHUNK = 1024 * 1024


def ingest_jsonl(path: Path, out_dir: Path, label: str | None, guard: IntakeGuard) -> ParsedDataset:
    """Parse the JSON Lines file at ``path`` into ``out_dir/data.parquet``."""
    import pyarrow as pa

    kinds: dict[str, str] = {}
    rows = 0
    for row, _ in _rows(path, guard, count=True):
        rows += 1
        guard.check_rows(rows, _WHAT)
        for key, value in row.items():
            kinds[key] = _join(kinds.get(key, "null"), _kind(value))
        guard.check_columns(len(kinds), _WHAT)
    require_rows(rows, _WHAT)
    names = list(kinds)
    if not names:
        raise InvalidInput("every object in the JSONL file is empty: there are no columns")
    check_label(label, names, "column")
    schema = pa.schema([pa.field(n, _arrow_type(kinds[n])) for n in names])
    batch_rows = max(1, _VALUES_PER_BATCH // len(names))
    with TableSink(out_dir, schema) as sink:
        batch: list[dict[str, Any]] = []
        held = 0
        for row, size in _rows(path, guard, count=False):
            batch.append(row)
            held += size
            if len(batch) == batch_rows or held >= _BYTES_PER_BATCH:
                sink.write(_to_batch(batch, schema, kinds))
                batch, held = [], 0
        if batch:
            sink.write(_to_batch(batch, schema, kinds))
    return table_result("jsonl", sink, label)


def _rows(path: Path, guard: IntakeGuard, *, count: bool) -> Iterator[tuple[dict[str, Any], int]]:
    """The object on each non-blank line and the line's length; InvalidInput naming the
    first bad line.

    With ``count``, the bytes read are counted against ``guard``'s size limits.
    """
    max_line = guard.limits.max_line_bytes
    number = 0
    try:
        with guarded(open_binary(path), guard, _WHAT, count=count) as f:
            while raw := f.readline(-1 if max_line is None else max_line + 1):
                number += 1
                if max_line is not None and len(raw) > max_line:
                    raise PayloadTooLarge(
                        f"JSONL line {number} is longer than {max_line} bytes, the most this "
                        "server accepts (MODELYARD_MAX_DATASET_LINE_BYTES)"
                    )
                line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                if not line.strip():
                    continue
                yield _parse(line, number, guard.limits.max_json_depth), len(raw)
    except (*GZIP_ERRORS, OSError) as exc:
        where = f" after line {number}" if number else ""
        raise InvalidInput(
            f"cannot read the JSONL file{where} (corrupt compression?): {exc}"
        ) from None


def _parse(line: bytes, number: int, max_depth: int | None) -> dict[str, Any]:
    """The object on JSONL line ``number``."""
    if max_depth is not None and _nests_deeper(line, max_depth):
        raise _too_deep(number, max_depth)
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"JSONL line {number} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"JSONL line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except ValueError:
        # The one other ValueError json raises: an integer too long to convert.
        raise InvalidInput(
            f"JSONL line {number}: a number has more than {sys.get_int_max_str_digits()} digits"
        ) from None
    except RecursionError:
        raise _too_deep(number, max_depth) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"JSONL line {number}: expected a JSON object, got {_json_type(value)}")
    return value


def _too_deep(number: int, max_depth: int | None) -> InvalidInput:
    if max_depth is None:
        return InvalidInput(f"JSONL line {number}: values nest too deep to parse")
    return InvalidInput(
        f"JSONL line {number}: values nest more than {max_depth} deep, the most this server "
        "accepts (MODELYARD_MAX_DATASET_JSON_DEPTH)"
    )


def _nests_deeper(line: bytes, limit: int) -> bool:
    """Whether the JSON text ``line`` nests arrays and objects more than ``limit`` deep.

    Brackets inside strings do not count. Only a line with more than ``limit`` opening
    brackets can nest that deep, so most lines are settled by counting.
    """
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", line).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _DEPTH_CHUNK):
        chunk = np.frombuffer(brackets[start : start + _DEPTH_CHUNK], dtype=np.uint8)
        levels = depth + np.cumsum(np.where(np.isin(chunk, _OPENING), 1, -1))
        if int(levels.max()) > limit:
            return True
        depth = int(levels[-1])
    return False


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
