"""Int8 and int4 quantization of torch models with torchao, and its safetensors layout.

torchao swaps a ``Linear`` layer's weight for a tensor subclass holding integer data and
scales. Such tensors cannot go into safetensors as they are, so a quantized layer
``<m>`` is stored as two plain tensors and rebuilt from them:

===============  ==========================================  ============================
scheme           ``<m>.weight``                              ``<m>.weight_scale``
===============  ==========================================  ============================
``dynamic_int8`` int8 ``[out, in]`` (symmetric, per row)     float32 ``[out, 1]``
``weight_int8``  int8 ``[out, in]`` (symmetric, per row)     float32 ``[out, 1]``
``weight_int4``  uint8 ``[out, in/2]``: two values per byte  float32 ``[out, in/group]``
===============  ==========================================  ============================

Recurrent layers are first rebuilt from ``Linear`` gates (:mod:`.recurrent`), so the int8
schemes reach LSTMs and GRUs too. ``dynamic_int8`` quantizes activations per token at run
time (``Int8DynamicActivationInt8WeightConfig``); the weight-only schemes dequantize
weights inside the matmul (``Int8WeightOnlyConfig``, ``IntxWeightOnlyConfig``). torchao's
fast int4 kernels (``Int4WeightOnlyConfig``) need a CUDA GPU; ``weight_int4`` uses its
portable int4 layout, which makes artifacts about 6× smaller but does not run faster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modelyard.compression.recurrent import RECURRENT_TYPES, unroll
from modelyard.errors import InvalidInput

TORCHAO_SCHEMES = ("dynamic_int8", "weight_int8", "weight_int4")
SCALE_SUFFIX = "_scale"
_INT4: torch.dtype = getattr(torch, "int4")  # noqa: B009 (absent from torch's stubs)


def _config(scheme: str, group_size: int) -> Any:
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )

    if scheme == "dynamic_int8":
        return Int8DynamicActivationInt8WeightConfig()
    if scheme == "weight_int8":
        return Int8WeightOnlyConfig()
    return IntxWeightOnlyConfig(weight_dtype=_INT4, granularity=PerGroup(group_size))


def quantizable(model: nn.Module, scheme: str, group_size: int = 32) -> dict[str, str]:
    """``{name: kind}`` of the layers ``scheme`` can quantize (``linear`` or ``recurrent``)."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, RECURRENT_TYPES) and scheme != "weight_int4":
            found[name] = "recurrent"
        elif (
            isinstance(module, nn.Linear)
            and not _inside(name, found)
            and (scheme != "weight_int4" or module.in_features % group_size == 0)
        ):
            found[name] = "linear"
    return found


def _inside(name: str, parents: Mapping[str, str]) -> bool:
    return any(name.startswith(parent + ".") for parent in parents)


def choose_modules(
    model: nn.Module, scheme: str, wanted: list[str] | None, group_size: int = 32
) -> dict[str, str]:
    """The layers to quantize: ``wanted`` (checked) or every one that can be.

    Raises InvalidInput naming ``method.modules[i]`` when a name is not a layer the scheme
    can quantize.
    """
    available = quantizable(model, scheme, group_size)
    if not available:
        raise InvalidInput(f"method.scheme: the model has no layer {scheme} can quantize")
    if wanted is None:
        return available
    chosen: dict[str, str] = {}
    for index, name in enumerate(wanted):
        if name not in available:
            names = ", ".join(sorted(available))
            raise InvalidInput(
                f"method.modules[{index}]: {name!r} is not a layer {scheme} can quantize "
                f"in this model; these are: {names}"
            )
        chosen[name] = available[name]
    return chosen


