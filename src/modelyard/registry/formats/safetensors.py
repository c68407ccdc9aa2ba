"""Weights plus a catalog spec (format ``safetensors``).

The spec comes as an argument, as JSON under the ``modelyard.spec`` metadata key of the file,
or as ``spec.json`` next to ``model.safetensors`` in a tar/zip archive. The header is
checked without reading tensor data: dtypes, shapes and offsets must tile the file exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.registry.formats.base import ArchiveLayout, FormatHandler, suffixes_of
from modelyard.registry.intake import ArtifactInfo, Intake

SPEC_METADATA_KEY = "modelyard.spec"
# The safetensors library refuses headers above 100 MB; so do we, before reading one.
_MAX_SAFETENSORS_HEADER = 100_000_000
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def sniff_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 10 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    return length <= min(path.stat().st_size - 8, _MAX_SAFETENSORS_HEADER)


def _inspect_safetensors(path: Path, intake: Intake) -> ArtifactInfo:
    # Errors name the file as the uploader knows it, never the server's staging name.
    metadata = check_safetensors(path, intake.filename or "the upload")
    spec = intake.spec if intake.spec is not None else _spec_from_metadata(metadata)
    return _safetensors_version(spec, path, intake, {"model.safetensors": path})


def _inspect_spec_archive(files: dict[str, Path], intake: Intake) -> ArtifactInfo:
    weights = files["model.safetensors"]
    check_safetensors(weights)
    spec = intake.spec
    if spec is None:
        try:
            spec = json.loads(files["spec.json"].read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"spec.json is not valid JSON: {exc}") from exc
        if not isinstance(spec, dict):
            raise InvalidInput("spec.json must hold a JSON object")
    return _safetensors_version(spec, weights, intake, files)


def _safetensors_version(
    spec: dict[str, Any] | None, weights: Path, intake: Intake, files: dict[str, Path]
) -> ArtifactInfo:
    if spec is None:
        raise InvalidInput(
            "a safetensors version needs a spec: pass spec=, store it as JSON under the "
            f"{SPEC_METADATA_KEY!r} metadata key, or upload an archive of spec.json + "
            "model.safetensors"
        )
    signature = intake.spec_checker(spec, weights) if intake.spec_checker else None
    return ArtifactInfo("safetensors", signature, spec, files)


def _spec_from_metadata(metadata: dict[str, str]) -> dict[str, Any] | None:
    raw = metadata.get(SPEC_METADATA_KEY)
    if raw is None:
        return None
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"metadata {SPEC_METADATA_KEY!r} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise InvalidInput(f"metadata {SPEC_METADATA_KEY!r} must hold a JSON object")
    return spec


def check_safetensors(path: Path, shown: str | None = None) -> dict[str, str]:
    """Validate the header without reading tensor data; return the metadata. Errors name the
    file ``shown`` (default: its own name, for a file of an archive)."""
    shown = shown or path.name
    size = path.stat().st_size
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if size < 8 or not 2 <= length <= size - 8:
            raise InvalidInput(
                f"{shown}: safetensors header length {length} does not fit in a file of "
                f"{size} bytes (truncated, or not safetensors)"
            )
        if length > _MAX_SAFETENSORS_HEADER:
            raise InvalidInput(f"{shown}: safetensors header of {length} bytes is too big")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{shown}: safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidInput(f"{shown}: safetensors header must be a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidInput(f"{shown}: safetensors metadata must map strings to strings")
    data_bytes = size - 8 - length
    spans = sorted(_tensor_span(name, entry, data_bytes) for name, entry in header.items())
    covered = 0
    for begin, end, name in spans:
        if begin != covered:
            raise InvalidInput(f"{shown}: tensor {name!r} overlaps another or leaves a gap")
        covered = end
    if covered != data_bytes:
        raise InvalidInput(
            f"{shown}: tensors cover {covered} bytes but the file holds {data_bytes}"
        )
    _open_with_library(path, set(header), shown)
    return metadata


def _tensor_span(name: str, entry: Any, data_bytes: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict):
        raise InvalidInput(f"safetensors entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    itemsize = _SAFETENSORS_ITEMSIZE.get(dtype) if isinstance(dtype, str) else None
    if itemsize is None:
        raise InvalidInput(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise InvalidInput(f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise InvalidInput(f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end > data_bytes:
        raise InvalidInput(
            f"tensor {name!r} ends at byte {end} but the data holds {data_bytes}: "
            "the safetensors file is truncated"
        )
    if end - begin != math.prod(shape) * itemsize:
        raise InvalidInput(f"tensor {name!r}: {end - begin} bytes do not match {dtype}{shape}")
    return begin, end, name


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _open_with_library(path: Path, names: set[str], shown: str) -> None:
    """Let the safetensors library confirm the header; it maps, not reads, the data."""
    # The safetensors library loads only when a version of this format is checked.
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            found = set(f.keys())
    except Exception as exc:
        raise InvalidInput(f"{shown}: not a readable safetensors file: {exc}") from exc
    if found != names:
        raise InvalidInput(f"{shown}: the safetensors library reads different tensors")


HANDLER = FormatHandler(
    "safetensors", suffixes_of("safetensors"), sniff_safetensors, _inspect_safetensors
)
LAYOUT = ArchiveLayout(
    "safetensors",
    "spec.json + model.safetensors",
    lambda names: names == {"spec.json", "model.safetensors"},
    _inspect_spec_archive,
)
