"""TorchScript modules (format ``torchscript``): a zip written by ``torch.jit.save``."""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import InvalidInput
from modelyard.registry.formats.base import (
    FormatHandler,
    check_zip_budget,
    split_root,
    suffixes_of,
    zip_names,
)
from modelyard.registry.heads import torchscript_output_kind
from modelyard.registry.intake import ArtifactInfo, Intake
from modelyard.registry.signature import torchscript_signature


def is_torchscript(names: list[str]) -> bool:
    split = split_root(names)
    if split is None:
        return False
    _, rels = split
    has_code = any(rel.startswith("code/") for rel in rels) or "constants.pkl" in rels
    return has_code and "data.pkl" in rels and bool({"version", ".data/version"} & rels)


def _sniff_torchscript(path: Path, head: bytes) -> bool:
    names = zip_names(path)
    return names is not None and is_torchscript(names)


def _inspect_torchscript(path: Path, intake: Intake) -> ArtifactInfo:
    if not _sniff_torchscript(path, b""):
        raise InvalidInput(
            "not a TorchScript archive: expected a zip written by torch.jit.save, with code/ "
            "or constants.pkl, data.pkl and a version record"
        )
    check_zip_budget(path, intake.max_unpacked_bytes, intake.filename or "the upload")
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


HANDLER = FormatHandler(
    "torchscript", suffixes_of("torchscript"), _sniff_torchscript, _inspect_torchscript
)
