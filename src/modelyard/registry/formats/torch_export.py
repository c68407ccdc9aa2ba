"""``torch.export`` programs (format ``torch_export``): a ``.pt2`` checked member by member."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.registry.formats.base import (
    FormatHandler,
    check_zip_budget,
    split_root,
    suffixes_of,
    zip_names,
)
from modelyard.registry.heads import exported_program_output_kind
from modelyard.registry.intake import ArtifactInfo, Intake
from modelyard.registry.signature import exported_program_signature

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
    names = zip_names(path)
    split = split_root(names) if names is not None else None
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
    names = zip_names(path)
    split = split_root(names) if names is not None else None
    if names is None or split is None or len(set(names)) != len(names):
        raise InvalidInput("not a torch.export archive: expected a .pt2 from torch.export.save")
    root, rels = split
    check_zip_budget(path, max_bytes, shown)
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
    check_zip_budget(io.BytesIO(raw), max_bytes, f"torch.export archive member {rel!r}")
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


HANDLER = FormatHandler(
    "torch_export", suffixes_of("torch_export"), _sniff_torch_export, _inspect_torch_export
)
