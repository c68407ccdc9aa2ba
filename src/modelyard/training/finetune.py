"""Fine-tuning: start from existing weights, optionally with a new head and frozen layers."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec, check_weights, head_name


def load_initial_weights(
    model: nn.Module, spec: ArchSpec, state: Mapping[str, torch.Tensor], *, replace_head: bool
) -> None:
    """Load ``state`` into ``model``; with ``replace_head`` the head keeps its fresh weights.

    The state is checked first, so weights of another architecture raise InvalidInput
    naming the tensors that do not fit.
    """
    if not replace_head:
        check_weights(spec, state)
        model.load_state_dict(dict(state))
        return
    head = head_name(spec)
    check_weights(spec, state, ignore_prefixes=(head,))
    body = {k: v for k, v in state.items() if not (k == head or k.startswith(head + "."))}
    model.load_state_dict(body, strict=False)


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def freeze(model: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """Stop gradients for parameters under ``prefixes``; returns the frozen modules.

    The frozen modules are meant to stay in eval mode while training, so that their
    batch-norm statistics stay fixed along with their weights.
    """
    names = [name for name, _ in model.named_parameters()]
    for index, prefix in enumerate(prefixes):
        if not any(_matches(name, prefix) for name in names):
            tops = sorted({name.split(".", 1)[0] for name in names})
            raise InvalidInput(
                f"config.freeze[{index}]: {prefix!r} matches no parameter; "
                f"names start with {', '.join(tops)}"
            )
    for name, param in model.named_parameters():
        if any(_matches(name, prefix) for prefix in prefixes):
            param.requires_grad_(False)
    return [
        module
        for name, module in model.named_modules()
        if name and any(_matches(name, prefix) for prefix in prefixes)
    ]
