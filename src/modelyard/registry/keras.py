"""Keras 3 versions, as the registry's callers know them; the format lives in
:mod:`modelyard.registry.formats.keras`, which new code imports."""

from __future__ import annotations

from modelyard.registry.formats.keras import (
    keras_module,
    keras_signature,
    load_keras_model,
    save_keras_model,
    vet_keras_archive,
)

__all__ = [
    "keras_module",
    "keras_signature",
    "load_keras_model",
    "save_keras_model",
    "vet_keras_archive",
]
