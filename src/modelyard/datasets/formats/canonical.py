"""The result of intake and the canonical files it writes.

Tables become one Parquet file, written batch by batch in row groups of at most
:data:`ROW_GROUP_ROWS` rows (fewer for wide tables); arrays become one ``.npy`` file each,
filled chunk by chunk through a memory map. Either form can be read later without loading
it whole, and neither is ever held whole in memory while it is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modelyard.datasets.formats.limits import IntakeGuard
from modelyard.errors import InvalidInput, UnsafeArtifact

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("csv", "npz", "parquet", "jsonl", "idx")
TABLE_FILE = "data.parquet"
ROW_GROUP_ROWS = 65_536
# Values held back per row group (rows times columns), and bytes: a wide table or one of
# long strings gets shorter row groups instead of a row group that fills the memory.
ROW_GROUP_VALUES = 4 * 1024 * 1024
ROW_GROUP_BYTES = 64 * 1024 * 1024
# Bytes read per step when copying array data; bounds intake memory whatever the array size.
COPY_CHUNK_BYTES = 8 * 1024 * 1024
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAMES_SHOWN = 12


@dataclass(frozen=True)
class ParsedDataset:
    """A validated data set and the canonical files written for it.

    ``schema`` is ``{"columns": [{"name", "dtype"}, ...]}`` for tables and
    ``{"arrays": {name: {"dtype", "shape"}}}`` for arrays. ``canonical`` maps each file
    name (``data.parquet`` or ``<array>.npy``) to its path inside the output directory.
    """

    format: str
    kind: str
    schema: dict[str, Any]
    num_rows: int
    label: str | None
    canonical: dict[str, Path]


def name_list(names: Sequence[str]) -> str:
    """``names`` quoted and comma-separated, shortened when there are many."""
    shown = ", ".join(repr(n) for n in names[:_NAMES_SHOWN])
    if len(names) > _NAMES_SHOWN:
        shown += f", … ({len(names) - _NAMES_SHOWN} more)"
    return shown or "none"


def check_label(label: str | None, names: Sequence[str], what: str) -> None:
    """Raise InvalidInput unless ``label`` is None or one of ``names`` (a ``what``)."""
    if label is not None and label not in names:
        raise InvalidInput(f"label {what} {label!r} not found; {what}s: {name_list(names)}")


def check_unique(names: Sequence[str], what: str) -> None:
    """Raise InvalidInput when a name occurs twice: labels and columns are looked up by name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"duplicate {what} name {name!r}")
        seen.add(name)


def require_rows(num_rows: int, what: str) -> None:
    """Raise InvalidInput for a data set without rows: nothing could be trained on it."""
    if num_rows == 0:
        raise InvalidInput(f"{what} holds no rows")


# Tables -------------------------------------------------------------------------------


def dtype_name(data_type: pa.DataType) -> str:
    """The name a table column's type is reported under (``int64``, ``float64``, ``string``)."""
    import pyarrow as pa

    if pa.types.is_floating(data_type):
        return f"float{data_type.bit_width}"
    return str(data_type)


def table_schema(schema: pa.Schema) -> dict[str, Any]:
    """The ``schema`` of a table data set."""
    return {"columns": [{"name": f.name, "dtype": dtype_name(f.type)} for f in schema]}


def batch_rows(num_columns: int) -> int:
    """Rows per row group (and per read batch) of a table with ``num_columns`` columns."""
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_VALUES // max(1, num_columns)))


