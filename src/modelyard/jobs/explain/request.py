"""What an explain job takes: a version, the rows to explain and the attribution method."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelyard.jobs.request_base import RequestModel, VersionRef
from modelyard.jobs.resources import JobResources


class ExplainRequest(RequestModel):
    """Global feature importance of a version over a data set: ``{"type": "explain",
    "source": {"model": "iris-mlp", "version": 2}, "dataset": "iris", "method":
    "occlusion"}``. Each input value's mean absolute attribution over ``rows`` rows (spread
    evenly through the data set) is stored on the version, under
    ``params.feature_importance.<method>``."""

    type: Literal["explain"]
    source: VersionRef
    dataset: str = Field(description="The rows to explain (features as the model takes them).")
    label: str | None = Field(default=None, description="The label column or array to leave out.")
    method: Literal["integrated_gradients", "saliency", "occlusion", "kernel_shap"] = Field(
        default="occlusion",
        description="Gradient methods need a catalog (torch) version; occlusion and "
        "kernel_shap run on every format.",
    )
    rows: Annotated[int, Field(gt=0, le=4096)] = 256
    n_steps: Annotated[int, Field(gt=0, le=512)] | None = None
    n_samples: Annotated[int, Field(gt=0, le=4096)] | None = None
    window: Annotated[int, Field(gt=0)] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    resources: JobResources | None = None
