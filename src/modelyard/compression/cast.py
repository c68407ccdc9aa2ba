"""Half-precision weights (float16, bfloat16) behind a float32 interface.

The model's floating tensors are cast; hooks cast floating inputs to the model's dtype on
the way in and the output back to float32 on the way out, so callers (and the version's
FP32 signature) are unchanged. Integer inputs (token ids) pass through.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _cast_inputs(dtype: torch.dtype) -> Any:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args
        )

    return hook


def _float_output(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.float()
    return output


def cast_model(model: nn.Module, dtype_name: str) -> dict[str, Any]:
    """Cast ``model`` in place and hook it; returns the version's ``compression``."""
    dtype = DTYPES[dtype_name]
    model.to(dtype)
    add_cast_hooks(model, dtype)
    return {"method": "cast", "dtype": dtype_name}


def add_cast_hooks(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast floating inputs to ``dtype`` before ``forward`` and the output to float32 after."""
    model.register_forward_pre_hook(_cast_inputs(dtype))
    model.register_forward_hook(_float_output)
