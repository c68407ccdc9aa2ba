"""Safe intake of uploaded model artifacts.

:func:`inspect_artifact` decides what an upload is, refuses anything that could run code
on the server, and reads the version's signature. Accepted formats:

=================  ==============================================================
``safetensors``    weights plus a catalog spec (argument, ``modelyard.spec`` metadata,
                   or ``spec.json`` next to ``model.safetensors`` in a tar/zip archive)
``torchscript``    a zip written by ``torch.jit.save``
``torch_export``   a ``.pt2`` written by ``torch.export.save``, checked member by member
``onnx``           a single ``.onnx`` file with its weights embedded
``keras``          a Keras 3 ``.keras`` zip, vetted and run on the PyTorch backend
``hf``             a tar/zip of a Hugging Face folder: config, tokenizer, safetensors
=================  ==============================================================

Pickles are refused whatever they are called: raw pickles, ``torch.save`` checkpoints,
and the ``.pkl``/``.pickle``/``.joblib``/``.ckpt`` extensions. Nothing here calls
``pickle.load`` or ``torch.load`` without ``weights_only=True``.

The format is taken from ``declared_format``, else the file name's extension, else the
file's first bytes. New formats plug in as a :class:`FormatHandler` in :data:`FORMATS`;
new archive contents as an :class:`ArchiveLayout` in :data:`ARCHIVE_LAYOUTS`.
"""

from __future__ import annotations

import io
import json
import math
import pickletools
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput, UnsafeArtifact, UnsupportedFormat
from modelyard.registry.archives import is_archive, safe_extract
from modelyard.registry.heads import (
    exported_program_output_kind,
    onnx_output_kind,
    recorded_output_kind,
    torchscript_output_kind,
)
from modelyard.registry.hf import HF_FORMAT, describe_hf_folder, matches_hf_folder
from modelyard.registry.intake import ArtifactInfo as ArtifactInfo
from modelyard.registry.intake import Intake as Intake
from modelyard.registry.intake import SpecChecker as SpecChecker
from modelyard.registry.keras import inspect_keras, sniff_keras
from modelyard.registry.signature import (
    exported_program_signature,
    onnx_signature,
    torchscript_signature,
)
from modelyard.runtimes.outputs import check_output_kind

if TYPE_CHECKING:
    import onnx


SPEC_METADATA_KEY = "modelyard.spec"
PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".ckpt")
ARCHIVE_EXTENSIONS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
_PICKLE_ADVICE = "upload safetensors with a spec, TorchScript, torch.export or ONNX"
_HEAD_BYTES = 64 * 1024
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


def inspect_artifact(
    path: Path,
    *,
    declared_format: str | None,
    filename: str | None,
    spec: dict[str, Any] | None,
    work_dir: Path,
    spec_checker: SpecChecker | None = None,
    max_unpacked_bytes: int,
    declared_outputs: Any = None,
) -> ArtifactInfo:
    """Identify and validate an uploaded artifact.

    ``filename`` is the uploader's name for the file (its extension counts); ``spec`` is
    a catalog spec for safetensors weights and takes precedence over one stored in the
    file's metadata or in an archive's ``spec.json``. ``spec_checker`` validates the spec
    against the weights and returns the signature; without it the signature is ``None``.
    Archives unpack under ``work_dir``, at most ``max_unpacked_bytes`` in all.
    ``declared_outputs`` is what the uploader says the model returns (``logits``,
    ``probabilities``…); it takes precedence over what the graph shows.

    Raises:
        UnsafeArtifact: a pickle, or an archive or program that could run code or escape.
        UnsupportedFormat: the format is not one of :data:`FORMATS`.
        InvalidInput: the file is damaged, lacks a spec, or fails its format's checks.

    Example::

        info = inspect_artifact(upload, declared_format=None, filename="mlp.safetensors",
                                spec=None, work_dir=tmp, max_unpacked_bytes=1 << 30)
        info.format, info.signature
    """
    if declared_outputs is not None:
        check_output_kind(declared_outputs)
    intake = Intake(declared_format, filename, spec, work_dir, spec_checker, max_unpacked_bytes)
    name = (filename or path.name).lower()
    declared = declared_format.strip().lower() if declared_format else None
    if name.endswith(PICKLE_EXTENSIONS) or declared in ("pickle", "pkl", "joblib"):
        raise UnsafeArtifact(f"pickle files are refused: {name!r} is a pickle; {_PICKLE_ADVICE}")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        raise InvalidInput("the artifact is empty")
    reason = _pickle_reason(path, head)
    if reason is not None:
        raise UnsafeArtifact(f"pickle files are refused: this is {reason}; {_PICKLE_ADVICE}")

    handler = _choose_handler(path, head, declared, name)
    if handler is None:
        info = _inspect_archive(path, intake, declared)
    else:
        if spec is not None and handler.name != "safetensors":
            raise InvalidInput(
                f"a spec applies to safetensors versions only, not to {handler.name}"
            )
        info = handler.inspect(path, intake)
    outputs = recorded_output_kind(info.format, info.outputs, declared_outputs)
    return replace(info, outputs=outputs)


