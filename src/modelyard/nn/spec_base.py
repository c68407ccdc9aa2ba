"""What every architecture spec has: its input shape, its outputs and its task."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "regression"]
Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu"]
Dim = Annotated[int, Field(gt=0)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class SpecBase(BaseModel):
    """Fields shared by every architecture in the catalog.

    ``input_shape`` is the shape of one example, without the batch dimension;
    ``task`` is optional, and when left out the training loss decides it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_shape: list[Dim] = Field(
        min_length=1, description="Shape of one example, without the batch dimension."
    )
    num_outputs: Dim = Field(description="Width of the output: classes, or regression targets.")
    task: Task | None = Field(
        default=None,
        description="classification or regression; left out, the training loss decides.",
    )

    @property
    def takes_token_ids(self) -> bool:
        """True when the model reads integer token ids rather than float features."""
        return False

    @property
    def input_size(self) -> int:
        """Number of values in one example."""
        return math.prod(self.input_shape)
