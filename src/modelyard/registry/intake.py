"""What every format handler of the registry is given and gives back.

An upload is checked by the handler of its format (:mod:`modelyard.registry.artifacts`
picks it): the handler receives the call's :class:`Intake` and returns the accepted
artifact's :class:`ArtifactInfo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.runtimes.outputs import OutputKind

SpecChecker = Callable[[dict[str, Any], Path], dict[str, Any]]
"""Validates a spec against its safetensors weights and returns the signature."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What an accepted artifact is.

    ``files`` maps a role to a path: ``model.safetensors`` and ``spec.json`` for a
    safetensors version (unpacked under ``work_dir`` when the upload was an archive),
    ``model.pt`` / ``model.pt2`` / ``model.onnx`` for the other formats. ``outputs`` is
    what the model returns (see :mod:`modelyard.registry.heads`); ``None`` for a language
    model.
    """

    format: str
    signature: dict[str, Any] | None
    spec: dict[str, Any] | None
    files: dict[str, Path]
    outputs: OutputKind | None = None


@dataclass(frozen=True)
class Intake:
    """One call's arguments, handed to every format handler."""

    declared_format: str | None
    filename: str | None
    spec: dict[str, Any] | None
    work_dir: Path
    spec_checker: SpecChecker | None
    max_unpacked_bytes: int
