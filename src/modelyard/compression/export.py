"""Exporting a module to ONNX, TorchScript or ``torch.export``, verified against it.

Every export takes a batch dimension that varies, embeds its weights (ONNX: no side
file, as the registry requires), and is accepted only when its outputs on real inputs are
``allclose`` to the source's; :func:`max_abs_diff` gives the number recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from modelyard.compression.onnx_module import WeightStats
from modelyard.errors import InvalidInput
from modelyard.formats import FILE_SUFFIX

EXPORT_SUFFIX = {f: FILE_SUFFIX[f] for f in ("onnx", "torchscript", "torch_export")}


class _SingleInput(nn.Module):
    """``forward(x)`` around any module, so every source exports the same way."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x)
        return out


def _batch_dim() -> dict[str, dict[int, torch.export.Dim]]:
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 20)}}


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write ``module`` as a single-file ONNX model with input ``input``, output ``output``."""
    wrapped = _SingleInput(module).eval()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapped,
                (example,),
                dynamo=True,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=_batch_dim(),
                opset_version=opset,
                verbose=False,
            )
            if program is None:
                raise InvalidInput("the ONNX exporter returned no program")
            program.save(str(path), external_data=False)
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"method.format: the ONNX export failed: {_first_line(exc)}") from exc
    finally:
        quiet.setLevel(level)


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``module`` traced with ``example`` as TorchScript."""
    wrapped = _SingleInput(module).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapped, (example,))  # type: ignore[no-untyped-call]
            torch.jit.save(traced, str(path))
    except Exception as exc:
        raise InvalidInput(f"method.format: tracing failed: {_first_line(exc)}") from exc


def export_program(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``module`` as a ``torch.export`` program (``.pt2``)."""
    wrapped = _SingleInput(module).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(wrapped, (example,), dynamic_shapes=_batch_dim())
            torch.export.save(program, str(path))
    except Exception as exc:
        raise InvalidInput(f"method.format: torch.export failed: {_first_line(exc)}") from exc


def export_module(
    module: nn.Module, example: torch.Tensor, fmt: str, path: Path, opset: int = 18
) -> None:
    """Export ``module`` in ``fmt`` (``onnx``, ``torchscript``, ``torch_export``) to ``path``."""
    if fmt == "onnx":
        export_onnx(module, example, path, opset)
    elif fmt == "torchscript":
        export_torchscript(module, example, path)
    elif fmt == "torch_export":
        export_program(module, example, path)
    else:
        raise InvalidInput(f"method.format: unknown export format {fmt!r}")


def load_exported(fmt: str, path: Path) -> nn.Module:
    """An export read back for checking: ONNX on ONNX Runtime, the others in torch."""
    if fmt == "onnx":
        from modelyard.compression.onnx_module import OnnxModule

        return OnnxModule(path)
    if fmt == "torchscript":
        loaded: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return loaded
    return ProgramModule.load(path)


class ProgramModule(nn.Module):
    """A ``torch.export`` program as a module that, unlike ``program.module()``, may be put in
    eval mode (the program's own module refuses ``train``/``eval``; it is kept out of the
    module tree so that those calls do not reach it)."""

    def __init__(self, program_module: nn.Module) -> None:
        super().__init__()
        self.__dict__["program"] = program_module

    @classmethod
    def load(cls, path: Path) -> ProgramModule:
        """The program saved at ``path`` by ``torch.export.save``."""
        with path.open("rb") as f:
            program = torch.export.load(f)
        return cls(program.module())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.__dict__["program"](x)
        return out

    def weight_stats(self) -> WeightStats:
        """The program's weights, counted as for any module."""
        from modelyard.compression.report import weight_stats

        program: nn.Module = self.__dict__["program"]
        return weight_stats(program)


def max_abs_diff(reference: nn.Module, candidate: nn.Module, x: torch.Tensor) -> float:
    """The largest difference between the two modules' outputs on ``x``."""
    with torch.no_grad():
        want = reference(x).float()
        got = candidate(x).float()
    if want.shape != got.shape:
        raise InvalidInput(f"the export returns shape {list(got.shape)}, not {list(want.shape)}")
    return float((want - got).abs().max())


def check_close(
    reference: nn.Module, candidate: nn.Module, x: torch.Tensor, atol: float, rtol: float
) -> float:
    """:func:`max_abs_diff`, raising InvalidInput when the outputs are not ``allclose``."""
    with torch.no_grad():
        want = reference(x).float()
        got = candidate(x).float()
    if want.shape != got.shape or not torch.allclose(got, want, atol=atol, rtol=rtol):
        diff = float((want - got).abs().max()) if want.shape == got.shape else float("inf")
        raise InvalidInput(
            f"the export's outputs differ from the source's (max abs diff {diff:.3g}, "
            f"atol {atol:g}, rtol {rtol:g}); it was not registered"
        )
    return float((want - got).abs().max())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
