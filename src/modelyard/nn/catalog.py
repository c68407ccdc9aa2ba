"""The architecture catalog: parse a spec, build its model, describe and check it.

>>> spec = parse_spec({"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3})
>>> build_model(spec)(torch.zeros(2, 4)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn.cnn import CNN
from modelyard.nn.mlp import MLP
from modelyard.nn.rnn import RecurrentNet
from modelyard.nn.specs import ARCHITECTURES as ARCHITECTURES
from modelyard.nn.specs import ArchSpec as ArchSpec
from modelyard.nn.specs import parse_spec as parse_spec
from modelyard.nn.transformer import TransformerNet

_BUILDERS: dict[str, Callable[[Any], nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "rnn": RecurrentNet,
    "transformer": TransformerNet,
}

HEAD_MODULES: dict[str, str] = {arch: "head" for arch in _BUILDERS}
"""Name of the output layer (an ``nn.Linear``) of each architecture."""


def build_model(spec: ArchSpec | Mapping[str, Any], *, private: bool = False) -> nn.Module:
    """A freshly initialised model for ``spec`` (a parsed spec or its JSON).

    ``private``: the model differentially private training trains, whose recurrent layers
    are Opacus's DP variants (same parameter names; its weights load into the plain model).
    """
    parsed = parse_spec(spec)
    if private and parsed.arch == "rnn":
        return RecurrentNet(parsed, private=True)
    return _BUILDERS[parsed.arch](parsed)


def head_name(spec: ArchSpec | Mapping[str, Any]) -> str:
    """The attribute holding ``spec``'s output layer."""
    return HEAD_MODULES[parse_spec(spec).arch]


def replace_head(
    model: nn.Module, spec: ArchSpec | Mapping[str, Any], num_outputs: int
) -> tuple[nn.Module, ArchSpec]:
    """Give ``model`` a new, freshly initialised head with ``num_outputs`` outputs.

    Returns the model (changed in place) and the spec that now describes it.
    """
    parsed = parse_spec(spec)
    new_spec = parse_spec({**parsed.model_dump(), "num_outputs": num_outputs})
    name = HEAD_MODULES[parsed.arch]
    old = getattr(model, name)
    if not isinstance(old, nn.Linear):
        raise InvalidInput(f"model: its {name!r} is not a linear layer", errors=[])
    new = nn.Linear(old.in_features, num_outputs, device=old.weight.device, dtype=old.weight.dtype)
    setattr(model, name, new)
    return model, new_spec


def expected_tensors(spec: ArchSpec | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of ``spec``'s model, on the meta device: names, shapes and dtypes."""
    # Building on the meta device allocates no memory, however large the model.
    with torch.device("meta"):
        model = build_model(spec)
    return dict(model.state_dict())


def _listed(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_weights(
    spec: ArchSpec | Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Raise InvalidInput naming missing, unexpected or mis-shaped tensors.

    Tensors under ``ignore_prefixes`` (for example a head about to be replaced) are skipped.
    """

    def kept(name: str) -> bool:
        return not any(name == p or name.startswith(p + ".") for p in ignore_prefixes)

    reference = {k: v for k, v in expected_tensors(spec).items() if kept(k)}
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    given = {k: tuple(v.shape) for k, v in state.items() if kept(k)}
    problems: list[str] = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    wrong = [
        f"{name} has shape {list(given[name])}, the spec needs {list(shape)}"
        for name, shape in expected.items()
        if name in given and given[name] != shape
    ]
    problems.extend(wrong[:8])
    for name, tensor in state.items():
        want = reference.get(name)
        if want is not None and tensor.is_floating_point() != want.is_floating_point():
            problems.append(f"{name} has dtype {tensor.dtype}, the spec needs {want.dtype}")
    if problems:
        raise InvalidInput(
            "weights do not fit the spec: " + "; ".join(problems),
            missing=missing,
            unexpected=unexpected,
        )


def spec_signature(spec: ArchSpec | Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Open Inference Protocol signature: one ``input`` tensor, one ``output`` tensor."""
    parsed = parse_spec(spec)
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "INT64" if parsed.takes_token_ids else "FP32",
                "shape": [-1, *parsed.input_shape],
            }
        ],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, parsed.num_outputs]}],
    }
