"""A torch callable (catalog model, TorchScript module, exported program) as a runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInput, Unavailable
from modelyard.runtimes.inputs import InputPipeline
from modelyard.runtimes.runtime import ModelRuntime
from modelyard.runtimes.tensors import TensorSpec

if TYPE_CHECKING:
    import torch


class TorchRuntime(ModelRuntime):
    """Runs ``module(*inputs)`` under ``torch.inference_mode`` on ``device``.

    Inputs are passed positionally in the order of ``inputs``; a tensor, or a tuple, list
    or dict of tensors, comes back as the outputs in order. Output names are those of
    ``outputs`` when the count matches, else ``output0``, ``output1``, … .

    Concurrent calls are safe: the module is in eval mode and inference mode keeps no
    autograd state; each call gets its own tensors. Where the inputs' shapes or types are
    unknown (``checked=False``), an error raised by the forward pass is the caller's bad
    input and becomes InvalidInput.
    """

    def __init__(
        self,
        module: Callable[..., Any],
        *,
        name: str,
        device: torch.device,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        pipeline: InputPipeline,
    ) -> None:
        super().__init__(
            name=name, device=str(device), inputs=inputs, outputs=outputs, pipeline=pipeline
        )
        self.module: Callable[..., Any] | None = module
        self._device = device
        self._checked = all(s.shape is not None and s.datatype is not None for s in inputs)

    def forward(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The module's outputs for checked, preprocessed arrays."""
        import torch

        module = self.module
        if module is None:
            raise Unavailable(f"the {self.name} runtime is closed")
        tensors = [self._tensor(spec, arrays[spec.name]) for spec in self.inputs]
        try:
            with torch.inference_mode():
                result = module(*tensors)
                flat = _flatten(result)
                values = [_to_numpy(t) for t in flat]
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            if self._checked:
                raise
            raise InvalidInput(f"the inputs do not fit the model: {_first_line(exc)}") from None
        if len(values) == len(self.outputs):
            names = [spec.name for spec in self.outputs]
        else:
            names = [f"output{i}" for i in range(len(values))]
        return dict(zip(names, values, strict=True))

    def _tensor(self, spec: TensorSpec, array: np.ndarray) -> torch.Tensor:
        import torch

        # Arrays decoded from a request buffer may be read-only; torch wants to own writable
        # memory, and the copy to the device happens anyway off the CPU.
        if not array.flags.writeable:
            array = array.copy()
        tensor = torch.from_numpy(array)
        if spec.datatype == "BF16":
            tensor = tensor.to(torch.bfloat16)
        return tensor.to(self._device, non_blocking=False)

    def _release(self) -> None:
        import torch

        self.module = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


def _flatten(result: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, tuple | list):
        return [t for item in result for t in _flatten(item)]
    if isinstance(result, dict):
        return [t for item in result.values() for t in _flatten(item)]
    raise InvalidInput(
        f"the model returned {type(result).__name__}; served models return tensors, "
        "or tuples, lists or dicts of tensors"
    )


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    import torch

    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
        tensor = tensor.float()
    array: np.ndarray = tensor.cpu().numpy()
    return array


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def module_float_dtype(module: Any) -> np.dtype[Any]:
    """The numpy type of the module's first floating-point parameter or buffer (float32)."""
    import torch

    tensors = [*module.parameters(), *module.buffers()]
    for tensor in tensors:
        if tensor.is_floating_point() and tensor.dtype != torch.bfloat16:
            return np.dtype(str(tensor.dtype).removeprefix("torch."))
    return np.dtype(np.float32)
