"""Choosing the device a run trains on."""

from __future__ import annotations

import torch

from modelyard.errors import InvalidInput


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; a named device must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("config.device: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInput(f"config.device: there is no {name} on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInput("config.device: MPS is not available on this machine")
    return device
