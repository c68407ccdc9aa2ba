"""What a training run returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from modelyard.nn.catalog import ArchSpec


@dataclass
class TrainResult:
    """The trained model and everything a model version should record about it.

    ``metrics`` is ``{"train": {...}, "val": {...}}``, measured on the final model in eval
    mode and in the data's units; ``history`` has one entry per epoch (``epoch``, ``lr``,
    ``train`` measured during the epoch, ``val``); ``preprocessing`` is the recorded
    transform (:meth:`Preprocessor.to_dict`) serving must apply to inputs; ``privacy`` is
    set by a private run.
    """

    model: nn.Module
    spec: ArchSpec
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]]
    steps: int
    epochs_run: int
    stopped_early: bool
    cancelled: bool
    preprocessing: dict[str, Any]
    best: dict[str, Any] | None
    device: str
    privacy: dict[str, Any] | None = None
    """A private run's guarantee: the (ε, δ) spent, noise multiplier, clipping norm,
    accountant, sampling rate and steps (:meth:`PrivateTraining.summary`)."""