def quantize_model(
    model: nn.Module, scheme: str, modules: Mapping[str, str], group_size: int = 32
) -> dict[str, Any]:
    """Quantize ``modules`` of ``model`` in place; returns the version's ``compression``.

    ``modules`` is what :func:`choose_modules` returned. The descriptor records the scheme,
    the recurrent layers unrolled and the ``Linear`` layers quantized, which is all
    :func:`restore_quantized` needs besides the spec.
    """
    from torchao.quantization import quantize_

    recurrent = sorted(name for name, kind in modules.items() if kind == "recurrent")
    unroll(model, recurrent)
    linear = sorted(name for name, kind in modules.items() if kind == "linear")
    linear += sorted(
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _inside(name, dict.fromkeys(recurrent, ""))
    )
    targets = set(linear)
    quantize_(model, _config(scheme, group_size), filter_fn=lambda _m, fqn: fqn in targets)
    descriptor: dict[str, Any] = {
        "method": "quantize",
        "scheme": scheme,
        "backend": "torchao",
        "modules": linear,
        "unrolled": recurrent,
    }
    if scheme == "weight_int4":
        descriptor["group_size"] = group_size
    return descriptor


def pack_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every quantized weight as plain tensors (see above)."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        qdata = getattr(tensor, "qdata", None)
        if qdata is None:
            state[name] = tensor.detach()
            continue
        scale = tensor.scale.detach().to(torch.float32)
        zero = getattr(tensor, "zero_point", None)
        if zero is not None and bool(torch.any(zero != 0)):
            raise ValueError(f"{name}: only symmetric quantization (zero points 0) is stored")
        if getattr(tensor, "target_dtype", torch.int8) == _INT4:
            state[name] = pack_int4(qdata)
        else:
            state[name] = qdata.detach()
        state[name + SCALE_SUFFIX] = scale.reshape(qdata.shape[0], -1)
    return state


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Int8 values in [-8, 7], ``[rows, 2k]`` → uint8 ``[rows, k]``, the even column low."""
    nibbles = (values.to(torch.int16) & 0xF).to(torch.uint8)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_int4`."""
    low = (packed & 0xF).to(torch.int8)
    high = (packed >> 4).to(torch.int8)
    values = torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)
    return torch.where(values >= 8, values - 16, values)


def storage_shapes(
    weight_shape: tuple[int, ...], scheme: str, group_size: int
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shape and dtype of ``weight`` and ``weight_scale`` stored for one quantized layer."""
    rows, columns = weight_shape
    if scheme == "weight_int4":
        return {
            "weight": ((rows, columns // 2), torch.uint8),
            "weight" + SCALE_SUFFIX: ((rows, columns // group_size), torch.float32),
        }
    return {
        "weight": ((rows, columns), torch.int8),
        "weight" + SCALE_SUFFIX: ((rows, 1), torch.float32),
    }


def restore_quantized(
    model: nn.Module, compression: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Rebuild a quantized model from a float model of its spec and the stored tensors.

    The float model is quantized with the same torchao config (so every tensor attribute
    is torchao's own), then its integer data and scales are replaced by the stored ones.
    """
    from torchao.quantization import quantize_

    scheme = str(compression["scheme"])
    group_size = int(compression.get("group_size", 32))
    unroll(model, list(compression.get("unrolled", [])), copy_weights=False)
    targets = set(compression["modules"])
    quantize_(model, _config(scheme, group_size), filter_fn=lambda _m, fqn: fqn in targets)
    rest = dict(state)
    for name in sorted(targets):
        weight: Any = getattr(model.get_submodule(name), "weight")  # noqa: B009
        qdata = rest.pop(f"{name}.weight")
        scale = rest.pop(f"{name}.weight{SCALE_SUFFIX}")
        if scheme == "weight_int4":
            qdata = unpack_int4(qdata)
        weight.qdata = qdata.to(weight.qdata.dtype).reshape(weight.qdata.shape)
        weight.scale = scale.to(weight.scale.dtype).reshape(weight.scale.shape)
    missing, unexpected = model.load_state_dict(rest, strict=False)
    missing = [key for key in missing if key.rsplit(".", 1)[0] not in targets]
    if missing or unexpected:
        raise InvalidInput(
            f"weights do not fit the compressed model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model
