"""What a format module of the registry provides, and the zip helpers they share.

Each module of :mod:`modelyard.registry.formats` owns one format: it recognises an upload
(``sniff``), checks it (``inspect``) and, where the format may come as a tar/zip archive,
says which unpacked files make up a version (an :class:`ArchiveLayout`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import UnsafeArtifact
from modelyard.formats import SUFFIXES
from modelyard.registry.intake import ArtifactInfo, Intake


@dataclass(frozen=True)
class FormatHandler:
    """How one model format is recognised and checked."""

    name: str
    extensions: tuple[str, ...]
    sniff: Callable[[Path, bytes], bool]
    """True when the file's content is in this format (``bytes``: its first 64 KiB)."""
    inspect: Callable[[Path, Intake], ArtifactInfo]


@dataclass(frozen=True)
class ArchiveLayout:
    """Files that, found together in an uploaded archive, make up one version."""

    format: str
    description: str
    """What the archive must hold, for error messages: ``spec.json + model.safetensors``."""
    matches: Callable[[set[str]], bool]
    """True for the set of unpacked paths (relative, ``/``-separated) this layout takes."""
    inspect: Callable[[dict[str, Path], Intake], ArtifactInfo]


def suffixes_of(fmt: str) -> tuple[str, ...]:
    """The file suffixes of ``fmt`` in :data:`modelyard.formats.SUFFIXES` (none for ``hf``)."""
    return SUFFIXES.get(fmt, ())


def zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def split_root(names: list[str]) -> tuple[str, set[str]] | None:
    """(root folder, member paths below it) when every member sits in one folder."""
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        return None
    return roots.pop(), {name.split("/", 1)[1] for name in names}


def check_zip_budget(source: Path | io.BytesIO, max_bytes: int, label: str) -> None:
    """Bound what torch's zip reader may inflate; it allocates each member's stated size."""
    with zipfile.ZipFile(source) as zf:
        total = sum(info.file_size for info in zf.infolist())
    if total > max_bytes:
        raise UnsafeArtifact(f"{label} unpacks to {total} bytes, over the limit of {max_bytes}")
