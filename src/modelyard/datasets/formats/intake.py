"""The intake entry point: pick the format, parse, validate, write the canonical form."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from modelyard.datasets.formats.canonical import FORMATS, ParsedDataset
from modelyard.datasets.formats.csvfile import ingest_csv
from modelyard.datasets.formats.detect import HEAD_BYTES, detect_format
from modelyard.datasets.formats.idx import ingest_idx
from modelyard.datasets.formats.jsonl import ingest_jsonl
from modelyard.datasets.formats.npz import ingest_npz
from modelyard.datasets.formats.parquet import ingest_parquet
from modelyard.errors import InvalidInput, ModelyardError, UnsupportedFormat

# Tables: their canonical form is compressed Parquet, written as they stream in.
_TABLES: dict[str, Callable[[Path, Path, str | None], ParsedDataset]] = {
    "csv": ingest_csv,
    "parquet": ingest_parquet,
    "jsonl": ingest_jsonl,
}


def ingest(
    sources: Sequence[Path],
    out_dir: Path,
    *,
    fmt: str | None = None,
    filename: str | None = None,
    label: str | None = None,
    max_bytes: int | None = None,
) -> ParsedDataset:
    """Parse and validate ``sources``, writing the canonical form into ``out_dir``.

    ``sources`` is one file, or for IDX the images file and optionally the labels file.
    The format is ``fmt`` when given, else detected from ``filename`` (by default the first
    source's name) and its first bytes.
    ``out_dir`` must be empty or absent; on any error it is left empty. Arrays (NPZ, IDX)
    whose declared data exceeds ``max_bytes`` are refused (PayloadTooLarge) before any is
    written: a compressed upload may expand far beyond its own size.

    Raises UnsupportedFormat for an unknown format and InvalidInput for a malformed file
    or a ``label`` that names no column or array.

    >>> parsed = ingest([Path("iris.csv")], Path("out"), label="target")  # doctest: +SKIP
    >>> parsed.kind, parsed.num_rows, sorted(parsed.canonical)  # doctest: +SKIP
    ('table', 150, ['data.parquet'])
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ModelyardError("the intake output directory is not empty")
    paths = [Path(s) for s in sources]
    try:
        resolved = _resolve_format(fmt, filename, paths)
        _check_sources(resolved, paths)
        if resolved == "idx":
            return ingest_idx(paths, out_dir, label, max_bytes)
        if resolved == "npz":
            return ingest_npz(paths[0], out_dir, label, max_bytes)
        return _TABLES[resolved](paths[0], out_dir, label)
    except BaseException:
        _clear(out_dir)
        raise


def _resolve_format(fmt: str | None, filename: str | None, paths: Sequence[Path]) -> str:
    accepted = ", ".join(FORMATS)
    if fmt is not None:
        if fmt.lower() not in FORMATS:
            raise UnsupportedFormat(f"unsupported format {fmt!r}; accepted: {accepted}")
        return fmt.lower()
    if not paths:
        raise InvalidInput("no file given")
    with paths[0].open("rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise InvalidInput("the file is empty")
    # Without a client-side name, the source's own name may still carry an extension.
    name = filename or paths[0].name
    detected = detect_format(name, head)
    if detected is None:
        raise UnsupportedFormat(
            f"cannot tell the format of {name!r} (first bytes {head[:8]!r}); "
            f"accepted: {accepted}; name the format explicitly"
        )
    return detected


def _check_sources(fmt: str, paths: Sequence[Path]) -> None:
    """Refuse a wrong number of files and empty files before any parsing."""
    if fmt != "idx" and len(paths) != 1:
        raise InvalidInput(f"{fmt.upper()} takes one file, got {len(paths)}")
    if not paths:
        raise InvalidInput("no file given")
    # ingest_idx refuses more than two files; the roles name the two it takes.
    roles = ("images file", "labels file") if fmt == "idx" else ("file",)
    for path, role in zip(paths, roles, strict=False):
        if path.stat().st_size == 0:
            raise InvalidInput(f"the {role} is empty")


def _clear(out_dir: Path) -> None:
    """Remove what intake wrote: the directory was empty when it began."""
    for child in out_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)
