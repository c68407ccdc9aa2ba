"""The first rows of a data set's canonical form, read without loading it whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelyard.datasets.formats.canonical import TABLE_FILE

MAX_COLUMNS = 20
MAX_CELL = 60
MAX_VALUES = 8


def _cell(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        shown = ", ".join(_cell(v) for v in flat[:MAX_VALUES].tolist())
        more = f", … ({flat.size} values)" if flat.size > MAX_VALUES else ""
        return f"[{shown}{more}]"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def preview_rows(files: dict[str, Path], rows: int) -> tuple[list[str], list[list[str]]]:
    """Column names and the first ``rows`` rows (as text) of a canonical form: a table's
    first columns, or each array's first items (long ones shortened)."""
    if TABLE_FILE in files:
        import pyarrow.parquet as pq  # pyarrow loads in a second; only tables need it

        table = pq.ParquetFile(files[TABLE_FILE])
        names = table.schema_arrow.names[:MAX_COLUMNS]
        batch = next(table.iter_batches(batch_size=rows, columns=names), None)
        if batch is None:
            return names, []
        columns = [batch.column(i).to_pylist() for i in range(len(names))]
        return names, [[_cell(col[r]) for col in columns] for r in range(batch.num_rows)]
    arrays = {Path(name).stem: np.load(path, mmap_mode="r") for name, path in files.items()}
    names = sorted(arrays)[:MAX_COLUMNS]
    count = min([rows, *(len(arrays[n]) for n in names)]) if names else 0
    return names, [[_cell(np.asarray(arrays[n][r])) for n in names] for r in range(count)]
