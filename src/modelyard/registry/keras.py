"""Keras 3 ``.keras`` versions: recognised, vetted and inspected on upload.

Vetting and loading live in :mod:`modelyard.runtimes.keras_io`, shared with the serving
runtime; this module is the registry's side of the format: :func:`sniff_keras` recognises
an upload and :func:`inspect_keras` loads it once (vetted, ``safe_mode=True``) to record
its signature. The loading names are re-exported here for the registry's callers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInput
from modelyard.runtimes.keras_io import (
    keras_module,
    keras_signature,
    load_keras_model,
    save_keras_model,
    vet_keras_archive,
)

if TYPE_CHECKING:
    from modelyard.registry.artifacts import ArtifactInfo, Intake


def sniff_keras(path: Path, head: bytes) -> bool:
    """True for a zip holding a Keras ``config.json`` and ``model.weights.h5``."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return {"config.json", "model.weights.h5"} <= names


def inspect_keras(path: Path, intake: Intake) -> ArtifactInfo:
    """The registry's check of an uploaded ``.keras`` file: vet it, load it, read its
    signature."""
    from modelyard.registry.artifacts import ArtifactInfo

    if not zipfile.is_zipfile(path):
        raise InvalidInput("not a .keras file: expected a zip written by model.save('m.keras')")
    model = load_keras_model(path, intake.work_dir, intake.max_unpacked_bytes)
    return ArtifactInfo("keras", keras_signature(model), None, {"model.keras": path})


__all__ = [
    "inspect_keras",
    "keras_module",
    "keras_signature",
    "load_keras_model",
    "save_keras_model",
    "sniff_keras",
    "vet_keras_archive",
]
