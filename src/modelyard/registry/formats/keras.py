"""Keras 3 ``.keras`` versions: recognised, vetted and inspected on upload.

Vetting and loading live in :mod:`modelyard.runtimes.keras_io`, shared with the serving
runtime; this module is the registry's side of the format: :func:`sniff_keras` recognises
an upload and :func:`inspect_keras` loads it once (vetted, ``safe_mode=True``) to record
its signature and what its outputs are (:func:`keras_output_kind`). The loading names are
re-exported here for the registry's callers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.registry.formats.base import FormatHandler, suffixes_of
from modelyard.registry.intake import ArtifactInfo, Intake
from modelyard.runtimes.keras_io import (
    keras_module,
    keras_signature,
    load_keras_model,
    save_keras_model,
    vet_keras_archive,
)
from modelyard.runtimes.outputs import OutputKind

_ACTIVATIONS: dict[str, OutputKind] = {
    "softmax": "probabilities",
    "sigmoid": "binary_probabilities",
}
# Layers that return their input unchanged at inference.
_PASS_THROUGH = frozenset(
    {"Dropout", "Identity", "GaussianNoise", "GaussianDropout", "AlphaDropout", "SpatialDropout1D"}
)


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
    if not zipfile.is_zipfile(path):
        raise InvalidInput("not a .keras file: expected a zip written by model.save('m.keras')")
    model = load_keras_model(path, intake.work_dir, intake.max_unpacked_bytes)
    return ArtifactInfo(
        "keras", keras_signature(model), None, {"model.keras": path}, keras_output_kind(model)
    )


def keras_output_kind(model: Any) -> OutputKind:
    """What a loaded Keras model returns: ``probabilities`` when its one output comes out of
    a softmax (a layer's ``activation="softmax"``, a ``Softmax`` or ``Activation`` layer),
    ``binary_probabilities`` out of a sigmoid, else ``logits``."""
    outputs = list(getattr(model, "outputs", None) or [])
    if len(outputs) != 1:
        return "logits"
    layer = _producer(outputs[0])
    while layer is not None and type(layer).__name__ in _PASS_THROUGH:
        layer = _producer(getattr(layer, "input", None))
    if layer is None:
        return "logits"
    if getattr(layer, "layers", None) and getattr(layer, "outputs", None):
        return keras_output_kind(layer)
    if type(layer).__name__ == "Softmax":
        return "probabilities"
    activation = getattr(layer, "activation", None)
    return _ACTIVATIONS.get(getattr(activation, "__name__", ""), "logits")


def _producer(tensor: Any) -> Any:
    """The layer that made a symbolic Keras tensor, or None."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


HANDLER = FormatHandler("keras", suffixes_of("keras"), sniff_keras, inspect_keras)

__all__ = [
    "HANDLER",
    "inspect_keras",
    "keras_module",
    "keras_output_kind",
    "keras_signature",
    "load_keras_model",
    "save_keras_model",
    "sniff_keras",
    "vet_keras_archive",
]
