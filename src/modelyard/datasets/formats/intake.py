"""The intake entry point: pick the format, parse, validate, write the canonical form."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from modelyard.datasets.formats.canonical import FORMATS, ParsedDataset
from modelyard.datasets.formats.csvfile import ingest_csv
from modelyard.datasets.formats.detect import HEAD_BYTES, detect_format
from modelyard.datasets.formats.idx import ingest_idx
from modelyard.datasets.formats.jsonl import ingest_jsonl
from modelyard.datasets.formats.limits import IntakeGuard, IntakeLimits
from modelyard.datasets.formats.npz import ingest_npz
from modelyard.datasets.formats.parquet import ingest_parquet
from modelyard.errors import InvalidInput, ModelyardError, UnsupportedFormat

# Tables: their canonical form is compressed Parquet, written as they stream in.
_TABLES: dict[str, Callable[[Path, Path, str | None, IntakeGuard], ParsedDataset]] = {
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
    limits: IntakeLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ParsedDataset:
    """Parse and validate ``sources``, writing the canonical form into ``out_dir``.

    ``sources`` is one file, or for IDX the images file and optionally the labels file.
    The format is ``fmt`` when given, else detected from ``filename`` (by default the first
    source's name) and its first bytes.
    ``out_dir`` must be empty or absent; on any error it is left empty. An upload that
    goes beyond ``limits`` (none by default) is refused with PayloadTooLarge as soon as
    that is known, while it is read: a compressed upload may expand far beyond its own
    size. ``clock`` measures the time budget, in seconds.

    Raises UnsupportedFormat for an unknown format and InvalidInput for a malformed file
    or a ``label`` that names no column or array. No error names the sources' paths.

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
        guard = IntakeGuard(limits or IntakeLimits(), sum(p.stat().st_size for p in paths), clock)
        if resolved == "idx":
            return ingest_idx(paths, out_dir, label, guard)
        if resolved == "npz":
            return ingest_npz(paths[0], out_dir, label, guard)
        return _TABLES[resolved](paths[0], out_dir, label, guard)
    except ModelyardError as exc:
        _clear(out_dir)
        told = _without_paths(exc, paths, out_dir)
        if told is exc:
            raise
        raise told from None
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
    # Without a client-side name, the source's own name may still carry an extension;
    # it is not shown, as on a server it is a staging file's.
    detected = detect_format(filename or paths[0].name, head)
    if detected is None:
        shown = repr(filename) if filename else "the upload"
        raise UnsupportedFormat(
            f"cannot tell the format of {shown} (first bytes {head[:8]!r}); "
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


def _without_paths(error: ModelyardError, paths: Sequence[Path], out_dir: Path) -> ModelyardError:
    """``error``, or a copy whose detail speaks of "the upload" where it named a path.

    A library's message (an OSError's, pyarrow's) may quote the file it was reading; on a
    server that is a staging file or a scratch folder, which are nobody's business.
    """
    detail = error.detail
    for path in paths:
        detail = detail.replace(str(path), "the upload")
    for folder in {str(out_dir), *(str(p.parent) for p in paths)}:
        detail = detail.replace(folder, "the server's scratch space")
    if detail == error.detail:
        return error
    return type(error)(detail, **error.extra)


def _clear(out_dir: Path) -> None:
    """Remove what intake wrote: the directory was empty when it began."""
    for child in out_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)