def accepted_formats() -> str:
    """The accepted formats, for error messages."""
    names = ", ".join(handler.name for handler in FORMATS)
    layouts = " or ".join(layout.description for layout in ARCHIVE_LAYOUTS)
    return f"{names}, or a tar/zip archive holding {layouts}"


def _choose_handler(
    path: Path, head: bytes, declared: str | None, name: str
) -> FormatHandler | None:
    """The handler for this upload, or None for an archive to unpack."""
    by_name = {handler.name: handler for handler in FORMATS}
    if declared is not None:
        if declared not in by_name:
            raise UnsupportedFormat(f"unknown format {declared!r}; accepted: {accepted_formats()}")
        handler = by_name[declared]
        packable = any(layout.format == declared for layout in ARCHIVE_LAYOUTS)
        if packable and not handler.sniff(path, head) and is_archive(path) is not None:
            return None
        return handler
    if name.endswith(ARCHIVE_EXTENSIONS):
        return None
    for handler in FORMATS:
        if name.endswith(handler.extensions):
            return handler
    for handler in FORMATS:
        if handler.sniff(path, head):
            return handler
    if is_archive(path) is not None:
        return None
    raise UnsupportedFormat(
        f"cannot tell the format of {name!r} from its name or content; "
        f"accepted: {accepted_formats()}"
    )


# -- pickles -------------------------------------------------------------------------


def _pickle_reason(path: Path, head: bytes) -> str | None:
    """Why this file is a pickle, or None. Never unpickles; only parses opcodes."""
    if _sniff_safetensors(path, head):
        # A safetensors header length of 640 bytes begins 0x80 0x02, like a pickle.
        return None
    names = _zip_names(path)
    if names is not None:
        return "a torch.save checkpoint (a pickle in a zip)" if _is_torch_save(names) else None
    if is_archive(path) is not None:
        return None
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            if opcode.name == "STOP":
                return "a pickle"
    except Exception:
        return None
    return None


def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _split_root(names: list[str]) -> tuple[str, set[str]] | None:
    """(root folder, member paths below it) when every member sits in one folder."""
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        return None
    return roots.pop(), {name.split("/", 1)[1] for name in names}


def _is_torchscript(names: list[str]) -> bool:
    split = _split_root(names)
    if split is None:
        return False
    _, rels = split
    has_code = any(rel.startswith("code/") for rel in rels) or "constants.pkl" in rels
    return has_code and "data.pkl" in rels and bool({"version", ".data/version"} & rels)


def _is_torch_save(names: list[str]) -> bool:
    split = _split_root(names)
    return split is not None and "data.pkl" in split[1] and not _is_torchscript(names)


# -- safetensors ---------------------------------------------------------------------


def _sniff_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 10 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    return length <= min(path.stat().st_size - 8, _MAX_SAFETENSORS_HEADER)


def _inspect_safetensors(path: Path, intake: Intake) -> ArtifactInfo:
    # Errors name the file as the uploader knows it, never the server's staging name.
    metadata = _check_safetensors(path, intake.filename or "the upload")
    spec = intake.spec if intake.spec is not None else _spec_from_metadata(metadata)
    return _safetensors_version(spec, path, intake, {"model.safetensors": path})


