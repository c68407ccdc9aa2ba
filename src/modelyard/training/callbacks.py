"""How a training run talks to whoever runs it: events, checkpoints, cancellation.

The job system implements :class:`TrainCallbacks`; tests subclass :class:`BaseCallbacks`.
"""

from __future__ import annotations

from typing import Any, Protocol


class TrainCallbacks(Protocol):
    """What :func:`modelyard.training.train` calls while it runs.

    Events are JSON-able dicts: ``{"type": "step", "epoch", "step", "loss", "lr",
    "samples_per_s"}`` every ``log_every_steps`` steps, ``{"type": "epoch", "epoch",
    "epochs", "step", "train", "val", "lr", "progress", "eta_s"}`` after each epoch, and
    ``{"type": "early_stop", ...}`` when early stopping ends the run. Epochs count from 1.
    """

    def on_event(self, event: dict[str, Any]) -> None:
        """Record or forward one event."""

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (its tensors are private copies); serialize it with
        :func:`modelyard.training.checkpoint_to_bytes`. Passing it back as ``resume``
        continues the run exactly where it was taken."""

    def should_stop(self) -> bool:
        """Checked before every step; True ends the run, cancelled, after a checkpoint."""


class BaseCallbacks:
    """Callbacks that do nothing; subclass and override what you need."""

    def on_event(self, event: dict[str, Any]) -> None:
        """Ignore the event."""

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Drop the checkpoint."""

    def should_stop(self) -> bool:
        """Never stop."""
        return False
