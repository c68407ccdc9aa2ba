"""Exporting a torch model to an ONNX file with a variable batch dimension."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


class ExportFailed(Exception):
    """Neither exporter could write the model; the message says why each failed."""


def export_onnx(
    model: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    fallback: bool = True,
) -> str:
    """Write ``model`` to ``path`` and return which exporter did (``torchscript``/``dynamo``).

    The TorchScript-based exporter goes first: on a small model it takes a fraction of a
    second where the dynamo exporter, which rebuilds its operator registry on every call,
    takes five or more. With ``fallback`` the dynamo exporter is tried when the first one
    fails (it writes the weights to ``<path>.data`` beside the model). ``example`` should
    have at least two rows, so that no exporter takes the batch size for a constant.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in [*input_names, *output_names]},
            dynamo=False,
        )
    except Exception as legacy:
        if not fallback:
            raise ExportFailed(f"torchscript exporter: {_first_line(legacy)}") from legacy
        batch = torch.export.Dim("batch", min=1)
        try:
            torch.onnx.export(
                model,
                example,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=tuple({0: batch} for _ in example),
                dynamo=True,
                verbose=False,
            )
        except Exception as dynamo:
            raise ExportFailed(
                f"torchscript exporter: {_first_line(legacy)}; dynamo exporter: "
                f"{_first_line(dynamo)}"
            ) from dynamo
        return "dynamo"
    return "torchscript"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
