"""Magnitude pruning: zeros in place (unstructured), or a smaller network (structured).

Unstructured pruning keeps the architecture and zeroes the weights of smallest magnitude;
the masks are returned so that fine-tuning can keep the zeros. Structured pruning removes
whole hidden units of dense layers and whole channels of convolutions (smallest L1 norm
first), slices every tensor that touches them, and returns the smaller catalog spec: the
result is an ordinary, smaller and faster catalog model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn import ArchSpec, CNNSpec, build_model, check_weights, parse_spec

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _check_names(available: list[str], wanted: list[str] | None, what: str) -> list[str]:
    if wanted is None:
        return available
    for index, name in enumerate(wanted):
        if name not in available:
            raise InvalidInput(
                f"method.modules[{index}]: {name!r} is not a layer {what} can prune in this "
                f"model; these are: {', '.join(available)}"
            )
    return list(dict.fromkeys(wanted))


# -- unstructured ----------------------------------------------------------------------


def unstructured_targets(model: nn.Module, wanted: list[str] | None) -> list[str]:
    """The layers (Linear and convolutions) whose weights will be pruned."""
    available = [name for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    if not available:
        raise InvalidInput("method.kind: the model has no Linear or convolution layer to prune")
    return _check_names(available, wanted, "unstructured pruning")


def magnitude_masks(
    model: nn.Module, modules: list[str], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """``{module: mask}`` zeroing ``sparsity`` of the weights with the smallest magnitude.

    ``scope="global"`` ranks all the layers' weights together, ``"layer"`` each on its own.
    """
    weights = {name: layer_weight(model, name).detach() for name in modules}
    if scope == "global":
        magnitudes = torch.cat([w.abs().flatten() for w in weights.values()])
        threshold = _threshold(magnitudes, sparsity)
        return {name: (w.abs() > threshold).to(w.dtype) for name, w in weights.items()}
    masks = {}
    for name, w in weights.items():
        masks[name] = (w.abs() > _threshold(w.abs().flatten(), sparsity)).to(w.dtype)
    return masks


def layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The ``weight`` of the layer called ``name``."""
    weight = getattr(model.get_submodule(name), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise InvalidInput(f"method.modules: {name!r} has no weight")
    return weight


def _threshold(magnitudes: torch.Tensor, sparsity: float) -> torch.Tensor:
    count = round(sparsity * magnitudes.numel())
    if count <= 0:
        return magnitudes.new_tensor(-1.0)
    return torch.kthvalue(magnitudes.float(), count).values.to(magnitudes.dtype)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Multiply each masked layer's weight by its mask (in place, without gradients)."""
    with torch.no_grad():
        for name, mask in masks.items():
            layer_weight(model, name).mul_(mask)


def sparsity_of(model: nn.Module, modules: list[str]) -> float:
    """The share of zeros among the weights of ``modules``."""
    total = zeros = 0
    for name in modules:
        weight = layer_weight(model, name)
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return zeros / max(total, 1)


# -- structured ------------------------------------------------------------------------


def structured_targets(spec: ArchSpec, wanted: list[str] | None) -> list[str]:
    """The layers whose units or channels may be removed: hidden dense layers and convs."""
    if spec.arch not in ("mlp", "cnn"):
        raise InvalidInput(
            f"method.kind: structured pruning handles mlp and cnn models, not {spec.arch}; "
            "use unstructured pruning or distill into a smaller student"
        )
    available = [f"layers.{i}.linear" for i in range(len(spec.hidden))]
    if spec.arch == "cnn":
        available = [f"features.{i}.conv" for i in range(len(spec.conv))] + available
    if not available:
        raise InvalidInput("method.kind: the model has no hidden layer to prune")
    return _check_names(available, wanted, "structured pruning")


def _keep(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices (sorted) of the output units with the largest L1 norm."""
    scores = weight.detach().abs().flatten(1).sum(dim=1)
    count = max(1, round(weight.shape[0] * (1.0 - amount)))
    return torch.sort(torch.topk(scores, count).indices).values


def structured_prune(
    model: nn.Module, spec: ArchSpec | Mapping[str, Any], amount: float, modules: list[str]
) -> tuple[nn.Module, ArchSpec]:
    """A smaller copy of ``model`` without ``amount`` of the units of each of ``modules``.

    Returns the new model (weights copied from ``model``) and its spec.
    """
    parsed = parse_spec(spec)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    raw = parsed.model_dump(mode="json")
    chain = _layer_chain(parsed)
    for index, (name, kind) in enumerate(chain[:-1]):
        if name not in modules:
            continue
        keep = _keep(state[f"{name}.weight"], amount)
        _slice_outputs(state, name, keep)
        if kind == "conv":
            block = name.rsplit(".", 1)[0]
            _slice_norm(state, f"{block}.norm", keep)
            raw["conv"][int(name.split(".")[1])]["channels"] = int(keep.numel())
        else:
            raw["hidden"][int(name.split(".")[1])] = int(keep.numel())
        following, following_kind = chain[index + 1]
        columns = keep
        if kind == "conv" and following_kind != "conv":
            columns = _feature_columns(parsed, keep)
        state[f"{following}.weight"] = state[f"{following}.weight"].index_select(1, columns)
    new_spec = parse_spec(raw)
    check_weights(new_spec, state)
    smaller = build_model(new_spec)
    smaller.load_state_dict(state)
    return smaller.eval(), new_spec


def _layer_chain(spec: ArchSpec) -> list[tuple[str, str]]:
    chain: list[tuple[str, str]] = []
    if spec.arch == "cnn":
        chain += [(f"features.{i}.conv", "conv") for i in range(len(spec.conv))]
    chain += [(f"layers.{i}.linear", "linear") for i in range(len(getattr(spec, "hidden", [])))]
    return [*chain, ("head", "linear")]


def _slice_outputs(state: dict[str, torch.Tensor], name: str, keep: torch.Tensor) -> None:
    state[f"{name}.weight"] = state[f"{name}.weight"].index_select(0, keep)
    if f"{name}.bias" in state:
        state[f"{name}.bias"] = state[f"{name}.bias"].index_select(0, keep)


def _slice_norm(state: dict[str, torch.Tensor], prefix: str, keep: torch.Tensor) -> None:
    for field in ("weight", "bias", "running_mean", "running_var"):
        key = f"{prefix}.{field}"
        if key in state:
            state[key] = state[key].index_select(0, keep)


def _feature_columns(spec: ArchSpec, channels: torch.Tensor) -> torch.Tensor:
    """Columns of the first dense layer fed by ``channels`` of the flattened feature map."""
    assert isinstance(spec, CNNSpec)
    _, height, width = spec.feature_shape()
    area = height * width
    offsets = torch.arange(area)
    return (channels.unsqueeze(1) * area + offsets).flatten()
