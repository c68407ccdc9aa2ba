"""Hugging Face folders, as the registry's callers know them; the format lives in
:mod:`modelyard.registry.formats.hf`, which new code imports."""

from __future__ import annotations

from modelyard.registry.formats.hf import unpack_hf

__all__ = ["unpack_hf"]