class TableSink:
    """Writes record batches to ``data.parquet`` in row groups of :func:`batch_rows` rows.

    Small batches are held back until a full row group is ready, so the file's row groups
    do not follow the reader's block size; once :data:`ROW_GROUP_BYTES` are held back they
    are written as they are. Use as a context manager; :attr:`num_rows` counts the rows
    written.
    """

    def __init__(self, out_dir: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.path = out_dir / TABLE_FILE
        self.schema = schema
        self.num_rows = 0
        self.group_rows = batch_rows(len(schema))
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._writer = pq.ParquetWriter(str(self.path), schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (which must have the sink's schema)."""
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.num_rows += batch.num_rows
        if self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush(final=True)
        elif self._pending_rows >= self.group_rows:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        import pyarrow as pa

        table = pa.Table.from_batches(self._pending, schema=self.schema)
        size = self.group_rows
        ready = table.num_rows if final else table.num_rows - table.num_rows % size
        if ready:
            self._writer.write_table(table.slice(0, ready), row_group_size=size)
        rest = table.slice(ready)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes

    def __enter__(self) -> TableSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._pending_rows:
                self._flush(final=True)
        finally:
            self._writer.close()


def table_result(fmt: str, sink: TableSink, label: str | None) -> ParsedDataset:
    """The ParsedDataset for a table written through ``sink`` (which must be closed)."""
    require_rows(sink.num_rows, f"the {fmt.upper()} file")
    return ParsedDataset(
        format=fmt,
        kind="table",
        schema=table_schema(sink.schema),
        num_rows=sink.num_rows,
        label=label,
        canonical={TABLE_FILE: sink.path},
    )


# Arrays -------------------------------------------------------------------------------


class Readable(Protocol):
    """A binary stream: a file, a gzip stream, a zip member."""

    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class ArrayHeader:
    """What is known of an array before its data is read."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


def check_array_name(name: str, what: str) -> None:
    """Refuse array names that are not safe, plain file names (they name ``<array>.npy``)."""
    if any(sep in name for sep in ("/", "\\", "\0")) or name in (".", ".."):
        raise UnsafeArtifact(f"{what} {name!r} is not a plain name (it holds a path)")
    if not _ARRAY_NAME.match(name):
        raise InvalidInput(
            f"{what} {name!r} is not a valid array name: use letters, digits, '_', '.' "
            "and '-' (at most 128, not starting with '.' or '-')"
        )


def check_same_rows(headers: Sequence[ArrayHeader], what: str) -> int:
    """The shared first dimension of ``headers``; InvalidInput naming them if it differs."""
    for header in headers:
        if not header.shape:
            raise InvalidInput(
                f"{what} {header.name!r} is a scalar; every array needs a first (row) dimension"
            )
    rows = {h.shape[0] for h in headers}
    if len(rows) > 1:
        sizes = ", ".join(f"{h.name!r} has {h.shape[0]}" for h in headers)
        raise InvalidInput(f"{what}s must share their first dimension (rows): {sizes}")
    require_rows(headers[0].shape[0], f"{what} {headers[0].name!r}")
    return headers[0].shape[0]


def read_exact(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream."""
    parts: list[bytes] = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def check_declared_arrays(headers: Sequence[ArrayHeader], guard: IntakeGuard, what: str) -> None:
    """Refuse arrays whose declared data passes ``guard``'s limits before any is written.

    A compressed upload (a gzip IDX, a compressed NPZ) may declare far more data than it
    carries; the canonical ``.npy`` files would hold all of it uncompressed.
    """
    guard.check_rows(headers[0].shape[0], f"the {what}")
    guard.check_declared(sum(h.nbytes for h in headers), f"the {what}")


def copy_array(
    stream: Readable,
    header: ArrayHeader,
    path: Path,
    what: str,
    guard: IntakeGuard,
    *,
    fortran: bool = False,
) -> None:
    """Copy the raw data of ``header`` from ``stream`` into a C-order ``.npy`` at ``path``.

    The data is in C order, or in Fortran order when ``fortran``. The stream must hold
    exactly the declared bytes: a short or long stream raises InvalidInput naming ``what``.
    Values are stored in native byte order.
    """
    native = header.dtype.newbyteorder("=")
    total = header.nbytes
    if total == 0:
        np.save(path, np.empty(header.shape, dtype=native), allow_pickle=False)
    elif fortran and len(header.shape) > 1:
        _copy_fortran(stream, header, path, what, guard)
    else:
        target = _open_array(path, header, what)
        try:
            _fill(target.reshape(-1), stream, header, what, guard)
            target.flush()
        finally:
            # Unmaps the file now rather than when a traceback holding it is collected.
            del target
    if stream.read(1):
        raise InvalidInput(
            f"{what} has bytes beyond the {total} data bytes its header declares "
            f"(shape {header.shape}, {header.dtype.name})"
        )


def _open_array(
    path: Path, header: ArrayHeader, what: str, *, fortran: bool = False
) -> np.memmap[Any, Any]:
    try:
        return np.lib.format.open_memmap(
            path,
            mode="w+",
            dtype=header.dtype.newbyteorder("="),
            shape=header.shape,
            fortran_order=fortran,
        )
    except (ValueError, OSError, OverflowError) as exc:
        raise InvalidInput(f"{what}: cannot hold an array of shape {header.shape}") from exc


def _copy_fortran(
    stream: Readable, header: ArrayHeader, path: Path, what: str, guard: IntakeGuard
) -> None:
    """Fortran-ordered data, through a Fortran-ordered scratch file, into C order.

    Both files are memory maps and the copy goes a slab of rows at a time, so memory stays
    bounded however large the array.
    """
    scratch = path.with_name(f".{path.name}.fortran")
    try:
        source = _open_array(scratch, header, what, fortran=True)
        try:
            _fill(source.reshape(-1, order="F"), stream, header, what, guard)
            target = _open_array(path, header, what)
            try:
                step = max(1, COPY_CHUNK_BYTES // (header.nbytes // header.shape[0]))
                for start in range(0, header.shape[0], step):
                    target[start : start + step] = source[start : start + step]
                    guard.check_time()
                target.flush()
            finally:
                del target
        finally:
            del source
    finally:
        scratch.unlink(missing_ok=True)


def _fill(
    flat: np.ndarray[Any, Any], stream: Readable, header: ArrayHeader, what: str, guard: IntakeGuard
) -> None:
    itemsize = header.dtype.itemsize
    step = max(1, COPY_CHUNK_BYTES // itemsize)
    done = 0
    while done < flat.size:
        guard.check_time()
        want = min(step, flat.size - done)
        chunk = read_exact(stream, want * itemsize)
        if len(chunk) < want * itemsize:
            raise InvalidInput(
                f"{what} ends early: {done * itemsize + len(chunk)} of the {header.nbytes} data "
                f"bytes its header declares (shape {header.shape}, {header.dtype.name})"
            )
        flat[done : done + want] = np.frombuffer(chunk, dtype=header.dtype)
        done += want


def array_dtype_name(dtype: np.dtype[Any]) -> str:
    """The name an array's dtype is reported under (``uint8``, ``float32``, ``<U5``)."""
    return dtype.str if dtype.kind in "SUV" else dtype.name


def arrays_result(
    fmt: str, headers: Sequence[ArrayHeader], out_dir: Path, label: str | None
) -> ParsedDataset:
    """The ParsedDataset for arrays already written as ``<name>.npy`` into ``out_dir``."""
    schema = {
        h.name: {"dtype": array_dtype_name(h.dtype.newbyteorder("=")), "shape": list(h.shape)}
        for h in headers
    }
    return ParsedDataset(
        format=fmt,
        kind="arrays",
        schema={"arrays": schema},
        num_rows=headers[0].shape[0],
        label=label,
        canonical={f"{h.name}.npy": out_dir / f"{h.name}.npy" for h in headers},
    )