def _inspect_spec_archive(files: dict[str, Path], intake: Intake) -> ArtifactInfo:
    weights = files["model.safetensors"]
    _check_safetensors(weights)
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


def _check_safetensors(path: Path, shown: str | None = None) -> dict[str, str]:
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


# -- archives ------------------------------------------------------------------------


def _inspect_archive(path: Path, intake: Intake, expected: str | None) -> ArtifactInfo:
    dest = Path(tempfile.mkdtemp(prefix="unpacked-", dir=intake.work_dir))
    extracted = safe_extract(path, dest, max_total_bytes=intake.max_unpacked_bytes)
    files = {p.relative_to(dest).as_posix(): p for p in extracted}
    split = _split_root(list(files)) if len(files) > 1 else None
    if split is not None:
        # Archives made from a folder (tar czf m.tgz mymodel/) wrap everything in it.
        root = split[0]
        files = {name.removeprefix(f"{root}/"): p for name, p in files.items()}
    candidates = [layout for layout in ARCHIVE_LAYOUTS if expected in (None, layout.format)]
    for layout in candidates:
        if layout.matches(set(files)):
            return layout.inspect(files, intake)
    wanted = " or ".join(layout.description for layout in candidates)
    raise InvalidInput(
        f"the archive holds {sorted(files)}; expected exactly {wanted}"
        + (f" for format {expected!r}" if expected else "")
    )


def _check_zip_budget(source: Path | io.BytesIO, max_bytes: int, label: str) -> None:
    """Bound what torch's zip reader may inflate; it allocates each member's stated size."""
    with zipfile.ZipFile(source) as zf:
        total = sum(info.file_size for info in zf.infolist())
    if total > max_bytes:
        raise UnsafeArtifact(f"{label} unpacks to {total} bytes, over the limit of {max_bytes}")


# -- TorchScript ---------------------------------------------------------------------


def _sniff_torchscript(path: Path, head: bytes) -> bool:
    names = _zip_names(path)
    return names is not None and _is_torchscript(names)


def _inspect_torchscript(path: Path, intake: Intake) -> ArtifactInfo:
    if not _sniff_torchscript(path, b""):
        raise InvalidInput(
            "not a TorchScript archive: expected a zip written by torch.jit.save, with code/ "
            "or constants.pkl, data.pkl and a version record"
        )
    _check_zip_budget(path, intake.max_unpacked_bytes, intake.filename or "the upload")
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    # torch.jit.load reads data.pkl and constants.pkl with TorchScript's own unpickler,
    # which builds only TorchScript classes and tensors and never imports Python globals;
    # code/ is compiled by the TorchScript compiler, not executed by Python.
    try:
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise InvalidInput(f"could not load the TorchScript module: {exc}") from exc
    return ArtifactInfo(
        "torchscript",
        torchscript_signature(module),
        None,
        {"model.pt": path},
        torchscript_output_kind(module),
    )


# -- torch.export --------------------------------------------------------------------

# torch.export.load (torch 2.13) is NOT safe on untrusted files: it unpickles sample
# inputs with torch.load(weights_only=False) when weights_only=True fails, unpickles
# "use_pickle" weights and constants with weights_only=False, opaque constants with
# pickle.loads, custom objects with TorchScript's pickler, and loads AOTInductor
# shared libraries. So a .pt2 is accepted only when it holds nothing but JSON, raw tensor
# bytes and sample inputs that torch.load(weights_only=True) accepts; then none of those
# paths is taken. Graph nodes are resolved by name and checked by the ExportedProgram
# verifier on load, which refuses targets that are not operators.
_PT2_ALLOWED = tuple(
    re.compile(pattern)
    for pattern in (
        r"archive_format",
        r"archive_version",
        r"byteorder",
        r"\.data/version",
        r"\.data/serialization_id",
        r"models/[\w.-]+\.json",
        r"data/weights/[\w.-]+_weights_config\.json",
        r"data/weights/weight_\d+",
        r"data/constants/[\w.-]+_constants_config\.json",
        r"data/constants/tensor_\d+",
        r"data/sample_inputs/[\w.-]+\.pt",
        r"extra/[^/]+",
    )
)
_PT2_PAYLOAD = {"weights": re.compile(r"weight_\d+"), "constants": re.compile(r"tensor_\d+")}


