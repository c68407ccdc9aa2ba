"""Choosing where a model runs, and with how many threads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import torch


def torch_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; a named device must exist."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInput(f"device: {name!r} is not a device; use auto, cpu or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("device: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInput(f"device: there is no {name} on this machine")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        raise InvalidInput(f"device: {name!r} is not supported; use auto, cpu or cuda:N")
    return device


def intra_op_threads(requested: int | None) -> int:
    """The intra-op thread count for a model being loaded.

    torch keeps one process-wide setting (by default the number of physical cores), which
    concurrent calls share. ``requested`` changes it for the whole process — a server that
    hosts several models in one process sets it once and passes None — and ONNX Runtime
    sessions, whose pools are per session, take the same number so that ``auto`` compares
    the two engines on equal terms.
    """
    import torch

    if requested is not None:
        if requested < 1:
            raise InvalidInput(f"threads: must be at least 1, got {requested}")
        if torch.get_num_threads() != requested:
            torch.set_num_threads(requested)
        return requested
    return torch.get_num_threads()
