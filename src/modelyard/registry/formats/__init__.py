"""The model formats the registry takes in, one module each, and the order they are tried in.

=================  ==============================================================
``safetensors``    weights plus a catalog spec (argument, ``modelyard.spec`` metadata,
                   or ``spec.json`` next to ``model.safetensors`` in a tar/zip archive)
``torchscript``    a zip written by ``torch.jit.save``
``torch_export``   a ``.pt2`` written by ``torch.export.save``, checked member by member
``onnx``           a single ``.onnx`` file with its weights embedded
``keras``          a Keras 3 ``.keras`` zip, vetted and run on the PyTorch backend
``hf``             a tar/zip of a Hugging Face folder: config, tokenizer, safetensors
``lora``           a tar/zip of a peft LoRA adapter: adapter_config.json, safetensors
=================  ==============================================================

Each module gives a :class:`FormatHandler` (``HANDLER``) and, where the format may come as an
archive, an :class:`ArchiveLayout` (``LAYOUT``). File suffixes come from the one table in
:mod:`modelyard.formats`. A new format is a new module here and a line in each tuple below.
"""

from __future__ import annotations

from modelyard.registry.formats import (
    hf,
    keras,
    lora,
    onnx,
    safetensors,
    torch_export,
    torchscript,
)
from modelyard.registry.formats.base import ArchiveLayout, FormatHandler

FORMATS: tuple[FormatHandler, ...] = (
    safetensors.HANDLER,
    torch_export.HANDLER,
    torchscript.HANDLER,
    onnx.HANDLER,
    keras.HANDLER,
    hf.HANDLER,
    lora.HANDLER,
)
"""Accepted version formats, in sniffing order."""

ARCHIVE_LAYOUTS: tuple[ArchiveLayout, ...] = (safetensors.LAYOUT, hf.LAYOUT, lora.LAYOUT)
"""What an uploaded tar/zip archive may hold."""

__all__ = ["ARCHIVE_LAYOUTS", "FORMATS", "ArchiveLayout", "FormatHandler"]