def _sniff_torch_export(path: Path, head: bytes) -> bool:
    names = _zip_names(path)
    split = _split_root(names) if names is not None else None
    return split is not None and "archive_format" in split[1]


def _inspect_torch_export(path: Path, intake: Intake) -> ArtifactInfo:
    _check_pt2(path, intake.max_unpacked_bytes, intake.filename or "the upload")
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    try:
        with path.open("rb") as f:
            program = torch.export.load(f)
    except Exception as exc:
        raise InvalidInput(f"could not load the torch.export program: {exc}") from exc
    signature = exported_program_signature(program)
    outputs = exported_program_output_kind(program)
    return ArtifactInfo("torch_export", signature, None, {"model.pt2": path}, outputs)


def _check_pt2(path: Path, max_bytes: int, shown: str) -> None:
    names = _zip_names(path)
    split = _split_root(names) if names is not None else None
    if names is None or split is None or len(set(names)) != len(names):
        raise InvalidInput("not a torch.export archive: expected a .pt2 from torch.export.save")
    root, rels = split
    _check_zip_budget(path, max_bytes, shown)
    for rel in sorted(rels):
        if not any(pattern.fullmatch(rel) for pattern in _PT2_ALLOWED):
            raise UnsafeArtifact(f"torch.export archive member {rel!r} {_pt2_refusal(rel)}")
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    # torch reads the zip with its own parser; both must see the same members.
    try:
        torch_rels = set(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except Exception as exc:
        raise InvalidInput(f"torch cannot read the .pt2 archive: {exc}") from exc
    if torch_rels != rels:
        raise UnsafeArtifact("the .pt2 zip directory reads differently to different parsers")
    with zipfile.ZipFile(path) as zf:
        if zf.read(f"{root}/archive_format").strip() != b"pt2":
            raise InvalidInput("not a torch.export archive: archive_format is not 'pt2'")
        for rel in rels:
            kind = rel.split("/")[1] if rel.startswith("data/") else ""
            if rel.endswith("_config.json") and kind in _PT2_PAYLOAD:
                _check_pt2_payloads(rel, zf.read(f"{root}/{rel}"), _PT2_PAYLOAD[kind])
            elif rel.startswith("data/sample_inputs/"):
                _check_sample_inputs(rel, zf.read(f"{root}/{rel}"), max_bytes)


def _pt2_refusal(rel: str) -> str:
    if rel.startswith("data/aotinductor/"):
        return "holds AOTInductor compiled code, which would run natively on the server"
    if "custom_obj_" in rel or "opaque_obj_" in rel or rel.endswith((".pt", ".pkl")):
        return "holds pickled objects, which torch.export.load unpickles without restriction"
    return "is not part of a plain torch.export program (JSON graph and tensor data)"


def _check_pt2_payloads(rel: str, raw: bytes, allowed: re.Pattern[str]) -> None:
    try:
        config = json.loads(raw)["config"]
        entries = [
            (str(fqn), meta["use_pickle"], meta["path_name"]) for fqn, meta in config.items()
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"torch.export archive member {rel!r} is malformed: {exc}") from exc
    for fqn, use_pickle, path_name in entries:
        if use_pickle is not False:
            raise UnsafeArtifact(
                f"torch.export archive stores {fqn!r} as a pickle, which torch.export.load "
                "unpickles without restriction"
            )
        if not isinstance(path_name, str) or not allowed.fullmatch(path_name):
            raise UnsafeArtifact(f"torch.export archive entry {fqn!r} points to {path_name!r}")


def _check_sample_inputs(rel: str, raw: bytes, max_bytes: int) -> None:
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    # torch.save's legacy (non-zip) format sizes storages from the pickle itself, so only
    # the zip format, whose records are bounded here, is accepted.
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise UnsafeArtifact(
            f"torch.export archive member {rel!r} is not in torch.save's zip format"
        )
    _check_zip_budget(io.BytesIO(raw), max_bytes, f"torch.export archive member {rel!r}")
    # torch.export.load retries these with weights_only=False when weights_only=True
    # fails; a file that loads here (same process, same allowlist) never takes that path.
    try:
        value = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as exc:
        raise UnsafeArtifact(
            f"torch.export archive member {rel!r} is not a plain tensor pickle "
            f"(torch.load with weights_only=True refuses it: {exc})"
        ) from exc
    if not isinstance(value, (tuple, dict)):
        raise InvalidInput(f"torch.export archive member {rel!r} holds {type(value).__name__}")


# -- ONNX ----------------------------------------------------------------------------


def _sniff_onnx(path: Path, head: bytes) -> bool:
    # ModelProto's first field is ir_version (field 1, varint): tag byte 0x08.
    if head[:1] != b"\x08":
        return False
    try:
        _load_onnx(path)
    except InvalidInput:
        return False
    return True


def _load_onnx(path: Path) -> onnx.ModelProto:
    # ONNX loads only when an ONNX version is checked.
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidInput(f"not a valid ONNX model: {exc}") from exc


def _inspect_onnx(path: Path, intake: Intake) -> ArtifactInfo:
    # ONNX loads only when an ONNX version is checked.
    import onnx

    model = _load_onnx(path)
    for tensor in _onnx_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            # A single uploaded file cannot carry side files; whatever the reference names
            # would be read from the server's disk.
            raise UnsafeArtifact(
                f"ONNX tensor {tensor.name!r} keeps its data in {location!r}, which points "
                "outside the artifact; export with external_data=False"
            )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidInput(f"the ONNX model fails onnx.checker: {exc}") from exc
    return ArtifactInfo(
        "onnx", onnx_signature(model), None, {"model.onnx": path}, onnx_output_kind(model)
    )


def _onnx_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor that could hold data: initializers and attributes, in all subgraphs."""
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            nodes.extend(graph.node)
            continue
        for attr in nodes.pop().attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)


# -- Hugging Face folders ------------------------------------------------------------


def _inspect_hf_archive(files: dict[str, Path], intake: Intake) -> ArtifactInfo:
    spec = describe_hf_folder(files)
    for name, path in files.items():
        if name.endswith(".safetensors"):
            _check_safetensors(path)
    # Roles are prefixed so that no role reads "model.safetensors": the archive itself,
    # not one file of it, is the version's blob.
    return ArtifactInfo(HF_FORMAT, None, spec, {f"hf/{name}": p for name, p in files.items()})


def _inspect_hf_single(path: Path, intake: Intake) -> ArtifactInfo:
    raise InvalidInput(
        "format 'hf' is a tar or zip of a Hugging Face model folder (config.json, tokenizer "
        "files, *.safetensors)"
    )


FORMATS: tuple[FormatHandler, ...] = (
    FormatHandler("safetensors", (".safetensors",), _sniff_safetensors, _inspect_safetensors),
    FormatHandler("torch_export", (".pt2",), _sniff_torch_export, _inspect_torch_export),
    FormatHandler(
        "torchscript",
        (".pt", ".pth", ".jit", ".torchscript"),
        _sniff_torchscript,
        _inspect_torchscript,
    ),
    FormatHandler("onnx", (".onnx",), _sniff_onnx, _inspect_onnx),
    FormatHandler("keras", (".keras",), sniff_keras, inspect_keras),
    FormatHandler(HF_FORMAT, (), lambda _path, _head: False, _inspect_hf_single),
)
"""Accepted version formats, in sniffing order."""

ARCHIVE_LAYOUTS: tuple[ArchiveLayout, ...] = (
    ArchiveLayout(
        "safetensors",
        "spec.json + model.safetensors",
        lambda names: names == {"spec.json", "model.safetensors"},
        _inspect_spec_archive,
    ),
    ArchiveLayout(
        HF_FORMAT,
        "a Hugging Face folder (config.json, tokenizer, *.safetensors)",
        matches_hf_folder,
        _inspect_hf_archive,
    ),
)
"""What an uploaded tar/zip archive may hold."""

__all__ = [
    "ARCHIVE_LAYOUTS",
    "FORMATS",
    "ArchiveLayout",
    "ArtifactInfo",
    "FormatHandler",
    "Intake",
    "SpecChecker",
    "accepted_formats",
    "inspect_artifact",
]
