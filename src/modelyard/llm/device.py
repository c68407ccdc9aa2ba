"""Where a model runs and in which precision."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cpu`` / ``cuda[:n]`` as given."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it, float32 elsewhere."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


__all__ = ["pick_device", "pick_dtype"]
