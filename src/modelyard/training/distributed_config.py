"""What a distributed run is: :class:`DistributedConfig` (pydantic only, no PyTorch).

>>> parse_distributed({"strategy": "ddp", "workers": 2, "nodes": 2}).world_size
4
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelyard.errors import InvalidInput

Strategy = Literal["ddp", "parameter_server"]


class DistributedConfig(BaseModel):
    """How a train job spreads over processes and machines."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field(
        default="ddp",
        description="ddp: synchronous data parallelism (all-reduced gradients); "
        "parameter_server: asynchronous SGD against one parameter server.",
    )
    workers: int = Field(
        default=2, ge=1, le=256, description="Training processes per node (ranks per node)."
    )
    nodes: int = Field(
        default=1, ge=1, le=64, description="Machines; more than one needs the Ray executor."
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="ddp: how often the group restarts from its last checkpoint when a rank dies.",
    )
    staleness: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="parameter_server: updates a pushed gradient may lag behind the server's "
        "weights and still be applied; staler ones are dropped and the worker refreshes.",
    )

    @model_validator(mode="after")
    def _strategy_fits(self) -> DistributedConfig:
        if self.strategy == "parameter_server" and self.nodes != 1:
            raise ValueError("nodes: the parameter_server strategy runs on one node")
        return self

    @property
    def world_size(self) -> int:
        """Ranks in the whole run."""
        return self.workers * self.nodes


def parse_distributed(raw: Any, where: str = "distributed") -> DistributedConfig:
    """A checked :class:`DistributedConfig`; InvalidInput naming the field otherwise."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: give an object such as {{'strategy': 'ddp', 'workers': 2}}")
    try:
        return DistributedConfig.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        name = f"{where}.{field}" if field else where
        raise InvalidInput(f"{name}: {first['msg']}") from None
