"""What a finetune job takes: a version (catalog or Keras) trained further on a data set."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelyard.jobs.request_base import ComparedRequest, OptimizerChoice, VersionRef
from modelyard.training.config import PrivacyConfig


class FineTuneRequest(ComparedRequest):
    """Train a version (catalog or Keras) further on a data set, its architecture unchanged."""

    type: Literal["finetune"]
    source: VersionRef
    dataset: str
    epochs: Annotated[int, Field(gt=0, le=1000)] = 3
    batch_size: Annotated[int, Field(gt=0)] = 64
    optimizer: OptimizerChoice | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    privacy: PrivacyConfig | None = Field(
        default=None,
        description="Fine-tune with differential privacy (DP-SGD), as train jobs do; catalog "
        "versions only.",
    )
