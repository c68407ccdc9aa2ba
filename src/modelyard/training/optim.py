"""Build the optimizer a :class:`OptimizerConfig` names."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from modelyard.training.config import OptimizerConfig


def build_optimizer(
    config: OptimizerConfig, params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimizer over ``params``.

    ``gd`` is ``sgd`` on a batch as large as the data set (the config makes it full-batch).
    """
    params = list(params)
    if config.name in ("gd", "sgd"):
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    if config.name == "adam":
        return torch.optim.Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    if config.name == "adamw":
        return torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    return torch.optim.RMSprop(
        params,
        lr=config.lr,
        alpha=config.alpha,
        eps=config.eps,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
